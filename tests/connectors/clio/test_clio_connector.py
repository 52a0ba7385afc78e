"""The Clio connector driven against FakeClio: what it sends and what Clio ends up holding."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fake_clio import FakeClio

from appconnect.connectors.clio import ClioConnector
from appconnect.connectors.clio.connector import clio_host, phone_spellings
from appconnect.connectors.sdk import (
    PLACEHOLDER_CONTACT_ID,
    CallLogCreate,
    CallLogRef,
    CallLogUpdate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactLookup,
    ContactRef,
    CrmCall,
    CrmHttpError,
    DispositionUpdate,
    LoginRequest,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    UserView,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

COMPOSED = "- Note: Asked about the lease\n- Date/time: 2026-03-12 02:35:20 PM\n- Duration: 8 minutes"


@dataclass
class Env:
    fake: FakeClio
    connector: ClioConnector
    call: CrmCall


def _user(fake: FakeClio, **settings: object) -> UserView:
    return UserView(
        id=f"{fake.user['id']}-clio",
        platform="clio",
        hostname="app.clio.com",
        timezone_offset="+00:00",
        user_settings={k: {"value": v} for k, v in settings.items()},
    )


@pytest.fixture
async def env(fake_clio: FakeClio) -> AsyncIterator[Env]:
    connector = ClioConnector(ConnectorConfig(fake_clio.connector_config()))
    tokens = fake_clio.issue_tokens()
    auth = f"Bearer {tokens.access_token}"
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=fake_clio.base_url, auth_header=auth)
        yield Env(fake_clio, connector, CrmCall(user=_user(fake_clio), auth_header=auth, http=http))
    finally:
        await client.aclose()


def _call(session_id: str = "s-1", direction: str = "Inbound") -> CallRecord:
    contact = CallParty(phone_number="+14155550142", name="Maya Patel")
    agent = CallParty(phone_number="+14155550101", name="Jordan Lee")
    return CallRecord(
        session_id=session_id,
        direction=direction,
        start_time="2026-03-12T14:35:20.000Z",
        duration=487,
        from_party=contact if direction == "Inbound" else agent,
        to_party=agent if direction == "Inbound" else contact,
    )


def _ref(contact: dict[str, object], phone: str = "+14155550142") -> ContactRef:
    return ContactRef(
        id=str(contact["id"]), phone_number=phone, type=str(contact["type"]), name=str(contact["name"])
    )


async def _found(env: Env, phone: str, overriding_format: str = "") -> list[str]:
    matches = await env.connector.find_contact(
        env.call, ContactLookup(phone_number=phone, overriding_format=overriding_format)
    )
    assert matches.successful
    assert matches.contacts[-1].id == PLACEHOLDER_CONTACT_ID
    assert matches.contacts[-1].default_contact_type == "Person"
    return [c.id for c in matches.contacts[:-1]]


# --- platform -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hostname", "prefix", "host"),
    [
        ("app.clio.com", "", "app.clio.com"),
        ("https://eu.app.clio.com", "eu_", "eu.app.clio.com"),
        ("AU.app.clio.com", "au_", "au.app.clio.com"),
        ("ca.app.clio.com", "ca_", "ca.app.clio.com"),
    ],
)
def test_the_hostname_picks_the_regions_application_and_token_endpoint(
    hostname: str, prefix: str, host: str
) -> None:
    config = {
        f"{p}{k}": f"{p}{k}-value" for p in ("", "eu_", "au_", "ca_") for k in ("client_id", "client_secret")
    }
    info = ClioConnector(ConnectorConfig({**config, "redirect_uri": "https://x/redirect.html"})).oauth_info(
        hostname
    )
    assert info.fail_message is None
    assert (info.client_id, info.client_secret) == (
        f"{prefix}client_id-value",
        f"{prefix}client_secret-value",
    )
    assert info.access_token_uri == f"https://{host}/oauth/token"
    assert info.authorization_uri == f"https://{host}/oauth/authorize"
    assert info.hostname == host
    assert info.revoke_uri is None
    connector = ClioConnector(ConnectorConfig(config))
    assert connector.base_url(UserView(id="1-clio", platform="clio", hostname=host)) == f"https://{host}"


def test_an_unknown_host_never_gets_the_client_secret() -> None:
    connector = ClioConnector(ConnectorConfig({"client_id": "a", "client_secret": "b"}))
    info = connector.oauth_info("evil.example.com")
    assert info.fail_message and "Unknown Clio region" in info.fail_message
    assert info.client_secret is None and info.access_token_uri == ""
    assert clio_host("app.clio.com.evil.example") is None
    missing = ClioConnector(ConnectorConfig({"client_id": "a"})).oauth_info("eu.app.clio.com")
    assert missing.fail_message == "Clio EU is not set up on this server (no client id)."


def test_manifest_declares_person_and_company() -> None:
    entry = ClioConnector().manifest_entry()
    assert ClioConnector().contact_types() == ["Person", "Company"]
    assert entry["auth"]["type"] == "oauth"
    assert "secret" not in str(entry).lower()


def test_search_terms_are_whole_spellings_the_references_first() -> None:
    assert [text for _kind, text in phone_spellings("+14155550142")] == [
        "+14155550142",
        "(415) 555-0142",
        "415-555-0142",
        "415.555.0142",
        "415 555 0142",
        "4155550142",
    ]
    london = [text for _kind, text in phone_spellings("+442079460018")]
    assert london == [
        "+442079460018",
        "020 7946 0018",
        "20-7946-0018",
        "20.7946.0018",
        "20 7946 0018",
        "2079460018",
    ]
    with_format = phone_spellings("+14155550142", "***.***.****, (***) ***-****")
    assert with_format[:3] == [
        ("e164", "+14155550142"),
        ("format:***.***.****", "415.555.0142"),
        ("format:(***) ***-****", "(415) 555-0142"),
    ]


async def test_login_reads_who_am_i(env: Env) -> None:
    result = await env.connector.get_user_info(
        LoginRequest(
            auth_header=env.call.auth_header, hostname="app.clio.com", platform="clio", http=env.call.http
        )
    )
    assert result.successful and result.user is not None
    assert result.user.id == f"{env.fake.user['id']}-clio"
    assert result.user.timezone_name == "America/Los_Angeles"
    assert result.user.timezone_offset in ("-08:00", "-07:00")
    assert env.fake.requests_to("/api/v4/users/who_am_i.json")[-1].query["fields"] == "id,name,time_zone"


@pytest.mark.parametrize(
    ("hostname", "suffix"), [("eu.app.clio.com", "~eu"), ("https://AU.app.clio.com/", "~au")]
)
async def test_a_regions_user_id_names_the_region(env: Env, hostname: str, suffix: str) -> None:
    """Each region numbers its users on its own: only the region keeps two users with one id apart."""
    result = await env.connector.get_user_info(
        LoginRequest(auth_header=env.call.auth_header, hostname=hostname, platform="clio", http=env.call.http)
    )
    assert result.user is not None and result.user.id == f"{env.fake.user['id']}{suffix}-clio"
    view = UserView(id=result.user.id, platform="clio", hostname=hostname)
    assert view.crm_user_id == str(env.fake.user["id"])
    assert env.connector.rate_limit_key(view) != env.connector.rate_limit_key(
        UserView(id=f"{env.fake.user['id']}-clio", platform="clio", hostname="app.clio.com")
    )


# --- phone matching ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "caller"),
    [
        ("(415) 555-0142", "+14155550142"),
        ("415.555.0142", "+14155550142"),
        ("+1 415 555 0142", "+14155550142"),
        ("4155550142", "+14155550142"),
        ("+14155550142", "+14155550142"),
        ("1-415-555-0142", "+14155550142"),
        ("(415) 555-0142 x12", "+14155550142"),
        ("415-555-0142 ext. 7", "+14155550142"),
        ("020 7946 0018", "+442079460018"),
        ("+44 20 7946 0018", "+442079460018"),
        ("030 1234567", "+49301234567"),
        ("+49 30 1234567", "+49301234567"),
        ("(02) 9374 4000", "+61293744000"),
        ("02 9374 4000", "+61293744000"),
    ],
)
async def test_numbers_stored_in_every_common_format_are_found(env: Env, stored: str, caller: str) -> None:
    maya = env.fake.add_contact("Maya Patel", [stored])
    assert await _found(env, caller) == [str(maya["id"])]


async def test_a_loose_hit_is_never_returned(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    env.fake.add_contact("Other Area", ["(650) 555-0142"])  # same tail, another number
    env.fake.add_contact("Longer", ["+1 415 555 01420"])
    env.fake.add_contact("Named 555-0142 in notes", ["+1 212 555 9999"])
    assert await _found(env, "+14155550142") == [str(maya["id"])]


async def test_extension_and_internal_numbers_make_no_call(env: Env) -> None:
    before = len(env.fake.requests)
    none = await env.connector.find_contact(
        env.call, ContactLookup(phone_number="+14155550142", is_extension=True)
    )
    assert not none.successful and none.contacts == []
    internal = await env.connector.find_contact(env.call, ContactLookup(phone_number="101"))
    assert not internal.successful
    assert len(env.fake.requests) == before


async def test_a_plus_decoded_to_space_is_repaired(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    assert await _found(env, " 14155550142") == [str(maya["id"])]


async def test_overriding_format_finds_a_house_style(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["415/555/0142"])
    assert await _found(env, "+14155550142") == []
    assert await _found(env, "+14155550142", "***/***/****") == [str(maya["id"])]


# --- matters -------------------------------------------------------------------------------------------------


async def test_matters_from_both_lists_over_many_pages_closed_ones_on_request(env: Env) -> None:
    fake = env.fake
    maya = fake.add_contact("Maya Patel", ["(415) 555-0142"])
    own = [fake.add_matter(f"Lease {i}", client_id=maya["id"]) for i in range(3)]
    closed = fake.add_matter("Old will", client_id=maya["id"], status="Closed")
    related = []
    for index in range(450):  # relationships span three pages of 200
        matter = fake.add_matter(f"Estate {index}", client_id=None, status="Pending")
        fake.relate(maya["id"], matter["id"])
        related.append(matter)
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550142"))
    options = matches.contacts[0].additional_info["matters"]  # type: ignore[index]
    assert [o["const"] for o in options] == [m["id"] for m in own + related]
    assert options[0] == {
        "const": own[0]["id"],
        "title": own[0]["display_number"],
        "description": "Open - Lease 0",
        "status": "Open",
    }
    assert len(fake.requests_to("/api/v4/relationships.json")) == 3
    env.call.user = _user(fake, clioSeeClosedMatters=True)
    again = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550142"))
    assert closed["id"] in [o["const"] for o in again.contacts[0].additional_info["matters"]]  # type: ignore[index]


async def test_next_urls_to_another_host_are_not_followed(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    env.fake.inject(
        200,
        path_prefix="/api/v4/relationships.json",
        body={"data": [], "meta": {"paging": {"next": "https://evil.example/api/v4/relationships.json"}}},
    )
    assert await _found(env, "+14155550142") == [str(maya["id"])]


# --- contacts, calls, messages ---------------------------------------------------------------------------------


async def test_create_person_and_company(env: Env) -> None:
    person = await env.connector.create_contact(env.call, NewContact("+14155550142", "Maya Patel", "Person"))
    company = await env.connector.create_contact(env.call, NewContact("+14155550143", "Acme Ltd", "Company"))
    assert person is not None and company is not None
    assert (person.contact.type, company.contact.type) == ("Person", "Company")
    stored = env.fake.contacts[int(company.contact.id)]
    assert stored["name"] == "Acme Ltd" and stored["type"] == "Company"
    assert stored["phone_numbers"][0]["number"] == "+14155550143"
    assert (
        stored["phone_numbers"][0]["name"] == "Work" and stored["phone_numbers"][0]["default_number"] is True
    )
    assert await _found(env, "+14155550143") == [company.contact.id]


async def test_call_log_lifecycle(env: Env) -> None:
    fake = env.fake
    maya = fake.add_contact("Maya Patel", ["(415) 555-0142"])
    matter = fake.add_matter("Lease dispute", client_id=maya["id"])
    other = fake.add_matter("Second matter", client_id=maya["id"])
    log = CallLogCreate(
        contact=_ref(maya),
        call=_call(),
        composed_log_details=COMPOSED,
        additional_submission={"matters": matter["id"]},
    )
    result = await env.connector.create_call_log(env.call, log)
    assert result.log_id is not None
    stored = fake.communications[int(result.log_id)]
    assert stored["type"] == "PhoneCommunication"
    assert stored["subject"] == "[Call] Inbound Call from Maya Patel [+14155550142]"
    assert stored["senders"][0]["id"] == maya["id"] and stored["receivers"][0]["type"] == "User"
    assert stored["matter"]["id"] == matter["id"]
    assert stored["received_at"] == "2026-03-12T14:35:20Z"
    assert stored["body"].startswith(COMPOSED) and "[rc-call-s-1]" in stored["body"]
    assert await env.connector.find_call_log(env.call, log) == result.log_id
    other_call = CallLogCreate(contact=_ref(maya), call=_call("s-2"))
    assert await env.connector.find_call_log(env.call, other_call) is None

    fetched = await env.connector.get_call_log(env.call, CallLogRef(log_id=result.log_id))
    assert fetched.info.note == "Asked about the lease"
    assert fetched.info.contact_name == "Maya Patel"
    assert fetched.info.dispositions == {"matters": matter["id"]}
    assert fetched.info.full_body is not None and "rc-call" not in fetched.info.full_body

    new_body = fetched.info.full_body.replace("Asked about the lease", "Will send the draft")
    await env.connector.update_call_log(
        env.call,
        CallLogUpdate(
            log=CallLogRef(log_id=result.log_id),
            composed_log_details=new_body,
            subject="Lease call",
            existing_call_log_details=fetched.info.full_log_response,
        ),
    )
    assert stored["subject"] == "Lease call"
    assert "Will send the draft" in stored["body"] and "[rc-call-s-1]" in stored["body"]
    assert await env.connector.find_call_log(env.call, log) == result.log_id

    done = await env.connector.upsert_call_disposition(
        env.call,
        DispositionUpdate(log=CallLogRef(log_id=result.log_id), dispositions={"matters": other["id"]}),
    )
    assert done.log_id == result.log_id and stored["matter"]["id"] == other["id"]
    nothing = await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(log=CallLogRef(log_id=result.log_id), dispositions={})
    )
    assert nothing.log_id is None


async def test_outbound_call_goes_from_the_user_to_the_company(env: Env) -> None:
    acme = env.fake.add_contact("Acme Ltd", ["+1 415 555 0142"], type="Company")
    log = CallLogCreate(contact=_ref(acme), call=_call(direction="Outbound"), composed_log_details="")
    result = await env.connector.create_call_log(env.call, log)
    assert result.log_id is not None
    stored = env.fake.communications[int(result.log_id)]
    assert stored["senders"][0]["type"] == "User"
    assert stored["receivers"][0] == {
        "id": acme["id"],
        "etag": acme["etag"],
        "name": "Acme Ltd",
        "type": "Company",
    }
    assert stored["body"].startswith("No details available")
    fetched = await env.connector.get_call_log(env.call, CallLogRef(log_id=result.log_id))
    assert fetched.info.contact_name == "Acme Ltd"


def _message(
    message_id: str, text: str, direction: str = "Inbound", at: str = "2026-03-12T14:35:20.000Z"
) -> Message:
    return Message(
        id=message_id,
        direction=direction,
        subject=text,
        creation_time=at,
        from_party=CallParty(phone_number="+14155550142"),
    )


async def test_message_log_and_idempotent_append(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    log = MessageLogCreate(
        contact=_ref(maya),
        message=_message("m1", "Is the lease ready?"),
        conversation_id="c1",
        conversation_log_id="c1-2026-03-12",
    )
    result = await env.connector.create_message_log(env.call, log)
    assert result.log_id is not None
    stored = env.fake.communications[int(result.log_id)]
    assert stored["subject"] == "SMS conversation with Maya Patel - 26/03/12"
    assert "Conversation(1 messages)" in stored["body"] and "Is the lease ready?" in stored["body"]
    assert await env.connector.find_message_log(env.call, log) == result.log_id

    update = MessageLogUpdate(
        contact=_ref(maya),
        message=_message("m2", "Yes, sending it today", "Outbound", "2026-03-12T14:40:00.000Z"),
        log_id=result.log_id,
        conversation_log_id="c1-2026-03-12",
    )
    await env.connector.update_message_log(env.call, update)
    await env.connector.update_message_log(env.call, update)  # sent again: no second copy
    body = stored["body"]
    assert body.count("Yes, sending it today") == 1
    assert "Conversation(2 messages)" in body
    assert (
        body.index("Is the lease ready?")
        < body.index("Yes, sending it today")
        < body.index("------------\nEND")
    )
    assert "Jordan Lee 02:40 PM" in body


# --- time entries ----------------------------------------------------------------------------------------------


async def test_a_call_bills_its_time_on_the_matter(env: Env) -> None:
    fake = env.fake
    maya = fake.add_contact("Maya Patel", ["(415) 555-0142"])
    matter = fake.add_matter("Lease dispute", client_id=maya["id"])
    submission = {"matters": matter["id"], "billableStatus": "non-billable"}
    log = CallLogCreate(
        contact=_ref(maya), call=_call(), composed_log_details=COMPOSED, additional_submission=submission
    )
    result = await env.connector.create_call_log(env.call, log)
    assert result.log_id is not None and result.return_message is not None
    assert result.return_message.message_type == "success"
    [entry] = fake.activities.values()
    assert entry["type"] == "TimeEntry" and entry["quantity"] == 487 and entry["date"] == "2026-03-12"
    assert entry["communication"]["id"] == int(result.log_id) and entry["matter"]["id"] == matter["id"]
    assert entry["non_billable"] is True
    assert entry["note"] == "[Call] Inbound Call from Maya Patel [+14155550142]"

    fetched = await env.connector.get_call_log(env.call, CallLogRef(log_id=result.log_id))
    await env.connector.update_call_log(
        env.call,
        CallLogUpdate(
            log=CallLogRef(log_id=result.log_id),
            composed_log_details=fetched.info.full_body or "",
            duration=600,
            existing_call_log_details=fetched.info.full_log_response,
        ),
    )
    assert entry["quantity"] == 600 and len(fake.activities) == 1


async def test_time_entries_follow_the_settings(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    env.call.user = _user(env.fake, clioDefaultNonBillableTick=True)
    await env.connector.create_call_log(env.call, CallLogCreate(contact=_ref(maya), call=_call("s-1")))
    assert [a["non_billable"] for a in env.fake.activities.values()] == [True]
    env.call.user = _user(env.fake, clioTimeEntriesEnabled=False)
    await env.connector.create_call_log(env.call, CallLogCreate(contact=_ref(maya), call=_call("s-2")))
    assert len(env.fake.activities) == 1 and len(env.fake.communications) == 2
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550142"))
    assert matches.contacts[0].additional_info == {
        "billableStatus": [
            {"const": "billable", "title": "Billable"},
            {"const": "non-billable", "title": "Non-billable"},
        ],
        "logTimeEntry": False,  # the form's tick starts from the user's setting
    }


async def test_a_refused_time_entry_never_fails_the_logged_call(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    env.fake.inject(422, path_prefix="/api/v4/activities.json", method="POST")
    result = await env.connector.create_call_log(env.call, CallLogCreate(contact=_ref(maya), call=_call()))
    assert result.log_id is not None and int(result.log_id) in env.fake.communications
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert "time entry" in result.return_message.message
    assert env.fake.activities == {}


async def test_a_failed_search_fails_the_lookup_and_no_other_is_sent(env: Env) -> None:
    env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    env.fake.inject(500, path_prefix="/api/v4/contacts.json", method="GET")
    with pytest.raises(CrmHttpError) as failed:
        await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550142"))
    assert failed.value.status == 500
    await asyncio.sleep(0.1)
    assert [r.query["query"] for r in env.fake.requests_to("/api/v4/contacts.json", "GET")] == [
        "+14155550142"
    ]


async def test_contact_search_by_name(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"], email="maya@example.test")
    env.fake.add_contact("Sam Ortiz", ["(415) 555-0143"])
    matches = await env.connector.find_contact_with_name(env.call, "patel")
    assert [(c.id, c.name, c.type, c.email, c.phone) for c in matches.contacts] == [
        (str(maya["id"]), "Maya Patel", "Person", "maya@example.test", "(415) 555-0142")
    ]
    assert (await env.connector.find_contact_with_name(env.call, "  ")).contacts == []

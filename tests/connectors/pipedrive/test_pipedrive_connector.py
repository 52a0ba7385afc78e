"""The Pipedrive connector driven against FakePipedrive: what it sends and what Pipedrive ends up holding."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fake_pipedrive import FakePipedrive, TokenPair

import appconnect.connectors.pipedrive.connector as pipedrive_connector_module
from appconnect.connectors.pipedrive import PipedriveConnector
from appconnect.connectors.pipedrive.connector import pipedrive_duration
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
    implements,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

COMPOSED = (
    "<b>Agent notes</b><br>Asked about the renewal<br>Will call back<br><br>"
    "<b>Call details</b><br><b>Duration</b>: 8 minutes<br>"
)


@dataclass
class Env:
    fake: FakePipedrive
    connector: PipedriveConnector
    call: CrmCall
    http: CrmHttpClient


def _user(**settings: str) -> UserView:
    return UserView(
        id="12345-pipedrive",
        platform="pipedrive",
        hostname="testcompany.pipedrive.com",
        timezone_offset="+00:00",
        user_settings={k: {"value": v} for k, v in settings.items()},
    )


@pytest.fixture
async def env(fake_pipedrive: FakePipedrive, pipedrive_tokens: TokenPair) -> AsyncIterator[Env]:
    connector = PipedriveConnector(ConnectorConfig(fake_pipedrive.connector_config()))
    auth = f"Bearer {pipedrive_tokens.access_token}"
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=fake_pipedrive.base_url, auth_header=auth)
        yield Env(fake_pipedrive, connector, CrmCall(user=_user(), auth_header=auth, http=http), http)
    finally:
        await client.aclose()


def _call(
    direction: str = "Inbound", duration: int | str | None = 487, subject: str | None = None
) -> CallRecord:
    contact = CallParty(phone_number="+14155550142", name="Maya Patel")
    agent = CallParty(phone_number="+14155550101", name="Jordan Lee", extension_number="101")
    return CallRecord(
        session_id="s-1",
        direction=direction,
        start_time="2026-03-12T14:35:20.000Z",
        duration=duration,
        result="Completed",
        custom_subject=subject,
        from_party=contact if direction == "Inbound" else agent,
        to_party=agent if direction == "Inbound" else contact,
    )


def _ref(person: dict[str, object]) -> ContactRef:
    return ContactRef(
        id=str(person["id"]), phone_number="+14155550142", type="contact", name=str(person["name"])
    )


# --- platform -----------------------------------------------------------------------------------------------


def test_oauth_info_defaults_to_pipedrive_hosts() -> None:
    info = PipedriveConnector(
        ConnectorConfig(
            {"client_id": "cid", "client_secret": "sec", "redirect_uri": "https://x/pipedrive-redirect"}
        )
    ).oauth_info()
    assert info.access_token_uri == "https://oauth.pipedrive.com/oauth/token"
    assert info.authorization_uri == "https://oauth.pipedrive.com/oauth/authorize"
    assert info.revoke_uri == "https://oauth.pipedrive.com/oauth/revoke"
    assert (info.client_id, info.client_secret, info.redirect_uri) == (
        "cid",
        "sec",
        "https://x/pipedrive-redirect",
    )
    assert info.scopes is None


def test_manifest_entry_carries_no_secret_and_no_contact_types() -> None:
    connector = PipedriveConnector()
    entry = connector.manifest_entry()
    assert entry["name"] == "pipedrive"
    assert entry["auth"] == {
        "type": "oauth",
        "oauth": {
            "authUrl": "https://oauth.pipedrive.com/oauth/authorize",
            "clientId": "",
            "redirectUri": "",
            "scope": "",
        },
    }
    assert connector.contact_types() == []
    consts = [f["const"] for f in entry["page"]["callLog"]["additionalFields"]]
    assert "deals" in consts and "leads" in consts
    assert entry["contactPageUrl"] == "https://{hostname}/person/{contactId}"
    assert not implements(connector, "unauthorize")
    assert (connector.platform, connector.auth_type) == ("pipedrive", "oauth")
    assert connector.log_format == "text/html"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "00:00"),
        (20, "00:01"),
        (60, "00:01"),
        (61, "00:02"),
        (300, "00:05"),
        (487, "00:09"),
        (4500, "01:15"),
        ("300", "00:05"),
        ("n/a", "00:00"),
        (None, "00:00"),
        (-5, "00:00"),
    ],
)
def test_duration_rounds_up_to_whole_minutes(seconds: int | str | None, expected: str) -> None:
    assert pipedrive_duration(seconds) == expected


# --- login --------------------------------------------------------------------------------------------------


async def test_get_user_info_uses_company_domain(env: Env) -> None:
    result = await env.connector.get_user_info(
        LoginRequest(auth_header=env.call.auth_header, hostname="temp", platform="pipedrive", http=env.http)
    )
    assert result.successful
    assert result.user is not None
    assert result.user.id == "12345-pipedrive"
    assert result.user.name == "Jordan Lee"
    assert result.user.overriding_hostname == "testcompany.pipedrive.com"
    assert result.user.platform_additional_info == {
        "companyId": 7777,
        "companyName": "Test Company",
        "companyDomain": "testcompany",
    }
    assert result.user.timezone_offset == "-08:00"
    assert result.return_message is not None and result.return_message.message == "Connected to Pipedrive."


async def test_get_user_info_reports_failure(env: Env) -> None:
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=env.fake.base_url, auth_header="Bearer at-forged")
        request = LoginRequest(
            auth_header="Bearer at-forged", hostname="temp", platform="pipedrive", http=http
        )
        result = await env.connector.get_user_info(request)
    finally:
        await client.aclose()
    assert not result.successful
    assert result.return_message is not None
    assert result.return_message.message == "Could not load user information"


# --- contacts -----------------------------------------------------------------------------------------------


async def test_find_contact_returns_person_with_deals_leads_and_placeholder(env: Env) -> None:
    org = env.fake.add_org("Analytical Engines")
    ada = env.fake.add_person("Ada Lovelace", phones=["(415) 555-0102"], org_id=org["id"])
    deal = env.fake.add_deal("Engine renewal", person_id=ada["id"])
    env.fake.add_deal("Closed deal", person_id=ada["id"], status="won")
    lead = env.fake.add_lead("Difference engine", person_id=ada["id"])
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550102"))
    assert matches.successful
    [contact, placeholder] = matches.contacts
    assert (contact.id, contact.name, contact.phone) == (str(ada["id"]), "Ada Lovelace", "+14155550102")
    assert contact.organization == "Analytical Engines"
    assert contact.type == "contact"
    assert contact.additional_info == {
        "deals": [{"const": deal["id"], "title": "Engine renewal"}],
        "leads": [{"const": lead["id"], "title": "Difference engine"}],
    }
    assert placeholder.id == PLACEHOLDER_CONTACT_ID
    [search] = env.fake.requests_to("/api/v2/persons/search")
    assert search.query == {"term": "4155550102", "fields": "phone"}


async def test_find_contact_multiple_matches_and_swallowed_leads_failure(env: Env) -> None:
    grace = env.fake.add_person("Grace Hopper", phones=["+14155550103"])
    admiral = env.fake.add_person("Rear Admiral Hopper", phones=["+1 415 555 0103"])
    compiler = env.fake.add_deal("Compiler", person_id=grace["id"])
    env.fake.add_lead("Navy", person_id=admiral["id"])
    env.fake.inject(500, times=2, path_prefix="/v1/leads")
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550103"))
    by_id = {c.id: c for c in matches.contacts}
    expected = {"deals": [{"const": compiler["id"], "title": "Compiler"}]}
    assert by_id[str(grace["id"])].additional_info == expected
    assert by_id[str(admiral["id"])].additional_info == {}
    assert by_id[str(admiral["id"])].organization == ""
    assert matches.contacts[-1].id == PLACEHOLDER_CONTACT_ID


@pytest.mark.parametrize(
    ("stored", "caller", "significant"),
    [
        ("(415) 555-0100", "+14155550100", "4155550100"),
        ("415.555.0100", "+14155550100", "4155550100"),
        ("+1 415 555 0100", "+14155550100", "4155550100"),
        ("4155550100", "+14155550100", "4155550100"),
        ("415-555-0100 ext. 123", "+14155550100", "4155550100"),
        ("020 7946 0018", "+442079460018", "2079460018"),
        ("030 12345678", "+493012345678", "3012345678"),
        ("(02) 9876 5432", "+61298765432", "298765432"),
    ],
)
async def test_find_contact_finds_a_number_as_typed_and_drops_lookalikes(
    env: Env, stored: str, caller: str, significant: str
) -> None:
    right = env.fake.add_person("Typed Number", phones=["+1 650 555 0199", stored])
    # Pipedrive's search is loose: these hold the caller's digits too, but are other people's numbers
    env.fake.add_person("Other Country", phones=[f"+7 {significant}"])
    env.fake.add_person("Longer Number", phones=[f"{caller} 99"])
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number=caller))
    assert [c.id for c in matches.contacts] == [str(right["id"]), PLACEHOLDER_CONTACT_ID]
    [search] = env.fake.requests_to("/api/v2/persons/search")  # one CRM call, whatever the format
    assert search.query == {"term": significant, "fields": "phone"}
    loose = await env.http.get_json("/api/v2/persons/search", params={"term": significant, "fields": "phone"})
    assert len(loose["data"]["items"]) == 3


async def test_find_contact_without_match_offers_only_placeholder(env: Env) -> None:
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550101"))
    assert matches.successful
    assert [c.id for c in matches.contacts] == [PLACEHOLDER_CONTACT_ID]


async def test_find_contact_restores_plus_decoded_as_space(env: Env) -> None:
    ada = env.fake.add_person("Ada Lovelace", phones=["+14155550102"])
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number=" 14155550102"))
    assert matches.contacts[0].id == str(ada["id"])
    assert matches.contacts[0].phone == "+14155550102"


async def test_find_contact_international_number_searches_significant_digits(env: Env) -> None:
    elodie = env.fake.add_person("Élodie Martin", phones=["+44 1632 960123"])
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+441632960123"))
    assert matches.contacts[0].name == "Élodie Martin"
    assert matches.contacts[0].id == str(elodie["id"])
    assert env.fake.requests_to("/api/v2/persons/search")[0].query["term"] == "1632960123"


async def test_find_contact_refuses_extension_numbers_without_calling(env: Env) -> None:
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="101"))
    assert not matches.successful
    assert matches.contacts == []
    assert matches.return_message is not None
    assert matches.return_message.message == "Logging against internal extension number is not supported."
    assert env.fake.requests == []


async def test_find_contact_propagates_rate_limit(env: Env) -> None:
    env.fake.add_person("Ada Lovelace", phones=["+14155550102"])
    env.fake.inject(429, path_prefix="/api/v2/deals", retry_after=30)  # longer than the server waits
    with pytest.raises(CrmHttpError) as caught:
        await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550102"))
    assert caught.value.status == 429
    assert caught.value.retry_after == 30


async def test_find_contact_enriches_persons_concurrently(env: Env) -> None:
    for i in range(3):
        env.fake.add_person(f"Hopper {i}", phones=["+14155550103"])
    env.fake.inject(delay=0.4, times=3, path_prefix="/api/v2/deals")
    started = time.monotonic()
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550103"))
    assert len(matches.contacts) == 4
    assert time.monotonic() - started < 1.0


async def test_find_contact_with_name(env: Env) -> None:
    grace = env.fake.add_person("Grace Hopper", phones=["+14155550103"])
    env.fake.add_person("Ada Lovelace")
    matches = await env.connector.find_contact_with_name(env.call, "Hopper")
    assert [(c.id, c.phone) for c in matches.contacts] == [(str(grace["id"]), None)]
    assert env.fake.requests_to("/api/v2/persons/search")[0].query == {"term": "Hopper", "fields": "name"}
    assert (await env.connector.find_contact_with_name(env.call, "H")).contacts == []


async def test_create_contact_posts_person(env: Env) -> None:
    created = await env.connector.create_contact(
        env.call, NewContact(phone_number="+14155550104", name="Katherine Johnson", contact_type="contact")
    )
    assert created is not None
    assert created.contact.name == "Katherine Johnson"
    assert created.return_message is not None and created.return_message.message == "Contact created."
    stored = env.fake.persons[int(created.contact.id)]
    assert [p["value"] for p in stored["phones"]] == ["+14155550104"]
    assert env.fake.requests_to("/v1/persons") == []  # retired: gone from Pipedrive's description
    [sent] = env.fake.requests_to("/api/v2/persons", "POST")
    assert sent.json == {
        "name": "Katherine Johnson",
        "phones": [{"value": "+14155550104", "primary": True, "label": "work"}],
        "owner_id": 12345,
    }
    assert stored["owner_id"] == 12345 and stored["phones"][0]["primary"] is True


async def test_create_contact_falls_back_to_v1_where_v2_persons_is_unknown(env: Env) -> None:
    """An API server without `POST /api/v2/persons` (404: nothing was created) gets v1's create with v1's body,
    and is remembered: the next contact costs one request, not two."""
    env.fake.v2_persons_missing = True
    numbers = ["+14155550105", "+14155550106"]
    try:
        for number in numbers:
            created = await env.connector.create_contact(
                env.call, NewContact(phone_number=number, name="Dorothy Vaughan", contact_type="contact")
            )
            assert created is not None
            assert [p["value"] for p in env.fake.persons[int(created.contact.id)]["phones"]] == [number]
    finally:
        pipedrive_connector_module._V1_PERSON_HOSTS.clear()  # the memo is per process; other tests share the host
    assert len(env.fake.requests_to("/api/v2/persons", "POST")) == 1
    v1 = env.fake.requests_to("/v1/persons", "POST")
    assert [r.json["phone"][0]["value"] for r in v1] == numbers
    assert all("phones" not in r.json for r in v1)


async def test_a_404_to_one_create_does_not_turn_a_v2_host_into_a_v1_host(env: Env) -> None:
    """A v2 create answered 404 once (v1 is gone there too: 410) is a "not found" error, and the next contact
    is created through v2 again: only a v1 create that worked makes a host v1-only."""
    env.fake.inject(status=404, times=1, method="POST", path_prefix="/api/v2/persons")
    new = NewContact(phone_number="+14155550107", name="Mary Jackson", contact_type="contact")
    with pytest.raises(CrmHttpError) as refused:
        await env.connector.create_contact(env.call, new)
    assert refused.value.status == 404
    created = await env.connector.create_contact(env.call, new)
    assert created is not None
    assert len(env.fake.requests_to("/api/v2/persons", "POST")) == 2
    assert len(env.fake.requests_to("/v1/persons", "POST")) == 1  # the one try after the 404, answered 410


async def test_create_contact_links_organisation(env: Env) -> None:
    org = env.fake.add_org("NASA")
    created = await env.connector.create_contact(
        env.call,
        NewContact(
            phone_number="+14155550104",
            name="Katherine Johnson",
            contact_type="",
            additional_submission={"orgId": str(org["id"])},
        ),
    )
    assert created is not None
    assert env.fake.persons[int(created.contact.id)]["org_id"] == org["id"]


# --- call logs ----------------------------------------------------------------------------------------------


async def test_create_call_log_writes_done_activity_on_deal(env: Env) -> None:
    org = env.fake.add_org("Acme")
    maya = env.fake.add_person("Maya Patel", phones=["+14155550142"], org_id=org["id"])
    deal = env.fake.add_deal("Renewal", person_id=maya["id"])
    lead = env.fake.add_lead("Upsell", person_id=maya["id"])
    result = await env.connector.create_call_log(
        env.call,
        CallLogCreate(
            contact=_ref(maya),
            call=_call(),
            composed_log_details=COMPOSED,
            additional_submission={"deals": str(deal["id"]), "leads": lead["id"]},
        ),
    )
    assert result.log_id is not None
    activity = env.fake.activity(result.log_id)
    assert activity["subject"] == "Inbound Call from Maya Patel"
    assert activity["type"] == "call"
    assert activity["owner_id"] == 12345
    assert activity["duration"] == "00:09"
    assert (activity["due_date"], activity["due_time"]) == ("2026-03-12", "14:35")
    assert activity["done"] is True
    # the session marker lets an unanswered create be found again (find_call_log)
    assert activity["note"] == COMPOSED + "<br><small>[rc-call-s-1]</small>"
    assert activity["participants"] == [{"person_id": maya["id"], "primary": True}]
    assert activity["person_id"] == maya["id"]
    assert (activity["deal_id"], activity["lead_id"], activity["org_id"]) == (deal["id"], None, org["id"])


async def test_create_call_log_on_lead_with_custom_subject(env: Env) -> None:
    maya = env.fake.add_person("Maya Patel", phones=["+14155550142"])
    lead = env.fake.add_lead("Upsell", person_id=maya["id"])
    result = await env.connector.create_call_log(
        env.call,
        CallLogCreate(
            contact=_ref(maya),
            call=_call("Outbound", subject="Quarterly check-in"),
            composed_log_details=COMPOSED,
            additional_submission={"leads": lead["id"]},
        ),
    )
    activity = env.fake.activity(str(result.log_id))
    assert activity["subject"] == "Quarterly check-in"
    assert (activity["deal_id"], activity["lead_id"], activity["org_id"]) == (None, lead["id"], None)
    default = await env.connector.create_call_log(
        env.call, CallLogCreate(contact=_ref(maya), call=_call("Outbound"), composed_log_details=COMPOSED)
    )
    assert env.fake.activity(str(default.log_id))["subject"] == "Outbound Call to Maya Patel"


async def test_activity_type_admin_setting_wins(env: Env) -> None:
    env.fake.add_activity_type("Phone (logged)", "logged_phone")
    maya = env.fake.add_person("Maya Patel")
    call = CrmCall(user=_user(pipedriveCallActivityType="logged_phone"), auth_header="", http=env.http)
    for _ in range(2):
        result = await env.connector.create_call_log(
            call, CallLogCreate(contact=_ref(maya), call=_call(), composed_log_details=COMPOSED)
        )
        assert env.fake.activity(str(result.log_id))["type"] == "logged_phone"
    assert len(env.fake.requests_to("/v1/activityTypes")) == 1  # checked against the cached active types


async def test_a_deactivated_admin_activity_type_falls_back_to_a_named_one(env: Env) -> None:
    """Pipedrive refuses (400) a type that is not active: the setting is checked, then a type named "call"."""
    env.fake.add_activity_type("Phone (old)", "old_phone", active=False)
    maya = env.fake.add_person("Maya Patel")
    call = CrmCall(user=_user(pipedriveCallActivityType="old_phone"), auth_header="", http=env.http)
    for _ in range(2):
        result = await env.connector.create_call_log(
            call, CallLogCreate(contact=_ref(maya), call=_call(), composed_log_details=COMPOSED)
        )
        assert result.log_id is not None
        assert env.fake.activity(str(result.log_id))["type"] == "call"
    assert [r.json["type"] for r in env.fake.requests_to("/api/v2/activities", "POST")] == ["call", "call"]
    assert len(env.fake.requests_to("/v1/activityTypes")) == 1  # a list younger than the recheck age is kept


async def test_an_admin_activity_type_deactivated_after_caching_is_replaced_on_its_400(env: Env) -> None:
    env.fake.add_activity_type("Phone (logged)", "logged_phone")
    maya = env.fake.add_person("Maya Patel")
    call = CrmCall(user=_user(pipedriveCallActivityType="logged_phone"), auth_header="", http=env.http)
    log = CallLogCreate(contact=_ref(maya), call=_call(), composed_log_details=COMPOSED)
    first = await env.connector.create_call_log(call, log)
    assert env.fake.activity(str(first.log_id))["type"] == "logged_phone"
    env.fake.set_activity_types([("Call", "call", True), ("Phone (logged)", "logged_phone", False)])
    second = await env.connector.create_call_log(call, log)
    assert second.log_id is not None and env.fake.activity(str(second.log_id))["type"] == "call"
    assert len(env.fake.activities) == 2  # the refused create made nothing
    assert len(env.fake.requests_to("/v1/activityTypes")) == 2


async def test_an_sms_type_deactivated_with_no_other_gives_the_warning_not_a_400(env: Env) -> None:
    env.fake.set_activity_types([("Call", "call", True), ("Text", "text_msg", False)])
    maya = env.fake.add_person("Maya Patel")
    call = CrmCall(user=_user(pipedriveSMSActivityType="text_msg"), auth_header="", http=env.http)
    result = await env.connector.create_message_log(
        call,
        MessageLogCreate(
            contact=_ref(maya), message=_sms("m1", "Hello"), conversation_id="c1", conversation_log_id="c1-1"
        ),
    )
    assert result.log_id is None
    assert result.return_message is not None and "SMS activity type" in result.return_message.message
    assert env.fake.activities == {}


async def test_activity_types_are_cached_and_matched_by_name(env: Env) -> None:
    env.fake.set_activity_types(
        [("Meeting", "meeting", True), ("Old call", "old", False), ("Phone Call", "phone_call", True)]
    )
    maya = env.fake.add_person("Maya Patel")
    for _ in range(2):
        result = await env.connector.create_call_log(
            env.call, CallLogCreate(contact=_ref(maya), call=_call(), composed_log_details=COMPOSED)
        )
        assert env.fake.activity(str(result.log_id))["type"] == "phone_call"
    assert len(env.fake.requests_to("/v1/activityTypes")) == 1


async def test_missing_call_activity_type_refetches_once_then_warns(env: Env) -> None:
    env.fake.set_activity_types([("Meeting", "meeting", True)])
    maya = env.fake.add_person("Maya Patel")
    result = await env.connector.create_call_log(
        env.call, CallLogCreate(contact=_ref(maya), call=_call(), composed_log_details=COMPOSED)
    )
    assert result.log_id is None
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert env.fake.activities == {}
    assert len(env.fake.requests_to("/v1/activityTypes")) == 1  # just fetched: not fetched twice in one log
    env.fake.add_activity_type("Call", "call")
    retry = await env.connector.create_call_log(
        env.call, CallLogCreate(contact=_ref(maya), call=_call(), composed_log_details=COMPOSED)
    )
    assert retry.log_id is not None


async def test_get_and_update_call_log(env: Env) -> None:
    maya = env.fake.add_person("Maya Patel")
    deal = env.fake.add_deal("Renewal", person_id=maya["id"])
    created = await env.connector.create_call_log(
        env.call,
        CallLogCreate(
            contact=_ref(maya),
            call=_call(),
            composed_log_details=COMPOSED,
            additional_submission={"deals": deal["id"]},
        ),
    )
    assert created.log_id is not None
    ref = CallLogRef(log_id=created.log_id, contact_id=str(maya["id"]))
    fetched = (await env.connector.get_call_log(env.call, ref)).info
    assert fetched.note == "Asked about the renewalWill call back"
    assert fetched.subject == "Inbound Call from Maya Patel"
    assert fetched.full_body == COMPOSED
    assert fetched.dispositions == {"deals": deal["id"], "leads": None}
    assert fetched.full_log_response["id"] == int(created.log_id)
    assert fetched.contact_name == "Maya Patel"  # API v2 sends no related_objects: read from the person
    new_body = COMPOSED.replace("Will call back", "Called back")
    updated = await env.connector.update_call_log(
        env.call, CallLogUpdate(log=ref, composed_log_details=new_body, subject="Renewal call", duration=125)
    )
    assert updated.updated_note == new_body
    activity = env.fake.activity(created.log_id)
    assert activity["note"] == new_body
    assert (activity["subject"], activity["duration"]) == ("Renewal call", "00:03")
    assert env.fake.requests_to("/api/v2/activities/", "PATCH")[0].json == {
        "note": new_body,
        "subject": "Renewal call",
        "duration": "00:03",
    }


async def test_call_log_contact_name_comes_from_the_activitys_person(env: Env) -> None:
    """API v2's activity carries `person_id` and `participants`, not v1's `related_objects`."""
    maya = env.fake.add_person("Maya Patel")
    created = await env.connector.create_call_log(
        env.call, CallLogCreate(contact=_ref(maya), call=_call(), composed_log_details=COMPOSED)
    )
    assert created.log_id is not None
    ref = CallLogRef(log_id=created.log_id, contact_id=str(maya["id"]))
    assert env.fake.activity(created.log_id)["person_id"] == maya["id"]
    before = len(env.fake.requests)
    assert (await env.connector.get_call_log(env.call, ref)).info.contact_name == "Maya Patel"
    assert [r.path for r in env.fake.requests[before:]] == [
        f"/api/v2/activities/{created.log_id}",
        f"/api/v2/persons/{maya['id']}",
    ]
    env.fake.delete_person(maya["id"])
    gone = (await env.connector.get_call_log(env.call, ref)).info
    assert gone.contact_name is None and gone.note == "Asked about the renewalWill call back"


async def test_upsert_call_disposition_switches_between_deal_and_lead(env: Env) -> None:
    maya = env.fake.add_person("Maya Patel")
    deal = env.fake.add_deal("Renewal", person_id=maya["id"])
    lead = env.fake.add_lead("Upsell", person_id=maya["id"])
    created = await env.connector.create_call_log(
        env.call,
        CallLogCreate(
            contact=_ref(maya),
            call=_call(),
            composed_log_details=COMPOSED,
            additional_submission={"deals": deal["id"]},
        ),
    )
    ref = CallLogRef(log_id=str(created.log_id))
    to_lead = await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(log=ref, dispositions={"leads": lead["id"]})
    )
    assert to_lead.log_id == created.log_id
    assert (env.fake.activity(ref.log_id)["deal_id"], env.fake.activity(ref.log_id)["lead_id"]) == (
        None,
        lead["id"],
    )
    await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(log=ref, dispositions={"deals": str(deal["id"]), "leads": lead["id"]})
    )
    assert (env.fake.activity(ref.log_id)["deal_id"], env.fake.activity(ref.log_id)["lead_id"]) == (
        deal["id"],
        None,
    )
    patches = len(env.fake.requests_to("/api/v2/activities/", "PATCH"))
    empty = DispositionUpdate(log=ref, dispositions={})
    nothing = await env.connector.upsert_call_disposition(env.call, empty)
    assert nothing.log_id is None
    assert len(env.fake.requests_to("/api/v2/activities/", "PATCH")) == patches


# --- message logs -------------------------------------------------------------------------------------------


def _sms(msg_id: str, text: str, direction: str = "Inbound", at: str = "2026-03-12T14:35:20.000Z") -> Message:
    return Message(id=msg_id, type="SMS", direction=direction, subject=text, creation_time=at)


async def test_message_log_conversation_grows(env: Env) -> None:
    maya = env.fake.add_person("Maya Patel", phones=["+14155550142"])
    deal = env.fake.add_deal("Renewal", person_id=maya["id"])
    created = await env.connector.create_message_log(
        env.call,
        MessageLogCreate(
            contact=_ref(maya),
            message=_sms("m1", "Hi <there> & welcome"),
            conversation_id="c1",
            conversation_log_id="c1-2026-03-12",
            additional_submission={"deals": deal["id"]},
        ),
    )
    assert created.log_id is not None
    activity = env.fake.activity(created.log_id)
    assert activity["subject"] == "SMS conversation with Maya Patel - 26/03/12"
    assert activity["type"] == "sms"
    assert activity["deal_id"] == deal["id"]
    assert (activity["due_date"], activity["due_time"], activity["done"]) == ("2026-03-12", "14:35", True)
    assert "Conversation(1 messages)" in activity["note"]
    assert "Hi &lt;there&gt; &amp; welcome" in activity["note"]
    assert "<b>Jordan Lee</b>" in activity["note"]

    await env.connector.update_message_log(
        env.call,
        MessageLogUpdate(
            contact=_ref(maya),
            message=_sms("m2", "Thanks!", "Outbound", "2026-03-12T15:01:00.000Z"),
            log_id=created.log_id,
            conversation_log_id="c1-2026-03-12",
            additional_submission={"deals": deal["id"]},
        ),
    )
    note = env.fake.activity(created.log_id)["note"]
    assert "Conversation(2 messages)" in note
    first = note.index("Maya Patel (+14155550142) 02:35 PM")
    second = note.index("Jordan Lee 03:01 PM<br><b>Thanks!</b>")
    assert first < second < note.index("</ul>------------<br>END")
    assert "[rc-msg-m1]" in note and "[rc-msg-m2]" in note

    # the same append sent again (its first answer lost) finds the message's tag: nothing is written
    patches = len(env.fake.requests_to("/api/v2/activities/", "PATCH"))
    await env.connector.update_message_log(
        env.call,
        MessageLogUpdate(
            contact=_ref(maya),
            message=_sms("m2", "Thanks!", "Outbound", "2026-03-12T15:01:00.000Z"),
            log_id=created.log_id,
            conversation_log_id="c1-2026-03-12",
        ),
    )
    assert env.fake.activity(created.log_id)["note"] == note
    assert len(env.fake.requests_to("/api/v2/activities/", "PATCH")) == patches


async def test_message_log_without_sms_activity_type_is_not_logged(env: Env) -> None:
    env.fake.set_activity_types([("Call", "call", True)])
    maya = env.fake.add_person("Maya Patel")
    result = await env.connector.create_message_log(
        env.call,
        MessageLogCreate(
            contact=_ref(maya), message=_sms("m1", "Hi"), conversation_id="c1", conversation_log_id="c1-d"
        ),
    )
    assert result.log_id is None
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert env.fake.activities == {}


async def test_voicemail_message_log(env: Env) -> None:
    maya = env.fake.add_person("Maya Patel")
    result = await env.connector.create_message_log(
        env.call,
        MessageLogCreate(
            contact=_ref(maya),
            message=_sms("m1", ""),
            conversation_id="c1",
            conversation_log_id="c1-d",
            recording_link="https://media.example.test/vm/1?a=1&b=2",
        ),
    )
    activity = env.fake.activity(str(result.log_id))
    assert activity["subject"] == "Voicemail left by Maya Patel - 26/03/12"
    assert 'href="https://media.example.test/vm/1?a=1&amp;b=2"' in activity["note"]


#: the reference's Pipedrive calls per lookup (`src/connectors/pipedrive/index.ts`, lines 192-235): one person
#: search, then per person found its open deals and its leads
def _reference_lookup_calls(persons: int) -> int:
    return 1 + 2 * persons


@pytest.mark.parametrize("persons", [0, 1, 3])
async def test_a_lookup_costs_no_more_calls_than_the_reference(env: Env, persons: int) -> None:
    """Pipedrive's search compares digits: one search finds every spelling, as the reference's does."""
    spellings = ["(415) 555-0104", "+1 415 555 0104", "415.555.0104"]
    for n in range(persons):
        env.fake.add_person(f"Caller {n}", phones=[spellings[n]])
    before = len(env.fake.requests)
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550104"))
    calls = len(env.fake.requests) - before
    print(
        f"pipedrive lookup ({persons} found): {calls} CRM calls (reference {_reference_lookup_calls(persons)})"
    )
    assert len([c for c in matches.contacts if not c.is_new_contact]) == persons
    assert calls <= _reference_lookup_calls(persons)

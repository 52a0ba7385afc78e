"""The Insightly connector driven against FakeInsightly over loopback HTTP: what it finds and what Insightly holds.

Phone matching: Insightly's search compares the stored text exactly, so the connector asks for the spellings
people commonly store. Found without any setting: E.164 (`+14155550100`), the bare national number
(`4155550100`), the national spelling (`(415) 555-0100`, `020 7946 0018`, `030 123456`, `02 9876 5432`), the
national digits with the trunk prefix (`02079460018`), the international spelling with dashes or spaces
(`+1 415-555-0100`, `+1 415 555 0100`, `+44 20 7946 0018`), and for North American numbers `415-555-0100` and
`415.555.0100`. Not found by an exact search: a number with an extension (`+1 415 555 0100 x12`) or any other
grouping (`415 5550100`) unless the user's overridingFormat renders it; nothing short of searching every
record could find those.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fake_insightly import FakeInsightly

from appconnect.connectors.insightly import InsightlyConnector
from appconnect.connectors.insightly.connector import ApiUrlRefused, insightly_terms
from appconnect.connectors.sdk import (
    CallLogCreate,
    CallLogRef,
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
    UserView,
    stored_user_id,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client


@dataclass
class Env:
    fake: FakeInsightly
    connector: InsightlyConnector
    call: CrmCall


@pytest.fixture
async def env(fake_insightly: FakeInsightly) -> AsyncIterator[Env]:
    connector = InsightlyConnector(ConnectorConfig({"base_url": fake_insightly.base_url}))
    transport = build_transport_client(connect_timeout=2, read_timeout=2)
    user_id = fake_insightly.user_id_of(fake_insightly.default_key)
    user = UserView(
        id=stored_user_id("insightly", user_id, fake_insightly.instance_id),
        platform="insightly",
        hostname="",
        timezone_offset="+00:00",
    )
    auth = "Basic " + connector.basic_auth(fake_insightly.default_key)
    http = CrmHttpClient(transport, base_url=connector.base_url(user), auth_header=auth)
    yield Env(fake_insightly, connector, CrmCall(user, auth, http))
    await transport.aclose()


def with_settings(env: Env, **settings: str) -> CrmCall:
    user = env.call.user
    user.user_settings = {k: {"value": v} for k, v in settings.items()}
    return env.call


async def found_ids(env: Env, phone: str, overriding_format: str = "") -> list[str]:
    matches = await env.connector.find_contact(
        env.call, ContactLookup(phone, overriding_format=overriding_format)
    )
    assert matches.successful
    return [c.id for c in matches.contacts if not c.is_new_contact]


FOUND = [
    ("+14155550100", "+14155550100"),
    ("4155550100", "+14155550100"),
    ("(415) 555-0100", "+14155550100"),
    ("+1 415-555-0100", "+14155550100"),
    ("+1 415 555 0100", "+14155550100"),
    ("415-555-0100", "+14155550100"),
    ("415.555.0100", "+14155550100"),
    ("020 7946 0018", "+442079460018"),
    ("02079460018", "+442079460018"),
    ("+44 20 7946 0018", "+442079460018"),
    ("030 123456", "+4930123456"),
    ("+49 30 123456", "+4930123456"),
    ("02 9876 5432", "+61298765432"),
    ("+61 2 9876 5432", "+61298765432"),
]


@pytest.mark.parametrize(("stored", "caller"), FOUND)
async def test_numbers_stored_in_common_formats_are_found(env: Env, stored: str, caller: str) -> None:
    contact = env.fake.add_contact("Maya", "Patel", phone=stored)
    lead = env.fake.add_lead("Sam", "Rivera", mobile=stored)
    assert await found_ids(env, caller) == [str(contact["CONTACT_ID"]), str(lead["LEAD_ID"])]


async def test_a_lead_is_found_by_its_mobile(env: Env) -> None:
    """A Lead's mobile is `MOBILE` (a Contact's is `PHONE_MOBILE`): searched there and re-checked there."""
    lead = env.fake.add_lead("Sam", "Rivera", mobile="(415) 555-0100")
    contact = env.fake.add_contact("Maya", "Patel", mobile="(415) 555-0100")
    assert await found_ids(env, "+14155550100") == [str(contact["CONTACT_ID"]), str(lead["LEAD_ID"])]
    lead_fields = {r.query.get("field_name") for r in env.fake.requests_to("/v3.1/leads/search")}
    assert lead_fields == {"PHONE", "MOBILE"}


@pytest.mark.parametrize("stored", ["+1 415 555 0100 x12", "415 5550100", "1-415-555-0100 ext. 7"])
async def test_what_an_exact_search_cannot_find(env: Env, stored: str) -> None:
    env.fake.add_contact("Maya", "Patel", phone=stored)
    assert await found_ids(env, "+14155550100") == []


async def test_overriding_format_finds_a_users_own_spelling(env: Env) -> None:
    contact = env.fake.add_contact("Maya", "Patel", phone="415 5550100")
    assert await found_ids(env, "+14155550100", "*** *******") == [str(contact["CONTACT_ID"])]


async def test_a_loose_answer_never_yields_a_wrong_person(env: Env) -> None:
    """Whatever a search answers, only records holding the caller's number come back."""
    wrong = {"CONTACT_ID": 77, "FIRST_NAME": "Wrong", "LAST_NAME": "Person", "PHONE": "+1 415 555 0199"}
    env.fake.inject(200, times=1000, path_prefix="/v3.1/contacts/search", body=[wrong])
    assert await found_ids(env, "+14155550100") == []


async def test_extra_phone_fields_are_searched_and_rechecked(env: Env) -> None:
    contact = env.fake.add_contact("Maya", "Patel", custom={"Work_Phone__c": "(415) 555-0100"})
    lead = env.fake.add_lead(None, "Rivera", custom={"Desk__c": "(415) 555-0100"})
    assert await found_ids(env, "+14155550100") == []
    with_settings(
        env,
        insightlyExtraPhoneFieldNameForContact="Work_Phone__c, bad field;drop",
        insightlyExtraPhoneFieldNameForLead="Desk__c",
    )
    assert await found_ids(env, "+14155550100") == [str(contact["CONTACT_ID"]), str(lead["LEAD_ID"])]
    names = {r.query.get("field_name") for r in env.fake.requests}
    assert "bad field;drop" not in names and "Work_Phone__c" in names


async def test_a_contacts_organisation_is_named_from_its_id(env: Env) -> None:
    """A Contact has ORGANISATION_ID but no ORGANISATION_NAME: the name comes from the organisation itself."""
    acme = env.fake.add_organisation("Acme Ltd")
    env.fake.add_contact("Maya", "Patel", phone="+14155550100", organisation_id=acme["ORGANISATION_ID"])
    lead = env.fake.add_lead("Sam", "Rivera", phone="+14155550100", ORGANISATION_NAME="Rivera & Co")
    assert "ORGANISATION_NAME" not in env.fake.all_contacts()[0]
    matches = await env.connector.find_contact(env.call, ContactLookup("+14155550100"))
    by_type = {c.type: c for c in matches.contacts if not c.is_new_contact}
    assert by_type["contact"].organization == "Acme Ltd"
    assert by_type["contact"].additional_info["organisation"] == [
        {"const": str(acme["ORGANISATION_ID"]), "title": "Acme Ltd"}
    ]
    assert (by_type["lead"].id, by_type["lead"].organization) == (str(lead["LEAD_ID"]), "Rivera & Co")


async def test_a_refused_extra_field_costs_that_field_only(env: Env) -> None:
    """A mistyped or deleted custom field (Insightly: 400) is skipped after one search; the lookup goes on."""
    contact = env.fake.add_contact("Maya", "Patel", phone="(415) 555-0100")
    lead = env.fake.add_lead(None, "Rivera", custom={"Desk__c": "(415) 555-0100"})
    with_settings(
        env,
        insightlyExtraPhoneFieldNameForContact="Deleted_Field__c",
        insightlyExtraPhoneFieldNameForLead="Mistyped__c, Desk__c",
    )
    assert await found_ids(env, "+14155550100") == [str(contact["CONTACT_ID"]), str(lead["LEAD_ID"])]
    searched = [r.query.get("field_name") for r in env.fake.requests_to("/v3.1/")]
    assert searched.count("Deleted_Field__c") == 1 and searched.count("Mistyped__c") == 1
    # searched in every wave up to the one that found `(415) 555-0100`
    waves = searched.count("PHONE_MOBILE")
    assert waves > 1 and searched.count("Desk__c") == waves


async def test_a_refused_standard_field_still_fails_the_lookup(env: Env) -> None:
    """Only the user's own fields are skipped: a failing standard search is a failed lookup, not a miss."""
    env.fake.inject(400, times=1000, path_prefix="/v3.1/leads/search")
    with pytest.raises(CrmHttpError):
        await env.connector.find_contact(env.call, ContactLookup("+14155550100"))


def test_search_terms_cover_the_hand_typed_spellings() -> None:
    terms = insightly_terms("+14155550100")
    for wanted in ("+14155550100", "4155550100", "(415) 555-0100", "+1 415 555 0100", "415.555.0100"):
        assert wanted in terms
    assert len(terms) == len(set(terms))


@pytest.mark.parametrize(
    ("pasted", "origin"),
    [
        ("https://api.na1.insightly.com/v3.1/", "https://api.na1.insightly.com"),
        ("https://API.EU1.insightly.com", "https://api.eu1.insightly.com"),
        (" https://api.au1.insightly.com/v3.0 ", "https://api.au1.insightly.com"),
        ("https://api.na1.insightly.com:443/v3.1", "https://api.na1.insightly.com"),
    ],
)
def test_pod_urls_are_reduced_to_their_origin(pasted: str, origin: str) -> None:
    assert InsightlyConnector().api_base(pasted) == origin


@pytest.mark.parametrize(
    "pasted",
    [
        "https://insightly.com.evil.test",
        "https://evil.test/?x=.insightly.com",
        "https://evil.test#.insightly.com",
        "https://user:pw@api.na1.insightly.com",
        "https://api.na1.insightly.com\\@evil.test",
        "https://api.na1.insightly.com/v3.1/../../redirect",
        "ftp://api.na1.insightly.com",
        "https://api.na1.insightly.com:8080",
        "https://127.0.0.1/v3.1",
        "https://api.na1.insightly.com/v3.1\n.evil.test",
        "javascript:alert(1)",
    ],
)
def test_hostile_pod_urls_are_refused(pasted: str) -> None:
    with pytest.raises(ApiUrlRefused):
        InsightlyConnector().api_base(pasted)


async def test_the_stored_id_names_the_instance_or_else_the_pod(env: Env) -> None:
    """USER_IDs are unique only inside one Insightly instance: the stored id carries the instance."""
    user_id = env.fake.user_id_of(env.fake.default_key)
    request = LoginRequest(
        auth_header=env.call.auth_header, hostname="", platform="insightly", http=env.call.http
    )
    result = await env.connector.get_user_info(request)
    assert result.successful is True and result.user is not None
    assert result.user.id == f"{user_id}~880001-insightly"
    assert result.user.account_id == "880001"
    viewed = UserView(id=result.user.id, platform="insightly", hostname="")
    assert viewed.crm_user_id == str(user_id)  # OWNER_USER_ID stays the bare Insightly id

    env.fake.instance_id = None  # an answer without INSTANCE_ID: the pod's host names the tenant
    try:
        env.fake.reset()
        result = await env.connector.get_user_info(request)
    finally:
        env.fake.instance_id = 880001
        env.fake.reset()
    assert result.successful is True and result.user is not None
    assert result.user.id == f"{user_id}~127.0.0.1-insightly"
    assert result.user.account_id is None


async def test_login_refuses_before_calling_and_base_url_fails_closed(env: Env) -> None:
    strict = InsightlyConnector()
    result = await strict.get_user_info(
        LoginRequest(
            auth_header=env.call.auth_header,
            hostname="",
            platform="insightly",
            http=env.call.http,
            additional_info={"apiUrl": env.fake.base_url},
        )
    )
    assert result.successful is False
    assert env.fake.requests == []
    tampered = UserView(
        id="1-insightly",
        platform="insightly",
        hostname="",
        platform_additional_info={"apiUrl": "https://evil.test"},
    )
    assert strict.base_url(tampered).endswith(".invalid")


def _call_log(contact_id: int, session_id: str = "s-1") -> CallLogCreate:
    return CallLogCreate(
        contact=ContactRef(
            id=str(contact_id), phone_number="+14155550100", type="contact", name="Maya Patel"
        ),
        call=CallRecord(session_id=session_id, start_time="2026-03-12T14:35:20.000Z", duration=60),
        composed_log_details="- Note: hello\n- Duration: 1 minute",
    )


async def test_failed_link_is_reported_unknown_and_find_call_log_links_once(env: Env) -> None:
    contact = env.fake.add_contact("Maya", "Patel", phone="+14155550100")
    log = _call_log(contact["CONTACT_ID"])
    env.fake.inject(400, path_prefix="/v3.1/events/", method="POST")
    with pytest.raises(CrmHttpError) as failure:
        await env.connector.create_call_log(env.call, log)
    assert failure.value.status is None and failure.value.outcome_unknown
    [event] = env.fake.all_events()
    assert event["LINKS"] == []
    for _ in range(2):  # finding it again is idempotent: still one link
        assert await env.connector.find_call_log(env.call, log) == str(event["EVENT_ID"])
    [event] = env.fake.all_events()
    assert [(lk["LINK_OBJECT_NAME"], lk["LINK_OBJECT_ID"]) for lk in event["LINKS"]] == [
        ("Contact", contact["CONTACT_ID"])
    ]
    assert await env.connector.find_call_log(env.call, _call_log(contact["CONTACT_ID"], "s-other")) is None


async def test_message_append_sent_twice_appends_once(env: Env) -> None:
    contact = env.fake.add_contact("Maya", "Patel", phone="+14155550100")
    ref = ContactRef(
        id=str(contact["CONTACT_ID"]), phone_number="+14155550100", type="contact", name="Maya Patel"
    )
    first = Message(id="m-1", subject="Is it ready?", creation_time="2026-03-12T14:35:20.000Z")
    created = await env.connector.create_message_log(
        env.call,
        MessageLogCreate(contact=ref, message=first, conversation_id="c", conversation_log_id="c-day"),
    )
    assert created.log_id
    second = Message(id="m-2", direction="Outbound", subject="Yes", creation_time="2026-03-12T14:40:00.000Z")
    update = MessageLogUpdate(contact=ref, message=second, log_id=created.log_id, conversation_log_id="c-day")
    for _ in range(2):
        await env.connector.update_message_log(env.call, update)
    details = env.fake.event(created.log_id)["DETAILS"]
    assert details.count("Yes\n") == 1 and "Conversation(2 messages)" in details
    assert len(env.fake.requests_to("/v3.1/events", "PUT")) == 1


async def test_disposition_replaces_a_link_of_the_same_kind_and_keeps_the_rest(env: Env) -> None:
    contact = env.fake.add_contact("Maya", "Patel", phone="+14155550100")
    old, new = env.fake.add_organisation("Old Ltd"), env.fake.add_organisation("New Ltd")
    project = env.fake.add_project("Rollout")
    log = _call_log(contact["CONTACT_ID"])
    log.additional_submission = {"organisation": old["ORGANISATION_ID"], "project": project["PROJECT_ID"]}
    created = await env.connector.create_call_log(env.call, log)
    assert created.log_id
    result = await env.connector.upsert_call_disposition(
        env.call,
        DispositionUpdate(CallLogRef(created.log_id), {"organisation": str(new["ORGANISATION_ID"])}),
    )
    assert result.log_id == created.log_id
    kept = sorted(
        (lk["LINK_OBJECT_NAME"], lk["LINK_OBJECT_ID"]) for lk in env.fake.event(created.log_id)["LINKS"]
    )
    assert kept == [
        ("Contact", contact["CONTACT_ID"]),
        ("Organisation", new["ORGANISATION_ID"]),
        ("Project", project["PROJECT_ID"]),
    ]
    nothing = await env.connector.upsert_call_disposition(
        env.call, DispositionUpdate(CallLogRef(created.log_id), {})
    )
    assert nothing.log_id is None


async def test_name_search_finds_contacts_and_leads(env: Env) -> None:
    contact = env.fake.add_contact("Maya", "Patel")
    lead = env.fake.add_lead("Maya", "Patel")
    env.fake.add_contact("Maya", "Other")
    matches = await env.connector.find_contact_with_name(env.call, "Maya Patel")
    assert sorted((c.type or "", c.id) for c in matches.contacts) == [
        ("contact", str(contact["CONTACT_ID"])),
        ("lead", str(lead["LEAD_ID"])),
    ]


async def test_the_marker_search_names_no_field_and_keeps_to_the_users_own_events(env: Env) -> None:
    """`Events/Search` by `updated_after_utc` alone (the description's optional field_name is not used: that
    OWNER_USER_ID is searchable is described nowhere); an event of another user with the marker is not adopted."""
    contact = env.fake.add_contact("Maya", "Patel", phone="+14155550100")
    log = _call_log(contact["CONTACT_ID"])
    other = env.fake.add_user("Kim", "Other")
    await env.connector.create_call_log(env.call, log)
    [event] = env.fake.all_events()
    with env.fake._lock:  # the event now belongs to someone else
        env.fake.events[event["EVENT_ID"]]["OWNER_USER_ID"] = env.fake.user_id_of(other)
    assert await env.connector.find_call_log(env.call, log) is None
    [search] = env.fake.requests_to("/v3.1/events/search")
    assert "field_name" not in search.query and "field_value" not in search.query
    assert search.query["updated_after_utc"] == "2026-03-12T13:35:20Z"


async def test_event_dates_are_sent_as_the_descriptions_date_time(env: Env) -> None:
    """START_DATE_UTC / END_DATE_UTC in RFC 3339 UTC, as the description types them and the reference sends."""
    contact = env.fake.add_contact("Maya", "Patel", phone="+14155550100")
    await env.connector.create_call_log(env.call, _call_log(contact["CONTACT_ID"]))
    [create] = [r for r in env.fake.requests_to("/v3.1/events", method="POST") if r.path == "/v3.1/events"]
    assert (create.json["START_DATE_UTC"], create.json["END_DATE_UTC"]) == (
        "2026-03-12T14:35:20Z",
        "2026-03-12T14:36:20Z",
    )

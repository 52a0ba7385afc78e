"""The NetSuite connector driven against FakeNetSuite: what it sends and what NetSuite ends up holding."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fake_netsuite import DEFAULT_ACCOUNT, RECORD_PREFIX, SUITEQL_PATH, FakeNetSuite, api_host

from appconnect.connectors.netsuite import NetSuiteConnector
from appconnect.connectors.netsuite.connector import account_id, account_label
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
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    UserView,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

COMPOSED = "- Note: Asked about the renewal\n- Date/time: 2026-03-12 02:35:20 PM\n- Duration: 8 minutes"


@dataclass
class Env:
    fake: FakeNetSuite
    connector: NetSuiteConnector
    call: CrmCall


@pytest.fixture
async def env(fake_netsuite: FakeNetSuite) -> AsyncIterator[Env]:
    connector = NetSuiteConnector(ConnectorConfig(fake_netsuite.connector_config()))
    tokens = fake_netsuite.issue_tokens(DEFAULT_ACCOUNT)
    auth = f"Bearer {tokens.access_token}"
    user = UserView(
        id=f"1~{DEFAULT_ACCOUNT}-netsuite",
        platform="netsuite",
        hostname="1234567-sb1.app.netsuite.com",
        timezone_offset="+00:00",
        platform_additional_info={"name": "Alex Agent", "subsidiaryId": "1"},
    )
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=connector.base_url(user), auth_header=auth)
        yield Env(fake_netsuite, connector, CrmCall(user=user, auth_header=auth, http=http))
    finally:
        await client.aclose()


def _call(session_id: str = "s-1") -> CallRecord:
    contact = CallParty(phone_number="+14155550142", name="Maya Patel")
    agent = CallParty(phone_number="+14155550101", name="Jordan Lee")
    return CallRecord(
        session_id=session_id,
        direction="Inbound",
        start_time="2026-03-12T14:35:20.000Z",
        duration=487,
        from_party=contact,
        to_party=agent,
    )


async def _found(env: Env, phone: str) -> list[tuple[str, str | None]]:
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number=phone))
    return [(c.id, c.type) for c in matches.contacts]


# --- the account's host ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1234567_SB1", "1234567_SB1"),
        ("1234567-sb1", "1234567_SB1"),
        ("1234567-SB1.app.netsuite.com", "1234567_SB1"),
        ("https://1234567-sb1.app.netsuite.com/app/center/card.nl", "1234567_SB1"),
        ("7654321.suitetalk.api.netsuite.com", "7654321"),
        ("", None),
        ("evil.example.com/x", None),
    ],
)
def test_account_id_from_what_the_user_gives(given: str, expected: str | None) -> None:
    assert account_id(given) == expected


def test_the_api_host_is_the_account_id_lower_cased_with_dashes() -> None:
    connector = NetSuiteConnector(ConnectorConfig({"client_id": "c"}))
    assert account_label("1234567_SB1") == "1234567-sb1"
    user = UserView(id="", platform="netsuite", hostname="1234567_SB1")
    assert connector.base_url(user) == "https://1234567-sb1.suitetalk.api.netsuite.com"
    info = connector.oauth_info("1234567-SB1.app.netsuite.com")
    assert (
        info.access_token_uri
        == "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
    )
    assert (
        info.revoke_uri
        == "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/revoke"
    )
    assert info.authorization_uri == "https://1234567-sb1.app.netsuite.com/app/login/oauth2/authorize.nl"
    assert info.hostname == "1234567-sb1.app.netsuite.com"
    assert connector.oauth_info("not a host!").fail_message


async def test_requests_go_to_the_lower_cased_dashed_host(env: Env) -> None:
    await _found(env, "+14155550142")
    hosts = set(env.fake.snapshot(env.fake.hosts_seen))
    assert hosts == {"1234567-sb1.suitetalk.api.netsuite.com"}


def test_the_fake_knows_no_host_spelled_with_the_underscore(fake_netsuite: FakeNetSuite) -> None:
    import httpx

    tokens = fake_netsuite.issue_tokens(DEFAULT_ACCOUNT)
    answer = httpx.post(
        fake_netsuite.url("1234567_sb1.suitetalk.api.netsuite.com", SUITEQL_PATH),
        json={"q": "SELECT id FROM contact"},
        headers={"Authorization": f"Bearer {tokens.access_token}", "Prefer": "transient"},
    )
    assert answer.status_code == 404


# --- SuiteQL -----------------------------------------------------------------------------------------------


async def test_every_suiteql_query_says_prefer_transient(env: Env) -> None:
    env.fake.add_contact("Maya Patel", "(415) 555-0142")
    await _found(env, "+14155550142")
    queries = env.fake.requests_to(env.fake.path(SUITEQL_PATH), "POST")
    assert queries and all(r.headers.get("prefer") == "transient" for r in queries)
    assert all(r.query == {"limit": "1000", "offset": "0"} for r in queries)


async def test_user_list_reads_every_page_of_a_thousand_rows(env: Env) -> None:
    for n in range(1, 1500):
        env.fake.add_employee(DEFAULT_ACCOUNT, f"E{n}", "Mployee", f"e{n}@example.com" if n % 7 else None)
    users = await env.connector.get_user_list(env.call)
    emails = {u.email for u in users}
    assert len(users) == 1 + len([n for n in range(1, 1500) if n % 7])
    assert "e1499@example.com" in emails and "alex@example.com" in emails
    pages = [r.query["offset"] for r in env.fake.requests_to(env.fake.path(SUITEQL_PATH), "POST")]
    assert pages == ["0", "1000"]


# --- lookup ------------------------------------------------------------------------------------------------


async def test_lookup_finds_contacts_customers_and_leads_in_any_format(env: Env) -> None:
    contact = env.fake.add_contact("Maya Patel", "(415) 555-0142")
    customer = env.fake.add_customer("Omar Haddad", "+1 415.555.0142")
    lead = env.fake.add_customer("Lena Fischer", "4155550142 x12", stage="LEAD")
    prospect = env.fake.add_customer("Ravi Shah", "415-555-0142", stage="PROSPECT")
    env.fake.add_contact("Someone Else", "(415) 555-0143")
    found = await _found(env, "+14155550142")
    assert found == [
        (str(contact["id"]), "contact"),
        (str(customer["id"]), "custjob"),
        (str(lead["id"]), "lead"),
        (str(prospect["id"]), "prospect"),
        (PLACEHOLDER_CONTACT_ID, None),
    ]


async def test_lookup_searches_mobile_phones_too(env: Env) -> None:
    contact = env.fake.add_contact("Maya Patel", "+44 20 7946 0018", field_name="mobilePhone")
    assert (str(contact["id"]), "contact") in await _found(env, "+442079460018")


# --- creates: 204 and the id in Location ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "record_type"),
    [
        ("contact", "contact"),
        ("custjob", "customer"),
        ("lead", "customer"),
        ("prospect", "customer"),
        ("vendor", "vendor"),
    ],
)
async def test_placeholder_contact_id_comes_from_location(env: Env, kind: str, record_type: str) -> None:
    created = await env.connector.create_contact(
        env.call, NewContact(phone_number="+14155550199", name="Ada Lovelace", contact_type=kind)
    )
    assert created is not None
    account = env.fake.snapshot(env.fake.account())
    record = account.store(record_type)[int(created.contact.id)]
    assert (record["firstName"], record["lastName"], record["phone"]) == ("Ada", "Lovelace", "+14155550199")
    assert record["subsidiary"] == {"id": "1"}
    assert created.contact.type == kind
    if kind in ("lead", "prospect"):
        assert env.fake.stage_of(record) == kind.upper()
    assert (await _found(env, "+14155550199"))[0] == (created.contact.id, kind)


async def test_a_create_without_location_is_no_id(env: Env) -> None:
    from appconnect.connectors.sdk import CrmAnswerError

    env.fake.send_location = False
    with pytest.raises(CrmAnswerError):
        await env.connector.create_contact(
            env.call, NewContact(phone_number="+14155550198", name="Ada Lovelace", contact_type="contact")
        )


# --- call and message logs ---------------------------------------------------------------------------------


async def test_call_log_is_a_completed_phone_call_on_the_contact(env: Env) -> None:
    contact = env.fake.add_contact("Maya Patel", "(415) 555-0142")
    ref = ContactRef(id=str(contact["id"]), phone_number="+14155550142", type="contact", name="Maya Patel")
    result = await env.connector.create_call_log(
        env.call, CallLogCreate(contact=ref, call=_call(), composed_log_details=COMPOSED)
    )
    assert result.log_id is not None
    call = env.fake.snapshot(env.fake.account().phonecalls)[int(result.log_id)]
    assert call["title"] == "Inbound Call from Maya Patel"
    assert call["contact"] == {"id": str(contact["id"])}
    assert (call["status"], call["startDate"], call["startTime"], call["endTime"]) == (
        "COMPLETE",
        "2026-03-12",
        "14:35",
        "14:43",
    )
    assert call["message"].startswith(COMPOSED)

    fetched = await env.connector.get_call_log(env.call, CallLogRef(log_id=result.log_id))
    assert fetched.info.note == "Asked about the renewal"
    assert "[rc-call-" not in (fetched.info.full_body or "")

    again = await env.connector.find_call_log(
        env.call, CallLogCreate(contact=ref, call=_call(), composed_log_details=COMPOSED)
    )
    assert again == result.log_id

    await env.connector.update_call_log(
        env.call,
        CallLogUpdate(
            log=CallLogRef(log_id=result.log_id),
            composed_log_details="- Note: Call back Friday",
            subject="Renewal call",
            existing_call_log_details=fetched.info.full_log_response,
        ),
    )
    call = env.fake.snapshot(env.fake.account().phonecalls)[int(result.log_id)]
    assert call["title"] == "Renewal call"
    assert call["message"].startswith("- Note: Call back Friday") and "[rc-call-s-1]" in call["message"]
    patches = env.fake.requests_to(env.fake.path(f"{RECORD_PREFIX}/phonecall/"), "PATCH")
    assert len(patches) == 1


async def test_a_customer_call_names_the_customer_as_company(env: Env) -> None:
    customer = env.fake.add_customer("Omar Haddad", "4155550142")
    ref = ContactRef(id=str(customer["id"]), phone_number="+14155550142", type="custjob", name="Omar Haddad")
    result = await env.connector.create_call_log(env.call, CallLogCreate(contact=ref, call=_call()))
    assert result.log_id is not None
    call = env.fake.snapshot(env.fake.account().phonecalls)[int(result.log_id)]
    assert call["company"] == {"id": str(customer["id"])} and "contact" not in call


async def test_sms_conversation_is_one_phone_call_with_appended_messages(env: Env) -> None:
    contact = env.fake.add_contact("Maya Patel", "(415) 555-0142")
    ref = ContactRef(id=str(contact["id"]), phone_number="+14155550142", type="contact", name="Maya Patel")
    first = Message(id="m1", subject="Hello", creation_time="2026-03-12T14:35:20Z")
    created = await env.connector.create_message_log(
        env.call,
        MessageLogCreate(contact=ref, message=first, conversation_id="c1", conversation_log_id="c1-day"),
    )
    assert created.log_id is not None
    second = Message(
        id="m2", subject="Are you there?", direction="Outbound", creation_time="2026-03-12T14:36:00Z"
    )
    update = MessageLogUpdate(
        contact=ref, message=second, log_id=created.log_id, conversation_log_id="c1-day"
    )
    await env.connector.update_message_log(env.call, update)
    await env.connector.update_message_log(env.call, update)  # a re-sent append adds nothing
    call = env.fake.snapshot(env.fake.account().phonecalls)[int(created.log_id)]
    assert call["title"] == "SMS conversation with Maya Patel - 26/03/12"
    assert call["message"].count("Are you there?") == 1
    assert "Conversation(2 messages)" in call["message"]
    assert "Alex Agent" in call["message"]


def test_fake_host_helper() -> None:
    assert api_host("1234567_SB1") == "1234567-sb1.suitetalk.api.netsuite.com"


async def test_lookup_searches_only_the_fields_and_records_the_user_chose(env: Env) -> None:
    env.fake.add_contact("Maya Patel", "(415) 555-0142", field_name="mobilePhone")
    customer = env.fake.add_customer("Omar Haddad", "(415) 555-0142")
    env.call.user.user_settings = {
        "phoneFieldsId": {"value": ["phone"]},
        "contactsSearchId": {"value": ["customer"]},
    }
    assert await _found(env, "+14155550142") == [
        (str(customer["id"]), "custjob"),
        (PLACEHOLDER_CONTACT_ID, None),
    ]
    [query] = env.fake.requests_to(env.fake.path(SUITEQL_PATH), "POST")
    assert (
        query.json is not None
        and "FROM customer" in query.json["q"]
        and "mobilephone" not in query.json["q"].split("WHERE")[1]
    )


# --- vendors -------------------------------------------------------------------------------------------------


async def test_lookup_finds_vendors_people_and_companies(env: Env) -> None:
    person = env.fake.add_vendor("Nora Supplier", "415.555.0142", field_name="altPhone")
    company = env.fake.add_vendor("Acme Supplies", "(415) 555-0142", company=True)
    env.fake.add_vendor("Other Vendor", "(415) 555-0143")
    env.call.user.user_settings = {"enableSalesOrderLogging": {"value": True}}
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550142"))
    vendors = {c.id: c for c in matches.contacts if c.type == "vendor"}
    assert set(vendors) == {str(person["id"]), str(company["id"])}
    assert vendors[str(person["id"])].name == "Nora Supplier"
    assert vendors[str(company["id"])].name == "Acme Supplies"
    # a vendor is offered no sales orders: none is asked for
    assert all(v.additional_info is None for v in vendors.values())
    queries = [str(r.json["q"]) for r in env.fake.requests_to(env.fake.path(SUITEQL_PATH), "POST")]
    assert not [q for q in queries if "FROM transaction" in q]
    [vendor_query] = [q for q in queries if "FROM vendor" in q]
    assert "officephone" not in vendor_query  # a vendor has no office phone


@pytest.mark.parametrize(
    ("chosen", "tables"),
    [
        (["vendor"], {"vendor"}),
        (["contact", "customer"], {"contact", "customer"}),
        ([], {"contact", "customer", "vendor"}),  # nothing picked: the manifest's default, all three
    ],
)
async def test_the_records_searched_follow_the_setting(env: Env, chosen: list[str], tables: set[str]) -> None:
    env.call.user.user_settings = {"contactsSearchId": {"value": chosen}}
    await _found(env, "+14155550142")
    queries = [str(r.json["q"]) for r in env.fake.requests_to(env.fake.path(SUITEQL_PATH), "POST")]
    assert {q.split(" FROM ")[1].split()[0] for q in queries} == tables


async def test_a_role_without_vendors_still_finds_contacts(env: Env) -> None:
    env.fake.account().denied_permissions = {"LIST_VENDOR"}
    contact = env.fake.add_contact("Maya Patel", "(415) 555-0142")
    env.fake.add_vendor("Nora Supplier", "(415) 555-0142")
    assert await _found(env, "+14155550142") == [
        (str(contact["id"]), "contact"),
        (PLACEHOLDER_CONTACT_ID, None),
    ]


async def test_a_vendor_call_names_the_vendor_as_company(env: Env) -> None:
    vendor = env.fake.add_vendor("Acme Supplies", "4155550142", company=True)
    ref = ContactRef(id=str(vendor["id"]), phone_number="+14155550142", type="vendor", name="Acme Supplies")
    result = await env.connector.create_call_log(env.call, CallLogCreate(contact=ref, call=_call()))
    assert result.log_id is not None
    call = env.fake.snapshot(env.fake.account().phonecalls)[int(result.log_id)]
    assert call["company"] == {"id": str(vendor["id"])} and "contact" not in call


def test_the_fake_refuses_a_call_whose_company_is_no_entity(fake_netsuite: FakeNetSuite) -> None:
    """A phone call's `company` must name a customer or vendor that exists (NetSuite: INVALID_KEY_OR_REF)."""
    token = fake_netsuite.issue_tokens(DEFAULT_ACCOUNT).access_token
    answer = httpx.post(
        fake_netsuite.url(api_host(DEFAULT_ACCOUNT), f"{RECORD_PREFIX}/phonecall"),
        json={"title": "x", "company": {"id": "999999"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 400
    assert answer.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_KEY_OR_REF"

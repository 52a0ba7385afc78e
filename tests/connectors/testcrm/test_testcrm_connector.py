"""TestCrmConnector against the real embedded test CRM, over real HTTP."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from appconnect.connectors.sdk import (
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
from appconnect.connectors.testcrm import TestCrmConnector
from appconnect.embedded_crm import create_testcrm_app
from appconnect.outbound.client import CrmHttpClient, CrmTransport, build_transport_client
from tests.support.live_server import serve_asgi

SEED_KEY = "connector-test-key"
ADMIN_TOKEN = "connector-test-admin-token"
_numbers = itertools.count(2000)


def fresh_number() -> str:
    return f"+1650{next(_numbers):07d}"


@pytest.fixture(scope="module")
def crm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db_path = tmp_path_factory.mktemp("testcrm-connector") / "testcrm.sqlite3"
    app = create_testcrm_app(f"sqlite+aiosqlite:///{db_path}", seed_api_key=SEED_KEY, admin_token=ADMIN_TOKEN)
    with serve_asgi(app, lifespan="on") as base_url:
        yield base_url


@pytest.fixture
def connector(crm_url: str) -> TestCrmConnector:
    return TestCrmConnector(ConnectorConfig({"base_url": f"{crm_url}/api/v1"}))


@pytest.fixture
async def transport() -> AsyncIterator[CrmTransport]:
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        yield client
    finally:
        await client.aclose()


def make_http(
    transport: CrmTransport, connector: TestCrmConnector, user: UserView, key: str = SEED_KEY
) -> CrmHttpClient:
    return CrmHttpClient(
        transport, base_url=connector.base_url(user), auth_header="Basic " + connector.basic_auth(key)
    )


@pytest.fixture
def user() -> UserView:
    return UserView(id="1-testcrm", platform="testcrm", hostname="127.0.0.1", timezone_offset="-08:00")


@pytest.fixture
def call(transport: CrmTransport, connector: TestCrmConnector, user: UserView) -> CrmCall:
    http = make_http(transport, connector, user)
    return CrmCall(user=user, auth_header="Basic " + connector.basic_auth(SEED_KEY), http=http)


@pytest.fixture
def crm(crm_url: str) -> Iterator[httpx.Client]:
    """A plain client on the CRM API, to check what the connector actually wrote."""
    headers = {"Authorization": "Basic " + TestCrmConnector().basic_auth(SEED_KEY)}
    with httpx.Client(base_url=f"{crm_url}/api/v1", timeout=10, headers=headers) as client:
        yield client


async def new_contact(
    connector: TestCrmConnector, call: CrmCall, name: str = "Pat Caller", contact_type: str = "lead"
) -> tuple[str, str]:
    number = fresh_number()
    created = await connector.create_contact(
        call, NewContact(phone_number=number, name=name, contact_type=contact_type)
    )
    assert created is not None
    return created.contact.id, number


def call_record(session_id: str, number: str, **extra: Any) -> CallRecord:
    return CallRecord(
        session_id=session_id,
        direction="Inbound",
        start_time="2024-05-01T17:30:00.000Z",
        duration=95,
        result="Call connected",
        from_party=CallParty(phone_number=number),
        to_party=CallParty(phone_number="+16505550000", name="Agent"),
        **extra,
    )


def test_platform_description(connector: TestCrmConnector) -> None:
    entry = connector.manifest_entry()
    assert entry["name"] == connector.platform == "testcrm"
    assert entry["auth"]["type"] == connector.auth_type == "apiKey"
    assert entry["auth"]["apiKey"]["page"]["content"][0]["const"] == "apiKey"
    assert connector.contact_types() == ["contact", "lead"]
    assert connector.log_format == "text/plain"


async def test_get_user_info_with_a_valid_and_an_invalid_key(
    connector: TestCrmConnector, transport: CrmTransport, user: UserView
) -> None:
    request = LoginRequest(
        auth_header="",
        hostname="127.0.0.1",
        platform="testcrm",
        api_key=SEED_KEY,
        http=make_http(transport, connector, user),
    )
    result = await connector.get_user_info(request)
    assert result.successful and result.user is not None
    assert (result.user.id, result.user.name) == ("1-testcrm", "Test CRM User")
    assert (result.user.timezone_name, result.user.timezone_offset) == ("America/Los_Angeles", "-08:00")
    assert result.user.platform_additional_info["email"]
    assert result.return_message is not None and result.return_message.message_type == "success"

    bad = LoginRequest(
        auth_header="",
        hostname="127.0.0.1",
        platform="testcrm",
        api_key="nope",
        http=make_http(transport, connector, user, key="nope"),
    )
    failed = await connector.get_user_info(bad)
    assert not failed.successful and failed.user is None
    assert failed.return_message is not None
    message = failed.return_message
    assert (message.message, message.message_type) == ("Invalid API key.", "danger")


async def test_create_contact_then_find_it(
    connector: TestCrmConnector, call: CrmCall, crm: httpx.Client
) -> None:
    created = await connector.create_contact(
        call, NewContact(phone_number=(number := fresh_number()), name="Nia New", contact_type="lead")
    )
    assert created is not None and created.return_message is not None
    assert (created.contact.name, created.contact.type, created.contact.phone) == ("Nia New", "lead", number)
    stored = crm.get(f"/contacts/{created.contact.id}").json()
    assert stored["phones"] == [{"label": "Work", "number": number}] and stored["type"] == "lead"

    matches = await connector.find_contact(call, ContactLookup(phone_number=number))
    assert matches.successful
    assert [(c.id, c.name, c.phone, c.type) for c in matches.contacts] == [
        (created.contact.id, "Nia New", number, "lead")
    ]
    assert matches.contacts[0].created_date == stored["created_at"]
    assert matches.contacts[0].most_recent_activity_date == stored["updated_at"]
    assert not any(c.is_new_contact for c in matches.contacts)

    by_name = await connector.find_contact_with_name(call, "nia ne")
    assert [c.id for c in by_name.contacts] == [created.contact.id] and by_name.contacts[0].phone == number


async def test_create_contact_defaults_the_type(
    connector: TestCrmConnector, call: CrmCall, crm: httpx.Client
) -> None:
    created = await connector.create_contact(
        call, NewContact(phone_number=fresh_number(), name="No Type", contact_type="")
    )
    assert created is not None and created.contact.type == "contact"
    assert crm.get(f"/contacts/{created.contact.id}").json()["type"] == "contact"


async def test_find_contact_without_match_or_for_an_extension(
    connector: TestCrmConnector, call: CrmCall
) -> None:
    none = await connector.find_contact(call, ContactLookup(phone_number=fresh_number()))
    assert none.successful and none.contacts == []
    extension = await connector.find_contact(call, ContactLookup(phone_number="101", is_extension=True))
    assert not extension.successful and extension.contacts == []


async def test_call_log_lifecycle(connector: TestCrmConnector, call: CrmCall, crm: httpx.Client) -> None:
    contact_id, number = await new_contact(connector, call, "Carla Call")
    ref = ContactRef(id=contact_id, phone_number=number, type="lead", name="Carla Call")
    log = CallLogCreate(
        contact=ref,
        call=call_record("sess-1", number),
        note="Wants a quote",
        composed_log_details="- Note: Wants a quote\n- Duration: 1 minute, 35 seconds\n",
    )
    result = await connector.create_call_log(call, log)
    assert result.log_id is not None and result.return_message is not None
    stored = crm.get(f"/activities/{result.log_id}").json()
    assert stored["contact_id"] == int(contact_id) and stored["kind"] == "call"
    assert stored["subject"] == "Inbound call from Carla Call"
    assert stored["body"] == log.composed_log_details
    assert (stored["direction"], stored["duration_seconds"]) == ("Inbound", 95)
    assert stored["started_at"] == "2024-05-01T17:30:00Z"
    assert stored["external_id"] == "call:sess-1:1-testcrm"

    # after a lost answer the server looks the activity up by its marker before it would create again (the
    # CRM itself merges nothing: a second create would be a second activity)
    assert await connector.find_call_log(call, log) == result.log_id
    assert len(crm.get("/activities", params={"contact_id": contact_id}).json()["data"]) == 1

    fetched = await connector.get_call_log(call, CallLogRef(log_id=result.log_id))
    assert fetched.info.note == "Wants a quote"
    assert fetched.info.subject == "Inbound call from Carla Call"
    assert fetched.info.full_body == log.composed_log_details
    assert fetched.info.full_log_response["id"] == int(result.log_id)

    updated = await connector.update_call_log(
        call,
        CallLogUpdate(
            log=CallLogRef(log_id=result.log_id),
            composed_log_details="- Note: Sent quote\n- Result: Done\n",
            subject="Quote call",
            note="Sent quote",
            duration="120",
        ),
    )
    assert updated.updated_note == "Sent quote" and updated.return_message is not None
    stored = crm.get(f"/activities/{result.log_id}").json()
    assert (stored["subject"], stored["duration_seconds"]) == ("Quote call", 120)
    assert stored["body"] == "- Note: Sent quote\n- Result: Done\n"

    # a non-numeric duration and an empty body leave those fields alone
    await connector.update_call_log(
        call, CallLogUpdate(log=CallLogRef(log_id=result.log_id), duration="pending")
    )
    assert crm.get(f"/activities/{result.log_id}").json()["duration_seconds"] == 120

    disposition = await connector.upsert_call_disposition(
        call, DispositionUpdate(log=CallLogRef(log_id=result.log_id), dispositions={"outcome": "Interested"})
    )
    assert disposition.log_id == result.log_id
    assert crm.get(f"/activities/{result.log_id}").json()["disposition"] == {"outcome": "Interested"}
    fetched = await connector.get_call_log(call, CallLogRef(log_id=result.log_id))
    assert fetched.info.dispositions == {"outcome": "Interested"} and fetched.info.note == "Sent quote"


async def test_call_log_subject_choices_and_body_without_note(
    connector: TestCrmConnector, call: CrmCall, crm: httpx.Client
) -> None:
    contact_id, number = await new_contact(connector, call, "Unnamed In Log")
    outbound = CallRecord(
        session_id="sess-2",
        direction="Outbound",
        duration="pending",
        start_time="not a time",
        to_party=CallParty(phone_number=number),
    )
    result = await connector.create_call_log(
        call,
        CallLogCreate(
            contact=ContactRef(id=contact_id, phone_number=number),
            call=outbound,
            composed_log_details="- Result: Missed\n",
        ),
    )
    assert result.log_id is not None
    stored = crm.get(f"/activities/{result.log_id}").json()
    assert stored["subject"] == f"Outbound call to {number}"
    assert stored["duration_seconds"] is None and stored["started_at"] is None
    assert (await connector.get_call_log(call, CallLogRef(log_id=result.log_id))).info.note == ""

    custom = call_record("sess-3", number, custom_subject="Custom subject")
    result = await connector.create_call_log(
        call, CallLogCreate(contact=ContactRef(id=contact_id, phone_number=number), call=custom)
    )
    assert crm.get(f"/activities/{result.log_id}").json()["subject"] == "Custom subject"


async def test_message_log_create_and_update(
    connector: TestCrmConnector, call: CrmCall, crm: httpx.Client
) -> None:
    contact_id, number = await new_contact(connector, call, "Sam Sms")
    contact = ContactRef(id=contact_id, phone_number=number, name="Sam Sms")
    first = Message(
        id="m1",
        direction="Inbound",
        subject="Hi there",
        creation_time="2024-05-02T03:15:00Z",
        from_party=CallParty(phone_number=number),
    )
    result = await connector.create_message_log(
        call,
        MessageLogCreate(
            contact=contact, message=first, conversation_id="conv-1", conversation_log_id="conv-1-2024-05-01"
        ),
    )
    assert result.log_id is not None
    stored = crm.get(f"/activities/{result.log_id}").json()
    assert stored["kind"] == "message"
    # 03:15 UTC is 19:15 on the previous day at -08:00
    assert stored["subject"] == "SMS conversation with Sam Sms - 2024-05-01"
    assert stored["body"] == f"Conversation(1 messages)\nInbound {number} 19:15: Hi there [rc:m1]\n"
    assert stored["external_id"] == "msg:conv-1-2024-05-01:1-testcrm"

    reply = Message(
        id="m2",
        direction="Outbound",
        subject="Hello back",
        creation_time="2024-05-02T03:20:00Z",
        from_party=CallParty(phone_number="+16505550000", name="Agent"),
    )
    message = await connector.update_message_log(
        call,
        MessageLogUpdate(
            contact=contact, message=reply, log_id=result.log_id, conversation_log_id="conv-1-2024-05-01"
        ),
    )
    assert message is not None and message.message == "Message log updated"
    body = crm.get(f"/activities/{result.log_id}").json()["body"]
    assert body == (
        f"Conversation(2 messages)\nInbound {number} 19:15: Hi there [rc:m1]\n"
        "Outbound Agent 19:20: Hello back [rc:m2]\n"
    )

    # the same append sent again (its first answer lost) finds its tag and leaves the activity as it is
    again = await connector.update_message_log(
        call,
        MessageLogUpdate(
            contact=contact, message=reply, log_id=result.log_id, conversation_log_id="conv-1-2024-05-01"
        ),
    )
    assert again is not None and again.message == "Message log updated"
    assert crm.get(f"/activities/{result.log_id}").json()["body"] == body


async def test_unauthorize(connector: TestCrmConnector, call: CrmCall) -> None:
    message = await connector.unauthorize(call)
    assert message is not None and message.message == "Logged out of Test CRM"


async def test_crm_errors_surface_as_crm_http_error(
    connector: TestCrmConnector, call: CrmCall, crm_url: str
) -> None:
    with httpx.Client(base_url=crm_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        # a Retry-After longer than the client waits (it would retry a shorter one)
        admin.post("/api/_faults", json={"status": 429, "retry_after": 30, "path_prefix": "/api/v1/contacts"})
        try:
            with pytest.raises(CrmHttpError) as caught:
                await connector.find_contact(call, ContactLookup(phone_number=fresh_number()))
        finally:
            admin.delete("/api/_faults")
    assert (caught.value.status, caught.value.retry_after) == (429, 30.0)

    with pytest.raises(CrmHttpError) as missing:
        await connector.get_call_log(call, CallLogRef(log_id="999999"))
    assert missing.value.status == 404

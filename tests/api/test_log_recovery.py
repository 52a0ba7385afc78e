"""No stuck, duplicated or lost logs after faults: abandoned reservations are taken over, a create whose answer
never came is looked up in the CRM before anything is created again, and logs the CRM could not take are
delivered later by the background retrier, exactly once."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from appconnect.connectors.testcrm import TestCrmConnector
from appconnect.flows.delivery import NEEDS_ATTENTION
from appconnect.store.db import create_engine
from appconnect.store.tables import call_logs, users
from tests.conftest import CrmView, LiveServer, call_log_body, crm_admin_headers, new_phone, start_server


def auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def login(client: httpx.Client) -> tuple[str, str]:
    key = client.post(
        "/testcrm/api/v1/api-keys", json={"name": f"R {uuid.uuid4().hex[:6]}"}, headers=crm_admin_headers()
    ).json()["apiKey"]
    response = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": key})
    assert response.status_code == 200, response.text
    return key, response.json()["jwtToken"]


def new_contact(client: httpx.Client, jwt: str, phone: str) -> str:
    created = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Recovery", "newContactType": "contact"},
        headers=auth(jwt),
    ).json()
    assert created["successful"] is True, created
    contact_id: str = created["contact"]["id"]
    return contact_id


def matched(client: httpx.Client, jwt: str, session: str) -> bool:
    logs = client.get("/callLog", params={"sessionIds": session}, headers=auth(jwt)).json()["logs"]
    return bool(logs[0]["matched"])


def activity_posts(client: httpx.Client) -> int:
    """How many `POST /api/v1/activities` the embedded test CRM has received (it runs in the server process)."""
    stats = client.get("/testcrm/api/_stats", headers=crm_admin_headers()).json()["requests"]
    return int(stats.get("POST /api/v1/activities", 0))


def wait_for(condition: Callable[[], bool], *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def user_scope(server: LiveServer, client: httpx.Client, api_key: str) -> tuple[str, str]:
    """(user id, stored scope) of the test-CRM user behind `api_key`."""
    user_id = f"{client.get('/testcrm/api/v1/me', auth=(api_key, '')).json()['id']}-testcrm"

    async def read() -> str:
        engine = create_engine(server.settings.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(select(users.c.account_scope).where(users.c.id == user_id))).one()
        finally:
            await engine.dispose()
        return str(row.account_scope)

    return user_id, asyncio.run(read())


def insert_pending(server: LiveServer, *, scope: str, user_id: str, session: str, age: timedelta) -> None:
    """What a writer killed mid-request (or cut off by a database restart) leaves behind."""

    async def write() -> None:
        engine = create_engine(server.settings.database_url, pool_size=1)
        stamp = datetime.now(UTC) - age
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(call_logs).values(
                        scope=scope,
                        session_id=session,
                        extension_number="",
                        hashed_extension_id="",
                        call_id="",
                        platform="testcrm",
                        user_id=user_id,
                        status="pending",
                        created_at=stamp,
                        updated_at=stamp,
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(write())


@pytest.fixture
def faults(crm: CrmView) -> Iterator[CrmView]:
    crm.clear_faults()
    yield crm
    crm.clear_faults()


# --- stale reservations ----------------------------------------------------------------------------------------


def test_abandoned_reservation_is_taken_over_after_the_stale_window(
    server: LiveServer, client: httpx.Client
) -> None:
    key, jwt = login(client)
    phone = new_phone()
    contact = new_contact(client, jwt, phone)
    user_id, scope = user_scope(server, client, key)
    session = f"stale-{uuid.uuid4().hex}"
    insert_pending(server, scope=scope, user_id=user_id, session=session, age=timedelta(hours=1))
    assert not matched(client, jwt, session)

    logged = client.post("/callLog", json=call_log_body(session, contact, phone), headers=auth(jwt)).json()
    assert logged["successful"] is True, logged
    assert matched(client, jwt, session)
    assert len(CrmView(client, key).activities_of(contact)) == 1


def test_a_live_reservation_still_answers_existing_log(server: LiveServer, client: httpx.Client) -> None:
    key, jwt = login(client)
    phone = new_phone()
    contact = new_contact(client, jwt, phone)
    user_id, scope = user_scope(server, client, key)
    session = f"live-{uuid.uuid4().hex}"
    insert_pending(server, scope=scope, user_id=user_id, session=session, age=timedelta(seconds=0))
    busy = client.post("/callLog", json=call_log_body(session, contact, phone), headers=auth(jwt)).json()
    assert busy["successful"] is False
    assert busy["returnMessage"]["message"] == f"Existing log for session {session}"
    assert CrmView(client, key).activities_of(contact) == []


# --- unknown outcome -------------------------------------------------------------------------------------------


def test_call_log_created_after_our_timeout_is_adopted_not_created_again(
    client: httpx.Client, jwt: str, crm_api_key: str, faults: CrmView
) -> None:
    phone = new_phone()
    contact = new_contact(client, jwt, phone)
    session = f"slow-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    posts = activity_posts(client)
    # the CRM answers after the server's 2 s read timeout, but it does write the activity
    faults.inject(delay_seconds=3, times=1, method="POST", path_prefix="/api/v1/activities")
    timed_out = client.post("/callLog", json=body, headers=auth(jwt)).json()
    assert timed_out["successful"] is False
    wait_for(lambda: len(faults.activities_of(contact)) == 1)

    retried = client.post("/callLog", json=body, headers=auth(jwt)).json()
    assert retried["successful"] is True, retried
    activities = faults.activities_of(contact)
    assert len(activities) == 1 and retried["logId"] == str(activities[0]["id"])
    assert activity_posts(client) == posts + 1  # the retry asked the CRM instead of creating again
    assert matched(client, jwt, session)


def sms_body(contact_id: str, phone: str, message_id: str) -> dict[str, Any]:
    return {
        "logInfo": {
            "conversationId": f"c{phone}",
            "conversationLogId": f"c{phone}-2026-11-25",
            "messages": [
                {
                    "id": message_id,
                    "subject": "are you there",
                    "direction": "Inbound",
                    "creationTime": "2026-11-25T10:00:00Z",
                    "from": {"phoneNumber": phone},
                }
            ],
            "correspondents": [{"phoneNumber": phone}],
        },
        "contactId": contact_id,
        "contactName": "Recovery",
    }


def test_message_log_created_after_our_timeout_is_adopted_not_created_again(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    phone = new_phone()
    contact = new_contact(client, jwt, phone)
    body = sms_body(contact, phone, f"slow-{phone}")
    posts = activity_posts(client)
    faults.inject(delay_seconds=3, times=1, method="POST", path_prefix="/api/v1/activities")
    timed_out = client.post("/messageLog", json=body, headers=auth(jwt)).json()
    assert timed_out["successful"] is False
    wait_for(lambda: len(faults.activities_of(contact)) == 1)

    retried = client.post("/messageLog", json=body, headers=auth(jwt)).json()
    assert retried["successful"] is True and retried["logIds"] == [f"slow-{phone}"], retried
    activities = faults.activities_of(contact)
    assert len(activities) == 1 and str(activities[0]["body"]).count("are you there") == 1
    assert activity_posts(client) == posts + 1
    again = client.post("/messageLog", json=body, headers=auth(jwt)).json()
    assert again == {"successful": True, "logIds": [], "returnMessage": None}


def sms_conversation(contact_id: str, phone: str, texts: list[tuple[str, str]]) -> dict[str, Any]:
    """One conversation log's messages, newest first as the client sends them: (message id, text) oldest first."""
    body = sms_body(contact_id, phone, texts[0][0])
    body["logInfo"]["messages"] = [
        {
            "id": message_id,
            "subject": text,
            "direction": "Inbound",
            "creationTime": f"2026-11-25T10:0{minute}:00Z",
            "from": {"phoneNumber": phone},
        }
        for minute, (message_id, text) in reversed(list(enumerate(texts)))
    ]
    return body


def append_answered_late(client: httpx.Client, jwt: str, faults: CrmView) -> tuple[str, str, dict[str, Any]]:
    """Log a first message, then a second whose append the CRM does after the server stopped waiting.

    Returns the contact, the phone number and the request that logs both (to send again).
    """
    phone = new_phone()
    contact = new_contact(client, jwt, phone)
    first = client.post(
        "/messageLog",
        json=sms_conversation(contact, phone, [(f"a1-{phone}", "first text")]),
        headers=auth(jwt),
    ).json()
    assert first["successful"] is True, first
    both = sms_conversation(contact, phone, [(f"a1-{phone}", "first text"), (f"a2-{phone}", "second text")])
    faults.inject(delay_seconds=3, times=1, method="PATCH", path_prefix="/api/v1/activities")
    timed_out = client.post("/messageLog", json=both, headers=auth(jwt)).json()
    assert timed_out["successful"] is False
    wait_for(lambda: "second text" in str(faults.activities_of(contact)[0]["body"]))
    return contact, phone, both


def test_message_append_done_after_our_timeout_is_not_appended_again(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    contact, phone, both = append_answered_late(client, jwt, faults)

    retried = client.post("/messageLog", json=both, headers=auth(jwt)).json()
    assert retried["successful"] is True and retried["logIds"] == [f"a2-{phone}"], retried
    [activity] = faults.activities_of(contact)
    body = str(activity["body"])
    assert body.count("first text") == 1 and body.count("second text") == 1, body
    assert body.startswith("Conversation(2 messages)\n"), body
    again = client.post("/messageLog", json=both, headers=auth(jwt)).json()
    assert again == {"successful": True, "logIds": [], "returnMessage": None}


def test_unknown_append_is_not_sent_again_to_a_connector_without_idempotent_appends(
    client: httpx.Client, jwt: str, faults: CrmView, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connector that cannot tell whether the activity holds a message gets a warning, not a second copy."""
    monkeypatch.setattr(TestCrmConnector, "idempotent_message_append", False)
    contact, phone, both = append_answered_late(client, jwt, faults)
    patches = activity_patches(client)

    retried = client.post("/messageLog", json=both, headers=auth(jwt)).json()
    assert retried["successful"] is False
    assert retried["returnMessage"]["message"] == NEEDS_ATTENTION.message
    assert activity_patches(client) == patches

    # later messages of the conversation are still appended; the doubtful one is still not sent again
    three = sms_conversation(
        contact,
        phone,
        [(f"a1-{phone}", "first text"), (f"a2-{phone}", "second text"), (f"a3-{phone}", "third text")],
    )
    later = client.post("/messageLog", json=three, headers=auth(jwt)).json()
    assert later["successful"] is False and later["logIds"] == [f"a3-{phone}"], later
    [activity] = faults.activities_of(contact)
    body = str(activity["body"])
    assert [body.count(t) for t in ("first text", "second text", "third text")] == [1, 1, 1], body
    assert body.startswith("Conversation(3 messages)\n"), body


def activity_patches(client: httpx.Client) -> int:
    """How many `PATCH /api/v1/activities/{id}` the embedded test CRM has received."""
    stats: dict[str, int] = client.get("/testcrm/api/_stats", headers=crm_admin_headers()).json()["requests"]
    return sum(count for key, count in stats.items() if key.startswith("PATCH /api/v1/activities"))


# --- nothing lost: the background retrier ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def retrying_server(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on the session server's database whose retrier runs every 0.2 s (first retry after 1 s)."""
    folder = tmp_path_factory.mktemp("retrier")
    previous = os.environ.get("TESTCRM_BASE_URL")
    with contextmanager(start_server)(
        folder,
        server.settings.database_url,
        key_file=server.settings.key_file,
        log_retrier_enabled=True,
        log_retry_interval_seconds=0.2,
        log_retry_base_seconds=1.0,
    ) as live:
        yield live
    if previous is not None:
        os.environ["TESTCRM_BASE_URL"] = previous


@pytest.fixture
def retry_client(retrying_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=retrying_server.base_url, timeout=30) as http:
        http.delete("/testcrm/api/_faults", headers=crm_admin_headers())
        yield http
        http.delete("/testcrm/api/_faults", headers=crm_admin_headers())


def inject(client: httpx.Client, **rule: object) -> None:
    response = client.post("/testcrm/api/_faults", json=rule, headers=crm_admin_headers())
    assert response.status_code in (200, 201), response.text


def test_call_log_the_crm_could_not_take_is_delivered_later_exactly_once(retry_client: httpx.Client) -> None:
    key, jwt = login(retry_client)
    phone = new_phone()
    contact = new_contact(retry_client, jwt, phone)
    session = f"kept-{uuid.uuid4().hex}"
    inject(retry_client, status=503, times=1, method="POST", path_prefix="/api/v1/activities")
    failed = retry_client.post(
        "/callLog", json=call_log_body(session, contact, phone), headers=auth(jwt)
    ).json()
    assert failed["successful"] is False
    # this server's retrier delivers it: the user is told so, not "Error creating call log"
    assert failed["returnMessage"]["message"] == "Call log saved: it will be logged automatically"
    assert not matched(retry_client, jwt, session)

    wait_for(lambda: matched(retry_client, jwt, session))
    crm = CrmView(retry_client, key)
    assert len(crm.activities_of(contact)) == 1
    assert "first note" in str(crm.activities_of(contact)[0]["body"])
    again = retry_client.post(
        "/callLog", json=call_log_body(session, contact, phone), headers=auth(jwt)
    ).json()
    assert again["returnMessage"]["message"] == f"Existing log for session {session}"
    assert len(crm.activities_of(contact)) == 1


def test_unanswered_create_is_adopted_by_the_retrier(retry_client: httpx.Client) -> None:
    key, jwt = login(retry_client)
    phone = new_phone()
    contact = new_contact(retry_client, jwt, phone)
    session = f"kept-slow-{uuid.uuid4().hex}"
    posts = activity_posts(retry_client)
    inject(retry_client, delay_seconds=3, times=1, method="POST", path_prefix="/api/v1/activities")
    failed = retry_client.post(
        "/callLog", json=call_log_body(session, contact, phone), headers=auth(jwt)
    ).json()
    assert failed["successful"] is False

    wait_for(lambda: matched(retry_client, jwt, session))
    assert len(CrmView(retry_client, key).activities_of(contact)) == 1
    assert activity_posts(retry_client) == posts + 1


def test_client_retry_before_the_retrier_makes_no_duplicate(retry_client: httpx.Client) -> None:
    key, jwt = login(retry_client)
    phone = new_phone()
    contact = new_contact(retry_client, jwt, phone)
    session = f"kept-race-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    inject(retry_client, status=502, times=1, method="POST", path_prefix="/api/v1/activities")
    assert retry_client.post("/callLog", json=body, headers=auth(jwt)).json()["successful"] is False
    retried = retry_client.post("/callLog", json=body, headers=auth(jwt)).json()
    assert retried["successful"] is True, retried
    crm = CrmView(retry_client, key)
    # give the retrier several passes past the first retry time: it has nothing left to send
    time.sleep(2.0)
    assert len(crm.activities_of(contact)) == 1
    assert matched(retry_client, jwt, session)


def test_message_log_the_crm_could_not_take_is_delivered_later_exactly_once(
    retry_client: httpx.Client,
) -> None:
    key, jwt = login(retry_client)
    phone = new_phone()
    contact = new_contact(retry_client, jwt, phone)
    body = sms_body(contact, phone, f"kept-{phone}")
    inject(retry_client, status=503, times=1, method="POST", path_prefix="/api/v1/activities")
    failed = retry_client.post("/messageLog", json=body, headers=auth(jwt)).json()
    assert failed["successful"] is False
    crm = CrmView(retry_client, key)

    wait_for(lambda: len(crm.activities_of(contact)) == 1)
    assert str(crm.activities_of(contact)[0]["body"]).count("are you there") == 1
    again = retry_client.post("/messageLog", json=body, headers=auth(jwt)).json()
    assert again == {"successful": True, "logIds": [], "returnMessage": None}
    assert len(crm.activities_of(contact)) == 1

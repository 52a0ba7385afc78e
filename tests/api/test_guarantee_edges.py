"""The edges of exactly-once, tested the way a reviewer looking for a duplicate would.

Every test counts what the server *sent* (the creates the test CRM received, per call session or phone
number), not only what the CRM kept, and every timing window is tested on both sides of its edge: just before
(nothing is created again, the user is told to wait) and just after (it proceeds, exactly once). The server
here runs with short windows (settings), so the edges are seconds apart.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from appconnect.connectors.registry import ConnectorRegistry
from appconnect.connectors.sdk import Connector
from appconnect.connectors.testcrm import TestCrmConnector
from appconnect.flows.delivery import NEEDS_ATTENTION, NOT_SETTLED, next_attempt, settle_window, stale_window
from appconnect.flows.log_retrier import run_once
from appconnect.flows.services import build_services
from appconnect.security.crypto import TokenCipher
from appconnect.store.call_logs import QUEUED, CallLogStore, ExtensionIdentity, NewCallLog
from appconnect.store.db import create_engine
from appconnect.store.tables import call_logs, message_outbox
from tests.api.test_log_recovery import insert_pending, user_scope
from tests.conftest import (
    CrmView,
    LiveServer,
    call_log_body,
    crm_admin_headers,
    database_url_for,
    migrated_database,
    new_phone,
    start_server,
)

READ_TIMEOUT = 1.0
CONNECT_TIMEOUT = 0.5
#: settle window: read + connect timeout
SETTLE = READ_TIMEOUT + CONNECT_TIMEOUT
STALE = 3.0
BACKOFF = 2.0
#: a CRM this slow answers after the server stopped waiting (READ_TIMEOUT) but before the settle window ends
SLOW = 2.2
#: how far from an edge the "just before" and "just after" attempts are made
MARGIN = 0.6
#: the same for the retrier, whose pass first builds its services (slower on a busy machine)
PASS_MARGIN = 0.8


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def edge_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server of its own with short windows: read timeout 1 s (settle 1.5 s), stale after 3 s, first retrier
    backoff 2 s, three retrier attempts. Its retrier does not run by itself: tests run passes."""
    folder = tmp_path_factory.mktemp(f"edges-{request.param}")
    previous = os.environ.get("TESTCRM_BASE_URL")
    try:
        yield from start_server(
            folder,
            database_url_for(request.param, folder),
            crm_read_timeout=READ_TIMEOUT,
            crm_connect_timeout=CONNECT_TIMEOUT,
            log_stale_seconds=STALE,
            log_retry_base_seconds=BACKOFF,
            log_retry_max_attempts=3,
        )
    finally:
        if previous is not None:
            os.environ["TESTCRM_BASE_URL"] = previous


@pytest.fixture
def http(edge_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=edge_server.base_url, timeout=30) as client:
        client.delete("/testcrm/api/_faults", headers=crm_admin_headers())
        yield client
        client.delete("/testcrm/api/_faults", headers=crm_admin_headers())


class Agent:
    """One test-CRM account logged in to the server: its session, its CRM view, and what the CRM received."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        minted = http.post(
            "/testcrm/api/v1/api-keys",
            json={"name": f"Edge {uuid.uuid4().hex[:6]}"},
            headers=crm_admin_headers(),
        )
        assert minted.status_code == 201, minted.text
        self.key = str(minted.json()["apiKey"])
        self.crm_user_id = str(http.get("/testcrm/api/v1/me", auth=(self.key, "")).json()["id"])
        self.user_id = f"{self.crm_user_id}-testcrm"
        self.crm = CrmView(http, self.key)
        self.login()

    def login(self) -> None:
        response = self.http.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": self.key})
        assert response.status_code == 200, response.text
        self.headers = {"Authorization": f"Bearer {response.json()['jwtToken']}"}

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        return reply

    def new_contact(self, phone: str | None = None) -> tuple[str, str]:
        phone = phone or new_phone()
        created = self.post(
            "/contact", {"phoneNumber": phone, "newContactName": "Edge", "newContactType": "contact"}
        )
        assert created["successful"] is True, created
        return str(created["contact"]["id"]), phone

    def received(self, **filters: str) -> int:
        """Creates (POSTs) the test CRM received from this account, matching `filters`."""
        response = self.http.get(
            "/testcrm/api/_received",
            params={"account": self.crm_user_id, **filters},
            headers=crm_admin_headers(),
        )
        assert response.status_code == 200, response.text
        return int(response.json()["count"])

    def call_posts(self, session: str) -> int:
        """`POST /activities` the CRM received for this call session (the connector's marker names it)."""
        return self.received(path="/api/v1/activities", external_id=f"call:{session}:{self.user_id}")

    def contact_posts(self, phone: str) -> int:
        return self.received(path="/api/v1/contacts", phone=phone)

    def matched(self, session: str) -> bool:
        logs = self.http.get("/callLog", params={"sessionIds": session}, headers=self.headers).json()["logs"]
        return bool(logs[0]["matched"])

    def inject(self, **rule: object) -> None:
        self.crm.inject(**rule)


@pytest.fixture
def agent(http: httpx.Client) -> Agent:
    return Agent(http)


def wait_for(condition: Callable[[], bool], *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


ACTIVITIES = "/api/v1/activities"
CONTACTS = "/api/v1/contacts"


# --- 1. a takeover is a compare-and-set: two contenders, one claim ---------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_takeovers_of_one_parked_row_give_one_claim(backend: str, tmp_path: Path) -> None:
    """Two contenders that both read the row as `queued` (two retriers, or a retrier and the user's retry, with
    no lock between them): only the first UPDATE may match."""

    async def race() -> list[object]:
        db = await migrated_database(backend, tmp_path)
        try:
            store = CallLogStore(TokenCipher((Fernet.generate_key().decode(),)), db)
            new = NewCallLog("scope", "s-1", ExtensionIdentity(), "c", "testcrm", "u", "1", payload="{}")
            claim = await store.reserve_new(new)
            assert claim is not None
            await store.park(claim.pk, status=QUEUED, payload=None, attempts=1, next_attempt_at=None)
            row = (await store.find("scope", ["s-1"], ExtensionIdentity(), include_pending=True))["s-1"]
            first = await store.take_over(row, stale_after=STALE)
            second = await store.take_over(row, stale_after=STALE)
            both = await asyncio.gather(*(store.take_over(row, stale_after=STALE) for _ in range(4)))
            return [first, second, *both]
        finally:
            await db.close()

    claims = asyncio.run(race())
    assert claims[0] is not None
    assert claims[1:] == [None] * 5


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_abandoned_reservation_is_taken_over_once_and_only_once_stale(
    backend: str, tmp_path: Path
) -> None:
    """A `pending` row younger than the stale window belongs to a live request; past it, one contender wins."""

    async def run() -> tuple[object, object, object, object]:
        db = await migrated_database(backend, tmp_path)
        try:
            store = CallLogStore(TokenCipher((Fernet.generate_key().decode(),)), db)
            new = NewCallLog("scope", "s-2", ExtensionIdentity(), "c", "testcrm", "u", "1", payload="{}")
            assert await store.reserve_new(new) is not None
            row = (await store.find("scope", ["s-2"], ExtensionIdentity(), include_pending=True))["s-2"]
            live = await store.take_over(row, stale_after=60.0)  # just before the edge: still live
            await asyncio.sleep(0.3)
            first = await store.take_over(row, stale_after=0.1)  # just after it: abandoned
            second = await store.take_over(row, stale_after=0.1)
            fresh = (await store.find("scope", ["s-2"], ExtensionIdentity(), include_pending=True))["s-2"]
            return live, first, second, await store.take_over(fresh, stale_after=60.0)
        finally:
            await db.close()

    live, first, second, again = asyncio.run(run())
    assert live is None
    assert first is not None and getattr(first, "must_check", False) is True
    assert second is None
    assert again is None  # the winner's own reservation is live again


def test_racing_client_retries_of_a_kept_log_send_one_create(agent: Agent) -> None:
    """Eight retries of a log the CRM refused with a 503, at once, over HTTP: one create reaches the CRM."""
    contact, phone = agent.new_contact()
    session = f"race-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    agent.inject(status=503, times=1, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/callLog", body)["successful"] is False
    assert agent.call_posts(session) == 1

    barrier = threading.Barrier(8)
    replies: list[dict[str, Any]] = []
    lock = threading.Lock()

    def retry() -> None:
        with httpx.Client(base_url=agent.http.base_url, timeout=30) as client:
            barrier.wait()
            reply = client.post("/callLog", json=body, headers=agent.headers).json()
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(1 for r in replies if r["successful"]) == 1, replies
    assert agent.call_posts(session) == 2  # the refused one and exactly one more
    assert len(agent.crm.activities_of(contact)) == 1


def test_two_retrier_passes_racing_without_the_lock_deliver_once(
    edge_server: LiveServer, agent: Agent
) -> None:
    """The retrier's lock serialises passes; the per-row compare-and-set must hold without it too."""
    from appconnect.flows import log_retrier

    contact, phone = agent.new_contact()
    session = f"retrier-race-{uuid.uuid4().hex}"
    agent.inject(status=503, times=1, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/callLog", call_log_body(session, contact, phone))["successful"] is False

    async def race() -> list[int]:
        workers = [
            build_services(edge_server.settings, ConnectorRegistry.discover(_env(edge_server)))
            for _ in range(2)
        ]
        try:
            await _make_due(edge_server, session)
            rows = await workers[0].call_logs.due(limit=50, stale_after=STALE)
            [row] = [r for r in rows if r.session_id == session]
            window = stale_window(edge_server.settings)
            return list(await asyncio.gather(*(log_retrier._retry_call_log(w, row, window) for w in workers)))
        finally:
            for worker in workers:
                await worker.close()

    assert sorted(asyncio.run(race())) == [0, 1]
    assert agent.call_posts(session) == 2
    assert len(agent.crm.activities_of(contact)) == 1
    assert agent.matched(session)


# --- 2. a write answered 500 may have been done ----------------------------------------------------------------


def test_a_contact_the_crm_made_before_answering_500_is_adopted_not_made_again(agent: Agent) -> None:
    phone = new_phone()
    agent.inject(status=500, times=1, method="POST", path_prefix=CONTACTS, when="after")
    body = {"phoneNumber": phone, "newContactName": "Answered 500", "newContactType": "contact"}
    assert agent.post("/contact", body)["successful"] is False
    assert len(agent.crm.contacts_with_phone(phone)) == 1  # the CRM did make it

    retried = agent.post("/contact", body)
    assert retried["successful"] is True, retried
    [stored] = agent.crm.contacts_with_phone(phone)
    assert retried["contact"]["id"] == str(stored["id"])
    assert agent.contact_posts(phone) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_call_log_the_crm_made_before_answering_5xx_is_adopted_not_made_again(
    agent: Agent, status: int
) -> None:
    contact, phone = agent.new_contact()
    session = f"after-{status}-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    agent.inject(status=status, times=1, method="POST", path_prefix=ACTIVITIES, when="after")
    assert agent.post("/callLog", body)["successful"] is False
    time.sleep(SETTLE + MARGIN)  # the edge of the settle window does not matter here: the CRM answered

    retried = agent.post("/callLog", body)
    assert retried["successful"] is True, retried
    [activity] = agent.crm.activities_of(contact)
    assert retried["logId"] == str(activity["id"])
    assert agent.call_posts(session) == 1


def test_a_message_log_the_crm_made_before_answering_500_is_not_made_again(agent: Agent) -> None:
    contact, phone = agent.new_contact()
    body = _sms(contact, phone, f"m500-{uuid.uuid4().hex[:8]}")
    agent.inject(status=500, times=1, method="POST", path_prefix=ACTIVITIES, when="after")
    assert agent.post("/messageLog", body)["successful"] is False
    time.sleep(SETTLE + MARGIN)
    agent.post("/messageLog", body)
    assert len(agent.crm.activities_of(contact)) == 1
    assert agent.received(path=ACTIVITIES) == 1


# --- 3. a connector that cannot look up a log is never sent a create again ------------------------------------


def test_without_find_call_log_an_unanswered_create_needs_attention_not_a_second_create(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TestCrmConnector, "find_call_log", Connector.find_call_log)
    contact, phone = agent.new_contact()
    session = f"no-lookup-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    agent.inject(delay_seconds=SLOW, times=1, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/callLog", body)["successful"] is False  # no answer in time; the CRM writes it later

    retried = agent.post("/callLog", body)
    assert retried["successful"] is False
    assert retried["returnMessage"]["message"] == NEEDS_ATTENTION.message
    wait_for(lambda: len(agent.crm.activities_of(contact)) == 1)
    time.sleep(0.3)
    assert agent.call_posts(session) == 1
    assert len(agent.crm.activities_of(contact)) == 1


def test_without_find_call_log_a_create_answered_500_is_not_sent_again(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TestCrmConnector, "find_call_log", Connector.find_call_log)
    contact, phone = agent.new_contact()
    session = f"no-lookup-500-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    agent.inject(status=500, times=1, method="POST", path_prefix=ACTIVITIES, when="after")
    assert agent.post("/callLog", body)["successful"] is False
    time.sleep(SETTLE + MARGIN)
    retried = agent.post("/callLog", body)
    assert retried["returnMessage"]["message"] == NEEDS_ATTENTION.message
    assert agent.call_posts(session) == 1
    assert len(agent.crm.activities_of(contact)) == 1


def test_without_find_call_log_the_retrier_parks_an_unanswered_create(
    edge_server: LiveServer, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TestCrmConnector, "find_call_log", Connector.find_call_log)
    contact, phone = agent.new_contact()
    session = f"no-lookup-retrier-{uuid.uuid4().hex}"
    agent.inject(delay_seconds=SLOW, times=1, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/callLog", call_log_body(session, contact, phone))["successful"] is False
    wait_for(lambda: len(agent.crm.activities_of(contact)) == 1)
    time.sleep(SETTLE)
    assert _retrier_pass(edge_server, session) == "failed"
    assert agent.call_posts(session) == 1


# --- 4. the settle window, on both sides of its edge -----------------------------------------------------------


def test_call_log_retried_inside_the_settle_window_waits_then_adopts_once(agent: Agent) -> None:
    contact, phone = agent.new_contact()
    session = f"settle-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    agent.inject(delay_seconds=SLOW, times=1, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/callLog", body)["successful"] is False

    # just before the edge: the CRM is still writing; nothing is created again, the user is told to wait
    early = agent.post("/callLog", body)
    assert early["successful"] is False
    assert early["returnMessage"]["message"] == NOT_SETTLED.message
    wait_for(lambda: len(agent.crm.activities_of(contact)) == 1)
    assert agent.call_posts(session) == 1

    # just after it: the slow create is found and adopted, exactly once
    time.sleep(MARGIN)
    late = agent.post("/callLog", body)
    assert late["successful"] is True, late
    [activity] = agent.crm.activities_of(contact)
    assert late["logId"] == str(activity["id"])
    assert agent.call_posts(session) == 1


def test_call_log_lost_for_good_is_created_once_just_after_the_settle_window(agent: Agent) -> None:
    contact, phone = agent.new_contact()
    session = f"settle-lost-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    # no answer in time, and the CRM never did the work
    agent.inject(status=503, delay_seconds=SLOW, times=1, method="POST", path_prefix=ACTIVITIES)
    failed_at = time.monotonic()
    assert agent.post("/callLog", body)["successful"] is False

    early = agent.post("/callLog", body)
    assert early["returnMessage"]["message"] == NOT_SETTLED.message
    time.sleep(max(0.0, failed_at + READ_TIMEOUT + SETTLE + MARGIN - time.monotonic()))
    late = agent.post("/callLog", body)
    assert late["successful"] is True, late
    assert len(agent.crm.activities_of(contact)) == 1
    wait_for(lambda: agent.call_posts(session) == 2)  # the one refused (after its delay) and the real one
    again = agent.post("/callLog", body)
    assert again["returnMessage"]["message"] == f"Existing log for session {session}"
    assert agent.call_posts(session) == 2


def test_contact_retried_inside_the_settle_window_waits_then_adopts_once(agent: Agent) -> None:
    phone = new_phone()
    body = {"phoneNumber": phone, "newContactName": "Settling", "newContactType": "contact"}
    agent.inject(delay_seconds=SLOW, times=1, method="POST", path_prefix=CONTACTS)
    assert agent.post("/contact", body)["successful"] is False

    early = agent.post("/contact", body)
    assert early["successful"] is False
    assert early["returnMessage"]["message"] == NOT_SETTLED.message
    wait_for(lambda: len(agent.crm.contacts_with_phone(phone)) == 1)
    time.sleep(MARGIN)
    late = agent.post("/contact", body)
    assert late["successful"] is True, late
    assert len(agent.crm.contacts_with_phone(phone)) == 1
    assert agent.contact_posts(phone) == 1


def test_contact_lost_for_good_is_created_once_just_after_the_settle_window(agent: Agent) -> None:
    phone = new_phone()
    body = {"phoneNumber": phone, "newContactName": "Lost", "newContactType": "contact"}
    agent.inject(status=503, delay_seconds=SLOW, times=1, method="POST", path_prefix=CONTACTS)
    failed_at = time.monotonic()
    assert agent.post("/contact", body)["successful"] is False

    early = agent.post("/contact", body)
    assert early["returnMessage"]["message"] == NOT_SETTLED.message
    time.sleep(max(0.0, failed_at + READ_TIMEOUT + SETTLE + MARGIN - time.monotonic()))
    late = agent.post("/contact", body)
    assert late["successful"] is True, late
    assert len(agent.crm.contacts_with_phone(phone)) == 1
    wait_for(lambda: agent.contact_posts(phone) == 2)


def test_message_log_retried_inside_the_settle_window_waits_then_adopts_once(agent: Agent) -> None:
    contact, phone = agent.new_contact()
    body = _sms(contact, phone, f"settle-{uuid.uuid4().hex[:8]}")
    agent.inject(delay_seconds=SLOW, times=1, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/messageLog", body)["successful"] is False

    early = agent.post("/messageLog", body)
    assert early["returnMessage"]["message"] == NOT_SETTLED.message
    wait_for(lambda: len(agent.crm.activities_of(contact)) == 1)
    time.sleep(MARGIN)
    late = agent.post("/messageLog", body)
    assert late["successful"] is True, late
    assert len(agent.crm.activities_of(contact)) == 1
    assert agent.received(path=ACTIVITIES) == 1


def test_settle_window_is_the_read_and_connect_timeouts(edge_server: LiveServer) -> None:
    assert settle_window(edge_server.settings) == pytest.approx(SETTLE)
    assert stale_window(edge_server.settings) == pytest.approx(STALE)
    derived = edge_server.settings.model_copy(update={"log_stale_seconds": 0})
    assert stale_window(derived) == pytest.approx(2 * READ_TIMEOUT + 2 * CONNECT_TIMEOUT + 10)


# --- the stale window of an abandoned reservation, over HTTP ---------------------------------------------------


@pytest.mark.parametrize(("age", "taken"), [(STALE - MARGIN * 2, False), (STALE + MARGIN, True)])
def test_abandoned_reservation_on_each_side_of_the_stale_window(
    edge_server: LiveServer, agent: Agent, age: float, taken: bool
) -> None:
    contact, phone = agent.new_contact()
    user_id, scope = user_scope(edge_server, agent.http, agent.key)
    session = f"stale-edge-{uuid.uuid4().hex}"
    insert_pending(edge_server, scope=scope, user_id=user_id, session=session, age=timedelta(seconds=age))
    reply = agent.post("/callLog", call_log_body(session, contact, phone))
    if taken:
        assert reply["successful"] is True, reply
        assert agent.call_posts(session) == 1
        assert len(agent.crm.activities_of(contact)) == 1
    else:
        assert reply["returnMessage"]["message"] == f"Existing log for session {session}"
        assert agent.call_posts(session) == 0
        assert agent.crm.activities_of(contact) == []


# --- the retrier's backoff, on both sides of each edge ---------------------------------------------------------


def test_retrier_waits_out_its_backoff_then_delivers_once(edge_server: LiveServer, agent: Agent) -> None:
    contact, phone = agent.new_contact()
    session = f"backoff-{uuid.uuid4().hex}"
    agent.inject(status=503, times=1, method="POST", path_prefix=ACTIVITIES)
    kept_at = time.monotonic()
    assert agent.post("/callLog", call_log_body(session, contact, phone))["successful"] is False

    # just before the first retry time (BACKOFF after the refusal): nothing is sent
    assert _retrier_pass(edge_server, session, make_due=False) == "queued"
    time.sleep(max(0.0, kept_at + BACKOFF - PASS_MARGIN - time.monotonic()))
    assert _retrier_pass(edge_server, session, make_due=False) == "queued"
    assert agent.call_posts(session) == 1

    # refused again just after it: the next try waits twice as long
    agent.inject(status=503, times=1, method="POST", path_prefix=ACTIVITIES)
    time.sleep(max(0.0, kept_at + BACKOFF + PASS_MARGIN - time.monotonic()))
    second_at = time.monotonic()
    assert _retrier_pass(edge_server, session, make_due=False) == "queued"
    assert agent.call_posts(session) == 2
    time.sleep(max(0.0, second_at + 2 * BACKOFF - PASS_MARGIN - time.monotonic()))
    assert _retrier_pass(edge_server, session, make_due=False) == "queued"
    assert agent.call_posts(session) == 2

    time.sleep(max(0.0, second_at + 2 * BACKOFF + PASS_MARGIN - time.monotonic()))
    assert _retrier_pass(edge_server, session, make_due=False) == "done"
    assert agent.call_posts(session) == 3
    assert len(agent.crm.activities_of(contact)) == 1
    assert _retrier_pass(edge_server, session) == "done"  # delivered: nothing left to send
    assert agent.call_posts(session) == 3


def test_retry_schedule_doubles_and_stops_after_the_last_attempt(edge_server: LiveServer) -> None:
    settings = edge_server.settings
    for attempts, delay in ((1, BACKOFF), (2, 2 * BACKOFF)):
        before = datetime.now(UTC)
        when = next_attempt(settings, attempts)
        after = datetime.now(UTC)
        assert when is not None
        assert before + timedelta(seconds=delay) <= when <= after + timedelta(seconds=delay)
    assert next_attempt(settings, 3) is None  # log_retry_max_attempts
    capped = settings.model_copy(update={"log_retry_base_seconds": 3000.0, "log_retry_max_attempts": 9})
    when = next_attempt(capped, 5)
    assert when is not None and when <= datetime.now(UTC) + timedelta(seconds=3600)


def test_retrier_stops_after_its_last_attempt(edge_server: LiveServer, agent: Agent) -> None:
    contact, phone = agent.new_contact()
    session = f"last-{uuid.uuid4().hex}"
    agent.inject(status=503, times=3, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/callLog", call_log_body(session, contact, phone))["successful"] is False
    assert _retrier_pass(edge_server, session) == "queued"  # attempt 2
    assert _retrier_pass(edge_server, session) == "queued"  # attempt 3: the last one
    assert agent.call_posts(session) == 3
    assert _retrier_pass(edge_server, session) == "queued"  # none left: not sent again, kept for the user
    assert agent.call_posts(session) == 3
    retried = agent.post("/callLog", call_log_body(session, contact, phone))
    assert retried["successful"] is True, retried
    assert agent.call_posts(session) == 4
    assert len(agent.crm.activities_of(contact)) == 1


# --- 5. a logged-out user's kept logs are kept, not deleted ----------------------------------------------------


def test_retrier_keeps_a_logged_out_users_call_log_as_failed(edge_server: LiveServer, agent: Agent) -> None:
    contact, phone = agent.new_contact()
    session = f"logged-out-{uuid.uuid4().hex}"
    body = call_log_body(session, contact, phone)
    agent.inject(status=503, times=1, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/callLog", body)["successful"] is False
    assert agent.http.post("/unAuthorize", headers=agent.headers).status_code == 200

    assert _retrier_pass(edge_server, session) == "failed"
    assert _payload_kept(edge_server, session)
    assert agent.call_posts(session) == 1

    # back again: the user's own retry delivers the kept log, once
    agent.login()
    retried = agent.post("/callLog", body)
    assert retried["successful"] is True, retried
    assert agent.call_posts(session) == 2
    assert len(agent.crm.activities_of(contact)) == 1


def test_retrier_keeps_a_logged_out_users_message_log_as_failed(
    edge_server: LiveServer, agent: Agent
) -> None:
    contact, phone = agent.new_contact()
    body = _sms(contact, phone, f"out-{uuid.uuid4().hex[:8]}")
    agent.inject(status=503, times=1, method="POST", path_prefix=ACTIVITIES)
    assert agent.post("/messageLog", body)["successful"] is False
    assert agent.http.post("/unAuthorize", headers=agent.headers).status_code == 200
    before = _outbox_of(edge_server, agent.user_id)
    assert [status for status, _ in before] == ["queued"]

    asyncio.run(_make_outbox_due(edge_server, agent.user_id))
    asyncio.run(_pass(edge_server))
    after = _outbox_of(edge_server, agent.user_id)
    assert [status for status, _ in after] == ["failed"]
    assert after[0][1] is True  # the request is still there for an operator
    assert agent.received(path=ACTIVITIES) == 1


def test_a_revoked_session_token_writes_nothing(agent: Agent) -> None:
    """The old token of a user who logged out and in again: no contact, log or message reaches the CRM."""
    contact, phone = agent.new_contact()
    old = agent.headers
    assert agent.http.post("/unAuthorize", headers=old).status_code == 200
    agent.login()
    session = f"revoked-{uuid.uuid4().hex}"
    new_number = new_phone()
    writes = [
        ("/contact", {"phoneNumber": new_number, "newContactName": "Revoked", "newContactType": "contact"}),
        ("/callLog", call_log_body(session, contact, phone)),
        ("/messageLog", _sms(contact, phone, f"revoked-{uuid.uuid4().hex[:8]}")),
    ]
    for path, body in writes:
        response = agent.http.post(path, json=body, headers=old)
        assert response.status_code != 200 or response.json()["successful"] is False, (path, response.text)
    assert agent.received() == 1  # only the contact created before the logout
    assert not agent.matched(session)
    # the new session logs the same call, once
    assert agent.post("/callLog", call_log_body(session, contact, phone))["successful"] is True
    assert agent.call_posts(session) == 1


# --- helpers ---------------------------------------------------------------------------------------------------


def _env(server: LiveServer) -> dict[str, str]:
    return {"TESTCRM_BASE_URL": server.crm_api}


def _sms(contact: str, phone: str, message_id: str) -> dict[str, Any]:
    return {
        "logInfo": {
            "conversationId": f"c-{message_id}",
            "conversationLogId": f"c-{message_id}-2026-11-25",
            "messages": [
                {
                    "id": message_id,
                    "subject": "edge text",
                    "direction": "Inbound",
                    "creationTime": "2026-11-25T10:00:00Z",
                    "from": {"phoneNumber": phone},
                }
            ],
            "correspondents": [{"phoneNumber": phone}],
        },
        "contactId": contact,
        "contactName": "Edge",
    }


async def _make_due(server: LiveServer, session: str) -> None:
    engine = create_engine(server.settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(call_logs)
                .where(call_logs.c.session_id == session, call_logs.c.next_attempt_at.is_not(None))
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()


async def _make_outbox_due(server: LiveServer, user_id: str) -> None:
    engine = create_engine(server.settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(message_outbox)
                .where(message_outbox.c.user_id == user_id)
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()


async def _pass(server: LiveServer) -> int:
    services = build_services(server.settings, ConnectorRegistry.discover(_env(server)))
    try:
        return await run_once(services)
    finally:
        await services.close()


def _retrier_pass(server: LiveServer, session: str, *, make_due: bool = True) -> str:
    """One retrier pass (this session's kept log due now when `make_due`); the log's status after it. Other
    tests' kept logs may be delivered by the same pass: only this session's row is looked at."""

    async def run() -> None:
        if make_due:
            await _make_due(server, session)
        await _pass(server)

    asyncio.run(run())
    return _status_of(server, session)


def _row_of(server: LiveServer, session: str) -> Any:
    async def read() -> Any:
        engine = create_engine(server.settings.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return (
                    await conn.execute(
                        select(call_logs.c.status, call_logs.c.payload).where(
                            call_logs.c.session_id == session
                        )
                    )
                ).one()
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _status_of(server: LiveServer, session: str) -> str:
    return str(_row_of(server, session).status)


def _payload_kept(server: LiveServer, session: str) -> bool:
    return _row_of(server, session).payload is not None


def _outbox_of(server: LiveServer, user_id: str) -> list[tuple[str, bool]]:
    async def read() -> list[tuple[str, bool]]:
        engine = create_engine(server.settings.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(message_outbox.c.status, message_outbox.c.payload).where(
                            message_outbox.c.user_id == user_id
                        )
                    )
                ).all()
        finally:
            await engine.dispose()
        return [(str(row.status), row.payload is not None) for row in rows]

    return asyncio.run(read())

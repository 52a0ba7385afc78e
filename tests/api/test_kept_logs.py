"""A log the CRM could not take is kept and delivered by the retrier: the user is told so (not "Error creating
call log"), and the user's own retry racing the retrier never makes a second CRM activity."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from appconnect.connectors.registry import ConnectorRegistry
from appconnect.flows.log_retrier import run_once
from appconnect.flows.services import build_services
from appconnect.store.db import create_engine
from appconnect.store.tables import call_logs
from tests.conftest import (
    CrmView,
    LiveServer,
    api_key_login,
    call_log_body,
    crm_admin_headers,
    database_url_for,
    message_log_body,
    new_phone,
    start_server,
)

KEPT_CALL = "Call log saved: it will be logged automatically"
KEPT_MESSAGE = "Message log saved: it will be logged automatically"


@pytest.fixture(scope="module")
def retrying_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose retrier runs (its own database and test CRM; the pass is far off, the test is quicker)."""
    folder: Path = tmp_path_factory.mktemp("retrying")
    yield from start_server(
        folder, database_url_for("sqlite", folder), log_retrier_enabled=True, log_retry_interval_seconds=3600
    )


@pytest.fixture
def user(retrying_server: LiveServer) -> Iterator[tuple[httpx.Client, dict[str, str], CrmView]]:
    with httpx.Client(base_url=retrying_server.base_url, timeout=30) as http:
        minted = http.post("/testcrm/api/v1/api-keys", json={"name": "Kept"}, headers=crm_admin_headers())
        api_key = minted.json()["apiKey"]
        yield http, {"Authorization": f"Bearer {api_key_login(http, api_key)}"}, CrmView(http, api_key)


def _contact(http: httpx.Client, headers: dict[str, str], phone: str) -> str:
    created = http.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Kept Caller", "newContactType": "contact"},
        headers=headers,
    ).json()
    assert created["successful"] is True, created
    contact_id: str = created["contact"]["id"]
    return contact_id


def test_a_call_log_kept_after_a_crm_503_says_it_will_be_logged(
    user: tuple[httpx.Client, dict[str, str], CrmView],
) -> None:
    http, headers, crm = user
    phone = new_phone()
    contact = _contact(http, headers, phone)
    crm.inject(status=503, times=3, method="POST", path_prefix="/api/v1/activities")
    try:
        answer = http.post(
            "/callLog", json=call_log_body(f"k-{uuid.uuid4().hex}", contact, phone), headers=headers
        )
    finally:
        crm.clear_faults()
    body = answer.json()
    assert answer.status_code == 200 and body["successful"] is False, body
    assert body["returnMessage"]["message"] == KEPT_CALL
    assert body["returnMessage"]["messageType"] == "warning"
    detail = body["returnMessage"]["details"][0]["items"][0]["text"]
    assert "HTTP 503" in detail and "no need to log it again" in detail
    assert "logId" not in body  # nothing for the client to record as made yet
    assert crm.activities_of(contact) == []


def test_a_message_log_kept_after_a_crm_503_says_it_will_be_logged(
    user: tuple[httpx.Client, dict[str, str], CrmView],
) -> None:
    http, headers, crm = user
    phone = new_phone()
    contact = _contact(http, headers, phone)
    crm.inject(status=503, times=3, method="POST", path_prefix="/api/v1/activities")
    try:
        answer = http.post("/messageLog", json=message_log_body(contact, phone), headers=headers)
    finally:
        crm.clear_faults()
    body = answer.json()
    assert body["successful"] is False and body["returnMessage"]["message"] == KEPT_MESSAGE, body


def test_a_log_the_crm_refused_for_good_is_not_promised(
    user: tuple[httpx.Client, dict[str, str], CrmView],
) -> None:
    """A 422 is not kept: the user must fix something, and is told what went wrong, not "saved"."""
    http, headers, crm = user
    phone = new_phone()
    contact = _contact(http, headers, phone)
    crm.inject(status=422, times=1, method="POST", path_prefix="/api/v1/activities")
    try:
        body = http.post(
            "/callLog", json=call_log_body(f"k-{uuid.uuid4().hex}", contact, phone), headers=headers
        ).json()
    finally:
        crm.clear_faults()
    assert body["returnMessage"]["message"] == "Error creating call log", body


# --- the user's retry racing the retrier ----------------------------------------------------------------------


async def _race(server: LiveServer, headers: dict[str, str], body: dict[str, object]) -> tuple[int, int]:
    """The retrier's pass (another worker's services) and the user's own retry, at the same moment."""
    registry_env = {"TESTCRM_BASE_URL": server.crm_api}
    retrier = build_services(server.settings, ConnectorRegistry.discover(registry_env))
    try:
        engine = create_engine(server.settings.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:  # due now instead of after the first backoff
                await conn.execute(
                    update(call_logs)
                    .where(call_logs.c.session_id == body["logInfo"]["sessionId"])  # type: ignore[index]
                    .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
                )
        finally:
            await engine.dispose()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            delivered, retried = await asyncio.gather(
                run_once(retrier), http.post("/callLog", json=body, headers=headers)
            )
        return delivered, retried.status_code
    finally:
        await retrier.close()


def test_the_users_retry_racing_the_retrier_logs_the_call_once(
    server: LiveServer, client: httpx.Client, jwt: str, crm: CrmView
) -> None:
    headers = {"Authorization": f"Bearer {jwt}"}
    phone = new_phone()
    contact = _contact(client, headers, phone)
    for _ in range(3):
        session = f"race-{uuid.uuid4().hex}"
        body = call_log_body(session, contact, phone)
        crm.clear_faults()
        crm.inject(status=503, times=3, method="POST", path_prefix="/api/v1/activities")
        kept = client.post("/callLog", json=body, headers=headers).json()
        assert kept["successful"] is False, kept
        crm.clear_faults()
        # both reach the CRM's create only if the claim lets them: a slow create keeps both in flight
        crm.inject(delay_seconds=0.3, times=2, method="POST", path_prefix="/api/v1/activities")
        try:
            _delivered, status = asyncio.run(_race(server, headers, body))
        finally:
            crm.clear_faults()
        assert status == 200
        logs = client.get("/callLog", params={"sessionIds": session}, headers=headers).json()["logs"]
        assert logs[0]["matched"] is True, logs
        # and a third attempt (the client again) finds it logged
        again = client.post("/callLog", json=body, headers=headers).json()
        assert again["successful"] is False and "Existing log" in again["returnMessage"]["message"], again
    calls = [a for a in crm.activities_of(contact) if a["kind"] == "call"]
    assert len(calls) == 3, calls

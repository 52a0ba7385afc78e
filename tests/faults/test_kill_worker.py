"""`kill -9` of the server while its CRM call is in flight: after a restart the call is still loggable, once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import call_log_body, new_phone
from tests.faults.conftest import bearer, create_contact, log_call_until_matched, matched_log_id
from tests.faults.processes import CrmProcess, ServerProcess

READ_TIMEOUT = "2"  # the stale window of a reservation is derived from it: keep it short
CRM_DELAY = 1.5  # under the read timeout: the server is still waiting when it is killed
ACTIVITY_CREATE = "POST /api/v1/activities"
CONTACT_CREATE = "POST /api/v1/contacts"


def kill_mid_write(
    server: ServerProcess, crm_process: CrmProcess, route: str, send: Callable[[], httpx.Response]
) -> None:
    """Send a write in the background and `kill -9` the server once the (slowed) CRM has received it."""
    before = crm_process.requests_seen(route)
    outcome: dict[str, object] = {}

    def first_attempt() -> None:
        try:
            outcome["response"] = send()
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=first_attempt, daemon=True)
    sender.start()
    deadline = time.monotonic() + 10
    while crm_process.requests_seen(route) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert crm_process.requests_seen(route) > before, "the CRM never got the create"
    server.kill_hard()  # the CRM is still sleeping on the create: the server dies mid-request
    sender.join(10)
    assert "error" in outcome, "the killed server cannot have answered"


def test_kill_9_mid_call_log_then_restart_logs_the_call_exactly_once(
    tmp_path: Path, crm_process: CrmProcess
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'appconnect.sqlite3'}"
    server = ServerProcess(tmp_path, database, crm_process, APPCONNECT_CRM_READ_TIMEOUT=READ_TIMEOUT).start()
    try:
        key, crm = crm_process.new_account()
        jwt = server.login(key)
        phone = new_phone()
        created = create_contact(server.base_url, jwt, phone).json()
        assert created["successful"] is True, created
        contact_id = created["contact"]["id"]
        session = f"kill9-{phone}"
        body = call_log_body(session, contact_id, phone)

        crm.inject(delay_seconds=CRM_DELAY, times=1, method="POST", path_prefix="/api/v1/activities")
        kill_mid_write(
            server,
            crm_process,
            ACTIVITY_CREATE,
            lambda: httpx.post(f"{server.base_url}/callLog", json=body, headers=bearer(jwt), timeout=30),
        )

        server.start()
        log_id = log_call_until_matched(server.base_url, jwt, body, seconds=30)
        assert log_id is not None, "the call is still not logged after the stale window"

        activities = crm.activities_of(contact_id)
        assert len(activities) == 1, activities
        assert log_id == str(activities[0]["id"])
        assert matched_log_id(server.base_url, jwt, session) == log_id

        again = httpx.post(f"{server.base_url}/callLog", json=body, headers=bearer(jwt), timeout=30).json()
        assert again["successful"] is False  # "Existing log": still exactly one activity
        assert len(crm.activities_of(contact_id)) == 1
    finally:
        server.stop()


def test_kill_9_mid_placeholder_contact_then_retry_adopts_the_contact_the_crm_made(
    tmp_path: Path, crm_process: CrmProcess
) -> None:
    """The server dies while the CRM is still creating the contact: the retry finds it instead of a second."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'appconnect.sqlite3'}"
    server = ServerProcess(tmp_path, database, crm_process, APPCONNECT_CRM_READ_TIMEOUT=READ_TIMEOUT).start()
    try:
        key, crm = crm_process.new_account()
        jwt = server.login(key)
        phone = new_phone()
        crm.inject(delay_seconds=CRM_DELAY, times=1, method="POST", path_prefix="/api/v1/contacts")
        kill_mid_write(
            server, crm_process, CONTACT_CREATE, lambda: create_contact(server.base_url, jwt, phone)
        )
        deadline = time.monotonic() + 10
        while not crm.contacts_with_phone(phone) and time.monotonic() < deadline:
            time.sleep(0.05)  # the CRM finishes the create it was sleeping on
        assert len(crm.contacts_with_phone(phone)) == 1

        server.start()
        retried = create_contact(server.base_url, jwt, phone).json()
        assert retried["successful"] is True, retried
        contacts = crm.contacts_with_phone(phone)
        assert len(contacts) == 1, contacts
        assert str(contacts[0]["id"]) == str(retried["contact"]["id"])
    finally:
        server.stop()

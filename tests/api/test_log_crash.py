"""Real processes: a server killed with `kill -9` mid `POST /callLog` leaves nothing stuck (the restarted server
delivers the log by itself, once), and SIGTERM lets an in-flight `POST /callLog` finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TESTCRM_ADMIN_TOKEN, call_log_body, crm_admin_headers, new_phone
from tests.support.ports import free_port
from tests.support.served import wait_until_alive


class ServerProcess:
    """`appconnect serve` in its own process, on a SQLite database in `folder` that outlives it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "APPCONNECT_DATABASE_URL": f"sqlite+aiosqlite:///{self.folder / 'appconnect.sqlite3'}",
            "APPCONNECT_KEY_FILE": str(self.folder / "keys.json"),
            "APPCONNECT_TESTCRM_DATABASE_URL": f"sqlite+aiosqlite:///{self.folder / 'testcrm.sqlite3'}",
            "APPCONNECT_PUBLIC_URL": self.base,
            "TESTCRM_BASE_URL": f"{self.base}/testcrm/api/v1",
            "APPCONNECT_TESTCRM_FAULT_INJECTION": "true",
            "APPCONNECT_TESTCRM_ADMIN_TOKEN": TESTCRM_ADMIN_TOKEN,
            "APPCONNECT_CRM_READ_TIMEOUT": "10",
            "APPCONNECT_LOG_STALE_SECONDS": "1",
            "APPCONNECT_LOG_RETRY_INTERVAL_SECONDS": "0.3",
            "APPCONNECT_LOG_RETRY_BASE_SECONDS": "0.5",
            "APPCONNECT_LOG_LEVEL": "warning",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appconnect.cli", "serve", "--port", str(self.port)],
            cwd=self.folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_until_alive(self.base, self.process, 30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def prepare(http: httpx.Client) -> tuple[str, str, str, str]:
    """(api key, jwt, contact id, phone) of a fresh user with one contact."""
    key = http.post(
        "/testcrm/api/v1/api-keys", json={"name": f"K {uuid.uuid4().hex[:6]}"}, headers=crm_admin_headers()
    ).json()["apiKey"]
    jwt = http.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": key}).json()["jwtToken"]
    phone = new_phone()
    contact = http.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Crash Test", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    ).json()["contact"]["id"]
    return key, jwt, contact, phone


def log_in_background(base: str, jwt: str, body: dict[str, object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def send() -> None:
        try:
            with httpx.Client(base_url=base, timeout=30) as http:
                outcome.append(
                    http.post("/callLog", json=body, headers={"Authorization": f"Bearer {jwt}"}).json()
                )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, outcome


def activity_posts(http: httpx.Client) -> int:
    return int(
        http.get("/testcrm/api/_stats", headers=crm_admin_headers())
        .json()["requests"]
        .get("POST /api/v1/activities", 0)
    )


def wait_until_create_sent(http: httpx.Client, before: int) -> None:
    """The slow CRM has received the create: the request is in flight."""
    deadline = time.monotonic() + 20
    while activity_posts(http) <= before:
        assert time.monotonic() < deadline, "the create never reached the CRM"
        time.sleep(0.05)


def test_kill_9_mid_call_log_is_delivered_once_after_restart(server_process: ServerProcess) -> None:
    with httpx.Client(base_url=server_process.base, timeout=30) as http:
        key, jwt, contact, phone = prepare(http)
        session = f"kill-{uuid.uuid4().hex}"
        http.post(
            "/testcrm/api/_faults",
            headers=crm_admin_headers(),
            json={"delay_seconds": 8, "method": "POST", "path_prefix": "/api/v1/activities"},
        )
        before = activity_posts(http)
        thread, outcome = log_in_background(server_process.base, jwt, call_log_body(session, contact, phone))
        wait_until_create_sent(http, before)
    assert server_process.process is not None
    server_process.process.send_signal(signal.SIGKILL)
    server_process.process.wait(10)
    thread.join(30)
    assert isinstance(outcome[0], httpx.HTTPError)  # the client saw the connection die

    server_process.start()  # same databases; nobody retries by hand
    with httpx.Client(base_url=server_process.base, timeout=30) as http:
        auth = {"Authorization": f"Bearer {jwt}"}
        deadline = time.monotonic() + 30
        while not http.get("/callLog", params={"sessionIds": session}, headers=auth).json()["logs"][0][
            "matched"
        ]:
            assert time.monotonic() < deadline, "the abandoned log was never delivered"
            time.sleep(0.2)
        activities = http.get(
            "/testcrm/api/v1/activities", params={"contact_id": contact}, auth=(key, "")
        ).json()
        assert len(activities["data"]) == 1
        again = http.post("/callLog", json=call_log_body(session, contact, phone), headers=auth).json()
        assert again["returnMessage"]["message"] == f"Existing log for session {session}"


def test_sigterm_lets_an_in_flight_call_log_finish(server_process: ServerProcess) -> None:
    with httpx.Client(base_url=server_process.base, timeout=30) as http:
        _key, jwt, contact, phone = prepare(http)
        http.post(
            "/testcrm/api/_faults",
            headers=crm_admin_headers(),
            json={"delay_seconds": 1.5, "method": "POST", "path_prefix": "/api/v1/activities"},
        )
        before = activity_posts(http)
        thread, outcome = log_in_background(
            server_process.base, jwt, call_log_body(f"term-{uuid.uuid4().hex}", contact, phone)
        )
        wait_until_create_sent(http, before)
    assert server_process.process is not None
    server_process.process.send_signal(signal.SIGTERM)
    thread.join(30)
    assert isinstance(outcome[0], dict) and outcome[0]["successful"] is True, outcome
    # uvicorn re-raises the signal once its graceful shutdown is over
    assert server_process.process.wait(30) in (0, -signal.SIGTERM)

"""Structured logs of a real `appconnect serve`: one JSON object per line, each line of a request naming it, an
access line per request, and none of what users send (phone numbers, names, notes, tokens, keys) in any line."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import call_log_body, new_phone
from tests.support.ports import free_port
from tests.support.served import wait_until_alive

SUITE_PREFIXES = ("APPCONNECT_", "TESTCRM_", "PIPEDRIVE_", "DATABASE_URL", "REDIS_URL")
SOURCES = Path(__file__).resolve().parents[1] / "src"


@dataclass
class ServedLogs:
    base: str
    process: subprocess.Popen[bytes]
    log_file: Path
    api_key: str
    admin_token: str
    metrics_token: str

    def stop(self) -> str:
        """SIGTERM, wait, and everything the server wrote to stderr."""
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        return self.log_file.read_text()


def start_server(folder: Path, **settings: str) -> ServedLogs:
    """`appconnect serve --workers 2` on SQLite in `folder`, stderr to a file, the suite's settings left out."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    served = ServedLogs(
        base=base,
        process=None,  # type: ignore[arg-type]
        log_file=folder / "stderr.log",
        api_key="key-" + secrets.token_hex(12),
        admin_token="admin-" + secrets.token_hex(12),
        metrics_token="scrape-" + secrets.token_hex(12),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(SUITE_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SOURCES), env.get("PYTHONPATH"))))  # this checkout
    env.update(
        APPCONNECT_DATABASE_URL=f"sqlite:///{folder / 'app.sqlite3'}",
        APPCONNECT_TESTCRM_DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'testcrm.sqlite3'}",
        APPCONNECT_KEY_FILE=str(folder / "keys.json"),
        APPCONNECT_TESTCRM_API_KEY=served.api_key,
        APPCONNECT_TESTCRM_ADMIN_TOKEN=served.admin_token,
        APPCONNECT_TESTCRM_FAULT_INJECTION="true",
        APPCONNECT_METRICS_TOKEN=served.metrics_token,
        APPCONNECT_LOG_RETRIER_ENABLED="false",
        **settings,
    )
    with served.log_file.open("wb") as stderr:
        served.process = subprocess.Popen(
            [sys.executable, "-m", "appconnect.cli", "serve", "--workers", "2", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_until_alive(base, served.process, 60)
    except BaseException:
        served.stop()
        raise
    return served


@pytest.fixture
def json_server(tmp_path: Path) -> Iterator[ServedLogs]:
    served = start_server(
        tmp_path, APPCONNECT_LOG_FORMAT="json", APPCONNECT_LOG_LEVEL="debug", APPCONNECT_ACCESS_LOG="true"
    )
    yield served
    if served.process.poll() is None:
        served.stop()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line, which must each be one JSON object."""
    entries = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def test_json_logs_name_the_request_on_every_line_and_hold_no_user_data(json_server: ServedLogs) -> None:
    phone = new_phone()
    name = f"Zebulon Quaxley{uuid.uuid4().hex[:6]}"
    note = f"confidential-note-{uuid.uuid4().hex}"
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=json_server.base, timeout=30) as http:
        login = http.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": json_server.api_key})
        assert login.status_code == 200, login.text
        jwt = login.json()["jwtToken"]
        auth = {"Authorization": f"Bearer {jwt}"}
        answers.append(login)
        answers.append(http.get("/contact", params={"phoneNumber": phone}, headers=auth))
        created = http.post(
            "/contact",
            json={"phoneNumber": phone, "newContactName": name, "newContactType": "contact"},
            headers=auth,
        )
        assert created.json()["successful"] is True, created.text
        answers.append(created)
        contact_id = str(created.json()["contact"]["id"])
        # the CRM fails the next activity once: the server logs the failed CRM call inside that request
        fault = http.post(
            "/testcrm/api/_faults",
            json={"status": 503, "times": 1, "method": "POST", "path_prefix": "/api/v1/activities"},
            headers={"Authorization": f"Bearer {json_server.admin_token}"},
        )
        assert fault.status_code == 201, fault.text
        failed = http.post(
            "/callLog", json=call_log_body("s-fail", contact_id, phone, note=note), headers=auth
        )
        answers.append(failed)
        logged = http.post("/callLog", json=call_log_body("s-ok", contact_id, phone, note=note), headers=auth)
        assert logged.json()["successful"] is True, logged.text
        answers.append(logged)
        answers.append(http.get(f"/no/such/{phone}", params={"jwtToken": jwt, "phoneNumber": phone}))
        answers.append(http.get("/contact", params={"phoneNumber": phone, "jwtToken": "not-a-token"}))
        metrics = http.get("/metrics", headers={"Authorization": f"Bearer {json_server.metrics_token}"})
        assert metrics.status_code == 200
        answers.append(metrics)
    text = json_server.stop()
    entries = json_lines(text)

    access = {e["request_id"]: e for e in entries if e["logger"] == "appconnect.access"}
    expected_routes = [
        "/apiKeyLogin",
        "/contact",
        "/contact",
        "/callLog",
        "/callLog",
        "unmatched",
        "/contact",
    ]
    for answer, route in zip(answers, [*expected_routes, "/metrics"], strict=True):
        line = access[answer.headers["x-request-id"]]  # one access line per request, found by its id
        assert line["route"] == route
        assert line["method"] == answer.request.method
        assert line["status"] == answer.status_code
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
        assert line["level"] == "info" and line["time"].endswith("+00:00")
    for answer in answers[:5]:  # the routes that know their CRM say which
        assert access[answer.headers["x-request-id"]]["platform"] == "testcrm"
    assert access[answers[5].headers["x-request-id"]]["platform"] is None

    # a line logged in the middle of a request carries that request's fields too
    crm_failures = [e for e in entries if e["logger"] == "appconnect.crm" and e["level"] == "warning"]
    assert [e["request_id"] for e in crm_failures] == [failed.headers["x-request-id"]]
    assert crm_failures[0]["route"] == "/callLog" and crm_failures[0]["platform"] == "testcrm"
    assert "http_5xx" in crm_failures[0]["message"]
    # the supervisor and uvicorn speak JSON too
    assert any(e["logger"] == "appconnect.supervisor" for e in entries)
    assert any(e["logger"].startswith("uvicorn") for e in entries)

    for private in (
        phone,
        phone.lstrip("+"),
        phone[2:],  # the national number
        name,
        note,
        jwt,
        json_server.api_key,
        json_server.admin_token,
        json_server.metrics_token,
    ):
        assert private not in text


def test_text_logs_have_an_access_line_with_the_request_id(tmp_path: Path) -> None:
    served = start_server(
        tmp_path, APPCONNECT_ACCESS_LOG="true"
    )  # text lines at info, the access log turned on
    try:
        answer = httpx.get(f"{served.base}/isAlive")
    finally:
        text = served.stop()
    request_id = answer.headers["x-request-id"]
    lines = [line for line in text.splitlines() if request_id in line]
    assert len(lines) == 1, text
    assert " INFO appconnect.access GET /isAlive 200 " in lines[0]
    assert lines[0].endswith(f"[request {request_id} GET /isAlive]")


def test_the_access_log_is_off_by_default(tmp_path: Path) -> None:
    served = start_server(tmp_path, APPCONNECT_LOG_FORMAT="json")
    try:
        answer = httpx.get(f"{served.base}/isAlive")
    finally:
        text = served.stop()
    assert answer.status_code == 200
    entries = json_lines(text)
    assert entries, "the server logged nothing at all"
    assert not [e for e in entries if e["logger"] == "appconnect.access"]


def test_a_traceback_in_a_json_line_is_redacted() -> None:
    """An exception's text can echo what a user sent: the JSON line masks phone numbers and tokens in it."""
    import logging

    from appconnect.logs import JsonFormatter

    try:
        raise ValueError("no contact for +14155550123 (jwtToken=abc.def.ghi)")
    except ValueError:
        record = logging.LogRecord(
            "appconnect", logging.ERROR, __file__, 1, "lookup failed", None, sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "lookup failed" and "ValueError" in entry["exception"]
    assert "4155550123" not in entry["exception"] and "abc.def.ghi" not in entry["exception"]
    assert "request_id" not in entry  # not inside a request

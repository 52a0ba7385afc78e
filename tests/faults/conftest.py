"""Fixtures of the process-level fault tests: a test CRM in its own process, and helpers for the client's side."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.processes import CrmProcess


@pytest.fixture
def crm_process(tmp_path: Path) -> Iterator[CrmProcess]:
    """The test CRM in a process of its own: it outlives a connector server killed with -9."""
    crm = CrmProcess(tmp_path).start()
    try:
        yield crm
    finally:
        crm.stop()


def retry_until(
    attempt: Callable[[], Any], done: Callable[[Any], bool], *, seconds: float, pause: float = 0.5
) -> list[Any]:
    """Call `attempt` as a user pressing "retry" would, until `done` or `seconds` are up; all answers, in order."""
    answers: list[Any] = []
    deadline = time.monotonic() + seconds
    while True:
        answers.append(attempt())
        if done(answers[-1]) or time.monotonic() > deadline:
            return answers
        time.sleep(pause)


def bearer(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def create_contact(base_url: str, jwt: str, phone: str, name: str = "Fault Person") -> httpx.Response:
    return httpx.post(
        f"{base_url}/contact",
        json={"phoneNumber": phone, "newContactName": name, "newContactType": "contact"},
        headers=bearer(jwt),
        timeout=30,
    )


def matched_log_id(base_url: str, jwt: str, session: str) -> str | None:
    """The logId GET /callLog reports for the session, or None while it is not matched."""
    try:
        answer = httpx.get(
            f"{base_url}/callLog", params={"sessionIds": session}, headers=bearer(jwt), timeout=30
        ).json()
    except (httpx.HTTPError, ValueError):
        return None
    logs = answer.get("logs") if isinstance(answer, dict) else None
    entry = logs[0] if isinstance(logs, list) and logs and isinstance(logs[0], dict) else {}
    return str(entry["logId"]) if entry.get("matched") is True and entry.get("logId") else None


def log_call_until_matched(base_url: str, jwt: str, body: dict[str, Any], *, seconds: float) -> str | None:
    """POST /callLog as a user retrying it would, until it says logged, or GET /callLog shows it matched (a
    server may deliver a kept log later and answer "Existing log" meanwhile); the logId, or None at the end."""
    session = str(body["logInfo"]["sessionId"])
    deadline = time.monotonic() + seconds
    while True:
        try:
            answer = httpx.post(f"{base_url}/callLog", json=body, headers=bearer(jwt), timeout=30).json()
        except (httpx.HTTPError, ValueError):
            answer = {}
        if isinstance(answer, dict) and answer.get("successful") is True and answer.get("logId"):
            return str(answer["logId"])
        log_id = matched_log_id(base_url, jwt, session)
        if log_id is not None or time.monotonic() > deadline:
            return log_id
        time.sleep(0.5)

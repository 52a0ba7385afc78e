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

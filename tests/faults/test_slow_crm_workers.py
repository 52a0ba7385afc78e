"""Duplicate placeholder creates spread over two worker processes while the CRM is slow: one CRM contact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_phone
from tests.faults.conftest import create_contact, retry_until
from tests.faults.processes import CrmProcess, ServerProcess

READ_TIMEOUT = 1.5


@pytest.fixture
def two_workers(tmp_path: Path, crm_process: CrmProcess) -> Iterator[ServerProcess]:
    database = f"sqlite+aiosqlite:///{tmp_path / 'appconnect.sqlite3'}"
    server = ServerProcess(
        tmp_path, database, crm_process, workers=2, APPCONNECT_CRM_READ_TIMEOUT=str(READ_TIMEOUT)
    )
    try:
        yield server.start()
    finally:
        server.stop()


def test_duplicate_creates_on_two_workers_with_a_slow_crm_make_one_contact(
    two_workers: ServerProcess, crm_process: CrmProcess
) -> None:
    key, crm = crm_process.new_account()
    jwt = two_workers.login(key)
    phone = new_phone()
    # the first create is slow (but within the read timeout): the others arrive while it is in flight
    crm.inject(delay_seconds=READ_TIMEOUT / 2, times=1, method="POST", path_prefix="/api/v1/contacts")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: create_contact(two_workers.base_url, jwt, phone).json(), range(8)))
    stored = crm.contacts_with_phone(phone)
    assert len(stored) == 1, stored
    successful = [a for a in answers if a.get("successful") is True]
    assert successful, answers
    assert {str(a["contact"]["id"]) for a in successful} == {str(stored[0]["id"])}
    # the ones that were told to try again get the same contact when they do
    retried = create_contact(two_workers.base_url, jwt, phone).json()
    assert str(retried["contact"]["id"]) == str(stored[0]["id"])
    assert len(crm.contacts_with_phone(phone)) == 1


def test_create_finished_by_the_crm_after_the_read_timeout_is_adopted_on_retry(
    two_workers: ServerProcess, crm_process: CrmProcess
) -> None:
    key, crm = crm_process.new_account()
    jwt = two_workers.login(key)
    phone = new_phone()
    crm.inject(delay_seconds=READ_TIMEOUT + 1.0, times=1, method="POST", path_prefix="/api/v1/contacts")
    create_contact(
        two_workers.base_url, jwt, phone
    )  # the server gives up at the read timeout; the CRM goes on
    deadline = time.monotonic() + 10
    while not crm.contacts_with_phone(phone) and time.monotonic() < deadline:
        time.sleep(0.2)  # the CRM finishes the write it was still doing
    assert len(crm.contacts_with_phone(phone)) == 1

    answers = retry_until(
        lambda: create_contact(two_workers.base_url, jwt, phone).json(),
        lambda answer: answer.get("successful") is True,
        seconds=20,
    )
    stored = crm.contacts_with_phone(phone)
    assert len(stored) == 1, stored
    assert str(answers[-1]["contact"]["id"]) == str(stored[0]["id"])
    looked_up = httpx.get(
        f"{two_workers.base_url}/contact",
        params={"phoneNumber": phone},
        headers={"Authorization": f"Bearer {jwt}"},
        timeout=30,
    ).json()
    assert [c["id"] for c in looked_up["contact"] if not c.get("isNewContact")] == [str(stored[0]["id"])]

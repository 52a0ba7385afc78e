"""CRM storms and resets (issue 6 item 11): 429 storms, 5xx bursts, answers slower than the read timeout and
connection resets after the CRM did the work. The user retries each failed step; the CRM ends with exactly one
contact and one activity, and the call is matched."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import CrmView, call_log_body, new_phone
from tests.faults.conftest import bearer, create_contact, log_call_until_matched, retry_until
from tests.faults.processes import CrmProcess, ServerProcess
from tests.faults.reset_proxy import ResetProxy, reset_proxy

READ_TIMEOUT = 1.5
RETRY_SECONDS = 30.0


@dataclass
class Setup:
    server: ServerProcess
    proxy: ResetProxy
    crm: CrmView
    jwt: str


@pytest.fixture
def setup(tmp_path: Path, crm_process: CrmProcess) -> Iterator[Setup]:
    """The server reaches the CRM through a proxy that can reset connections; one fresh CRM user."""
    with reset_proxy(crm_process.port) as proxy:
        server = ServerProcess(
            tmp_path,
            f"sqlite+aiosqlite:///{tmp_path / 'appconnect.sqlite3'}",
            crm_process,
            APPCONNECT_CRM_READ_TIMEOUT=str(READ_TIMEOUT),
            TESTCRM_BASE_URL=f"{proxy.url}/testcrm/api/v1",
        )
        try:
            server.start()
            key, crm = crm_process.new_account()
            yield Setup(server, proxy, crm, server.login(key))
        finally:
            server.stop()


def contact_with_retries(setup: Setup, phone: str) -> str:
    answers = retry_until(
        lambda: create_contact(setup.server.base_url, setup.jwt, phone).json(),
        lambda answer: answer.get("successful") is True,
        seconds=RETRY_SECONDS,
        pause=0.3,
    )
    assert answers[-1]["successful"] is True, answers[-1]
    return str(answers[-1]["contact"]["id"])


def log_with_retries(setup: Setup, phone: str, contact_id: str, session: str) -> str:
    body = call_log_body(session, contact_id, phone)
    log_id = log_call_until_matched(setup.server.base_url, setup.jwt, body, seconds=RETRY_SECONDS)
    assert log_id is not None, f"{session} is still not logged"
    return log_id


def assert_one_contact_one_activity(setup: Setup, phone: str, session: str, log_id: object) -> None:
    contacts = setup.crm.contacts_with_phone(phone)
    assert len(contacts) == 1, contacts
    activities = setup.crm.activities_of(contacts[0]["id"])
    assert len(activities) == 1, activities
    assert str(log_id) == str(activities[0]["id"])
    seen = httpx.get(
        f"{setup.server.base_url}/callLog",
        params={"sessionIds": session},
        headers=bearer(setup.jwt),
        timeout=30,
    ).json()
    assert seen["logs"][0] == {"sessionId": session, "matched": True, "logId": str(activities[0]["id"])}


def run_flow(setup: Setup) -> None:
    """GET /contact (unknown number) -> POST /contact -> POST /callLog, each step retried by the user."""
    phone = new_phone()
    session = f"storm-{phone}"
    looked_up = retry_until(
        lambda: httpx.get(
            f"{setup.server.base_url}/contact",
            params={"phoneNumber": phone},
            headers=bearer(setup.jwt),
            timeout=30,
        ).json(),
        lambda answer: answer.get("successful") is True,
        seconds=RETRY_SECONDS,
        pause=0.3,
    )
    assert looked_up[-1]["contact"][0]["isNewContact"] is True, looked_up[-1]
    contact_id = contact_with_retries(setup, phone)
    logged = log_with_retries(setup, phone, contact_id, session)
    assert_one_contact_one_activity(setup, phone, session, logged)


def test_429_storm_then_retries_give_one_contact_and_one_activity(setup: Setup) -> None:
    setup.crm.inject(status=429, retry_after=1, times=4, method="POST", path_prefix="/api/v1/contacts")
    setup.crm.inject(status=429, retry_after=1, times=4, method="POST", path_prefix="/api/v1/activities")
    run_flow(setup)


def test_5xx_burst_then_retries_give_one_contact_and_one_activity(setup: Setup) -> None:
    setup.crm.inject(status=500, times=3, method="POST", path_prefix="/api/v1/contacts")
    setup.crm.inject(status=502, times=3, method="POST", path_prefix="/api/v1/activities")
    setup.crm.inject(status=503, times=3, method="GET", path_prefix="/api/v1/contacts")
    run_flow(setup)


def test_repeated_answers_slower_than_the_read_timeout_give_one_activity(setup: Setup) -> None:
    phone = new_phone()
    session = f"slow-{phone}"
    contact_id = contact_with_retries(setup, phone)
    setup.crm.inject(
        delay_seconds=READ_TIMEOUT + 0.5, times=3, method="POST", path_prefix="/api/v1/activities"
    )
    logged = log_with_retries(setup, phone, contact_id, session)
    assert_one_contact_one_activity(setup, phone, session, logged)


def test_connection_reset_after_the_crm_created_the_activity_gives_one_activity(setup: Setup) -> None:
    phone = new_phone()
    session = f"reset-{phone}"
    contact_id = contact_with_retries(setup, phone)
    setup.proxy.arm(1)
    first = httpx.post(
        f"{setup.server.base_url}/callLog",
        json=call_log_body(session, contact_id, phone),
        headers=bearer(setup.jwt),
        timeout=30,
    ).json()
    assert setup.proxy.armed() == 0, first  # the CRM's answer was dropped (the server may adopt or fail)
    assert len(setup.crm.activities_of(contact_id)) == 1  # the CRM did create it
    logged = log_with_retries(setup, phone, contact_id, session)
    assert_one_contact_one_activity(setup, phone, session, logged)


def test_connection_reset_after_the_crm_created_the_contact_gives_one_contact(setup: Setup) -> None:
    phone = new_phone()
    session = f"reset-{phone}"
    setup.proxy.arm(1)
    first = create_contact(setup.server.base_url, setup.jwt, phone).json()
    assert setup.proxy.armed() == 0, first  # the CRM's answer was dropped (the server may adopt or fail)
    assert len(setup.crm.contacts_with_phone(phone)) == 1  # the CRM did create it
    contact_id = contact_with_retries(setup, phone)
    logged = log_with_retries(setup, phone, contact_id, session)
    assert_one_contact_one_activity(setup, phone, session, logged)


def message_body(
    phone: str, contact_id: str, conversation: str, message_id: str, text: str
) -> dict[str, object]:
    return {
        "logInfo": {
            "conversationId": conversation,
            "conversationLogId": f"{conversation}-2026-11-25",
            "messages": [
                {
                    "id": message_id,
                    "subject": text,
                    "direction": "Inbound",
                    "creationTime": "2026-11-25T10:00:00Z",
                    "from": {"phoneNumber": phone},
                }
            ],
            "correspondents": [{"phoneNumber": phone}],
        },
        "contactId": contact_id,
        "contactName": "Fault Person",
    }


def post_message_until_logged(setup: Setup, body: dict[str, object]) -> None:
    answers = retry_until(
        lambda: httpx.post(
            f"{setup.server.base_url}/messageLog", json=body, headers=bearer(setup.jwt), timeout=30
        ).json(),
        lambda answer: answer.get("successful") is True,
        seconds=RETRY_SECONDS,
        pause=0.3,
    )
    assert answers[-1]["successful"] is True, answers[-1]


def test_connection_resets_on_message_logs_give_one_activity_with_each_message_once(setup: Setup) -> None:
    phone = new_phone()
    contact_id = contact_with_retries(setup, phone)
    conversation = f"conv{phone[1:]}"
    first = message_body(phone, contact_id, conversation, f"m1-{phone}", "first text")
    second = message_body(phone, contact_id, conversation, f"m2-{phone}", "second text")

    setup.proxy.arm(1, method="POST")  # the CRM creates the conversation's activity; its answer is lost
    post_message_until_logged(setup, first)
    assert setup.proxy.armed() == 0
    setup.proxy.arm(1, method="PATCH")  # the CRM appends the second message; its answer is lost
    post_message_until_logged(setup, second)
    assert setup.proxy.armed() == 0

    activities = setup.crm.activities_of(contact_id)
    assert len(activities) == 1, activities
    body = str(activities[0]["body"])
    assert body.count("first text") == 1 and body.count("second text") == 1, body
    assert body.startswith("Conversation(2 messages)"), body

"""CRM failures injected into the test CRM: the mapped message, nothing half-written, and a retry that works."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from appconnect.flows.delivery import NOT_SETTLED, settle_window
from tests.conftest import CrmView, LiveServer, call_log_body, new_phone


@pytest.fixture
def faults(crm: CrmView) -> Iterator[CrmView]:
    crm.clear_faults()
    yield crm
    crm.clear_faults()


def create_contact(client: httpx.Client, jwt: str, phone: str) -> dict[str, object]:
    response = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Retry Person", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def test_rate_limit_is_mapped_and_the_account_backs_off(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    """A Retry-After longer than the server waits is reported; until it passes the CRM is not asked again."""
    phone = new_phone()
    faults.inject(status=429, retry_after=30, times=1, method="POST", path_prefix="/api/v1/contacts")
    limited = create_contact(client, jwt, phone)
    assert limited["successful"] is False
    message = limited["returnMessage"]
    assert isinstance(message, dict)
    assert message["message"] == "Rate limit exceeded"
    assert "maximum number of requests allowed by testcrm" in message["details"][0]["items"][0]["text"]
    assert faults.contacts_with_phone(phone) == []

    # the fault answered once; had this request reached the CRM it would have created the contact
    again = create_contact(client, jwt, phone)
    assert again["successful"] is False
    assert again["returnMessage"]["message"] == "Rate limit exceeded"
    assert faults.contacts_with_phone(phone) == []


def test_server_error_on_lookup_is_mapped(client: httpx.Client, jwt: str, faults: CrmView) -> None:
    faults.inject(status=500, times=1, method="GET", path_prefix="/api/v1/contacts")
    response = client.get(
        "/contact", params={"phoneNumber": new_phone()}, headers={"Authorization": f"Bearer {jwt}"}
    )
    body = response.json()
    assert response.status_code == 200 and body["successful"] is False
    assert body["returnMessage"]["message"] == "Error finding contact"


def test_authorization_failure_is_mapped_without_401(client: httpx.Client, jwt: str, faults: CrmView) -> None:
    faults.inject(status=403, times=1, method="GET", path_prefix="/api/v1/contacts")
    response = client.get(
        "/contact", params={"phoneNumber": new_phone()}, headers={"Authorization": f"Bearer {jwt}"}
    )
    assert response.status_code == 200
    assert response.json()["returnMessage"]["message"] == "Authorization error"


def test_server_error_on_call_log_leaves_no_row_and_the_retry_logs_once(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    phone = new_phone()
    contact = create_contact(client, jwt, phone)["contact"]
    assert isinstance(contact, dict)
    session = f"fault500-{phone}"
    headers = {"Authorization": f"Bearer {jwt}"}
    faults.inject(status=500, times=1, method="POST", path_prefix="/api/v1/activities")
    failed = client.post(
        "/callLog", json=call_log_body(session, contact["id"], phone), headers=headers
    ).json()
    assert failed["successful"] is False
    assert failed["returnMessage"]["message"] == "Error creating call log"
    assert (
        client.get("/callLog", params={"sessionIds": session}, headers=headers).json()["logs"][0]["matched"]
        is False
    )
    assert faults.activities_of(contact["id"]) == []

    retried = client.post(
        "/callLog", json=call_log_body(session, contact["id"], phone), headers=headers
    ).json()
    assert retried["successful"] is True
    assert len(faults.activities_of(contact["id"])) == 1


def test_slow_crm_beyond_the_read_timeout_then_retry_gives_one_activity(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    """The CRM finishes the write after we gave up; the retry must not create a second activity."""
    phone = new_phone()
    contact = create_contact(client, jwt, phone)["contact"]
    assert isinstance(contact, dict)
    session = f"slow-{phone}"
    headers = {"Authorization": f"Bearer {jwt}"}
    faults.inject(delay_seconds=3.0, times=1, method="POST", path_prefix="/api/v1/activities")
    slow = client.post("/callLog", json=call_log_body(session, contact["id"], phone), headers=headers).json()
    assert slow["successful"] is False
    assert slow["returnMessage"]["message"] == "Error creating call log"
    assert (
        client.get("/callLog", params={"sessionIds": session}, headers=headers).json()["logs"][0]["matched"]
        is False
    )

    import time

    time.sleep(1.5)  # let the slow CRM finish the write it was still doing
    retried = client.post(
        "/callLog", json=call_log_body(session, contact["id"], phone), headers=headers
    ).json()
    assert retried["successful"] is True
    activities = faults.activities_of(contact["id"])
    assert len(activities) == 1
    assert retried["logId"] == str(activities[0]["id"])


def test_failed_message_log_is_not_recorded_and_the_retry_logs_it(
    server: LiveServer, client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    phone = new_phone()
    contact = create_contact(client, jwt, phone)["contact"]
    assert isinstance(contact, dict)
    body = {
        "logInfo": {
            "conversationId": f"c{phone}",
            "conversationLogId": f"c{phone}-2026-11-25",
            "messages": [
                {
                    "id": f"fm-{phone}",
                    "subject": "hello",
                    "direction": "Inbound",
                    "creationTime": "2026-11-25T10:00:00Z",
                    "from": {"phoneNumber": phone},
                }
            ],
            "correspondents": [{"phoneNumber": phone}],
        },
        "contactId": contact["id"],
        "contactName": "Retry Person",
    }
    headers = {"Authorization": f"Bearer {jwt}"}
    faults.inject(status=502, times=1, method="POST", path_prefix="/api/v1/activities")
    failed = client.post("/messageLog", json=body, headers=headers).json()
    assert failed["successful"] is False
    assert failed["returnMessage"]["message"] == "Error creating message log"
    # a 502 does not prove the create was not done (a gateway may have given up on a CRM that went on): the
    # CRM is asked first, and until the settle window has passed finding nothing is no proof either
    early = client.post("/messageLog", json=body, headers=headers).json()
    assert early["successful"] is False and early["returnMessage"]["message"] == NOT_SETTLED.message
    assert faults.received("/api/v1/activities") == 1
    time.sleep(settle_window(server.settings) + 0.5)
    retried = client.post("/messageLog", json=body, headers=headers).json()
    assert retried["successful"] is True and retried["logIds"] == [f"fm-{phone}"]
    again = client.post("/messageLog", json=body, headers=headers).json()
    assert again == {"successful": True, "logIds": [], "returnMessage": None}
    assert len(faults.activities_of(contact["id"])) == 1
    assert faults.received("/api/v1/activities") == 2

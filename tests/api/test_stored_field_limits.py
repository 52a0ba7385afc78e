"""Every request value stored in a database column, at its limit and one past it, on SQLite and PostgreSQL.

At the limit the value is accepted (and, where the route stores it, found again); one character more is a 400
that names the field. Hostile-input tests send far longer values: these catch a check that is off by one (a
256-character session id let through to a 255-character column: SQLite stores it, PostgreSQL fails the insert).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from appconnect.flows import requests
from tests.api.test_hostile_input import base_body, send, set_path
from tests.conftest import call_log_body, new_phone

# The limits, written out here rather than imported, so a limit changed in the code is caught, not followed:
# the columns of store/tables.py, and two shorter ones that leave room for the group-SMS suffix `-<contactId>`.
ID_CHARS = 255
EXTENSION_CHARS = 64
PHONE_CHARS = 32
MESSAGE_ID_CHARS = 128
CONTACT_ID_CHARS = 120

# (method, path, dotted field, the column's limit); the names are what the 400 must mention
STORED: list[tuple[str, str, str, int]] = [
    ("POST", "/apiKeyLogin", "rcAccountId", ID_CHARS),
    ("POST", "/contact", "phoneNumber", PHONE_CHARS),
    ("POST", "/callLog", "logInfo.sessionId", ID_CHARS),
    ("POST", "/callLog", "logInfo.id", ID_CHARS),
    ("POST", "/callLog", "logInfo.telephonySessionId", ID_CHARS),
    ("POST", "/callLog", "logInfo.extensionNumber", EXTENSION_CHARS),
    ("POST", "/callLog", "logInfo.hashedExtensionId", ID_CHARS),
    ("POST", "/callLog", "contactId", CONTACT_ID_CHARS),
    ("POST", "/callLog", "extensionNumber", EXTENSION_CHARS),
    ("POST", "/callLog", "hashedExtensionId", ID_CHARS),
    ("PATCH", "/callLog", "sessionId", ID_CHARS),
    ("PATCH", "/callLog", "extensionNumber", EXTENSION_CHARS),
    ("PATCH", "/callLog", "hashedExtensionId", ID_CHARS),
    ("PUT", "/callDisposition", "sessionId", ID_CHARS),
    ("PUT", "/callDisposition", "extensionNumber", EXTENSION_CHARS),
    ("PUT", "/callDisposition", "hashedExtensionId", ID_CHARS),
    ("POST", "/messageLog", "logInfo.conversationId", MESSAGE_ID_CHARS),
    ("POST", "/messageLog", "logInfo.conversationLogId", MESSAGE_ID_CHARS),
    ("POST", "/messageLog", "logInfo.messages.0.id", MESSAGE_ID_CHARS),
    ("POST", "/messageLog", "contactId", CONTACT_ID_CHARS),
    ("POST", "/user/settings", "settingKeysToRemove.0", ID_CHARS),
]


def test_the_limits_are_the_columns() -> None:
    """The request limits follow store/tables.py (message ids leave room for the group-SMS suffix)."""
    from appconnect.store.tables import call_logs, created_contacts, message_logs, users

    assert (requests.ID_CHARS, requests.EXTENSION_CHARS, requests.PHONE_CHARS) == (
        ID_CHARS,
        EXTENSION_CHARS,
        PHONE_CHARS,
    )
    assert (requests.MESSAGE_ID_CHARS, requests.CONTACT_ID_CHARS) == (MESSAGE_ID_CHARS, CONTACT_ID_CHARS)

    assert ID_CHARS == call_logs.c.session_id.type.length == users.c.rc_account_id.type.length  # type: ignore[attr-defined]
    assert call_logs.c.extension_number.type.length == EXTENSION_CHARS  # type: ignore[attr-defined]
    assert created_contacts.c.phone_number.type.length == PHONE_CHARS  # type: ignore[attr-defined]
    assert message_logs.c.id.type.length >= MESSAGE_ID_CHARS + 1 + CONTACT_ID_CHARS  # type: ignore[attr-defined]
    assert call_logs.c.contact_id.type.length >= CONTACT_ID_CHARS  # type: ignore[attr-defined]


def _value(field: str, length: int) -> str:
    """A value of exactly `length` characters that is otherwise valid for the field."""
    if field == "phoneNumber":
        return ("+1415" + "5" * length)[:length]
    if field == "contactId" or field.endswith("extensionNumber"):
        return "7" * length
    return ("x" * length)[:length]


@pytest.mark.parametrize(
    ("method", "path", "field", "limit"), STORED, ids=[f"{m} {p} {f}" for m, p, f, _ in STORED]
)
def test_a_stored_field_takes_its_limit_and_refuses_one_more(
    client: httpx.Client,
    jwt: str,
    crm_api_key: str,
    method: str,
    path: str,
    field: str,
    limit: int,
) -> None:
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Limit", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    ).json()["contact"]["id"]

    def body_with(value: str) -> dict[str, Any]:
        session = f"s-{uuid.uuid4().hex}"
        return set_path(base_body(method, path, crm_api_key, contact, phone, session), field, value)

    at_limit = send(client, method, path, jwt, body_with(_value(field, limit)))
    assert at_limit.status_code == 200, at_limit.text
    assert "Database operation failed" not in at_limit.text

    over = send(client, method, path, jwt, body_with(_value(field, limit + 1)))
    assert over.status_code == 400, over.text
    assert field.split(".")[-1].replace("0", "") in over.json()["error"]


def test_a_session_id_at_its_limit_is_logged_and_found_again(
    client: httpx.Client, jwt: str, crm_api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {jwt}"}
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Long Session", "newContactType": "contact"},
        headers=headers,
    ).json()["contact"]["id"]
    session = uuid.uuid4().hex + "s" * (ID_CHARS - 32)
    assert len(session) == ID_CHARS
    short_ids = {"id": "c1", "telephonySessionId": f"t-{uuid.uuid4().hex}"}
    body = call_log_body(session, contact, phone, log_info=short_ids)
    logged = client.post("/callLog", json=body, headers=headers).json()
    assert logged["successful"] is True, logged
    found = client.get("/callLog", params={"sessionIds": session}, headers=headers).json()["logs"]
    assert found == [{"sessionId": session, "matched": True, "logId": logged["logId"]}]

    over = call_log_body(session + "s", contact, phone, log_info=short_ids)
    refused = client.post("/callLog", json=over, headers=headers)
    assert refused.status_code == 400 and "sessionId" in refused.json()["error"]


def test_message_ids_at_their_limit_are_logged_once(client: httpx.Client, jwt: str) -> None:
    headers = {"Authorization": f"Bearer {jwt}"}
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Long Ids", "newContactType": "contact"},
        headers=headers,
    ).json()["contact"]["id"]
    message_id = uuid.uuid4().hex + "m" * (MESSAGE_ID_CHARS - 32)
    conversation = uuid.uuid4().hex + "c" * (MESSAGE_ID_CHARS - 32)
    body = {
        "logInfo": {
            "conversationId": conversation,
            "conversationLogId": conversation,
            "messages": [
                {
                    "id": message_id,
                    "subject": "at the limit",
                    "direction": "Inbound",
                    "creationTime": "2026-11-25T10:00:00Z",
                    "from": {"phoneNumber": phone},
                }
            ],
            "correspondents": [{"phoneNumber": phone}],
        },
        "contactId": contact,
        "contactName": "Long Ids",
    }
    first = client.post("/messageLog", json=body, headers=headers).json()
    assert first["successful"] is True and first["logIds"] == [message_id], first
    again = client.post("/messageLog", json=body, headers=headers).json()
    assert again == {"successful": True, "logIds": [], "returnMessage": None}


@pytest.mark.parametrize("header", ["rc-account-id", "rc-extension-id"])
def test_login_identity_headers_take_their_limit_and_refuse_one_more(
    client: httpx.Client, crm_api_key: str, header: str
) -> None:
    body = {"platform": "testcrm", "apiKey": crm_api_key}
    at_limit = client.post("/apiKeyLogin", json=body, headers={header: "h" * ID_CHARS})
    assert at_limit.status_code == 200, at_limit.text
    over = client.post("/apiKeyLogin", json=body, headers={header: "h" * (ID_CHARS + 1)})
    assert over.status_code == 400 and header in over.json()["error"]


def test_the_phone_number_query_takes_its_limit_and_refuses_one_more(client: httpx.Client, jwt: str) -> None:
    headers = {"Authorization": f"Bearer {jwt}"}
    at_limit = client.get("/contact", params={"phoneNumber": "+" + "1" * (PHONE_CHARS - 1)}, headers=headers)
    assert at_limit.status_code == 200, at_limit.text
    over = client.get("/contact", params={"phoneNumber": "+" + "1" * PHONE_CHARS}, headers=headers)
    assert over.status_code == 400 and "phoneNumber" in over.json()["error"]

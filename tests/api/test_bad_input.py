"""Bad input gets a clear error and writes nothing: JWT problems, unknown platforms, invalid contact data."""

from __future__ import annotations

import json
import time

import httpx
import jwt as pyjwt
import pytest

from appconnect.security.jwt import SessionTokens
from tests.conftest import CrmView, LiveServer, call_log_body, new_phone

AUTHORIZE_FIRST = "Please go to Settings and authorize CRM platform"


def server_secret(server: LiveServer) -> str:
    secret: str = json.loads(server.settings.key_file.read_text())["jwt_secret"]
    return secret


def test_missing_jwt_is_400_text(client: httpx.Client) -> None:
    """The contract's fixed text, typed as the reference sends a string (tests/api/test_contract_shapes.py)."""
    response = client.get("/contact", params={"phoneNumber": new_phone()})
    assert response.status_code == 400
    assert response.text == AUTHORIZE_FIRST
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_garbage_jwt_in_query_is_400(client: httpx.Client) -> None:
    response = client.get("/contact", params={"phoneNumber": new_phone(), "jwtToken": "not-a-jwt"})
    assert response.status_code == 400 and response.text == AUTHORIZE_FIRST
    disposition = client.put("/callDisposition?jwtToken=not-a-jwt", json={"sessionId": "1"})
    assert disposition.status_code == 400 and disposition.text == "Invalid JWT token"


def test_garbage_bearer_is_not_rescued_by_a_query_token(client: httpx.Client, jwt: str) -> None:
    response = client.get(
        f"/contact?phoneNumber={new_phone()}&jwtToken={jwt}", headers={"Authorization": "Bearer garbage"}
    )
    assert response.status_code == 400 and response.text == AUTHORIZE_FIRST


def test_expired_jwt_is_400(server: LiveServer, client: httpx.Client, jwt: str) -> None:
    claims = pyjwt.decode(jwt, options={"verify_signature": False})
    expired = SessionTokens(server_secret(server)).sign(claims["id"], "testcrm", now=time.time() - 30 * 86400)
    response = client.get(
        "/contact", params={"phoneNumber": new_phone()}, headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 400 and response.text == AUTHORIZE_FIRST


def test_tampered_jwt_is_400(client: httpx.Client, jwt: str) -> None:
    header, _payload, signature = jwt.split(".")
    claims = pyjwt.decode(jwt, options={"verify_signature": False})
    claims["id"] = "someone-else-testcrm"
    forged = pyjwt.encode(
        claims, "a-different-secret-that-is-long-enough-for-hs256", algorithm="HS256"
    ).split(".")[1]
    response = client.get(
        "/contact",
        params={"phoneNumber": new_phone()},
        headers={"Authorization": f"Bearer {header}.{forged}.{signature}"},
    )
    assert response.status_code == 400 and response.text == AUTHORIZE_FIRST


def test_jwt_near_expiry_is_rotated_in_a_header(server: LiveServer, client: httpx.Client, jwt: str) -> None:
    claims = pyjwt.decode(jwt, options={"verify_signature": False})
    old = SessionTokens(server_secret(server)).sign(claims["id"], "testcrm", now=time.time() - 10 * 86400)
    response = client.get(
        "/contact", params={"phoneNumber": new_phone()}, headers={"Authorization": f"Bearer {old}"}
    )
    assert response.status_code == 200
    fresh = response.headers["x-refreshed-jwt-token"]
    assert pyjwt.decode(fresh, server_secret(server), algorithms=["HS256"])["id"] == claims["id"]
    untouched = client.get(
        "/contact", params={"phoneNumber": new_phone()}, headers={"Authorization": f"Bearer {jwt}"}
    )
    assert "x-refreshed-jwt-token" not in untouched.headers


def test_unknown_platform_login_is_refused(client: httpx.Client) -> None:
    response = client.post("/apiKeyLogin", json={"platform": "nosuchcrm", "apiKey": "k"})
    assert response.status_code == 400
    assert response.json()["error"] == "Connector not found for platform: nosuchcrm"
    assert response.json()["returnMessage"]["message"] == "Connector not found for platform: nosuchcrm"
    missing = client.post("/apiKeyLogin", json={"apiKey": "k"})
    assert missing.status_code == 400 and missing.text == "Missing platform name"


def test_wrong_api_key_is_refused(client: httpx.Client) -> None:
    response = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": "wrong-key"})
    assert response.status_code == 400
    assert response.json()["returnMessage"]["message"] == "Invalid API key."


def test_unknown_platform_in_a_valid_jwt_is_refused(server: LiveServer, client: httpx.Client) -> None:
    token = SessionTokens(server_secret(server)).sign("1-nosuchcrm", "nosuchcrm")
    response = client.post(
        "/contact",
        json={"phoneNumber": new_phone(), "newContactName": "X"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Connector not found for platform: nosuchcrm"
    assert response.json()["returnMessage"]["message"] == "Connector not found for platform: nosuchcrm"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"phoneNumber": "4155550100", "newContactName": "No Plus", "newContactType": "contact"},
            "Invalid phone number: use the E.164 format, for example +14155550100.",
        ),
        (
            {"phoneNumber": "+1415abc0100", "newContactName": "Letters", "newContactType": "contact"},
            "Invalid phone number: use the E.164 format, for example +14155550100.",
        ),
        ({"newContactName": "", "newContactType": "contact"}, "Contact name is required."),
        ({"newContactName": "   ", "newContactType": "contact"}, "Contact name is required."),
        (
            {"newContactName": "Typo Type", "newContactType": "customer"},
            "Unknown contact type 'customer': expected one of contact, lead.",
        ),
    ],
)
def test_invalid_placeholder_contact_is_refused_and_nothing_is_created(
    client: httpx.Client, jwt: str, crm: CrmView, body: dict[str, str], message: str
) -> None:
    phone = new_phone()
    body = {"phoneNumber": phone, **body}
    response = client.post("/contact", json=body, headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 200
    assert response.json() == {
        "successful": False,
        "returnMessage": {"message": message, "messageType": "warning", "ttl": 5000},
    }
    assert crm.contacts_with_phone(phone) == []


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b'{"phoneNumber": "+14155550100", "newContactName": 42}', "newContactName"),
        (b'{"phoneNumber": ["+14155550100"], "newContactName": "A"}', "phoneNumber"),
        (
            b'{"phoneNumber": "+14155550100", "newContactName": "A", "additionalSubmission": "x"}',
            "additionalSubmission",
        ),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
    ],
)
def test_wrong_json_types_are_400_with_the_field_named(
    client: httpx.Client, jwt: str, payload: bytes, error: str
) -> None:
    response = client.post(
        "/contact",
        content=payload,
        headers={"Authorization": f"Bearer {jwt}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert error in response.json()["error"]


def test_oversized_body_is_413_and_nothing_is_logged(
    server: LiveServer, client: httpx.Client, jwt: str
) -> None:
    phone = new_phone()
    body = call_log_body(f"big-{phone}", "1", phone, note="x" * (server.settings.max_body_bytes + 10))
    response = client.post("/callLog", json=body, headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    lookup = client.get(
        "/callLog", params={"sessionIds": f"big-{phone}"}, headers={"Authorization": f"Bearer {jwt}"}
    )
    assert lookup.json()["logs"] == [{"sessionId": f"big-{phone}", "matched": False}]


def test_call_log_without_session_id_is_400(client: httpx.Client, jwt: str) -> None:
    response = client.post(
        "/callLog",
        json={"logInfo": {"direction": "Inbound"}, "contactId": "1"},
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert response.status_code == 400
    assert "logInfo.sessionId" in response.json()["error"]


def test_call_log_without_contact_is_refused_and_not_reserved(client: httpx.Client, jwt: str) -> None:
    phone = new_phone()
    session = f"nocontact-{phone}"
    headers = {"Authorization": f"Bearer {jwt}"}
    response = client.post("/callLog", json=call_log_body(session, "", phone), headers=headers)
    assert response.json()["returnMessage"]["message"] == f"Contact not found for number {phone}"
    assert (
        client.get("/callLog", params={"sessionIds": session}, headers=headers).json()["logs"][0]["matched"]
        is False
    )

"""A session token issued before a logout gets the answer of an invalid token on every route (the client then
asks the user to connect again), never the route's "not found" answer ("Contact not found", `successful: false`).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import api_key_login, call_log_body, message_log_body, new_phone

AUTHORIZE_FIRST = "Please go to Settings and authorize CRM platform"

#: method, path, body, and the route's text for an invalid token sent in the `jwtToken` query (contract 6)
_ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/contact?phoneNumber=%2B14155550100", None, AUTHORIZE_FIRST),
    (
        "POST",
        "/contact",
        {"phoneNumber": "+14155550100", "newContactName": "Ada", "newContactType": "contact"},
        AUTHORIZE_FIRST,
    ),
    ("GET", "/custom/contact/search?name=Ada", None, "Invalid JWT token"),
    ("GET", "/callLog?sessionIds=s-1", None, AUTHORIZE_FIRST),
    ("POST", "/callLog", call_log_body("s-1", "1", "+14155550100"), AUTHORIZE_FIRST),
    ("POST", "/callLog", call_log_body("s-2", "", "+14155550100"), AUTHORIZE_FIRST),
    ("PATCH", "/callLog", {"sessionId": "s-1", "note": "n"}, AUTHORIZE_FIRST),
    ("PUT", "/callDisposition", {"sessionId": "s-1", "dispositions": {}}, "Invalid JWT token"),
    ("POST", "/messageLog", message_log_body("1", "+14155550100"), AUTHORIZE_FIRST),
    ("GET", "/user/settings", None, AUTHORIZE_FIRST),
    ("POST", "/user/settings", {"userSettings": {"theme": {"value": "dark"}}}, "Unknown platform"),
    ("GET", "/authValidation", None, "Invalid JWT token"),
    ("GET", "/hostname", None, "User not found"),
    ("POST", "/unAuthorize", None, "User not found"),
]


@pytest.fixture
def revoked(client: httpx.Client, jwt: str) -> str:
    """A session token whose user has logged out since (the same CRM user logged in again afterwards)."""
    assert client.post("/unAuthorize", headers={"Authorization": f"Bearer {jwt}"}).status_code == 200
    return jwt


@pytest.mark.parametrize(
    ("method", "path", "body", "query_text"), _ROUTES, ids=[f"{r[0]} {r[1]}" for r in _ROUTES]
)
def test_a_revoked_token_is_asked_to_connect_again(
    client: httpx.Client, revoked: str, method: str, path: str, body: dict[str, Any] | None, query_text: str
) -> None:
    as_bearer = client.request(method, path, json=body, headers={"Authorization": f"Bearer {revoked}"})
    assert as_bearer.status_code == 400, as_bearer.text
    assert as_bearer.text == AUTHORIZE_FIRST
    assert "x-refreshed-jwt-token" not in as_bearer.headers
    with_query = f"{path}{'&' if '?' in path else '?'}jwtToken={revoked}"
    as_query = client.request(method, with_query, json=body)
    assert (as_query.status_code, as_query.text) == (400, query_text)


def test_a_user_without_a_credential_still_gets_the_routes_answer(
    client: httpx.Client, jwt: str, crm_api_key: str
) -> None:
    """Only the revoked token changes: the fresh token of the same user works on after the old one is refused."""
    assert client.post("/unAuthorize", headers={"Authorization": f"Bearer {jwt}"}).status_code == 200
    login = client.post(
        "/apiKeyLogin", json={"platform": "testcrm", "apiKey": crm_api_key, "hostname": "testcrm.local"}
    )
    fresh = login.json()["jwtToken"]
    phone = new_phone()
    found = client.get(
        "/contact", params={"phoneNumber": phone}, headers={"Authorization": f"Bearer {fresh}"}
    )
    assert found.status_code == 200 and found.json()["successful"] is True
    old = client.get("/contact", params={"phoneNumber": phone}, headers={"Authorization": f"Bearer {jwt}"})
    assert (old.status_code, old.text) == (400, AUTHORIZE_FIRST)


def test_a_logout_right_after_the_login_ends_its_token(client: httpx.Client, crm_api_key: str) -> None:
    """A scripted login and logout can fall in one millisecond (the `iat` precision): the token still ends.
    Found as a flake: about one pair in thirty on this machine kept a live token after its logout."""
    for _ in range(60):
        token = api_key_login(client, crm_api_key)
        assert client.post("/unAuthorize", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        after = client.get("/hostname", headers={"Authorization": f"Bearer {token}"})
        assert (after.status_code, after.text) == (400, AUTHORIZE_FIRST)
        fresh = api_key_login(client, crm_api_key)  # and the next login, as quick, is not ended by it
        assert client.get("/hostname", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200

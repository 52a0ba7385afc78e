"""Session JWTs expire and die at logout: a token without `exp`/`iat` is refused, and POST /unAuthorize
revokes every token issued to that user before it."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt as pyjwt

from appconnect.security.jwt import SessionTokens
from appconnect.security.keys import load_keys
from tests.conftest import LiveServer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_id_of(token: str) -> str:
    claims = pyjwt.decode(token, options={"verify_signature": False})
    return str(claims["id"])


def test_a_token_without_exp_or_iat_is_refused(server: LiveServer, client: httpx.Client, jwt: str) -> None:
    secret = load_keys(server.settings).jwt_secret
    user_id = user_id_of(jwt)
    now = int(time.time())
    assert client.get("/hostname", headers=bearer(jwt)).status_code == 200
    for payload in (
        {"id": user_id, "platform": "testcrm"},
        {"id": user_id, "platform": "testcrm", "iat": now},
        {"id": user_id, "platform": "testcrm", "exp": now + 3600},
    ):
        forged = pyjwt.encode(payload, secret, algorithm="HS256")
        response = client.get("/hostname", headers=bearer(forged))
        assert response.status_code == 400, payload
        found = client.get("/contact", params={"phoneNumber": "+14155550100"}, headers=bearer(forged))
        assert found.status_code == 400, payload
    complete = pyjwt.encode(
        {"id": user_id, "platform": "testcrm", "iat": now, "exp": now + 3600}, secret, algorithm="HS256"
    )
    assert client.get("/hostname", headers=bearer(complete)).status_code == 200


def test_the_server_signs_exp_and_iat(jwt: str) -> None:
    claims = pyjwt.decode(jwt, options={"verify_signature": False})
    assert claims["exp"] > claims["iat"] > 0


def test_logout_revokes_the_session_token_even_after_a_new_login(
    client: httpx.Client, jwt: str, crm_api_key: str
) -> None:
    settings_body = {"userSettings": {"theme": {"value": "dark"}}}
    assert client.post("/user/settings", json=settings_body, headers=bearer(jwt)).status_code == 200
    assert client.post("/unAuthorize", headers=bearer(jwt)).status_code == 200
    # logging in again (same CRM user) must not bring the old token back to life
    login = client.post(
        "/apiKeyLogin",
        json={"platform": "testcrm", "apiKey": crm_api_key, "hostname": "testcrm.local"},
        headers={"rc-account-id": f"acct-{uuid.uuid4().hex}"},
    )
    fresh = login.json()["jwtToken"]
    assert user_id_of(fresh) == user_id_of(jwt)
    assert client.get("/hostname", headers=bearer(fresh)).status_code == 200
    assert client.get("/user/settings", headers=bearer(fresh)).status_code == 200

    assert client.get("/hostname", headers=bearer(jwt)).status_code == 400
    assert client.get("/user/settings", headers=bearer(jwt)).status_code == 400
    assert client.post("/user/settings", json=settings_body, headers=bearer(jwt)).status_code == 400
    # a revoked token is asked to connect again (tests/api/test_revoked_session.py covers every route)
    found = client.get("/contact", params={"phoneNumber": "+14155550101"}, headers=bearer(jwt))
    assert found.status_code == 400
    logs = client.get("/callLog", params={"sessionIds": "s-1"}, headers=bearer(jwt))
    assert logs.status_code == 400
    assert client.post("/unAuthorize", headers=bearer(jwt)).status_code == 400
    # the old token's logout attempt did not log the new session out
    assert client.get("/hostname", headers=bearer(fresh)).status_code == 200


def test_a_revoked_token_near_expiry_cannot_be_rotated_into_a_valid_one(
    server: LiveServer, client: httpx.Client, jwt: str
) -> None:
    tokens = SessionTokens(load_keys(server.settings).jwt_secret)
    user_id = user_id_of(jwt)
    near_expiry = tokens.sign(user_id, "testcrm", now=time.time() - 10 * 86400)
    assert client.post("/unAuthorize", headers=bearer(jwt)).status_code == 200
    response = client.get("/contact", params={"phoneNumber": "+14155550102"}, headers=bearer(near_expiry))
    rotated = response.headers.get("x-refreshed-jwt-token")
    if rotated is not None:
        assert client.get("/hostname", headers=bearer(rotated)).status_code == 400
    assert client.get("/hostname", headers=bearer(near_expiry)).status_code == 400

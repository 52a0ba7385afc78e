"""Answer shapes the contract's schema fixes (the public OpenAPI document and the reference server):
`returnMessage` is an object or absent, never null, where the schema has an object; `GET /callLog` always
carries `logs`; fixed texts are typed as the reference types a string answer; `rcAccountId` may be a number.
"""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import call_log_body, new_phone

HTML = "text/html; charset=utf-8"


def auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def test_call_log_lookup_without_details_has_no_null_return_message(client: httpx.Client, jwt: str) -> None:
    session_id = f"s-{uuid.uuid4().hex[:10]}"
    body = client.get("/callLog", params={"sessionIds": session_id}, headers=auth(jwt)).json()
    assert body == {"successful": True, "logs": [{"sessionId": session_id, "matched": False}]}


def test_call_log_lookup_that_finds_no_session_still_lists_logs(client: httpx.Client, jwt: str) -> None:
    for params in ({}, {"sessionIds": ""}, {"sessionIds": ",,"}):
        body = client.get("/callLog", params=params, headers=auth(jwt)).json()
        assert body == {"successful": False, "logs": []}, params


def test_a_cached_lookup_has_no_null_return_message(client: httpx.Client, jwt: str) -> None:
    phone = new_phone()
    made = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Cached Person", "newContactType": "contact"},
        headers=auth(jwt),
    )
    assert made.json()["successful"] is True
    first = client.get("/contact", params={"phoneNumber": phone}, headers=auth(jwt)).json()
    assert first["successful"] is True and first["contact"][0]["name"] == "Cached Person"
    cached = client.get("/contact", params={"phoneNumber": phone}, headers=auth(jwt)).json()
    assert cached["successful"] is True and cached["contact"] == first["contact"]
    assert "returnMessage" not in cached


def test_fixed_texts_are_typed_as_the_reference_types_them(client: httpx.Client) -> None:
    unknown = client.get("/crmManifest", params={"platformName": "nosuchcrm"})
    assert (unknown.status_code, unknown.text, unknown.headers["content-type"]) == (
        400,
        "Platform not found",
        HTML,
    )
    no_token = client.get("/contact", params={"phoneNumber": "+14155550100"})
    assert (no_token.status_code, no_token.headers["content-type"]) == (400, HTML)
    assert no_token.text == "Please go to Settings and authorize CRM platform"
    no_platform = client.get("/implementedInterfaces")
    assert (no_platform.status_code, no_platform.headers["content-type"]) == (400, HTML)
    # a stored value stays plain text, and so does the health check the contract types as text/plain
    assert client.get("/isAlive").headers["content-type"].startswith("text/plain")


def test_hostname_stays_plain_text(client: httpx.Client, jwt: str) -> None:
    response = client.get("/hostname", headers=auth(jwt))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")


def test_a_numeric_rc_account_id_is_accepted_at_login(client: httpx.Client, crm_api_key: str) -> None:
    login = client.post(
        "/apiKeyLogin",
        json={
            "platform": "testcrm",
            "apiKey": crm_api_key,
            "hostname": "testcrm.local",
            "rcAccountId": 37439510,
        },
    )
    assert login.status_code == 200, login.text
    jwt = login.json()["jwtToken"]
    phone = new_phone()
    created = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Numeric Account", "newContactType": "contact"},
        headers=auth(jwt),
    ).json()
    assert created["successful"] is True
    logged = client.post(
        "/callLog",
        json=call_log_body(f"s-{uuid.uuid4().hex[:8]}", created["contact"]["id"], phone),
        headers=auth(jwt),
    ).json()
    assert logged["successful"] is True

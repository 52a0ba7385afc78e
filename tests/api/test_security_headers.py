"""Stored XSS through the login hostname, and the security headers every answer carries."""

from __future__ import annotations

import uuid

import httpx
import pytest

HOSTILE_HOSTNAMES = [
    "<script>alert(document.cookie)</script>",
    "evil.example.com/<img src=x onerror=alert(1)>",
    "https://evil.example.com",
    "evil.example.com:99999",
    "a..b",
    "-leading-dash.example.com",
    "x" * 64 + ".example.com",
    "evil.example.com\r\nSet-Cookie: a=b",
    "evil example.com",
]


def login(client: httpx.Client, api_key: str, hostname: str) -> httpx.Response:
    return client.post(
        "/apiKeyLogin",
        json={"platform": "testcrm", "apiKey": api_key, "hostname": hostname},
        headers={"rc-account-id": f"acct-{uuid.uuid4().hex}"},
    )


@pytest.mark.parametrize("hostname", HOSTILE_HOSTNAMES)
def test_login_refuses_a_hostname_that_is_not_a_host(
    client: httpx.Client, crm_api_key: str, hostname: str
) -> None:
    response = login(client, crm_api_key, hostname)
    assert response.status_code == 400
    assert "hostname" in response.json()["error"]


@pytest.mark.parametrize(
    "hostname",
    ["acme.pipedrive.com", "crm.example.com:8443", "localhost", "bücher.example", "10.0.0.7:80", ""],
)
def test_login_accepts_plain_hostnames(client: httpx.Client, crm_api_key: str, hostname: str) -> None:
    response = login(client, crm_api_key, hostname)
    assert response.status_code == 200, response.text
    jwt = response.json()["jwtToken"]
    stored = client.get("/hostname", headers={"Authorization": f"Bearer {jwt}"})
    assert stored.status_code == 200 and stored.text == hostname


def test_oauth_callback_refuses_a_hostile_hostname(client: httpx.Client) -> None:
    response = client.get(
        "/oauth-callback",
        params={
            "callbackUri": "https://ringcentral.github.io/ringcentral-embeddable/redirect.html?code=c&state=platform%3Dpipedrive",
            "hostname": "<script>alert(1)</script>",
        },
    )
    assert response.status_code == 400
    assert "hostname" in response.json()["error"]


def test_hostname_is_served_as_plain_text_with_nosniff(client: httpx.Client, jwt: str) -> None:
    response = client.get("/hostname", headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 200 and response.text == "testcrm.local"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_every_answer_carries_security_headers(client: httpx.Client, jwt: str) -> None:
    auth = {"Authorization": f"Bearer {jwt}"}
    answers = [
        client.get("/isAlive"),
        client.get("/crmManifest", params={"platformName": "testcrm"}),
        client.get("/contact", params={"phoneNumber": "+14155550100"}, headers=auth),
        client.get("/contact", params={"phoneNumber": "+14155550100"}),  # 400 text
        client.get("/no/such/route"),
        client.options(
            "/callLog",
            headers={"Origin": "https://x.example", "Access-Control-Request-Method": "POST"},
        ),
        client.get("/testcrm/"),
    ]
    for response in answers:
        assert_security_headers(response)
    api_csp = answers[0].headers["content-security-policy"]
    assert "default-src 'none'" in api_csp


def test_test_crm_page_keeps_working_under_its_own_csp(client: httpx.Client) -> None:
    page = client.get("/testcrm/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "<style>" in page.text or "<style" in page.text
    assert "style-src 'unsafe-inline'" in csp and "script-src" not in csp
    assert "frame-ancestors 'none'" in csp

"""Unexpected errors: an envelope with a request id, the right status, CORS headers, and the connection kept.

Each trigger below used to escape as HTTP 400 with the raw exception text, no CORS header, and a closed
keep-alive connection.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appconnect.api.app import create_app
from appconnect.connectors.registry import ConnectorRegistry
from appconnect.connectors.sdk import ContactLookup, ContactMatches, CrmCall
from appconnect.connectors.testcrm import TestCrmConnector
from appconnect.security.jwt import SessionTokens
from appconnect.store.migrate import upgrade
from tests.conftest import (
    LiveServer,
    call_log_body,
    crm_admin_headers,
    make_settings,
    message_log_body,
    new_phone,
)
from tests.support.app_server import run_app

ORIGIN = {"Origin": "https://app.example.test"}


def local_port(response: httpx.Response) -> int:
    """The client-side port of the connection that carried `response`: same port, same connection."""
    stream = response.extensions["network_stream"]
    port: int = stream.get_extra_info("client_addr")[1]
    return port


def assert_kept_alive(first: httpx.Response, second: httpx.Response) -> None:
    assert first.headers.get("connection", "").lower() != "close"
    assert local_port(first) == local_port(second)


def assert_error_envelope(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    body: dict[str, object] = response.json()
    assert body["successful"] is False
    message = body["returnMessage"]
    assert isinstance(message, dict) and message["messageType"] == "warning" and message["message"]
    assert body["requestId"] == response.headers["x-request-id"]
    return body


def make_contact(client: httpx.Client, jwt: str, phone: str) -> str:
    response = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Ada", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert response.status_code == 200, response.text
    contact_id: str = response.json()["contact"]["id"]
    return contact_id


def test_spec_example_contact_id_is_refused_clearly_and_keeps_the_connection(
    client: httpx.Client, jwt: str
) -> None:
    auth = {"Authorization": f"Bearer {jwt}", **ORIGIN}
    body = call_log_body(f"s-{uuid.uuid4().hex}", "crm-contact-123", new_phone())
    response = client.post("/callLog", json=body, headers=auth)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json()["successful"] is False
    assert "Contact not found" in response.json()["returnMessage"]["message"]
    assert "int()" not in response.text
    after = client.get("/isAlive", headers=ORIGIN)
    assert_kept_alive(response, after)


@pytest.mark.parametrize("duration", [10**30, 1e300, 2**63, -5])
def test_huge_duration_is_a_400_naming_the_field(client: httpx.Client, jwt: str, duration: object) -> None:
    phone = new_phone()
    contact_id = make_contact(client, jwt, phone)
    body = call_log_body(f"s-{uuid.uuid4().hex}", contact_id, phone, log_info={"duration": duration})
    response = client.post("/callLog", json=body, headers={"Authorization": f"Bearer {jwt}", **ORIGIN})
    answer = assert_error_envelope(response, 400)
    assert "logInfo.duration" in str(answer["error"])
    assert_kept_alive(response, client.get("/isAlive"))


@pytest.mark.parametrize(
    "start_time",
    [
        "99999999999999999999",
        "-1",
        "not a time",
        "2026-13-45T99:99:99Z",
        "253402300800000",
        2**62,
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
    ],
)
def test_odd_start_time_still_logs_the_call(client: httpx.Client, jwt: str, start_time: object) -> None:
    phone = new_phone()
    contact_id = make_contact(client, jwt, phone)
    session = f"s-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {jwt}", **ORIGIN}
    body = call_log_body(session, contact_id, phone, log_info={"startTime": start_time})
    response = client.post("/callLog", json=body, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["successful"] is True
    patched = client.patch(
        "/callLog",
        json={"sessionId": session, "startTime": start_time, "duration": "99999999999999999999", "note": "n"},
        headers=auth,
    )
    assert patched.status_code == 200 and patched.json()["successful"] is True, patched.text


def test_every_answer_has_cors_and_a_request_id(server: LiveServer, client: httpx.Client) -> None:
    too_big = client.post("/callLog", content=b"x" * (server.settings.max_body_bytes + 1), headers={**ORIGIN})
    assert too_big.status_code == 413
    not_found = client.get("/no/such/route", headers=ORIGIN)
    assert not_found.status_code == 404
    bad_jwt = client.get("/contact", params={"phoneNumber": new_phone()}, headers=ORIGIN)
    assert bad_jwt.status_code == 400
    for response in (too_big, not_found, bad_jwt):
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["x-request-id"]
    assert "x-request-id" in not_found.headers["access-control-expose-headers"]
    for response in (too_big, not_found):
        assert response.json()["successful"] is False
        assert response.json()["requestId"] == response.headers["x-request-id"]


def test_a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced(client: httpx.Client) -> None:
    kept = client.get("/isAlive", headers={"X-Request-Id": "lb-1234.abc"})
    assert kept.headers["x-request-id"] == "lb-1234.abc"
    replaced = client.get("/isAlive", headers={"X-Request-Id": "<script>" + "x" * 100})
    assert replaced.headers["x-request-id"] != "<script>" + "x" * 100
    assert len(replaced.headers["x-request-id"]) == 32


# --- a connector that fails in a way nobody anticipated --------------------------------------------------


def own_testcrm(base_url: str) -> dict[str, str]:
    """Connector settings pointing the testcrm connector at this server's own embedded test CRM."""
    return {"TESTCRM_BASE_URL": f"{base_url}/testcrm/api/v1"}


class ExplodingTestCrm(TestCrmConnector):
    """The test CRM connector with a bug in `find_contact`: stands in for any unforeseen failure."""

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        raise RuntimeError(f"internal detail the client must not see: {lookup.phone_number}")


@pytest.fixture(scope="module")
def exploding_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("exploding")
    database_url = f"sqlite+aiosqlite:///{folder / 'appconnect.sqlite3'}"
    upgrade(database_url)
    holder: dict[str, object] = {}

    def build(base_url: str) -> object:
        settings = make_settings(folder, database_url, public_url=base_url)
        holder["settings"] = settings
        return create_app(settings, ConnectorRegistry([ExplodingTestCrm], own_testcrm(base_url)))

    with run_app(build) as base_url:
        yield LiveServer(base_url, holder["settings"])  # type: ignore[arg-type]


def login(client: httpx.Client) -> str:
    key = client.post("/testcrm/api/v1/api-keys", json={"name": "Agent"}, headers=crm_admin_headers()).json()[
        "apiKey"
    ]
    response = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": key})
    assert response.status_code == 200, response.text
    token: str = response.json()["jwtToken"]
    return token


def test_unexpected_error_is_a_500_envelope_logged_with_its_request_id(
    exploding_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with httpx.Client(base_url=exploding_server.base_url, timeout=30) as client:
        jwt = login(client)
        with caplog.at_level(logging.ERROR, logger="appconnect"):
            response = client.get(
                "/contact",
                params={"phoneNumber": "+14155550199"},
                headers={"Authorization": f"Bearer {jwt}", "X-Request-Id": "req-explode-1", **ORIGIN},
            )
            assert_kept_alive(response, client.get("/isAlive"))
    body = assert_error_envelope(response, 500)
    assert body["requestId"] == "req-explode-1"
    assert "internal detail" not in response.text and "RuntimeError" not in response.text
    logged = [r for r in caplog.records if "req-explode-1" in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], RuntimeError)


# --- dependencies down ---------------------------------------------------------------------------------


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connecting to it is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def serve(folder: Path, database_url: str, **overrides: object) -> Iterator[str]:
    def build(base_url: str) -> object:
        settings = make_settings(folder, database_url, public_url=base_url, **overrides)
        return create_app(settings, ConnectorRegistry([TestCrmConnector], own_testcrm(base_url)))

    with run_app(build) as base_url:
        yield base_url


def test_database_down_is_a_503_with_retry_after(tmp_path: Path, refused_port: int) -> None:
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:{refused_port}/nowhere"
    secret = "database-down-" + "x" * 32
    # a session the server accepts without its database, so the route's first step is the user's row
    session = SessionTokens(secret).sign("1-testcrm", "testcrm")
    for base_url in serve(tmp_path, database_url, jwt_secret=secret):
        with httpx.Client(base_url=base_url, timeout=30) as client:
            response = client.get("/user/settings", headers={"Authorization": f"Bearer {session}", **ORIGIN})
            assert_kept_alive(response, client.get("/isAlive"))
    assert_error_envelope(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert "refused" not in response.text.lower() and "127.0.0.1" not in response.text


def test_redis_down_is_a_503_with_retry_after(tmp_path: Path, refused_port: int) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'appconnect.sqlite3'}"
    upgrade(database_url)
    for base_url in serve(tmp_path, database_url, redis_url=f"redis://127.0.0.1:{refused_port}/0"):
        with httpx.Client(base_url=base_url, timeout=30) as client:
            jwt = login(client)
            headers = {"Authorization": f"Bearer {jwt}", **ORIGIN}
            phone = new_phone()
            # the placeholder contact claims its number in the database: it needs no Redis
            created = client.post(
                "/contact",
                json={"phoneNumber": phone, "newContactName": "Ada", "newContactType": "contact"},
                headers=headers,
            )
            assert created.status_code == 200 and created.json()["successful"] is True, created.text
            # a message log takes the conversation's lock, in Redis
            response = client.post(
                "/messageLog", json=message_log_body(created.json()["contact"]["id"], phone), headers=headers
            )
            assert_kept_alive(response, client.get("/isAlive"))
    assert_error_envelope(response, 503)
    assert int(response.headers["retry-after"]) > 0

"""`HEAD` on every `GET` route answers as `GET` does (status and headers) without a body."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from appconnect.api.routes import router
from tests.conftest import LiveServer

GET_PATHS = sorted(path for method, path in router.table if method == "GET")
#: headers that differ from one answer to the next whatever the method
PER_ANSWER = {"x-request-id", "date"}


@pytest.mark.parametrize("path", GET_PATHS)
def test_head_answers_like_get_without_a_body(client: httpx.Client, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code
    assert head.content == b""
    varying = PER_ANSWER | ({"content-length"} if path == "/metrics" else set())  # its counters moved
    assert {k: v for k, v in head.headers.items() if k not in varying} == {
        k: v for k, v in got.headers.items() if k not in varying
    }


def test_head_of_an_authenticated_route_answers_like_get(client: httpx.Client, jwt: str) -> None:
    auth = {"Authorization": f"Bearer {jwt}"}
    got = client.get("/user/settings", headers=auth)
    head = client.head("/user/settings", headers=auth)
    assert got.status_code == 200
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == got.headers["content-length"]


def test_a_head_answer_carries_no_body_bytes(server: LiveServer) -> None:
    """On one connection a HEAD answer is followed directly by the next answer: no body bytes between them."""
    parts = urlsplit(server.base_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            b"HEAD /isAlive HTTP/1.1\r\nHost: test\r\n\r\n"
            b"GET /isAlive HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, rest = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 2" in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 ")
    assert rest.endswith(b"\r\n\r\nOK")


def test_head_on_a_route_without_get_is_405_naming_the_methods(client: httpx.Client) -> None:
    answer = client.head("/apiKeyLogin")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


def test_the_allow_header_of_a_get_route_names_head(client: httpx.Client) -> None:
    answer = client.delete("/isAlive")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD"


def test_head_on_the_embedded_test_crm_page(client: httpx.Client) -> None:
    got = client.get("/testcrm/")
    head = client.head("/testcrm/")
    assert (head.status_code, head.content) == (got.status_code, b"")
    assert head.headers["content-type"] == got.headers["content-type"]

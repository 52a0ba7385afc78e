"""The outbound client against a scripted CRM on a real socket: resets, slow answers, 429 with an HTTP-date,
TLS handshakes that fail, proxies from the environment.

The CRM here is a small raw-socket HTTP server, because closing the connection in the middle of a request (after
reading it, before answering) is exactly the fault under test and no web framework lets a handler do that.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from appconnect.connectors.sdk import CrmHttpError
from appconnect.outbound.client import CrmHttpClient, CrmTransport, RetryPolicy, build_transport_client
from tests.support.tls import Tls, make_tls


class ScriptedCrm:
    """Answers each request with the next scripted action: `reset`, `slow`, an HTTP status, or `ok`.

    With `tls`, each new connection first takes the next of `handshakes`: `reset` (the TLS handshake is cut),
    `stall` (no answer to the client's hello) or `ok` (the default).
    """

    def __init__(
        self,
        script: list[str | int],
        *,
        headers: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        handshakes: list[str] | None = None,
    ) -> None:
        self.script = list(script)
        self.headers = headers or {}
        self.tls = tls
        self.handshakes = list(handshakes or [])
        self.received: list[str] = []
        self.targets: list[str] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.tls is not None:
                handshake = self.handshakes.pop(0) if self.handshakes else "ok"
                if handshake == "reset":
                    await reader.read(1)  # the client's hello has arrived
                    _reset(writer)
                    return
                if handshake == "stall":
                    await asyncio.sleep(2.0)
                    writer.close()
                    return
                await writer.start_tls(self.tls)
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                method, target = head.split(b" ", 2)[:2]
                self.received.append(method.decode())
                self.targets.append(target.decode())
                action = self.script.pop(0) if self.script else "ok"
                if action == "reset":
                    # the request was read, the connection dies before any answer
                    _reset(writer)
                    return
                if action == "slow":
                    await asyncio.sleep(1.0)
                    action = "ok"
                status = 200 if action == "ok" else int(action)
                body = b'{"ok": true}' if status == 200 else b'{"error": "scripted"}'
                extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items() if status != 200)
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"{extra}\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return


def _reset(writer: asyncio.StreamWriter) -> None:
    """RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture
async def transport() -> AsyncIterator[CrmTransport]:
    client = build_transport_client(connect_timeout=1.0, read_timeout=0.4)
    try:
        yield client
    finally:
        await client.aclose()


async def crm_with(script: list[str | int], **kwargs: Any) -> ScriptedCrm:
    crm = ScriptedCrm(script, **kwargs)
    await crm.start()
    return crm


def client_for(transport: CrmTransport, crm: ScriptedCrm, **policy: float) -> CrmHttpClient:
    retry = RetryPolicy(attempts=3, base_delay=0.01, budget_seconds=3.0, retry_after_cap=3.0, **policy)
    return CrmHttpClient(transport, base_url=crm.url, retry=retry)


async def test_a_read_survives_connection_resets(transport: CrmTransport) -> None:
    crm = await crm_with(["reset", "reset", "ok"])
    try:
        response = await client_for(transport, crm).request("GET", "/contacts")
    finally:
        await crm.stop()
    assert response.status_code == 200
    assert crm.received == ["GET", "GET", "GET"]


async def test_a_write_is_not_sent_again_after_a_reset(transport: CrmTransport) -> None:
    crm = await crm_with(["reset", "ok"])
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert caught.value.status is None
    assert caught.value.outcome_unknown is True
    assert crm.received == ["POST"]


async def test_a_write_marked_idempotent_is_retried_after_a_reset(transport: CrmTransport) -> None:
    crm = await crm_with(["reset", "ok"])
    try:
        response = await client_for(transport, crm).request(
            "PATCH", "/activities/1", json={"subject": "x"}, idempotent=True
        )
    finally:
        await crm.stop()
    assert response.status_code == 200
    assert crm.received == ["PATCH", "PATCH"]


async def test_a_slow_read_is_tried_again_a_slow_write_is_not(transport: CrmTransport) -> None:
    crm = await crm_with(["slow", "ok", "slow"])
    try:
        http = client_for(transport, crm)
        assert (await http.request("GET", "/contacts")).status_code == 200
        with pytest.raises(CrmHttpError) as caught:
            await http.request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert caught.value.outcome_unknown is True
    assert crm.received == ["GET", "GET", "POST"]


async def test_a_5xx_burst_stops_at_the_attempt_cap(transport: CrmTransport) -> None:
    crm = await crm_with([503, 503, 503, 503, 503])
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("GET", "/contacts")
    finally:
        await crm.stop()
    assert caught.value.status == 503
    assert crm.received == ["GET"] * 3


async def test_a_write_answered_502_is_reported_as_unknown_outcome(transport: CrmTransport) -> None:
    crm = await crm_with([502, "ok"])
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert caught.value.status == 502 and caught.value.outcome_unknown is True
    assert crm.received == ["POST"]


async def test_retry_after_as_an_http_date(transport: CrmTransport) -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=1), usegmt=True)
    crm = await crm_with([429, "ok"], headers={"Retry-After": soon})
    try:
        response = await client_for(transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert response.status_code == 200
    assert crm.received == ["POST", "POST"]  # a 429 was refused, so even a write may be sent again

    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    crm = await crm_with([429, "ok"], headers={"Retry-After": later})
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("GET", "/contacts")
    finally:
        await crm.stop()
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 3500 < caught.value.retry_after <= 3600
    assert crm.received == ["GET"]


async def test_no_try_starts_past_the_call_deadline(transport: CrmTransport) -> None:
    crm = await crm_with(["slow", "slow", "slow"])
    try:
        with pytest.raises(CrmHttpError):
            await client_for(transport, crm, deadline_seconds=0.6).request("GET", "/contacts")
    finally:
        await crm.stop()
    assert crm.received == ["GET"]


# ------------------------------------------------------------------------------------------------------------
# what the transport must not do on its own, and what it must tell apart
# ------------------------------------------------------------------------------------------------------------


async def test_a_delete_is_not_sent_again_after_a_reset(transport: CrmTransport) -> None:
    """A client library may send GET/PUT/DELETE again by itself when the connection dies (aiohttp does); here a
    DELETE is a write."""
    crm = await crm_with(["reset", "ok"])
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("DELETE", "/activities/1")
    finally:
        await crm.stop()
    assert caught.value.status is None and caught.value.outcome_unknown is True
    assert crm.received == ["DELETE"]


async def test_a_read_is_sent_at_most_the_attempt_cap_times(transport: CrmTransport) -> None:
    crm = await crm_with(["reset", "reset", "reset", "reset", "ok"])
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("GET", "/contacts")
    finally:
        await crm.stop()
    assert caught.value.status is None and caught.value.outcome_unknown is False
    assert crm.received == ["GET"] * 3


async def test_a_refused_connection_is_reported_as_not_sent(transport: CrmTransport) -> None:
    crm = await crm_with([])
    url = crm.url
    await crm.stop()
    await crm.closed()
    with pytest.raises(CrmHttpError) as caught:
        await CrmHttpClient(transport, base_url=url, retry=RetryPolicy(attempts=2, base_delay=0.01)).request(
            "POST", "/contacts", json={"name": "Ada"}
        )
    assert caught.value.status is None and caught.value.outcome_unknown is False
    assert caught.value.url == f"{url}/contacts"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_transport(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CrmTransport]:
    """A transport that trusts the test CA the way the server trusts the bench's fake CRM: `SSL_CERT_FILE`."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    client = build_transport_client(connect_timeout=0.3, read_timeout=0.4)
    try:
        yield client
    finally:
        await client.aclose()


async def test_tls_is_verified_against_ssl_cert_file(tls: Tls, tls_transport: CrmTransport) -> None:
    crm = await crm_with([], tls=tls.server)
    try:
        response = await client_for(tls_transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert response.status_code == 200
    assert crm.received == ["POST"]


async def test_an_untrusted_certificate_fails_before_anything_is_sent(
    tls: Tls, transport: CrmTransport
) -> None:
    crm = await crm_with([], tls=tls.server)  # `transport` trusts the system's CAs only
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert caught.value.status is None and caught.value.outcome_unknown is False
    assert crm.received == []


@pytest.mark.parametrize("handshake", ["reset", "stall"])
async def test_a_write_is_sent_again_when_connecting_failed(
    tls: Tls, tls_transport: CrmTransport, handshake: str
) -> None:
    """A cut TLS handshake or a connect timeout is part of connecting: nothing of the request went out, so even a
    POST is tried again."""
    crm = await crm_with([], tls=tls.server, handshakes=[handshake])
    try:
        response = await client_for(tls_transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert response.status_code == 200
    assert crm.connections == 2
    assert crm.received == ["POST"]


async def test_http_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx took `HTTP_PROXY` from the environment; this transport does too (read once, at start)."""
    proxy = await crm_with([])
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = build_transport_client(connect_timeout=1.0, read_timeout=0.4)
    try:
        response = await CrmHttpClient(client, base_url="http://crm.example.test/api").request(
            "GET", "contacts", params={"phone": "+14155550100", "active": True}
        )
    finally:
        await client.aclose()
        await proxy.stop()
    assert response.status_code == 200
    assert proxy.targets == ["http://crm.example.test/api/contacts?phone=%2B14155550100&active=true"]

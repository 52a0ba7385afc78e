"""The outbound client against a scripted CRM on a real socket: resets, slow answers, 429 with an HTTP-date.

The CRM here is a small raw-socket HTTP server, because closing the connection in the middle of a request (after
reading it, before answering) is exactly the fault under test and no web framework lets a handler do that.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from appconnect.connectors.http import CrmHttpClient, RetryPolicy, build_transport_client
from appconnect.connectors.sdk import CrmHttpError


class ScriptedCrm:
    """Answers each request with the next scripted action: `reset`, `slow`, an HTTP status, or `ok`."""

    def __init__(self, script: list[str | int], *, headers: dict[str, str] | None = None) -> None:
        self.script = list(script)
        self.headers = headers or {}
        self.received: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                self.received.append(head.split(b" ", 1)[0].decode())
                action = self.script.pop(0) if self.script else "ok"
                if action == "reset":
                    # RST instead of FIN: the request was read, the connection dies before any answer
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
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
        except (asyncio.IncompleteReadError, ConnectionError):
            return


@pytest.fixture
async def transport() -> AsyncIterator[httpx.AsyncClient]:
    client = build_transport_client(connect_timeout=1.0, read_timeout=0.4)
    try:
        yield client
    finally:
        await client.aclose()


async def crm_with(script: list[str | int], **kwargs: dict[str, str]) -> ScriptedCrm:
    crm = ScriptedCrm(script, **kwargs)
    await crm.start()
    return crm


def client_for(transport: httpx.AsyncClient, crm: ScriptedCrm, **policy: float) -> CrmHttpClient:
    retry = RetryPolicy(attempts=3, base_delay=0.01, budget_seconds=3.0, retry_after_cap=3.0, **policy)
    return CrmHttpClient(transport, base_url=crm.url, retry=retry)


async def test_a_read_survives_connection_resets(transport: httpx.AsyncClient) -> None:
    crm = await crm_with(["reset", "reset", "ok"])
    try:
        response = await client_for(transport, crm).request("GET", "/contacts")
    finally:
        await crm.stop()
    assert response.status_code == 200
    assert crm.received == ["GET", "GET", "GET"]


async def test_a_write_is_not_sent_again_after_a_reset(transport: httpx.AsyncClient) -> None:
    crm = await crm_with(["reset", "ok"])
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert caught.value.status is None
    assert caught.value.outcome_unknown is True
    assert crm.received == ["POST"]


async def test_a_write_marked_idempotent_is_retried_after_a_reset(transport: httpx.AsyncClient) -> None:
    crm = await crm_with(["reset", "ok"])
    try:
        response = await client_for(transport, crm).request(
            "PATCH", "/activities/1", json={"subject": "x"}, idempotent=True
        )
    finally:
        await crm.stop()
    assert response.status_code == 200
    assert crm.received == ["PATCH", "PATCH"]


async def test_a_slow_read_is_tried_again_a_slow_write_is_not(transport: httpx.AsyncClient) -> None:
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


async def test_a_5xx_burst_stops_at_the_attempt_cap(transport: httpx.AsyncClient) -> None:
    crm = await crm_with([503, 503, 503, 503, 503])
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("GET", "/contacts")
    finally:
        await crm.stop()
    assert caught.value.status == 503
    assert crm.received == ["GET"] * 3


async def test_a_write_answered_502_is_reported_as_unknown_outcome(transport: httpx.AsyncClient) -> None:
    crm = await crm_with([502, "ok"])
    try:
        with pytest.raises(CrmHttpError) as caught:
            await client_for(transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    finally:
        await crm.stop()
    assert caught.value.status == 502 and caught.value.outcome_unknown is True
    assert crm.received == ["POST"]


async def test_retry_after_as_an_http_date(transport: httpx.AsyncClient) -> None:
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


async def test_no_try_starts_past_the_call_deadline(transport: httpx.AsyncClient) -> None:
    crm = await crm_with(["slow", "slow", "slow"])
    try:
        with pytest.raises(CrmHttpError):
            await client_for(transport, crm, deadline_seconds=0.6).request("GET", "/contacts")
    finally:
        await crm.stop()
    assert crm.received == ["GET"]

"""A request's own timeout in the outbound client, against a slow CRM on a loopback socket.

A connector may ask for a shorter timeout than the server's (a declarative configuration's
`requestDefaults.timeoutSeconds`): each try then ends by it, a read is tried again, a write that timed out after
it was sent is an unknown outcome and is not sent again, and the server's own timeouts still bound a request
that asks for more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from appconnect.outbound.client import CrmHttpClient, CrmTransport, RetryPolicy, build_transport_client
from appconnect.outbound.types import CrmHttpError
from tests.support.raw_http import RawServer, ok

#: the server's own read timeout in these tests: far longer than the slow answers below
SERVER_READ_TIMEOUT = 5.0
#: how long the slow CRM takes to answer: longer than the requests' own timeout, shorter than the server's
SLOW = 1.0
#: the timeout a request asks for
SHORT = 0.2


@pytest.fixture
async def transport() -> AsyncIterator[CrmTransport]:
    made = build_transport_client(connect_timeout=2.0, read_timeout=SERVER_READ_TIMEOUT)
    try:
        yield made
    finally:
        await made.aclose()


def client(transport: CrmTransport, crm: RawServer, attempts: int = 3) -> CrmHttpClient:
    retry = RetryPolicy(attempts=attempts, base_delay=0.01, budget_seconds=2.0)
    return CrmHttpClient(transport, base_url=crm.url, retry=retry)


def json_answer(body: bytes, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def slow(body: bytes, seconds: float = SLOW) -> Callable[[Any], Any]:
    async def answer(writer: Any) -> None:
        await asyncio.sleep(seconds)
        writer.write(ok(body))
        await writer.drain()

    return answer


async def test_a_slow_answer_is_read_within_the_servers_timeout(transport: CrmTransport) -> None:
    """The control: without a timeout of its own, the same slow CRM is waited for."""
    async with RawServer([slow(b'{"ok":true}')]) as crm:
        answer = await client(transport, crm).request("GET", "/contacts")
    assert answer.json() == {"ok": True}


async def test_a_read_slower_than_its_timeout_is_tried_again_then_fails(transport: CrmTransport) -> None:
    async with RawServer([slow(b"{}"), slow(b"{}")]) as crm:
        with pytest.raises(CrmHttpError) as caught:
            await client(transport, crm, attempts=2).request("GET", "/contacts", timeout_seconds=SHORT)
    assert caught.value.status is None and caught.value.outcome_unknown is False
    assert len(crm.heads) == 2


async def test_a_read_slower_than_its_timeout_is_answered_by_the_next_try(transport: CrmTransport) -> None:
    async with RawServer([slow(b"{}"), json_answer(b'{"ok":true}')]) as crm:
        answer = await client(transport, crm).request("GET", "/contacts", timeout_seconds=SHORT)
    assert answer.json() == {"ok": True} and len(crm.heads) == 2


async def test_a_write_slower_than_its_timeout_is_an_unknown_outcome_sent_once(
    transport: CrmTransport,
) -> None:
    async with RawServer([slow(b'{"id":1}'), json_answer(b'{"id":2}')]) as crm:
        with pytest.raises(CrmHttpError) as caught:
            await client(transport, crm).request(
                "POST", "/activities", json={"subject": "Call"}, timeout_seconds=SHORT
            )
    assert caught.value.status is None and caught.value.outcome_unknown is True
    assert [head.split(b" ", 1)[0] for head in crm.heads] == [b"POST"]


async def test_a_timeout_longer_than_the_servers_does_not_lengthen_it() -> None:
    transport = build_transport_client(connect_timeout=2.0, read_timeout=SHORT)
    try:
        async with RawServer([slow(b"{}")]) as crm:
            with pytest.raises(CrmHttpError) as caught:
                await client(transport, crm, attempts=1).request("GET", "/contacts", timeout_seconds=60)
    finally:
        await transport.aclose()
    assert caught.value.status is None


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan")])
async def test_a_timeout_that_is_no_duration_is_refused(transport: CrmTransport, seconds: float) -> None:
    async with RawServer([]) as crm:
        with pytest.raises(ValueError, match="positive number of seconds"):
            await client(transport, crm).request("GET", "/contacts", timeout_seconds=seconds)
        assert crm.heads == []

"""The server's own HTTP/1.1 client (`outbound/wire.py`) against raw sockets that answer byte for byte.

Each case is something a real server or proxy does that a lean client can get wrong: keep-alive reuse and idle
closes, chunked / gzip / close-delimited bodies, interim 1xx answers, timeouts, oversized answers, header
injection, a cancelled caller, a connection limit, and https through a `CONNECT` proxy. Every failure must say
whether the request may have reached the server (`sent`), because the retry rules depend on it.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator

import pytest

from appconnect.outbound import wire as http1
from appconnect.outbound.client import CrmHttpClient, RetryPolicy, build_transport_client
from appconnect.outbound.wire import Http1Pool, Timeouts, WireError
from tests.support.raw_http import ConnectProxy, RawServer, get, make_pool, ok
from tests.support.tls import Tls, make_tls


@pytest.fixture
async def pool() -> AsyncIterator[Http1Pool]:
    made = make_pool()
    try:
        yield made
    finally:
        await made.aclose()


async def test_connections_are_kept_alive_and_requests_are_well_formed(pool: Http1Pool) -> None:
    async with RawServer([ok(b'{"n": 1}'), ok(b'{"n": 2}'), ok(b'{"n": 3}')]) as server:
        port = server.url.rsplit(":", 1)[1]
        first = await get(pool, f"{server.url}/v1/persons?x=a b", params={"term": "+1 415", "f": ["p", "e"]})
        second = await get(pool, f"{server.url}/v1/persons", method="POST", body=b'{"name":"Ada"}')
        third = await get(pool, f"{server.url}/v1/persons/1", headers={"Authorization": "Bearer t"})
    assert [first.body, second.body, third.body] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert server.connections == 1
    request_line = server.heads[0].split(b"\r\n")[0]
    assert request_line == b"GET /v1/persons?x=a%20b&term=%2B1%20415&f=p&f=e HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in server.heads[0]
    assert b"Content-Length: 14" in server.heads[1]
    assert b"Authorization: Bearer t" in server.heads[2]
    assert first.headers.get("CONTENT-LENGTH") == "8" and "content-length" in first.headers


async def test_chunked_gzip_deflate_and_close_delimited_bodies(pool: Http1Pool) -> None:
    payload = b'{"data": [' + b'{"id": 1},' * 200 + b'{"id": 2}]}'
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    zipped = gzip.compress(payload)
    deflated = zlib.compress(payload)
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = raw_deflate.compress(payload) + raw_deflate.flush()

    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with RawServer(
        [
            chunked,
            ok(zipped, "Content-Encoding: gzip"),
            ok(deflated, "Content-Encoding: deflate"),
            ok(raw, "Content-Encoding: deflate"),
            until_close,
        ]
    ) as server:
        answers = [await get(pool, f"{server.url}/{n}") for n in range(5)]
    assert answers[0].body == b"hello world"
    assert answers[1].body == payload and answers[2].body == payload and answers[3].body == payload
    assert answers[4].body == b"all of it"
    assert b"Accept-Encoding: gzip, deflate" in server.heads[0]


async def test_an_interim_100_answer_is_skipped(pool: Http1Pool) -> None:
    async with RawServer([b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done")]) as server:
        answer = await get(pool, f"{server.url}/x", method="POST", body=b"{}")
    assert (answer.status, answer.body) == (200, b"done")


async def test_a_corrupt_gzip_body_is_an_error_after_sending(pool: Http1Pool) -> None:
    async with RawServer([ok(b"not gzip at all", "Content-Encoding: gzip")]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/x")
    assert caught.value.sent is True


@pytest.mark.parametrize(
    ("headers", "url"),
    [
        ({"X-Note": "a\r\nX-Admin: yes"}, "/x"),
        ({"X-Bad\r\nX-Admin": "yes"}, "/x"),
    ],
)
async def test_line_breaks_in_a_request_are_refused_before_sending(
    pool: Http1Pool, headers: dict[str, str] | None, url: str
) -> None:
    async with RawServer([]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}{url}", headers=headers)
        await asyncio.sleep(0.05)
    assert caught.value.sent is False
    assert server.heads == []


async def test_line_breaks_in_a_url_cannot_start_a_header(pool: Http1Pool) -> None:
    """`urlsplit` drops CR and LF from a URL (and the path is percent-encoded): no header can be smuggled in."""
    async with RawServer([]) as server:
        await get(pool, f"{server.url}/x\r\nX-Admin: yes")
    assert b"\r\nX-Admin" not in server.heads[0]
    assert server.heads[0].startswith(b"GET /xX-Admin:%20yes HTTP/1.1\r\n")


async def test_an_idle_connection_the_server_closed_is_not_used(pool: Http1Pool) -> None:
    async def answer_then_close(writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"one"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # a server-side keep-alive timeout, after the answer

    async with RawServer([answer_then_close, ok(b"two")]) as server:
        first = await get(pool, f"{server.url}/1")
        await asyncio.sleep(0.2)
        second = await get(pool, f"{server.url}/2")
    assert (first.body, second.body) == (b"one", b"two")
    assert server.connections == 2


async def test_an_idle_connection_past_the_keepalive_expiry_is_replaced() -> None:
    pool = make_pool(keepalive_expiry=0.1)
    try:
        async with RawServer([]) as server:
            await get(pool, f"{server.url}/1")
            await get(pool, f"{server.url}/2")
            await asyncio.sleep(0.2)
            await get(pool, f"{server.url}/3")
    finally:
        await pool.aclose()
    assert server.connections == 2


async def test_idle_connections_are_closed_once_expired_even_if_never_used_again() -> None:
    pool = make_pool(keepalive_expiry=0.1)
    try:
        async with RawServer([]) as server:
            await get(pool, f"{server.url}/1")
            for _ in range(100):  # up to 2 s; the sweep runs 0.1 s after the connection went idle
                if server.closed_by_client:
                    break
                await asyncio.sleep(0.02)
            closed = server.closed_by_client
    finally:
        await pool.aclose()
    assert closed == 1  # the client closed its idle connection by itself, long before aclose


async def test_read_and_overall_timeouts_say_the_request_was_sent(pool: Http1Pool) -> None:
    async def silent(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1.0)

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(40):  # a byte every 0.1 s: never idle for the read timeout, past the overall bound
            await asyncio.sleep(0.1)
            writer.write(b"x")

    async with RawServer([silent]) as server:
        with pytest.raises(WireError) as slow:
            await get(pool, f"{server.url}/slow", timeouts=Timeouts(connect=1, read=0.2, total=5))
    async with RawServer([trickle]) as server:
        with pytest.raises(WireError) as trickled:
            await get(pool, f"{server.url}/trickle", timeouts=Timeouts(connect=1, read=0.5, total=0.6))
    assert slow.value.sent is True and "read timeout" in str(slow.value)
    assert trickled.value.sent is True and "overall" in str(trickled.value)


async def test_an_oversized_answer_is_refused(pool: Http1Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_RESPONSE_BYTES", 1000)
    async with RawServer([ok(b"x" * 5000), ok(b"small")]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/big")
        after = await get(pool, f"{server.url}/small")
    assert caught.value.sent is True and "too large" in str(caught.value)
    assert after.body == b"small"


async def test_an_answer_nobody_asked_for_retires_the_connection(pool: Http1Pool) -> None:
    async with RawServer([ok(b"one") + ok(b"unasked"), ok(b"two")]) as server:
        first = await get(pool, f"{server.url}/1")
        second = await get(pool, f"{server.url}/2")
    assert (first.body, second.body) == (b"one", b"two")  # never the stray answer
    assert server.connections == 2


async def test_a_malformed_answer_is_an_error_after_sending(pool: Http1Pool) -> None:
    async with RawServer([b"SMTP ready\r\n\r\n"]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/x")
    assert caught.value.sent is True


async def test_a_refused_connection_was_not_sent(pool: Http1Pool) -> None:
    async with RawServer([]) as server:
        url = server.url
    await asyncio.sleep(0.05)
    with pytest.raises(WireError) as caught:
        await get(pool, f"{url}/x")
    assert caught.value.sent is False


async def test_a_cancelled_request_does_not_leave_its_connection_for_the_next(pool: Http1Pool) -> None:
    async def late(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.3)
        writer.write(ok(b"late answer"))
        await writer.drain()

    async with RawServer([late, ok(b"fresh")]) as server:
        task = asyncio.create_task(get(pool, f"{server.url}/slow"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        answer = await get(pool, f"{server.url}/next")
    assert answer.body == b"fresh"  # never the answer meant for the cancelled request
    assert server.connections == 2


async def test_the_connection_limit_queues_callers() -> None:
    pool = make_pool(max_connections=1)

    async def slowish(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        writer.write(ok(b"ok"))
        await writer.drain()

    try:
        async with RawServer([slowish] * 5) as server:
            answers = await asyncio.gather(*(get(pool, f"{server.url}/{n}") for n in range(5)))
    finally:
        await pool.aclose()
    assert [a.body for a in answers] == [b"ok"] * 5
    assert server.connections == 1


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


async def test_https_through_a_connect_proxy_from_the_environment(
    tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with RawServer([ok(b'{"id": 7}')], tls=tls.server) as crm, ConnectProxy() as proxy:
        port = crm.url.rsplit(":", 1)[1]
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        transport = build_transport_client(connect_timeout=1.0, read_timeout=1.0)
        try:
            response = await CrmHttpClient(
                transport, base_url=crm.url, retry=RetryPolicy(attempts=1)
            ).request("POST", "/persons", json={"name": "Ada"})
        finally:
            await transport.aclose()
    assert response.status_code == 200 and response.json() == {"id": 7}
    assert proxy.requests[0].startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=" in proxy.requests[0]
    assert b"POST /persons HTTP/1.1" in crm.heads[0]  # end to end inside the tunnel, origin-form target

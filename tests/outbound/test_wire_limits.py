"""The outbound wire's limits against CRMs that misbehave on purpose (raw loopback sockets, byte for byte).

What aiohttp bounded and the wire must bound too: the answer's head (lines, header count, total bytes, counted as
they arrive), the body after gzip or deflate is undone, the connections per CRM host; and what a client of a real
network needs: both address families tried at once, idle connections kept as long as the CRM keeps them, and a
connection the CRM closed noticed before a request is lost on it.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from appconnect.outbound.client import CrmHttpClient, RetryPolicy, build_transport_client
from appconnect.outbound.wire import (
    MAX_HEAD_BYTES,
    MAX_RESPONSE_BYTES,
    MAX_WIRE_BODY_BYTES,
    Addresses,
    Http1Pool,
    Timeouts,
    WireError,
)
from tests.support.raw_http import RawServer, get, make_pool, ok

MiB = 1024 * 1024


@pytest.fixture
async def pool() -> AsyncIterator[Http1Pool]:
    made = make_pool()
    try:
        yield made
    finally:
        await made.aclose()


# --- the answer's head -----------------------------------------------------------------------------------------


class Flood:
    """An answer whose head never ends; records how much of it the server could write before the client hung up
    (the client must hang up: a CRM that never stops talking is not waited for)."""

    LIMIT = 64 * MiB

    def __init__(self, line: bytes, *, one_line: bool = False) -> None:
        self.line = line
        self.one_line = one_line
        self.written = 0
        self.cut_off = False

    async def __call__(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n" + (b"X-Endless: " if self.one_line else b""))
        block = self.line * max(1, 16384 // len(self.line))
        try:
            while self.written < self.LIMIT:
                writer.write(block)
                await writer.drain()
                self.written += len(block)
        except ConnectionError:
            self.cut_off = True


@pytest.mark.parametrize(
    ("flood", "named"),
    [
        (Flood(b"X-Filler: " + b"a" * 88 + b"\r\n"), f"larger than {MAX_HEAD_BYTES} bytes"),
        (Flood(b"X-Filler: " + b"a" * 4000 + b"\r\n"), f"larger than {MAX_HEAD_BYTES} bytes"),
        (Flood(b"a" * 1000, one_line=True), f"larger than {MAX_HEAD_BYTES} bytes"),
    ],
    ids=["many-short-lines", "long-lines", "one-endless-line"],
)
async def test_an_endless_head_is_cut_off_and_the_connection_closed(
    pool: Http1Pool, flood: Flood, named: str
) -> None:
    async with RawServer([flood, ok(b"next")]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/login", timeouts=Timeouts(connect=2, read=2, total=10))
        for _ in range(200):  # the server notices the close when its next write fails
            if flood.cut_off:
                break
            await asyncio.sleep(0.01)
        after = await get(pool, f"{server.url}/next")
    assert caught.value.sent is True and named in str(caught.value)
    assert flood.cut_off and flood.written < flood.LIMIT
    assert after.body == b"next" and server.connections == 2


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (b"HTTP/1.1 200 " + b"O" * 9000 + b"\r\nContent-Length: 0\r\n\r\n", "status line is longer"),
        (ok(b"{}", "X-Long: " + "v" * 9000), "header line is longer"),
        (ok(b"{}", *[f"X-H{n}: v" for n in range(129)]), "more than 128 header lines"),
        (ok(b"{}", *[f"X-H{n}: " + "v" * 600 for n in range(110)]), "larger than"),
    ],
    ids=["status-line", "header-line", "header-count", "head-bytes"],
)
async def test_a_complete_head_over_a_limit_is_refused(pool: Http1Pool, answer: bytes, named: str) -> None:
    async with RawServer([answer]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/x")
    assert caught.value.sent is True and named in str(caught.value)


async def test_endless_interim_answers_are_cut_off(pool: Http1Pool) -> None:
    """1xx answers have no body and may repeat: their heads count against the same cap."""
    interim = b"HTTP/1.1 102 Processing\r\nX-Filler: " + b"a" * 200 + b"\r\n\r\n"
    async with RawServer([interim * 2000 + ok(b"late")]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/x")
    assert caught.value.sent is True and f"larger than {MAX_HEAD_BYTES} bytes" in str(caught.value)


async def test_a_large_head_within_the_limits_is_read(pool: Http1Pool) -> None:
    headers = [f"X-H{n}: " + "v" * 480 for n in range(110)]  # 110 lines, about 53 KiB
    async with RawServer([ok(b"{}", *headers, "Set-Cookie: " + "c" * 8000)]) as server:
        answer = await get(pool, f"{server.url}/x")
    assert answer.status == 200 and answer.headers["x-h109"] == "v" * 480


# --- the body, after gzip or deflate is undone ---------------------------------------------------------------


def compressed(coding: str, size: int, data: bytes = b"") -> bytes:
    """`size` zero bytes (or `data`) compressed in `coding`, without holding the inflated bytes in memory."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[coding]
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [packer.compress(data)] if data else []
    zeros = b"\0" * MiB
    left = size
    while left > 0:
        parts.append(packer.compress(zeros[: min(left, MiB)]))
        left -= MiB
    parts.append(packer.flush())
    return b"".join(parts)


def framed(
    framing: str, coding: str, body: bytes, *, chunk: int = 4096
) -> Callable[[asyncio.StreamWriter], Any]:
    encoding = "Content-Encoding: " + ("deflate" if coding == "raw-deflate" else coding)

    async def answer(writer: asyncio.StreamWriter) -> None:
        try:
            if framing == "content-length":
                writer.write(
                    f"HTTP/1.1 200 OK\r\n{encoding}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
                )
            elif framing == "chunked":
                writer.write(f"HTTP/1.1 200 OK\r\n{encoding}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
                for start in range(0, len(body), chunk):
                    piece = body[start : start + chunk]
                    writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(f"HTTP/1.1 200 OK\r\n{encoding}\r\nConnection: close\r\n\r\n".encode() + body)
                await writer.drain()
                writer.close()
                return
            await writer.drain()
        except ConnectionError:
            pass

    return answer


CODINGS = ["gzip", "deflate", "raw-deflate"]
FRAMINGS = ["content-length", "chunked", "until-close"]


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("framing", FRAMINGS)
async def test_a_body_that_inflates_past_the_cap_is_refused_while_inflating(
    pool: Http1Pool, coding: str, framing: str
) -> None:
    bomb = compressed(coding, MAX_RESPONSE_BYTES + MiB)  # about 33 KiB that inflate to 33 MiB
    assert len(bomb) < MiB
    async with RawServer([framed(framing, coding, bomb), ok(b"next")]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/bomb")
        after = await get(pool, f"{server.url}/next")
    assert caught.value.sent is True and "too large once decompressed" in str(caught.value)
    assert after.body == b"next" and server.connections == 2


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("framing", FRAMINGS)
async def test_compressed_bodies_arriving_in_small_pieces_are_inflated(
    pool: Http1Pool, coding: str, framing: str
) -> None:
    payload = b'{"data": [' + b'{"id": 1},' * 3000 + b'{"id": 2}]}'
    body = compressed(coding, 0, payload)
    async with RawServer([framed(framing, coding, body, chunk=1)]) as server:
        answer = await get(pool, f"{server.url}/x", timeouts=Timeouts(connect=2, read=2, total=10))
    assert answer.body == payload


async def test_a_compressed_body_declared_over_the_wire_cap_is_refused_at_its_head(pool: Http1Pool) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {MAX_WIRE_BODY_BYTES + 1}\r\n\r\n"
    async with RawServer([head.encode()]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/x", timeouts=Timeouts(connect=2, read=2, total=5))
    assert caught.value.sent is True and "too large" in str(caught.value)


@pytest.mark.parametrize("coding", CODINGS)
async def test_a_compressed_body_cut_short_is_corrupt(pool: Http1Pool, coding: str) -> None:
    body = compressed(coding, 0, b"x" * 5000)[:-6]
    async with RawServer([framed("content-length", coding, body)]) as server:
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/x")
    assert caught.value.sent is True and "corrupt" in str(caught.value)


async def test_an_empty_body_under_a_content_coding_is_empty(pool: Http1Pool) -> None:
    async with RawServer(
        [b"HTTP/1.1 204 No Content\r\nContent-Encoding: gzip\r\n\r\n", ok(b"", "Content-Encoding: deflate")]
    ) as server:
        no_content = await get(pool, f"{server.url}/1")
        empty = await get(pool, f"{server.url}/2")
    assert (no_content.status, no_content.body, empty.body) == (204, b"", b"")


async def test_gzip_of_the_standard_library_is_read(pool: Http1Pool) -> None:
    async with RawServer([ok(gzip.compress(b"hello " * 1000), "Content-Encoding: gzip")]) as server:
        answer = await get(pool, f"{server.url}/x")
    assert answer.body == b"hello " * 1000


# --- connections per CRM host ------------------------------------------------------------------------------------


def slow_answer(body: bytes, seconds: float = 0.05) -> Callable[[asyncio.StreamWriter], Any]:
    async def answer(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)
        writer.write(ok(body))
        await writer.drain()

    return answer


async def test_connections_to_one_host_are_capped_and_other_hosts_are_not_held_up() -> None:
    pool = make_pool(max_connections=10, max_connections_per_host=2)
    try:
        async with RawServer([slow_answer(b"a")] * 8) as busy, RawServer([slow_answer(b"b")] * 2) as other:
            answers = await asyncio.gather(
                *(get(pool, f"{busy.url}/{n}") for n in range(8)),
                *(get(pool, f"{other.url}/{n}") for n in range(2)),
            )
    finally:
        await pool.aclose()
    assert [a.body for a in answers] == [b"a"] * 8 + [b"b"] * 2
    assert busy.connections == 2 and other.connections == 2


async def test_the_transport_passes_its_per_host_cap_to_the_wire() -> None:
    transport = build_transport_client(connect_timeout=1.0, read_timeout=1.0, max_connections_per_host=3)
    try:
        async with RawServer([slow_answer(b"{}")] * 9) as crm:
            client = CrmHttpClient(transport, base_url=crm.url, retry=RetryPolicy(attempts=1))
            answers = await asyncio.gather(*(client.request("GET", f"/persons/{n}") for n in range(9)))
    finally:
        await transport.aclose()
    assert [a.status_code for a in answers] == [200] * 9
    assert crm.connections == 3


# --- both address families at once (happy eyeballs) --------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")


@pytest.fixture
def blackholed_v6_port() -> Iterator[Callable[[int], None]]:
    """Makes ::1 on a port drop connection attempts (a listener whose queue is full), as a host whose IPv6
    route goes nowhere does: a connect there neither succeeds nor fails until the connect timeout."""
    opened: list[socket.socket] = []

    def blackhole(port: int) -> None:
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        listener.bind(("::1", port))
        listener.listen(0)
        filler = socket.create_connection(("::1", port))  # fills the queue; nobody accepts it
        opened.extend([listener, filler])

    yield blackhole
    for sock in opened:
        sock.close()


def localhost_on_both(v6_first: bool) -> Callable[[str, int], Any]:
    """A resolver that gives `localhost` both loopback addresses, as /etc/hosts does on a dual-stack machine."""

    async def resolve(host: str, port: int) -> Addresses:
        assert host == "localhost"
        v6 = [
            (family, addr)
            for family, _t, _p, _n, addr in socket.getaddrinfo("::1", port, type=socket.SOCK_STREAM)
        ]
        v4 = [
            (family, addr)
            for family, _t, _p, _n, addr in socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_STREAM)
        ]
        return v6 + v4 if v6_first else v4 + v6

    return resolve


@needs_ipv6
async def test_ipv4_answers_while_ipv6_goes_nowhere(blackholed_v6_port: Callable[[int], None]) -> None:
    pool = make_pool(resolver=localhost_on_both(v6_first=True))
    try:
        async with RawServer([ok(b"over v4")], host="127.0.0.1") as server:
            blackholed_v6_port(server.port)
            answer = await get(
                pool, f"http://localhost:{server.port}/x", timeouts=Timeouts(connect=3, read=2, total=6)
            )
    finally:
        await pool.aclose()
    assert answer.body == b"over v4" and server.connections == 1


@needs_ipv6
async def test_ipv6_answers_while_nothing_listens_on_ipv4() -> None:
    pool = make_pool(resolver=localhost_on_both(v6_first=False))
    try:
        async with RawServer([ok(b"over v6")], host="::1") as server:
            answer = await get(pool, f"http://localhost:{server.port}/x")
    finally:
        await pool.aclose()
    assert answer.body == b"over v6" and server.connections == 1
    assert b"Host: localhost:" in server.heads[0]


@needs_ipv6
async def test_no_address_answering_is_a_connect_failure_not_sent() -> None:
    pool = make_pool(resolver=localhost_on_both(v6_first=True))
    try:
        async with RawServer([]) as server:
            port = server.port
        with pytest.raises(WireError) as caught:
            await get(pool, f"http://localhost:{port}/x")
    finally:
        await pool.aclose()
    assert caught.value.sent is False and "connect failed" in str(caught.value)


async def test_localhost_from_the_system_resolver_reaches_a_server_on_one_family(pool: Http1Pool) -> None:
    """Whatever this machine's hosts file maps `localhost` to (127.0.0.1, ::1 or both), a server listening on
    127.0.0.1 only is reached."""
    async with RawServer([ok(b"found")], host="127.0.0.1") as server:
        answer = await get(pool, f"http://localhost:{server.port}/x")
    assert answer.body == b"found"


# --- idle connections: as long as the CRM keeps them, and never used once it closed them ----------------------


async def test_a_keep_alive_timeout_longer_than_the_default_is_honoured() -> None:
    pool = make_pool(keepalive_expiry=0.1)
    try:
        async with RawServer([ok(b"one", "Keep-Alive: timeout=5, max=100"), ok(b"two")]) as server:
            await get(pool, f"{server.url}/1")
            await asyncio.sleep(0.3)
            await get(pool, f"{server.url}/2")
    finally:
        await pool.aclose()
    assert server.connections == 1


async def test_a_keep_alive_timeout_shorter_than_the_margin_is_not_reused(pool: Http1Pool) -> None:
    async with RawServer([ok(b"one", "Keep-Alive: timeout=1"), ok(b"two")]) as server:
        await get(pool, f"{server.url}/1")
        await asyncio.sleep(0.05)
        await get(pool, f"{server.url}/2")
    assert server.connections == 2


async def test_a_keep_alive_header_without_a_timeout_keeps_the_default(pool: Http1Pool) -> None:
    async with RawServer([ok(b"one", "Keep-Alive: max=100"), ok(b"two")]) as server:
        await get(pool, f"{server.url}/1")
        await asyncio.sleep(0.05)
        await get(pool, f"{server.url}/2")
    assert server.connections == 1


async def test_connection_close_retires_the_connection(pool: Http1Pool) -> None:
    async with RawServer([ok(b"one", "Connection: close"), ok(b"two")]) as server:
        await get(pool, f"{server.url}/1")
        await get(pool, f"{server.url}/2")
    assert server.connections == 2


async def test_the_transport_keeps_an_idle_connection_longer_than_a_few_seconds() -> None:
    """A CRM called every few seconds reuses its connection (no TLS handshake per call)."""
    transport = build_transport_client(connect_timeout=1.0, read_timeout=1.0)
    try:
        async with RawServer([]) as crm:
            client = CrmHttpClient(transport, base_url=crm.url, retry=RetryPolicy(attempts=1))
            await client.request("GET", "/persons/1")
            await asyncio.sleep(2.5)
            await client.request("GET", "/persons/2")
    finally:
        await transport.aclose()
    assert crm.connections == 1


class ThreadedCrm:
    """A CRM in a thread of its own (so it can close a connection while the client's event loop is busy): each
    connection answers one request and then closes, the first one only once `close_first` is set; records each
    request's first line."""

    def __init__(self, *, reset: bool = False) -> None:
        self.reset = reset  # close with a reset (RST) instead of an orderly close (FIN)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_first = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ThreadedCrm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()

    def _serve(self) -> None:
        self.listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    data += piece
                if not data:
                    continue
                self.requests.append(data.split(b"\r\n", 1)[0])
                conn.sendall(ok(f"answer {len(self.requests)}".encode()))
                if self.connections == 1:
                    self.close_first.wait(5)
                if self.reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    conn.shutdown(socket.SHUT_RDWR)  # then closed: an idle close right after the answer


async def test_an_idle_connection_closed_by_the_crm_is_noticed_before_a_write_is_sent_on_it(
    pool: Http1Pool,
) -> None:
    with ThreadedCrm() as crm:
        url = f"http://127.0.0.1:{crm.port}"
        first = await get(pool, f"{url}/persons/1")
        crm.close_first.set()
        time.sleep(0.2)  # the loop must not run: the close is in the socket, unseen by the loop
        second = await get(pool, f"{url}/activities", method="POST", body=b'{"note": "x"}')
    assert (first.body, second.body) == (b"answer 1", b"answer 2")
    assert crm.requests == [b"GET /persons/1 HTTP/1.1", b"POST /activities HTTP/1.1"]
    assert crm.connections == 2


async def test_a_write_on_an_idle_connection_the_crm_reset_goes_on_a_new_connection_once(
    pool: Http1Pool,
) -> None:
    """The CRM reset the connection while it was idle: however that is found (a poll of the socket, or the write
    failing at once, before any byte left), the write is sent once, on a new connection."""
    with ThreadedCrm(reset=True) as crm:
        url = f"http://127.0.0.1:{crm.port}"
        await get(pool, f"{url}/persons/1")
        crm.close_first.set()
        time.sleep(0.05)  # the loop must not run: the reset is in the socket, unseen by the loop
        second = await get(pool, f"{url}/activities", method="POST", body=b'{"note": "x"}')
    assert second.body == b"answer 2"
    assert crm.requests == [b"GET /persons/1 HTTP/1.1", b"POST /activities HTTP/1.1"]
    assert crm.connections == 2


async def close_without_answer(writer: asyncio.StreamWriter) -> None:
    writer.close()  # read the request, then closed: as a CRM whose idle timeout fired as the request came


async def test_a_read_on_a_reused_connection_closed_before_any_answer_is_sent_again_on_a_new_one(
    pool: Http1Pool,
) -> None:
    async with RawServer([ok(b"one"), close_without_answer, ok(b"two")]) as server:
        await get(pool, f"{server.url}/1")
        answer = await get(pool, f"{server.url}/2")
    assert answer.body == b"two"
    assert server.connections == 2
    assert [head.split(b"\r\n")[0] for head in server.heads] == [
        b"GET /1 HTTP/1.1",
        b"GET /2 HTTP/1.1",
        b"GET /2 HTTP/1.1",
    ]


async def test_a_write_on_a_reused_connection_closed_before_any_answer_is_never_sent_twice(
    pool: Http1Pool,
) -> None:
    async with RawServer([ok(b"one"), close_without_answer, ok(b"two")]) as server:
        await get(pool, f"{server.url}/1")
        with pytest.raises(WireError) as caught:
            await get(pool, f"{server.url}/2", method="POST", body=b"{}")
        await asyncio.sleep(0.05)
    assert caught.value.sent is True  # it reached the CRM: the outcome is unknown
    assert [head.split(b"\r\n")[0] for head in server.heads] == [b"GET /1 HTTP/1.1", b"POST /2 HTTP/1.1"]

"""A lean HTTP/1.1 client for the server's outbound calls: keep-alive pool, TLS, one send per request.

Chosen by measurement (`bench/outbound_clients.py`, `bench/README.md` "Outbound HTTP: our own HTTP/1.1
client"): at 32 calls in flight a CRM call through aiohttp cost about three times the CPU of this client, and
CRM calls were the largest share of a flow's CPU. A connector never sees this module: `outbound/client.py` owns
every outbound call (retries, rate limits, error mapping) and uses it as its wire.

What the replaced library (aiohttp) did that this client must still do, because a CRM (or whatever answers in
its name) is a peer we do not control:

* bound the answer's head: a status line or header line of at most 8 KiB, at most 128 header lines, at most
  64 KiB in all (aiohttp refused lines over 8190 bytes; h11 refused a head over 16 KiB), counted as the bytes
  arrive, so an endless head costs at most one read's worth of memory past the cap;
* bound the body: at most 32 MiB on the wire and 32 MiB once gzip or deflate is undone, inflated piece by piece
  with a bound on each piece's output, so a small "zip bomb" fails as soon as it passes the cap;
* bound the connections: `max_connections` in all and `max_connections_per_host` to one CRM host
  (aiohttp's `limit` and `limit_per_host`), callers queueing for a slot within their connect timeout;
* try IPv6 and IPv4 addresses of a host in parallel (RFC 8305 "happy eyeballs", as aiohttp asks asyncio for),
  so a family that does not answer costs a quarter of a second, not the connect timeout;
* keep a connection idle for as long as the CRM says it will (`Keep-Alive: timeout=N`, less a margin), retire it
  on `Connection: close`, and check that the CRM has not closed it before reusing it.

What it does, and what it deliberately does not:

* one request per connection at a time; the request leaves in one write; the answer is parsed with `httptools`
  (llhttp): Content-Length, chunked, or delimited by the connection's close; 1xx interim answers are skipped;
* TLS verified against the given context, with SNI; `HTTP_PROXY` / `HTTPS_PROXY` (`CONNECT` tunnel for https),
  an `http://` proxy only: `outbound/client.py` refuses any other scheme at start rather than going direct;
* timeouts: connect (TCP and TLS handshake), read (no byte for that long), and an overall bound per request;
* every failure is a :class:`WireError` whose `sent` says whether the request may have reached the server:
  False only when no byte of it can have been written (the connect, the TLS handshake or the proxy tunnel
  failed, or the connection was found closed before the write);
* a GET/HEAD/OPTIONS on a reused connection that the CRM closed before answering a byte is sent once more on a
  new connection (the CRM's idle close raced our request); any other request is never sent twice here;
* no redirects, no cookies, no HTTP/2, no pipelining, no request streaming, no SOCKS, no TLS to the proxy
  itself: the CRM APIs answer JSON to small requests.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import select
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import httptools

#: the largest answer body kept, after gzip or deflate is undone (a CRM page is kilobytes; this only stops a
#: runaway or hostile server from filling memory)
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: the most bytes inflated in one step (the inflated body grows by pieces of this, never by more than it)
_INFLATE_PIECE = 256 * 1024
#: the largest body read off the wire (compressed or not)
MAX_WIRE_BODY_BYTES = 32 * 1024 * 1024
#: the longest status line or header line of an answer
MAX_LINE_BYTES = 8 * 1024
#: the most header lines in one answer
MAX_HEADER_COUNT = 128
#: the largest head of an answer (status line and headers, interim 1xx answers included)
MAX_HEAD_BYTES = 64 * 1024
#: an idle connection is closed this long before the CRM said it would close it (`Keep-Alive: timeout=N`)
KEEPALIVE_MARGIN_SECONDS = 1.0
#: a CRM's `Keep-Alive: timeout` is honoured up to this (an idle connection to a CRM nobody calls is closed)
MAX_KEEPALIVE_SECONDS = 300.0
#: an idle connection is checked for a close not yet seen when it has been idle this long
_POLL_AFTER_IDLE_SECONDS = 0.1
#: happy eyeballs: the next address is tried when the previous one has not connected within this
HAPPY_EYEBALLS_DELAY = 0.25
#: methods sent again on a new connection when a reused one turns out closed before any answer byte
_REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS"})
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: the proxy schemes this client speaks (an https:// proxy URL is spoken to as http, like urllib did)
PROXY_SCHEMES = frozenset({"http", "https"})

#: (family, socket address) pairs for a host and port
Addresses = list[tuple[int, Any]]
Resolver = Callable[[str, int], Awaitable[Addresses]]


class WireError(Exception):
    """No (complete) answer. `sent` is False when no byte of the request was written."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class _ClosedBeforeAnswer(WireError):
    """The connection closed after the request was written and before any byte of the answer arrived."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect (TCP + TLS), between bytes of the answer, and for the whole request."""

    connect: float
    read: float
    total: float


class Headers(dict[str, str]):
    """An answer's headers under lower-case names (repeated ones joined by ", "); lookups ignore case."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass(slots=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if _DEFAULT_PORTS.get(self.scheme) == self.port else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class _Proxy:
    origin: _Origin
    authorization: str | None


def _origin(scheme: str, host: str | None, port: int | None) -> _Origin:
    if scheme not in _DEFAULT_PORTS or not host:
        raise WireError(f"unsupported URL (scheme {scheme!r})", sent=False)
    return _Origin(scheme, host.lower(), port or _DEFAULT_PORTS[scheme])


def parse_proxy(url: str) -> _Proxy:
    parts = urlsplit(url)
    if parts.scheme not in PROXY_SCHEMES:
        raise WireError(f"unsupported proxy scheme {parts.scheme!r} (http:// only)", sent=False)
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return _Proxy(_origin(parts.scheme, parts.hostname, parts.port), authorization)


def _clean(text: str, what: str) -> str:
    """A request-line or header part: no line breaks (they would let a value start a header of its own)."""
    if "\r" in text or "\n" in text or "\0" in text:
        raise WireError(f"line break in the request's {what}", sent=False)
    return text


class _Decoder:
    """Undoes gzip or deflate as the body arrives, never holding more than `limit` inflated bytes.

    Each piece is inflated with a bound on its output (`max_length`, at most 256 KiB a step), so a few
    compressed bytes that would inflate to gigabytes stop at the cap instead of being inflated whole first.
    """

    __slots__ = ("_fed", "_gzip", "_start", "_z", "size")

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._z: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._start = b""  # deflate: the first byte, until the second tells zlib-wrapped from raw
        self._fed = False
        self.size = 0

    def feed(self, data: bytes, out: list[bytes]) -> None:
        self._fed = self._fed or bool(data)
        z = self._z
        if z is None:
            data = self._start + data
            if len(data) < 2:
                self._start = data
                return
            self._start = b""
            # RFC 1950 header: compression method 8 and a check value that makes the pair a multiple of 31;
            # some servers send raw deflate (RFC 1951) under "deflate"
            wrapped = data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            z = self._z = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        limit = MAX_RESPONSE_BYTES
        try:
            while data:
                piece = z.decompress(data, min(limit - self.size + 1, _INFLATE_PIECE))
                self.size += len(piece)
                if self.size > limit:
                    out.clear()  # emptied here: the error's traceback keeps this frame (and the list) alive
                    raise WireError(
                        f"the answer is too large once decompressed (over {limit} bytes)", sent=True
                    )
                if piece:
                    out.append(piece)
                data = z.unconsumed_tail
        except zlib.error as exc:
            raise self._corrupt(str(exc)) from None

    def finish(self) -> None:
        """The body ended: the compressed stream must have ended too (else it was cut short)."""
        if not self._fed:
            return  # no body at all (a 204, a 304, an empty answer): nothing to undo
        if self._z is None:
            if self._start:
                raise self._corrupt("too short")
            return
        if not self._z.eof:
            raise self._corrupt("the stream is cut short")

    def _corrupt(self, why: str) -> WireError:
        coding = "gzip" if self._gzip else "deflate"
        return WireError(f"the answer's {coding} body is corrupt: {why}", sent=True)


def _check_head(headers: list[tuple[bytes, bytes]]) -> None:
    """Each header line within MAX_LINE_BYTES and all of them within MAX_HEAD_BYTES."""
    total = 0
    for name, value in headers:
        size = len(name) + len(value)
        if size > MAX_LINE_BYTES:
            raise WireError(f"an answer header line is longer than {MAX_LINE_BYTES} bytes", sent=True)
        total += size + 4  # ": " and CRLF
    if total > MAX_HEAD_BYTES:
        raise WireError(f"the answer's head is larger than {MAX_HEAD_BYTES} bytes", sent=True)


def _keepalive_seconds(value: bytes, default: float) -> float:
    """How long a connection may stay idle after `Keep-Alive: timeout=N, max=M`: N less a margin; `default`
    when the header names no timeout, or one that is not a number."""
    for part in value.split(b","):
        key, _, number = part.partition(b"=")
        if key.strip().lower() == b"timeout":
            try:
                seconds = float(number.strip())
            except ValueError:
                return default
            if not seconds >= 0:  # NaN or negative
                return default
            return min(max(seconds - KEEPALIVE_MARGIN_SECONDS, 0.0), MAX_KEEPALIVE_SECONDS)
    return default


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time, its answer parsed (and bounded) as it arrives."""

    def __init__(self, pool: Http1Pool, origin: _Origin, proxy: _Proxy | None) -> None:
        self._pool = pool
        self.origin = origin
        self.proxy = proxy
        self.counted = False
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._poller: Any = None  # polls the socket for a close the loop has not seen yet
        self.closed = False
        self.idle_since = 0.0
        #: seconds it may stay idle after its last answer (the CRM's Keep-Alive, else the pool's default)
        self.expiry = 0.0
        #: answers read on it so far (a reused connection may have been closed by the CRM meanwhile)
        self.answered = 0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._tunnel: asyncio.Future[int] | None = None
        self._tunnel_buffer = b""
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._decoder: _Decoder | None = None
        self._keep_alive: bytes | None = None
        self._head_bytes = 0
        self._status_bytes = 0
        self._received = False
        self._headers_done = False
        self._until_close = False
        self._head = False
        self.reusable = False
        self._last_byte = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._read_timeout = 0.0

    # --- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() >= 0:
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        self._last_byte = self._loop.time()
        if self._tunnel is not None:
            self._tunnel_data(data)
            return
        if self._waiter is None:
            # bytes nobody asked for (or after the answer): the connection's state is unknown, drop it
            self.reusable = False
            self.close()
            return
        self._received = True
        if not self._headers_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(WireError("the server switched protocols", sent=True))
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            self._fail(
                refused
                if isinstance(refused, WireError)
                else WireError(f"malformed answer: {exc}", sent=True)
            )
        except httptools.HttpParserError as exc:
            self._fail(WireError(f"malformed answer: {exc}", sent=True))
        else:
            if not self._headers_done and self._head_bytes > MAX_HEAD_BYTES and self._waiter is not None:
                # counted as the bytes arrive: a head that never ends is cut off here, not when it ends
                self._fail(WireError(f"the answer's head is larger than {MAX_HEAD_BYTES} bytes", sent=True))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost finishes or fails the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._pool.lost(self)
        if self._tunnel is not None and not self._tunnel.done():
            self._tunnel.set_exception(WireError("the proxy closed the tunnel", sent=False))
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and self._until_close:
            self._finish()  # an answer delimited by the close is complete now
            return
        reason = f": {type(exc).__name__}" if exc is not None else ""
        if not self._received:
            self._fail(_ClosedBeforeAnswer(f"connection closed before any answer{reason}", sent=True))
            return
        self._fail(WireError(f"connection closed before the answer was complete{reason}", sent=True))

    # --- httptools callbacks (a WireError raised here stops the parse; data_received reports it) -----------

    def on_message_begin(self) -> None:
        if self._waiter is None:
            self.reusable = False  # a second answer in the same bytes: nothing was asked for it

    def on_status(self, status: bytes) -> None:
        self._status_bytes += len(status)
        if self._status_bytes > MAX_LINE_BYTES:
            raise WireError(f"the answer's status line is longer than {MAX_LINE_BYTES} bytes", sent=True)

    def on_header(self, name: bytes, value: bytes) -> None:
        # bounded in on_headers_complete, and as bytes arrive by data_received (one read's worth at most here)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._status = status
        self._status_bytes = 0
        headers = self._headers
        if len(headers) > MAX_HEADER_COUNT:
            raise WireError(f"the answer has more than {MAX_HEADER_COUNT} header lines", sent=True)
        if self._head_bytes > MAX_LINE_BYTES:
            _check_head(headers)  # a head this small (the usual) can have no line or total over a limit
        chunked = False
        length = coding = b""
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length = value
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lowered == b"content-encoding":
                coding = value.strip().lower()
            elif lowered == b"keep-alive":
                self._keep_alive = value
        if 100 <= status < 200:
            return  # an interim answer: its message completes with no body, the real one follows
        self._headers_done = True
        if self._head:
            self._finish()
            return
        if len(length) > 7 and length.strip().isdigit() and int(length) > MAX_WIRE_BODY_BYTES:
            raise WireError(f"the answer is too large (over {MAX_WIRE_BODY_BYTES} bytes)", sent=True)
        if coding in (b"gzip", b"x-gzip", b"deflate"):
            self._decoder = _Decoder(gzip=coding != b"deflate")
        self._until_close = not length and not chunked and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_WIRE_BODY_BYTES:
            raise WireError(f"the answer is too large (over {MAX_WIRE_BODY_BYTES} bytes)", sent=True)
        decoder = self._decoder
        if decoder is not None:
            decoder.feed(body, self._body)
        elif self._size > MAX_RESPONSE_BYTES:
            self._body.clear()
            raise WireError(f"the answer is too large (over {MAX_RESPONSE_BYTES} bytes)", sent=True)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is None:
            self.reusable = False
            return
        if not self._headers_done:  # the end of an interim (1xx) answer
            self._headers = []
            return
        self.reusable = self._parser.should_keep_alive()
        self._finish()

    # --- requests ----------------------------------------------------------------------------------------

    def send(self, payload: bytes, *, head: bool, timeouts: Timeouts) -> asyncio.Future[Answer]:
        """Write the request; the future is its answer. Raises WireError(sent=False) when the connection is
        found closed before or at the write (nothing of the request can have left)."""
        transport = self.transport
        assert transport is not None
        if self.closed:  # (an idle one was checked when taken: `stale`)
            raise WireError("the connection was closed before the request was sent", sent=False)
        self._status = 0
        self._headers = []
        self._body = []
        self._size = self._head_bytes = self._status_bytes = 0
        self._decoder = None
        self._keep_alive = None
        self._received = self._headers_done = self._until_close = self.reusable = False
        self._head = head
        waiter = self._waiter = self._loop.create_future()
        now = self._loop.time()
        self._last_byte = now
        self._deadline = now + timeouts.total
        self._read_timeout = timeouts.read
        self._timer = self._loop.call_at(min(self._deadline, now + timeouts.read), self._check_time)
        transport.write(payload)
        if transport.is_closing():
            # the transport tried to send at once and the socket refused (the peer had closed): nothing left
            self._waiter = None
            self._cancel_timer()
            raise WireError("the connection was closed before the request was sent", sent=False)
        return waiter

    def _check_time(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        now = self._loop.time()
        if now >= self._deadline:
            self._fail(WireError("the request took longer than its overall timeout", sent=True))
        elif now >= self._last_byte + self._read_timeout:
            self._fail(WireError(f"no answer within the read timeout ({self._read_timeout:g} s)", sent=True))
        else:
            self._timer = self._loop.call_at(
                min(self._deadline, self._last_byte + self._read_timeout), self._check_time
            )

    def _finish(self) -> None:
        waiter = self._waiter
        self._waiter = None
        self._cancel_timer()
        if waiter is None or waiter.done():
            return
        decoder = self._decoder
        self._decoder = None
        try:
            if decoder is not None:
                decoder.finish()
        except WireError as exc:
            self.reusable = False
            waiter.set_exception(exc)
            self.close()
            return
        self.answered += 1
        default = self._pool.keepalive_default
        keep_alive = self._keep_alive
        self.expiry = default if keep_alive is None else _keepalive_seconds(keep_alive, default)
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        waiter.set_result(Answer(self._status, _headers(self._headers), body))

    def _fail(self, error: WireError) -> None:
        waiter = self._waiter
        self._waiter = None
        self._cancel_timer()
        self.reusable = False
        self._body.clear()  # in place: a traceback may still refer to the list
        self._decoder = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abandon(self) -> None:
        """The caller stopped waiting (cancelled): the answer may still come, so the connection is not reused."""
        self._waiter = None
        self._cancel_timer()
        self.reusable = False
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def stale(self, idle: float) -> bool:
        """Idle for `idle` seconds, but the CRM closed it (or sent something unasked) and the loop has not seen
        it yet. The socket is asked only after a pause (a system call): a CRM's idle close comes seconds after
        its last answer, not within the moments a busy connection waits between requests."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return True
        poller = self._poller
        return idle >= _POLL_AFTER_IDLE_SECONDS and poller is not None and bool(poller.poll(0))

    # --- proxy tunnel ------------------------------------------------------------------------------------

    async def open_tunnel(self, target: _Origin, authorization: str | None, wait: float) -> None:
        """`CONNECT` through the proxy this connection reached; raises WireError(sent=False) unless 2xx."""
        assert self.transport is not None
        self._tunnel = self._loop.create_future()
        lines = [f"CONNECT {target.host_header} HTTP/1.1", f"Host: {target.host_header}"]
        if authorization:
            lines.append(f"Proxy-Authorization: {authorization}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            status = await asyncio.wait_for(self._tunnel, wait)
        except TimeoutError:
            raise WireError("the proxy did not open the tunnel in time", sent=False) from None
        finally:
            self._tunnel = None
        if not 200 <= status < 300:
            raise WireError(f"the proxy refused the tunnel ({status})", sent=False)

    def _tunnel_data(self, data: bytes) -> None:
        assert self._tunnel is not None
        self._tunnel_buffer += data
        end = self._tunnel_buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._tunnel_buffer) > 16384 and not self._tunnel.done():
                self._tunnel.set_exception(WireError("the proxy's answer is too long", sent=False))
            return
        status_line = self._tunnel_buffer.split(b"\r\n", 1)[0].split()
        self._tunnel_buffer = b""
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if not self._tunnel.done():
            self._tunnel.set_result(status)


def _headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    headers = Headers()
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = dict.get(headers, key)
        dict.__setitem__(headers, key, text if previous is None else f"{previous}, {text}")
    return headers


async def _system_resolver(loop: asyncio.AbstractEventLoop, host: str, port: int) -> Addresses:
    """The host's addresses from the system resolver (an IP literal needs none)."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]
    if literal.version == 6:
        return [(socket.AF_INET6, (host, port, 0, 0))]
    return [(socket.AF_INET, (host, port))]


def _interleaved(addresses: Sequence[tuple[int, Any]]) -> Addresses:
    """One address of each family in turn, the resolver's first family first (RFC 8305 section 4)."""
    by_family: dict[int, Addresses] = {}
    for address in addresses:
        if address not in by_family.setdefault(address[0], []):
            by_family[address[0]].append(address)
    queues = list(by_family.values())
    ordered: Addresses = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


async def _connect_one(loop: asyncio.AbstractEventLoop, family: int, sockaddr: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect_first(
    loop: asyncio.AbstractEventLoop, addresses: Addresses, delay: float
) -> socket.socket:
    """Happy eyeballs: start the next address when the last one failed or `delay` passed; the first connected
    socket wins and the other attempts are cancelled (their sockets closed)."""
    pending: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    winner: socket.socket | None = None
    index = 0
    try:
        while winner is None:
            if index < len(addresses):
                family, sockaddr = addresses[index]
                pending.add(loop.create_task(_connect_one(loop, family, sockaddr)))
                index += 1
            elif not pending:
                break
            done, pending = await asyncio.wait(
                pending,
                timeout=delay if index < len(addresses) else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                error = task.exception()
                if error is not None:
                    errors.append(error)
                elif winner is None:
                    winner = task.result()
                else:
                    task.result().close()
    finally:
        for task in pending:
            if not task.cancel() and not task.cancelled() and task.exception() is None:
                task.result().close()  # connected just as the race ended: not needed
    if winner is None:
        last = errors[-1] if errors else None
        raise OSError(f"no address of the host accepted the connection ({len(addresses)} tried): {last}")
    return winner


class Http1Pool:
    """The process's outbound connections (one pool per event loop)."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        keepalive_expiry: float,
        default_headers: Mapping[str, str],
        max_connections_per_host: int | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """`keepalive_expiry`: idle seconds kept when the CRM's answer does not say (`Keep-Alive: timeout=N`
        does); `max_connections_per_host`: at most this many to one scheme, host and port (default: no cap
        below `max_connections`); `resolver`: a host's addresses (default: the system's)."""
        self.loop = loop
        self._ssl = ssl_context
        self._max = max_connections
        self._max_per_host = max_connections_per_host or max_connections
        self.keepalive_default = keepalive_expiry
        self._resolve: Resolver = resolver or (lambda host, port: _system_resolver(loop, host, port))
        self._default_headers = "".join(
            f"{_clean(k, 'headers')}: {_clean(v, 'headers')}\r\n" for k, v in default_headers.items()
        )
        self._idle: dict[tuple[_Origin, _Proxy | None], list[_Connection]] = {}
        self._open = 0
        self._open_to: dict[_Origin, int] = {}
        self._waiters: collections.deque[tuple[tuple[_Origin, _Proxy | None], asyncio.Future[None]]] = (
            collections.deque()
        )
        self._proxies: dict[str, _Proxy] = {}
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0

    # --- the pool ----------------------------------------------------------------------------------------

    def _take_idle(self, key: tuple[_Origin, _Proxy | None]) -> _Connection | None:
        """The most recently used idle connection to `key` that is still good; stale or expired ones close."""
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            idle_for = now - conn.idle_since
            if idle_for < conn.expiry and not conn.stale(idle_for):
                return conn
            self._retire(conn)
        return None

    def _may_open(self, origin: _Origin) -> bool:
        """Room for one more connection to `origin`: under its host's cap, and under the pool's (or an idle
        connection elsewhere to close for it)."""
        if self._open_to.get(origin, 0) >= self._max_per_host:
            return False
        return self._open < self._max or any(self._idle.values())

    async def _connection(self, origin: _Origin, proxy: _Proxy | None, connect_timeout: float) -> _Connection:
        """An idle connection to `origin`, else a new one once the connection limits allow it."""
        key = (origin, proxy)
        deadline = self.loop.time() + connect_timeout
        while True:
            conn = self._take_idle(key)
            if conn is not None:
                return conn
            if self._open_to.get(origin, 0) < self._max_per_host and (
                self._open < self._max or self._evict_one()
            ):
                break
            waiter = self.loop.create_future()
            self._waiters.append((key, waiter))
            try:
                await asyncio.wait_for(waiter, max(deadline - self.loop.time(), 0))
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # the slot this caller was woken for goes to the next one
                raise
            except TimeoutError:
                raise WireError(
                    "no free outbound connection within the connect timeout", sent=False
                ) from None
            finally:
                if (key, waiter) in self._waiters:
                    self._waiters.remove((key, waiter))
        self._count(origin, +1)
        try:
            conn = await asyncio.wait_for(self._connect(origin, proxy, connect_timeout), connect_timeout)
        except BaseException as exc:
            self._count(origin, -1)
            self._wake()
            if isinstance(exc, WireError):
                raise
            if isinstance(exc, TimeoutError):
                raise WireError(f"connect timeout ({connect_timeout:g} s)", sent=False) from None
            if isinstance(exc, OSError | ssl.SSLError | ssl.CertificateError):
                raise WireError(f"connect failed: {type(exc).__name__}: {exc}", sent=False) from None
            raise
        # counted from here: its close gives the slot back (a connection made while the caller was cancelled
        # never is, and must not give back a slot the failure above already gave back)
        conn.counted = True
        return conn

    def _count(self, origin: _Origin, step: int) -> None:
        self._open += step
        left = self._open_to.get(origin, 0) + step
        if left > 0:
            self._open_to[origin] = left
        else:
            self._open_to.pop(origin, None)

    async def _socket(self, host: str, port: int) -> socket.socket:
        """A TCP connection to `host`: its addresses tried as happy eyeballs does (both families at once)."""
        addresses = _interleaved(await self._resolve(host, port))
        if not addresses:
            raise OSError(f"the host has no address ({len(addresses)})")
        if len(addresses) == 1:
            return await _connect_one(self.loop, *addresses[0])
        return await _connect_first(self.loop, addresses, HAPPY_EYEBALLS_DELAY)

    async def _connect(self, origin: _Origin, proxy: _Proxy | None, wait: float) -> _Connection:
        https = origin.scheme == "https"
        if proxy is None:
            sock = await self._socket(origin.host, origin.port)
            try:
                _transport, conn = await self.loop.create_connection(
                    lambda: _Connection(self, origin, None),
                    sock=sock,
                    ssl=self._ssl if https else None,
                    server_hostname=origin.host if https else None,
                    ssl_handshake_timeout=wait if https else None,
                )
            except BaseException:
                sock.close()
                raise
            return conn
        sock = await self._socket(proxy.origin.host, proxy.origin.port)
        try:
            _transport, conn = await self.loop.create_connection(
                lambda: _Connection(self, origin, proxy), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        if https:
            try:
                await conn.open_tunnel(origin, proxy.authorization, wait)
                assert conn.transport is not None
                tls = await self.loop.start_tls(
                    conn.transport, conn, self._ssl, server_hostname=origin.host, ssl_handshake_timeout=wait
                )
            except BaseException:
                conn.close()
                raise
            assert tls is not None
            conn.transport = tls
        return conn

    def _retire(self, conn: _Connection) -> None:
        """Close a connection and give its slot back now (not when the close completes)."""
        if conn.counted:
            conn.counted = False
            self._count(conn.origin, -1)
        conn.close()

    def _evict_one(self) -> bool:
        """At the limit: close the longest idle connection to any origin, so a new one may open."""
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[(oldest.origin, oldest.proxy)].remove(oldest)
        self._retire(oldest)
        return True

    def _release(self, conn: _Connection) -> None:
        if self._closed or conn.closed or not conn.reusable or conn.expiry <= 0:
            self._retire(conn)
            self._wake()
            return
        conn.idle_since = now = self.loop.time()
        self._idle.setdefault((conn.origin, conn.proxy), []).append(conn)
        due = now + conn.expiry
        if self._sweep is None or due < self._sweep_at:
            if self._sweep is not None:
                self._sweep.cancel()
            self._sweep = self.loop.call_at(due, self._close_expired)
            self._sweep_at = due
        if self._waiters:
            self._wake()

    def _close_expired(self) -> None:
        """Close the connections idle past their expiry (one timer for the whole pool), so none lingers open at
        a CRM nobody calls any more."""
        self._sweep = None
        now = self.loop.time()
        next_due: float | None = None
        for idle in self._idle.values():
            for conn in list(idle):
                due = conn.idle_since + conn.expiry
                if due <= now:
                    idle.remove(conn)
                    self._retire(conn)
                elif next_due is None or due < next_due:
                    next_due = due
        if next_due is not None and not self._closed:
            self._sweep = self.loop.call_at(next_due, self._close_expired)
            self._sweep_at = next_due
        self._wake()

    def lost(self, conn: _Connection) -> None:
        """A connection closed (either side): it leaves the pool, and a caller waiting for one may open one."""
        idle = self._idle.get((conn.origin, conn.proxy))
        if idle and conn in idle:
            idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self._count(conn.origin, -1)
            self._wake()

    def _wake(self) -> None:
        """Wake the first waiter that can go on now: an idle connection to its origin, or room for a new one."""
        for index, (key, waiter) in enumerate(self._waiters):
            if waiter.done():
                continue
            if self._idle.get(key) or self._may_open(key[0]):
                del self._waiters[index]
                waiter.set_result(None)
                return

    # --- requests ----------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        timeouts: Timeouts,
        proxy_url: str | None = None,
    ) -> Answer:
        """One request on a pooled connection; `proxy_url` (http://) forwards it or tunnels it (https)."""
        started = self.loop.time()
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise WireError("the URL's port is not a number in range", sent=False) from None
        origin = _origin(parts.scheme, parts.hostname, port)
        target = quote(parts.path or "/", safe=_PATH_SAFE)
        query = quote(parts.query, safe=_QUERY_SAFE) if parts.query else ""
        if params:
            extra = urlencode(params, doseq=True, quote_via=quote)
            query = f"{query}&{extra}" if query else extra
        if query:
            target = f"{target}?{query}"
        proxy = self._proxy(proxy_url) if proxy_url else None
        if proxy is not None and origin.scheme == "http":
            target = f"http://{origin.host_header}{target}"  # absolute form, as a forwarding proxy wants
        payload = self._payload(method, target, origin, proxy, headers, body)
        conn = await self._connection(origin, proxy, min(timeouts.connect, timeouts.total))
        while True:
            # the overall bound counts from the start, connecting included
            remaining = Timeouts(
                timeouts.connect, timeouts.read, timeouts.total - (self.loop.time() - started)
            )
            try:
                answer = await conn.send(payload, head=method == "HEAD", timeouts=remaining)
            except asyncio.CancelledError:
                conn.abandon()
                raise
            except WireError as exc:
                self._retire(conn)
                self._wake()
                # A reused connection the CRM had closed (its idle timeout raced our request): sent once more on a
                # new connection when nothing was sent, or when the request is a read and no answer byte came.
                if not conn.answered or not (
                    not exc.sent or (isinstance(exc, _ClosedBeforeAnswer) and method in _REPLAYABLE)
                ):
                    raise
                left = timeouts.total - (self.loop.time() - started)
                conn = await self._fresh_connection(origin, proxy, max(min(timeouts.connect, left), 0.0))
                continue
            self._release(conn)
            return answer

    async def _fresh_connection(
        self, origin: _Origin, proxy: _Proxy | None, connect_timeout: float
    ) -> _Connection:
        """A new connection (not an idle one: those may have been closed by the CRM at the same moment)."""
        for conn in self._idle.pop((origin, proxy), []):
            self._retire(conn)
        return await self._connection(origin, proxy, connect_timeout)

    def _payload(
        self,
        method: str,
        target: str,
        origin: _Origin,
        proxy: _Proxy | None,
        headers: Mapping[str, str] | None,
        body: bytes | None,
    ) -> bytes:
        head = [
            f"{_clean(method, 'method')} {_clean(target, 'target')} HTTP/1.1\r\nHost: {origin.host_header}\r\n"
        ]
        head.append(self._default_headers)
        if headers:
            head.extend(f"{_clean(k, 'headers')}: {_clean(v, 'headers')}\r\n" for k, v in headers.items())
        if proxy is not None and proxy.authorization and origin.scheme == "http":
            head.append(f"Proxy-Authorization: {proxy.authorization}\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}\r\n")
        head.append("\r\n")
        try:
            encoded = "".join(head).encode("latin-1")
        except UnicodeEncodeError:
            raise WireError("a request header is not Latin-1 text", sent=False) from None
        return encoded + body if body else encoded

    def _proxy(self, url: str) -> _Proxy:
        proxy = self._proxies.get(url)
        if proxy is None:
            try:
                proxy = self._proxies[url] = parse_proxy(url)
            except ValueError:
                raise WireError("the proxy URL is not valid", sent=False) from None
        return proxy

    async def aclose(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for conn in list(idle):
                conn.close()
        self._idle.clear()

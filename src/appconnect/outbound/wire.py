"""A lean HTTP/1.1 client for the server's outbound calls: keep-alive pool, TLS, one send per request.

Chosen by measurement (`bench/outbound_clients.py`, `bench/README.md` "Outbound HTTP: our own HTTP/1.1
client"): at 32 calls in flight a CRM call through aiohttp cost about three times the CPU of this client, and
CRM calls were the largest share of a flow's CPU. A connector never sees this module: `outbound/client.py` owns
every outbound call (retries, rate limits, error mapping) and uses it as its wire.

What it does, and what it deliberately does not:

* one connection per request at a time, kept alive for `keepalive_expiry` seconds of idleness (shorter than
  the usual server-side keep-alive, so a request is not sent on a connection the server is closing), at most
  `max_connections` in all;
* the request leaves in one write; the answer is parsed with `httptools` (llhttp): Content-Length, chunked,
  or delimited by the connection's close; 1xx interim answers are skipped; gzip and deflate bodies are decoded;
* TLS verified against the given context, with SNI; `HTTP_PROXY` / `HTTPS_PROXY` (`CONNECT` tunnel for https);
* timeouts: connect (TCP and TLS handshake), read (no byte for that long), and an overall bound per request;
* every failure is a :class:`WireError` whose `sent` says whether the request may have reached the server:
  False only when no byte of it was written (the connect, the TLS handshake or the proxy tunnel failed);
* no redirects, no cookies, no HTTP/2, no request streaming: the CRM APIs answer JSON to small requests.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import httptools

#: the largest answer read (a CRM page is kilobytes; this only stops a runaway server from filling memory)
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class WireError(Exception):
    """No (complete) answer. `sent` is False when no byte of the request was written."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


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


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time, its answer parsed as it arrives."""

    def __init__(self, pool: Http1Pool, origin: _Origin, proxy: _Proxy | None) -> None:
        self._pool = pool
        self.origin = origin
        self.proxy = proxy
        self.counted = False
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._tunnel: asyncio.Future[int] | None = None
        self._tunnel_buffer = b""
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
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
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(WireError("the server switched protocols", sent=True))
        except httptools.HttpParserError as exc:
            self._fail(WireError(f"malformed answer: {exc}", sent=True))

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
        self._fail(WireError(f"connection closed before the answer was complete{reason}", sent=True))

    # --- httptools callbacks -----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:
            self.reusable = False  # a second answer in the same bytes: nothing was asked for it

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._status = status
        if 100 <= status < 200:
            return  # an interim answer: its message completes with no body, the real one follows
        self._headers_done = True
        if self._head:
            self._finish()
            return
        length = chunked = False
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length = True
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        self._until_close = not length and not chunked and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            self._fail(WireError("the answer is too large", sent=True))
            return
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
        assert self.transport is not None
        self._status = 0
        self._headers = []
        self._body = []
        self._size = 0
        self._headers_done = self._until_close = self.reusable = False
        self._head = head
        waiter = self._waiter = self._loop.create_future()
        now = self._loop.time()
        self._last_byte = now
        self._deadline = now + timeouts.total
        self._read_timeout = timeouts.read
        self._timer = self._loop.call_at(min(self._deadline, now + timeouts.read), self._check_time)
        self.transport.write(payload)
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
        try:
            answer = Answer(
                self._status, _headers(self._headers), _decoded(self._headers, b"".join(self._body))
            )
        except WireError as exc:
            self.reusable = False
            waiter.set_exception(exc)
            return
        waiter.set_result(answer)

    def _fail(self, error: WireError) -> None:
        waiter = self._waiter
        self._waiter = None
        self._cancel_timer()
        self.reusable = False
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
            if len(self._tunnel_buffer) > 16384:
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


def _decoded(raw: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """The body with its gzip or deflate content coding undone (we offer those two in Accept-Encoding)."""
    coding = b""
    for name, value in raw:
        if name.lower() == b"content-encoding":
            coding = value.strip().lower()
    if not coding or coding == b"identity" or not body:
        return body
    try:
        if coding in (b"gzip", b"x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if coding == b"deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send it
    except zlib.error as exc:
        raise WireError(
            f"the answer's {coding.decode('latin-1')} body is corrupt: {exc}", sent=True
        ) from None
    return body


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
    ) -> None:
        self.loop = loop
        self._ssl = ssl_context
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._default_headers = "".join(
            f"{_clean(k, 'headers')}: {_clean(v, 'headers')}\r\n" for k, v in default_headers.items()
        )
        self._idle: dict[tuple[_Origin, _Proxy | None], list[_Connection]] = {}
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._proxies: dict[str, _Proxy] = {}
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None

    # --- the pool ----------------------------------------------------------------------------------------

    async def _connection(self, origin: _Origin, proxy: _Proxy | None, connect_timeout: float) -> _Connection:
        """An idle connection to `origin`, else a new one once the connection limit allows it."""
        deadline = self.loop.time() + connect_timeout
        while True:
            idle = self._idle.get((origin, proxy))
            now = self.loop.time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self._expiry:
                    return conn
                self._retire(conn)
            if self._open < self._max or self._evict_one():
                break
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(deadline - now, 0))
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # the slot this caller was woken for goes to the next one
                raise
            except TimeoutError:
                raise WireError(
                    "no free outbound connection within the connect timeout", sent=False
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._open += 1
        try:
            conn = await asyncio.wait_for(self._connect(origin, proxy, connect_timeout), connect_timeout)
        except BaseException as exc:
            self._open -= 1
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

    async def _connect(self, origin: _Origin, proxy: _Proxy | None, wait: float) -> _Connection:
        https = origin.scheme == "https"
        if proxy is None:
            _transport, conn = await self.loop.create_connection(
                lambda: _Connection(self, origin, None),
                origin.host,
                origin.port,
                ssl=self._ssl if https else None,
                server_hostname=origin.host if https else None,
            )
            return conn
        _transport, conn = await self.loop.create_connection(
            lambda: _Connection(self, origin, proxy), proxy.origin.host, proxy.origin.port
        )
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
            self._open -= 1
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
        if self._closed or conn.closed or not conn.reusable:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self._idle.setdefault((conn.origin, conn.proxy), []).append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self._expiry, self._close_expired)
        self._wake()

    def _close_expired(self) -> None:
        """Close the connections idle for longer than the keep-alive expiry (one timer for the whole pool), so
        none lingers open at a CRM nobody calls any more."""
        self._sweep = None
        now = self.loop.time()
        for idle in self._idle.values():
            while idle and now - idle[0].idle_since >= self._expiry:  # oldest first
                self._retire(idle.pop(0))
        oldest = min((idle[0].idle_since for idle in self._idle.values() if idle), default=None)
        if oldest is not None and not self._closed:
            self._sweep = self.loop.call_at(oldest + self._expiry, self._close_expired)

    def lost(self, conn: _Connection) -> None:
        """A connection closed (either side): it leaves the pool, and a caller waiting for one may open one."""
        idle = self._idle.get((conn.origin, conn.proxy))
        if idle and conn in idle:
            idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self._open -= 1
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
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
        # the overall bound counts from the start, connecting included
        remaining = Timeouts(timeouts.connect, timeouts.read, timeouts.total - (self.loop.time() - started))
        try:
            answer = await conn.send(payload, head=method == "HEAD", timeouts=remaining)
        except asyncio.CancelledError:
            conn.abandon()
            raise
        except WireError:
            conn.close()
            raise
        self._release(conn)
        return answer

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

"""The workers' HTTP/1.1 protocol: uvicorn's httptools protocol with the limits a public server needs, and each
response leaving in one send.

**Limits.** uvicorn's httptools protocol bounds nothing while it reads a request head: one connection sending
header lines without end grew a worker by gigabytes, and a connection that trickles its head (or sends nothing)
is held for ever. What the stacks it replaced carried, and what this carries over (`InboundLimits`, settings
`APPCONNECT_MAX_HEADER_*`, `APPCONNECT_HEADER_TIMEOUT_SECONDS`, `APPCONNECT_MAX_CONNECTIONS_PER_WORKER`):

* uvicorn's h11 protocol refused a head over 16 KiB (h11's `max_incomplete_event_size`), aiohttp a line over
  8190 bytes; nginx allows 8 KiB a line. Here: a request line (method, URL, version) over `max_line_bytes`
  is 414; a header line over `max_line_bytes`, more than `max_headers` headers, or a head over
  `max_head_bytes` is 431; the connection then closes (after a short lingering close, so that the client
  reads the answer). Bytes are counted as they arrive, before the parser has a whole line: an unfinished head
  never holds more than `max_head_bytes`, whatever the client sends.
* neither h11 nor uvicorn timed the head (nginx: `client_header_timeout`). Here a head not complete
  `head_timeout` seconds after its first byte, or after the connection opened, is 408 and the connection closes
  (a connection that sent nothing is just closed). Between requests uvicorn's keep-alive timeout (5 s,
  `timeout_keep_alive`) still closes an idle connection.
* uvicorn's `limit_concurrency` answers 503 only once a request arrives, and keeps every connection until then.
  Here a worker holding `max_connections` connections answers a new one 503 at once and closes it.

**One send.** uvicorn writes a response's status line and headers (`http.response.start`) and then its body as
two `transport.write` calls; uvloop sends each at once, so every answer costs two `send` system calls and, on a
loopback or LAN peer, two wake-ups of the client (bench/README.md, "One send per response"). Here the header
block is held until the body follows (normally in the same event-loop step) and both leave together; whatever is
held is flushed at the end of the loop step, before the transport closes, or as soon as another write comes.

**uvicorn internals** this relies on (hence the upper bound on uvicorn in pyproject.toml): `HttpToolsProtocol`'s
constructor, its parser callbacks (`on_url`, `on_header`, `on_headers_complete`, `on_message_complete`),
`data_received`, `send_400_response` (where a parser error is answered), and its `url`, `headers`, `cycle`,
`connections`, `loop` and `transport` attributes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from appconnect.api.failures import encode, error_body

if TYPE_CHECKING:
    from appconnect.settings import Settings

log = logging.getLogger("appconnect")

#: Seconds between two warnings that the connection limit refuses connections (one line, not one per refusal).
_LIMIT_WARNING_INTERVAL = 60.0
#: After a refusal the answer leaves with a FIN, and what the client still sends is read and dropped for up to
#: this long or this many bytes before the close: closing with unread data sends a reset, which can make the
#: client's TCP drop the answer before the client reads it.
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class InboundLimits:
    """What one connection may cost a worker before it has sent a whole request head."""

    max_line_bytes: int = 8192
    max_headers: int = 100
    max_head_bytes: int = 64 * 1024
    head_timeout: float = 10.0
    max_connections: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> InboundLimits:
        return cls(
            max_line_bytes=settings.max_header_line_bytes,
            max_headers=settings.max_headers,
            max_head_bytes=settings.max_header_bytes,
            head_timeout=settings.header_timeout_seconds,
            max_connections=settings.max_connections_per_worker,
        )

    def answers(self) -> dict[int, bytes]:
        """The whole answer (status line to body) of each refusal, built once per worker."""
        messages = {
            408: f"Request headers not received within {self.head_timeout:g} s",
            414: f"Request line too long (limit {self.max_line_bytes} bytes)",
            431: (
                f"Request headers too large (limits: {self.max_line_bytes} bytes a line, "
                f"{self.max_headers} headers, {self.max_head_bytes} bytes in all)"
            ),
            503: "Too many connections to this server. Please try again shortly.",
        }
        reasons = {
            408: b"Request Timeout",
            414: b"URI Too Long",
            431: b"Request Header Fields Too Large",
            503: b"Service Unavailable",
        }
        answers: dict[int, bytes] = {}
        for status, message in messages.items():
            body = encode(error_body(message, None))
            retry = b"retry-after: 1\r\n" if status == 503 else b""
            answers[status] = b"".join(
                (
                    b"HTTP/1.1 %d %s\r\n" % (status, reasons[status]),
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"x-content-type-options: nosniff\r\n",
                    retry,
                    b"connection: close\r\n\r\n",
                    body,
                )
            )
        return answers


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head that broke a limit (the status is on the protocol)."""


class _OneSendTransport:
    """A transport whose first write waits for the next one (or the end of the loop step) to leave with it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            if not data:
                return
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        self._held = None
        self._transport.write(held + bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ServingProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with the inbound limits and one send per response (see the module docstring).

    Per connection: `_head_since` is when the head being read began (None while a body is read, a request is
    answered, or the connection waits for its next request), `_head_room` the bytes that head may still take.
    """

    limits: ClassVar[InboundLimits] = InboundLimits()
    answers: ClassVar[dict[int, bytes]] = InboundLimits().answers()
    _last_limit_warning: ClassVar[float] = -_LIMIT_WARNING_INTERVAL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused_status: int | None = None
        self._rejected = False
        self._head_since: float | None = None
        self._head_room = 0
        self._line_bytes = 0
        self._in_request_line = True
        self._in_body = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_bytes: int | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self.limits
        if len(self.connections) >= limits.max_connections:
            self._reject(transport)
            return
        wrapped: Any = _OneSendTransport(transport, self.loop)
        super().connection_made(wrapped)
        self._open_head()
        self._head_timer = self.loop.call_later(limits.head_timeout, self._check_head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._rejected:
            return
        for timer in (self._head_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._linger_timer = None
        super().connection_lost(exc)

    def _reject(self, transport: asyncio.Transport) -> None:
        """Over the connection limit: answer 503 now and close, rather than hold the connection."""
        self._rejected = True
        self.transport = transport
        transport.write(self.answers[503])
        transport.close()
        now = time.monotonic()
        cls = type(self)
        if now - cls._last_limit_warning >= _LIMIT_WARNING_INTERVAL:
            cls._last_limit_warning = now
            log.warning(
                "connection limit reached (%d connections in this worker): new connections get 503",
                self.limits.max_connections,
            )

    # Reading

    def _open_head(self) -> None:
        self._head_since = self.loop.time()
        self._head_room = self.limits.max_head_bytes
        self._line_bytes = 0
        self._in_request_line = True

    def data_received(self, data: bytes) -> None:
        # (the base class is called directly, not through super(), on the per-request path: it is cheaper)
        if self._in_body:
            HttpToolsProtocol.data_received(self, data)
            return
        if self._linger_bytes is not None:
            self._drop(data)
            return
        if self._head_since is None:  # a new head begins (`_open_head`, inlined)
            self._head_since = self.loop.time()
            self._head_room = self.limits.max_head_bytes
            self._line_bytes = 0
            self._in_request_line = True
        size = len(data)
        if size > self._head_room:
            self._feed_past_room(data)
            return
        self._head_room -= size
        HttpToolsProtocol.data_received(self, data)
        if self._head_since is not None and not self._finished():
            self._check_unfinished_head(data)  # the whole chunk was head, and the head is not complete yet

    def _feed_past_room(self, data: bytes) -> None:
        """A chunk longer than the head's room: the head must end inside the room, the rest is parsed after."""
        room = self._head_room
        self._head_room = 0
        super().data_received(data[:room])
        if self._finished():
            return
        if self._head_since is not None:  # the head did not end within `max_head_bytes`
            self._refuse(414 if self._in_request_line and b"\n" not in data[:room] else 431)
            return
        self.data_received(data[room:])

    def _finished(self) -> bool:
        """The connection is closing, or lingering after a refusal: nothing more is parsed."""
        return self._linger_bytes is not None or self.transport.is_closing()

    def _check_unfinished_head(self, data: bytes) -> None:
        """After a read that left the head unfinished: its lines so far (the one still open included, which the
        parser keeps to itself) and its header count are within the limits."""
        limits = self.limits
        longest = limits.max_line_bytes + 1  # a line and its CR
        segments = data.split(b"\n")
        carried = self._line_bytes + len(segments[0])  # the line the previous read left open
        if carried > longest:
            self._refuse(414 if self._in_request_line else 431)
            return
        if len(segments) == 1:
            self._line_bytes = carried
        else:
            self._in_request_line = False
            if max(map(len, segments)) > longest:
                self._refuse(431)
                return
            self._line_bytes = len(segments[-1])
        if len(self.headers) > limits.max_headers:
            self._refuse(431)

    # Parser callbacks

    # (`on_url` and `on_header` are not overridden: a frame more per header would cost about 0.3 µs each. The
    # head's lines are checked when it is complete, and while it is not, after each read.)

    def on_headers_complete(self) -> None:
        limits = self.limits
        if (
            len(self.headers) > limits.max_headers
            or limits.max_head_bytes - self._head_room > limits.max_line_bytes  # else no line can be longer
        ):
            self._check_complete_head()
        self._head_since = None
        self._in_body = True
        HttpToolsProtocol.on_headers_complete(self)

    def _check_complete_head(self) -> None:
        """Raise (to stop the parser) when a whole head breaks a limit; the answer's status is kept."""
        limits = self.limits
        status = None
        if len(self.headers) > limits.max_headers:
            status = 431
        elif len(self.parser.get_method()) + len(self.url) + len(b"  HTTP/1.1") > limits.max_line_bytes:
            status = 414
        elif any(len(name) + len(value) + 2 > limits.max_line_bytes for name, value in self.headers):
            status = 431
        if status is not None:
            self._refused_status = status
            raise _HeadRefused

    def on_message_complete(self) -> None:
        self._in_body = False
        HttpToolsProtocol.on_message_complete(self)

    # Answers

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers every parser error here; a head refused by a limit gets its own status instead."""
        status = self._refused_status
        if status is None:
            super().send_400_response(msg)
        else:
            self._refuse(status)

    def _refuse(self, status: int) -> None:
        """Answer `status` and close the connection (at once when another answer is being written)."""
        self._refused_status = status
        if self._finished():
            return
        transport = self.transport
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            transport.close()
            return
        self.headers.clear()  # what was parsed is not kept while lingering
        self.url = b""
        self.parser = None  # type: ignore[assignment]
        transport.write(self.answers[status])
        transport.write_eof()
        self._linger_bytes = _LINGER_BYTES
        self._linger_timer = self.loop.call_later(_LINGER_SECONDS, transport.close)

    def _drop(self, data: bytes) -> None:
        """Lingering after a refusal: what the client still sends is dropped, up to `_LINGER_BYTES`."""
        left = (self._linger_bytes or 0) - len(data)
        self._linger_bytes = left
        if left < 0:
            self.transport.close()

    def _check_head(self) -> None:
        """The head timer: 408 for a head older than `head_timeout`, else look again when it could be."""
        self._head_timer = None
        if self._finished():
            return
        timeout = self.limits.head_timeout
        since = self._head_since
        delay = timeout
        if since is not None:
            now = self.loop.time()
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                self._head_since = since = (
                    now  # a pipelined head waits for the answer before it: not its fault
                )
            if now - since >= timeout:
                if self._head_room < self.limits.max_head_bytes:
                    self._refuse(408)
                else:  # nothing received: no answer, just close
                    self.transport.close()
                return
            delay = since + timeout - now
        self._head_timer = self.loop.call_later(delay, self._check_head)


def serving_protocol(limits: InboundLimits) -> type[ServingProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying `limits` (and its answers, built once)."""
    attributes = {"limits": limits, "answers": limits.answers()}
    return type("ServingProtocol", (ServingProtocol,), attributes)

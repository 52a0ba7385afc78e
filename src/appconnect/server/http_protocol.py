"""uvicorn's httptools protocol with each response leaving in one send.

uvicorn writes a response's status line and headers (`http.response.start`) and then its body as two
`transport.write` calls; uvloop sends each at once, so every answer costs two `send` system calls and, on a
loopback or LAN peer, two wake-ups of the client. A send is the most expensive thing a request does after the
database round trips (`bench/README.md`, "One send per response"). Here the header block is held until the body
follows (normally in the same event-loop step) and both leave together; whatever is held is flushed at the end
of the loop step, before the transport closes, or as soon as another write comes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


class OneSendHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` on a `_OneSendTransport`: the same HTTP handling, one send per response."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = _OneSendTransport(transport, self.loop)
        super().connection_made(wrapped)

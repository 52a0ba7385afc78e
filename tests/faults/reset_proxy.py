"""A TCP proxy in front of the test CRM that, when armed, lets a request reach the CRM and then resets the
connection instead of passing the answer on: the CRM did the work, the server sees a connection reset."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ResetProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.resets = 0
        self._armed = 0
        self._method: bytes | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reset-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, answers_to_drop: int, method: str | None = None) -> None:
        """The next `answers_to_drop` CRM answers (to requests of `method`, if given) become a connection reset."""
        with self._lock:
            self._armed = answers_to_drop
            self._method = method.encode() + b" " if method else None

    def armed(self) -> int:
        with self._lock:
            return self._armed

    def _take(self, request_line: bytes) -> bool:
        with self._lock:
            if self._armed <= 0 or (self._method is not None and not request_line.startswith(self._method)):
                return False
            self._armed -= 1
            self.resets += 1
            return True

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        self._loop.run_forever()
        server.close()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._reset(writer)
            return

        last_request = [b""]  # the start of the latest request sent on this connection

        async def upstream() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    if data[:1].isalpha():
                        last_request[0] = data[:16]
                    up_writer.write(data)
                    await up_writer.drain()
            with contextlib.suppress(OSError):
                up_writer.close()

        async def downstream() -> None:
            with contextlib.suppress(OSError):
                while data := await up_reader.read(65536):
                    if self._take(
                        last_request[0]
                    ):  # the CRM answered: the request was done; the server never hears it
                        self._reset(writer)
                        self._reset(up_writer)
                        return
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(OSError):
                writer.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)

    def start(self) -> ResetProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("reset proxy did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def reset_proxy(upstream_port: int) -> Iterator[ResetProxy]:
    proxy = ResetProxy(upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()

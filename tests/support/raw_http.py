"""Raw loopback servers for the outbound wire's tests: they answer byte for byte what a test scripts, so a test
can play a CRM (or a proxy) that does what real servers do, well or badly."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from appconnect.outbound import wire as http1
from appconnect.outbound.wire import Http1Pool, Timeouts

TIMEOUTS = Timeouts(connect=1.0, read=0.5, total=2.0)
Answer = bytes | Callable[[asyncio.StreamWriter], Any]


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


class RawServer:
    """Reads each request whole and writes the next scripted answer (bytes, or a coroutine function that gets
    the writer). Counts connections and keeps every request's head."""

    def __init__(
        self, answers: list[Answer], *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.answers = list(answers)
        self.tls = tls
        self.host = host
        self.heads: list[bytes] = []
        self.connections = 0
        self.closed_by_client = 0
        self.writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                self.heads.append(head)
                answer = self.answers.pop(0) if self.answers else ok(b"{}")
                if callable(answer):
                    await answer(writer)
                else:
                    writer.write(answer)
                    await writer.drain()
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                self.closed_by_client += 1  # a clean close between requests
        except (ConnectionError, ssl.SSLError):
            return


def make_pool(*, max_connections: int = 10, keepalive_expiry: float = 2.0, **options: Any) -> Http1Pool:
    """A pool on the running loop, with the headers the server sends on every call."""
    return Http1Pool(
        loop=asyncio.get_running_loop(),
        ssl_context=ssl.create_default_context(),
        max_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
        default_headers={"User-Agent": "test", "Accept-Encoding": "gzip, deflate"},
        **options,
    )


async def get(pool: Http1Pool, url: str, **kwargs: Any) -> http1.Answer:
    return await pool.request(
        kwargs.pop("method", "GET"),
        url,
        params=kwargs.pop("params", None),
        body=kwargs.pop("body", None),
        headers=kwargs.pop("headers", None),
        timeouts=kwargs.pop("timeouts", TIMEOUTS),
        **kwargs,
    )


class ConnectProxy:
    """An HTTP proxy that only tunnels (`CONNECT host:port`), and records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://user:secret@127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

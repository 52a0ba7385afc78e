"""Each answer leaves in one send: uvicorn's header write is held until the body follows (server/http_protocol.py).

Checked on a recording transport (what is held, when it leaves, that a close never loses it) and on a real
server socket (the test servers run the workers' protocol): each answer arrives whole in the client's first read.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from appconnect.server.http_protocol import _OneSendTransport
from tests.conftest import LiveServer


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return f"extra:{name}"


async def test_headers_wait_for_the_body_and_leave_with_it() -> None:
    inner = Recording()
    outer = _OneSendTransport(inner, asyncio.get_running_loop())
    outer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert inner.sent == []
    outer.write(b"{}")
    assert inner.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)  # the end-of-step flush finds nothing left
    assert len(inner.sent) == 1
    assert outer.get_extra_info("peername") == "extra:peername"


async def test_a_lone_write_leaves_at_the_end_of_the_loop_step() -> None:
    inner = Recording()
    outer = _OneSendTransport(inner, asyncio.get_running_loop())
    outer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert inner.sent == []
    await asyncio.sleep(0)
    assert inner.sent == [b"HTTP/1.1 100 Continue\r\n\r\n"]


async def test_an_empty_body_releases_the_headers_at_once() -> None:
    inner = Recording()
    outer = _OneSendTransport(inner, asyncio.get_running_loop())
    outer.write(b"")  # nothing held: nothing to send
    assert inner.sent == []
    outer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    outer.write(b"")  # uvicorn's body message of an empty answer
    assert inner.sent == [b"HTTP/1.1 204 No Content\r\n\r\n"]


async def test_close_sends_what_is_held_first() -> None:
    inner = Recording()
    outer = _OneSendTransport(inner, asyncio.get_running_loop())
    outer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
    outer.close()
    assert inner.sent == [b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"] and inner.closed
    await asyncio.sleep(0)
    assert len(inner.sent) == 1


async def test_nothing_is_written_to_a_transport_that_is_closing() -> None:
    inner = Recording()
    outer = _OneSendTransport(inner, asyncio.get_running_loop())
    outer.write(b"held")
    inner.closed = True  # the peer went away before the end of the step
    await asyncio.sleep(0)
    assert inner.sent == []


def test_a_real_server_answers_each_request_in_one_segment(server: LiveServer) -> None:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        for _ in range(5):
            sock.sendall(b"GET /isAlive HTTP/1.1\r\nHost: x\r\n\r\n")
            first = sock.recv(65536)
            head, _, body = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert body == b"OK"  # the body came in the same read as the headers

"""What one connection may cost a worker before its request head is complete (server/http_protocol.py).

Raw sockets on loopback against a real server (the workers' protocol) started with small limits: a long
request line gets 414, a long header, too many headers or too large a head 431, each as soon as the limit is
passed (also when the line or the head never ends), a head that takes too long 408, a connection beyond the
worker's limit 503; each time the connection closes, and a normal request is still answered afterwards.
"""

from __future__ import annotations

import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from appconnect.server.worker import OPEN_FILES_HEADROOM, allow_open_files
from tests.conftest import LiveServer, database_url_for, start_server
from tests.support.served import serve_process

LINE = 1024
HEADERS = 20
HEAD = 8192
HEAD_TIMEOUT = 1.0
CONNECTIONS = 8
#: Only a bound on a broken server: every answer here comes long before it.
WAIT = 15.0


def _start(folder: Path, **overrides: object) -> Iterator[LiveServer]:
    limits: dict[str, object] = {
        "max_header_line_bytes": LINE,
        "max_headers": HEADERS,
        "max_header_bytes": HEAD,
        "header_timeout_seconds": HEAD_TIMEOUT,
        "max_connections_per_worker": CONNECTIONS,
        **overrides,
    }
    yield from start_server(folder, database_url_for("sqlite", folder), **limits)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with small inbound limits; its connection limit is high enough for these tests one by one."""
    yield from _start(tmp_path_factory.mktemp("limited"), max_connections_per_worker=100)


def _address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _connect(base_url: str) -> socket.socket:
    sock = socket.create_connection(_address(base_url), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer counts as closed)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _exchange(base_url: str, payload: bytes) -> bytes:
    """Send `payload` (maybe an unfinished head) and read what the server answers until it closes."""
    with _connect(base_url) as sock:
        sock.sendall(payload)
        return _read_until_closed(sock)


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def _head(*headers: bytes, target: bytes = b"/isAlive") -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: test", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _still_answers(server: LiveServer) -> None:
    answer = httpx.get(f"{server.base_url}/isAlive", timeout=WAIT)
    assert (answer.status_code, answer.text) == (200, "OK")


def test_a_head_within_every_limit_is_answered(limited: LiveServer) -> None:
    longest = b"X-Longest: " + b"v" * (LINE - len(b"X-Longest: "))  # a line of exactly the limit
    fill = [b"X-Fill-%d: %s" % (n, b"v" * 900) for n in range(6)]
    small = [b"X-Small-%d: v" % n for n in range(HEADERS - len(fill) - 3)]
    head = _head(longest, *fill, *small, b"Connection: close")
    assert head.count(b"\r\n") - 2 == HEADERS and len(head) < HEAD
    answer = _exchange(limited.base_url, head)
    assert _status(answer) == 200
    assert answer.endswith(b"OK")


def test_a_request_line_over_the_limit_gets_414(limited: LiveServer) -> None:
    answer = _exchange(limited.base_url, _head(target=b"/isAlive?q=" + b"a" * LINE))
    assert _status(answer) == 414
    assert b"connection: close" in answer
    assert b"Request line too long" in answer
    _still_answers(limited)


def test_an_unfinished_request_line_is_refused_once_past_the_limit(limited: LiveServer) -> None:
    answer = _exchange(limited.base_url, b"GET /isAlive?q=" + b"a" * LINE)
    assert _status(answer) == 414
    _still_answers(limited)


def test_a_header_over_the_line_limit_gets_431(limited: LiveServer) -> None:
    answer = _exchange(limited.base_url, _head(b"X-Long: " + b"v" * LINE))
    assert _status(answer) == 431
    assert b"connection: close" in answer
    assert b'"successful":false' in answer
    _still_answers(limited)


def test_an_unfinished_header_line_is_refused_once_past_the_limit(limited: LiveServer) -> None:
    answer = _exchange(limited.base_url, b"GET /isAlive HTTP/1.1\r\nHost: test\r\nX-Long: " + b"v" * LINE)
    assert _status(answer) == 431
    _still_answers(limited)


def test_too_many_headers_get_431(limited: LiveServer) -> None:
    answer = _exchange(limited.base_url, _head(*(b"X-H%d: v" % n for n in range(HEADERS))))
    assert _status(answer) == 431
    _still_answers(limited)


def test_too_many_headers_in_an_unfinished_head_get_431(limited: LiveServer) -> None:
    payload = b"GET /isAlive HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(HEADERS + 2))
    assert _status(_exchange(limited.base_url, payload)) == 431
    _still_answers(limited)


def test_a_head_over_the_total_limit_gets_431(limited: LiveServer) -> None:
    headers = [b"X-Fill-%d: %s" % (n, b"v" * (LINE - 20)) for n in range(HEAD // (LINE - 20) + 1)]
    assert len(headers) < HEADERS - 1
    answer = _exchange(limited.base_url, _head(*headers))
    assert _status(answer) == 431
    _still_answers(limited)


def test_an_endless_head_is_refused_after_the_limit_not_after_the_stream(limited: LiveServer) -> None:
    """One byte past the head limit, and not a byte more from the client: the 431 comes."""
    start = b"GET /isAlive HTTP/1.1\r\nHost: test\r\n"
    lines = b"".join(b"X-Flood-%02d: %s\r\n" % (n, b"v" * 900) for n in range(10))
    payload = (start + lines)[: HEAD + 1]
    assert payload.count(b"\r\n") < HEADERS and not payload.endswith(b"\r\n\r\n")
    assert _status(_exchange(limited.base_url, payload)) == 431
    _still_answers(limited)


def test_a_header_flood_is_cut_off_and_the_server_keeps_answering(limited: LiveServer) -> None:
    """A client that keeps sending header lines gets 431 and a closed connection while still sending."""
    cap = 64 * 1024 * 1024
    sent = 0
    stopped = threading.Event()
    line = b"X-Flood: " + b"v" * 500 + b"\r\n"

    with _connect(limited.base_url) as sock:

        def flood() -> None:
            nonlocal sent
            try:
                sock.sendall(b"GET /isAlive HTTP/1.1\r\nHost: test\r\n")
                while sent < cap:
                    sock.sendall(line * 64)
                    sent += len(line) * 64
            except OSError:
                stopped.set()

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        answer = _read_until_closed(sock)
        sender.join(WAIT)
    assert _status(answer) == 431
    assert stopped.is_set() and sent < cap  # the server closed the connection: the client could send no more
    _still_answers(limited)


def test_a_trickled_head_is_closed_after_the_head_timeout(limited: LiveServer) -> None:
    """One byte every 0.1 s: the head would take 30 s; the server answers 408 and closes long before."""
    head = _head(b"X-Slow: " + b"s" * 280)
    with _connect(limited.base_url) as sock:
        for byte in head[:-4]:  # never complete
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if _readable(sock, 0.1):
                break
        else:
            pytest.fail("the whole trickle was accepted")
        answer = _read_until_closed(sock)
    assert _status(answer) == 408
    _still_answers(limited)


def _readable(sock: socket.socket, wait: float) -> bool:
    readable, _, _ = select.select([sock], [], [], wait)
    return bool(readable)


def test_a_silent_connection_is_closed_without_an_answer(limited: LiveServer) -> None:
    with _connect(limited.base_url) as sock:
        assert _read_until_closed(sock) == b""
    _still_answers(limited)


def test_a_connection_beyond_the_workers_limit_gets_503_at_once(tmp_path: Path) -> None:
    """Connections that are held (keep-alive) fill the worker; the next one is refused, not held."""
    for server in _start(tmp_path, header_timeout_seconds=30.0):
        held: list[socket.socket] = []
        try:
            request = b"GET /isAlive HTTP/1.1\r\nHost: test\r\n\r\n"
            for _ in range(CONNECTIONS):
                sock = _connect(server.base_url)
                held.append(sock)
                sock.sendall(request)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")  # accepted, kept alive
            with _connect(server.base_url) as extra:
                answer = _read_until_closed(extra)
            assert _status(answer) == 503
            assert b"retry-after: 1" in answer
        finally:
            for sock in held:
                sock.close()
        _answers_again(server)


def _answers_again(server: LiveServer) -> None:
    """Once the held connections are gone, new ones are served (the server notices the closes promptly)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            _still_answers(server)
            return
        except (AssertionError, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_limits_are_read_from_the_environment_by_serve(tmp_path: Path) -> None:
    """`appconnect serve` (uvloop, a forked worker) applies APPCONNECT_MAX_HEADER_BYTES."""
    with serve_process(tmp_path, {"APPCONNECT_MAX_HEADER_BYTES": "2048"}, workers=1) as base_url:
        payload = b"GET /isAlive HTTP/1.1\r\nHost: test\r\n" + b"X-Fill: " + b"v" * 2100
        assert _status(_exchange(base_url, payload)) == 431
        answer = httpx.get(f"{base_url}/isAlive", headers={"X-Fill": "v" * 1000}, timeout=WAIT)
        assert (answer.status_code, answer.text) == (200, "OK")


def test_a_worker_raises_its_open_files_limit_for_its_connections() -> None:
    """The connection limit is reachable: the soft open-files limit is raised towards it (not past the hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        wanted = 1000 + OPEN_FILES_HEADROOM
        allowed = allow_open_files(wanted)
        expected = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        assert allowed == expected == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert allow_open_files(10) == expected  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

#!/usr/bin/env python3
"""CPU per request of the workers' HTTP/1.1 protocol alone (server/http_protocol.py), in process, on uvloop.

`bench/http_layer.py` measures the ASGI layer without a server; this measures what wraps it: request bytes
handed to the protocol's `data_received` (as uvloop does after a read), parsing, the task uvicorn starts per
request, the answer written to a transport that keeps nothing, the keep-alive timer. The app answers `OK` at
once, so the protocol is nearly all that is measured. Variants, interleaved:

* `uvicorn`: uvicorn's own `HttpToolsProtocol`;
* `one send`: the same with the header write held for the body (what the workers ran before the limits);
* `serving`: this checkout's `ServingProtocol` with the default `InboundLimits`.

Requests: a bare `GET`, a `GET` with the 12 headers a browser extension sends, and a `POST` with a 1 KiB JSON
body. Prints µs of process CPU per request, the median of `--reps` rounds of `--requests` each.

    .venv/bin/python bench/http_protocol.py --requests 20000 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from appconnect.server import http_protocol

BROWSER_HEADERS = (
    b"Host: 127.0.0.1:6066\r\n"
    b"Connection: keep-alive\r\n"
    b"Accept: application/json, text/plain, */*\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Authorization: Bearer " + b"x" * 300 + b"\r\n"
    b"Origin: chrome-extension://abcdefghijklmnopabcdefghijklmnop\r\n"
    b"Sec-Fetch-Dest: empty\r\n"
    b"Sec-Fetch-Mode: cors\r\n"
    b"Sec-Fetch-Site: cross-site\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n"
    b"X-Request-Id: 0123456789abcdef\r\n"
)
BODY = b'{"note":"' + b"n" * 1000 + b'"}'
REQUESTS = {
    "GET bare": b"GET /isAlive HTTP/1.1\r\nHost: 127.0.0.1:6066\r\n\r\n",
    "GET 12 headers": b"GET /contact?phoneNumber=%2B14155550123 HTTP/1.1\r\n" + BROWSER_HEADERS + b"\r\n",
    "POST 1 KiB": (
        b"POST /callLog HTTP/1.1\r\n"
        + BROWSER_HEADERS
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)
        + BODY
    ),
}


class NullTransport(asyncio.Transport):
    """Accepts every write and drops it; what uvicorn asks of a transport, answered like a TCP socket."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("sockname", "peername"):
            return ("127.0.0.1", 6066)
        return default


class OneSendOnly(HttpToolsProtocol):
    """The workers' protocol before the limits: only the held header write."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = http_protocol._OneSendTransport(transport, self.loop)
        super().connection_made(wrapped)


def variants() -> dict[str, Callable[..., asyncio.Protocol]]:
    found: dict[str, Callable[..., asyncio.Protocol]] = {
        "uvicorn": HttpToolsProtocol,
        "one send": OneSendOnly,
    }
    if hasattr(http_protocol, "serving_protocol"):
        found["serving"] = http_protocol.serving_protocol(http_protocol.InboundLimits())
    return found


async def measure(protocol_class: Callable[..., asyncio.Protocol], request: bytes, count: int) -> float:
    """µs of process CPU per request over `count` requests on one keep-alive connection."""
    loop = asyncio.get_running_loop()
    answered: list[asyncio.Future[None]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            while (await receive()).get("more_body"):
                pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"OK"})
        answered[0].set_result(None)

    config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning")
    config.load()
    protocol: Any = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    protocol.connection_made(NullTransport())
    for _ in range(200):  # warm up
        answered[:] = [loop.create_future()]
        protocol.data_received(request)
        await answered[0]
    started = time.process_time()
    for _ in range(count):
        answered[:] = [loop.create_future()]
        protocol.data_received(request)
        await answered[0]
    spent = time.process_time() - started
    protocol.connection_lost(None)
    return spent / count * 1e6


async def run(count: int, reps: int) -> None:
    found = variants()
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(reps):
        for request_name, request in REQUESTS.items():
            for name, protocol_class in found.items():
                value = await measure(protocol_class, request, count)
                results.setdefault((request_name, name), []).append(value)
    names = list(found)
    print(
        f"µs of CPU per request, median of {reps} rounds of {count} (uvicorn {uvicorn.__version__}, uvloop)"
    )
    print(f"| request | {' | '.join(names)} |")
    print(f"| --- |{' --- |' * len(names)}")
    for request_name in REQUESTS:
        row = [f"{statistics.median(results[(request_name, name)]):.2f}" for name in names]
        print(f"| {request_name} | {' | '.join(row)} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000, help="requests per round and variant")
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    uvloop.run(run(args.requests, args.reps))


if __name__ == "__main__":
    main()

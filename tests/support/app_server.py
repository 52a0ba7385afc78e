"""Start the real connector server (with its embedded test CRM) on a loopback port in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from appconnect.server.http_protocol import InboundLimits, serving_protocol


@contextmanager
def run_app(
    build: Callable[[str], Any],
    *,
    limits: Callable[[], InboundLimits] = InboundLimits,
    startup_timeout: float = 20.0,
) -> Iterator[str]:
    """Bind a free port first, so the app can be built knowing its own URL; yield that URL. `limits` is asked
    after `build`, so it may read the settings `build` made."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = build(base_url)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            loop="asyncio",
            http=serving_protocol(limits()),  # the workers' protocol
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("connector server did not start")
        time.sleep(0.01)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()

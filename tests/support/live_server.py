"""Run an ASGI app on a real uvicorn server in a background thread, so tests go over real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn


def _bound_socket(host: str) -> socket.socket:
    """A socket already bound to a free port: handing it to uvicorn leaves no window for another process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.set_inheritable(True)
    return sock


@contextmanager
def serve_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    lifespan: Literal["on", "off", "auto"] = "off",
    startup_timeout: float = 15.0,
    shutdown_timeout: float = 15.0,
) -> Iterator[str]:
    """Serve `app` on a free port and yield its base URL (`http://127.0.0.1:<port>`, no trailing slash).

    `lifespan="on"` runs the app's startup and shutdown (e.g. to close DB pools inside the server's loop).
    """
    sock = _bound_socket(host)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan=lifespan,
        timeout_graceful_shutdown=int(shutdown_timeout),
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the test thread below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if errors or not thread.is_alive():
                cause = errors[0] if errors else None
                raise RuntimeError(f"uvicorn failed to start on port {port}") from cause
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start on port {port} within {startup_timeout}s")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(shutdown_timeout + 5)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"uvicorn on port {port} did not stop")

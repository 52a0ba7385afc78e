"""One server worker: the application on uvicorn, on a socket of its own.

`serve` forks the first workers after importing the application once (`fork`); the supervisor replaces a dead
one with a fresh `python -m appconnect.server.worker`, which imports it itself. Either way stdin is a pipe from
the supervisor: the worker builds the app only after it reads "go" (the schema and keys exist then), and shuts
down gracefully when the pipe closes (the supervisor is gone, even by `kill -9`).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
import threading
from typing import Any

# Imported before waiting for "go": the slow part of a start, done while the preflight runs.
import uvicorn

from appconnect import logs
from appconnect.api.app import create_app
from appconnect.server.drain import graceful_timeout
from appconnect.server.http_protocol import InboundLimits, serving_protocol
from appconnect.server.sockets import bound_socket
from appconnect.settings import Settings, get_settings

#: exit status of a worker that could not start (bad app, port, lifespan): the supervisor does not retry it
BOOT_FAILED = 3
GO = b"g"


def configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)


#: files a worker opens besides its client connections: database and CRM connections, logs, its own modules
OPEN_FILES_HEADROOM = 256


def allow_open_files(needed: int) -> int:
    """Raise this process's soft open-files limit towards `needed` (never past the hard limit, never lower it),
    so that `APPCONNECT_MAX_CONNECTIONS_PER_WORKER` is reached before accept() fails for want of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    return soft


def run(app: Any, settings: Settings, sock: socket.socket) -> bool:
    """Serve `app` on `sock` until SIGTERM/SIGINT; False when the server never started."""
    allowed = allow_open_files(settings.max_connections_per_worker + OPEN_FILES_HEADROOM)
    if allowed < settings.max_connections_per_worker + OPEN_FILES_HEADROOM:
        logging.getLogger("appconnect").warning(
            "open-files limit %d is below APPCONNECT_MAX_CONNECTIONS_PER_WORKER (%d) + %d: connections beyond it fail",
            allowed,
            settings.max_connections_per_worker,
            OPEN_FILES_HEADROOM,
        )
    config = uvicorn.Config(
        app,
        access_log=False,  # the application writes its own access log (logs.py)
        log_config=None,  # uvicorn's lines go through the application's handler and format
        log_level=settings.log_level,
        loop="uvloop",
        http=serving_protocol(InboundLimits.from_settings(settings)),
        proxy_headers=True,
        timeout_graceful_shutdown=graceful_timeout(settings),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return server.started


def _stop_when_orphaned() -> None:
    """The supervisor's end of stdin closed: it is gone, so stop like on SIGTERM (in-flight requests end)."""
    while True:
        try:
            if not os.read(0, 1):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    os.kill(os.getpid(), signal.SIGTERM)


def fork(count: int) -> list[tuple[int, int]]:
    """`count` workers forked from this process, which has imported the application (once, for all of them)
    and runs no thread and no event loop yet; each waits for "go" on its stdin. [(pid, write end of its pipe)].
    """
    forked: list[tuple[int, int]] = []
    sys.stdout.flush()
    sys.stderr.flush()
    for _ in range(count):
        gate_read, gate_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.dup2(gate_read, 0)
                for fd in (gate_read, gate_write, *(gate for _, gate in forked)):
                    os.close(fd)  # a sibling's pipe kept open here would hide its supervisor's exit from it
                status = main()
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:
                logging.getLogger("appconnect").exception("worker %d failed", os.getpid())
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        os.close(gate_read)
        forked.append((pid, gate_write))
    return forked


def main() -> int:
    try:
        go = os.read(0, 1)
    except OSError:
        go = b""
    if go != GO:
        return 0  # the supervisor stopped (or failed its preflight) before the start
    threading.Thread(target=_stop_when_orphaned, name="orphan-watch", daemon=True).start()
    settings = get_settings()
    configure_logging(settings)
    try:
        app = create_app(settings)
    except Exception:
        logging.getLogger("appconnect").exception("worker %d could not build the application", os.getpid())
        return BOOT_FAILED
    try:
        sock = bound_socket(settings.host, settings.port, reuse_port=True)
    except OSError as exc:
        print(f"appconnect: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return BOOT_FAILED
    return 0 if run(app, settings, sock) else BOOT_FAILED


if __name__ == "__main__":
    sys.exit(main())

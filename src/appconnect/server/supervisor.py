"""The supervisor of `appconnect serve --workers N` (N > 1): starts the workers, restarts dead ones, drains them.

It imports nothing but the standard library (the application, SQLAlchemy, pydantic and the rest live in the
workers), so it stays a few MiB. `serve` validates the settings and then replaces itself with this process
(same pid): `python -m appconnect.server.supervisor --workers N --host H --port P --graceful-timeout S`.

1. `serve` forked the preflight (schema upgrade when needed, keys) before becoming this process; it claims
   the port (an error now, not in every worker) and starts the N workers, which import the application
   while the preflight runs.
2. Preflight failed: the workers are stopped, exit status 2 (the preflight printed the reason). Otherwise
   each worker gets "go" on its stdin and binds its own SO_REUSEPORT socket.
3. A worker that dies is started again (with a growing pause if it keeps dying at once); one that reports
   it cannot start at all (status 3) stops the server with status 1.
4. SIGTERM or SIGINT: every worker gets SIGTERM, finishes its in-flight requests and exits; after the
   graceful timeout the rest are killed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from appconnect.server.sockets import claim_port

#: the worker's exit status for "cannot start" (appconnect.server.worker.BOOT_FAILED, not imported: heavy)
BOOT_FAILED = 3
GO = b"g"
#: a worker that dies sooner than this after its start is restarted only after a pause (doubling, capped)
QUICK_DEATH_S = 5.0
MAX_PAUSE_S = 5.0

log = logging.getLogger("appconnect.supervisor")


def _python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


@dataclass
class Slot:
    """One worker position: the live process, when it started, and how often it died young in a row."""

    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, workers: int, graceful_timeout: float) -> None:
        self.slots = [Slot() for _ in range(workers)]
        self.graceful_timeout = graceful_timeout
        self.stopping = False
        self._wake_read, wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, self._on_child)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        """Only wakes the loop (through the wakeup fd)."""

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("%s: stopping the workers (in-flight requests finish)", signal.Signals(signum).name)
        self.stopping = True

    def _sleep(self, timeout: float | None) -> None:
        """Until a signal (a child ended, SIGTERM) or the timeout."""
        select.select([self._wake_read], [], [], timeout)
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _start(self, slot: Slot, *, go: bool) -> None:
        slot.process = subprocess.Popen(  # noqa: S603 (this interpreter, our module)
            _python_module("appconnect.server.worker"), stdin=subprocess.PIPE
        )
        slot.started = time.monotonic()
        slot.restart_at = None
        if go:
            self._go(slot)

    @staticmethod
    def _go(slot: Slot) -> None:
        assert slot.process is not None and slot.process.stdin is not None
        try:
            slot.process.stdin.write(GO)
            slot.process.stdin.flush()
        except BrokenPipeError:
            pass  # it died already: the loop sees it

    def _live(self) -> list[subprocess.Popen[bytes]]:
        return [s.process for s in self.slots if s.process is not None and s.process.poll() is None]

    def _signal_all(self, signum: int) -> None:
        for process in self._live():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    def _drain(self) -> None:
        """SIGTERM to every worker, wait for them to finish their requests, kill what is left at the end."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.graceful_timeout + 5
        while self._live() and time.monotonic() < deadline:
            self._sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if self._live():
            log.warning("workers still busy after %.0f s: killing them", self.graceful_timeout + 5)
            self._signal_all(signal.SIGKILL)
        for slot in self.slots:
            if slot.process is not None:
                slot.process.wait()
                if slot.process.stdin is not None:
                    slot.process.stdin.close()

    def _preflight(self, pid: int) -> int:
        """Wait for the preflight `serve` forked, while the workers import; its exit status (or 1 when a
        worker died first)."""
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            if self.stopping or any(s.process is not None and s.process.poll() is not None for s in self.slots):
                if not self.stopping:
                    log.error("a worker exited before the server started")
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
                return 0 if self.stopping else 1
            self._sleep(0.5)

    def run(self, preflight_pid: int) -> int:
        for slot in self.slots:
            self._start(slot, go=False)
        status = self._preflight(preflight_pid)
        if status != 0 or self.stopping:
            self._drain()
            return status
        for slot in self.slots:
            self._go(slot)
        log.info("started %d workers", len(self.slots))
        while not self.stopping:
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None:
                    if now >= slot.restart_at:
                        self._start(slot, go=True)
                    continue
                assert slot.process is not None
                code = slot.process.poll()
                if code is None:
                    continue
                if code == BOOT_FAILED:
                    log.error("worker %d could not start: stopping the server", slot.process.pid)
                    self._drain()
                    return 1
                lived = now - slot.started
                slot.quick_deaths = slot.quick_deaths + 1 if lived < QUICK_DEATH_S else 0
                pause = 0.0 if slot.quick_deaths == 0 else min(MAX_PAUSE_S, 0.1 * 2**slot.quick_deaths)
                how = f"signal {-code}" if code < 0 else f"status {code}"
                log.warning("worker %d ended (%s): starting another in %.1f s", slot.process.pid, how, pause)
                if slot.process.stdin is not None:
                    slot.process.stdin.close()
                slot.restart_at = now + pause
                if pause == 0.0:
                    self._start(slot, go=True)
            waits = [s.restart_at - now for s in self.slots if s.restart_at is not None]
            self._sleep(max(0.0, min(waits)) if waits else None)
        self._drain()
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appconnect.server.supervisor")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--graceful-timeout", type=float, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--preflight-pid", type=int, required=True, help="the preflight `serve` forked")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        port_holder = claim_port(args.host, args.port)
    except OSError as exc:
        print(f"appconnect: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        os.waitpid(args.preflight_pid, 0)
        return 2
    try:
        return Supervisor(args.workers, args.graceful_timeout).run(args.preflight_pid)
    finally:
        port_holder.close()


if __name__ == "__main__":
    sys.exit(main())

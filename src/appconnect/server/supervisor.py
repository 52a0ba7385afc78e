"""The supervisor of `appconnect serve --workers N` (N > 1): it keeps N workers running and drains them.

It imports nothing but the standard library (the application, SQLAlchemy, pydantic and the rest live in the
workers), so it stays a few MiB. `serve` validates the settings, forks the preflight (schema upgrade when
needed, keys), imports the application once, forks the N workers from it (each waits for "go" on a pipe),
and then replaces itself with this process (same pid), handing over the children and the pipes:

    python -m appconnect.server.supervisor --workers N --host H --port P --graceful-timeout S
        --preflight-pid PID [--worker PID:FD ...]

1. It claims the port (an error now, not in every worker) and waits for the preflight. Preflight failed: the
   workers are stopped, exit status 2 (the preflight printed the reason). Otherwise each worker gets "go",
   binds its own SO_REUSEPORT socket and serves.
2. A worker that dies is replaced by a fresh `python -m appconnect.server.worker` (after a growing pause if
   it keeps dying at once); one that reports it cannot start at all (status 3) stops the server, status 1.
3. SIGTERM or SIGINT: every worker gets SIGTERM, finishes its in-flight requests and exits; after the
   graceful timeout the rest are killed.
4. A worker whose pipe closes (this process is gone, even by `kill -9`) stops like on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
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


@dataclass
class Slot:
    """One worker position: its process, the write end of its "go" pipe, and its restart bookkeeping."""

    pid: int = 0
    gate: int = -1
    started: float = 0.0
    exit_code: int | None = None
    quick_deaths: int = 0
    restart_at: float | None = None

    def poll(self) -> int | None:
        """The exit code once the process ended (reaped here), else None."""
        if self.exit_code is None and self.pid:
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code

    def go(self) -> None:
        with contextlib.suppress(OSError):  # it died already: the loop sees it
            os.write(self.gate, GO)

    def close_gate(self) -> None:
        if self.gate >= 0:
            os.close(self.gate)
            self.gate = -1


def spawn_worker() -> tuple[int, int]:
    """A fresh worker process with a pipe as its stdin; (pid, write end of the pipe)."""
    gate_read, gate_write = os.pipe()  # not inherited: only fd 0 of the child is
    try:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "appconnect.server.worker"],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, gate_read, 0)],
        )
    finally:
        os.close(gate_read)
    return pid, gate_write


class Supervisor:
    def __init__(self, workers: list[tuple[int, int]], count: int, graceful_timeout: float) -> None:
        self.slots = [Slot(pid=pid, gate=gate, started=time.monotonic()) for pid, gate in workers]
        for slot in self.slots:
            os.set_inheritable(slot.gate, False)  # handed over through exec; no later child needs it
        self.count = count
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
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 512):
                pass

    def _start(self, slot: Slot, *, go: bool) -> None:
        slot.close_gate()
        slot.pid, slot.gate = spawn_worker()
        slot.started, slot.exit_code, slot.restart_at = time.monotonic(), None, None
        if go:
            slot.go()

    def _live(self) -> list[Slot]:
        return [s for s in self.slots if s.pid and s.restart_at is None and s.poll() is None]

    def _signal_all(self, signum: int) -> None:
        for slot in self._live():
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signum)

    def drain(self) -> None:
        """SIGTERM to every worker, wait for them to finish their requests, kill what is left at the end."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.graceful_timeout + 5
        while self._live() and time.monotonic() < deadline:
            self._sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if self._live():
            log.warning("workers still busy after %.0f s: killing them", self.graceful_timeout + 5)
            self._signal_all(signal.SIGKILL)
        for slot in self.slots:
            if slot.pid and slot.exit_code is None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(slot.pid, 0)
            slot.close_gate()

    def wait_preflight(self, pid: int) -> int:
        """Wait for the preflight `serve` forked, while the workers get ready: its exit status, or 1 when a
        worker died meanwhile. It is never cut short: a schema upgrade stops at its end, not half-way."""
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            self._sleep(0.5)
        if any(slot.poll() is not None for slot in self.slots):
            log.error("a worker exited before the server started")
            return 1
        return os.waitstatus_to_exitcode(status)

    def run(self, preflight_pid: int) -> int:
        while len(self.slots) < self.count:  # `serve` could not fork them (it had threads): start them here
            slot = Slot()
            self._start(slot, go=False)
            self.slots.append(slot)
        status = self.wait_preflight(preflight_pid)
        if status != 0 or self.stopping:
            self.drain()
            return status
        for slot in self.slots:
            slot.go()
        log.info("started %d workers", len(self.slots))
        while not self.stopping:
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None:
                    if now >= slot.restart_at:
                        self._start(slot, go=True)
                    continue
                code = slot.poll()
                if code is None:
                    continue
                if code == BOOT_FAILED:
                    log.error("worker %d could not start: stopping the server", slot.pid)
                    self.drain()
                    return 1
                slot.quick_deaths = slot.quick_deaths + 1 if now - slot.started < QUICK_DEATH_S else 0
                pause = 0.0 if slot.quick_deaths == 0 else min(MAX_PAUSE_S, 0.1 * 2**slot.quick_deaths)
                how = f"signal {-code}" if code < 0 else f"status {code}"
                log.warning("worker %d ended (%s): starting another in %.1f s", slot.pid, how, pause)
                slot.close_gate()
                slot.restart_at = now + pause
                if pause == 0.0:
                    self._start(slot, go=True)
            waits = [s.restart_at - now for s in self.slots if s.restart_at is not None]
            self._sleep(max(0.0, min(waits)) if waits else None)
        self.drain()
        return 0


def _worker(text: str) -> tuple[int, int]:
    pid, _, gate = text.partition(":")
    return int(pid), int(gate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appconnect.server.supervisor")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--graceful-timeout", type=float, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--preflight-pid", type=int, required=True, help="the preflight `serve` forked")
    parser.add_argument(
        "--worker",
        type=_worker,
        action="append",
        default=[],
        metavar="PID:FD",
        help="a worker `serve` forked",
    )
    args = parser.parse_args(argv)
    from appconnect import logs  # standard library only, like the rest of this process

    logs.configure(args.log_level, args.log_format)
    supervisor = Supervisor(args.worker, args.workers, args.graceful_timeout)
    try:
        port_holder = claim_port(args.host, args.port)
    except OSError as exc:
        print(f"appconnect: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        supervisor.wait_preflight(args.preflight_pid)
        supervisor.drain()
        return 2
    try:
        return supervisor.run(args.preflight_pid)
    finally:
        port_holder.close()


if __name__ == "__main__":
    sys.exit(main())

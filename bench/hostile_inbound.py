#!/usr/bin/env python3
"""Hostile inbound connections against `appconnect serve` as users start it (its defaults; a free port):
does one connection grow a worker's memory, are trickling connections held, does the server keep answering?

1. **Header flood**: one connection sends `--flood-mib` (256) MiB of header lines and never ends its head.
   Prints how many bytes it could send before the server closed it, and the answer it got.
2. **Trickle**: `--trickle` (500) connections each send one byte of a request head every second. Prints how
   long the server held them (its head timeout, `APPCONNECT_HEADER_TIMEOUT_SECONDS`, closes them) and what it
   answered.

During both a probe sends `GET /isAlive` on a new connection every 100 ms and counts answers and failures. For
each phase it prints the server processes' peak RSS growth over their RSS before the phase (`VmHWM` after
resetting it through `/proc/<pid>/clear_refs`, the kernel's own peak, so no short peak is missed). The issue's
target: growth under 64 MiB, and every probe answered.

`--pythonpath DIR` runs the server from another source tree, e.g. the code before a change
(`git archive <rev> src | tar -x -C ../base`): `--pythonpath ../base/src --flood-mib 16`.

    .venv/bin/python bench/hostile_inbound.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
HEAD_START = b"GET /isAlive HTTP/1.1\r\nHost: bench\r\n"
#: seconds the server has, once the whole flood is sent, to answer or close
GRACE = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(root: int) -> list[int]:
    """`root` and every process below it (the supervisor and its workers with `--workers`)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                data = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(data[data.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    found, todo = [root], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Memory:
    """Per server process: RSS when a phase starts, and the kernel's peak RSS since then."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.before: dict[int, int] = {}

    def start(self) -> None:
        self.before = {}
        for pid in tree(self.root):
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.before[pid] = status_kib(pid, "VmRSS")

    def report(self) -> str:
        parts = []
        for pid, rss in self.before.items():
            try:
                peak, now = status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS")
            except OSError:
                parts.append(f"pid {pid}: gone")
                continue
            parts.append(
                f"pid {pid}: RSS before {rss / 1024:.1f} MiB, peak growth {(peak - rss) / 1024:+.1f} MiB, "
                f"after {(now - rss) / 1024:+.1f} MiB"
            )
        return "; ".join(parts)


class Probe:
    """`GET /isAlive` on a new connection every 100 ms while a phase runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered = 0
        self.failed = 0
        self.latencies: list[float] = []

    async def one(self) -> None:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 5)
            writer.write(b"GET /isAlive HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        except (OSError, TimeoutError):
            self.failed += 1
            return
        if answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"OK"):
            self.answered += 1
            self.latencies.append(time.perf_counter() - started)
        else:
            self.failed += 1

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.one()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    def report(self) -> str:
        if not self.latencies:
            return f"probes: {self.answered} answered, {self.failed} failed"
        worst = max(self.latencies) * 1000
        median = statistics.median(self.latencies) * 1000
        return (
            f"probes: {self.answered} answered, {self.failed} failed, "
            f"latency median {median:.1f} ms, max {worst:.1f} ms"
        )


async def with_probe(port: int, memory: Memory, phase: Callable[[], Awaitable[str]]) -> None:
    probe = Probe(port)
    stop = asyncio.Event()
    memory.start()
    probing = asyncio.create_task(probe.run(stop))
    outcome = await phase()
    stop.set()
    await probing
    print(f"  {outcome}")
    print(f"  {probe.report()}")
    print(f"  memory: {memory.report()}")


def status_of(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode("latin-1") if answer else "no answer (closed)"


def _flood(port: int, total: int) -> tuple[int, bytes, bool]:
    """Blocking: one thread sends header lines (no end of head) while this one reads what the server answers.
    (bytes sent, the answer, whether the server closed the connection)."""
    line = b"X-Flood: " + b"v" * 89 + b"\r\n"  # 100 bytes
    chunk = line * 640  # 64,000 bytes
    sent = 0
    closed = threading.Event()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:

        def send() -> None:
            nonlocal sent
            try:
                sock.sendall(HEAD_START)
                while sent < total:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                closed.set()

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        sock.settimeout(1)
        deadline = None  # once everything is sent, the server gets GRACE seconds to answer or close
        while deadline is None or time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if deadline is None and not sender.is_alive():
                    deadline = time.monotonic() + GRACE
                continue
            except OSError:
                break
            if not data:
                closed.set()
                break
            answer += data
        sender.join(600)
    return sent, answer, closed.is_set()


async def header_flood(port: int, mib: int) -> str:
    """One connection, `mib` MiB of header lines, no end of head."""
    started = time.perf_counter()
    sent, answer, closed = await asyncio.to_thread(_flood, port, mib * MIB)
    seconds = time.perf_counter() - started
    ending = "then the server closed the connection" if closed else "the server never closed it"
    return (
        f"header flood: sent {sent / MIB:.2f} MiB of {mib} MiB in {seconds:.2f} s (what the client's kernel "
        f"took; the server read less), {ending}; answer: {status_of(answer)}"
    )


async def trickle(port: int, count: int, hold: float) -> str:
    """`count` connections sending one byte of a head every second, for at most `hold` seconds each."""
    head = HEAD_START + b"X-Slow: " + b"s" * 200 + b"\r\n"
    held_for: list[float] = []
    answers: dict[str, int] = {}
    refused = 0

    async def one() -> None:
        nonlocal refused
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            refused += 1
            return
        started = time.perf_counter()
        answer = b""

        async def drip() -> None:
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)

        dripping = asyncio.create_task(drip())
        try:
            answer = await asyncio.wait_for(reader.read(), hold)
            held_for.append(time.perf_counter() - started)
        except TimeoutError:
            held_for.append(float("inf"))
        except OSError:
            held_for.append(time.perf_counter() - started)
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()
        status = "held, no answer" if held_for[-1] == float("inf") else status_of(answer)
        answers[status] = answers.get(status, 0) + 1

    await asyncio.gather(*(one() for _ in range(count)))
    closed = [t for t in held_for if t != float("inf")]
    still = len(held_for) - len(closed)
    summary = ", ".join(f"{n} x {status}" for status, n in sorted(answers.items()))
    held = (
        f"closed by the server after median {statistics.median(closed):.1f} s, max {max(closed):.1f} s"
        if closed
        else "none closed by the server"
    )
    return (
        f"trickle: {count} connections ({refused} refused at connect): {held}; "
        f"{still} still open after {hold:.0f} s; answers: {summary}"
    )


def start_server(folder: Path, port: int, pythonpath: str | None, workers: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath or str(ROOT / "src")
    command = [sys.executable, "-m", "appconnect.cli", "serve", "--port", str(port)]
    if workers != 1:
        command += ["--workers", str(workers)]
    return subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def wait_alive(port: int, process: subprocess.Popen[bytes]) -> None:
    probe = Probe(port)
    deadline = time.monotonic() + 60
    while probe.answered == 0:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        await probe.one()
        await asyncio.sleep(0.1)


async def main_async(args: argparse.Namespace) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        process = start_server(Path(folder), port, args.pythonpath, args.workers)
        try:
            await wait_alive(port, process)
            await asyncio.sleep(1)  # let start-up settle
            memory = Memory(process.pid)
            print(f"appconnect serve on port {port} (workers: {args.workers}), pids {tree(process.pid)}")
            print(f"1. header flood, one connection, {args.flood_mib} MiB")
            await with_probe(port, memory, lambda: header_flood(port, args.flood_mib))
            print(f"2. trickle, {args.trickle} connections, one byte a second")
            await with_probe(port, memory, lambda: trickle(port, args.trickle, args.hold))
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flood-mib", type=int, default=256, help="MiB of header lines on one connection")
    parser.add_argument("--trickle", type=int, default=500, help="trickling connections")
    parser.add_argument(
        "--hold", type=float, default=40, help="seconds a trickling connection is kept at most"
    )
    parser.add_argument("--workers", type=int, default=1, help="`serve --workers` (default: serve's own, 1)")
    parser.add_argument("--pythonpath", help="run the server from this source tree (default: this checkout)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

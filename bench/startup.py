#!/usr/bin/env python3
"""Start-up of `appconnect serve`: wall time to the first `GET /isAlive` = 200, the CPU all its processes spent
until then (start-up CPU is steadier than wall time on a busy machine), and each process's RSS once idle.

Each run starts the server in a fresh temp folder (fresh SQLite database: the migrations run) or, with
`--migrated`, on a database migrated by a previous start (the fast path). Variants are interleaved:
`--variant NAME=PYTHONPATH` runs the server with another source tree first on the path, e.g. the code before a
change (`git archive <rev> src | tar -x -C /tmp/base`) beside the working tree (`--variant new=`).

    .venv/bin/python bench/startup.py --workers 2 --reps 5 --variant base=/tmp/base/src --variant new=
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(root: int) -> list[int]:
    """`root` and every process below it."""
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


def cpu_s(pid: int) -> float:
    """utime + stime of the process and of its children it has waited for (the preflight, for one)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = data[data.rindex(")") + 2 :].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS): PSS shares each page among the processes mapping it, so workers forked from one parent
    (whose untouched library pages are not yet mapped in the child, hence not in its RSS) compare fairly."""
    found = {"Rss:": 0.0, "Pss:": 0.0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(":")[0] + ":"
            if key in found:
                found[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found["Rss:"], found["Pss:"]


def alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def one_start(args: argparse.Namespace, pythonpath: str, folder: Path) -> dict[str, object]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPCONNECT_", "PIPEDRIVE_"))}
    env["PYTHONPATH"] = pythonpath
    env["APPCONNECT_EMBEDDED_TESTCRM"] = "false"
    command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "appconnect.cli", "serve", "--port", str(port)]
    command += ["--workers", str(args.workers)]
    with (folder / "server.log").open("ab") as log:
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        while not alive(f"http://127.0.0.1:{port}/isAlive"):
            if proc.poll() is not None or time.monotonic() - started > 60:
                raise SystemExit(f"server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.005)
        wall = time.monotonic() - started
        cpu = sum(cpu_s(pid) for pid in tree(proc.pid))
        time.sleep(args.settle)
        memory = sorted((memory_mib(pid) for pid in tree(proc.pid)), reverse=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {"wall": wall, "cpu": cpu, "memory": memory}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--migrated", action="store_true", help="start on a database a previous start migrated")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after /isAlive before reading RSS")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=PYTHONPATH")
    args = p.parse_args()
    variants = dict(v.partition("=")[::2] for v in args.variant) or {"this": ""}
    results: dict[str, list[dict[str, object]]] = {name: [] for name in variants}
    folders = {name: Path(tempfile.mkdtemp(prefix=f"appconnect-startup-{name}-")) for name in variants}
    for rep in range(args.reps + (1 if args.migrated else 0)):
        for name, path in variants.items():
            folder = folders[name] if args.migrated else Path(tempfile.mkdtemp(prefix="appconnect-startup-"))
            run = one_start(args, os.pathsep.join(x for x in (path, str(ROOT / "src")) if x), folder)
            if args.migrated and rep == 0:
                continue  # this start migrated the database
            results[name].append(run)
            memory = ", ".join(f"{rss:.0f}/{pss:.0f}" for rss, pss in run["memory"])  # type: ignore[attr-defined]
            print(
                f"{name} rep {len(results[name])}: {run['wall']:.2f} s wall, {run['cpu']:.2f} s CPU, "
                f"RSS/PSS MiB per process {memory}",
                flush=True,
            )
    print(
        f"\nworkers {args.workers}, {'migrated' if args.migrated else 'fresh'} database, medians of {args.reps}:"
    )
    for name, runs in results.items():
        wall = statistics.median(float(r["wall"]) for r in runs)  # type: ignore[arg-type]
        cpu = statistics.median(float(r["cpu"]) for r in runs)  # type: ignore[arg-type]
        print(f"  {name}: start to /isAlive {wall:.2f} s, CPU of all processes until then {cpu:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

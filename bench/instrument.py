#!/usr/bin/env python3
"""Run the shared instrument (`../shared/bench`, see its README) against this server and print issue 7's table.

One command: it starts the fixed-response fake Pipedrive (`fakecrm.sh start`, stopped again on exit, Ctrl-C or
error), then for every configuration (SQLite / PostgreSQL, 1 / 2 workers) and every repetition, interleaved:

1. a fresh temp folder (SQLite file, key file) and, for PostgreSQL, a fresh database `appconnect_bench_<random>`
   created through `--postgres-admin-url` (only that database is dropped again);
2. `appconnect serve` with the environment the shared README gives (`SSL_CERT_FILE` = the fake's CA: the
   server's default SSL context honours it, checked before the first run), the test CRM off, the rate limiter
   at its default (as users run it) and a database connection budget that fits; start to first
   `GET /isAlive` = 200 is timed;
3. login through the real OAuth callback; idle RSS of every server process (supervisor, workers, helpers);
4. `flow_load.py --mode flow`, every server process passed as `--watch-pid`; PostgreSQL backends of the bench
   database are sampled from `pg_stat_activity` + `/proc/<pid>/stat` over the same window;
5. the correctness check on the server's database (see `check_database`);
6. `flow_load.py --mode lookup` (unknown numbers: every `GET /contact` is a CRM miss);
7. the server is stopped (SIGTERM, then SIGKILL of its process group) and the database dropped.

It prints `calibrate.py`'s factor first and one markdown table (medians over `--reps`) last, and writes the raw
numbers to `bench/results/<timestamp>-instrument.json` (git-ignored) and the medians to
`bench/results/instrument-latest.json` (committed). Exit status: 0, 1 when a correctness check failed or a run
had errors, 2 when a prerequisite is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

#: name -> (backend, workers), in the issue's column order
CONFIGS: dict[str, tuple[str, int]] = {
    "sqlite-1w": ("sqlite", 1),
    "sqlite-2w": ("sqlite", 2),
    "pg-1w": ("postgres", 1),
    "pg-2w": ("postgres", 2),
}
COLUMN_TITLES = {
    "sqlite-1w": "this server, 1 worker, SQLite",
    "sqlite-2w": "this server, 2 workers, SQLite",
    "pg-1w": "this server, 1 worker, PostgreSQL",
    "pg-2w": "this server, 2 workers, PostgreSQL",
}
# the login the shared README shows: the fake's token endpoint accepts any code
REDIRECT_URI = "https://127.0.0.1/pipedrive-redirect"
CALLBACK_URI = f"{REDIRECT_URI}?code=bench-auth-code&state=platform%3Dpipedrive"
BENCH_DB_RE = re.compile(r"^appconnect_bench_[0-9a-f]{8}$")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Prerequisite(Exception):
    """Something the machine lacks: printed, exit status 2."""


class RunFailed(Exception):
    """The server or a tool failed in a way that makes the run's numbers meaningless."""


def log(message: str) -> None:
    print(f"[instrument {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (all its threads), seconds."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
        fields = data[data.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def proc_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every live process below `root` (children, grandchildren, ...), from the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry.name}/stat").read_text()
            ppid = int(data[data.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return sorted(found)


def name_processes(supervisor: int, workers: int) -> dict[str, int]:
    """`server` alone for one worker; else `supervisor`, `worker1..N` and any helper (resource tracker, ...)."""
    below = descendants(supervisor)
    if workers == 1 and not below:
        return {"server": supervisor}
    names = {"supervisor": supervisor}
    n = 0
    for pid in below:
        cmd = proc_cmdline(pid)
        if "resource_tracker" in cmd:
            names[f"resource_tracker-{pid}"] = pid
        elif "spawn_main" in cmd or "appconnect" in cmd:
            n += 1
            names[f"worker{n}"] = pid
        else:
            names[f"child-{pid}"] = pid
    return names


# --------------------------------------------------------------------------- fake Pipedrive


class FakeCrm:
    """`fakecrm.sh start|stop`; stops only a fake this process started."""

    def __init__(self, shared: Path) -> None:
        self.script = shared / "fake-pipedrive" / "fakecrm.sh"
        self.dir = Path(os.environ.get("FAKECRM_DIR", "/tmp/fake-pipedrive"))
        self.started = False

    @property
    def ca(self) -> Path:
        return self.dir / "tls" / "ca.pem"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # nginx lives in /usr/sbin on Debian, which a non-login PATH may lack
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
        return env

    def check_prerequisites(self) -> None:
        if not self.script.is_file():
            raise Prerequisite(f"{self.script} not found: pass --shared-bench DIR")
        path = self.env()["PATH"]
        missing = [tool for tool in ("nginx", "openssl") if shutil.which(tool, path=path) is None]
        if missing:
            raise Prerequisite(
                f"missing {', '.join(missing)}; install with:\n  apt-get update && apt-get install -y nginx-light openssl"
            )

    def running(self) -> bool:
        try:
            pid = int((self.dir / "tmp" / "nginx.pid").read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def start(self) -> None:
        if self.running():
            log(f"fake Pipedrive already running (from {self.dir}): using it, and leaving it running")
            return
        self.started = True  # from here on `stop` runs, whatever happens
        out = subprocess.run(
            ["bash", str(self.script), "start"], env=self.env(), capture_output=True, text=True, timeout=60
        )
        log(out.stdout.strip() or out.stderr.strip())
        if out.returncode != 0 or not self.running():
            raise RunFailed(f"fakecrm.sh start failed ({out.returncode}): {out.stdout} {out.stderr}")

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        out = subprocess.run(
            ["bash", str(self.script), "stop"], env=self.env(), capture_output=True, text=True, timeout=60
        )
        log(out.stdout.strip() or out.stderr.strip())

    def verify(self, python: Path) -> None:
        """The fake answers over TLS with its CA, from this script and from the server's own outbound client."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen("https://api.pipedrive.com/v1/users/me", context=ctx, timeout=5) as resp:
            if resp.status != 200:
                raise RunFailed(f"fake Pipedrive answered {resp.status}")
        # The server's outbound client (outbound/client.py) verifies TLS with ssl.create_default_context(),
        # which takes the CA bundle from SSL_CERT_FILE. Check that empirically with that very client.
        probe = (
            "import asyncio\n"
            "from appconnect.outbound.client import build_transport_client\n"
            "async def main():\n"
            "    client = build_transport_client(connect_timeout=5, read_timeout=5)\n"
            "    try:\n"
            "        answer = await client.send('GET', 'https://api.pipedrive.com/v1/users/me')\n"
            "    finally:\n"
            "        await client.aclose()\n"
            "    print(answer.status_code)\n"
            "asyncio.run(main())\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.endswith("_PROXY") and not k.endswith("_proxy")}
        env["SSL_CERT_FILE"] = str(self.ca)
        env.pop("SSL_CERT_DIR", None)
        out = subprocess.run([str(python), "-c", probe], env=env, capture_output=True, text=True, timeout=30)
        if out.returncode != 0 or out.stdout.strip() != "200":
            raise RunFailed(
                f"the server's client does not reach the fake with SSL_CERT_FILE: {out.stdout} {out.stderr[-800:]}"
            )


# --------------------------------------------------------------------------- PostgreSQL


def asyncpg_dsn(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql"))


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class Postgres:
    """Admin connection (creates and drops the bench databases) and the backend CPU sampler."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection | None = None
        self.created: set[str] = set()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def connect(self) -> None:
        try:
            self.conn = self.run(asyncpg.connect(asyncpg_dsn(self.admin_url), timeout=10))
        except (OSError, asyncpg.PostgresError) as exc:
            raise Prerequisite(f"PostgreSQL at --postgres-admin-url is not reachable: {exc}") from None

    def create_database(self) -> str:
        assert self.conn is not None
        name = f"appconnect_bench_{secrets.token_hex(4)}"
        self.run(self.conn.execute(f'CREATE DATABASE "{name}"'))
        self.created.add(name)
        return name

    def drop_database(self, name: str) -> None:
        if self.conn is None or name not in self.created or not BENCH_DB_RE.match(name):
            return
        self.run(self.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.created.discard(name)

    def backend_pids(self, name: str) -> list[int]:
        assert self.conn is not None
        rows = self.run(self.conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name))
        return [int(row["pid"]) for row in rows]

    def fetch(self, url: str, query: str) -> list[Any]:
        async def go() -> list[Any]:
            conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
            try:
                return list(await conn.fetch(query))
            finally:
                await conn.close()

        return list(self.run(go()))

    def close(self) -> None:
        for name in list(self.created):
            try:
                self.drop_database(name)
            except (OSError, asyncpg.PostgresError) as exc:
                log(f"could not drop {name}: {exc}")
        if self.conn is not None:
            with suppress(Exception):
                self.run(self.conn.close())
        self.loop.close()


@dataclass
class BackendSamples:
    """CPU seconds of each PostgreSQL backend of the bench database, sampled over time."""

    samples: dict[int, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, pids: list[int]) -> None:
        now = time.monotonic()
        for pid in pids:
            cpu = proc_cpu_s(pid)
            if cpu is not None:
                self.samples.setdefault(pid, []).append((now, cpu))

    def cpu_between(self, t0: float, t1: float) -> float:
        """Backend CPU in [t0, t1]; a backend first seen after t0 was born in the window and counts from 0."""
        total = 0.0
        for points in self.samples.values():
            before = [cpu for t, cpu in points if t <= t0]
            upto = [cpu for t, cpu in points if t <= t1]
            if not upto:
                continue
            total += upto[-1] - (before[-1] if before else 0.0)
        return total


# --------------------------------------------------------------------------- the server under test


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    workers: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log("server did not stop in 20 s: SIGKILL to its process group")
        # the server runs in a session of its own: its process group holds only what it started
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def server_env(args: argparse.Namespace, workdir: Path, ca: Path, workers: int) -> dict[str, str]:
    dropped = ("APPCONNECT_", "PIPEDRIVE_", "DATABASE_URL", "REDIS_URL", "SSL_CERT_DIR")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(dropped) and not k.lower().endswith("_proxy")
    }
    per_worker = args.db_pool_size + args.db_max_overflow
    env.update(
        {
            "SSL_CERT_FILE": str(ca),
            "PIPEDRIVE_CLIENT_ID": "bench-client-id",
            "PIPEDRIVE_CLIENT_SECRET": "bench-client-secret",
            "PIPEDRIVE_REDIRECT_URI": REDIRECT_URI,
            "APPCONNECT_EMBEDDED_TESTCRM": "false",
            "APPCONNECT_KEY_FILE": str(workdir / "keys.json"),
            "APPCONNECT_TESTCRM_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'testcrm.sqlite3'}",
            "APPCONNECT_DATABASE_POOL_SIZE": str(args.db_pool_size),
            "APPCONNECT_DATABASE_MAX_OVERFLOW": str(args.db_max_overflow),
            "APPCONNECT_DATABASE_MAX_CONNECTIONS": str(workers * per_worker),
        }
    )
    for item in args.server_env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def start_server(
    args: argparse.Namespace, workdir: Path, ca: Path, database_url: str, workers: int
) -> tuple[Server, float]:
    """The server, and seconds from spawning it to the first 200 from `GET /isAlive`."""
    port = free_port()
    log_path = workdir / "server.log"
    command = [
        str(args.appconnect), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--database-url", database_url,
    ]  # fmt: skip
    with log_path.open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=server_env(args, workdir, ca, workers),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(proc, port, workers, log_path)
    deadline = started + 60
    while True:
        try:
            status, _ = http_get(f"{server.base_url}/isAlive", timeout=2)
            if status == 200:
                alive = time.monotonic() - started
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RunFailed(f"server did not answer /isAlive (exit {proc.poll()}):\n{server.log_tail()}")
        time.sleep(0.01)
    # every worker up (uvicorn logs one "Application startup complete" per worker)
    while time.monotonic() < deadline:
        if server.log_path.read_text(errors="replace").count("Application startup complete") >= workers:
            break
        time.sleep(0.05)
    else:
        log(f"not every worker reported its start-up:\n{server.log_tail()}")
    return server, alive


def login(server: Server) -> str:
    query = urllib.parse.urlencode(
        {
            "callbackUri": CALLBACK_URI,
            "hostname": "benchco.pipedrive.com",
            "rcAccountId": "bench-rc-account-1",
        }
    )
    status, body = http_get(f"{server.base_url}/oauth-callback?{query}", timeout=30)
    try:
        token = json.loads(body)["jwtToken"]
    except (ValueError, KeyError, TypeError):
        token = None
    if status != 200 or not isinstance(token, str) or not token:
        raise RunFailed(f"login failed: {status} {body[:500]!r}\n{server.log_tail()}")
    return token


# --------------------------------------------------------------------------- correctness


def check_database(
    backend: str, database_url: str, workdir: Path, pg: Postgres | None, flow: dict[str, Any]
) -> dict[str, Any]:
    """Every completed flow left exactly one call log (status `done`) and one placeholder contact.

    The fake Pipedrive answers the same contact and activity for every request, so this is checked on the
    server's side. A flow is completed when its three requests answered successfully: flows started minus
    flows that failed in any phase (each failed flow counts exactly one error in `flow_load.py`). Checked:
    `call_logs` has that many rows, all `done`, with distinct session ids; `created_contacts` has that many
    rows (one per number), each holding a real contact (an `id`), none the "create in flight" marker.
    """
    queries = {
        "call_logs": "SELECT count(*), count(DISTINCT session_id), "
        f"sum(CASE WHEN status = 'done' THEN 1 ELSE 0 END) FROM call_logs WHERE session_id NOT LIKE '{SEED_PREFIX}%'",
        "contacts": "SELECT contact FROM created_contacts",
    }
    if backend == "sqlite":
        path = workdir / "appconnect.sqlite3"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
            logs = conn.execute(queries["call_logs"]).fetchone()
            contacts = [row[0] for row in conn.execute(queries["contacts"])]
    else:
        assert pg is not None
        logs = tuple(pg.fetch(database_url, queries["call_logs"])[0])
        contacts = [row[0] for row in pg.fetch(database_url, queries["contacts"])]
    real = 0
    for raw in contacts:
        value = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(value, dict) and value.get("id") not in (None, ""):
            real += 1
    failed = sum(flow.get("errors_all_phases_by_route", {}).values())
    expected = int(flow["flows_started_total"]) - failed
    total, distinct, done = (int(x or 0) for x in logs)
    result = {
        "flows_completed": expected,
        "call_logs": total,
        "call_logs_done": done,
        "call_logs_distinct_sessions": distinct,
        "created_contacts": len(contacts),
        "created_contacts_with_id": real,
    }
    result["ok"] = (
        expected > 0 and total == done == distinct == expected and len(contacts) == real == expected
    )
    return result


SEED_PREFIX = "seed-"


def seed_database(
    backend: str, database_url: str, workdir: Path, pg: Postgres | None, rows: int
) -> dict[str, Any]:
    """`rows` done call logs and `rows` contact-cache rows, a tenth of each in the bench user's own scope and
    the rest spread over 200 other tenants: the server must cost the same with a full database."""
    started = time.monotonic()
    if backend == "sqlite":
        conn = sqlite3.connect(workdir / "appconnect.sqlite3", timeout=30)
        scope = conn.execute("SELECT account_scope FROM users LIMIT 1").fetchone()[0]
    else:
        assert pg is not None
        scope = pg.fetch(database_url, "SELECT account_scope FROM users LIMIT 1")[0][0]
    scopes = [scope] + [f"pipedrive||account:seed-{k}" for k in range(200)]
    now = datetime.now(UTC).replace(tzinfo=None)

    def scope_of(i: int) -> str:
        return scope if i % 10 == 0 else scopes[1 + i % 200]

    logs = [
        (scope_of(i), f"{SEED_PREFIX}{i}", "101", "", f"t-{SEED_PREFIX}{i}", "pipedrive", "seed-user",
         str(i), f"act-{i}", "done", 0, now, now)
        for i in range(rows)
    ]  # fmt: skip
    cache = [
        (scope_of(i), "pipedrive", f"contact-+1{3000000000 + i}", '[{"id": "1", "name": "Seeded"}]', now, now)
        for i in range(rows)
    ]
    log_sql = (
        "INSERT INTO call_logs (scope, session_id, extension_number, hashed_extension_id, call_id, platform, "
        "user_id, contact_id, third_party_log_id, status, attempts, created_at, updated_at) VALUES "
    )
    cache_sql = (
        "INSERT INTO account_data (account_id, platform, data_key, data, created_at, updated_at) VALUES "
    )
    if backend == "sqlite":
        with conn:
            conn.executemany(log_sql + "(" + ",".join("?" * 13) + ")", logs)
            conn.executemany(cache_sql + "(?,?,?,?,?,?)", cache)
        conn.close()
    else:
        assert pg is not None

        async def go() -> None:
            db = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
            try:
                await db.copy_records_to_table(
                    "call_logs",
                    records=[(*r[:11], r[11].replace(tzinfo=UTC), r[12].replace(tzinfo=UTC)) for r in logs],
                    columns=[
                        "scope", "session_id", "extension_number", "hashed_extension_id", "call_id", "platform",
                        "user_id", "contact_id", "third_party_log_id", "status", "attempts", "created_at",
                        "updated_at",
                    ],
                )  # fmt: skip
                await db.executemany(
                    cache_sql + "($1, $2, $3, $4::json, $5, $6)",
                    [(*r[:4], r[4].replace(tzinfo=UTC), r[5].replace(tzinfo=UTC)) for r in cache],
                )
                await db.execute("ANALYZE")
            finally:
                await db.close()

        pg.run(go())
    return {"rows": rows, "seconds": round(time.monotonic() - started, 1)}


# --------------------------------------------------------------------------- one run


def run_load(
    args: argparse.Namespace,
    server: Server,
    processes: dict[str, int],
    jwt_file: Path,
    mode: str,
    workdir: Path,
    pg: Postgres | None,
    database: str | None,
) -> tuple[dict[str, Any], float | None]:
    """One `flow_load.py` run; the result and the PostgreSQL backends' CPU seconds over its window."""
    out = workdir / f"{mode}.json"
    command = [
        sys.executable, str(args.shared_bench / "flow_load.py"), "--base-url", server.base_url,
        "--jwt-file", str(jwt_file), "--platform", "pipedrive", "--mode", mode,
        "--concurrency", str(args.concurrency), "--duration", str(args.duration),
        "--warmup", str(args.warmup), "--json-out", str(out),
    ]  # fmt: skip
    for name, pid in processes.items():
        command += ["--watch-pid", f"{name}={pid}"]
    samples = BackendSamples()
    launched = time.monotonic()
    # flow_load's window opens after its start-up and preflight (~0.1-0.2 s) plus the warm-up
    window = (launched + 0.15 + args.warmup, launched + 0.15 + args.warmup + args.duration)
    with (workdir / f"{mode}.out").open("wb") as console:
        proc = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                if pg is not None and database is not None and time.monotonic() < window[1] + 0.5:
                    samples.add(pg.backend_pids(database))
                time.sleep(0.25)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = (workdir / f"{mode}.out").read_text(errors="replace")
    if not out.exists():
        raise RunFailed(
            f"flow_load.py --mode {mode} wrote no result (exit {proc.returncode}):\n{text[-2000:]}"
        )
    result: dict[str, Any] = json.loads(out.read_text().splitlines()[-1])
    print(text.rstrip(), flush=True)
    pg_cpu = samples.cpu_between(*window) if pg is not None else None
    return result, pg_cpu


def server_cpu_s(result: dict[str, Any]) -> float:
    wall = float(result["measured_s"])
    return sum((w["cpu_pct"] or 0.0) / 100 * wall for w in result["watched"].values())


def busiest_worker_share(result: dict[str, Any]) -> float | None:
    """The busiest worker's share of all workers' CPU over the window, % (None with one worker)."""
    cpus = [w["cpu_pct"] or 0.0 for name, w in result["watched"].items() if name.startswith("worker")]
    if len(cpus) < 2 or sum(cpus) <= 0:
        return None
    return 100 * max(cpus) / sum(cpus)


def one_run(
    args: argparse.Namespace, config: str, rep: int, fake: FakeCrm, pg: Postgres | None
) -> dict[str, Any]:
    backend, workers = CONFIGS[config]
    workdir = Path(tempfile.mkdtemp(prefix=f"appconnect-instrument-{config}-"))
    database: str | None = None
    server: Server | None = None
    try:
        if backend == "postgres":
            assert pg is not None
            database = pg.create_database()
            database_url = with_database(args.postgres_admin_url, database)
        else:
            database_url = f"sqlite+aiosqlite:///{workdir / 'appconnect.sqlite3'}"
        log(f"{config} rep {rep + 1}: starting the server ({database or 'SQLite'}) in {workdir}")
        server, alive = start_server(args, workdir, fake.ca, database_url, workers)
        processes = name_processes(server.proc.pid, workers)
        jwt_file = workdir / "jwt.txt"
        jwt_file.write_text(login(server) + "\n")
        seeded = None
        if args.seed:
            seeded = seed_database(backend, database_url, workdir, pg, args.seed)
            log(
                f"{config}: seeded {args.seed} call logs and {args.seed} contact-cache rows in {seeded['seconds']} s"
            )
        time.sleep(1.0)
        idle = {name: proc_rss_mib(pid) for name, pid in processes.items()}
        log(f"{config}: /isAlive after {alive:.2f} s; processes {processes}; idle RSS {idle}")
        flow, pg_flow = run_load(args, server, processes, jwt_file, "flow", workdir, pg, database)
        check = check_database(backend, database_url, workdir, pg, flow)
        log(f"{config}: correctness check {'OK' if check['ok'] else 'FAILED'}: {check}")
        lookup, pg_lookup = run_load(args, server, processes, jwt_file, "lookup", workdir, pg, database)
        lookups = lookup["routes"]["GET /contact"]
        derived = {
            "flows_per_s": flow["flows_per_s"],
            "cpu_ms_per_flow": 1000 * server_cpu_s(flow) / flow["flows_ok"] if flow["flows_ok"] else None,
            "pg_ms_per_flow": 1000 * pg_flow / flow["flows_ok"] if pg_flow is not None and flow["flows_ok"] else None,
            "flow_p50_ms": flow["flow_p50_ms"],
            "flow_p99_ms": flow["flow_p99_ms"],
            "lookup_per_s": lookups["rps"],
            "cpu_ms_per_lookup": 1000 * server_cpu_s(lookup) / lookups["ok"] if lookups["ok"] else None,
            "pg_ms_per_lookup": 1000 * pg_lookup / lookups["ok"] if pg_lookup is not None and lookups["ok"] else None,
            "busiest_worker_share_pct_flow": busiest_worker_share(flow),
            "idle_rss_mib_total": sum(v for v in idle.values() if v is not None),
            "start_to_alive_s": alive,
            "flow_errors": flow["errors_total"] + flow["errors_warmup"],
            "lookup_errors": lookup["errors_total"] + lookup["errors_warmup"],
            "generator_cpu_pct_flow": flow["generator_cpu_pct"],
            "generator_cpu_pct_lookup": lookup["generator_cpu_pct"],
        }  # fmt: skip
        return {
            "config": config,
            "backend": backend,
            "workers": workers,
            "rep": rep + 1,
            "database": database or "sqlite",
            "processes": processes,
            "idle_rss_mib": idle,
            "seeded": seeded,
            "check": check,
            "derived": derived,
            "flow": flow,
            "lookup": lookup,
            "pg_backend_cpu_s": {"flow": pg_flow, "lookup": pg_lookup},
        }
    finally:
        if server is not None:
            server.stop()
        if database is not None and pg is not None:
            pg.drop_database(database)
        if args.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- the table


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of every derived figure and of each process's idle RSS, per configuration."""
    out: dict[str, Any] = {}
    for config in CONFIGS:
        mine = [r for r in runs if r["config"] == config]
        if not mine:
            continue
        keys = mine[0]["derived"].keys()
        summary: dict[str, Any] = {k: median([r["derived"][k] for r in mine]) for k in keys}
        summary["reps"] = len(mine)
        summary["idle_rss_mib"] = {
            name: median([r["idle_rss_mib"].get(name) for r in mine]) for name in mine[0]["idle_rss_mib"]
        }
        summary["checks_ok"] = sum(1 for r in mine if r["check"]["ok"])
        summary["flows_checked"] = sum(r["check"]["flows_completed"] for r in mine)
        out[config] = summary
    return out


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def memory_cell(rss: dict[str, float | None]) -> str:
    total = sum(v for v in rss.values() if v is not None)
    if len(rss) == 1:
        return f"{total:.0f} MiB"
    parts = [f"{name.split('-')[0]} {fmt(v, 0)}" for name, v in rss.items()]
    return f"{total:.0f} MiB ({len(rss)} processes: {', '.join(parts)})"


def table(summary: dict[str, Any], concurrency: int) -> str:
    configs = list(summary)
    reps = max(s["reps"] for s in summary.values())

    def pg_part(config: str, value: float | None, unit: str = " ms", suffix: str = "") -> str:
        if CONFIGS[config][0] != "postgres" or value is None:
            return ""
        return f" + {fmt(value, 2)}{unit}{suffix}"

    rows: list[tuple[str, list[str]]] = [
        (
            f"full flow, {concurrency} in flight: flows/s",
            [fmt(summary[c]["flows_per_s"], 0) for c in configs],
        ),
        (
            "server CPU per flow (all its processes)",
            [
                f"{fmt(summary[c]['cpu_ms_per_flow'])} ms"
                + pg_part(c, summary[c]["pg_ms_per_flow"], suffix=" PostgreSQL backends")
                for c in configs
            ],
        ),
        (
            f"flow latency p50 / p99 at {concurrency} in flight",
            [
                f"{fmt(summary[c]['flow_p50_ms'], 0)} / {fmt(summary[c]['flow_p99_ms'], 0)} ms"
                for c in configs
            ],
        ),
        (
            f"`GET /contact` (CRM miss), {concurrency} in flight: req/s, CPU per request",
            [
                f"{fmt(summary[c]['lookup_per_s'], 0)}, {fmt(summary[c]['cpu_ms_per_lookup'], 2)} ms"
                + pg_part(c, summary[c]["pg_ms_per_lookup"])
                for c in configs
            ],
        ),
        (
            "load spread: busiest worker's share of the workers' CPU (flow)",
            [
                "-"
                if summary[c]["busiest_worker_share_pct_flow"] is None
                else f"{fmt(summary[c]['busiest_worker_share_pct_flow'], 0)} % ({CONFIGS[c][1]} workers)"
                for c in configs
            ],
        ),
        ("idle memory after login", [memory_cell(summary[c]["idle_rss_mib"]) for c in configs]),
        ("start to first `/isAlive`", [f"{fmt(summary[c]['start_to_alive_s'], 2)} s" for c in configs]),
        (
            "errors in flow / lookup runs (warm-up included)",
            [f"{fmt(summary[c]['flow_errors'], 0)} / {fmt(summary[c]['lookup_errors'], 0)}" for c in configs],
        ),
        (
            "check: one `done` call log and one contact per completed flow",
            [
                f"{summary[c]['checks_ok']}/{summary[c]['reps']} runs OK ({summary[c]['flows_checked']} flows)"
                for c in configs
            ],
        ),
        (
            "load generator CPU, flow / lookup (% of a core)",
            [
                f"{fmt(summary[c]['generator_cpu_pct_flow'], 0)} / {fmt(summary[c]['generator_cpu_pct_lookup'], 0)}"
                for c in configs
            ],
        ),
    ]
    head = f"| workload ({reps} rep{'s' if reps > 1 else ''}, medians) | " + " | ".join(
        COLUMN_TITLES[c] for c in configs
    )
    lines = [head + " |", "| --- |" + " --- |" * len(configs)]
    lines += [f"| {title} | " + " | ".join(cells) + " |" for title, cells in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def calibrate(shared: Path) -> tuple[str, float | None]:
    out = subprocess.run(
        [sys.executable, str(shared / "calibrate.py")], capture_output=True, text=True, timeout=120
    )
    line = out.stdout.strip()
    match = re.search(r"factor vs the issue's machine: ([0-9.]+)", line)
    return line, float(match.group(1)) if match else None


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def default_shared_bench() -> Path:
    """`../shared/bench` beside the repository; in a git worktree, beside the main checkout."""
    here = ROOT.parent / "shared" / "bench"
    if here.is_dir():
        return here
    with suppress(OSError):
        common = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if common:
            main_checkout = Path(common).parent
            if (main_checkout.parent / "shared" / "bench").is_dir():
                return main_checkout.parent / "shared" / "bench"
    return here


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config",
        action="append",
        choices=list(CONFIGS),
        help="configuration to run (repeatable; default all four)",
    )
    p.add_argument("--reps", type=int, default=1, help="repetitions; configurations are interleaved")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds of each load run")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each window")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument(
        "--shared-bench",
        type=Path,
        default=None,
        help="the shared instrument (default ../shared/bench from the repository root, or from the main "
        "checkout when this is a git worktree)",
    )
    p.add_argument(
        "--postgres-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL where appconnect_bench_<random> databases are created and dropped",
    )
    p.add_argument(
        "--appconnect", type=Path, default=ROOT / ".venv" / "bin" / "appconnect", help="the server command"
    )
    p.add_argument("--db-pool-size", type=int, default=10, help="APPCONNECT_DATABASE_POOL_SIZE per worker")
    p.add_argument(
        "--db-max-overflow", type=int, default=10, help="APPCONNECT_DATABASE_MAX_OVERFLOW per worker"
    )
    p.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE", help="extra server setting"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="before the load, store N call logs and N contact-cache rows (a tenth in the bench user's scope)",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep each run's temp folder")
    p.add_argument("--no-save", action="store_true", help="write nothing to bench/results")
    args = p.parse_args(argv)
    args.shared_bench = (args.shared_bench or default_shared_bench()).resolve()
    args.config = args.config or list(CONFIGS)
    args.config = [c for c in CONFIGS if c in args.config]
    if args.reps < 1:
        p.error("--reps must be at least 1")
    return args


def save(args: argparse.Namespace, report: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = RESULTS / f"{stamp}-instrument.json"
    raw.write_text(json.dumps(report, indent=1, default=str) + "\n")
    small = {k: v for k, v in report.items() if k != "runs"}
    (RESULTS / "instrument-latest.json").write_text(json.dumps(small, indent=2, default=str) + "\n")
    return raw


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    # Ctrl-C too, even when started with SIGINT ignored (a background job of a non-interactive shell)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fake = FakeCrm(args.shared_bench)
    pg: Postgres | None = None
    runs: list[dict[str, Any]] = []
    failures: list[str] = []
    line, factor = "", None
    with sigterm_as_interrupt():
        try:
            fake.check_prerequisites()
            if not args.appconnect.exists():
                raise Prerequisite(f"{args.appconnect} not found: pip install -e '.[test]' into .venv first")
            if any(CONFIGS[c][0] == "postgres" for c in args.config):
                pg = Postgres(args.postgres_admin_url)
                pg.connect()
            line, factor = calibrate(args.shared_bench)
            print(f"calibrate.py: {line}", flush=True)
            fake.start()
            fake.verify(args.appconnect.parent / "python")
            for rep in range(args.reps):
                for config in args.config:
                    try:
                        run = one_run(args, config, rep, fake, pg)
                    except RunFailed as exc:
                        failures.append(f"{config} rep {rep + 1}: {exc}")
                        log(failures[-1])
                        continue
                    runs.append(run)
                    if not run["check"]["ok"]:
                        failures.append(f"{config} rep {rep + 1}: correctness check failed: {run['check']}")
        except Prerequisite as exc:
            print(f"instrument: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            log("interrupted: cleaning up")
            return 130
        finally:
            fake.stop()
            if pg is not None:
                pg.close()
    if not runs:
        print("no run completed", file=sys.stderr)
        return 1
    summary = summarize(runs)
    text = table(summary, args.concurrency)
    print()
    print(f"calibrate.py factor {fmt(factor, 2)} ({line})")
    print(text)
    for failure in failures:
        print(f"FAILED: {failure}")
    report = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_revision(),
        "calibrate": {"line": line, "factor": factor},
        "settings": {
            "configs": args.config,
            "reps": args.reps,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "db_pool_size": args.db_pool_size,
            "db_max_overflow": args.db_max_overflow,
            "server_env": args.server_env,
        },
        "summary": summary,
        "table": text,
        "failures": failures,
        "runs": runs,
    }
    if not args.no_save:
        print(f"\nwrote {save(args, report).relative_to(ROOT)} and bench/results/instrument-latest.json")
    errors = any((s["flow_errors"] or 0) + (s["lookup_errors"] or 0) for s in summary.values())
    return 1 if failures or errors else 0


if __name__ == "__main__":
    sys.exit(main())

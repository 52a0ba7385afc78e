#!/usr/bin/env python
"""Load benchmark of the App Connect connector server (real server subprocess, real HTTP, closed loop).

    .venv/bin/python bench/bench.py [--workers 2] [--database-url sqlite|postgres|URL]
                                         [--seconds 20] [--concurrency 32] [--seed-call-logs 100000]
                                         [--profile-seconds 10] [--crm embedded|external]

Starts `python -m appconnect.cli serve` in a fresh temporary working directory (fresh SQLite files, key file
and embedded test-CRM database), logs agents in with test-CRM API keys, then drives it from this process
(a separate process from the server, so the load generator's CPU is not counted as the server's):

* placeholder flows/s: GET /contact (miss) -> POST /contact -> POST /callLog -> GET /callLog
  -> PATCH /callLog -> POST /messageLog -> GET /contact (matched); counted only if every step succeeded
* lookups/s: GET /contact for already-matched numbers (cache hit) and with isForceRefreshAccountData=true
* server CPU ms per operation (utime+stime of the server process tree, /proc), RSS per worker
* with --seed-call-logs N: N call_logs rows and N/10 contact-cache rows inserted directly into the server's
  database, then flows and lookups measured again and the ratios printed.

With --crm external the test CRM runs in a second `serve` process of its own (the server under test gets
APPCONNECT_EMBEDDED_TESTCRM=false and TESTCRM_BASE_URL pointing at it) and its CPU is reported apart; by default
it is the one embedded in the server under test, and its CPU is part of the server's.

Prints numbers only; it never asserts on times. Results: bench/results/<timestamp>-<label>.json and the
latest result per configuration merged into bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench"
PROTECTED_DATABASES = {"test", "postgres", "template0", "template1"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOSTNAME = "testcrm.local"
NOTE = (
    "server CPU includes the embedded test CRM: it runs inside the same worker processes, and each flow "
    "makes ~6 loopback HTTP calls to it (each served by a worker too)"
)
NOTE_EXTERNAL = (
    "server CPU excludes the test CRM: it runs in a separate process (crm columns); the connector's outbound "
    "HTTP calls to it (~6 per flow, over loopback) are in the server's CPU, as with a remote CRM"
)


# --- /proc helpers -----------------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # the command name may hold spaces or parentheses: split after the last ")"
    return text[text.rfind(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (scans /proc once)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children[int(fields[1])].append(int(entry))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, tuple[float, float]]:
    """(utime, stime) per live pid, in seconds (all threads of the process)."""
    out: dict[int, tuple[float, float]] = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)
    return out


def context_switches(pids: list[int]) -> int:
    """Voluntary + involuntary context switches of the live threads of `pids` (threads gone are not counted)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            text = _read(f"/proc/{pid}/task/{tid}/status") or ""
            total += sum(int(v) for v in re.findall(r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)", text, re.M))
    return total


def rss_mib(pid: int) -> float | None:
    text = _read(f"/proc/{pid}/status")
    if text is None:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) / 1024 if match else None


def cmdline(pid: int) -> str:
    return (_read(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    text = _read("/proc/stat") or "cpu 0 0 0 0"
    values = [int(v) for v in text.splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def postgres_backends(database: str) -> list[int]:
    """PostgreSQL backend processes serving `database` (`postgres: [15/main: ]user database host(port) ...`)."""
    pattern = re.compile(rf"^postgres: (?:\S+: )?\S+ {re.escape(database)} ")
    return [
        int(entry) for entry in os.listdir("/proc") if entry.isdigit() and pattern.match(cmdline(int(entry)))
    ]


class BackendSampler:
    """CPU of the PostgreSQL backends of one database, polled every 0.1 s from a thread.

    Backends that exit during the window (connection-pool churn) keep their last seen CPU time; backends born
    during it count from zero, which includes their start-up."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.baseline: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.births = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)

    def _sample(self) -> dict[int, float]:
        return {pid: u + k for pid, (u, k) in cpu_seconds(postgres_backends(self.database)).items()}

    def start(self) -> None:
        self.baseline = self._sample()
        self.last = dict(self.baseline)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for pid, value in self._sample().items():
                if pid not in self.last:
                    self.births += 1
                self.last[pid] = value

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        for pid, value in self._sample().items():
            self.last[pid] = value
        return sum(value - self.baseline.get(pid, 0.0) for pid, value in self.last.items())


class CpuWindow:
    """CPU used by the server tree, this process and the whole machine between start() and stop()."""

    def __init__(
        self, server_root: int, postgres_database: str | None = None, crm_root: int | None = None
    ) -> None:
        self.server_root = server_root
        self.postgres_database = postgres_database
        self.crm_root = crm_root
        self._backends: BackendSampler | None = None
        self._crm: dict[int, tuple[float, float]] = {}

    def _crm_cpu(self) -> dict[int, tuple[float, float]]:
        return cpu_seconds(process_tree(self.crm_root)) if self.crm_root is not None else {}

    def start(self) -> None:
        tree = process_tree(self.server_root)
        if self.postgres_database:
            self._backends = BackendSampler(self.postgres_database)
            self._backends.start()
        self._crm = self._crm_cpu()
        self._server = cpu_seconds(tree)
        self._switches = context_switches(tree)
        self._client = os.times()
        self._machine = machine_jiffies()
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        tree = process_tree(self.server_root)
        after = cpu_seconds(tree)
        crm_after = self._crm_cpu()
        db = self._backends.stop() if self._backends else 0.0
        births = self._backends.births if self._backends else 0
        switches = context_switches(tree) - self._switches
        client = os.times()
        busy, total = machine_jiffies()
        wall = time.perf_counter() - self._wall
        user = sum(u - self._server.get(pid, (0.0, 0.0))[0] for pid, (u, _) in after.items())
        system = sum(k - self._server.get(pid, (0.0, 0.0))[1] for pid, (_, k) in after.items())
        server = user + system
        crm = sum(u + k - sum(self._crm.get(pid, (0.0, 0.0))) for pid, (u, k) in crm_after.items())
        client_cpu = (client.user - self._client.user) + (client.system - self._client.system)
        d_total = max(total - self._machine[1], 1)
        busy_cores = (busy - self._machine[0]) / d_total * (os.cpu_count() or 1)
        return {
            "wall_s": wall,
            "server_cpu_s": server,
            "server_user_s": user,
            "server_sys_s": system,
            "server_context_switches": switches,
            "postgres_backend_cpu_s": db,
            "postgres_backends_started": births,
            "server_cores": server / wall,
            "crm_cpu_s": crm,
            "crm_cores": crm / wall,
            "client_cpu_s": client_cpu,
            "client_cores": client_cpu / wall,
            "machine_busy": (busy - self._machine[0]) / d_total,
            # CPU used by neither the server, the external CRM nor this load generator (other jobs)
            "other_cores": max(0.0, busy_cores - (server + crm + client_cpu + db) / wall),
        }


# --- the server under test ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resolve_database(arg: str | None, workdir: Path) -> str:
    if not arg or arg == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'appconnect.sqlite3'}"
    if arg in ("postgres", "postgresql"):
        return DEFAULT_POSTGRES_URL
    return arg


def backend_of(url: str) -> str:
    return "postgres" if url.startswith("postgres") else "sqlite" if url.startswith("sqlite") else "other"


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


async def fresh_postgres_database(url: str, *, allow_any: bool) -> None:
    """Drop and re-create the benchmark's own database (never the test suite's `test`)."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database or ""
    if not allow_any and name in PROTECTED_DATABASES:
        raise SystemExit(f"refusing to drop database {name!r}: use a database of its own, e.g. .../bench")
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


class Server:
    def __init__(
        self,
        *,
        workers: int,
        database_url: str,
        workdir: Path,
        testcrm_url: str | None,
        extra_path: str = "",
        extra_env: dict[str, str] | None = None,
        crm: Server | None = None,
    ) -> None:
        # crm: the separate test-CRM process this server talks to (--crm external); None = embedded
        self.crm = crm
        self.extra_path = extra_path
        self.extra_env = extra_env or {}
        self.postgres_database: str | None = None
        if backend_of(database_url) == "postgres":
            from sqlalchemy.engine import make_url

            self.postgres_database = make_url(database_url).database
        self.workers = workers
        self.database_url = database_url
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.testcrm_url = testcrm_url or f"sqlite+aiosqlite:///{workdir / 'testcrm.sqlite3'}"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("APPCONNECT_", "TESTCRM_", "PIPEDRIVE_"))
            and k not in ("DATABASE_URL", "REDIS_URL")
        }
        env.update(
            APPCONNECT_KEY_FILE=str(self.workdir / "keys.json"),
            APPCONNECT_TESTCRM_DATABASE_URL=self.testcrm_url,
            APPCONNECT_PUBLIC_URL=self.base_url,
            APPCONNECT_LOG_LEVEL="warning",
            PYTHONPATH=os.pathsep.join(
                p for p in (str(ROOT / "src"), self.extra_path, env.get("PYTHONPATH", "")) if p
            ),
        )
        env.update(self.extra_env)
        cmd = [
            sys.executable,
            "-m",
            "appconnect.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--database-url",
            self.database_url,
        ]
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        tree = process_tree(self.proc.pid)[1:]
        # forked workers carry the serve command line (replacements: `appconnect.server.worker`)
        workers = [
            p
            for p in tree
            if ("spawn_main" in cmdline(p) or "appconnect" in cmdline(p))
            and "resource_tracker" not in cmdline(p)
        ]
        return workers or [self.proc.pid]

    async def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not ready within {timeout}s:\n{self.log_tail()}")
                try:
                    ok = (await client.get("/isAlive")).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok and (self.workers <= 1 or len(self.worker_pids()) >= self.workers):
                    # each worker answers once before the clock starts (app and pools built)
                    for _ in range(self.workers * 8):
                        await client.get("/isAlive")
                    return
                await asyncio.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group this script created for the server
            self.proc.wait(5)


# --- load generation ---------------------------------------------------------------------------------------


@dataclass
class Agent:
    jwt: str
    user_id: str
    rc_account_id: str
    known_phones: list[str] = field(default_factory=list)

    @property
    def scope(self) -> str:
        return f"{self.rc_account_id}@{HOSTNAME}"


class Ids:
    """Unique phone numbers and session ids for the whole run (a random area code, then a counter)."""

    def __init__(self) -> None:
        self.area = random.randint(200, 989)
        self.counter = random.randint(0, 1_000_000)
        self.run = uuid.uuid4().hex[:8]

    def next(self) -> tuple[str, str]:
        self.counter += 1
        return f"+1{self.area}{self.counter:07d}", f"bench-{self.run}-{self.counter}"


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class PhaseStats:
    """Outcomes of operations that complete while `counting` (the measurement window) is on."""

    counting: bool = True
    ok: int = 0
    failed: int = 0
    failed_total: int = 0  # inside or outside the window
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def succeed(self) -> None:
        if self.counting:
            self.ok += 1

    def timing(self, step: str, ms: float) -> None:
        if self.counting:
            self.latency[step].append(ms)

    def fail(self, step: str, reason: str) -> None:
        self.failed_total += 1
        key = f"{step}: {reason[:60]}"
        self.errors[key] += 1
        self.error_samples.setdefault(step, reason[:300])
        if self.counting:
            self.failed += 1


async def call(
    client: httpx.AsyncClient,
    stats: PhaseStats,
    step: str,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    check: Callable[[Any], bool],
) -> Any:
    started = time.perf_counter()
    try:
        content = orjson.dumps(json_body) if json_body is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        response = await client.request(method, url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        raise StepFailed(step, f"{type(exc).__name__} {exc}") from None
    stats.timing(step, (time.perf_counter() - started) * 1000)
    if response.status_code != 200:
        raise StepFailed(step, f"HTTP {response.status_code} {response.text[:200]}")
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise StepFailed(step, f"not JSON: {response.text[:200]}") from None
    if not isinstance(body, dict) or not check(body):
        raise StepFailed(step, f"unexpected answer: {response.text[:200]}")
    return body


def _lookup_url(phone: str, jwt: str, *, force: bool) -> str:
    # as the released client sends it: jwt in the query, the phone's "+" not URL-encoded
    return (
        f"/contact?phoneNumber={phone}&overridingFormat=&isExtension=false"
        f"&isForceRefreshAccountData={'true' if force else 'false'}&jwtToken={jwt}"
    )


def _first_contact(body: dict[str, Any]) -> dict[str, Any]:
    contacts = body.get("contact") or [{}]
    return contacts[0] if isinstance(contacts[0], dict) else {}


async def placeholder_flow(client: httpx.AsyncClient, agent: Agent, ids: Ids, stats: PhaseStats) -> None:
    """The released client's sequence for an unknown caller; counted only when every step succeeded."""
    phone, session_id = ids.next()
    jwt = agent.jwt
    started = time.perf_counter()
    try:
        await call(
            client,
            stats,
            "1 GET /contact (miss)",
            "GET",
            _lookup_url(phone, jwt, force=False),
            check=lambda b: b.get("successful") is True and _first_contact(b).get("isNewContact") is True,
        )
        created = await call(
            client,
            stats,
            "2 POST /contact",
            "POST",
            f"/contact?jwtToken={jwt}",
            json_body={
                "phoneNumber": phone,
                "newContactName": "Bench Placeholder",
                "newContactType": "lead",
                "additionalSubmission": {},
            },
            check=lambda b: b.get("successful") is True and bool((b.get("contact") or {}).get("id")),
        )
        contact_id = created["contact"]["id"]
        logged = await call(
            client,
            stats,
            "3 POST /callLog",
            "POST",
            f"/callLog?jwtToken={jwt}",
            json_body={
                "logInfo": {
                    "sessionId": session_id,
                    "id": f"call-{session_id}",
                    "telephonySessionId": f"t-{session_id}",
                    "direction": "Inbound",
                    "startTime": "2026-11-25T10:00:00.000Z",
                    "duration": 95,
                    "result": "Call connected",
                    "from": {"phoneNumber": phone, "name": "Caller"},
                    "to": {"phoneNumber": "+16505550000", "name": "Agent"},
                },
                "contactId": contact_id,
                "contactName": "Bench Placeholder",
                "contactType": "lead",
                "note": "first note",
                "additionalSubmission": {},
            },
            check=lambda b: b.get("successful") is True and bool(b.get("logId")),
        )
        log_id = logged["logId"]
        await call(
            client,
            stats,
            "4 GET /callLog",
            "GET",
            f"/callLog?sessionIds={session_id}&jwtToken={jwt}",
            check=lambda b: (
                b.get("successful") is True
                and (b.get("logs") or [{}])[0].get("matched") is True
                and b["logs"][0].get("logId") == log_id
            ),
        )
        await call(
            client,
            stats,
            "5 PATCH /callLog",
            "PATCH",
            f"/callLog?jwtToken={jwt}",
            json_body={
                "sessionId": session_id,
                "note": "updated note",
                "duration": 125,
                "result": "Call connected",
                "recordingLink": "https://media.example/rec/1",
            },
            check=lambda b: b.get("successful") is True and b.get("logId") == log_id,
        )
        await call(
            client,
            stats,
            "6 POST /messageLog",
            "POST",
            f"/messageLog?jwtToken={jwt}",
            json_body={
                "logInfo": {
                    "conversationId": f"conv-{session_id}",
                    "conversationLogId": f"conv-{session_id}-2026-11-25",
                    "messages": [
                        {
                            "id": f"m-{session_id}",
                            "type": "SMS",
                            "direction": "Inbound",
                            "subject": "hi there",
                            "creationTime": "2026-11-25T10:05:00.000Z",
                            "from": {"phoneNumber": phone},
                        }
                    ],
                    "correspondents": [{"phoneNumber": phone, "name": "Bench Placeholder"}],
                },
                "contactId": contact_id,
                "contactName": "Bench Placeholder",
                "contactType": "lead",
            },
            check=lambda b: b.get("successful") is True and bool(b.get("logIds")),
        )
        await call(
            client,
            stats,
            "7 GET /contact (matched)",
            "GET",
            _lookup_url(phone, jwt, force=False),
            check=lambda b: (
                b.get("successful") is True and str(_first_contact(b).get("id")) == str(contact_id)
            ),
        )
    except StepFailed as exc:
        stats.fail(exc.step, exc.reason)
        return
    stats.succeed()
    stats.timing("flow total", (time.perf_counter() - started) * 1000)
    if len(agent.known_phones) < 5000:
        agent.known_phones.append(phone)


async def lookup(client: httpx.AsyncClient, agent: Agent, stats: PhaseStats, *, force: bool) -> None:
    phone = random.choice(agent.known_phones)
    step = "GET /contact forced" if force else "GET /contact cached"
    try:
        await call(
            client,
            stats,
            step,
            "GET",
            _lookup_url(phone, agent.jwt, force=force),
            check=lambda b: b.get("successful") is True and _first_contact(b).get("isNewContact") is not True,
        )
    except StepFailed as exc:
        stats.fail(exc.step, exc.reason)
        return
    stats.succeed()


async def closed_loop(
    concurrency: int,
    seconds: float,
    agents: list[Agent],
    op: Callable[[Agent, PhaseStats], Awaitable[None]],
    *,
    ramp: float = 0.0,
    window: CpuWindow | None = None,
) -> tuple[PhaseStats, dict[str, float] | None]:
    """`concurrency` workers each run `op` back to back. With a window: load for `ramp` seconds first, then
    count only what completes in the next `seconds` (steady state, no ramp-up or drain in the numbers)."""
    stats = PhaseStats(counting=window is None)
    end = time.perf_counter() + ramp + seconds
    cpu: dict[str, float] | None = None

    async def worker(index: int) -> None:
        agent = agents[index % len(agents)]
        while time.perf_counter() < end:
            await op(agent, stats)

    async def marks() -> None:
        nonlocal cpu, end
        if window is None:
            return
        await asyncio.sleep(ramp)
        window.start()
        stats.counting = True
        end = time.perf_counter() + seconds  # the window is exactly `seconds` long, whatever the delays
        await asyncio.sleep(seconds)
        stats.counting = False
        cpu = window.stop()
        end = time.perf_counter()  # no new operations: drain

    await asyncio.gather(marks(), *(worker(i) for i in range(concurrency)))
    return stats, cpu


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(ordered[-1], 1)}


async def measure(
    name: str,
    server: Server,
    concurrency: int,
    seconds: float,
    agents: list[Agent],
    op: Callable[[Agent, PhaseStats], Awaitable[None]],
    ramp: float,
) -> dict[str, Any]:
    assert server.proc is not None
    stats, cpu = await closed_loop(
        concurrency,
        seconds,
        agents,
        op,
        ramp=ramp,
        window=CpuWindow(
            server.proc.pid,
            server.postgres_database,
            crm_root=server.crm.proc.pid if server.crm is not None and server.crm.proc is not None else None,
        ),
    )
    assert cpu is not None
    ops = stats.ok
    external = server.crm is not None
    result: dict[str, Any] = {
        "ok": ops,
        "errors": stats.failed,
        "errors_incl_ramp_and_drain": stats.failed_total,
        "per_s": ops / cpu["wall_s"],
        "server_cpu_ms_per_op": (cpu["server_cpu_s"] * 1000 / ops) if ops else None,
        # what one fully busy server core would sustain at this CPU cost (machine-independent-ish capacity)
        "per_server_core_s": (ops / cpu["server_cpu_s"]) if cpu["server_cpu_s"] else None,
        "postgres_backend_cpu_ms_per_op": (cpu["postgres_backend_cpu_s"] * 1000 / ops)
        if ops and server.postgres_database
        else None,
        # the external test CRM's own CPU (with --crm embedded it is inside server_cpu_ms_per_op)
        "crm_cpu_ms_per_op": (cpu["crm_cpu_s"] * 1000 / ops) if ops and external else None,
        "server_sys_share": (cpu["server_sys_s"] / cpu["server_cpu_s"]) if cpu["server_cpu_s"] else None,
        "server_context_switches_per_op": (cpu["server_context_switches"] / ops) if ops else None,
        **{k: round(v, 4) for k, v in cpu.items()},
        "latency_ms": {step: percentiles(v) for step, v in sorted(stats.latency.items())},
    }
    if stats.failed:
        result["error_counts"] = dict(stats.errors.most_common(10))
        result["error_samples"] = stats.error_samples
    print(
        f"  {name:<16} {ops:>7} ok {stats.failed:>5} err  {result['per_s']:>8.1f}/s  "
        f"server {cpu['server_cores']:.2f} cores ({cpu['server_sys_s'] / max(cpu['server_cpu_s'], 1e-9):.0%} sys)  "
        + (f"crm {cpu['crm_cores']:.2f} cores  " if external else "")
        + f"client {cpu['client_cores']:.2f} cores  "
        + (
            f"postgres {cpu['postgres_backend_cpu_s'] / cpu['wall_s']:.2f} cores "
            f"({cpu['postgres_backends_started']:.0f} backends started)  "
            if server.postgres_database
            else ""
        )
        + f"machine busy {cpu['machine_busy'] * 100:.0f}% (other jobs {cpu['other_cores']:.2f} cores)",
        flush=True,
    )
    return result


# --- setup: accounts, seeding ------------------------------------------------------------------------------


async def make_agents(
    client: httpx.AsyncClient, count: int, crm_client: httpx.AsyncClient | None = None
) -> list[Agent]:
    """Test-CRM API keys are made on the CRM (`crm_client`, default the server's embedded one); the logins
    go to the server under test."""
    agents = []
    for index in range(count):
        key = await (crm_client or client).post(
            "/testcrm/api/v1/api-keys", json={"name": f"Bench Agent {index}"}
        )
        key.raise_for_status()
        rc_account = f"bench-acct-{index}-{uuid.uuid4().hex[:6]}"
        login = await client.post(
            "/apiKeyLogin?state=platform=testcrm",
            json={"platform": "testcrm", "apiKey": key.json()["apiKey"], "hostname": HOSTNAME},
            headers={"rc-account-id": rc_account},
        )
        login.raise_for_status()
        body = login.json()
        if "jwtToken" not in body:
            raise RuntimeError(f"login failed: {body}")
        user_id = f"{key.json()['user']['id']}-testcrm"
        agents.append(Agent(jwt=body["jwtToken"], user_id=user_id, rc_account_id=rc_account))
    return agents


def _cached_contact(i: int, phone: str) -> list[dict[str, Any]]:
    return [
        {
            "id": str(900_000 + i),
            "name": f"Seeded Contact {i}",
            "phone": phone,
            "type": "contact",
            "title": None,
            "company": None,
            "mostRecentActivityDate": "2026-11-25T10:00:00.000Z",
            "additionalInfo": None,
        },
        {
            "id": "createNewContact",
            "name": "Create new contact...",
            "additionalInfo": None,
            "isNewContact": True,
            "defaultContactType": "contact",
        },
    ]


async def seed(
    database_url: str, agents: list[Agent], call_log_rows: int, chunk: int = 5000
) -> dict[str, Any]:
    """Bulk-insert call_logs rows and call_log_rows/10 account_data (contact cache) rows."""
    from sqlalchemy import func, insert, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from appconnect.store.tables import account_data, call_logs

    engine = create_async_engine(database_url)
    now = datetime.now(UTC)
    # real agents own a share of the rows, 200 other users / accounts the rest
    user_ids = [a.user_id for a in agents] + [f"{10_000 + k}-testcrm" for k in range(200)]
    scopes = [a.scope for a in agents] + [f"seed-acct-{k}@{HOSTNAME}" for k in range(200)]
    started = time.perf_counter()
    try:
        for base in range(0, call_log_rows, chunk):
            rows = [
                {
                    "session_id": f"seed-{i}",
                    "extension_number": "",
                    "hashed_extension_id": "",
                    "call_id": f"t-seed-{i}",
                    "platform": "testcrm",
                    "user_id": user_ids[i % len(user_ids)],
                    "contact_id": str(900_000 + i),
                    "third_party_log_id": str(5_000_000 + i),
                    "status": "done",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(base, min(base + chunk, call_log_rows))
            ]
            async with engine.begin() as conn:
                await conn.execute(insert(call_logs), rows)
        cache_rows = call_log_rows // 10
        for base in range(0, cache_rows, chunk):
            rows = []
            for i in range(base, min(base + chunk, cache_rows)):
                phone = f"+1180{i:07d}"
                rows.append(
                    {
                        "account_id": scopes[i % len(scopes)],
                        "platform": "testcrm",
                        "data_key": f"contact-{phone}",
                        "data": _cached_contact(i, phone),
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            async with engine.begin() as conn:
                await conn.execute(insert(account_data), rows)
        elapsed = time.perf_counter() - started
        async with engine.connect() as conn:
            totals = {
                "call_logs": (await conn.execute(select(func.count()).select_from(call_logs))).scalar_one(),
                "account_data": (
                    await conn.execute(select(func.count()).select_from(account_data))
                ).scalar_one(),
            }
    finally:
        await engine.dispose()
    return {
        "call_logs_inserted": call_log_rows,
        "account_data_inserted": cache_rows,
        "seconds": elapsed,
        "table_rows_after": totals,
    }


# --- profiling ---------------------------------------------------------------------------------------------


def py_spy_path() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")


def _frame_key(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    return f"{match.group('func')} ({match.group('file')})" if match else frame.strip()


def _package(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    path = match.group("file") if match else frame
    groups = (
        ("appconnect/embedded_crm", "appconnect.embedded_crm (test CRM)"),
        ("appconnect", "appconnect"),
        ("sqlalchemy", "sqlalchemy"),
        ("aiosqlite", "aiosqlite"),
        ("sqlite3", "sqlite3"),
        ("asyncpg", "asyncpg"),
        ("httpcore", "httpx/httpcore (outbound)"),
        ("httpx", "httpx/httpcore (outbound)"),
        ("h11", "h11"),
        ("anyio", "anyio"),
        ("uvicorn", "uvicorn"),
        ("starlette", "starlette/fastapi"),
        ("fastapi", "starlette/fastapi"),
        ("pydantic", "pydantic"),
        ("cryptography", "cryptography"),
        ("jwt", "pyjwt"),
        ("asyncio", "asyncio"),
        ("logging", "logging"),
        ("threading", "threading"),
        ("concurrent", "threading"),
        ("queue", "threading"),
    )
    for needle, name in groups:
        if needle in path:
            return name
    return path.rsplit("/", 1)[-1] or "other"


def summarize_profile(raw_files: list[Path], top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares from py-spy's collapsed-stack output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for path in raw_files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [f for f in stack.split(";") if f]
            # py-spy puts the thread/process name first when it shows them; real frames have " (file:line)"
            frames = [f for f in frames if f.endswith(")")]
            if not frames:
                continue
            total += count
            self_time[_frame_key(frames[-1])] += count
            packages[_package(frames[-1])] += count
            for key in {_frame_key(f) for f in frames}:
                inclusive[key] += count
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    app_inclusive = Counter({k: v for k, v in inclusive.items() if "appconnect/" in k})
    routes = Counter(
        {k: v for k, v in inclusive.items() if "appconnect/api/routes.py" in k or "embedded_crm/app.py" in k}
    )
    return {
        "inclusive_by_route_pct": share(routes, 30),
        "samples": total,
        "self_by_package_pct": share(packages, 20),
        "self_by_function_pct": share(self_time, top),
        "inclusive_appconnect_pct": share(app_inclusive, top),
    }


async def profile_flows(
    server: Server, agents: list[Agent], ids: Ids, concurrency: int, seconds: float, out_dir: Path, tag: str
) -> dict[str, Any] | None:
    spy = py_spy_path()
    if spy is None:
        print("  py-spy not installed: skipping the profile", flush=True)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    procs, raws = [], []
    for pid in server.worker_pids():
        raw = out_dir / f"profile-{tag}-{pid}.txt"
        svg = out_dir / f"profile-{tag}-{pid}.svg"
        raws.append(raw)
        for fmt, out in (("raw", raw), ("flamegraph", svg)):
            procs.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "200",
                        "--gil",
                        "--format",
                        fmt,
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
    await asyncio.sleep(0.5)
    async with _load_client(server, concurrency) as client:
        await closed_loop(concurrency, seconds + 1, agents, lambda a, s: placeholder_flow(client, a, ids, s))
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode:
            failures.append(err.decode(errors="replace")[-300:])
    if failures and not any(r.exists() for r in raws):
        print(f"  py-spy failed: {failures[0]}", flush=True)
        return {"error": failures[0]}
    summary = summarize_profile(raws)
    summary["files"] = [str(p.relative_to(ROOT)) for p in sorted(out_dir.glob(f"profile-{tag}-*"))]
    return summary


# --- the run -----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _load_client(server: Server, concurrency: int) -> Any:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as client:
        yield client


PHASES = ("flows", "lookup_cached", "lookup_forced")


async def measure_all(
    server: Server, agents: list[Agent], ids: Ids, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    print(f"measuring ({label}): {args.seconds:g}s each, concurrency {args.concurrency}", flush=True)
    out: dict[str, Any] = {}
    async with _load_client(server, args.concurrency) as client:
        ops: dict[str, tuple[str, Callable[[Agent, PhaseStats], Awaitable[None]], float]] = {
            "flows": ("placeholder flow", lambda a, s: placeholder_flow(client, a, ids, s), args.ramp),
            "lookup_cached": (
                "lookup cached",
                lambda a, s: lookup(client, a, s, force=False),
                min(args.ramp, 2.0),
            ),
            "lookup_forced": (
                "lookup forced",
                lambda a, s: lookup(client, a, s, force=True),
                min(args.ramp, 2.0),
            ),
        }
        for key in args.phases:
            name, op, ramp = ops[key]
            out[key] = await measure(name, server, args.concurrency, args.seconds, agents, op, ramp)
    return out


def ratios(empty: dict[str, Any], seeded: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """seeded/empty for throughput (>1 faster) and for server CPU per operation (>1 costlier)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    return {
        "per_s": {k: ratio(seeded[k]["per_s"], empty[k]["per_s"]) for k in empty},
        "server_cpu_ms_per_op": {
            k: ratio(seeded[k]["server_cpu_ms_per_op"], empty[k]["server_cpu_ms_per_op"]) for k in empty
        },
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else "unknown"


async def machine_busy(seconds: float = 2.0) -> float:
    before = machine_jiffies()
    await asyncio.sleep(seconds)
    after = machine_jiffies()
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


async def wait_quiet(limit: float, threshold: float = 0.15) -> float:
    """The machine's busy share before the server starts; waits up to `limit` s for it to fall below 15%."""
    deadline = time.monotonic() + limit
    busy = await machine_busy()
    while busy > threshold and time.monotonic() < deadline:
        print(f"machine {busy:.0%} busy with other jobs: waiting for it to calm down", flush=True)
        busy = await machine_busy(5.0)
    if busy > threshold:
        print(
            f"warning: machine {busy:.0%} busy before the start: throughput numbers will be low", flush=True
        )
    return round(busy, 3)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="appconnect-bench-"))
    database_url = resolve_database(args.database_url, workdir)
    backend = backend_of(database_url)
    if backend == "postgres":
        await fresh_postgres_database(database_url, allow_any=args.i_know_this_drops_the_database)
    if args.testcrm_database_url in ("postgres", "postgresql"):
        args.testcrm_database_url = DEFAULT_POSTGRES_URL + "_crm"
    if args.testcrm_database_url and backend_of(args.testcrm_database_url) == "postgres":
        if args.testcrm_database_url == database_url:
            raise SystemExit("the test CRM needs a database of its own")
        await fresh_postgres_database(
            args.testcrm_database_url, allow_any=args.i_know_this_drops_the_database
        )
    crm: Server | None = None
    server_env = dict(args.server_env)
    if args.crm == "external":
        # a second `serve` process of its own; only its /testcrm part is used (its connector routes idle)
        crm_workdir = Path(tempfile.mkdtemp(prefix="appconnect-bench-crm-"))
        crm = Server(
            workers=args.crm_workers,
            database_url=resolve_database("sqlite", crm_workdir),
            workdir=crm_workdir,
            testcrm_url=args.testcrm_database_url,
        )
        server_env = {
            "APPCONNECT_EMBEDDED_TESTCRM": "false",
            "TESTCRM_BASE_URL": f"{crm.base_url}/testcrm/api/v1",
            **server_env,
        }
    server = Server(
        workers=args.workers,
        database_url=database_url,
        workdir=workdir,
        testcrm_url=None if crm is not None else args.testcrm_database_url,
        extra_path=args.server_extra_path or "",
        extra_env=server_env,
        crm=crm,
    )
    label = args.label or f"{backend}-w{args.workers}-seed{args.seed_call_logs}" + (
        "-extcrm" if crm is not None else ""
    )
    result: dict[str, Any] = {
        "label": label,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": sys.version.split()[0]},
        "config": {
            "backend": backend,
            "database_url": redact_url(database_url),
            "workers": args.workers,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "ramp_seconds": args.ramp,
            "concurrency": args.concurrency,
            "agents": args.agents,
            "seed_call_logs": args.seed_call_logs,
            "server_extra_path": args.server_extra_path,
            "server_env": dict(args.server_env),
            "testcrm_database": "sqlite (temp file)"
            if not args.testcrm_database_url
            else redact_url(args.testcrm_database_url),
            "crm": args.crm,
            "crm_workers": args.crm_workers if crm is not None else None,
            "crm_base_url": f"{crm.base_url}/testcrm/api/v1" if crm is not None else None,
        },
        "note": NOTE_EXTERNAL if crm is not None else NOTE,
    }
    result["machine"]["busy_before_start"] = await wait_quiet(args.wait_quiet)
    try:
        if crm is not None:
            print(
                f"test CRM: separate process, {args.crm_workers} worker(s), {crm.base_url}/testcrm, "
                f"workdir {crm.workdir}",
                flush=True,
            )
            crm.start()
            await crm.wait_ready()
            result["crm_pids"] = {"parent": crm.proc.pid if crm.proc else None, "workers": crm.worker_pids()}
        print(f"server: {backend}, {args.workers} worker(s), workdir {workdir}", flush=True)
        server.start()
        await server.wait_ready()
        result["server_pids"] = {
            "parent": server.proc.pid if server.proc else None,
            "workers": server.worker_pids(),
        }
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(_load_client(server, args.concurrency))
            crm_client = (
                await stack.enter_async_context(httpx.AsyncClient(base_url=crm.base_url, timeout=60))
                if crm is not None
                else None
            )
            agents = await make_agents(client, args.agents, crm_client)
        ids = Ids()
        if args.warmup > 0:
            async with _load_client(server, args.concurrency) as client:
                warm, _ = await closed_loop(
                    args.concurrency, args.warmup, agents, lambda a, s: placeholder_flow(client, a, ids, s)
                )
            print(f"warm-up: {warm.ok} flows, {warm.failed} errors", flush=True)
            if warm.ok == 0:
                raise RuntimeError(
                    f"no flow succeeded in the warm-up: {dict(warm.errors)}\n{server.log_tail()}"
                )
        result["empty"] = await measure_all(server, agents, ids, args, "empty database")
        if args.seed_call_logs > 0:
            print(
                f"seeding {args.seed_call_logs} call logs + {args.seed_call_logs // 10} contact-cache rows",
                flush=True,
            )
            result["seed"] = await seed(database_url, agents, args.seed_call_logs)
            print(
                f"  seeded in {result['seed']['seconds']:.1f}s: {result['seed']['table_rows_after']}",
                flush=True,
            )
            result["seeded"] = await measure_all(
                server, agents, ids, args, f"{args.seed_call_logs} call logs"
            )
            result["ratio_seeded_vs_empty"] = ratios(result["empty"], result["seeded"])
        result["rss_mib"] = {
            "parent": rss_mib(server.proc.pid) if server.proc else None,
            "workers": [rss_mib(pid) for pid in server.worker_pids()],
        }
        if crm is not None:
            result["crm_rss_mib"] = {
                "parent": rss_mib(crm.proc.pid) if crm.proc else None,
                "workers": [rss_mib(pid) for pid in crm.worker_pids()] if crm.workers > 1 else [],
            }
        if args.profile_seconds > 0:
            print(
                f"profiling flows with py-spy for {args.profile_seconds:g}s (not part of the numbers)",
                flush=True,
            )
            result["profile"] = await profile_flows(
                server, agents, ids, args.concurrency, args.profile_seconds, RESULTS, label
            )
        for key, proc in (("server", server), ("crm", crm)):
            if proc is None:
                continue
            notable = _notable_log_lines(proc)
            result[f"{key}_log_errors"] = sum(1 for line in notable if "ERROR" in line or "Traceback" in line)
            result[f"{key}_log_notable"] = notable[-30:]
    finally:
        server.stop()
        if crm is not None:
            crm.stop()
        for path in (workdir, crm.workdir if crm is not None else None):
            if path is None:
                continue
            if args.keep_workdir:
                print(f"kept {path}")
            else:
                shutil.rmtree(path, ignore_errors=True)
    return result


def _notable_log_lines(server: Server) -> list[str]:
    log_text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    return [
        line[:300]
        for line in log_text.splitlines()
        if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line)
        or ("WARNING" in line and "server keys" not in line)
    ]


# --- reporting ---------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(result: dict[str, Any]) -> None:
    cfg = result["config"]
    print()
    print(
        f"== {result['label']}  ({result['machine']['cpus']} CPUs, {result['machine']['cpu_model']}, "
        f"git {result['git']})"
    )
    print(
        f"   {cfg['workers']} workers, {cfg['backend']}, concurrency {cfg['concurrency']}, "
        f"{cfg['agents']} agents, {cfg['seconds']:g}s per measurement"
    )
    external = cfg.get("crm") == "external"
    crm_header = f"{'crm ms/op':>11}{'crm cores':>11}" if external else ""
    header = (
        f"   {'':<18}{'ops/s':>9}{'errors':>8}{'srv CPU ms/op':>15}{'ops/core-s':>12}{'srv cores':>11}"
        f"{'pg ms/op':>10}{crm_header}{'client cores':>14}{'other cores':>13}{'p50 ms':>9}{'p95 ms':>9}"
    )
    for phase in ("empty", "seeded"):
        if phase not in result:
            continue
        title = "empty database" if phase == "empty" else f"after seeding {cfg['seed_call_logs']} call logs"
        print(f"   -- {title}")
        print(header)
        for key, name in (
            ("flows", "placeholder flows"),
            ("lookup_cached", "lookups cached"),
            ("lookup_forced", "lookups forced"),
        ):
            if key not in result[phase]:
                continue
            r = result[phase][key]
            lat: dict[str, float] = r["latency_ms"].get("flow total") or next(
                iter(r["latency_ms"].values()), {}
            )
            crm_cells = (
                f"{_fmt(r.get('crm_cpu_ms_per_op')):>11}{r.get('crm_cores', 0.0):>11.2f}" if external else ""
            )
            print(
                f"   {name:<18}{r['per_s']:>9.1f}{r['errors']:>8}{_fmt(r['server_cpu_ms_per_op']):>15}"
                f"{_fmt(r['per_server_core_s']):>12}{r['server_cores']:>11.2f}"
                f"{_fmt(r.get('postgres_backend_cpu_ms_per_op')):>10}{crm_cells}{r['client_cores']:>14.2f}"
                f"{r['other_cores']:>13.2f}{_fmt(lat.get('p50')):>9}{_fmt(lat.get('p95')):>9}"
            )
    if "ratio_seeded_vs_empty" in result:
        r = result["ratio_seeded_vs_empty"]
        print(
            "   ratio seeded/empty, throughput: "
            + ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in r["per_s"].items())
        )
        print(
            "   ratio seeded/empty, server CPU per op: "
            + ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in r["server_cpu_ms_per_op"].items())
        )
    rss = result.get("rss_mib") or {}
    workers = ", ".join(_fmt(v) for v in rss.get("workers", []))
    print(f"   RSS MiB: workers [{workers}], supervisor {_fmt(rss.get('parent'))}")
    if "crm_rss_mib" in result:
        crm_rss = result["crm_rss_mib"]
        crm_workers = ", ".join(_fmt(v) for v in crm_rss.get("workers", []))
        print(
            f"   test CRM RSS MiB: process {_fmt(crm_rss.get('parent'))}"
            + (f", workers [{crm_workers}]" if crm_workers else "")
        )
    for key in ("server", "crm"):
        if result.get(f"{key}_log_errors"):
            print(
                f"   {key} log: {result[f'{key}_log_errors']} error line(s), see {key}_log_notable in the JSON"
            )
    flows = result["empty"].get("flows", {"latency_ms": {}})
    print(
        "   flow step latency (empty db) p50/p95 ms: "
        + "; ".join(
            f"{step.split(' ', 1)[1]} {v.get('p50')}/{v.get('p95')}"
            for step, v in flows["latency_ms"].items()
            if step[0].isdigit()
        )
    )
    for phase in ("empty", "seeded"):
        for key, r in (result.get(phase) or {}).items():
            if r.get("errors"):
                print(f"   errors in {phase}/{key}: {r.get('error_counts')}")
                for step, sample in (r.get("error_samples") or {}).items():
                    print(f"      e.g. {step}: {sample}")
    profile = result.get("profile")
    if profile and profile.get("samples"):
        print(
            f"   profile ({profile['samples']} samples): self time by package: "
            + ", ".join(f"{k} {v}%" for k, v in profile["self_by_package_pct"][:10])
        )
        print(
            "   top self-time functions: "
            + "; ".join(f"{k} {v}%" for k, v in profile["self_by_function_pct"][:8])
        )
    print(f"   note: {result['note']}")


def save(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-{result['label']}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    latest_path = RESULTS / "latest.json"
    latest: dict[str, Any] = {}
    if latest_path.exists():
        with contextlib.suppress(ValueError):
            latest = json.loads(latest_path.read_text())
    latest.setdefault("runs", {})[result["label"]] = result
    latest["updated"] = result["timestamp"]
    latest_path.write_text(json.dumps(latest, indent=2, sort_keys=False, default=str) + "\n")
    return path


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    parser.add_argument(
        "--database-url",
        default="sqlite",
        help=f"'sqlite' (temp file, default), 'postgres' (= {DEFAULT_POSTGRES_URL}, dropped and re-created), "
        "or a SQLAlchemy URL",
    )
    parser.add_argument(
        "--testcrm-database-url",
        help="test CRM database: default a temp SQLite file; 'postgres' = "
        f"{DEFAULT_POSTGRES_URL}_crm (dropped and re-created; its CPU is not in the pg column)",
    )
    parser.add_argument(
        "--crm",
        choices=("embedded", "external"),
        default="embedded",
        help="embedded (default): the test CRM mounted at /testcrm in the server under test, its CPU counted "
        "as the server's; external: a separate `serve` process serves the test CRM, the server under test "
        "runs with APPCONNECT_EMBEDDED_TESTCRM=false and TESTCRM_BASE_URL pointing at it, and its CPU is "
        "reported apart (crm columns)",
    )
    parser.add_argument(
        "--crm-workers", type=int, default=1, help="workers of the external test-CRM process (default 1)"
    )
    parser.add_argument("--seconds", type=float, default=20, help="length of each measurement (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up flows before measuring (default 3s)")
    parser.add_argument(
        "--ramp", type=float, default=5, help="load before each flow window opens (default 5s; lookups: 2s)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        help="wait up to N s for the machine to be idle (<15%% busy) before starting (shared machines)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--agents", type=int, default=8, help="logged-in agents (CRM accounts) (default 8)")
    parser.add_argument("--seed-call-logs", type=int, default=0, help="seed N call logs, re-measure")
    parser.add_argument(
        "--profile-seconds", type=float, default=0, help="py-spy the workers for N s at the end"
    )
    parser.add_argument(
        "--server-extra-path",
        help="directory put on the server's PYTHONPATH (A/B a package without reinstalling)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="extra environment for the server, e.g. APPCONNECT_DATABASE_POOL_SIZE=32 (repeatable)",
    )
    parser.add_argument(
        "--phases",
        type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
        default=list(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default all)",
    )
    parser.add_argument("--label", help="result label (default <backend>-w<workers>-seed<N>)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the server's temp directory")
    parser.add_argument("--no-save", action="store_true", help="print only; write no results file")
    parser.add_argument(
        "--i-know-this-drops-the-database",
        action="store_true",
        help="allow a PostgreSQL database named test/postgres (it is dropped and re-created)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.phases) - set(PHASES)
    if unknown or not args.phases:
        parser.error(f"--phases: unknown {sorted(unknown)}; choose from {', '.join(PHASES)}")
    return args


def _terminate(_signum: int, _frame: Any) -> None:
    raise SystemExit(143)  # unwinds through run()'s finally, which stops the server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print_report(result)
    if not args.no_save:
        print(f"\nwrote {save(result).relative_to(ROOT)} and bench/results/latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

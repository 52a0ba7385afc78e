#!/usr/bin/env python
"""Soak test of the App Connect connector server with faults injected into the CRM (issue 6 item 13).

    .venv/bin/python bench/soak.py [--seconds 60] [--workers 2] [--database-url URL] [--concurrency 8]

Starts three things of its own, on loopback only, in a temporary folder:

* the test CRM alone (`soak.py --serve-crm`, the embedded CRM's app with fault injection on);
* a chaos proxy in front of it (in this process) that resets a share of the connections at a random moment,
  before, during or after a request: the server sees connection errors and answers that never arrive;
* the connector server (`python -m appconnect.cli serve`, SQLite by default, `--database-url` for PostgreSQL,
  `--workers N`) talking to the CRM through the proxy, with a short CRM read timeout.

While `--seconds` run, a fault scheduler keeps injecting CRM faults (answers slower than the read timeout,
429 storms with Retry-After, 5xx bursts) and `--concurrency` simulated users run the placeholder flow:
GET /contact (unknown number) -> POST /contact -> POST /callLog. A step that fails is retried the way a user
retries in the client (bounded: `--retries`, `--retry-pause`); a POST /callLog answered "Existing log" is
checked with GET /callLog, as the client shows the call as logged only when it is matched. When the time is
up, faults stop and every flow not finished is retried for `--settle` seconds (longer than the server's stale
window). Then the CRM is read directly and the script prints:

* requests served (HTTP answers of the connector server) and errors by kind;
* duplicates: contacts per number beyond one, activities per call session beyond one (must be 0);
* logs lost: a flow whose POST /callLog said success but whose activity is not in the CRM, or whose call was
  never logged after all retries (must be 0).

Exit status 1 when duplicates or lost logs are > 0. It never asserts on times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOSTNAME = "testcrm.local"


# --- the processes ------------------------------------------------------------------------------------------


#: the soak CRM's own admin token: key minting and fault injection need it
CRM_ADMIN_TOKEN = "soak-admin-token"


def serve_crm(port: int, database_url: str) -> None:
    """`--serve-crm`: the test CRM alone, mounted under /testcrm as in the connector server."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from appconnect.embedded_crm.app import create_testcrm_app

    crm = create_testcrm_app(database_url, fault_injection=True, admin_token=CRM_ADMIN_TOKEN)
    app = Starlette(routes=[Mount("/testcrm", app=crm)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """This environment without server settings, plus `extra`: the child is configured here alone."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPCONNECT_", "TESTCRM_", "PIPEDRIVE_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


class Child:
    """A subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise SystemExit(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code < 500:
                        return
                if time.monotonic() > deadline:
                    raise SystemExit(f"{self.name} not ready within {timeout} s:\n{self.log_tail()}")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


# --- the chaos proxy ----------------------------------------------------------------------------------------


class ChaosProxy:
    """TCP proxy to the CRM that resets a share of its connections (RST, no goodbye) at a random moment."""

    def __init__(self, upstream_port: int, cut_share: float, rng: random.Random) -> None:
        self.upstream_port = upstream_port
        self.cut_share = cut_share
        self.rng = rng
        self.enabled = True
        self.connections = 0
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), 5
            )
        except (OSError, TimeoutError):
            self._reset(writer)
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(OSError):
                sink.close()

        pipes = [asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))]
        for task in pipes:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.enabled and self.rng.random() < self.cut_share:
            # anywhere from before the first request to the middle of a later one on this kept-alive connection
            await asyncio.wait(pipes, timeout=self.rng.uniform(0.0, 3.0))
            if not all(task.done() for task in pipes):
                self.cuts += 1
                self._reset(writer)
                self._reset(up_writer)
        await asyncio.gather(*pipes, return_exceptions=True)


# --- CRM faults -------------------------------------------------------------------------------------------

TARGETS = [("GET", "/api/v1/contacts"), ("POST", "/api/v1/contacts"), ("POST", "/api/v1/activities")]


async def fault_scheduler(
    crm: httpx.AsyncClient, stop: asyncio.Event, interval: float, read_timeout: float, rng: random.Random
) -> Counter[str]:
    """Every `interval` seconds, one more fault rule in the CRM: slow, 429 storm, or 5xx burst."""
    injected: Counter[str] = Counter()
    while not stop.is_set():
        method, path = rng.choice(TARGETS)
        kind = rng.choice(["slow", "429", "5xx"])
        rule: dict[str, Any] = {"method": method, "path_prefix": path}
        if kind == "slow":  # the CRM finishes after the server gave up: an unknown outcome for writes
            rule.update(delay_seconds=read_timeout + rng.uniform(0.2, 1.5), times=1)
        elif kind == "429":
            rule.update(status=429, retry_after=1, times=rng.randint(2, 6))
        else:
            rule.update(status=rng.choice([500, 502, 503, 504]), times=rng.randint(1, 4))
        with contextlib.suppress(httpx.HTTPError):
            if (await crm.post("/testcrm/api/_faults", json=rule)).status_code in (200, 201):
                injected[f"{kind} {method} {path}"] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    return injected


# --- the simulated users ------------------------------------------------------------------------------------


@dataclass
class Agent:
    jwt: str
    crm_key: str


@dataclass
class Flow:
    phone: str
    session: str
    agent: Agent
    contact_id: str | None = None
    log_claimed: str | None = None  # logId of a POST /callLog that said successful
    matched: bool = False  # GET /callLog said matched

    @property
    def logged(self) -> bool:
        return self.log_claimed is not None or self.matched


@dataclass
class Stats:
    served: int = 0
    no_answer: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    started_flows: int = 0
    finished_in_load: int = 0


class Users:
    """The client's side: requests, a user's retries, and the error tally."""

    def __init__(self, http: httpx.AsyncClient, stats: Stats, retries: int, pause: float) -> None:
        self.http = http
        self.stats = stats
        self.retries = retries
        self.pause = pause

    async def request(
        self, step: str, method: str, url: str, jwt: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        """One request; None when it failed (counted by kind)."""
        headers = {"Authorization": f"Bearer {jwt}"}
        try:
            response = await self.http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            self.stats.no_answer += 1
            self.stats.errors[f"{step}: no answer ({type(exc).__name__})"] += 1
            return None
        self.stats.served += 1
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            self.stats.errors[f"{step}: HTTP {response.status_code}"] += 1
            return None
        if body.get("successful") is not True:
            message = (body.get("returnMessage") or {}).get("message") or "no message"
            text = str(message).split(" for session ")[0]  # "Existing log for session X" -> one kind
            self.stats.errors[f"{step}: {text[:60]}"] += 1
        return body

    async def lookup(self, flow: Flow) -> None:
        for _ in range(self.retries):
            body = await self.request(
                "GET /contact", "GET", "/contact", flow.agent.jwt, params={"phoneNumber": flow.phone}
            )
            if body is not None and body.get("successful") is True:
                return
            await asyncio.sleep(self.pause)

    async def create_contact(self, flow: Flow) -> None:
        payload = {"phoneNumber": flow.phone, "newContactName": "Soak Caller", "newContactType": "contact"}
        for _ in range(self.retries):
            body = await self.request("POST /contact", "POST", "/contact", flow.agent.jwt, json=payload)
            contact = (body or {}).get("contact")
            if body is not None and body.get("successful") is True and isinstance(contact, dict):
                flow.contact_id = str(contact["id"])
                return
            await asyncio.sleep(self.pause)

    async def log_call(self, flow: Flow) -> None:
        assert flow.contact_id is not None
        payload = call_log_body(flow)
        for _ in range(self.retries):
            body = await self.request("POST /callLog", "POST", "/callLog", flow.agent.jwt, json=payload)
            if body is not None and body.get("successful") is True:
                flow.log_claimed = str(body.get("logId"))
                return
            if body is not None and await self.is_matched(flow):
                return  # "Existing log": the client shows it logged once GET /callLog matches it
            await asyncio.sleep(self.pause)

    async def is_matched(self, flow: Flow) -> bool:
        body = await self.request(
            "GET /callLog", "GET", "/callLog", flow.agent.jwt, params={"sessionIds": flow.session}
        )
        logs = (body or {}).get("logs") or [{}]
        flow.matched = bool(logs[0].get("matched"))
        return flow.matched

    async def run(self, flow: Flow) -> None:
        if flow.contact_id is None:
            await self.lookup(flow)
            await self.create_contact(flow)
        if flow.contact_id is not None and not flow.logged:
            await self.log_call(flow)


def call_log_body(flow: Flow) -> dict[str, Any]:
    return {
        "logInfo": {
            "sessionId": flow.session,
            "id": f"call-{flow.session}",
            "telephonySessionId": f"t-{flow.session}",
            "direction": "Inbound",
            "startTime": "2026-11-25T10:00:00.000Z",
            "duration": 95,
            "result": "Call connected",
            "from": {"phoneNumber": flow.phone, "name": "Caller"},
            "to": {"phoneNumber": "+16505550000", "name": "Agent"},
        },
        "contactId": flow.contact_id,
        "contactName": "Soak Caller",
        "contactType": "contact",
        "note": "soak note",
        "additionalSubmission": {},
    }


# --- the run -------------------------------------------------------------------------------------------------


async def make_agents(server: httpx.AsyncClient, crm: httpx.AsyncClient, count: int) -> list[Agent]:
    """Test-CRM users logged in to the server (retried: the proxy may cut the login's CRM call too)."""
    agents = []
    for index in range(count):
        key = (await crm.post("/testcrm/api/v1/api-keys", json={"name": f"Soak {index}"})).json()["apiKey"]
        for _ in range(20):
            with contextlib.suppress(httpx.HTTPError):
                response = await server.post(
                    "/apiKeyLogin",
                    json={"platform": "testcrm", "apiKey": key, "hostname": HOSTNAME},
                    headers={"rc-account-id": f"soak-{uuid.uuid4().hex}"},
                )
                if response.status_code == 200 and response.json().get("jwtToken"):
                    agents.append(Agent(response.json()["jwtToken"], key))
                    break
            await asyncio.sleep(0.5)
        else:
            raise SystemExit("could not log an agent in")
    return agents


@dataclass
class Verdict:
    flows: int = 0
    logged: int = 0
    duplicate_contacts: int = 0
    duplicate_activities: int = 0
    lost_claimed: int = 0
    lost_never_logged: int = 0
    no_contact: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.duplicate_contacts + self.duplicate_activities

    @property
    def lost(self) -> int:
        return self.lost_claimed + self.lost_never_logged


async def verify(crm: httpx.AsyncClient, flows: list[Flow]) -> Verdict:
    """What the CRM really holds, read directly (not through the proxy)."""
    verdict = Verdict(flows=len(flows))
    for flow in flows:
        auth = (flow.agent.crm_key, "")
        contacts = (
            await crm.get("/testcrm/api/v1/contacts", params={"phone": flow.phone}, auth=auth)
        ).json()["data"]
        activities: list[dict[str, Any]] = []
        for contact in contacts:
            found = await crm.get(
                "/testcrm/api/v1/activities", params={"contact_id": contact["id"]}, auth=auth
            )
            activities += [a for a in found.json()["data"] if a.get("kind") == "call"]
        verdict.duplicate_contacts += max(0, len(contacts) - 1)
        verdict.duplicate_activities += max(0, len(activities) - 1)
        if len(contacts) > 1 or len(activities) > 1:
            verdict.samples.append(f"{flow.session}: {len(contacts)} contacts, {len(activities)} activities")
        if flow.logged:
            verdict.logged += 1
        if flow.log_claimed is not None and flow.log_claimed not in {str(a["id"]) for a in activities}:
            verdict.lost_claimed += 1
            verdict.samples.append(f"{flow.session}: said logged as {flow.log_claimed}, not in the CRM")
        elif not flow.logged:
            verdict.lost_never_logged += 1
            if flow.contact_id is None:
                verdict.no_contact += 1
            verdict.samples.append(f"{flow.session}: never logged (contact {flow.contact_id})")
    return verdict


async def soak(args: argparse.Namespace, workdir: Path) -> int:
    rng = random.Random(args.seed)
    crm_port = free_port()
    crm_proc = Child(
        "crm",
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-crm",
            str(crm_port),
            f"sqlite+aiosqlite:///{workdir / 'crm.sqlite3'}",
        ],
        child_env(),
        workdir,
    )
    proxy = ChaosProxy(crm_port, args.cut_share, rng)
    server_proc: Child | None = None
    try:
        await crm_proc.wait_ready(f"http://127.0.0.1:{crm_port}/testcrm/api/_stats")
        await proxy.start()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'appconnect.sqlite3'}"
        server_proc = Child(
            "server",
            [
                sys.executable,
                "-m",
                "appconnect.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--database-url",
                database_url,
            ],
            child_env(
                APPCONNECT_KEY_FILE=str(workdir / "keys.json"),
                APPCONNECT_PUBLIC_URL=base,
                APPCONNECT_EMBEDDED_TESTCRM="false",
                APPCONNECT_TESTCRM_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'unused-testcrm.sqlite3'}",
                APPCONNECT_CRM_READ_TIMEOUT=str(args.read_timeout),
                APPCONNECT_CRM_CONNECT_TIMEOUT="2",
                APPCONNECT_LOCK_WAIT_SECONDS=str(args.lock_wait),
                APPCONNECT_DATABASE_POOL_SIZE=str(args.pool_size),
                APPCONNECT_LOG_LEVEL="warning",
                TESTCRM_BASE_URL=f"http://127.0.0.1:{proxy.port}/testcrm/api/v1",
            ),
            workdir,
        )
        await server_proc.wait_ready(f"{base}/isAlive", timeout=90)
        limits = httpx.Limits(max_connections=args.concurrency * 2, keepalive_expiry=2)
        async with (
            httpx.AsyncClient(base_url=base, timeout=args.client_timeout, limits=limits) as server,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{crm_port}",
                timeout=30,
                headers={"Authorization": f"Bearer {CRM_ADMIN_TOKEN}"},
            ) as crm,
        ):
            agents = await make_agents(server, crm, args.agents)
            stats = Stats()
            users = Users(server, stats, args.retries, args.retry_pause)
            flows: list[Flow] = []
            run_id = uuid.uuid4().hex[:8]
            area = rng.randint(200, 989)
            stop = asyncio.Event()
            end = time.monotonic() + args.seconds

            async def user(index: int) -> None:
                while time.monotonic() < end:
                    number = len(flows)
                    flow = Flow(
                        f"+1{area}{number:07d}", f"soak-{run_id}-{number}", agents[index % len(agents)]
                    )
                    flows.append(flow)
                    stats.started_flows += 1
                    await users.run(flow)
                    stats.finished_in_load += flow.logged

            print(
                f"soak: {args.seconds:g} s, {args.workers} worker(s), {args.concurrency} users, "
                f"database {'PostgreSQL' if database_url.startswith('postgres') else 'SQLite'}",
                flush=True,
            )
            scheduler = asyncio.create_task(
                fault_scheduler(crm, stop, args.fault_interval, args.read_timeout, rng)
            )
            await asyncio.gather(*(user(i) for i in range(args.concurrency)))
            stop.set()
            injected = await scheduler

            # faults off; every unfinished flow is retried, as a user would, for `--settle` seconds
            proxy.enabled = False
            await crm.delete("/testcrm/api/_faults")
            settle_end = time.monotonic() + args.settle
            semaphore = asyncio.Semaphore(args.concurrency)

            async def retry(flow: Flow) -> None:
                async with semaphore:
                    await users.run(flow)

            while time.monotonic() < settle_end and not all(f.logged for f in flows):
                await asyncio.gather(*(retry(f) for f in flows if not f.logged))
                if not all(f.logged for f in flows):
                    await asyncio.sleep(2.0)
            verdict = await verify(crm, flows)
        report(args, stats, injected, proxy, verdict)
        return 1 if verdict.duplicates or verdict.lost else 0
    finally:
        await proxy.close()
        if server_proc is not None:
            server_proc.stop()
        crm_proc.stop()


def report(
    args: argparse.Namespace, stats: Stats, injected: Counter[str], proxy: ChaosProxy, v: Verdict
) -> None:
    print(f"requests served: {stats.served} (no answer: {stats.no_answer})")
    print(
        f"flows: {v.flows} started, {stats.finished_in_load} logged during the load, {v.logged} logged in the end"
    )
    print(
        f"faults injected: {sum(injected.values())} rules; proxy cut {proxy.cuts} of {proxy.connections} "
        "CRM connections"
    )
    for kind, count in sorted(injected.items()):
        print(f"  {count:5d}  {kind}")
    print("errors by kind (answers the client saw, before its retries):")
    for kind, count in stats.errors.most_common():
        print(f"  {count:5d}  {kind}")
    print(
        f"duplicates: {v.duplicates} (contacts beyond one per number: {v.duplicate_contacts}, "
        f"activities beyond one per session: {v.duplicate_activities})"
    )
    print(
        f"logs lost: {v.lost} (said logged but not in the CRM: {v.lost_claimed}, never logged after "
        f"retries: {v.lost_never_logged}, of which without a contact: {v.no_contact})"
    )
    for sample in v.samples[:10]:
        print(f"  e.g. {sample}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "workers": args.workers,
                    "concurrency": args.concurrency,
                    "requests_served": stats.served,
                    "no_answer": stats.no_answer,
                    "errors": dict(stats.errors),
                    "faults_injected": dict(injected),
                    "proxy_cuts": proxy.cuts,
                    "flows": v.flows,
                    "logged": v.logged,
                    "duplicate_contacts": v.duplicate_contacts,
                    "duplicate_activities": v.duplicate_activities,
                    "lost_claimed": v.lost_claimed,
                    "lost_never_logged": v.lost_never_logged,
                },
                indent=2,
            )
        )


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-crm":
        serve_crm(int(sys.argv[2]), sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument(
        "--database-url",
        help="server database (default a fresh SQLite file); e.g. "
        "postgresql+asyncpg://postgres@127.0.0.1:5432/soak (only migrated, never dropped)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="simultaneous users (default 8)")
    parser.add_argument("--agents", type=int, default=4, help="CRM users logged in (default 4)")
    parser.add_argument(
        "--read-timeout", type=float, default=2.0, help="server's CRM read timeout (default 2)"
    )
    parser.add_argument("--lock-wait", type=float, default=5.0, help="server's lock wait (default 5)")
    parser.add_argument(
        "--pool-size", type=int, default=5, help="database connections per worker (default 5)"
    )
    parser.add_argument("--fault-interval", type=float, default=0.5, help="seconds between fault rules")
    parser.add_argument("--cut-share", type=float, default=0.3, help="share of CRM connections reset (0.3)")
    parser.add_argument("--retries", type=int, default=4, help="attempts of a step by a user (default 4)")
    parser.add_argument("--retry-pause", type=float, default=1.0, help="seconds between attempts (default 1)")
    parser.add_argument("--client-timeout", type=float, default=30.0, help="client's wait for an answer")
    parser.add_argument(
        "--settle",
        type=float,
        default=45.0,
        help="after the load, seconds of retries of unfinished flows without faults (default 45)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and databases")
    args = parser.parse_args()
    if args.seconds <= 0 or args.concurrency < 1 or args.workers < 1 or args.agents < 1:
        parser.error("--seconds, --concurrency, --workers and --agents must be positive")
    workdir = Path(tempfile.mkdtemp(prefix="appconnect-soak-"))
    try:
        return asyncio.run(soak(args, workdir))
    finally:
        if args.keep_workdir:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Real processes for the fault tests: the connector server (`appconnect serve`), the test CRM on its own, and a
private throwaway PostgreSQL cluster. Each can be killed or restarted without touching anything shared."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import CrmView, crm_admin_headers
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment without its server settings (the suite's own are not the child's)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPCONNECT_", "TESTCRM_", "PIPEDRIVE_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _wait_alive(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class CrmProcess:
    """The test CRM served alone (see tests/faults/crm_server.py), with fault injection on."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.base_url}/testcrm/api/v1"
        self.log = folder / "crm.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.base_url, timeout=30, headers=crm_admin_headers())

    def start(self) -> CrmProcess:
        database = f"sqlite+aiosqlite:///{self.folder / 'crm.sqlite3'}"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.faults.crm_server",
                    "--port",
                    str(self.port),
                    "--database-url",
                    database,
                ],
                cwd=ROOT,
                env=_clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_alive(f"{self.base_url}/testcrm/api/_faults", self.process, self.log)
        return self

    def new_account(self) -> tuple[str, CrmView]:
        """A fresh CRM user: its API key and a view of what the CRM stores."""
        response = self.http.post("/testcrm/api/v1/api-keys", json={"name": f"Agent {uuid.uuid4().hex[:6]}"})
        assert response.status_code == 201, response.text
        key: str = response.json()["apiKey"]
        return key, CrmView(self.http, key)

    def requests_seen(self, route: str) -> int:
        """How many requests the CRM has received on `route` (e.g. "POST /api/v1/activities"), counted on
        arrival, before any injected delay: a positive change means the call is in flight."""
        response = self.http.get("/testcrm/api/_stats")
        assert response.status_code == 200, response.text
        count: int = response.json()["requests"].get(route, 0)
        return count

    def stop(self) -> None:
        _stop(self.process)
        self.http.close()


class ServerProcess:
    """`python -m appconnect.cli serve` talking to an external test CRM; restartable on the same database."""

    def __init__(
        self, folder: Path, database_url: str, crm: CrmProcess, *, workers: int = 1, **settings: str
    ):
        self.folder = folder
        self.database_url = database_url
        self.crm = crm
        self.workers = workers
        self.settings = settings
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        env = _clean_env(
            APPCONNECT_KEY_FILE=str(self.folder / "keys.json"),
            APPCONNECT_PUBLIC_URL=self.base_url,
            APPCONNECT_EMBEDDED_TESTCRM="false",
            APPCONNECT_TESTCRM_DATABASE_URL=f"sqlite+aiosqlite:///{self.folder / 'unused-testcrm.sqlite3'}",
            APPCONNECT_DATABASE_POOL_SIZE=os.environ.get("APPCONNECT_DATABASE_POOL_SIZE", "3"),
            APPCONNECT_LOG_LEVEL="warning",
            TESTCRM_BASE_URL=self.crm.api_url,
        )
        env.update(self.settings)  # may point TESTCRM_BASE_URL elsewhere, e.g. at a proxy
        command = [sys.executable, "-m", "appconnect.cli", "serve", "--port", str(self.port)]
        command += ["--workers", str(self.workers), "--database-url", self.database_url]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_alive(f"{self.base_url}/isAlive", self.process, self.log)
        return self

    def kill_hard(self) -> None:
        """`kill -9` of every process of the server: nothing gets to clean up."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        _stop(self.process)

    def login(self, crm_key: str, rc_account_id: str | None = None) -> str:
        response = httpx.post(
            f"{self.base_url}/apiKeyLogin",
            json={"platform": "testcrm", "apiKey": crm_key, "hostname": "testcrm.local"},
            headers={"rc-account-id": rc_account_id or f"acct-{uuid.uuid4().hex}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["jwtToken"]
        return token


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of this test alone (never the shared one on 5432): initdb into a temp
    folder owned by the `postgres` OS user when running as root, trust auth on loopback, a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="appconnect-faults-pg-"))
        self.data = self.folder / "data"
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0

    @staticmethod
    def available() -> str | None:
        """None when a private cluster can be made here, else why not."""
        if not (PG_BIN / "initdb").exists():
            return f"no PostgreSQL binaries in {PG_BIN}"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser: initdb refuses root"
        return None

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.decode(errors='replace')[-2000:]}")

    def start(self) -> PrivatePostgres:
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40"
        log = str(self.folder / "postgres.log")
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "30", "-l", log, "-o", options, *extra)

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server is back a moment later."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(self.folder, ignore_errors=True)

"""`appconnect serve --workers 2` as real processes: a supervisor without the application's libraries, a worker
killed with -9 is replaced while the other keeps answering, SIGTERM lets an in-flight request finish and every
process exit, a busy port is one clear line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import call_log_body, new_phone
from tests.faults.conftest import bearer, create_contact
from tests.faults.processes import ROOT, CrmProcess, ServerProcess

ACTIVITY_CREATE = "POST /api/v1/activities"


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def listens_on(pid: int, port: int) -> bool:
    """`pid` holds a TCP socket in LISTEN state on `port` (its fds' socket inodes against /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port and fields[9] in inodes:
            return True
    return False


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def answers_alive(base_url: str, times: int) -> None:
    """`times` requests, each on a new connection (so the kernel picks a worker for each): all answered."""
    for _ in range(times):
        assert httpx.get(f"{base_url}/isAlive", timeout=10).text == "OK"


@pytest.fixture
def two_workers(tmp_path: Path, crm_process: CrmProcess) -> Iterator[ServerProcess]:
    database = f"sqlite+aiosqlite:///{tmp_path / 'appconnect.sqlite3'}"
    server = ServerProcess(tmp_path, database, crm_process, workers=2)
    try:
        yield server.start()
    finally:
        server.stop()


def test_the_supervisor_module_imports_only_the_standard_library() -> None:
    """What the supervisor process runs (see the next test) pulls in no third-party package: no app, no
    SQLAlchemy, pydantic, cryptography, uvicorn."""
    probe = (
        "import json, sys; before = set(sys.modules); import appconnect.server.supervisor; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "src")))}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    loaded = json.loads(out.stdout)
    third_party = {name.split(".")[0] for name in loaded} - set(sys.stdlib_module_names) - {"appconnect"}
    assert not third_party, third_party
    ours = {name for name in loaded if name.startswith("appconnect")}
    assert ours <= {
        "appconnect",
        "appconnect.server",
        "appconnect.server.supervisor",
        "appconnect.server.sockets",
    }


def test_the_serve_process_becomes_the_supervisor_of_two_workers(two_workers: ServerProcess) -> None:
    assert two_workers.process is not None
    pid = two_workers.process.pid
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"appconnect.server.supervisor" in command
    wait_for(lambda: len(children(pid)) == 2, 20, "two workers")
    assert not listens_on(pid, two_workers.port)  # it only keeps the port; the workers accept
    for worker in children(pid):
        wait_for(lambda worker=worker: listens_on(worker, two_workers.port), 20, "each worker listens")


def test_a_worker_killed_with_9_is_replaced_and_requests_keep_being_answered(
    two_workers: ServerProcess,
) -> None:
    assert two_workers.process is not None
    supervisor = two_workers.process.pid
    wait_for(lambda: len(children(supervisor)) == 2, 20, "two workers")
    first, second = children(supervisor)
    wait_for(lambda: listens_on(first, two_workers.port) and listens_on(second, two_workers.port), 20, "up")

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: first not in children(supervisor), 10, "the killed worker is reaped")
    answers_alive(two_workers.base_url, 20)  # the other worker answers meanwhile
    wait_for(lambda: len(children(supervisor)) == 2, 30, "a replacement is started")
    (replacement,) = set(children(supervisor)) - {second}
    wait_for(lambda: listens_on(replacement, two_workers.port), 30, "the replacement listens")

    os.kill(second, signal.SIGKILL)  # now the replacement is the one answering
    wait_for(lambda: second not in children(supervisor), 10, "the second killed worker is reaped")
    answers_alive(two_workers.base_url, 20)
    key, _crm = two_workers.crm.new_account()
    jwt = two_workers.login(key)
    found = httpx.get(
        f"{two_workers.base_url}/contact",
        params={"phoneNumber": new_phone()},
        headers=bearer(jwt),
        timeout=30,
    )
    assert found.json()["successful"] is True
    assert two_workers.process.poll() is None


@pytest.mark.parametrize("to_group", [True, False], ids=["whole-process-group", "supervisor-only"])
def test_sigterm_lets_an_in_flight_call_log_finish_and_every_process_exit(
    two_workers: ServerProcess, crm_process: CrmProcess, to_group: bool
) -> None:
    key, crm = crm_process.new_account()
    jwt = two_workers.login(key)
    phone = new_phone()
    contact = create_contact(two_workers.base_url, jwt, phone).json()["contact"]["id"]
    crm.inject(delay_seconds=1.5, times=1, method="POST", path_prefix="/api/v1/activities")
    before = crm_process.requests_seen(ACTIVITY_CREATE)
    outcome: list[object] = []

    def send() -> None:
        try:
            body = call_log_body(f"term-{phone}", contact, phone)
            outcome.append(
                httpx.post(
                    f"{two_workers.base_url}/callLog", json=body, headers=bearer(jwt), timeout=30
                ).json()
            )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: crm_process.requests_seen(ACTIVITY_CREATE) > before, 20, "the create reached the CRM")
    assert two_workers.process is not None
    supervisor = two_workers.process.pid
    processes = [supervisor, *children(supervisor)]
    assert len(processes) == 3
    if to_group:
        os.killpg(supervisor, signal.SIGTERM)  # what a service manager does
    else:
        os.kill(supervisor, signal.SIGTERM)
    sender.join(30)
    assert isinstance(outcome[0], dict) and outcome[0]["successful"] is True, outcome
    two_workers.process.wait(30)
    wait_for(lambda: not any(running(pid) for pid in processes), 10, "every process exits")


def test_a_busy_port_is_one_clear_line(tmp_path: Path, crm_process: CrmProcess) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        database = f"sqlite+aiosqlite:///{tmp_path / 'appconnect.sqlite3'}"
        server = ServerProcess(tmp_path, database, crm_process, workers=2)
        server.port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="did not come up"):
            server.start()
        assert server.process is not None
        assert server.process.wait(30) == 2
    lines = [line for line in server.log.read_text().splitlines() if line.startswith("appconnect: ")]
    assert lines == [f"appconnect: cannot listen on 127.0.0.1:{server.port}: Address already in use"], lines

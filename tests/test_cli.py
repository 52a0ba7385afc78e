"""`appconnect serve` and `appconnect migrate` as an operator runs them: bad settings and unreachable databases
are one clear line (no traceback, no password), the README's first command works as documented."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.conftest import POSTGRES_URL, postgres_reachable, postgres_unavailable
from tests.support.ports import free_port
from tests.support.served import wait_until_alive

APPCONNECT = str(Path(sys.executable).with_name("appconnect"))
PASSWORD = "Sup3r-s3cret-pw"
INFO_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO ")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the suite's own settings, as on a fresh machine."""
    prefixes = ("APPCONNECT_", "TESTCRM_", "PIPEDRIVE_", "DATABASE_URL", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, **extra}


def run(args: list[str], folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [APPCONNECT, *args], cwd=folder, env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode != 0
    # `serve` logs its progress at INFO (alembic's steps); everything else is the one line
    lines = [line for line in result.stderr.strip().splitlines() if not INFO_LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("appconnect: ") and "Traceback" not in result.stderr
    for text in expected:
        assert text in line, line
    assert PASSWORD not in result.stderr + result.stdout
    return line


def closed_port_url(scheme: str = "postgresql") -> tuple[str, int]:
    port = free_port()  # nothing listens there once the probe socket is closed
    return f"{scheme}://appconnect:{PASSWORD}@127.0.0.1:{port}/appdb", port


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["serve", "--port", "99999"], {}, "APPCONNECT_PORT"),
        (["serve", "--port", "0"], {}, "APPCONNECT_PORT"),
        (["serve", "--workers", "0"], {}, "APPCONNECT_WORKERS"),
        (["migrate"], {"APPCONNECT_PORT": "70000"}, "APPCONNECT_PORT"),
        (["migrate"], {"APPCONNECT_WORKERS": "-1"}, "APPCONNECT_WORKERS"),
        (["migrate"], {"APPCONNECT_DATABASE_POOL_SIZE": "0"}, "APPCONNECT_DATABASE_POOL_SIZE"),
        (["serve"], {"APPCONNECT_LOG_LEVEL": "verbose"}, "APPCONNECT_LOG_LEVEL"),
        (["migrate"], {"APPCONNECT_LOG_LEVEL": "verbose"}, "APPCONNECT_LOG_LEVEL"),
        (["serve"], {"APPCONNECT_LOG_FORMAT": "xml"}, "APPCONNECT_LOG_FORMAT"),
        (
            ["serve"],
            {"APPCONNECT_RINGCENTRAL_SERVER": "platform.ringcentral.com"},
            "APPCONNECT_RINGCENTRAL_SERVER",
        ),
    ],
)
def test_out_of_range_settings_are_refused_in_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    result = run(args, tmp_path, **env)
    assert_one_clear_line(result, named, "invalid setting")
    assert not (tmp_path / "appconnect.sqlite3").exists()


def test_migrate_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url, port = closed_port_url()
    assert_one_clear_line(run(["migrate", "--database-url", url], tmp_path), f"127.0.0.1:{port}/appdb")


def test_migrate_with_bad_credentials_is_one_line(tmp_path: Path) -> None:
    if not postgres_reachable():
        postgres_unavailable("PostgreSQL not reachable")
    from sqlalchemy.engine import make_url

    server = make_url(POSTGRES_URL)
    url = f"postgresql://no_such_role_ops:{PASSWORD}@{server.host}:{server.port or 5432}/appdb"
    line = assert_one_clear_line(
        run(["migrate", "--database-url", url], tmp_path), "/appdb", "no_such_role_ops"
    )
    assert "cannot migrate" in line


def test_serve_auto_migrate_failure_is_one_line(tmp_path: Path) -> None:
    url, port = closed_port_url()
    result = run(["serve", "--port", str(free_port()), "--database-url", url], tmp_path)
    assert_one_clear_line(result, f"127.0.0.1:{port}/appdb")
    # the connection budget is printed before anything else happens
    assert "1 worker(s) x (5 pool + 5 overflow) = 10 database connections at most" in result.stdout


def test_serve_refuses_more_connections_than_the_maximum(tmp_path: Path) -> None:
    url, _port = closed_port_url()
    result = run(["serve", "--database-url", url], tmp_path, APPCONNECT_WORKERS="6")
    assert_one_clear_line(result, "= 60 database connections", "APPCONNECT_DATABASE_MAX_CONNECTIONS=50")
    allowed = run(
        ["serve", "--database-url", url],
        tmp_path,
        APPCONNECT_WORKERS="6",
        APPCONNECT_DATABASE_MAX_CONNECTIONS="60",
    )
    assert "cannot migrate" in allowed.stderr  # past the budget check, stopped by the unreachable database


def test_an_explicit_test_crm_on_a_public_url_is_announced_loudly(tmp_path: Path) -> None:
    result = run(
        ["serve", "--database-url", f"sqlite:///{tmp_path / 'missing' / 'app.sqlite3'}"],
        tmp_path,
        APPCONNECT_EMBEDDED_TESTCRM="true",
        APPCONNECT_PUBLIC_URL="https://demo.example.com",
    )
    assert "WARNING: the embedded test CRM is ON" in result.stderr
    assert "https://demo.example.com/testcrm" in result.stderr


def test_migrate_tightens_an_existing_world_readable_sqlite_file(tmp_path: Path) -> None:
    database = tmp_path / "appconnect.sqlite3"
    database.touch(mode=0o644)
    os.chmod(database, 0o644)
    result = run(["migrate", "--database-url", f"sqlite:///{database}"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


def test_the_readme_first_command_serves_the_test_crm_on_loopback(tmp_path: Path) -> None:
    """`appconnect serve` with no settings: loopback, test CRM on, demo key works, files private."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    old_umask = os.umask(0o022)
    try:
        process = subprocess.Popen(
            [APPCONNECT, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        os.umask(old_umask)
    try:
        wait_until_alive(base, process, 30)
        with httpx.Client(base_url=base, timeout=10) as client:
            assert (
                "testcrm"
                in client.get("/crmManifest", params={"platformName": "testcrm"}).json()["platforms"]
            )
            login = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": "testcrm-demo-key"})
            assert login.status_code == 200 and login.json()["jwtToken"]
            jwt = login.json()["jwtToken"]
            found = client.get(
                "/contact", params={"phoneNumber": "+14155550123"}, headers={"Authorization": f"Bearer {jwt}"}
            )
            assert found.json()["successful"] is True
            assert client.post("/testcrm/api/v1/api-keys", json={"name": "Local"}).status_code == 201
            assert client.get("/testcrm/").status_code == 200
        files = [
            "appconnect.sqlite3",
            "appconnect.sqlite3-wal",
            "testcrm.sqlite3",
            "testcrm.sqlite3-wal",
            ".appconnect-keys.json",
        ]
        for name in files:
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        for shared_memory in tmp_path.glob("*-shm"):
            assert stat.S_IMODE(shared_memory.stat().st_mode) == 0o600, shared_memory.name
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert "WARNING: the embedded test CRM" not in output
    assert f"manifest: {base}/crmManifest?platformName=testcrm" in output


def test_version_is_the_package_version() -> None:
    import appconnect

    result = subprocess.run([APPCONNECT, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"appconnect {appconnect.__version__}"
    # one source: pyproject.toml takes the version from the package, it does not write its own
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]


def test_help_names_the_environment_variable_behind_each_flag() -> None:
    for command in ("serve", "migrate"):
        result = subprocess.run(
            [APPCONNECT, command, "--help"], capture_output=True, text=True, timeout=60, env=clean_env()
        )
        assert result.returncode == 0, result.stderr
        options = result.stdout[result.stdout.index("options:") :]
        text = " ".join(options.split())  # argparse wraps lines
        flags = re.findall(r"^\s+(--[a-z-]+)", options, flags=re.MULTILINE)
        assert "--database-url" in flags
        for flag in flags:
            if flag == "--help":
                continue
            described = text[text.index(flag + " ") :]
            assert re.match(rf"{flag} [^[]*\[env APPCONNECT_[A-Z_]+", described), (flag, result.stdout)
        assert "[env APPCONNECT_LOG_LEVEL]" in text and "[env APPCONNECT_LOG_FORMAT]" in text


def test_a_bad_log_level_flag_is_refused_without_a_traceback(tmp_path: Path) -> None:
    result = run(["serve", "--log-level", "verbose"], tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'verbose'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "appconnect.sqlite3").exists()


def test_log_flags_override_the_environment(tmp_path: Path) -> None:
    """`--log-level info --log-format json` win over APPCONNECT_LOG_LEVEL=error: the access line is JSON."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "stderr.log"
    with log_file.open("wb") as stderr:
        process = subprocess.Popen(
            [APPCONNECT, "serve", "--port", str(port), "--log-level", "info", "--log-format", "json"],
            cwd=tmp_path,
            env=clean_env(APPCONNECT_LOG_LEVEL="error", APPCONNECT_ACCESS_LOG="true"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_until_alive(base, process, 30)
        request_id = httpx.get(f"{base}/serverVersionInfo").headers["x-request-id"]
    finally:
        process.terminate()
        process.wait(20)
    entries = [json.loads(line) for line in log_file.read_text().splitlines()]
    (access,) = [e for e in entries if e.get("request_id") == request_id]
    assert access["logger"] == "appconnect.access" and access["route"] == "/serverVersionInfo"


def test_the_test_crm_warning_is_a_json_line_in_json_mode(tmp_path: Path) -> None:
    result = run(
        [
            "serve",
            "--database-url",
            f"sqlite:///{tmp_path / 'missing' / 'app.sqlite3'}",
            "--log-format",
            "json",
        ],
        tmp_path,
        APPCONNECT_EMBEDDED_TESTCRM="true",
        APPCONNECT_PUBLIC_URL="https://demo.example.com",
    )
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith("WARNING")]  # not printed as a plain line
    # (a failed migration may also leave a thread's traceback from aiosqlite, printed by Python, not logged)
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert any("WARNING: the embedded test CRM is ON" in e["message"] for e in entries), result.stderr

"""The suite's own PostgreSQL handling: it creates and drops only its own databases, never empties the one it
is pointed at, and skips (not errors) when it cannot connect, except on CI."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import (
    POSTGRES_URL,
    TEST_DATABASE_PREFIX,
    postgres_reachable,
    postgres_unavailable,
    reset_postgres,
)

ROOT = Path(__file__).resolve().parent.parent
ONE_TEST = "tests/security/test_session_revocation.py::test_the_server_signs_exp_and_iat"


def run_suite(postgres_url: str, *, ci: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["APPCONNECT_TEST_POSTGRES_URL"] = postgres_url
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", ONE_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def admin(sql: str, url: str = POSTGRES_URL) -> list[str]:
    import asyncpg

    async def execute() -> list[str]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
        try:
            return [str(row[0]) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(execute())


def test_reset_refuses_a_database_the_suite_did_not_create() -> None:
    with pytest.raises(RuntimeError, match="did not create"):
        reset_postgres("postgresql+asyncpg://postgres@127.0.0.1:5432/production")


def test_no_postgres_means_skipped_locally_and_failed_on_ci() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"postgresql+asyncpg://postgres@127.0.0.1:{probe.getsockname()[1]}/postgres"
    local = run_suite(closed)
    assert local.returncode == 0, local.stdout
    assert "1 passed, 1 skipped" in local.stdout
    on_ci = run_suite(closed, ci=True)
    assert on_ci.returncode != 0
    assert "CI must test PostgreSQL" in on_ci.stdout


def test_too_many_clients_at_connect_is_a_skip() -> None:
    if not postgres_reachable():
        postgres_unavailable("PostgreSQL not reachable")
    role = f"appconnect_test_limited_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    try:
        limited = make_url(POSTGRES_URL).set(username=role, password=None)
        result = run_suite(limited.render_as_string(hide_password=False))
    finally:
        admin(f"DROP ROLE {role}")
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped" in result.stdout
    assert "TooManyConnections" in result.stdout


def test_the_suite_leaves_the_configured_database_and_others_alone() -> None:
    if not postgres_reachable():
        postgres_unavailable("PostgreSQL not reachable")
    marker = f"ops_marker_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE TABLE public.{marker} (id int)")
    before = set(admin("SELECT datname FROM pg_database"))
    try:
        result = run_suite(POSTGRES_URL)
        assert result.returncode == 0, result.stdout
        assert "2 passed" in result.stdout
        after = set(admin("SELECT datname FROM pg_database"))
        assert admin(f"SELECT count(*) FROM public.{marker}") == ["0"]  # not dropped with its schema
    finally:
        admin(f"DROP TABLE IF EXISTS public.{marker}")
    # every database it created is gone again; the one it was pointed at is still there
    assert not {name for name in after - before if name.startswith(TEST_DATABASE_PREFIX)}
    assert make_url(POSTGRES_URL).database in after

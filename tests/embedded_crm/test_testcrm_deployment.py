"""The embedded test CRM as a deployment serves it: no test tooling exposed, and PostgreSQL works too."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appconnect.api.app import create_app
from appconnect.embedded_crm import create_testcrm_app
from appconnect.store.migrate import upgrade
from tests.conftest import POSTGRES_URL, make_settings, postgres_reachable
from tests.support.app_server import run_app
from tests.support.live_server import serve_asgi


def test_fault_injection_is_not_served_unless_enabled(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.sqlite3'}"
    upgrade(url)

    def build(base: str) -> object:
        os.environ["TESTCRM_BASE_URL"] = f"{base}/testcrm/api/v1"
        return create_app(make_settings(tmp_path, url, public_url=base, testcrm_fault_injection=False))

    with run_app(build) as base, httpx.Client(base_url=base) as client:
        assert client.post("/testcrm/api/_faults", json={"status": 500}).status_code in (404, 405)
        assert client.get("/testcrm/api/v1/me", auth=("testcrm-demo-key", "")).status_code == 200


def _database(name: str) -> Iterator[str]:
    import asyncpg

    admin = POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"DROP DATABASE IF EXISTS {name}"))
    asyncio.run(run(f"CREATE DATABASE {name}"))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def testcrm_postgres_url() -> Iterator[str]:
    if not postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 but CI must test it")
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (runs on CI)")
    yield from _database("appconnect_testcrm_pg")


def test_the_test_crm_runs_on_postgresql(testcrm_postgres_url: str) -> None:
    app = create_testcrm_app(testcrm_postgres_url, seed_api_key="seed-key")
    with serve_asgi(app, lifespan="on") as base, httpx.Client(base_url=base) as client:
        created = client.post("/api/v1/api-keys", json={"name": "Second agent"})
        assert created.status_code == 201, created.text
        second = created.json()["apiKey"]
        assert client.get("/api/v1/me", auth=("seed-key", "")).json()["name"] == "Test CRM User"
        contact = client.post(
            "/api/v1/contacts",
            auth=(second, ""),
            json={"name": "Pg Person", "type": "lead", "phones": [{"number": "+14155550177"}]},
        )
        assert contact.status_code == 201, contact.text
        found = client.get("/api/v1/contacts", params={"phone": "+14155550177"}, auth=("seed-key", "")).json()
        assert [c["name"] for c in found["data"]] == ["Pg Person"]

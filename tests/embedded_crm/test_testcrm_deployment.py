"""The embedded test CRM as a deployment serves it: no test tooling exposed, and PostgreSQL works too."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from appconnect.api.app import create_app
from appconnect.embedded_crm import create_testcrm_app, schema
from appconnect.embedded_crm.store import hash_key
from appconnect.store.migrate import upgrade
from tests.conftest import TESTCRM_ADMIN_TOKEN, create_test_database, make_settings
from tests.support.app_server import run_app
from tests.support.live_server import serve_asgi


def test_fault_injection_is_not_served_unless_enabled(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.sqlite3'}"
    upgrade(url)

    def build(base: str) -> object:
        os.environ["TESTCRM_BASE_URL"] = f"{base}/testcrm/api/v1"
        return create_app(make_settings(tmp_path, url, public_url=base, testcrm_fault_injection=False))

    with run_app(build) as base, httpx.Client(base_url=base) as client:
        admin = {"Authorization": f"Bearer {TESTCRM_ADMIN_TOKEN}"}
        assert client.post("/testcrm/api/_faults", json={"status": 500}, headers=admin).status_code in (
            404,
            405,
        )
        assert client.get("/testcrm/api/v1/me", auth=("testcrm-demo-key", "")).status_code == 200


@pytest.fixture
def testcrm_postgres_url() -> str:
    """A database of the suite's own (skips without PostgreSQL, fails on CI)."""
    return create_test_database()


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
        found = client.get("/api/v1/contacts", params={"phone": "+14155550177"}, auth=(second, "")).json()
        assert [c["name"] for c in found["data"]] == ["Pg Person"]
        # one key, one account: the seed key's account does not see the second agent's contact
        other = client.get("/api/v1/contacts", params={"phone": "+14155550177"}, auth=("seed-key", "")).json()
        assert other == {"data": []}


def _old_metadata() -> sa.MetaData:
    """The test CRM's tables before accounts: activities without `owner_id`, `external_id` unique."""
    old = sa.MetaData()
    for table in (schema.users, schema.api_keys, schema.contacts, schema.contact_phones):
        table.to_metadata(old)
    sa.Table(
        "activities",
        old,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("direction", sa.String(20), nullable=True),
        sa.Column("duration_seconds", sa.Integer, nullable=True),
        sa.Column("started_at", sa.String(40), nullable=True),
        sa.Column("disposition", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("external_id", sa.String(255), nullable=True, unique=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    schema.faults.to_metadata(old)
    return old


async def _write_old_database(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_old_metadata().create_all)
            stamp = "2026-01-01T00:00:00.000Z"
            user = {"timezone_name": "UTC", "timezone_offset": "+00:00", "created_at": stamp}
            await conn.execute(
                schema.users.insert(), [{"id": 1, "name": "A", **user}, {"id": 2, "name": "B", **user}]
            )
            await conn.execute(
                schema.api_keys.insert(),
                [
                    {"key_hash": hash_key("old-key-a"), "user_id": 1, "created_at": stamp},
                    {"key_hash": hash_key("old-key-b"), "user_id": 2, "created_at": stamp},
                ],
            )
            contact = {"type": "contact", "created_at": stamp, "updated_at": stamp}
            await conn.execute(
                schema.contacts.insert(),
                [
                    {"id": 1, "name": "Of A", "owner_id": 1, **contact},
                    {"id": 2, "name": "Of B", "owner_id": 2, **contact},
                ],
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO activities (id, contact_id, kind, subject, body, external_id, created_at, updated_at)"
                    " VALUES (1, 1, 'call', 'Old A', '', 'call:old:1', :s, :s), (2, 2, 'call', 'Old B', '', NULL, :s, :s)"
                ),
                {"s": stamp},
            )
            if (
                conn.dialect.name == "postgresql"
            ):  # explicit ids: the sequences move past them, as a real one had
                for table in ("users", "contacts", "activities"):
                    await conn.execute(sa.text(f"SELECT setval('{table}_id_seq', 10)"))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_test_crm_database_from_before_accounts_is_upgraded_at_start(backend: str, tmp_path: Path) -> None:
    """Old activities get their contact's account; external_id stops being unique; nothing is lost."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}" if backend == "sqlite" else create_test_database()
    asyncio.run(_write_old_database(url))
    app = create_testcrm_app(url, seed_api_key="seed-key")
    with serve_asgi(app, lifespan="on") as base, httpx.Client(base_url=f"{base}/api/v1") as client:
        a, b = ("old-key-a", ""), ("old-key-b", "")
        assert client.get("/activities/1", auth=a).json()["subject"] == "Old A"
        assert client.get("/activities/1", auth=b).status_code == 404
        assert client.get("/activities/2", auth=b).json()["subject"] == "Old B"
        assert client.patch("/activities/2", auth=a, json={"subject": "Taken"}).status_code == 404
        again = {"contact_id": 1, "kind": "call", "subject": "Again", "external_id": "call:old:1"}
        assert client.post("/activities", auth=a, json=again).status_code == 201
        listed = client.get("/activities", auth=a, params={"external_id": "call:old:1"}).json()["data"]
        assert [x["subject"] for x in listed] == ["Old A", "Again"]
        assert client.get("/activities", auth=b, params={"external_id": "call:old:1"}).json() == {"data": []}
    # a second start finds everything in place
    app = create_testcrm_app(url, seed_api_key="seed-key")
    with serve_asgi(app, lifespan="on") as base, httpx.Client(base_url=f"{base}/api/v1") as client:
        assert len(client.get("/activities", auth=a, params={"contact_id": 1}).json()["data"]) == 2

"""The embedded test CRM as a deployment serves it: no test tooling exposed, and PostgreSQL works too."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from appconnect.api.app import create_app
from appconnect.embedded_crm import create_testcrm_app
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
        found = client.get("/api/v1/contacts", params={"phone": "+14155550177"}, auth=("seed-key", "")).json()
        assert [c["name"] for c in found["data"]] == ["Pg Person"]

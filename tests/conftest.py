"""Fixtures that compose: a database backend -> a live server -> a test-CRM account -> a logged-in client."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appconnect.api.app import create_app
from appconnect.settings import Settings
from appconnect.store.migrate import upgrade
from tests.support.app_server import run_app

POSTGRES_URL = os.environ.get(
    "APPCONNECT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def reset_postgres(url: str) -> None:
    """Start from an empty schema so every run migrates from scratch."""
    import asyncpg

    async def reset() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()

    asyncio.run(reset())


def database_url_for(backend: str, folder: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'appconnect.sqlite3'}"
    if not postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 but CI must test it")
        pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432 (runs on CI)")
    reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@dataclass
class LiveServer:
    base_url: str
    settings: Settings

    @property
    def crm_api(self) -> str:
        return f"{self.base_url}/testcrm/api/v1"


def make_settings(folder: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "testcrm_database_url": f"sqlite+aiosqlite:///{folder / 'testcrm.sqlite3'}",
        "key_file": folder / "keys.json",
        "crm_read_timeout": 2.0,
        "crm_connect_timeout": 2.0,
        "max_body_bytes": 256 * 1024,
        "testcrm_fault_injection": True,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def start_server(folder: Path, database_url: str, **overrides: object) -> Iterator[LiveServer]:
    upgrade(database_url)

    def build(base_url: str) -> object:
        settings = make_settings(folder, database_url, public_url=base_url, **overrides)
        os.environ["TESTCRM_BASE_URL"] = f"{base_url}/testcrm/api/v1"
        holder["settings"] = settings
        return create_app(settings)

    holder: dict[str, Settings] = {}
    with run_app(build) as base_url:
        yield LiveServer(base_url, holder["settings"])


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The connector server over real HTTP, on SQLite and on PostgreSQL."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    yield from start_server(folder, database_url_for(request.param, folder))


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        yield http


@pytest.fixture
def crm_api_key(server: LiveServer, client: httpx.Client) -> str:
    """A fresh test-CRM account, so each test sees only its own contacts."""
    response = client.post("/testcrm/api/v1/api-keys", json={"name": f"Agent {uuid.uuid4().hex[:6]}"})
    assert response.status_code in (200, 201), response.text
    key: str = response.json()["apiKey"]
    return key


@pytest.fixture
def jwt(client: httpx.Client, crm_api_key: str) -> str:
    """A user logged in to the test CRM with an API key, as the client does it."""
    response = client.post(
        "/apiKeyLogin",
        json={"platform": "testcrm", "apiKey": crm_api_key, "hostname": "testcrm.local"},
        headers={"rc-account-id": f"acct-{uuid.uuid4().hex}"},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["jwtToken"]
    return token


def new_phone() -> str:
    """A fresh E.164 number per test."""
    return "+1415" + str(uuid.uuid4().int)[:7]


def call_log_body(
    session_id: str,
    contact_id: str,
    phone: str,
    *,
    log_info: dict[str, object] | None = None,
    **extra: object,
) -> dict[str, object]:
    """A POST /callLog body as the client sends it; `log_info` overrides fields of the call record."""
    return {
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
            **(log_info or {}),
        },
        "contactId": contact_id,
        "contactName": "Caller",
        "contactType": "contact",
        "note": "first note",
        "additionalSubmission": {},
        **extra,
    }


@pytest.fixture
def crm(client: httpx.Client, crm_api_key: str) -> CrmView:
    return CrmView(client, crm_api_key)


class CrmView:
    """Reads the test CRM's own API: what the CRM really stored."""

    def __init__(self, client: httpx.Client, api_key: str) -> None:
        self._client = client
        self._auth = (api_key, "")

    def contacts_with_phone(self, phone: str) -> list[dict[str, object]]:
        response = self._client.get("/testcrm/api/v1/contacts", params={"phone": phone}, auth=self._auth)
        assert response.status_code == 200, response.text
        data: list[dict[str, object]] = response.json()["data"]
        return data

    def activities_of(self, contact_id: object) -> list[dict[str, object]]:
        response = self._client.get(
            "/testcrm/api/v1/activities", params={"contact_id": contact_id}, auth=self._auth
        )
        assert response.status_code == 200, response.text
        data: list[dict[str, object]] = response.json()["data"]
        return data

    def inject(self, **rule: object) -> None:
        response = self._client.post("/testcrm/api/_faults", json=rule)
        assert response.status_code in (200, 201), response.text

    def clear_faults(self) -> None:
        self._client.delete("/testcrm/api/_faults")

"""Fixtures that compose: a database backend -> a live server -> a test-CRM account -> a logged-in client."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from appconnect.api.app import create_app
from appconnect.server.http_protocol import InboundLimits
from appconnect.settings import Settings
from appconnect.store.migrate import upgrade
from appconnect.store.sql import Database, open_database
from appconnect.store.users import UserRecord
from tests.support.app_server import run_app

#: The PostgreSQL server and credentials of the suite, and the database it connects to only to CREATE and
#: DROP its own databases (`appconnect_test_<random>`): it never drops or empties a database it did not create.
POSTGRES_URL = os.environ.get(
    "APPCONNECT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TEST_DATABASE_PREFIX = "appconnect_test_"
#: Bearer token of the test CRM's key minting and fault injection in every server the fixtures start.
TESTCRM_ADMIN_TOKEN = "suite-admin-token"
_created_databases: list[str] = []


def crm_admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TESTCRM_ADMIN_TOKEN}"}


def _postgres_address() -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    return url.host or "127.0.0.1", url.port or 5432


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(_postgres_address(), timeout=1):
            return True
    except OSError:
        return False


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip without PostgreSQL, except on CI, which must test it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} but CI must test PostgreSQL")
    pytest.skip(f"{reason} (runs on CI; set APPCONNECT_TEST_POSTGRES_URL)")


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, also from inside a running event loop (async tests)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _admin(sql: str) -> None:
    import asyncpg

    async def execute() -> None:
        conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"), timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run(execute())


def create_test_database() -> str:
    """A new, empty database of the suite's own, dropped at the end of the session; skips without PostgreSQL
    (including a server that answers "too many clients")."""
    import asyncpg
    from sqlalchemy.engine import make_url

    host, port = _postgres_address()
    if not postgres_reachable():
        postgres_unavailable(f"PostgreSQL not reachable on {host}:{port}")
    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        postgres_unavailable(f"cannot create a test database on {host}:{port}: {type(exc).__name__}: {exc}")
    _created_databases.append(name)
    url = make_url(POSTGRES_URL).set(database=name)
    return url.render_as_string(hide_password=False)


async def migrated_database(backend: str, folder: Path) -> Database:
    """The server's database layer on a new, migrated SQLite file in `folder` or PostgreSQL test database."""
    sqlite = f"sqlite+aiosqlite:///{folder / 'store.sqlite3'}"
    url = sqlite if backend == "sqlite" else create_test_database()
    await asyncio.to_thread(upgrade, url)
    return open_database(url, max_connections=2, acquire_timeout=5.0)


def drop_test_databases() -> None:
    """Drop the databases this run created, and only those."""
    while _created_databases:
        name = _created_databases.pop()
        try:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # a leak is reported, never hidden
            print(f"could not drop test database {name}: {exc}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_test_databases()


def reset_postgres(url: str) -> None:
    """Empty a database this run created (a database it did not create is never touched)."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    if name not in _created_databases:
        raise RuntimeError(f"refusing to reset database {name!r}: the test suite did not create it")
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')


def database_url_for(backend: str, folder: Path) -> str:
    """A fresh, empty database of `backend`: an SQLite file in `folder`, or a new PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'appconnect.sqlite3'}"
    return create_test_database()


@dataclass
class LiveServer:
    base_url: str
    settings: Settings
    #: the application object serving in this process (its `state.services`), when the fixture built it here
    app: Any = None

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
        "testcrm_admin_token": TESTCRM_ADMIN_TOKEN,
        # a bounded number of connections per server for the whole suite; waits stay well inside timeouts
        "database_pool_size": 2,
        "database_max_overflow": 3,
        "database_pool_timeout": 30.0,
        # servers of one run share a database but each has its own embedded test CRM: a retrier would deliver
        # another server's kept logs to the wrong CRM. Tests of the retrier start one on purpose.
        "log_retrier_enabled": False,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def start_server(folder: Path, database_url: str, **overrides: object) -> Iterator[LiveServer]:
    upgrade(database_url)

    def build(base_url: str) -> object:
        settings = make_settings(folder, database_url, public_url=base_url, **overrides)
        os.environ["TESTCRM_BASE_URL"] = f"{base_url}/testcrm/api/v1"
        holder["settings"] = settings
        holder["app"] = create_app(settings)
        return holder["app"]

    holder: dict[str, Any] = {}
    with run_app(build, limits=lambda: InboundLimits.from_settings(holder["settings"])) as base_url:
        yield LiveServer(base_url, holder["settings"], holder["app"])


@contextmanager
def connector_server(
    env: Mapping[str, str], folder: Path, database_url: str, **overrides: object
) -> Iterator[LiveServer]:
    """A server whose connectors read `env` (a fake CRM's settings) when the app is built; the test CRM is off
    unless `embedded_testcrm=True` is passed. `start_server` points TESTCRM_BASE_URL at the new server: the
    old value is put back afterwards, with every variable of `env`."""
    stack = ExitStack()
    with pytest.MonkeyPatch.context() as patched:
        for key, value in env.items():
            patched.setenv(key, value)
        previous = os.environ.get("TESTCRM_BASE_URL")
        if previous is None:
            patched.delenv("TESTCRM_BASE_URL", raising=False)
        else:
            patched.setenv("TESTCRM_BASE_URL", previous)
        settings: dict[str, object] = {"embedded_testcrm": False, **overrides}
        live = stack.enter_context(contextmanager(start_server)(folder, database_url, **settings))
    with stack:
        yield live


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
    response = client.post(
        "/testcrm/api/v1/api-keys",
        json={"name": f"Agent {uuid.uuid4().hex[:6]}"},
        headers=crm_admin_headers(),
    )
    assert response.status_code in (200, 201), response.text
    key: str = response.json()["apiKey"]
    return key


def api_key_login(client: httpx.Client, api_key: str) -> str:
    """Log in to the test CRM with an API key, as the client does it; the session JWT."""
    response = client.post(
        "/apiKeyLogin",
        json={"platform": "testcrm", "apiKey": api_key, "hostname": "testcrm.local"},
        headers={"rc-account-id": f"acct-{uuid.uuid4().hex}"},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["jwtToken"]
    return token


@pytest.fixture
def jwt(client: httpx.Client, crm_api_key: str) -> str:
    """A user logged in to the test CRM with an API key."""
    return api_key_login(client, crm_api_key)


def new_phone() -> str:
    """A fresh E.164 number per test."""
    return "+1415" + str(uuid.uuid4().int)[:7]


def message_log_body(contact_id: str, phone: str) -> dict[str, Any]:
    """A message log of one inbound SMS in a new conversation."""
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    return {
        "logInfo": {
            "conversationId": conversation,
            "conversationLogId": f"{conversation}-2026-11-25",
            "messages": [
                {
                    "id": f"m-{uuid.uuid4().hex[:8]}",
                    "type": "SMS",
                    "direction": "Inbound",
                    "subject": "hello",
                    "creationTime": "2026-11-25T10:00:00.000Z",
                    "from": {"phoneNumber": phone, "name": "Caller"},
                }
            ],
            "correspondents": [{"phoneNumber": phone, "name": "Caller"}],
        },
        "contactId": contact_id,
        "contactName": "Caller",
        "contactType": "contact",
        "additionalSubmission": {"deal": "d1"},
    }


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

    def received(self, path: str, **filters: str) -> int:
        """Creates (`POST path`, e.g. "/api/v1/activities") this account sent the CRM, however it answered:
        what the server sent, not what the CRM kept. Filters: `external_id`, `phone` (digits compared)."""
        me = self._client.get("/testcrm/api/v1/me", auth=self._auth).json()
        params = {"path": path, "method": "POST", "account": str(me["id"]), **filters}
        response = self._client.get("/testcrm/api/_received", params=params, headers=crm_admin_headers())
        assert response.status_code == 200, response.text
        return int(response.json()["count"])

    def inject(self, **rule: object) -> None:
        response = self._client.post("/testcrm/api/_faults", json=rule, headers=crm_admin_headers())
        assert response.status_code in (200, 201), response.text

    def clear_faults(self) -> None:
        self._client.delete("/testcrm/api/_faults", headers=crm_admin_headers())


async def stored_user(server: LiveServer, user_id: str) -> UserRecord:
    """The user row as the server stored it, decrypted with the server's own keys and store."""
    from appconnect.security.crypto import TokenCipher
    from appconnect.security.keys import load_keys
    from appconnect.store.sql import open_database
    from appconnect.store.users import UserStore

    db = open_database(server.settings.database_url, max_connections=1, acquire_timeout=10)
    try:
        cipher = TokenCipher(load_keys(server.settings).encryption_keys)
        user = await UserStore(cipher, db).get(user_id)
    finally:
        await db.close()
    assert user is not None
    return user


#: the agent's own number in the test conversations
AGENT_PHONE = "+14155550101"


def sms_message(
    message_id: str,
    phone: str,
    text: str,
    *,
    direction: str = "Inbound",
    at: str = "2026-03-12T14:35:20.000Z",
) -> dict[str, Any]:
    """One SMS of a conversation as the client sends it: from the caller (inbound) or from the agent."""
    return {
        "id": message_id,
        "type": "SMS",
        "direction": direction,
        "subject": text,
        "creationTime": at,
        "from": {"phoneNumber": phone if direction == "Inbound" else AGENT_PHONE},
    }


def conversation_body(
    conversation_id: str,
    contact_id: str,
    phone: str,
    messages: list[dict[str, Any]],
    *,
    contact_type: str = "contact",
    log_day: str | None = "2026-03-12",
) -> dict[str, Any]:
    """A message log of `messages` with Maya Patel; `log_day` None leaves the conversation log id to the server."""
    log_info: dict[str, Any] = {
        "conversationId": conversation_id,
        "messages": messages,
        "correspondents": [{"phoneNumber": phone, "name": "Maya Patel"}],
    }
    if log_day is not None:
        log_info["conversationLogId"] = f"{conversation_id}-{log_day}"
    return {
        "logInfo": log_info,
        "contactId": contact_id,
        "contactName": "Maya Patel",
        "contactType": contact_type,
        "additionalSubmission": {},
    }

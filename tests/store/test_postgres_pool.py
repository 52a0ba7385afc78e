"""The server's own PostgreSQL pool (store/sql.py) on the real PostgreSQL: connections beyond the pool size go
away after a burst, old connections are replaced, connect options reach the server, no session state passes
from one statement's user to the next, and a terminated backend costs at most the request it was serving."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from appconnect.flows.availability import is_dependency_down
from appconnect.store.migrate import upgrade
from appconnect.store.sql import (
    Database,
    DatabaseError,
    DatabaseUnavailable,
    PostgresOptions,
    open_database,
    sql,
)
from tests.conftest import (
    create_test_database,
    crm_admin_headers,
    postgres_reachable,
    postgres_unavailable,
    start_server,
)
from tests.store.test_database_busy import users_table_locked, waiting_on_a_lock

WHO_AM_I = sql("SELECT pg_backend_pid() AS pid")
SETTING = sql("SELECT current_setting(?) AS value")


@pytest.fixture
def pg_url() -> str:
    if not postgres_reachable():
        postgres_unavailable("PostgreSQL not reachable")
    return create_test_database()


def application() -> str:
    """A name only this test's connections carry."""
    return f"appconnect-test-{uuid.uuid4().hex[:10]}"


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def admin(url: str, query: str, *args: Any) -> list[Any]:
    """A query on a connection of the test's own (never one of the pool's)."""
    import asyncpg

    conn = await asyncpg.connect(libpq(url).split("?", 1)[0], timeout=5)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def backends(url: str, name: str) -> list[Any]:
    """The sessions of the test database whose application_name is `name`, with their pid, state and last query."""
    return await admin(
        url,
        "SELECT pid, state, query FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = $1 ORDER BY pid",
        name,
    )


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> bool:
    """Poll `check` until it holds (the pool closes in the background); False if it never did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


@pytest_asyncio.fixture
async def pool_of(pg_url: str) -> AsyncIterator[Callable[..., Database]]:
    """Opens pools on the test database; closes them at the end."""
    opened: list[Database] = []

    def open_pool(
        max_connections: int = 1, keep_open: int | None = None, url: str | None = None, **options: Any
    ) -> Database:
        database = open_database(
            url or pg_url,
            max_connections=max_connections,
            acquire_timeout=10.0,
            keep_open=keep_open,
            options=PostgresOptions(**options),
        )
        opened.append(database)
        return database

    yield open_pool
    for database in opened:
        await database.close()


async def test_overflow_connections_close_after_the_idle_time(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    name = application()
    database = pool_of(max_connections=4, keep_open=1, application_name=name, idle_seconds=0.3)
    burst = sql("SELECT pg_sleep(0.05), ?::int AS n")
    rows = await asyncio.gather(*(database.one(burst, n) for n in range(20)))
    assert sorted(row["n"] for row in rows) == list(range(20))
    assert len(await backends(pg_url, name)) == 4

    async def back_to_the_pool_size() -> bool:
        return len(await backends(pg_url, name)) == 1

    assert await eventually(back_to_the_pool_size), await backends(pg_url, name)
    row = await database.one(sql("SELECT ?::int AS n"), 7)  # the one kept serves on
    assert row is not None and row["n"] == 7
    assert database.usage() == (0, 4)


async def test_connections_within_the_pool_size_stay_open_however_long_idle(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    name = application()
    database = pool_of(max_connections=2, keep_open=2, application_name=name, idle_seconds=0.1)
    await asyncio.gather(*(database.one(sql("SELECT pg_sleep(0.05) AS s")) for _ in range(4)))
    await asyncio.sleep(0.6)  # several idle times: nothing beyond the pool size to close
    assert len(await backends(pg_url, name)) == 2


async def test_a_connection_older_than_its_lifetime_is_replaced(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    name = application()
    database = pool_of(max_connections=1, application_name=name, recycle_seconds=0.5)
    first = await database.one(WHO_AM_I)
    assert first is not None
    await asyncio.sleep(1.0)
    second = await database.one(WHO_AM_I)
    assert second is not None and second["pid"] != first["pid"]

    async def only_the_new_one() -> bool:
        return [row["pid"] for row in await backends(pg_url, name)] == [second["pid"]]

    assert await eventually(only_the_new_one), await backends(pg_url, name)


async def test_an_idle_connection_past_its_lifetime_is_closed_without_being_used(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    name = application()
    database = pool_of(max_connections=1, application_name=name, recycle_seconds=0.3)
    assert await database.one(WHO_AM_I) is not None

    async def closed() -> bool:
        return await backends(pg_url, name) == []

    assert await eventually(closed)
    assert await database.one(WHO_AM_I) is not None  # and a new one opens when needed


async def test_application_name_and_statement_timeout_reach_the_server(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    name = application()
    database = pool_of(application_name=name, statement_timeout_ms=250)
    row = await database.one(SETTING, "statement_timeout")
    assert row is not None and row["value"] == "250ms"
    assert len(await backends(pg_url, name)) == 1
    with pytest.raises(DatabaseError) as cancelled:
        await database.one(sql("SELECT pg_sleep(3) AS slept"))
    assert "57014" in str(cancelled.value)  # query_canceled: the statement timeout
    row = await database.one(sql("SELECT ?::int AS n"), 5)  # the connection is fine afterwards
    assert row is not None and row["n"] == 5


async def test_the_database_url_query_sets_the_options_and_migrations_ignore_them(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    name = application()
    url = f"{libpq(pg_url)}?application_name={name}&statement_timeout=1500&statement_cache_size=0"
    await asyncio.to_thread(upgrade, url)  # SQLAlchemy and Alembic never see the pool's options
    database = pool_of(url=url, application_name="overridden")
    row = await database.one(SETTING, "statement_timeout")
    assert row is not None and row["value"] == "1500ms"
    assert len(await backends(pg_url, name)) == 1
    table = await database.one(sql("SELECT to_regclass('users') IS NOT NULL AS migrated"))
    assert table is not None and table["migrated"] is True


def test_a_malformed_option_in_the_url_is_refused_by_name() -> None:
    with pytest.raises(ValueError) as refused:
        open_database(
            "postgresql://user:secret@127.0.0.1/db?statement_cache_size=lots",
            max_connections=1,
            acquire_timeout=1,
        )
    assert "statement_cache_size" in str(refused.value) and "secret" not in str(refused.value)


PREPARED = sql("SELECT count(*) AS n FROM pg_prepared_statements")


async def test_statement_cache_size_zero_prepares_no_named_statements(
    pool_of: Callable[..., Database],
) -> None:
    """What PgBouncer in transaction pooling mode needs: no named prepared statement outlives its use."""
    cached = pool_of(statement_cache_size=100)
    uncached = pool_of(statement_cache_size=0)
    for database in (cached, uncached):
        for n in range(3):
            row = await database.one(sql("SELECT ?::int + 1 AS n"), n)
            assert row is not None and row["n"] == n + 1
    with_cache = await cached.one(PREPARED)
    without = await uncached.one(PREPARED)
    assert with_cache is not None and with_cache["n"] > 0
    assert without is not None and without["n"] == 0


async def test_a_session_setting_does_not_reach_the_next_user(
    pool_of: Callable[..., Database],
) -> None:
    name = application()
    database = pool_of(application_name=name, statement_timeout_ms=2000)  # one connection: always the same
    before = await database.one(WHO_AM_I)

    await database.run(sql("SET statement_timeout = 4321"))
    timeout = await database.one(SETTING, "statement_timeout")
    assert timeout is not None and timeout["value"] == "2s"  # the configured value, not the SET one

    await database.one(sql("SELECT set_config('application_name', 'somebody-else', false) AS v"))
    app = await database.one(SETTING, "application_name")
    assert app is not None and app["value"] == name

    async with database.transaction() as tx:
        await tx.run(sql("SET search_path = nowhere"))
    path = await database.one(SETTING, "search_path")
    assert path is not None and path["value"] == '"$user", public'

    after = await database.one(WHO_AM_I)
    assert before is not None and after is not None and after["pid"] == before["pid"]  # reset, not reopened


async def test_an_advisory_lock_does_not_outlive_its_statement(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    database = pool_of()
    await database.one(sql("SELECT pg_advisory_lock(424242) AS locked"))
    locks = await admin(pg_url, "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'")
    assert locks[0]["n"] == 0


async def test_a_transaction_left_open_is_rolled_back_before_the_next_user(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    name = application()
    database = pool_of(application_name=name)
    before = await database.one(WHO_AM_I)
    await database.run(sql("BEGIN"))
    sessions = await backends(pg_url, name)
    assert [row["state"] for row in sessions] == ["idle"]  # not "idle in transaction"
    stamp = sql("SELECT now() AS at, pg_backend_pid() AS pid")
    first = await database.one(stamp)
    await asyncio.sleep(0.01)
    row = await database.one(stamp)
    assert first is not None and row is not None
    assert row["at"] > first["at"]  # each statement its own transaction: the BEGIN did not stay open
    assert before is not None and row["pid"] == before["pid"]  # rolled back, not reopened


async def test_a_plain_statement_is_not_followed_by_a_reset(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    """The reset costs a round trip: the flow's statements never pay it, only those that leave state."""
    name = application()
    database = pool_of(application_name=name)
    await database.one(sql("SELECT ?::int AS clean"), 1)
    async with database.transaction() as tx:
        await tx.one(sql("SELECT ?::int AS in_a_transaction"), 2)
    [session] = await backends(pg_url, name)
    assert session["query"] == "COMMIT;"  # the last thing the session ran: the commit, no reset after it
    await database.one(sql("SELECT ?::int AS clean"), 3)
    [session] = await backends(pg_url, name)
    assert session["query"] == "SELECT $1::int AS clean"
    await database.run(sql("SET work_mem = '8MB'"))
    [session] = await backends(pg_url, name)
    assert "RESET ALL" in session["query"]


async def test_a_backend_terminated_mid_statement_is_unavailable_and_then_replaced(
    pg_url: str, pool_of: Callable[..., Database]
) -> None:
    """What a PostgreSQL restart does to a request in flight: a clean "retry later", and the next one works."""
    name = application()
    database = pool_of(application_name=name)
    slow = asyncio.ensure_future(database.one(sql("SELECT pg_sleep(10) AS slept")))

    async def running() -> bool:
        return any(row["state"] == "active" for row in await backends(pg_url, name))

    assert await eventually(running)
    await admin(
        pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = $1",
        name,
    )
    with pytest.raises(DatabaseUnavailable) as lost:
        await asyncio.wait_for(slow, 10)
    assert is_dependency_down(lost.value)
    row = await database.one(sql("SELECT ?::int AS n"), 9)
    assert row is not None and row["n"] == 9
    assert database.usage() == (0, 1)


# --- through the server ------------------------------------------------------------------------------------


@contextmanager
def live_server(tmp_path: Path, name: str) -> Iterator[tuple[str, httpx.Client, dict[str, str]]]:
    """A server on a new PostgreSQL database: pool 1 + overflow 3, overflow idle 0.3 s; a logged-in user."""
    if not postgres_reachable():
        postgres_unavailable("PostgreSQL not reachable")
    url = create_test_database()
    with (
        contextmanager(start_server)(
            tmp_path,
            url,
            database_pool_size=1,
            database_max_overflow=3,
            database_pool_idle_seconds=0.3,
            database_application_name=name,
        ) as live,
        httpx.Client(base_url=live.base_url, timeout=30) as client,
    ):
        key = client.post(
            "/testcrm/api/v1/api-keys", json={"name": "Pool"}, headers=crm_admin_headers()
        ).json()["apiKey"]
        login = client.post(
            "/apiKeyLogin",
            json={"platform": "testcrm", "apiKey": key, "hostname": "pool.local"},
            headers={"rc-account-id": f"acct-{uuid.uuid4().hex}"},
        )
        assert login.status_code == 200, login.text
        yield url, client, {"Authorization": f"Bearer {login.json()['jwtToken']}"}


def test_the_server_gives_back_its_overflow_connections_after_a_burst(tmp_path: Path) -> None:
    name = application()
    with live_server(tmp_path, name) as (url, client, auth):
        assert client.get("/hostname", headers=auth).status_code == 200
        assert len(asyncio.run(backends(url, name))) >= 1  # the settings' application name
        answers: list[int] = []

        def request() -> None:
            with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
                answers.append(own.get("/hostname", headers=auth).status_code)

        with users_table_locked(url):
            burst = [threading.Thread(target=request) for _ in range(4)]
            for thread in burst:
                thread.start()
            deadline = time.monotonic() + 20
            while waiting_on_a_lock(url) < 4 and time.monotonic() < deadline:  # each holds a connection
                time.sleep(0.05)
            assert len(asyncio.run(backends(url, name))) == 4
        for thread in burst:
            thread.join(30)
        assert answers == [200] * 4

        async def back_to_the_pool_size() -> bool:
            return len(await backends(url, name)) == 1

        assert asyncio.run(eventually(back_to_the_pool_size)), asyncio.run(backends(url, name))
        assert client.get("/hostname", headers=auth).status_code == 200


def test_the_next_request_works_after_the_servers_backends_were_terminated(tmp_path: Path) -> None:
    name = application()
    with live_server(tmp_path, name) as (url, client, auth):
        assert client.get("/hostname", headers=auth).status_code == 200
        asyncio.run(
            admin(
                url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = $1",
                name,
            )
        )

        async def all_gone() -> bool:
            return await backends(url, name) == []

        assert asyncio.run(eventually(all_gone))
        answer = client.get("/hostname", headers=auth)
        assert answer.status_code == 200 and answer.text == "pool.local"


@pytest.mark.parametrize(
    ("text", "leaves_state"),
    [
        ("SET statement_timeout = 100", True),
        ("  set local work_mem = '8MB'", True),
        ("SELECT set_config('application_name', ?, false)", True),
        ("SELECT pg_advisory_lock(?)", True),
        ("SELECT pg_try_advisory_lock_shared(?)", True),
        ("BEGIN", True),
        ("LISTEN appconnect_users", True),
        ("CREATE TEMP TABLE t (id int)", True),
        ("UPDATE users SET account_scope = NULL WHERE id = ?", False),
        ("INSERT INTO locks (name) VALUES (?) ON CONFLICT (name) DO UPDATE SET owner = ?", False),
        ("SELECT pg_advisory_xact_lock(?)", False),  # released with its transaction
        ("SELECT pg_notify('appconnect_users', ?)", False),
    ],
)
def test_statements_that_leave_session_state_are_found_from_their_text(text: str, leaves_state: bool) -> None:
    assert sql(text).session_state is leaves_state

"""The server's database layer (store/sql.py) on a real SQLite file and the real PostgreSQL: a locked SQLite
database never blocks the event loop, failures come out as the engine's exception classes, a full pool is
"busy", and transactions are all-or-nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from appconnect.flows.availability import is_dependency_down
from appconnect.store.migrate import upgrade
from appconnect.store.sql import (
    Database,
    DatabaseBusy,
    DatabaseUnavailable,
    IntegrityError,
    open_database,
    sql,
)
from tests.conftest import create_test_database, postgres_reachable, postgres_unavailable

INSERT_LOCK = sql("INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)")
COUNT_LOCKS = sql("SELECT count(*) AS n FROM locks WHERE owner = ?")


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Database, str]]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    else:
        if not postgres_reachable():
            postgres_unavailable("PostgreSQL not reachable")
        url = create_test_database()
    await asyncio.to_thread(upgrade, url)
    database = open_database(url, max_connections=2, acquire_timeout=1.0)
    try:
        yield database, url
    finally:
        await database.close()


async def test_a_duplicate_key_is_an_integrity_error(db: tuple[Database, str]) -> None:
    database, _url = db
    name = f"lock-{uuid.uuid4().hex}"
    stamp = database.stamp(datetime.now(UTC))
    await database.run(INSERT_LOCK, name, "a", stamp)
    with pytest.raises(IntegrityError) as caught:
        await database.run(INSERT_LOCK, name, "b", stamp)
    assert name not in str(caught.value)  # parameters never reach the message
    assert not is_dependency_down(caught.value)


async def test_a_failed_transaction_leaves_nothing_behind(db: tuple[Database, str]) -> None:
    database, _url = db
    owner = uuid.uuid4().hex
    stamp = database.stamp(datetime.now(UTC))
    with pytest.raises(RuntimeError):
        async with database.transaction() as tx:
            await tx.run(INSERT_LOCK, f"first-{owner}", owner, stamp)
            raise RuntimeError("the request failed half-way")
    row = await database.one(COUNT_LOCKS, owner)
    assert row is not None and row["n"] == 0
    async with database.transaction() as tx:  # the connection is usable again
        await tx.run(INSERT_LOCK, f"second-{owner}", owner, stamp)
    row = await database.one(COUNT_LOCKS, owner)
    assert row is not None and row["n"] == 1


async def test_a_locked_sqlite_database_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """Another process holds the write lock: our write waits by sleeping, the loop keeps serving, and the
    write lands once the lock is released."""
    path = tmp_path / "locked.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    database = open_database(url, max_connections=1, acquire_timeout=1.0)
    holder_ready, release = threading.Event(), threading.Event()

    def hold_write_lock() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        holder_ready.set()
        release.wait(10)
        other.execute("COMMIT")
        other.close()

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    try:
        assert await asyncio.to_thread(holder_ready.wait, 10)
        stamp = database.stamp(datetime.now(UTC))
        write = asyncio.create_task(database.run(INSERT_LOCK, "while-locked", "me", stamp))
        ticks = 0
        for _ in range(30):  # the loop keeps running other coroutines while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 30
        assert not write.done(), "the write should still be waiting for the lock"
        release.set()
        assert await asyncio.wait_for(write, 10) == 1
    finally:
        release.set()
        holder.join(10)
        await database.close()


async def test_postgres_pool_exhaustion_is_busy_and_an_unreachable_server_is_down(tmp_path: Path) -> None:
    if not postgres_reachable():
        postgres_unavailable("PostgreSQL not reachable")
    url = create_test_database()
    database = open_database(url, max_connections=1, acquire_timeout=0.3)
    try:
        async with database.transaction():
            with pytest.raises(DatabaseBusy) as busy:
                await database.one(sql("SELECT 1 AS one"))
            assert is_dependency_down(busy.value)
    finally:
        await database.close()

    # nothing listens on port 1: refused at once
    unreachable = open_database(
        "postgresql+asyncpg://postgres@127.0.0.1:1/none", max_connections=1, acquire_timeout=2.0
    )
    with pytest.raises(DatabaseUnavailable) as down:
        await unreachable.one(sql("SELECT 1 AS one"))
    assert is_dependency_down(down.value)
    await unreachable.close()


async def _backends(url: str) -> int:
    """Connections PostgreSQL holds open to the database of `url` (ours and nobody else's)."""
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(
        url.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    )
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name
        )
    finally:
        await conn.close()
    return count


@pytest.fixture
def pg_url() -> str:
    if not postgres_reachable():
        postgres_unavailable("PostgreSQL not reachable")
    return create_test_database()


async def test_postgres_pool_never_opens_more_than_its_size_and_serves_every_waiter(pg_url: str) -> None:
    database = open_database(pg_url, max_connections=3, acquire_timeout=10.0)
    try:
        statement = sql("SELECT pg_sleep(0.02), ?::int AS n")
        rows = await asyncio.gather(*(database.one(statement, n) for n in range(40)))
        assert sorted(row["n"] for row in rows) == list(range(40))
        assert await _backends(pg_url) == 3
        assert database.usage() == (0, 3)
    finally:
        await database.close()
    assert await _backends(pg_url) == 0


async def test_a_cancelled_statement_does_not_poison_the_pool(pg_url: str) -> None:
    database = open_database(pg_url, max_connections=1, acquire_timeout=5.0)
    try:
        slow = asyncio.ensure_future(database.one(sql("SELECT pg_sleep(5) AS slept")))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        # the one slot is free again and the next statement gets a clean connection
        row = await asyncio.wait_for(database.one(sql("SELECT ?::int AS n"), 7), 5)
        assert row is not None and row["n"] == 7
        assert database.usage() == (0, 1)
    finally:
        await database.close()


async def test_connections_killed_by_the_server_are_replaced(pg_url: str) -> None:
    import asyncpg

    database = open_database(pg_url, max_connections=2, acquire_timeout=5.0)
    try:
        await asyncio.gather(*(database.one(sql("SELECT pg_sleep(0.05) AS s")) for _ in range(2)))
        admin = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        await asyncio.sleep(0.2)
        # both idle connections are dead: each is dropped when taken, at worst one statement fails
        outcomes = []
        for _ in range(3):
            try:
                row = await database.one(sql("SELECT 1 AS one"))
                outcomes.append(row is not None and row["one"] == 1)
            except DatabaseUnavailable:
                outcomes.append(False)
        assert outcomes[-1] is True
        assert database.usage() == (0, 2)
    finally:
        await database.close()

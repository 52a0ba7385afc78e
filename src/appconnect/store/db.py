"""Engine construction: SQLite (WAL, busy timeout) by default, PostgreSQL via `DATABASE_URL`."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def normalize_url(url: str) -> str:
    """Accept plain `sqlite:`/`postgres:` URLs and pick the async driver."""
    if url.startswith("sqlite:///") or url.startswith("sqlite://"):
        return "sqlite+aiosqlite" + url[len("sqlite") :]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return normalize_url(url).startswith("sqlite")


def sqlite_file(url: str) -> Path | None:
    """The file behind an SQLite URL; None for other databases and in-memory ones."""
    if not is_sqlite(url):
        return None
    database = make_url(normalize_url(url)).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_sqlite_private(url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (it gives `-wal`/`-shm` the file's mode) and tighten
    existing files: they hold phone numbers, names, notes and encrypted CRM tokens.
    """
    path = sqlite_file(url)
    if path is None:
        return
    # Never open an existing database file: closing any descriptor of it drops every POSIX lock this process
    # holds on it, and another process could then reset the WAL under our open connections.
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # a missing folder: SQLite reports it in its own words
    for companion in ("", "-wal", "-shm", "-journal", "-users"):
        candidate = path.with_name(path.name + companion)
        try:
            if candidate.stat().st_mode & 0o077:
                os.chmod(candidate, 0o600)
        except OSError:
            continue


class _NoResultRows(logging.Filter):
    """SQLAlchemy's debug echo logs every result row (names, phone numbers, notes): drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        # the message may already be formatted (the redacting record factory does that)
        return not (isinstance(record.msg, str) and record.msg.startswith(("Row ", "Col ")))


_no_result_rows = _NoResultRows()


def quiet_driver_logs() -> None:
    """Whatever the log level, no statement parameter or result row reaches a log line: aiosqlite logs
    every statement with its parameters at DEBUG (kept at INFO), SQLAlchemy its rows (filtered); the
    engines hide parameters themselves (`hide_parameters=True`)."""
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    for name in ("sqlalchemy.engine.Engine", "sqlalchemy.engine"):
        engine_log = logging.getLogger(name)
        if _no_result_rows not in engine_log.filters:
            engine_log.addFilter(_no_result_rows)


def create_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 5, pool_timeout: float = 10.0
) -> AsyncEngine:
    """An async engine tuned for the dialect.

    At most `pool_size + max_overflow` connections; a request that finds none free waits `pool_timeout`
    seconds and then gets `sqlalchemy.exc.TimeoutError` ("busy, retry"). SQL parameters (phone numbers,
    names, notes) never reach a log line or an error message.
    """
    url = normalize_url(url)
    quiet_driver_logs()
    if is_sqlite(url):
        make_sqlite_private(url)
        # Reads never open an SQLite transaction (the driver begins one only before a write) and writes always
        # commit or roll back explicitly, so the ROLLBACK a pool issues on every return is a wasted thread hop.
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_reset_on_return=None,
            hide_parameters=True,
            connect_args={"timeout": 30},
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            make_sqlite_private(url)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=False,
        hide_parameters=True,
    )


_sqlite_writers: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A committed-or-rolled-back transaction for writes.

    SQLite has one writer at a time and makes the others sleep-and-retry in coarse steps; queueing this
    process's writers on an asyncio lock instead leaves only other processes to wait for.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _sqlite_writers.get(engine.sync_engine)
    if lock is None:
        lock = _sqlite_writers[engine.sync_engine] = asyncio.Lock()
    async with lock, engine.begin() as conn:
        yield conn

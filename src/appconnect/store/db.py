"""SQLAlchemy engines: migrations, the embedded test CRM and tests (the server itself runs on `store/sql.py`)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from appconnect.store.urls import is_sqlite, make_sqlite_private, normalize_url, sqlite_file

__all__ = ["create_engine", "is_sqlite", "make_sqlite_private", "normalize_url", "sqlite_file"]


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

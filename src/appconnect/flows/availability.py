"""Is this failure a dependency being down (retry later) rather than a bug or bad input?"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

from appconnect.store.sql import DatabaseUnavailable

_DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    DatabaseUnavailable,
)


def _driver_errors() -> tuple[type[BaseException], ...]:
    """Redis's, asyncpg's and SQLAlchemy's own errors, once they are imported: a library never imported (Redis
    not configured, SQLite instead of PostgreSQL, no embedded test CRM) raised none, and importing it just to
    check would cost every worker megabytes."""
    found: tuple[type[BaseException], ...] = ()
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_errors is not None:
        found += (
            sqlalchemy_errors.TimeoutError,
            sqlalchemy_errors.OperationalError,
            sqlalchemy_errors.InterfaceError,
        )
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is not None:
        found += (redis_errors.ConnectionError, redis_errors.TimeoutError)
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and hasattr(asyncpg, "TooManyConnectionsError"):
        found += (
            asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError,
            asyncpg.InterfaceError,
            asyncpg.TooManyConnectionsError,
        )
    return found


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_dependency_down(exc: BaseException) -> bool:
    """A database or Redis we cannot reach (refused, reset, timed out, connection lost, pool exhausted)."""
    known = _DEPENDENCY_ERRORS + _driver_errors()
    for cause in _causes(exc):
        if isinstance(cause, known):
            return True
        if getattr(cause, "connection_invalidated", False):  # SQLAlchemy's DBAPIError on a lost connection
            return True
    return False

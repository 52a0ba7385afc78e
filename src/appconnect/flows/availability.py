"""Is this failure a dependency being down (retry later) rather than a bug or bad input?"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import asyncpg  # type: ignore[import-untyped]
import redis.exceptions
import sqlalchemy.exc

_DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_dependency_down(exc: BaseException) -> bool:
    """A database or Redis we cannot reach (refused, reset, timed out, connection lost, pool exhausted)."""
    for cause in _causes(exc):
        if isinstance(cause, _DEPENDENCY_ERRORS):
            return True
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
            return True
    return False

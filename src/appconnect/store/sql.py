"""The server's database access: hand-written SQL run straight on the driver, below SQLAlchemy.

Every request of the client's flow runs a handful of statements. Through SQLAlchemy's async engine each one
costs statement building, cache-key generation, a greenlet bridge and, on SQLite, two thread hand-offs
(aiosqlite): together more CPU than the rest of the request. Here:

* statements are plain SQL text written once (`Statement`), with `?` placeholders turned into `$n` for
  PostgreSQL at import time;
* SQLite runs on the event loop thread through the standard `sqlite3` module (a statement takes microseconds).
  The busy timeout is 0, so a database locked by another process never blocks the loop: the attempt is
  repeated after an `asyncio.sleep`. Writes queue on an in-process lock: a single statement commits by
  itself, a transaction runs between `BEGIN IMMEDIATE` and `COMMIT` with no await in between; reads use a
  second connection and see only committed data;
* PostgreSQL runs on a pool of asyncpg connections of its own (prepared statements cached per connection,
  single statements in autocommit, no reset round trip when a connection goes back to the pool: only a
  connection whose statements may have left session state, a `SET` for one, is reset). Beyond the
  `keep_open` connections, one left idle `idle_seconds` is closed; every connection is replaced after about
  `recycle_seconds`; connect options (application name, statement timeout, statement cache size) come from
  `PostgresOptions`.

Failures come out as this module's `DatabaseError` classes: `IntegrityError` (a duplicate key),
`DatabaseUnavailable` (unreachable, connection lost) and `DatabaseBusy` (no free connection in time). The
statement's parameters never reach the exception (they hold phone numbers, names and notes). The whole server
runs on this layer; SQLAlchemy (the schema, Alembic migrations, the embedded test CRM) is never imported by a
worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import orjson

from appconnect.store.urls import (
    connect_options,
    is_sqlite,
    make_sqlite_private,
    normalize_url,
    split_connect_options,
    sqlite_file,
)

Row = Any  # sqlite3.Row or asyncpg.Record: both index by column name


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement in both dialects' placeholder styles.

    `session_state`: the statement may leave state on its PostgreSQL session (a `SET`, an advisory lock, a
    `LISTEN`...), so its connection is reset before anyone else uses it. Found once, when the statement is
    written, so the statements of the flow (none of which does that) pay nothing.
    """

    sqlite: str
    postgres: str
    session_state: bool = False


_PLACEHOLDER = re.compile(r"\?")
# what survives the statement on its session: settings, advisory locks held past the transaction,
# notifications, cursors, temporary tables, an open transaction
_SESSION_STATE = re.compile(
    r"^\s*(SET|RESET|BEGIN|START|LISTEN|DECLARE|CREATE\s+(TEMP|TEMPORARY)|LOAD)\b"
    r"|\bset_config\s*\(|\bpg_(try_)?advisory_lock(_shared)?\s*\(",
    re.IGNORECASE,
)


def sql(text: str) -> Statement:
    """`?` placeholders (SQLite's) and their `$1..$n` twins for asyncpg. No `?` may appear in a literal."""
    counter = iter(range(1, 1000))
    postgres = _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", text)
    return Statement(
        sqlite=" ".join(text.split()),
        postgres=" ".join(postgres.split()),
        session_state=_SESSION_STATE.search(text) is not None,
    )


class Executor(Protocol):
    """What a transaction offers: statements run inside it."""

    async def one(self, statement: Statement, *args: Any) -> Row | None: ...

    async def all(self, statement: Statement, *args: Any) -> list[Row]: ...

    async def run(self, statement: Statement, *args: Any) -> int: ...


class Database(Executor, Protocol):
    dialect: str

    async def write(self, statement: Statement, *args: Any) -> Row | None:
        """One write statement on its own (committed by itself), and its RETURNING row if any."""
        ...

    def usage(self) -> tuple[int, int]:
        """(connections in use, connections it may open): for the pool-usage metric."""
        ...

    def transaction(self) -> Any: ...

    def stamp(self, value: datetime | None) -> Any: ...

    def when(self, value: Any) -> datetime | None: ...

    async def close(self) -> None: ...


def to_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def from_json(value: Any) -> Any:
    if value is None or not isinstance(value, str | bytes):
        return value
    return orjson.loads(value)


class DatabaseError(Exception):
    """A statement failed. The message names the statement and the driver's reason, never the parameters."""


class IntegrityError(DatabaseError):
    """A unique key or another constraint refused the write."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached, or the connection was lost: retry later (HTTP 503)."""


class DatabaseBusy(DatabaseUnavailable):
    """Every connection of this worker stayed in use for the whole pool timeout."""


def _failure(kind: type[DatabaseError], statement: str, reason: str) -> DatabaseError:
    return kind(f"{reason} [{statement[:120]}]")


def _wrapped(statement: str, exc: BaseException) -> DatabaseError:
    """The driver's error as ours, without the parameters."""
    if isinstance(exc, sqlite3.IntegrityError):
        return _failure(IntegrityError, statement, f"IntegrityError: {exc}")
    if isinstance(exc, sqlite3.OperationalError):
        return _failure(DatabaseUnavailable, statement, f"OperationalError: {exc}")
    if isinstance(exc, sqlite3.Error):
        return _failure(DatabaseError, statement, f"{type(exc).__name__}: {exc}")
    import asyncpg  # type: ignore[import-untyped]

    if isinstance(exc, asyncpg.PostgresError):
        # PostgreSQL's DETAIL line quotes the offending values ("Key (phone)=(...) already exists"): keep only
        # the message and the SQLSTATE
        sqlstate = getattr(exc, "sqlstate", None) or "?"
        reason = f"{type(exc).__name__} [{sqlstate}]: {exc.args[0] if exc.args else ''}"
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return _failure(IntegrityError, statement, reason)
        # a server shutting down or restarting (an administrator's pg_terminate_backend too) is "retry later"
        if not isinstance(
            exc,
            asyncpg.PostgresConnectionError
            | asyncpg.CannotConnectNowError
            | asyncpg.TooManyConnectionsError
            | asyncpg.AdminShutdownError
            | asyncpg.CrashShutdownError,
        ):
            return _failure(DatabaseError, statement, reason)
        return _failure(DatabaseUnavailable, statement, reason)
    # lost or refused connections, interface errors, OS errors: the database is unreachable
    return _failure(DatabaseUnavailable, statement, type(exc).__name__)


# --- SQLite -------------------------------------------------------------------------------------------------

_BUSY_WAIT_SECONDS = 30.0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class _SqliteExecutor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def one(self, statement: Statement, *args: Any) -> Row | None:
        try:
            row: Row | None = self._conn.execute(statement.sqlite, args).fetchone()
        except sqlite3.Error as exc:
            raise _wrapped(statement.sqlite, exc) from None
        return row

    async def all(self, statement: Statement, *args: Any) -> list[Row]:
        try:
            return self._conn.execute(statement.sqlite, args).fetchall()
        except sqlite3.Error as exc:
            raise _wrapped(statement.sqlite, exc) from None

    async def run(self, statement: Statement, *args: Any) -> int:
        try:
            return self._conn.execute(statement.sqlite, args).rowcount
        except sqlite3.Error as exc:
            raise _wrapped(statement.sqlite, exc) from None


async def _sqlite_retrying(conn: sqlite3.Connection, statement: Statement, args: Sequence[Any]) -> Any:
    """Run a statement outside a transaction, sleeping (not blocking) while another process holds a lock."""
    deadline = time.monotonic() + _BUSY_WAIT_SECONDS
    delay = 0.001
    while True:
        try:
            return conn.execute(statement.sqlite, args)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise _wrapped(statement.sqlite, exc) from None
        except sqlite3.Error as exc:
            raise _wrapped(statement.sqlite, exc) from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class SqliteDatabase:
    """Two connections on the event loop thread: one for reads, one for writes (serialised in-process)."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self._path = path
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise _wrapped("connect", exc) from None
        return conn

    def _read_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = self._open()
        return self._reader

    def _write_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._open()
        return self._writer

    async def one(self, statement: Statement, *args: Any) -> Row | None:
        row: Row | None = (await _sqlite_retrying(self._read_conn(), statement, args)).fetchone()
        return row

    async def all(self, statement: Statement, *args: Any) -> list[Row]:
        rows: list[Row] = (await _sqlite_retrying(self._read_conn(), statement, args)).fetchall()
        return rows

    async def run(self, statement: Statement, *args: Any) -> int:
        """One write, committed by itself (SQLite's autocommit: no BEGIN/COMMIT round of our own)."""
        async with self._write_lock:
            cursor = await _sqlite_retrying(self._write_conn(), statement, args)
            count: int = cursor.rowcount
            cursor.close()
        return count

    async def write(self, statement: Statement, *args: Any) -> Row | None:
        async with self._write_lock:
            cursor = await _sqlite_retrying(self._write_conn(), statement, args)
            # a RETURNING statement commits only once it has run to the end
            rows = cursor.fetchall()
            cursor.close()
        return rows[0] if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteExecutor]:
        async with self._write_lock:
            conn = self._write_conn()
            await _sqlite_retrying(conn, _BEGIN, ())
            try:
                yield _SqliteExecutor(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _wrapped("COMMIT", exc) from None

    def usage(self) -> tuple[int, int]:
        return (1 if self._write_lock.locked() else 0), 1

    def stamp(self, value: datetime | None) -> Any:
        """The text SQLAlchemy's SQLite DateTime stores (naive UTC), so both paths compare alike."""
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def when(self, value: Any) -> datetime | None:
        if value is None:
            return None
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None


_BEGIN = Statement("BEGIN IMMEDIATE", "BEGIN")


# --- PostgreSQL ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """How the server's PostgreSQL connections are opened and kept (settings; the database URL's query wins)."""

    #: shown in `pg_stat_activity`, so an operator tells the server's connections from everyone else's
    application_name: str = "appconnect"
    #: PostgreSQL cancels a statement that runs longer (0: the server's or the role's own setting)
    statement_timeout_ms: int = 0
    #: prepared statements asyncpg keeps per connection; 0 behind PgBouncer in transaction pooling mode
    statement_cache_size: int = 100
    #: a connection beyond the pool's `keep_open` that stays idle this long is closed
    idle_seconds: float = 60.0
    #: a connection is closed and replaced after about this long (0: kept for ever)
    recycle_seconds: float = 1800.0

    def with_url(self, query: dict[str, str]) -> PostgresOptions:
        """These options with those the database URL names (`?application_name=x&statement_timeout=5000`)."""
        changed: dict[str, Any] = {}
        if "application_name" in query:
            changed["application_name"] = query["application_name"]
        if "statement_timeout" in query:
            changed["statement_timeout_ms"] = int(query["statement_timeout"])
        if "statement_cache_size" in query:
            changed["statement_cache_size"] = int(query["statement_cache_size"])
        return dataclasses.replace(self, **changed)

    def server_settings(self) -> dict[str, str]:
        """What the connection's start-up message sets on its session."""
        settings: dict[str, str] = {}
        if self.application_name:
            settings["application_name"] = self.application_name
        if self.statement_timeout_ms:
            settings["statement_timeout"] = str(self.statement_timeout_ms)
        return settings


class _PgExecutor:
    def __init__(self, conn: Any) -> None:
        self._conn = conn
        #: a statement of the transaction may have left session state: reset the connection after it
        self.dirty = False

    async def one(self, statement: Statement, *args: Any) -> Row | None:
        self.dirty |= statement.session_state
        try:
            return await self._conn.fetchrow(statement.postgres, *args)
        except Exception as exc:
            raise _wrapped(statement.postgres, exc) from None

    async def all(self, statement: Statement, *args: Any) -> list[Row]:
        self.dirty |= statement.session_state
        try:
            rows: list[Row] = await self._conn.fetch(statement.postgres, *args)
        except Exception as exc:
            raise _wrapped(statement.postgres, exc) from None
        return rows

    async def run(self, statement: Statement, *args: Any) -> int:
        self.dirty |= statement.session_state
        try:
            status: str = await self._conn.execute(statement.postgres, *args)
        except Exception as exc:
            raise _wrapped(statement.postgres, exc) from None
        return _row_count(status)


def _row_count(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _reusable_after(exc: BaseException) -> bool:
    """A statement the server refused (a duplicate key, a bad value) leaves its connection as good as new;
    anything else (a lost connection, a cancelled await mid-query) may not, so that connection is dropped."""
    import asyncpg

    return isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, asyncpg.PostgresConnectionError)


#: `DISCARD ALL` without `DEALLOCATE ALL` and `DISCARD PLANS`, which would drop the prepared statements asyncpg
#: keeps for the connection: everything else a session may hold goes, in one round trip
_RESET_SESSION = (
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)
_RESET_TIMEOUT_SECONDS = 5.0
_CLOSE_TIMEOUT_SECONDS = 5.0
_NEVER = float("inf")


class _ConnectionPool:
    """At most `max_size` asyncpg connections, handed out and taken back without awaiting when one is idle.

    asyncpg's own pool wraps every connection in a proxy and spends 25-35 µs per acquire and release on this
    machine; the flow runs up to nine statements, each on its own acquire. Here taking an idle connection is a
    list pop and giving it back a list append (or a hand-over to the first waiter). A connection that may be
    in an unknown state (lost, cancelled mid-query, left inside a transaction) is closed instead of reused,
    and its slot goes to a waiter, who opens a fresh one.

    Idle connections form a stack (the most recently used on top, taken first), so after a burst the ones at
    the bottom stay unused: a timer closes those idle `idle_seconds` while more than `keep_open` are open, and
    any connection past its lifetime (`recycle_seconds`, less up to a tenth so that connections opened together
    are not all replaced at once) is closed when it is given back or found idle. Both close politely, in the
    background; a waiter or the next request opens a new one when it needs it.
    """

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int,
        timeout: float,
        keep_open: int | None = None,
        idle_seconds: float = 60.0,
        recycle_seconds: float = 1800.0,
        statement_cache_size: int = 100,
    ) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._timeout = timeout
        self._keep = max_size if keep_open is None else max(0, min(keep_open, max_size))
        self._idle_seconds = idle_seconds
        self._recycle_seconds = recycle_seconds
        self._statement_cache_size = statement_cache_size
        # (connection, idle since): the most recently used last
        self._idle: list[tuple[Any, float]] = []
        self._open = 0
        self._retire_at: dict[Any, float] = {}
        # a waiter gets a connection, or None: "a slot is yours, open a connection"
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._closed = False
        shortest = min(idle_seconds, recycle_seconds) if recycle_seconds > 0 else idle_seconds
        self._sweep_every = max(0.05, shortest / 4)
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def in_use(self) -> int:
        return self._open - len(self._idle)

    def open_count(self) -> int:
        """Connections open now, idle or in use."""
        return self._open

    def take_idle(self) -> Any | None:
        idle = self._idle
        while idle:
            conn = idle.pop()[0]
            if not conn.is_closed():
                return conn
            self._forget(conn)
        return None

    async def acquire(self) -> Any:
        if self._closed:
            raise DatabaseUnavailable("the database pool is closed")
        conn = self.take_idle()
        if conn is not None:
            return conn
        if self._open < self._max_size:
            self._open += 1
            return await self._connect()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                handed = await waiter
        except TimeoutError as exc:
            raise DatabaseBusy("no free database connection") from exc
        except BaseException:
            # cancelled: a connection or slot handed over at the same moment must not be lost
            if waiter.done() and not waiter.cancelled():
                self._give_back(waiter.result())
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        return handed if handed is not None else await self._connect()

    async def _connect(self) -> Any:
        """Open a connection in a slot already counted in `_open`; the slot is freed again if it fails."""
        import asyncpg

        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout,
                command_timeout=None,
                statement_cache_size=self._statement_cache_size,
            )
        except BaseException as exc:
            self._open -= 1
            self._pass_slot()
            if isinstance(exc, Exception):
                raise _wrapped("connect", exc) from None
            raise
        if self._recycle_seconds > 0:
            self._retire_at[conn] = time.monotonic() + self._recycle_seconds * (1 - random.random() / 10)
        return conn

    def release(self, conn: Any) -> None:
        if self._closed or conn.is_closed() or conn.is_in_transaction():
            self.discard(conn)
            return
        now = time.monotonic()
        if now >= self._retire_at.get(conn, _NEVER):
            self._retire(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append((conn, now))
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)

    async def release_reset(self, conn: Any) -> None:
        """Give back a connection whose session may hold state (a `SET`, a lock...): reset it first, or close it
        when that fails. One round trip, paid only after such statements."""
        try:
            if conn.is_in_transaction():
                await asyncio.wait_for(conn.execute("ROLLBACK"), _RESET_TIMEOUT_SECONDS)
            await asyncio.wait_for(conn.execute(_RESET_SESSION), _RESET_TIMEOUT_SECONDS)
        except Exception:
            self.discard(conn)
            return
        except BaseException:
            self.discard(conn)
            raise
        self.release(conn)

    def _give_back(self, handed: Any) -> None:
        if handed is None:
            self._open -= 1
            self._pass_slot()
        else:
            self.release(handed)

    def discard(self, conn: Any) -> None:
        conn.terminate()
        self._forget(conn)
        self._pass_slot()

    def _forget(self, conn: Any) -> None:
        self._retire_at.pop(conn, None)
        self._open -= 1

    def _retire(self, conn: Any) -> None:
        """Close a healthy connection we no longer want (idle too long, too old), politely and in the background."""
        self._forget(conn)
        self._pass_slot()
        task = asyncio.get_running_loop().create_task(self._close_politely(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_politely(conn: Any) -> None:
        try:
            await conn.close(timeout=_CLOSE_TIMEOUT_SECONDS)
        except Exception:
            conn.terminate()

    def _sweep(self) -> None:
        """Close the idle connections past their lifetime, and those idle too long beyond `keep_open`."""
        self._sweeper = None
        if self._closed:
            return
        now = time.monotonic()
        idle, self._idle = self._idle, []
        for entry in idle:  # the longest idle first
            conn, since = entry
            if conn.is_closed():
                self._forget(conn)
                self._pass_slot()
            elif now >= self._retire_at.get(conn, _NEVER) or (
                self._open > self._keep and now - since >= self._idle_seconds
            ):
                self._retire(conn)
            else:
                self._idle.append(entry)
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)

    def _pass_slot(self) -> None:
        """A slot came free: the first waiter may open a connection in it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._open += 1
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        for conn, _since in idle:
            self._forget(conn)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT_SECONDS)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(DatabaseUnavailable("the database pool is closed"))


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        max_size: int,
        acquire_timeout: float,
        keep_open: int | None = None,
        options: PostgresOptions | None = None,
    ) -> None:
        plain = split_connect_options(url)[0]
        self.options = (options or PostgresOptions()).with_url(connect_options(url))
        # asyncpg takes the libpq form: the same URL without SQLAlchemy's driver name. The start-up settings go
        # into its query, where asyncpg reads them (so the user cache's LISTEN connection carries them too).
        dsn = "postgresql://" + normalize_url(plain).split("://", 1)[1]
        settings = self.options.server_settings()
        if settings:
            dsn += ("&" if "?" in dsn else "?") + urlencode(settings, quote_via=quote)
        self._dsn = dsn
        self._max_size = max_size
        self._pool = _ConnectionPool(
            dsn,
            max_size=max_size,
            timeout=acquire_timeout,
            keep_open=keep_open,
            idle_seconds=self.options.idle_seconds,
            recycle_seconds=self.options.recycle_seconds,
            statement_cache_size=self.options.statement_cache_size,
        )

    @property
    def dsn(self) -> str:
        return self._dsn

    async def _single(self, method: str, statement: Statement, args: tuple[Any, ...]) -> Any:
        """One statement on a pooled connection, in autocommit (one round trip, no BEGIN/COMMIT)."""
        pool = self._pool
        conn = pool.take_idle()
        if conn is None:
            conn = await pool.acquire()
        try:
            result = await getattr(conn, method)(statement.postgres, *args)
        except BaseException as exc:
            if _reusable_after(exc) and not statement.session_state:
                pool.release(conn)
            else:
                pool.discard(conn)
            if isinstance(exc, Exception):
                raise _wrapped(statement.postgres, exc) from None
            raise
        if statement.session_state:
            await pool.release_reset(conn)
        else:
            pool.release(conn)
        return result

    async def one(self, statement: Statement, *args: Any) -> Row | None:
        return await self._single("fetchrow", statement, args)

    async def all(self, statement: Statement, *args: Any) -> list[Row]:
        rows: list[Row] = await self._single("fetch", statement, args)
        return rows

    async def run(self, statement: Statement, *args: Any) -> int:
        return _row_count(await self._single("execute", statement, args))

    async def write(self, statement: Statement, *args: Any) -> Row | None:
        return await self._single("fetchrow", statement, args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgExecutor]:
        pool = self._pool
        conn = await pool.acquire()
        executor = _PgExecutor(conn)
        committed = False
        try:
            try:
                tx = conn.transaction()
                await tx.start()
            except Exception as exc:
                raise _wrapped("BEGIN", exc) from None
            try:
                yield executor
            except BaseException:
                # a lost connection cannot roll back: the server did so when it went
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
            try:
                await tx.commit()
            except Exception as exc:
                raise _wrapped("COMMIT", exc) from None
            committed = True
        finally:
            if not executor.dirty:
                # still inside a transaction (a failed rollback or commit): release() closes it
                pool.release(conn)
            elif committed:
                await pool.release_reset(conn)
            else:
                pool.discard(conn)

    def usage(self) -> tuple[int, int]:
        return self._pool.in_use(), self._max_size

    def open_connections(self) -> int:
        """Connections this worker holds open now, idle or in use."""
        return self._pool.open_count()

    def stamp(self, value: datetime | None) -> Any:
        return value

    def when(self, value: Any) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    async def close(self) -> None:
        await self._pool.close()


def open_database(
    url: str,
    *,
    max_connections: int,
    acquire_timeout: float,
    keep_open: int | None = None,
    options: PostgresOptions | None = None,
) -> Database:
    """SQLite file or PostgreSQL, from the same URL the engine uses.

    PostgreSQL: at most `max_connections`, of which `keep_open` (all when None) stay open however long they
    are idle; `options` (and the URL's query) say how they connect and how long they live.
    """
    if is_sqlite(url):
        path = sqlite_file(url)
        if path is None:
            raise ValueError(
                "the SQLite database must be a file (an in-memory one is private to a connection)"
            )
        make_sqlite_private(url)
        return SqliteDatabase(str(path))
    return PostgresDatabase(
        url,
        max_size=max(1, max_connections),
        acquire_timeout=acquire_timeout,
        keep_open=keep_open,
        options=options,
    )

"""Each worker keeps the users it served recently, and drops an entry the moment any process changes that user.

Every authenticated request needs its user row (tokens, scope, settings, the logout time its JWT is checked
against). Reading it each time is a third of the flow's statements. Cached rows must never outlive a change
made elsewhere: a token refresh on another worker, or a logout on another machine, must be seen by the very
next request. So every change to a user is announced, and a cached row is used only while no announcement
for its user has arrived since it was read:

* SQLite (one machine): a small shared-memory file of change counters beside the database. A change bumps the
  user's counter right after its commit, under a file lock; a reader notes the counter before reading the
  row and uses the cached row only while the counter is unchanged.
* PostgreSQL (any number of machines): `NOTIFY appconnect_users` sent inside the transaction that changes the
  user, so the announcement and the change commit together; each worker LISTENs on a connection of its own.
  While that connection is down (or not yet up) nothing is served from the cache.

Entries also expire after `MAX_AGE_SECONDS`, a bound for rows edited by hand in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from appconnect.store.users import UserRecord

log = logging.getLogger("appconnect.store")

MAX_AGE_SECONDS = 60.0
MAX_ENTRIES = 10_000
CHANNEL = "appconnect_users"

_SLOTS = 4096
_SLOT = struct.Struct("<Q")


class UserChanges(Protocol):
    """Where changes to users are announced and read back."""

    def generation(self, user_id: str) -> int | None:
        """A number that changes whenever `user_id` changes; None while changes cannot be followed."""
        ...

    def announced(self, user_id: str) -> None:
        """This process changed `user_id` (and committed): tell every process."""
        ...

    async def close(self) -> None: ...


def changes_file(database: Path) -> Path:
    """The change counters of an SQLite database: a file beside it (0600, like the database's own files)."""
    return database.with_name(database.name + "-users")


class SharedMemoryChanges:
    """Per-user change counters in a memory-mapped file shared by the worker processes of one machine.

    Users hash into 4096 counters: two users sharing one only cost each other a cache miss.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SLOTS * _SLOT.size:
                os.ftruncate(fd, _SLOTS * _SLOT.size)
            self._map = mmap.mmap(fd, _SLOTS * _SLOT.size)
        finally:
            os.close(fd)

    @staticmethod
    def _offset(user_id: str) -> int:
        return (zlib.crc32(user_id.encode()) % _SLOTS) * _SLOT.size

    def generation(self, user_id: str) -> int | None:
        value: int = _SLOT.unpack_from(self._map, self._offset(user_id))[0]
        return value

    def announced(self, user_id: str) -> None:
        offset = self._offset(user_id)
        # read-modify-write under an exclusive lock: two processes bumping at once must both count
        with open(self._path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = _SLOT.unpack_from(self._map, offset)[0]
                _SLOT.pack_into(self._map, offset, (current + 1) % (1 << 63))
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    async def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()


class ListenChanges:
    """Follows `NOTIFY appconnect_users` on a dedicated PostgreSQL connection (sent by the changing
    transaction itself, see `UserStore`). Reconnects with back-off; the cache is off until it listens."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._counters: dict[str, int] = {}
        self._epoch = 0
        self._listening = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._lost: asyncio.Event | None = None

    def _start(self) -> None:
        if self._task is None and not self._closed:
            try:
                self._task = asyncio.get_running_loop().create_task(self._follow())
            except RuntimeError:
                return  # no event loop (a synchronous caller): stay off

    def generation(self, user_id: str) -> int | None:
        if not self._listening:
            self._start()
            return None
        return (self._epoch << 32) + self._counters.get(user_id, 0)

    def announced(self, user_id: str) -> None:
        # our own change counts at once; the notification that follows bumps it again (harmless)
        self._counters[user_id] = self._counters.get(user_id, 0) + 1

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._counters[payload] = self._counters.get(payload, 0) + 1

    def _connection_lost(self, _conn: Any) -> None:
        self._listening = False
        self._epoch += 1
        if self._lost is not None:
            self._lost.set()

    async def _follow(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        delay = 0.5
        while not self._closed:
            self._lost = asyncio.Event()
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                conn.add_termination_listener(self._connection_lost)
                await conn.add_listener(CHANNEL, self._notified)
                # changes made while nobody listened are unknown: start from a clean slate
                self._counters.clear()
                self._epoch += 1
                self._listening = True
                delay = 0.5
                await self._lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("user change notifications unavailable (%s): user cache off", type(exc).__name__)
            finally:
                self._listening = False
                self._epoch += 1
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            if not self._closed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        self._closed = True
        self._listening = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


@dataclass(frozen=True, slots=True)
class _Entry:
    generation: int
    stored_at: float
    record: UserRecord


def _copy(record: UserRecord) -> UserRecord:
    return replace(
        record,
        platform_additional_info=dict(record.platform_additional_info),
        user_settings=dict(record.user_settings),
    )


class UserCache:
    """Recently read users of this process, each valid while its change generation is unchanged."""

    def __init__(self, changes: UserChanges) -> None:
        self.changes = changes
        self._entries: dict[str, _Entry] = {}

    def lookup(self, user_id: str) -> tuple[int | None, UserRecord | None]:
        """The generation to store a fresh read under (read first: a change racing the read then makes the
        stored entry stale at once), and the cached user when still valid (a copy: callers may change it)."""
        generation = self.changes.generation(user_id)
        if generation is None:
            return None, None
        entry = self._entries.get(user_id)
        if entry is None or entry.generation != generation:
            return generation, None
        if time.monotonic() - entry.stored_at > MAX_AGE_SECONDS:
            del self._entries[user_id]
            return generation, None
        return generation, _copy(entry.record)

    def store(self, user_id: str, generation: int | None, record: UserRecord) -> None:
        if generation is None:
            return
        if len(self._entries) >= MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
        self._entries[user_id] = _Entry(generation, time.monotonic(), _copy(record))

    def changed(self, user_id: str) -> None:
        """This process committed a change to `user_id`."""
        self._entries.pop(user_id, None)
        self.changes.announced(user_id)


async def announce_user_change(database_url: str, user_id: str) -> None:
    """Tell running servers that `user_id` was changed outside them (a row edited by hand or by a script)."""
    from appconnect.store.sql import open_database, sql
    from appconnect.store.urls import sqlite_file

    path = sqlite_file(database_url)
    if path is not None:
        changes = SharedMemoryChanges(changes_file(path))
        changes.announced(user_id)
        await changes.close()
        return
    db = open_database(database_url, max_connections=1, acquire_timeout=10)
    try:
        await db.one(sql("SELECT pg_notify('appconnect_users', ?)"), user_id)
    finally:
        await db.close()

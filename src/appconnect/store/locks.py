"""Named cross-process locks: single-flight token refresh, one contact per number, one activity per conversation.

Coroutines of one process first queue on an in-memory lock (cheap), then the holder takes the shared lock:
a Redis key (`SET NX PX`) when Redis is configured, else a row in the `locks` table (works on SQLite across
worker processes and on PostgreSQL across machines). Every lock has a TTL so a crashed holder cannot block
the others for longer than that.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from appconnect.store.sql import Database, sql


class LockTimeout(Exception):
    """The lock was not free within the wait time."""


class _SharedLock(Protocol):
    async def try_acquire(self, name: str, owner: str, ttl: float) -> bool: ...

    async def release(self, name: str, owner: str) -> None: ...


_TAKE_LOCK = sql(
    """INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
    WHERE locks.expires_at < ?
    RETURNING owner"""
)
_RELEASE_LOCK = sql("DELETE FROM locks WHERE name = ? AND owner = ?")


class DatabaseSharedLock:
    """A lock row per name, taken in one statement: inserted, or taken over once its holder's TTL ran out."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def try_acquire(self, name: str, owner: str, ttl: float) -> bool:
        now = datetime.now(UTC)
        row = await self._db.write(
            _TAKE_LOCK, name, owner, self._db.stamp(now + timedelta(seconds=ttl)), self._db.stamp(now)
        )
        return row is not None

    async def release(self, name: str, owner: str) -> None:
        await self._db.run(_RELEASE_LOCK, name, owner)


_RELEASE_SCRIPT = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class RedisSharedLock:
    """`SET name owner NX PX ttl`; released only by its owner (compare-and-delete script)."""

    def __init__(self, client: Any, prefix: str = "appconnect:lock:") -> None:
        self._client = client
        self._prefix = prefix

    async def try_acquire(self, name: str, owner: str, ttl: float) -> bool:
        return bool(await self._client.set(self._prefix + name, owner, nx=True, px=int(ttl * 1000)))

    async def release(self, name: str, owner: str) -> None:
        await self._client.eval(_RELEASE_SCRIPT, 1, self._prefix + name, owner)


class LockManager:
    """`async with locks.hold("refresh:<user>"):` — one holder across every process sharing the store."""

    def __init__(self, shared: _SharedLock, *, wait_seconds: float = 25.0) -> None:
        self._shared = shared
        self._wait_seconds = wait_seconds
        self._local: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def try_hold(self, name: str, *, ttl: float) -> AsyncIterator[bool]:
        """Take the lock only if it is free right now (no waiting): yields whether this caller holds it."""
        owner = uuid.uuid4().hex
        if not await self._shared.try_acquire(name, owner, ttl):
            yield False
            return
        try:
            yield True
        finally:
            await self._shared.release(name, owner)

    @asynccontextmanager
    async def hold(self, name: str, *, ttl: float = 30.0) -> AsyncIterator[None]:
        local, users = self._local.get(name, (asyncio.Lock(), 0))
        self._local[name] = (local, users + 1)
        try:
            deadline = time.monotonic() + self._wait_seconds
            try:
                await asyncio.wait_for(local.acquire(), timeout=self._wait_seconds)
            except TimeoutError as exc:
                raise LockTimeout(name) from exc
            try:
                owner = uuid.uuid4().hex
                delay = 0.005
                while not await self._shared.try_acquire(name, owner, ttl):
                    if time.monotonic() > deadline:
                        raise LockTimeout(name)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.1)
                try:
                    yield
                finally:
                    await self._shared.release(name, owner)
            finally:
                local.release()
        finally:
            lock, remaining = self._local[name]
            if remaining <= 1:
                del self._local[name]
            else:
                self._local[name] = (lock, remaining - 1)

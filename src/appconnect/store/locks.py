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

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from appconnect.store.db import write_transaction
from appconnect.store.tables import locks


class LockTimeout(Exception):
    """The lock was not free within the wait time."""


class _SharedLock(Protocol):
    async def try_acquire(self, name: str, owner: str, ttl: float) -> bool: ...

    async def release(self, name: str, owner: str) -> None: ...


class DatabaseSharedLock:
    """A lock row per name; an expired row is removed by the next contender."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def try_acquire(self, name: str, owner: str, ttl: float) -> bool:
        now = datetime.now(UTC)
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    insert(locks).values(name=name, owner=owner, expires_at=now + timedelta(seconds=ttl))
                )
            return True
        except IntegrityError:
            async with write_transaction(self._engine) as conn:
                await conn.execute(delete(locks).where(locks.c.name == name, locks.c.expires_at < now))
            return False

    async def release(self, name: str, owner: str) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(delete(locks).where(locks.c.name == name, locks.c.owner == owner))


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

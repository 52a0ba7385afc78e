"""Named locks shared by processes: mutual exclusion, takeover of a crashed holder's lock, bounded waits."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from appconnect.store.locks import DatabaseSharedLock, LockManager, LockTimeout, RedisSharedLock
from appconnect.store.migrate import upgrade
from appconnect.store.sql import open_database


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest_asyncio.fixture(params=["database", "redis"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    """Two independent lock managers over one backend stand in for two server processes."""
    if request.param == "database":
        url = f"sqlite+aiosqlite:///{tmp_path / 'locks.sqlite3'}"
        await asyncio.to_thread(upgrade, url)
        db = open_database(url, max_connections=4, acquire_timeout=10)
        yield DatabaseSharedLock(db)
        await db.close()
        return
    if not redis_reachable():
        if os.environ.get("CI"):
            pytest.fail("Redis is not reachable on 127.0.0.1:6379 but CI must test it")
        pytest.skip("Redis not reachable on 127.0.0.1:6379 (runs on CI)")
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.from_url("redis://127.0.0.1:6379/0")
    yield RedisSharedLock(client, prefix=f"test:{uuid.uuid4().hex}:")
    await client.aclose()


async def test_only_one_holder_across_managers(shared: DatabaseSharedLock) -> None:
    first, second = LockManager(shared, wait_seconds=10), LockManager(shared, wait_seconds=10)
    inside = 0
    most = 0

    async def critical(manager: LockManager) -> None:
        nonlocal inside, most
        async with manager.hold("refresh:user-1"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*[critical(first if i % 2 else second) for i in range(20)])
    assert most == 1


async def test_expired_lock_of_a_crashed_holder_is_taken_over(shared: DatabaseSharedLock) -> None:
    assert await shared.try_acquire("conversation:x", "crashed-process", 0.2)
    manager = LockManager(shared, wait_seconds=5)
    async with manager.hold("conversation:x"):
        pass


async def test_waiting_is_bounded(shared: DatabaseSharedLock) -> None:
    assert await shared.try_acquire("contact:busy", "other-process", 30)
    manager = LockManager(shared, wait_seconds=0.3)
    with pytest.raises(LockTimeout):
        async with manager.hold("contact:busy"):
            pass
    await shared.release("contact:busy", "other-process")
    async with manager.hold("contact:busy"):
        pass

"""The shared rate limiter on each backend: exact grants under concurrency, shared back-off, settings parsing."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from appconnect.connectors.sdk import RateLimit
from appconnect.outbound.limits import Batched, RateLimiterBackend, RateLimitOverrides, RateLimitSettingError
from appconnect.store.rate_limits import DatabaseRateLimiter, RedisRateLimiter
from appconnect.store.sql import open_fast_database
from tests.conftest import LiveServer

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["database", "redis"])
async def limiter(request: pytest.FixtureRequest, server: LiveServer) -> AsyncIterator[RateLimiterBackend]:
    """The database limiter on the session server's (migrated) database, or the Redis one."""
    if request.param == "redis":
        if not redis_reachable():
            pytest.skip("Redis not reachable on 127.0.0.1:6379")
        import redis.asyncio as redis_asyncio

        client = redis_asyncio.from_url(REDIS_URL, socket_timeout=5)
        try:
            yield RedisRateLimiter(client, prefix=f"test-crmcalls-{uuid.uuid4().hex}:")
        finally:
            await client.aclose()
        return
    db = open_fast_database(server.settings.database_url, max_connections=5, acquire_timeout=10)
    try:
        yield DatabaseRateLimiter(db)
    finally:
        await db.close()


async def test_exactly_the_burst_is_granted_under_concurrency(limiter: RateLimiterBackend) -> None:
    key = f"testcrm:burst-{uuid.uuid4().hex}"
    limit = RateLimit(requests=5, per_seconds=60.0)
    waits = await asyncio.gather(*(limiter.acquire(key, limit) for _ in range(20)))
    assert sum(1 for w in waits if w == 0) == 5
    refused = [w for w in waits if w > 0]
    assert len(refused) == 15
    assert all(0 < w <= 12.5 for w in refused)  # the next slot frees one interval (12 s) later


async def test_accounts_do_not_share_a_budget(limiter: RateLimiterBackend) -> None:
    limit = RateLimit(requests=1, per_seconds=60.0)
    first, second = f"pipedrive:a-{uuid.uuid4().hex}", f"pipedrive:b-{uuid.uuid4().hex}"
    assert await limiter.acquire(first, limit) == 0
    assert await limiter.acquire(second, limit) == 0
    assert await limiter.acquire(first, limit) > 0


async def test_back_off_refuses_the_whole_account(limiter: RateLimiterBackend) -> None:
    key = f"testcrm:backoff-{uuid.uuid4().hex}"
    limit = RateLimit(requests=100, per_seconds=1.0)
    assert await limiter.acquire(key, limit) == 0
    await limiter.back_off(key, limit, 30.0)
    wait = await limiter.acquire(key, limit)
    assert 29 < wait <= 30.1
    await limiter.back_off(key, limit, 5.0)  # a shorter back-off does not shorten the longer one
    assert await limiter.acquire(key, limit) > 29


def test_settings_override_per_platform_or_everywhere() -> None:
    default = RateLimit(10, 1.0)
    assert RateLimitOverrides.parse("").limit_for("pipedrive", default) == default
    assert RateLimitOverrides.parse("off").limit_for("pipedrive", default) is None
    assert RateLimitOverrides.parse("50/2").limit_for("testcrm", None) == RateLimit(50, 2.0)
    per_platform = RateLimitOverrides.parse("pipedrive=80/2, testcrm=off")
    assert per_platform.limit_for("pipedrive", default) == RateLimit(80, 2.0)
    assert per_platform.limit_for("testcrm", default) is None
    assert per_platform.limit_for("other", default) == default
    for bad in ("fast", "0/1", "pipedrive=", "10/-1"):
        with pytest.raises(RateLimitSettingError):
            RateLimitOverrides.parse(bad)


async def test_batches_of_several_processes_never_exceed_the_burst(limiter: RateLimiterBackend) -> None:
    """Three processes each take budget in batches: together they spend exactly the account's burst."""
    key = f"pipedrive:batched-{uuid.uuid4().hex}"
    limit = RateLimit(requests=40, per_seconds=60.0)  # batches of 4
    processes = [Batched(limiter) for _ in range(3)]
    waits = await asyncio.gather(*(processes[i % 3].acquire(key, limit) for i in range(90)))
    assert sum(1 for w in waits if w == 0) == 40
    assert sum(1 for w in waits if w > 0) == 50


async def test_a_batch_is_one_round_trip_for_several_calls(limiter: RateLimiterBackend) -> None:
    key = f"pipedrive:trips-{uuid.uuid4().hex}"
    limit = RateLimit(requests=40, per_seconds=60.0)  # batches of 4
    batched = Batched(limiter)
    for _ in range(4):
        assert await batched.acquire(key, limit) == 0
    # the backend itself saw one grant of 4: 36 left for everyone else
    others = await asyncio.gather(*(limiter.acquire(key, limit) for _ in range(40)))
    assert sum(1 for w in others if w == 0) == 36


async def test_back_off_drops_the_batch_of_this_process(limiter: RateLimiterBackend) -> None:
    key = f"pipedrive:batch-backoff-{uuid.uuid4().hex}"
    limit = RateLimit(requests=100, per_seconds=1.0)
    batched = Batched(limiter)
    assert await batched.acquire(key, limit) == 0  # took a batch, spent one
    await batched.back_off(key, limit, 30.0)
    assert await batched.acquire(key, limit) > 29

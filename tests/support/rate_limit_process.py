"""One process of the cross-process rate-limit test: asks one key's shared window as fast as it is let, from a
common start time for a fixed time, and prints the store's time of every grant (JSON) for the test to merge.

`python -m tests.support.rate_limit_process STORE KEY REQUESTS PER_SECONDS START_AT SECONDS`, STORE a database
URL or `redis://...`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from appconnect.outbound.limits import Batched, RateLimiterBackend
from appconnect.outbound.types import RateLimit
from appconnect.store.rate_limits import DatabaseRateLimiter, RedisRateLimiter
from appconnect.store.sql import open_database


async def run(store: str, key: str, limit: RateLimit, start_at: float, seconds: float) -> list[float]:
    backend: RateLimiterBackend
    if store.startswith("redis://"):
        import redis.asyncio as redis_asyncio

        client = redis_asyncio.from_url(store, socket_timeout=5)
        backend, close = RedisRateLimiter(client, prefix="test-crmcalls-processes:"), client.aclose
    else:
        db = open_database(store, max_connections=4, acquire_timeout=10)
        backend, close = DatabaseRateLimiter(db), db.close
    batched = Batched(backend, most=4)
    granted: list[float] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))
    stop = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < stop:
            grant = await batched.take(key, limit)
            if grant.granted:
                granted.append(grant.at)
            else:
                await asyncio.sleep(min(grant.wait, 0.05))

    try:
        await asyncio.gather(*(caller() for _ in range(8)))
    finally:
        await close()
    return granted


def main(argv: list[str]) -> None:
    store, key, requests, per_seconds, start_at, seconds = argv
    limit = RateLimit(int(requests), float(per_seconds))
    print(json.dumps(asyncio.run(run(store, key, limit, float(start_at), float(seconds)))))


if __name__ == "__main__":
    main(sys.argv[1:])

"""The per-CRM-account rate limiter, shared by every worker and machine: Redis when configured, else the database.

Algorithm: GCRA (a token bucket kept as one number, the "theoretical arrival time"). A limit of N calls per S
seconds lets a burst of N through at once, then one call every S/N seconds. One key per CRM account holds the
number, so a call costs exactly one Redis round trip (a script) or one SQL statement (an upsert with RETURNING):
no read-then-write race between workers, no background sync, and no drift between processes. A local bucket
synced periodically would save that round trip but lets N processes overspend the account N-fold between syncs,
which is the failure this limiter exists to prevent.

When the CRM itself answers 429, :meth:`back_off` pushes the account's number forward so *every* caller of that
account waits out the `Retry-After`, not only the request that saw it.

`outbound.limits.Batched` takes a few calls of budget at once from these backends (each a real grant of the shared
bucket, so the account is never overspent) and spends them in-process: one round trip per few CRM calls.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from appconnect.outbound.limits import emission
from appconnect.outbound.types import RateLimit
from appconnect.store.sql import FastDatabase, Statement

#: longest shared back-off one 429 may impose on an account (a hostile or broken Retry-After is capped)
MAX_BACK_OFF_SECONDS = 300.0


# `{max}` is the two-argument maximum of the dialect, `{real}` its double type (PostgreSQL needs the casts to
# type the parameters) and `{pN}` the dialect's placeholder for the n-th parameter, used more than once.
# Parameters: 1 key, 2 now, 3 interval, 4 window, 5 grant id.
_GCRA_SQL = """
INSERT INTO rate_limits (limit_key, tat, grant_id)
VALUES ({p1}, CAST({p2} AS {real}) + CAST({p3} AS {real}), {p5})
ON CONFLICT (limit_key) DO UPDATE SET
  grant_id = CASE
    WHEN {max}(rate_limits.tat, CAST({p2} AS {real})) + CAST({p3} AS {real}) - CAST({p2} AS {real})
         <= CAST({p4} AS {real})
    THEN {p5} ELSE rate_limits.grant_id END,
  tat = CASE
    WHEN {max}(rate_limits.tat, CAST({p2} AS {real})) + CAST({p3} AS {real}) - CAST({p2} AS {real})
         <= CAST({p4} AS {real})
    THEN {max}(rate_limits.tat, CAST({p2} AS {real})) + CAST({p3} AS {real}) ELSE rate_limits.tat END
RETURNING tat, grant_id
"""

# Parameters: 1 key, 2 blocked until.
_BACK_OFF_SQL = """
INSERT INTO rate_limits (limit_key, tat, grant_id) VALUES ({p1}, CAST({p2} AS {real}), '')
ON CONFLICT (limit_key) DO UPDATE SET tat = {max}(rate_limits.tat, CAST({p2} AS {real}))
"""


def _both_dialects(template: str) -> Statement:
    def render(sqlite: bool) -> str:
        words = {"max": "max" if sqlite else "greatest", "real": "REAL" if sqlite else "DOUBLE PRECISION"}
        numbered = {f"p{n}": (f"?{n}" if sqlite else f"${n}") for n in range(1, 6)}
        return " ".join(template.format(**words, **numbered).split())

    return Statement(sqlite=render(True), postgres=render(False))


_GCRA = _both_dialects(_GCRA_SQL)
_BACK_OFF = _both_dialects(_BACK_OFF_SQL)


class DatabaseRateLimiter:
    """One row per CRM account in `rate_limits`; one upsert statement per call (SQLite and PostgreSQL)."""

    def __init__(self, db: FastDatabase) -> None:
        self._db = db

    async def acquire(self, key: str, limit: RateLimit, tokens: int = 1) -> float:
        interval, window = emission(limit)
        now = time.time()
        grant = uuid.uuid4().hex
        row = await self._db.write(_GCRA, key, now, interval * tokens, window, grant)
        assert row is not None  # an upsert with RETURNING always answers a row
        if row["grant_id"] == grant:
            return 0.0
        return max(float(row["tat"]) + interval * tokens - window - now, 0.001)

    async def back_off(self, key: str, limit: RateLimit, seconds: float) -> None:
        interval, window = emission(limit)
        blocked = time.time() + min(seconds, MAX_BACK_OFF_SECONDS) + window - interval
        await self._db.run(_BACK_OFF, key, blocked)


# Times in integer milliseconds from the Redis server's own clock, so machines with skewed clocks agree.
_REDIS_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat + interval - window - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - now + 1000)
return 0
"""

_REDIS_BACK_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if blocked > tat then redis.call('SET', KEYS[1], blocked, 'PX', blocked - now + 1000) end
return 0
"""


class RedisRateLimiter:
    """One key per CRM account; one script call (one round trip) per CRM call."""

    def __init__(self, client: Any, prefix: str = "appconnect:ratelimit:") -> None:
        self._client = client
        self._prefix = prefix

    async def acquire(self, key: str, limit: RateLimit, tokens: int = 1) -> float:
        interval, window = emission(limit)
        wait_ms = await self._client.eval(
            _REDIS_ACQUIRE, 1, self._prefix + key, max(int(interval * tokens * 1000), 1), int(window * 1000)
        )
        return 0.0 if int(wait_ms) <= 0 else int(wait_ms) / 1000

    async def back_off(self, key: str, limit: RateLimit, seconds: float) -> None:
        interval, window = emission(limit)
        blocked_ms = int((min(seconds, MAX_BACK_OFF_SECONDS) + window - interval) * 1000)
        await self._client.eval(_REDIS_BACK_OFF, 1, self._prefix + key, blocked_ms)

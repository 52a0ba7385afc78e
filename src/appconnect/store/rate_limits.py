"""The shared rate-limit store of every worker and machine: Redis when configured, else the database.

Algorithm: a sliding-window log. Each grant is kept with its time; a call is granted when the grants of the
last `per_seconds` (plus :data:`~appconnect.outbound.limits.GRANT_SLACK_SECONDS`) leave room, so no window of
that length ever holds more than `requests` grants, whatever the processes and however the calls bunch up.
(A token bucket or GCRA with a burst of N lets up to 2N - 1 calls into one window: a full burst at the end
of one window and the refill right after it.) The log of a key holds at most `requests` grants (fewer when
:class:`~appconnect.outbound.limits.Batched` grants several at once), and it is consulted only for an
operator's fixed limit and for a CRM that answered 429 lately; everything else costs no round trip.

A back-off (a CRM's 429 with its `Retry-After`) is one more value per key: while it runs nothing is granted.

In the database the key's row in `rate_limits` holds the back-off (`tat`, epoch seconds) and serialises the
grants: a transaction locks it, drops the key's grants that left the window, counts the rest and inserts the
new one into `rate_limit_grants`. In Redis one script does the same on a sorted set.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from appconnect.outbound.limits import GRANT_SLACK_SECONDS, MAX_BACK_OFF_SECONDS, Grant
from appconnect.outbound.types import RateLimit
from appconnect.store.sql import Database, Statement

#: a key longer than this is stored as a prefix and a hash (the column holds 255 characters)
_MAX_KEY = 200


def _stored_key(key: str) -> str:
    if len(key) > _MAX_KEY:
        key = key[:150] + "~" + hashlib.sha256(key.encode()).hexdigest()[:40]
    return key


def _both_dialects(template: str) -> Statement:
    """`{max}` the two-argument maximum, `{real}` the double type, `{pN}` the n-th parameter."""

    def render(sqlite: bool) -> str:
        words = {"max": "max" if sqlite else "greatest", "real": "REAL" if sqlite else "DOUBLE PRECISION"}
        numbered = {f"p{n}": (f"?{n}" if sqlite else f"${n}") for n in range(1, 6)}
        return " ".join(template.format(**words, **numbered).split())

    return Statement(sqlite=render(True), postgres=render(False))


# Locks the key's row (PostgreSQL: the upsert's row lock; SQLite: the transaction is BEGIN IMMEDIATE) and
# answers its back-off. Parameters: 1 key.
_LOCK = _both_dialects(
    """
INSERT INTO rate_limits (limit_key, tat, grant_id) VALUES ({p1}, 0, '')
ON CONFLICT (limit_key) DO UPDATE SET grant_id = rate_limits.grant_id
RETURNING tat
"""
)
# Parameters: 1 key, 2 oldest time still in the window.
_FORGET = _both_dialects(
    "DELETE FROM rate_limit_grants WHERE limit_key = {p1} AND granted_at <= CAST({p2} AS {real})"
)
_GRANTS = _both_dialects(
    "SELECT granted_at, calls FROM rate_limit_grants WHERE limit_key = {p1} ORDER BY granted_at"
)
# Parameters: 1 key, 2 grant id, 3 time, 4 calls.
_GRANT = _both_dialects(
    "INSERT INTO rate_limit_grants (limit_key, grant_id, granted_at, calls)"
    " VALUES ({p1}, {p2}, CAST({p3} AS {real}), {p4})"
)
# Parameters: 1 key, 2 blocked until.
_BACK_OFF = _both_dialects(
    """
INSERT INTO rate_limits (limit_key, tat, grant_id) VALUES ({p1}, CAST({p2} AS {real}), '')
ON CONFLICT (limit_key) DO UPDATE SET tat = {max}(rate_limits.tat, CAST({p2} AS {real}))
"""
)
_BLOCKED = _both_dialects("SELECT tat FROM rate_limits WHERE limit_key = {p1}")
# Grants of keys nobody asks for any more: no window is longer than a day. Parameters: 1 oldest time kept.
_FORGET_IDLE = _both_dialects("DELETE FROM rate_limit_grants WHERE granted_at <= CAST({p1} AS {real})")
_LONGEST_WINDOW = 86_400.0


def _window(limit: RateLimit) -> float:
    return limit.per_seconds + GRANT_SLACK_SECONDS


def _decide(grants: list[tuple[float, int]], limit: RateLimit, wanted: int, now: float) -> Grant:
    """How many of `wanted` fit beside `grants` (time, count; oldest first, all inside the window)."""
    used = sum(count for _at, count in grants)
    granted = max(0, min(wanted, limit.requests - used))
    if granted == wanted:
        return Grant(granted, 0.0, now)
    # the next call fits once enough of the oldest grants have left the window
    needed = used + granted + 1 - limit.requests
    freed = 0
    for at, count in grants:
        freed += count
        if freed >= needed:
            return Grant(granted, max(at + _window(limit) - now, 0.001), now)
    return Grant(granted, _window(limit), now)


class DatabaseRateLimiter:
    """The shared store in the `rate_limits` table (SQLite and PostgreSQL)."""

    def __init__(self, db: Database, *, sweep_every: int = 1000) -> None:
        self._db = db
        # one take in `sweep_every` also drops the grants of keys nobody asks for any more (a key's own
        # grants are dropped whenever it is asked)
        self._sweep_every = sweep_every
        self._takes = 0

    async def take(self, key: str, limit: RateLimit, wanted: int = 1) -> Grant:
        key = _stored_key(key)
        async with self._db.transaction() as tx:
            row = await tx.one(_LOCK, key)
            now = time.time()  # read once the key is ours: a grant's time is when it was decided
            blocked = float(row["tat"]) if row is not None else 0.0
            if blocked > now:
                return Grant(0, blocked - now, now)
            await tx.run(_FORGET, key, now - _window(limit))
            rows = await tx.all(_GRANTS, key)
            grants = [(float(r["granted_at"]), int(r["calls"])) for r in rows]
            grant = _decide(grants, limit, wanted, now)
            if grant.granted:
                await tx.run(_GRANT, key, uuid.uuid4().hex, now, grant.granted)
        self._takes += 1
        if self._takes % self._sweep_every == 0:
            await self._db.run(_FORGET_IDLE, now - _LONGEST_WINDOW - 60.0)
        return grant

    async def back_off(self, key: str, seconds: float) -> None:
        blocked = time.time() + min(max(seconds, 0.0), MAX_BACK_OFF_SECONDS)
        await self._db.run(_BACK_OFF, _stored_key(key), blocked)

    async def blocked_for(self, key: str) -> float:
        row = await self._db.one(_BLOCKED, _stored_key(key))
        if row is None:
            return 0.0
        return max(float(row["tat"]) - time.time(), 0.0)


# Times in integer milliseconds from the Redis server's own clock, so machines with skewed clocks agree.
# KEYS: 1 the grant log (sorted set, one member per call), 2 the back-off. ARGV: 1 limit, 2 window ms,
# 3 wanted, 4 a unique member prefix. Answers {granted, wait ms, now ms}.
_REDIS_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then return {0, blocked - now, now} end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local granted = math.max(0, math.min(wanted, limit - used))
for i = 1, granted do redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i) end
if granted > 0 then redis.call('PEXPIRE', KEYS[1], window + 1000) end
if granted == wanted then return {granted, 0, now} end
local needed = used + granted + 1 - limit
local oldest = redis.call('ZRANGE', KEYS[1], needed - 1, needed - 1, 'WITHSCORES')
local wait = window
if oldest[2] then wait = tonumber(oldest[2]) + window - now end
if wait < 1 then wait = 1 end
return {granted, wait, now}
"""

_REDIS_BACK_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if blocked > current then redis.call('SET', KEYS[1], blocked, 'PX', blocked - now + 1000) end
return 0
"""

_REDIS_BLOCKED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if blocked > now then return blocked - now end
return 0
"""


class RedisRateLimiter:
    """The shared store in Redis: a sorted set of grants and a back-off value per key; one script a call."""

    def __init__(self, client: Any, prefix: str = "appconnect:ratelimit:") -> None:
        self._client = client
        self._prefix = prefix

    async def take(self, key: str, limit: RateLimit, wanted: int = 1) -> Grant:
        name = self._prefix + key
        window_ms = max(int(_window(limit) * 1000), 1)
        granted, wait_ms, now_ms = await self._client.eval(
            _REDIS_TAKE,
            2,
            f"{name}:log",
            f"{name}:blocked",
            limit.requests,
            window_ms,
            wanted,
            uuid.uuid4().hex,
        )
        wait = int(wait_ms) / 1000 if int(granted) < wanted else 0.0
        return Grant(int(granted), wait, int(now_ms) / 1000)

    async def back_off(self, key: str, seconds: float) -> None:
        blocked_ms = int(min(max(seconds, 0.0), MAX_BACK_OFF_SECONDS) * 1000)
        await self._client.eval(_REDIS_BACK_OFF, 1, f"{self._prefix}{key}:blocked", blocked_ms)

    async def blocked_for(self, key: str) -> float:
        wait_ms = await self._client.eval(_REDIS_BLOCKED, 1, f"{self._prefix}{key}:blocked")
        return max(int(wait_ms), 0) / 1000

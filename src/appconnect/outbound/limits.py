"""The rate-limit parts that live in the process: the backend protocol, the batching wrapper, the setting's parser.

The shared backends (a row per account in the database, a key in Redis) are in :mod:`appconnect.store.rate_limits`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from appconnect.outbound.types import RateLimit


class RateLimiterBackend(Protocol):
    async def acquire(self, key: str, limit: RateLimit, tokens: int = 1) -> float:
        """Spend `tokens` calls of `key`'s budget: 0.0 when granted, else the seconds until they are free
        (nothing spent)."""
        ...

    async def back_off(self, key: str, limit: RateLimit, seconds: float) -> None:
        """Grant nothing for `key` during the next `seconds`."""
        ...


def emission(limit: RateLimit) -> tuple[float, float]:
    """(seconds between calls, burst tolerance in seconds)."""
    interval = limit.per_seconds / max(limit.requests, 1)
    return interval, limit.per_seconds


class Batched:
    """Takes up to `most` calls of an account's budget in one grant and spends them in this process.

    Every call spent was granted by the shared bucket, so all processes together never exceed the account's
    limit. Granted calls not spent within the time they took to earn (`tokens x interval`) are dropped: a
    batch never carries budget into a later burst. After a 429, this process's remaining calls are dropped
    too (other processes may still spend theirs: at most `most - 1` each).
    """

    def __init__(self, backend: RateLimiterBackend, *, most: int = 8) -> None:
        self.backend = backend
        self._most = most
        self._local: dict[str, tuple[int, float]] = {}
        # one refill at a time per account: concurrent callers wait for it and share the batch
        self._refilling: dict[str, asyncio.Lock] = {}

    def _batch(self, limit: RateLimit) -> int:
        return max(1, min(self._most, limit.requests // 10))

    def _spend(self, key: str, tokens: int) -> bool:
        left, until = self._local.get(key, (0, 0.0))
        if left >= tokens and time.monotonic() < until:
            self._local[key] = (left - tokens, until)
            return True
        return False

    async def acquire(self, key: str, limit: RateLimit, tokens: int = 1) -> float:
        if self._spend(key, tokens):
            return 0.0
        batch = self._batch(limit)
        if batch <= tokens:
            return await self.backend.acquire(key, limit, tokens)
        lock = self._refilling.setdefault(key, asyncio.Lock())
        async with lock:
            if self._spend(key, tokens):  # another caller refilled while this one waited
                return 0.0
            if await self.backend.acquire(key, limit, batch) == 0.0:
                interval, _window = emission(limit)
                self._local[key] = (batch - tokens, time.monotonic() + batch * interval)
                return 0.0
        if len(self._refilling) > 10_000:  # bounded: idle accounts' locks go
            self._refilling = {k: v for k, v in self._refilling.items() if v.locked()}
        return await self.backend.acquire(key, limit, tokens)

    async def back_off(self, key: str, limit: RateLimit, seconds: float) -> None:
        self._local.pop(key, None)
        await self.backend.back_off(key, limit, seconds)


class RateLimitSettingError(ValueError):
    """`APPCONNECT_CRM_RATE_LIMIT` could not be read."""


def _parse_limit(value: str) -> RateLimit | None:
    value = value.strip().lower()
    if value in ("off", "none", "0"):
        return None
    requests, sep, seconds = value.partition("/")
    try:
        limit = RateLimit(int(requests), float(seconds) if sep else 1.0)
    except ValueError as exc:
        raise RateLimitSettingError(f"rate limit {value!r}: expected N/SECONDS or off") from exc
    if limit.requests < 1 or limit.per_seconds <= 0:
        raise RateLimitSettingError(f"rate limit {value!r}: both numbers must be positive")
    return limit


@dataclass(slots=True)
class RateLimitOverrides:
    """`APPCONNECT_CRM_RATE_LIMIT`: '' (connector defaults), 'off', 'N/S' (every platform), 'pipedrive=N/S,...'."""

    everywhere: RateLimit | bool | None = False  # False: no global override
    by_platform: dict[str, RateLimit | None] | None = None

    @classmethod
    def parse(cls, value: str) -> RateLimitOverrides:
        value = value.strip()
        if not value:
            return cls()
        if "=" not in value:
            return cls(everywhere=_parse_limit(value))
        by_platform: dict[str, RateLimit | None] = {}
        for part in value.split(","):
            platform, _, limit = part.partition("=")
            if not platform.strip() or not limit.strip():
                raise RateLimitSettingError(f"rate limit entry {part!r}: expected platform=N/SECONDS")
            by_platform[platform.strip().lower()] = _parse_limit(limit)
        return cls(by_platform=by_platform)

    def limit_for(self, platform: str, default: RateLimit | None) -> RateLimit | None:
        if self.everywhere is not False:
            return self.everywhere if isinstance(self.everywhere, RateLimit) else None
        if self.by_platform is not None and platform.lower() in self.by_platform:
            return self.by_platform[platform.lower()]
        return default

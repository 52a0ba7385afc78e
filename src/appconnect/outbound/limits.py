"""The rate-limit parts that live in the process: what the CRM said, the account limiter, batching, the setting.

A connector declares the limits its CRM documents (:class:`~appconnect.outbound.types.LimitRule`: a scope, a
window, the paths it covers). The server never holds a call back because of a documented limit alone: it
follows what the CRM says as its answers arrive.

- `x-ratelimit-limit / -remaining / -reset` teach the real figure and what is left of the CRM's window. While
  calls are left, nothing is consulted beyond this process (no round trip). When none is left, calls wait for
  the window's reset (at most `max_wait`, then a rate-limit error without calling the CRM).
- A 429 blocks the rule's scope (every worker and machine, through the shared store) for its `Retry-After`;
  then, for a while, the rule's calls are paced through the shared sliding window at the CRM's figure.
- A CRM that sends neither headers nor 429s is never throttled in advance.
- `APPCONNECT_CRM_RATE_LIMIT` (an operator's own `N/S`) is enforced on every call through the shared window.

The shared sliding window (a log of grants per key in the database or in Redis, in
:mod:`appconnect.store.rate_limits`) lets no window of S seconds see more than N grants, across processes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from appconnect.outbound.types import LimitRule, RateLimit

logger = logging.getLogger(__name__)

#: a grant occupies its window this much longer than the window (the time from the decision to the CRM
#: receiving the call), so no window the CRM measures sees more than the figure
GRANT_SLACK_SECONDS = 0.05
#: after a 429, a rule's calls go through the shared window for this many of its windows (and at least 10 s)
HOT_WINDOWS = 5
#: how often a process reads the shared back-off of a key it calls (another process may have met a 429)
SHARED_CHECK_SECONDS = 1.0
#: longest back-off one 429 may impose: a longer Retry-After (a day's budget spent, or a broken CRM) is
#: waited out an hour at a time, then the CRM is asked again
MAX_BACK_OFF_SECONDS = 3_600.0
#: a reset header larger than this is a Unix time (Clio), not seconds
_EPOCH_THRESHOLD = 1e9
#: URLs whose rule match one limiter keeps (times the 1024 limiters a process keeps: a few MiB at most)
_MOST_MATCHES = 32


@dataclass(slots=True, frozen=True)
class Grant:
    """What the shared window granted: `granted` of the calls asked for; `wait` seconds until more are free;
    `at` when the store decided (epoch seconds, its own clock)."""

    granted: int
    wait: float
    at: float = 0.0


class RateLimiterBackend(Protocol):
    """The shared store of grants and back-offs (database or Redis), one key per rule and scope."""

    async def take(self, key: str, limit: RateLimit, wanted: int = 1) -> Grant:
        """Grant up to `wanted` calls so that no window of `limit.per_seconds` holds more than
        `limit.requests`; nothing while the key is backed off."""
        ...

    async def back_off(self, key: str, seconds: float) -> None:
        """Grant nothing for `key` during the next `seconds` (a longer back-off already set stays)."""
        ...

    async def blocked_for(self, key: str) -> float:
        """Seconds left of `key`'s back-off, 0.0 when none."""
        ...


class Batched:
    """Coalesces the calls of this process that ask for one key at the same moment into one round trip.

    Every call is still granted by the shared window at the moment it is made (no budget is held in the
    process), so the window stays exact across processes; a burst of K concurrent calls costs one round trip
    per `most`, not K.
    """

    def __init__(self, backend: RateLimiterBackend, *, most: int = 16) -> None:
        self.backend = backend
        self._most = most
        self._queues: dict[str, list[tuple[int, asyncio.Future[Grant]]]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    async def take(self, key: str, limit: RateLimit, wanted: int = 1) -> Grant:
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = []
            task = asyncio.create_task(self._serve(key, limit, queue))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        queue.append((wanted, future))
        return await future

    async def _serve(
        self, key: str, limit: RateLimit, queue: list[tuple[int, asyncio.Future[Grant]]]
    ) -> None:
        try:
            while queue:
                batch: list[tuple[int, asyncio.Future[Grant]]] = []
                total = 0
                while queue and (not batch or total + queue[0][0] <= self._most):
                    wanted, future = queue.pop(0)
                    if not future.done():
                        batch.append((wanted, future))
                        total += wanted
                if not batch:
                    continue
                try:
                    grant = await self.backend.take(key, limit, total)
                except Exception as exc:
                    for _wanted, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                left = grant.granted
                for wanted, future in batch:
                    if future.done():
                        continue
                    if wanted <= left:
                        left -= wanted
                        future.set_result(Grant(wanted, 0.0, grant.at))
                    else:
                        future.set_result(Grant(0, max(grant.wait, 0.001), grant.at))
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]
            for _wanted, future in queue:
                if not future.done():
                    future.set_exception(RuntimeError("rate limiter stopped"))

    async def back_off(self, key: str, seconds: float) -> None:
        await self.backend.back_off(key, seconds)

    async def blocked_for(self, key: str) -> float:
        return await self.backend.blocked_for(key)


# --- what the CRM said ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Observed:
    """What this process knows of one rule's key from the CRM's answers (times are `time.monotonic()`)."""

    limit: int | None = None  # the CRM's figure for the window (x-ratelimit-limit)
    remaining: int | None = None  # calls the CRM said were left in its window
    reset_at: float = 0.0  # when that window resets
    started: int = 0  # calls this process started since that answer
    blocked_until: float = 0.0  # a 429's Retry-After
    hot_until: float = 0.0  # after a 429: pace through the shared window until then
    checked_at: float = float("-inf")  # last read of the shared back-off


class LimitBook:
    """The process's :class:`Observed` per key; bounded (idle keys are dropped)."""

    def __init__(self, most: int = 20_000) -> None:
        self._most = most
        self._keys: dict[str, Observed] = {}

    def get(self, key: str) -> Observed:
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) >= self._most:
                self._prune()
            found = self._keys[key] = Observed()
        return found

    def _prune(self) -> None:
        now = time.monotonic()
        self._keys = {
            k: v
            for k, v in self._keys.items()
            if max(v.blocked_until, v.hot_until, v.reset_at) > now
            or now - v.checked_at < SHARED_CHECK_SECONDS
        }
        if len(self._keys) >= self._most:  # all busy: forget the oldest half rather than grow
            self._keys = dict(list(self._keys.items())[self._most // 2 :])


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    if value.isdigit() and value.isascii() and len(value) <= 12:  # the usual answer, read without a float
        return int(value)
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number != number or number < 0 or number > 1e12:  # NaN, negative or absurd
        return None
    return int(number)


@dataclass(slots=True, frozen=True)
class Bucket:
    """One rule applied to one scope: `key` names it in the shared store. `fixed` is an operator's limit
    (the setting), enforced in advance on every call."""

    rule: LimitRule
    key: str
    fixed: RateLimit | None = None


class RateLimited(Exception):
    """The CRM would refuse the call now (or the operator's limit is spent) for longer than the call may wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limited for {wait:.3f} s")
        self.wait = wait


class Admission:
    """The limits one call counted against, matched once by `admit` and handed to `observe` with the answer
    (the URL is parsed and the rules matched once per call, not twice)."""

    __slots__ = ("buckets", "described", "shared_keys")

    def __init__(self, buckets: tuple[Bucket, ...], fallback: str) -> None:
        self.buckets = buckets
        #: the rule the CRM's rate-limit headers describe
        self.described = _most_specific(buckets)
        #: the keys whose shared back-off (a 429 seen by any process) holds the call
        self.shared_keys = tuple(b.key for b in buckets if b.fixed is None) or (fallback,)


class AccountLimiter:
    """The limits one session's calls count against: the connector's rules for this user's token, CRM user and
    company, and the operator's limit if set. `fallback` takes the back-off of a 429 no rule covers.

    Holds no count (those are in the book), so the sessions with the same keys share one (see
    `Services.account_limiter`). A call costs a few dictionary reads while nothing binds (the CRM's answers
    leave calls, no 429, no operator's limit), and awaits only when something does."""

    __slots__ = (
        "_every",
        "_matched",
        "_pathed",
        "_unpathed",
        "backend",
        "book",
        "buckets",
        "fallback",
        "max_wait",
    )

    def __init__(
        self,
        backend: RateLimiterBackend,
        book: LimitBook,
        buckets: tuple[Bucket, ...],
        fallback: str,
        max_wait: float = 5.0,
    ) -> None:
        self.backend = backend
        self.book = book
        self.buckets = buckets
        self.fallback = fallback
        self.max_wait = max_wait
        self._pathed: tuple[Bucket, ...] | None = None  # the rules that cover some paths only, once asked
        self._unpathed: tuple[Bucket, ...] = ()
        self._every: Admission | None = None  # the match of a call no path rule covers
        self._matched: dict[str, Admission] = {}  # URL -> its match, while a path rule exists

    def _matching(self, url: str) -> Admission:
        """The buckets a call to `url` counts against. A rule without paths covers every call, so only the
        rules with paths look at the URL (the match of a URL is kept: a rule matches the path alone)."""
        pathed = self._pathed
        if pathed is None:
            pathed = self._pathed = tuple(b for b in self.buckets if b.rule.paths)
            self._unpathed = tuple(b for b in self.buckets if not b.rule.paths)
        if pathed:
            found = self._matched.get(url)
            if found is not None:
                return found
            lowered = _path(url).lower()
            if any(part in lowered for b in pathed for part in b.rule.paths):
                matched = tuple(
                    b for b in self.buckets if not b.rule.paths or any(p in lowered for p in b.rule.paths)
                )
                found = Admission(matched, self.fallback)
            else:
                found = self._every_call()
            if len(self._matched) >= _MOST_MATCHES:
                self._matched.clear()  # URLs with ids in them: a bound, rebuilding a match costs a microsecond
            self._matched[url] = found
            return found
        return self._every_call()

    def _every_call(self) -> Admission:
        every = self._every
        if every is None:
            every = self._every = Admission(self._unpathed, self.fallback)
        return every

    async def admit(self, url: str) -> Admission:
        """Wait until every limit the call to `url` counts against lets it through; :class:`RateLimited` when
        that is further away than `max_wait`. The answer goes to :meth:`observe` with the CRM's answer."""
        admission = self._matching(url)
        book = self.book
        now = time.monotonic()
        deadline = now + self.max_wait
        for key in admission.shared_keys:
            seen = book.get(key)
            if now - seen.checked_at >= SHARED_CHECK_SECONDS or seen.blocked_until > now:
                await self._shared_back_off(key, deadline)
                now = time.monotonic()
        for bucket in admission.buckets:
            seen = book.get(bucket.key)
            if (
                bucket.fixed is None
                and seen.blocked_until <= now
                and seen.hot_until <= now
                and (seen.remaining is None or now >= seen.reset_at or seen.remaining - seen.started > 0)
            ):
                seen.started += 1  # nothing binds: no round trip, no await
                continue
            while True:
                wait = await self._wait_for(bucket)
                if wait <= 0:
                    break
                if time.monotonic() + wait > deadline:
                    raise RateLimited(wait)
                await asyncio.sleep(wait + random.uniform(0, min(wait, 0.05)))
            now = time.monotonic()
        return admission

    async def _shared_back_off(self, key: str, deadline: float) -> None:
        """A back-off this process or another set (a 429), read from the shared store at most once a second."""
        seen = self.book.get(key)
        now = time.monotonic()
        if now - seen.checked_at >= SHARED_CHECK_SECONDS:
            seen.checked_at = now
            try:
                blocked = await self.backend.blocked_for(key)
            except Exception:  # the limiter protects the CRM; its store being down must not stop the calls
                logger.warning("rate limiter unavailable; CRM call made without it", exc_info=True)
                blocked = 0.0
            if blocked > 0:
                seen.blocked_until = max(seen.blocked_until, now + blocked)
        wait = seen.blocked_until - now
        if wait <= 0:
            return
        if now + wait > deadline:
            raise RateLimited(wait)
        await asyncio.sleep(wait + random.uniform(0, min(wait, 0.05)))

    async def _wait_for(self, bucket: Bucket) -> float:
        """0.0 when the call may go now (and it is counted), else the seconds to wait before asking again."""
        seen = self.book.get(bucket.key)
        now = time.monotonic()
        if seen.blocked_until > now:
            return seen.blocked_until - now
        paced = bucket.fixed
        if paced is None and seen.hot_until > now:
            figure = seen.limit or bucket.rule.requests
            if figure:
                paced = RateLimit(figure, bucket.rule.per_seconds)
        if paced is not None:
            try:
                grant = await self.backend.take(bucket.key, paced)
            except Exception:
                logger.warning("rate limiter unavailable; CRM call made without it", exc_info=True)
                return 0.0
            if grant.granted:
                seen.started += 1
                return 0.0
            return max(grant.wait, 0.001)
        if seen.remaining is not None and now < seen.reset_at and seen.remaining - seen.started <= 0:
            return seen.reset_at - now  # the CRM said its window is spent: wait for its reset
        seen.started += 1
        return 0.0

    async def observe(
        self, call: Admission | str, status: int, headers: Mapping[str, str], retry_after: float | None
    ) -> None:
        """Learn from one answer to a call (what :meth:`admit` returned for it, or its URL): the rate-limit
        headers update the most specific rule the call counted against; a 429 backs off the rule whose window
        covers its `Retry-After` (every worker and machine)."""
        admission = self._matching(call) if isinstance(call, str) else call
        described = admission.described
        now = time.monotonic()
        if described is not None:
            remaining = _header_int(headers, "x-ratelimit-remaining")
            if remaining is not None:
                limit = _header_int(headers, "x-ratelimit-limit")
                seen = self.book.get(described.key)
                if limit:
                    seen.limit = limit
                seen.remaining = remaining
                seen.started = 0
                # without a reset time the CRM's remaining is only information: a spent window is left to
                # the CRM to refuse (its 429 says when to come back), never guessed shut
                reset = _header_int(headers, "x-ratelimit-reset")
                if reset is None:
                    seen.reset_at = 0.0
                else:
                    reset_in = reset - time.time() if reset > _EPOCH_THRESHOLD else float(reset)
                    seen.reset_at = now + min(max(reset_in, 0.0), described.rule.per_seconds)
        if status != 429:
            return
        seconds = retry_after
        if seconds is None and described is not None:
            seen = self.book.get(described.key)
            seconds = seen.reset_at - now if seen.reset_at > now else None
        seconds = min(max(seconds if seconds is not None else 1.0, 0.0), MAX_BACK_OFF_SECONDS)
        target = _covering(admission.buckets, seconds)
        key = target.key if target is not None else self.fallback
        seen = self.book.get(key)
        seen.blocked_until = max(seen.blocked_until, now + seconds)
        if target is not None:
            window = target.rule.per_seconds
            seen.hot_until = max(seen.hot_until, now + seconds + max(HOT_WINDOWS * window, 10.0))
        try:
            await self.backend.back_off(key, seconds)
        except Exception:
            logger.warning("rate limiter unavailable; back-off not shared", exc_info=True)


def _path(url: str) -> str:
    """The path of an absolute URL without its query (a rule's path match must not see the host)."""
    start = url.find("//")
    slash = url.find("/", start + 2) if start >= 0 else 0
    return url[slash:].split("?", 1)[0] if slash >= 0 else "/"


def _most_specific(buckets: tuple[Bucket, ...]) -> Bucket | None:
    """The rule a CRM's rate-limit headers describe: one with a path match first, else the shortest window."""
    documented = [b for b in buckets if b.fixed is None]
    if not documented:
        return None
    return min(documented, key=lambda b: (not b.rule.paths, b.rule.per_seconds))


def _covering(buckets: tuple[Bucket, ...], seconds: float) -> Bucket | None:
    """The rule a 429 of `seconds` belongs to: the most specific one whose window covers the wait (a wait
    longer than a burst window means a longer budget, e.g. a day's, ran out)."""
    documented = sorted(
        (b for b in buckets if b.fixed is None), key=lambda b: (b.rule.per_seconds, not b.rule.paths)
    )
    for bucket in documented:
        if bucket.rule.per_seconds >= seconds:
            return bucket
    return documented[-1] if documented else None


# --- the setting ---------------------------------------------------------------------------------------------


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
    if limit.requests < 1 or not 0 < limit.per_seconds <= 86_400:
        raise RateLimitSettingError(f"rate limit {value!r}: both numbers must be positive (at most a day)")
    return limit


#: what a platform's entry of the setting says: follow the CRM (no entry), `off`, or a fixed `N/S`
PlatformLimit = RateLimit | None


@dataclass(slots=True)
class RateLimitOverrides:
    """`APPCONNECT_CRM_RATE_LIMIT`: '' (follow each CRM), 'off', 'N/S' (every platform), 'pipedrive=N/S,...'."""

    everywhere: RateLimit | bool | None = False  # False: no global entry
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

    def entry_for(self, platform: str) -> tuple[bool, RateLimit | None]:
        """(limiter on, the operator's fixed limit or None). `off` turns the limiter off for the platform:
        no rule, no learning, no shared back-off."""
        if self.everywhere is not False:
            if isinstance(self.everywhere, RateLimit):
                return True, self.everywhere
            return False, None
        if self.by_platform is not None and platform.lower() in self.by_platform:
            fixed = self.by_platform[platform.lower()]
            return fixed is not None, fixed
        return True, None

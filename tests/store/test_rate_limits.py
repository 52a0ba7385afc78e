"""The shared rate limiter on each backend (exact sliding windows under concurrency, across several processes'
batchers, shared back-off), the account limiter that follows the CRM's answers, and the setting's parser."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from appconnect.connectors.insightly import InsightlyConnector
from appconnect.connectors.pipedrive import PipedriveConnector
from appconnect.connectors.sdk import LimitRule, RateLimit, UserView
from appconnect.flows.services import build_services
from appconnect.outbound.limits import (
    AccountLimiter,
    Batched,
    Bucket,
    LimitBook,
    RateLimited,
    RateLimiterBackend,
    RateLimitOverrides,
    RateLimitSettingError,
)
from appconnect.store.rate_limits import DatabaseRateLimiter, RedisRateLimiter
from appconnect.store.sql import Database, open_database, sql
from tests.conftest import LiveServer

REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


class Stores:
    """Opens backends on one shared store, each as another process would (its own connections)."""

    def __init__(self, kind: str, server: LiveServer) -> None:
        self.kind = kind
        self._server = server
        self._closers: list[Callable[[], object]] = []
        self.prefix = f"test-crmcalls-{uuid.uuid4().hex}:"
        self.databases: list[Database] = []
        self.database_url = server.settings.database_url

    def open(self) -> RateLimiterBackend:
        if self.kind == "redis":
            import redis.asyncio as redis_asyncio

            client = redis_asyncio.from_url(REDIS_URL, socket_timeout=5)
            self._closers.append(client.aclose)
            return RedisRateLimiter(client, prefix=self.prefix)
        db = open_database(self._server.settings.database_url, max_connections=5, acquire_timeout=10)
        self.databases.append(db)
        self._closers.append(db.close)
        return DatabaseRateLimiter(db)

    async def close(self) -> None:
        for close in self._closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result


@pytest.fixture(params=["database", "redis"])
async def stores(request: pytest.FixtureRequest, server: LiveServer) -> AsyncIterator[Stores]:
    """The database store on the session server's (migrated) database, or Redis."""
    if request.param == "redis" and not redis_reachable():
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    opened = Stores(request.param, server)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def limiter(stores: Stores) -> RateLimiterBackend:
    return stores.open()


def busiest_window(times: list[float], window: float) -> int:
    """The most grants any window of `window` seconds holds, sliding it over every grant."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


# --- the shared sliding window -------------------------------------------------------------------------------


async def test_exactly_the_figure_is_granted_under_concurrency(limiter: RateLimiterBackend) -> None:
    key = f"testcrm:burst-{uuid.uuid4().hex}"
    limit = RateLimit(requests=5, per_seconds=60.0)
    grants = await asyncio.gather(*(limiter.take(key, limit) for _ in range(20)))
    assert sum(g.granted for g in grants) == 5
    refused = [g.wait for g in grants if not g.granted]
    assert len(refused) == 15
    assert all(0 < w <= 60.1 for w in refused)  # the oldest grant leaves the window within a minute


async def test_a_grant_of_several_calls_is_partial_when_only_some_fit(limiter: RateLimiterBackend) -> None:
    key = f"pipedrive:partial-{uuid.uuid4().hex}"
    limit = RateLimit(requests=5, per_seconds=60.0)
    assert (await limiter.take(key, limit, 3)).granted == 3
    second = await limiter.take(key, limit, 4)
    assert second.granted == 2 and second.wait > 59
    assert (await limiter.take(key, limit)).granted == 0


async def test_accounts_do_not_share_a_budget(limiter: RateLimiterBackend) -> None:
    limit = RateLimit(requests=1, per_seconds=60.0)
    first, second = f"pipedrive:a-{uuid.uuid4().hex}", f"pipedrive:b-{uuid.uuid4().hex}"
    assert (await limiter.take(first, limit)).granted == 1
    assert (await limiter.take(second, limit)).granted == 1
    assert (await limiter.take(first, limit)).granted == 0


async def test_back_off_refuses_the_whole_key(limiter: RateLimiterBackend) -> None:
    key = f"testcrm:backoff-{uuid.uuid4().hex}"
    limit = RateLimit(requests=100, per_seconds=1.0)
    assert (await limiter.take(key, limit)).granted == 1
    assert await limiter.blocked_for(key) == 0
    await limiter.back_off(key, 30.0)
    refused = await limiter.take(key, limit)
    assert refused.granted == 0 and 29 < refused.wait <= 30.1
    await limiter.back_off(key, 5.0)  # a shorter back-off does not shorten the longer one
    assert await limiter.blocked_for(key) > 29


async def test_grants_of_keys_nobody_asks_for_are_dropped(stores: Stores) -> None:
    if stores.kind != "database":
        pytest.skip("Redis expires them by itself")
    stores.open()
    db = stores.databases[0]
    idle = f"pipedrive:idle-{uuid.uuid4().hex}"
    insert = sql("INSERT INTO rate_limit_grants (limit_key, grant_id, granted_at, calls) VALUES (?, ?, ?, 1)")
    await db.run(insert, idle, uuid.uuid4().hex, time.time() - 2 * 86_400)
    sweeping = DatabaseRateLimiter(db, sweep_every=1)
    assert (await sweeping.take(f"pipedrive:busy-{uuid.uuid4().hex}", RateLimit(5, 1.0))).granted == 1
    left = await db.all(sql("SELECT grant_id FROM rate_limit_grants WHERE limit_key = ?"), idle)
    assert left == []


async def test_no_window_sees_more_than_the_figure_across_processes(stores: Stores) -> None:
    """Three processes' batchers on one store, 24 callers asking as fast as they are let: in every window of
    the limit's length, at most the figure was granted (a token bucket lets nearly twice through). Times are
    the store's own (when it decided), so a caller resumed late cannot blur the count."""
    limit = RateLimit(requests=10, per_seconds=0.5)
    key = f"pipedrive:precise-{uuid.uuid4().hex}"
    processes = [Batched(stores.open(), most=4) for _ in range(3)]
    granted_at: list[float] = []
    stop = time.monotonic() + 4 * limit.per_seconds

    async def caller(process: Batched) -> None:
        while time.monotonic() < stop:
            grant = await process.take(key, limit)
            if grant.granted:
                granted_at.append(grant.at)
            else:
                await asyncio.sleep(min(grant.wait, 0.05))

    await asyncio.gather(*(caller(processes[i % 3]) for i in range(24)))
    assert len(granted_at) > limit.requests  # the window moved on: more than one window's worth
    assert busiest_window(granted_at, limit.per_seconds) <= limit.requests


async def test_no_window_sees_more_than_the_figure_across_real_processes(stores: Stores) -> None:
    """Three server-like processes, each with its own batcher, on one database or Redis: merged, the store's
    grant times hold at most the figure in any window of the limit's length."""
    store = REDIS_URL if stores.kind == "redis" else stores.database_url
    key = f"pipedrive:processes-{uuid.uuid4().hex}"
    start_at = f"{time.time() + 5.0:.3f}"  # all three are running by then, even on a loaded machine
    args = ["-m", "tests.support.rate_limit_process", store, key, "10", "0.5", start_at, "1.5"]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err.decode()[-2000:] for _out, err in outputs]
    granted = [at for out, _err in outputs for at in json.loads(out)]
    # which process wins is not promised (one may starve the others on a loaded machine); that the three share
    # one budget is: unshared, each would be granted the figure in the same window, and the check below fails
    assert len(granted) > 10
    assert busiest_window(granted, 0.5) <= 10


async def test_a_burst_in_one_process_is_few_round_trips(stores: Stores) -> None:
    """32 concurrent calls of one process reach the database as a few grants of several calls each."""
    if stores.kind != "database":
        pytest.skip("counts the database's grant rows")
    batched = Batched(stores.open(), most=16)
    key = f"pipedrive:coalesced-{uuid.uuid4().hex}"
    grants = await asyncio.gather(*(batched.take(key, RateLimit(100, 60.0)) for _ in range(32)))
    assert all(g.granted == 1 for g in grants)
    rows = await stores.databases[0].all(sql("SELECT calls FROM rate_limit_grants WHERE limit_key = ?"), key)
    assert sum(int(r["calls"]) for r in rows) == 32
    assert len(rows) < 32 / 2


# --- the account limiter: follow the CRM ---------------------------------------------------------------------

BURST = LimitRule("burst", "token", per_seconds=2.0, requests=5)
SEARCH = LimitRule("search", "token", per_seconds=2.0, requests=2, paths=("/search",))
DAILY = LimitRule("daily", "company", per_seconds=86_400.0)
API = "https://crm.example.test/api/v2"


def account(
    backend: RateLimiterBackend, book: LimitBook, *, fixed: RateLimit | None = None, max_wait: float = 0.0
) -> tuple[AccountLimiter, str]:
    """A session's limiter (a process's `book`): the three rules, keyed for one token and one company."""
    tag = uuid.uuid4().hex
    buckets = [Bucket(rule, f"pipedrive:{rule.name}:{rule.scope}-{tag}") for rule in (BURST, SEARCH, DAILY)]
    if fixed is not None:
        buckets.append(
            Bucket(LimitRule("setting", "company", fixed.per_seconds, fixed.requests), f"s-{tag}", fixed)
        )
    limiter = AccountLimiter(
        backend, book, tuple(buckets), fallback=f"pipedrive:crm:{tag}", max_wait=max_wait
    )
    return limiter, tag


async def test_a_crm_that_says_nothing_is_never_throttled(stores: Stores) -> None:
    """No headers, no 429: far more calls than any documented figure pass at once, nothing is granted
    through the store (only its back-off is read, at most once a second)."""
    limiter, tag = account(stores.open(), LimitBook())
    for _ in range(200):
        await limiter.admit(f"{API}/persons/search")
        await limiter.observe(f"{API}/persons/search", 200, {}, None)
    if stores.kind == "database":
        rows = await stores.databases[0].all(sql("SELECT limit_key FROM rate_limit_grants"))
        assert not [r for r in rows if tag in r["limit_key"]]


async def test_the_crms_remaining_and_reset_hold_calls_back(stores: Stores) -> None:
    limiter, _tag = account(stores.open(), LimitBook())
    await limiter.admit(f"{API}/persons/1")
    headers = {"x-ratelimit-limit": "480", "x-ratelimit-remaining": "1", "x-ratelimit-reset": "2"}
    await limiter.observe(f"{API}/persons/1", 200, headers, None)
    await limiter.admit(f"{API}/persons/2")  # the one call left
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(f"{API}/persons/3")
    assert 1 < refused.value.wait <= 2


async def test_a_reset_given_as_a_unix_time_is_read_as_one(stores: Stores) -> None:
    """Clio sends X-RateLimit-Reset as the Unix time its window ends, Pipedrive as seconds."""
    limiter, _tag = account(stores.open(), LimitBook())
    reset = int(time.time()) + 2
    headers = {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    await limiter.observe(f"{API}/contacts.json", 200, {k.lower(): v for k, v in headers.items()}, None)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(f"{API}/contacts.json")
    assert 0 < refused.value.wait <= 2


async def test_remaining_without_a_reset_time_never_shuts_calls_out(stores: Stores) -> None:
    limiter, _tag = account(stores.open(), LimitBook())
    await limiter.observe(
        f"{API}/Contacts", 200, {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0"}, None
    )
    await limiter.admit(f"{API}/Contacts")


async def test_a_429_backs_off_the_scope_in_every_process(stores: Stores) -> None:
    first, tag = account(stores.open(), LimitBook())
    await first.observe(f"{API}/persons/search", 429, {}, 1.5)
    with pytest.raises(RateLimited):
        await first.admit(f"{API}/persons/search")
    await first.admit(f"{API}/persons/7")  # the burst limit of the token is another window
    other = AccountLimiter(stores.open(), LimitBook(), first.buckets, first.fallback, max_wait=0.0)
    with pytest.raises(RateLimited) as refused:
        await other.admit(f"{API}/persons/search")
    assert 1 < refused.value.wait <= 1.5
    assert tag


async def test_a_rules_path_match_looks_at_the_path_not_the_host(stores: Stores) -> None:
    limiter, _tag = account(stores.open(), LimitBook())
    await limiter.observe(f"{API}/persons/search", 429, {}, 1.5)  # the search window is shut
    await limiter.admit("https://search.example.test/api/v2/persons/1")  # not a search call


async def test_a_429_longer_than_the_burst_window_backs_off_the_company(stores: Stores) -> None:
    """A Retry-After of an hour is not the 2-second burst window: the daily budget ran out for everyone."""
    limiter, _tag = account(stores.open(), LimitBook())
    await limiter.observe(f"{API}/persons/1", 429, {}, 3600.0)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(f"{API}/activities")
    assert refused.value.wait > 3000


async def test_after_a_429_calls_are_paced_at_the_crms_figure(stores: Stores) -> None:
    """Once the CRM refused, the rule's calls go through the shared window at its figure (here the learnt 3)."""
    limiter, _tag = account(stores.open(), LimitBook(), max_wait=0.0)
    await limiter.observe(
        f"{API}/persons/1", 200, {"x-ratelimit-limit": "3", "x-ratelimit-remaining": "2"}, None
    )
    await limiter.observe(f"{API}/persons/1", 429, {}, 0.01)
    await asyncio.sleep(0.05)
    for _ in range(3):
        await limiter.admit(f"{API}/persons/1")
    with pytest.raises(RateLimited):
        await limiter.admit(f"{API}/persons/1")


async def test_an_operators_fixed_limit_is_held_in_advance(stores: Stores) -> None:
    limiter, _tag = account(stores.open(), LimitBook(), fixed=RateLimit(2, 60.0))
    await limiter.admit(f"{API}/persons/1")
    await limiter.admit(f"{API}/persons/2")
    with pytest.raises(RateLimited):
        await limiter.admit(f"{API}/persons/3")


async def test_what_admit_matched_goes_with_the_answer_to_observe(stores: Stores) -> None:
    """The client hands `observe` what `admit` matched: the headers of a search answer describe the search
    window, which then holds search calls back and leaves the others alone."""
    limiter, _tag = account(stores.open(), LimitBook())
    admission = await limiter.admit(f"{API}/persons/search")
    assert [b.rule.name for b in admission.buckets] == ["burst", "search", "daily"]
    headers = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}
    await limiter.observe(admission, 200, headers, None)
    with pytest.raises(RateLimited):
        await limiter.admit(f"{API}/persons/search")
    plain = await limiter.admit(f"{API}/persons/1")
    assert [b.rule.name for b in plain.buckets] == ["burst", "daily"]
    await limiter.observe(plain, 429, {}, 1.5)  # a 429 on a plain call shuts the burst window, not search's
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(f"{API}/persons/2")
    assert 1 < refused.value.wait <= 1.5


async def test_sessions_with_the_same_keys_share_a_limiter_and_no_others(server: LiveServer) -> None:
    """A request's limiter is kept for the next session with the same scope keys; any key that differs (another
    token, another company, a company id learnt later) gets its own."""
    services = build_services(server.settings)
    try:
        pipedrive = PipedriveConnector()
        first = services.account_limiter(
            pipedrive, UserView("7-pipedrive", "pipedrive", "acme.pipedrive.com")
        )
        again = services.account_limiter(
            pipedrive, UserView("7-pipedrive", "pipedrive", "acme.pipedrive.com")
        )
        colleague = services.account_limiter(
            pipedrive, UserView("8-pipedrive", "pipedrive", "acme.pipedrive.com")
        )
        assert first is not None and colleague is not None
        assert again is first
        assert colleague is not first
        keys = {b.rule.name: b.key for b in first.buckets}
        assert {b.rule.name: b.key for b in colleague.buckets}["daily"] == keys["daily"]  # company-wide
        assert {b.rule.name: b.key for b in colleague.buckets}["burst"] != keys["burst"]

        insightly = InsightlyConnector()
        pod = UserView("9-insightly", "insightly", "api.na1.insightly.com")
        learnt = UserView(
            "9-insightly", "insightly", "api.na1.insightly.com", platform_additional_info={"instanceId": 5}
        )
        before, after = services.account_limiter(insightly, pod), services.account_limiter(insightly, learnt)
        assert before is not None and after is not None
        assert after is not before
        assert [b.key for b in after.buckets] == ["insightly:daily:company:instance-5"]
    finally:
        await services.close()


# --- the setting ---------------------------------------------------------------------------------------------


def test_the_setting_per_platform_or_everywhere() -> None:
    assert RateLimitOverrides.parse("").entry_for("pipedrive") == (True, None)
    assert RateLimitOverrides.parse("off").entry_for("pipedrive") == (False, None)
    assert RateLimitOverrides.parse("50/2").entry_for("testcrm") == (True, RateLimit(50, 2.0))
    per_platform = RateLimitOverrides.parse("pipedrive=80/2, testcrm=off")
    assert per_platform.entry_for("pipedrive") == (True, RateLimit(80, 2.0))
    assert per_platform.entry_for("testcrm") == (False, None)
    assert per_platform.entry_for("other") == (True, None)
    for bad in ("fast", "0/1", "pipedrive=", "10/-1", "5/100000"):
        with pytest.raises(RateLimitSettingError):
            RateLimitOverrides.parse(bad)

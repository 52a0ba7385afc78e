#!/usr/bin/env python3
"""CPU per CRM call of the per-account rate limiter, in process: µs per `admit` + `observe` pair (with one
limiter, and with a limiter built per call as the server builds one per request's session), and per call
through `CrmHttpClient.request` with the limiter on against off (a client per call, as the server does).

Pipedrive's rules and answers (`x-ratelimit-*` on every answer, calls left), the five URLs of a placeholder
flow, a store that answers at once (its round trips, one per key per second, are not what is measured). CPU is
`time.process_time()` over the timed loop, median of the rounds. Run the code before a change beside it:

    PYTHONPATH=<main tree>/src .venv/bin/python bench/limiter.py   # main, checked out elsewhere
    PYTHONPATH=$PWD/src .venv/bin/python bench/limiter.py           # this tree
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from appconnect.connectors.pipedrive import PipedriveConnector
from appconnect.connectors.sdk import RateLimit, UserView
from appconnect.flows.services import Services
from appconnect.outbound.client import CrmHttpClient, CrmHttpResponse, RetryPolicy
from appconnect.outbound.limits import Grant, LimitBook
from appconnect.outbound.wire import Headers, Timeouts

API = "https://acme.pipedrive.com/api/v1"
FLOW = [
    ("GET", f"{API}/persons/search?term=5551234567&fields=phone"),
    ("POST", f"{API}/persons"),
    ("POST", f"{API}/activities"),
    ("GET", f"{API}/activities/{{id}}"),  # a new id every flow, as a CRM's ids are
    ("PUT", f"{API}/activities/{{id}}"),
]
_ids = itertools.count(1)


def flow() -> list[tuple[str, str]]:
    """The flow's calls, with the next activity id."""
    activity = str(next(_ids))
    return [(method, url.replace("{id}", activity)) for method, url in FLOW]


class InstantStore:
    """A shared store with nothing to wait for."""

    async def take(self, key: str, limit: RateLimit, wanted: int = 1) -> Grant:
        return Grant(wanted, 0.0, time.time())

    async def back_off(self, key: str, seconds: float) -> None:
        return None

    async def blocked_for(self, key: str) -> float:
        return 0.0


def answer_headers() -> Headers:
    headers = Headers()
    for name, value in (
        ("content-type", "application/json"),
        ("x-ratelimit-limit", "80"),
        ("x-ratelimit-remaining", "79"),
        ("x-ratelimit-reset", "2"),
        ("x-daily-requests-left", "9000"),
    ):
        dict.__setitem__(headers, name, value)
    return headers


class InstantTransport:
    """`CrmTransport.send` without a socket: the same answer every time."""

    def __init__(self) -> None:
        self.answer = CrmHttpResponse(200, answer_headers(), b"{}")

    def timeout_within(self, remaining: float) -> Timeouts:
        return Timeouts(connect=min(5.0, remaining), read=min(10.0, remaining), total=remaining + 1.0)

    async def send(self, method: str, url: str, **_: Any) -> CrmHttpResponse:
        return self.answer


def services() -> Any:
    """What `Services.account_limiter` reads, without a database."""
    return SimpleNamespace(
        rate_limiter=InstantStore(),
        rate_limit_overrides=None,
        rate_limit_book=LimitBook(),
        settings=SimpleNamespace(crm_rate_limit_max_wait_seconds=5.0),
        _limiters={},  # this tree keeps the limiters of sessions with the same keys
    )


USER = UserView(id="12345-pipedrive", platform="pipedrive", hostname="acme.pipedrive.com")


async def cpu_us(body: Callable[[], Awaitable[None]], calls: int, rounds: int) -> tuple[float, float, float]:
    """(median, min, max) µs of CPU per call of `body` (which makes `len(FLOW)` calls per run)."""
    runs = max(1, calls // len(FLOW))
    for _ in range(max(1, runs // 10)):  # warm up: the book's keys, the shared back-off read
        await body()
    figures = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(runs):
            await body()
        figures.append((time.process_time() - started) * 1e6 / (runs * len(FLOW)))
    return statistics.median(figures), min(figures), max(figures)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    connector = PipedriveConnector()
    shared = services()
    limiter = Services.account_limiter(shared, connector, USER)
    assert limiter is not None
    headers = answer_headers()

    async def pairs() -> None:
        for _method, url in flow():
            safe = url.split("?", 1)[0]
            ticket = await limiter.admit(safe)
            # this tree's admit hands its match to observe; the code before it returned None
            await limiter.observe(ticket if ticket is not None else safe, 200, headers, None)

    async def session_pairs() -> None:
        for (
            _method,
            url,
        ) in flow():  # a session (a request) makes one or two calls: build its limiter each time
            session = Services.account_limiter(shared, connector, USER)
            assert session is not None
            safe = url.split("?", 1)[0]
            ticket = await session.admit(safe)
            await session.observe(ticket if ticket is not None else safe, 200, headers, None)

    transport = InstantTransport()
    policy = RetryPolicy()

    def calls_of(limited: bool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            for method, url in flow():
                client = CrmHttpClient(
                    transport,  # type: ignore[arg-type]
                    base_url=API,
                    auth_header="Bearer x",
                    retry=policy,
                    limiter=Services.account_limiter(shared, connector, USER) if limited else None,
                )
                await client.request(method, url, json={} if method != "GET" else None)

        return run

    async def sessions() -> None:
        for _ in FLOW:
            Services.account_limiter(shared, connector, USER)

    rows = [
        ("admit + observe, one limiter", pairs),
        ("build a limiter + admit + observe", session_pairs),
        ("  of which building the limiter", sessions),
        ("CrmHttpClient (one per call), limiter off", calls_of(False)),
        ("CrmHttpClient (one per call), limiter on", calls_of(True)),
    ]
    print(f"{'µs of CPU per call':42} {'median':>8} {'min':>8} {'max':>8}")
    for name, body in rows:
        median, low, high = await cpu_us(body, args.calls, args.rounds)
        print(f"{name:42} {median:8.2f} {low:8.2f} {high:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())

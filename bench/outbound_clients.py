#!/usr/bin/env python3
"""CPU per outbound call of httpx, aiohttp and the server's own HTTP/1.1 client against the running fake
Pipedrive: the measurement that chose the client.

Each client keeps connections alive, verifies TLS with the fake's CA and runs `--calls` GETs at `--concurrency`
in flight from one event loop, the way a server worker does (`--uvloop`: on the server's loop). CPU is
`time.process_time()` (this process only, all threads) over the timed calls, after `--warmup` calls that open the
connections; the fake runs in nginx, so its work is not counted. The clients alternate for `--rounds` rounds so
machine noise hits all alike.

    .venv/bin/python bench/outbound_clients.py                       # 2000 calls x 4 rounds, 32 in flight
    .venv/bin/python bench/outbound_clients.py --calls 5000 --rounds 6

The fake must be running (`../shared/bench/fake-pipedrive`, `api.pipedrive.com` -> 127.0.0.1 in /etc/hosts);
`--ca` names its CA (default: the one `fakecrm.sh` writes). aiohttp comes with the `dev` extra
(`pip install -e '.[test,dev]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import orjson

DEFAULT_URL = "https://api.pipedrive.com/api/v2/persons/search?term=%2B14155550100&fields=phone"
DEFAULT_CA = "/tmp/fake-pipedrive/tls/ca.pem"

Call = Callable[[], Awaitable[None]]


async def _run(call: Call, calls: int, concurrency: int) -> None:
    """`calls` calls, `concurrency` at a time (a closed loop: each worker starts its next call when one ends)."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _measure(call: Call, calls: int, concurrency: int) -> float:
    """CPU microseconds per call."""
    cpu = time.process_time()
    await _run(call, calls, concurrency)
    return (time.process_time() - cpu) / calls * 1e6


async def measure_httpx(url: str, context: ssl.SSLContext, args: argparse.Namespace) -> float:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100, keepalive_expiry=2.0)
    async with httpx.AsyncClient(verify=context, limits=limits, timeout=10, trust_env=False) as client:

        async def call() -> None:
            response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            response.json()

        await _run(call, args.warmup, args.concurrency)
        return await _measure(call, args.calls, args.concurrency)


async def measure_aiohttp(url: str, context: ssl.SSLContext, args: argparse.Namespace) -> float:
    connector = aiohttp.TCPConnector(ssl=context, limit=200, keepalive_timeout=2.0)
    timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=10)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def call() -> None:
            async with session.get(url, headers={"Accept": "application/json"}) as response:
                response.raise_for_status()
                await response.json()

        await _run(call, args.warmup, args.concurrency)
        return await _measure(call, args.calls, args.concurrency)


async def measure_appconnect(url: str, context: ssl.SSLContext, args: argparse.Namespace) -> float:
    """The server's own wire (`appconnect.outbound.wire`), as `CrmTransport` sets it up."""
    from appconnect.outbound.wire import Http1Pool, Timeouts

    pool = Http1Pool(
        loop=asyncio.get_running_loop(),
        ssl_context=context,
        max_connections=200,
        keepalive_expiry=2.0,
        default_headers={"User-Agent": "appconnect-server", "Accept-Encoding": "gzip, deflate"},
    )
    timeouts = Timeouts(connect=10, read=10, total=11)
    try:

        async def call() -> None:
            answer = await pool.request(
                "GET", url, params=None, body=None, headers={"Accept": "application/json"}, timeouts=timeouts
            )
            if answer.status != 200:
                raise RuntimeError(f"status {answer.status}")
            orjson.loads(answer.body)

        await _run(call, args.warmup, args.concurrency)
        return await _measure(call, args.calls, args.concurrency)
    finally:
        await pool.aclose()


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--ca", default=DEFAULT_CA)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", default="httpx,aiohttp,appconnect", help="comma-separated subset")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as the server does")
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    clients = {"httpx": measure_httpx, "aiohttp": measure_aiohttp, "appconnect": measure_appconnect}
    for name in set(clients) - set(args.clients.split(",")):
        del clients[name]
    results: dict[str, list[float]] = {name: [] for name in clients}
    print(f"{args.calls} GETs per round, {args.concurrency} in flight, {args.url}")
    for round_number in range(1, args.rounds + 1):
        for name, measure in clients.items():
            micros = await measure(args.url, context, args)
            results[name].append(micros)
            print(f"round {round_number}  {name:8} {micros:8.0f} us CPU per call", flush=True)
    print()
    for name, values in results.items():
        print(
            f"{name:8} median {statistics.median(values):6.0f} us CPU per call"
            f"  (min {min(values):.0f}, max {max(values):.0f}, {len(values)} rounds)"
        )
    return 0


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop

        sys.exit(uvloop.run(main()))
    sys.exit(asyncio.run(main()))

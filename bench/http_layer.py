"""CPU per request of the HTTP layer alone: the app (framework + middleware) driven in-process, no server, no socket.

Why in-process: uvicorn's own cost is the same for every framework, and on a shared 2-core machine a socket
benchmark's noise hides differences of a few tens of microseconds. Each variant answers the same route
handlers of `appconnect.api.routes` (the handlers are the same objects; only what wraps them differs):

* `app`: `create_app(settings)` of this checkout, exactly what a worker serves (framework + middleware).
* `app, metrics off`: the same with `metrics_enabled=False` (when this checkout has metrics).
* `fastapi-bare`: FastAPI + APIRouter with the same handlers, no middleware (only if FastAPI is installed).
* `starlette-bare`: a plain Starlette app with the same handlers as `Route`s, no middleware.
* `dispatch-bare`: a dict of (method, path) -> handler, Starlette `Request`, no middleware.

Requests: `GET /isAlive` (the cheapest route), `GET /contact?phoneNumber=...` without a JWT (the route runs,
raises ClientError, the error mapping answers 400: the cost of the exception path), `GET /nope` (404), and
`GET /isAlive` with an `Origin` header (CORS simple answer). Prints µs of process CPU per request, the median
of `--reps` interleaved rounds of `--requests` requests each. Then the access log's cost (`app` with logging at
`warning`, i.e. no line, and with one access line per request in the text and JSON formats, written to
/dev/null), and the CPU of one `/metrics` scrape.

    .venv/bin/python bench/http_layer.py --requests 20000 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Awaitable[Response]]
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

REQUESTS: dict[str, tuple[str, str, bytes, list[tuple[bytes, bytes]]]] = {
    "GET /isAlive": ("GET", "/isAlive", b"", []),
    "GET /contact no JWT (400)": ("GET", "/contact", b"phoneNumber=%2B14155550123", []),
    "GET /nope (404)": ("GET", "/nope", b"", []),
    "GET /isAlive + Origin": ("GET", "/isAlive", b"", [(b"origin", b"https://app.example")]),
}
COMMON_HEADERS = [(b"host", b"127.0.0.1:6066"), (b"user-agent", b"bench"), (b"accept", b"*/*")]


def route_table() -> dict[tuple[str, str], Handler]:
    """(method, path) -> handler of the contract routes, whatever router routes.py uses."""
    from appconnect.api import routes

    table: dict[tuple[str, str], Handler] = {}
    router: Any = routes.router
    if hasattr(router, "table"):  # the project's own dispatcher
        table.update(router.table)
        return table
    for route in router.routes:  # FastAPI's APIRouter: some endpoints there took no argument
        for method in route.methods:
            table[(method, route.path)] = _takes_request(route.endpoint)
    return table


def _takes_request(endpoint: Any) -> Handler:
    if inspect.signature(endpoint).parameters:
        handler: Handler = endpoint
        return handler

    async def call(_request: Request) -> Response:
        response: Response = await endpoint()
        return response

    return call


def build_settings(folder: Path, **overrides: Any) -> Any:
    from appconnect.settings import Settings

    url = f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}"  # never opened: these routes need no database
    return Settings(  # type: ignore[call-arg]
        database_url=url,
        key_file=folder / "keys.json",
        embedded_testcrm="false",
        log_retrier_enabled=False,
        **overrides,
    )


def fastapi_bare(table: dict[tuple[str, str], Handler], state: Any) -> App | None:
    try:
        from fastapi import APIRouter, FastAPI
    except ImportError:
        return None
    from appconnect.flows.reply import ClientError

    router = APIRouter()
    for (method, path), handler in table.items():
        router.add_api_route(path, handler, methods=[method])
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)

    async def client_error(_request: Request, exc: Exception) -> Response:
        return Response(str(exc), status_code=400)

    app.add_exception_handler(ClientError, client_error)
    app.state._state.update(state)
    return app


def starlette_bare(table: dict[tuple[str, str], Handler], state: Any) -> App:
    from starlette.applications import Starlette
    from starlette.routing import Route

    from appconnect.flows.reply import ClientError

    by_path: dict[str, list[tuple[str, Handler]]] = {}
    for (method, path), handler in table.items():
        by_path.setdefault(path, []).append((method, handler))
    routes = [Route(path, handler, methods=[method]) for (method, path), handler in table.items()]

    async def client_error(_request: Request, exc: Exception) -> Response:
        return Response(str(exc), status_code=400)

    app = Starlette(routes=routes, exception_handlers={ClientError: client_error})
    app.state._state.update(state)
    return app


def dispatch_bare(table: dict[tuple[str, str], Handler], state: Any) -> App:
    from starlette.datastructures import State

    from appconnect.flows.reply import ClientError

    class Dispatch:
        def __init__(self) -> None:
            self.state = State(state)

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["app"] = self
            handler = table.get((scope["method"], scope["path"]))
            if handler is None:
                response = Response(b"Not Found", status_code=404)
            else:
                try:
                    response = await handler(Request(scope, receive))
                except ClientError as exc:
                    response = Response(str(exc), status_code=400)
            await response(scope, receive, send)

    return Dispatch()


async def drive(app: App, request: tuple[str, str, bytes, list[tuple[bytes, bytes]]], count: int) -> float:
    """µs of process CPU per request over `count` sequential requests."""
    method, path, query, extra_headers = request
    headers = COMMON_HEADERS + extra_headers
    body_message = {"type": "http.request", "body": b"", "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return body_message

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.process_time()
    for _ in range(count):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query,
            "headers": list(headers),
            "server": ("127.0.0.1", 6066),
            "client": ("127.0.0.1", 50000),
        }
        await app(scope, receive, send)
    used = time.process_time() - started
    if len(statuses) != count:
        raise RuntimeError(f"{path}: {len(statuses)} answers for {count} requests")
    return used / count * 1e6


async def run(requests: int, reps: int) -> None:
    from appconnect.api.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        settings = build_settings(Path(folder))
        app = create_app(settings)
        state = dict(app.state._state)
        table = route_table()
        variants: dict[str, App] = {"app": app}
        if getattr(app.state, "metrics", None) is not None:  # the same app with its metrics off
            variants["app, metrics off"] = create_app(build_settings(Path(folder), metrics_enabled=False))
        bare = fastapi_bare(table, state)
        if bare is not None:
            variants["fastapi-bare"] = bare
        variants["starlette-bare"] = starlette_bare(table, state)
        variants["dispatch-bare"] = dispatch_bare(table, state)

        results: dict[tuple[str, str], list[float]] = {}
        for variant in variants.values():  # warm-up: imports, caches, first-call costs
            for request in REQUESTS.values():
                await drive(variant, request, 500)
        for _ in range(reps):
            for label, request in REQUESTS.items():
                for name, variant in variants.items():
                    results.setdefault((label, name), []).append(await drive(variant, request, requests))

        names = list(variants)
        print(
            f"µs of CPU per request, median of {reps} interleaved rounds of {requests} requests (in-process)"
        )
        print(f"| request | {' | '.join(names)} |")
        print(f"| --- | {' | '.join('---' for _ in names)} |")
        for label in REQUESTS:
            cells = []
            for name in names:
                values = results[(label, name)]
                cells.append(f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})")
            print(f"| {label} | {' | '.join(cells)} |")
        await app.state.services.close()
        if "app, metrics off" in variants:
            await variants["app, metrics off"].state.services.close()  # type: ignore[attr-defined]


async def crm_observer_cost(calls: int, reps: int) -> None:
    """µs of CPU the metrics add to one CRM call: the `observed` wrapper with and without an observer."""
    try:
        from appconnect.api.metrics import WorkerMetrics
        from appconnect.outbound import observe
    except ImportError:
        return  # a checkout without metrics

    @observe.observed
    async def crm_call() -> int:
        return 1

    async def plain_call() -> int:
        return 1

    metrics = WorkerMetrics(None)

    async def timed(call: Callable[[], Awaitable[int]]) -> float:
        started = time.process_time()
        for _ in range(calls):
            await call()
        return (time.process_time() - started) / calls * 1e6

    results: dict[str, list[float]] = {
        "unwrapped": [],
        "observed, no observer": [],
        "observed, metrics on": [],
    }
    for _ in range(reps):
        results["unwrapped"].append(await timed(plain_call))
        results["observed, no observer"].append(await timed(crm_call))
        observe.add_observer(metrics.observe_crm)
        results["observed, metrics on"].append(await timed(crm_call))
        observe.remove_observer(metrics.observe_crm)
    print()
    print(f"CRM call wrapper: µs of CPU per call (an empty coroutine), median of {reps} rounds of {calls}")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.2f} |")


async def log_and_scrape_cost(requests: int, reps: int) -> None:
    """µs of CPU per request with the access log off, in text and in JSON; ms of CPU per `/metrics` scrape."""
    import io
    import logging
    import os

    from appconnect.api.app import create_app

    try:
        from appconnect import logs
    except ImportError:
        return  # a checkout without structured logs

    with tempfile.TemporaryDirectory() as folder, open(os.devnull, "w") as devnull:
        app = create_app(build_settings(Path(folder)))
        modes = {
            "no access line (warning)": ("warning", "text"),
            "text": ("info", "text"),
            "json": ("info", "json"),
        }
        labels = ["GET /isAlive", "GET /contact no JWT (400)"]
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(reps):
            for mode, (level, log_format) in modes.items():
                logs.configure(level, log_format, stream=devnull)
                for label in labels:
                    results.setdefault((label, mode), []).append(await drive(app, REQUESTS[label], requests))
        logs.configure("warning", "text", stream=io.StringIO())
        logging.getLogger().handlers.clear()
        print()
        print(
            f"Access log: µs of CPU per request, median of {reps} rounds of {requests} (lines to /dev/null)"
        )
        print(f"| request | {' | '.join(modes)} |")
        print(f"| --- | {' | '.join('---' for _ in modes)} |")
        for label in labels:
            cells = [f"{statistics.median(results[(label, mode)]):.1f}" for mode in modes]
            print(f"| {label} | {' | '.join(cells)} |")

        scrape = ("GET", "/metrics", b"", [])
        per_scrape = [await drive(app, scrape, 200) for _ in range(reps)]
        print(
            f"\n/metrics scrape (one worker, no other worker's file): {statistics.median(per_scrape):.0f} µs of CPU"
        )
        await app.state.services.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000, help="requests per round and variant")
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.reps))
    asyncio.run(crm_observer_cost(args.requests, args.reps))
    asyncio.run(log_and_scrape_cost(args.requests, args.reps))


if __name__ == "__main__":
    main()

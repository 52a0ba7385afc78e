"""The one ASGI layer around every request: request id, CORS, security headers, limits, routing, error answers.

It replaces five stacked middlewares plus a framework (bench/README.md, "HTTP layer"): each request passes one
`__call__` that reads the request headers once and wraps `send` once. In order:

1. request id (the caller's sane `X-Request-Id`, else a new one), echoed in `X-Request-Id`;
2. CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) answered here;
3. body limit: 413 by `Content-Length`, or while a chunked body streams in;
4. query guard: 400 naming the parameter for a NUL character or an over-long value (not under `/testcrm`);
5. routing: the route table (`HEAD` answered by the `GET` route: same status and headers, and uvicorn sends no
   body), the test CRM mounted at `/testcrm`, 404/405 as error envelopes;
6. error mapping: the registered exception handlers (by the exception's class hierarchy), then the last resort
   envelope (500, or 503 + `Retry-After` when a dependency is down), never a dropped connection.

Every answer, errors and preflights included, gets the security headers (nosniff, referrer policy, framing,
CSP: a response that sets its own CSP keeps it) and, when the request had an `Origin`, the CORS headers.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from time import perf_counter
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import URL, State
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appconnect.api.dispatch import Handler, Router
from appconnect.api.failures import classify, encode, error_body, sane_request_id
from appconnect.logs import RequestContext, current_request

log = logging.getLogger("appconnect")

ExceptionHandler = Callable[[Request, Any], Awaitable[Response]]
#: Called once per answered request: method, route template (a bounded set), status, seconds.
RequestObserver = Callable[[str, str, int, float], None]

API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The test CRM's page: its own inline style sheet, nothing else; links navigate, nothing may frame it.
TESTCRM_PAGE_CSP = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
TESTCRM_PREFIX = "/testcrm"
MAX_QUERY_VALUE_CHARS = 4096

CORS_ALLOW_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
CORS_EXPOSE_HEADERS = b"x-refreshed-jwt-token, x-request-id"
CORS_MAX_AGE = b"600"
_PREFLIGHT_VARY = b", ".join(
    (
        b"Origin",
        b"Access-Control-Request-Method",
        b"Access-Control-Request-Headers",
        b"Access-Control-Request-Private-Network",
    )
)
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)

#: Route label of requests no route answers: one label, so unknown paths cannot grow the metrics' label set.
UNMATCHED_ROUTE = "unmatched"


class BodyTooLarge(Exception):
    pass


class Edge:
    """The ASGI application workers serve (see the module docstring); `state` is what routes read."""

    def __init__(
        self,
        router: Router,
        *,
        exception_handlers: dict[type[BaseException], ExceptionHandler],
        max_body_bytes: int,
        lifespan: Callable[[], AbstractAsyncContextManager[None]],
        testcrm: ASGIApp | None = None,
    ) -> None:
        self.state = State()
        self._routes = dict(router.table)
        self._allowed = {
            path: ", ".join([*methods, "HEAD"] if "GET" in methods else methods)
            for path, methods in router.methods_by_path().items()
        }
        self._exception_handlers = exception_handlers
        self._max_body_bytes = max_body_bytes
        self._lifespan = lifespan
        self._testcrm = testcrm
        self.observers: list[RequestObserver] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._run_lifespan(receive, send)
        else:  # no websocket route: refuse the handshake
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One request through the module docstring's steps; `send` is wrapped once so every answer gets its headers.

        The steps below are plain calls returning the awaitable that answers, so splitting them costs the hot path
        no extra coroutine or await.
        """
        scope["app"] = self
        request_id, origin, content_length, preflight_method, preflight_headers, private_network = (
            _read_request(scope)
        )
        path: str = scope["path"]
        method: str = scope["method"]
        testcrm_path = path.startswith(TESTCRM_PREFIX) and (len(path) == 8 or path[8] == "/")
        preflight = origin is not None and method == "OPTIONS" and preflight_method is not None
        cors = origin is not None and not preflight  # a preflight answer carries its own CORS headers
        started = False
        status = 500
        clock = perf_counter()
        route = path if path in self._allowed else TESTCRM_PREFIX if testcrm_path else UNMATCHED_ROUTE
        # every log line of this request names it (logs.py); this task's context only, gone with the request
        context = RequestContext(request_id, method, route, clock)
        context_token = current_request.set(context)

        async def send_with_headers(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = context.status = message["status"]
                message["headers"] = _answer_headers(
                    message.get("headers", ()), request_id, cors, not preflight, testcrm_path
                )
            await send(message)

        observers = self.observers
        try:
            if preflight:
                assert preflight_method is not None
                await _preflight(preflight_method, preflight_headers, private_network, send_with_headers)
            else:
                await self._dispatch(
                    scope, receive, send_with_headers, request_id, method, path, content_length, testcrm_path
                )
        except BodyTooLarge:
            if not started:
                await self._too_large(request_id, send_with_headers)
        except Exception as exc:
            status_code, message, extra_headers = classify(exc)
            if not started:
                context.status = status_code  # so the error line below names the status answered
            log.error(
                "unhandled error, request %s, %s %s -> %s",
                request_id,
                method,
                route,
                status_code,
                exc_info=exc,
            )
            if started:
                raise
            await _send_error(send_with_headers, status_code, message, request_id, extra_headers)
        finally:
            if observers:
                elapsed = perf_counter() - clock
                for observe in observers:
                    observe(method, route, status, elapsed)
            current_request.reset(context_token)

    def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        method: str,
        path: str,
        content_length: bytes | None,
        testcrm_path: bool,
    ) -> Awaitable[None]:
        """The limits, then the route: a body over the limit or a bad query value never reaches a handler; the
        route table answers first, then the mounted test CRM, else a 404/405/redirect.

        Returns the answer unawaited (see `_http`).
        """
        if content_length is not None:
            if content_length.isdigit() and int(content_length) > self._max_body_bytes:
                return self._too_large(request_id, send)
        else:  # no Content-Length (chunked): count what streams in
            receive = _limited(receive, self._max_body_bytes)
        if not testcrm_path and scope["query_string"]:
            problem = _query_problem(scope["query_string"])
            if problem is not None:
                return _send_error(send, 400, f"Invalid query parameter {problem}", request_id)
        handler = self._routes.get((method, path))
        if handler is None and method == "HEAD":  # the GET answer; the server sends its head only
            handler = self._routes.get(("GET", path))
        if handler is not None:
            return self._answer(handler, scope, receive, send, request_id)
        if testcrm_path and self._testcrm is not None and len(path) > 8:
            return self._testcrm(_mounted_scope(scope), receive, send)
        return self._no_route(scope, path, request_id, send)

    async def _answer(
        self, handler: Handler, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except BodyTooLarge:
            raise
        except Exception as exc:
            mapped = self._handler_for(exc)
            if mapped is None:
                raise
            response = await mapped(request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        for cls in type(exc).__mro__:
            handler = self._exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None

    async def _no_route(self, scope: Scope, path: str, request_id: str, send: Send) -> None:
        allowed = self._allowed.get(path)
        if allowed is not None:
            await _send_error(send, 405, "Method Not Allowed", request_id, {"allow": allowed})
            return
        if path != "/":  # `/isAlive/` -> `/isAlive`, `/testcrm` -> `/testcrm/`, as the framework did
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            if other in self._allowed or (self._testcrm is not None and other == TESTCRM_PREFIX + "/"):
                location = str(URL(scope={**scope, "path": other}))
                await send(
                    {
                        "type": "http.response.start",
                        "status": 307,
                        "headers": [(b"location", location.encode()), (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await _send_error(send, 404, "Not Found", request_id)

    async def _too_large(self, request_id: str, send: Send) -> None:
        await _send_error(
            send, 413, f"Request body too large (limit {self._max_body_bytes} bytes)", request_id
        )

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        context = self._lifespan()
        try:
            await context.__aenter__()
        except BaseException:
            await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await context.__aexit__(None, None, None)
        except BaseException:
            await send({"type": "lifespan.shutdown.failed", "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})


def _read_request(scope: Scope) -> tuple[str, bytes | None, bytes | None, bytes | None, bytes | None, bool]:
    """The request headers the edge acts on, read in one pass; the request id is set in the request state.

    Returns the request id, `Origin`, `Content-Length`, the preflight's requested method and headers, and
    whether a private-network preflight asked.
    """
    origin = content_length = preflight_method = preflight_headers = given_id = None
    private_network = False
    for name, value in scope["headers"]:
        if name == b"origin":
            if origin is None:
                origin = value
        elif name == b"content-length":
            content_length = value
        elif name == b"x-request-id":
            if given_id is None:
                given_id = value
        elif name == b"access-control-request-method":
            preflight_method = value
        elif name == b"access-control-request-headers":
            preflight_headers = value
        elif name == b"access-control-request-private-network":
            private_network = True
    request_id = sane_request_id(given_id)
    state = scope.get("state")
    if state is None:
        scope["state"] = {"request_id": request_id}
    else:
        state["request_id"] = request_id
    return request_id, origin, content_length, preflight_method, preflight_headers, private_network


def _mounted_scope(scope: Scope) -> Scope:
    """The test CRM's view of the request: mounted under `/testcrm`, as a framework's `Mount` would pass it."""
    child = dict(scope)
    child["root_path"] = scope.get("root_path", "") + TESTCRM_PREFIX
    child.setdefault("app_root_path", scope.get("root_path", ""))
    return child


def _answer_headers(
    given: Any, request_id: str, cors: bool, vary_origin: bool, testcrm_path: bool
) -> list[tuple[bytes, bytes]]:
    """The response's headers plus request id, CORS (for a request with `Origin`) and security headers."""
    headers: list[tuple[bytes, bytes]] = []
    present: set[bytes] = set()
    vary: list[bytes] = []
    content_type = b""
    for name, value in given:
        lowered = name.lower()
        if lowered == b"vary":
            vary.append(value)
            continue
        if cors and lowered in (b"access-control-allow-origin", b"access-control-expose-headers"):
            continue
        if lowered == b"content-type":
            content_type = value
        present.add(lowered)
        headers.append((name, value))
    if cors:
        headers.append((b"access-control-allow-origin", b"*"))
        headers.append((b"access-control-expose-headers", CORS_EXPOSE_HEADERS))
    if vary_origin:  # the answer differs with Origin (CORS headers), so caches must key on it
        vary.append(b"Origin")
    if vary:
        headers.append((b"vary", b", ".join(vary)))
    if b"x-request-id" not in present:
        headers.append((b"x-request-id", request_id.encode()))
    for name, value in _SECURITY_HEADERS:
        if name not in present:
            headers.append((name, value))
    if b"content-security-policy" not in present:
        html_page = testcrm_path and content_type.startswith(b"text/html")
        headers.append((b"content-security-policy", TESTCRM_PAGE_CSP if html_page else API_CSP))
    return headers


async def _preflight(method: bytes, requested: bytes | None, private_network: bool, send: Send) -> None:
    """Any origin may call: 200 for the methods the API has, 400 `Disallowed CORS ...` otherwise."""
    headers = [
        (b"vary", _PREFLIGHT_VARY),
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", ", ".join(CORS_ALLOW_METHODS).encode()),
        (b"access-control-max-age", CORS_MAX_AGE),
    ]
    if requested is not None:
        headers.append((b"access-control-allow-headers", requested))
    failures = []
    if method.decode("latin-1") not in CORS_ALLOW_METHODS:
        failures.append("method")
    if private_network:
        failures.append("private-network")
    body = ("Disallowed CORS " + ", ".join(failures) if failures else "OK").encode()
    headers += [(b"content-length", str(len(body)).encode()), (b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": 400 if failures else 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send, status: int, message: str, request_id: str | None, extra_headers: dict[str, str] | None = None
) -> None:
    """The error envelope, answered by the edge layer itself (its `send` adds CORS and security headers)."""
    body = encode(error_body(message, request_id))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in (extra_headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _limited(receive: Receive, max_bytes: int) -> Receive:
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise BodyTooLarge
        return message

    return limited_receive


def _query_problem(query_string: bytes) -> str | None:
    """PostgreSQL cannot compare or store NUL, so without this one database fails where the other answers."""
    if (
        len(query_string) <= MAX_QUERY_VALUE_CHARS
        and b"%00" not in query_string
        and b"\x00" not in query_string
    ):
        return None  # no value can be longer than the whole string, and no NUL is there, raw or encoded
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        shown = name.replace("\x00", "\\0")[:64]
        if "\x00" in name or "\x00" in value:
            return f"{shown}: must not contain NUL characters"
        if len(value) > MAX_QUERY_VALUE_CHARS:
            return f"{shown}: must be at most {MAX_QUERY_VALUE_CHARS} characters"
    return None

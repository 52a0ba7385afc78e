"""ASGI middleware: body limits, request ids and security headers, and the last-resort error answer."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appconnect.api.failures import classify, encode, error_body, request_id_from

log = logging.getLogger("appconnect")


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """413 `{error}` for a body over `max_bytes`, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(scope, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        await send_error(scope, send, 413, f"Request body too large (limit {self.max_bytes} bytes)")


async def send_error(
    scope: Scope, send: Send, status: int, message: str, extra_headers: dict[str, str] | None = None
) -> None:
    """Answer the error envelope straight from a middleware (outer middleware still add their headers)."""
    body = encode(error_body(message, scope.get("state", {}).get("request_id")))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in (extra_headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The test CRM's page: its own inline style sheet, nothing else; links navigate, nothing may frame it.
TESTCRM_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
TESTCRM_PREFIX = "/testcrm"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class RequestContext:
    """Outermost layer: a request id for every request, echoed in `X-Request-Id`, plus security headers.

    Every answer (routes, errors, 404, 413, CORS preflight) passes through here, so none goes out without
    `nosniff`, `Referrer-Policy`, framing protection and a CSP. A response that sets its own CSP (the docs
    page) keeps it; the test CRM's HTML page gets one that allows its inline style sheet.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                content_type = _header(headers, b"content-type") or b""
                html_page = path.startswith(TESTCRM_PREFIX) and content_type.startswith(b"text/html")
                wanted = [
                    (b"x-request-id", request_id.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", (TESTCRM_PAGE_CSP if html_page else API_CSP).encode()),
                ]
                for name, value in wanted:
                    if _header(headers, name) is None:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ErrorBoundary:
    """Innermost layer: an exception nothing handled becomes an envelope answer, never a dropped connection.

    Starlette's own handler for `Exception` runs outside every middleware (so its answer has no CORS header)
    and re-raises (so the server closes the keep-alive connection). Catching here, inside CORS, avoids both.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BodyTooLarge:
            raise
        except Exception as exc:
            request_id = scope.get("state", {}).get("request_id")
            status, message, extra_headers = classify(exc)
            log.error(
                "unhandled error, request %s, %s %s -> %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
                status,
                exc_info=exc,
            )
            if started:
                raise
            await send_error(scope, send, status, message, extra_headers)


MAX_QUERY_VALUE_CHARS = 4096


class QueryGuard:
    """400 naming the parameter for a query value no route accepts: a NUL character, or absurdly long.

    PostgreSQL cannot compare or store NUL, so without this one database fails where the other answers.
    The embedded test CRM checks its own input.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("path", "").startswith(TESTCRM_PREFIX):
            problem = _query_problem(scope.get("query_string", b""))
            if problem is not None:
                await send_error(scope, send, 400, f"Invalid query parameter {problem}")
                return
        await self.app(scope, receive, send)


def _query_problem(query_string: bytes) -> str | None:
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        shown = name.replace("\x00", "\\0")[:64]
        if "\x00" in name or "\x00" in value:
            return f"{shown}: must not contain NUL characters"
        if len(value) > MAX_QUERY_VALUE_CHARS:
            return f"{shown}: must be at most {MAX_QUERY_VALUE_CHARS} characters"
    return None

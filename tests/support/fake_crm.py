"""The toolkit every fake CRM is built on: a real HTTP server on loopback holding in-memory state.

A fake subclasses :class:`FakeCrm` and writes only its CRM's resources and rules: `init_state()` (the data a
fresh fake holds), `routes()` (method, path, handler), `authenticate()` (its auth scheme) and `error_body()`
(its error envelope). The toolkit does the rest the same way for every CRM:

- lifecycle: `start()`/`stop()` or a `with` block, `base_url`, `reset()` between tests;
- a request log (`requests`, `requests_to()`), with credentials never recorded;
- fault injection (`inject()`): a status, a delay, or both, for the next N matching requests, either *before*
  the handler runs (nothing was done) or *after* it (the work is done, the answer is lost or late: the case a
  connector must not turn into a duplicate);
- rate limiting that counts requests per credential in a window and answers 429 with `Retry-After` and the
  CRM's rate-limit headers (`rate_limit_headers()`);
- paging helpers (offset/limit, opaque cursors, absolute `next` URLs);
- an OAuth2 grant store (:class:`OAuthGrants`) for fakes of OAuth CRMs;
- a clock tests can move (`advance_time()`) so tokens expire without sleeping.

State lives behind one lock: the server thread mutates it, the test thread inspects it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import math
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.live_server import serve_asgi

JsonDict = dict[str, Any]
T = TypeVar("T")

#: form and query keys whose values are credentials: recorded as "<redacted>"
SECRET_KEYS = frozenset(
    {"code", "refresh_token", "token", "client_secret", "password", "access_token", "api_key", "apikey"}
)


class HttpError(Exception):
    """Raised by a handler: the fake answers `status` with its CRM's error envelope around `message`."""

    def __init__(self, status: int, message: str, *, extra: JsonDict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


def bad_request(message: str) -> HttpError:
    return HttpError(400, message)


def not_found(message: str = "Not found") -> HttpError:
    return HttpError(404, message)


@dataclass(slots=True)
class FakeRequest:
    """What a handler sees: the parsed request plus the raw Starlette one for anything unusual."""

    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    path_params: dict[str, Any]
    headers: dict[str, str]
    json: Any
    form: dict[str, str] | None
    base_url: str
    raw: Request

    def int_param(self, name: str, default: int | None = None, *, minimum: int | None = None) -> int | None:
        """An integer query parameter; a non-integer is a 400, as real APIs answer."""
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise bad_request(f"{name} must be an integer") from None
        if minimum is not None and value < minimum:
            raise bad_request(f"{name} must be at least {minimum}")
        return value

    def path_int(self, name: str) -> int:
        try:
            return int(self.path_params[name])
        except (TypeError, ValueError):
            raise not_found(f"{name} must be a number") from None

    def json_object(self) -> JsonDict:
        """The body, which must be a JSON object."""
        if not isinstance(self.json, dict):
            raise bad_request("The request body must be a JSON object")
        return self.json


Handler = Callable[[FakeRequest], Awaitable[Response]]


@dataclass(slots=True, frozen=True)
class FakeRoute:
    method: str
    path: str
    handler: Handler
    #: False for routes the CRM serves without its API credential (OAuth token endpoint, login)
    auth: bool = True


@dataclass(slots=True)
class RecordedRequest:
    """One request as the fake saw it; secrets in form bodies and queries are redacted."""

    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] | None = None
    auth_scheme: str | None = None


FaultWhen = Literal["before", "after"]


@dataclass(slots=True)
class Fault:
    """A canned failure or delay for the next `times` matching requests.

    `when="before"`: answered before the handler runs, so nothing changes in the CRM. `when="after"`: the
    handler runs (the record is created or changed) and then the delay and/or status apply, as when a CRM
    does the work but its answer comes after the caller's timeout or is a 5xx.
    """

    status: int | None
    times: int
    path_prefix: str | None = None
    method: str | None = None
    retry_after: float | None = None
    delay: float | None = None
    when: FaultWhen = "before"
    body: Any = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass(slots=True)
class RateLimitPolicy:
    """At most `limit` API requests per credential in each `window` seconds."""

    limit: int = 10_000
    window: float = 10.0


@dataclass(slots=True)
class _Window:
    started: float
    count: int = 0


# ------------------------------------------------------------------------------------------------------------
# OAuth2
# ------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TokenPair:
    """Tokens a fake issued, for tests that skip the HTTP code exchange."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(slots=True)
class _CodeGrant:
    redirect_uri: str
    scope: str
    used: bool = False
    extra: JsonDict = field(default_factory=dict)


@dataclass(slots=True)
class _RefreshGrant:
    scope: str
    revoked: bool = False
    extra: JsonDict = field(default_factory=dict)


@dataclass(slots=True)
class _AccessGrant:
    refresh_token: str
    expires_at: float
    revoked: bool = False


RefreshTokenMode = Literal["same", "rotate", "omit"]


class OAuthGrants:
    """Authorization codes (single use, bound to a redirect URI), refresh tokens and expiring access tokens.

    The fake decides how clients authenticate and what its token answer looks like; this class only keeps
    the grants right. `extra` travels from a code to its tokens (e.g. which region or account it was for).
    """

    def __init__(self, clock: Callable[[], float], *, expires_in: int = 3600) -> None:
        self._clock = clock
        self.expires_in = expires_in
        self.refresh_token_mode: RefreshTokenMode = "same"
        self.code_exchanges = 0
        self.refresh_calls = 0
        self.revoke_calls = 0
        self._codes: dict[str, _CodeGrant] = {}
        self._refresh: dict[str, _RefreshGrant] = {}
        self._access: dict[str, _AccessGrant] = {}

    def issue_code(self, redirect_uri: str, scope: str = "", **extra: Any) -> str:
        code = f"code-{secrets.token_urlsafe(12)}"
        self._codes[code] = _CodeGrant(redirect_uri=redirect_uri, scope=scope, extra=extra)
        return code

    def issue_tokens(self, scope: str = "", **extra: Any) -> TokenPair:
        refresh = f"rt-{secrets.token_urlsafe(16)}"
        self._refresh[refresh] = _RefreshGrant(scope=scope, extra=extra)
        return TokenPair(self._mint_access(refresh), refresh, self.expires_in)

    def exchange_code(self, code: str, redirect_uri: str | None) -> tuple[TokenPair, JsonDict] | None:
        """Tokens for a code, once; None for an unknown, used or mismatched code (the API says invalid_grant)."""
        self.code_exchanges += 1
        grant = self._codes.get(code)
        if grant is None or grant.used or redirect_uri != grant.redirect_uri:
            return None
        grant.used = True
        return self.issue_tokens(grant.scope, **grant.extra), dict(grant.extra)

    def refresh(self, refresh_token: str) -> TokenPair | None:
        """A new access token (and, in "rotate" mode, a new refresh token); None for a dead refresh token."""
        self.refresh_calls += 1
        grant = self._refresh.get(refresh_token)
        if grant is None or grant.revoked:
            return None
        refresh = refresh_token
        if self.refresh_token_mode == "rotate":
            grant.revoked = True
            refresh = f"rt-{secrets.token_urlsafe(16)}"
            self._refresh[refresh] = _RefreshGrant(scope=grant.scope, extra=dict(grant.extra))
        pair = TokenPair(self._mint_access(refresh), refresh, self.expires_in)
        if self.refresh_token_mode == "omit":
            pair.refresh_token = ""
        return pair

    def revoke(self, token: str) -> None:
        """RFC 7009: revoking a refresh token ends its access tokens too; an unknown token is not an error."""
        self.revoke_calls += 1
        if token in self._refresh:
            self._refresh[token].revoked = True
            for grant in self._access.values():
                if grant.refresh_token == token:
                    grant.revoked = True
        elif token in self._access:
            self._access[token].revoked = True

    def access_valid(self, token: str) -> bool:
        grant = self._access.get(token)
        return grant is not None and not grant.revoked and grant.expires_at > self._clock()

    def refresh_valid(self, token: str) -> bool:
        grant = self._refresh.get(token)
        return grant is not None and not grant.revoked

    def extra_of_access(self, token: str) -> JsonDict:
        grant = self._access.get(token)
        if grant is None:
            return {}
        refresh = self._refresh.get(grant.refresh_token)
        return dict(refresh.extra) if refresh is not None else {}

    def _mint_access(self, refresh_token: str) -> str:
        access = f"at-{secrets.token_urlsafe(16)}"
        self._access[access] = _AccessGrant(refresh_token, self._clock() + self.expires_in)
        return access


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header, or None when it is not one."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def bearer_token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def same_secret(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


# ------------------------------------------------------------------------------------------------------------
# Paging
# ------------------------------------------------------------------------------------------------------------


def offset_page(items: Sequence[T], offset: int, limit: int) -> tuple[list[T], bool]:
    """One page of `items` and whether more follow."""
    page = list(items[offset : offset + limit])
    return page, offset + limit < len(items)


def make_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def cursor_offset(cursor: str | None) -> int:
    """The offset an opaque cursor stands for; a forged cursor is a 400."""
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("o:"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request("Invalid cursor") from None


def absolute_url(request: FakeRequest, **params: Any) -> str:
    """This request's URL on the fake with `params` replacing query values (for `next`-URL paging)."""
    query = dict(request.query)
    query.update({k: str(v) for k, v in params.items()})
    return f"{request.base_url}{request.path}?{urlencode(query)}"


# ------------------------------------------------------------------------------------------------------------
# The base fake
# ------------------------------------------------------------------------------------------------------------


class FakeCrm:
    """Base class of the fake CRMs: see the module docstring for what a subclass writes."""

    #: the CRM's name in error messages
    crm_name: ClassVar[str] = "CRM"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._stack: ExitStack | None = None
        self._port = 0
        self.reset()

    # --- what a subclass writes -------------------------------------------------------------------------------

    def init_state(self) -> None:
        """Create the CRM's data for a fresh fake (called under the lock by __init__ and reset())."""

    def routes(self) -> list[FakeRoute]:
        raise NotImplementedError

    def authenticate(self, request: FakeRequest) -> bool:
        """True when the request carries a valid API credential (only asked for routes with auth=True)."""
        raise NotImplementedError

    def credential_of(self, request: FakeRequest) -> str:
        """Whose rate limit the request spends: by default its Authorization header."""
        return request.headers.get("authorization", "")

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        """The CRM's error envelope."""
        return {"error": message, **extra}

    def unauthorized(self) -> Response:
        return self.error(401, "Unauthorized")

    def rate_limit_headers(self, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        """The headers the CRM sends on API answers about its rate limit (none by default)."""
        return {}

    def limit_of(self, request: FakeRequest) -> tuple[str, RateLimitPolicy]:
        """Which of the CRM's limits a request counts against (a name, its policy): by default the one
        `rate_limit` for every API request; a CRM with separate limits for some endpoints overrides this."""
        return "", self.rate_limit

    # --- lifecycle ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self: FakeCrmT) -> FakeCrmT:
        if self._stack is not None:
            return self
        stack = ExitStack()
        base_url = stack.enter_context(serve_asgi(self.app()))
        self._port = int(base_url.rsplit(":", 1)[1])
        self._stack = stack
        return self

    def stop(self) -> None:
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        self._port = 0
        stack.close()

    def __enter__(self: FakeCrmT) -> FakeCrmT:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all state, faults and settings (the server keeps running): one fake serves many tests."""
        with self._lock:
            self.requests: list[RecordedRequest] = []
            self._faults: list[Fault] = []
            self._clock_offset = 0.0
            self._ids: dict[str, int] = {}
            self.rate_limit = RateLimitPolicy()
            self._windows: dict[str, _Window] = {}
            self.init_state()

    # --- clock, ids, inspection -----------------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock: wall time plus whatever advance_time() added."""
        return time.time() + self._clock_offset

    def advance_time(self, seconds: float) -> None:
        with self._lock:
            self._clock_offset += seconds

    def next_id(self, kind: str, start: int = 1000) -> int:
        """Sequential ids per kind of record, as most CRMs hand out."""
        with self._lock:
            value = self._ids.get(kind, start) + 1
            self._ids[kind] = value
            return value

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method.upper())
            ]

    def snapshot(self, value: T) -> T:
        """A deep copy taken under the lock, for tests reading state the server thread may change."""
        with self._lock:
            return copy.deepcopy(value)

    # --- faults ---------------------------------------------------------------------------------------------

    def inject(
        self,
        status: int | None = None,
        *,
        times: int = 1,
        path_prefix: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        when: FaultWhen = "before",
        body: Any = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (after `delay` s), or only delay them."""
        if status is None and delay is None:
            raise ValueError("inject() needs a status or a delay")
        with self._lock:
            self._faults.append(Fault(status, times, path_prefix, method, retry_after, delay, when, body))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- responses ------------------------------------------------------------------------------------------

    def json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(
            orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
        )

    def error(self, status: int, message: str, *, extra: JsonDict | None = None) -> Response:
        return JSONResponse(self.error_body(status, message, extra or {}), status_code=status)

    def _fault_response(self, fault: Fault) -> Response:
        assert fault.status is not None
        headers: dict[str, str] = {}
        if fault.status == 429:
            wait = fault.retry_after if fault.retry_after is not None else 2
            headers = {"Retry-After": f"{wait:g}", **self.rate_limit_headers(self.rate_limit.limit, 0, wait)}
            message = "Too many requests"
        else:
            if fault.retry_after is not None:
                headers = {"Retry-After": f"{fault.retry_after:g}"}
            message = "Internal server error" if fault.status >= 500 else "Request failed"
        if fault.body is not None:
            return JSONResponse(fault.body, status_code=fault.status, headers=headers)
        response = self.error(fault.status, message)
        response.headers.update(headers)
        return response

    # --- HTTP -----------------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[Route(r.path, self._endpoint(r), methods=[r.method]) for r in self.routes()])

    def _endpoint(self, route: FakeRoute) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            parsed = await self._parse(request)
            if isinstance(parsed, Response):
                self._record_unreadable(request)  # a body it could not read was still received
                return parsed
            self._record(parsed)
            fault = self._take_fault(parsed.method, parsed.path)
            if fault is not None and fault.when == "before":
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    return self._fault_response(fault)
            limited = self._spend(parsed) if route.auth else None
            if route.auth and not self.authenticate(parsed):
                return self.unauthorized()
            if limited is not None:
                return limited
            try:
                response = await route.handler(parsed)
            except HttpError as exc:
                response = self.error(exc.status, exc.message, extra=exc.extra)
            if fault is not None and fault.when == "after":
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    return self._fault_response(fault)
            if route.auth:
                response.headers.update(self._limit_headers(parsed))
            return response

        return endpoint

    async def _parse(self, request: Request) -> FakeRequest | Response:
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        body: Any = None
        form: dict[str, str] | None = None
        if raw and "application/json" in content_type:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return self.error(400, "Invalid JSON body")
        elif raw and "application/x-www-form-urlencoded" in content_type:
            form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
            body = form
        base = f"{request.url.scheme}://{request.url.netloc}"
        return FakeRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            raw_query=request.url.query,
            path_params=dict(request.path_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body if form is None else None,
            form=form,
            base_url=base,
            raw=request,
        )

    def _record(self, request: FakeRequest) -> None:
        authorization = request.headers.get("authorization", "")
        headers = {
            k: ("<redacted>" if k in {"authorization", "cookie", "x-api-key", "api_key", "api-key"} else v)
            for k, v in request.headers.items()
        }
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.path,
                    query={
                        k: ("<redacted>" if k.lower() in SECRET_KEYS else v) for k, v in request.query.items()
                    },
                    raw_query=request.raw_query,
                    headers=headers,
                    json=request.json,
                    form={k: ("<redacted>" if k in SECRET_KEYS else v) for k, v in request.form.items()}
                    if request.form is not None
                    else None,
                    auth_scheme=authorization.split(" ", 1)[0] if " " in authorization else None,
                )
            )

    def _record_unreadable(self, request: Request) -> None:
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.url.path,
                    query={},
                    raw_query="",
                    headers={"content-type": request.headers.get("content-type", "")},
                )
            )

    def _spend(self, request: FakeRequest) -> Response | None:
        """Count the request in its credential's window; a 429 with Retry-After once the window is full."""
        name, policy = self.limit_of(request)
        key = f"{name}|{self.credential_of(request)}"
        with self._lock:
            now = self.now()
            window = self._windows.get(key)
            if window is None or now - window.started >= policy.window:
                window = self._windows[key] = _Window(started=now)
            window.count += 1
            if window.count <= policy.limit:
                return None
            wait = max(0.0, policy.window - (now - window.started))
        # whole seconds, rounded up as CRMs do: a client that waits them out finds the window open
        headers = {
            "Retry-After": str(max(1, math.ceil(wait))),
            **self.rate_limit_headers(policy.limit, 0, wait),
        }
        response = self.error(429, "Too many requests")
        response.headers.update(headers)
        return response

    def _limit_headers(self, request: FakeRequest) -> dict[str, str]:
        name, policy = self.limit_of(request)
        with self._lock:
            window = self._windows.get(f"{name}|{self.credential_of(request)}")
            used = window.count if window is not None else 0
            reset = policy.window - (self.now() - window.started) if window is not None else policy.window
        return self.rate_limit_headers(policy.limit, max(0, policy.limit - used), max(0.0, reset))


FakeCrmT = TypeVar("FakeCrmT", bound=FakeCrm)


def running(fake: FakeCrmT) -> Iterator[FakeCrmT]:
    """Generator form for fixtures: `yield from running(FakeClio())`."""
    with fake:
        yield fake

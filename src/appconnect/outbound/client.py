"""The one outbound HTTP client: pooled connections, explicit timeouts, CRM errors as :class:`CrmHttpError`.

Every outbound call of the server (CRM calls, OAuth token exchange, refresh and revocation) goes through the
:class:`CrmTransport` here: one connection pool per process (per event loop), keep-alive, TLS verified against the
default trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured), proxies from `HTTP(S)_PROXY` / `NO_PROXY` (a
proxy it cannot speak, such as `socks5://`, is refused at start rather than bypassed), no cookies, no redirects.
The wire is our own HTTP/1.1 client (:mod:`appconnect.outbound.wire`), chosen by measurement
(`bench/outbound_clients.py`) over aiohttp and httpx.

Every CRM call also goes through two guards here:

- retries: a 429 is retried after its `Retry-After` (when that is short enough); a read (GET/HEAD, or a request
  the connector marks idempotent) is also retried after 502/503/504 and lost connections, with exponential
  backoff and full jitter. A write is never sent again once it may have reached the CRM: only a connect error
  (nothing was sent) or a 429 (the CRM refused it) lets it be retried. Waits are bounded per call, and no try
  starts past the call deadline, so the client (which gives up at 30 s) still gets an answer.
- the rate limiter (:mod:`appconnect.outbound.limits`): before a try, the limits the CRM documents for this
  call's token, user and company are asked (costing nothing until the CRM's answers show a limit binds);
  after it, the CRM's `x-ratelimit-*` headers and 429s teach them, and a 429 backs the limit's whole scope off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from appconnect.outbound.limits import AccountLimiter, Admission, RateLimited
from appconnect.outbound.observe import observed
from appconnect.outbound.types import CrmAnswerError, CrmHttpError, CrmResponse
from appconnect.outbound.wire import PROXY_SCHEMES, Http1Pool, Timeouts, WireError

logger = logging.getLogger(__name__)

#: methods that read only: sending them twice is harmless
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: answers after which a read is tried again (a gateway or an overloaded CRM; the next try may well work)
RETRYABLE_READ_STATUSES = frozenset({502, 503, 504})
#: answers to a write that do not prove it was not applied (a gateway may have timed out on a CRM that went on)
UNKNOWN_OUTCOME_STATUSES = frozenset({500, 502, 504})
#: a try is not started with less time than this left before the call deadline
_MIN_TRY_SECONDS = 0.5
#: the overall bound of one try runs this much past its connect and read timeouts, so those (which say what
#: failed) fire first; it only ends a request body the server stopped reading or an answer that trickles
_OVERALL_GRACE_SECONDS = 1.0
USER_AGENT = "appconnect-server"
_ACCEPT_JSON = {"Accept": "application/json"}
_ACCEPT_AND_SEND_JSON = {"Accept": "application/json", "Content-Type": "application/json"}
_FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded"}
_DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"}


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """How hard one CRM call tries (settings `APPCONNECT_CRM_RETRY_*`)."""

    attempts: int = 3
    base_delay: float = 0.25
    budget_seconds: float = 6.0
    retry_after_cap: float = 5.0
    deadline_seconds: float = 25.0

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        return cls(
            attempts=settings.crm_retry_attempts,
            base_delay=settings.crm_retry_base_delay,
            budget_seconds=settings.crm_retry_budget_seconds,
            retry_after_cap=settings.crm_retry_after_cap_seconds,
            deadline_seconds=settings.crm_call_deadline_seconds,
        )


class TransportError(Exception):
    """No (complete) answer. `sent` is False when the request cannot have reached the server (connect failed)."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


_URL_QUERY = re.compile(r"(https?://[^\s?#'\"]*)[?#][^\s'\"]*")


def _describe(exc: BaseException) -> str:
    """The error's text without URL queries (a query may carry a phone number or a token)."""
    return _URL_QUERY.sub(r"\1", str(exc))


class CrmHttpResponse:
    """A server's answer, read whole: the status, the headers (case-insensitive) and the body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON: a ValueError when it is not JSON, :class:`CrmAnswerError` when it nests deeper
        than :data:`MAX_ANSWER_DEPTH`."""
        return read_json(self.content)


#: the deepest a CRM's JSON answer may nest to be read. CRM records nest a handful of levels; what the server
#: builds around a part of an answer (its own replies, stored values, a later request's body) adds a few more,
#: and its JSON writer stops at 254 levels, Python's recursion near 1000. Refusing deeper answers here, where
#: every connector reads them, keeps that out of every flow.
MAX_ANSWER_DEPTH = 128


def _writer_depth_limit() -> int | None:
    """The deepest nesting orjson writes (254 in orjson 3), found once by trying; None if it has no limit."""

    def writes(depth: int) -> bool:
        value: Any = None
        for _ in range(depth):
            value = [value]
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return False
        return True

    low, high = 1, 4096
    if writes(high):
        return None
    while high - low > 1:  # writes(low), not writes(high)
        middle = (low + high) // 2
        low, high = (middle, high) if writes(middle) else (low, middle)
    return low


_WRITER_DEPTH = _writer_depth_limit()


def read_json(content: bytes) -> Any:
    """A CRM answer's JSON, refused as :class:`CrmAnswerError` when nested deeper than MAX_ANSWER_DEPTH.

    Nesting needs a bracket a level, so an answer with fewer brackets than the bound is only counted; any other
    is handed, wrapped in enough lists to reach the writer's limit, to orjson's writer, whose C code refuses
    what nests too deep. `bench/json_depth.py`: a 4 KB search answer parses in 11 us and the check adds 4 us,
    12 KB: 34 + 25 us, 870 KB: 3.2 + 1.0 ms; a walk of the parsed value in Python cost two to four parses.
    """
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's reader stops at 1024 levels
            raise _too_deep() from None
        raise
    except RecursionError:
        raise _too_deep() from None
    if content.count(b"[") + content.count(b"{") > MAX_ANSWER_DEPTH and _deeper_than_bound(value):
        raise _too_deep()
    return value


def _too_deep() -> CrmAnswerError:
    return CrmAnswerError(f"JSON nested deeper than {MAX_ANSWER_DEPTH} levels")


def _deeper_than_bound(value: Any) -> bool:
    """True when `value` nests more than MAX_ANSWER_DEPTH levels."""
    if _WRITER_DEPTH is None or _WRITER_DEPTH < MAX_ANSWER_DEPTH:
        return _walk_deeper_than(value, MAX_ANSWER_DEPTH)
    probe = value
    for _ in range(_WRITER_DEPTH - MAX_ANSWER_DEPTH):
        probe = [probe]
    try:
        orjson.dumps(probe)
    except orjson.JSONEncodeError as exc:
        # a value orjson read, it writes: only the nesting is refused (anything else: the walk decides)
        return "recursion" in str(exc).lower() or _walk_deeper_than(value, MAX_ANSWER_DEPTH)
    return False


def _walk_deeper_than(value: Any, limit: int) -> bool:
    """The same answer by walking the containers level by level (no recursion): the fallback."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend(child for child in children if isinstance(child, dict | list))
        if not below:
            return False
        level = below
    return True


class ProxyConfigError(ValueError):
    """A proxy variable names a proxy the outbound client cannot use (one line for the operator)."""


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def check_proxy_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a proxy the client would otherwise not use (`socks5://...`, no scheme): calls would go direct.

    The message names the variable and the scheme, never the value (it may carry a password).
    """
    environ = os.environ if environ is None else environ
    for name in sorted(environ):
        if name.lower() not in _PROXY_VARIABLES or not environ[name].strip():
            continue
        scheme = environ[name].strip().partition("://")[0].lower() if "://" in environ[name] else ""
        if scheme not in PROXY_SCHEMES:
            what = f"the scheme {scheme!r}" if scheme else "no scheme"
            raise ProxyConfigError(
                f"{name} has {what}; the outbound HTTP client only speaks to http:// proxies "
                f"(write it as http://host:port, or unset {name})"
            )


class _EnvironmentProxies:
    """`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`, read once at start, and each origin's answer
    remembered (the environment does not change while the server runs)."""

    def __init__(self, proxies: dict[str, str]) -> None:
        self._proxies = proxies
        self._by_origin: dict[tuple[str, str], str | None] = {}

    @classmethod
    def read(cls) -> _EnvironmentProxies | None:
        """The proxies of the environment; :class:`ProxyConfigError` for one the client cannot speak."""
        check_proxy_environment()
        found = urllib.request.getproxies_environment()
        proxies = {scheme: url for scheme, url in found.items() if scheme in ("http", "https", "all") and url}
        return cls(proxies) if proxies else None

    def for_url(self, url: str) -> str | None:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "")
        if origin not in self._by_origin:
            proxy = None
            if not urllib.request.proxy_bypass(origin[1]):  # NO_PROXY
                proxy = self._proxies.get(origin[0]) or self._proxies.get("all")
            self._by_origin[origin] = proxy
        return self._by_origin[origin]


class CrmTransport:
    """The process's pooled outbound HTTP (:mod:`appconnect.outbound.wire`), one pool per event loop.

    The pool is made on first use because it belongs to the running loop, and the services are built before the
    server's loop runs. `aclose` (Services.close, at shutdown) closes its connections.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        call_deadline: float = 25.0,
        max_connections: int = 200,
        max_connections_per_host: int = 32,
        keepalive_seconds: float = 15.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._max_connections = max_connections
        self._max_connections_per_host = max_connections_per_host
        # How long an idle connection is kept when the CRM's answer does not say (`Keep-Alive: timeout=N`
        # says, and wins). Long enough that a CRM called every few seconds reuses its connection instead of
        # paying a TLS handshake per call; a connection the CRM closed sooner is noticed before reuse (and a
        # read that raced the close is sent again on a new connection), so a short guess buys nothing.
        self._keepalive_seconds = keepalive_seconds
        self._default_timeout = self.timeout_within(call_deadline)
        # the default trust store (SSL_CERT_FILE / SSL_CERT_DIR when set: the bench's fake CRM relies on it),
        # read when the first pool opens: parsing the system's CA bundle is 20 ms of each worker's start
        self._ssl: ssl.SSLContext | None = None
        self._proxies = _EnvironmentProxies.read()
        self._pool: Http1Pool | None = None

    def timeout_within(self, remaining: float) -> Timeouts:
        """The connect and read timeouts, none longer than `remaining`, and an overall bound just past them."""
        return Timeouts(
            connect=min(self.connect_timeout, remaining),
            read=min(self.read_timeout, remaining),
            total=remaining + _OVERALL_GRACE_SECONDS,
        )

    def _open(self, loop: asyncio.AbstractEventLoop) -> Http1Pool:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        self._pool = Http1Pool(
            loop=loop,
            ssl_context=self._ssl,
            max_connections=self._max_connections,
            max_connections_per_host=self._max_connections_per_host,
            keepalive_expiry=self._keepalive_seconds,
            default_headers=_DEFAULT_HEADERS,
        )
        return self._pool

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
    ) -> CrmHttpResponse:
        """One request, its answer read whole; :class:`TransportError` when there is no (complete) answer."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            pool = self._open(loop)
        proxy = self._proxies.for_url(url) if self._proxies is not None else None
        try:
            answer = await pool.request(
                method,
                url,
                params=params,
                body=body,
                headers=headers,
                timeouts=timeouts or self._default_timeout,
                proxy_url=proxy,
            )
        except WireError as exc:
            raise TransportError(_describe(exc), sent=exc.sent) from None
        return CrmHttpResponse(answer.status, answer.headers, answer.body)

    async def aclose(self) -> None:
        pool = self._pool
        self._pool = None
        if pool is None:
            return
        if pool.loop is asyncio.get_running_loop():
            await pool.aclose()
        else:  # connections of another loop cannot be closed from here; its loop's end closes the sockets
            logger.debug("outbound HTTP pool of another event loop dropped unclosed")


def build_transport_client(
    *,
    connect_timeout: float,
    read_timeout: float,
    call_deadline: float = 25.0,
    max_connections: int = 200,
    max_connections_per_host: int = 32,
    keepalive_seconds: float = 15.0,
) -> CrmTransport:
    """The process-wide pooled client every outbound call goes through."""
    return CrmTransport(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        call_deadline=call_deadline,
        max_connections=max_connections,
        max_connections_per_host=max_connections_per_host,
        keepalive_seconds=keepalive_seconds,
    )


def _query(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query values as httpx wrote them: booleans as `true`/`false`, None as empty, numbers as text."""
    return {key: _query_value(value) for key, value in params.items()}


def _query_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_query_value(item) for item in value]
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _retry_after(response: CrmHttpResponse) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP-date (RFC 9110); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def _body(response: CrmHttpResponse) -> Any:
    """An error answer's body, for its message: JSON when it reads as JSON, else the start of its text."""
    try:
        return read_json(response.content)
    except (ValueError, CrmAnswerError):
        return response.text[:500]


def _encoded_body(json: Any, data: dict[str, str] | None) -> bytes | None:
    """The request body: JSON when given, else a form, else none."""
    if json is not None:
        return orjson.dumps(json)
    if data is not None:
        return urlencode(data).encode()
    return None


def _unanswered(
    exc: TransportError, method: str, safe_url: str, repeatable: bool
) -> tuple[CrmHttpError, bool]:
    """No (complete) answer came: the error to raise, and whether trying again cannot do the work twice."""
    if exc.sent:
        # sent, then no (complete) answer: the CRM may have done it
        failure = CrmHttpError(None, method=method, url=safe_url, outcome_unknown=not repeatable)
        retryable = repeatable
    else:
        # nothing reached the CRM: any method may be tried again
        failure = CrmHttpError(None, method=method, url=safe_url)
        retryable = True
    failure.__cause__ = exc
    return failure, retryable


def _refused(
    response: CrmHttpResponse,
    retry_after: float | None,
    method: str,
    safe_url: str,
    repeatable: bool,
    policy: RetryPolicy,
) -> tuple[CrmHttpError, bool]:
    """The CRM answered an error: the error to raise, and whether to try again (a 429 always may, within the
    policy's cap on `Retry-After`; other statuses only for a repeatable request and a transient status)."""
    status = response.status_code
    failure = CrmHttpError(
        status,
        retry_after=retry_after,
        body=_body(response),
        method=method,
        url=safe_url,
        outcome_unknown=not repeatable and status in UNKNOWN_OUTCOME_STATUSES,
    )
    if status == 429:
        return failure, retry_after is None or retry_after <= policy.retry_after_cap
    retryable = repeatable and status in RETRYABLE_READ_STATUSES
    if retry_after is not None and retry_after > policy.retry_after_cap:
        retryable = False
    return failure, retryable


class CrmHttpClient:
    """:class:`~appconnect.connectors.sdk.CrmHttp` bound to one user's auth header and CRM base URL."""

    def __init__(
        self,
        client: CrmTransport,
        *,
        base_url: str,
        auth_header: str = "",
        retry: RetryPolicy | None = None,
        limiter: AccountLimiter | None = None,
    ) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self._auth_header = auth_header
        self._retry = retry or RetryPolicy()
        self._limiter = limiter
        # built once per session: most calls send exactly one of these
        self._auth_headers = {**_ACCEPT_JSON, "Authorization": auth_header} if auth_header else _ACCEPT_JSON
        self._auth_json_headers = {**self._auth_headers, "Content-Type": "application/json"}
        #: writes (not repeatable requests) the CRM answered: when a connector then cannot read an answer, the
        #: server knows whether the CRM may have done the work (see `connectors.sdk.CrmAnswerError`)
        self.answered_writes = 0

    def _url(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        return f"{self.base_url}/{url.lstrip('/')}"

    def _headers(self, auth: bool, extra: dict[str, str] | None, *, json: bool, form: bool) -> dict[str, str]:
        """Accept JSON, the session's auth unless `auth=False`, the caller's headers, the body's type."""
        if json and not extra:
            return self._auth_json_headers if auth else _ACCEPT_AND_SEND_JSON
        send = self._auth_headers if auth else _ACCEPT_JSON
        if not extra and not form:
            return send
        send = {**send, **_FORM_TYPE, **(extra or {})} if form else {**send, **(extra or {})}
        if json and not any(k.lower() == "content-type" for k in extra or {}):
            # a caller's own JSON media type stays (e.g. `application/vnd.coxauto.v3+json`)
            send["Content-Type"] = "application/json"
        return send

    @observed
    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        allow_status: tuple[int, ...] = (),
        idempotent: bool = False,
        content: bytes | None = None,
        timeout_seconds: float | None = None,
    ) -> CrmResponse:
        if timeout_seconds is not None and not 0 < timeout_seconds < float("inf"):
            raise ValueError("timeout_seconds must be a positive number of seconds")
        method = method.upper()
        full_url = self._url(url)
        safe_url = _redact_query(full_url)
        if content is None:
            content = _encoded_body(json, data)
        send_headers = self._headers(
            auth, headers, json=json is not None, form=json is None and data is not None
        )
        query = _query(params) if params else None
        repeatable = idempotent or method in SAFE_METHODS
        policy = self._retry
        started = time.monotonic()
        waited = 0.0
        attempt = 0
        limiter = self._limiter
        while True:
            attempt += 1
            admission = None if limiter is None else await self._spend_budget(limiter, method, safe_url)
            retry_after: float | None = None
            try:
                response = await self._client.send(
                    method,
                    full_url,
                    params=query,
                    body=content,
                    headers=send_headers,
                    timeouts=self._try_timeout(started, timeout_seconds),
                )
            except TransportError as exc:
                failure, retryable = _unanswered(exc, method, safe_url, repeatable)
            else:
                status = response.status_code
                if limiter is not None and admission is not None:
                    retry_after = _retry_after(response) if status == 429 else None
                    await limiter.observe(admission, status, response.headers, retry_after)
                if response.is_success or status in allow_status:
                    if not repeatable:
                        self.answered_writes += 1
                    return response
                retry_after = _retry_after(response)
                failure, retryable = _refused(response, retry_after, method, safe_url, repeatable, policy)
            if not retryable or attempt >= policy.attempts:
                raise failure
            delay = self._delay(attempt, retry_after)
            elapsed = time.monotonic() - started
            if waited + delay > policy.budget_seconds or (
                elapsed + delay + _MIN_TRY_SECONDS > policy.deadline_seconds
            ):
                raise failure
            await asyncio.sleep(delay)
            waited += delay

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform in [0, base * 2^(attempt-1)]; after a Retry-After, that plus a little jitter."""
        jitter = random.uniform(0, self._retry.base_delay * 2 ** (attempt - 1))
        if retry_after is not None:
            return retry_after + min(jitter, self._retry.base_delay)
        return jitter

    def _try_timeout(self, started: float, seconds: float | None) -> Timeouts:
        """The client's timeouts, shortened so the try ends by the call deadline, and by the caller's
        `timeout_seconds` when that is shorter still (it bounds the whole try, as the reference's does)."""
        remaining = self._retry.deadline_seconds - (time.monotonic() - started)
        bounds = self._client.timeout_within(max(remaining, _MIN_TRY_SECONDS))
        if seconds is None or seconds >= bounds.total:
            return bounds
        return Timeouts(connect=min(bounds.connect, seconds), read=min(bounds.read, seconds), total=seconds)

    @staticmethod
    async def _spend_budget(limiter: AccountLimiter, method: str, safe_url: str) -> Admission:
        """Wait until the CRM's limits let this call through; past `max_wait`, a 429 without calling. The
        limits the call counted against go with its answer to `observe`."""
        try:
            return await limiter.admit(safe_url)
        except RateLimited as exc:
            raise CrmHttpError(
                429,
                retry_after=exc.wait,
                body={"error": "rate limit of this CRM account reached; the CRM was not called"},
                method=method,
                url=safe_url,
            ) from None

    async def get_json(self, url: str, *, params: dict[str, Any] | None = None) -> Any:
        return (await self.request("GET", url, params=params)).json()

    async def post_json(self, url: str, body: Any) -> Any:
        return (await self.request("POST", url, json=body)).json()

    async def patch_json(self, url: str, body: Any) -> Any:
        return (await self.request("PATCH", url, json=body)).json()


def _redact_query(url: str) -> str:
    """Drop the query string: it may carry a phone number or a token, neither belongs in an error."""
    return url.split("?", 1)[0]

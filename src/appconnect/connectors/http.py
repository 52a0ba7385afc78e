"""The one outbound HTTP client: pooled connections, explicit timeouts, CRM errors as :class:`CrmHttpError`.

Every CRM call also goes through two guards here:

- retries: a 429 is retried after its `Retry-After` (when that is short enough); a read (GET/HEAD, or a request
  the connector marks idempotent) is also retried after 502/503/504 and lost connections, with exponential
  backoff and full jitter. A write is never sent again once it may have reached the CRM: only a connect error
  (nothing was sent) or a 429 (the CRM refused it) lets it be retried. Waits are bounded per call, and no try
  starts past the call deadline, so the client (which gives up at 30 s) still gets an answer.
- the per-CRM-account rate limiter (:mod:`appconnect.store.rate_limits`): one call spends one unit of the
  account's shared budget; a 429 from the CRM makes the whole account back off.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from appconnect.connectors.observe import observed
from appconnect.connectors.sdk import CrmHttpError, CrmResponse, RateLimit
from appconnect.store.rate_limits import RateLimiterBackend

logger = logging.getLogger(__name__)

#: methods that read only: sending them twice is harmless
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: answers after which a read is tried again (a gateway or an overloaded CRM; the next try may well work)
RETRYABLE_READ_STATUSES = frozenset({502, 503, 504})
#: answers to a write that do not prove it was not applied (a gateway may have timed out on a CRM that went on)
UNKNOWN_OUTCOME_STATUSES = frozenset({500, 502, 504})
#: a try is not started with less time than this left before the call deadline
_MIN_TRY_SECONDS = 0.5


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


@dataclass(slots=True, frozen=True)
class AccountLimiter:
    """The rate limit of the CRM account one session's calls spend (`key` names the platform and the account)."""

    backend: RateLimiterBackend
    key: str
    limit: RateLimit
    max_wait: float = 2.0


def build_transport_client(
    *, connect_timeout: float, read_timeout: float, max_connections: int = 200
) -> httpx.AsyncClient:
    """The process-wide pooled client every CRM call goes through."""
    timeout = httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
    )
    # Idle connections are dropped before the usual 5 s server-side keep-alive timeout, so a request is never
    # sent on a connection the CRM is closing at that moment (a POST cannot safely be retried).
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections // 2, keepalive_expiry=2.0
    )
    return httpx.AsyncClient(
        timeout=timeout, limits=limits, follow_redirects=False, headers={"User-Agent": "appconnect-server"}
    )


def _retry_after(response: httpx.Response) -> float | None:
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


def _body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:500]


class CrmHttpClient:
    """:class:`~appconnect.connectors.sdk.CrmHttp` bound to one user's auth header and CRM base URL."""

    def __init__(
        self,
        client: httpx.AsyncClient,
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

    def _url(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        return f"{self.base_url}/{url.lstrip('/')}"

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
    ) -> CrmResponse:
        method = method.upper()
        full_url = self._url(url)
        safe_url = _redact_query(full_url)
        send_headers: dict[str, str] = {"Accept": "application/json"}
        if auth and self._auth_header:
            send_headers["Authorization"] = self._auth_header
        if headers:
            send_headers.update(headers)
        content: bytes | None = None
        if json is not None:
            content = orjson.dumps(json)
            send_headers["Content-Type"] = "application/json"
        repeatable = idempotent or method in SAFE_METHODS
        policy = self._retry
        started = time.monotonic()
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            await self._spend_budget(method, safe_url)
            retry_after: float | None = None
            try:
                response = await self._client.request(
                    method,
                    full_url,
                    params=params,
                    content=content,
                    data=data,
                    headers=send_headers,
                    timeout=self._try_timeout(started),
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # nothing reached the CRM: any method may be tried again
                failure = CrmHttpError(None, method=method, url=safe_url)
                failure.__cause__ = exc
                retryable = True
            except httpx.HTTPError as exc:
                # sent, then no (complete) answer: the CRM may have done it
                failure = CrmHttpError(None, method=method, url=safe_url, outcome_unknown=not repeatable)
                failure.__cause__ = exc
                retryable = repeatable
            else:
                status = response.status_code
                if response.is_success or status in allow_status:
                    return response
                retry_after = _retry_after(response)
                failure = CrmHttpError(
                    status,
                    retry_after=retry_after,
                    body=_body(response),
                    method=method,
                    url=safe_url,
                    outcome_unknown=not repeatable and status in UNKNOWN_OUTCOME_STATUSES,
                )
                if status == 429:
                    await self._back_off(retry_after)
                    retryable = retry_after is None or retry_after <= policy.retry_after_cap
                else:
                    retryable = repeatable and status in RETRYABLE_READ_STATUSES
                    if retry_after is not None and retry_after > policy.retry_after_cap:
                        retryable = False
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

    def _try_timeout(self, started: float) -> httpx.Timeout | Any:
        """The client's timeouts, with the read shortened so the try ends by the call deadline."""
        remaining = self._retry.deadline_seconds - (time.monotonic() - started)
        default = self._client.timeout
        if default.read is None or remaining >= default.read:
            return httpx.USE_CLIENT_DEFAULT
        remaining = max(remaining, _MIN_TRY_SECONDS)
        return httpx.Timeout(
            connect=min(default.connect or remaining, remaining),
            read=remaining,
            write=min(default.write or remaining, remaining),
            pool=min(default.pool or remaining, remaining),
        )

    async def _spend_budget(self, method: str, safe_url: str) -> None:
        """Take one call from the account's budget, waiting briefly; past `max_wait`, a 429 without calling."""
        limiter = self._limiter
        if limiter is None:
            return
        deadline = time.monotonic() + limiter.max_wait
        while True:
            try:
                wait = await limiter.backend.acquire(limiter.key, limiter.limit)
            except Exception:  # the limiter protects the CRM; its store being down must not stop the calls
                logger.warning("rate limiter unavailable; CRM call made without it", exc_info=True)
                return
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise CrmHttpError(
                    429,
                    retry_after=wait,
                    body={"error": "rate limit of this CRM account reached; the CRM was not called"},
                    method=method,
                    url=safe_url,
                )
            await asyncio.sleep(wait + random.uniform(0, min(wait, 0.05)))

    async def _back_off(self, retry_after: float | None) -> None:
        """The CRM said 429: every caller of this account waits, not only this request."""
        limiter = self._limiter
        if limiter is None:
            return
        try:
            await limiter.backend.back_off(limiter.key, limiter.limit, retry_after if retry_after else 1.0)
        except Exception:
            logger.warning("rate limiter unavailable; back-off not shared", exc_info=True)

    async def get_json(self, url: str, *, params: dict[str, Any] | None = None) -> Any:
        return (await self.request("GET", url, params=params)).json()

    async def post_json(self, url: str, body: Any) -> Any:
        return (await self.request("POST", url, json=body)).json()

    async def patch_json(self, url: str, body: Any) -> Any:
        return (await self.request("PATCH", url, json=body)).json()


def _redact_query(url: str) -> str:
    """Drop the query string: it may carry a phone number or a token, neither belongs in an error."""
    return url.split("?", 1)[0]

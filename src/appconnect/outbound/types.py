"""What a connector and the outbound client agree on: the CRM error, the answer and client shapes, a rate limit.

These live here, below both the connector SDK (which re-exports them for connectors) and the outbound client, so
imports point one way: connectors -> outbound, store -> outbound, never back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol


class CrmHttpError(Exception):
    """A CRM answered outside 2xx, or did not answer in time. The server maps it to the client's message."""

    def __init__(
        self,
        status: int | None,
        *,
        retry_after: float | None = None,
        body: Any = None,
        method: str = "",
        url: str = "",
        outcome_unknown: bool = False,
    ) -> None:
        self.status = status  # None: timeout or network error
        self.retry_after = retry_after
        self.body = body
        self.method = method
        self.url = url
        # True when the request may have reached the CRM and been applied (no answer after it was sent, or a
        # 5xx): a write must not be sent again blindly; ask the CRM what it has first.
        self.outcome_unknown = outcome_unknown
        super().__init__(f"{method} {url} -> {status if status is not None else 'no answer'}")


class CrmAnswerError(CrmHttpError):
    """A CRM answered, but not what its API documents: not JSON (an HTML login page, a truncated body), or JSON
    of another shape (a list where an object was, text where a number was, a key missing, an id too long to
    keep). The server maps it like a CRM that failed ("<platform> answered something unexpected"), never to a
    500 and never by showing the body. Its status is 502 (an upstream answered something invalid).

    `outcome_unknown` is True when a write of the same interface call had been answered 2xx: the CRM may have
    done the work, so it is not sent again blindly (the log and contact flows ask the CRM first).
    """

    def __init__(self, reason: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(502, outcome_unknown=outcome_unknown)
        self.reason = reason  # the exception's class or the check that failed: never the CRM's body
        self.args = (f"unexpected CRM answer ({reason})",)


class CrmResponse(Protocol):
    """The part of an HTTP response a connector reads."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Any: ...

    def json(self) -> Any: ...


class CrmHttp(Protocol):
    """An HTTP client bound to one user's CRM session: the auth header is already applied.

    `url` is absolute, or relative to `base_url`. `content` sends raw bytes as the body (a file upload; the
    caller names its type in `headers`). `auth=False` sends no Authorization header (a connector that
    needs a different one passes it in `headers`). Non-2xx answers raise :class:`CrmHttpError` unless listed in
    `allow_status`. GET/HEAD are retried after 502/503/504 and lost connections; a write is retried only when
    it cannot have reached the CRM (connect error, 429), unless the connector passes `idempotent=True` (a
    request that gives the same result when sent twice, e.g. a PATCH that sets absolute values).
    `timeout_seconds` (more than 0) shortens each try of this request: it bounds the whole try, connecting
    included; the server's own timeouts and the call deadline still apply, so it can never lengthen one. A try
    that times out after the request was written is an unknown outcome for a write, as any lost answer is.
    """

    base_url: str

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
    ) -> CrmResponse: ...

    async def get_json(self, url: str, *, params: dict[str, Any] | None = None) -> Any: ...

    async def post_json(self, url: str, body: Any) -> Any: ...

    async def patch_json(self, url: str, body: Any) -> Any: ...


@dataclass(slots=True, frozen=True)
class RateLimit:
    """At most `requests` CRM calls in any `per_seconds` window, shared by every worker and machine."""

    requests: int
    per_seconds: float


#: whose calls a CRM counts together: one OAuth token or API key, one CRM user, or the whole company (account)
LimitScope = Literal["token", "user", "company"]


@dataclass(slots=True, frozen=True)
class LimitRule:
    """One rate limit a CRM documents, declared by its connector.

    The CRM counts the calls of one `scope` whose URL path contains one of `paths` (every call when empty) in
    windows of `per_seconds`. `requests` is the documented figure, None when it depends on the customer's plan;
    the CRM's own `x-ratelimit-*` answers replace it as they arrive. The server does not hold calls back
    because of a rule until the CRM shows it binds (few calls left in its headers, or a 429).
    """

    name: str
    scope: LimitScope
    per_seconds: float
    requests: int | None = None
    paths: tuple[str, ...] = ()

    def applies_to(self, path: str) -> bool:
        """True when a call to `path` (the URL's path) counts against this rule."""
        if not self.paths:
            return True
        lowered = path.lower()
        return any(part in lowered for part in self.paths)

"""The one outbound HTTP client: pooled connections, explicit timeouts, CRM errors as :class:`CrmHttpError`."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from appconnect.connectors.sdk import CrmHttpError, CrmResponse


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
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:500]


class CrmHttpClient:
    """:class:`~appconnect.connectors.sdk.CrmHttp` bound to one user's auth header and CRM base URL."""

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, auth_header: str = "") -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self._auth_header = auth_header

    def _url(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        return f"{self.base_url}/{url.lstrip('/')}"

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
    ) -> CrmResponse:
        full_url = self._url(url)
        send_headers: dict[str, str] = {"Accept": "application/json"}
        if auth and self._auth_header:
            send_headers["Authorization"] = self._auth_header
        if headers:
            send_headers.update(headers)
        content: bytes | None = None
        if json is not None:
            content = orjson.dumps(json)
            send_headers["Content-Type"] = "application/json"
        try:
            response = await self._client.request(
                method, full_url, params=params, content=content, data=data, headers=send_headers
            )
        except httpx.TimeoutException as exc:
            raise CrmHttpError(None, method=method, url=_redact_query(full_url)) from exc
        except httpx.HTTPError as exc:
            raise CrmHttpError(None, method=method, url=_redact_query(full_url)) from exc
        if response.is_success or response.status_code in allow_status:
            return response
        raise CrmHttpError(
            response.status_code,
            retry_after=_retry_after(response),
            body=_body(response),
            method=method,
            url=_redact_query(full_url),
        )

    async def get_json(self, url: str, *, params: dict[str, Any] | None = None) -> Any:
        return (await self.request("GET", url, params=params)).json()

    async def post_json(self, url: str, body: Any) -> Any:
        return (await self.request("POST", url, json=body)).json()

    async def patch_json(self, url: str, body: Any) -> Any:
        return (await self.request("PATCH", url, json=body)).json()


def _redact_query(url: str) -> str:
    """Drop the query string: it may carry a phone number or a token, neither belongs in an error."""
    return url.split("?", 1)[0]

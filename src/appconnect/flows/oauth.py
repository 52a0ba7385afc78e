"""The shared OAuth2 component: code exchange, refresh and revocation for every OAuth connector."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson

from appconnect.connectors.sdk import CrmAnswerError, OAuthInfo
from appconnect.outbound.client import CrmHttpResponse, CrmTransport, TransportError, read_json


class OAuthError(Exception):
    """The token endpoint refused; `code` is the OAuth error code (`invalid_grant` means log in again)."""

    def __init__(self, code: str, status: int | None = None) -> None:
        self.code = code
        self.status = status
        super().__init__(f"OAuth error {code}" + (f" (HTTP {status})" if status else ""))


@dataclass(slots=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict)


def _client_auth(info: OAuthInfo) -> dict[str, str]:
    if not info.client_secret or info.client_secret_in_body:
        return {}
    credential = base64.b64encode(f"{info.client_id}:{info.client_secret}".encode()).decode()
    return {"Authorization": f"Basic {credential}"}


def _parse(response: CrmHttpResponse) -> dict[str, Any]:
    """A token answer: JSON (refused when nested too deep: it reaches the connector and may be kept), else a
    form-encoded body as some older OAuth servers answer."""
    try:
        data = read_json(response.content)
        if isinstance(data, dict):
            return data
    except CrmAnswerError:
        raise OAuthError("invalid_token_response", response.status_code) from None
    except orjson.JSONDecodeError:
        pass
    return {k: v[0] for k, v in parse_qs(response.text).items()}


async def _token_request(client: CrmTransport, info: OAuthInfo, form: dict[str, str]) -> dict[str, Any]:
    headers = {
        "Accept": "application/json, application/x-www-form-urlencoded",
        "Content-Type": "application/x-www-form-urlencoded",
        **_client_auth(info),
    }
    if not info.client_secret:
        form = {**form, "client_id": info.client_id}
    elif info.client_secret_in_body:
        form = {**form, "client_id": info.client_id, "client_secret": info.client_secret}
    try:
        response = await client.send(
            "POST", info.access_token_uri, body=urlencode(form).encode(), headers=headers
        )
    except TransportError as exc:
        raise OAuthError("unreachable") from exc
    data = _parse(response)
    if "error" in data or not (200 <= response.status_code < 399):
        raise OAuthError(str(data.get("error") or "http_error"), response.status_code)
    access = data.get("access_token")
    if not access or not isinstance(access, str):
        raise OAuthError("no_access_token", response.status_code)
    return data


#: a longer `expires_in` is kept as this (a year): the token is refreshed then, and no date overflows
_LONGEST_EXPIRY_SECONDS = 366 * 24 * 3600


def _token_set(data: dict[str, Any], previous_refresh: str | None = None) -> TokenSet:
    """The tokens of an answer `_token_request` accepted; a token endpoint's odd `expires_in` or
    `refresh_token` (a list, a word, a huge number) is refused as `invalid_token_response`, never a crash."""
    expires_in = data.get("expires_in")
    expires_at = None
    if expires_in not in (None, ""):
        try:
            seconds = float(expires_in)
        except (TypeError, ValueError, OverflowError):
            raise OAuthError("invalid_token_response") from None
        if seconds != seconds:  # NaN
            raise OAuthError("invalid_token_response")
        seconds = min(max(seconds, 0.0), _LONGEST_EXPIRY_SECONDS)
        expires_at = datetime.fromtimestamp(time.time(), UTC) + timedelta(seconds=seconds)
    refresh = data.get("refresh_token") or previous_refresh
    if refresh is not None and not isinstance(refresh, str):
        raise OAuthError("invalid_token_response")
    return TokenSet(str(data["access_token"]), refresh or None, expires_at, data)


async def exchange_code(client: CrmTransport, info: OAuthInfo, code: str) -> TokenSet:
    data = await _token_request(
        client, info, {"code": code, "grant_type": "authorization_code", "redirect_uri": info.redirect_uri}
    )
    return _token_set(data)


async def refresh(client: CrmTransport, info: OAuthInfo, refresh_token: str) -> TokenSet:
    """A missing `refresh_token` in the answer keeps the old one."""
    data = await _token_request(client, info, {"refresh_token": refresh_token, "grant_type": "refresh_token"})
    return _token_set(data, previous_refresh=refresh_token)


async def revoke(client: CrmTransport, info: OAuthInfo, token: str, hint: str) -> bool:
    """RFC 7009 revocation; failures are reported, not raised (logout goes on regardless)."""
    if not info.revoke_uri:
        return False
    headers = {"Content-Type": "application/x-www-form-urlencoded", **_client_auth(info)}
    try:
        response = await client.send(
            "POST",
            info.revoke_uri,
            body=urlencode({"token": token, "token_type_hint": hint}).encode(),
            headers=headers,
        )
    except TransportError:
        return False
    return response.is_success

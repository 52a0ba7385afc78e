"""Who a RingCentral access token belongs to, asked of RingCentral itself: never taken from the client.

The client proves an admin role (and its RingCentral account) by sending the user's RingCentral access token;
the server asks RingCentral's platform API `GET /restapi/v1.0/account/~/extension/~` with it. Answers are kept
briefly per token (by a keyed hash of it, never the token) so an admin page's burst of requests asks once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from appconnect.outbound.client import CrmTransport, TransportError

logger = logging.getLogger(__name__)

EXTENSION_PATH = "/restapi/v1.0/account/~/extension/~"
#: how long an answer (an identity or a refusal) is reused for the same token
CACHE_SECONDS = 60.0
#: tokens remembered at most (the oldest are forgotten first)
CACHE_ENTRIES = 2048
#: a RingCentral token is a few hundred characters; anything far longer is not one (and is not sent on)
MAX_TOKEN_CHARS = 4096
TOKEN_HEADER = "x-rc-access-token"
#: RingCentral's account and extension ids are numbers; anything else (or longer) is not trusted to key rows
ID_PATTERN = r"[0-9A-Za-z._-]{1,64}"
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True, slots=True)
class RcIdentity:
    """The RingCentral extension a token belongs to, as RingCentral reported it."""

    account_id: str
    extension_id: str
    is_admin: bool


class RcCheckFailed(Exception):
    """The token could not be checked: RingCentral refused it (`refused`, remembered a while), could not be
    asked (`unavailable`: unreachable, timed out, a 5xx, no JSON: not the caller's fault), or answered an
    identity that is not trusted (neither)."""

    def __init__(self, reason: str, *, refused: bool, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused
        self.unavailable = unavailable


def token_from(request: Request, body: dict[str, Any] | None = None) -> str | None:
    """The RingCentral access token, in the reference's order: header, then body, then query."""
    candidates: list[Any] = [request.headers.get(TOKEN_HEADER)]
    if body is not None:
        candidates.append(body.get("rcAccessToken"))
    candidates.append(request.query_params.get("rcAccessToken"))
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _plain_id(value: Any) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool) or not _ID.fullmatch(str(value)):
        return None
    return str(value)


def _identity(data: Any) -> RcIdentity:
    if not isinstance(data, dict):
        raise RcCheckFailed("extension answer is not an object", refused=False)
    account = data.get("account")
    account_id = _plain_id(account.get("id") if isinstance(account, dict) else None)
    extension_id = _plain_id(data.get("id"))
    if account_id is None:
        raise RcCheckFailed("extension answer names no account", refused=False)
    if extension_id is None:  # it keys the extension's own rows (managed fields, login failures)
        raise RcCheckFailed("extension answer names no extension", refused=False)
    permissions = data.get("permissions")
    admin = permissions.get("admin") if isinstance(permissions, dict) else None
    is_admin = isinstance(admin, dict) and admin.get("enabled") is True
    return RcIdentity(account_id, extension_id, is_admin)


class RingCentralIdentities:
    """Asks RingCentral who a token belongs to, through the server's outbound client, with a short cache."""

    def __init__(
        self, *, ttl: float = CACHE_SECONDS, max_entries: int = CACHE_ENTRIES, clock: Any = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._answers: OrderedDict[bytes, tuple[float, RcIdentity | RcCheckFailed]] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[RcIdentity]] = {}

    def _key(self, server: str, token: str, hash_key: str) -> bytes:
        return hmac.new(hash_key.encode(), f"{server}\n{token}".encode(), hashlib.sha256).digest()

    def _remember(self, key: bytes, answer: RcIdentity | RcCheckFailed) -> None:
        self._answers[key] = (self._clock() + self._ttl, answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self._max_entries:
            self._answers.popitem(last=False)

    async def identify(self, http: CrmTransport, server: str, token: str, hash_key: str) -> RcIdentity:
        """The token's identity; :class:`RcCheckFailed` when RingCentral refused it or could not be asked."""
        if len(token) > MAX_TOKEN_CHARS or not token.isprintable():
            raise RcCheckFailed("not a RingCentral token", refused=True)
        key = self._key(server, token, hash_key)
        cached = self._answers.get(key)
        if cached is not None and cached[0] > self._clock():
            if isinstance(cached[1], RcCheckFailed):
                raise cached[1]
            return cached[1]
        # concurrent checks of one token (an admin page's burst) share one question to RingCentral
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask_and_remember(key, http, server, token))
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._inflight[key] = task
        return await asyncio.shield(task)

    async def _ask_and_remember(self, key: bytes, http: CrmTransport, server: str, token: str) -> RcIdentity:
        try:
            answer = await self._ask(http, server, token)
        except RcCheckFailed as exc:
            if exc.refused:  # a refusal is an answer; RingCentral being down is not, ask again next time
                self._remember(key, exc)
            raise
        else:
            self._remember(key, answer)
            return answer
        finally:
            self._inflight.pop(key, None)

    async def _ask(self, http: CrmTransport, server: str, token: str) -> RcIdentity:
        url = server.rstrip("/") + EXTENSION_PATH
        try:
            response = await http.send(
                "GET", url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
            )
        except TransportError as exc:
            logger.warning("RingCentral platform unreachable: %s", exc)
            raise RcCheckFailed("RingCentral unreachable", refused=False, unavailable=True) from None
        status = response.status_code
        if status in (400, 401, 403, 404):
            raise RcCheckFailed(f"RingCentral refused the token (HTTP {status})", refused=True)
        if not response.is_success:
            logger.warning("RingCentral platform answered HTTP %s to an identity check", status)
            raise RcCheckFailed(f"RingCentral answered HTTP {status}", refused=False, unavailable=True)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            logger.warning("RingCentral platform answered an identity check with no JSON")
            raise RcCheckFailed("RingCentral answered no JSON", refused=False, unavailable=True) from None
        return _identity(data)

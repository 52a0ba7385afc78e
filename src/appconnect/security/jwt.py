"""App Connect session tokens: HS256 JWTs carrying only `{id, platform}`, always with `iat` and `exp`.

Signed and verified here with `hmac` (RFC 7515/7519, the HMAC algorithms only): the server needs nothing else
of a JWT library, and PyJWT's import (it loads `cryptography.x509`) was a tenth of a worker's start-up. The
tests check interoperability against PyJWT both ways.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

TOKEN_LIFETIME_SECONDS = 14 * 24 * 3600
ROTATE_WITHIN_SECONDS = 7 * 24 * 3600
LEEWAY_SECONDS = 30  # clocks of machines behind one load balancer differ a little
VERIFIED_KEPT = 4096
#: the algorithms a token may name: HMAC only (never `none`, never a public-key one keyed with our secret)
_DIGESTS: dict[str, Callable[..., Any]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
#: seconds since the epoch past which no date is real (year 10000): a larger `exp` or `iat` is malformed
_LATEST_DATE = 253402300800.0


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(part: str) -> bytes:
    """Unpadded base64url (RFC 7515 section 2), strictly: any other character is an error."""
    if not _BASE64URL.fullmatch(part) or len(part) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _number(value: object) -> float | None:
    """A JWT NumericDate: a finite int or float within any date's range, never a bool or a string."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past any float
        return None
    return number if abs(number) <= _LATEST_DATE else None


def _plain_header(header: object) -> bool:
    """A JOSE header we understand: an object whose `alg` (and `typ`, `kid` when present) are strings, and no
    extension we would have to understand (`crit`, RFC 7515 section 4.1.11)."""
    if not isinstance(header, dict) or "crit" in header or not isinstance(header.get("alg"), str):
        return False
    return all(isinstance(header.get(key, ""), str) for key in ("typ", "kid", "cty"))


_HS256_HEADER = _encode(orjson.dumps({"alg": "HS256", "typ": "JWT"}))


@dataclass(frozen=True, slots=True)
class SessionClaims:
    user_id: str
    platform: str
    expires_at: int
    #: seconds since the epoch, to the millisecond: a logout revokes every token issued before it
    issued_at: float


class SessionTokens:
    """Signs and verifies session JWTs; verification failures are simply `None`."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        # A client sends the same token on every request: its verified claims are kept (bounded, oldest out).
        # Only the signature check is skipped on a hit; expiry is checked every time, and revocation (logout)
        # is checked against the user row by the flows, as before.
        self._verified: dict[str, SessionClaims] = {}

    def sign(
        self, user_id: str, platform: str, *, now: float | None = None, issued_at: float | None = None
    ) -> str:
        """A token valid for 14 days from `now`; `issued_at` (default `now`) is the login it descends from."""
        current = now if now is not None else time.time()
        # `iat` keeps milliseconds (a JWT NumericDate may): a login right after a logout in the same second
        # must still be newer than the logout
        issued = math.floor((issued_at if issued_at is not None else current) * 1000) / 1000
        payload = {
            "id": user_id,
            "platform": platform,
            "iat": issued,
            "exp": int(current) + TOKEN_LIFETIME_SECONDS,
        }
        signing_input = f"{_HS256_HEADER}.{_encode(orjson.dumps(payload))}"
        signature = hmac.new(self._secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_encode(signature)}"

    def verify(self, token: str) -> SessionClaims | None:
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at + LEEWAY_SECONDS > time.time():
                return known
            del self._verified[token]
            return None
        claims = self._verify_signed(token)
        if claims is not None:
            if len(self._verified) >= VERIFIED_KEPT:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        return claims

    def _verify_signed(self, token: str) -> SessionClaims | None:
        payload = self._signed_payload(token)
        if payload is None:
            return None
        now = time.time()
        exp, iat, nbf = _number(payload.get("exp")), _number(payload.get("iat")), payload.get("nbf", 0)
        if exp is None or iat is None:
            return None  # a token that never expires is never accepted
        if exp + LEEWAY_SECONDS <= now or iat > now + LEEWAY_SECONDS:
            return None
        not_before = _number(nbf)
        if not_before is None or not_before > now + LEEWAY_SECONDS:
            return None
        user_id = payload.get("id")
        platform = payload.get("platform")
        if not isinstance(user_id, str | int) or isinstance(user_id, bool) or not isinstance(platform, str):
            return None
        return SessionClaims(str(user_id), platform, int(exp), iat)

    def _signed_payload(self, token: str) -> dict[str, Any] | None:
        """The claims of a well-formed token whose HMAC signature is ours; None for anything else."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        header_part, payload_part, signature_part = parts
        try:
            header = orjson.loads(_decode(header_part))
            signature = _decode(signature_part)
            if not _plain_header(header):
                return None
            digest = _DIGESTS.get(header["alg"])
            if digest is None:
                return None
            expected = hmac.new(
                self._secret, f"{header_part}.{payload_part}".encode("ascii"), digest
            ).digest()
            if not hmac.compare_digest(expected, signature):
                return None
            payload = orjson.loads(_decode(payload_part))
        except (ValueError, binascii.Error, UnicodeError, orjson.JSONDecodeError):
            return None
        return payload if isinstance(payload, dict) else None

    def rotated(self, claims: SessionClaims, *, now: float | None = None) -> str | None:
        """A fresh token when the current one expires within 7 days.

        It keeps the login's `iat`, so a logout revokes the whole chain of rotations, not only the first token.
        """
        current = now if now is not None else time.time()
        if claims.expires_at - current <= ROTATE_WITHIN_SECONDS:
            return self.sign(claims.user_id, claims.platform, now=current, issued_at=claims.issued_at)
        return None

"""App Connect session tokens: HS256 JWTs carrying only `{id, platform}`, always with `iat` and `exp`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import jwt

TOKEN_LIFETIME_SECONDS = 14 * 24 * 3600
ROTATE_WITHIN_SECONDS = 7 * 24 * 3600
LEEWAY_SECONDS = 30  # clocks of machines behind one load balancer differ a little
VERIFIED_KEPT = 4096


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
        self._secret = secret
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
        return jwt.encode(payload, self._secret, algorithm="HS256")

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
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256", "HS384", "HS512"],
                options={"require": ["exp", "iat"]},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.PyJWTError:
            return None
        user_id = payload.get("id")
        platform = payload.get("platform")
        if not isinstance(user_id, (str, int)) or not isinstance(platform, str):
            return None
        exp, iat = payload.get("exp"), payload.get("iat")
        if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
            return None  # a token that never expires is never accepted
        return SessionClaims(str(user_id), platform, int(exp), float(iat))

    def rotated(self, claims: SessionClaims, *, now: float | None = None) -> str | None:
        """A fresh token when the current one expires within 7 days.

        It keeps the login's `iat`, so a logout revokes the whole chain of rotations, not only the first token.
        """
        current = now if now is not None else time.time()
        if claims.expires_at - current <= ROTATE_WITHIN_SECONDS:
            return self.sign(claims.user_id, claims.platform, now=current, issued_at=claims.issued_at)
        return None

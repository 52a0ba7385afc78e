"""App Connect session tokens: HS256 JWTs carrying only `{id, platform}`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

TOKEN_LIFETIME_SECONDS = 14 * 24 * 3600
ROTATE_WITHIN_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SessionClaims:
    user_id: str
    platform: str
    expires_at: int | None


class SessionTokens:
    """Signs and verifies session JWTs; verification failures are simply `None`."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def sign(self, user_id: str, platform: str, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        payload = {"id": user_id, "platform": platform, "iat": issued, "exp": issued + TOKEN_LIFETIME_SECONDS}
        return jwt.encode(payload, self._secret, algorithm="HS256")

    def verify(self, token: str) -> SessionClaims | None:
        try:
            payload = jwt.decode(
                token, self._secret, algorithms=["HS256", "HS384", "HS512"], options={"require": []}
            )
        except jwt.PyJWTError:
            return None
        user_id = payload.get("id")
        platform = payload.get("platform")
        if not isinstance(user_id, (str, int)) or not isinstance(platform, str):
            return None
        exp = payload.get("exp")
        return SessionClaims(str(user_id), platform, int(exp) if isinstance(exp, (int, float)) else None)

    def rotated(self, claims: SessionClaims, *, now: float | None = None) -> str | None:
        """A fresh token when the current one expires within 7 days (tokens without `exp` never rotate)."""
        if claims.expires_at is None:
            return None
        current = now if now is not None else time.time()
        if claims.expires_at - current <= ROTATE_WITHIN_SECONDS:
            return self.sign(claims.user_id, claims.platform, now=current)
        return None

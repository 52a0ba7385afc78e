"""Reads the caller's App Connect JWT (bearer header or `jwtToken` query) and rotates it when it nears expiry."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from appconnect.flows.reply import ClientError
from appconnect.security.jwt import SessionClaims, SessionTokens

AUTHORIZE_FIRST = "Please go to Settings and authorize CRM platform"


@dataclass(slots=True)
class Caller:
    claims: SessionClaims | None
    invalid_query_token: bool
    refreshed_token: str | None
    #: the token came in the `jwtToken` query, not a bearer header
    from_query: bool = False
    #: the route's text for an invalid query token, set by `require`
    invalid_text: str = AUTHORIZE_FIRST

    def require(self, *, invalid_text: str = AUTHORIZE_FIRST) -> SessionClaims:
        """The verified claims, or the route's 400 text (a bad query token may have its own text)."""
        self.invalid_text = invalid_text
        if self.claims is not None:
            return self.claims
        raise ClientError(invalid_text if self.invalid_query_token else AUTHORIZE_FIRST)

    def ended_text(self) -> str:
        """What the route answers for a token that verified but whose session ended (a logout since): the
        same as for an invalid token, so the client asks the user to connect again."""
        return self.invalid_text if self.from_query else AUTHORIZE_FIRST


def read_caller(request: Request, tokens: SessionTokens) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        claims = tokens.verify(value.strip())
        # an invalid bearer token is never rescued by a query token
        return Caller(claims, False, tokens.rotated(claims) if claims else None)
    query_token = request.query_params.get("jwtToken")
    if not query_token:
        return Caller(None, False, None)
    claims = tokens.verify(query_token)
    if claims is None:
        return Caller(None, True, None, from_query=True)
    return Caller(claims, False, tokens.rotated(claims), from_query=True)

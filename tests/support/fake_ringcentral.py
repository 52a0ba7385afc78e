"""A fake RingCentral platform API on loopback: access tokens mapped to extensions, accounts and admin rights.

Built on the fake-CRM toolkit (tests/support/fake_crm.py), so it has the same lifecycle, request log and fault
injection. It answers what the connector server asks RingCentral: who a token's extension is
(`GET /restapi/v1.0/account/~/extension/~`) and the account's extensions (`GET .../account/~/extension`); its
token endpoint (`POST /restapi/oauth/token`) exchanges an admin's authorization code for tokens of the server's
RingCentral app and refreshes them, each refresh token working once (RingCentral rotates them).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from starlette.responses import Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    JsonDict,
    OAuthGrants,
    basic_credentials,
    same_secret,
)

EXTENSION_PATH = "/restapi/v1.0/account/~/extension/~"
EXTENSIONS_PATH = "/restapi/v1.0/account/~/extension"
TOKEN_PATH = "/restapi/oauth/token"
CLIENT_ID = "rc-app-client"
CLIENT_SECRET = "rc-app-secret-" + secrets.token_hex(8)


@dataclass(slots=True)
class FakeExtension:
    account_id: str
    extension_id: str
    name: str
    email: str
    admin: bool


class FakeRingCentral(FakeCrm):
    crm_name = "RingCentral"

    def init_state(self) -> None:
        self.extensions: dict[str, FakeExtension] = {}
        self.tokens: dict[str, str] = {}  # access token -> extension id
        self.expired: set[str] = set()
        self.html_answers = False
        #: the server's RingCentral app: codes, refresh tokens (rotated: each works once), access tokens
        self.grants = OAuthGrants(self.now, expires_in=3600)
        self.grants.refresh_token_mode = "rotate"
        self.page_size = 1000  # at most this many extensions per page, whatever `perPage` asks
        #: fields that replace what `/extension/~` answers for a token (an odd answer of the platform)
        self.odd_answers: dict[str, JsonDict] = {}

    # --- what tests set up ------------------------------------------------------------------------------------

    def extension(
        self, account_id: str, *, admin: bool = False, name: str = "Agent", email: str | None = None
    ) -> str:
        """A new extension of `account_id` and a fresh access token for it."""
        extension_id = str(self.next_id("extension", 60000))
        token = "rc-" + secrets.token_urlsafe(24)
        with self._lock:
            self.extensions[extension_id] = FakeExtension(
                account_id, extension_id, name, email or f"ext{extension_id}@example.test", admin
            )
            self.tokens[token] = extension_id
        return token

    def issue_code(self, admin_token: str, redirect_uri: str) -> str:
        """An authorization code, as if the admin of `admin_token` had approved the server's app; its tokens are
        that admin's extension."""
        with self._lock:
            return self.grants.issue_code(redirect_uri, extension=self.tokens[admin_token])

    @property
    def refresh_calls(self) -> int:
        with self._lock:
            return self.grants.refresh_calls

    def refresh_valid(self, refresh_token: str) -> bool:
        with self._lock:
            return self.grants.refresh_valid(refresh_token)

    def extension_of(self, token: str) -> str:
        """The extension id a token belongs to."""
        with self._lock:
            return self.tokens[token]

    def expire(self, token: str) -> None:
        with self._lock:
            self.expired.add(token)

    def answer_html(self, on: bool = True) -> None:
        """Answer every request with an HTML page and status 200, as a captive portal or a broken proxy does."""
        with self._lock:
            self.html_answers = on

    # --- the toolkit's hooks ----------------------------------------------------------------------------------

    def routes(self) -> list[FakeRoute]:
        return [
            FakeRoute("GET", EXTENSION_PATH, self._me),
            FakeRoute("GET", EXTENSIONS_PATH, self._extensions),
            FakeRoute("POST", TOKEN_PATH, self._token_endpoint, auth=False),
        ]

    def _token(self, request: FakeRequest) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def authenticate(self, request: FakeRequest) -> bool:
        token = self._token(request)
        with self._lock:
            if token in self.tokens:
                return token not in self.expired
            return self.grants.access_valid(token)

    def _extension_of(self, token: str) -> FakeExtension:
        """The extension of a user's token, or of an access token the token endpoint issued."""
        extension_id = self.tokens.get(token) or str(self.grants.extra_of_access(token)["extension"])
        return self.extensions[extension_id]

    def error_body(self, status: int, message: str, extra: JsonDict) -> JsonDict:
        code = "TokenInvalid" if status == 401 else "CMN-000"
        return {"errorCode": code, "message": message, "errors": [{"errorCode": code, "message": message}]}

    def unauthorized(self) -> Response:
        return self.error(401, "Invalid token")

    def _html(self) -> Response | None:
        with self._lock:
            if not self.html_answers:
                return None
        return Response("<html><body>Sign in to continue</body></html>", media_type="text/html")

    def _wire(self, extension: FakeExtension) -> JsonDict:
        return {
            "id": int(extension.extension_id),
            "uri": f"{self.base_url}/restapi/v1.0/account/{extension.account_id}/extension/{extension.extension_id}",
            "extensionNumber": extension.extension_id[-3:],
            "contact": {"firstName": extension.name, "email": extension.email},
            "name": extension.name,
            "type": "User",
            "status": "Enabled",
            "account": {
                "id": extension.account_id,
                "uri": f"{self.base_url}/restapi/v1.0/account/{extension.account_id}",
            },
            "permissions": {
                "admin": {"enabled": extension.admin},
                "internationalCalling": {"enabled": False},
            },
        }

    async def _me(self, request: FakeRequest) -> Response:
        html = self._html()
        if html is not None:
            return html
        with self._lock:
            extension = self._extension_of(self._token(request))
            odd = self.odd_answers.get(self._token(request), {})
        return self.json({**self._wire(extension), **odd})

    async def _extensions(self, request: FakeRequest) -> Response:
        """The account's extensions, paged as RingCentral pages them (`page`, `perPage`, `paging`)."""
        html = self._html()
        if html is not None:
            return html
        page = max(1, int(request.query.get("page") or 1))
        with self._lock:
            per_page = min(max(1, int(request.query.get("perPage") or 100)), self.page_size)
            account = self._extension_of(self._token(request)).account_id
            records = [self._wire(e) for e in self.extensions.values() if e.account_id == account]
        total_pages = max(1, -(-len(records) // per_page))
        chunk = records[(page - 1) * per_page : page * per_page]
        return self.json(
            {
                "records": chunk,
                "paging": {
                    "page": page,
                    "perPage": per_page,
                    "totalPages": total_pages,
                    "totalElements": len(records),
                },
            }
        )

    async def _token_endpoint(self, request: FakeRequest) -> Response:
        """RingCentral's OAuth token endpoint: the app authenticates with HTTP Basic; the grant is a form."""
        client = basic_credentials(request.headers.get("authorization", ""))
        if client is None or client[0] != CLIENT_ID or not same_secret(client[1], CLIENT_SECRET):
            return self.json({"error": "invalid_client", "error_description": "Invalid client"}, 401)
        form = request.form or {}
        with self._lock:
            if form.get("grant_type") == "authorization_code":
                issued = self.grants.exchange_code(form.get("code", ""), form.get("redirect_uri"))
                pair = issued[0] if issued is not None else None
            elif form.get("grant_type") == "refresh_token":
                pair = self.grants.refresh(form.get("refresh_token", ""))
            else:
                return self.json({"error": "unsupported_grant_type"}, 400)
        if pair is None:
            return self.json(
                {"error": "invalid_grant", "error_description": "Token is expired or revoked"}, 400
            )
        return self.json(
            {
                "access_token": pair.access_token,
                "token_type": "bearer",
                "expires_in": pair.expires_in,
                "refresh_token": pair.refresh_token,
                "refresh_token_expires_in": 604800,
                "scope": "ReadAccounts ReadCallLog",
            }
        )

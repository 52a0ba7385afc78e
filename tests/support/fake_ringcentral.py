"""A fake RingCentral platform API on loopback: access tokens mapped to extensions, accounts and admin rights.

Built on the fake-CRM toolkit (tests/support/fake_crm.py), so it has the same lifecycle, request log and fault
injection. It answers what the connector server asks RingCentral: who a token's extension is
(`GET /restapi/v1.0/account/~/extension/~`) and the account's extensions (`GET .../account/~/extension`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from starlette.responses import Response

from tests.support.fake_crm import FakeCrm, FakeRequest, FakeRoute, JsonDict

EXTENSION_PATH = "/restapi/v1.0/account/~/extension/~"
EXTENSIONS_PATH = "/restapi/v1.0/account/~/extension"


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
        self.page_size = 1000  # at most this many extensions per page, whatever `perPage` asks

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
        ]

    def _token(self, request: FakeRequest) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def authenticate(self, request: FakeRequest) -> bool:
        token = self._token(request)
        with self._lock:
            return token in self.tokens and token not in self.expired

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
            extension = self.extensions[self.tokens[self._token(request)]]
        return self.json(self._wire(extension))

    async def _extensions(self, request: FakeRequest) -> Response:
        """The account's extensions, paged as RingCentral pages them (`page`, `perPage`, `paging`)."""
        html = self._html()
        if html is not None:
            return html
        page = max(1, int(request.query.get("page") or 1))
        with self._lock:
            per_page = min(max(1, int(request.query.get("perPage") or 100)), self.page_size)
            account = self.extensions[self.tokens[self._token(request)]].account_id
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

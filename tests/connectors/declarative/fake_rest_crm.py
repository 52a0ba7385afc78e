"""A small, strict REST CRM ("Relay CRM") for the declarative connector's tests, built on tests/support/fake_crm.

It is as strict as a real API: an `X-Api-Key` header or an OAuth `Bearer` token (never both), workspaces that
see only their own records, required fields and types checked (400/422), a search that compares the stored
number's digits exactly (so `(415) 555-0100` is found by `4155550100`, not by `+14155550100`), and an activity
search by text for the server's marker. Its OAuth grants a code for the user of an API key (`login_hint`), for
configurations of `auth.type: oauth`. Everything lives in memory; tests read it through the accessors at the end.
"""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.responses import RedirectResponse, Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    JsonDict,
    OAuthGrants,
    bad_request,
    basic_credentials,
    bearer_token,
    not_found,
    same_secret,
)

CONTACT_KINDS = ("contact", "lead")
ACTIVITY_KINDS = ("call", "sms")
_TEXT_FIELDS = ("subject", "note", "description")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class FakeRelayCrm(FakeCrm):
    """Relay CRM's API v1: `/v1/me`, `/v1/contacts`, `/v1/activities`."""

    crm_name: ClassVar[str] = "Relay CRM"
    default_key = "relay-key-alpha"
    other_key = "relay-key-beta"
    client_id = "relay-client"
    client_secret = "relay-client-secret"

    def init_state(self) -> None:
        #: api key -> (user id, user name, workspace)
        self.keys: dict[str, tuple[str, str, str]] = {
            self.default_key: ("u-1", "Jordan Lee", "ws-alpha"),
            self.other_key: ("u-1", "Sam Ortiz", "ws-beta"),  # same user id in another workspace
        }
        self.contacts: dict[str, JsonDict] = {}
        self.activities: dict[str, JsonDict] = {}
        self.grants = OAuthGrants(self.now)

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        return {"error": {"status": status, "message": message, **extra}}

    def authenticate(self, request: FakeRequest) -> bool:
        """One scheme at a time: an API key in `X-Api-Key`, or an OAuth access token as `Bearer`."""
        if "authorization" in request.headers:
            token = bearer_token(request.headers["authorization"])
            with self._lock:
                return (
                    "x-api-key" not in request.headers
                    and bool(token)
                    and self.grants.access_valid(token or "")
                )
        return request.headers.get("x-api-key", "") in self.keys

    def credential_of(self, request: FakeRequest) -> str:
        return request.headers.get("x-api-key", "") or request.headers.get("authorization", "")

    def _key_of(self, request: FakeRequest) -> str:
        """The API key whose user makes the request (an OAuth token stands for the key it was granted for)."""
        if "x-api-key" in request.headers:
            return request.headers["x-api-key"]
        with self._lock:
            return str(
                self.grants.extra_of_access(bearer_token(request.headers["authorization"]) or "")["key"]
            )

    def routes(self) -> list[FakeRoute]:
        return [
            FakeRoute("GET", "/oauth/authorize", self._authorize, auth=False),
            FakeRoute("POST", "/oauth/token", self._token, auth=False),
            FakeRoute("GET", "/v1/me", self._me),
            FakeRoute("GET", "/v1/contacts", self._search_contacts),
            FakeRoute("GET", "/v1/contacts/by-name", self._contacts_by_name),
            FakeRoute("GET", "/v1/users", self._users),
            FakeRoute("GET", "/v1/license", self._license),
            FakeRoute("POST", "/v1/contacts", self._create_contact),
            FakeRoute("GET", "/v1/activities", self._search_activities),
            FakeRoute("POST", "/v1/activities", self._create_activity),
            FakeRoute("GET", "/v1/activities/{id}", self._get_activity),
            FakeRoute("PUT", "/v1/activities/{id}", self._update_activity),
        ]

    # --- helpers ---------------------------------------------------------------------------------------------

    def _workspace(self, request: FakeRequest) -> str:
        return self.keys[self._key_of(request)][2]

    def _owned(self, store: dict[str, JsonDict], record_id: str, workspace: str) -> JsonDict:
        with self._lock:
            record = store.get(record_id)
            if record is None or record["workspace"] != workspace:
                raise not_found("No such record")
            return record

    @staticmethod
    def _public(record: JsonDict) -> JsonDict:
        return {k: v for k, v in record.items() if k != "workspace"}

    # --- handlers --------------------------------------------------------------------------------------------

    async def _me(self, request: FakeRequest) -> Response:
        user_id, name, workspace = self.keys[self._key_of(request)]
        body = {
            "user": {"id": user_id, "name": name, "timezone": "America/New_York"},
            "workspace": {"id": workspace},
        }
        return self.json(body)

    async def _search_contacts(self, request: FakeRequest) -> Response:
        phone = request.query.get("phone")
        if not phone or not _digits(phone):
            raise bad_request("phone is required and must hold digits")
        wanted = _digits(phone)
        workspace = self._workspace(request)
        with self._lock:
            found = [
                self._public(c)
                for c in self.contacts.values()
                if c["workspace"] == workspace and _digits(c["phone"]) == wanted
            ]
        return self.json({"contacts": found, "total": len(found)})

    async def _contacts_by_name(self, request: FakeRequest) -> Response:
        name = request.query.get("q", "")
        if len(name) < 2:
            raise bad_request("q must be at least 2 characters")
        workspace = self._workspace(request)
        with self._lock:
            found = [
                self._public(c)
                for c in self.contacts.values()
                if c["workspace"] == workspace and name.lower() in c["name"].lower()
            ]
        return self.json({"contacts": found, "total": len(found)})

    async def _users(self, request: FakeRequest) -> Response:
        workspace = self._workspace(request)
        users = [
            {"id": user_id, "name": name, "email": f"{user_id}@{ws}.example"}
            for user_id, name, ws in self.keys.values()
            if ws == workspace
        ]
        return self.json({"users": users})

    async def _license(self, request: FakeRequest) -> Response:
        return self.json({"license": {"active": True, "plan": "Pro", "note": "Seats: 5"}})

    async def _create_contact(self, request: FakeRequest) -> Response:
        body = request.json_object()
        name, phone, kind = body.get("name"), body.get("phone"), body.get("kind")
        if not isinstance(name, str) or not name.strip():
            raise HttpError(422, "name is required")
        if not isinstance(phone, str) or not _digits(phone):
            raise HttpError(422, "phone is required")
        if kind not in CONTACT_KINDS:
            raise HttpError(422, f"kind must be one of {', '.join(CONTACT_KINDS)}")
        record = self.add_contact(name, phone, kind, workspace=self._workspace(request))
        return self.json(self._public(record), status=201)

    async def _search_activities(self, request: FakeRequest) -> Response:
        text = request.query.get("text")
        if not text or len(text) < 3:
            raise bad_request("text must be at least 3 characters")
        workspace = self._workspace(request)
        with self._lock:
            found = [
                self._public(a)
                for a in self.activities.values()
                if a["workspace"] == workspace and any(text in str(a.get(f) or "") for f in _TEXT_FIELDS)
            ]
        return self.json({"activities": found})

    async def _create_activity(self, request: FakeRequest) -> Response:
        body = request.json_object()
        workspace = self._workspace(request)
        contact_id = body.get("contact_id")
        if not isinstance(contact_id, str):
            raise HttpError(422, "contact_id must be a string")
        self._owned(self.contacts, contact_id, workspace)
        if body.get("kind") not in ACTIVITY_KINDS:
            raise HttpError(422, f"kind must be one of {', '.join(ACTIVITY_KINDS)}")
        for name in (*_TEXT_FIELDS, "start_at"):
            if not isinstance(body.get(name, ""), str):
                raise HttpError(422, f"{name} must be a string")
        if not str(body.get("subject") or "").strip():
            raise HttpError(422, "subject is required")
        activity_id = f"act-{self.next_id('activity')}"
        record = {
            "id": activity_id,
            "workspace": workspace,
            "contact_id": contact_id,
            "kind": body["kind"],
            **{name: str(body.get(name) or "") for name in (*_TEXT_FIELDS, "start_at", "end_at")},
        }
        with self._lock:
            self.activities[activity_id] = record
        return self.json({"activity": self._public(record)}, status=201)

    async def _get_activity(self, request: FakeRequest) -> Response:
        record = self._owned(self.activities, str(request.path_params["id"]), self._workspace(request))
        return self.json({"activity": self._public(record)})

    async def _update_activity(self, request: FakeRequest) -> Response:
        body = request.json_object()
        record = self._owned(self.activities, str(request.path_params["id"]), self._workspace(request))
        unknown = set(body) - {*_TEXT_FIELDS, "start_at", "end_at"}
        if unknown:
            raise HttpError(422, f"unknown fields: {', '.join(sorted(unknown))}")
        for name, value in body.items():
            if not isinstance(value, str):
                raise HttpError(422, f"{name} must be a string")
        with self._lock:
            record.update(body)
        return self.json({"activity": self._public(record)})

    async def _authorize(self, request: FakeRequest) -> Response:
        """The consent screen, approved as the user of `login_hint` (an API key of this fake)."""
        query = request.query
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            raise bad_request("invalid_request")
        if not query.get("redirect_uri") or query.get("login_hint") not in self.keys:
            raise bad_request("invalid_request")
        with self._lock:
            code = self.grants.issue_code(query["redirect_uri"], key=query["login_hint"])
        state = f"&state={query['state']}" if query.get("state") else ""
        return RedirectResponse(f"{query['redirect_uri']}?code={code}{state}", status_code=302)

    async def _token(self, request: FakeRequest) -> Response:
        form = request.form or {}
        client = basic_credentials(request.headers.get("authorization", ""))
        if client is None or client[0] != self.client_id or not same_secret(client[1], self.client_secret):
            return self.json({"error": "invalid_client"}, 401)
        with self._lock:
            if form.get("grant_type") == "authorization_code":
                exchanged = self.grants.exchange_code(form.get("code", ""), form.get("redirect_uri"))
                pair = exchanged[0] if exchanged else None
            elif form.get("grant_type") == "refresh_token":
                pair = self.grants.refresh(form.get("refresh_token", ""))
            else:
                return self.json({"error": "unsupported_grant_type"}, 400)
        if pair is None:
            return self.json({"error": "invalid_grant"}, 400)
        answer = {"access_token": pair.access_token, "token_type": "bearer", "expires_in": pair.expires_in}
        return self.json({**answer, "refresh_token": pair.refresh_token})

    # --- what tests read and seed ----------------------------------------------------------------------------

    def add_contact(
        self, name: str, phone: str, kind: str = "contact", *, workspace: str = "ws-alpha"
    ) -> JsonDict:
        contact_id = f"c-{self.next_id('contact')}"
        record = {"id": contact_id, "workspace": workspace, "name": name, "phone": phone, "kind": kind}
        record["created_at"] = "2026-01-05T09:00:00Z"
        with self._lock:
            self.contacts[contact_id] = record
        return record

    def all_contacts(self) -> list[JsonDict]:
        return self.snapshot(list(self.contacts.values()))

    def all_activities(self) -> list[JsonDict]:
        return self.snapshot(list(self.activities.values()))

"""A faithful in-memory Pipedrive (OAuth host + API host) served over real HTTP for connector and e2e tests.

It validates requests the way the real API does (strict v2 bodies, Bearer tokens that expire, single-use
authorization codes, Basic client auth on the token endpoints) so a connector bug shows up as a 400/401 here
instead of in production. Lifecycle, request log, faults, rate limiting, paging and OAuth grants come from the
shared toolkit (`tests/support/fake_crm.py`); this module holds only Pipedrive's resources and rules.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, RedirectResponse, Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    OAuthGrants,
    RateLimitPolicy,
    RecordedRequest,
    RefreshTokenMode,
    TokenPair,
    bad_request,
    basic_credentials,
    bearer_token,
    cursor_offset,
    make_cursor,
    same_secret,
)
from tests.support.openapi_check import OpenApiContract

JsonDict = dict[str, Any]

__all__ = ["FakePipedrive", "RecordedRequest", "TokenPair", "running_fake_pipedrive"]

DEFAULT_CLIENT_ID = "fake-pipedrive-client"
DEFAULT_CLIENT_SECRET = "fake-pipedrive-secret"
DEFAULT_REDIRECT_URI = "https://appconnect.example.test/pipedrive-redirect"
DEFAULT_SCOPE = "base,contacts:full,deals:read,leads:read,activities:full"

_UNAUTHORIZED_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_DURATION_RE = re.compile(r"^\d{2}:[0-5]\d$")
_SEARCH_FIELDS = frozenset({"name", "email", "phone", "notes", "custom_fields"})
#: the body of `POST /api/v2/persons` (AddPersonRequest in Pipedrive's v2 description)
_PERSON_KEYS = frozenset(
    {
        "name",
        "owner_id",
        "org_id",
        "add_time",
        "update_time",
        "emails",
        "phones",
        "visible_to",
        "label_ids",
        "marketing_status",
        "custom_fields",
    }
)
_DEAL_STATUSES = frozenset({"open", "won", "lost", "deleted"})
_ACTIVITY_KEYS = frozenset(
    {
        "subject",
        "type",
        "owner_id",
        "deal_id",
        "lead_id",
        "person_id",
        "org_id",
        "project_id",
        "due_date",
        "due_time",
        "duration",
        "busy",
        "done",
        "location",
        "participants",
        "attendees",
        "public_description",
        "priority",
        "note",
    }
)


class FakePipedrive(FakeCrm):
    """Pipedrive's OAuth server and REST API on one local port; use as a context manager or start()/stop()."""

    crm_name = "Pipedrive"

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        expires_in: int = 3600,
        refresh_token_mode: RefreshTokenMode = "same",
        company_domain: str = "testcompany",
    ) -> None:
        self.contract = OpenApiContract(Path(__file__).with_name("openapi.trimmed.json"))
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.company_domain = company_domain
        self._default_expires_in = expires_in
        self._default_refresh_mode: RefreshTokenMode = refresh_token_mode
        super().__init__()

    def init_state(self) -> None:
        # Pipedrive's burst limit: 80 requests per 2 s per OAuth token on its smallest plan, and its search
        # endpoints apart: 10 per 2 s per token (the x-ratelimit-* headers of each answer tell its own limit).
        self.rate_limit = RateLimitPolicy(limit=80, window=2.0)
        self.search_rate_limit = RateLimitPolicy(limit=10, window=2.0)
        #: other users of the company, by id: a code issued for one of them logs that user in
        self.colleagues: dict[int, JsonDict] = {}
        self.grants = OAuthGrants(self.now, expires_in=self._default_expires_in)
        self.grants.refresh_token_mode = self._default_refresh_mode
        self.persons_by_id: dict[int, JsonDict] = {}
        #: an API server without `POST /api/v2/persons` (404), whose `POST /v1/persons` still creates
        self.v2_persons_missing = False
        self.orgs_by_id: dict[int, JsonDict] = {}
        self.deals_by_id: dict[int, JsonDict] = {}
        self.leads_by_id: dict[str, JsonDict] = {}
        self.activities_by_id: dict[int, JsonDict] = {}
        self.activity_types: list[JsonDict] = []
        self.user: JsonDict = {
            "id": 12345,
            "name": "Jordan Lee",
            "email": "jordan.lee@example.test",
            "phone": "+14155550101",
            "company_id": 7777,
            "company_name": "Test Company",
            "company_domain": self.company_domain,
            "company_country": "US",
            "timezone_name": "America/Los_Angeles",
            "timezone_offset": "-08:00",
            "locale": "en_US",
            "lang": 1,
            "default_currency": "USD",
            "active_flag": True,
            "is_admin": 1,
            "is_you": True,
            "role_id": 1,
            "icon_url": None,
            "activated": True,
            "has_created_company": True,
            "language": {"language_code": "en", "country_code": "US"},
        }
        for name, key in (
            ("Call", "call"),
            ("Meeting", "meeting"),
            ("Task", "task"),
            ("Deadline", "deadline"),
            ("Email", "email"),
            ("Lunch", "lunch"),
            ("SMS", "sms"),
        ):
            self.add_activity_type(name, key)

    # --- settings the tests read and change -----------------------------------------------------------------

    @property
    def expires_in(self) -> int:
        return self.grants.expires_in

    @expires_in.setter
    def expires_in(self, value: int) -> None:
        self.grants.expires_in = value

    @property
    def refresh_token_mode(self) -> RefreshTokenMode:
        return self.grants.refresh_token_mode

    @refresh_token_mode.setter
    def refresh_token_mode(self, value: RefreshTokenMode) -> None:
        self.grants.refresh_token_mode = value

    @property
    def refresh_calls(self) -> int:
        return self.grants.refresh_calls

    @property
    def code_exchanges(self) -> int:
        return self.grants.code_exchanges

    @property
    def revoke_calls(self) -> int:
        return self.grants.revoke_calls

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"

    @property
    def revoke_url(self) -> str:
        return f"{self.base_url}/oauth/revoke"

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/oauth/authorize"

    def connector_config(self) -> dict[str, str]:
        """Values for `ConnectorConfig` that point the Pipedrive connector at this fake."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "token_url": self.token_url,
            "revoke_url": self.revoke_url,
            "authorize_url": self.authorize_url,
            "api_url": self.base_url,
            "base_url": self.base_url,
        }

    def env(self) -> dict[str, str]:
        """The same settings as `PIPEDRIVE_<KEY>` environment variables, for server-level tests."""
        return {f"PIPEDRIVE_{key.upper()}": value for key, value in self.connector_config().items()}

    # --- tokens ---------------------------------------------------------------------------------------------

    def issue_code(
        self, *, redirect_uri: str | None = None, scope: str = DEFAULT_SCOPE, user_id: int | None = None
    ) -> str:
        """Pre-issue an authorization code, as if the user had approved the app install; `user_id` names
        another user of the same company (added with :meth:`add_colleague`), each with tokens of their own."""
        with self._lock:
            if user_id is None:
                return self.grants.issue_code(redirect_uri or self.redirect_uri, scope)
            return self.grants.issue_code(redirect_uri or self.redirect_uri, scope, user_id=user_id)

    def add_colleague(self, user_id: int, name: str) -> JsonDict:
        """Another user of the same Pipedrive company (same company id and domain, own id and tokens)."""
        with self._lock:
            colleague = {**self.user, "id": user_id, "name": name, "email": f"user{user_id}@example.test"}
            colleague["is_admin"] = 0
            self.colleagues[user_id] = colleague
            return colleague

    def issue_tokens(self, *, scope: str = DEFAULT_SCOPE) -> TokenPair:
        """Mint an access/refresh pair directly, for tests that do not exercise the code exchange."""
        with self._lock:
            return self.grants.issue_tokens(scope)

    def is_access_token_valid(self, token: str) -> bool:
        with self._lock:
            return self.grants.access_valid(token)

    def is_refresh_token_valid(self, token: str) -> bool:
        with self._lock:
            return self.grants.refresh_valid(token)

    # --- seeding --------------------------------------------------------------------------------------------

    def add_org(self, name: str, *, address: str | None = None) -> JsonDict:
        with self._lock:
            org = {"id": self.next_id("org", 500), "name": name, "address": address}
            self.orgs_by_id[org["id"]] = org
            return copy.deepcopy(org)

    def add_person(
        self,
        name: str,
        *,
        phones: list[str] | None = None,
        emails: list[str] | None = None,
        org_id: int | None = None,
        owner_id: int | None = None,
    ) -> JsonDict:
        with self._lock:
            if org_id is not None and org_id not in self.orgs_by_id:
                raise KeyError(f"no org {org_id}")
            stamp = self.now()
            person = {
                "id": self.next_id("person", 1000),
                "name": name,
                "phones": _seed_points(phones),
                "emails": _seed_points(emails),
                "org_id": org_id,
                "owner_id": owner_id if owner_id is not None else self.user["id"],
                "add_time": stamp,
                "update_time": stamp,
            }
            self.persons_by_id[person["id"]] = person
            return copy.deepcopy(person)

    def delete_person(self, person_id: int) -> None:
        """The person is deleted in Pipedrive: `GET /api/v2/persons/{id}` answers 404 from now on."""
        with self._lock:
            del self.persons_by_id[person_id]

    def add_deal(
        self,
        title: str,
        *,
        person_id: int | None = None,
        org_id: int | None = None,
        status: str = "open",
        value: float = 0,
    ) -> JsonDict:
        with self._lock:
            stamp = self.now()
            deal = {
                "id": self.next_id("deal", 2000),
                "title": title,
                "status": status,
                "person_id": person_id,
                "org_id": org_id,
                "owner_id": self.user["id"],
                "value": value,
                "currency": "USD",
                "stage_id": 1,
                "pipeline_id": 1,
                "add_time": stamp,
                "update_time": stamp,
            }
            self.deals_by_id[deal["id"]] = deal
            return copy.deepcopy(deal)

    def add_lead(
        self, title: str, *, person_id: int | None = None, org_id: int | None = None, archived: bool = False
    ) -> JsonDict:
        with self._lock:
            stamp = self.now()
            lead = {
                "id": str(uuid.uuid4()),
                "title": title,
                "person_id": person_id,
                "organization_id": org_id,
                "owner_id": self.user["id"],
                "is_archived": archived,
                "add_time": stamp,
                "update_time": stamp,
            }
            self.leads_by_id[lead["id"]] = lead
            return copy.deepcopy(lead)

    def add_activity_type(self, name: str, key_string: str, *, active: bool = True) -> JsonDict:
        with self._lock:
            kind = {
                "id": self.next_id("activity_type", 0),
                "name": name,
                "key_string": key_string,
                "active_flag": active,
                "order_nr": len(self.activity_types) + 1,
                "icon_key": key_string,
                "color": None,
                "is_custom_flag": key_string not in {"call", "meeting", "task", "deadline", "email", "lunch"},
            }
            self.activity_types.append(kind)
            return dict(kind)

    def set_activity_types(self, types: list[tuple[str, str, bool]]) -> None:
        """Replace the account's activity types with `(name, key_string, active)` triples."""
        with self._lock:
            self.activity_types.clear()
            for name, key, active in types:
                self.add_activity_type(name, key, active=active)

    # --- inspection -----------------------------------------------------------------------------------------

    @property
    def persons(self) -> dict[int, JsonDict]:
        with self._lock:
            return copy.deepcopy(self.persons_by_id)

    @property
    def activities(self) -> dict[int, JsonDict]:
        with self._lock:
            return copy.deepcopy(self.activities_by_id)

    @property
    def deals(self) -> dict[int, JsonDict]:
        with self._lock:
            return copy.deepcopy(self.deals_by_id)

    @property
    def leads(self) -> dict[str, JsonDict]:
        with self._lock:
            return copy.deepcopy(self.leads_by_id)

    def activity(self, activity_id: int | str) -> JsonDict:
        with self._lock:
            return copy.deepcopy(self.activities_by_id[int(activity_id)])

    # --- the HTTP surface -----------------------------------------------------------------------------------

    def routes(self) -> list[FakeRoute]:
        """OAuth routes plus the API routes the connector uses; the v2 ones checked against the description."""
        return self.contract.guard_described(
            [
                FakeRoute("GET", "/oauth/authorize", self._oauth_authorize, auth=False),
                FakeRoute("POST", "/oauth/token", self._oauth_token, auth=False),
                FakeRoute("POST", "/oauth/revoke", self._oauth_revoke, auth=False),
                FakeRoute("GET", "/v1/users/me", self._users_me),
                FakeRoute("GET", "/api/v1/users", self._users_list),
                FakeRoute("GET", "/api/v2/persons/search", self._persons_search),
                FakeRoute("POST", "/v1/persons", self._persons_create_v1_gone),
                FakeRoute("POST", "/api/v2/persons", self._persons_create),
                FakeRoute("GET", "/api/v2/persons/{person_id}", self._persons_get),
                FakeRoute("GET", "/api/v2/deals", self._deals_list),
                FakeRoute("GET", "/v1/leads", self._leads_list),
                FakeRoute("GET", "/v1/activityTypes", self._activity_types),
                FakeRoute("GET", "/api/v2/activities", self._activities_list),
                FakeRoute("POST", "/api/v2/activities", self._activities_create),
                FakeRoute("GET", "/api/v2/activities/{activity_id}", self._activities_get),
                FakeRoute("PATCH", "/api/v2/activities/{activity_id}", self._activities_patch),
            ]
        )

    def authenticate(self, request: FakeRequest) -> bool:
        token = bearer_token(request.headers.get("authorization", ""))
        return token is not None and self.is_access_token_valid(token)

    def limit_of(self, request: FakeRequest) -> tuple[str, RateLimitPolicy]:
        """The search endpoints count against their own limit, every other call against the burst limit."""
        path = request.path.lower()
        if path.endswith("/search") or "itemsearch" in path:
            return "search", self.search_rate_limit
        return "", self.rate_limit

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        return {"success": False, "error": message, "errorCode": status, **extra}

    def unauthorized(self) -> Response:
        return self.error(401, "unauthorized access", extra={"error_info": _UNAUTHORIZED_INFO})

    def rate_limit_headers(self, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": f"{max(1, math.ceil(reset_seconds))}",
        }

    # --- OAuth ----------------------------------------------------------------------------------------------

    def _client_ok(self, request: FakeRequest) -> bool:
        credentials = basic_credentials(request.headers.get("authorization", ""))
        if credentials is None:
            return False
        client_id, secret = credentials
        return same_secret(client_id, self.client_id) and same_secret(secret, self.client_secret)

    async def _oauth_authorize(self, request: FakeRequest) -> Response:
        query = request.query
        if query.get("client_id") != self.client_id or query.get("redirect_uri") != self.redirect_uri:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        params = {"code": self.issue_code()}
        if "state" in query:
            params["state"] = query["state"]
        return RedirectResponse(f"{self.redirect_uri}?{urlencode(params)}", status_code=302)

    async def _oauth_token(self, request: FakeRequest) -> Response:
        if not self._client_ok(request):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        body = request.form
        if body is None:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        grant_type = body.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                issued = self.grants.exchange_code(body.get("code", ""), body.get("redirect_uri"))
                if issued is None:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                return JSONResponse(self._token_body(issued[0], DEFAULT_SCOPE))
            if grant_type == "refresh_token":
                pair = self.grants.refresh(body.get("refresh_token", ""))
                if pair is None:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                return JSONResponse(self._token_body(pair, DEFAULT_SCOPE))
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    def _token_body(self, pair: TokenPair, scope: str) -> JsonDict:
        body: JsonDict = {
            "access_token": pair.access_token,
            "token_type": "Bearer",
            "refresh_token": pair.refresh_token,
            "scope": scope,
            "expires_in": pair.expires_in,
            "api_domain": self.base_url,
        }
        if not pair.refresh_token:
            del body["refresh_token"]
        return body

    async def _oauth_revoke(self, request: FakeRequest) -> Response:
        if not self._client_ok(request):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if request.form is None or not request.form.get("token"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        with self._lock:
            self.grants.revoke(request.form["token"])
        return Response(status_code=200)

    # --- API: users, persons --------------------------------------------------------------------------------

    async def _users_me(self, request: FakeRequest) -> Response:
        token = bearer_token(request.headers.get("authorization", "")) or ""
        with self._lock:
            user_id = self.grants.extra_of_access(token).get("user_id")
            return _ok(dict(self.colleagues.get(user_id, self.user) if user_id is not None else self.user))

    async def _users_list(self, request: FakeRequest) -> Response:
        """`GET /users` of the company: the logged-in user and `colleagues` (deleted ones included, flagged)."""
        with self._lock:
            return _ok([dict(self.user), *(dict(u) for u in self.colleagues.values())])

    async def _persons_search(self, request: FakeRequest) -> Response:
        query = request.query
        term = query.get("term", "")
        if term.startswith(" "):
            # A raw `+` in the query string decodes to a space; the real API sees the same thing.
            term = "+" + term[1:]
        exact = query.get("exact_match", "false").lower() == "true"
        if len(term.strip()) < (1 if exact else 2):
            raise bad_request("Search term must be at least 2 characters long")
        requested = query.get("fields", ",".join(sorted(_SEARCH_FIELDS)))
        fields = {f.strip() for f in requested.split(",") if f.strip()}
        if not fields or not fields <= _SEARCH_FIELDS:
            raise bad_request(f"Invalid fields: {query.get('fields')}")
        limit = _int_param(query.get("limit"), "limit", default=100)
        if not 1 <= limit <= 500:
            raise bad_request("limit must be between 1 and 500")
        start = cursor_offset(query.get("cursor"))
        with self._lock:
            hits: list[tuple[float, JsonDict]] = []
            for person in self.persons_by_id.values():
                score = _person_score(person, term, fields, exact)
                if score > 0:
                    hits.append((score, person))
            hits.sort(key=lambda h: (-h[0], h[1]["id"]))
            page = hits[start : start + limit]
            items = [
                {"result_score": round(score, 4), "item": self._search_item(person)} for score, person in page
            ]
        next_cursor = make_cursor(start + limit) if start + limit < len(hits) else None
        return JSONResponse(
            {"success": True, "data": {"items": items}, "additional_data": {"next_cursor": next_cursor}}
        )

    def _search_item(self, person: JsonDict) -> JsonDict:
        org = self.orgs_by_id.get(person["org_id"]) if person["org_id"] is not None else None
        return {
            "id": person["id"],
            "type": "person",
            "name": person["name"],
            "phones": [p["value"] for p in person["phones"]],
            "emails": [e["value"] for e in person["emails"]],
            "visible_to": 3,
            "owner": {"id": person["owner_id"]},
            "organization": (
                {"id": org["id"], "name": org["name"], "address": org["address"]} if org else None
            ),
            "custom_fields": [],
            "notes": [],
        }

    async def _persons_create_v1_gone(self, request: FakeRequest) -> Response:
        """`POST /v1/persons` was deprecated for `POST /api/v2/persons` in May 2025, announced for shutdown at the
        end of 2025, and is gone from Pipedrive's published description (and its generated clients) since 2026.
        With `v2_persons_missing` (an API server that predates v2 persons) it is the create, with v1's body."""
        if not self.v2_persons_missing:
            return self.error(410, "This endpoint is no longer available. Use POST /api/v2/persons.")
        body = request.json
        if not isinstance(body, dict) or "phones" in body:
            raise bad_request("Body must be a JSON object with v1's `phone`, not `phones`")
        v2_body = {key: value for key, value in body.items() if key != "phone"}
        if "phone" in body:
            v2_body["phones"] = body["phone"]
        return await self._create_person(dataclasses.replace(request, json=v2_body))

    async def _persons_create(self, request: FakeRequest) -> Response:
        """`POST /api/v2/persons`: the v2 body only (`phones`/`emails` as lists of {value, primary, label});
        unknown keys, v1's `phone`/`email` among them, are refused as the v2 schema validator does."""
        if self.v2_persons_missing:
            return self.error(404, "Unknown endpoint")
        return await self._create_person(request)

    async def _create_person(self, request: FakeRequest) -> Response:
        body = request.json
        if not isinstance(body, dict):
            raise bad_request("Body must be a JSON object")
        unknown = set(body) - _PERSON_KEYS
        if unknown:
            raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("name must be a non-empty string")
        phones = _v2_points(body.get("phones"), "phones")
        emails = _v2_points(body.get("emails"), "emails")
        org_id = body.get("org_id")
        owner_id = body.get("owner_id")
        for key, value in (
            ("org_id", org_id),
            ("owner_id", owner_id),
            ("visible_to", body.get("visible_to")),
        ):
            if value is not None and not _is_int(value):
                raise bad_request(f"{key} must be an integer")
        with self._lock:
            if org_id is not None and org_id not in self.orgs_by_id:
                raise bad_request(f"org_id {org_id} not found")
            if owner_id is not None and owner_id != self.user["id"] and owner_id not in self.colleagues:
                raise bad_request(f"owner_id {owner_id} not found")
            stamp = self.now()
            person = {
                "id": self.next_id("person", 1000),
                "name": name.strip(),
                "phones": phones,
                "emails": emails,
                "org_id": org_id,
                "owner_id": owner_id if owner_id is not None else self.user["id"],
                "add_time": stamp,
                "update_time": stamp,
            }
            self.persons_by_id[person["id"]] = person
            return _ok(self._v2_person(person))

    def _v2_person(self, person: JsonDict) -> JsonDict:
        first, _, last = person["name"].partition(" ")
        return {
            "id": person["id"],
            "name": person["name"],
            "first_name": first,
            "last_name": last or None,
            "owner_id": person["owner_id"],
            "org_id": person["org_id"],
            "phones": [dict(p) for p in person["phones"]],
            "emails": [dict(e) for e in person["emails"]],
            "add_time": _iso(person["add_time"]),
            "update_time": _iso(person["update_time"]),
            "is_deleted": False,
            "visible_to": 3,
            "label_ids": [],
            "picture_id": None,
        }

    async def _persons_get(self, request: FakeRequest) -> Response:
        person_id = _path_int(request, "person_id")
        with self._lock:
            person = self.persons_by_id.get(person_id)
            if person is None:
                return self.error(404, "Person not found")
            return _ok(self._v2_person(person))

    # --- API: deals, leads, activity types ------------------------------------------------------------------

    async def _deals_list(self, request: FakeRequest) -> Response:
        query = request.query
        person_id = _int_param(query.get("person_id"), "person_id")
        statuses = {s for s in query.get("status", "open,won,lost").split(",") if s}
        if not statuses <= _DEAL_STATUSES:
            raise bad_request(f"Invalid status: {query.get('status')}")
        with self._lock:
            deals = [
                {
                    "id": d["id"],
                    "title": d["title"],
                    "status": d["status"],
                    "person_id": d["person_id"],
                    "org_id": d["org_id"],
                    "owner_id": d["owner_id"],
                    "value": d["value"],
                    "currency": d["currency"],
                    "stage_id": d["stage_id"],
                    "pipeline_id": d["pipeline_id"],
                    "add_time": _iso(d["add_time"]),
                    "update_time": _iso(d["update_time"]),
                    "is_deleted": d["status"] == "deleted",
                }
                for d in sorted(self.deals_by_id.values(), key=lambda d: d["id"])
                if d["status"] in statuses and (person_id is None or d["person_id"] == person_id)
            ]
        return JSONResponse({"success": True, "data": deals, "additional_data": {"next_cursor": None}})

    async def _leads_list(self, request: FakeRequest) -> Response:
        query = request.query
        person_id = _int_param(query.get("person_id"), "person_id")
        archived = query.get("archived_status", "not_archived")
        if archived not in {"archived", "not_archived", "all"}:
            raise bad_request("Invalid archived_status")
        with self._lock:
            leads = [
                {
                    "id": lead["id"],
                    "title": lead["title"],
                    "person_id": lead["person_id"],
                    "organization_id": lead["organization_id"],
                    "owner_id": lead["owner_id"],
                    "is_archived": lead["is_archived"],
                    "add_time": _iso(lead["add_time"]),
                    "update_time": _iso(lead["update_time"]),
                    "value": None,
                    "label_ids": [],
                }
                for lead in self.leads_by_id.values()
                if (person_id is None or lead["person_id"] == person_id)
                and (archived == "all" or lead["is_archived"] == (archived == "archived"))
            ]
        return JSONResponse(
            {
                "success": True,
                "data": leads,
                "additional_data": {
                    "pagination": {"start": 0, "limit": 100, "more_items_in_collection": False}
                },
            }
        )

    async def _activity_types(self, request: FakeRequest) -> Response:
        with self._lock:
            return _ok([dict(t) for t in self.activity_types])

    # --- API: activities ------------------------------------------------------------------------------------

    async def _activities_create(self, request: FakeRequest) -> Response:
        body = request.json
        if not isinstance(body, dict):
            raise bad_request("Body must be a JSON object")
        if "subject" not in body:
            raise bad_request("subject is required")
        with self._lock:
            fields = self._validate_activity(body)
            stamp = self.now()
            activity: JsonDict = {
                "id": self.next_id("activity", 4000),
                "subject": "",
                "type": self._default_type(),
                "owner_id": self.user["id"],
                "deal_id": None,
                "lead_id": None,
                "person_id": None,
                "org_id": None,
                "project_id": None,
                "due_date": None,
                "due_time": None,
                "duration": None,
                "busy": False,
                "done": False,
                "location": None,
                "participants": [],
                "attendees": [],
                "public_description": None,
                "priority": None,
                "note": None,
                "is_deleted": False,
                "add_time": stamp,
                "update_time": stamp,
                "marked_as_done_time": None,
            }
            self._apply_activity(activity, fields)
            self.activities_by_id[activity["id"]] = activity
            return _ok(_activity_view(activity))

    async def _activities_list(self, request: FakeRequest) -> Response:
        """`GET /api/v2/activities`: filters owner_id, person_id, deal_id, done; newest first by add_time or id;
        cursor pagination (`limit` at most 500)."""
        query = request.query
        filters = {key: _int_param(query.get(key), key) for key in ("owner_id", "person_id", "deal_id")}
        done = query.get("done")
        if done not in (None, "true", "false"):
            raise bad_request("done must be true or false")
        limit = _int_param(query.get("limit"), "limit", 100)
        if not 1 <= limit <= 500:
            raise bad_request("limit must be between 1 and 500")
        sort_by = query.get("sort_by", "id")
        if sort_by not in ("id", "add_time", "update_time"):
            raise bad_request(f"Invalid sort_by: {sort_by}")
        descending = query.get("sort_direction", "asc") == "desc"
        offset = cursor_offset(query.get("cursor"))
        with self._lock:
            found = [
                a
                for a in self.activities_by_id.values()
                if not a["is_deleted"]
                and all(value is None or a[key] == value for key, value in filters.items())
                and (done is None or a["done"] == (done == "true"))
            ]
            found.sort(key=lambda a: (a[sort_by], a["id"]), reverse=descending)
            page = [_activity_view(a) for a in found[offset : offset + limit]]
        more = offset + limit < len(found)
        return JSONResponse(
            {
                "success": True,
                "data": page,
                "additional_data": {"next_cursor": make_cursor(offset + limit) if more else None},
            }
        )

    async def _activities_get(self, request: FakeRequest) -> Response:
        activity_id = _path_int(request, "activity_id")
        with self._lock:
            activity = self.activities_by_id.get(activity_id)
            if activity is None:
                return self.error(404, "Activity not found")
            return _ok(_activity_view(activity))

    async def _activities_patch(self, request: FakeRequest) -> Response:
        activity_id = _path_int(request, "activity_id")
        body = request.json
        if not isinstance(body, dict):
            raise bad_request("Body must be a JSON object")
        with self._lock:
            activity = self.activities_by_id.get(activity_id)
            if activity is None:
                return self.error(404, "Activity not found")
            fields = self._validate_activity(body)
            updated = dict(activity)
            self._apply_activity(updated, fields)
            updated["update_time"] = self.now()
            activity.update(updated)
            return _ok(_activity_view(activity))

    def _default_type(self) -> str:
        active = [t for t in self.activity_types if t["active_flag"]]
        return str(active[0]["key_string"]) if active else "call"

    def _apply_activity(self, activity: JsonDict, fields: JsonDict) -> None:
        """Merge validated fields, keep person_id in sync with the primary participant, enforce invariants."""
        was_done = activity["done"]
        activity.update(fields)
        if "participants" in fields and "person_id" not in fields:
            primary = [p["person_id"] for p in activity["participants"] if p["primary"]]
            activity["person_id"] = primary[0] if primary else None
        if activity["done"] and not was_done:
            activity["marked_as_done_time"] = self.now()
        if activity["deal_id"] is not None and activity["lead_id"] is not None:
            raise bad_request("An activity cannot be linked to both a deal and a lead")

    def _validate_activity(self, body: JsonDict) -> JsonDict:
        """Type-check a v2 activity body the way the v2 schema validator does: unknown keys are rejected."""
        unknown = set(body) - _ACTIVITY_KEYS
        if unknown:
            raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
        out: JsonDict = {}
        for key, value in body.items():
            if key == "subject":
                if not isinstance(value, str) or not value.strip():
                    raise bad_request("subject must be a non-empty string")
            elif key == "type":
                keys = {t["key_string"] for t in self.activity_types if t["active_flag"]}
                if not isinstance(value, str) or value not in keys:
                    raise bad_request(f"Invalid activity type: {value!r}")
            elif key in {"owner_id", "priority"}:
                if not _is_int(value):
                    raise bad_request(f"{key} must be an integer")
                # an activity may be owned by any user of the company, and only by one
                if key == "owner_id" and value != self.user["id"] and value not in self.colleagues:
                    raise bad_request(f"owner_id {value} not found")
            elif key in {"deal_id", "person_id", "org_id", "project_id"}:
                if value is not None and not _is_int(value):
                    raise bad_request(f"{key} must be an integer or null")
                store = {
                    "deal_id": self.deals_by_id,
                    "person_id": self.persons_by_id,
                    "org_id": self.orgs_by_id,
                }.get(key)
                if value is not None and store is not None and value not in store:
                    raise bad_request(f"{key} {value} not found")
            elif key == "lead_id":
                if value is not None and (not isinstance(value, str) or value not in self.leads_by_id):
                    raise bad_request(f"lead_id {value!r} not found")
            elif key == "due_date":
                if not isinstance(value, str) or not _DATE_RE.match(value) or not _valid_date(value):
                    raise bad_request("due_date must be YYYY-MM-DD")
            elif key == "due_time":
                if not isinstance(value, str) or not _TIME_RE.match(value):
                    raise bad_request("due_time must be HH:MM")
            elif key == "duration":
                if not isinstance(value, str) or not _DURATION_RE.match(value):
                    raise bad_request("duration must be HH:MM")
            elif key in {"done", "busy"}:
                if not isinstance(value, bool):
                    raise bad_request(f"{key} must be a boolean")
            elif key in {"note", "public_description"}:
                if value is not None and not isinstance(value, str):
                    raise bad_request(f"{key} must be a string")
            elif key == "participants":
                value = self._validate_participants(value)
            elif key == "attendees":
                if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
                    raise bad_request("attendees must be a list of objects")
            elif key == "location" and value is not None and not isinstance(value, (str, dict)):
                raise bad_request("location must be an object")
            out[key] = copy.deepcopy(value)
        return out

    def _validate_participants(self, value: Any) -> list[JsonDict]:
        if not isinstance(value, list):
            raise bad_request("participants must be a list")
        for entry in value:
            if not isinstance(entry, dict) or set(entry) - {"person_id", "primary"}:
                raise bad_request("participants entries must be {person_id, primary}")
            if not _is_int(entry.get("person_id")) or entry["person_id"] not in self.persons_by_id:
                raise bad_request(f"participant person {entry.get('person_id')!r} not found")
            if not isinstance(entry.get("primary", False), bool):
                raise bad_request("participants[].primary must be a boolean")
        if sum(1 for e in value if e.get("primary")) > 1:
            raise bad_request("only one participant can be primary")
        return [{"person_id": e["person_id"], "primary": bool(e.get("primary", False))} for e in value]


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({"success": True, "data": data})


def _seed_points(values: list[str] | None) -> list[JsonDict]:
    return [{"value": v, "primary": i == 0, "label": "work"} for i, v in enumerate(values or [])]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _int_param(raw: str | None, name: str, default: int | None = None) -> Any:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None


def _path_int(request: FakeRequest, name: str) -> int:
    value: int = _int_param(request.path_params[name], name)
    return value


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _person_score(person: JsonDict, term: str, fields: set[str], exact: bool) -> float:
    """Relevance of a person to a search term; 0 means no hit. Phone search compares digits only."""
    score = 0.0
    if "phone" in fields:
        wanted = _digits(term)
        for phone in person["phones"]:
            have = _digits(phone["value"])
            if wanted and (have == wanted if exact else wanted in have):
                score = max(score, 1.0 if have == wanted else 0.8)
    lowered = term.strip().lower()
    if "name" in fields:
        name = person["name"].lower()
        if (name == lowered) if exact else (lowered in name):
            score = max(score, 1.0 if name == lowered else 0.5)
    if "email" in fields:
        for email in person["emails"]:
            value = email["value"].lower()
            if (value == lowered) if exact else (lowered in value):
                score = max(score, 0.9)
    return score


def _v2_points(value: Any, key: str) -> list[JsonDict]:
    """v2 takes `phones` / `emails` only as a list of {value, primary, label} objects (`value` required)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"{key} must be a list")
    points: list[JsonDict] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or set(entry) - {"value", "primary", "label"}:
            raise bad_request(f"{key}[{index}] must be an object of value, primary, label")
        if not isinstance(entry.get("value"), str) or not entry["value"]:
            raise bad_request(f"{key}[{index}].value must be a non-empty string")
        primary = entry.get("primary", index == 0)
        if not isinstance(primary, bool):
            raise bad_request(f"{key}[{index}].primary must be a boolean")
        label = entry.get("label", "work")
        if not isinstance(label, str):
            raise bad_request(f"{key}[{index}].label must be a string")
        points.append({"value": entry["value"], "primary": primary, "label": label})
    if sum(1 for p in points if p["primary"]) > 1:
        raise bad_request(f"only one of {key} can be primary")
    return points


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _activity_view(activity: JsonDict) -> JsonDict:
    view = copy.deepcopy(activity)
    view["add_time"] = _iso(activity["add_time"])
    view["update_time"] = _iso(activity["update_time"])
    if activity["marked_as_done_time"] is not None:
        view["marked_as_done_time"] = _iso(activity["marked_as_done_time"])
    return view


@contextmanager
def running_fake_pipedrive(**kwargs: Any) -> Iterator[FakePipedrive]:
    """Start a FakePipedrive for the duration of a `with` block."""
    fake = FakePipedrive(**kwargs)
    with fake:
        yield fake

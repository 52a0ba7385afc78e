"""A faithful in-memory Pipedrive (OAuth host + API host) served over real HTTP for connector and e2e tests.

It validates requests the way the real API does (strict v2 bodies, Bearer tokens that expire, single-use
authorization codes, Basic client auth on the token endpoints) so a connector bug shows up as a 400/401 here
instead of in production. State lives in memory behind one lock: the server thread mutates it, the test thread
inspects it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import re
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.live_server import serve_asgi

JsonDict = dict[str, Any]
RefreshTokenMode = Literal["same", "rotate", "omit"]
Handler = Callable[[Request, Any], Awaitable[Response]]

DEFAULT_CLIENT_ID = "fake-pipedrive-client"
DEFAULT_CLIENT_SECRET = "fake-pipedrive-secret"
DEFAULT_REDIRECT_URI = "https://appconnect.example.test/pipedrive-redirect"
DEFAULT_SCOPE = "base,contacts:full,deals:read,leads:read,activities:full"

_UNAUTHORIZED: JsonDict = {
    "success": False,
    "error": "unauthorized access",
    "errorCode": 401,
    "error_info": "Please check developers.pipedrive.com for more information about Pipedrive API.",
}
_SECRET_FORM_KEYS = frozenset({"code", "refresh_token", "token", "client_secret"})
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_DURATION_RE = re.compile(r"^\d{2}:[0-5]\d$")
_SEARCH_FIELDS = frozenset({"name", "email", "phone", "notes", "custom_fields"})
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


# ------------------------------------------------------------------------------------------------------------
# Records the tests inspect
# ------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RecordedRequest:
    """One request as the fake saw it; OAuth secrets in form bodies are redacted."""

    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    json: Any = None
    form: dict[str, str] | None = None
    auth_scheme: str | None = None


@dataclass(slots=True)
class Fault:
    """A canned failure (or delay) for the next `times` matching requests."""

    status: int | None
    times: int
    path_prefix: str | None = None
    method: str | None = None
    retry_after: float | None = None
    delay: float | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass(slots=True)
class _CodeGrant:
    redirect_uri: str
    scope: str
    used: bool = False


@dataclass(slots=True)
class _RefreshGrant:
    scope: str
    revoked: bool = False


@dataclass(slots=True)
class _AccessGrant:
    refresh_token: str
    expires_at: float
    revoked: bool = False


@dataclass(slots=True)
class TokenPair:
    """Tokens the fake issued, for tests that skip the HTTP code exchange."""

    access_token: str
    refresh_token: str
    expires_in: int


class _BadRequest(Exception):
    """A request the real API would reject with 400."""


@dataclass(slots=True)
class _State:
    persons: dict[int, JsonDict] = field(default_factory=dict)
    orgs: dict[int, JsonDict] = field(default_factory=dict)
    deals: dict[int, JsonDict] = field(default_factory=dict)
    leads: dict[str, JsonDict] = field(default_factory=dict)
    activities: dict[int, JsonDict] = field(default_factory=dict)
    activity_types: list[JsonDict] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------------
# The fake
# ------------------------------------------------------------------------------------------------------------


class FakePipedrive:
    """Pipedrive's OAuth server and REST API on one local port; use as a context manager or start()/stop()."""

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
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.company_domain = company_domain
        self._default_expires_in = expires_in
        self._default_refresh_mode: RefreshTokenMode = refresh_token_mode
        self._lock = threading.RLock()
        self._stack: ExitStack | None = None
        self._port = 0
        self._init_state()

    def _init_state(self) -> None:
        """(Re)create every piece of mutable state: used at construction and by reset()."""
        with self._lock:
            self.expires_in = self._default_expires_in
            self.refresh_token_mode: RefreshTokenMode = self._default_refresh_mode
            self.refresh_calls = 0
            self.code_exchanges = 0
            self.revoke_calls = 0
            self.requests: list[RecordedRequest] = []
            self._faults: list[Fault] = []
            self._clock_offset = 0.0
            self._codes: dict[str, _CodeGrant] = {}
            self._refresh: dict[str, _RefreshGrant] = {}
            self._access: dict[str, _AccessGrant] = {}
            self._ids = {"person": 1000, "org": 500, "deal": 2000, "activity": 4000, "activity_type": 0}
            self._state = _State()
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

    # --- lifecycle ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("FakePipedrive is not started")
        return f"http://127.0.0.1:{self._port}"

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

    def start(self) -> FakePipedrive:
        if self._stack is not None:
            return self
        stack = ExitStack()
        base_url = stack.enter_context(serve_asgi(self.app()))
        self._port = int(base_url.rsplit(":", 1)[1])
        self._stack = stack
        return self

    def stop(self) -> None:
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        self._port = 0
        stack.close()

    def __enter__(self) -> FakePipedrive:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all state and settings (the server keeps running): one fake can serve many tests."""
        self._init_state()

    # --- clock and tokens -----------------------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock: wall time plus whatever advance_time() added."""
        return time.time() + self._clock_offset

    def advance_time(self, seconds: float) -> None:
        """Move the fake clock forward so access tokens expire without sleeping."""
        with self._lock:
            self._clock_offset += seconds

    def issue_code(self, *, redirect_uri: str | None = None, scope: str = DEFAULT_SCOPE) -> str:
        """Pre-issue an authorization code, as if the user had approved the app install."""
        code = f"code-{secrets.token_urlsafe(12)}"
        with self._lock:
            self._codes[code] = _CodeGrant(redirect_uri=redirect_uri or self.redirect_uri, scope=scope)
        return code

    def issue_tokens(self, *, scope: str = DEFAULT_SCOPE) -> TokenPair:
        """Mint an access/refresh pair directly, for tests that do not exercise the code exchange."""
        with self._lock:
            refresh = f"rt-{secrets.token_urlsafe(16)}"
            self._refresh[refresh] = _RefreshGrant(scope=scope)
            access = self._mint_access(refresh)
            return TokenPair(access_token=access, refresh_token=refresh, expires_in=self.expires_in)

    def is_access_token_valid(self, token: str) -> bool:
        with self._lock:
            grant = self._access.get(token)
            return grant is not None and not grant.revoked and grant.expires_at > self.now()

    def is_refresh_token_valid(self, token: str) -> bool:
        with self._lock:
            grant = self._refresh.get(token)
            return grant is not None and not grant.revoked

    def _mint_access(self, refresh_token: str) -> str:
        access = f"at-{secrets.token_urlsafe(16)}"
        expires_at = self.now() + self.expires_in
        self._access[access] = _AccessGrant(refresh_token=refresh_token, expires_at=expires_at)
        return access

    # --- faults ---------------------------------------------------------------------------------------------

    def inject(
        self,
        status: int | None = None,
        *,
        times: int = 1,
        path_prefix: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (after `delay` s), or only delay them."""
        if status is None and delay is None:
            raise ValueError("inject() needs a status or a delay")
        with self._lock:
            self._faults.append(
                Fault(
                    status=status,
                    times=times,
                    path_prefix=path_prefix,
                    method=method,
                    retry_after=retry_after,
                    delay=delay,
                )
            )

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- seeding --------------------------------------------------------------------------------------------

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def add_org(self, name: str, *, address: str | None = None) -> JsonDict:
        with self._lock:
            org = {"id": self._next_id("org"), "name": name, "address": address}
            self._state.orgs[org["id"]] = org
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
            if org_id is not None and org_id not in self._state.orgs:
                raise KeyError(f"no org {org_id}")
            stamp = self.now()
            person = {
                "id": self._next_id("person"),
                "name": name,
                "phones": _seed_points(phones),
                "emails": _seed_points(emails),
                "org_id": org_id,
                "owner_id": owner_id if owner_id is not None else self.user["id"],
                "add_time": stamp,
                "update_time": stamp,
            }
            self._state.persons[person["id"]] = person
            return copy.deepcopy(person)

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
                "id": self._next_id("deal"),
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
            self._state.deals[deal["id"]] = deal
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
            self._state.leads[lead["id"]] = lead
            return copy.deepcopy(lead)

    def add_activity_type(self, name: str, key_string: str, *, active: bool = True) -> JsonDict:
        with self._lock:
            kind = {
                "id": self._next_id("activity_type"),
                "name": name,
                "key_string": key_string,
                "active_flag": active,
                "order_nr": self._ids["activity_type"],
                "icon_key": key_string,
                "color": None,
                "is_custom_flag": key_string not in {"call", "meeting", "task", "deadline", "email", "lunch"},
            }
            self._state.activity_types.append(kind)
            return dict(kind)

    def set_activity_types(self, types: list[tuple[str, str, bool]]) -> None:
        """Replace the account's activity types with `(name, key_string, active)` triples."""
        with self._lock:
            self._state.activity_types.clear()
            for name, key, active in types:
                self.add_activity_type(name, key, active=active)

    # --- inspection -----------------------------------------------------------------------------------------

    @property
    def persons(self) -> dict[int, JsonDict]:
        with self._lock:
            return copy.deepcopy(self._state.persons)

    @property
    def activities(self) -> dict[int, JsonDict]:
        with self._lock:
            return copy.deepcopy(self._state.activities)

    @property
    def deals(self) -> dict[int, JsonDict]:
        with self._lock:
            return copy.deepcopy(self._state.deals)

    @property
    def leads(self) -> dict[str, JsonDict]:
        with self._lock:
            return copy.deepcopy(self._state.leads)

    def activity(self, activity_id: int | str) -> JsonDict:
        with self._lock:
            return copy.deepcopy(self._state.activities[int(activity_id)])

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method.upper())
            ]

    # --------------------------------------------------------------------------------------------------------
    # HTTP
    # --------------------------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        """The ASGI app: OAuth routes plus the API routes the connector uses."""
        api: list[tuple[str, str, Handler]] = [
            ("GET", "/v1/users/me", self._users_me),
            ("GET", "/api/v2/persons/search", self._persons_search),
            ("POST", "/v1/persons", self._persons_create),
            ("GET", "/api/v2/persons/{person_id}", self._persons_get),
            ("GET", "/api/v2/deals", self._deals_list),
            ("GET", "/v1/leads", self._leads_list),
            ("GET", "/v1/activityTypes", self._activity_types),
            ("GET", "/api/v2/activities", self._activities_list),
            ("POST", "/api/v2/activities", self._activities_create),
            ("GET", "/api/v2/activities/{activity_id}", self._activities_get),
            ("PATCH", "/api/v2/activities/{activity_id}", self._activities_patch),
        ]
        routes = [
            Route("/oauth/authorize", self._wrap(self._oauth_authorize, api=False), methods=["GET"]),
            Route("/oauth/token", self._wrap(self._oauth_token, api=False), methods=["POST"]),
            Route("/oauth/revoke", self._wrap(self._oauth_revoke, api=False), methods=["POST"]),
        ]
        routes += [
            Route(path, self._wrap(handler, api=True), methods=[method]) for method, path, handler in api
        ]
        return Starlette(routes=routes)

    def _wrap(self, handler: Handler, *, api: bool) -> Callable[[Request], Awaitable[Response]]:
        """Shared per-request work: parse and log the body, apply faults, check the Bearer token."""

        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            content_type = request.headers.get("content-type", "")
            body: Any = None
            form: dict[str, str] | None = None
            if raw and "application/json" in content_type:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return _error(400, "Invalid JSON body")
            elif raw and "application/x-www-form-urlencoded" in content_type:
                form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
                body = form
            authorization = request.headers.get("authorization", "")
            with self._lock:
                self.requests.append(
                    RecordedRequest(
                        method=request.method,
                        path=request.url.path,
                        query=dict(request.query_params),
                        raw_query=request.url.query,
                        json=body if form is None else None,
                        form={k: ("<redacted>" if k in _SECRET_FORM_KEYS else v) for k, v in form.items()}
                        if form is not None
                        else None,
                        auth_scheme=authorization.split(" ", 1)[0] if authorization else None,
                    )
                )
            fault = self._take_fault(request.method, request.url.path)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    return _fault_response(fault)
            if api and not self._bearer_ok(authorization):
                return JSONResponse(_UNAUTHORIZED, status_code=401)
            try:
                response = await handler(request, body)
            except _BadRequest as exc:
                return _error(400, str(exc))
            if api:
                response.headers.update(
                    {"x-ratelimit-limit": "80", "x-ratelimit-remaining": "79", "x-ratelimit-reset": "2"}
                )
            return response

        return endpoint

    def _bearer_ok(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.is_access_token_valid(token.strip())

    # --- OAuth ----------------------------------------------------------------------------------------------

    def _client_ok(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, _, secret = decoded.partition(":")
        return secrets.compare_digest(client_id, self.client_id) and secrets.compare_digest(
            secret, self.client_secret
        )

    async def _oauth_authorize(self, request: Request, body: Any) -> Response:
        query = request.query_params
        if query.get("client_id") != self.client_id or query.get("redirect_uri") != self.redirect_uri:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        params = {"code": self.issue_code()}
        if "state" in query:
            params["state"] = query["state"]
        return RedirectResponse(f"{self.redirect_uri}?{urlencode(params)}", status_code=302)

    async def _oauth_token(self, request: Request, body: Any) -> Response:
        if not self._client_ok(request):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if not isinstance(body, dict) or "application/x-www-form-urlencoded" not in request.headers.get(
            "content-type", ""
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        grant_type = body.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                self.code_exchanges += 1
                grant = self._codes.get(body.get("code", ""))
                if grant is None or grant.used or body.get("redirect_uri") != grant.redirect_uri:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                grant.used = True
                refresh = f"rt-{secrets.token_urlsafe(16)}"
                self._refresh[refresh] = _RefreshGrant(scope=grant.scope)
                return JSONResponse(self._token_body(self._mint_access(refresh), refresh, grant.scope))
            if grant_type == "refresh_token":
                self.refresh_calls += 1
                old = body.get("refresh_token", "")
                rgrant = self._refresh.get(old)
                if rgrant is None or rgrant.revoked:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                refresh = old
                if self.refresh_token_mode == "rotate":
                    rgrant.revoked = True
                    refresh = f"rt-{secrets.token_urlsafe(16)}"
                    self._refresh[refresh] = _RefreshGrant(scope=rgrant.scope)
                token = self._token_body(self._mint_access(refresh), refresh, rgrant.scope)
                if self.refresh_token_mode == "omit":
                    del token["refresh_token"]
                return JSONResponse(token)
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    def _token_body(self, access: str, refresh: str, scope: str) -> JsonDict:
        return {
            "access_token": access,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "scope": scope,
            "expires_in": self.expires_in,
            "api_domain": self.base_url,
        }

    async def _oauth_revoke(self, request: Request, body: Any) -> Response:
        if not self._client_ok(request):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if not isinstance(body, dict) or not body.get("token"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        token = body["token"]
        with self._lock:
            self.revoke_calls += 1
            if token in self._refresh:
                # Revoking the refresh token ends the whole grant, access tokens included.
                self._refresh[token].revoked = True
                for grant in self._access.values():
                    if grant.refresh_token == token:
                        grant.revoked = True
            elif token in self._access:
                self._access[token].revoked = True
        # RFC 7009: an unknown token is not an error.
        return Response(status_code=200)

    # --- API: users, persons --------------------------------------------------------------------------------

    async def _users_me(self, request: Request, body: Any) -> Response:
        with self._lock:
            return _ok(dict(self.user))

    async def _persons_search(self, request: Request, body: Any) -> Response:
        query = request.query_params
        term = query.get("term", "")
        if term.startswith(" "):
            # A raw `+` in the query string decodes to a space; the real API sees the same thing.
            term = "+" + term[1:]
        exact = query.get("exact_match", "false").lower() == "true"
        if len(term.strip()) < (1 if exact else 2):
            raise _BadRequest("Search term must be at least 2 characters long")
        requested = query.get("fields", ",".join(sorted(_SEARCH_FIELDS)))
        fields = {f.strip() for f in requested.split(",") if f.strip()}
        if not fields or not fields <= _SEARCH_FIELDS:
            raise _BadRequest(f"Invalid fields: {query.get('fields')}")
        limit = _int_param(query.get("limit"), "limit", default=100)
        if not 1 <= limit <= 500:
            raise _BadRequest("limit must be between 1 and 500")
        start = _cursor_offset(query.get("cursor"))
        with self._lock:
            hits: list[tuple[float, JsonDict]] = []
            for person in self._state.persons.values():
                score = _person_score(person, term, fields, exact)
                if score > 0:
                    hits.append((score, person))
            hits.sort(key=lambda h: (-h[0], h[1]["id"]))
            page = hits[start : start + limit]
            items = [
                {"result_score": round(score, 4), "item": self._search_item(person)} for score, person in page
            ]
        next_cursor = _make_cursor(start + limit) if start + limit < len(hits) else None
        return JSONResponse(
            {"success": True, "data": {"items": items}, "additional_data": {"next_cursor": next_cursor}}
        )

    def _search_item(self, person: JsonDict) -> JsonDict:
        org = self._state.orgs.get(person["org_id"]) if person["org_id"] is not None else None
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

    async def _persons_create(self, request: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            raise _BadRequest("Body must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _BadRequest("Name must be given.")
        phones = _contact_points(body.get("phone"), "phone")
        emails = _contact_points(body.get("email"), "email")
        org_id = body.get("org_id")
        owner_id = body.get("owner_id")
        if org_id is not None and not _is_int(org_id):
            raise _BadRequest("org_id must be an integer")
        if owner_id is not None and not _is_int(owner_id):
            raise _BadRequest("owner_id must be an integer")
        with self._lock:
            if org_id is not None and org_id not in self._state.orgs:
                raise _BadRequest("Organization not found.")
            stamp = self.now()
            person = {
                "id": self._next_id("person"),
                "name": name.strip(),
                "phones": phones,
                "emails": emails,
                "org_id": org_id,
                "owner_id": owner_id if owner_id is not None else self.user["id"],
                "add_time": stamp,
                "update_time": stamp,
            }
            self._state.persons[person["id"]] = person
            data = self._v1_person(person)
        return JSONResponse({"success": True, "data": data}, status_code=201)

    def _v1_person(self, person: JsonDict) -> JsonDict:
        org = self._state.orgs.get(person["org_id"]) if person["org_id"] is not None else None
        first, _, last = person["name"].partition(" ")
        return {
            "id": person["id"],
            "company_id": self.user["company_id"],
            "owner_id": {"id": person["owner_id"], "name": self.user["name"], "value": person["owner_id"]},
            "org_id": {"value": org["id"], "name": org["name"], "address": org["address"]} if org else None,
            "name": person["name"],
            "first_name": first,
            "last_name": last or None,
            "phone": [dict(p) for p in person["phones"]] or [{"value": "", "primary": True}],
            "email": [dict(e) for e in person["emails"]] or [{"value": "", "primary": True}],
            "active_flag": True,
            "visible_to": "3",
            "add_time": _v1_time(person["add_time"]),
            "update_time": _v1_time(person["update_time"]),
            "org_name": org["name"] if org else None,
        }

    async def _persons_get(self, request: Request, body: Any) -> Response:
        person_id = _path_int(request, "person_id")
        with self._lock:
            person = self._state.persons.get(person_id)
            if person is None:
                return _error(404, "Person not found")
            first, _, last = person["name"].partition(" ")
            data = {
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
        return _ok(data)

    # --- API: deals, leads, activity types ------------------------------------------------------------------

    async def _deals_list(self, request: Request, body: Any) -> Response:
        query = request.query_params
        person_id = _int_param(query.get("person_id"), "person_id")
        statuses = {s for s in query.get("status", "open,won,lost").split(",") if s}
        if not statuses <= _DEAL_STATUSES:
            raise _BadRequest(f"Invalid status: {query.get('status')}")
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
                for d in sorted(self._state.deals.values(), key=lambda d: d["id"])
                if d["status"] in statuses and (person_id is None or d["person_id"] == person_id)
            ]
        return JSONResponse({"success": True, "data": deals, "additional_data": {"next_cursor": None}})

    async def _leads_list(self, request: Request, body: Any) -> Response:
        query = request.query_params
        person_id = _int_param(query.get("person_id"), "person_id")
        archived = query.get("archived_status", "not_archived")
        if archived not in {"archived", "not_archived", "all"}:
            raise _BadRequest("Invalid archived_status")
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
                for lead in self._state.leads.values()
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

    async def _activity_types(self, request: Request, body: Any) -> Response:
        with self._lock:
            return _ok([dict(t) for t in self._state.activity_types])

    # --- API: activities ------------------------------------------------------------------------------------

    async def _activities_create(self, request: Request, body: Any) -> Response:
        if not isinstance(body, dict):
            raise _BadRequest("Body must be a JSON object")
        if "subject" not in body:
            raise _BadRequest("subject is required")
        with self._lock:
            fields = self._validate_activity(body)
            stamp = self.now()
            activity: JsonDict = {
                "id": self._next_id("activity"),
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
            self._state.activities[activity["id"]] = activity
            return _ok(_activity_view(activity))

    async def _activities_list(self, request: Request, body: Any) -> Response:
        """`GET /api/v2/activities`: filters owner_id, person_id, deal_id, done; newest first by add_time or id;
        cursor pagination (`limit` at most 500)."""
        query = request.query_params
        filters = {key: _int_param(query.get(key), key) for key in ("owner_id", "person_id", "deal_id")}
        done = query.get("done")
        if done not in (None, "true", "false"):
            raise _BadRequest("done must be true or false")
        limit = _int_param(query.get("limit"), "limit", 100)
        if not 1 <= limit <= 500:
            raise _BadRequest("limit must be between 1 and 500")
        sort_by = query.get("sort_by", "id")
        if sort_by not in ("id", "add_time", "update_time"):
            raise _BadRequest(f"Invalid sort_by: {sort_by}")
        descending = query.get("sort_direction", "asc") == "desc"
        offset = _cursor_offset(query.get("cursor"))
        with self._lock:
            found = [
                a
                for a in self._state.activities.values()
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
                "additional_data": {"next_cursor": _make_cursor(offset + limit) if more else None},
            }
        )

    async def _activities_get(self, request: Request, body: Any) -> Response:
        activity_id = _path_int(request, "activity_id")
        with self._lock:
            activity = self._state.activities.get(activity_id)
            if activity is None:
                return _error(404, "Activity not found")
            return _ok(_activity_view(activity))

    async def _activities_patch(self, request: Request, body: Any) -> Response:
        activity_id = _path_int(request, "activity_id")
        if not isinstance(body, dict):
            raise _BadRequest("Body must be a JSON object")
        with self._lock:
            activity = self._state.activities.get(activity_id)
            if activity is None:
                return _error(404, "Activity not found")
            fields = self._validate_activity(body)
            updated = dict(activity)
            self._apply_activity(updated, fields)
            updated["update_time"] = self.now()
            activity.update(updated)
            return _ok(_activity_view(activity))

    def _default_type(self) -> str:
        active = [t for t in self._state.activity_types if t["active_flag"]]
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
            raise _BadRequest("An activity cannot be linked to both a deal and a lead")

    def _validate_activity(self, body: JsonDict) -> JsonDict:
        """Type-check a v2 activity body the way the v2 schema validator does: unknown keys are rejected."""
        unknown = set(body) - _ACTIVITY_KEYS
        if unknown:
            raise _BadRequest(f"Unknown fields: {', '.join(sorted(unknown))}")
        out: JsonDict = {}
        for key, value in body.items():
            if key == "subject":
                if not isinstance(value, str) or not value.strip():
                    raise _BadRequest("subject must be a non-empty string")
            elif key == "type":
                keys = {t["key_string"] for t in self._state.activity_types if t["active_flag"]}
                if not isinstance(value, str) or value not in keys:
                    raise _BadRequest(f"Invalid activity type: {value!r}")
            elif key in {"owner_id", "priority"}:
                if not _is_int(value):
                    raise _BadRequest(f"{key} must be an integer")
            elif key in {"deal_id", "person_id", "org_id", "project_id"}:
                if value is not None and not _is_int(value):
                    raise _BadRequest(f"{key} must be an integer or null")
                store = {
                    "deal_id": self._state.deals,
                    "person_id": self._state.persons,
                    "org_id": self._state.orgs,
                }.get(key)
                if value is not None and store is not None and value not in store:
                    raise _BadRequest(f"{key} {value} not found")
            elif key == "lead_id":
                if value is not None and (not isinstance(value, str) or value not in self._state.leads):
                    raise _BadRequest(f"lead_id {value!r} not found")
            elif key == "due_date":
                if not isinstance(value, str) or not _DATE_RE.match(value) or not _valid_date(value):
                    raise _BadRequest("due_date must be YYYY-MM-DD")
            elif key == "due_time":
                if not isinstance(value, str) or not _TIME_RE.match(value):
                    raise _BadRequest("due_time must be HH:MM")
            elif key == "duration":
                if not isinstance(value, str) or not _DURATION_RE.match(value):
                    raise _BadRequest("duration must be HH:MM")
            elif key in {"done", "busy"}:
                if not isinstance(value, bool):
                    raise _BadRequest(f"{key} must be a boolean")
            elif key in {"note", "public_description"}:
                if value is not None and not isinstance(value, str):
                    raise _BadRequest(f"{key} must be a string")
            elif key == "participants":
                value = self._validate_participants(value)
            elif key == "attendees":
                if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
                    raise _BadRequest("attendees must be a list of objects")
            elif key == "location" and value is not None and not isinstance(value, (str, dict)):
                raise _BadRequest("location must be an object")
            out[key] = copy.deepcopy(value)
        return out

    def _validate_participants(self, value: Any) -> list[JsonDict]:
        if not isinstance(value, list):
            raise _BadRequest("participants must be a list")
        for entry in value:
            if not isinstance(entry, dict) or set(entry) - {"person_id", "primary"}:
                raise _BadRequest("participants entries must be {person_id, primary}")
            if not _is_int(entry.get("person_id")) or entry["person_id"] not in self._state.persons:
                raise _BadRequest(f"participant person {entry.get('person_id')!r} not found")
            if not isinstance(entry.get("primary", False), bool):
                raise _BadRequest("participants[].primary must be a boolean")
        if sum(1 for e in value if e.get("primary")) > 1:
            raise _BadRequest("only one participant can be primary")
        return [{"person_id": e["person_id"], "primary": bool(e.get("primary", False))} for e in value]


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def _ok(data: Any) -> JSONResponse:
    return JSONResponse({"success": True, "data": data})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": message, "errorCode": status}, status_code=status)


def _fault_response(fault: Fault) -> JSONResponse:
    assert fault.status is not None
    headers: dict[str, str] = {}
    message = "Internal server error"
    if fault.status == 429:
        wait = fault.retry_after if fault.retry_after is not None else 2
        headers = {
            "Retry-After": f"{wait:g}",
            "x-ratelimit-limit": "80",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": f"{wait:g}",
        }
        message = "Request over limit"
    elif fault.retry_after is not None:
        headers = {"Retry-After": f"{fault.retry_after:g}"}
    if fault.status < 500 and fault.status != 429:
        message = "Request failed"
    return JSONResponse(
        {"success": False, "error": message, "errorCode": fault.status},
        status_code=fault.status,
        headers=headers,
    )


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
        raise _BadRequest(f"{name} must be an integer") from None


def _path_int(request: Request, name: str) -> int:
    value: int = _int_param(request.path_params[name], name)
    return value


def _cursor_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("o:"))
    except (ValueError, binascii.Error):
        raise _BadRequest("Invalid cursor") from None


def _make_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


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


def _contact_points(value: Any, kind: str) -> list[JsonDict]:
    """v1 accepts a phone/email as a plain string or as a list of {value, primary, label} objects."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"label": "", "value": value, "primary": True}] if value else []
    if not isinstance(value, list):
        raise _BadRequest(f"{kind} must be a string or a list")
    points: list[JsonDict] = []
    for index, entry in enumerate(value):
        if isinstance(entry, str):
            entry = {"value": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
            raise _BadRequest(f"{kind}[{index}].value must be a string")
        primary = entry.get("primary", index == 0)
        if isinstance(primary, str) and primary in {"true", "false"}:
            primary = primary == "true"
        if not isinstance(primary, bool):
            raise _BadRequest(f"{kind}[{index}].primary must be a boolean")
        label = entry.get("label", "")
        if not isinstance(label, str):
            raise _BadRequest(f"{kind}[{index}].label must be a string")
        points.append({"label": label, "value": entry["value"], "primary": primary})
    return points


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _v1_time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


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

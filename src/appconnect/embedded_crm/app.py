"""The test CRM's ASGI app: a small real REST CRM (plus fault injection) for the testcrm connector."""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from appconnect.embedded_crm import pages
from appconnect.embedded_crm.store import ContactNotFound, FaultRule, TestCrmStore
from appconnect.embedded_crm.validation import (
    MAX_INT,
    ValidationFailed,
    digits_of,
    parse_activity,
    parse_activity_patch,
    parse_contact,
    parse_fault,
    parse_user,
    require_object,
)
from appconnect.settings import is_loopback_host

User = dict[str, Any]
Handler = Callable[[Request, User | None], Awaitable[Response]]

_USER_FIELDS = ("id", "name", "email", "timezone_name", "timezone_offset")


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json")


def _error(status: int, error: str, **extra: Any) -> Response:
    return _json({"error": error, **extra}, status)


def _sub_path(request: Request) -> str:
    """The path inside this app, whether it runs standalone or mounted under a prefix."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def _api_key_from(header: str | None) -> str | None:
    """`Authorization: Basic base64("<apiKey>:")` -> apiKey."""
    if not header:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "basic" or not credential:
        return None
    try:
        decoded = base64.b64decode(credential.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    key = decoded.split(":", 1)[0]
    return key or None


def _row_id(request: Request, name: str) -> int | None:
    """A path id, or None when it is too large to name any row (the caller answers 404, not 500)."""
    value = int(request.path_params[name])
    return value if value <= MAX_INT else None


def _bearer(header: str | None) -> str | None:
    scheme, _, credential = (header or "").partition(" ")
    return credential.strip() or None if scheme.lower() == "bearer" else None


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise ValidationFailed("body is not valid JSON", "body") from None
    return require_object(data)


def _activity_wire(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "contact_id",
        "kind",
        "subject",
        "body",
        "direction",
        "duration_seconds",
        "started_at",
        "disposition",
        "external_id",
        "created_at",
        "updated_at",
    )
    return {k: row.get(k) for k in keys}


def _contact_wire(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "type", "phones", "email", "company", "created_at", "updated_at", "owner_id")
    return {k: row.get(k) for k in keys}


class TestCrmApi:
    """Route handlers bound to one store; per-process counters only feed the optional `/api/_stats`."""

    __test__ = False

    def __init__(
        self,
        store: TestCrmStore,
        *,
        fault_injection: bool = True,
        admin_token: str = "",
        loopback_key_minting: bool = True,
    ) -> None:
        self.store = store
        self.fault_injection = fault_injection
        self.admin_token = admin_token
        self.loopback_key_minting = loopback_key_minting
        self.stats: Counter[str] = Counter()

    def _is_admin(self, request: Request) -> bool:
        offered = _bearer(request.headers.get("authorization"))
        return bool(self.admin_token and offered and secrets.compare_digest(offered, self.admin_token))

    def _admin_refusal(self, request: Request, *, loopback_allowed: bool) -> Response | None:
        """None when the caller may use admin tooling: the admin token, or (no token set) a permitted loopback."""
        if self.admin_token:
            if self._is_admin(request):
                return None
            return _error(401, "admin_token_required")
        client = request.client.host if request.client else None
        if loopback_allowed and is_loopback_host(client):
            return None
        return _error(403, "admin_token_not_configured")

    def api_route(self, path: str, handler: Handler, methods: list[str], *, auth: bool = True) -> Route:
        """Wrap a handler: lazy init, fault injection, then auth and 400 mapping."""

        async def endpoint(request: Request) -> Response:
            await self.store.ensure_ready()
            self.stats[f"{request.method} {path}"] += 1
            if request.method in ("POST", "PATCH", "PUT"):
                # received in full before any injected delay, as a slow CRM would have it
                await request.body()
            fault = (
                await self.store.take_fault(request.method, _sub_path(request))
                if self.fault_injection
                else None
            )
            if fault is not None and not fault.after_work:
                injected = await _apply_fault(fault)
                if injected is not None:
                    if request.method == "POST":
                        await self._record(request, injected.status_code)
                    return injected
            user: User | None = None
            if auth:
                key = _api_key_from(request.headers.get("authorization"))
                user = await self.store.user_for_key(key) if key else None
                if user is None:
                    refused = _error(401, "invalid_api_key")
                    if request.method == "POST":
                        await self._record(request, refused.status_code)
                    return refused
            try:
                response = await handler(request, user)
            except ValidationFailed as exc:
                response = _json(exc.payload(), 400)
            if fault is not None and fault.after_work:
                response = await _apply_fault(fault) or response
            if request.method == "POST":
                await self._record(request, response.status_code)
            return response

        return Route(path, endpoint, methods=methods)

    async def _record(self, request: Request, status: int) -> None:
        """Keep every create received (faulted ones too), so tests count what a client sent, not what was kept."""
        key = _api_key_from(request.headers.get("authorization"))
        user = await self.store.user_for_key(key) if key else None
        await self.store.record_received(
            owner_id=int(user["id"]) if user is not None else None,
            method=request.method,
            path=_sub_path(request),
            status=status,
            **_keys_of(await request.body()),
        )

    # --- users -----------------------------------------------------------------------------------------

    async def me(self, _request: Request, user: User | None) -> Response:
        assert user is not None
        return _json({k: user[k] for k in _USER_FIELDS})

    async def list_users(self, _request: Request, _user: User | None) -> Response:
        return _json({"users": await self.store.list_users()})

    async def create_api_key(self, request: Request, _user: User | None) -> Response:
        refusal = self._admin_refusal(request, loopback_allowed=self.loopback_key_minting)
        if refusal is not None:
            return refusal
        api_key, created = await self.store.create_user_with_key(parse_user(await _body(request)))
        return _json({"apiKey": api_key, "user": created}, 201)

    # --- contacts --------------------------------------------------------------------------------------

    async def create_contact(self, request: Request, user: User | None) -> Response:
        assert user is not None
        contact = await self.store.create_contact(int(user["id"]), parse_contact(await _body(request)))
        return _json(_contact_wire(contact), 201)

    async def list_contacts(self, request: Request, user: User | None) -> Response:
        assert user is not None
        owner_id = int(user["id"])
        phone = request.query_params.get("phone")
        name = request.query_params.get("name")
        if phone is not None:
            # a "+" sent unencoded arrives as a space; digits-only comparison makes that harmless
            digits = digits_of(phone)
            found = await self.store.find_contacts_by_digits(owner_id, digits) if digits else []
        elif name is not None:
            found = await self.store.find_contacts_by_name(owner_id, name.strip()) if name.strip() else []
        else:
            found = await self.store.list_contacts(owner_id)
        return _json({"data": [_contact_wire(c) for c in found]})

    async def get_contact(self, request: Request, user: User | None) -> Response:
        assert user is not None
        contact_id = _row_id(request, "contact_id")
        contact = (
            await self.store.get_contact(int(user["id"]), contact_id) if contact_id is not None else None
        )
        return _json(_contact_wire(contact)) if contact else _error(404, "not_found")

    # --- activities ------------------------------------------------------------------------------------

    async def create_activity(self, request: Request, user: User | None) -> Response:
        assert user is not None
        data = parse_activity(await _body(request))
        try:
            activity = await self.store.create_activity(int(user["id"]), data)
        except ContactNotFound:  # another account's contact is not one this key can see
            raise ValidationFailed("contact_id does not exist", "contact_id") from None
        return _json(_activity_wire(activity), 201)

    async def get_activity(self, request: Request, user: User | None) -> Response:
        assert user is not None
        activity_id = _row_id(request, "activity_id")
        activity = (
            await self.store.get_activity(int(user["id"]), activity_id) if activity_id is not None else None
        )
        return _json(_activity_wire(activity)) if activity else _error(404, "not_found")

    async def patch_activity(self, request: Request, user: User | None) -> Response:
        assert user is not None
        changes = parse_activity_patch(await _body(request))
        activity_id = _row_id(request, "activity_id")
        activity = (
            await self.store.update_activity(int(user["id"]), activity_id, changes)
            if activity_id is not None
            else None
        )
        return _json(_activity_wire(activity)) if activity else _error(404, "not_found")

    async def list_activities(self, request: Request, user: User | None) -> Response:
        assert user is not None
        owner_id = int(user["id"])
        external_id = request.query_params.get("external_id")
        if external_id is not None:
            found = (
                await self.store.find_activities_by_external_id(owner_id, external_id) if external_id else []
            )
            return _json({"data": [_activity_wire(a) for a in found]})
        raw = request.query_params.get("contact_id", "")
        if not raw.isdigit() or int(raw) > MAX_INT:
            raise ValidationFailed(f"contact_id must be an integer between 0 and {MAX_INT}", "contact_id")
        found = await self.store.list_activities(owner_id, [int(raw)])
        return _json({"data": [_activity_wire(a) for a in found]})

    # --- fault injection and stats (test tooling: admin token only) -----------------------------------

    def admin_route(self, path: str, handler: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        """Fault injection makes the CRM misbehave for everyone: only the admin token may use it."""

        async def endpoint(request: Request) -> Response:
            refusal = self._admin_refusal(request, loopback_allowed=False)
            return refusal if refusal is not None else await handler(request)

        return Route(path, endpoint, methods=[method])

    async def add_fault(self, request: Request) -> Response:
        await self.store.ensure_ready()
        try:
            rule = await self.store.add_fault(parse_fault(await _body(request)))
        except ValidationFailed as exc:
            return _json(exc.payload(), 400)
        return _json(rule, 201)

    async def clear_faults(self, _request: Request) -> Response:
        await self.store.ensure_ready()
        return _json({"deleted": await self.store.clear_faults()})

    async def list_faults(self, _request: Request) -> Response:
        await self.store.ensure_ready()
        return _json({"data": await self.store.list_faults()})

    async def get_stats(self, _request: Request) -> Response:
        return _json({"scope": "process", "requests": dict(self.stats)})

    async def get_received(self, request: Request) -> Response:
        """How many creates (POSTs) the CRM received, over all processes, filtered by `method`, `path`
        (`/api/v1/activities`), `account` (the user id behind the API key), `external_id` or `phone` (digits)."""
        await self.store.ensure_ready()
        query = request.query_params
        account = query.get("account")
        if account is not None and (not account.isdigit() or int(account) > MAX_INT):
            return _error(400, "account must be a user id")
        count = await self.store.count_received(
            method=query.get("method"),
            path=query.get("path"),
            owner_id=int(account) if account is not None else None,
            external_id=query.get("external_id"),
            phone_digits=digits_of(query["phone"]) if "phone" in query else None,
        )
        return _json({"count": count})

    # --- HTML ------------------------------------------------------------------------------------------

    async def index_page(self, request: Request) -> Response:
        await self.store.ensure_ready()
        contacts = await self.store.list_contacts(None)
        by_contact: dict[int, list[dict[str, Any]]] = {}
        for activity in await self.store.list_activities(None, [c["id"] for c in contacts]):
            by_contact.setdefault(activity["contact_id"], []).append(activity)
        return HTMLResponse(pages.render_index(contacts, by_contact, request.scope.get("root_path", "")))

    async def contact_page(self, request: Request) -> Response:
        await self.store.ensure_ready()
        base = request.scope.get("root_path", "")
        contact_id = _row_id(request, "contact_id")
        contact = await self.store.get_contact(None, contact_id) if contact_id is not None else None
        if contact is None:
            return HTMLResponse(pages.render_not_found(base), status_code=404)
        activities = await self.store.list_activities(None, [contact["id"]])
        return HTMLResponse(pages.render_contact(contact, activities, base))

    def routes(self) -> list[Route]:
        routes = [
            Route("/", self.index_page, methods=["GET"]),
            Route("/contacts/{contact_id:int}", self.contact_page, methods=["GET"]),
            self.api_route("/api/v1/me", self.me, ["GET"]),
            self.api_route("/api/v1/users", self.list_users, ["GET"]),
            self.api_route("/api/v1/api-keys", self.create_api_key, ["POST"], auth=False),
            self.api_route("/api/v1/contacts", self.create_contact, ["POST"]),
            self.api_route("/api/v1/contacts", self.list_contacts, ["GET"]),
            self.api_route("/api/v1/contacts/{contact_id:int}", self.get_contact, ["GET"]),
            self.api_route("/api/v1/activities", self.create_activity, ["POST"]),
            self.api_route("/api/v1/activities", self.list_activities, ["GET"]),
            self.api_route("/api/v1/activities/{activity_id:int}", self.get_activity, ["GET"]),
            self.api_route("/api/v1/activities/{activity_id:int}", self.patch_activity, ["PATCH"]),
        ]
        if self.fault_injection:  # test tooling: never exposed unless asked for, and then only to the admin
            routes += [
                self.admin_route("/api/_faults", self.add_fault, "POST"),
                self.admin_route("/api/_faults", self.clear_faults, "DELETE"),
                self.admin_route("/api/_faults", self.list_faults, "GET"),
                self.admin_route("/api/_stats", self.get_stats, "GET"),
                self.admin_route("/api/_received", self.get_received, "GET"),
            ]
        return routes


def create_testcrm_app(
    database_url: str,
    *,
    seed_api_key: str = "testcrm-demo-key",
    fault_injection: bool = True,
    admin_token: str = "",
    loopback_key_minting: bool = True,
) -> Starlette:
    """Build the test CRM. Mounted apps get no lifespan: call `app.state.testcrm.aclose()` on shutdown.

    `fault_injection` adds the `/api/_faults` tooling the tests use to make the CRM fail; it answers only
    `Authorization: Bearer <admin_token>`. Minting API keys takes the admin token too; with no token set,
    only loopback clients may mint, and only when `loopback_key_minting` (the server sets it for a loopback
    public URL).
    """
    store = TestCrmStore(database_url, seed_api_key=seed_api_key)
    api = TestCrmApi(
        store,
        fault_injection=fault_injection,
        admin_token=admin_token,
        loopback_key_minting=loopback_key_minting,
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await store.aclose()

    app = Starlette(routes=api.routes(), lifespan=lifespan)
    app.state.testcrm = store
    return app


def _keys_of(raw: bytes) -> dict[str, str | None]:
    """What a received create is counted by: its `external_id`, and the digits of its first phone number."""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return {"external_id": None, "phone_digits": None}
    external_id = data.get("external_id")
    phones = data.get("phones")
    first = phones[0] if isinstance(phones, list) and phones and isinstance(phones[0], dict) else {}
    number = first.get("number")
    return {
        "external_id": external_id[:255] if isinstance(external_id, str) else None,
        "phone_digits": digits_of(number)[:20] if isinstance(number, str) else None,
    }


async def _apply_fault(fault: FaultRule) -> Response | None:
    """Wait the fault's delay; its status answer, or None for a delay-only fault."""
    if fault.delay_seconds:
        await asyncio.sleep(fault.delay_seconds)
    if fault.status is None:
        return None
    headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
    return _json({"error": "injected"}, fault.status, headers)

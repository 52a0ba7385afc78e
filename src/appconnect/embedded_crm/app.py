"""The test CRM's ASGI app: a small real REST CRM (plus fault injection) for the testcrm connector."""

from __future__ import annotations

import asyncio
import base64
import binascii
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
from appconnect.embedded_crm.store import ContactNotFound, TestCrmStore
from appconnect.embedded_crm.validation import (
    ValidationFailed,
    digits_of,
    parse_activity,
    parse_activity_patch,
    parse_contact,
    parse_fault,
    parse_user,
    require_object,
)

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

    def __init__(self, store: TestCrmStore, *, fault_injection: bool = True) -> None:
        self.store = store
        self.fault_injection = fault_injection
        self.stats: Counter[str] = Counter()

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
            if fault is not None:
                if fault.delay_seconds:
                    await asyncio.sleep(fault.delay_seconds)
                if fault.status is not None:
                    headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
                    return _json({"error": "injected"}, fault.status, headers)
            user: User | None = None
            if auth:
                key = _api_key_from(request.headers.get("authorization"))
                user = await self.store.user_for_key(key) if key else None
                if user is None:
                    return _error(401, "invalid_api_key")
            try:
                return await handler(request, user)
            except ValidationFailed as exc:
                return _json(exc.payload(), 400)

        return Route(path, endpoint, methods=methods)

    # --- users -----------------------------------------------------------------------------------------

    async def me(self, _request: Request, user: User | None) -> Response:
        assert user is not None
        return _json({k: user[k] for k in _USER_FIELDS})

    async def create_api_key(self, request: Request, _user: User | None) -> Response:
        api_key, created = await self.store.create_user_with_key(parse_user(await _body(request)))
        return _json({"apiKey": api_key, "user": created}, 201)

    # --- contacts --------------------------------------------------------------------------------------

    async def create_contact(self, request: Request, user: User | None) -> Response:
        assert user is not None
        contact = await self.store.create_contact(int(user["id"]), parse_contact(await _body(request)))
        return _json(_contact_wire(contact), 201)

    async def list_contacts(self, request: Request, _user: User | None) -> Response:
        phone = request.query_params.get("phone")
        name = request.query_params.get("name")
        if phone is not None:
            # a "+" sent unencoded arrives as a space; digits-only comparison makes that harmless
            digits = digits_of(phone)
            found = await self.store.find_contacts_by_digits(digits) if digits else []
        elif name is not None:
            found = await self.store.find_contacts_by_name(name.strip()) if name.strip() else []
        else:
            found = await self.store.list_contacts()
        return _json({"data": [_contact_wire(c) for c in found]})

    async def get_contact(self, request: Request, _user: User | None) -> Response:
        contact = await self.store.get_contact(int(request.path_params["contact_id"]))
        return _json(_contact_wire(contact)) if contact else _error(404, "not_found")

    # --- activities ------------------------------------------------------------------------------------

    async def create_activity(self, request: Request, _user: User | None) -> Response:
        data = parse_activity(await _body(request))
        try:
            activity, created = await self.store.create_activity(data)
        except ContactNotFound:
            raise ValidationFailed("contact_id does not exist", "contact_id") from None
        return _json(_activity_wire(activity), 201 if created else 200)

    async def get_activity(self, request: Request, _user: User | None) -> Response:
        activity = await self.store.get_activity(int(request.path_params["activity_id"]))
        return _json(_activity_wire(activity)) if activity else _error(404, "not_found")

    async def patch_activity(self, request: Request, _user: User | None) -> Response:
        changes = parse_activity_patch(await _body(request))
        activity = await self.store.update_activity(int(request.path_params["activity_id"]), changes)
        return _json(_activity_wire(activity)) if activity else _error(404, "not_found")

    async def list_activities(self, request: Request, _user: User | None) -> Response:
        external_id = request.query_params.get("external_id")
        if external_id is not None:
            match = await self.store.find_activity_by_external_id(external_id) if external_id else None
            return _json({"data": [_activity_wire(match)] if match else []})
        raw = request.query_params.get("contact_id", "")
        if not raw.isdigit():
            raise ValidationFailed("contact_id must be an integer", "contact_id")
        found = await self.store.list_activities([int(raw)])
        return _json({"data": [_activity_wire(a) for a in found]})

    # --- fault injection and stats (no auth: test tooling) ---------------------------------------------

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

    # --- HTML ------------------------------------------------------------------------------------------

    async def index_page(self, request: Request) -> Response:
        await self.store.ensure_ready()
        contacts = await self.store.list_contacts()
        by_contact: dict[int, list[dict[str, Any]]] = {}
        for activity in await self.store.list_activities([c["id"] for c in contacts]):
            by_contact.setdefault(activity["contact_id"], []).append(activity)
        return HTMLResponse(pages.render_index(contacts, by_contact, request.scope.get("root_path", "")))

    async def contact_page(self, request: Request) -> Response:
        await self.store.ensure_ready()
        base = request.scope.get("root_path", "")
        contact = await self.store.get_contact(int(request.path_params["contact_id"]))
        if contact is None:
            return HTMLResponse(pages.render_not_found(base), status_code=404)
        activities = await self.store.list_activities([contact["id"]])
        return HTMLResponse(pages.render_contact(contact, activities, base))

    def routes(self) -> list[Route]:
        routes = [
            Route("/", self.index_page, methods=["GET"]),
            Route("/contacts/{contact_id:int}", self.contact_page, methods=["GET"]),
            self.api_route("/api/v1/me", self.me, ["GET"]),
            self.api_route("/api/v1/api-keys", self.create_api_key, ["POST"], auth=False),
            self.api_route("/api/v1/contacts", self.create_contact, ["POST"]),
            self.api_route("/api/v1/contacts", self.list_contacts, ["GET"]),
            self.api_route("/api/v1/contacts/{contact_id:int}", self.get_contact, ["GET"]),
            self.api_route("/api/v1/activities", self.create_activity, ["POST"]),
            self.api_route("/api/v1/activities", self.list_activities, ["GET"]),
            self.api_route("/api/v1/activities/{activity_id:int}", self.get_activity, ["GET"]),
            self.api_route("/api/v1/activities/{activity_id:int}", self.patch_activity, ["PATCH"]),
        ]
        if self.fault_injection:  # unauthenticated test tooling: never exposed unless asked for
            routes += [
                Route("/api/_faults", self.add_fault, methods=["POST"]),
                Route("/api/_faults", self.clear_faults, methods=["DELETE"]),
                Route("/api/_faults", self.list_faults, methods=["GET"]),
                Route("/api/_stats", self.get_stats, methods=["GET"]),
            ]
        return routes


def create_testcrm_app(
    database_url: str, *, seed_api_key: str = "testcrm-demo-key", fault_injection: bool = True
) -> Starlette:
    """Build the test CRM. Mounted apps get no lifespan: call `app.state.testcrm.aclose()` on shutdown.

    `fault_injection` adds the unauthenticated `/api/_faults` tooling the tests use to make the CRM fail.
    """
    store = TestCrmStore(database_url, seed_api_key=seed_api_key)
    api = TestCrmApi(store, fault_injection=fault_injection)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await store.aclose()

    app = Starlette(routes=api.routes(), lifespan=lifespan)
    app.state.testcrm = store
    return app

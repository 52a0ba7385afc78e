"""A faithful in-memory Insightly (API v3.1, one pod) over real HTTP, built on the fake-CRM toolkit.

What it keeps as Insightly does (as its public v3.1 documentation describes it):

- Basic auth with the API key as the user name and any password; a key belongs to one user on one pod, so a
  key of another pod is refused (401) here;
- paths are case-insensitive (`/v3.1/Contacts/Search` and `/v3.1/contacts/search` are one route);
- answers are plain JSON objects and arrays with UPPER_SNAKE field names, dates as `yyyy-MM-dd HH:mm:ss` UTC;
- `/{Object}/Search?field_name=&field_value=` matches the stored value exactly (case aside), with
  `updated_after_utc`, `top` (at most 500, default 100), `skip`, `brief` (no LINKS, CUSTOMFIELDS, TAGS) and
  `count_total` (an `X-Total-Count` header); a search on a field the object does not have (a Contact's
  `PHONE_MOBILE` asked of Leads, whose mobile is `MOBILE`; a custom field no record has) is a 400;
- events are created by POST /Events, updated by PUT /Events with EVENT_ID in the body, and linked through
  /Events/{id}/Links (a link may be added twice, as the API allows: tests see double links);
- validation errors are 400 with `{"Message": "..."}` (the ASP.NET envelope Insightly answers with);
- every API answer carries `X-RateLimit-Limit` / `X-RateLimit-Remaining`; past the limit, 429.

Only the resources the connector uses are served.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    bad_request,
    basic_credentials,
    not_found,
)
from tests.support.openapi_check import OpenApiContract

JsonDict = dict[str, Any]

V = "/v3.1"
#: Insightly's published description, trimmed to what the connector uses: every request and answer is checked
CONTRACT_PATH = Path(__file__).with_name("openapi.trimmed.json")
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.\d+)?Z?$")
_BRIEF_DROPPED = ("CUSTOMFIELDS", "LINKS", "TAGS", "DATES", "ADDRESSES", "EMAILDOMAINS")
_LINK_TARGETS = {
    "contact": ("Contact", "contacts"),
    "lead": ("Lead", "leads"),
    "organisation": ("Organisation", "organisations"),
    "opportunity": ("Opportunity", "opportunities"),
    "project": ("Project", "projects"),
}
#: the Contact object of the published v3.1 description (schema `Contact`): no ORGANISATION_NAME, only its id
_CONTACT_FIELDS = {
    "CONTACT_ID": 0,
    "SALUTATION": None,
    "FIRST_NAME": None,
    "LAST_NAME": None,
    "TITLE": None,
    "BACKGROUND": None,
    "ORGANISATION_ID": None,
    "EMAIL_ADDRESS": None,
    "PHONE": None,
    "PHONE_HOME": None,
    "PHONE_MOBILE": None,
    "PHONE_OTHER": None,
    "PHONE_ASSISTANT": None,
    "PHONE_FAX": None,
    "OWNER_USER_ID": None,
    "DATE_CREATED_UTC": None,
    "DATE_UPDATED_UTC": None,
    "LAST_ACTIVITY_DATE_UTC": None,
    "CUSTOMFIELDS": [],
    "LINKS": [],
    "TAGS": [],
}
#: the Lead object of the published v3.1 description (schema `Lead`): its mobile is `MOBILE`, not `PHONE_MOBILE`
_LEAD_FIELDS = {
    "LEAD_ID": 0,
    "SALUTATION": None,
    "FIRST_NAME": None,
    "LAST_NAME": None,
    "LEAD_SOURCE_ID": 1,  # Insightly fills a lead's source and status when a create names none
    "LEAD_STATUS_ID": 1,
    "TITLE": None,
    "CONVERTED": False,
    "CONVERTED_CONTACT_ID": None,
    "CONVERTED_DATE_UTC": None,
    "CONVERTED_OPPORTUNITY_ID": None,
    "CONVERTED_ORGANISATION_ID": None,
    "DATE_CREATED_UTC": None,
    "DATE_UPDATED_UTC": None,
    "EMAIL": None,
    "EMPLOYEE_COUNT": None,
    "FAX": None,
    "INDUSTRY": None,
    "LEAD_DESCRIPTION": None,
    "LEAD_RATING": None,
    "MOBILE": None,
    "OWNER_USER_ID": None,
    "PHONE": None,
    "RESPONSIBLE_USER_ID": None,
    "WEBSITE": None,
    "ADDRESS_STREET": None,
    "ADDRESS_CITY": None,
    "ADDRESS_STATE": None,
    "ADDRESS_POSTCODE": None,
    "ADDRESS_COUNTRY": None,
    "LAST_ACTIVITY_DATE_UTC": None,
    "NEXT_ACTIVITY_DATE_UTC": None,
    "ORGANISATION_NAME": None,
    "CREATED_USER_ID": None,
    "IMAGE_URL": None,
    "EMAIL_OPTED_OUT": False,
    "CUSTOMFIELDS": [],
    "LINKS": [],
    "TAGS": [],
}
_BOOLEAN_FIELDS = frozenset({"ALL_DAY", "REMINDER_SENT", "CONVERTED", "EMAIL_OPTED_OUT"})
_INTEGER_FIELDS = frozenset({"EMPLOYEE_COUNT", "LEAD_RATING"})
_EVENT_FIELDS = {
    "EVENT_ID": 0,
    "TITLE": None,
    "LOCATION": None,
    "START_DATE_UTC": None,
    "END_DATE_UTC": None,
    "ALL_DAY": False,
    "DETAILS": None,
    "REMINDER_DATE_UTC": None,
    "REMINDER_SENT": False,
    "OWNER_USER_ID": None,
    "DATE_CREATED_UTC": None,
    "DATE_UPDATED_UTC": None,
    "CUSTOMFIELDS": [],
    "LINKS": [],
}


class _CaseInsensitivePaths:
    """Insightly's routes ignore case: the path is lower-cased before routing (ids are numbers)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope["path"] = scope["path"].lower()
            scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


class FakeInsightly(FakeCrm):
    """Insightly's v3.1 API for one instance on one pod; `add_user()` hands out API keys."""

    crm_name = "Insightly"

    def __init__(
        self,
        pod: str = "na1",
        instance_id: int | None = 880001,
        *,
        first_user_id: int | None = None,
        default_key: str = "key-jordan",
    ) -> None:
        """Another company is another FakeInsightly: its own instance id, key and (maybe equal) USER_IDs.

        `instance_id=None` answers Users/Me without INSTANCE_ID; `first_user_id` chooses the default user's id.
        """
        self.pod = pod
        self.instance_id = instance_id
        self.first_user_id = first_user_id
        self._default_key_name = default_key
        self.contract = OpenApiContract(CONTRACT_PATH, case_insensitive=True)
        super().__init__()

    # --- the toolkit's hooks --------------------------------------------------------------------------------

    def init_state(self) -> None:
        self.users: dict[int, JsonDict] = {}
        self.api_keys: dict[str, tuple[int, str]] = {}  # key -> (user id, pod)
        self.contacts: dict[int, JsonDict] = {}
        self.leads: dict[int, JsonDict] = {}
        self.organisations: dict[int, JsonDict] = {}
        self.opportunities: dict[int, JsonDict] = {}
        self.projects: dict[int, JsonDict] = {}
        self.events: dict[int, JsonDict] = {}
        self.custom_fields: dict[str, set[str]] = {"contacts": set(), "leads": set(), "events": set()}
        self.rate_limit.limit = 10_000
        self.rate_limit.window = 86_400.0  # Insightly counts calls per day
        self.default_key = self.add_user(
            "Jordan", "Lee", api_key=self._default_key_name, user_id=self.first_user_id
        )

    def app(self) -> Starlette:
        return _CaseInsensitivePaths(super().app())  # type: ignore[return-value]

    def routes(self) -> list[FakeRoute]:
        routes = [
            FakeRoute("GET", f"{V}/users/me", self._users_me),
            FakeRoute("GET", f"{V}/users", self._users),
        ]
        for resource in ("contacts", "leads", "events"):
            routes.append(FakeRoute("GET", f"{V}/{resource}/search", self._searcher(resource)))
        for resource in ("contacts", "leads", "organisations", "opportunities", "projects", "events"):
            routes.append(FakeRoute("GET", f"{V}/{resource}/{{record_id:int}}", self._getter(resource)))
        routes += [
            FakeRoute("POST", f"{V}/contacts", self._create_contact),
            FakeRoute("POST", f"{V}/leads", self._create_lead),
            FakeRoute("POST", f"{V}/events", self._create_event),
            FakeRoute("PUT", f"{V}/events", self._update_event),
            FakeRoute("GET", f"{V}/events/{{record_id:int}}/links", self._event_links),
            FakeRoute("POST", f"{V}/events/{{record_id:int}}/links", self._add_event_link),
            FakeRoute(
                "DELETE", f"{V}/events/{{record_id:int}}/links/{{link_id:int}}", self._delete_event_link
            ),
        ]
        return [FakeRoute(r.method, r.path, self.contract.guard(r.handler), r.auth) for r in routes]

    def authenticate(self, request: FakeRequest) -> bool:
        return self._caller(request) is not None

    def credential_of(self, request: FakeRequest) -> str:
        """Insightly counts calls per instance: every key of this fake spends one budget."""
        return f"instance-{self.instance_id or self.pod}"

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        return {"Message": message, **extra}

    def unauthorized(self) -> Response:
        return self.error(401, "Authorization has been denied for this request.")

    def rate_limit_headers(self, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}

    # --- seeding and inspection -----------------------------------------------------------------------------

    def add_user(
        self,
        first: str,
        last: str,
        *,
        api_key: str | None = None,
        pod: str | None = None,
        timezone_id: str = "Pacific Standard Time",
        user_id: int | None = None,
    ) -> str:
        """A user of this instance and their API key (on `pod`, this fake's own by default; `user_id` chosen or
        the next free one)."""
        with self._lock:
            if user_id is None:
                user_id = self.next_id("user", 1200000)
            if user_id in self.users:
                raise ValueError(f"user {user_id} exists")
            self.users[user_id] = {
                "USER_ID": user_id,
                "CONTACT_ID": None,
                "FIRST_NAME": first,
                "LAST_NAME": last,
                "TIMEZONE_ID": timezone_id,
                "EMAIL_ADDRESS": f"{first.lower()}.{last.lower()}@example.test",
                "ADMINISTRATOR": True,
                "ACCOUNT_OWNER": not self.users,
                "ACTIVE": True,
                "DATE_CREATED_UTC": self._stamp(),
                "DATE_UPDATED_UTC": self._stamp(),
            }
            if self.instance_id is not None:
                self.users[user_id]["INSTANCE_ID"] = self.instance_id
            key = api_key or f"key-{user_id}"
            self.api_keys[key] = (user_id, pod or self.pod)
            return key

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def user_id_of(self, api_key: str) -> int:
        return self.api_keys[api_key][0]

    def add_contact(
        self,
        first: str,
        last: str | None = None,
        *,
        phone: str | None = None,
        mobile: str | None = None,
        custom: dict[str, str] | None = None,
        organisation_id: int | None = None,
        links: list[tuple[str, int]] | None = None,
        **fields: Any,
    ) -> JsonDict:
        with self._lock:
            record = self._new_record(_CONTACT_FIELDS, "contacts", "CONTACT_ID")
            record.update(FIRST_NAME=first, LAST_NAME=last, PHONE=phone, PHONE_MOBILE=mobile, **fields)
            if organisation_id is not None:
                record["ORGANISATION_ID"] = organisation_id
                self._link(record, "Contact", "Organisation", organisation_id)
            for name, target in links or []:
                self._link(record, "Contact", name, target)
            self._custom(record, "contacts", custom)
            self.contacts[record["CONTACT_ID"]] = record
            return copy.deepcopy(record)

    def add_lead(
        self,
        first: str | None,
        last: str,
        *,
        phone: str | None = None,
        mobile: str | None = None,
        custom: dict[str, str] | None = None,
        **fields: Any,
    ) -> JsonDict:
        with self._lock:
            record = self._new_record(_LEAD_FIELDS, "leads", "LEAD_ID")
            record.update(FIRST_NAME=first, LAST_NAME=last, PHONE=phone, MOBILE=mobile, **fields)
            self._custom(record, "leads", custom)
            self.leads[record["LEAD_ID"]] = record
            return copy.deepcopy(record)

    def add_organisation(self, name: str) -> JsonDict:
        return self._add_simple(
            self.organisations, "organisations", "ORGANISATION_ID", ORGANISATION_NAME=name
        )

    def add_opportunity(self, name: str) -> JsonDict:
        return self._add_simple(self.opportunities, "opportunities", "OPPORTUNITY_ID", OPPORTUNITY_NAME=name)

    def add_project(self, name: str) -> JsonDict:
        return self._add_simple(self.projects, "projects", "PROJECT_ID", PROJECT_NAME=name)

    def event(self, event_id: int | str) -> JsonDict:
        with self._lock:
            return copy.deepcopy(self.events[int(event_id)])

    def all_events(self) -> list[JsonDict]:
        with self._lock:
            return copy.deepcopy(list(self.events.values()))

    def all_contacts(self) -> list[JsonDict]:
        with self._lock:
            return copy.deepcopy(list(self.contacts.values()))

    def all_leads(self) -> list[JsonDict]:
        with self._lock:
            return copy.deepcopy(list(self.leads.values()))

    # --- handlers -------------------------------------------------------------------------------------------

    async def _users_me(self, request: FakeRequest) -> Response:
        user_id = self._caller(request)
        assert user_id is not None
        with self._lock:
            return self.json(self.users[user_id])

    async def _users(self, request: FakeRequest) -> Response:
        """`GET /Users`: every user of the instance."""
        with self._lock:
            return self.json([dict(u) for u in self.users.values()])

    def _searcher(self, resource: str) -> Any:
        async def search(request: FakeRequest) -> Response:
            return self._search(request, resource)

        return search

    def _getter(self, resource: str) -> Any:
        async def get(request: FakeRequest) -> Response:
            with self._lock:
                record = self._table(resource).get(request.path_int("record_id"))
                if record is None:
                    raise not_found(f"{resource[:-1].title()} not found")
                return self.json(record)

        return get

    def _search(self, request: FakeRequest, resource: str) -> Response:
        query = request.query
        name, value = query.get("field_name"), query.get("field_value")
        if (name is None) != (value is None):
            raise bad_request("field_name and field_value must be given together")
        since = _parse_filter_date(query.get("updated_after_utc"))
        top = request.int_param("top", 100, minimum=1) or 100
        if top > 500:
            raise bad_request("top cannot be greater than 500")
        skip = request.int_param("skip", 0, minimum=0) or 0
        brief = query.get("brief", "false").lower() == "true"
        with self._lock:
            table = self._table(resource)
            if name is not None:
                known = set(self._model(resource)) | self.custom_fields[resource]
                if name.upper() not in known:
                    raise bad_request(f"Invalid field name: {name}")
            hits = []
            for record in sorted(table.values(), key=lambda r: int(r[self._id_field(resource)])):
                if name is not None and not _matches(record, name.upper(), value or ""):
                    continue
                if since is not None and str(record.get("DATE_UPDATED_UTC") or "") <= since:
                    continue
                hits.append(record)
            page = [_briefed(r) if brief else copy.deepcopy(r) for r in hits[skip : skip + top]]
        headers = (
            {"X-Total-Count": str(len(hits))} if query.get("count_total", "").lower() == "true" else None
        )
        return self.json(page, headers=headers)

    async def _create_contact(self, request: FakeRequest) -> Response:
        body = self._body(request, _CONTACT_FIELDS, "CONTACT_ID")
        if not _text(body.get("FIRST_NAME")):
            raise bad_request("FIRST_NAME is required")
        with self._lock:
            record = self._new_record(_CONTACT_FIELDS, "contacts", "CONTACT_ID")
            record.update({k: v for k, v in body.items() if k != "CONTACT_ID"})
            record["OWNER_USER_ID"] = record["OWNER_USER_ID"] or self._caller(request)
            self.contacts[record["CONTACT_ID"]] = record
            return self.json(record)

    async def _create_lead(self, request: FakeRequest) -> Response:
        body = self._body(request, _LEAD_FIELDS, "LEAD_ID")
        if not _text(body.get("LAST_NAME")):
            raise bad_request("LAST_NAME is required")
        with self._lock:
            record = self._new_record(_LEAD_FIELDS, "leads", "LEAD_ID")
            record.update({k: v for k, v in body.items() if k != "LEAD_ID"})
            record["OWNER_USER_ID"] = record["OWNER_USER_ID"] or self._caller(request)
            self.leads[record["LEAD_ID"]] = record
            return self.json(record)

    async def _create_event(self, request: FakeRequest) -> Response:
        body = self._body(request, _EVENT_FIELDS, "EVENT_ID")
        if not _text(body.get("TITLE")):
            raise bad_request("TITLE is required")
        for field in ("START_DATE_UTC", "END_DATE_UTC"):
            if body.get(field) is None:
                raise bad_request(f"{field} is required")
        self._check_event(body)
        with self._lock:
            record = self._new_record(_EVENT_FIELDS, "events", "EVENT_ID")
            record.update({k: v for k, v in body.items() if k not in ("EVENT_ID", "LINKS")})
            record["OWNER_USER_ID"] = record["OWNER_USER_ID"] or self._caller(request)
            _normalise_dates(record)
            self.events[record["EVENT_ID"]] = record
            return self.json(record)

    async def _update_event(self, request: FakeRequest) -> Response:
        body = self._body(request, _EVENT_FIELDS, None)
        event_id = body.get("EVENT_ID")
        if not isinstance(event_id, int) or isinstance(event_id, bool):
            raise bad_request("EVENT_ID is required")
        self._check_event(body)
        with self._lock:
            record = self.events.get(event_id)
            if record is None:
                raise not_found("Event not found")
            merged = {**record, **{k: v for k, v in body.items() if k != "LINKS"}}
            start, end = _date_of(merged["START_DATE_UTC"]), _date_of(merged["END_DATE_UTC"])
            if start and end and end < start:
                raise bad_request("END_DATE_UTC must not be before START_DATE_UTC")
            record.update(merged)
            _normalise_dates(record)
            record["DATE_UPDATED_UTC"] = self._stamp()
            return self.json(record)

    async def _event_links(self, request: FakeRequest) -> Response:
        with self._lock:
            event = self._event(request)
            return self.json(event["LINKS"])

    async def _add_event_link(self, request: FakeRequest) -> Response:
        body = request.json_object()
        target = str(body.get("LINK_OBJECT_NAME") or "").lower()
        linked = body.get("LINK_OBJECT_ID")
        if target not in _LINK_TARGETS:
            raise bad_request(f"Invalid LINK_OBJECT_NAME: {body.get('LINK_OBJECT_NAME')}")
        if not isinstance(linked, int) or isinstance(linked, bool):
            raise bad_request("LINK_OBJECT_ID is required")
        name, resource = _LINK_TARGETS[target]
        with self._lock:
            event = self._event(request)
            if linked not in self._table(resource):
                raise bad_request(f"{name} {linked} does not exist")
            link = self._link(event, "Event", name, linked)
            event["DATE_UPDATED_UTC"] = self._stamp()
            return self.json(link)

    async def _delete_event_link(self, request: FakeRequest) -> Response:
        with self._lock:
            event = self._event(request)
            link_id = request.path_int("link_id")
            kept = [link for link in event["LINKS"] if link["LINK_ID"] != link_id]
            if len(kept) == len(event["LINKS"]):
                raise not_found("Link not found")
            event["LINKS"] = kept
            event["DATE_UPDATED_UTC"] = self._stamp()
        return Response(status_code=202)

    # --- helpers --------------------------------------------------------------------------------------------

    def _caller(self, request: FakeRequest) -> int | None:
        credentials = basic_credentials(request.headers.get("authorization", ""))
        if credentials is None:
            return None
        with self._lock:
            entry = self.api_keys.get(credentials[0])
        if entry is None or entry[1] != self.pod:
            return None
        return entry[0]

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self.now(), UTC).strftime("%Y-%m-%d %H:%M:%S")

    def _table(self, resource: str) -> dict[int, JsonDict]:
        table: dict[int, JsonDict] = getattr(self, resource)
        return table

    def _model(self, resource: str) -> JsonDict:
        return {"contacts": _CONTACT_FIELDS, "leads": _LEAD_FIELDS, "events": _EVENT_FIELDS}[resource]

    def _id_field(self, resource: str) -> str:
        return {"contacts": "CONTACT_ID", "leads": "LEAD_ID", "events": "EVENT_ID"}[resource]

    def _new_record(self, model: JsonDict, kind: str, id_field: str) -> JsonDict:
        record = copy.deepcopy(model)
        record[id_field] = self.next_id(kind, {"contacts": 3000, "leads": 5000, "events": 9000}[kind])
        record["DATE_CREATED_UTC"] = record["DATE_UPDATED_UTC"] = self._stamp()
        return record

    def _add_simple(self, table: dict[int, JsonDict], kind: str, id_field: str, **fields: Any) -> JsonDict:
        with self._lock:
            record = {id_field: self.next_id(kind, 700), **fields, "DATE_CREATED_UTC": self._stamp()}
            table[record[id_field]] = record
            return dict(record)

    def _custom(self, record: JsonDict, resource: str, custom: dict[str, str] | None) -> None:
        for name, value in (custom or {}).items():
            self.custom_fields[resource].add(name.upper())
            record["CUSTOMFIELDS"].append({"FIELD_NAME": name, "FIELD_VALUE": value})

    def _link(self, record: JsonDict, object_name: str, link_name: str, linked: int) -> JsonDict:
        id_field = next(k for k in record if k.endswith("_ID"))
        link = {
            "LINK_ID": self.next_id("link", 40000),
            "OBJECT_NAME": object_name,
            "OBJECT_ID": record[id_field],
            "LINK_OBJECT_NAME": link_name,
            "LINK_OBJECT_ID": linked,
            "ROLE": None,
            "DETAILS": None,
            "RELATIONSHIP_ID": None,
            "IS_FORWARD": None,
        }
        record["LINKS"].append(link)
        return copy.deepcopy(link)

    def _event(self, request: FakeRequest) -> JsonDict:
        event = self.events.get(request.path_int("record_id"))
        if event is None:
            raise not_found("Event not found")
        return event

    def _body(self, request: FakeRequest, model: JsonDict, id_field: str | None) -> JsonDict:
        """The JSON object, refusing fields the object does not have and values of the wrong type."""
        body = request.json_object()
        unknown = sorted(k for k in body if k not in model)
        if unknown:
            raise bad_request(f"Unknown field(s): {', '.join(unknown)}")
        for key, value in body.items():
            if value is None or key in ("CUSTOMFIELDS", "LINKS", "TAGS"):
                continue
            integer = key.endswith("_ID") or key in _INTEGER_FIELDS
            if integer and (not isinstance(value, int) or isinstance(value, bool)):
                raise bad_request(f"{key} must be an integer")
            if key in _BOOLEAN_FIELDS and not isinstance(value, bool):
                raise bad_request(f"{key} must be a boolean")
            if not integer and key not in _BOOLEAN_FIELDS and not isinstance(value, str):
                raise bad_request(f"{key} must be a string")
        if id_field is not None and body.get(id_field) not in (None, 0):
            raise bad_request(f"{id_field} must not be set when creating")
        owner = body.get("OWNER_USER_ID")
        if owner is not None and owner not in self.users:
            raise bad_request(f"OWNER_USER_ID {owner} is not a user of this instance")
        return body

    def _check_event(self, body: JsonDict) -> None:
        for field in ("START_DATE_UTC", "END_DATE_UTC"):
            if field in body and body[field] is not None and _date_of(body[field]) is None:
                raise bad_request(f"{field} is not a valid date")
        start, end = _date_of(body.get("START_DATE_UTC")), _date_of(body.get("END_DATE_UTC"))
        if start and end and end < start:
            raise bad_request("END_DATE_UTC must not be before START_DATE_UTC")
        owner = body.get("OWNER_USER_ID")
        with self._lock:
            if owner is not None and owner not in self.users:  # an event is owned by a user of the instance
                raise bad_request(f"OWNER_USER_ID {owner} is not a user of this instance")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _date_of(value: Any) -> str | None:
    """`yyyy-MM-dd HH:mm:ss` of a date Insightly accepts (that form, or ISO 8601 in UTC); None if invalid."""
    match = _DATE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    text = f"{match.group(1)} {match.group(2)}"
    try:
        datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return text


def _normalise_dates(record: JsonDict) -> None:
    for field in ("START_DATE_UTC", "END_DATE_UTC"):
        if record.get(field):
            record[field] = _date_of(record[field])


def _parse_filter_date(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    parsed = _date_of(value)
    if parsed is None:
        raise HttpError(400, "updated_after_utc must be a date like 2026-01-01T00:00:00Z")
    return parsed


def _matches(record: JsonDict, field: str, value: str) -> bool:
    """Exact match on the stored value (case aside); custom fields by their FIELD_NAME."""
    if field in record:
        stored = record[field]
    else:
        stored = next(
            (
                c.get("FIELD_VALUE")
                for c in record.get("CUSTOMFIELDS") or []
                if str(c.get("FIELD_NAME")).upper() == field
            ),
            None,
        )
    if stored is None or isinstance(stored, (list, dict)):
        return False
    if isinstance(stored, bool):
        return str(stored).lower() == value.lower()
    return str(stored).casefold() == value.casefold()


def _briefed(record: JsonDict) -> JsonDict:
    return {k: copy.deepcopy(v) for k, v in record.items() if k not in _BRIEF_DROPPED}

"""A fake Redtail CRM (public v1 API) over real loopback HTTP, built on the fake-CRM toolkit.

Only the resources the connector uses, with Redtail's rules as its public documentation describes them:

- `GET /authentication` takes `Authorization: Basic b64(apikey:username:password)` and answers
  `{"authenticated_user": {"user_key", "redtail_user_id", "redtail_database_id"}}`: the reference reads
  `authenticated_user.user_key`, the API's published example names the two ids; the user key stays the same
  for that user (it survives a password change);
- every other call takes the user key as `Authorization: UserKeyAuth b64(apikey:userkey)` (the documented
  scheme, any case), as the bare `b64(apikey:userkey)` with no scheme (what the reference sends in
  production), or the documented Basic credentials; anything else (Bearer, a two-part Basic) is a 401;
- `GET /contacts/search_basic` with `phone_number` matches contacts with a phone whose digits contain the
  term's digits (Redtail keeps and compares phone numbers as digits), or with `name` on the name; answers basic
  records, with their phones only when asked by the `include: phones` header (documented for Redtail's
  contact reads; otherwise they are at `GET /contacts/{id}/phones`), paged with `meta.total_pages`;
- a query parameter an endpoint does not take is a 400, a write whose body is not JSON a 415, a body field a
  resource does not have a 422; `GET /contacts/{id}/activities` lists oldest first or newest first
  (`activities_order`: Redtail documents no order, so the connector must find a marker either way);
- `POST /contacts`, `GET /lists/categories`, `POST/GET/PUT/PATCH /activities[/{id}]`, `POST/GET
  /activities/{id}/notes`, `GET /contacts/{id}/activities` (paged); `linked_contacts` is only expanded with
  the `include: linked_contacts` request header;
- usernames are unique only inside one database (firm): `add_user(..., database_id=...)` adds another firm's
  user of the same name, and every contact, activity and note belongs to the database of the user who made it;
  a user sees and changes only their own database's records (another database's id is a 404);
- a refused write is a 422 with `{"errors": ["<full message>", ...]}`, anything else `{"error": "<message>"}`
  (the documentation shows no error schema; this is the usual shape of its Rails API). Redtail documents no
  rate-limit headers, so none are sent; a 429 carries only `Retry-After`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from starlette.responses import Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    JsonDict,
    basic_credentials,
    not_found,
    same_secret,
)

API_PATH = "/api/public/v1"
API_KEY = "rt-partner-key-0001"
USERNAME = "jlee"
PASSWORD = "Correct horse 9!"
DATABASE_ID = 4242
Handler = Callable[[FakeRequest], Awaitable[Response]]
CONTACT_TYPES = frozenset({"Crm::Contact::Individual", "Crm::Contact::Business"})
CONTACT_FIELDS = frozenset(
    {"type", "first_name", "middle_name", "last_name", "company_name", "job_title", "phones"}
)
PHONE_FIELDS = frozenset({"phone_type", "number", "country_code", "is_primary", "extension"})
NOTE_FIELDS = frozenset({"category_id", "note_type", "body", "pinned", "draft"})
#: the query parameters each endpoint takes (the search fields of Redtail's contact search, and paging)
SEARCH_PARAMS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "phone_number",
        "email",
        "tax_id",
        "account_number",
        "updated_since",
        "page",
    }
)
PAGE_PARAMS = frozenset({"page"})
ACTIVITY_FIELDS = frozenset(
    {
        "subject",
        "description",
        "start_date",
        "end_date",
        "activity_code_id",
        "category_id",
        "completed",
        "repeats",
    }
)


def invalid(*messages: str) -> HttpError:
    """A 422 naming what is wrong, in full sentences."""
    return HttpError(422, "; ".join(messages), extra={"errors": list(messages)})


def json_body(request: FakeRequest) -> JsonDict:
    """A write's body: JSON (a 415 otherwise) holding an object."""
    if "application/json" not in request.headers.get("content-type", ""):
        raise HttpError(415, "Content-Type must be application/json")
    return request.json_object()


def strict(allowed: frozenset[str], handler: Handler) -> Handler:
    """The handler behind a check that the request names only query parameters the endpoint takes."""

    async def checked(request: FakeRequest) -> Response:
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            raise HttpError(400, f"Unknown parameters: {', '.join(unknown)}")
        return await handler(request)

    return checked


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _iso_or_none(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class FakeRedtail(FakeCrm):
    crm_name: ClassVar[str] = "Redtail"

    def __init__(self, *, per_page: int = 50) -> None:
        self.per_page = per_page
        super().__init__()

    # --- state ----------------------------------------------------------------------------------------------

    def init_state(self) -> None:
        #: the order of `GET /contacts/{id}/activities` (undocumented; tests try both)
        self.activities_order = "asc"
        #: whether `/authentication` names the user's and database's ids, and `search_basic` honours `include`
        #: (the published examples show the ids and the header; tests try an API without them too)
        self.auth_answer_ids = True
        self.honour_include = True
        self.api_key = API_KEY
        self.users: dict[tuple[int, str], JsonDict] = {}
        self.contacts: dict[int, JsonDict] = {}
        #: the database each contact and activity belongs to (kept beside the records: Redtail does not send it)
        self.contact_database: dict[int, int] = {}
        self.activity_database: dict[int, int] = {}
        self.phones: dict[int, list[JsonDict]] = {}
        self.activities: dict[int, JsonDict] = {}
        self.notes: dict[int, list[JsonDict]] = {}
        self.categories: list[JsonDict] = [
            {"id": 1, "name": "Client", "deleted": False},
            {"id": 2, "name": "Prospect", "deleted": False},
            {"id": 3, "name": "Service", "deleted": False},
            {"id": 4, "name": "Old category", "deleted": True},
        ]
        self.authentications = 0
        self.add_user(USERNAME, PASSWORD, first_name="Jordan", last_name="Lee")

    def add_user(
        self,
        username: str,
        password: str,
        *,
        first_name: str = "",
        last_name: str = "",
        database_id: int = DATABASE_ID,
    ) -> JsonDict:
        user = {
            "id": self.next_id("user", 70),
            "username": username,
            "password": password,
            "user_key": f"uk-{secrets.token_hex(12)}",
            "first_name": first_name,
            "last_name": last_name,
            "database_id": database_id,
        }
        with self._lock:
            self.users[(database_id, username.lower())] = user
        return user

    def reset_requests(self) -> None:
        """Forget the requests seen so far (a test counting the calls of one step)."""
        with self._lock:
            self.requests.clear()

    def set_password(self, username: str, password: str, *, database_id: int = DATABASE_ID) -> None:
        """A password change keeps the user key (Redtail: the user key does not change with the password)."""
        with self._lock:
            self.users[(database_id, username.lower())]["password"] = password

    def user(self, username: str = USERNAME, *, database_id: int = DATABASE_ID) -> JsonDict:
        with self._lock:
            return dict(self.users[(database_id, username.lower())])

    def user_key(self, username: str = USERNAME, *, database_id: int = DATABASE_ID) -> str:
        return str(self.user(username, database_id=database_id)["user_key"])

    def env(self) -> dict[str, str]:
        """The connector's settings pointing at this fake."""
        return {"REDTAIL_API_KEY": self.api_key, "REDTAIL_API_URL": self.api_url}

    @property
    def api_url(self) -> str:
        return self.base_url + API_PATH

    def add_contact(
        self,
        first_name: str,
        last_name: str,
        *,
        phones: list[str] | None = None,
        country_code: int = 1,
        middle_name: str = "",
        job_title: str = "",
        database_id: int = DATABASE_ID,
    ) -> JsonDict:
        """A contact as a Redtail user would have typed it (phone numbers kept exactly as given)."""
        contact_id = self.next_id("contact", 100)
        now = datetime.now(UTC).isoformat()
        contact = {
            "id": contact_id,
            "type": "Crm::Contact::Individual",
            "first_name": first_name,
            "middle_name": middle_name,
            "last_name": last_name,
            "full_name": " ".join(p for p in (first_name, middle_name, last_name) if p),
            "job_title": job_title,
            "created_at": now,
            "updated_at": now,
        }
        with self._lock:
            self.contacts[contact_id] = contact
            self.contact_database[contact_id] = database_id
            self.phones[contact_id] = [
                {
                    "id": self.next_id("phone", 900),
                    "phone_type": 1,
                    "number": number,
                    "country_code": country_code,
                    "is_primary": index == 0,
                }
                for index, number in enumerate(phones or [])
            ]
        return contact

    def add_activity(self, contact_id: int, subject: str, description: str = "") -> JsonDict:
        """An activity someone else logged against the contact (completed, no notes)."""
        activity_id = self.next_id("activity", 5000)
        now = datetime.now(UTC).isoformat()
        activity = {
            "id": activity_id,
            "subject": subject,
            "description": description,
            "start_date": now,
            "end_date": now,
            "activity_code_id": 3,
            "category_id": 1,
            "repeats": "never",
            "completed": True,
            "linked_contacts": [{"contact_id": contact_id}],
            "created_at": now,
            "updated_at": now,
        }
        with self._lock:
            self.activities[activity_id] = activity
            self.activity_database[activity_id] = self.contact_database[contact_id]
            self.notes[activity_id] = []
        return activity

    def activities_of(self, contact_id: int) -> list[JsonDict]:
        with self._lock:
            return [
                dict(a)
                for a in self.activities.values()
                if any(link["contact_id"] == contact_id for link in a["linked_contacts"])
            ]

    def activities_in(self, database_id: int = DATABASE_ID) -> list[JsonDict]:
        """Every activity of one database (firm), oldest first."""
        with self._lock:
            return [
                dict(a)
                for aid, a in sorted(self.activities.items())
                if self.activity_database[aid] == database_id
            ]

    # --- toolkit hooks --------------------------------------------------------------------------------------

    def routes(self) -> list[FakeRoute]:
        p = API_PATH
        none: frozenset[str] = frozenset()
        return [
            FakeRoute("GET", f"{p}/authentication", strict(none, self._authentication), auth=False),
            FakeRoute("GET", f"{p}/contacts/search_basic", strict(SEARCH_PARAMS, self._search_basic)),
            FakeRoute("POST", f"{p}/contacts", strict(none, self._create_contact)),
            FakeRoute("GET", f"{p}/contacts/{{id}}/phones", strict(none, self._contact_phones)),
            FakeRoute(
                "GET", f"{p}/contacts/{{id}}/activities", strict(PAGE_PARAMS, self._contact_activities)
            ),
            FakeRoute("GET", f"{p}/lists/categories", strict(none, self._categories)),
            FakeRoute("GET", f"{p}/lists/database_users", strict(none, self._database_users)),
            FakeRoute("POST", f"{p}/activities", strict(none, self._create_activity)),
            FakeRoute("GET", f"{p}/activities/{{id}}", strict(none, self._get_activity)),
            FakeRoute("PUT", f"{p}/activities/{{id}}", strict(none, self._update_activity)),
            FakeRoute("PATCH", f"{p}/activities/{{id}}", strict(none, self._update_activity)),
            FakeRoute("POST", f"{p}/activities/{{id}}/notes", strict(none, self._create_note)),
            FakeRoute("GET", f"{p}/activities/{{id}}/notes", strict(none, self._list_notes)),
        ]

    def _user_of(self, authorization: str) -> JsonDict | None:
        scheme, _, encoded = authorization.strip().partition(" ")
        if not encoded:  # the bare b64(apikey:userkey) the reference sends, no scheme
            scheme, encoded = "userkeyauth", scheme
        if scheme.lower() == "userkeyauth":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            key, sep, user_key = decoded.partition(":")
            if not sep or not same_secret(key, self.api_key):
                return None
            with self._lock:
                return next((u for u in self.users.values() if same_secret(user_key, u["user_key"])), None)
        if scheme.lower() == "basic":
            return self._basic_user(authorization)
        return None

    def _basic_user(self, authorization: str) -> JsonDict | None:
        """`Basic b64(apikey:username:password)`; the password may itself hold colons."""
        pair = basic_credentials(authorization)
        if pair is None:
            return None
        key, rest = pair
        username, sep, password = rest.partition(":")
        if not sep or not same_secret(key, self.api_key):
            return None
        with self._lock:
            named = [u for (_, name), u in self.users.items() if name == username.lower()]
        return next((u for u in named if same_secret(password, str(u["password"]))), None)

    def _database(self, request: FakeRequest) -> int:
        """The database of the caller (authenticate() has already accepted the credentials)."""
        user = self._user_of(request.headers.get("authorization", ""))
        assert user is not None
        return int(user["database_id"])

    def authenticate(self, request: FakeRequest) -> bool:
        return self._user_of(request.headers.get("authorization", "")) is not None

    def credential_of(self, request: FakeRequest) -> str:
        user = self._user_of(request.headers.get("authorization", ""))
        return f"user-{user['id']}" if user is not None else "anonymous"

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        if "errors" in extra:
            return {"errors": extra["errors"]}
        return {"error": message}

    # --- handlers -------------------------------------------------------------------------------------------

    async def _authentication(self, request: FakeRequest) -> Response:
        with self._lock:
            self.authentications += 1
        user = self._basic_user(request.headers.get("authorization", ""))
        if user is None:
            return self.error(401, "Invalid credentials")
        body: JsonDict = {"user_key": user["user_key"]}
        if self.auth_answer_ids:
            body |= {"redtail_user_id": user["id"], "redtail_database_id": user["database_id"]}
        return self.json({"authenticated_user": body})

    def _page(self, items: list[JsonDict], request: FakeRequest) -> tuple[list[JsonDict], JsonDict]:
        page = request.int_param("page", 1, minimum=1) or 1
        total = len(items)
        pages = max(1, -(-total // self.per_page))
        chunk = items[(page - 1) * self.per_page : page * self.per_page]
        return chunk, {"total_records": total, "total_pages": pages}

    async def _search_basic(self, request: FakeRequest) -> Response:
        phone = request.query.get("phone_number")
        name = request.query.get("name")
        database = self._database(request)
        if phone is not None:
            wanted = _digits(phone)
            if not wanted:
                raise invalid("Phone number must contain digits")
            with self._lock:
                found = [
                    dict(c)
                    for cid, c in sorted(self.contacts.items())
                    if self.contact_database[cid] == database
                    and any(wanted in _digits(str(p["number"])) for p in self.phones.get(cid, []))
                ]
        elif name is not None and name.strip():
            term = name.strip().casefold()
            with self._lock:
                found = [
                    dict(c)
                    for cid, c in sorted(self.contacts.items())
                    if self.contact_database[cid] == database and term in c["full_name"].casefold()
                ]
        else:
            raise invalid("A search term is required")
        chunk, meta = self._page(found, request)
        if self.honour_include and "phones" in request.headers.get("include", ""):
            with self._lock:
                chunk = [{**c, "phones": [dict(p) for p in self.phones.get(c["id"], [])]} for c in chunk]
        return self.json({"contacts": chunk, "meta": meta})

    def _contact_id(self, request: FakeRequest) -> int:
        contact_id = request.path_int("id")
        database = self._database(request)
        with self._lock:
            if self.contact_database.get(contact_id) != database:
                raise not_found("Contact not found")
        return contact_id

    async def _contact_phones(self, request: FakeRequest) -> Response:
        contact_id = self._contact_id(request)
        with self._lock:
            return self.json({"phones": [dict(p) for p in self.phones.get(contact_id, [])]})

    async def _contact_activities(self, request: FakeRequest) -> Response:
        contact_id = self._contact_id(request)
        found = sorted(
            self.activities_of(contact_id),
            key=lambda a: int(a["id"]),
            reverse=self.activities_order == "desc",
        )
        chunk, meta = self._page([self._activity_view(a, include=False) for a in found], request)
        return self.json({"activities": chunk, "meta": meta})

    async def _create_contact(self, request: FakeRequest) -> Response:
        body = json_body(request)
        problems: list[str] = []
        unknown = set(body) - CONTACT_FIELDS
        unknown |= {k for p in body.get("phones") or [] if isinstance(p, dict) for k in set(p) - PHONE_FIELDS}
        if unknown:
            problems.append(f"Unknown attributes: {', '.join(sorted(unknown))}")
        kind = body.get("type")
        if kind not in CONTACT_TYPES:
            problems.append("Type is not included in the list")
        first, last = body.get("first_name"), body.get("last_name")
        if kind == "Crm::Contact::Individual" and not (isinstance(last, str) and last.strip()):
            problems.append("Last name can't be blank")
        phones = body.get("phones", [])
        if not isinstance(phones, list):
            problems.append("Phones must be a list")
            phones = []
        for phone in phones:
            if not isinstance(phone, dict) or not isinstance(phone.get("number"), str) or not phone["number"]:
                problems.append("Phone number can't be blank")
            elif not isinstance(phone.get("phone_type"), int):
                problems.append("Phone type is not a number")
            elif "country_code" in phone and not isinstance(phone["country_code"], int):
                problems.append("Phone country code is not a number")
        if problems:
            raise invalid(*problems)
        contact = self.add_contact(str(first or ""), str(last), database_id=self._database(request))
        with self._lock:
            self.phones[contact["id"]] = [
                {
                    "id": self.next_id("phone", 900),
                    "phone_type": p["phone_type"],
                    "number": p["number"],
                    "country_code": p.get("country_code", 1),
                    "is_primary": i == 0,
                }
                for i, p in enumerate(phones)
            ]
        return self.json({"contact": dict(contact)}, status=201)

    async def _database_users(self, request: FakeRequest) -> Response:
        """The users of the caller's database (never their passwords or user keys)."""
        database = self._database(request)
        with self._lock:
            users = [
                {k: u[k] for k in ("id", "username", "first_name", "last_name", "database_id") if k in u}
                for (db, _name), u in sorted(self.users.items(), key=lambda item: int(item[1]["id"]))
                if db == database
            ]
        return self.json({"database_users": users})

    async def _categories(self, request: FakeRequest) -> Response:
        with self._lock:
            return self.json({"categories": [dict(c) for c in self.categories]})

    def _check_activity(self, body: JsonDict, database: int, *, creating: bool) -> list[str]:
        problems: list[str] = []
        unknown = set(body) - ACTIVITY_FIELDS - {"linked_contacts", "attendees"}
        if unknown:
            problems.append(f"Unknown attributes: {', '.join(sorted(unknown))}")
        subject = body.get("subject")
        if (creating or "subject" in body) and not (isinstance(subject, str) and subject.strip()):
            problems.append("Subject can't be blank")
        for field in ("start_date", "end_date"):
            if (creating or field in body) and _iso_or_none(body.get(field)) is None:
                problems.append(f"{field.replace('_', ' ').capitalize()} is not a valid date")
        start, end = _iso_or_none(body.get("start_date")), _iso_or_none(body.get("end_date"))
        if start and end and end < start:
            problems.append("End date must be after the start date")
        if "description" in body and not isinstance(body["description"], str):
            problems.append("Description must be text")
        for field in ("activity_code_id", "category_id"):
            if field in body and not (isinstance(body[field], int) and not isinstance(body[field], bool)):
                problems.append(f"{field} is not a number")
        category = body.get("category_id")
        if isinstance(category, int) and not any(
            c["id"] == category and not c["deleted"] for c in self.categories
        ):
            problems.append("Category does not exist")
        if "completed" in body and not isinstance(body["completed"], bool):
            problems.append("Completed must be true or false")
        if "linked_contacts" in body:
            links = body["linked_contacts"]
            if not isinstance(links, list) or not all(
                isinstance(link, dict) and self.contact_database.get(link.get("contact_id")) == database
                for link in links
            ):
                problems.append("Linked contacts must name existing contacts")
        if "attendees" in body:
            users = {u["id"] for u in self.users.values() if u["database_id"] == database}
            attendees = body["attendees"]
            if not isinstance(attendees, list) or not all(
                isinstance(a, dict)
                and a.get("type") == "Crm::Activity::Attendee::User"
                and a.get("user_id") in users
                for a in attendees
            ):
                problems.append("Attendees must name users of this database")
        return problems

    async def _create_activity(self, request: FakeRequest) -> Response:
        body = json_body(request)
        database = self._database(request)
        with self._lock:
            problems = self._check_activity(body, database, creating=True)
            if problems:
                raise invalid(*problems)
            activity_id = self.next_id("activity", 5000)
            now = datetime.now(UTC).isoformat()
            activity: JsonDict = {
                "id": activity_id,
                "subject": body["subject"],
                "description": body.get("description") or "",
                "start_date": body["start_date"],
                "end_date": body["end_date"],
                "activity_code_id": body.get("activity_code_id"),
                "category_id": body.get("category_id"),
                "repeats": body.get("repeats", "never"),
                "completed": False,
                "linked_contacts": [
                    {"contact_id": link["contact_id"]} for link in body.get("linked_contacts", [])
                ],
                "attendees": [
                    {"type": a["type"], "user_id": a["user_id"]} for a in body.get("attendees", [])
                ],
                "created_at": now,
                "updated_at": now,
            }
            self.activities[activity_id] = activity
            self.activity_database[activity_id] = database
            self.notes[activity_id] = []
            view = self._activity_view(activity, include=False)
        return self.json({"activity": view}, status=201)

    def _activity(self, request: FakeRequest) -> JsonDict:
        activity_id = request.path_int("id")
        activity = self.activities.get(activity_id)
        if activity is None or self.activity_database[activity_id] != self._database(request):
            raise not_found("Activity not found")
        return activity

    def _activity_view(self, activity: JsonDict, *, include: bool) -> JsonDict:
        view = {k: v for k, v in activity.items() if k != "linked_contacts"}
        if include:
            view["linked_contacts"] = [
                {
                    "contact_id": link["contact_id"],
                    "first_name": self.contacts[link["contact_id"]]["first_name"],
                    "last_name": self.contacts[link["contact_id"]]["last_name"],
                }
                for link in activity["linked_contacts"]
            ]
        return view

    async def _get_activity(self, request: FakeRequest) -> Response:
        include = "linked_contacts" in request.headers.get("include", "")
        with self._lock:
            return self.json({"activity": self._activity_view(self._activity(request), include=include)})

    async def _update_activity(self, request: FakeRequest) -> Response:
        body = json_body(request)
        with self._lock:
            activity = self._activity(request)
            problems = self._check_activity(body, self.activity_database[activity["id"]], creating=False)
            if problems:
                raise invalid(*problems)
            for field in ACTIVITY_FIELDS & set(body):
                activity[field] = body[field]
            if "linked_contacts" in body:
                activity["linked_contacts"] = [
                    {"contact_id": link["contact_id"]} for link in body["linked_contacts"]
                ]
            activity["updated_at"] = datetime.now(UTC).isoformat()
            view = self._activity_view(activity, include=False)
        return self.json({"activity": view})

    async def _create_note(self, request: FakeRequest) -> Response:
        body = json_body(request)
        with self._lock:
            activity = self._activity(request)
            problems = [f"Unknown attributes: {k}" for k in sorted(set(body) - NOTE_FIELDS)]
            if not isinstance(body.get("body"), str) or not body["body"].strip():
                problems.append("Body can't be blank")
            if "note_type" in body and not isinstance(body["note_type"], int):
                problems.append("Note type is not a number")
            if problems:
                raise invalid(*problems)
            note = {
                "id": self.next_id("note", 7000),
                "activity_id": activity["id"],
                "category_id": body.get("category_id"),
                "note_type": body.get("note_type", 1),
                "body": body["body"],
            }
            self.notes[activity["id"]].append(note)
        return self.json({"note": dict(note)}, status=201)

    async def _list_notes(self, request: FakeRequest) -> Response:
        with self._lock:
            activity = self._activity(request)
            return self.json({"notes": [dict(n) for n in self.notes[activity["id"]]]})

"""A strict REST CRM ("Ledger CRM") shaped the way the reference's proxy sample expects a CRM to be, for
`proxysample.json`: our own configuration in the reference's format that uses each feature of it once.

Strict as a real API: `Authorization: Basic base64(<key>)` (the key alone, no `:`) plus the connector's
`X-Secret-Key` and `Accept: application/json` on every call; a POST, PUT or PATCH without a JSON object body is
refused (415), as many APIs refuse a bodyless write; types are checked (422); a phone search takes only E.164
and a two-letter country. Everything lives in memory; tests read it through the accessors at the end.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar

from starlette.responses import Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    JsonDict,
    bad_request,
    not_found,
)

PERSON_TYPES = ("Contact", "Lead")
#: kind_id 3 is a call, 4 a message
ENTRY_KINDS = (3, 4)
_ENTRY_TEXT = ("title", "text", "from", "until")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class FakeLedgerCrm(FakeCrm):
    """Ledger CRM: `/session`, `/people`, `/entries`, `/staff`, `/plan`."""

    crm_name: ClassVar[str] = "Ledger CRM"
    default_key = "ledger-key-one"
    secret = "ledger-connector-secret"

    def init_state(self) -> None:
        #: api key -> login
        self.keys: dict[str, str] = {self.default_key: "dana.k"}
        self.people: dict[str, JsonDict] = {}
        self.entries: dict[int, JsonDict] = {}
        self.closed_sessions = 0

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        return {"fault": {"code": status, "text": message, **extra}}

    def authenticate(self, request: FakeRequest) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            key = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            scheme == "Basic"
            and key in self.keys
            and request.headers.get("x-secret-key") == self.secret
            and request.headers.get("accept") == "application/json"
        )

    def credential_of(self, request: FakeRequest) -> str:
        return request.headers.get("authorization", "")

    def routes(self) -> list[FakeRoute]:
        return [
            FakeRoute("GET", "/session", self._session),
            FakeRoute("POST", "/session/close", self._close),
            FakeRoute("GET", "/people", self._find_people),
            FakeRoute("GET", "/people/search", self._search_people),
            FakeRoute("POST", "/people", self._create_person),
            FakeRoute("POST", "/entries", self._create_entry),
            FakeRoute("GET", "/entries/{id}", self._get_entry),
            FakeRoute("PUT", "/entries/{id}", self._update_entry),
            FakeRoute("PATCH", "/entries/{id}/outcome", self._set_outcome),
            FakeRoute("GET", "/staff", self._staff),
            FakeRoute("GET", "/plan/{user}", self._plan),
        ]

    # --- helpers ---------------------------------------------------------------------------------------------

    @staticmethod
    def _body(request: FakeRequest) -> JsonDict:
        """A write's JSON object body; none at all is a 415, as the API answers a bodyless write."""
        if request.json is None:
            raise HttpError(415, "a JSON body is required")
        return request.json_object()

    def _entry(self, request: FakeRequest) -> JsonDict:
        with self._lock:
            entry = self.entries.get(request.path_int("id"))
        if entry is None:
            raise not_found("No such entry")
        return entry

    # --- handlers --------------------------------------------------------------------------------------------

    async def _session(self, request: FakeRequest) -> Response:
        return self.json(
            {
                "account": {"login": "dana.k", "display": "Dana Kim", "tz": "Europe/Berlin"},
                "greeting": "Welcome back to Ledger",
                "region": "eu",
            }
        )

    async def _close(self, request: FakeRequest) -> Response:
        self._body(request)
        with self._lock:
            self.closed_sessions += 1
        return self.json({"closed": True})

    async def _find_people(self, request: FakeRequest) -> Response:
        tel, country = request.query.get("tel", ""), request.query.get("country", "")
        if not tel.startswith("+") or len(_digits(tel)) < 8:
            raise bad_request("tel must be E.164")
        if len(country) != 2 or not country.isalpha():
            raise bad_request("country must be a two-letter region")
        with self._lock:
            found = [dict(p) for p in self.people.values() if _digits(p["phone"]) == _digits(tel)]
        return self.json({"people": found})

    async def _search_people(self, request: FakeRequest) -> Response:
        q = request.query.get("q", "")
        if len(q) < 2:
            raise bad_request("q must be at least 2 characters")
        with self._lock:
            found = [dict(p) for p in self.people.values() if q.lower() in p["full_name"].lower()]
        return self.json(found)  # this search answers a bare list

    async def _create_person(self, request: FakeRequest) -> Response:
        body = self._body(request)
        if not isinstance(body.get("full_name"), str) or not body["full_name"].strip():
            raise HttpError(422, "full_name is required")
        if body.get("type") not in PERSON_TYPES:
            raise HttpError(422, "type must be Contact or Lead")
        if not isinstance(body.get("phone"), str) or not _digits(body["phone"]):
            raise HttpError(422, "phone is required")
        person = self.add_person(body["full_name"], body["phone"], body["type"])
        return self.json(person, status=201)

    async def _create_entry(self, request: FakeRequest) -> Response:
        body = self._body(request)
        for name in _ENTRY_TEXT:
            if not isinstance(body.get(name), str):
                raise HttpError(422, f"{name} must be a string")
        if body.get("kind_id") not in ENTRY_KINDS:
            raise HttpError(422, "kind_id must be 3 or 4")
        links = body.get("links")
        if not isinstance(links, list) or not links:
            raise HttpError(422, "links must name a person")
        with self._lock:
            if any(not isinstance(link, dict) or link.get("person") not in self.people for link in links):
                raise HttpError(422, "links must name existing people")
        for name in ("seconds", "legs"):
            if name in body and (not isinstance(body[name], int) or isinstance(body[name], bool)):
                raise HttpError(422, f"{name} must be an integer")
        if "automatic" in body and not isinstance(body["automatic"], bool):
            raise HttpError(422, "automatic must be true or false")
        if "tags" in body and not all(isinstance(t, str) for t in body["tags"]):
            raise HttpError(422, "tags must be strings")
        entry_id = self.next_id("entry", start=700)
        entry = {"id": entry_id, "memo": "", "outcome": None, **body}
        with self._lock:
            self.entries[entry_id] = entry
        return self.json({"entry": entry}, status=201)

    async def _get_entry(self, request: FakeRequest) -> Response:
        if request.headers.get("x-expand") != "links":
            raise bad_request("X-Expand: links is required")
        return self.json({"entry": self._entry(request)})

    async def _update_entry(self, request: FakeRequest) -> Response:
        body = self._body(request)
        entry = self._entry(request)
        unknown = set(body) - set(_ENTRY_TEXT)
        if unknown:
            raise HttpError(422, f"unknown fields: {', '.join(sorted(unknown))}")
        if not all(isinstance(v, str) for v in body.values()):
            raise HttpError(422, "fields must be strings")
        with self._lock:
            entry.update(body)
        return self.json({"entry": entry})

    async def _set_outcome(self, request: FakeRequest) -> Response:
        body = self._body(request)
        entry = self._entry(request)
        if not isinstance(body.get("outcome"), str) or not body["outcome"]:
            raise HttpError(422, "outcome is required")
        with self._lock:
            entry["outcome"] = body["outcome"]
        return self.json({"entry": entry})

    async def _staff(self, request: FakeRequest) -> Response:
        if request.query.get("viewer") not in self.keys.values():
            raise HttpError(403, "viewer must be a user of this account")
        staff = [
            {"login": "dana.k", "profile": {"display": "Dana Kim"}, "mail": "dana@ledger.example"},
            {"login": "eli.m", "profile": {"display": "Eli Moss"}, "mail": "eli@ledger.example"},
        ]
        return self.json({"staff": staff})

    async def _plan(self, request: FakeRequest) -> Response:
        return self.json({"ok": True, "tier": "Team", "detail": f"plan of {request.path_params['user']}"})

    # --- what tests read and seed ----------------------------------------------------------------------------

    def add_person(self, name: str, phone: str, kind: str = "Contact", org: str | None = None) -> JsonDict:
        person_id = f"p{self.next_id('person')}"
        person: JsonDict = {
            "pid": person_id,
            "full_name": name,
            "type": kind,
            "phone": phone,
            "createdDate": "2026-02-01T08:30:00Z",
            "additionalInfo": {"owner": "dana.k"},
        }
        if org:
            person["org"] = {"title": org}
        with self._lock:
            self.people[person_id] = person
        return dict(person)

    def entry(self, entry_id: int | str) -> JsonDict:
        with self._lock:
            return self.snapshot(self.entries[int(entry_id)])

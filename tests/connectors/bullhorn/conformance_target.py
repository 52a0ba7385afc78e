"""Bullhorn as a conformance-suite target: the connector against FakeBullhorn, read through the fake's state."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from tests.connectors.bullhorn.fake_bullhorn import CLIENT_ID, REDIRECT_URI, FakeBullhorn
from tests.connectors.conformance.target import (
    CrmRecord,
    FakeCrmTarget,
    Operation,
    authorize_redirect,
    rc_account_headers,
    same_number_loosely,
)

_REST = "/rest91/rest-services/corp1a/"
#: operation -> (method, path prefix on the fake)
_BULLHORN_REQUESTS: dict[Operation, tuple[str, str]] = {
    "find_contact": ("POST", _REST + "search/"),
    "create_contact": ("PUT", _REST + "entity/"),
    "create_call_log": ("PUT", _REST + "entity/Note"),
    "get_call_log": ("GET", _REST + "entity/Note/"),
    "update_call_log": ("POST", _REST + "entity/Note/"),
    "create_message_log": ("PUT", _REST + "entity/Note"),
    "update_message_log": ("POST", _REST + "entity/Note/"),
}
_TYPE_OF_ENTITY = {"Candidate": "Candidate", "ClientContact": "Contact", "Lead": "Lead"}
_ENTITY_OF_TYPE = {v: k for k, v in _TYPE_OF_ENTITY.items()}


class BullhornTarget(FakeCrmTarget):
    """Bullhorn (OAuth through the east data centre) against FakeBullhorn."""

    __test__ = False
    platform: ClassVar[str] = "bullhorn"
    backends: ClassVar[tuple[str, ...]] = ("sqlite",)

    fake: FakeBullhorn
    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]] = {
        op: [route] for op, route in _BULLHORN_REQUESTS.items()
    }

    #: the reference (src/connectors/bullhorn/index.ts): findContact searches ClientContact, Candidate and
    #: Lead (its account data, comment actions and statuses, cached a day); createContact one PUT (a client
    #: contact also its placeholder company); createCallLog one PUT of the Note
    reference_calls: ClassVar[dict[str, int]] = {
        "lookup_hit": 3,
        "lookup_miss": 3,
        "create_contact": 1,
        "create_call_log": 1,
    }
    costlier_than_reference: ClassVar[dict[str, str]] = {
        "lookup_hit": "the corporation's comment actions are read once an hour per process (the reference "
        "caches them a day in its database)",
        "lookup_miss": "the same comment-action read",
    }

    def __init__(self) -> None:
        super().__init__(FakeBullhorn())

    def requests_per_fault(self, operation: Operation, status: int | None) -> int:
        """A lookup sends three searches at once: each one must fail for the lookup to see the fault. A 401
        ends a REST session: the connector opens a new one and sends the request once more, so a refusal
        that stands (the user's access is gone) is the 401 answered to both."""
        searches = 3 if operation == "find_contact" else 1
        return searches * (2 if status == 401 else 1)

    def server_env(self) -> dict[str, str]:
        return self.fake.env()

    async def login(self, http: httpx.AsyncClient) -> str:
        redirect = await authorize_redirect(
            f"{self.fake.base_url}/auth-east/oauth/authorize",
            {
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "response_type": "code",
                "state": "platform=bullhorn",
                "username": "agent.east",
            },
        )
        params = {
            "callbackUri": redirect,
            "hostname": "app.bullhornstaffing.com",
            "username": "agent.east",
            "rcAccountId": rc_account_headers()["rc-account-id"],
        }
        response = await http.get("/oauth-callback", params=params)
        assert response.status_code == 200, response.text
        token: str = response.json()["jwtToken"]
        assert token, response.text
        return token

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        entity = _ENTITY_OF_TYPE.get(contact_type or "Candidate", "Candidate")
        return str(self.fake.add_person(entity, name, stored_phone)["id"])

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        return [
            CrmRecord(str(r["id"]), kind=_TYPE_OF_ENTITY[entity], text=str(r.get("name") or ""), raw=r)
            for entity, r in sorted(self.fake.people(), key=lambda er: int(er[1]["id"]))
            if any(
                same_number_loosely(str(r.get(f) or ""), e164)
                for f in ("phone", "mobile", "phone2", "phone3")
            )
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        notes = [
            n for n in self.fake.notes() if str((n.get("personReference") or {}).get("id")) == contact_id
        ]
        notes.sort(key=lambda n: int(n["id"]))
        return [CrmRecord(str(n["id"]), text=str(n.get("comments") or ""), raw=n) for n in notes]

    def new_contact_submission(self, contact_type: str) -> dict[str, Any]:
        return {"status": "New Lead"}

    def dispositions(self, contact_id: str, contact_type: str = "") -> dict[str, Any] | None:
        return {"noteActions": "Left Message"}

"""The conformance suite's view of Redtail: FakeRedtail started once, the login as the client sends it."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from appconnect.connectors.phone import number_key
from tests.connectors.conformance.target import (
    CrmRecord,
    FakeCrmTarget,
    Operation,
    api_key_login,
    same_number_loosely,
)
from tests.connectors.redtail.fake_redtail import API_PATH, PASSWORD, USERNAME, FakeRedtail

#: operation -> (method, path prefix on the fake)
_REQUESTS: dict[Operation, tuple[str, str]] = {
    "find_contact": ("GET", f"{API_PATH}/contacts/search_basic"),
    "create_contact": ("POST", f"{API_PATH}/contacts"),
    "create_call_log": ("POST", f"{API_PATH}/activities"),
    "get_call_log": ("GET", f"{API_PATH}/activities/"),
    "update_call_log": ("PUT", f"{API_PATH}/activities/"),
    "create_message_log": ("POST", f"{API_PATH}/activities"),
    "update_message_log": ("PATCH", f"{API_PATH}/activities/"),
}


class RedtailTarget(FakeCrmTarget):
    """Redtail (API key + username/password) against FakeRedtail."""

    __test__ = False
    platform: ClassVar[str] = "redtail"
    backends: ClassVar[tuple[str, ...]] = ("sqlite",)

    fake: FakeRedtail
    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]] = {
        op: [route] for op, route in _REQUESTS.items()
    }

    #: the reference (src/connectors/redtail/index.ts): findContact sends contacts/search_basic and
    #: lists/categories; createContact one POST; createCallLog the activity, its note, the PUT that completes
    #: it and lists/categories again (to refresh the user's default-category options)
    reference_calls: ClassVar[dict[str, int]] = {
        "lookup_hit": 2,
        "lookup_miss": 2,
        "create_contact": 1,
        "create_call_log": 4,
    }

    def __init__(self) -> None:
        super().__init__(FakeRedtail())

    def server_env(self) -> dict[str, str]:
        return self.fake.env()

    async def login(self, http: httpx.AsyncClient) -> str:
        """The Redtail auth page has no API key field: username and password go in additionalInfo."""
        return await api_key_login(
            http,
            self.platform,
            "",
            hostname="crm.redtailtechnology.com",
            additional_info={"username": USERNAME, "password": PASSWORD},
        )

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        words = name.split()
        key = number_key(stored_phone) if stored_phone.strip().startswith("+") else None
        contact = self.fake.add_contact(
            " ".join(words[:-1]),
            words[-1] if words else "",
            phones=[stored_phone],
            country_code=key[0] if key else 1,
        )
        return str(contact["id"])

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        contacts = self.fake.snapshot(self.fake.contacts)
        phones = self.fake.snapshot(self.fake.phones)
        return [
            CrmRecord(str(c["id"]), text=str(c["full_name"]), raw=c)
            for cid, c in sorted(contacts.items())
            if any(same_number_loosely(str(p["number"]), e164) for p in phones.get(cid, []))
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        try:
            wanted = int(contact_id)
        except ValueError:
            return []
        notes = self.fake.snapshot(self.fake.notes)
        found = sorted(self.fake.activities_of(wanted), key=lambda a: int(a["id"]))
        return [
            CrmRecord(
                str(a["id"]),
                text="\n".join(
                    [str(a.get("subject") or ""), str(a.get("description") or "")]
                    + [str(n["body"]) for n in notes.get(a["id"], [])]
                ),
                raw=a,
            )
            for a in found
        ]

    def call_log_submission(self) -> dict[str, Any]:
        return {"category": 3}

    def dispositions(self, *_contact: Any) -> dict[str, Any]:
        """The call-log category is Redtail's disposition."""
        return {"category": 1}

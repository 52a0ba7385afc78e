"""Clio as a conformance-suite target: the connector against FakeClio, read through the fake's own state."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from tests.connectors.clio.fake_clio import FakeClio
from tests.connectors.conformance.target import (
    CrmRecord,
    FakeCrmTarget,
    Operation,
    authorize_redirect,
    oauth_callback_login,
    same_number_loosely,
)

#: operation -> (method, path prefix on the fake)
_CLIO_REQUESTS: dict[Operation, tuple[str, str]] = {
    "find_contact": ("GET", "/api/v4/contacts.json"),
    "create_contact": ("POST", "/api/v4/contacts.json"),
    "create_call_log": ("POST", "/api/v4/communications.json"),
    "get_call_log": ("GET", "/api/v4/communications/"),
    "update_call_log": ("PATCH", "/api/v4/communications/"),
    "create_message_log": ("POST", "/api/v4/communications.json"),
    "update_message_log": ("PATCH", "/api/v4/communications/"),
}


class ClioTarget(FakeCrmTarget):
    """Clio (OAuth, US region) against FakeClio."""

    __test__ = False
    platform: ClassVar[str] = "clio"
    backends: ClassVar[tuple[str, ...]] = ("sqlite",)

    fake: FakeClio
    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]] = {
        op: [route] for op, route in _CLIO_REQUESTS.items()
    }

    #: the reference (src/connectors/clio/index.ts): findContact sends one search (the E.164 number; one
    #: more per overridingFormat pattern), then per hit its matters and related matters; createContact one
    #: POST; createCallLog the communication and its time entry
    reference_calls: ClassVar[dict[str, int]] = {
        "lookup_hit": 3,
        "lookup_miss": 1,
        "create_contact": 1,
        "create_call_log": 2,
    }

    def __init__(self) -> None:
        super().__init__(FakeClio())

    def reset(self) -> None:
        """A new Clio account per test: the connector's memory of an account's spelling starts afresh."""
        super().reset()
        self.fake.user["id"] = self.fake.next_id("user", 345678)

    def server_env(self) -> dict[str, str]:
        return self.fake.env()

    async def login(self, http: httpx.AsyncClient) -> str:
        redirect = await authorize_redirect(
            f"{self.fake.base_url}/oauth/authorize",
            {
                "client_id": self.fake.clients[""][0],
                "redirect_uri": self.fake.redirect_uri,
                "response_type": "code",
                "state": "platform=clio",
            },
        )
        return await oauth_callback_login(http, redirect, hostname="app.clio.com")

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        return str(self.fake.add_contact(name, [stored_phone], type=contact_type or "Person")["id"])

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        contacts = self.fake.snapshot(self.fake.contacts)
        return [
            CrmRecord(str(c["id"]), kind=str(c["type"]), text=str(c["name"]), raw=c)
            for c in sorted(contacts.values(), key=lambda c: int(c["id"]))
            if any(same_number_loosely(str(p.get("number", "")), e164) for p in c.get("phone_numbers") or [])
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        communications = self.fake.snapshot(self.fake.communications)
        found = [
            c
            for c in communications.values()
            if any(p["type"] != "User" and str(p["id"]) == contact_id for p in c["senders"] + c["receivers"])
        ]
        found.sort(key=lambda c: int(c["id"]))
        return [
            CrmRecord(str(c["id"]), text=f"{c.get('subject') or ''}\n{c.get('body') or ''}", raw=c)
            for c in found
        ]

    def dispositions(self, contact_id: str, contact_type: str = "") -> dict[str, Any] | None:
        matter = self.fake.add_matter("Lease dispute", client_id=int(contact_id))
        return {"matters": matter["id"]}

"""The conformance suite's adapter for a declarative connector: `relay_crm.json` against FakeRelayCrm.

The connector is only configuration: the server loads it from `APPCONNECT_DECLARATIVE_CONNECTORS`, and
`RELAYCRM_BASE_URL` points it at the fake. A lookup searches two spellings (E.164 digits, national digits),
so a lookup fault reaches both searches (not a 429: the two run together and would take each other's).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import httpx

from tests.connectors.conformance.target import (
    CrmRecord,
    FakeCrmTarget,
    Operation,
    api_key_login,
    same_number_loosely,
)
from tests.connectors.declarative.fake_rest_crm import FakeRelayCrm

CONFIG = Path(__file__).with_name("relay_crm.json")
_SPELLINGS = 2


class DeclarativeRelayTarget(FakeCrmTarget):
    """The declarative `relayCrm` platform (API key in `X-Api-Key`) against FakeRelayCrm."""

    __test__ = False
    platform: ClassVar[str] = "relayCrm"
    backends: ClassVar[tuple[str, ...]] = ("sqlite", "postgres")
    unfindable_stored_forms: ClassVar[dict[str, str]] = {
        "extension": "Relay CRM compares all stored digits; the extension's digits are unknown to a lookup",
    }
    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]] = {
        "find_contact": [("GET", "/v1/contacts")],
        "create_contact": [("POST", "/v1/contacts")],
        "create_call_log": [("POST", "/v1/activities")],
        "get_call_log": [("GET", "/v1/activities/")],
        "update_call_log": [("PUT", "/v1/activities/")],
        "create_message_log": [("POST", "/v1/activities")],
        "update_message_log": [("PUT", "/v1/activities/")],
    }
    fake: FakeRelayCrm

    def __init__(self) -> None:
        super().__init__(FakeRelayCrm())

    def requests_per_fault(self, operation: Operation, status: int | None) -> int:
        return _SPELLINGS if operation == "find_contact" and status != 429 else 1

    def server_env(self) -> dict[str, str]:
        return {
            "APPCONNECT_DECLARATIVE_CONNECTORS": str(CONFIG),
            "RELAYCRM_BASE_URL": f"{self.fake.base_url}/v1",
        }

    async def login(self, http: httpx.AsyncClient) -> str:
        return await api_key_login(http, self.platform, self.fake.default_key)

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        return str(self.fake.add_contact(name, stored_phone, contact_type or "contact")["id"])

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        return [
            CrmRecord(c["id"], kind=c["kind"], text=c["name"], raw=c)
            for c in self.fake.all_contacts()
            if same_number_loosely(c["phone"], e164)
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        activities = sorted(self.fake.all_activities(), key=lambda a: int(a["id"].removeprefix("act-")))
        return [
            CrmRecord(
                a["id"],
                kind="call" if a["kind"] == "call" else "message",
                text="\n".join(a[f] for f in ("subject", "note", "description")),
                raw=a,
            )
            for a in activities
            if a["contact_id"] == contact_id
        ]

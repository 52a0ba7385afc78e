"""VinSolutions as a conformance-suite target: the connector against FakeVinSolutions, read from the fake's state.

A lookup searches two spellings (the national number and the E.164 digits), so a `find_contact` fault reaches
both. A call log is a call detail; an SMS conversation's day is a block in a lead's notes, written by the
lead's PUT, so `logs_for` counts a contact's call details plus each conversation block in its leads.
"""

from __future__ import annotations

import re
from typing import ClassVar

import httpx

from tests.connectors.conformance.target import (
    CrmRecord,
    FakeCrmTarget,
    Operation,
    api_key_login,
    same_number_loosely,
)
from tests.connectors.vinsolutions.fake_vinsolutions import DEALER_ID, USER_ID, FakeVinSolutions

#: operation -> [(method, path prefix, requests one fault must reach)]
_REQUESTS: dict[Operation, list[tuple[str, str, int]]] = {
    "find_contact": [("GET", "/gateway/v1/contact", 2)],
    "create_contact": [("POST", "/gateway/v1/contact", 1)],
    "create_call_log": [("POST", "/calldetails", 1)],
    "get_call_log": [("GET", "/calldetails/id/", 1)],
    "update_call_log": [("PATCH", "/calldetails/id/", 1)],
    "create_message_log": [("PUT", "/leads/id/", 1)],
    "update_message_log": [("PUT", "/leads/id/", 1)],
}
_BLOCK = re.compile(r"\[(rc-sms-[^\]\n]*)\]\n([\s\S]*?)\n\[/\1\]")


class VinSolutionsTarget(FakeCrmTarget):
    """VinSolutions (server-held client credentials; the login page names the dealer and the CRM user)."""

    __test__ = False
    platform: ClassVar[str] = "vinsolutions"
    backends: ClassVar[tuple[str, ...]] = ("sqlite",)
    unfindable_stored_forms: ClassVar[dict[str, str]] = {
        "extension": "VinSolutions' phone search compares all the stored digits; an extension's digits are unknown",
    }
    #: the reference (`src/connectors/vinsolutions/index.ts`): findContact searches four spellings one after
    #: another, then the leads of each hit; createContact one POST; createCallLog one POST /calldetails
    reference_calls: ClassVar[dict[str, int]] = {
        "lookup_hit": 5,
        "lookup_miss": 4,
        "create_contact": 1,
        "create_call_log": 1,
    }

    fake: FakeVinSolutions
    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]] = {
        op: [(m, p) for m, p, _n in routes] for op, routes in _REQUESTS.items()
    }

    def __init__(self) -> None:
        super().__init__(FakeVinSolutions())

    def requests_per_fault(self, operation: Operation, status: int | None) -> int:
        return 1 if status == 429 else _REQUESTS[operation][0][2]

    def server_env(self) -> dict[str, str]:
        return self.fake.env()

    async def login(self, http: httpx.AsyncClient) -> str:
        return await api_key_login(
            http,
            self.platform,
            "",
            hostname="vinsolutions.app.coxautoinc.com",
            additional_info={"dealerId": str(DEALER_ID), "crmUserId": str(USER_ID)},
        )

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        first, _, last = name.partition(" ")
        return str(self.fake.add_contact(first, last or "Customer", [stored_phone])["ContactId"])

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        return [
            CrmRecord(str(c["ContactId"]), kind="contact", text=_name(c), raw=c)
            for c in self.fake.contacts_of(DEALER_ID)
            if any(same_number_loosely(p["Number"], e164) for p in c["ContactInformation"]["Phones"])
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        records = [
            CrmRecord(str(d["callDetailId"]), kind="call", text=str(d.get("transcriptFull") or ""), raw=d)
            for d in self.fake.call_details_of(DEALER_ID, int(contact_id))
        ]
        for lead in self.fake.leads_of(DEALER_ID, int(contact_id)):
            for block in _BLOCK.finditer(str(lead.get("notes") or "")):
                records.append(
                    CrmRecord(
                        f"{lead['leadId']}:{block.group(1)}", kind="message", text=block.group(2), raw=lead
                    )
                )
        return records


def _name(contact: dict[str, object]) -> str:
    info = contact["ContactInformation"]
    assert isinstance(info, dict)
    return f"{info['FirstName']} {info['LastName']}"

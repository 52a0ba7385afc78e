"""The conformance suite's adapter for Insightly: FakeInsightly started once, read in memory, faulted by path.

Operations map to the requests the connector sends: a lookup is many exact searches (every spelling, every
phone field, contacts and leads), so a `find_contact` fault is applied to all of them (Insightly's search being
down); a call or message log's record is the event (`POST /v3.1/Events`, then its links). `logs_for` counts the
events linked to the contact, and also any event not linked to anyone whose title names the contact: the
orphan a lost create answer leaves until the retry links it, so a second event made by a retry would count.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from appconnect.connectors.insightly.connector import insightly_terms
from appconnect.connectors.phone import any_same_number
from tests.connectors.conformance.target import (
    CrmRecord,
    FakeCrmTarget,
    Operation,
    api_key_login,
    same_number_loosely,
)
from tests.connectors.insightly.fake_insightly import FakeInsightly

#: searches of one lookup per path: the spellings of a US number (insightly_terms) x two phone fields. A
#: failure must reach whichever search runs first and its retries, so it is multiplied by this; a 429 is not
#: (the searches run four at a time: their retries would take one another's 429s and never get through)
_SEARCHES_PER_PATH = len(insightly_terms("+14155550100")) * 2
#: operation -> [(method, path prefix, fault multiplier)]
_REQUESTS: dict[Operation, list[tuple[str, str, int]]] = {
    "find_contact": [
        ("GET", "/v3.1/contacts/search", _SEARCHES_PER_PATH),
        ("GET", "/v3.1/leads/search", _SEARCHES_PER_PATH),
    ],
    "create_contact": [("POST", "/v3.1/contacts", 1), ("POST", "/v3.1/leads", 1)],
    "create_call_log": [("POST", "/v3.1/events", 1)],
    "get_call_log": [("GET", "/v3.1/events/", 1)],
    "update_call_log": [("PUT", "/v3.1/events", 1)],
    "create_message_log": [("POST", "/v3.1/events", 1)],
    "update_message_log": [("PUT", "/v3.1/events", 1)],
}


class InsightlyTarget(FakeCrmTarget):
    """Insightly (API key + pod URL) against FakeInsightly; the pod URL the client sends is the fake's."""

    __test__ = False
    platform: ClassVar[str] = "insightly"
    backends: ClassVar[tuple[str, ...]] = ("sqlite",)
    unfindable_stored_forms: ClassVar[dict[str, str]] = {
        "extension": "Insightly's search matches the stored text exactly; the extension's digits are unknown",
    }
    #: the reference (`src/connectors/insightly/index.ts`): a lookup searches one spelling in four fields
    #: (lines 137-218); a call log is the event and its contact link (lines 540-553)
    reference_calls: ClassVar[dict[str, int]] = {
        "lookup_hit": 4,
        "lookup_miss": 4,
        "create_contact": 1,
        "create_call_log": 2,
    }
    costlier_than_reference: ClassVar[dict[str, str]] = {
        "create_call_log": "GET /Contacts/{id} before the event, so a contact deleted since the lookup is answered"
        " 'Contact not found' instead of leaving an unlinked event",
    }

    fake: FakeInsightly
    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]] = {
        op: [(m, p) for m, p, _n in routes] for op, routes in _REQUESTS.items()
    }

    def __init__(self) -> None:
        super().__init__(FakeInsightly())

    def reset(self) -> None:
        """A fresh Insightly instance per test: what the connector learnt of one account's spellings (which it
        keeps per instance) must not change what another test's lookups cost or find."""
        self.fake.instance_id = (self.fake.instance_id or 880000) + 1
        super().reset()

    def requests_per_fault(self, operation: Operation, status: int | None) -> int:
        return 1 if status == 429 else _REQUESTS[operation][0][2]

    def server_env(self) -> dict[str, str]:
        return {"INSIGHTLY_ALLOWED_API_ORIGINS": self.fake.base_url}

    async def login(self, http: httpx.AsyncClient) -> str:
        return await api_key_login(
            http,
            self.platform,
            self.fake.default_key,
            hostname="crm.na1.insightly.com",
            additional_info={"apiUrl": f"{self.fake.base_url}/v3.1/"},
        )

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        first, _, last = name.partition(" ")
        if contact_type == "lead":
            return str(
                self.fake.add_lead(first if last else None, last or first, phone=stored_phone)["LEAD_ID"]
            )
        return str(self.fake.add_contact(first, last or None, phone=stored_phone)["CONTACT_ID"])

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        found: list[CrmRecord] = []
        for kind, records, id_field in (
            ("contact", self.fake.all_contacts(), "CONTACT_ID"),
            ("lead", self.fake.all_leads(), "LEAD_ID"),
        ):
            for record in records:
                phones = [str(v) for k, v in record.items() if k.startswith(("PHONE", "MOBILE", "FAX")) and v]
                phones += [str(c.get("FIELD_VALUE") or "") for c in record.get("CUSTOMFIELDS") or []]
                if any(same_number_loosely(p, e164) for p in phones) or any_same_number(phones, e164):
                    found.append(CrmRecord(str(record[id_field]), kind=kind, text=_name(record), raw=record))
        return found

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        link_name = "Lead" if contact_type == "lead" else "Contact"
        record = self._record(contact_id, contact_type)
        name = _name(record) if record else ""
        events = sorted(self.fake.all_events(), key=lambda e: int(e["EVENT_ID"]))
        return [
            CrmRecord(
                str(e["EVENT_ID"]),
                text=f"{e.get('TITLE') or ''}\n{e.get('DETAILS') or ''}",
                raw=e,
            )
            for e in events
            if any(
                link["LINK_OBJECT_NAME"] == link_name and str(link["LINK_OBJECT_ID"]) == contact_id
                for link in e["LINKS"]
            )
            or (not e["LINKS"] and name and name in str(e.get("TITLE") or ""))
        ]

    def dispositions(self, contact_id: str, contact_type: str = "") -> dict[str, Any] | None:
        organisation = self.fake.add_organisation(f"Org of {contact_id}")
        return {"organisation": organisation["ORGANISATION_ID"]}

    def _record(self, contact_id: str, contact_type: str) -> dict[str, Any] | None:
        records = self.fake.all_leads() if contact_type == "lead" else self.fake.all_contacts()
        id_field = "LEAD_ID" if contact_type == "lead" else "CONTACT_ID"
        return next((r for r in records if str(r[id_field]) == contact_id), None)


def _name(record: dict[str, Any]) -> str:
    return " ".join(str(record.get(k)) for k in ("FIRST_NAME", "LAST_NAME") if record.get(k))

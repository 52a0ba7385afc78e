"""NetSuite as a conformance-suite target: the connector against FakeNetSuite, read through the fake's state."""

from __future__ import annotations

from typing import ClassVar

import httpx

from tests.connectors.conformance.target import (
    CrmRecord,
    FakeCrmTarget,
    Operation,
    authorize_redirect,
    oauth_callback_login,
    same_number_loosely,
)
from tests.connectors.netsuite.fake_netsuite import (
    CLIENT_ID,
    DEFAULT_ACCOUNT,
    RECORD_PREFIX,
    SUITEQL_PATH,
    FakeNetSuite,
    api_host,
    app_host,
)

#: operation -> (method, path prefix on the fake: the account's API host, then NetSuite's path)
_API = f"/~{api_host(DEFAULT_ACCOUNT)}"
_NETSUITE_REQUESTS: dict[Operation, tuple[str, str]] = {
    "find_contact": ("POST", f"{_API}{SUITEQL_PATH}"),
    "create_contact": ("POST", f"{_API}{RECORD_PREFIX}/contact"),
    "create_call_log": ("POST", f"{_API}{RECORD_PREFIX}/phonecall"),
    "get_call_log": ("GET", f"{_API}{RECORD_PREFIX}/phonecall/"),
    "update_call_log": ("PATCH", f"{_API}{RECORD_PREFIX}/phonecall/"),
    "create_message_log": ("POST", f"{_API}{RECORD_PREFIX}/phonecall"),
    "update_message_log": ("PATCH", f"{_API}{RECORD_PREFIX}/phonecall/"),
}
_KINDS = {"LEAD": "lead", "PROSPECT": "prospect", "CUSTOMER": "custjob"}


class NetSuiteTarget(FakeCrmTarget):
    """NetSuite (OAuth 2.0, sandbox account 1234567_SB1) against FakeNetSuite."""

    __test__ = False
    platform: ClassVar[str] = "netsuite"
    backends: ClassVar[tuple[str, ...]] = ("sqlite",)

    fake: FakeNetSuite
    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]] = {
        op: [route] for op, route in _NETSUITE_REQUESTS.items()
    }

    #: the reference (src/connectors/netsuite/index.ts): findContact runs three SuiteQL queries (contact,
    #: customer, vendor) in parallel; createContact for a contact checks for the placeholder company, may
    #: create it, then creates the contact; createCallLog asks a RESTlet for the time zone, reads the contact
    #: and creates the phone call
    reference_calls: ClassVar[dict[str, int]] = {
        "lookup_hit": 3,
        "lookup_miss": 3,
        "create_contact": 2,
        "create_call_log": 3,
    }

    def __init__(self) -> None:
        super().__init__(FakeNetSuite())

    def requests_per_fault(self, operation: Operation, status: int | None) -> int:
        """A lookup sends three queries at once (contacts, customers, vendors): all must meet the fault."""
        return 3 if operation == "find_contact" else 1

    def server_env(self) -> dict[str, str]:
        return self.fake.env()

    async def login(self, http: httpx.AsyncClient) -> str:
        host = app_host(DEFAULT_ACCOUNT)
        redirect = await authorize_redirect(
            self.fake.url(host, "/app/login/oauth2/authorize.nl"),
            {
                "client_id": CLIENT_ID,
                "redirect_uri": self.fake.redirect_uri,
                "response_type": "code",
                "scope": "restlets rest_webservices",
                "state": "platform=netsuite&fillerString=appconnect",
            },
        )
        return await oauth_callback_login(http, redirect, hostname=host)

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        if contact_type in ("", "contact"):
            return str(self.fake.add_contact(name, stored_phone)["id"])
        if contact_type == "vendor":
            return str(self.fake.add_vendor(name, stored_phone)["id"])
        stage = {"lead": "LEAD", "prospect": "PROSPECT"}.get(contact_type, "CUSTOMER")
        return str(self.fake.add_customer(name, stored_phone, stage=stage)["id"])

    def _people(self) -> list[tuple[str, dict[str, object]]]:
        account = self.fake.snapshot(self.fake.account(DEFAULT_ACCOUNT))
        people: list[tuple[str, dict[str, object]]] = [("contact", c) for c in account.contacts.values()]
        for customer in account.customers.values():
            status = int(str((customer.get("entityStatus") or {}).get("id") or 13))
            people.append((_KINDS[str(account.statuses[status]["stage"])], customer))
        people += [("vendor", v) for v in account.vendors.values()]
        return sorted(people, key=lambda p: int(str(p[1]["id"])))

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        phones = ("phone", "mobilePhone", "homePhone", "officePhone", "altPhone")
        return [
            CrmRecord(
                str(record["id"]),
                kind=kind,
                text=" ".join(str(record.get(k) or "") for k in ("firstName", "lastName")).strip(),
                raw=record,
            )
            for kind, record in self._people()
            if any(same_number_loosely(str(record.get(p) or ""), e164) for p in phones)
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        calls = self.fake.snapshot(self.fake.account(DEFAULT_ACCOUNT).phonecalls)
        found = [
            c
            for c in calls.values()
            if any(str((c.get(k) or {}).get("id")) == contact_id for k in ("contact", "company"))
        ]
        found.sort(key=lambda c: int(c["id"]))
        return [
            CrmRecord(str(c["id"]), text=f"{c.get('title') or ''}\n{c.get('message') or ''}", raw=c)
            for c in found
        ]

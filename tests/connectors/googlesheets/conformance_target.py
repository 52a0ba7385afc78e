"""Google Sheets as a conformance-suite target: the connector against FakeGoogleSheets, read from its own state.

Each test logs in as a new Google user whose spreadsheet ("RingCentral App Connect Sheet", the reference's
tabs and header rows) exists already, so a seeded contact is there before the first lookup.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from appconnect.connectors.googlesheets.connector import (
    CALL_LOGS,
    CONTACTS,
    DEFAULT_SPREADSHEET_NAME,
    MESSAGE_LOGS,
    new_row_id,
)
from tests.connectors.conformance.target import (
    CrmRecord,
    FakeCrmTarget,
    Operation,
    When,
    authorize_redirect,
    oauth_callback_login,
    same_number_loosely,
)
from tests.connectors.googlesheets.fake_googlesheets import CLIENT_ID, FakeGoogleSheets

#: operation -> the request it sends, named by what it does to which tab (see FakeGoogleSheets._record)
_REQUESTS: dict[Operation, tuple[str, str]] = {
    "find_contact": ("GET", "@read:Contacts"),
    "create_contact": ("POST", "@append:Contacts"),
    "create_call_log": ("POST", "@append:Call Logs"),
    "get_call_log": ("GET", "@read:Call Logs"),
    "update_call_log": ("POST", "@write:Call Logs"),
    "create_message_log": ("POST", "@append:Message Logs"),
    "update_message_log": ("POST", "@write:Message Logs"),
}
#: the same requests by their paths under `/v4/spreadsheets/{id}` (for a proxy that sees paths only: both
#: updates are one `values:batchUpdate`, whose ranges are in the body)
_PATHS: dict[Operation, tuple[str, str]] = {
    "find_contact": ("GET", "/values/%27Contacts%27"),
    "create_contact": ("POST", "/values/%27Contacts%27"),
    "create_call_log": ("POST", "/values/%27Call%20Logs%27"),
    "get_call_log": ("GET", "/values/%27Call%20Logs%27"),
    "update_call_log": ("POST", "/values:batchUpdate"),
    "create_message_log": ("POST", "/values/%27Message%20Logs%27"),
    "update_message_log": ("POST", "/values:batchUpdate"),
}


class GoogleSheetsTarget(FakeCrmTarget):
    """Google Sheets (OAuth) against FakeGoogleSheets."""

    __test__ = False
    platform: ClassVar[str] = "googleSheets"
    backends: ClassVar[tuple[str, ...]] = ("sqlite",)

    fake: FakeGoogleSheets

    #: the reference (src/connectors/googleSheets/index.ts): findContact reads the spreadsheet's metadata and
    #: the Contacts tab; createContact the metadata, the tab, its header row, then appends; createCallLog the
    #: metadata, the tab, its header row, then appends
    reference_calls: ClassVar[dict[str, int]] = {
        "lookup_hit": 2,
        "lookup_miss": 2,
        "create_contact": 4,
        "create_call_log": 4,
    }

    def __init__(self) -> None:
        super().__init__(FakeGoogleSheets())
        self.spreadsheet_id = ""

    def reset(self) -> None:
        """A new Google user per test, with their spreadsheet already made."""
        super().reset()
        fake = self.fake
        fake.login_sub = fake.add_user("Jordan Lee", "jordan.lee@example.test")
        self.spreadsheet_id = fake.add_spreadsheet(
            fake.login_sub,
            DEFAULT_SPREADSHEET_NAME,
            {tab.title: [list(tab.header)] for tab in (CALL_LOGS, MESSAGE_LOGS, CONTACTS)},
        )

    @property  # type: ignore[override]
    def fault_routes(self) -> dict[Operation, list[tuple[str, str]]]:
        """The requests by path, in this test's spreadsheet."""
        root = f"/v4/spreadsheets/{self.spreadsheet_id}"
        return {op: [(method, root + tail)] for op, (method, tail) in _PATHS.items()}

    def inject(
        self,
        operation: Operation,
        status: int | None = None,
        *,
        delay: float | None = None,
        retry_after: float | None = None,
        when: When = "before",
        times: int = 1,
    ) -> None:
        """Faults by what a request does to which tab (the fake names each request so)."""
        method, logical = _REQUESTS[operation]
        self.fake.inject(
            status,
            times=times,
            path_prefix=logical,
            method=method,
            retry_after=retry_after,
            delay=delay,
            when=when,
        )

    def server_env(self) -> dict[str, str]:
        return self.fake.env()

    async def login(self, http: httpx.AsyncClient) -> str:
        redirect = await authorize_redirect(
            f"{self.fake.base_url}/o/oauth2/auth",
            {
                "client_id": CLIENT_ID,
                "redirect_uri": self.fake.redirect_uri,
                "response_type": "code",
                "state": "platform=googleSheets",
            },
        )
        return await oauth_callback_login(http, redirect, hostname="docs.google.com")

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        """A row typed into Contacts (its ID in the id column, the number exactly as given)."""
        contact_id = new_row_id("C")
        with self.fake._lock:
            sheet = self.fake.spreadsheets[self.spreadsheet_id].sheet(CONTACTS.title)
            assert sheet is not None
            sheet.grid.append([contact_id, self.spreadsheet_id, name, stored_phone])
        return contact_id

    def _records(self, tab: str) -> list[dict[str, str]]:
        rows = self.fake.rows(self.spreadsheet_id, tab)
        if not rows:
            return []
        header = rows[0]
        return [{name: (row[i] if i < len(row) else "") for i, name in enumerate(header)} for row in rows[1:]]

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        return [
            CrmRecord(r["ID"], text=r["Contact name"], raw=r)
            for r in self._records(CONTACTS.title)
            if same_number_loosely(r["Phone"], e164)
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        """Call logs name their contact by number (the reference's layout has no contact id column); message
        logs carry the contact's marker in their text (a group SMS has one row per contact, all of one number)."""
        contact = next((r for r in self._records(CONTACTS.title) if r["ID"] == contact_id), None)
        if contact is None:
            return []
        found: list[CrmRecord] = []
        for r in self._records(CALL_LOGS.title):
            if r["Phone"] and same_number_loosely(contact["Phone"], r["Phone"]):
                found.append(CrmRecord(r["ID"], kind="call", text=f"{r['Subject']}\n{r['Notes']}", raw=r))
        for r in self._records(MESSAGE_LOGS.title):
            if f"[rc-contact-{contact_id}]" in r["Message"]:
                found.append(
                    CrmRecord(r["ID"], kind="message", text=f"{r['Subject']}\n{r['Message']}", raw=r)
                )
        return found

    def dispositions(self, contact_id: str, contact_type: str = "") -> dict[str, Any] | None:
        return None

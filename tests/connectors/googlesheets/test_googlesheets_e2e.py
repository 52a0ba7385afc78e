"""End to end: the App Connect client's requests through the real server over loopback HTTP, Google faked.

A connector server is started with the `GOOGLESHEETS_*` settings pointing at FakeGoogleSheets, on the database
of the session `server` fixture, so every test runs on SQLite and on PostgreSQL. Login goes through the
server's `/oauth-callback` and the fake's token endpoint; each test logs in as a Google user of its own (so
Google's per-user quota starts afresh) and reads what the spreadsheet holds from the fake's state.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from appconnect.connectors.googlesheets.connector import (
    CALL_LOGS,
    CONTACTS,
    DEFAULT_SPREADSHEET_NAME,
    MESSAGE_LOGS,
)
from tests.conftest import (
    LiveServer,
    call_log_body,
    conversation_body,
    new_phone,
    sms_message,
)
from tests.connectors.googlesheets.fake_googlesheets import CLIENT_ID, FakeGoogleSheets
from tests.support.e2e import ClientSession, client_of, server_beside_fixture

JsonDict = dict[str, Any]


sheets_live = server_beside_fixture("googlesheets", "_fake_google_server")


class Agent(ClientSession):
    """What the App Connect client does for one Google user, one method per request."""

    def __init__(self, http: httpx.AsyncClient, fake: FakeGoogleSheets, sub: str) -> None:
        super().__init__(http)
        self.fake = fake
        self.sub = sub

    async def login(self, rc_account: str = "rc-1") -> None:
        consent = await self.http.get(
            f"{self.fake.base_url}/o/oauth2/auth",
            params={
                "client_id": CLIENT_ID,
                "response_type": "code",
                "redirect_uri": self.fake.redirect_uri,
                "state": "platform=googleSheets",
                "login_hint": self.sub,
            },
        )
        body = await self.oauth_callback(consent, hostname="temp", rcAccountId=rc_account)
        assert body.get("jwtToken"), body

    async def found(self, phone: str) -> list[str]:
        response = await self.http.get(
            "/contact",
            params={"phoneNumber": phone, "overridingFormat": "", "isExtension": "false"},
            headers=self.auth,
        )
        assert response.status_code == 200, response.text
        assert "contact" in response.json(), response.text
        return [c["id"] for c in response.json()["contact"] if not c.get("isNewContact")]

    async def create_contact(self, phone: str, name: str) -> JsonDict:
        body = await self.send(
            "POST", "/contact", {"phoneNumber": phone, "newContactName": name, "newContactType": ""}
        )
        assert body["successful"] is True, body
        return body["contact"]  # type: ignore[no-any-return]

    async def post(self, path: str, body: JsonDict, method: str = "POST") -> JsonDict:
        return await self.send(method, path, body)

    def spreadsheet(self) -> str:
        books = self.fake.spreadsheets_of(self.sub)
        assert len(books) == 1, books
        return books[0].spreadsheet_id

    def records(self, tab: str) -> list[dict[str, str]]:
        header, *rows = self.fake.rows(self.spreadsheet(), tab)
        return [{name: (row[i] if i < len(row) else "") for i, name in enumerate(header)} for row in rows]


@pytest.fixture
async def http(sheets_live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(sheets_live) as client:
        yield client


@pytest.fixture
async def agent(http: httpx.AsyncClient, _fake_google_server: FakeGoogleSheets) -> Agent:
    fake = _fake_google_server
    user = Agent(http, fake, fake.add_user("Jordan Lee", f"jordan-{uuid.uuid4().hex[:6]}@example.test"))
    await user.login()
    return user


async def test_the_whole_flow_creates_the_spreadsheet_on_first_use(agent: Agent) -> None:
    phone = new_phone()
    assert await agent.found(phone) == []
    assert agent.fake.spreadsheets_of(agent.sub) == []  # a lookup creates nothing
    contact = await agent.create_contact(phone, "Maya Patel")
    book = agent.fake.spreadsheets_of(agent.sub)[0]
    assert book.title == DEFAULT_SPREADSHEET_NAME
    for tab in (CONTACTS, CALL_LOGS, MESSAGE_LOGS):
        assert agent.fake.rows(book.spreadsheet_id, tab.title)[0] == list(tab.header)
    assert await agent.found(phone) == [contact["id"]]

    session = f"s-{uuid.uuid4().hex[:8]}"
    logged = await agent.post(
        "/callLog", call_log_body(session, contact["id"], phone, note="Asked about pricing")
    )
    assert logged["successful"] is True, logged
    [row] = agent.records(CALL_LOGS.title)
    assert (row["ID"], row["Session Id"], row["Notes"], row["Phone"]) == (
        logged["logId"],
        session,
        "Asked about pricing",
        phone,
    )
    updated = await agent.post("/callLog", {"sessionId": session, "note": "Call back Friday"}, method="PATCH")
    assert updated["successful"] is True, updated
    [row] = agent.records(CALL_LOGS.title)
    assert "Call back Friday" in row["Notes"]

    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    first = sms_message(f"m-{uuid.uuid4().hex[:6]}", phone, "Hello there")
    assert (await agent.post("/messageLog", conversation_body(conversation, contact["id"], phone, [first])))[
        "successful"
    ]
    second = sms_message(f"m-{uuid.uuid4().hex[:6]}", phone, "Still there?", at="2026-03-12T14:40:00.000Z")
    body = conversation_body(conversation, contact["id"], phone, [first, second])
    assert (await agent.post("/messageLog", body))["successful"]
    [message_row] = agent.records(MESSAGE_LOGS.title)
    assert message_row["Message"].count("Hello there") == 1
    assert message_row["Message"].count("Still there?") == 1
    assert "Conversation(2 messages)" in message_row["Message"]


async def test_the_spreadsheet_named_in_the_settings_is_the_one_used(agent: Agent) -> None:
    sid = agent.fake.add_spreadsheet(agent.sub, "Our contacts", {"Sheet1": []}, app_created=False)
    saved = await agent.post(
        "/user/settings",
        {
            "userSettings": {
                "googleSheetsUrl": {"value": f"https://docs.google.com/spreadsheets/d/{sid}/edit"}
            }
        },
    )
    assert saved["userSettings"]["googleSheetsUrl"]["value"].endswith(f"/d/{sid}/edit")
    phone = new_phone()
    contact = await agent.create_contact(phone, "Omar Haddad")
    assert agent.fake.rows(sid, "Contacts")[1] == [contact["id"], sid, "Omar Haddad", phone]
    assert await agent.found(phone) == [contact["id"]]
    assert len(agent.fake.spreadsheets_of(agent.sub)) == 1


async def test_two_google_users_of_one_ringcentral_account_never_see_each_others_contacts(
    agent: Agent, http: httpx.AsyncClient
) -> None:
    """Each Google user's spreadsheet is their own tenant: the account's contact cache is kept per Google user."""
    other = Agent(http, agent.fake, agent.fake.add_user("Robin Quinn", "robin@example.test"))
    await other.login(rc_account="rc-1")  # the same RingCentral account as `agent`
    phone = new_phone()
    contact = await agent.create_contact(phone, "Maya Patel")
    assert await agent.found(phone) == [contact["id"]]
    assert await other.found(phone) == []
    assert other.fake.spreadsheets_of(other.sub) == []
    mine = await other.create_contact(phone, "Maya P.")
    assert mine["id"] != contact["id"]
    assert await other.found(phone) == [mine["id"]]
    assert await agent.found(phone) == [contact["id"]]


async def test_concurrent_call_logs_get_rows_of_their_own(agent: Agent) -> None:
    """Two calls logged at once read the same row count; each still gets its own id and row."""
    phone = new_phone()
    contact = await agent.create_contact(phone, "Maya Patel")
    sessions = [f"s-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    answers = await asyncio.gather(
        *(agent.post("/callLog", call_log_body(s, contact["id"], phone, note=f"note {s}")) for s in sessions)
    )
    ids = [a["logId"] for a in answers]
    assert all(a["successful"] for a in answers) and len(set(ids)) == 4
    rows = {r["ID"]: r for r in agent.records(CALL_LOGS.title)}
    assert set(rows) == set(ids)
    for session, log_id in zip(sessions, ids, strict=True):
        assert rows[log_id]["Session Id"] == session
        assert rows[log_id]["Notes"] == f"note {session}"


async def test_an_expiring_google_token_is_refreshed_and_the_refresh_token_kept(
    http: httpx.AsyncClient, _fake_google_server: FakeGoogleSheets
) -> None:
    """Google's refresh answer holds no new refresh token: the first one is kept."""
    fake = _fake_google_server
    user = Agent(http, fake, fake.add_user("Casey Brook", "casey@example.test"))
    fake.grants.expires_in = 60  # inside the server's refresh margin from the start
    try:
        await user.login()
    finally:
        fake.grants.expires_in = 3600
    refreshes = fake.grants.refresh_calls
    fake.advance_time(65)  # the fake now refuses the first access token
    try:
        phone = new_phone()
        contact = await user.create_contact(phone, "Maya Patel")
        assert await user.found(phone) == [contact["id"]]
    finally:
        fake.advance_time(-65)
    assert fake.grants.refresh_calls == refreshes + 1
    refresh = fake.requests_to("/token", "POST")[-1]
    assert refresh.form is not None and refresh.form["grant_type"] == "refresh_token"


async def test_the_manifest_carries_the_client_id_and_the_sheet_setting_never_the_secret(
    http: httpx.AsyncClient, _fake_google_server: FakeGoogleSheets
) -> None:
    response = await http.get("/crmManifest", params={"platformName": "googleSheets"})
    assert response.status_code == 200
    entry = response.json()["platforms"]["googleSheets"]
    assert entry["auth"]["oauth"]["clientId"] == CLIENT_ID
    assert entry["auth"]["oauth"]["redirectUri"] == _fake_google_server.redirect_uri
    assert "drive.file" in entry["auth"]["oauth"]["scope"]
    assert [s["id"] for s in entry["settings"]] == ["googleSheetsUrl"]
    # as the reference's entry: server-side logging logs with each user's own Google token
    assert entry["serverSideLogging"] == {
        "url": "https://crm-logging.labs.ringcentral.com",
        "useAdminAssignedUserToken": False,
    }
    assert "fake-google-secret" not in response.text


async def test_the_ai_columns_are_filled_by_the_clients_log_and_its_update(agent: Agent) -> None:
    """Transcript, Smart summary and RingSense's ACE columns reach the row on create and on update."""
    phone = new_phone()
    contact = await agent.create_contact(phone, "Maya Patel")
    session = f"s-{uuid.uuid4().hex[:8]}"
    body = call_log_body(
        session, contact["id"], phone, aiNote="Pricing question", ringSenseSummary="Summary 1"
    )
    assert (await agent.post("/callLog", body))["successful"] is True
    [row] = agent.records(CALL_LOGS.title)
    assert (row["Smart summary"], row["ACE Summary"], row["Transcript"]) == (
        "Pricing question",
        "Summary 1",
        "",
    )
    patch = {
        "sessionId": session,
        "transcript": "Maya: hi",
        "aiNote": "Wants a quote",
        "ringSenseLink": "https://r/1",
    }
    assert (await agent.post("/callLog", patch, method="PATCH"))["successful"] is True
    [row] = agent.records(CALL_LOGS.title)
    assert (row["Transcript"], row["Smart summary"], row["ACE Link"]) == (
        "Maya: hi",
        "Wants a quote",
        "https://r/1",
    )
    assert row["ACE Summary"] == "Summary 1"


async def test_logout_revokes_the_google_token(agent: Agent) -> None:
    """As the reference's unAuthorize: Google's /revoke is called, and the token no longer opens the sheet."""
    phone = new_phone()
    await agent.create_contact(phone, "Maya Patel")
    revokes = agent.fake.grants.revoke_calls
    response = await agent.http.post("/unAuthorize", headers=agent.auth)
    assert response.status_code == 200, response.text
    assert agent.fake.grants.revoke_calls == revokes + 1
    revoke = agent.fake.requests_to("/revoke", "POST")[-1]
    assert revoke.form is not None and revoke.form["token"]
    token = revoke.form["token"]
    # a revoked refresh token ends its access tokens too: either way the token is dead
    assert not agent.fake.grants.access_valid(token) and not agent.fake.grants.refresh_valid(token)

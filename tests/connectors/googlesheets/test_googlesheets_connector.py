"""The Google Sheets connector driven against FakeGoogleSheets: what it sends and what the spreadsheet holds.

Each of Google's documented traps is a test here: `valueInputOption`, column letters past Z, trailing empty
cells dropped from answers, the per-user quota, and ids under concurrent creates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from appconnect.connectors.googlesheets import GoogleSheetsConnector
from appconnect.connectors.googlesheets.connector import (
    CALL_LOGS,
    CONTACTS,
    DEFAULT_SPREADSHEET_NAME,
    MESSAGE_LOGS,
    column_letters,
    spreadsheet_id_of,
)
from appconnect.connectors.sdk import (
    PLACEHOLDER_CONTACT_ID,
    CallLogCreate,
    CallLogRef,
    CallLogUpdate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactLookup,
    ContactRef,
    CrmCall,
    CrmHttpError,
    LoginRequest,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    RingSense,
    UserView,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client
from tests.connectors.googlesheets.fake_googlesheets import FakeGoogleSheets

PHONE = "+14155550142"


@dataclass
class Env:
    fake: FakeGoogleSheets
    connector: GoogleSheetsConnector
    call: CrmCall

    def with_settings(self, **settings: object) -> CrmCall:
        user = UserView(
            id=self.call.user.id,
            platform="googleSheets",
            hostname="docs.google.com",
            timezone_offset="+00:00",
            platform_additional_info={"name": "Jordan Lee"},
            user_settings={k: {"value": v} for k, v in settings.items()},
        )
        return CrmCall(user=user, auth_header=self.call.auth_header, http=self.call.http)

    def spreadsheet(self) -> str:
        books = self.fake.spreadsheets_of(self.fake.login_sub)
        assert len(books) == 1, books
        return books[0].spreadsheet_id


@pytest.fixture
async def env(fake_google: FakeGoogleSheets) -> AsyncIterator[Env]:
    connector = GoogleSheetsConnector(ConnectorConfig(fake_google.connector_config()))
    tokens = fake_google.issue_tokens()
    auth = f"Bearer {tokens.access_token}"
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=fake_google.base_url, auth_header=auth)
        user = UserView(
            id=f"{fake_google.login_sub}-googleSheets",
            platform="googleSheets",
            hostname="docs.google.com",
            timezone_offset="+00:00",
            platform_additional_info={"name": "Jordan Lee"},
        )
        yield Env(fake_google, connector, CrmCall(user=user, auth_header=auth, http=http))
    finally:
        await client.aclose()


def _call(session_id: str = "s-1", direction: str = "Inbound", phone: str = PHONE) -> CallRecord:
    contact = CallParty(phone_number=phone, name="Maya Patel")
    agent = CallParty(phone_number="+14155550101", name="Jordan Lee")
    return CallRecord(
        session_id=session_id,
        direction=direction,
        start_time="2026-03-12T14:35:20.000Z",
        duration=95,
        result="Call connected",
        from_party=contact if direction == "Inbound" else agent,
        to_party=agent if direction == "Inbound" else contact,
    )


def _call_log(contact_id: str, session_id: str = "s-1", note: str = "Asked about pricing") -> CallLogCreate:
    return CallLogCreate(
        contact=ContactRef(id=contact_id, phone_number=PHONE, name="Maya Patel"),
        call=_call(session_id),
        note=note,
    )


async def _lookup(env: Env, phone: str = PHONE, call: CrmCall | None = None) -> list[str]:
    found = await env.connector.find_contact(call or env.call, ContactLookup(phone_number=phone))
    return [c.id for c in found.contacts if c.id != PLACEHOLDER_CONTACT_ID]


# --- login -----------------------------------------------------------------------------------------------


async def test_login_names_the_google_account_as_user_and_tenant(env: Env) -> None:
    result = await env.connector.get_user_info(
        LoginRequest(
            auth_header=env.call.auth_header, hostname="temp", platform="googleSheets", http=env.call.http
        )
    )
    assert result.successful and result.user is not None
    assert result.user.id == f"{env.fake.login_sub}-googleSheets"
    assert result.user.account_id == f"google-{env.fake.login_sub}"
    assert result.user.name == "Jordan Lee"


# --- the spreadsheet -------------------------------------------------------------------------------------


async def test_first_contact_creates_the_spreadsheet_in_the_reference_layout(env: Env) -> None:
    assert await _lookup(env) == []
    assert env.fake.spreadsheets_of(env.fake.login_sub) == []  # a lookup creates nothing
    created = await env.connector.create_contact(
        env.call, NewContact(phone_number=PHONE, name="Maya Patel", contact_type="")
    )
    assert created is not None
    sid = env.spreadsheet()
    book = env.fake.spreadsheets_of(env.fake.login_sub)[0]
    assert book.title == DEFAULT_SPREADSHEET_NAME
    assert [s.title for s in book.sheets] == ["Call Logs", "Message Logs", "Contacts"]
    for tab in (CONTACTS, CALL_LOGS, MESSAGE_LOGS):
        assert env.fake.rows(sid, tab.title)[0] == list(tab.header)
    assert env.fake.rows(sid, "Contacts")[1] == [created.contact.id, sid, "Maya Patel", PHONE]


async def test_the_spreadsheet_in_the_settings_is_used_and_missing_tabs_are_added(env: Env) -> None:
    sid = env.fake.add_spreadsheet(env.fake.login_sub, "My CRM", {"Sheet1": []}, app_created=False)
    call = env.with_settings(googleSheetsUrl=f"https://docs.google.com/spreadsheets/d/{sid}/edit#gid=0")
    created = await env.connector.create_contact(
        call, NewContact(phone_number=PHONE, name="Maya Patel", contact_type="")
    )
    assert created is not None
    assert env.fake.rows(sid, "Contacts") == [
        list(CONTACTS.header),
        [created.contact.id, sid, "Maya Patel", PHONE],
    ]
    assert await _lookup(env, call=call) == [created.contact.id]
    assert len(env.fake.spreadsheets_of(env.fake.login_sub)) == 1  # nothing made in Drive


async def test_a_setting_that_is_no_spreadsheet_url_is_a_warning(env: Env) -> None:
    call = env.with_settings(googleSheetsUrl="my sheet")
    found = await env.connector.find_contact(call, ContactLookup(phone_number=PHONE))
    assert not found.successful
    assert found.return_message is not None and "not a spreadsheet" in found.return_message.message
    logged = await env.connector.create_call_log(call, _call_log("C1"))
    assert logged.log_id is None
    assert logged.return_message is not None and logged.return_message.message_type == "warning"
    assert await env.connector.find_call_log(call, _call_log("C1")) is None
    assert env.fake.spreadsheets_of(env.fake.login_sub) == []  # nothing made elsewhere


def test_spreadsheet_ids_are_read_from_urls_and_bare_ids() -> None:
    assert spreadsheet_id_of("https://docs.google.com/spreadsheets/d/1AbC-d_EfGhIjKlMnOpQrStUv/edit") == (
        "1AbC-d_EfGhIjKlMnOpQrStUv"
    )
    assert spreadsheet_id_of("1AbC-d_EfGhIjKlMnOpQrStUv") == "1AbC-d_EfGhIjKlMnOpQrStUv"
    assert spreadsheet_id_of("https://example.test/x") is None


async def test_another_users_spreadsheet_is_refused(env: Env) -> None:
    """Tenant isolation is Google's: a spreadsheet belongs to one Google account."""
    other = env.fake.add_user("Someone Else", "else@example.test")
    sid = env.fake.add_spreadsheet(other, "Theirs", {"Contacts": [list(CONTACTS.header)]})
    call = env.with_settings(googleSheetsUrl=sid)
    with pytest.raises(CrmHttpError) as caught:
        await env.connector.find_contact(call, ContactLookup(phone_number=PHONE))
    assert caught.value.status == 403


# --- traps -----------------------------------------------------------------------------------------------


async def test_a_plus_one_number_stays_text_and_findable(env: Env) -> None:
    """RAW keeps `+14155550142` as text; USER_ENTERED (tried on the fake directly) makes it a number."""
    created = await env.connector.create_contact(
        env.call, NewContact(phone_number=PHONE, name="Maya Patel", contact_type="")
    )
    assert created is not None
    sid = env.spreadsheet()
    assert env.fake.raw_cells(sid, "Contacts")[1][3] == PHONE
    assert await _lookup(env) == [created.contact.id]
    for request in env.fake.requests_to("/v4/spreadsheets/", "POST"):
        if request.path.endswith(":append"):
            assert request.query["valueInputOption"] == "RAW"
        elif request.path.endswith("values:batchUpdate"):
            assert request.json["valueInputOption"] == "RAW"


async def test_the_fake_refuses_a_write_without_value_input_option(env: Env) -> None:
    await env.connector.create_contact(env.call, NewContact(phone_number=PHONE, name="A", contact_type=""))
    sid = env.spreadsheet()
    with pytest.raises(CrmHttpError) as caught:
        await env.call.http.request(
            "POST", f"/v4/spreadsheets/{sid}/values/Contacts!A1:append", json={"values": [["x"]]}
        )
    assert caught.value.status == 400
    await env.call.http.request(
        "POST",
        f"/v4/spreadsheets/{sid}/values/Contacts!A1:append",
        params={"valueInputOption": "USER_ENTERED"},
        json={"values": [["C-typed", sid, "Typed", "+14155550199"]]},
    )
    assert env.fake.raw_cells(sid, "Contacts")[-1][3] == 14155550199  # a number, its `+` gone
    assert env.fake.rows(sid, "Contacts")[-1][3] == "14155550199"


async def test_an_update_reaches_columns_past_z(env: Env) -> None:
    """A Call Logs tab whose user put 27 columns of their own first: Notes is column AH."""
    extra = [f"Mine {i}" for i in range(27)]
    sid = env.fake.add_spreadsheet(
        env.fake.login_sub, "Wide", {"Call Logs": [[*extra, *CALL_LOGS.header]]}, app_created=False
    )
    call = env.with_settings(googleSheetsUrl=sid)
    logged = await env.connector.create_call_log(call, _call_log("C1"))
    assert logged.log_id
    await env.connector.update_call_log(
        call, CallLogUpdate(log=CallLogRef(log_id=logged.log_id), note="Called back", subject="Renewal")
    )
    notes = 27 + CALL_LOGS.header.index("Notes")
    assert column_letters(notes) == "AF"
    row = env.fake.rows(sid, "Call Logs")[1]
    assert row[notes] == "Called back"
    assert row[27 + CALL_LOGS.header.index("Subject")] == "Renewal"
    assert row[:27] == [""] * 27
    ranges = [
        d["range"]
        for r in env.fake.requests_to(f"/v4/spreadsheets/{sid}/values:batchUpdate")
        for d in r.json["data"]
    ]
    assert "'Call Logs'!AF2" in ranges


async def test_rows_with_trailing_empty_cells_are_read(env: Env) -> None:
    """A contact row typed without the last cells: Sheets answers it shorter than the header."""
    sid = env.fake.add_spreadsheet(
        env.fake.login_sub,
        DEFAULT_SPREADSHEET_NAME,
        {
            "Call Logs": [list(CALL_LOGS.header)],
            "Message Logs": [list(MESSAGE_LOGS.header)],
            "Contacts": [
                [*CONTACTS.header, "Company"],
                ["C-1", "", "Short Row", PHONE],
                ["C-2", "", "No Phone"],
            ],
        },
    )
    answer = await env.call.http.get_json(f"/v4/spreadsheets/{sid}/values/Contacts")
    assert answer["values"][2] == ["C-2", "", "No Phone"]  # the fake drops them too
    assert await _lookup(env) == ["C-1"]
    logged = await env.connector.create_call_log(env.call, _call_log("C-1"))
    row = env.fake.rows(sid, "Call Logs")[1]
    assert row[0] == logged.log_id and len(row) <= len(CALL_LOGS.header)


async def test_concurrent_creates_get_distinct_ids(env: Env) -> None:
    """Both creates read the same row count; ids that are no row count stay distinct and each finds its row."""
    await env.connector.create_contact(
        env.call, NewContact(phone_number=PHONE, name="First", contact_type="")
    )
    first, second = await asyncio.gather(
        env.connector.create_call_log(env.call, _call_log("C1", "s-a", note="one")),
        env.connector.create_call_log(env.call, _call_log("C1", "s-b", note="two")),
    )
    assert first.log_id and second.log_id and first.log_id != second.log_id
    one = await env.connector.get_call_log(env.call, CallLogRef(log_id=first.log_id))
    two = await env.connector.get_call_log(env.call, CallLogRef(log_id=second.log_id))
    assert (one.info.note, two.info.note) == ("one", "two")
    contacts = await asyncio.gather(
        *(
            env.connector.create_contact(
                env.call, NewContact(phone_number=f"+1415555030{i}", name=f"N{i}", contact_type="")
            )
            for i in range(4)
        )
    )
    ids = [c.contact.id for c in contacts if c is not None]
    assert len(set(ids)) == 4
    for i, contact_id in enumerate(ids):
        assert await _lookup(env, f"+1415555030{i}") == [contact_id]


async def test_the_quota_is_sixty_reads_a_minute_per_user(env: Env) -> None:
    await env.connector.create_contact(env.call, NewContact(phone_number=PHONE, name="A", contact_type=""))
    reads = len([r for r in env.fake.requests if r.method == "GET" and r.path.startswith("/v4/")])
    for _ in range(60 - reads):
        await _lookup(env)
    with pytest.raises(CrmHttpError) as caught:
        await _lookup(env)
    assert caught.value.status == 429
    env.fake.advance_time(61)
    assert await _lookup(env) != []


async def test_the_declared_quota_tells_every_read_from_every_write(env: Env) -> None:
    """Sixty of each a minute per user, and each request the connector sends counts against the right one."""
    rules = {rule.name: rule for rule in GoogleSheetsConnector.rate_limits}
    assert (rules["read"].requests, rules["read"].per_seconds, rules["read"].scope) == (60, 60.0, "user")
    assert (rules["write"].requests, rules["write"].per_seconds, rules["write"].scope) == (60, 60.0, "user")
    await env.connector.create_contact(env.call, NewContact(phone_number=PHONE, name="A", contact_type=""))
    logged = await env.connector.create_call_log(env.call, _call_log("C1"))
    assert logged.log_id
    await env.connector.update_call_log(
        env.call, CallLogUpdate(log=CallLogRef(log_id=logged.log_id), note="x")
    )
    sheets = [r for r in env.fake.requests if r.path.startswith("/v4/spreadsheets/")]
    assert {r.method for r in sheets} == {"GET", "POST"}
    for request in sheets:
        is_read = request.method == "GET"
        assert rules["read"].applies_to(request.path) is is_read, request.path
        assert rules["write"].applies_to(request.path) is not is_read, request.path


# --- call logs -------------------------------------------------------------------------------------------


async def test_call_log_row_get_update_and_find(env: Env) -> None:
    logged = await env.connector.create_call_log(env.call, _call_log("C1"))
    assert logged.log_id
    sid = env.spreadsheet()
    header, row = env.fake.rows(sid, "Call Logs")
    record = dict(zip(header, row, strict=False))
    assert record["Session Id"] == "s-1"
    assert record["Duration"] == "95"
    assert record["Outgoing Phone Number"] == PHONE
    assert record["Start time"] == "2026-03-12T14:35:20Z"
    fetched = await env.connector.get_call_log(env.call, CallLogRef(log_id=logged.log_id))
    assert fetched.info.subject == "Inbound Call from Maya Patel"
    assert fetched.info.note == "Asked about pricing"
    await env.connector.update_call_log(
        env.call,
        CallLogUpdate(log=CallLogRef(log_id=logged.log_id), note="Follow up", duration=120, result="Missed"),
    )
    record = dict(zip(header, env.fake.rows(sid, "Call Logs")[1], strict=False))
    assert (record["Notes"], record["Duration"], record["Call Result"]) == ("Follow up", "120", "Missed")
    assert record["End time"] == "2026-03-12T14:37:20Z"
    assert await env.connector.find_call_log(env.call, _call_log("C1")) == logged.log_id
    assert await env.connector.find_call_log(env.call, _call_log("C1", "other")) is None


async def test_updating_an_unknown_log_changes_nothing(env: Env) -> None:
    await env.connector.create_call_log(env.call, _call_log("C1"))
    before = env.fake.rows(env.spreadsheet(), "Call Logs")
    result = await env.connector.update_call_log(
        env.call, CallLogUpdate(log=CallLogRef(log_id="L-none"), note="x")
    )
    assert result.return_message is not None and result.return_message.message_type == "warning"
    assert env.fake.rows(env.spreadsheet(), "Call Logs") == before


# --- message logs ----------------------------------------------------------------------------------------


def _message(message_id: str, text: str, direction: str = "Inbound") -> Message:
    return Message(
        id=message_id,
        direction=direction,
        subject=text,
        creation_time="2026-03-12T14:35:20.000Z",
        from_party=CallParty(phone_number=PHONE),
    )


async def test_message_log_and_its_appends(env: Env) -> None:
    contact = ContactRef(id="C1", phone_number=PHONE, name="Maya Patel")
    create = MessageLogCreate(
        contact=contact,
        message=_message("m1", "Hello"),
        conversation_id="conv",
        conversation_log_id="conv-day",
    )
    logged = await env.connector.create_message_log(env.call, create)
    assert logged.log_id
    update = MessageLogUpdate(
        contact=contact,
        message=_message("m2", "Still there?"),
        log_id=logged.log_id,
        conversation_log_id="conv-day",
    )
    await env.connector.update_message_log(env.call, update)
    await env.connector.update_message_log(env.call, update)  # sent again: nothing added
    header, row = env.fake.rows(env.spreadsheet(), "Message Logs")
    body = dict(zip(header, row, strict=False))["Message"]
    assert body.count("Still there?") == 1
    assert "Conversation(2 messages)" in body
    assert body.index("Hello") < body.index("Still there?") < body.index("------------\nEND")
    assert await env.connector.find_message_log(env.call, create) == logged.log_id


async def test_two_first_uses_at_once_leave_one_spreadsheet_holding_both_contacts(env: Env) -> None:
    """Both find no spreadsheet and both create one: the oldest is kept by both, the other deleted."""
    # each creation takes Google a second, so the other use's Drive search (sent at once) finds nothing yet
    env.fake.inject(delay=1.0, times=2, path_prefix="/v4/spreadsheets", method="POST")
    created = await asyncio.gather(
        env.connector.create_contact(env.call, NewContact(phone_number=PHONE, name="First", contact_type="")),
        GoogleSheetsConnector(env.connector.config).create_contact(
            env.call, NewContact(phone_number="+14155550143", name="Second", contact_type="")
        ),
    )
    sid = env.spreadsheet()  # exactly one left
    rows = env.fake.rows(sid, "Contacts")
    assert rows[0] == list(CONTACTS.header)
    assert sorted(r[0] for r in rows[1:]) == sorted(c.contact.id for c in created if c is not None)
    made = [r for r in env.fake.requests if r.method == "POST" and r.path == "/v4/spreadsheets"]
    assert len(made) == 2  # the race did happen
    assert len(env.fake.requests_to("/drive/v3/files/", "DELETE")) == 1


async def test_a_deleted_spreadsheet_is_looked_for_again(env: Env) -> None:
    """The user deleted the app's spreadsheet: one failed call, then the next one makes a new spreadsheet."""
    await env.connector.create_contact(env.call, NewContact(phone_number=PHONE, name="A", contact_type=""))
    with env.fake._lock:
        env.fake.spreadsheets.clear()
    with pytest.raises(CrmHttpError) as caught:
        await _lookup(env)
    assert caught.value.status == 404
    created = await env.connector.create_contact(
        env.call, NewContact(phone_number=PHONE, name="B", contact_type="")
    )
    assert created is not None
    assert await _lookup(env) == [created.contact.id]


async def test_a_number_a_user_typed_without_its_plus_is_still_found(env: Env) -> None:
    """Typed into the sheet, `+1 415…` becomes the number 14155550142 (Sheets' own parsing); the lookup
    compares numbers, not text, so the row is found (the reference's exact comparison misses it)."""
    await env.connector.create_contact(
        env.call, NewContact(phone_number="+14155550100", name="A", contact_type="")
    )
    sid = env.spreadsheet()
    await env.call.http.request(
        "POST",
        f"/v4/spreadsheets/{sid}/values/Contacts!A1:append",
        params={"valueInputOption": "USER_ENTERED"},
        json={"values": [["C-typed", sid, "Typed By Hand", "+14155550142"]]},
    )
    assert env.fake.rows(sid, "Contacts")[-1][3] == "14155550142"
    assert await _lookup(env) == ["C-typed"]


# --- parity with the reference's Call Logs columns -----------------------------------------------------------


def _record(env: Env, sid: str, tab: str = "Call Logs", row: int = 1) -> dict[str, str]:
    header, *rows = env.fake.rows(sid, tab)
    values = rows[row - 1]
    return {name: (values[i] if i < len(values) else "") for i, name in enumerate(header)}


async def test_transcript_ai_note_and_ringsense_fill_their_columns_on_create_and_update(env: Env) -> None:
    """The reference writes Transcript, Smart summary and the five ACE columns when the client sends them."""
    log = _call_log("C1")
    log.transcript = "Maya: hello"
    log.ai_note = "Pricing question"
    log.ring_sense = RingSense(
        transcript="t1", summary="s1", ai_score="87", bulleted_summary="- b", link="https://r/1"
    )
    logged = await env.connector.create_call_log(env.call, log)
    assert logged.log_id
    record = _record(env, env.spreadsheet())
    assert (record["Transcript"], record["Smart summary"]) == ("Maya: hello", "Pricing question")
    assert [record[c] for c in ("ACE Transcript", "ACE Summary", "ACE AI Score", "ACE Bulleted Summary")] == [
        "t1",
        "s1",
        "87",
        "- b",
    ]
    assert record["ACE Link"] == "https://r/1"
    await env.connector.update_call_log(
        env.call,
        CallLogUpdate(
            log=CallLogRef(log_id=logged.log_id),
            transcript="Maya: hello again",
            ai_note="Wants a quote",
            ring_sense=RingSense(summary="s2"),
        ),
    )
    record = _record(env, env.spreadsheet())
    assert (record["Transcript"], record["Smart summary"], record["ACE Summary"]) == (
        "Maya: hello again",
        "Wants a quote",
        "s2",
    )
    assert record["ACE Transcript"] == "t1"  # not sent again: left as it was
    assert record["Notes"] == "Asked about pricing"


async def test_columns_the_users_settings_turn_off_stay_empty(env: Env) -> None:
    """The reference's `addCallLog…` settings (on unless set off) decide which optional columns get a value."""
    call = env.with_settings(
        addCallLogNote=False,
        addCallSessionId=False,
        addCallLogContactNumber=False,
        addCallLogTranscript=False,
    )
    log = _call_log("C1")
    log.transcript = "Maya: hello"
    log.ai_note = "Pricing question"
    logged = await env.connector.create_call_log(call, log)
    assert logged.log_id
    record = _record(env, env.spreadsheet())
    assert (record["Notes"], record["Session Id"], record["Phone"], record["Transcript"]) == ("", "", "", "")
    assert record["Smart summary"] == "Pricing question"
    assert record["Subject"] == "Inbound Call from Maya Patel" and record["Duration"] == "95"
    await env.connector.update_call_log(
        call, CallLogUpdate(log=CallLogRef(log_id=logged.log_id), note="Kept out", subject="Renewal")
    )
    record = _record(env, env.spreadsheet())
    assert (record["Notes"], record["Subject"]) == ("", "Renewal")


async def test_the_callers_own_numbers_fill_incoming_and_outgoing(env: Env) -> None:
    """As the reference: Outgoing is the `from` number, Incoming the `to` number, the contact's when missing."""
    log = _call_log("C1")
    log.call = _call("s-out", direction="Outbound")
    await env.connector.create_call_log(env.call, log)
    record = _record(env, env.spreadsheet())
    assert (record["Outgoing Phone Number"], record["Incoming Phone Number"]) == ("+14155550101", PHONE)
    log = _call_log("C1", session_id="s-in")
    log.call.to_party = CallParty()
    await env.connector.create_call_log(env.call, log)
    record = _record(env, env.spreadsheet(), row=2)
    assert (record["Outgoing Phone Number"], record["Incoming Phone Number"]) == (PHONE, "")


async def test_a_spreadsheet_with_columns_in_its_own_order_and_extra_columns_works(env: Env) -> None:
    """The reference finds every column by its header (getColumnIndexes): a user's own order and columns stay."""
    sid = env.fake.add_spreadsheet(
        env.fake.login_sub,
        "Mine",
        {
            "Contacts": [
                ["Phone", "Owner", "Contact name", "ID"],
                ["+14155550199", "me", "Old Friend", "C-old"],
            ],
            "Call Logs": [["Notes", "My tag", "ID", "Session Id", "Subject"]],
        },
        app_created=False,
    )
    call = env.with_settings(googleSheetsUrl=f"https://docs.google.com/spreadsheets/d/{sid}/edit#gid=0")
    assert await _lookup(env, "+14155550199", call) == ["C-old"]
    created = await env.connector.create_contact(
        call, NewContact(phone_number=PHONE, name="Maya Patel", contact_type="")
    )
    assert created is not None
    contact = _record(env, sid, "Contacts", row=2)
    assert (contact["Phone"], contact["Contact name"], contact["ID"], contact["Owner"]) == (
        PHONE,
        "Maya Patel",
        created.contact.id,
        "",
    )
    assert await _lookup(env, PHONE, call) == [created.contact.id]
    logged = await env.connector.create_call_log(call, _call_log(created.contact.id))
    assert logged.log_id
    header = env.fake.rows(sid, "Call Logs")[0]
    assert header[:5] == [
        "Notes",
        "My tag",
        "ID",
        "Session Id",
        "Subject",
    ]  # the reference's others at the end
    assert set(CALL_LOGS.header) <= set(header)
    await env.connector.update_call_log(
        call, CallLogUpdate(log=CallLogRef(log_id=logged.log_id), note="Called back")
    )
    record = _record(env, sid)
    assert (record["Notes"], record["ID"], record["Session Id"], record["My tag"]) == (
        "Called back",
        logged.log_id,
        "s-1",
        "",
    )

"""Google Sheets (Sheets API v4, Drive API v3): one spreadsheet per Google user holds contacts and logs.

The spreadsheet is the one the user names in the `googleSheetsUrl` setting, else the one this app created in
the user's Drive ("RingCentral App Connect Sheet"), created on first use. It holds the reference connector's
three tabs with the reference's header rows. A row is found by its `ID` cell, an id this connector generates
(never the row count, which two concurrent creates would both read). Every value is written with
`valueInputOption=RAW`: `USER_ENTERED` would turn `+14155550100` into the number 14155550100 and no lookup
would find it again. Sheets drops trailing empty cells from its answers, so every row is read as ragged.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from appconnect.connectors.kit import (
    call_seconds,
    caller_number,
    conversation_marker,
    iso_utc,
    message_marker,
    message_needle,
    parse_time,
    unsearchable,
    user_timezone,
)
from appconnect.connectors.phone import same_number
from appconnect.connectors.sdk import (
    AuthType,
    CallLogCreate,
    CallLogFetched,
    CallLogInfo,
    CallLogRef,
    CallLogUpdate,
    CallLogUpdated,
    Connector,
    ConnectorConfig,
    Contact,
    ContactLookup,
    ContactMatches,
    CreatedContact,
    CrmCall,
    CrmHttp,
    CrmHttpError,
    JsonDict,
    LimitRule,
    LimitScope,
    LoginRequest,
    LogResult,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    OAuthInfo,
    PlatformUser,
    ReturnMessage,
    RingSense,
    UserInfoResult,
    UserView,
    placeholder_contact,
    stored_user_id,
)

SHEETS_ROOT = "https://sheets.googleapis.com"
GOOGLE_ROOT = "https://www.googleapis.com"
OAUTH_ROOT = "https://oauth2.googleapis.com"
AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/auth"
SPREADSHEET_MIME = "application/vnd.google-apps.spreadsheet"
#: the name the reference gives the spreadsheet it creates (extra.ts `createNewSheet`)
DEFAULT_SPREADSHEET_NAME = "RingCentral App Connect Sheet"
#: spreadsheets whose id a process remembers per user (least recently used forgotten first)
MAX_REMEMBERED_USERS = 10_000


@dataclass(frozen=True, slots=True)
class Tab:
    """One tab of the spreadsheet and the header row the reference writes into it."""

    title: str
    header: tuple[str, ...]

    @property
    def a1(self) -> str:
        """The whole tab in A1 notation; the title is quoted (it may hold spaces)."""
        return "'" + self.title.replace("'", "''") + "'"


CONTACTS = Tab("Contacts", ("ID", "Sheet Id", "Contact name", "Phone"))
CALL_LOGS = Tab(
    "Call Logs",
    (
        "ID",
        "Sheet Id",
        "Subject",
        "Contact name",
        "Notes",
        "Phone",
        "Start time",
        "End time",
        "Duration",
        "Session Id",
        "Direction",
        "Call Result",
        "Call Recording",
        "Incoming Phone Number",
        "Outgoing Phone Number",
        "Transcript",
        "Smart summary",
        "ACE Summary",
        "ACE Transcript",
        "ACE AI Score",
        "ACE Bulleted Summary",
        "ACE Link",
    ),
)
MESSAGE_LOGS = Tab(
    "Message Logs",
    (
        "ID",
        "Sheet Id",
        "Subject",
        "Contact name",
        "Message",
        "Phone",
        "Message Type",
        "Message Time",
        "Direction",
    ),
)
#: in the order the reference creates them
TABS = (CALL_LOGS, MESSAGE_LOGS, CONTACTS)

_SHEET_URL = re.compile(r"/d/([a-zA-Z0-9_-]+)")
_BARE_ID = re.compile(r"[a-zA-Z0-9_-]{20,}")
_COUNTER_RE = re.compile(r"Conversation\((\d+) messages\)")
_MESSAGES_END = "------------\nEND"
_UNSAFE_IN_MARKER = re.compile(r"[^A-Za-z0-9._:-]")


def column_letters(index: int) -> str:
    """The A1 column of a 0-based index: A..Z, then AA, AB... (the reference's `fromCharCode(65+i)` stops at Z)."""
    letters = ""
    number = index + 1
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def spreadsheet_id_of(setting: str) -> str | None:
    """The spreadsheet id of a Sheets URL (`.../spreadsheets/d/<id>/edit`) or of a bare id; None otherwise."""
    text = setting.strip()
    match = _SHEET_URL.search(text)
    if match:
        return match.group(1)
    return text if _BARE_ID.fullmatch(text) else None


def spreadsheet_url(spreadsheet: str) -> str:
    """The address Google gives a spreadsheet (`webViewLink`, `spreadsheetUrl`)."""
    return f"https://docs.google.com/spreadsheets/d/{quote(spreadsheet, safe='')}/edit"


def new_row_id(prefix: str) -> str:
    """A row id unique under concurrent creates (a row count is not: two creates read the same one)."""
    return f"{prefix}{secrets.token_hex(8)}"


@dataclass(slots=True)
class Rows:
    """A tab as Sheets answered it: the header row and the data rows, each as short as its last filled cell."""

    header: list[str]
    rows: list[list[str]]

    def column(self, name: str) -> int | None:
        return self.header.index(name) if name in self.header else None

    def cell(self, row: list[str], name: str) -> str:
        index = self.column(name)
        if index is None or index >= len(row):  # trailing empty cells are not in the answer
            return ""
        return str(row[index])

    def find(self, name: str, value: str) -> int | None:
        """The 0-based data-row index whose `name` cell is `value` (the newest when several are)."""
        if not value or self.column(name) is None:
            return None
        for index in range(len(self.rows) - 1, -1, -1):
            if self.cell(self.rows[index], name) == value:
                return index
        return None

    def as_record(self, row: list[str]) -> JsonDict:
        return {name: self.cell(row, name) for name in self.header if name}


class NoSpreadsheet(Exception):
    """The `googleSheetsUrl` setting names no spreadsheet."""


class GoogleSheetsConnector(Connector):
    """Google OAuth; contacts, call logs and message logs are rows of the user's spreadsheet."""

    platform: ClassVar[str] = "googleSheets"
    auth_type: ClassVar[AuthType] = "oauth"
    log_format: ClassVar[str] = "text/plain"
    manifest_path: ClassVar[Path | None] = Path(__file__).with_name("manifest.json")
    #: Sheets API quotas: 60 read and 60 write requests per minute per user (per project as well: 300 each).
    #: This connector reads a tab only as its range `A:ZZZ` and writes only through `:append` and
    #: `:batchUpdate`, so the paths tell reads from writes.
    rate_limits: ClassVar[tuple[LimitRule, ...]] = (
        LimitRule("read", "user", per_seconds=60.0, requests=60, paths=("!a:zzz",)),
        LimitRule("write", "user", per_seconds=60.0, requests=60, paths=(":append", ":batchupdate")),
    )
    idempotent_message_append: ClassVar[bool] = True

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        super().__init__(config)
        #: Google user -> the spreadsheet found or created in their Drive (a hint: found again when lost)
        self._spreadsheets: OrderedDict[str, str] = OrderedDict()

    # --- hosts ---------------------------------------------------------------------------------------------

    def _root(self, default: str) -> str:
        """Google's host for a kind of call; config `base_url` sends them all to one place (tests' fake)."""
        override = self.config.get("base_url")
        return override.rstrip("/") if override else default

    def base_url(self, user: UserView) -> str:
        return self._root(SHEETS_ROOT)

    def rate_limit_key(self, user: UserView) -> str:
        """Each Google user is their own tenant: their spreadsheet, their quota."""
        return f"google:{user.crm_user_id}"

    def limit_scope_key(self, user: UserView, scope: LimitScope) -> str:
        if scope == "token":
            return f"token:{user.id}"
        return f"{scope}:google:{user.crm_user_id}"

    # --- auth ----------------------------------------------------------------------------------------------

    def oauth_info(self, hostname: str | None = None) -> OAuthInfo:
        return OAuthInfo(
            client_id=self.config.get("client_id"),
            client_secret=self.config.get("client_secret") or None,
            access_token_uri=f"{self._root(OAUTH_ROOT)}/token",
            redirect_uri=self.config.get("redirect_uri"),
            authorization_uri=f"{self._root('https://accounts.google.com')}/o/oauth2/auth"
            if self.config.get("base_url")
            else AUTHORIZE_URL,
            hostname=hostname,
            revoke_uri=f"{self._root(OAUTH_ROOT)}/revoke",
        )

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        """The Google account (`sub`) is the user and the tenant: every spreadsheet call is scoped by it."""
        try:
            data = await request.http.get_json(f"{self._root(GOOGLE_ROOT)}/oauth2/v3/userinfo")
            sub = str(data["sub"])
            user = PlatformUser(
                id=stored_user_id(self.platform, sub),
                name=str(data.get("name") or data.get("email") or ""),
                platform_additional_info={"email": data.get("email"), "name": data.get("name")},
                overriding_hostname="docs.google.com",
                account_id=f"google-{sub}",
            )
        except (CrmHttpError, KeyError, TypeError, ValueError) as exc:
            status = getattr(exc, "status", None)
            detail = f"Google answered {status}." if status else "Google's answer could not be read."
            return UserInfoResult(
                successful=False,
                return_message=ReturnMessage(
                    "Could not load user information",
                    "warning",
                    3000,
                    details=[{"title": "Details", "items": [{"id": "1", "type": "text", "text": detail}]}],
                ),
            )
        return UserInfoResult(
            successful=True, user=user, return_message=ReturnMessage("Connected to Google Sheets.")
        )

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        """Every row of Contacts whose Phone is the number in any spelling (the tab is read whole anyway)."""
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        phone = caller_number(lookup)
        try:
            spreadsheet = await self._spreadsheet(call, create=False)
        except NoSpreadsheet:
            return ContactMatches(successful=False, return_message=_bad_setting())
        rows = await self._read(call, spreadsheet, CONTACTS) if spreadsheet else None
        contacts: list[Contact] = []
        for row in rows.rows if rows is not None else []:
            assert rows is not None
            row_id, stored = rows.cell(row, "ID"), rows.cell(row, "Phone")
            if row_id and stored and same_number(stored, phone):
                contacts.append(Contact(id=row_id, name=rows.cell(row, "Contact name"), phone=stored))
        contacts.append(placeholder_contact())
        return ContactMatches(successful=True, contacts=contacts)

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        try:
            spreadsheet = await self._spreadsheet(call, create=True)
        except NoSpreadsheet:
            return None
        assert spreadsheet is not None
        rows = await self._tab(call, spreadsheet, CONTACTS)
        contact_id = new_row_id("C")
        values = {
            "ID": contact_id,
            "Sheet Id": spreadsheet,
            "Contact name": new.name,
            "Phone": new.phone_number,
        }
        await self._append(call.http, spreadsheet, CONTACTS, _row(rows.header, values))
        contact = Contact(id=contact_id, name=new.name, phone=new.phone_number)
        return CreatedContact(
            contact=contact, return_message=ReturnMessage("Contact created", "success", 2000)
        )

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        """One row of Call Logs; its Session Id finds it again when the answer to the append is lost."""
        try:
            spreadsheet = await self._spreadsheet(call, create=True)
        except NoSpreadsheet:
            return LogResult(None, _bad_setting())
        assert spreadsheet is not None
        rows = await self._tab(call, spreadsheet, CALL_LOGS)
        record = log.call
        start = parse_time(record.start_time)
        seconds = call_seconds(record.duration)
        contact_phone = log.contact.phone_number
        # the reference's choice of numbers: each side's own number, the contact's when that side has none
        if record.direction == "Outbound":
            outgoing = record.from_party.phone_number or ""
            incoming = record.to_party.phone_number or contact_phone
        else:
            outgoing = record.from_party.phone_number or contact_phone
            incoming = record.to_party.phone_number or ""
        user = call.user
        values: JsonDict = {
            "ID": new_row_id("L"),
            "Sheet Id": spreadsheet,
            "Contact name": log.contact.name,
            "Start time": iso_utc(start),
            "End time": iso_utc(start + timedelta(seconds=seconds)),
            "Direction": record.direction,
            "Incoming Phone Number": incoming,
            "Outgoing Phone Number": outgoing,
        }
        # each optional column as the reference fills it: only when the user's `addCallLog…` setting is on
        # (every one defaults to on here, as in the reference's Google Sheets connector)
        optional: JsonDict = {
            "Subject": _call_subject(log),
            "Notes": log.note,
            "Phone": contact_phone,
            "Duration": seconds,
            "Session Id": record.session_id,
            "Call Result": record.result or "",
            "Call Recording": record.recording_link or "",
            "Transcript": log.transcript,
            "Smart summary": log.ai_note,
            **_ace_cells(log.ring_sense),
        }
        values.update(_allowed(user, optional))
        await self._append(call.http, spreadsheet, CALL_LOGS, _row(rows.header, values))
        return LogResult(str(values["ID"]), ReturnMessage("Call logged", "success", 2000))

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        rows = await self._existing(call, CALL_LOGS)
        index = rows.find("Session Id", log.call.session_id) if rows is not None else None
        if rows is None or index is None:
            return None
        return rows.cell(rows.rows[index], "ID") or None

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        rows = await self._existing(call, CALL_LOGS)
        index = rows.find("ID", ref.log_id) if rows is not None else None
        if rows is None or index is None:
            return CallLogFetched(
                info=CallLogInfo(subject=None, note=None),
                return_message=ReturnMessage("Call log not found", "warning", 3000),
            )
        row = rows.rows[index]
        note = rows.cell(row, "Notes")
        info = CallLogInfo(
            subject=rows.cell(row, "Subject"),
            note=note,
            full_body=note,
            contact_name=rows.cell(row, "Contact name") or None,
            full_log_response=rows.as_record(row),
        )
        return CallLogFetched(info=info)

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        """The row found by its ID (never by a remembered row number) gets the changed cells, in one write."""
        try:
            spreadsheet = await self._spreadsheet(call, create=False)
        except NoSpreadsheet:
            return CallLogUpdated(return_message=_bad_setting())
        rows = await self._read(call, spreadsheet, CALL_LOGS) if spreadsheet else None
        index = rows.find("ID", update.log.log_id) if rows is not None else None
        if spreadsheet is None or rows is None or index is None:
            return CallLogUpdated(return_message=ReturnMessage("Call log not found", "warning", 3000))
        cells: JsonDict = {}
        if update.subject:
            cells["Subject"] = update.subject
        if update.note is not None:
            cells["Notes"] = update.note
        if update.duration is not None:
            seconds = call_seconds(update.duration)
            cells["Duration"] = seconds
            start_text = update.start_time or rows.cell(rows.rows[index], "Start time")
            if start_text:
                start = parse_time(start_text)
                cells["Start time"] = iso_utc(start)
                cells["End time"] = iso_utc(start + timedelta(seconds=seconds))
        if update.result:
            cells["Call Result"] = update.result
        if update.recording_link:
            cells["Call Recording"] = update.recording_link
        cells.update({"Transcript": update.transcript, "Smart summary": update.ai_note})
        cells.update(_ace_cells(update.ring_sense))
        cells = _allowed(call.user, cells)
        await self._write_cells(call.http, spreadsheet, CALL_LOGS, rows, index, cells)
        return CallLogUpdated(
            updated_note=update.note, return_message=ReturnMessage("Call log updated.", "success", 2000)
        )

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        """One row of Message Logs per conversation and day; its Message cell ends with the conversation's
        marker (the reference's header row has no column for it)."""
        try:
            spreadsheet = await self._spreadsheet(call, create=True)
        except NoSpreadsheet:
            return LogResult(None, _bad_setting())
        assert spreadsheet is not None
        rows = await self._tab(call, spreadsheet, MESSAGE_LOGS)
        subject, body, kind = _message_log(call.user, log)
        zone = user_timezone(call.user)
        when = log.shared.started_at if log.shared is not None and log.shared.started_at else None
        moment = parse_time(when or log.message.creation_time).astimezone(zone)
        values: JsonDict = {
            "ID": new_row_id("M"),
            "Sheet Id": spreadsheet,
            "Subject": subject,
            "Contact name": log.contact.name,
            "Message": body + _markers(message_marker(log), log.contact.id),
            "Phone": log.contact.phone_number,
            "Message Type": kind,
            "Message Time": f"{moment:%Y-%m-%d %H:%M:%S}",
            "Direction": log.message.direction,
        }
        await self._append(call.http, spreadsheet, MESSAGE_LOGS, _row(rows.header, values))
        return LogResult(str(values["ID"]), ReturnMessage("Message logged", "success", 1000))

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        rows = await self._existing(call, MESSAGE_LOGS)
        if rows is None:
            return None
        needle = _markers(message_marker(log), log.contact.id).strip()
        for row in reversed(rows.rows):
            if needle in rows.cell(row, "Message"):
                return rows.cell(row, "ID") or None
        return None

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """The message goes in before the conversation's END line and the count goes up; a message whose tag
        is already in the cell was appended by an earlier try and is skipped."""
        try:
            spreadsheet = await self._spreadsheet(call, create=False)
        except NoSpreadsheet:
            return _bad_setting()
        rows = await self._read(call, spreadsheet, MESSAGE_LOGS) if spreadsheet else None
        index = rows.find("ID", update.log_id.split(".", 1)[0]) if rows is not None else None
        if spreadsheet is None or rows is None or index is None:
            return ReturnMessage("Message log not found", "warning", 3000)
        body = rows.cell(rows.rows[index], "Message")
        if update.shared is not None:
            marker = _markers(conversation_marker(update.conversation_log_id), update.contact.id)
            new_body = update.shared.body + marker
        else:
            tag = message_needle(update.message)
            if tag in body:
                return None
            item = _message_item(call.user, update.contact.name, update.contact.phone_number, update)
            if _MESSAGES_END in body:
                new_body = body.replace(_MESSAGES_END, f"{item}{_MESSAGES_END}", 1)
            else:
                new_body = f"{body}\n{item}"
            new_body = _COUNTER_RE.sub(
                lambda m: f"Conversation({int(m.group(1)) + 1} messages)", new_body, count=1
            )
            new_body += "\n" + tag
        await self._write_cells(call.http, spreadsheet, MESSAGE_LOGS, rows, index, {"Message": new_body})
        return ReturnMessage("Message log updated.", "success", 2000)

    # --- the spreadsheet -------------------------------------------------------------------------------------

    async def _spreadsheet(self, call: CrmCall, *, create: bool) -> str | None:
        """The user's chosen spreadsheet, else the one this app made in their Drive (made now if `create`).

        Two first uses at once may both create one; both then take the oldest of that name and the other is
        deleted, so the user ends with one spreadsheet.
        """
        chosen = str(call.user.setting("googleSheetsUrl", "") or "")
        if chosen.strip():
            found = spreadsheet_id_of(chosen)
            if found is None:
                raise NoSpreadsheet()
            return found
        key = call.user.crm_user_id
        if key in self._spreadsheets:
            self._spreadsheets.move_to_end(key)
            return self._spreadsheets[key]
        found = await self._drive_spreadsheet(call.http)
        if found is None and create:
            created = await self._create_spreadsheet(call.http)
            found = await self._drive_spreadsheet(call.http) or created
            if found != created:
                await call.http.request(
                    "DELETE", f"{self._root(GOOGLE_ROOT)}/drive/v3/files/{quote(created, safe='')}"
                )
        if found is not None:
            self._spreadsheets[key] = found
            while len(self._spreadsheets) > MAX_REMEMBERED_USERS:
                self._spreadsheets.popitem(last=False)
        return found

    async def _drive_spreadsheet(self, http: CrmHttp, name: str = DEFAULT_SPREADSHEET_NAME) -> str | None:
        """The oldest spreadsheet of that name this app can see (`drive.file`: only its own files)."""
        found = await self._drive_file(http, name)
        return found[0] if found is not None else None

    async def _drive_file(self, http: CrmHttp, name: str) -> tuple[str, str] | None:
        """(id, address) of the oldest spreadsheet of that name this app can see."""
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        body = await http.get_json(
            f"{self._root(GOOGLE_ROOT)}/drive/v3/files",
            params={
                "q": f"name = '{quoted}' and mimeType = '{SPREADSHEET_MIME}' and trashed = false",
                "orderBy": "createdTime",
                "fields": "files(id,name,webViewLink)",
                "pageSize": 10,
            },
        )
        files = body.get("files") or []
        for entry in files:
            if isinstance(entry, dict) and entry.get("id"):
                file_id = str(entry["id"])
                return file_id, str(entry.get("webViewLink") or spreadsheet_url(file_id))
        return None

    async def _create_spreadsheet(self, http: CrmHttp, name: str = DEFAULT_SPREADSHEET_NAME) -> str:
        """A new spreadsheet with the reference's three tabs and header rows."""
        response = await http.request(
            "POST",
            "/v4/spreadsheets",
            json={
                "properties": {"title": name},
                "sheets": [{"properties": {"title": tab.title}} for tab in TABS],
            },
        )
        spreadsheet = str(response.json()["spreadsheetId"])
        await self._values_update(
            http, spreadsheet, [{"range": f"{tab.a1}!A1", "values": [list(tab.header)]} for tab in TABS]
        )
        return spreadsheet

    async def spreadsheet_named(self, call: CrmCall, name: str) -> tuple[str, str]:
        """(name, address) of the user's spreadsheet of that name this app can see, made now (the reference's
        tabs and header rows) when there is none: what the settings page's "Create new sheet" asks for."""
        found = await self._drive_file(call.http, name)
        if found is None:
            created = await self._create_spreadsheet(call.http, name)
            return name, spreadsheet_url(created)
        return name, found[1]

    def picker_settings(self) -> tuple[str, str]:
        """(API key, Cloud project number) the Google Picker page needs; empty when the server has none."""
        return self.config.get("picker_key"), self.config.get("project_id")

    async def _existing(self, call: CrmCall, tab: Tab) -> Rows | None:
        """The tab of the user's spreadsheet; None when there is none yet, no such tab, or the setting names
        no spreadsheet (nothing can have been logged there)."""
        try:
            spreadsheet = await self._spreadsheet(call, create=False)
        except NoSpreadsheet:
            return None
        return await self._read(call, spreadsheet, tab) if spreadsheet else None

    async def _read(self, call: CrmCall, spreadsheet: str, tab: Tab) -> Rows | None:
        """The whole tab (header first; every column: ZZZ is Sheets' last); None when there is no such tab.

        A 404 (the user deleted the spreadsheet) makes this process forget it: the next call looks in Drive.
        """
        try:
            response = await call.http.request(
                "GET",
                _values_path(spreadsheet, f"{tab.a1}!A:ZZZ"),
                params={"majorDimension": "ROWS"},
                allow_status=(400,),
            )
        except CrmHttpError as exc:
            if exc.status == 404:
                self._spreadsheets.pop(call.user.crm_user_id, None)
            raise
        body = response.json()
        if response.status_code == 400:
            message = str((body.get("error") or {}).get("message") or "")
            if "Unable to parse range" in message:
                return None
            raise CrmHttpError(400, body=body, method="GET", url="values")
        values = body.get("values") or []
        table = [[str(cell) for cell in row] for row in values if isinstance(row, list)]
        if not table:
            return Rows(header=[], rows=[])
        return Rows(header=table[0], rows=table[1:])

    async def _tab(self, call: CrmCall, spreadsheet: str, tab: Tab) -> Rows:
        """The tab, made first if missing, with every column of the reference's header row (missing ones are
        added at the end of row 1, as the reference does)."""
        http = call.http
        rows = await self._read(call, spreadsheet, tab)
        if rows is None:
            await http.request(
                "POST",
                f"/v4/spreadsheets/{quote(spreadsheet, safe='')}:batchUpdate",
                json={"requests": [{"addSheet": {"properties": {"title": tab.title}}}]},
                allow_status=(400,),  # made meanwhile by a concurrent first use: "already exists"
                idempotent=True,
            )
            rows = Rows(header=[], rows=[])
        missing = [name for name in tab.header if name not in rows.header]
        if missing:
            header = [*rows.header, *missing] if rows.header else list(tab.header)
            await self._values_update(http, spreadsheet, [{"range": f"{tab.a1}!A1", "values": [header]}])
            rows.header = header
        return rows

    async def _append(self, http: CrmHttp, spreadsheet: str, tab: Tab, row: list[Any]) -> None:
        """One row after the tab's last; the answer must say which range it wrote (a 200 that is not Google's
        answer is not taken for a written row)."""
        response = await http.request(
            "POST",
            _values_path(spreadsheet, f"{tab.a1}!A1") + ":append",
            params={"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"},
            json={"majorDimension": "ROWS", "values": [row]},
        )
        updated = response.json()["updates"]["updatedRange"]
        if not isinstance(updated, str) or "!" not in updated:
            raise ValueError("append answered no updated range")

    async def _values_update(self, http: CrmHttp, spreadsheet: str, data: list[JsonDict]) -> None:
        """Sets cells to absolute values: safe to send again."""
        response = await http.request(
            "POST",
            f"/v4/spreadsheets/{quote(spreadsheet, safe='')}/values:batchUpdate",
            json={"valueInputOption": "RAW", "data": data},
            idempotent=True,
        )
        if not isinstance(response.json()["totalUpdatedCells"], int):
            raise TypeError("values:batchUpdate answered no cell count")

    async def _write_cells(
        self, http: CrmHttp, spreadsheet: str, tab: Tab, rows: Rows, index: int, cells: JsonDict
    ) -> None:
        row_number = index + 2  # row 1 is the header
        data = []
        for name, value in cells.items():
            column = rows.column(name)
            if column is not None:
                data.append({"range": f"{tab.a1}!{column_letters(column)}{row_number}", "values": [[value]]})
        if data:
            await self._values_update(http, spreadsheet, data)


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def _markers(conversation: str, contact_id: str) -> str:
    """The conversation's marker and its contact's: one conversation (a group SMS) has a row per contact, and
    the reference's header row has no column for either."""
    return f"\n[{conversation}] [rc-contact-{_UNSAFE_IN_MARKER.sub('_', contact_id)[:120]}]"


def _values_path(spreadsheet: str, a1_range: str) -> str:
    """`/v4/spreadsheets/{id}/values/{range}` with the range percent-encoded (quotes, spaces), `!` and `:` kept."""
    return f"/v4/spreadsheets/{quote(spreadsheet, safe='')}/values/{quote(a1_range, safe='!:')}"


def _bad_setting() -> ReturnMessage:
    return ReturnMessage(
        "The Google Sheets URL in the settings is not a spreadsheet's URL",
        "warning",
        5000,
        details=[
            {
                "title": "Details",
                "items": [
                    {
                        "id": "1",
                        "type": "text",
                        "text": "Paste the address of the spreadsheet (https://docs.google.com/spreadsheets/d/...), "
                        "or leave the setting empty to use the sheet this app creates in your Drive.",
                    }
                ],
            }
        ],
    )


def _row(header: list[str], values: JsonDict) -> list[Any]:
    """The values in the tab's column order; columns the tab has beyond them stay empty."""
    row: list[Any] = ["" for _ in header]
    for index, name in enumerate(header):
        if name in values and values[name] is not None:
            row[index] = values[name]
    while row and row[-1] == "":
        row.pop()
    return row


#: the user setting that lets each optional Call Logs column be filled (the reference's `addCallLog…`)
_COLUMN_SETTINGS = {
    "Subject": "addCallLogSubject",
    "Notes": "addCallLogNote",
    "Phone": "addCallLogContactNumber",
    "Duration": "addCallLogDuration",
    "Session Id": "addCallSessionId",
    "Call Result": "addCallLogResult",
    "Call Recording": "addCallLogRecording",
    "Transcript": "addCallLogTranscript",
    "Smart summary": "addCallLogAiNote",
    "ACE Transcript": "addCallLogRingSenseRecordingTranscript",
    "ACE Summary": "addCallLogRingSenseRecordingSummary",
    "ACE AI Score": "addCallLogRingSenseRecordingAIScore",
    "ACE Bulleted Summary": "addCallLogRingSenseRecordingBulletedSummary",
    "ACE Link": "addCallLogRingSenseRecordingLink",
}


def _allowed(user: UserView, cells: JsonDict) -> JsonDict:
    """The cells that have a value and whose column the user's settings let be filled (on unless set off)."""
    kept: JsonDict = {}
    for name, value in cells.items():
        if value is None or (name in _OPTIONAL_IF_EMPTY and value == ""):
            continue
        setting = _COLUMN_SETTINGS.get(name)
        if setting is not None and user.setting(setting, True) in (False, "false"):
            continue
        kept[name] = value
    return kept


#: columns the reference fills only when it has something for them (an empty value writes nothing)
_OPTIONAL_IF_EMPTY = frozenset(
    {
        "Transcript",
        "Smart summary",
        "ACE Transcript",
        "ACE Summary",
        "ACE AI Score",
        "ACE Bulleted Summary",
        "ACE Link",
    }
)


def _ace_cells(sense: RingSense | None) -> JsonDict:
    """RingSense's results of a recorded call, in the reference's `ACE …` columns."""
    if sense is None:
        return {}
    return {
        "ACE Transcript": sense.transcript,
        "ACE Summary": sense.summary,
        "ACE AI Score": sense.ai_score,
        "ACE Bulleted Summary": sense.bulleted_summary,
        "ACE Link": sense.link,
    }


def _call_subject(log: CallLogCreate) -> str:
    if log.call.custom_subject:
        return log.call.custom_subject
    if log.subject:
        return log.subject
    name = log.contact.name
    return f"Inbound Call from {name}" if log.call.direction == "Inbound" else f"Outbound Call to {name}"


def _user_name(user: UserView) -> str:
    return str(user.platform_additional_info.get("name") or "") or "GoogleSheetCRM"


def _message_log(user: UserView, log: MessageLogCreate) -> tuple[str, str, str]:
    """(Subject, Message, Message Type) of a conversation's day, as the reference composes them."""
    zone = user_timezone(user)
    when = parse_time(log.message.creation_time).astimezone(zone)
    name = log.contact.name
    if log.recording_link:
        return (
            f"Voicemail left by {name} - {when:%y/%m/%d}",
            f"Voicemail recording link: {log.recording_link} \n\n--- Created via RingCentral App Connect",
            "Voicemail",
        )
    if log.fax_doc_link:
        return (
            f"Fax document sent from {name} - {when:%y/%m/%d}",
            f"Fax document link: {log.fax_doc_link} \n\n--- Created via RingCentral App Connect",
            "Fax",
        )
    if log.shared is not None:
        return log.shared.subject, log.shared.body, "SMS"
    others = "".join(f"    {other}\n" for other in log.correspondents)
    first = _message_item(user, name, log.contact.phone_number, log)
    body = (
        "\nConversation summary\n"
        f"{when:%A, %B %d, %Y}\n"
        "Participants\n"
        f"    {_user_name(user)}\n"
        f"    {name}\n"
        f"{others}"
        "\nConversation(1 messages)\n"
        "BEGIN\n"
        "------------\n"
        f"{first}"
        f"{_MESSAGES_END}\n\n"
        "--- Created via RingCentral App Connect\n" + message_needle(log.message)
    )
    return f"SMS conversation with {name} - {when:%y/%m/%d}", body, "SMS"


def _message_item(user: UserView, name: str, phone: str, log: MessageLogCreate | MessageLogUpdate) -> str:
    message = log.message
    when = parse_time(message.creation_time).astimezone(user_timezone(user))
    who = f"{name} ({phone})" if message.direction == "Inbound" else _user_name(user)
    image = f"\n{log.image_link}" if log.image_link else ""
    return f"{who} {when:%I:%M %p}\n{message.subject}{image}\n\n"

"""A strict in-memory Google (OAuth server, userinfo, Drive v3 files, Sheets API v4 values) on loopback HTTP.

Built on tests/support/fake_crm.py from Google's API reference and what the reference connector sends:

- OAuth: `/o/oauth2/auth` (consent already given) redirects with a single-use code; `/token` exchanges it
  (client credentials in the form or as Basic) and refreshes without a new refresh token; `/revoke` ends a
  token; `/oauth2/v3/userinfo` answers `sub`, `name`, `email` of the token's Google user.
- Drive: `GET /drive/v3/files` lists the user's spreadsheets this app can see (`drive.file`: the ones it
  created or that were opened with it), filtered by a `q` of `name = '...' and mimeType = '...' and
  trashed = false`, ordered by `createdTime`; `DELETE /drive/v3/files/{id}`.
- Sheets: create a spreadsheet, its metadata, `:batchUpdate` (addSheet; a title taken is a 400),
  `values/{range}` (GET, PUT), `values:batchGet`, `values/{range}:append`, `values:batchUpdate`. A spreadsheet
  belongs to one Google user: another user's token gets 403.

Strict where the real API is: a write without `valueInputOption` is a 400; `USER_ENTERED` parses text as a
user typing it (`+14155550100` becomes the number 14155550100, shown without its `+`; a leading `'` keeps
text); answers hold formatted strings, with trailing empty cells and rows dropped; A1 ranges take column
letters past Z and quoted sheet names (`'Call Logs'!AB7`); a range naming no sheet is "Unable to parse
range"; 60 reads and 60 writes per minute per user, then 429 RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.responses import RedirectResponse, Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    JsonDict,
    OAuthGrants,
    RateLimitPolicy,
    TokenPair,
    basic_credentials,
    bearer_token,
    same_secret,
)

DEFAULT_REDIRECT_URI = "https://ringcentral.github.io/ringcentral-embeddable/redirect.html"
SPREADSHEET_MIME = "application/vnd.google-apps.spreadsheet"
CLIENT_ID = "367818015386-fake.apps.googleusercontent.com"
CLIENT_SECRET = "fake-google-secret"
#: Sheets' per-minute quotas per user (developers.google.com/sheets/api/limits)
READS_PER_MINUTE = WRITES_PER_MINUTE = 60
#: the last column a sheet can have: ZZZ (18,278 columns)
MAX_COLUMN = 18_277

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_CELLS = re.compile(r"^([A-Z]*)(\d*)(?::([A-Z]*)(\d*))?$")
_USER_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_INPUT_OPTIONS = frozenset({"RAW", "USER_ENTERED"})
_RENDER_OPTIONS = frozenset({"FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"})
#: one term of a Drive query and the `and` after it (none after the last)
_Q_NEXT = re.compile(
    r"\s*(?:(name|mimeType)\s*=\s*'((?:[^'\\]|\\.)*)'|trashed\s*=\s*(true|false))\s*(?:\band\b(?=\s*\S)|$)"
)

Cell = str | int | float | bool | None


def column_index(letters: str) -> int:
    """0-based index of an A1 column (`A` 0, `Z` 25, `AA` 26)."""
    number = 0
    for char in letters:
        number = number * 26 + (ord(char) - 64)
    return number - 1


def column_letters(index: int) -> str:
    letters = ""
    number = index + 1
    while number > 0:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def formatted(value: Cell) -> str:
    """A cell as FORMATTED_VALUE shows it: every value is a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def user_entered(value: Cell) -> Cell:
    """What Sheets stores when a user types `value`: numbers and booleans parsed, `'` forces text."""
    if not isinstance(value, str):
        return value
    if value.startswith("'"):
        return value[1:]
    text = value.strip()
    if _USER_NUMBER.match(text):
        number = float(text)
        return int(number) if number.is_integer() and abs(number) < 1e15 else number
    if text.upper() in ("TRUE", "FALSE"):
        return text.upper() == "TRUE"
    return value


@dataclass(slots=True)
class Sheet:
    sheet_id: int
    title: str
    grid: list[list[Cell]] = field(default_factory=list)

    def last_row(self) -> int:
        """Index of the last row holding a value, -1 when empty."""
        for index in range(len(self.grid) - 1, -1, -1):
            if any(cell not in (None, "") for cell in self.grid[index]):
                return index
        return -1

    def put(self, row: int, column: int, value: Cell) -> None:
        while len(self.grid) <= row:
            self.grid.append([])
        cells = self.grid[row]
        while len(cells) <= column:
            cells.append(None)
        cells[column] = value


@dataclass(slots=True)
class Spreadsheet:
    spreadsheet_id: str
    title: str
    owner: str
    created: int
    app_created: bool
    sheets: list[Sheet] = field(default_factory=list)
    trashed: bool = False

    def sheet(self, title: str) -> Sheet | None:
        return next((s for s in self.sheets if s.title == title), None)


@dataclass(slots=True, frozen=True)
class A1:
    """A parsed range: the sheet and 0-based bounds (None: open)."""

    sheet: Sheet
    row1: int | None
    col1: int | None
    row2: int | None
    col2: int | None

    def text(self, last_row: int, last_col: int) -> str:
        c1, r1 = self.col1 or 0, self.row1 or 0
        c2 = self.col2 if self.col2 is not None else last_col
        r2 = self.row2 if self.row2 is not None else last_row
        name = "'" + self.sheet.title.replace("'", "''") + "'"
        return f"{name}!{column_letters(c1)}{r1 + 1}:{column_letters(max(c1, c2))}{max(r1, r2) + 1}"


class FakeGoogleSheets(FakeCrm):
    """Google's OAuth server, userinfo, Drive files and the Sheets API v4 for a few Google users."""

    crm_name = "Google Sheets"

    def __init__(self, *, redirect_uri: str = DEFAULT_REDIRECT_URI) -> None:
        self.redirect_uri = redirect_uri
        super().__init__()

    # --- state ----------------------------------------------------------------------------------------------

    def init_state(self) -> None:
        self.grants = OAuthGrants(self.now)
        self.grants.refresh_token_mode = "omit"  # Google's refresh answer holds no new refresh token
        self.users: dict[str, JsonDict] = {}
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self._sub_of: dict[str, str] = {}  # access token -> Google user
        self._created = 0
        #: one policy, counted apart for reads and writes (`limit_of`): raising it unthrottles both
        self.rate_limit = RateLimitPolicy(limit=READS_PER_MINUTE, window=60.0)
        self.login_sub = self.add_user("Jordan Lee", "jordan.lee@example.test")

    def add_user(self, name: str, email: str) -> str:
        """A Google account; its `sub` (21 digits, as Google's) is returned."""
        sub = f"1{secrets.randbelow(10**20):020d}"
        with self._lock:
            self.users[sub] = {"sub": sub, "name": name, "email": email}
        return sub

    def add_spreadsheet(
        self, owner: str, title: str, tabs: dict[str, list[list[Cell]]], *, app_created: bool = True
    ) -> str:
        """A spreadsheet of `owner` with these tabs and rows (values stored as given, as RAW would)."""
        spreadsheet_id = secrets.token_urlsafe(32)[:44].replace("-", "x")
        with self._lock:
            self._created += 1
            book = Spreadsheet(spreadsheet_id, title, owner, self._created, app_created)
            for title_of_tab, rows in (tabs or {"Sheet1": []}).items():
                book.sheets.append(self._new_sheet(book, title_of_tab, [list(row) for row in rows]))
            self.spreadsheets[spreadsheet_id] = book
        return spreadsheet_id

    def rows(self, spreadsheet_id: str, tab: str) -> list[list[str]]:
        """A tab as FORMATTED_VALUE answers show it (trailing empty cells dropped)."""
        with self._lock:
            sheet = self.spreadsheets[spreadsheet_id].sheet(tab)
            assert sheet is not None, tab
            return _trimmed([[formatted(c) for c in row] for row in sheet.grid])

    def raw_cells(self, spreadsheet_id: str, tab: str) -> list[list[Cell]]:
        with self._lock:
            sheet = self.spreadsheets[spreadsheet_id].sheet(tab)
            assert sheet is not None, tab
            return [list(row) for row in sheet.grid]

    def spreadsheets_of(self, sub: str) -> list[Spreadsheet]:
        with self._lock:
            found = [s for s in self.spreadsheets.values() if s.owner == sub and not s.trashed]
            return sorted(found, key=lambda s: s.created)

    def issue_code(self, sub: str | None = None, *, redirect_uri: str | None = None) -> str:
        with self._lock:
            return self.grants.issue_code(redirect_uri or self.redirect_uri, sub=sub or self.login_sub)

    def issue_tokens(self, sub: str | None = None) -> TokenPair:
        with self._lock:
            pair = self.grants.issue_tokens(sub=sub or self.login_sub)
            self._sub_of[pair.access_token] = sub or self.login_sub
            return pair

    def connector_config(self) -> dict[str, str]:
        return {
            "base_url": self.base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": self.redirect_uri,
        }

    def env(self) -> dict[str, str]:
        return {f"GOOGLESHEETS_{key.upper()}": value for key, value in self.connector_config().items()}

    def _new_sheet(self, book: Spreadsheet, title: str, grid: list[list[Cell]] | None = None) -> Sheet:
        return Sheet(
            sheet_id=0 if not book.sheets else secrets.randbelow(2**31), title=title, grid=grid or []
        )

    # --- FakeCrm hooks --------------------------------------------------------------------------------------

    def routes(self) -> list[FakeRoute]:
        return [
            FakeRoute("GET", "/o/oauth2/auth", self._authorize, auth=False),
            FakeRoute("POST", "/token", self._token, auth=False),
            FakeRoute("POST", "/revoke", self._revoke, auth=False),
            FakeRoute("GET", "/oauth2/v3/userinfo", self._userinfo),
            FakeRoute("GET", "/drive/v3/files", self._list_files),
            FakeRoute("DELETE", "/drive/v3/files/{file_id}", self._delete_file),
            FakeRoute("POST", "/v4/spreadsheets", self._create_spreadsheet),
            FakeRoute("GET", "/v4/spreadsheets/{rest:path}", self._sheets_get),
            FakeRoute("POST", "/v4/spreadsheets/{rest:path}", self._sheets_post),
            FakeRoute("PUT", "/v4/spreadsheets/{rest:path}", self._sheets_put),
        ]

    def authenticate(self, request: FakeRequest) -> bool:
        token = bearer_token(request.headers.get("authorization", ""))
        with self._lock:
            return token is not None and self.grants.access_valid(token)

    def credential_of(self, request: FakeRequest) -> str:
        """Sheets counts per Google user (every token of one user spends one quota)."""
        return self._sub(request) or request.headers.get("authorization", "")

    def limit_of(self, request: FakeRequest) -> tuple[str, RateLimitPolicy]:
        if not request.path.startswith("/v4/spreadsheets"):
            return "other", RateLimitPolicy()
        return ("read" if request.method == "GET" else "write"), self.rate_limit

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        name = _STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        if status == 429:
            message = "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute per user'"
        return {"error": {"code": status, "message": message, "status": name, **extra}}

    def unauthorized(self) -> Response:
        return self.error(401, "Request had invalid authentication credentials.")

    # --- fault matching by what a request does -----------------------------------------------------------

    def _record(self, request: FakeRequest) -> None:
        """Also names what the request does (`@read:Contacts`, `@append:Call Logs`, `@write:Message Logs`), so
        a fault can target one tab's reads or writes; `_take_fault` runs right after, with no await between."""
        super()._record(request)
        self._logical = _logical_path(request)

    def _take_fault(self, method: str, path: str) -> Any:
        logical = getattr(self, "_logical", "")
        self._logical = ""
        if logical:
            fault = super()._take_fault(method, logical)
            if fault is not None:
                return fault
        return super()._take_fault(method, path)

    # --- OAuth ----------------------------------------------------------------------------------------------

    async def _authorize(self, request: FakeRequest) -> Response:
        query = request.query
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            raise HttpError(400, "invalid_request")
        if not query.get("redirect_uri"):
            raise HttpError(400, "redirect_uri_mismatch")
        sub = query.get("login_hint") if query.get("login_hint") in self.users else None
        code = self.issue_code(sub, redirect_uri=query["redirect_uri"])
        state = f"&state={query['state']}" if query.get("state") else ""
        return RedirectResponse(f"{query['redirect_uri']}?code={code}{state}", status_code=302)

    async def _token(self, request: FakeRequest) -> Response:
        form = request.form or {}
        basic = basic_credentials(request.headers.get("authorization", ""))
        client_id, secret = basic if basic else (form.get("client_id", ""), form.get("client_secret", ""))
        if client_id != CLIENT_ID or not same_secret(secret or "", CLIENT_SECRET):
            return self.json({"error": "invalid_client", "error_description": "Unauthorized"}, 401)
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                exchanged = self.grants.exchange_code(form.get("code", ""), form.get("redirect_uri"))
                if exchanged is None:
                    return self._invalid_grant()
                pair, extra = exchanged
                sub = str(extra.get("sub"))
            elif grant_type == "refresh_token":
                refresh_token = form.get("refresh_token", "")
                refreshed = self.grants.refresh(refresh_token)
                if refreshed is None:
                    return self._invalid_grant()
                pair = refreshed
                sub = str(self.grants.extra_of_access(pair.access_token).get("sub"))
            else:
                return self.json({"error": "unsupported_grant_type"}, 400)
            self._sub_of[pair.access_token] = sub
        answer: JsonDict = {
            "access_token": pair.access_token,
            "expires_in": pair.expires_in,
            "scope": "https://www.googleapis.com/auth/drive.file openid",
            "token_type": "Bearer",
        }
        if pair.refresh_token:
            answer["refresh_token"] = pair.refresh_token
        return self.json(answer)

    def _invalid_grant(self) -> Response:
        return self.json({"error": "invalid_grant", "error_description": "Bad Request"}, 400)

    async def _revoke(self, request: FakeRequest) -> Response:
        token = (request.form or {}).get("token") or request.query.get("token", "")
        with self._lock:
            known = self.grants.access_valid(token) or self.grants.refresh_valid(token)
            if not known:
                return self.json(
                    {"error": "invalid_token", "error_description": "Token expired or revoked"}, 400
                )
            self.grants.revoke(token)
        return self.json({})

    def _sub(self, request: FakeRequest) -> str:
        token = bearer_token(request.headers.get("authorization", "")) or ""
        with self._lock:
            return self._sub_of.get(token, "")

    async def _userinfo(self, request: FakeRequest) -> Response:
        with self._lock:
            user = dict(self.users[self._sub(request)])
        first, _, last = str(user["name"]).partition(" ")
        return self.json(
            {**user, "given_name": first, "family_name": last, "email_verified": True, "picture": ""}
        )

    # --- Drive ----------------------------------------------------------------------------------------------

    async def _list_files(self, request: FakeRequest) -> Response:
        allowed = {"q", "orderBy", "fields", "pageSize", "spaces", "pageToken"}
        unknown = set(request.query) - allowed
        if unknown:
            raise HttpError(400, f"Invalid field selection {sorted(unknown)[0]}")
        wanted: dict[str, str] = {}
        trashed: bool | None = None
        for match in _q_terms(request.query.get("q", "")):
            if match.group(3) is not None:
                trashed = match.group(3) == "true"
            else:
                wanted[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
        if request.query.get("orderBy", "createdTime") not in ("createdTime", "createdTime asc"):
            raise HttpError(400, "Invalid orderBy")
        if wanted.get("mimeType", SPREADSHEET_MIME) != SPREADSHEET_MIME:
            return self.json({"files": []})
        sub = self._sub(request)
        with self._lock:
            books = sorted(
                (
                    b
                    for b in self.spreadsheets.values()
                    if b.owner == sub
                    and b.app_created  # drive.file: only files this app created or opened
                    and ("name" not in wanted or b.title == wanted["name"])
                    and (trashed is None or b.trashed == trashed)
                ),
                key=lambda b: b.created,
            )
            files = [
                {
                    "id": b.spreadsheet_id,
                    "name": b.title,
                    "webViewLink": f"https://docs.google.com/spreadsheets/d/{b.spreadsheet_id}/edit",
                }
                for b in books
            ]
        page = request.int_param("pageSize", 100, minimum=1) or 100
        return self.json({"files": files[:page]})

    async def _delete_file(self, request: FakeRequest) -> Response:
        with self._lock:
            book = self.spreadsheets.get(str(request.path_params["file_id"]))
            if book is None or book.owner != self._sub(request):
                raise HttpError(404, f"File not found: {request.path_params['file_id']}.")
            del self.spreadsheets[book.spreadsheet_id]
        return Response(status_code=204)

    # --- Sheets: spreadsheets -----------------------------------------------------------------------------

    async def _create_spreadsheet(self, request: FakeRequest) -> Response:
        body = request.json_object()
        title = str((body.get("properties") or {}).get("title") or "Untitled spreadsheet")
        tabs = [str((s.get("properties") or {}).get("title") or "") for s in body.get("sheets") or []]
        if len(set(tabs)) != len(tabs) or any(not t for t in tabs):
            raise HttpError(400, "Invalid sheets: every sheet needs a unique title")
        spreadsheet_id = self.add_spreadsheet(self._sub(request), title, {t: [] for t in tabs})
        return self.json(self._metadata(spreadsheet_id))

    def _metadata(self, spreadsheet_id: str) -> JsonDict:
        with self._lock:
            book = self.spreadsheets[spreadsheet_id]
            return {
                "spreadsheetId": book.spreadsheet_id,
                "properties": {"title": book.title, "locale": "en_US", "timeZone": "Etc/GMT"},
                "sheets": [
                    {
                        "properties": {
                            "sheetId": s.sheet_id,
                            "title": s.title,
                            "index": i,
                            "sheetType": "GRID",
                            "gridProperties": {"rowCount": 1000, "columnCount": 26},
                        }
                    }
                    for i, s in enumerate(book.sheets)
                ],
                "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{book.spreadsheet_id}/edit",
            }

    def _book(self, request: FakeRequest, spreadsheet_id: str) -> Spreadsheet:
        book = self.spreadsheets.get(spreadsheet_id)
        if book is None or book.trashed:
            raise HttpError(404, "Requested entity was not found.")
        if book.owner != self._sub(request):
            raise HttpError(403, "The caller does not have permission")
        return book

    def _split(self, request: FakeRequest) -> tuple[str, str]:
        """(spreadsheet id, what follows it) of `/v4/spreadsheets/{id}...`, percent-decoded."""
        rest = unquote(str(request.path_params["rest"]))
        if "/" in rest:
            spreadsheet_id, _, tail = rest.partition("/")
            return spreadsheet_id, "/" + tail
        spreadsheet_id, colon, method = rest.partition(":")
        return spreadsheet_id, (":" + method) if colon else ""

    async def _sheets_get(self, request: FakeRequest) -> Response:
        spreadsheet_id, tail = self._split(request)
        with self._lock:
            book = self._book(request, spreadsheet_id)
            if tail == "":
                return self.json(self._metadata(book.spreadsheet_id))
            render = request.query.get("valueRenderOption", "FORMATTED_VALUE")
            dimension = request.query.get("majorDimension", "ROWS")
            if render not in _RENDER_OPTIONS or dimension not in ("ROWS", "COLUMNS"):
                raise HttpError(400, "Invalid valueRenderOption or majorDimension")
            if tail == "/values:batchGet":
                ranges = request.raw.query_params.getlist("ranges")
                if not ranges:
                    raise HttpError(400, "ranges is required")
                return self.json(
                    {
                        "spreadsheetId": book.spreadsheet_id,
                        "valueRanges": [self._value_range(book, r, render, dimension) for r in ranges],
                    }
                )
            if tail.startswith("/values/"):
                return self.json(self._value_range(book, tail[len("/values/") :], render, dimension))
        raise HttpError(404, "Method not found.")

    async def _sheets_post(self, request: FakeRequest) -> Response:
        spreadsheet_id, tail = self._split(request)
        with self._lock:
            book = self._book(request, spreadsheet_id)
            if tail == ":batchUpdate":
                return self.json(self._batch_update(book, request.json_object()))
            if tail == "/values:batchUpdate":
                body = request.json_object()
                option = _input_option(body.get("valueInputOption"))
                responses = [
                    self._write(book, str(item.get("range") or ""), item.get("values"), option)
                    for item in _list(body.get("data"), "data")
                ]
                return self.json(
                    {
                        "spreadsheetId": book.spreadsheet_id,
                        "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
                        "responses": responses,
                    }
                )
            if tail.startswith("/values/") and tail.endswith(":append"):
                option = _input_option(request.query.get("valueInputOption"))
                if request.query.get("insertDataOption", "OVERWRITE") not in ("OVERWRITE", "INSERT_ROWS"):
                    raise HttpError(400, "Invalid insertDataOption")
                target = tail[len("/values/") : -len(":append")]
                return self.json(self._append(book, target, request.json_object().get("values"), option))
        raise HttpError(404, "Method not found.")

    async def _sheets_put(self, request: FakeRequest) -> Response:
        spreadsheet_id, tail = self._split(request)
        if not tail.startswith("/values/"):
            raise HttpError(404, "Method not found.")
        option = _input_option(request.query.get("valueInputOption"))
        with self._lock:
            book = self._book(request, spreadsheet_id)
            written = self._write(book, tail[len("/values/") :], request.json_object().get("values"), option)
        return self.json(written)

    def _batch_update(self, book: Spreadsheet, body: JsonDict) -> JsonDict:
        replies: list[JsonDict] = []
        requests = _list(body.get("requests"), "requests")
        for index, item in enumerate(requests):
            add = item.get("addSheet") if isinstance(item, dict) else None
            if not isinstance(add, dict):
                raise HttpError(400, f"Invalid requests[{index}]: only addSheet is supported by this fake")
            title = str((add.get("properties") or {}).get("title") or "")
            if not title:
                raise HttpError(400, f"Invalid requests[{index}].addSheet: a title is required")
            if book.sheet(title) is not None:
                raise HttpError(
                    400,
                    f'Invalid requests[{index}].addSheet: A sheet with the name "{title}" already exists. '
                    "Please enter another name.",
                )
        for item in requests:
            sheet = self._new_sheet(book, str(item["addSheet"]["properties"]["title"]))
            book.sheets.append(sheet)
            replies.append({"addSheet": {"properties": {"sheetId": sheet.sheet_id, "title": sheet.title}}})
        return {"spreadsheetId": book.spreadsheet_id, "replies": replies}

    # --- Sheets: values -------------------------------------------------------------------------------------

    def _parse_range(self, book: Spreadsheet, text: str) -> A1:
        name, bang, cells = text.rpartition("!")
        if not bang:
            name, cells = text, ""
        if name.startswith("'") and name.endswith("'") and len(name) >= 2:
            name = name[1:-1].replace("''", "'")
        sheet = book.sheet(name)
        if sheet is None and not bang:
            match = _CELLS.match(text)
            if match and any(match.groups()) and book.sheets:
                sheet, cells = book.sheets[0], text
        match = _CELLS.match(cells)
        if sheet is None or match is None:
            raise HttpError(400, f"Unable to parse range: {text}")
        c1, r1, c2, r2 = match.groups()
        if any(c and column_index(c) > MAX_COLUMN for c in (c1, c2)):
            raise HttpError(400, f"Unable to parse range: {text}")
        if not cells:
            return A1(sheet, None, None, None, None)
        if c2 is None and r2 is None:  # one cell (or one whole row or column)
            c2, r2 = c1, r1
        return A1(
            sheet,
            int(r1) - 1 if r1 else None,
            column_index(c1) if c1 else None,
            int(r2) - 1 if r2 else None,
            column_index(c2) if c2 else None,
        )

    def _value_range(self, book: Spreadsheet, text: str, render: str, dimension: str) -> JsonDict:
        a1 = self._parse_range(book, text)
        grid = a1.sheet.grid
        r1, c1 = a1.row1 or 0, a1.col1 or 0
        r2 = a1.row2 if a1.row2 is not None else max(len(grid) - 1, 0)
        rows: list[list[Any]] = []
        for r in range(r1, min(r2, len(grid) - 1) + 1):
            source = grid[r]
            c2 = min(a1.col2 if a1.col2 is not None else len(source) - 1, len(source) - 1)
            rows.append([_render(source[c], render) if c < len(source) else "" for c in range(c1, c2 + 1)])
        rows = _trimmed(rows)
        if dimension == "COLUMNS":
            width = max((len(r) for r in rows), default=0)
            rows = _trimmed([[r[i] if i < len(r) else "" for r in rows] for i in range(width)])
        answer: JsonDict = {"range": a1.text(999, 25), "majorDimension": dimension}
        if rows:
            answer["values"] = rows
        return answer

    def _write(self, book: Spreadsheet, text: str, values: Any, option: str) -> JsonDict:
        a1 = self._parse_range(book, text)
        return self._put_rows(book, a1.sheet, a1.row1 or 0, a1.col1 or 0, _values(values), option)

    def _put_rows(
        self, book: Spreadsheet, sheet: Sheet, r1: int, c1: int, rows: list[list[Cell]], option: str
    ) -> JsonDict:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if value is None:  # "null values will be skipped"
                    continue
                sheet.put(r1 + i, c1 + j, user_entered(value) if option == "USER_ENTERED" else value)
        width = max((len(r) for r in rows), default=0)
        updated = A1(sheet, r1, c1, r1 + max(len(rows) - 1, 0), c1 + max(width - 1, 0))
        return {
            "spreadsheetId": book.spreadsheet_id,
            "updatedRange": updated.text(0, 0),
            "updatedRows": len(rows),
            "updatedColumns": width,
            "updatedCells": sum(len(r) for r in rows),
        }

    def _append(self, book: Spreadsheet, text: str, values: Any, option: str) -> JsonDict:
        """After the last row holding a value (the table the range finds), from the range's first column."""
        a1 = self._parse_range(book, text)
        rows = _values(values)
        start = a1.sheet.last_row() + 1
        updates = self._put_rows(book, a1.sheet, start, a1.col1 or 0, rows, option)
        answer: JsonDict = {"spreadsheetId": book.spreadsheet_id, "updates": updates}
        if start > 0:
            answer["tableRange"] = A1(a1.sheet, 0, a1.col1 or 0, start - 1, None).text(0, 25)
        return answer


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def _q_terms(q: str) -> list[re.Match[str]]:
    """The `and`-joined terms of a Drive query; an `and` inside a quoted name is part of the name."""
    terms: list[re.Match[str]] = []
    position = 0
    while q and position < len(q):
        match = _Q_NEXT.match(q, position)
        if match is None:
            raise HttpError(400, "Invalid Value")
        terms.append(match)
        position = match.end()
    return terms


def _input_option(value: Any) -> str:
    if value not in _INPUT_OPTIONS:
        raise HttpError(400, "Invalid valueInputOption: INPUT_VALUE_OPTION_UNSPECIFIED")
    return str(value)


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise HttpError(400, f"Invalid JSON payload received. '{name}' must be a list")
    return value


def _values(values: Any) -> list[list[Cell]]:
    rows = _list(values, "values")
    for i, row in enumerate(rows):
        for j, cell in enumerate(_list(row, f"values[{i}]")):
            if cell is not None and not isinstance(cell, str | int | float | bool):
                raise HttpError(400, f"Invalid values[{i}][{j}]: struct_value")
    return rows


def _render(value: Cell, render: str) -> Any:
    if render == "FORMATTED_VALUE":
        return formatted(value)
    return "" if value is None else value


def _trimmed(rows: list[list[Any]]) -> list[list[Any]]:
    """Sheets drops trailing empty cells of each row and trailing empty rows."""
    out = []
    for row in rows:
        cells = list(row)
        while cells and cells[-1] in ("", None):
            cells.pop()
        out.append(cells)
    while out and not out[-1]:
        out.pop()
    return out


def _logical_path(request: FakeRequest) -> str:
    """`@read:<tab>`, `@append:<tab>` or `@write:<tab>` of a values request ('' for anything else)."""
    if not request.path.startswith("/v4/spreadsheets/"):
        return ""
    rest = unquote(request.path[len("/v4/spreadsheets/") :])
    ranges: list[str] = []
    kind = ""
    if rest.endswith("/values:batchGet"):
        kind, ranges = "read", request.raw.query_params.getlist("ranges")
    elif request.method == "GET" and "/values/" in rest:
        kind, ranges = "read", [rest.split("/values/", 1)[1]]
    elif rest.endswith(":append") and "/values/" in rest:
        kind, ranges = "append", [rest.split("/values/", 1)[1][: -len(":append")]]
    elif rest.endswith("/values:batchUpdate") and isinstance(request.json, dict):
        data = request.json.get("data")
        kind = "write"
        ranges = (
            [str(d.get("range") or "") for d in data if isinstance(d, dict)] if isinstance(data, list) else []
        )
    if not kind or not ranges:
        return ""
    tab = ranges[0].rpartition("!")[0] or ranges[0]
    if tab.startswith("'") and tab.endswith("'"):
        tab = tab[1:-1].replace("''", "'")
    return f"@{kind}:{tab}"

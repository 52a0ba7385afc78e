"""NetSuite (REST web services): SuiteQL finds people, the record API writes them and their phone calls.

NetSuite is one host per account: `<account id, lower-cased, "_" as "-">.suitetalk.api.netsuite.com` for REST
and OAuth 2.0 tokens, `<same>.app.netsuite.com` for the user's pages. Record ids are unique only inside an
account, so the account id is part of every stored user id and of the account scope. SuiteQL queries are
`POST /services/rest/query/v1/suiteql` with `Prefer: transient`, paged 1,000 rows at a time; a record create
answers 204 with the new id only in the `Location` header. Calls and SMS conversations are `phoneCall`
records, as the reference connector writes them. REST, SOAP and RESTlet requests of an account share one
concurrency pool: a 429 holds back every call to that account.

Where the account has the RingCentral SuiteApp installed, its RESTlets (`<account>.restlets.api.netsuite.com`)
add what REST web services cannot tell or do: the user's time zone, the role's permissions and the OneWorld
licence, a place to keep a long transcript as a file, and user notes on sales orders and opportunities. All go
through one caller (`_restlet`). Without the SuiteApp every other feature works as before; a note cannot be
written, and the log says so with a warning.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appconnect.connectors.kit import (
    DEFAULT_DATE_FORMAT,
    all_or_first_failure,
    call_marker,
    call_seconds,
    call_subject,
    caller_number,
    conversation_marker,
    format_date,
    int_or_none,
    message_marker,
    message_needle,
    parse_time,
    unsearchable,
    user_timezone,
)
from appconnect.connectors.phone import any_same_number, significant_number
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
    ContactRef,
    CreatedContact,
    CrmAnswerError,
    CrmCall,
    CrmHttp,
    CrmHttpError,
    CrmResponse,
    CrmUser,
    DispositionUpdate,
    JsonDict,
    LimitRule,
    LoginRequest,
    LogResult,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    OAuthInfo,
    PlatformUser,
    ReturnMessage,
    UserInfoResult,
    UserView,
    placeholder_contact,
    stored_user_id,
)

SUITEQL_PATH = "/services/rest/query/v1/suiteql"
RECORD_PATH = "/services/rest/record/v1"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
REVOKE_PATH = "/services/rest/auth/oauth2/v1/revoke"
#: SuiteQL's largest page (Oracle: "Collection Paging", `limit` at most 1000)
PAGE_ROWS = 1000
#: pages a lookup reads at most (a number shared by thousands of people is no caller to match)
LOOKUP_PAGES = 2
#: pages the user list reads at most
USER_LIST_PAGES = 50
#: account ids as NetSuite spells them: digits, then an optional `_SB1`, `_RP2`... (sandbox, release preview)
_ACCOUNT = re.compile(r"[0-9a-z]+(?:[-_][0-9a-z]+)*")
_NETSUITE_SUFFIXES = (".app.netsuite.com", ".suitetalk.api.netsuite.com", ".restlets.api.netsuite.com")

RESTLET_PATH = "/app/site/hosting/restlet.nl"
#: the RingCentral SuiteApp's RESTlets: script id -> deployment id (reference index.ts)
SUITEAPP_SCRIPTS = {
    "customscript_getcurrentuser": "customdeploy_getcurrentuser",
    "customscript_getoneworldlicense_scriptid": "customdeploy_getoneworldlicense_deployid",
    "customscript_checkrolepermissionscriptid": "customdeploy_checkrolepermissiondeployid",
    "customscript_gettimezone": "customdeploy_gettimezone",
    "customscript_getappconnectfolderbyname": "customdeploy_getappconnectfolderbyname",
    "customscript_createappconnectfolder": "customdeploy_createappconnectfolder",
    "customscript_createappconnectfile": "customdeploy_createappconnectfile",
    "customscript_attachfilewithphonecalls": "customdeploy_attachfilewithphonecalls",
    "customscript_createusernotes": "customdeploy_createusernotes",
}
#: the error code of a RESTlet answer (400) meaning "no such script is deployed": the SuiteApp is not installed.
#: Only this answer, or a 404 (Oracle, "SuiteScript 2.x RESTlet Error Handling": "the RESTlet called is not at
#: the URL used"), counts as "the SuiteApp is absent"; any other refusal (a bad body, a token without the
#: `restlets` scope, a role without access) is a failure of that call, logged at warning
_NOT_DEPLOYED = "SSS_INVALID_SCRIPTLET_ID"
#: the permissions the connector's work needs, by NetSuite permission id, as the role-permission RESTlet takes
#: them (the reference's list), and how NetSuite's role page names them
REQUIRED_PERMISSIONS = {
    "LIST_CONTACT": "Lists > Contacts (Full)",
    "LIST_CUSTJOB": "Lists > Customers (Full)",
    "LIST_CALL": "Lists > Phone Calls (Full)",
    "REPO_ANALYTICS": "Reports > SuiteAnalytics Workbook (Edit)",
    # sales orders are read for the log form and get the SuiteApp's user notes; opportunities, an opt-in
    # setting, are not asked for: a role without them is offered none (the lookup does not fail)
    "TRAN_SALESORD": "Transactions > Sales Order (Full)",
    "ADMI_LOGIN_OAUTH2": "Setup > Log in using OAuth 2.0 Access Tokens (Full)",
    "ADMI_RESTWEBSERVICES": "Setup > REST Web Services (Full)",
}
#: needed only in a OneWorld account (new records name the employee's subsidiary)
SUBSIDIARY_PERMISSION = ("LIST_SUBSIDIARY", "Lists > Subsidiaries (View)")
#: how long a user's NetSuite time zone (or its absence) is kept in this process
TIMEZONE_TTL = 3600.0
TIMEZONE_CACHE_SIZE = 10_000
#: the longest composed log written into a phone call's message when a transcript makes it long (the
#: reference's figure; the marker line comes on top)
MESSAGE_LIMIT = 3400
TRANSCRIPT_FOLDER = "App Connect Phone Calls"
#: the customer every contact this connector creates belongs to (the reference's name: one per account)
PLACEHOLDER_COMPANY = "RingCentral_CRM_Extension_Placeholder_Company"
_TRANSCRIPT_BLOCK_RE = re.compile(r"^- Transcript:\n([\s\S]*?)\n--- END\n?", re.MULTILINE)
_TRUNCATED_NOTE = "(Transcript shortened here: the whole transcript is the file attached to this phone call.)"
_FILE_NAME_UNSAFE_RE = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')
#: the composed log's date line (plain text: the manifest's log format for NetSuite), first one only
_DATE_LINE_RE = re.compile(r"^- Date/Time:.*$", re.M)

log = logging.getLogger(__name__)

CONTACT_COLUMNS = (
    "id, firstname, middlename, lastname, entitytitle, phone, mobilephone, homephone, officephone, company, "
    "datecreated, lastmodifieddate"
)
CONTACT_PHONES = ("phone", "mobilephone", "homephone", "officephone")
CUSTOMER_COLUMNS = (
    "id, firstname, middlename, lastname, companyname, entitytitle, isperson, searchstage, phone, "
    "mobilephone, homephone, altphone, datecreated, lastmodifieddate"
)
CUSTOMER_PHONES = ("phone", "mobilephone", "homephone", "altphone")
#: a vendor's columns; its phone fields are the reference's vendor fields (the common ones and `altPhone`)
VENDOR_COLUMNS = (
    "id, firstname, middlename, lastname, companyname, entitytitle, isperson, phone, mobilephone, homephone, "
    "altphone, datecreated, lastmodifieddate"
)
VENDOR_PHONES = ("phone", "mobilephone", "homephone", "altphone")
#: the manifest's `contactsSearchId` options (the records a lookup searches) -> SuiteQL tables
_SEARCH_SETTING = {"contact": "contact", "customer": "customer", "vendor": "vendor"}
_ALL_PHONES = ("phone", "mobilephone", "homephone", "officephone", "altphone")
#: the manifest's `phoneFieldsId` options -> SuiteQL columns
_PHONE_SETTING = {
    "phone": "phone",
    "mobilePhone": "mobilephone",
    "homePhone": "homephone",
    "officePhone": "officephone",
    "altPhone": "altphone",
}
#: a customer's `searchstage` -> the manifest's contact type
_STAGE_TYPES = {"lead": "lead", "prospect": "prospect"}
#: manifest contact type -> the customer status stage a new customer of that type starts in
_NEW_STAGES = {"lead": "LEAD", "prospect": "PROSPECT"}

_NOTE_RE = re.compile(r"- (?:Note|Agent notes): ([\s\S]*?)(?=\n- [A-Z][a-zA-Z\s/]*:|\n\Z|\Z)")
_MARKER_RE = re.compile(r"\n*\[rc-(?:call|sms|msg)-[^\]\n]*\]")
_CALL_MARKER_RE = re.compile(r"\[rc-call-[^\]\n]*\]")
_COUNTER_RE = re.compile(r"Conversation\((\d+) messages\)")
_MESSAGES_END = "------------\nEND"

#: the log form's transaction fields (manifest `additionalFields`) -> (SuiteQL `transaction.type`, the user
#: setting that turns them on, the reference's note-line words)
TRANSACTION_KINDS = {
    "salesorder": ("SalesOrd", "enableSalesOrderLogging", "SalesOrder", "Sales Order"),
    "opportunity": ("Opprtnty", "enableOpportunityLogging", "Opportunity", "Opportunity"),
}
#: people of one lookup whose transactions are listed at most (each costs a query per kind)
CHOICE_ENTITIES = 20
#: a note line as the reference writes it: `- SalesOrderNoteUrl: <url> SalesOrderId: <id>`; this connector
#: writes `pending` as the url while the RESTlet's answer is awaited
_NOTE_LINE_RE = re.compile(
    r"^[ \t]*- (SalesOrder|Opportunity)NoteUrl: (\S+) (?:SalesOrder|Opportunity)Id: (\d+)[ \t]*$\n?", re.M
)
_NOTE_HEADER_RE = re.compile(r"^[ \t]*(?:Sales Order|Opportunity) Call Logs \(Do Not Edit\)[ \t]*$\n?", re.M)
_NOTE_ID_RE = re.compile(r"[?&]id=(\d+)$")
_PENDING = "pending"


def account_id(hostname: str | None) -> str | None:
    """The account id a login names (`1234567-sb1.app.netsuite.com`, `1234567-SB1`) as NetSuite writes it
    (`1234567_SB1`), or None when the text names no NetSuite account."""
    text = (hostname or "").strip().lower()
    if "://" in text:
        text = urlsplit(text).hostname or ""
    text = text.split("/", 1)[0].rstrip(".")
    for suffix in _NETSUITE_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    if not text or not _ACCOUNT.fullmatch(text):
        return None
    return text.upper().replace("-", "_")


def account_label(account: str) -> str:
    """The DNS label of an account: lower-cased, `_` as `-` (NetSuite's account-specific domains)."""
    return account.lower().replace("_", "-")


class NetSuiteConnector(Connector):
    """NetSuite through REST web services with OAuth 2.0 per account; contacts, customers, leads, prospects."""

    platform: ClassVar[str] = "netsuite"
    auth_type: ClassVar[AuthType] = "oauth"
    log_format: ClassVar[str] = "text/plain"
    manifest_path: ClassVar[Path | None] = Path(__file__).with_name("manifest.json")
    #: one concurrency pool per account for REST, SOAP and RESTlets (its size depends on the service tier and
    #: SuiteCloud Plus licences): a 429 backs off every user of the account, never only the one who met it
    rate_limits: ClassVar[tuple[LimitRule, ...]] = (LimitRule("concurrency", "company", per_seconds=1.0),)
    idempotent_message_append: ClassVar[bool] = True

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        super().__init__(config)
        #: stored user id -> (when read, the user's NetSuite time zone or None: no SuiteApp to tell it)
        self._zones: dict[str, tuple[float, tzinfo | None]] = {}

    # --- hosts ---------------------------------------------------------------------------------------------

    def api_origin(self, account: str) -> str:
        """Where an account's REST API and token endpoint live. Config `base_url` may name `{host}` (tests put
        a fake there and still see which host was meant)."""
        return self._origin(f"{account_label(account)}.suitetalk.api.netsuite.com")

    def restlet_origin(self, account: str) -> str:
        """Where an account's RESTlets (the SuiteApp's scripts) live: a host of their own."""
        return self._origin(f"{account_label(account)}.restlets.api.netsuite.com")

    def _origin(self, host: str) -> str:
        override = self.config.get("base_url")
        if override:
            return override.replace("{host}", host).rstrip("/")
        return f"https://{host}"

    def base_url(self, user: UserView) -> str:
        account = account_id(user.hostname)
        return self.api_origin(account) if account else super().base_url(user)

    def rate_limit_key(self, user: UserView) -> str:
        return f"netsuite:{account_id(user.hostname) or user.hostname.lower()}"

    # --- auth ----------------------------------------------------------------------------------------------

    def oauth_info(self, hostname: str | None = None) -> OAuthInfo:
        """The account's own token endpoint; a hostname naming no account is refused before any exchange."""
        redirect_uri = self.config.get("redirect_uri")
        account = account_id(hostname)
        client_id = self.config.get("client_id")
        if account is None:
            return OAuthInfo(
                client_id="",
                client_secret=None,
                access_token_uri="",
                redirect_uri=redirect_uri,
                fail_message="Enter your NetSuite address (e.g. 1234567.app.netsuite.com) or account id.",
            )
        origin = self.api_origin(account)
        label = account_label(account)
        return OAuthInfo(
            client_id=client_id,
            client_secret=self.config.get("client_secret") or None,
            access_token_uri=f"{origin}{TOKEN_PATH}",
            redirect_uri=redirect_uri,
            authorization_uri=f"https://{label}.app.netsuite.com/app/login/oauth2/authorize.nl",
            scopes="restlets rest_webservices",
            hostname=f"{label}.app.netsuite.com",
            revoke_uri=f"{origin}{REVOKE_PATH}",
            fail_message=None if client_id else "NetSuite is not set up on this server (no client id).",
        )

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        """NetSuite's redirect names the user (`entity`) and account (`company`); the account must be the one
        the token was issued for, the role must hold the permissions the connector needs (asked of the SuiteApp,
        when installed), and the employee must exist there (read through SuiteQL)."""
        account = account_id(request.hostname)
        callback = parse_qs(urlsplit(request.query.get("callbackUri", "")).query)
        entity = (callback.get("entity") or [""])[0]
        company = (callback.get("company") or [""])[0]
        if account is None or not entity.isdigit():
            return _login_failed("NetSuite did not say who logged in.")
        if company and account_id(company) != account:
            return _login_failed("NetSuite authorized another account than the one entered.")
        # before any SuiteQL: a role without SuiteAnalytics Workbook would otherwise fail with no reason given
        suiteapp = await self._suiteapp_login(request.http, account)
        if suiteapp.entity is not None and suiteapp.entity != int(entity):
            # the callback URL is the client's to write: its `entity` must be the token's own employee
            return _login_failed("NetSuite authorized another user than the one named.")
        if suiteapp.missing:
            return _permissions_missing(suiteapp.missing)
        rows = await self._suiteql(
            request.http,
            _select("id, firstname, middlename, lastname, email", "employee", f"id = {int(entity)}"),
            max_pages=1,
        )
        if not rows:
            return _login_failed("NetSuite does not know this user as an employee.")
        row = rows[0]
        name = _person_name(row) or str(row.get("email") or "")
        # the licence answers whether subsidiaries exist; without the SuiteApp the employee's column tells
        subsidiary = (
            None if suiteapp.one_world is False else await self._subsidiary(request.http, int(entity))
        )
        extra: JsonDict = {} if suiteapp.one_world is None else {"oneWorldEnabled": suiteapp.one_world}
        user = PlatformUser(
            # entity ids are unique only inside one NetSuite account: the account is part of the stored id
            id=stored_user_id(self.platform, entity, account),
            name=name,
            # kept with the user: every later call log is timed in it without asking NetSuite again
            timezone_name=suiteapp.timezone,
            platform_additional_info={
                "accountId": account,
                "email": row.get("email") or "",
                "name": name,
                "subsidiaryId": str(subsidiary) if subsidiary is not None else "",
                **extra,
            },
            account_id=account,
        )
        return UserInfoResult(
            successful=True, user=user, return_message=ReturnMessage("Connected to NetSuite.")
        )

    async def _subsidiary(self, http: CrmHttp, entity: int) -> int | None:
        """The employee's subsidiary in a OneWorld account (new customers and contacts need one there); None
        in an account without subsidiaries, whose employee table has no such column (SuiteQL answers 400)."""
        try:
            rows = await self._suiteql(http, _select("subsidiary", "employee", f"id = {entity}"), max_pages=1)
        except CrmHttpError as exc:
            if exc.status == 400:
                return None
            raise
        return int_or_none(rows[0].get("subsidiary")) if rows else None

    async def _suiteapp_login(self, http: CrmHttp, account: str) -> SuiteAppLogin:
        """The SuiteApp's view of this login: OneWorld or not, the required permissions the role lacks, the
        user's time zone. Nothing is known (and nothing refused) when the SuiteApp is not installed or does not
        answer: the login then goes on as without it. The reference's getUserInfo RESTlets, and the time zone."""
        try:
            current = await self._ask(http, account, "customscript_getcurrentuser")
            if current is None:
                return SuiteAppLogin()
            licence = await self._ask(http, account, "customscript_getoneworldlicense_scriptid")
            one_world = licence.get("oneWorldEnabled") if licence else None
            if not isinstance(one_world, bool):
                # the reference's inference: a user with a subsidiary works in a OneWorld account
                one_world = True if str(current.get("subsidiary") or "").strip() else None
            wanted = dict(REQUIRED_PERMISSIONS)
            if one_world:
                wanted[SUBSIDIARY_PERMISSION[0]] = SUBSIDIARY_PERMISSION[1]
            # a check that fails for another reason than "not deployed" lets the login go on (logged at
            # warning): the permissions are checked again by NetSuite on every request
            answer = await self._ask(
                http,
                account,
                "customscript_checkrolepermissionscriptid",
                body={"requiredPermissions": list(wanted)},
                idempotent=True,  # a question: asking twice changes nothing
            )
            zone = await self._ask(http, account, "customscript_gettimezone", idempotent=True)
        except CrmHttpError:
            return SuiteAppLogin()  # busy or failing: the login must not depend on an optional add-on
        name = zone.get("userTimezone") if zone else None
        timezone_name = name.strip() if isinstance(name, str) and _zone(name) is not None else None
        results = answer.get("permissionResults") if answer else None
        # a permission the script did not answer about is not held against the user
        missing = (
            [label for code, label in wanted.items() if results.get(code) is False]
            if isinstance(results, dict)
            else []
        )
        entity = int_or_none(current.get("id")) if isinstance(current.get("id"), int | str) else None
        return SuiteAppLogin(one_world=one_world, missing=missing, timezone=timezone_name, entity=entity)

    # --- RESTlets ------------------------------------------------------------------------------------------

    async def _restlet(
        self,
        http: CrmHttp,
        account: str,
        script: str,
        *,
        body: JsonDict | None = None,
        params: dict[str, str] | None = None,
        method: str | None = None,
        idempotent: bool = False,
    ) -> JsonDict | None:
        """Call one of the SuiteApp's RESTlets (GET, or POST / `method` with a JSON body); None when the script
        is not deployed (the SuiteApp is not installed) or answers no object. Any other refusal raises, logged
        at warning (script, status, NetSuite's error code: no body text, which may quote data); a busy account
        (429), a failing one (5xx) or no answer raise, as any request."""
        query = {"script": script, "deploy": SUITEAPP_SCRIPTS[script], **(params or {})}
        try:
            response = await http.request(
                method or ("GET" if body is None else "POST"),
                f"{self.restlet_origin(account)}{RESTLET_PATH}",
                params=query,
                json=body,
                # a RESTlet answers in the media type it is asked in
                headers={"Content-Type": "application/json"},
                idempotent=idempotent,
            )
        except CrmHttpError as exc:
            code = _restlet_error_code(exc.body)
            if code == _NOT_DEPLOYED or exc.status == 404:
                return None
            if _refused(exc):
                log.warning("NetSuite RESTlet %s refused the request: %s %s", script, exc.status, code or "-")
            raise
        data = response.json()
        return data if isinstance(data, dict) else None

    async def _ask(
        self,
        http: CrmHttp,
        account: str,
        script: str,
        *,
        body: JsonDict | None = None,
        idempotent: bool = False,
    ) -> JsonDict | None:
        """A RESTlet whose answer is optional: None when the SuiteApp is absent or the script refused the
        request (logged by `_restlet`), so the caller goes on as without the SuiteApp. Busy, failing or silent
        accounts still raise."""
        try:
            return await self._restlet(http, account, script, body=body, idempotent=idempotent)
        except CrmHttpError as exc:
            if _refused(exc):
                return None
            raise

    async def _user_zone(self, call: CrmCall) -> tzinfo:
        """The user's NetSuite time zone (`_netsuite_zone`), else the offset the server knows for the user."""
        return await self._netsuite_zone(call) or user_timezone(call.user)

    async def _netsuite_zone(self, call: CrmCall) -> tzinfo | None:
        """The time zone of the user's NetSuite preferences (the SuiteApp's `customscript_gettimezone`): read
        at login and kept with the user; for a user who logged in without it (before this version, or before
        the SuiteApp was installed) read here, at most once an hour per user and process. None when the
        SuiteApp is absent, refuses, or names no zone this server knows."""
        stored = _zone(call.user.timezone_name)
        if stored is not None:
            return stored
        key = call.user.id
        now = asyncio.get_running_loop().time()
        cached = self._zones.get(key)
        if cached is not None and now - cached[0] < TIMEZONE_TTL:
            return cached[1]
        account = account_id(call.user.hostname)
        try:
            answer = (
                await self._ask(call.http, account, "customscript_gettimezone", idempotent=True)
                if account
                else None
            )
        except CrmHttpError:
            return None  # busy or failing now: ask again on the next call
        zone = _zone(answer.get("userTimezone") if answer else None)
        if len(self._zones) >= TIMEZONE_CACHE_SIZE:
            self._zones.pop(next(iter(self._zones)))  # the oldest entry
        self._zones[key] = (now, zone)
        return zone

    async def _dated(self, call: CrmCall, details: str, start_time: str | None) -> str:
        """The composed log with its `- Date/Time:` line in the user's NetSuite time zone (the reference's
        overrideDateTimeInComposedLogDetails, there on create and update): the server composed it with the
        offset it knows, which may differ from the zone NetSuite shows the call in. Untouched when the zone is
        not known from NetSuite, the user turned the line off, or the log has no such line."""
        if not start_time or call.user.setting("addCallLogDateTime", True) is False:
            return details
        if not _DATE_LINE_RE.search(details):
            return details
        zone = await self._netsuite_zone(call)
        if zone is None:
            return details
        pattern = call.user.setting("logDateFormat")
        when = format_date(parse_time(start_time).astimezone(zone), str(pattern or DEFAULT_DATE_FORMAT))
        return _DATE_LINE_RE.sub(lambda _: f"- Date/Time: {when}", details, count=1)

    async def _attach_transcript(self, call: CrmCall, log_id: str, title: str, transcript: str) -> bool:
        """Keep the whole transcript as a file in the SuiteApp's folder and attach it to the phone call, as the
        reference does. The file's name ends in the call's id and the transcript's digest, so a retried create
        or update finds the file it made and attaches it again (an attachment is a link, made once) instead of
        making a second one. False when the SuiteApp is absent or failed."""
        account = account_id(call.user.hostname)
        if account is None:
            return False
        try:
            folder = await self._transcript_folder(call.http, account)
            if folder is None:
                return False
            suffix = f" {int(log_id)} {hashlib.sha256(transcript.encode()).hexdigest()[:12]}.txt"
            file_id = await self._file_named(call.http, folder, suffix)
            if file_id is None:
                name = _FILE_NAME_UNSAFE_RE.sub(" ", title).strip()[:120] or "Call"
                made = await self._restlet(
                    call.http,
                    account,
                    "customscript_createappconnectfile",
                    body={
                        "folderId": folder,
                        "fileName": f"{name}{suffix}",
                        "content": transcript,
                        "note": "Transcript of a call logged by RingCentral App Connect",
                    },
                )
                file_id = int_or_none(made.get("fileId")) if made else None
            if file_id is None:
                return False
            attached = await self._restlet(
                call.http,
                account,
                "customscript_attachfilewithphonecalls",
                body={"phoneCallId": int(log_id), "fileId": file_id},
                idempotent=True,  # attaching an attached file changes nothing
            )
        except CrmHttpError:
            return False
        return attached is not None and attached.get("success") is not False

    async def _transcript_folder(self, http: CrmHttp, account: str) -> int | None:
        """The SuiteApp's "App Connect Phone Calls" folder, made when missing (a second maker is refused:
        folder names are unique, so the folder is read again)."""
        for attempt in range(2):
            found = await self._restlet(
                http,
                account,
                "customscript_getappconnectfolderbyname",
                params={"name": TRANSCRIPT_FOLDER},
                idempotent=True,
            )
            if found is None:
                return None
            results = found.get("results")
            if found.get("success") is True and isinstance(results, list) and results:
                first = results[0]
                return int_or_none(first.get("id")) if isinstance(first, dict) else None
            if attempt:
                return None
            made = await self._restlet(
                http, account, "customscript_createappconnectfolder", body={"folderName": TRANSCRIPT_FOLDER}
            )
            folder = int_or_none(made.get("folderId")) if made else None
            if folder is not None:
                return folder
        return None

    async def _file_named(self, http: CrmHttp, folder: int, suffix: str) -> int | None:
        """The file in `folder` whose name ends in `suffix` (digits and hex: nothing to escape in LIKE)."""
        try:
            rows = await self._suiteql(
                http,
                _select("id, name", "file", f"folder = {folder} AND name LIKE {_literal('%' + suffix)}")
                + " ORDER BY id ASC",
                max_pages=1,
            )
        except CrmHttpError as exc:
            if exc.status == 400:
                return None  # a role that may not query files: make the file
            raise
        ids = [int_or_none(r.get("id")) for r in rows if str(r.get("name") or "").endswith(suffix)]
        return next((i for i in ids if i is not None), None)

    # --- SuiteQL and records -------------------------------------------------------------------------------

    async def _suiteql(self, http: CrmHttp, query: str, *, max_pages: int) -> list[JsonDict]:
        """Every row of a query, 1,000 at a time (`limit`/`offset`, while `hasMore`), at most `max_pages`."""
        rows: list[JsonDict] = []
        for page in range(max_pages):
            response = await http.request(
                "POST",
                SUITEQL_PATH,
                params={"limit": PAGE_ROWS, "offset": page * PAGE_ROWS},
                json={"q": query},
                headers={"Prefer": "transient"},
                idempotent=True,  # a query changes nothing
            )
            body = response.json()
            rows.extend(item for item in body["items"] if isinstance(item, dict))
            if body.get("hasMore") is not True:
                break
        return rows

    async def _create(self, http: CrmHttp, record_type: str, body: JsonDict) -> str:
        """POST a record; NetSuite answers 204 with no body and the new record's URL in `Location`."""
        response = await http.request("POST", f"{RECORD_PATH}/{record_type}", json=body)
        return _location_id(response)

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        """Contacts, customers (leads and prospects are customers) and vendors whose phone fields hold the
        number's digits, whatever the punctuation, as the `contactsSearchId` setting picks the records; every
        row is re-checked against the caller's number. One parallel query per record, as the reference."""
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        phone = caller_number(lookup)
        digits = "".join(ch for ch in significant_number(phone) if ch.isdigit())
        if not digits:
            return ContactMatches(successful=True, contacts=[placeholder_contact("contact")])
        fields = _chosen(call.user.setting("phoneFieldsId"), _PHONE_SETTING)
        tables = _chosen(call.user.setting("contactsSearchId"), _SEARCH_SETTING)
        contact_fields = tuple(f for f in CONTACT_PHONES if f in fields)
        customer_fields = tuple(f for f in CUSTOMER_PHONES if f in fields)
        vendor_fields = tuple(f for f in VENDOR_PHONES if f in fields)
        contact_query = _select(CONTACT_COLUMNS, "contact", _phone_condition(contact_fields, digits))
        customer_query = _select(CUSTOMER_COLUMNS, "customer", _phone_condition(customer_fields, digits))
        vendor_query = _select(VENDOR_COLUMNS, "vendor", _phone_condition(vendor_fields, digits))
        contact_rows, customer_rows, vendor_rows = await all_or_first_failure(
            [
                self._suiteql(call.http, contact_query, max_pages=LOOKUP_PAGES)
                if "contact" in tables and contact_fields
                else _no_rows(),
                self._suiteql(call.http, customer_query, max_pages=LOOKUP_PAGES)
                if "customer" in tables and customer_fields
                else _no_rows(),
                self._vendors(call.http, vendor_query, max_pages=LOOKUP_PAGES)
                if "vendor" in tables and vendor_fields
                else _no_rows(),
            ]
        )
        people = [
            (row, "contact")
            for row in contact_rows
            if any_same_number([str(row.get(f) or "") for f in contact_fields], phone)
        ]
        people += [
            (row, _customer_type(row))
            for row in customer_rows
            if any_same_number([str(row.get(f) or "") for f in customer_fields], phone)
        ]
        people += [
            (row, "vendor")
            for row in vendor_rows
            if any_same_number([str(row.get(f) or "") for f in vendor_fields], phone)
        ]
        contacts = await self._with_transactions(call, people, phone)
        contacts.append(placeholder_contact("contact"))
        return ContactMatches(successful=True, contacts=contacts)

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        """Contacts, customers and vendors whose first name, last name or display name (a customer's or
        vendor's company name and entity id too) holds the words typed, case-insensitively (the reference's
        findContactWithName, without its second contact query by company name)."""
        term = re.sub(r"[%_\s]+", " ", name).strip().lower()  # LIKE wildcards typed would match anything
        if len(term) < 2:
            return ContactMatches(successful=True, contacts=[])
        pattern = _literal(f"%{term}%")
        names = ("firstname", "lastname", "entitytitle")
        tables = _chosen(call.user.setting("contactsSearchId"), _SEARCH_SETTING)
        contact_query = _select(
            CONTACT_COLUMNS, "contact", " OR ".join(f"LOWER({c}) LIKE {pattern}" for c in names)
        )
        customer_query = _select(
            CUSTOMER_COLUMNS,
            "customer",
            " OR ".join(f"LOWER({c}) LIKE {pattern}" for c in (*names, "companyname", "entityid")),
        )
        vendor_query = _select(
            VENDOR_COLUMNS,
            "vendor",
            " OR ".join(f"LOWER({c}) LIKE {pattern}" for c in (*names, "companyname", "entityid")),
        )
        contact_rows, customer_rows, vendor_rows = await all_or_first_failure(
            [
                self._suiteql(call.http, contact_query, max_pages=1) if "contact" in tables else _no_rows(),
                self._suiteql(call.http, customer_query, max_pages=1) if "customer" in tables else _no_rows(),
                self._vendors(call.http, vendor_query, max_pages=1) if "vendor" in tables else _no_rows(),
            ]
        )
        people = [(row, "contact") for row in contact_rows]
        people += [(row, _customer_type(row)) for row in customer_rows]
        people += [(row, "vendor") for row in vendor_rows]
        return ContactMatches(successful=True, contacts=await self._with_transactions(call, people, None))

    async def _vendors(self, http: CrmHttp, query: str, *, max_pages: int) -> list[JsonDict]:
        """Vendor rows; none when the role may not see vendors (SuiteQL answers 400 for a record the role
        cannot read, 403 for no access): vendors are searched by default, and a role without them must still
        find its contacts and customers (the reference, too, lets a failed vendor search pass)."""
        try:
            return await self._suiteql(http, query, max_pages=max_pages)
        except CrmHttpError as exc:
            if exc.status in (400, 403):
                log.warning("NetSuite vendor search refused: %s", exc.status)
                return []
            raise

    async def _with_transactions(
        self, call: CrmCall, people: list[tuple[JsonDict, str]], phone: str | None
    ) -> list[Contact]:
        """The contacts, each offering its company's sales orders and opportunities (a contact's are its
        company's, a customer's its own, as the reference lists them) when the user's settings turn them on."""
        kinds = [kind for kind, spec in TRANSACTION_KINDS.items() if call.user.setting(spec[1]) is True]
        # a vendor buys nothing from the account: no sales orders or opportunities (as the reference)
        entities: list[int | None] = [
            int_or_none(row.get("company"))
            if kind == "contact"
            else None
            if kind == "vendor"
            else int_or_none(row.get("id"))
            for row, kind in people
        ]
        wanted = list(dict.fromkeys(e for e in entities if e is not None))[:CHOICE_ENTITIES] if kinds else []
        pairs = [(entity, kind) for entity in wanted for kind in kinds]
        lists = await all_or_first_failure([self._transactions(call.http, e, k) for e, k in pairs])
        choices: dict[int, JsonDict] = {}
        for (entity, kind), options in zip(pairs, lists, strict=True):
            if options:
                choices.setdefault(entity, {})[kind] = options
        contacts = []
        for (row, kind), of in zip(people, entities, strict=True):
            own = next((str(row[f]) for f in _ALL_PHONES if row.get(f)), "")
            contact = _contact(row, kind, phone or own)
            contact.additional_info = choices.get(of) if of is not None else None
            contacts.append(contact)
        return contacts

    async def _transactions(self, http: CrmHttp, entity: int, kind: str) -> list[JsonDict]:
        """An entity's transactions of one kind, newest first, as the log form's choices. A role that may
        not see transactions (400/403) offers none rather than failing the lookup."""
        query = _select(
            "id, trandisplayname",
            "transaction",
            f"entity = {entity} AND type = {_literal(TRANSACTION_KINDS[kind][0])} ORDER BY createddate DESC",
        )
        try:
            rows = await self._suiteql(http, query, max_pages=1)
        except CrmHttpError as exc:
            if exc.status in (400, 403):
                return []
            raise
        options = []
        for row in rows:
            transaction = int_or_none(row.get("id"))
            if transaction is not None:
                options.append(
                    {"const": str(transaction), "title": str(row.get("trandisplayname") or f"#{transaction}")}
                )
        return options

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        """A contact under the placeholder company (as the reference files every new contact), a person
        customer (a lead or prospect: in the account's first active status of that stage), or a person vendor
        (the manifest's `vendor` type), with the caller's number as its main phone."""
        kind = new.contact_type or "contact"
        first, last = _split_name(new.name)
        person: JsonDict = {"lastName": last, "phone": new.phone_number}
        if first:
            person["firstName"] = first
        subsidiary = str(call.user.platform_additional_info.get("subsidiaryId") or "")
        if subsidiary.isdigit():
            person["subsidiary"] = {"id": subsidiary}
        if kind == "contact":
            company = await self._placeholder_company(call)
            created = await self._create(call.http, "contact", {**person, "company": {"id": company}})
            label = f"Contact (under the placeholder company {PLACEHOLDER_COMPANY})"
        elif kind in ("custjob", *_NEW_STAGES):
            body: JsonDict = {**person, "isPerson": True}
            if kind in _NEW_STAGES:
                status = await self._first_status(call.http, _NEW_STAGES[kind])
                if status is None:
                    return None  # the account has no active status of that stage: nothing to create
                body["entityStatus"] = {"id": status}
            created = await self._create(call.http, "customer", body)
            label = {"custjob": "Customer", "lead": "Lead", "prospect": "Prospect"}[kind]
        elif kind == "vendor":
            # the reference's vendor: a person; NetSuite fills the entity id (the reference sends the name as
            # one, which an account with unique entity ids refuses for a second vendor of that name)
            created = await self._create(call.http, "vendor", {**person, "isPerson": True})
            label = "Vendor"
        else:
            return None
        contact = Contact(id=created, name=new.name, phone=new.phone_number, type=kind)
        return CreatedContact(
            contact=contact, return_message=ReturnMessage(f"{label} created.", "success", 2000)
        )

    async def _first_status(self, http: CrmHttp, stage: str) -> str | None:
        rows = await self._suiteql(
            http,
            _select(
                "id, name",
                "customerstatus",
                f"stage = {_literal(stage)} AND isinactive = 'F' ORDER BY id ASC",
            ),
            max_pages=1,
        )
        return str(rows[0]["id"]) if rows else None

    async def _placeholder_company(self, call: CrmCall) -> str:
        """The account's placeholder company: found by SuiteQL, else made. Two workers may both find none and
        both make one: where entity ids are unique NetSuite refuses the second (it then reads the first); where
        they are generated both exist, and every caller re-reads after making and takes the lowest id, so all
        use one company (the other stays empty)."""
        found = await self._placeholder_companies(call.http)
        if found:
            return found[0]
        body: JsonDict = {
            "companyName": PLACEHOLDER_COMPANY,
            "entityId": PLACEHOLDER_COMPANY,
            "isPerson": False,
            "comments": "Made by RingCentral App Connect to hold the contacts it creates. Move them to their "
            "real companies whenever you like.",
        }
        subsidiary = str(call.user.platform_additional_info.get("subsidiaryId") or "")
        if subsidiary.isdigit():
            body["subsidiary"] = {"id": subsidiary}
        refused: CrmHttpError | None = None
        try:
            await self._create(call.http, "customer", body)
        except CrmHttpError as exc:
            if exc.status != 400 and not exc.outcome_unknown:
                raise
            refused = exc  # another worker's company took the entity id, or the answer was lost
        found = await self._placeholder_companies(call.http)
        if found:
            return found[0]
        if refused is not None:
            raise refused
        raise CrmAnswerError("placeholder company made but not found")

    async def _placeholder_companies(self, http: CrmHttp) -> list[str]:
        """Ids of the customers named as the placeholder company, lowest first."""
        rows = await self._suiteql(
            http,
            _select("id, companyname", "customer", f"companyname = {_literal(PLACEHOLDER_COMPANY)}")
            + " ORDER BY id ASC",
            max_pages=1,
        )
        ids = sorted(
            int(r["id"])
            for r in rows
            if r.get("companyname") == PLACEHOLDER_COMPANY and str(r.get("id") or "").isdigit()
        )
        return [str(i) for i in ids]

    async def _call_party(self, call: CrmCall, contact: ContactRef) -> JsonDict:
        """`contact` and `company` of a phone call. A contact's call names its company, as the reference
        sends it; a contact without one is first put under the placeholder company (the reference's fix for
        NetSuite refusing such a call's `company`)."""
        party = _party(contact)
        if "contact" not in party:
            return party
        path = f"{RECORD_PATH}/contact/{_record_id(contact.id)}"
        record = await call.http.get_json(path)
        company = record.get("company") if isinstance(record, dict) else None
        company_id = str(company.get("id") or "") if isinstance(company, dict) else ""
        if not company_id.isdigit():
            company_id = await self._placeholder_company(call)
            await _patch(call.http, path, {"company": {"id": company_id}})
        return {**party, "company": {"id": company_id}}

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        """A completed phone call record on the contact (or the customer), in the user's local time."""
        contact_id = int_or_none(log.contact.id)
        if contact_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        record = log.call
        details, transcript, title = await self._call_message(call, log)
        body: JsonDict = {
            "title": title,
            "phone": log.contact.phone_number,
            "priority": "MEDIUM",
            "status": "COMPLETE",
            **_call_times(record.start_time, record.duration, await self._user_zone(call)),
            "timedEvent": True,
            "message": details + _marker_line(call_marker(log)),
            **await self._call_party(call, log.contact),
            **_transaction(log.additional_submission),
        }
        created = await self._create(call.http, "phonecall", body)
        if transcript is not None and not await self._attach_transcript(call, created, title, transcript):
            return LogResult(
                created,
                ReturnMessage("Call logged; the whole transcript could not be attached.", "warning", 5000),
            )
        return LogResult(created, ReturnMessage("Call logged", "success", 2000))

    async def _call_message(self, call: CrmCall, log: CallLogCreate) -> tuple[str, str | None, str]:
        """The phone call's message, the transcript to keep as a file (None: it fits in the message, or the
        user left it out) and the title; a create and the look after a lost create compose them alike."""
        record = log.call
        details = await self._dated(
            call, log.composed_log_details or "No details available", record.start_time
        )
        details, transcript = _fitted(details)
        title = record.custom_subject or log.subject or call_subject(record.direction, log.contact.name)
        return details, transcript, title

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        """The phone call an earlier, unanswered create made. That create may have died after the phone call
        and before its transcript file was attached: the file is attached here (idempotent: the file named
        after the call and the transcript's digest is reused, an attachment made once), so a retry that adopts
        the call leaves it as a finished create would have. A failed attachment still adopts the call (the
        message says the transcript is attached; the next update attaches it again)."""
        found = await self._phone_call_with_marker(call.http, call_marker(log))
        if found is not None:
            _, transcript, title = await self._call_message(call, log)
            if transcript is not None:
                await self._attach_transcript(call, found, title, transcript)
        return found

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        """The agent's note is the `- Note:` line of the message; the marker never shows."""
        data = await call.http.get_json(f"{RECORD_PATH}/phonecall/{_record_id(ref.log_id)}")
        full_body = _without_notes(_MARKER_RE.sub("", str(data.get("message") or "")))
        match = _NOTE_RE.search(full_body)
        info = CallLogInfo(
            subject=data.get("title"),
            note=match.group(1).strip() if match else "",
            full_body=full_body,
            full_log_response=data,
        )
        return CallLogFetched(info=info)

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        """The server composed the new message from the fetched one; the call's marker is kept at its end."""
        log_id = _record_id(update.log.log_id)
        existing = update.existing_call_log_details
        if not isinstance(existing, dict) or "message" not in existing:
            existing = await call.http.get_json(f"{RECORD_PATH}/phonecall/{log_id}")
        marker = _CALL_MARKER_RE.search(str(existing.get("message") or ""))
        details = await self._dated(
            call, update.composed_log_details or "No details available", update.start_time
        )
        details, transcript = _fitted(details)
        body: JsonDict = {
            "message": details
            + (f"\n\n{marker.group(0)}" if marker else "")
            # the note-URL lines stay: a disposition sent again finds its notes there
            + _note_sections(_notes_of(str(existing.get("message") or "")))
        }
        if update.subject:
            body["title"] = update.subject
        if update.start_time and update.duration is not None:
            body.update(_call_times(update.start_time, update.duration, await self._user_zone(call)))
        await _patch(call.http, f"{RECORD_PATH}/phonecall/{log_id}", body)
        message = ReturnMessage("Call log updated.", "success", 2000)
        title = update.subject or str(existing.get("title") or "") or "Call"
        if transcript is not None and not await self._attach_transcript(call, str(log_id), title, transcript):
            message = ReturnMessage(
                "Call log updated; the whole transcript could not be attached.", "warning", 5000
            )
        return CallLogUpdated(updated_note=update.composed_log_details, return_message=message)

    async def upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        """A user note on each chosen sales order / opportunity (the SuiteApp's createusernotes RESTlet), its
        link kept in the phone call's message: a disposition sent again updates that note instead of adding one.
        Without the SuiteApp no note can be written: the phone call is left as it was, with a warning."""
        chosen = [
            (kind, transaction)
            for kind, spec in TRANSACTION_KINDS.items()
            if call.user.setting(spec[1]) is True
            and (transaction := _positive_id(update.dispositions.get(kind))) is not None
        ]
        if not chosen:
            return LogResult(None)
        log_id = _record_id(update.log.log_id)
        path = f"{RECORD_PATH}/phonecall/{log_id}"
        data = await call.http.get_json(path)
        message = str(data.get("message") or "")
        title = str(data.get("title") or "")
        text = _without_notes(_MARKER_RE.sub("", message)).strip() or "empty"
        notes = _notes_of(message)
        before = dict(notes)

        def written() -> str:
            # the message as it was when the notes are as they were (no whitespace touched), else rewritten
            return message if notes == before else _with_notes(message, notes)

        unsure = absent = refused = False
        for kind, transaction in chosen:
            note = notes.get((kind, transaction))
            if note == _PENDING:
                unsure = True  # an earlier create got no answer: it may exist, never make a second one
                continue
            found = _NOTE_ID_RE.search(note or "")
            if found:
                body: JsonDict = {"noteTitle": title, "noteText": text, "noteId": int(found.group(1))}
                try:
                    answer = await self._user_note(call, "PUT", body)
                except CrmHttpError as exc:
                    if not _refused(exc):
                        raise
                    refused = True  # the note stays as it was; its link too
                    continue
                absent = absent or answer is None
                unsure = unsure or (answer is not None and answer.get("success") is not True)
                continue
            notes[(kind, transaction)] = _PENDING
            await _patch(call.http, path, {"message": written()})
            body = {"salesOrderId": transaction, "noteTitle": title, "noteText": text}
            try:
                answer = await self._user_note(call, "POST", body)
            except CrmHttpError as exc:
                # refused: no note was written, a later try may write it. An answer that could not be read
                # (CrmAnswerError) came after the RESTlet ran: the note may exist, the link stays pending
                if not exc.outcome_unknown and not isinstance(exc, CrmAnswerError):
                    del notes[(kind, transaction)]
                    await _patch(call.http, path, {"message": written()})
                if not _refused(exc):
                    raise
                refused = True  # the SuiteApp is there but refused this note: the others may still be written
                continue
            note_id = _note_id(answer)
            if note_id is None:
                del notes[(kind, transaction)]
                absent = absent or answer is None
                unsure = unsure or answer is not None
            else:
                label = account_label(account_id(call.user.hostname) or "")
                notes[(kind, transaction)] = (
                    f"https://{label}.app.netsuite.com/app/crm/common/note.nl?id={note_id}"
                )
            await _patch(call.http, path, {"message": written()})
            if absent:
                break  # no SuiteApp: the other transactions would be refused alike
        if absent:
            return LogResult(str(log_id), _no_suiteapp_note())
        if refused:
            return LogResult(
                str(log_id),
                ReturnMessage(
                    "Call logged, but NetSuite refused a sales order or opportunity note. If this keeps "
                    "happening, ask your NetSuite administrator to check the RingCentral SuiteApp.",
                    "warning",
                    5000,
                ),
            )
        if unsure:
            return LogResult(
                str(log_id),
                ReturnMessage(
                    "Call logged, but a sales order or opportunity note may be missing: check it in NetSuite.",
                    "warning",
                    5000,
                ),
            )
        return LogResult(str(log_id), ReturnMessage("Call log updated.", "success", 2000))

    async def _user_note(self, call: CrmCall, method: str, body: JsonDict) -> JsonDict | None:
        """The createusernotes RESTlet's answer to a POST (a new note) or a PUT (a note rewritten); None when
        the SuiteApp is not there to answer. A POST is sent once: not repeated when its answer is lost."""
        account = account_id(call.user.hostname)
        if account is None:
            return None
        return await self._restlet(
            call.http,
            account,
            "customscript_createusernotes",
            method=method,
            body=body,
            idempotent=method == "PUT",  # the same text written again changes nothing
        )

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        """One phone call record per conversation and day, as the reference writes SMS; later messages are
        appended by update_message_log."""
        if int_or_none(log.contact.id) is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        user_name = str(call.user.platform_additional_info.get("name") or "")
        created = parse_time(log.shared.started_at if log.shared else log.message.creation_time)
        local = created.astimezone(user_timezone(call.user))
        contact = log.contact
        if log.shared is not None:
            subject, text = log.shared.subject, log.shared.body
        elif log.recording_link:
            subject = f"Voicemail left by {contact.name} - {local:%y/%m/%d}"
            text = f"{subject}\nVoicemail recording link: {log.recording_link}\n\n--- Created via RingCentral App Connect"
        elif log.fax_doc_link:
            subject = f"Fax document sent from {contact.name} - {local:%y/%m/%d}"
            text = (
                f"{subject}\nFax document link: {log.fax_doc_link}\n\n--- Created via RingCentral App Connect"
            )
        else:
            subject = f"SMS conversation with {contact.name} - {local:%y/%m/%d}"
            others = "".join(f"    {other}\n" for other in log.correspondents)
            item = _message_item(log.message, contact, user_name, call.user, log.image_link)
            text = (
                "Conversation summary\n"
                f"{local:%A, %B %d, %Y}\n\n"
                "Participants\n"
                f"    {user_name}\n"
                f"    {contact.name} ({contact.phone_number})\n{others}\n"
                "Conversation(1 messages)\n"
                "BEGIN\n"
                "------------\n"
                f"{item}"
                f"{_MESSAGES_END}\n\n"
                "--- Created via RingCentral App Connect"
            )
        body: JsonDict = {
            "title": subject,
            "phone": contact.phone_number,
            "status": "COMPLETE",
            "startDate": local.strftime("%Y-%m-%d"),
            "message": text
            + _marker_line(message_marker(log))
            + ("" if log.shared else _message_tag(log.message)),
            **_party(contact),
        }
        created_id = await self._create(call.http, "phonecall", body)
        chosen = _chosen_transaction(log.additional_submission)
        warning = None if chosen is None else await self._message_note(call, chosen[1], subject, text)
        return LogResult(created_id, warning or ReturnMessage("Message logged", "success", 2000))

    async def _message_note(
        self, call: CrmCall, transaction: int, title: str, text: str
    ) -> ReturnMessage | None:
        """A user note with the conversation on the chosen transaction (the reference writes one for a sales
        order; an opportunity is a transaction too); a warning when none was written. Written once, after the
        phone call: a create retried only when the phone call was not found, so no second note; a failure
        (the SuiteApp absent included) leaves the log in place."""
        body: JsonDict = {"salesOrderId": transaction, "noteTitle": title, "noteText": text}
        try:
            answer = await self._user_note(call, "POST", body)
        except CrmHttpError:
            answer = {}
        if answer is None:
            return _no_suiteapp_note()
        if _note_id(answer) is None:
            return ReturnMessage(
                "Message logged, but the sales order or opportunity note was not.", "warning", 5000
            )
        return None

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        return await self._phone_call_with_marker(call.http, message_marker(log))

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append the message before the conversation's end line and bump the count; skipped when its tag is
        already there (an earlier append got through without an answer)."""
        path = f"{RECORD_PATH}/phonecall/{_record_id(update.log_id)}"
        if update.shared is not None:
            marker = _marker_line(conversation_marker(update.conversation_log_id))
            await _patch(call.http, path, {"message": update.shared.body + marker})
            return ReturnMessage("Message log updated", "success", 2000)
        existing = await call.http.get_json(path)
        text = str(existing.get("message") or "")
        tag = _message_tag(update.message)
        if tag.strip() in text:
            return None
        user_name = str(call.user.platform_additional_info.get("name") or "")
        item = _message_item(update.message, update.contact, user_name, call.user, update.image_link)
        end = _MESSAGES_END if _MESSAGES_END in text else ""
        text = text.replace(end, f"{item}{end}", 1) if end else f"{text}\n{item}"
        text = _COUNTER_RE.sub(lambda m: f"Conversation({int(m.group(1)) + 1} messages)", text, count=1)
        await _patch(call.http, path, {"message": text + tag})
        return None

    # --- account -------------------------------------------------------------------------------------------

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        """The account's active employees with an email, every page of them."""
        rows = await self._suiteql(
            call.http,
            "SELECT id, firstname, middlename, lastname, email, giveaccess, isinactive FROM employee",
            max_pages=USER_LIST_PAGES,
        )
        return [
            CrmUser(id=str(row["id"]), name=_person_name(row) or str(row["email"]), email=str(row["email"]))
            for row in rows
            if row.get("email") and row.get("isinactive") != "T" and row.get("id") is not None
        ]

    # --- shared --------------------------------------------------------------------------------------------

    async def _phone_call_with_marker(self, http: CrmHttp, marker: str) -> str | None:
        """The newest phone call whose message holds `[marker]` (markers hold no quote: safe in SQL)."""
        needle = f"[{marker}]"
        rows = await self._suiteql(
            http,
            f"SELECT id, message FROM phonecall WHERE message LIKE {_literal(f'%{needle}%')} ORDER BY id DESC",  # noqa: S608
            max_pages=1,
        )
        for row in rows:
            if needle in str(row.get("message") or ""):
                return str(row["id"])
        return None


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class SuiteAppLogin:
    """What the SuiteApp said at login: OneWorld or not (None: not told), the permissions the role lacks (as
    NetSuite's role page names them) and the user's time zone."""

    one_world: bool | None = None
    missing: list[str] = field(default_factory=list)
    #: the IANA name of the user's time zone preference, when the SuiteApp told one this server knows
    timezone: str | None = None
    #: the employee the token belongs to, when the SuiteApp's current user named one
    entity: int | None = None


def _permissions_missing(missing: list[str]) -> UserInfoResult:
    return UserInfoResult(
        successful=False,
        return_message=ReturnMessage(
            "Your NetSuite role lacks permissions App Connect needs: "
            + ", ".join(missing)
            + ". Ask your NetSuite administrator to add them to the role (or to give you the RingCentral App "
            "Connect role), then connect again.",
            "warning",
            60000,
        ),
    )


def _restlet_error_code(body: object) -> str | None:
    """NetSuite's error code in a RESTlet's error answer (`{"error": {"code", "message"}}`), if any."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _refused(exc: CrmHttpError) -> bool:
    """NetSuite answered and refused the request (4xx other than 429): asking again now changes nothing."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status != 429


def _zone(name: object) -> tzinfo | None:
    """The IANA zone a NetSuite time zone preference names (`America/Los_Angeles`), or None."""
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _call_times(start_time: str | None, duration: int | str | None, zone: tzinfo) -> JsonDict:
    """A timed phone call's dates and `HH:MM` times in the user's zone; one minute long at least, since
    NetSuite refuses a timed event that ends when it starts."""
    start: datetime = parse_time(start_time).astimezone(zone)
    end = start + timedelta(seconds=call_seconds(duration))
    if end.strftime("%H:%M") == start.strftime("%H:%M"):
        end = start + timedelta(minutes=1)
    return {
        "startDate": start.strftime("%Y-%m-%d"),
        "completedDate": end.strftime("%Y-%m-%d"),
        "startTime": start.strftime("%H:%M"),
        "endTime": end.strftime("%H:%M"),
    }


def _fitted(details: str) -> tuple[str, str | None]:
    """The message that fits NetSuite's limit and the transcript to keep as a file instead (None: the message
    fits, or holds no transcript). The transcript is taken as the composed log holds it (absent when the user
    turned transcripts off): the same text on create and update, so both name its file alike."""
    transcript = _transcript_in(details)
    if not transcript or len(details) <= MESSAGE_LIMIT:
        return details, None
    return _shortened(details, transcript), transcript


def _transcript_in(details: str) -> str | None:
    """The transcript block of a composed log, unless it is one this connector already shortened."""
    match = _TRANSCRIPT_BLOCK_RE.search(details)
    if match is None or _TRUNCATED_NOTE in match.group(1):
        return None
    return match.group(1) or None


def _shortened(details: str, transcript: str) -> str:
    """The composed log with as much of the transcript as fits in MESSAGE_LIMIT characters, and a line saying
    the whole of it is the attached file (the reference's truncation)."""
    frame = "\n- Transcript:\n\n\n" + _TRUNCATED_NOTE + "\n--- END\n"
    # the rest of the log is kept whole unless it alone is too long (then its end goes, the note stays)
    rest = _TRANSCRIPT_BLOCK_RE.sub("", details, count=1).rstrip("\n")[: MESSAGE_LIMIT - len(frame)]
    room = MESSAGE_LIMIT - len(rest) - len(frame)
    return f"{rest}\n- Transcript:\n{transcript[:room]}\n\n{_TRUNCATED_NOTE}\n--- END\n"


def _login_failed(detail: str) -> UserInfoResult:
    return UserInfoResult(
        successful=False,
        return_message=ReturnMessage(
            "Could not load user information",
            "warning",
            5000,
            details=[{"title": "Details", "items": [{"id": "1", "type": "text", "text": detail}]}],
        ),
    )


def _chosen(value: object, known: dict[str, str]) -> set[str]:
    """What a multiple-choice setting picked, as the names it maps to; every choice when unset or unreadable
    (the manifest's default), so a lookup never searches nothing."""
    picked = (
        {known[v] for v in value if isinstance(v, str) and v in known} if isinstance(value, list) else set()
    )
    return picked or set(known.values())


async def _no_rows() -> list[JsonDict]:
    return []


def _phone_condition(fields: tuple[str, ...], digits: str) -> str:
    """Any of the phone fields, punctuation removed, holds the digits (an extension may follow them)."""
    pattern = _literal(f"%{digits}%")
    return " OR ".join(f"REGEXP_REPLACE({field}, '[^0-9]', '') LIKE {pattern}" for field in fields)


def _select(columns: str, table: str, where: str) -> str:
    """A query whose values went through `_literal` (text) or `int` (ids)."""
    return f"SELECT {columns} FROM {table} WHERE {where}"  # noqa: S608


def _literal(text: str) -> str:
    """A SuiteQL string literal (a quote doubled): every value put into a query goes through here."""
    return "'" + text.replace("'", "''") + "'"


def _person_name(row: JsonDict) -> str:
    parts = (row.get("firstname"), row.get("middlename"), row.get("lastname"))
    return " ".join(str(p).strip() for p in parts if p and str(p).strip())


def _customer_type(row: JsonDict) -> str:
    return _STAGE_TYPES.get(str(row.get("searchstage") or "").lower(), "custjob")


def _contact(row: JsonDict, kind: str, phone: str) -> Contact:
    person = row.get("isperson") != "F"
    name = (_person_name(row) if person else "") or str(
        row.get("companyname") or row.get("entitytitle") or ""
    )
    return Contact(
        id=str(int(row["id"])),
        name=name,
        phone=phone,
        type=kind,
        created_date=row.get("datecreated"),
        most_recent_activity_date=row.get("lastmodifieddate"),
        additional_info=None,
    )


def _split_name(name: str) -> tuple[str, str]:
    """(first, last): a person needs a last name, so a single word is the last name."""
    words = name.split()
    if len(words) < 2:
        return "", name.strip() or "Unknown"
    return words[0], " ".join(words[1:])


def _location_id(response: CrmResponse) -> str:
    """The id at the end of the `Location` header of a create (NetSuite sends no body)."""
    location = str(response.headers.get("location") or "")
    record_id = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
    if not record_id.isdigit():
        raise ValueError("no record id in Location")
    return record_id


def _record_id(log_id: str) -> int:
    value = int_or_none(log_id)
    if value is None:
        raise ValueError("not a NetSuite record id")
    return value


def _party(contact: ContactRef) -> JsonDict:
    """A phone call names a contact, or a customer (lead, prospect) as its company."""
    ref = {"id": str(int_or_none(contact.id))}
    return {"contact": ref} if contact.type in ("", "contact") else {"company": ref}


async def _patch(http: CrmHttp, path: str, body: JsonDict) -> None:
    """A PATCH that sets absolute values: safe to send again."""
    await http.request("PATCH", path, json=body, idempotent=True)


def _marker_line(marker: str) -> str:
    return f"\n\n[{marker}]"


def _message_tag(message: Message) -> str:
    return "\n" + message_needle(message)


def _message_item(
    message: Message, contact: ContactRef, user_name: str, user: UserView, image_link: str | None
) -> str:
    when = parse_time(message.creation_time).astimezone(user_timezone(user))
    who = f"{contact.name} ({contact.phone_number})" if message.direction == "Inbound" else user_name
    extra = f"\n{image_link}" if image_link else ""
    return f"{who} {when:%I:%M %p}\n{message.subject}{extra}\n\n"


# --- sales orders and opportunities -------------------------------------------------------------------------


def _positive_id(value: object) -> int | None:
    """A record id the client chose: a positive integer (or its digits), nothing else reaches a request."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 10**18 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19 and int(value) > 0:
        return int(value)
    return None


def _chosen_transaction(chosen: JsonDict) -> tuple[str, int] | None:
    """The sales order, else the opportunity, the log form chose (the reference's order of precedence)."""
    for kind in TRANSACTION_KINDS:
        transaction = _positive_id(chosen.get(kind))
        if transaction is not None:
            return kind, transaction
    return None


def _transaction(chosen: JsonDict) -> JsonDict:
    """A phone call's `transaction` field, as the reference sends it: `{id: <number>, type}`."""
    picked = _chosen_transaction(chosen)
    return {"transaction": {"id": picked[1], "type": picked[0]}} if picked else {}


def _no_suiteapp_note() -> ReturnMessage:
    return ReturnMessage(
        "Logged, but no sales order or opportunity note: notes need the RingCentral SuiteApp in NetSuite.",
        "warning",
        5000,
    )


def _note_id(answer: JsonDict | None) -> str | None:
    """The new note's id in the createusernotes RESTlet's answer; None when it says it wrote none."""
    note_id = int_or_none(answer.get("noteId")) if answer else None
    return str(note_id) if answer and answer.get("success") is True and note_id is not None else None


def _notes_of(message: str) -> dict[tuple[str, int], str]:
    """(kind, transaction id) -> the note's URL (or `pending`) from the note lines of a phone call's message:
    those of its last lines only (after the call's marker, where the server writes them). The text above holds
    the agent's note, a transcript and an AI summary: a line there written like a note link is text, never a
    note to rewrite."""
    notes: dict[tuple[str, int], str] = {}
    for word, url, transaction in _NOTE_LINE_RE.findall(_trailing_note_block(message)):
        kind = next(k for k, spec in TRANSACTION_KINDS.items() if spec[2] == word)
        if _NOTE_ID_RE.search(url) or url == _PENDING:
            notes[(kind, int(transaction))] = url
    return notes


def _trailing_note_block(message: str) -> str:
    """The message's last lines that are note lines, their headings or blank (the server's own block)."""
    lines = message.split("\n")
    start = len(lines)
    while start > 0:
        line = lines[start - 1]
        if line.strip() and not _NOTE_LINE_RE.fullmatch(line) and not _NOTE_HEADER_RE.fullmatch(line):
            break
        start -= 1
    return "\n".join(lines[start:])


def _without_notes(message: str) -> str:
    """The message without the note lines and their headings (the reference's getCallLog cleaning)."""
    return _NOTE_HEADER_RE.sub("", _NOTE_LINE_RE.sub("", message)).rstrip()


def _note_sections(notes: dict[tuple[str, int], str]) -> str:
    """The note lines under the reference's headings, one line per transaction."""
    text = ""
    for kind, (_type, _setting, word, heading) in TRANSACTION_KINDS.items():
        lines = [
            f"- {word}NoteUrl: {url} {word}Id: {transaction}"
            for (k, transaction), url in sorted(notes.items())
            if k == kind
        ]
        if lines:
            text += f"\n\n {heading} Call Logs (Do Not Edit)\n" + "\n".join(lines)
    return text


def _with_notes(message: str, notes: dict[tuple[str, int], str]) -> str:
    return _without_notes(message) + _note_sections(notes)

"""Bullhorn (REST API): candidates, client contacts and leads; calls and SMS conversations are Notes.

Bullhorn runs several data centres. `loginInfo?username=` names the user's OAuth and REST-login URLs (a wrong
data centre answers 307); the OAuth access token lasts 10 minutes and each refresh token works once (the
server's single-flight refresh keeps that safe); the access token is traded at `/login` for a REST session
(`BhRestToken`) and the corporation's `restUrl`, which this connector keeps per user and opens again when
Bullhorn answers 401. Records are created with `PUT` and updated with `POST`; times are epoch milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import math
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from appconnect.connectors.kit import (
    all_or_first_failure,
    call_marker,
    call_seconds,
    caller_number,
    conversation_marker,
    html_link,
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

#: where every user's data centre is looked up (Bullhorn's "Getting Started with REST")
LOGIN_INFO_URL = "https://rest.bullhornstaffing.com/rest-services/loginInfo"
#: the authorize page the client opens; Bullhorn sends the browser on to the user's data centre
GLOBAL_AUTHORIZE_URL = "https://auth.bullhornstaffing.com/oauth/authorize"
BULLHORN_DOMAIN = "bullhornstaffing.com"
_AUTH_HOST = re.compile(r"auth(-[a-z0-9]+)?\.bullhornstaffing\.com")

#: the contact types of the manifest and the Bullhorn entity of each
ENTITIES: dict[str, str] = {"Candidate": "Candidate", "Contact": "ClientContact", "Lead": "Lead"}
#: each contact type's status picklist in `bullhornData` (the manifest's `accountDataPropertyByContactType`)
_STATUS_KEYS: dict[str, str] = {
    "Candidate": "candidateStatuses",
    "Contact": "contactStatuses",
    "Lead": "leadStatuses",
}
#: phone fields searched per entity and the status that hides a record (as the reference searches them)
_PHONE_FIELDS: dict[str, tuple[str, ...]] = {
    "ClientContact": ("phone", "mobile", "phone2", "phone3"),
    "Candidate": ("phone", "mobile", "phone2", "phone3", "workPhone"),
    "Lead": ("phone", "mobile", "phone2", "phone3"),
}
_HIDDEN_STATUS: dict[str, str] = {"ClientContact": "Archive", "Candidate": "Archived", "Lead": "Converted"}
#: the company a new client contact is filed under until the agent moves it (Bullhorn requires one)
PLACEHOLDER_COMPANY = "RingCentral_CRM_Extension_Placeholder_Company"
#: results one search reads at most
SEARCH_COUNT = 50
#: users whose REST session a process keeps (least recently used forgotten first)
MAX_SESSIONS = 10_000
#: users read per page of the user list, and pages read at most
USER_PAGE = 200
MAX_USER_PAGES = 50
#: seconds a corporation's comment-action list and status picklists are reused
COMMENT_ACTIONS_TTL = 3600.0
#: the account data key of the comment actions and status picklists (the reference's, and its manifest's
#: `accountDataKey`)
BULLHORN_DATA_KEY = "bullhornData"
#: characters of a name search used at most (a person's name; longer input is cut)
MAX_NAME_CHARS = 200
#: the Note action when neither the log form nor a setting names one (the reference's)
DEFAULT_CALL_ACTION = "pending note"

_SETTING_BY_KIND: dict[str, str] = {
    "inboundCall": "bullhornInboundCallNoteAction",
    "outboundCall": "bullhornOutboundCallNoteAction",
    "message": "bullhornMessageNoteAction",
    "voicemail": "bullhornVoicemailNoteAction",
    "fax": "bullhornFaxNoteAction",
}
_MARKER_RE = re.compile(r"(?:<br>)*\[rc-(?:call|sms|msg)-[^\]<]*\]")
_SUBJECT_RE = re.compile(r"<li><b>Summary</b>: ([^<]*)</li>")
_AGENT_NOTES = "<b>Agent notes</b><br>"
_CALL_DETAILS = "<b>Call details</b>"
_COUNTER_RE = re.compile(r"Conversation\((\d+) messages\)")
_MESSAGES_END = "</ul>------------<br>END"
#: the admin's server-side logging fields (the manifest's `serverSideLogging.additionalFields`)
API_USERNAME_FIELD = "apiUsername"
API_PASSWORD_FIELD = "apiPassword"
#: API-user REST sessions a process keeps (one per corporation and credentials)
MAX_API_SESSIONS = 1_000
#: what the log's answer says when the API user cannot log in (never the username, password or Bullhorn's page)
API_USER_REFUSED = (
    "The Bullhorn API user of server-side logging could not log in to this Bullhorn account: check its "
    "username and password in the admin's server-side logging settings."
)


class ApiUserRefused(CrmHttpError):
    """The admin's API user could not open a session in the logging user's corporation (wrong credentials, a
    user of another corporation): a refusal the same request cannot overcome, answered in plain words."""

    def __init__(self) -> None:
        super().__init__(400, body={"message": API_USER_REFUSED}, url="(Bullhorn API user login)")


@dataclass(slots=True, frozen=True)
class RestSession:
    """One Bullhorn REST session: the token every call carries and the corporation's REST base URL."""

    token: str
    rest_url: str


class BullhornConnector(Connector):
    """Bullhorn REST with OAuth per data centre and its own REST session."""

    platform: ClassVar[str] = "bullhorn"
    auth_type: ClassVar[AuthType] = "oauth"
    log_format: ClassVar[str] = "text/html"
    manifest_path: ClassVar[Path | None] = Path(__file__).with_name("manifest.json")
    idempotent_message_append: ClassVar[bool] = True
    account_data_keys: ClassVar[tuple[str, ...]] = (BULLHORN_DATA_KEY,)

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        super().__init__(config)
        self._sessions: OrderedDict[str, RestSession] = OrderedDict()
        self._session_locks: dict[str, asyncio.Lock] = {}
        self._comment_actions: dict[str, tuple[float, list[str]]] = {}
        self._statuses: dict[str, tuple[float, dict[str, list[tuple[str, str]]]]] = {}
        self._api_sessions: OrderedDict[str, RestSession] = OrderedDict()
        self._api_locks: dict[str, asyncio.Lock] = {}

    # --- URLs ----------------------------------------------------------------------------------------------

    def _wire(self, url: str) -> str:
        """The URL a request goes to. Config `origin` (tests) serves every Bullhorn host from one fake:
        `https://rest-east.bullhornstaffing.com/x` becomes `<origin>/rest-east/x`."""
        origin = self.config.get("origin").rstrip("/")
        if not origin:
            return url
        parts = urlsplit(url)
        label = (parts.hostname or "").split(".", 1)[0]
        query = f"?{parts.query}" if parts.query else ""
        return f"{origin}/{label}{parts.path}{query}"

    def base_url(self, user: UserView) -> str:
        rest_url = str(user.platform_additional_info.get("restUrl") or "")
        return self._wire(rest_url) if rest_url else super().base_url(user)

    def rate_limit_key(self, user: UserView) -> str:
        """Bullhorn counts calls per corporation."""
        return f"bullhorn:{user.platform_additional_info.get('corporationId') or user.id}"

    # --- auth ----------------------------------------------------------------------------------------------

    def oauth_info(self, hostname: str | None = None) -> OAuthInfo:
        """The token endpoint of the user's data centre (the hostname `resolve_oauth_hostname` found); any
        other host is refused, so the client secret only ever goes to Bullhorn."""
        redirect_uri = self.config.get("redirect_uri")
        client_id = self.config.get("client_id")
        secret = self.config.get("client_secret") or None
        authorize = self._wire(GLOBAL_AUTHORIZE_URL)
        if hostname is None:  # the manifest's entry
            return OAuthInfo(client_id, secret, "", redirect_uri, authorization_uri=authorize)
        host = hostname.strip().lower()
        if not client_id:
            return OAuthInfo(
                client_id="",
                client_secret=None,
                access_token_uri="",
                redirect_uri=redirect_uri,
                fail_message="Bullhorn is not set up on this server (no client id).",
            )
        if not _AUTH_HOST.fullmatch(host):
            return OAuthInfo(
                client_id="",
                client_secret=None,
                access_token_uri="",
                redirect_uri=redirect_uri,
                fail_message="Could not find your Bullhorn data centre: sign in to Bullhorn again.",
            )
        return OAuthInfo(
            client_id=client_id,
            client_secret=secret,
            access_token_uri=self._wire(f"https://{host}/oauth/token"),
            redirect_uri=redirect_uri,
            authorization_uri=self._wire(f"https://{host}/oauth/authorize"),
            hostname=host,
            client_secret_in_body=True,
        )

    async def resolve_oauth_hostname(self, http: CrmHttp, hostname: str, query: dict[str, str]) -> str:
        """The user's OAuth host from `loginInfo`, never from the client: the token request carries the
        client secret. "" when the username is missing or Bullhorn names no Bullhorn host."""
        username = (query.get("username") or "").strip()
        if not username or not self.config.get("client_id"):
            return ""  # nothing to look up, or no Bullhorn application to log in with
        try:
            urls = await self._login_info(http, username)
        except (CrmHttpError, ValueError, TypeError, AttributeError, LookupError):
            return ""  # not answered, or not the JSON Bullhorn documents
        return urlsplit(urls[0]).hostname or "" if urls else ""

    async def _login_info(self, http: CrmHttp, username: str) -> tuple[str, str] | None:
        """(oauthUrl, restUrl) of the user's data centre, each an https URL on a Bullhorn host; else None."""
        response = await http.request(
            "GET", self._wire(LOGIN_INFO_URL), params={"username": username}, auth=False
        )
        body = response.json()
        oauth_url, rest_url = body.get("oauthUrl"), body.get("restUrl")
        if not (_bullhorn_url(oauth_url) and _bullhorn_url(rest_url)):
            return None
        return str(oauth_url), str(rest_url).rstrip("/")

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        """Open a REST session, then ask Bullhorn who it belongs to: the user is the session's owner, never
        the username the client sent, and is stored per corporation (ids are unique only inside one)."""
        username = (request.query.get("username") or "").strip()
        try:
            urls = await self._login_info(request.http, username) if username else None
            if urls is None:
                return _login_failed("Bullhorn did not name your data centre.")
            login_url = urls[1]
            access_token = request.auth_header.removeprefix("Bearer ").strip()
            session = await self._rest_login(request.http, login_url, access_token)
            settings = (
                await request.http.request(
                    "GET",
                    f"{self._wire(session.rest_url)}settings/userId,corporationId",
                    headers={"BhRestToken": session.token},
                    auth=False,
                )
            ).json()
            user_id, corporation_id = int(settings["userId"]), int(settings["corporationId"])
            person = (
                await request.http.request(
                    "GET",
                    f"{self._wire(session.rest_url)}entity/CorporateUser/{user_id}",
                    params={"fields": "id,firstName,lastName,name,timeZoneOffsetEST"},
                    headers={"BhRestToken": session.token},
                    auth=False,
                )
            ).json()
            data = person["data"]
        except (CrmHttpError, KeyError, TypeError, ValueError) as exc:
            status = getattr(exc, "status", None)
            return _login_failed(
                f"Bullhorn answered {status}." if status else "Bullhorn's answer could not be read."
            )
        name = str(data.get("name") or f"{data.get('firstName') or ''} {data.get('lastName') or ''}".strip())
        stored_id = stored_user_id(self.platform, user_id, corporation_id)
        self._keep_session(stored_id, session)
        offset = int_or_none(data.get("timeZoneOffsetEST"))
        user = PlatformUser(
            id=stored_id,
            name=name,
            # Bullhorn gives the user's offset from US Eastern (UTC-5) in minutes
            timezone_offset=str(offset - 300) if offset is not None else None,
            platform_additional_info={
                "loginUrl": login_url,
                "restUrl": session.rest_url,
                "corporationId": corporation_id,
                "userId": user_id,
            },
            account_id=str(corporation_id),
        )
        return UserInfoResult(
            successful=True, user=user, return_message=ReturnMessage("Connected to Bullhorn.")
        )

    async def unauthorize(self, call: CrmCall) -> ReturnMessage | None:
        """Bullhorn has no revocation endpoint: the server forgets the tokens, this process the session."""
        self._sessions.pop(call.user.id, None)
        return ReturnMessage("Logged out of Bullhorn", "success", 1000)

    # --- the REST session ----------------------------------------------------------------------------------

    async def _rest_login(self, http: CrmHttp, login_url: str, access_token: str) -> RestSession:
        """Trade the OAuth access token for a REST session (`POST /login`, as Bullhorn documents it)."""
        if not _bullhorn_url(login_url):
            raise ValueError("not a Bullhorn login URL")
        response = await http.request(
            "POST",
            self._wire(f"{login_url}/login"),
            params={"version": "*", "access_token": access_token},
            auth=False,
        )
        body = response.json()
        token, rest_url = body["BhRestToken"], body["restUrl"]
        if not isinstance(token, str) or not token or not _bullhorn_url(rest_url):
            raise ValueError("Bullhorn's login answer holds no session")
        return RestSession(token, rest_url if rest_url.endswith("/") else f"{rest_url}/")

    def _keep_session(self, user_id: str, session: RestSession) -> None:
        self._sessions[user_id] = session
        self._sessions.move_to_end(user_id)
        while len(self._sessions) > MAX_SESSIONS:
            forgotten, _ = self._sessions.popitem(last=False)
            self._session_locks.pop(forgotten, None)

    async def _session(self, call: CrmCall, stale: RestSession | None = None) -> RestSession:
        """The user's REST session; one login per user and process at a time (the others wait for it).
        `stale`: the session Bullhorn just refused, replaced unless another request already did."""
        lock = self._session_locks.setdefault(call.user.id, asyncio.Lock())
        async with lock:
            current = self._sessions.get(call.user.id)
            if current is not None and current != stale:
                return current
            login_url = str(call.user.platform_additional_info.get("loginUrl") or "")
            access_token = call.auth_header.removeprefix("Bearer ").strip()
            session = await self._rest_login(call.http, login_url, access_token)
            self._keep_session(call.user.id, session)
            return session

    async def _rest(
        self,
        call: CrmCall,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotent: bool = False,
    ) -> CrmResponse:
        """A REST call with the user's session token (see :meth:`_in_session`)."""

        async def reopen(stale: RestSession) -> RestSession:
            return await self._session(call, stale=stale)

        session = await self._session(call)
        return await self._in_session(call, session, reopen, method, path, params, json, idempotent)

    async def _in_session(
        self,
        call: CrmCall,
        session: RestSession,
        reopen: Callable[[RestSession], Awaitable[RestSession | None]],
        method: str,
        path: str,
        params: dict[str, Any] | None,
        json: Any,
        idempotent: bool,
    ) -> CrmResponse:
        """One REST call in `session`; a 401 (the session ended) opens it again through `reopen` and sends the
        call once more: Bullhorn did nothing with a request it refused. A second 401, or no session to reopen,
        is the CRM's refusal."""
        for attempt in (1, 2):
            try:
                return await call.http.request(
                    method,
                    f"{self._wire(session.rest_url)}{path}",
                    params=params,
                    json=json,
                    headers={"BhRestToken": session.token},
                    auth=False,
                    idempotent=idempotent,
                )
            except CrmHttpError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                fresh = await reopen(session)
                if fresh is None:
                    raise
                session = fresh
        raise AssertionError("unreachable")

    # --- the API user of server-side logging -----------------------------------------------------------------

    async def _api_session(
        self, call: CrmCall, settings: JsonDict, stale: RestSession | None = None
    ) -> RestSession | None:
        """The REST session of the admin's API user for the logging user's corporation, None when the admin
        saved none. Kept per corporation and credentials (new credentials open a new session); one login per
        key and process at a time, the others wait for it. `stale`: the session Bullhorn just refused."""
        username = str(settings.get(API_USERNAME_FIELD) or "").strip()
        password = str(settings.get(API_PASSWORD_FIELD) or "")
        corporation = int_or_none(call.user.platform_additional_info.get("corporationId"))
        if not username or not password:
            return None
        if corporation is None:
            raise ApiUserRefused()
        secret = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        key = f"{corporation}:{secret}"
        lock = self._api_locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._api_sessions.get(key)
            if current is not None and current != stale:
                return current
            session = await self._api_login(call.http, username, password, corporation)
            self._api_sessions[key] = session
            self._api_sessions.move_to_end(key)
            while len(self._api_sessions) > MAX_API_SESSIONS:
                forgotten, _ = self._api_sessions.popitem(last=False)
                self._api_locks.pop(forgotten, None)
            return session

    async def _api_login(self, http: CrmHttp, username: str, password: str, corporation: int) -> RestSession:
        """The API user's own OAuth login: its data centre from `loginInfo`, a code from the data centre's
        authorize page with `action=Login` (no redirect followed: the code is in the 302's Location), the code
        traded at that data centre's token endpoint, the token at `/login`. The session is used only when
        Bullhorn says it belongs to the logging user's corporation; any refusal is :class:`ApiUserRefused`
        (the password and Bullhorn's login page never reach an answer or a log line)."""
        try:
            urls = await self._login_info(http, username)
            if urls is None:
                raise ApiUserRefused()
            oauth_url, login_url = urls
            info = self.oauth_info(urlsplit(oauth_url).hostname or "")
            if not info.access_token_uri:
                raise ApiUserRefused()
            redirect_uri = info.redirect_uri
            authorize = await http.request(
                "GET",
                info.authorization_uri or "",
                params={
                    "client_id": info.client_id,
                    "response_type": "code",
                    "action": "Login",
                    "username": username,
                    "password": password,
                    "redirect_uri": redirect_uri,
                },
                auth=False,
                allow_status=(302,),
            )
            location = str(authorize.headers.get("location") or "") if authorize.status_code == 302 else ""
            code = parse_qs(urlsplit(location).query).get("code", [""])[0]
            if not code:
                raise ApiUserRefused()
            tokens = (
                await http.request(
                    "POST",
                    info.access_token_uri,
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "client_id": info.client_id,
                        "client_secret": info.client_secret or "",
                        "redirect_uri": redirect_uri,
                    },
                    auth=False,
                )
            ).json()
            session = await self._rest_login(http, login_url, str(tokens["access_token"]))
            owner = (
                await http.request(
                    "GET",
                    f"{self._wire(session.rest_url)}settings/corporationId",
                    headers={"BhRestToken": session.token},
                    auth=False,
                )
            ).json()
            if int(owner["corporationId"]) != corporation:
                raise ApiUserRefused()  # a user of another corporation: never writes into this one
            return session
        except ApiUserRefused:
            raise
        except CrmHttpError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                raise ApiUserRefused() from None
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CrmAnswerError(type(exc).__name__) from None

    async def _api_rest(
        self,
        call: CrmCall,
        settings: JsonDict,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotent: bool = False,
    ) -> CrmResponse | None:
        """A REST call as the API user (None when the admin saved none; see :meth:`_in_session`)."""

        async def reopen(stale: RestSession) -> RestSession | None:
            return await self._api_session(call, settings, stale=stale)

        session = await self._api_session(call, settings)
        if session is None:
            return None
        return await self._in_session(call, session, reopen, method, path, None, json, idempotent)

    async def _log_write(
        self,
        call: CrmCall,
        sscl: tuple[bool, JsonDict],
        method: str,
        path: str,
        *,
        json: Any,
        idempotent: bool = False,
    ) -> CrmResponse:
        """A write of a call's Note (or of what goes with it): in the admin's API user's session when server-side
        logging sent it and the flow handed over this corporation's settings, else in the user's session."""
        from_sscl, settings = sscl
        if from_sscl:
            answer = await self._api_rest(call, settings, method, path, json=json, idempotent=idempotent)
            if answer is not None:
                return answer
        return await self._rest(call, method, path, json=json, idempotent=idempotent)

    async def _get(self, call: CrmCall, path: str, params: dict[str, Any] | None = None) -> Any:
        return (await self._rest(call, "GET", path, params=params)).json()

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        """Candidates, client contacts and leads whose phone fields hold the number's national digits, each
        hit re-checked against the caller's number; searched together."""
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        phone = caller_number(lookup)
        digits = significant_number(phone)
        if not digits.isdigit():
            return ContactMatches(
                successful=False, return_message=ReturnMessage("Invalid phone number format", "warning", 3000)
            )
        searches = [self._search_phone(call, entity, digits) for entity in ENTITIES.values()]
        found, (actions, statuses) = await asyncio.gather(
            all_or_first_failure(searches), self._picklists(call, refresh=lookup.force_refresh)
        )
        contacts: list[Contact] = []
        for contact_type, records in zip(ENTITIES, found, strict=True):
            for record in records:
                numbers = [str(record.get(f) or "") for f in _PHONE_FIELDS[ENTITIES[contact_type]]]
                if any_same_number(numbers, phone):
                    contacts.append(_contact(record, contact_type, actions))
        if not contacts:
            # the new-contact form's `status` choices per contact type (the manifest's contactTypeDependent
            # field), as the reference offers them: each type's picklist from Bullhorn's meta
            entry = placeholder_contact("Lead")
            info: JsonDict = {
                contact_type: {
                    "status": [{"const": v, "title": t} for v, t in statuses.get(contact_type, [])]
                }
                for contact_type in ENTITIES
            }
            if actions:
                info["noteActions"] = _choices(actions)
            entry.additional_info = info
            contacts.append(entry)
        return ContactMatches(successful=True, contacts=contacts)

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        """Candidates, client contacts and leads by name: the whole name, the first word as a first name or the
        last word as a last name (the reference's three alternatives), each the user's text as an escaped Lucene
        phrase so quotes, colons, parentheses, `OR` or `*` in it never change the query. Every hit is re-checked
        against the words searched, so a looser Bullhorn search cannot offer an unrelated person."""
        text = " ".join(name.split())[:MAX_NAME_CHARS].strip()
        words = [w for w in text.split(" ") if _tokens(w)]
        if not words:
            return ContactMatches(successful=True, contacts=[])
        terms = [f"name:{_phrase(' '.join(words))}", f"firstName:{_phrase(words[0])}"]
        if len(words) > 1:
            terms.append(f"lastName:{_phrase(words[-1])}")
        searches = [self._search_name(call, entity, " OR ".join(terms)) for entity in ENTITIES.values()]
        found, (actions, _statuses) = await asyncio.gather(
            all_or_first_failure(searches), self._picklists(call)
        )
        contacts: list[Contact] = []
        for contact_type, records in zip(ENTITIES, found, strict=True):
            seen: set[int] = set()
            for record in records:
                if int(record["id"]) in seen or not _name_matches(record, words):
                    continue
                seen.add(int(record["id"]))
                contacts.append(_contact(record, contact_type, actions))
        return ContactMatches(successful=True, contacts=contacts)

    async def _search_name(self, call: CrmCall, entity: str, alternatives: str) -> list[JsonDict]:
        query = f'({alternatives}) AND isDeleted:false NOT status:"{_HIDDEN_STATUS[entity]}"'
        response = await self._rest(
            call,
            "POST",
            f"search/{entity}",
            params={"fields": "id,firstName,lastName,name,email,phone,dateAdded", "count": SEARCH_COUNT},
            json={"query": query},
            idempotent=True,  # a search changes nothing
        )
        data = response.json()["data"]
        return [r for r in data if isinstance(r, dict) and r.get("id") is not None]

    async def _search_phone(self, call: CrmCall, entity: str, digits: str) -> list[JsonDict]:
        fields = _PHONE_FIELDS[entity]
        terms = " OR ".join(f"{field}:{digits}" for field in fields)
        query = f'({terms}) AND isDeleted:false NOT status:"{_HIDDEN_STATUS[entity]}"'
        wanted = ",".join(("id", "firstName", "lastName", "name", "email", "dateAdded", *fields))
        response = await self._rest(
            call,
            "POST",
            f"search/{entity}",
            params={"fields": wanted, "count": SEARCH_COUNT},
            json={"query": query},
            idempotent=True,  # a search changes nothing
        )
        data = response.json()["data"]
        return [r for r in data if isinstance(r, dict) and r.get("id") is not None]

    async def account_data(self, call: CrmCall, key: str, *, refresh: bool = False) -> Any:
        """`bullhornData`, in the reference's shape: `commentActionList` (the Note actions the log forms and the
        admin's action settings pick from) and `leadStatuses`, `candidateStatuses`, `contactStatuses` (the
        new-contact form's picklists), each a list of `{const, title}`. Kept in the server's account data an
        hour per corporation (whichever process or user asks); `refresh` reads Bullhorn again."""
        if key != BULLHORN_DATA_KEY:
            raise KeyError(key)
        if call.account_data is None:
            return await self._bullhorn_data(call, fresh=refresh)
        stored, _fetched = await call.account_data.get(
            BULLHORN_DATA_KEY,
            lambda: self._bullhorn_data(call, fresh=True),
            max_age=0.0 if refresh else COMMENT_ACTIONS_TTL,
        )
        return stored

    async def _picklists(
        self, call: CrmCall, *, refresh: bool = False
    ) -> tuple[list[str], dict[str, list[tuple[str, str]]]]:
        """The comment actions and each contact type's statuses, read from `bullhornData` (as the reference's
        lookup reads them), so the placeholder, the log forms and `/accountData` offer the same lists and the
        client's `isForceRefreshAccountData` refreshes all of them."""
        data = await self.account_data(call, BULLHORN_DATA_KEY, refresh=refresh)
        data = data if isinstance(data, dict) else {}
        actions = [str(o["const"]) for o in _options_of(data.get("commentActionList"))]
        statuses = {
            contact_type: [
                (str(o["const"]), str(o.get("title") or o["const"])) for o in _options_of(data.get(name))
            ]
            for contact_type, name in _STATUS_KEYS.items()
        }
        return actions, statuses

    async def _bullhorn_data(self, call: CrmCall, *, fresh: bool) -> JsonDict:
        """The four lists of `bullhornData`; what the user may not read (a 403 on settings or meta) is empty,
        as the placeholder's picklists are."""
        actions, statuses = await asyncio.gather(
            self._actions(call, fresh=fresh), self._status_options(call, fresh=fresh)
        )

        data: JsonDict = {"commentActionList": _choices(actions)}
        for contact_type, name in _STATUS_KEYS.items():
            data[name] = [{"const": v, "title": t} for v, t in statuses.get(contact_type, [])]
        return data

    async def _actions(self, call: CrmCall, *, fresh: bool = False) -> list[str]:
        """The corporation's comment actions (System Setting `commentActionList`), kept an hour."""
        key = self.rate_limit_key(call.user)
        now = asyncio.get_running_loop().time()
        cached = self._comment_actions.get(key)
        if cached is not None and not fresh and now - cached[0] < COMMENT_ACTIONS_TTL:
            return cached[1]
        try:
            body = await self._get(call, "settings/commentActionList")
        except CrmHttpError as exc:
            if exc.status in (401, 429) or exc.status is None:
                raise
            return []  # a user who may not read settings still finds contacts
        raw = body.get("commentActionList") if isinstance(body, dict) else None
        actions = [str(a).strip() for a in raw if str(a).strip()] if isinstance(raw, list) else []
        self._comment_actions[key] = (now, actions)
        return actions

    async def _status_options(
        self, call: CrmCall, *, fresh: bool = False
    ) -> dict[str, list[tuple[str, str]]]:
        """Each contact type's `status` picklist, (value, label) pairs from `GET meta/<Entity>?fields=status`
        (Bullhorn's field map options), kept an hour per corporation like the comment actions. A picklist
        Bullhorn would not give is empty and asked for again next time."""
        key = self.rate_limit_key(call.user)
        now = asyncio.get_running_loop().time()
        cached = self._statuses.get(key)
        if cached is not None and not fresh and now - cached[0] < COMMENT_ACTIONS_TTL:
            return cached[1]
        read = await all_or_first_failure([self._entity_statuses(call, e) for e in ENTITIES.values()])
        options = {contact_type: found or [] for contact_type, found in zip(ENTITIES, read, strict=True)}
        if all(found is not None for found in read):
            self._statuses[key] = (now, options)
        return options

    async def _entity_statuses(self, call: CrmCall, entity: str) -> list[tuple[str, str]] | None:
        try:
            body = await self._get(call, f"meta/{entity}", {"fields": "status"})
        except CrmHttpError as exc:
            if exc.status in (401, 429) or exc.status is None:
                raise
            return None  # a user who may not read the meta still finds and creates contacts
        fields = body.get("fields") if isinstance(body, dict) else None
        for field in fields if isinstance(fields, list) else []:
            if isinstance(field, dict) and field.get("name") == "status":
                options = field.get("options")
                return [
                    (str(o["value"]), str(o.get("label") or o["value"]))
                    for o in (options if isinstance(options, list) else [])
                    if isinstance(o, dict) and str(o.get("value") or "").strip()
                ]
        return []

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        """A lead or candidate directly; a client contact under the placeholder company (found or made). The
        form's status is sent only when it is one of the type's statuses Bullhorn offers."""
        entity = ENTITIES.get(new.contact_type)
        if entity is None:
            return None
        first, _, last = new.name.strip().partition(" ")
        body: JsonDict = {
            "firstName": first,
            "lastName": last.strip(),
            "name": new.name.strip(),
            "phone": new.phone_number,
        }
        message = ReturnMessage(f"{new.contact_type} created.", "success", 2000)
        status = new.additional_submission.get("status")
        if isinstance(status, str) and status.strip():
            _actions, statuses = await self._picklists(call)
            offered = [value for value, _ in statuses.get(new.contact_type, [])]
            if status in offered:
                body["status"] = status
            else:
                message = ReturnMessage(
                    f"{new.contact_type} created with Bullhorn's default status: the status chosen is not one "
                    "Bullhorn offers.",
                    "warning",
                    5000,
                )
        if entity == "ClientContact":
            body["clientCorporation"] = {"id": await self._placeholder_company(call)}
        created = (await self._rest(call, "PUT", f"entity/{entity}", json=body)).json()
        contact_id = str(int(created["changedEntityId"]))
        contact = Contact(id=contact_id, name=new.name.strip(), phone=new.phone_number, type=new.contact_type)
        return CreatedContact(contact, message)

    async def _placeholder_company(self, call: CrmCall) -> int:
        response = await self._rest(
            call,
            "POST",
            "search/ClientCorporation",
            params={"fields": "id,name", "count": 1},
            json={"query": f'name:"{PLACEHOLDER_COMPANY}"'},
            idempotent=True,
        )
        for record in response.json().get("data") or []:
            if isinstance(record, dict) and record.get("name") == PLACEHOLDER_COMPANY:
                return int(record["id"])
        created = await self._rest(
            call,
            "PUT",
            "entity/ClientCorporation",
            json={
                "name": PLACEHOLDER_COMPANY,
                "companyDescription": "Created by RingCentral App Connect for contacts it created: "
                "move them to their real company.",
            },
        )
        return int(created.json()["changedEntityId"])

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        """A Note on the person: the composed HTML, the action, the call's start (epoch ms) and its whole
        minutes; `externalID` holds the call's marker so a lost answer is found again."""
        person_id = int_or_none(log.contact.id)
        if person_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        kind = "inboundCall" if log.call.direction == "Inbound" else "outboundCall"
        marker = call_marker(log)
        body: JsonDict = {
            "comments": log.composed_log_details + _marker_line(marker),
            "personReference": {"id": person_id},
            "action": self._action(call.user, log.additional_submission, kind) or DEFAULT_CALL_ACTION,
            "dateAdded": _epoch_ms(log.call.start_time),
            "minutesSpent": _minutes(log.call.duration),
            "externalID": marker,
            "commentingPerson": {"id": _commenter(call.user, log)},
        }
        sscl = (log.from_server_side_logging, log.server_logging)
        created = (await self._log_write(call, sscl, "PUT", "entity/Note", json=body)).json()
        log_id = str(int(created["changedEntityId"]))
        message = ReturnMessage("Call logged", "success", 2000)
        if _checked(log.additional_submission.get("copyToContactComments")) and log.note.strip():
            message = await self._copy_to_comments(call, log.contact.type, person_id, log.note) or message
        return LogResult(log_id, message)

    async def _copy_to_comments(
        self,
        call: CrmCall,
        contact_type: str | None,
        person_id: int,
        note: str,
        *,
        done: str = "Call logged",
    ) -> ReturnMessage | None:
        """The log form's "Copy to contact comments" checkbox (the reference's): the person's `comments` become the
        agent's note. The Note is written already, so a refusal here is a warning, never a failed log. Always in
        the user's own session (as the reference): it replaces a field of whichever person the request names,
        and the `SSCL` user agent that selects the API user is any client's to send."""
        entity = ENTITIES.get(contact_type or "")
        if entity is None:
            return ReturnMessage(f"{done}; the note was not copied: unknown contact type.", "warning", 5000)
        try:
            await self._rest(
                call, "POST", f"entity/{entity}/{person_id}", json={"comments": note}, idempotent=True
            )
        except CrmHttpError as exc:
            return ReturnMessage(
                f"{done}; the note was not copied to the contact's comments (Bullhorn answered "
                f"{exc.status or 'nothing'}).",
                "warning",
                5000,
            )
        return None

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        return await self._note_with_marker(call, call_marker(log))

    async def _note_with_marker(self, call: CrmCall, marker: str) -> str | None:
        body = await self._get(
            call,
            "query/Note",
            {"where": f"externalID='{marker}' AND isDeleted=false", "fields": "id", "count": 5},
        )
        for record in body.get("data") or []:
            if isinstance(record, dict) and record.get("id") is not None:
                return str(int(record["id"]))
        return None

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        """`POST` updates: the new composed text (its marker kept), the start and the whole minutes."""
        note_id = _note_id(update.log.log_id)
        existing = await self._get(call, f"entity/Note/{note_id}", {"fields": "id,externalID"})
        marker = str(existing["data"].get("externalID") or "")
        body: JsonDict = {"comments": update.composed_log_details + (_marker_line(marker) if marker else "")}
        if update.start_time:
            body["dateAdded"] = _epoch_ms(update.start_time)
        if update.duration is not None:
            body["minutesSpent"] = _minutes(update.duration)
        sscl = (update.from_server_side_logging, update.server_logging)
        await self._log_write(call, sscl, "POST", f"entity/Note/{note_id}", json=body, idempotent=True)
        message = ReturnMessage("Call log updated.", "success", 2000)
        note = update.note or ""
        if _checked(update.additional_submission.get("copyToContactComments")) and note.strip():
            message = await self._copy_on_update(call, update, note) or message
        return CallLogUpdated(updated_note=update.composed_log_details, return_message=message)

    async def _copy_on_update(self, call: CrmCall, update: CallLogUpdate, note: str) -> ReturnMessage | None:
        """The log form's "Copy to contact comments" on an edit (the reference's update): the person's `comments`
        become the note, as on the create. The update names only the person's id, so its type is the one entity
        holding a live record with that id (Bullhorn's people are subtypes of Person; that their ids never
        overlap is not verified, hence the check): none or more than one copies nothing and says so, never
        writing another person's comments."""
        person_id = int_or_none(update.log.contact_id)
        if person_id is None and isinstance(update.existing_call_log_details, dict):
            reference = update.existing_call_log_details.get("personReference")
            person_id = int_or_none(reference.get("id")) if isinstance(reference, dict) else None
        if person_id is None:
            return ReturnMessage(
                "Call log updated; the note was not copied: the contact is not known.", "warning", 5000
            )
        found = await all_or_first_failure([self._is_person(call, e, person_id) for e in ENTITIES.values()])
        types = [contact_type for contact_type, hit in zip(ENTITIES, found, strict=True) if hit]
        if len(types) != 1:
            return ReturnMessage(
                "Call log updated; the note was not copied: the contact was not found in Bullhorn.",
                "warning",
                5000,
            )
        return await self._copy_to_comments(call, types[0], person_id, note, done="Call log updated")

    async def _is_person(self, call: CrmCall, entity: str, person_id: int) -> bool:
        """Whether `entity` has a live record with this id (Bullhorn answers 404 for none, or a deleted one)."""
        try:
            body = await self._get(call, f"entity/{entity}/{person_id}", {"fields": "id,isDeleted"})
        except CrmHttpError as exc:
            if exc.status == 404:
                return False
            raise
        data = body.get("data") if isinstance(body, dict) else None
        return (
            isinstance(data, dict) and int_or_none(data.get("id")) == person_id and not data.get("isDeleted")
        )

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        """The agent's own note is the text between the composed body's Agent notes and Call details."""
        body = await self._get(
            call, f"entity/Note/{_note_id(ref.log_id)}", {"fields": "id,comments,action,personReference"}
        )
        data = body["data"]
        full_body = _MARKER_RE.sub("", str(data.get("comments") or ""))
        note = ""
        if _AGENT_NOTES in full_body:
            raw = full_body.split(_AGENT_NOTES, 1)[1].split(_CALL_DETAILS, 1)[0]
            note = html.unescape(raw.replace("<br>", "\n")).strip()
        subject = _SUBJECT_RE.search(full_body)
        person = data.get("personReference") or {}
        name = f"{person.get('firstName') or ''} {person.get('lastName') or ''}".strip() or None
        info = CallLogInfo(
            subject=html.unescape(subject.group(1)) if subject else None,
            note=note,
            full_body=full_body,
            contact_name=name,
            dispositions={"noteActions": data.get("action")},
            full_log_response=data,
        )
        return CallLogFetched(info=info)

    async def upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        """The disposition is the Note's action."""
        action = update.dispositions.get("noteActions")
        if not isinstance(action, str) or not action.strip():
            return LogResult(None)
        note_id = _note_id(update.log.log_id)
        sscl = (update.from_server_side_logging, update.server_logging)
        await self._log_write(
            call, sscl, "POST", f"entity/Note/{note_id}", json={"action": action.strip()}, idempotent=True
        )
        return LogResult(update.log.log_id)

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        """One Note per conversation and day; later messages are appended by update_message_log."""
        person_id = int_or_none(log.contact.id)
        if person_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        created = parse_time(log.shared.started_at if log.shared else log.message.creation_time)
        local = created.astimezone(user_timezone(call.user))
        contact = log.contact
        kind = "voicemail" if log.recording_link else "fax" if log.fax_doc_link else "message"
        if log.shared is not None:
            comments = log.shared.body
        elif log.recording_link:
            subject = f"Voicemail left by {contact.name} - {local:%y/%m/%d}"
            comments = (
                f"<b>{html.escape(subject)}</b><br>Voicemail recording link: {html_link(log.recording_link)}"
                "<br><br>--- Created via RingCentral App Connect"
            )
        elif log.fax_doc_link:
            subject = f"Fax document sent from {contact.name} - {local:%y/%m/%d}"
            comments = (
                f"<b>{html.escape(subject)}</b><br>Fax document link: {html_link(log.fax_doc_link)}"
                "<br><br>--- Created via RingCentral App Connect"
            )
        else:
            subject = f"SMS conversation with {contact.name} - {local:%y/%m/%d}"
            others = "".join(f"<li>{html.escape(other)}</li>" for other in log.correspondents)
            item = _message_item(log.message, contact, call.user, log.image_link)
            comments = (
                f"<b>{html.escape(subject)}</b><br>"
                "<b>Conversation summary</b><br>"
                f"{local:%A, %B %d, %Y}<br>"
                "Participants<br>"
                f"<ul><li>{html.escape(contact.name)} ({html.escape(contact.phone_number)})</li>{others}</ul>"
                "Conversation(1 messages)<br>"
                f"BEGIN<br>------------<br><ul>{item}{_MESSAGES_END}<br><br>"
                "--- Created via RingCentral App Connect"
            )
        marker = message_marker(log)
        body: JsonDict = {
            "comments": comments + _marker_line(marker) + ("" if log.shared else _message_tag(log.message)),
            "personReference": {"id": person_id},
            "action": self._action(call.user, log.additional_submission, kind),
            "dateAdded": _epoch_ms(created.isoformat()),
            "externalID": marker,
            "commentingPerson": {"id": _user_id(call.user)},
        }
        answer = (await self._rest(call, "PUT", "entity/Note", json=body)).json()
        return LogResult(
            str(int(answer["changedEntityId"])), ReturnMessage("Message logged", "success", 2000)
        )

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        return await self._note_with_marker(call, message_marker(log))

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append the message before the conversation's end and bump the count; skipped when its tag is
        already there (an earlier append got through without an answer)."""
        note_id = _note_id(update.log_id)
        if update.shared is not None:
            marker = _marker_line(conversation_marker(update.conversation_log_id))
            await self._rest(
                call,
                "POST",
                f"entity/Note/{note_id}",
                json={"comments": update.shared.body + marker},
                idempotent=True,
            )
            return ReturnMessage("Message log updated", "success", 2000)
        existing = await self._get(call, f"entity/Note/{note_id}", {"fields": "id,comments"})
        comments = str(existing["data"].get("comments") or "")
        tag = _message_tag(update.message)
        if tag in comments:
            return None
        item = _message_item(update.message, update.contact, call.user, update.image_link)
        if _MESSAGES_END in comments:
            comments = comments.replace(_MESSAGES_END, f"{item}{_MESSAGES_END}", 1)
        else:
            comments = f"{comments}<br>{item}"
        comments = _COUNTER_RE.sub(
            lambda m: f"Conversation({int(m.group(1)) + 1} messages)", comments, count=1
        )
        await self._rest(call, "POST", f"entity/Note/{note_id}", json={"comments": comments + tag})
        return None

    # --- account -------------------------------------------------------------------------------------------

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        """The corporation's users, page by page (`query/CorporateUser`, as the reference reads them)."""
        users: list[CrmUser] = []
        start = 0
        for _ in range(MAX_USER_PAGES):
            body = await self._get(
                call,
                "query/CorporateUser",
                {
                    "where": "isDeleted=false",
                    "fields": "id,firstName,lastName,email",
                    "start": start,
                    "count": USER_PAGE,
                },
            )
            page = [u for u in body.get("data") or [] if isinstance(u, dict) and u.get("id") is not None]
            for person in page:
                name = f"{person.get('firstName') or ''} {person.get('lastName') or ''}".strip()
                users.append(CrmUser(id=str(int(person["id"])), name=name, email=person.get("email") or None))
            if len(page) < USER_PAGE:
                break
            start += len(page)
        return users

    # --- shared --------------------------------------------------------------------------------------------

    def _action(self, user: UserView, submission: JsonDict, kind: str) -> str:
        """The Note's action: the log form's choice, else the company's setting for this kind of log."""
        chosen = submission.get("noteActions")
        if isinstance(chosen, str) and chosen.strip():
            return chosen.strip()
        configured = user.setting(_SETTING_BY_KIND[kind], "")
        return configured.strip() if isinstance(configured, str) else ""


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def _bullhorn_url(value: Any) -> bool:
    """An https URL on a Bullhorn host: the only place a token or a session may be sent."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and (host == BULLHORN_DOMAIN or host.endswith(f".{BULLHORN_DOMAIN}"))


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


def _contact(record: JsonDict, contact_type: str, actions: list[str]) -> Contact:
    name = str(record.get("name") or "").strip() or (
        f"{record.get('firstName') or ''} {record.get('lastName') or ''}".strip()
    )
    added = int_or_none(record.get("dateAdded"))
    return Contact(
        id=str(int(record["id"])),
        name=name,
        phone=str(record.get("phone") or "") or None,
        type=contact_type,
        email=str(record.get("email") or "") or None,
        created_date=parse_time(added).isoformat() if added is not None else None,
        additional_info={"noteActions": _choices(actions)} if actions else None,
    )


def _phrase(text: str) -> str:
    """The user's text as one Lucene phrase: inside quotes only `"` and `\\` are special, so both are escaped
    and nothing else in the text (`:`, `(`, `OR`, `*`) can act as query syntax."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tokens(text: str) -> list[str]:
    """Words as a search index splits them: runs of letters and digits, lower-cased."""
    return re.findall(r"[^\W_]+", text.lower())


def _has_run(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def _name_matches(record: JsonDict, words: list[str]) -> bool:
    """A hit of the name search holds the whole name, the first word in its first name or the last word in
    its last name (the three alternatives searched)."""
    if _has_run(_tokens(str(record.get("name") or "")), _tokens(" ".join(words))):
        return True
    if _has_run(_tokens(str(record.get("firstName") or "")), _tokens(words[0])):
        return True
    return len(words) > 1 and _has_run(_tokens(str(record.get("lastName") or "")), _tokens(words[-1]))


def _checked(value: Any) -> bool:
    """A checkbox of the log form: true, or the text "true"."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _options_of(stored: Any) -> list[JsonDict]:
    """`{const, title}` options as kept (what another version stored may differ: anything unreadable is
    skipped)."""
    if not isinstance(stored, list):
        return []
    return [o for o in stored if isinstance(o, dict) and str(o.get("const") or "").strip()]


def _choices(actions: list[str]) -> list[JsonDict]:
    return [{"const": action, "title": action} for action in actions]


def _epoch_ms(value: Any) -> int:
    """Bullhorn's time: whole epoch milliseconds (an ISO string or a fraction is refused)."""
    return int(parse_time(value).timestamp() * 1000)


def _minutes(duration: Any) -> int:
    """`minutesSpent` is an integer: a call's started minutes (95 s -> 2)."""
    return math.ceil(call_seconds(duration) / 60)


def _user_id(user: UserView) -> int:
    return int(user.platform_additional_info.get("userId") or user.crm_user_id)


def _commenter(user: UserView, log: CallLogCreate) -> int:
    """Who the Note is by: the CRM user the admin mapped the call's extension to, else the logging user."""
    owner = int_or_none(log.owner.id) if log.owner is not None else None
    return owner if owner is not None else _user_id(user)


def _note_id(log_id: str) -> int:
    return int(log_id)


def _marker_line(marker: str) -> str:
    return f"<br><br>[{marker}]"


def _message_tag(message: Message) -> str:
    return "<br>" + message_needle(message)


def _message_item(message: Message, contact: ContactRef, user: UserView, image_link: str | None) -> str:
    """One `<li>` of the conversation: who, when (user's time), what."""
    when = parse_time(message.creation_time).astimezone(user_timezone(user))
    who = f"{contact.name} ({contact.phone_number})" if message.direction == "Inbound" else "Agent"
    text = html.escape(message.subject).replace("\n", "<br>")
    extra = f"<br>{html_link(image_link)}" if image_link else ""
    return f"<li>{html.escape(who)} {when:%I:%M %p}<br><b>{text}</b>{extra}</li>"

"""Insightly: contacts and leads are the contacts; calls and SMS conversations are events linked to them.

Insightly's API lives on the user's pod (`https://api.<pod>.insightly.com/v3.1`), which the user pastes at
login: the server sends the user's API key there, so the URL is accepted only when it is an https
insightly.com host (deployments may allow more origins explicitly). Searches compare the stored text exactly,
so a lookup asks for each spelling people commonly store and re-checks every hit with the phone normaliser.

An event is made in two calls (create, then link to the contact). A per-call marker in DETAILS lets a create
whose answer was lost, or whose link never landed, be found again by the owner's recent events and linked
then, so a retry never makes a second event.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from appconnect.connectors.kit import (
    all_or_first_failure,
    call_marker,
    call_seconds,
    call_subject,
    caller_number,
    conversation_marker,
    message_marker,
    message_needle,
    parse_time,
    unsearchable,
    user_timezone,
)
from appconnect.connectors.phone import (
    any_same_number,
    overriding_renderings,
    search_terms,
    significant_number,
)
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
    CrmCall,
    CrmHttp,
    CrmHttpError,
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
    PlatformUser,
    ReturnMessage,
    UserInfoResult,
    UserView,
    placeholder_contact,
    stored_user_id,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

API_VERSION = "v3.1"
#: Insightly's standard phone fields searched for each kind of record (custom ones come from user settings).
#: The two objects name the mobile differently (Contact `PHONE_MOBILE`, Lead `MOBILE`), and a search on a field
#: the object does not have is a 400.
PHONE_FIELDS: dict[str, tuple[str, ...]] = {
    "contact": ("PHONE", "PHONE_MOBILE"),
    "lead": ("PHONE", "MOBILE"),
}
#: every standard field each kind of record may hold a number in: what a hit is re-checked against
_STORED_PHONE_FIELDS: dict[str, tuple[str, ...]] = {
    "contact": ("PHONE", "PHONE_MOBILE", "PHONE_HOME", "PHONE_OTHER", "PHONE_ASSISTANT", "PHONE_FAX"),
    "lead": ("PHONE", "MOBILE", "FAX"),
}
_EXTRA_FIELD_SETTING = {
    "contact": "insightlyExtraPhoneFieldNameForContact",
    "lead": "insightlyExtraPhoneFieldNameForLead",
}
_FIELD_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_RESOURCE = {"contact": "Contacts", "lead": "Leads"}
_ID_FIELD = {"contact": "CONTACT_ID", "lead": "LEAD_ID"}
_LINK_NAME = {"contact": "Contact", "lead": "Lead"}
#: the log form's association fields -> (Insightly link object name, resource, id field, name field)
_ASSOCIATIONS: dict[str, tuple[str, str, str, str]] = {
    "organisation": ("Organisation", "Organisations", "ORGANISATION_ID", "ORGANISATION_NAME"),
    "opportunity": ("Opportunity", "Opportunities", "OPPORTUNITY_ID", "OPPORTUNITY_NAME"),
    "project": ("Project", "Projects", "PROJECT_ID", "PROJECT_NAME"),
}
#: answers that mean Insightly refused a search's field (a custom field mistyped or deleted): that field is skipped
_REFUSED_FIELD = (400, 404)
#: searches of one lookup in flight at once (Insightly allows a few requests a second per instance)
SEARCH_CONCURRENCY = 4
#: hits in a row in the account's remembered spelling after which a miss is no longer fanned out (a lookup the
#: user forces with the client's refresh still is)
SETTLED_AFTER_HITS = 3
#: accounts whose spellings one process remembers (a restart relearns them)
SPELLING_MEMO_ACCOUNTS = 4096
#: spellings remembered per account, most recent first
_SPELLINGS_REMEMBERED = 4
#: how many pages of the owner's recent events are scanned for a marker (500 events a page)
MARKER_SEARCH_PAGES = 4
_PAGE_SIZE = 500
_HOST_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+insightly\.com$")
#: the description's `date-time` (RFC 3339 in UTC), as the reference sends it; Insightly answers with
#: `yyyy-MM-dd HH:mm:ss`, which `_read_insightly_time` reads too
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MARKER_RE = re.compile(r"\[rc-(?:call|sms|msg)-[^\]\n]*\]")
_MARKER_LINE_RE = re.compile(r"\n*(?:\[rc-(?:call|sms|msg)-[^\]\n]*\][ ]?)+\s*\Z")
_PLAIN_NOTE_RE = re.compile(r"- (?:Note|Agent notes): ([\s\S]*?)(?=\n- [A-Z][a-zA-Z\s/]*:|\n\Z|\Z)")
_COUNTER_RE = re.compile(r"Conversation\((\d+) messages\)")
_MESSAGES_END = "------------\nEND"
#: Windows zone names Insightly reports (TIMEZONE_ID) for the commonest zones
_WINDOWS_ZONES = {
    "Dateline Standard Time": "Etc/GMT+12",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Alaskan Standard Time": "America/Anchorage",
    "Pacific Standard Time": "America/Los_Angeles",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Central Standard Time": "America/Chicago",
    "Eastern Standard Time": "America/New_York",
    "Atlantic Standard Time": "America/Halifax",
    "E. South America Standard Time": "America/Sao_Paulo",
    "UTC": "UTC",
    "GMT Standard Time": "Europe/London",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "E. Europe Standard Time": "Europe/Chisinau",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Russian Standard Time": "Europe/Moscow",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Kolkata",
    "Singapore Standard Time": "Asia/Singapore",
    "China Standard Time": "Asia/Shanghai",
    "Tokyo Standard Time": "Asia/Tokyo",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "E. Australia Standard Time": "Australia/Brisbane",
    "W. Australia Standard Time": "Australia/Perth",
    "New Zealand Standard Time": "Pacific/Auckland",
}


class ApiUrlRefused(ValueError):
    """The API URL the user pasted is not one the server may send an API key to."""


class InsightlyConnector(Connector):
    """Insightly API v3.1 with an API key (Basic `<key>:`), on the pod URL the user gives at login."""

    platform: ClassVar[str] = "insightly"
    auth_type: ClassVar[AuthType] = "apiKey"
    log_format: ClassVar[str] = "text/plain"
    manifest_path: ClassVar[Path | None] = Path(__file__).with_name("manifest.json")
    #: Insightly counts an instance's calls per day against a quota that depends on the plan (its answers
    #: carry `X-RateLimit-Limit` and `X-RateLimit-Remaining`).
    rate_limits: ClassVar[tuple[LimitRule, ...]] = (LimitRule("daily", "company", per_seconds=86_400.0),)
    idempotent_message_append: ClassVar[bool] = True

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        super().__init__(config)
        self._spelling_memos: OrderedDict[str, SpellingMemo] = OrderedDict()

    # --- hosts ---------------------------------------------------------------------------------------------

    def api_base(self, api_url: str) -> str:
        """The pod's API origin from what the user pasted (`https://api.na1.insightly.com/v3.1/` and the like).

        Raises :class:`ApiUrlRefused` unless it is an https insightly.com host without credentials, port or
        odd characters, or one of the origins the `allowed_api_origins` setting lists.
        """
        text = (api_url or "").strip()
        if not text or any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in text):
            raise ApiUrlRefused("The API URL is empty or malformed.")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ApiUrlRefused("The API URL is malformed.") from None
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise ApiUrlRefused("The API URL must not contain credentials.")
        if parts.query or parts.fragment:
            raise ApiUrlRefused("The API URL must not have a query.")
        path = parts.path.rstrip("/")
        if path and not re.fullmatch(r"/v\d+(?:\.\d+)?", path, flags=re.IGNORECASE):
            raise ApiUrlRefused(
                "The API URL must be the pod's address, e.g. https://api.na1.insightly.com/v3.1/"
            )
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        if origin in self._allowed_origins():
            return origin
        host = (parts.hostname or "").lower()
        if parts.scheme.lower() != "https" or port not in (None, 443) or not _HOST_RE.fullmatch(host):
            raise ApiUrlRefused("The API URL must be an https address on insightly.com.")
        return f"https://{host}"

    def _allowed_origins(self) -> set[str]:
        raw = self.config.get("allowed_api_origins")
        return {o.strip().rstrip("/").lower() for o in raw.split(",") if o.strip()}

    def _version(self) -> str:
        return self.config.get("api_version") or API_VERSION

    def base_url(self, user: UserView) -> str:
        """`<pod API origin>/v3.1`: the stored pod (checked again) unless config `base_url` points elsewhere."""
        if self.config.get("base_url"):
            return f"{self.config.get('base_url').rstrip('/')}/{self._version()}"
        stored = user.platform_additional_info.get("apiUrl")
        if not isinstance(stored, str) or not stored:
            return "https://invalid.insightly.invalid"  # a user from before the pod was stored: fails closed
        try:
            return f"{self.api_base(stored)}/{self._version()}"
        except ApiUrlRefused:
            return "https://invalid.insightly.invalid"

    def rate_limit_key(self, user: UserView) -> str:
        """The Insightly instance: its id from Users/Me when known, else the pod."""
        instance = user.platform_additional_info.get("instanceId")
        if instance:
            return f"instance-{instance}"
        return str(user.platform_additional_info.get("apiUrl") or user.hostname).lower()

    # --- auth ----------------------------------------------------------------------------------------------

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        """Users/Me on the pod the user named; only the checked pod origin is kept (never the key)."""
        api_url = str(request.additional_info.get("apiUrl") or "")
        override = self.config.get("base_url").rstrip("/")
        try:
            # with the test override every call goes there, never to what was pasted
            origin = override or self.api_base(api_url)
        except ApiUrlRefused as refused:
            return UserInfoResult(successful=False, return_message=_login_failed(str(refused)))
        base = override or origin
        try:
            data = await request.http.get_json(f"{base}/{self._version()}/Users/Me")
            user_id = int(data["USER_ID"])
            name = " ".join(str(data.get(k) or "").strip() for k in ("FIRST_NAME", "LAST_NAME")).strip()
        except CrmHttpError as exc:
            if exc.status in (401, 403):
                return UserInfoResult(
                    successful=False, return_message=_login_failed("Insightly did not accept the API key.")
                )
            detail = f"Insightly answered {exc.status}." if exc.status else "Insightly did not answer."
            return UserInfoResult(successful=False, return_message=_login_failed(detail))
        except (KeyError, TypeError, ValueError):
            return UserInfoResult(
                successful=False, return_message=_login_failed("Insightly's answer could not be read.")
            )
        zone = _iana_zone(data.get("TIMEZONE_ID"))
        instance = data.get("INSTANCE_ID")
        # USER_IDs are unique only inside one instance: the instance (else the pod's host) names the tenant so
        # two companies' users never share a stored user
        tenant = instance if instance not in (None, "") else (urlsplit(base).hostname or base)
        user = PlatformUser(
            id=stored_user_id(self.platform, user_id, tenant),
            name=name,
            timezone_name=zone,
            timezone_offset=_zone_offset(zone),
            platform_additional_info={
                "apiUrl": origin,
                "instanceId": instance,
                "email": data.get("EMAIL_ADDRESS"),
            },
            account_id=str(instance) if instance not in (None, "") else None,
        )
        return UserInfoResult(
            successful=True,
            user=user,
            return_message=ReturnMessage("Connected to Insightly.", "success", 3000),
        )

    async def unauthorize(self, call: CrmCall) -> ReturnMessage | None:
        """An API key cannot be revoked through the API: the server forgets it."""
        return ReturnMessage("Logged out of Insightly", "success", 1000)

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        """Exact searches of contacts' and leads' phone fields, one spelling at a time, re-checked.

        Each wave searches one spelling in every phone field (contacts' PHONE and PHONE_MOBILE, leads' PHONE and
        MOBILE, the user's extra fields): the reference's four searches. The account's remembered spelling goes
        first (else the reference's, the national significant number), and the lookup stops at the first wave
        with a hit; only a miss goes on to the other spellings, at most `lookup_max_spellings` of them, and none
        once the account has settled on one spelling (unless the user forces a refresh).
        """
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        phone = caller_number(lookup)
        memo = self._memo_for(call.user)
        spellings = memo.order(insightly_spellings(phone, lookup.overriding_format))
        waves = min(len(spellings), self._max_spellings())
        if memo.settled and not lookup.force_refresh:
            waves = 1
        gate = asyncio.Semaphore(SEARCH_CONCURRENCY)
        refused_fields: set[tuple[str, str]] = set()
        found: dict[tuple[str, int], JsonDict] = {}
        for shape, term in spellings[:waves]:
            kinds: list[str] = []
            works: list[Coroutine[Any, Any, list[JsonDict]]] = []
            for kind in ("contact", "lead"):
                for field in PHONE_FIELDS[kind]:
                    kinds.append(kind)
                    works.append(self._search(call.http, kind, field, term, gate=gate))
                for field in _extra_fields(call.user, kind):
                    if (kind, field) not in refused_fields:
                        kinds.append(kind)
                        works.append(
                            self._search_extra_field(call.http, kind, field, term, gate, refused_fields)
                        )
            results = await all_or_first_failure(works)
            for kind, records in zip(kinds, results, strict=True):
                for record in records:
                    record_id = _int(record.get(_ID_FIELD[kind]))
                    if record_id is None or (kind, record_id) in found:
                        continue
                    if any_same_number(_stored_phones(record, kind, _extra_fields(call.user, kind)), phone):
                        found[(kind, record_id)] = record
            if found:
                memo.hit(shape)
                break
        contacts = await self._contacts(call.http, list(found.items()), phone)
        contacts.append(placeholder_contact("contact"))
        return ContactMatches(successful=True, contacts=contacts)

    def _max_spellings(self) -> int:
        """The `lookup_max_spellings` setting: spellings (waves of searches) a lookup may try; all by default."""
        raw = self.config.get("lookup_max_spellings")
        try:
            value = int(raw) if raw.strip() else 1_000
        except ValueError:
            value = 1_000
        return max(1, value)

    def _memo_for(self, user: UserView) -> SpellingMemo:
        """The spellings this process has seen match in the user's Insightly instance (bounded, in memory)."""
        memos = self._spelling_memos
        key = self.rate_limit_key(user)
        memo = memos.pop(key, None) or SpellingMemo()
        memos[key] = memo
        while len(memos) > SPELLING_MEMO_ACCOUNTS:
            memos.popitem(last=False)
        return memo

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        """First word as FIRST_NAME, the rest as LAST_NAME (exact searches), kept when the full name contains it."""
        words = name.split()
        if not words:
            return ContactMatches(successful=True, contacts=[])
        searches: list[tuple[str, str, str]] = []
        for kind in ("contact", "lead"):
            searches.append((kind, "FIRST_NAME", words[0]))
            searches.append((kind, "LAST_NAME", " ".join(words[1:]) if len(words) > 1 else words[0]))
        results = await asyncio.gather(*(self._search(call.http, *s) for s in searches))
        wanted = " ".join(words).casefold()
        found: dict[tuple[str, int], JsonDict] = {}
        for (kind, _field, _term), records in zip(searches, results, strict=True):
            for record in records:
                record_id = _int(record.get(_ID_FIELD[kind]))
                if record_id is not None and wanted in _full_name(record).casefold():
                    found.setdefault((kind, record_id), record)
        return ContactMatches(
            successful=True, contacts=await self._contacts(call.http, list(found.items()), None)
        )

    async def _search(
        self, http: CrmHttp, kind: str, field: str, value: str, *, gate: asyncio.Semaphore | None = None
    ) -> list[JsonDict]:
        params = {"field_name": field, "field_value": value, "brief": False, "top": 100}
        if gate is None:
            body = await http.get_json(f"/{_RESOURCE[kind]}/Search", params=params)
        else:
            async with gate:
                body = await http.get_json(f"/{_RESOURCE[kind]}/Search", params=params)
        return _records(body)

    async def _search_extra_field(
        self,
        http: CrmHttp,
        kind: str,
        field: str,
        term: str,
        gate: asyncio.Semaphore,
        refused: set[tuple[str, str]],
    ) -> list[JsonDict]:
        """One spelling in one of the user's extra phone fields, isolated from the rest of the lookup.

        The field name is the user's own text: a mistyped or deleted custom field is refused by Insightly (400),
        which must cost the lookup that field only, as the reference skips it. A refused field is not searched
        again in this lookup's later waves.
        """
        params = {"field_name": field, "field_value": term, "brief": False, "top": 100}
        async with gate:
            response = await http.request(
                "GET", f"/{_RESOURCE[kind]}/Search", params=params, allow_status=_REFUSED_FIELD
            )
        if response.status_code in _REFUSED_FIELD:
            log.warning(
                "Insightly refused a search on the extra phone field %r of %s (%s); skipped",
                field,
                _RESOURCE[kind],
                response.status_code,
            )
            refused.add((kind, field))
            return []
        return _records(response.json())

    async def _contacts(
        self, http: CrmHttp, records: list[tuple[tuple[str, int], JsonDict]], phone: str | None
    ) -> list[Contact]:
        """Contacts with the organisations, opportunities and projects their LINKS name (one GET per record)."""
        wanted: dict[tuple[str, int], None] = {}
        for (kind, _id), record in records:
            if kind == "contact":
                for key, link_id in _association_links(record):
                    wanted[(key, link_id)] = None
        names = await asyncio.gather(*(self._linked_name(http, key, link_id) for key, link_id in wanted))
        titles = {ref: title for ref, title in zip(wanted, names, strict=True) if title is not None}
        contacts: list[Contact] = []
        for (kind, record_id), record in records:
            info: JsonDict = {}
            if kind == "contact":
                for key, link_id in _association_links(record):
                    if (key, link_id) in titles:
                        info.setdefault(key, []).append(
                            {"const": str(link_id), "title": titles[(key, link_id)]}
                        )
            # a Lead names its organisation; a Contact has only ORGANISATION_ID, named by the GET above
            organization = _opt_str(record.get("ORGANISATION_NAME"))
            default_org = _int(record.get("ORGANISATION_ID")) if kind == "contact" else None
            if organization is None and default_org is not None:
                organization = _opt_str(titles.get(("organisation", default_org)))
            contacts.append(
                Contact(
                    id=str(record_id),
                    name=_full_name(record),
                    phone=phone,
                    type=kind,
                    title=_opt_str(record.get("TITLE")),
                    organization=organization,
                    email=_opt_str(record.get("EMAIL_ADDRESS") or record.get("EMAIL")),
                    created_date=_opt_str(record.get("DATE_CREATED_UTC")),
                    most_recent_activity_date=_opt_str(
                        record.get("LAST_ACTIVITY_DATE_UTC") or record.get("DATE_UPDATED_UTC")
                    ),
                    additional_info=info,
                )
            )
        return contacts

    async def _linked_name(self, http: CrmHttp, key: str, link_id: int) -> str | None:
        """The linked record's name; a link to a record since deleted (404) is left out."""
        _link_name, resource, _id_field, name_field = _ASSOCIATIONS[key]
        response = await http.request("GET", f"/{resource}/{link_id}", allow_status=(404,))
        if response.status_code == 404:
            return None
        data = response.json()
        return str(data.get(name_field) or "") if isinstance(data, dict) else None

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        """POST /Contacts or /Leads: the first word is the first name, the rest the last name."""
        kind = new.contact_type.lower()
        if kind not in _RESOURCE:
            return None
        words = new.name.split()
        first, last = (words[0], " ".join(words[1:])) if len(words) > 1 else ("", words[0] if words else "")
        if kind == "contact" and not first:
            first, last = last, ""  # a contact needs a first name, a lead a last name
        body: JsonDict = {"FIRST_NAME": first or None, "LAST_NAME": last or None, "PHONE": new.phone_number}
        data = await call.http.post_json(f"/{_RESOURCE[kind]}", body)
        contact = Contact(
            id=str(data[_ID_FIELD[kind]]),
            name=_full_name(data) or new.name,
            phone=new.phone_number,
            type=kind,
        )
        return CreatedContact(
            contact=contact, return_message=ReturnMessage("Contact created.", "success", 2000)
        )

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        """An event owned by the user, then its links: the contact or lead and the chosen associations."""
        kind = _kind(log.contact.type)
        contact_id = _int(log.contact.id)
        if contact_id is None or not await self._exists(call.http, kind, contact_id):
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        record = log.call
        start = parse_time(record.start_time)
        subject = record.custom_subject or log.subject or call_subject(record.direction, log.contact.name)
        body: JsonDict = {
            "TITLE": subject,
            "DETAILS": _with_markers(log.composed_log_details, [call_marker(log)]),
            "START_DATE_UTC": _insightly_time(start),
            "END_DATE_UTC": _insightly_time(start + timedelta(seconds=call_seconds(record.duration))),
            "ALL_DAY": False,
            "OWNER_USER_ID": _owner(call, log),
        }
        event = await call.http.post_json("/Events", body)
        event_id = int(event["EVENT_ID"])
        await _link_or_unknown(
            call.http, event_id, [], _wanted_links(kind, contact_id, log.additional_submission)
        )
        return LogResult(str(event_id), ReturnMessage("Call logged", "success", 2000))

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        """The user's recent event carrying this call's marker, linked now if its links never landed."""
        event = await _event_with_marker(call, call_marker(log), log.call.start_time, owner=_owner(call, log))
        if event is None:
            return None
        kind = _kind(log.contact.type)
        contact_id = _int(log.contact.id)
        if contact_id is not None:
            wanted = _wanted_links(kind, contact_id, log.additional_submission)
            await _ensure_links(call.http, int(event["EVENT_ID"]), _links_of(event), wanted)
        return str(event["EVENT_ID"])

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        """PUT /Events with the event id in the body; the markers the event holds are kept."""
        existing = update.existing_call_log_details
        if not isinstance(existing, dict) or "DETAILS" not in existing:
            existing = await call.http.get_json(f"/Events/{_event_id(update.log.log_id)}")
        markers = _MARKER_RE.findall(str(existing.get("DETAILS") or ""))
        body: JsonDict = {
            "EVENT_ID": _event_id(update.log.log_id),
            "DETAILS": _with_markers(update.composed_log_details, markers),
        }
        if update.subject:
            body["TITLE"] = update.subject
        if update.start_time or update.duration is not None:
            start = (
                parse_time(update.start_time)
                if update.start_time
                else _read_insightly_time(existing.get("START_DATE_UTC"))
            )
            body["START_DATE_UTC"] = _insightly_time(start)
            body["END_DATE_UTC"] = _insightly_time(start + timedelta(seconds=call_seconds(update.duration)))
        await call.http.request("PUT", "/Events", json=body, idempotent=True)
        return CallLogUpdated(
            updated_note=update.composed_log_details,
            return_message=ReturnMessage("Call log updated.", "success", 2000),
        )

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        """The event without its markers; the contact's name from its first contact or lead link."""
        event = await call.http.get_json(f"/Events/{_event_id(ref.log_id)}")
        full_body = _strip_markers(str(event.get("DETAILS") or ""))
        match = _PLAIN_NOTE_RE.search(full_body)
        note = match.group(1).strip() if match else ""
        dispositions: JsonDict = {}
        contact_name: str | None = None
        for link in _links_of(event):
            name = str(link.get("LINK_OBJECT_NAME") or "").lower()
            linked = _int(link.get("LINK_OBJECT_ID"))
            if linked is None:
                continue
            if name in _RESOURCE and contact_name is None:
                response = await call.http.request("GET", f"/{_RESOURCE[name]}/{linked}", allow_status=(404,))
                if response.status_code != 404:
                    contact_name = _full_name(response.json()) or None
            elif name in _ASSOCIATIONS:
                dispositions[name] = str(linked)
        info = CallLogInfo(
            subject=_opt_str(event.get("TITLE")),
            note=note,
            full_body=full_body,
            contact_name=contact_name,
            dispositions=dispositions,
            full_log_response=event,
        )
        return CallLogFetched(info=info)

    async def upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        """Each chosen association replaces the event's link of that kind; an existing same link is kept."""
        chosen = {
            key: _int(value)
            for key, value in _association_choices(update.dispositions).items()
            if _int(value) is not None
        }
        if not chosen:
            return LogResult(None)
        event_id = _event_id(update.log.log_id)
        event = await call.http.get_json(f"/Events/{event_id}")
        links = _links_of(event)
        for link in links:
            name = str(link.get("LINK_OBJECT_NAME") or "").lower()
            if name in chosen and _int(link.get("LINK_OBJECT_ID")) != chosen[name]:
                await call.http.request(
                    "DELETE",
                    f"/Events/{event_id}/Links/{link['LINK_ID']}",
                    allow_status=(404,),
                    idempotent=True,
                )
        wanted = [(_ASSOCIATIONS[key][0], value) for key, value in chosen.items() if value is not None]
        await _ensure_links(call.http, event_id, links, wanted)
        return LogResult(str(event_id), ReturnMessage("Call log updated.", "success", 2000))

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        """One event per conversation and day, linked to the contact or lead; later messages are appended."""
        kind = _kind(log.contact.type)
        contact_id = _int(log.contact.id)
        if contact_id is None or not await self._exists(call.http, kind, contact_id):
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        user_name = await self._user_name(call.http)
        created = parse_time(log.shared.started_at if log.shared else log.message.creation_time)
        local = created.astimezone(user_timezone(call.user))
        contact = log.contact
        others = "".join(f"    {other}\n" for other in log.correspondents)
        if log.shared is not None:
            title, details = log.shared.subject, log.shared.body
        elif log.recording_link:
            title = f"Voicemail left by {contact.name} - {local:%y/%m/%d}"
            details = f"{title}\nVoicemail recording link: {log.recording_link}\n\n--- Created via RingCentral App Connect"
        elif log.fax_doc_link:
            title = f"Fax document sent from {contact.name} - {local:%y/%m/%d}"
            details = (
                f"{title}\nFax document link: {log.fax_doc_link}\n\n--- Created via RingCentral App Connect"
            )
        else:
            title = f"SMS conversation with {contact.name} - {local:%y/%m/%d}"
            details = (
                f"Conversation summary\n{local:%A, %B %d, %Y}\nParticipants\n    {user_name}\n    {contact.name}\n"
                f"{others}\n"
                "Conversation(1 messages)\nBEGIN\n------------\n"
                f"{_message_item(log.message, contact, user_name, call.user, log.image_link)}"
                f"{_MESSAGES_END}\n\n--- Created via RingCentral App Connect"
            )
        body: JsonDict = {
            "TITLE": title,
            "DETAILS": _with_markers(
                details,
                [message_marker(log)] if log.shared else [message_marker(log), message_needle(log.message)],
            ),
            "START_DATE_UTC": _insightly_time(created),
            "END_DATE_UTC": _insightly_time(created),
            "ALL_DAY": False,
            "OWNER_USER_ID": _int(call.user.crm_user_id),
        }
        event = await call.http.post_json("/Events", body)
        event_id = int(event["EVENT_ID"])
        await _link_or_unknown(
            call.http, event_id, [], _wanted_links(kind, contact_id, log.additional_submission)
        )
        return LogResult(str(event_id), ReturnMessage("Message logged", "success", 2000))

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        event = await _event_with_marker(call, message_marker(log), log.message.creation_time)
        if event is None:
            return None
        contact_id = _int(log.contact.id)
        if contact_id is not None:
            wanted = _wanted_links(_kind(log.contact.type), contact_id, log.additional_submission)
            await _ensure_links(call.http, int(event["EVENT_ID"]), _links_of(event), wanted)
        return str(event["EVENT_ID"])

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append the message before the conversation's end line and bump its counter, unless already there."""
        event_id = _event_id(update.log_id)
        if update.shared is not None:
            return await self._rewrite_shared(call, event_id, update)
        outbound = update.message.direction != "Inbound"
        user_name_task: Awaitable[str] = self._user_name(call.http) if outbound else _constant("")
        user_name, event = await asyncio.gather(user_name_task, call.http.get_json(f"/Events/{event_id}"))
        details = str(event.get("DETAILS") or "")
        tag = message_needle(update.message)
        if tag in details:
            return None
        markers = _MARKER_RE.findall(details)
        text = _strip_markers(details)
        item = _message_item(update.message, update.contact, user_name, call.user, update.image_link)
        end = _MESSAGES_END if _MESSAGES_END in text else ""
        text = text.replace(end, f"{item}{end}", 1) if end else f"{text}\n{item}"
        text = _COUNTER_RE.sub(lambda m: f"Conversation({int(m.group(1)) + 1} messages)", text, count=1)
        body: JsonDict = {
            "EVENT_ID": event_id,
            "DETAILS": _with_markers(text, [*markers, tag]),
            "END_DATE_UTC": _insightly_time(parse_time(update.message.creation_time)),
        }
        await call.http.request("PUT", "/Events", json=body)
        return None

    async def _rewrite_shared(self, call: CrmCall, event_id: int, update: MessageLogUpdate) -> ReturnMessage:
        """A shared SMS is re-sent whole: the event's details are replaced (the conversation marker kept)."""
        assert update.shared is not None
        body: JsonDict = {
            "EVENT_ID": event_id,
            "DETAILS": _with_markers(update.shared.body, [conversation_marker(update.conversation_log_id)]),
        }
        await call.http.request("PUT", "/Events", json=body)
        return ReturnMessage("Message log updated", "success", 2000)

    # --- account -------------------------------------------------------------------------------------------

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        """The instance's users (`GET /Users`, as the reference asks), named "First Last"."""
        users = await call.http.get_json("/Users")
        return [
            CrmUser(
                id=str(u["USER_ID"]),
                name=" ".join(str(u.get(k) or "").strip() for k in ("FIRST_NAME", "LAST_NAME")).strip(),
                email=u.get("EMAIL_ADDRESS") or None,
            )
            for u in (users if isinstance(users, list) else [])
            if isinstance(u, dict) and u.get("USER_ID") is not None
        ]

    # --- shared lookups ------------------------------------------------------------------------------------

    async def _user_name(self, http: CrmHttp) -> str:
        data = await http.get_json("/Users/Me")
        return " ".join(str(data.get(k) or "").strip() for k in ("FIRST_NAME", "LAST_NAME")).strip()

    async def _exists(self, http: CrmHttp, kind: str, record_id: int) -> bool:
        response = await http.request("GET", f"/{_RESOURCE[kind]}/{record_id}", allow_status=(404,))
        return response.status_code != 404


# ------------------------------------------------------------------------------------------------------------
# phone terms
# ------------------------------------------------------------------------------------------------------------


def insightly_terms(e164: str, overriding_format: str = "") -> list[str]:
    """Spellings to ask an exact-match search for: the common library ones plus what people type by hand.

    `search_terms` gives E.164, the bare national number and the national and international spellings; here
    are added the international one with spaces only, the national one with the trunk prefix but no spaces
    (and without brackets outside North America), and for North American numbers the dashed and dotted
    forms. The user's overridingFormat renderings come last. A number stored any other way (an extension,
    unusual grouping) cannot be found by an exact search.
    """
    terms = search_terms(e164)
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None:
        international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        terms.append(re.sub(r"[^\d+]+", " ", international).strip())
        terms.append(re.sub(r"\D", "", national))
        if parsed.country_code != 1:  # `(02) 9876 5432` is also typed without the brackets
            terms.append(" ".join(re.sub(r"[()]", " ", national).split()))
        if parsed.country_code == 1:
            digits = str(phonenumbers.national_significant_number(parsed))
            if len(digits) == 10:
                terms += [
                    f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                    f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
                ]
    terms.extend(overriding_renderings(e164, overriding_format) if overriding_format else [])
    return list(dict.fromkeys(t for t in terms if t))


def insightly_spellings(e164: str, overriding_format: str = "") -> list[tuple[str, str]]:
    """(shape, term) for each spelling, the reference's (the national significant number) first.

    A shape is the term with its digits masked (`(###) ###-####`): what an account's records have in common
    whatever the number, and no personal data, so it is what the account memo keeps.
    """
    terms = insightly_terms(e164, overriding_format)
    first = significant_number(e164)
    ordered = ([first] if first in terms else []) + [t for t in terms if t != first]
    return [(_shape(term), term) for term in ordered]


def _shape(term: str) -> str:
    return re.sub(r"\d", "#", term)


class SpellingMemo:
    """The spellings (shapes) that found records in one Insightly instance, most recent first.

    `settled` once one shape, and never another, has found records `SETTLED_AFTER_HITS` lookups in a row: the
    account keeps its numbers one way, so a miss is not worth the other spellings' searches. An account where
    a second shape ever found someone stores numbers more than one way and never settles (in this process).
    """

    __slots__ = ("shapes", "streak")

    def __init__(self) -> None:
        self.shapes: list[str] = []
        self.streak = 0

    @property
    def settled(self) -> bool:
        return len(self.shapes) == 1 and self.streak >= SETTLED_AFTER_HITS

    def order(self, spellings: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The spellings with the remembered shapes first (most recent first), the rest in their own order."""
        rank = {shape: i for i, shape in enumerate(self.shapes)}
        return sorted(spellings, key=lambda s: rank.get(s[0], len(rank)))

    def hit(self, shape: str) -> None:
        self.streak = self.streak + 1 if self.shapes and self.shapes[0] == shape else 1
        self.shapes = [shape, *(s for s in self.shapes if s != shape)][:_SPELLINGS_REMEMBERED]


def _extra_fields(user: UserView, kind: str) -> list[str]:
    """The user's extra phone fields: custom field names only (anything else is ignored, never sent)."""
    raw = user.setting(_EXTRA_FIELD_SETTING[kind], "")
    names = [n.strip() for n in str(raw or "").split(",")]
    return [n for n in dict.fromkeys(names) if n and _FIELD_NAME_RE.fullmatch(n)][:5]


def _records(body: Any) -> list[JsonDict]:
    return [r for r in body if isinstance(r, dict)] if isinstance(body, list) else []


def _stored_phones(record: JsonDict, kind: str, extra_fields: Iterable[str]) -> list[str]:
    """The numbers a record of this kind holds in its standard phone fields and the user's extra fields."""
    numbers = [
        str(record[f]) for f in _STORED_PHONE_FIELDS[kind] if isinstance(record.get(f), str) and record[f]
    ]
    wanted = set(extra_fields)
    for custom in record.get("CUSTOMFIELDS") or []:
        if isinstance(custom, dict) and custom.get("FIELD_NAME") in wanted:
            value = custom.get("FIELD_VALUE")
            if isinstance(value, str) and value:
                numbers.append(value)
    for field in wanted:  # a flat custom field, as some answers give it
        if isinstance(record.get(field), str) and record[field]:
            numbers.append(str(record[field]))
    return numbers


# ------------------------------------------------------------------------------------------------------------
# links and markers
# ------------------------------------------------------------------------------------------------------------


def _kind(contact_type: str) -> str:
    return "lead" if (contact_type or "").strip().lower() == "lead" else "contact"


def _association_choices(values: JsonDict) -> JsonDict:
    """The form's association values; the message form's historic `organization` counts as `organisation`."""
    chosen = {key: values.get(key) for key in _ASSOCIATIONS if values.get(key) not in (None, "")}
    if "organisation" not in chosen and values.get("organization") not in (None, ""):
        chosen["organisation"] = values["organization"]
    return chosen


def _wanted_links(kind: str, contact_id: int, submission: JsonDict) -> list[tuple[str, int]]:
    wanted = [(_LINK_NAME[kind], contact_id)]
    if kind == "contact":
        for key, value in _association_choices(submission).items():
            linked = _int(value)
            if linked is not None:
                wanted.append((_ASSOCIATIONS[key][0], linked))
    return wanted


def _association_links(record: JsonDict) -> list[tuple[str, int]]:
    """(form key, id) of the organisations, opportunities and projects a contact is linked to."""
    found: dict[tuple[str, int], None] = {}
    default_org = _int(record.get("ORGANISATION_ID"))
    if default_org is not None:
        found[("organisation", default_org)] = None
    for link in _links_of(record):
        name = str(link.get("LINK_OBJECT_NAME") or "").lower()
        linked = _int(link.get("LINK_OBJECT_ID"))
        if name in _ASSOCIATIONS and linked is not None:
            found[(name, linked)] = None
    return list(found)


def _links_of(record: Any) -> list[JsonDict]:
    links = record.get("LINKS") if isinstance(record, dict) else None
    return [link for link in links if isinstance(link, dict)] if isinstance(links, list) else []


async def _ensure_links(
    http: CrmHttp, event_id: int, existing: list[JsonDict], wanted: list[tuple[str, int]]
) -> None:
    """POST each wanted link the event does not have yet: safe to run again after a partial failure."""
    have = {
        (str(link.get("LINK_OBJECT_NAME") or "").lower(), _int(link.get("LINK_OBJECT_ID")))
        for link in existing
    }
    for name, linked in wanted:
        if (name.lower(), linked) in have:
            continue
        await http.post_json(
            f"/Events/{event_id}/Links", {"LINK_OBJECT_NAME": name, "LINK_OBJECT_ID": linked}
        )
        have.add((name.lower(), linked))


async def _link_or_unknown(
    http: CrmHttp, event_id: int, existing: list[JsonDict], wanted: list[tuple[str, int]]
) -> None:
    """Link a just-created event; a failure leaves an unlinked event, so it is reported as an unknown outcome:
    the server then finds the event by its marker (find_call_log) and links it instead of creating another."""
    try:
        await _ensure_links(http, event_id, existing, wanted)
    except CrmHttpError as exc:
        raise CrmHttpError(None, body=exc.body, method=exc.method, url=exc.url, outcome_unknown=True) from exc


def _owner(call: CrmCall, log: CallLogCreate) -> int | None:
    """OWNER_USER_ID of a call's event: the mapped user of a server-side logged call, else the user."""
    mapped = _int(log.owner.id) if log.owner is not None else None
    return mapped if mapped is not None else _int(call.user.crm_user_id)


async def _event_with_marker(
    call: CrmCall, marker: str, around: str | None, *, owner: int | None = None
) -> JsonDict | None:
    """The newest event this user (or `owner`) owns, updated since shortly before the call, whose DETAILS hold `[marker]`.

    The search gives only `updated_after_utc`, the one filter the published description names without a
    field (`field_name` and `field_value` are optional): whether OWNER_USER_ID is a searchable field of Events
    is described nowhere. The owner and DETAILS are compared here, so an event whose link never landed is
    found too.
    """
    if owner is None:
        owner = _int(call.user.crm_user_id)
    if owner is None:
        return None
    since = parse_time(around) if around else datetime.now(UTC) - timedelta(days=7)
    since = min(since, datetime.now(UTC)) - timedelta(hours=1)
    needle = f"[{marker}]"
    for page in range(MARKER_SEARCH_PAGES):
        body = await call.http.get_json(
            "/Events/Search",
            params={
                "updated_after_utc": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "brief": False,
                "top": _PAGE_SIZE,
                "skip": page * _PAGE_SIZE,
            },
        )
        events = [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []
        hits = [
            e
            for e in events
            if needle in str(e.get("DETAILS") or "")
            and _int(e.get("EVENT_ID")) is not None
            and _int(e.get("OWNER_USER_ID")) == owner
        ]
        if hits:
            return max(hits, key=lambda e: int(e["EVENT_ID"]))
        if len(events) < _PAGE_SIZE:
            return None
    return None


def _with_markers(text: str, markers: Iterable[str]) -> str:
    tokens = [m if m.startswith("[") else f"[{m}]" for m in markers]
    tokens = list(dict.fromkeys(tokens))
    body = text.rstrip("\n")
    return f"{body}\n\n{' '.join(tokens)}" if tokens else body


def _strip_markers(text: str) -> str:
    return _MARKER_LINE_RE.sub("", text)


# ------------------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------------------


def _full_name(record: Any) -> str:
    if not isinstance(record, dict):
        return ""
    return " ".join(
        str(record.get(k) or "").strip() for k in ("FIRST_NAME", "LAST_NAME") if record.get(k)
    ).strip()


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _event_id(log_id: str) -> int:
    value = _int(log_id)
    if value is None:
        raise CrmHttpError(404, body={"Message": "Not an Insightly event id"}, method="GET", url="/Events")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _insightly_time(when: datetime) -> str:
    """A date as Insightly's description types it (`date-time`, in UTC)."""
    return when.astimezone(UTC).strftime(_DATE_FORMAT)


def _read_insightly_time(value: Any) -> datetime:
    """A date from an Insightly answer: `yyyy-MM-dd HH:mm:ss` (UTC, what Insightly answers) or RFC 3339."""
    text = str(value or "").strip()
    if text and "T" not in text:
        text = text.replace(" ", "T", 1)
    if text and not text.endswith("Z") and "+" not in text[10:]:
        text += "Z"
    return parse_time(text)


def _iana_zone(windows_zone: Any) -> str | None:
    if not isinstance(windows_zone, str) or not windows_zone:
        return None
    if windows_zone in _WINDOWS_ZONES:
        return _WINDOWS_ZONES[windows_zone]
    try:
        ZoneInfo(windows_zone)  # some instances report an IANA name already
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return windows_zone


def _zone_offset(zone: str | None) -> str | None:
    if zone is None:
        return None
    offset = datetime.now(ZoneInfo(zone)).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _message_item(
    message: Message, contact: ContactRef, user_name: str, user: UserView, image_link: str | None
) -> str:
    when = parse_time(message.creation_time).astimezone(user_timezone(user))
    who = f"{contact.name} ({contact.phone_number})" if message.direction == "Inbound" else user_name
    extra = f"\n{image_link}" if image_link else ""
    return f"{who} {when:%I:%M %p}\n{message.subject}{extra}\n\n"


def _login_failed(detail: str) -> ReturnMessage:
    return ReturnMessage(
        "Could not load user information",
        "warning",
        5000,
        details=[{"title": "Details", "items": [{"id": "1", "type": "text", "text": detail}]}],
    )


async def _constant(value: str) -> str:
    return value

"""Clio (API v4): contacts are Persons and Companies; calls and SMS conversations are phone communications.

Clio runs four separate regions (US, EU, AU, CA), each with its own host, OAuth server and developer
application, so the hostname a user picks decides both where the API calls go and which client credentials
the token exchange uses. Every request body is wrapped in `{"data": ...}` and every answer read from `data`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from appconnect.connectors.kit import (
    all_or_first_failure,
    call_marker,
    call_seconds,
    caller_number,
    conversation_marker,
    int_or_none,
    iso_utc,
    message_marker,
    message_needle,
    parse_time,
    unsearchable,
    user_timezone,
)
from appconnect.connectors.phone import any_same_number, digits_of, render_format, significant_number
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
    MediaFetcher,
    MediaFile,
    MediaUnavailable,
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

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: Clio's hosts and the config prefix of each region's developer application (`eu_client_id`, ...)
REGIONS: dict[str, str] = {
    "app.clio.com": "",
    "eu.app.clio.com": "eu",
    "au.app.clio.com": "au",
    "ca.app.clio.com": "ca",
}
DEFAULT_HOST = "app.clio.com"

CONTACT_FIELDS = "id,name,type,created_at,updated_at,primary_email_address,phone_numbers{name,number}"
MATTER_FIELDS = "id,display_number,description,status"
COMMUNICATION_FIELDS = (
    "id,subject,body,received_at,matter{id,display_number},senders{id,type,name},receivers{id,type,name}"
)
#: the log form's billable picker, offered with every contact
BILLABLE_CHOICES: JsonDict = {
    "billableStatus": [
        {"const": "billable", "title": "Billable"},
        {"const": "non-billable", "title": "Non-billable"},
    ]
}
#: pages of a paged list that are read at most (200 records each for searches)
MAX_PAGES = 5
#: spellings of a number one lookup searches at most when the ones tried first find nobody (config
#: `phone_search_limit`, at least 1)
DEFAULT_PHONE_SEARCH_LIMIT = 6
#: accounts whose matching spellings a process remembers (least recently used forgotten first)
MAX_REMEMBERED_ACCOUNTS = 10_000
#: hits, all in one spelling, after which an account counts as storing numbers one way: a miss then searches
#: that spelling (and the user's overridingFormat) only, like the reference (config `phone_consistent_after`,
#: 0: never)
DEFAULT_CONSISTENT_AFTER = 10
#: on such an account every this many misses still search every spelling, so a number stored another way
#: is found again (config `phone_recheck_every`, 0: never)
DEFAULT_RECHECK_EVERY = 20

_NOTE_RE = re.compile(r"- (?:Note|Agent notes): ([\s\S]*?)(?=\n- [A-Z][a-zA-Z\s/]*:|\n\Z|\Z)")
_MARKER_RE = re.compile(r"\n*\[rc-(?:call|sms|msg)-[^\]\n]*\]")
_CALL_MARKER_RE = re.compile(r"\[rc-call-[^\]\n]*\]")
_COUNTER_RE = re.compile(r"Conversation\((\d+) messages\)")
_MESSAGES_END = "------------\nEND"

#: Clio reports time zones by their Rails names; the common ones and their IANA zones
_RAILS_ZONES: dict[str, str] = {
    "Eastern Time (US & Canada)": "America/New_York",
    "Central Time (US & Canada)": "America/Chicago",
    "Mountain Time (US & Canada)": "America/Denver",
    "Pacific Time (US & Canada)": "America/Los_Angeles",
    "Arizona": "America/Phoenix",
    "Alaska": "America/Juneau",
    "Hawaii": "Pacific/Honolulu",
    "Atlantic Time (Canada)": "America/Halifax",
    "Newfoundland": "America/St_Johns",
    "Saskatchewan": "America/Regina",
    "London": "Europe/London",
    "Edinburgh": "Europe/London",
    "Dublin": "Europe/Dublin",
    "Paris": "Europe/Paris",
    "Berlin": "Europe/Berlin",
    "Amsterdam": "Europe/Amsterdam",
    "Madrid": "Europe/Madrid",
    "Brussels": "Europe/Brussels",
    "Sydney": "Australia/Sydney",
    "Melbourne": "Australia/Melbourne",
    "Canberra": "Australia/Canberra",
    "Brisbane": "Australia/Brisbane",
    "Adelaide": "Australia/Adelaide",
    "Darwin": "Australia/Darwin",
    "Perth": "Australia/Perth",
    "Hobart": "Australia/Hobart",
    "Auckland": "Pacific/Auckland",
    "UTC": "UTC",
}


def clio_host(hostname: str | None) -> str | None:
    """The Clio host a user's hostname names (`https://EU.app.clio.com/` -> `eu.app.clio.com`), or None."""
    text = (hostname or "").strip().lower()
    if not text:
        return DEFAULT_HOST
    if "://" not in text:
        text = f"https://{text}"
    host = urlsplit(text).hostname or ""
    return host if host in REGIONS else None


class ClioConnector(Connector):
    """Clio API v4 with OAuth per region; matters are offered as the log's `matters` field."""

    platform: ClassVar[str] = "clio"
    auth_type: ClassVar[AuthType] = "oauth"
    log_format: ClassVar[str] = "text/plain"
    manifest_path: ClassVar[Path | None] = Path(__file__).with_name("manifest.json")
    #: Clio limits each access token to 50 requests a minute at peak hours (more off-peak, and the
    #: `X-RateLimit-*` headers of every answer say the figure of the moment).
    rate_limits: ClassVar[tuple[LimitRule, ...]] = (
        LimitRule("burst", "token", per_seconds=60.0, requests=50),
    )
    idempotent_message_append: ClassVar[bool] = True

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        super().__init__(config)
        #: per account, how often each spelling of a number found someone: tried most successful first. A
        #: hint only (each process learns on its own; forgetting costs a few searches, never a wrong match).
        self._spellings: OrderedDict[str, _SpellingMemory] = OrderedDict()

    def rate_limit_key(self, user: UserView) -> str:
        return f"{user.hostname.lower()}|{user.id}"

    # --- hosts ---------------------------------------------------------------------------------------------

    def _origin(self, host: str) -> str:
        """Where a region's OAuth server and API live: config `<region>_base_url` or `base_url` (tests, where
        each region can be its own fake deployment), else the Clio host."""
        prefix = f"{REGIONS[host]}_" if REGIONS.get(host) else ""
        override = (self.config.get(f"{prefix}base_url") if prefix else None) or self.config.get("base_url")
        return override.rstrip("/") if override else f"https://{host}"

    def base_url(self, user: UserView) -> str:
        host = clio_host(user.hostname)
        if host is None:
            return super().base_url(user)
        return self._origin(host)

    # --- auth ----------------------------------------------------------------------------------------------

    def oauth_info(self, hostname: str | None = None) -> OAuthInfo:
        """The region's own developer application and token endpoint; an unknown host is refused outright so
        the client secret is never sent anywhere but Clio."""
        redirect_uri = self.config.get("redirect_uri")
        host = clio_host(hostname)
        if host is None:
            return OAuthInfo(
                client_id="",
                client_secret=None,
                access_token_uri="",
                redirect_uri=redirect_uri,
                fail_message="Unknown Clio region: choose app.clio.com, eu.app.clio.com, au.app.clio.com "
                "or ca.app.clio.com.",
            )
        prefix = f"{REGIONS[host]}_" if REGIONS[host] else ""
        client_id = self.config.get(f"{prefix}client_id")
        origin = self._origin(host)
        return OAuthInfo(
            client_id=client_id,
            client_secret=self.config.get(f"{prefix}client_secret") or None,
            access_token_uri=f"{origin}/oauth/token",
            redirect_uri=redirect_uri,
            authorization_uri=f"{origin}/oauth/authorize",
            hostname=host,
            revoke_uri=None,  # Clio ends a grant with /oauth/deauthorize (see unauthorize), not RFC 7009
            fail_message=None
            if client_id
            else f"Clio {REGIONS[host].upper() or 'US'} is not set up on this server (no client id).",
        )

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        try:
            body = await request.http.get_json(
                "/api/v4/users/who_am_i.json", params={"fields": "id,name,time_zone"}
            )
            data = body["data"]
            zone_name, offset = _time_zone(data.get("time_zone"))
            region = REGIONS.get(clio_host(request.hostname) or "", "")
            user = PlatformUser(
                # each region is a separate Clio with its own user ids: a US and an EU user can share one, so
                # the region is part of the stored id (none for the US, so US users keep their `<id>-clio`)
                id=stored_user_id(self.platform, data["id"], region or None),
                name=str(data.get("name") or ""),
                timezone_name=zone_name,
                timezone_offset=offset,
                platform_additional_info={"region": region},
            )
        except (CrmHttpError, KeyError, TypeError, ValueError) as exc:
            status = getattr(exc, "status", None)
            detail = f"Clio answered {status}." if status else "Clio's answer could not be read."
            return UserInfoResult(
                successful=False,
                return_message=ReturnMessage(
                    "Could not load user information",
                    "warning",
                    3000,
                    details=[{"title": "Details", "items": [{"id": "1", "type": "text", "text": detail}]}],
                ),
            )
        return UserInfoResult(successful=True, user=user, return_message=ReturnMessage("Connected to Clio."))

    async def unauthorize(self, call: CrmCall) -> ReturnMessage | None:
        """Clio's deauthorize ends the grant (access and refresh token) for this application."""
        token = call.auth_header.split(" ", 1)[1] if " " in call.auth_header else call.auth_header
        await call.http.request("POST", "/oauth/deauthorize", data={"token": token})
        return ReturnMessage("Logged out of Clio", "success", 1000)

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        """Search whole spellings of the number one at a time, the account's usual one first; stop at a hit.

        Clio documents `query` only as a wildcard search, and the reference's users find only numbers stored
        in the spelling it searched: a term must match whether Clio compares substrings or whole words, so
        every term is a complete spelling (`+14155550100`, `(415) 555-0100`, `415.555.0100`, ...), never a
        fragment. The spelling that found someone is remembered for the account and tried first next time,
        so a hit on an account that stores numbers one way costs one search, as the reference's does; a miss
        tries the other spellings (at most config `phone_search_limit`) until the account has shown it keeps
        one spelling (`phone_consistent_after` hits), then only that one (plus a full search every
        `phone_recheck_every` misses). Every hit is re-checked against the caller's number.
        """
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        phone = caller_number(lookup)
        memory = self._memory(self.rate_limit_key(call.user))
        spellings, narrowed = self._spellings_to_try(memory, phone_spellings(phone, lookup.overriding_format))
        found: list[JsonDict] = []
        for kind, term in spellings:
            try:
                records = await self._search(call.http, term, max_pages=1)
            except CrmHttpError as exc:
                # a spelling Clio's query syntax refuses finds nobody; only the reference's own term fails
                # the lookup, as it fails the reference's
                if kind == "e164" or exc.status not in (400, 422):
                    raise
                continue
            found = [r for r in records if any_same_number(_numbers_of(r), phone)]
            if found:
                memory.hits[kind] += 1
                break
        if not found:
            memory.misses_since_recheck = memory.misses_since_recheck + 1 if narrowed else 0
        unique = list({str(r.get("id")): r for r in found}.values())
        contacts = await self._with_matters(call, unique, phone)
        contacts.append(placeholder_contact("Person"))
        return ContactMatches(successful=True, contacts=contacts)

    def _memory(self, account: str) -> _SpellingMemory:
        memory = self._spellings.get(account)
        if memory is None:
            memory = self._spellings[account] = _SpellingMemory()
            while len(self._spellings) > MAX_REMEMBERED_ACCOUNTS:
                self._spellings.popitem(last=False)
        self._spellings.move_to_end(account)
        return memory

    def _spellings_to_try(
        self, memory: _SpellingMemory, spellings: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], bool]:
        """The spellings to search, the account's most successful first, and whether they were narrowed to
        its one spelling (a consistent account, between rechecks)."""
        rank = {kind: index for index, (kind, _count) in enumerate(memory.hits.most_common())}
        ordered = sorted(
            spellings, key=lambda s: rank.get(s[0], len(rank))
        )  # stable: defaults keep their order
        consistent_after = self._setting("phone_consistent_after", DEFAULT_CONSISTENT_AFTER)
        recheck_every = self._setting("phone_recheck_every", DEFAULT_RECHECK_EVERY)
        consistent = (
            consistent_after > 0
            and len(memory.hits) == 1
            and next(iter(memory.hits.values())) >= consistent_after
        )
        if consistent and not (recheck_every and memory.misses_since_recheck + 1 >= recheck_every):
            only = next(iter(memory.hits))
            return [s for s in ordered if s[0] == only or s[0].startswith("format:")], True
        return ordered[: max(1, self._setting("phone_search_limit", DEFAULT_PHONE_SEARCH_LIMIT))], False

    def _setting(self, key: str, default: int) -> int:
        try:
            return max(0, int(self.config.get(key) or default))
        except ValueError:
            return default

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        term = name.strip()
        if not term:
            return ContactMatches(successful=True, contacts=[])
        records = await self._search(call.http, term)
        return ContactMatches(successful=True, contacts=await self._with_matters(call, records, None))

    async def _search(self, http: CrmHttp, term: str, *, max_pages: int = MAX_PAGES) -> list[JsonDict]:
        """Contacts matching `query`. A phone search reads its first page only (200 contacts), as the
        reference does: a spelling Clio reads loosely (its query takes a Lucene-like syntax) must not cost a
        page per 200 unrelated contacts; a search that finds the caller finds few."""
        return await self._pages(
            http,
            "/api/v4/contacts.json",
            {"query": term, "fields": CONTACT_FIELDS, "limit": 200},
            max_pages=max_pages,
        )

    async def _pages(
        self, http: CrmHttp, path: str, params: dict[str, Any], *, max_pages: int = MAX_PAGES
    ) -> list[JsonDict]:
        """Every record of a list (at most `max_pages` pages), following `meta.paging.next` (an absolute URL)
        on Clio's own host only."""
        body = await http.get_json(path, params=params)
        records = [r for r in body.get("data") or [] if isinstance(r, dict)]
        origin = urlsplit(http.base_url)
        for _page in range(max_pages - 1):
            paging = (body.get("meta") or {}).get("paging") or {}
            next_url = paging.get("next")
            if not isinstance(next_url, str) or not next_url:
                break
            target = urlsplit(next_url)
            if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
                break  # never send the user's token to another host
            body = await http.get_json(next_url)
            records.extend(r for r in body.get("data") or [] if isinstance(r, dict))
        return records

    async def _with_matters(self, call: CrmCall, records: list[JsonDict], phone: str | None) -> list[Contact]:
        see_closed = bool(call.user.setting("clioSeeClosedMatters", False))
        matters = await all_or_first_failure([self._matters(call.http, r["id"], see_closed) for r in records])
        contacts: list[Contact] = []
        for record, options in zip(records, matters, strict=True):
            numbers = [p for p in record.get("phone_numbers") or [] if isinstance(p, dict)]
            email = record.get("primary_email_address")
            contacts.append(
                Contact(
                    id=str(record["id"]),
                    name=str(record.get("name") or ""),
                    phone=phone or (str(numbers[0].get("number") or "") if numbers else None),
                    type=str(record.get("type") or "Person"),
                    email=email if isinstance(email, str) and email else None,
                    created_date=record.get("created_at"),
                    most_recent_activity_date=record.get("updated_at"),
                    additional_info={
                        **({"matters": options} if options else {}),
                        **BILLABLE_CHOICES,
                        "logTimeEntry": _time_entries_on(call.user),
                    },
                )
            )
        return contacts

    async def _matters(self, http: CrmHttp, contact_id: Any, see_closed: bool) -> list[JsonDict]:
        """Matters the contact is the client of, then those it is related to; closed ones only on request."""
        own, related = await all_or_first_failure(
            [
                self._pages(http, "/api/v4/matters.json", {"client_id": contact_id, "fields": MATTER_FIELDS}),
                self._pages(
                    http,
                    "/api/v4/relationships.json",
                    {"contact_id": contact_id, "fields": f"matter{{{MATTER_FIELDS}}}"},
                ),
            ]
        )
        options: dict[str, JsonDict] = {}
        for matter in [*own, *(r.get("matter") for r in related)]:
            if not isinstance(matter, dict) or matter.get("id") is None:
                continue
            status = str(matter.get("status") or "")
            if status == "Closed" and not see_closed:
                continue
            options.setdefault(
                str(matter["id"]),
                {
                    "const": matter["id"],
                    "title": str(matter.get("display_number") or matter["id"]),
                    "description": f"{status} - {matter.get('description') or ''}",
                    "status": status,
                },
            )
        return list(options.values())

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        body = {
            "data": {
                "name": new.name,
                "type": new.contact_type or "Person",
                "phone_numbers": [{"name": "Work", "number": new.phone_number, "default_number": True}],
            }
        }
        response = await call.http.request(
            "POST", "/api/v4/contacts.json", params={"fields": "id,name,type"}, json=body
        )
        data = response.json()["data"]
        contact = Contact(
            id=str(data["id"]),
            name=str(data.get("name") or new.name),
            phone=new.phone_number,
            type=str(data.get("type") or new.contact_type or "Person"),
        )
        return CreatedContact(
            contact=contact, return_message=ReturnMessage("Contact created.", "success", 2000)
        )

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        """A phone communication between the user and the contact, on the chosen matter."""
        contact_id = int_or_none(log.contact.id)
        if contact_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        record = log.call
        inbound = record.direction == "Inbound"
        subject = record.custom_subject or log.subject or _call_subject(inbound, log.contact)
        # the mapped user of a server-side logged call is its sender (outbound) or receiver (inbound)
        owner = int_or_none(log.owner.id) if log.owner is not None else None
        user_party = {"id": owner if owner is not None else int(call.user.crm_user_id), "type": "User"}
        contact_party = {"id": contact_id, "type": "Contact"}
        data: JsonDict = {
            "subject": subject,
            "body": (log.composed_log_details or "No details available") + _marker_line(call_marker(log)),
            "type": "PhoneCommunication",
            "received_at": iso_utc(parse_time(record.start_time)),
            "senders": [contact_party if inbound else user_party],
            "receivers": [user_party if inbound else contact_party],
            "notification_event_subscribers": _subscribers(call.user),
        }
        data.update(_matter(log.additional_submission))
        created = await self._create_communication(call.http, data)
        message = ReturnMessage("Call logged", "success", 2000)
        entry = _call_time_entry(call.user, log, created, subject)
        if entry is not None and not await self._time_entry(call.http, entry):
            message = _time_entry_warning("Call logged")
        return LogResult(created, message)

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        """The communication an unanswered create made, with its time entry added if the create stopped
        before it (the entry is looked for first, so it exists exactly once)."""
        found = await self._communication_with_marker(call, log.contact.id, call_marker(log))
        if found is None:
            return None
        subject = (
            log.call.custom_subject
            or log.subject
            or _call_subject(log.call.direction == "Inbound", log.contact)
        )
        entry = _call_time_entry(call.user, log, found, subject)
        if entry is not None and not await self._time_entries_of(call.http, found):
            await self._time_entry(call.http, entry)
        return found

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        """The agent's note is the `- Note:` line of the composed body; the marker never shows."""
        data = (
            await call.http.get_json(
                f"/api/v4/communications/{_log_id(ref.log_id)}.json", params={"fields": COMMUNICATION_FIELDS}
            )
        )["data"]
        full_body = _MARKER_RE.sub("", str(data.get("body") or ""))
        match = _NOTE_RE.search(full_body)
        contact_name = None
        for party in [*(data.get("senders") or []), *(data.get("receivers") or [])]:
            if isinstance(party, dict) and party.get("type") in ("Person", "Company", "Contact"):
                contact_name = str(party.get("name") or "") or None
                break
        matter = data.get("matter")
        info = CallLogInfo(
            subject=data.get("subject"),
            note=match.group(1).strip() if match else "",
            full_body=full_body,
            contact_name=contact_name,
            dispositions={"matters": matter["id"]} if isinstance(matter, dict) and matter.get("id") else None,
            full_log_response=data,
        )
        return CallLogFetched(info=info)

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        """The server composed the new body from the fetched one; the call's marker is kept at its end."""
        log_id = _log_id(update.log.log_id)
        existing = update.existing_call_log_details
        if not isinstance(existing, dict) or "body" not in existing:
            existing = (
                await call.http.get_json(
                    f"/api/v4/communications/{log_id}.json", params={"fields": "id,body"}
                )
            )["data"]
        marker = _CALL_MARKER_RE.search(str(existing.get("body") or ""))
        data: JsonDict = {
            "body": (update.composed_log_details or "No details available")
            + (f"\n\n{marker.group(0)}" if marker else "")
        }
        if update.subject:
            data["subject"] = update.subject
        if update.start_time:
            data["received_at"] = iso_utc(parse_time(update.start_time))
        await _patch(call.http, f"/api/v4/communications/{log_id}.json", data)
        message = ReturnMessage("Call log updated.", "success", 2000)
        seconds = call_seconds(update.duration)
        wanted = (
            update.duration is not None
            and _log_time_entry(call.user, update.additional_submission)
            and seconds > 0
        )
        if wanted and not await self._update_time_entry(call.http, log_id, seconds):
            message = _time_entry_warning("Call log updated.")
        return CallLogUpdated(updated_note=update.composed_log_details, return_message=message)

    async def upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        matter = _matter(update.dispositions)
        if not matter:
            return LogResult(None)
        log_id = _log_id(update.log.log_id)
        await _patch(call.http, f"/api/v4/communications/{log_id}.json", matter)
        return LogResult(update.log.log_id)

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        """One communication per conversation and day; later messages are appended by update_message_log."""
        contact_id = int_or_none(log.contact.id)
        if contact_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        user_name = await self._user_name(call.http)
        created = parse_time(log.shared.started_at if log.shared else log.message.creation_time)
        local = created.astimezone(user_timezone(call.user))
        contact = log.contact
        others = "".join(f"    {other}\n" for other in log.correspondents)
        if log.shared is not None:
            subject, body = log.shared.subject, log.shared.body
        elif log.recording_link:
            subject = f"Voicemail left by {contact.name} - {local:%y/%m/%d}"
            body = f"{subject}\nVoicemail recording link: {log.recording_link}\n\n--- Created via RingCentral App Connect"
        elif log.fax_doc_link or log.fax is not None:
            subject = f"Fax document sent from {contact.name} - {local:%y/%m/%d}"
            document = await self._upload(call, log.fax, log.media, _fax_name(log), _parent(log))
            if document is not None:
                link = f"Fax uploaded to Clio: {document}"
            else:
                link = f"Fax document link: {log.fax_doc_link or ''}"
            body = f"{subject}\n{link}\n\n--- Created via RingCentral App Connect"
        else:
            subject = f"SMS conversation with {contact.name} - {local:%y/%m/%d}"
            image_link = await self._image_link(
                call, log.message, contact, log.image, log.media, log.image_link, _parent(log)
            )
            item = _message_item(log.message, contact, user_name, call.user, image_link)
            body = (
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
        user_party = {"id": int(call.user.crm_user_id), "type": "User"}
        contact_party = {"id": contact_id, "type": "Contact"}
        inbound = log.message.direction == "Inbound"
        data: JsonDict = {
            "subject": subject,
            "body": body
            + _marker_line(message_marker(log))
            + ("" if log.shared else _message_tag(log.message)),
            "type": "PhoneCommunication",
            "received_at": iso_utc(created),
            "senders": [contact_party if inbound else user_party],
            "receivers": [user_party if inbound else contact_party],
            "notification_event_subscribers": _subscribers(call.user),
        }
        data.update(_matter(log.additional_submission))
        created_id = await self._create_communication(call.http, data)
        message = ReturnMessage("Message logged", "success", 2000)
        if log.shared is None and not await self._sms_time_entry(
            call, log.message, contact, created_id, log.additional_submission
        ):
            message = _time_entry_warning("Message logged")
        return LogResult(created_id, message)

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        """The communication an unanswered create made, with its SMS time entry added if the create stopped
        before it (looked for first, so it exists once)."""
        found = await self._communication_with_marker(call, log.contact.id, message_marker(log))
        if found is None or log.shared is not None:
            return found
        entry = _sms_time_entry(call.user, log.message, log.contact, found, log.additional_submission)
        if entry is not None and not await self._time_entries_of(call.http, found):
            await self._time_entry(call.http, entry)
        return found

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append the message before the conversation's end line and bump the count; skipped when its tag is
        already there (an earlier append got through without an answer)."""
        path = f"/api/v4/communications/{_log_id(update.log_id)}.json"
        if update.shared is not None:
            # a shared SMS is re-sent whole: its body is replaced (the conversation marker kept)
            marker = _marker_line(conversation_marker(update.conversation_log_id))
            await _patch(call.http, path, {"body": update.shared.body + marker})
            return ReturnMessage("Message log updated", "success", 2000)
        existing = await call.http.get_json(path, params={"fields": "id,body"})
        user_name = await self._user_name(call.http)
        body = str(existing["data"].get("body") or "")
        tag = _message_tag(update.message)
        if tag.strip() in body:
            return None
        parent = _parent_of(update.contact, update.additional_submission)
        image_link = await self._image_link(
            call, update.message, update.contact, update.image, update.media, update.image_link, parent
        )
        item = _message_item(update.message, update.contact, user_name, call.user, image_link)
        end = _MESSAGES_END if _MESSAGES_END in body else ""
        body = body.replace(end, f"{item}{end}", 1) if end else f"{body}\n{item}"
        body = _COUNTER_RE.sub(lambda m: f"Conversation({int(m.group(1)) + 1} messages)", body, count=1)
        await _patch(call.http, path, {"body": body + tag})
        log_id = _log_id(update.log_id)
        if not await self._sms_time_entry(
            call, update.message, update.contact, log_id, update.additional_submission
        ):
            return _time_entry_warning("Message logged.")
        return None

    async def _sms_time_entry(
        self,
        call: CrmCall,
        message: Message,
        contact: ContactRef,
        communication_id: str,
        submission: JsonDict,
    ) -> bool:
        """Bill an outbound SMS (the user's SMS time tracking): the typing time, at least the user's minimum.
        False when Clio did not take it (the message is logged all the same)."""
        entry = _sms_time_entry(call.user, message, contact, communication_id, submission)
        return entry is None or await self._time_entry(call.http, entry)

    async def _image_link(
        self,
        call: CrmCall,
        message: Message,
        contact: ContactRef,
        image: MediaFile | None,
        media: MediaFetcher | None,
        link: str | None,
        parent: JsonDict | None,
    ) -> str | None:
        """The line an MMS image leaves in the conversation: its Clio document, else the link it came with."""
        if image is None:
            return link
        when = parse_time(message.creation_time).astimezone(user_timezone(call.user))
        extension = image.content_type.partition("/")[2].partition(";")[0] or "img"
        name = f"{message.direction} Image Message - {contact.name} - {when:%m/%d/%Y}.{extension}"
        document = await self._upload(call, image, media, name, parent)
        if document is not None:
            return f"[Image uploaded to Clio]: {document}"
        return f"[Image link]: {link}" if link else None

    async def _upload(
        self,
        call: CrmCall,
        file: MediaFile | None,
        media: MediaFetcher | None,
        name: str,
        parent: JsonDict | None,
    ) -> str | None:
        """Copy a RingCentral attachment into Clio Documents under the matter (else the contact); the document's
        link, or None when it could not be copied (the log then carries RingCentral's link, as the reference's
        does). Clio's upload is three steps: create the document (Clio answers where to PUT the bytes and with
        which headers), PUT the bytes there without Clio's token, then mark the version fully uploaded."""
        if file is None or media is None or parent is None:
            return None
        try:
            content = await media.fetch(file)
        except MediaUnavailable as exc:
            logger.info("clio: attachment not copied into Documents (%s)", exc)
            return None
        try:
            created = await call.http.request(
                "POST",
                "/api/v4/documents.json",
                params={"fields": "id,latest_document_version{uuid,put_url,put_headers}"},
                json={"data": {"name": name, "parent": parent}},
            )
            data = created.json()["data"]
            version = data["latest_document_version"]
            headers = {
                str(h["name"]): str(h["value"])
                for h in version.get("put_headers") or []
                if isinstance(h, dict) and "name" in h and "value" in h
            }
            headers.setdefault("Content-Type", file.content_type or "application/octet-stream")
            put_url = str(version["put_url"])
            if urlsplit(put_url).scheme not in ("http", "https"):
                return None
            await call.http.request(
                "PUT", put_url, content=content, headers=headers, auth=False, idempotent=True
            )
            patched = await call.http.request(
                "PATCH",
                f"/api/v4/documents/{int(data['id'])}.json",
                params={"fields": "id,latest_document_version{fully_uploaded}"},
                json={"data": {"uuid": version["uuid"], "fully_uploaded": True}},
                idempotent=True,
            )
            done = (patched.json()["data"].get("latest_document_version") or {}).get("fully_uploaded")
        except (CrmHttpError, LookupError, TypeError, ValueError) as exc:
            logger.info("clio: attachment not copied into Documents (%s)", type(exc).__name__)
            return None
        if done is not True:
            return None
        host = clio_host(call.user.hostname) or DEFAULT_HOST
        return f"https://{host}/nc/#/documents/{int(data['id'])}/details"

    # --- account -------------------------------------------------------------------------------------------

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        """The firm's enabled users, by name, as the reference asks for them (`GET /api/v4/users.json`)."""
        body = await call.http.get_json(
            "/api/v4/users.json", params={"enabled": "true", "order": "name(asc)", "fields": "id,name,email"}
        )
        users = body.get("data") or []
        return [
            CrmUser(id=str(u["id"]), name=_clio_user_name(u), email=u.get("email") or None)
            for u in users
            if isinstance(u, dict) and u.get("id") is not None
        ]

    # --- shared --------------------------------------------------------------------------------------------

    async def _user_name(self, http: CrmHttp) -> str:
        body = await http.get_json("/api/v4/users/who_am_i.json", params={"fields": "id,name"})
        return str(body["data"].get("name") or "")

    async def _create_communication(self, http: CrmHttp, data: JsonDict) -> str:
        response = await http.request(
            "POST", "/api/v4/communications.json", params={"fields": "id"}, json={"data": data}
        )
        return str(response.json()["data"]["id"])

    async def _time_entry(self, http: CrmHttp, entry: JsonDict) -> bool:
        """Bill the call's time. A failure never fails the log: the communication exists and must not be
        created again, so the agent is told to add the time by hand instead (unless an entry whose answer
        was lost is found to exist)."""
        try:
            await http.request(
                "POST", "/api/v4/activities.json", params={"fields": "id"}, json={"data": entry}
            )
        except CrmHttpError as exc:
            if not exc.outcome_unknown:
                return False
            try:
                return bool(await self._time_entries_of(http, str(entry["communication"]["id"])))
            except CrmHttpError:
                return False
        return True

    async def _time_entries_of(self, http: CrmHttp, communication_id: str) -> list[JsonDict]:
        return await self._pages(
            http,
            "/api/v4/activities.json",
            {"communication_id": communication_id, "type": "TimeEntry", "fields": "id,quantity"},
        )

    async def _update_time_entry(self, http: CrmHttp, communication_id: str, seconds: int) -> bool:
        """The time entries of the communication take the call's new duration (an absolute value: safe to
        send again)."""
        try:
            entries = await self._time_entries_of(http, communication_id)
            for entry in entries:
                if entry.get("quantity") != seconds:
                    await _patch(http, f"/api/v4/activities/{entry['id']}.json", {"quantity": seconds})
        except CrmHttpError:
            return False
        return True

    async def _communication_with_marker(self, call: CrmCall, contact_id: str, marker: str) -> str | None:
        """The newest phone communication of the contact whose body holds `[marker]`."""
        contact = int_or_none(contact_id)
        if contact is None:
            return None
        needle = f"[{marker}]"
        records = await self._pages(
            call.http,
            "/api/v4/communications.json",
            {
                "contact_id": contact,
                "type": "PhoneCommunication",
                "fields": "id,body",
                # newest first; any order but id(asc) pages by offset (Clio's paging documentation)
                "order": "id(desc)",
                "offset": 0,
                "limit": 50,
            },
        )
        for record in records:
            if needle in str(record.get("body") or ""):
                return str(record["id"])
        return None


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _SpellingMemory:
    """What one process learnt about an account's numbers: a hint only, so forgetting it costs searches,
    never a match."""

    hits: Counter[str] = field(default_factory=Counter)
    misses_since_recheck: int = 0


def phone_spellings(e164: str, overriding_format: str = "") -> list[tuple[str, str]]:
    """(kind, text) of every whole spelling of the number worth a search, in the order tried by default.

    First the reference's own terms (E.164, then the user's overridingFormat renderings), then the national
    form, the digit groups joined by a dash, a dot or a space, and the bare national digits. Whole spellings
    only: a fragment finds nothing where a search matches whole words. The international forms
    (`+1 415-555-0100`, `+1 415 555 0100`) need no search of their own: they hold the dashed or spaced
    spelling as a piece and as whole words. A number that does not parse is searched as given.
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return [("digits", digits_of(e164))] if digits_of(e164) else []
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    groups = re.findall(r"\d+", international)[1:]  # without the country code
    spellings = [("e164", e164)]
    digits = significant_number(e164)
    for pattern in overriding_format.split(","):
        rendered = render_format(pattern.strip(), digits)
        if rendered:
            spellings.append((f"format:{pattern.strip()}", rendered))
    spellings += [
        ("national", national),
        ("dashed", "-".join(groups)),
        ("dotted", ".".join(groups)),
        ("spaced", " ".join(groups)),
        ("digits", digits),
    ]
    unique: dict[str, tuple[str, str]] = {}
    for kind, text in spellings:
        if text and text not in unique:
            unique[text] = (kind, text)
    return list(unique.values())


def _numbers_of(record: JsonDict) -> list[str]:
    return [str(p.get("number") or "") for p in record.get("phone_numbers") or [] if isinstance(p, dict)]


def _time_zone(name: Any) -> tuple[str | None, str | None]:
    """(IANA zone, current offset as `+HH:MM`) of the Rails zone name Clio reports; (name, None) if unknown."""
    if not isinstance(name, str) or not name:
        return None, None
    zone_name = _RAILS_ZONES.get(name, name)
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        return name, None
    offset = datetime.now(zone).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return zone_name, f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _call_subject(inbound: bool, contact: ContactRef) -> str:
    if inbound:
        return f"[Call] Inbound Call from {contact.name} [{contact.phone_number}]"
    return f"[Call] Outbound Call to {contact.name} [{contact.phone_number}]"


def _clio_user_name(user: JsonDict) -> str:
    """`name`, or first and last name where a user has no `name` (as the reference falls back)."""
    if user.get("name"):
        return str(user["name"])
    return " ".join(str(user.get(k) or "").strip() for k in ("first_name", "last_name")).strip()


def _marker_line(marker: str) -> str:
    return f"\n\n[{marker}]"


def _message_tag(message: Message) -> str:
    """One per message the conversation holds: a re-sent append finds its message there and skips it."""
    return "\n" + message_needle(message)


def _call_time_entry(user: UserView, log: CallLogCreate, communication_id: str, note: str) -> JsonDict | None:
    """The time entry billing a call's duration on its communication; None when the user bills no time."""
    seconds = call_seconds(log.call.duration)
    if not _log_time_entry(user, log.additional_submission) or seconds <= 0:
        return None
    entry: JsonDict = {
        "type": "TimeEntry",
        "communication": {"id": int(communication_id)},
        "quantity": seconds,
        "date": parse_time(log.call.start_time).strftime("%Y-%m-%d"),
        "non_billable": _non_billable(user, log.additional_submission),
        "note": note,
    }
    entry.update(_matter(log.additional_submission))
    return entry


def _time_entries_on(user: UserView) -> bool:
    return _truthy(user.setting("clioTimeEntriesEnabled", True))


def _truthy(value: Any) -> bool:
    """A boolean setting or form field as the client may send it (`true`, `"true"`, `"false"`)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _log_time_entry(user: UserView, submission: JsonDict) -> bool:
    """The log form's `logTimeEntry` tick (offered with every contact), else the user's time-entry setting."""
    if "logTimeEntry" in submission and submission["logTimeEntry"] is not None:
        return _truthy(submission["logTimeEntry"])
    return _time_entries_on(user)


def _non_billable(user: UserView, submission: JsonDict) -> bool:
    """An explicit `nonBillable` of the log form, else its billable choice, else the user's default (a
    boolean, or the reference's `billable`/`non-billable` option)."""
    explicit = submission.get("nonBillable")
    if explicit is not None:
        return _truthy(explicit)
    chosen = submission.get("billableStatus")
    if chosen in ("billable", "non-billable"):
        return bool(chosen == "non-billable")
    default = user.setting("clioDefaultNonBillableTick", False)
    return default == "non-billable" or default is True or (isinstance(default, str) and _truthy(default))


#: the reference's fallback when the user's SMS minimum is unset or not a number
DEFAULT_SMS_MINIMUM_SECONDS = 30


def _sms_time_entry(
    user: UserView, message: Message, contact: ContactRef, communication_id: str, submission: JsonDict
) -> JsonDict | None:
    """The time entry of an outbound SMS when the user tracks SMS time: the typing time the client measured
    (`typingDurationMs`), at least the user's minimum, billable by the user's SMS default."""
    if not _truthy(user.setting("smsTimeTrackingEnabled", False)) or message.direction != "Outbound":
        return None
    try:
        minimum = int(str(user.setting("smsTimeTrackingMinimumDuration", DEFAULT_SMS_MINIMUM_SECONDS)))
    except ValueError:
        minimum = DEFAULT_SMS_MINIMUM_SECONDS
    minimum = minimum if minimum > 0 else DEFAULT_SMS_MINIMUM_SECONDS
    typed = message.raw.get("typingDurationMs")
    typed_seconds = (
        int(typed) // 1000 if isinstance(typed, (int, float)) and not isinstance(typed, bool) else 0
    )
    sent = parse_time(message.creation_time).astimezone(user_timezone(user))
    entry: JsonDict = {
        "type": "TimeEntry",
        "communication": {"id": int(communication_id)},
        "quantity": max(typed_seconds, minimum),
        "date": sent.strftime("%Y-%m-%d"),
        "non_billable": user.setting("smsTimeTrackingDefaultBillable", "billable") == "non-billable",
        "note": f"SMS message with {contact.name} sent on {sent:%m/%d/%Y} at {sent:%H:%M:%S}",
    }
    entry.update(_matter(submission))
    return entry


def _subscribers(user: UserView) -> list[JsonDict]:
    """Clio notifies the logging user of the communication, as the reference asks."""
    return [{"user_id": int(user.crm_user_id)}]


def _parent_of(contact: ContactRef, submission: JsonDict) -> JsonDict | None:
    """Where an uploaded document lives: the chosen matter, else the contact (None: neither is a Clio id)."""
    matter = int_or_none(submission.get("matters"))
    if matter is not None:
        return {"id": matter, "type": "Matter"}
    contact_id = int_or_none(contact.id)
    return {"id": contact_id, "type": "Contact"} if contact_id is not None else None


def _parent(log: MessageLogCreate) -> JsonDict | None:
    return _parent_of(log.contact, log.additional_submission)


def _fax_name(log: MessageLogCreate) -> str:
    when = parse_time(log.message.creation_time)
    return f"{log.message.direction} Fax - {log.contact.name} - {when:%m/%d/%Y}.pdf"


def _time_entry_warning(done: str) -> ReturnMessage:
    return ReturnMessage(
        f"{done} Clio did not take the time entry: please add it in Clio.",
        "warning",
        5000,
    )


def _matter(values: JsonDict) -> JsonDict:
    matter = int_or_none(values.get("matters"))
    return {"matter": {"id": matter}} if matter is not None else {}


async def _patch(http: CrmHttp, path: str, data: JsonDict) -> None:
    """A PATCH that sets absolute values: safe to send again."""
    await http.request("PATCH", path, params={"fields": "id"}, json={"data": data}, idempotent=True)


def _log_id(log_id: str) -> str:
    """The communication id of a stored log id (older logs were stored as `<communication>.<entry>`)."""
    return log_id.split(".", 1)[0]


def _message_item(
    message: Message, contact: ContactRef, user_name: str, user: UserView, image_link: str | None
) -> str:
    """One message of the conversation: who and when (user's time), then the text."""
    when = parse_time(message.creation_time).astimezone(user_timezone(user))
    who = f"{contact.name} ({contact.phone_number})" if message.direction == "Inbound" else user_name
    extra = f"\n{image_link}" if image_link else ""
    return f"{who} {when:%I:%M %p}\n{message.subject}{extra}\n\n"

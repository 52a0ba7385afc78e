"""Pipedrive: persons are contacts; calls and SMS conversations are done activities on a deal or lead."""

from __future__ import annotations

import asyncio
import html
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from appconnect.connectors.kit import (
    call_marker,
    call_subject,
    caller_number,
    conversation_marker,
    html_link,
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
    OAuthInfo,
    PlatformUser,
    ReturnMessage,
    UserInfoResult,
    UserView,
    placeholder_contact,
)

log = logging.getLogger(__name__)

DEFAULT_TOKEN_URL = "https://oauth.pipedrive.com/oauth/token"
DEFAULT_REVOKE_URL = "https://oauth.pipedrive.com/oauth/revoke"
DEFAULT_AUTHORIZE_URL = "https://oauth.pipedrive.com/oauth/authorize"
DEFAULT_API_URL = "https://api.pipedrive.com"

#: How long the account's activity types are trusted before they are fetched again: kept in the server's
#: account storage, shared by every process and user of the company, a day as the reference (a type the admin
#: picked that is missing, a 400 on create or no name match fetches them again at once, so a day is safe);
#: without that storage, each process keeps its own copy for five minutes.
ACTIVITY_TYPES_TTL = 86_400.0
ACTIVITY_TYPES_TTL_IN_PROCESS = 300.0
#: the account data key of the active activity types (the manifest's `accountDataKey`)
ACTIVITY_TYPES_KEY = "activityTypes"
#: A list at least this old is fetched again when the configured type is not in it or no type matches by name;
#: a younger one is not, so an admin setting naming a deactivated type costs one extra fetch per company per
#: this many seconds, not one per log.
ACTIVITY_TYPES_RECHECK = 30.0

_AGENT_NOTES = "<b>Agent notes</b>"
_CALL_DETAILS = "<b>Call details</b>"
_MESSAGES_END = "</ul>------------<br>"
_COUNTER_RE = re.compile(r"Conversation\((\d+) messages\)")
_MAX_DURATION_MINUTES = 99 * 60 + 59  # Pipedrive's duration is HH:MM


@dataclass(slots=True, frozen=True)
class ActivityType:
    """One entry of the account's `/v1/activityTypes`."""

    key: str
    name: str


#: company hosts whose API answered 404 to `POST /api/v2/persons` (see `PipedriveConnector._post_person`)
_V1_PERSON_HOSTS: set[str] = set()
_MAX_REMEMBERED_HOSTS = 10_000


def _v1_person(body: JsonDict) -> JsonDict:
    """v1's create body: `phone` where v2 has `phones` (the same list of {value, primary, label})."""
    v1 = {key: value for key, value in body.items() if key != "phones"}
    v1["phone"] = body["phones"]
    return v1


class PipedriveConnector(Connector):
    """Pipedrive over its v1/v2 REST API with OAuth; the company host is per user, users/me is global."""

    platform: ClassVar[str] = "pipedrive"
    auth_type: ClassVar[AuthType] = "oauth"
    log_format: ClassVar[str] = "text/html"
    manifest_path: ClassVar[Path | None] = Path(__file__).with_name("manifest.json")
    #: Pipedrive counts bursts per OAuth token in 2-second windows (80 to 480 calls by plan, told in
    #: `x-ratelimit-*` on every answer), its search endpoints apart (10 per 2 s per token), and spends a daily
    #: budget per company (its size depends on plan and seats: learnt only from a 429).
    rate_limits: ClassVar[tuple[LimitRule, ...]] = (
        LimitRule("burst", "token", per_seconds=2.0, requests=80),
        LimitRule("search", "token", per_seconds=2.0, requests=10, paths=("/search", "itemsearch")),
        LimitRule("daily", "company", per_seconds=86_400.0),
    )
    idempotent_message_append: ClassVar[bool] = True
    account_data_keys: ClassVar[tuple[str, ...]] = (ACTIVITY_TYPES_KEY,)

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        super().__init__(config)
        #: company -> (when fetched, its active activity types): only where the server keeps no account data
        self._activity_types: dict[str, tuple[float, list[ActivityType]]] = {}

    def rate_limit_key(self, user: UserView) -> str:
        """The Pipedrive company: its id from users/me when known, else its host."""
        company = user.platform_additional_info.get("companyId")
        return f"company-{company}" if company else user.hostname.lower()

    # --- auth ----------------------------------------------------------------------------------------------

    def _setting(self, key: str, default: str) -> str:
        return self.config.get(key) or default

    def _api_url(self) -> str:
        return self._setting("api_url", DEFAULT_API_URL).rstrip("/")

    def oauth_info(self, hostname: str | None = None) -> OAuthInfo:
        """Pipedrive's OAuth endpoints are global; the client credentials come from config."""
        return OAuthInfo(
            client_id=self.config.get("client_id"),
            client_secret=self.config.get("client_secret") or None,
            access_token_uri=self._setting("token_url", DEFAULT_TOKEN_URL),
            redirect_uri=self.config.get("redirect_uri"),
            authorization_uri=self._setting("authorize_url", DEFAULT_AUTHORIZE_URL),
            scopes=None,
            hostname=hostname,
            revoke_uri=self._setting("revoke_url", DEFAULT_REVOKE_URL),
        )

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        """The company domain from users/me replaces whatever hostname the client sent (it may be `temp`)."""
        try:
            body = await request.http.get_json(f"{self._api_url()}/v1/users/me")
            data = body["data"]
            user = PlatformUser(
                id=f"{data['id']}-{self.platform}",
                name=str(data.get("name") or ""),
                timezone_name=data.get("timezone_name"),
                timezone_offset=_opt_str(data.get("timezone_offset")),
                platform_additional_info={
                    "companyId": data.get("company_id"),
                    "companyName": data.get("company_name"),
                    "companyDomain": data.get("company_domain"),
                },
                overriding_hostname=f"{data['company_domain']}.pipedrive.com"
                if data.get("company_domain")
                else None,
                account_id=str(data["company_id"]) if data.get("company_id") is not None else None,
            )
        except (CrmHttpError, KeyError, TypeError, ValueError) as exc:
            status = getattr(exc, "status", None)
            detail = f"Pipedrive answered {status}." if status else "Pipedrive's answer could not be read."
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
            successful=True,
            user=user,
            return_message=ReturnMessage("Connected to Pipedrive.", "success", 3000),
        )

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        """Search by the national significant number: Pipedrive keeps phones as users typed them."""
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        phone = caller_number(lookup)
        # Pipedrive's phone search compares digits, so the national significant number finds every spelling
        # (`(415) 555-0100`, `+1 415 555 0100`, `020 7946 0018`) in one call; the loose hits (any number
        # merely containing those digits) are dropped by parsing what each person has stored.
        found = await self._search_persons(call.http, significant_number(phone), "phone")
        persons = [person for person in found if any_same_number(_stored_phones(person), phone)]
        contacts = await self._enrich(call.http, persons, phone)
        contacts.append(placeholder_contact())
        return ContactMatches(successful=True, contacts=contacts)

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        """Free-text contact search from the client's contact picker."""
        term = name.strip()
        if len(term) < 2:  # Pipedrive rejects shorter search terms
            return ContactMatches(successful=True, contacts=[])
        persons = await self._search_persons(call.http, term, "name")
        return ContactMatches(successful=True, contacts=await self._enrich(call.http, persons, None))

    async def _search_persons(self, http: CrmHttp, term: str, field: str) -> list[JsonDict]:
        body = await http.get_json("/api/v2/persons/search", params={"term": term, "fields": field})
        items = (body.get("data") or {}).get("items") or []
        return [entry["item"] for entry in items if isinstance(entry, dict) and entry.get("item")]

    async def _enrich(self, http: CrmHttp, persons: list[JsonDict], phone: str | None) -> list[Contact]:
        """Attach each person's open deals and leads; the per-person calls all run concurrently."""
        related = await asyncio.gather(*(self._deals_and_leads(http, p["id"]) for p in persons))
        contacts: list[Contact] = []
        for person, (deals, leads) in zip(persons, related, strict=True):
            info: JsonDict = {}
            if deals:
                info["deals"] = deals
            if leads:
                info["leads"] = leads
            organization = person.get("organization") or {}
            contacts.append(
                Contact(
                    id=str(person["id"]),
                    name=str(person.get("name") or ""),
                    phone=phone,
                    type="contact",
                    organization=str(organization.get("name") or ""),
                    created_date=person.get("add_time"),
                    most_recent_activity_date=person.get("update_time"),
                    additional_info=info,
                )
            )
        return contacts

    async def _deals_and_leads(self, http: CrmHttp, person_id: Any) -> tuple[list[JsonDict], list[JsonDict]]:
        deals_body, leads = await asyncio.gather(
            http.get_json("/api/v2/deals", params={"person_id": person_id, "status": "open"}),
            self._leads(http, person_id),
        )
        deals = [{"const": d["id"], "title": d.get("title", "")} for d in deals_body.get("data") or []]
        return deals, leads

    async def _leads(self, http: CrmHttp, person_id: Any) -> list[JsonDict]:
        """Leads are optional garnish: a token without the leads scope must not break the lookup."""
        try:
            body = await http.get_json("/v1/leads", params={"person_id": person_id})
        except CrmHttpError:
            return []
        return [{"const": lead["id"], "title": lead.get("title", "")} for lead in body.get("data") or []]

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        """Pipedrive has one contact type (person): `POST /api/v2/persons` (v1's create is retired), owned by
        the user, the number as its one primary phone; an organisation id from the form links it."""
        body: JsonDict = {
            "name": new.name,
            "phones": [{"value": new.phone_number, "primary": True, "label": "work"}],
        }
        owner_id = _int_or_none(call.user.crm_user_id)
        if owner_id is not None:
            body["owner_id"] = owner_id
        org_id = _int_or_none(_first(new.additional_submission, "orgId", "org_id", "organizationId"))
        if org_id is not None:
            body["org_id"] = org_id
        data = await self._post_person(call, body)
        contact = Contact(
            id=str(data["id"]), name=str(data.get("name") or new.name), phone=new.phone_number, type="contact"
        )
        return CreatedContact(
            contact=contact, return_message=ReturnMessage("Contact created.", "success", 2000)
        )

    async def _post_person(self, call: CrmCall, body: JsonDict) -> JsonDict:
        """`POST /api/v2/persons`; where that path is unknown (404: an API server without v2 persons, such as
        an older gateway in front of Pipedrive), v1's create with v1's body. A host is remembered as v1-only once
        its v1 create worked, so such a server costs one extra request once, not one per contact; when v1 fails
        too, the v2 answer stands (a 404 or a refused create made nothing, so trying v1 is safe)."""
        host = call.http.base_url
        if host not in _V1_PERSON_HOSTS:
            answer = await call.http.request("POST", "/api/v2/persons", json=body, allow_status=(404,))
            if answer.status_code != 404:
                return dict(answer.json()["data"])
            v1 = await call.http.request(
                "POST", "/v1/persons", json=_v1_person(body), allow_status=(404, 410)
            )
            if v1.status_code in (404, 410):
                raise CrmHttpError(404, method="POST", url=f"{host}/api/v2/persons")
            if len(_V1_PERSON_HOSTS) >= _MAX_REMEMBERED_HOSTS:
                _V1_PERSON_HOSTS.clear()
            _V1_PERSON_HOSTS.add(host)
            return dict(v1.json()["data"])
        return dict((await call.http.post_json("/v1/persons", _v1_person(body)))["data"])

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        """A call is a done activity on the person, attached to the chosen deal (or else lead) and org."""
        person_id = _int_or_none(log.contact.id)
        if person_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        activity_type = await self._activity_type(call, "pipedriveCallActivityType", "call")
        if activity_type is None:
            return LogResult(None, _no_activity_type("call", "pipedriveCallActivityType"))
        org_id = await self._person_org(call.http, person_id)
        record = log.call
        subject = record.custom_subject or log.subject or call_subject(record.direction, log.contact.name)

        async def create(kind: str) -> str:
            return await _create_done_activity(
                call,
                person_id=person_id,
                org_id=org_id,
                activity_type=kind,
                subject=subject,
                note=log.composed_log_details + _marker_line(call_marker(log)),
                when=parse_time(record.start_time),
                additional_submission=log.additional_submission,
                extra={"duration": pipedrive_duration(record.duration)},
                owner_id=_owner_id(call, log),
            )

        activity_id = await self._create_typed(
            call, "pipedriveCallActivityType", "call", activity_type, create
        )
        if activity_id is None:
            return LogResult(None, _no_activity_type("call", "pipedriveCallActivityType"))
        return LogResult(activity_id, ReturnMessage("Call logged", "success", 2000))

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        """The person's done activity of this user whose note carries the call's marker."""
        return await _activity_with_marker(
            call, log.contact.id, call_marker(log), owner_id=_owner_id(call, log)
        )

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        """The server composes the new note from the fetched one; only changed fields are patched."""
        body: JsonDict = {"note": update.composed_log_details}
        if update.subject:
            body["subject"] = update.subject
        if update.duration is not None:
            body["duration"] = pipedrive_duration(update.duration)
        await call.http.patch_json(f"/api/v2/activities/{update.log.log_id}", body)
        return CallLogUpdated(
            updated_note=update.composed_log_details,
            return_message=ReturnMessage("Call log updated.", "success", 2000),
        )

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        """Recover the agent's own note from the composed HTML so the client can edit just that part."""
        body = await call.http.get_json(f"/api/v2/activities/{ref.log_id}")
        data = body["data"]
        full_body = _MARKER_RE.sub("", data.get("note") or "")
        note = ""
        if _AGENT_NOTES in full_body:
            note = full_body.split(_AGENT_NOTES, 1)[1].split(_CALL_DETAILS, 1)[0].replace("<br>", "").strip()
        contact_name = _related_person_name(body) or await self._person_name(
            call.http, _activity_person(data)
        )
        info = CallLogInfo(
            subject=data.get("subject"),
            note=note,
            full_body=full_body,
            contact_name=contact_name,
            dispositions={"deals": data.get("deal_id"), "leads": data.get("lead_id")},
            full_log_response=data,
        )
        return CallLogFetched(info=info)

    async def upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        """A deal wins over a lead: an activity can be linked to only one of them."""
        chosen = update.dispositions
        deal_id = _int_or_none(chosen.get("deals"))
        if deal_id is not None:
            body: JsonDict = {"deal_id": deal_id, "lead_id": None}
        elif chosen.get("leads"):
            body = {"lead_id": str(chosen["leads"]), "deal_id": None}
        else:
            return LogResult(None)
        await call.http.patch_json(f"/api/v2/activities/{update.log.log_id}", body)
        return LogResult(update.log.log_id)

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        """One activity per conversation and day; later messages are appended by update_message_log."""
        person_id = _int_or_none(log.contact.id)
        if person_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        activity_type = await self._activity_type(call, "pipedriveSMSActivityType", "sms")
        if activity_type is None:
            return LogResult(None, _no_activity_type("SMS", "pipedriveSMSActivityType"))
        user_name, org_id = await asyncio.gather(
            self._user_name(call.http), self._person_org(call.http, person_id)
        )
        created = parse_time(log.shared.started_at if log.shared else log.message.creation_time)
        local = created.astimezone(user_timezone(call.user))
        contact = log.contact
        name = html.escape(contact.name)
        others = "".join(f"<li><b>{html.escape(other)}</b></li>" for other in log.correspondents)
        if log.shared is not None:
            subject, note = log.shared.subject, log.shared.body
        elif log.recording_link:
            subject = f"Voicemail left by {contact.name} - {local:%y/%m/%d}"
            note = (
                f"<br><b>{html.escape(subject)}</b><br>Voicemail recording link: "
                f"{html_link(log.recording_link)}<br><br>--- Created via RingCentral App Connect"
            )
        elif log.fax_doc_link:
            subject = f"Fax document sent from {contact.name} - {local:%y/%m/%d}"
            note = (
                f"<br><b>{html.escape(subject)}</b><br>Fax document link: {html_link(log.fax_doc_link)}"
                "<br><br>--- Created via RingCentral App Connect"
            )
        else:
            subject = f"SMS conversation with {contact.name} - {local:%y/%m/%d}"
            note = (
                f"<br><b>{html.escape(subject)}</b><br>"
                "<b>Conversation summary</b><br>"
                f"{local:%A, %B %d, %Y}<br>"
                "Participants<br>"
                f"<ul><li><b>{html.escape(user_name)}</b><br></li><li><b>{name}</b></li>{others}</ul><br>"
                "Conversation(1 messages)<br>"
                "BEGIN<br>------------<br><ul>"
                f"{_message_item(log.message, contact, user_name, call.user, log.image_link)}"
                f"{_MESSAGES_END}END<br><br>--- Created via RingCentral App Connect"
            )

        async def create(kind: str) -> str:
            return await _create_done_activity(
                call,
                person_id=person_id,
                org_id=org_id,
                activity_type=kind,
                subject=subject,
                note=note
                + _marker_line(message_marker(log))
                + ("" if log.shared else _message_tag(log.message)),
                when=created,
                additional_submission=log.additional_submission,
            )

        activity_id = await self._create_typed(call, "pipedriveSMSActivityType", "sms", activity_type, create)
        if activity_id is None:
            return LogResult(None, _no_activity_type("SMS", "pipedriveSMSActivityType"))
        return LogResult(activity_id, ReturnMessage("Message logged", "success", 2000))

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        return await _activity_with_marker(call, log.contact.id, message_marker(log))

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append the message to the day's conversation note and bump its message counter.

        Skipped when the note already carries the message's tag: an earlier append got there without an answer.
        """
        path = f"/api/v2/activities/{update.log_id}"
        if update.shared is not None:
            return await self._rewrite_shared(call, path, update)
        outbound = update.message.direction != "Inbound"
        user_name_task = self._user_name(call.http) if outbound else _constant("")
        user_name, activity = await asyncio.gather(user_name_task, call.http.get_json(path))
        note = str(activity["data"].get("note") or "")
        tag = _message_tag(update.message)
        if message_needle(update.message) in note:
            return None
        item = _message_item(update.message, update.contact, user_name, call.user, update.image_link)
        if _MESSAGES_END in note:
            note = note.replace(_MESSAGES_END, f"{item}{_MESSAGES_END}", 1)
        else:
            note = f"{note}<ul>{item}</ul>"
        note = _COUNTER_RE.sub(lambda m: f"Conversation({int(m.group(1)) + 1} messages)", note, count=1)
        body: JsonDict = {"note": note + tag}
        body.update(_association(update.additional_submission))
        await call.http.patch_json(path, body)
        return None

    async def _rewrite_shared(self, call: CrmCall, path: str, update: MessageLogUpdate) -> ReturnMessage:
        """A shared SMS is re-sent whole: its note is replaced (the conversation marker kept)."""
        assert update.shared is not None
        marker = _marker_line(conversation_marker(update.conversation_log_id))
        body: JsonDict = {"note": update.shared.body + marker}
        body.update(_association(update.additional_submission))
        await call.http.patch_json(path, body)
        return ReturnMessage("Message log updated", "success", 2000)

    # --- account -------------------------------------------------------------------------------------------

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        """The company's users (`GET /api/v1/users` on the company domain, as the reference asks); deleted ones
        are left out."""
        body = await call.http.get_json("/api/v1/users")
        users = body.get("data") or []
        return [
            CrmUser(id=str(u["id"]), name=str(u.get("name") or ""), email=u.get("email") or None)
            for u in users
            if isinstance(u, dict) and u.get("id") is not None and not u.get("is_deleted")
        ]

    # --- shared lookups ------------------------------------------------------------------------------------

    async def _user_name(self, http: CrmHttp) -> str:
        body = await http.get_json(f"{self._api_url()}/v1/users/me")
        return str(body["data"].get("name") or "")

    async def _person_name(self, http: CrmHttp, person_id: int | None) -> str | None:
        """The person's name (`GET /api/v2/persons/{id}`); None for no person or one since deleted (404)."""
        if person_id is None:
            return None
        response = await http.request("GET", f"/api/v2/persons/{person_id}", allow_status=(404,))
        if response.status_code == 404:
            return None
        data = response.json().get("data")
        if not isinstance(data, dict):
            return None
        return str(data.get("name") or "") or None

    async def _person_org(self, http: CrmHttp, person_id: int) -> int | None:
        data = (await http.get_json(f"/api/v2/persons/{person_id}"))["data"]
        return _int_or_none(data.get("org_id"))

    async def _activity_type(
        self, call: CrmCall, setting: str, word: str, *, refetch: bool = False
    ) -> str | None:
        """The activity type a log gets: the admin's choice while it is an active type of the account, else the
        first active type whose name mentions `word`; None when there is neither.

        The admin's choice is checked against the account's active types (a type deactivated in Pipedrive makes
        every create a 400). A list that lacks it is fetched again when older than ACTIVITY_TYPES_RECHECK, and a
        list where no name matches is fetched again unless this very call fetched it, as the reference does.
        """
        chosen = str(call.user.setting(setting) or "")
        kinds, fetched = await self._activity_types_for(call, max_age=0.0 if refetch else ACTIVITY_TYPES_TTL)
        if chosen:
            if not any(kind.key == chosen for kind in kinds) and not fetched:
                kinds, fetched = await self._activity_types_for(call, max_age=ACTIVITY_TYPES_RECHECK)
            if any(kind.key == chosen for kind in kinds):
                return chosen
            log.warning("Pipedrive: the %s setting names no active activity type; matching by name", setting)
        matched = _type_named(kinds, word)
        if matched is None and not fetched:
            kinds, _fetched = await self._activity_types_for(call, max_age=0.0)
            matched = _type_named(kinds, word)
        return matched

    async def _create_typed(
        self,
        call: CrmCall,
        setting: str,
        word: str,
        activity_type: str,
        create: Callable[[str], Awaitable[str]],
    ) -> str | None:
        """`create(activity_type)`; a 400 may mean the type was deactivated since the list was fetched, so the
        list is fetched again and, when it gives another type, the create is sent once more with it (a 400 made
        nothing). None when the account has no usable type any more."""
        try:
            return await create(activity_type)
        except CrmHttpError as exc:
            if exc.status != 400:
                raise
            again = await self._activity_type(call, setting, word, refetch=True)
            if again is None:
                return None
            if again == activity_type:
                raise
            return await create(again)

    async def account_data(self, call: CrmCall, key: str, *, refresh: bool = False) -> Any:
        """`activityTypes`: the company's active activity types as `{const, title}` options (the admin's
        activity-type settings pick from them), as the reference's account data."""
        if key != ACTIVITY_TYPES_KEY:
            raise KeyError(key)
        kinds, _fetched = await self._activity_types_for(call, max_age=0.0 if refresh else ACTIVITY_TYPES_TTL)
        return [{"const": kind.key, "title": kind.name} for kind in kinds]

    async def _activity_types_for(self, call: CrmCall, *, max_age: float) -> tuple[list[ActivityType], bool]:
        """The company's active activity types (fetched again when the kept list is older than `max_age`), and
        whether they were fetched just now. Kept in the server's account data when it offers it (one fetch per
        company, whichever process or user asks), else in this process."""
        if call.account_data is not None:
            stored, fetched = await call.account_data.get(
                ACTIVITY_TYPES_KEY, lambda: _fetch_activity_types(call), max_age=max_age
            )
            return _activity_types_of(stored), fetched
        key = self.rate_limit_key(call.user)
        cached = self._activity_types.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < min(max_age, ACTIVITY_TYPES_TTL_IN_PROCESS):
            return cached[1], False
        kinds = _activity_types_of(await _fetch_activity_types(call))
        self._activity_types[key] = (now, kinds)
        return kinds, True


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


async def _fetch_activity_types(call: CrmCall) -> list[JsonDict]:
    """The company's active activity types, as stored: `{const: key_string, title: name}` each."""
    body = await call.http.get_json("/v1/activityTypes")
    return [
        {"const": str(t["key_string"]), "title": str(t.get("name") or "")}
        for t in body.get("data") or []
        if isinstance(t, dict) and t.get("active_flag") and t.get("key_string")
    ]


def _activity_types_of(stored: Any) -> list[ActivityType]:
    """The kept list read back (what another version stored may differ: anything unreadable is skipped)."""
    if not isinstance(stored, list):
        return []
    return [
        ActivityType(key=str(t["const"]), name=str(t.get("title") or ""))
        for t in stored
        if isinstance(t, dict) and t.get("const")
    ]


def _type_named(kinds: list[ActivityType], word: str) -> str | None:
    return next((kind.key for kind in kinds if word in kind.name.lower()), None)


def pipedrive_duration(seconds: int | str | None) -> str:
    """Seconds as Pipedrive's "HH:MM", rounded up to the next whole minute.

    Pipedrive only stores minutes. Rounding up keeps a 20-second call from showing as 00:00, and unlike the
    original connector's unconditional "+1 minute" it does not over-report calls of whole minutes
    (300 s is 00:05, not 00:06). Anything unreadable is 00:00.
    """
    try:
        total = float(seconds) if seconds is not None else 0.0
    except (TypeError, ValueError):
        total = 0.0
    if not math.isfinite(total) or total < 0:
        total = 0.0
    minutes = min(math.ceil(total / 60), _MAX_DURATION_MINUTES)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _stored_phones(person: JsonDict) -> list[str]:
    """A search item's numbers: v2 lists strings, v1 objects with a `value`; anything else holds none."""
    raw = person.get("phones", person.get("phone"))
    entries = raw if isinstance(raw, list) else [raw]
    numbers: list[str] = []
    for entry in entries:
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, str) and value:
            numbers.append(value)
    return numbers


async def _create_done_activity(
    call: CrmCall,
    *,
    person_id: int,
    org_id: int | None,
    activity_type: str,
    subject: str,
    note: str,
    when: datetime,
    additional_submission: JsonDict,
    extra: JsonDict | None = None,
    owner_id: int | None = None,
) -> str:
    """A done activity owned by the user (or `owner_id`, the mapped user of a server-side logged call), with the
    person as primary participant and the chosen deal or lead."""
    body: JsonDict = {
        "owner_id": owner_id if owner_id is not None else int(call.user.crm_user_id),
        "subject": subject,
        "type": activity_type,
        **(extra or {}),
        "note": note,
        "done": True,
        "due_date": when.strftime("%Y-%m-%d"),
        "due_time": when.strftime("%H:%M"),
        "participants": [{"person_id": person_id, "primary": True}],
    }
    body.update(_association(additional_submission))
    if org_id is not None:
        body["org_id"] = org_id
    data = (await call.http.post_json("/api/v2/activities", body))["data"]
    return str(data["id"])


def _related_person_name(body: Any) -> str | None:
    """The person's name from a v1-style answer's top-level `related_objects`; API v2 no longer sends them."""
    related = body.get("related_objects") if isinstance(body, dict) else None
    people = related.get("person") if isinstance(related, dict) else None
    if not isinstance(people, dict):
        return None
    for person in people.values():
        if isinstance(person, dict) and person.get("name"):
            return str(person["name"])
    return None


def _activity_person(activity: JsonDict) -> int | None:
    """A v2 activity's person: `person_id`, else its primary participant, else its first participant."""
    person = _int_or_none(activity.get("person_id"))
    if person is not None:
        return person
    participants = [p for p in activity.get("participants") or [] if isinstance(p, dict)]
    participants.sort(key=lambda p: not p.get("primary"))
    return next((pid for p in participants if (pid := _int_or_none(p.get("person_id"))) is not None), None)


def _marker_line(marker: str) -> str:
    return f"<br><small>[{html.escape(marker)}]</small>"


def _message_tag(message: Message) -> str:
    """Written at the end of the note, beside the conversation's marker, for each message it holds: an append
    sent again after an unanswered one finds its message already there instead of adding it twice."""
    return f"<small>{message_needle(message)}</small>"


#: the marker is only needed until an unanswered create is adopted; the note the user edits never shows it
_MARKER_RE = re.compile(r"(?:<br>)?<small>\[rc-(?:call|sms|msg)-[^\]<]*\]</small>")


#: how many pages of the person's activities are searched for a marker (newest first)
MARKER_SEARCH_PAGES = 5


def _owner_id(call: CrmCall, log: CallLogCreate) -> int:
    """Pipedrive's `owner_id` of a call: the mapped CRM user of a server-side logged call, else the user."""
    owner = _int_or_none(log.owner.id) if log.owner is not None else None
    return owner if owner is not None else int(call.user.crm_user_id)


async def _activity_with_marker(
    call: CrmCall, person_id: str, marker: str, *, owner_id: int | None = None
) -> str | None:
    """The newest done activity of this user (or `owner_id`) on the person whose note holds `[marker]`."""
    person = _int_or_none(person_id)
    if person is None:
        return None
    needle = f"[{html.escape(marker)}]"
    params: JsonDict = {
        "person_id": person,
        "owner_id": owner_id if owner_id is not None else int(call.user.crm_user_id),
        "done": "true",
        "sort_by": "add_time",
        "sort_direction": "desc",
        "limit": 100,
    }
    for _page in range(MARKER_SEARCH_PAGES):
        body = await call.http.get_json("/api/v2/activities", params=params)
        for activity in body.get("data") or []:
            if needle in str(activity.get("note") or ""):
                return str(activity["id"])
        cursor = (body.get("additional_data") or {}).get("next_cursor")
        if not cursor:
            return None
        params["cursor"] = cursor
    return None


def _association(submission: JsonDict) -> JsonDict:
    """deal_id from the form's `deals`, else lead_id from `leads`: Pipedrive links an activity to one only."""
    deal_id = _int_or_none(submission.get("deals"))
    if deal_id is not None:
        return {"deal_id": deal_id}
    lead = submission.get("leads")
    if lead:
        return {"lead_id": str(lead)}
    return {}


def _first(values: JsonDict, *keys: str) -> Any:
    for key in keys:
        if values.get(key) not in (None, ""):
            return values[key]
    return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):  # v1 sometimes expands ids to {"value": id, ...}
        return _int_or_none(value.get("value"))
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _message_item(
    message: Message, contact: ContactRef, user_name: str, user: UserView, image_link: str | None
) -> str:
    """One `<li>` of the conversation: who, when (user's time), what."""
    when = parse_time(message.creation_time).astimezone(user_timezone(user))
    who = f"{contact.name} ({contact.phone_number})" if message.direction == "Inbound" else user_name
    text = html.escape(message.subject).replace("\n", "<br>")
    extra = f"<br>{html_link(image_link)}" if image_link else ""
    return f"<li>{html.escape(who)} {when:%I:%M %p}<br><b>{text}</b>{extra}</li>"


def _no_activity_type(label: str, setting: str) -> ReturnMessage:
    return ReturnMessage(
        f"No {label} activity type found in Pipedrive",
        "warning",
        5000,
        details=[
            {
                "title": "Details",
                "items": [
                    {
                        "id": "1",
                        "type": "text",
                        "text": f"Ask your admin to activate a {label} activity type in Pipedrive or to choose one in the "
                        f'App Connect admin setting "{setting}".',
                    }
                ],
            }
        ],
    )


async def _constant(value: str) -> str:
    return value

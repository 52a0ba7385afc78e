"""Redtail CRM: contacts are matched by phone; calls and SMS conversations are completed activities.

Redtail authenticates every call with the server operator's API key plus a per-user *user key*. The user key
is obtained once, at login, from the user's Redtail username and password (`GET /authentication` with
`Basic b64(apikey:username:password)`); the server stores it encrypted as the user's credential and the password
is dropped. Every later call sends `Authorization: Userkeyauth b64(apikey:userkey)`, Redtail's documented scheme.
Which request reads and sends what, and the evidence for each, is in docs/connectors/redtail.md.
"""

from __future__ import annotations

import asyncio
import base64
import html
import re
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

from appconnect.connectors.kit import (
    call_marker,
    call_seconds,
    call_subject,
    caller_number,
    conversation_marker,
    html_link,
    int_or_none,
    iso_utc,
    message_marker,
    message_needle,
    parse_time,
    unsearchable,
)
from appconnect.connectors.phone import digits_of, number_key, same_number, significant_number
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

DEFAULT_API_URL = "https://smf.crm3.redtailtechnology.com/api/public/v1"
#: the category a log gets when neither the form nor the user's setting names one (Redtail's stock "Client")
DEFAULT_CATEGORY = 2
#: Redtail's activity code for a phone call
CALL_ACTIVITY_CODE = 3
#: the phone type a number created from a call gets
NEW_PHONE_TYPE = 6
#: note type of a plain note
NOTE_TYPE = 1
#: pages of a contact's activities searched for a marker, and of search results read
MAX_PAGES = 10
#: seconds a process reuses a database's category list (config `categories_cache_seconds`; 0: every lookup)
DEFAULT_CATEGORIES_SECONDS = 300
#: databases whose categories a process keeps (least recently used forgotten first)
MAX_CACHED_DATABASES = 1_000

_AGENT_NOTE_RE = re.compile(r"<b>Agent notes</b><br>([\s\S]*?)<br><br><b>Call details</b>")
_MESSAGES_END = "</ul>------------<br>"
_TAG_RE = re.compile(r"<[^>]*>")
_COUNTER_RE = re.compile(r"Conversation\((\d+) messages\)")
#: the markers are only needed until an unanswered create is adopted; the text the user edits never shows them
_MARKER_RE = re.compile(r"(?:<br>)?<small>\[rc-(?:call|sms|msg)-[^\]<]*\]</small>")


class RedtailConnector(Connector):
    """Redtail's public v1 REST API; the API server is one per deployment (config `api_url`)."""

    platform: ClassVar[str] = "redtail"
    auth_type: ClassVar[AuthType] = "apiKey"
    log_format: ClassVar[str] = "text/html"
    manifest_path: ClassVar[Path | None] = Path(__file__).with_name("manifest.json")
    #: Redtail documents no rate limit (and sends no rate-limit headers): nothing is declared, so calls are not
    #: held back in advance; a 429's `Retry-After` is still waited out.
    rate_limits: ClassVar[tuple[LimitRule, ...]] = ()
    idempotent_message_append: ClassVar[bool] = True

    def __init__(self, config: ConnectorConfig | None = None) -> None:
        super().__init__(config)
        #: database -> (read at, categories): the reference reads them on every lookup; they change rarely
        self._categories: OrderedDict[str, tuple[float, list[JsonDict]]] = OrderedDict()

    # --- configuration -------------------------------------------------------------------------------------

    def _api_key(self) -> str:
        return self.config.get("api_key")

    def base_url(self, user: UserView) -> str:
        """The Redtail API server with its `/api/public/v1` path: the same for every user of this server."""
        return (self.config.get("api_url") or self.config.get("base_url") or DEFAULT_API_URL).rstrip("/")

    def rate_limit_key(self, user: UserView) -> str:
        """The Redtail database (one firm) the user belongs to."""
        database = user.platform_additional_info.get("databaseId")
        return f"database-{database}" if database is not None else f"user-{user.id}"

    def basic_auth(self, api_key: str) -> str:
        """`b64(apikey:userkey)`: the stored credential is the user key; `_api` sends it as Userkeyauth."""
        return _b64(f"{self._api_key()}:{api_key}")

    # --- auth ----------------------------------------------------------------------------------------------

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        """Trade the username and password for the user's user key; the password goes no further."""
        username = str(request.additional_info.get("username") or "").strip()
        password = str(request.additional_info.get("password") or "")
        if not self._api_key():
            return _login_failed("This server has no Redtail API key (REDTAIL_API_KEY). Ask your admin.")
        if not username or not password:
            return _login_failed("Enter your Redtail username and password.")
        header = "Basic " + _b64(f"{self._api_key()}:{username}:{password}")
        try:
            response = await request.http.request(
                "GET", "/authentication", headers={"Authorization": header}, allow_status=(401, 403)
            )
            if response.status_code in (401, 403):
                return _login_failed("Redtail did not accept this username and password.")
            body = response.json()
            # the reference reads `authenticated_user.user_key`; the API's published examples name the ids
            # `redtail_user_id` / `redtail_database_id` (docs/connectors/redtail.md)
            data = (
                body.get("authenticated_user") if isinstance(body.get("authenticated_user"), dict) else body
            )
            user_key = str(data["user_key"])
        except CrmHttpError as exc:
            status = f"Redtail answered {exc.status}." if exc.status else "Redtail did not answer in time."
            return _login_failed(status)
        except (KeyError, TypeError, ValueError, AttributeError):
            return _login_failed("Redtail's answer could not be read.")
        if not user_key:
            return _login_failed("Redtail's answer could not be read.")
        database = _first_present(data, "redtail_database_id", "database_id")
        user_id = _first_present(data, "redtail_user_id", "id")
        name = _name_of(data) or await self._display_name(request.http, user_key, user_id)
        # Usernames (and user ids) are unique only inside one Redtail database: the database names the tenant.
        # Without it the user is `<username>-redtail`, the reference's own id.
        crm_id = user_id if user_id is not None and database is not None else username
        user = PlatformUser(
            id=stored_user_id(self.platform, crm_id, database),
            name=name or username,
            platform_additional_info={"username": username, "userId": user_id, "databaseId": database},
            overriding_api_key=user_key,
            account_id=str(database) if database is not None else None,
        )
        return UserInfoResult(True, user, ReturnMessage("Connected to Redtail.", "success", 3000))

    async def _display_name(self, http: CrmHttp, user_key: str, user_id: Any) -> str:
        """The user's name from the database's user list (the reference's getUserList); "" when not there."""
        if user_id is None:
            return ""
        auth = {"Authorization": f"Userkeyauth {_b64(f'{self._api_key()}:{user_key}')}"}
        try:
            body = (await http.request("GET", "/lists/database_users", headers=auth)).json()
        except (CrmHttpError, ValueError):
            return ""
        users = body.get("database_users") if isinstance(body, dict) else None
        for entry in users if isinstance(users, list) else []:
            if isinstance(entry, dict) and str(entry.get("id")) == str(user_id):
                return _name_of(entry)
        return ""

    async def unauthorize(self, call: CrmCall) -> ReturnMessage | None:
        """Redtail has no revocation for a user key: the server forgets it."""
        return ReturnMessage("Logged out of Redtail", "success", 1000)

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        """Search by the national significant number (Redtail compares digits), then re-check every hit."""
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        phone = caller_number(lookup)
        api = _Api(call)
        found = await self._search(api, {"phone_number": significant_number(phone)})
        # the hits' phones (one call each only when the hit does not carry them) and the categories
        *phones, categories = await asyncio.gather(
            *(_phones_of(api, c) for c in found), self._categories_of(api)
        )
        matched = [c for c, held in zip(found, phones, strict=True) if _holds_number(held, phone)]
        contacts = [_contact(c, phone, categories) for c in matched]
        placeholder = placeholder_contact()
        placeholder.additional_info = {"category": categories}
        contacts.append(placeholder)
        return ContactMatches(successful=True, contacts=contacts)

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        term = name.strip()
        if len(term) < 2:
            return ContactMatches(successful=True, contacts=[])
        api = _Api(call)
        found = await self._search(api, {"name": term})
        categories = await self._categories_of(api)
        return ContactMatches(successful=True, contacts=[_contact(c, None, categories) for c in found])

    async def _categories_of(self, api: _Api) -> list[JsonDict]:
        """The database's active categories, reused for `categories_cache_seconds`."""
        try:
            keep = float(self.config.get("categories_cache_seconds") or DEFAULT_CATEGORIES_SECONDS)
        except ValueError:
            keep = DEFAULT_CATEGORIES_SECONDS
        key = self.rate_limit_key(api.user)
        cached = self._categories.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < keep:
            self._categories.move_to_end(key)
            return [dict(c) for c in cached[1]]
        categories = await _categories(api)
        self._categories[key] = (now, categories)
        self._categories.move_to_end(key)
        while len(self._categories) > MAX_CACHED_DATABASES:
            self._categories.popitem(last=False)
        return [dict(c) for c in categories]

    async def _search(self, api: _Api, params: JsonDict) -> list[JsonDict]:
        """Every page of `contacts/search_basic` (bounded), deduplicated by id; the hits' phones are asked for
        with the `include` header Redtail documents for its contact reads (ignored where not honoured)."""
        seen: dict[Any, JsonDict] = {}
        for page in range(1, MAX_PAGES + 1):
            body = await api.get("/contacts/search_basic", params={**params, "page": page}, include="phones")
            for contact in body.get("contacts") or []:
                if isinstance(contact, dict) and contact.get("id") is not None:
                    seen.setdefault(contact["id"], contact)
            if page >= _total_pages(body):
                break
        return list(seen.values())

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        """An individual with the caller's number; Redtail has one kind of contact here."""
        words = new.name.split()
        first, last = (" ".join(words[:-1]), words[-1]) if words else ("", "")
        key = number_key(new.phone_number)
        phone: JsonDict = {"phone_type": NEW_PHONE_TYPE, "number": significant_number(new.phone_number)}
        if key is not None:
            phone["country_code"] = key[0]
        body = {
            "type": "Crm::Contact::Individual",
            "first_name": first,
            "last_name": last,
            "phones": [phone],
        }
        data = (await _Api(call).send("POST", "/contacts", body))["contact"]
        contact = Contact(
            id=str(data["id"]),
            name=_name_of(data) or new.name,
            phone=new.phone_number,
            type="contact",
        )
        return CreatedContact(
            contact=contact, return_message=ReturnMessage("Contact created.", "success", 2000)
        )

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        """POST the activity (with the call's marker), add the agent's note, then mark it completed.

        Once the activity exists, a failure of a later step is reported as an unknown outcome: the server then
        asks :meth:`find_call_log`, which adopts the activity and finishes the missing steps, instead of
        creating a second activity.
        """
        contact_id = int_or_none(log.contact.id)
        if contact_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        record = log.call
        start = parse_time(record.start_time)
        end = start + timedelta(seconds=call_seconds(record.duration))
        subject = record.custom_subject or log.subject or call_subject(record.direction, log.contact.name)
        body: JsonDict = {
            "subject": subject,
            "description": _in_custom_zone(log.composed_log_details, record.start_time, call.user)
            + _marker_line(call_marker(log)),
            "start_date": iso_utc(start),
            "end_date": iso_utc(end),
            "activity_code_id": CALL_ACTIVITY_CODE,
            "category_id": _category(log.additional_submission, call.user),
            "repeats": "never",
            "linked_contacts": [{"contact_id": contact_id}],
        }
        owner = int_or_none(log.owner.id) if log.owner is not None else None
        if owner is not None:  # the mapped user of a server-side logged call attends it
            body["attendees"] = [{"type": "Crm::Activity::Attendee::User", "user_id": owner}]
        api = _Api(call)
        activity = (await api.send("POST", "/activities", body))["activity"]
        activity_id = str(activity["id"])
        try:
            await self._finish_call_log(api, activity_id, log, fresh=True, completed=False)
        except CrmHttpError as exc:
            raise _unknown_outcome(exc) from exc
        return LogResult(activity_id, ReturnMessage("Call logged", "success", 2000))

    async def _finish_call_log(
        self, api: _Api, activity_id: str, log: CallLogCreate, *, fresh: bool, completed: bool
    ) -> None:
        """The steps after the POST, each skipped when already done, so running them again is harmless."""
        if log.note.strip():
            note = _note_html(log.note)
            present = False
            if not fresh:
                notes = await api.get(f"/activities/{activity_id}/notes")
                present = any(_same_text(str(n.get("body") or ""), note) for n in notes.get("notes") or [])
            if not present:
                category = _category(log.additional_submission, api.user)
                await api.send(
                    "POST",
                    f"/activities/{activity_id}/notes",
                    {"category_id": category, "note_type": NOTE_TYPE, "body": note},
                )
        if not completed:
            await api.send("PUT", f"/activities/{activity_id}", {"completed": True}, idempotent=True)

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        """The contact's activity carrying this call's marker, finished if an earlier create stopped halfway."""
        api = _Api(call)
        activity = await _activity_with_marker(api, log.contact.id, call_marker(log))
        if activity is None:
            return None
        activity_id = str(activity["id"])
        await self._finish_call_log(
            api, activity_id, log, fresh=False, completed=bool(activity.get("completed"))
        )
        return activity_id

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        body: JsonDict = {
            "description": _in_custom_zone(update.composed_log_details, update.start_time, call.user)
        }
        if update.subject:
            body["subject"] = update.subject
        if update.start_time is not None:
            start = parse_time(update.start_time)
            body["start_date"] = iso_utc(start)
            body["end_date"] = iso_utc(start + timedelta(seconds=call_seconds(update.duration)))
        await _Api(call).send("PUT", f"/activities/{update.log.log_id}", body, idempotent=True)
        return CallLogUpdated(
            updated_note=update.composed_log_details,
            return_message=ReturnMessage("Call log updated.", "success", 2000),
        )

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        """The agent's own note is cut out of the composed HTML so the client can edit just that part."""
        activity = (await _Api(call).get(f"/activities/{ref.log_id}", include_contacts=True))["activity"]
        full_body = _MARKER_RE.sub("", str(activity.get("description") or ""))
        match = _AGENT_NOTE_RE.search(full_body)
        note = html.unescape(match.group(1).replace("<br>", "\n")) if match else ""
        linked = activity.get("linked_contacts") or []
        contact_name = _name_of(linked[0]) if linked and isinstance(linked[0], dict) else None
        info = CallLogInfo(
            subject=activity.get("subject"),
            note=note,
            full_body=full_body,
            contact_name=contact_name or None,
            dispositions={"category": activity.get("category_id")},
            full_log_response=activity,
        )
        return CallLogFetched(info=info)

    async def upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        category = int_or_none(update.dispositions.get("category"))
        if category is None:
            return LogResult(update.log.log_id)
        await _Api(call).send(
            "PUT", f"/activities/{update.log.log_id}", {"category_id": category}, idempotent=True
        )
        return LogResult(update.log.log_id)

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        """One completed activity per conversation and day; later messages are appended by update_message_log."""
        contact_id = int_or_none(log.contact.id)
        if contact_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        created = parse_time(log.shared.started_at if log.shared else log.message.creation_time)
        local = created.astimezone(_custom_zone(call.user) or UTC)
        contact = log.contact
        agent = _agent_name(call.user)
        people = ", ".join(html.escape(p) for p in (agent, contact.name, *log.correspondents))
        if log.shared is not None:
            subject, description = log.shared.subject, log.shared.body
        elif log.recording_link:
            subject = f"Voicemail from {contact.name} - {local:%Y-%m-%d}"
            description = f"<b>{html.escape(subject)}</b><br>Recording: {html_link(log.recording_link)}"
        elif log.fax_doc_link:
            subject = f"Fax from {contact.name} - {local:%Y-%m-%d}"
            description = f"<b>{html.escape(subject)}</b><br>Document: {html_link(log.fax_doc_link)}"
        else:
            subject = f"SMS conversation with {contact.name} - {local:%Y-%m-%d}"
            item = _message_item(log.message, contact, agent, log.image_link, _custom_zone(call.user))
            description = (
                f"<b>{html.escape(subject)}</b><br>"
                f"Participants: {people}<br>"
                "Conversation(1 messages)<br>"
                f"------------<br><ul>{item}{_MESSAGES_END}"
            )
        body: JsonDict = {
            "subject": subject,
            "description": description
            + _marker_line(message_marker(log))
            + ("" if log.shared else _message_tag(log.message)),
            "start_date": iso_utc(created),
            "end_date": iso_utc(created),
            "activity_code_id": CALL_ACTIVITY_CODE,
            "repeats": "never",
            "linked_contacts": [{"contact_id": contact_id}],
        }
        category = int_or_none(log.additional_submission.get("category"))
        if category is not None:
            body["category_id"] = category
        api = _Api(call)
        activity = (await api.send("POST", "/activities", body))["activity"]
        activity_id = str(activity["id"])
        try:
            await api.send("PUT", f"/activities/{activity_id}", {"completed": True}, idempotent=True)
        except CrmHttpError as exc:
            raise _unknown_outcome(exc) from exc
        return LogResult(activity_id, ReturnMessage("Message logged", "success", 2000))

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        api = _Api(call)
        activity = await _activity_with_marker(api, log.contact.id, message_marker(log))
        if activity is None:
            return None
        activity_id = str(activity["id"])
        if not activity.get("completed"):
            await api.send("PUT", f"/activities/{activity_id}", {"completed": True}, idempotent=True)
        return activity_id

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append the message to the day's activity and bump its counter; skipped when already there."""
        api = _Api(call)
        path = f"/activities/{update.log_id}"
        if update.shared is not None:
            # a shared SMS is re-sent whole: its description is replaced (the conversation marker kept)
            marker = _marker_line(conversation_marker(update.conversation_log_id))
            await api.send("PATCH", path, {"description": update.shared.body + marker}, idempotent=True)
            return ReturnMessage("Message log updated", "success", 2000)
        activity = (await api.get(path, include_contacts=True))["activity"]
        description = str(activity.get("description") or "")
        if message_needle(update.message) in description:
            return None
        item = _message_item(
            update.message, update.contact, _agent_name(call.user), update.image_link, _custom_zone(call.user)
        )
        if _MESSAGES_END in description:
            description = description.replace(_MESSAGES_END, f"{item}{_MESSAGES_END}", 1)
        else:
            description = f"{description}<ul>{item}</ul>"
        description = _COUNTER_RE.sub(
            lambda m: f"Conversation({int(m.group(1)) + 1} messages)", description, count=1
        )
        when = parse_time(update.message.creation_time)
        body = {"description": description + _message_tag(update.message), "end_date": iso_utc(when)}
        await api.send("PATCH", path, body, idempotent=True)
        return None

    # --- account -------------------------------------------------------------------------------------------

    async def setting_options(self, call: CrmCall) -> dict[str, list[JsonDict]]:
        """The default category picks among the database's active categories (`GET /lists/categories`), as the
        reference fills its `defaultCategory` options."""
        categories = await self._categories_of(_Api(call))
        return {"defaultCategory": [{"id": c["const"], "name": c["title"]} for c in categories]}

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        """The database's users (`GET /lists/database_users`, as the reference asks), named "First Last";
        Redtail gives no e-mail there."""
        body = await _Api(call).get("/lists/database_users")
        users = body.get("database_users") if isinstance(body, dict) else None
        return [
            CrmUser(
                id=str(u["id"]),
                name=" ".join(str(u.get(k) or "").strip() for k in ("first_name", "last_name")).strip(),
            )
            for u in users or []
            if isinstance(u, dict) and u.get("id") is not None
        ]


# ------------------------------------------------------------------------------------------------------------
# The Redtail session: every call carries Userkeyauth
# ------------------------------------------------------------------------------------------------------------


class _Api:
    """The user's CRM client with Redtail's `Userkeyauth` header instead of the server's default Basic."""

    def __init__(self, call: CrmCall) -> None:
        self.http: CrmHttp = call.http
        self.user = call.user
        credential = call.auth_header.split(" ", 1)[-1]
        self._auth = {"Authorization": f"Userkeyauth {credential}"}

    async def get(
        self,
        path: str,
        *,
        params: JsonDict | None = None,
        include_contacts: bool = False,
        include: str | None = None,
    ) -> Any:
        if include_contacts:
            include = "linked_contacts"
        headers = {**self._auth, "include": include} if include else self._auth
        return (await self.http.request("GET", path, params=params, headers=headers)).json()

    async def send(self, method: str, path: str, body: Any, *, idempotent: bool = False) -> Any:
        response = await self.http.request(method, path, json=body, headers=self._auth, idempotent=idempotent)
        return response.json()


async def _activity_with_marker(api: _Api, contact_id: str, marker: str) -> JsonDict | None:
    """The contact's activity whose description holds `[marker]` (newest pages first)."""
    contact = int_or_none(contact_id)
    if contact is None:
        return None
    needle = f"[{html.escape(marker)}]"
    path = f"/contacts/{contact}/activities"
    # Redtail documents no order for this list: the first page holds the newest when it is newest first, the
    # last page when oldest first, so the first page is read, then the others from the last one back.
    first = await api.get(path, params={"page": 1})
    found = _find_needle(first, needle)
    if found is not None:
        return found
    for page in range(min(_total_pages(first), MAX_PAGES), 1, -1):
        found = _find_needle(await api.get(path, params={"page": page}), needle)
        if found is not None:
            return found
    return None


def _find_needle(body: Any, needle: str) -> JsonDict | None:
    for activity in reversed(body.get("activities") or []):
        if isinstance(activity, dict) and needle in str(activity.get("description") or ""):
            return activity
    return None


async def _phones_of(api: _Api, contact: JsonDict) -> list[JsonDict]:
    """A search hit's phones: included in the hit when Redtail sends them, else read from the contact."""
    phones = contact.get("phones")
    if isinstance(phones, list):
        return [p for p in phones if isinstance(p, dict)]
    body = await api.get(f"/contacts/{contact['id']}/phones")
    return [p for p in body.get("phones") or [] if isinstance(p, dict)]


def _holds_number(phones: list[JsonDict], e164: str) -> bool:
    """Whether any stored phone is the caller's number: as typed (read in the caller's country), or as its
    digits behind the phone's own country code."""
    for phone in phones:
        number = str(phone.get("number") or "")
        if not number:
            continue
        if same_number(number, e164):
            return True
        code = phone.get("country_code")
        if code and not number.lstrip().startswith("+") and same_number(f"+{code}{digits_of(number)}", e164):
            return True
    return False


async def _categories(api: _Api) -> list[JsonDict]:
    body = await api.get("/lists/categories")
    return [
        {"const": c["id"], "title": str(c.get("name") or "")}
        for c in body.get("categories") or []
        if isinstance(c, dict) and not c.get("deleted") and c.get("id") is not None
    ]


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def _first_present(data: JsonDict, *keys: str) -> Any:
    """The first of the keys with a value (not None or empty)."""
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _login_failed(text: str) -> UserInfoResult:
    return UserInfoResult(
        successful=False,
        return_message=ReturnMessage(
            "Could not connect to Redtail",
            "warning",
            5000,
            details=[{"title": "Details", "items": [{"id": "1", "type": "text", "text": text}]}],
        ),
    )


def _unknown_outcome(exc: CrmHttpError) -> CrmHttpError:
    """The activity exists but a later step failed: the create is neither done nor undone."""
    return CrmHttpError(None, method=exc.method, url=exc.url, outcome_unknown=True, body=exc.body)


def _total_pages(body: Any) -> int:
    meta = body.get("meta") if isinstance(body, dict) else None
    try:
        return max(1, int((meta or {}).get("total_pages") or 1))
    except (TypeError, ValueError):
        return 1


def _name_of(record: JsonDict) -> str:
    parts = [str(record.get(k) or "").strip() for k in ("first_name", "middle_name", "last_name")]
    name = " ".join(p for p in parts if p)
    return name or str(record.get("full_name") or "").strip()


def _contact(record: JsonDict, phone: str | None, categories: list[JsonDict]) -> Contact:
    return Contact(
        id=str(record["id"]),
        name=_name_of(record),
        phone=phone,
        type="contact",
        title=record.get("job_title") or None,
        created_date=record.get("created_at"),
        most_recent_activity_date=record.get("updated_at"),
        additional_info={"category": categories},
    )


def _category(submission: JsonDict, user: UserView) -> int:
    """The form's category, else the user's default-category setting, else Redtail's stock one."""
    for value in (submission.get("category"), user.setting("defaultCategory")):
        chosen = int_or_none(value)
        if chosen is not None:
            return chosen
    return DEFAULT_CATEGORY


def _marker_line(marker: str) -> str:
    return f"<br><small>[{html.escape(marker)}]</small>"


def _message_tag(message: Message) -> str:
    """One per message the activity holds: an append sent again finds its message already there."""
    return f"<small>{message_needle(message)}</small>"


def _note_html(note: str) -> str:
    return html.escape(note.strip()).replace("\n", "<br>")


def _same_text(stored: str, sent: str) -> bool:
    """Whether a stored note is the one sent, whatever markup or spacing Redtail normalised."""
    return _plain(stored) == _plain(sent)


def _plain(text: str) -> str:
    return " ".join(html.unescape(_TAG_RE.sub(" ", text)).split())


def _agent_name(user: UserView) -> str:
    return str(user.platform_additional_info.get("username") or user.crm_user_id)


def _message_item(
    message: Message, contact: ContactRef, agent: str, image_link: str | None, zone: timezone | None = None
) -> str:
    """One `<li>` of the conversation: who, when (UTC, or the user's custom time zone), what; everything from
    outside is escaped."""
    when = parse_time(message.creation_time).astimezone(zone or UTC)
    who = f"{contact.name} ({contact.phone_number})" if message.direction == "Inbound" else agent
    text = html.escape(message.subject).replace("\n", "<br>")
    extra = f"<br>{html_link(image_link)}" if image_link else ""
    return f"<li>{html.escape(who)} {when:%H:%M} {_zone_label(zone)}<br><b>{text}</b>{extra}</li>"


#: the composed call log's date line (the server composes HTML for Redtail)
_DATE_LINE_RE = re.compile(r"(<li><b>Date/[Tt]ime</b>:\s*)[^<]+(</li>)")


def _custom_zone(user: UserView) -> timezone | None:
    """The user's `redtailCustomTimezone`: hours from UTC (`-5`, `5.5`, `5.75`) the times written into Redtail
    are shown in, as the reference's setting (Redtail tells no user's time zone); None when unset or unreadable."""
    raw = user.setting("redtailCustomTimezone")
    if raw is None or raw == "" or isinstance(raw, bool):
        return None
    try:
        hours = float(str(raw).strip())
    except ValueError:
        return None
    if not -14 <= hours <= 14:
        return None
    return timezone(timedelta(minutes=round(hours * 60)))


def _zone_label(zone: timezone | None) -> str:
    if zone is None or zone.utcoffset(None) == timedelta(0):
        return "UTC"
    minutes = int((zone.utcoffset(None) or timedelta(0)).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _in_custom_zone(composed: str, start_time: str | None, user: UserView) -> str:
    """The composed log with its Date/time line in the user's custom time zone (when set), as the reference
    rewrites it; anything else untouched."""
    zone = _custom_zone(user)
    if zone is None or not start_time or not _DATE_LINE_RE.search(composed):
        return composed
    local: datetime = parse_time(start_time).astimezone(zone)
    shown = f"{local:%Y-%m-%d %I:%M:%S %p} ({_zone_label(zone)})"
    return _DATE_LINE_RE.sub(lambda m: f"{m.group(1)}{shown}{m.group(2)}", composed, count=1)

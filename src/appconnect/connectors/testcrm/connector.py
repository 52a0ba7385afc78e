"""Connector for the embedded test CRM: the reference connector, exercised end to end over real HTTP."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

from appconnect.connectors.phone import any_same_number, significant_number
from appconnect.connectors.sdk import (
    CallLogCreate,
    CallLogFetched,
    CallLogInfo,
    CallLogRef,
    CallLogUpdate,
    CallLogUpdated,
    Connector,
    Contact,
    ContactLookup,
    ContactMatches,
    CreatedContact,
    CrmCall,
    CrmHttpError,
    CrmUser,
    DispositionUpdate,
    JsonDict,
    LimitRule,
    LimitScope,
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
)

# the server's text/plain composer puts the note first; it runs until the next "- Label:" line
_NOTE = re.compile(r"^- (?:Note|Agent notes): ([\s\S]*?)(?=\n- [A-Z][a-zA-Z\s/]*:|\n$|$)")
_COUNTER = re.compile(r"^Conversation\((\d+) messages?\)")
_OFFSET = re.compile(r"^([+-])(\d{1,2}):?(\d{2})$")


_MAX_DURATION_SECONDS = 10**9  # ~31 years: anything larger is not a call duration


def _as_int(value: Any) -> int | None:
    """Durations arrive as int or numeric string (or "pending"): only plausible numbers reach the CRM."""
    number: int | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value):
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 12:
        number = int(value.strip())
    return number if number is not None and 0 <= number <= _MAX_DURATION_SECONDS else None


def _contact_ref(contact_id: str) -> int | None:
    """Test-CRM contact ids are positive 64-bit integers; anything else cannot name one of its contacts."""
    text = contact_id.strip()
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _unknown_contact() -> LogResult:
    return LogResult(
        None, ReturnMessage("Contact not found: the test CRM's contact ids are numbers.", "warning", 5000)
    )


def _parse_time(value: str | None) -> datetime | None:
    """ISO 8601 (with `Z`) or epoch milliseconds, as RingCentral sends either."""
    if not value:
        return None
    text = value.strip()
    try:  # an epoch beyond year 9999 overflows: unreadable, like any other odd time
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    if not 1 < parsed.year < 9999:  # a day from the calendar's edge: any offset would overflow
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: str | None) -> str | None:
    """The CRM rejects non-ISO times, so normalize or drop instead of failing the whole log."""
    parsed = _parse_time(value)
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z") if parsed else None


def _user_tz(user: UserView) -> timezone:
    """The user's fixed offset (`-08:00`, or moment-style hours/minutes numbers); UTC when unknown."""
    raw = (user.timezone_offset or "").strip()
    match = _OFFSET.match(raw)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        number = int(raw)
    except ValueError:
        return UTC
    minutes = number * 60 if abs(number) <= 16 else number
    if abs(minutes) >= 24 * 60:
        return UTC
    return timezone(timedelta(minutes=minutes))


def _message_time(message: Message, tz: timezone) -> datetime:
    return (_parse_time(message.creation_time) or datetime.now(UTC)).astimezone(tz)


def _message_line(
    message: Message,
    tz: timezone,
    *,
    image_link: str | None = None,
    recording_link: str | None = None,
    fax_doc_link: str | None = None,
) -> str:
    sender = message.from_party.name or message.from_party.phone_number or "unknown"
    line = f"{message.direction} {sender} {_message_time(message, tz):%H:%M}: {message.subject}"
    for label, link in (("image", image_link), ("recording", recording_link), ("fax", fax_doc_link)):
        if link:
            line += f" [{label}: {link}]"
    return line


def _to_contact(data: JsonDict, phone: str | None) -> Contact:
    return Contact(
        id=str(data["id"]),
        name=str(data.get("name", "")),
        phone=phone,
        type=data.get("type"),
        company=data.get("company"),
        email=data.get("email"),
        created_date=data.get("created_at"),
        most_recent_activity_date=data.get("updated_at"),
        additional_info=None,
    )


def _has_number(contact: JsonDict, e164: str) -> bool:
    numbers = [p.get("number") for p in contact.get("phones") or [] if isinstance(p, dict)]
    return any_same_number([n for n in numbers if isinstance(n, str)], e164)


#: the test CRM's external_id holds at most this many characters
_EXTERNAL_ID_CHARS = 255


def _fitted(kind: str, marker: str) -> str:
    """The marker as is, or (a session id near its 255-character limit) its digest, so it fits the field."""
    if len(marker) <= _EXTERNAL_ID_CHARS:
        return marker
    return f"{kind}:sha256:{hashlib.sha256(marker.encode()).hexdigest()}"


def _call_marker(call: CrmCall, log: CallLogCreate) -> str:
    return _fitted("call", f"call:{log.call.session_id}:{call.user.id}")


def _message_marker(call: CrmCall, log: MessageLogCreate) -> str:
    return _fitted("msg", f"msg:{log.conversation_log_id}:{call.user.id}")


def _message_tag(message: Message) -> str:
    """Ends the message's line: an append sent again finds its message already there and skips it."""
    return f"[rc:{message.id}]"


async def _activity_with_external_id(call: CrmCall, external_id: str) -> str | None:
    found = await call.http.get_json("activities", params={"external_id": external_id})
    data = found.get("data") or []
    return str(data[0]["id"]) if data else None


class TestCrmConnector(Connector):
    """App Connect connector for the embedded test CRM (`/testcrm/api/v1`), authenticated by API key."""

    __test__ = False  # not a pytest test class

    platform: ClassVar[str] = "testcrm"
    auth_type = "apiKey"
    log_format = "text/plain"
    manifest_path = Path(__file__).parent / "manifest.json"
    #: the embedded CRM has no rate limit of its own
    rate_limits: ClassVar[tuple[LimitRule, ...]] = ()
    idempotent_message_append: ClassVar[bool] = True

    def rate_limit_key(self, user: UserView) -> str:
        """In the test CRM every API key is its own account (its own contacts), so each has its own budget."""
        return f"{user.hostname.lower()}/{user.crm_user_id}"

    def limit_scope_key(self, user: UserView, scope: LimitScope) -> str:
        """One account per API key and host: its token, user and company are the same thing here."""
        return f"account:{self.rate_limit_key(user)}"

    def manifest_entry(self) -> JsonDict:
        """The manifest's CRM URL follows where the embedded CRM really is (config `base_url`)."""
        entry = super().manifest_entry()
        base = self.config.get("base_url")
        if base:
            crm_url = base.removesuffix("/").removesuffix("/api/v1")
            entry["environment"] = {"type": "fixed", "url": crm_url}
            entry["contactPageUrl"] = f"{crm_url}/contacts/{{contactId}}"
        return entry

    # --- auth ----------------------------------------------------------------------------------------------

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        try:
            me = await request.http.get_json("me")
        except CrmHttpError as exc:
            if exc.status == 401:
                return UserInfoResult(
                    successful=False, return_message=ReturnMessage("Invalid API key.", "danger", 3000)
                )
            raise
        user = PlatformUser(
            id=f"{me['id']}-{self.platform}",
            name=str(me.get("name", "")),
            timezone_name=me.get("timezone_name"),
            timezone_offset=me.get("timezone_offset"),
            platform_additional_info={"email": me.get("email")},
        )
        return UserInfoResult(
            successful=True,
            user=user,
            return_message=ReturnMessage("Connected to Test CRM.", "success", 3000),
        )

    async def unauthorize(self, call: CrmCall) -> ReturnMessage | None:
        # an API key has nothing to revoke at the CRM; the server forgets it
        return ReturnMessage("Logged out of Test CRM", "success", 1000)

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        if lookup.is_extension:
            return ContactMatches(successful=False, contacts=[])
        phone = lookup.phone_number
        # the CRM keeps numbers as typed and its search matches digits loosely: search the national
        # significant number (contained in every spelling), then keep only contacts whose stored number
        # parses, in the caller's country, as the caller's number
        found = await call.http.get_json("contacts", params={"phone": significant_number(phone)})
        return ContactMatches(
            successful=True,
            contacts=[_to_contact(c, phone) for c in found.get("data", []) if _has_number(c, phone)],
        )

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        found = await call.http.get_json("contacts", params={"name": name})
        contacts = []
        for data in found.get("data", []):
            phones = data.get("phones") or []
            contacts.append(_to_contact(data, phones[0].get("number") if phones else None))
        return ContactMatches(successful=True, contacts=contacts)

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        contact_type = new.contact_type or "contact"
        created = await call.http.post_json(
            "contacts",
            {
                "name": new.name,
                "type": contact_type,
                "phones": [{"label": "Work", "number": new.phone_number}],
            },
        )
        contact = Contact(
            id=str(created["id"]),
            name=str(created["name"]),
            type=created.get("type", contact_type),
            phone=new.phone_number,
        )
        return CreatedContact(contact, ReturnMessage("Contact created.", "success", 2000))

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        contact_ref = _contact_ref(log.contact.id)
        if contact_ref is None:
            return _unknown_contact()
        record = log.call
        inbound = record.direction == "Inbound"
        who = log.contact.name or log.contact.phone_number or record.contact_party.phone_number or "unknown"
        subject = (
            log.subject
            or record.custom_subject
            or f"{record.direction} call {'from' if inbound else 'to'} {who}"
        )
        created = await call.http.post_json(
            "activities",
            {
                "contact_id": contact_ref,
                "kind": "call",
                "subject": subject,
                "body": log.composed_log_details,
                "direction": record.direction if record.direction in ("Inbound", "Outbound") else None,
                "duration_seconds": _as_int(record.duration),
                "started_at": _iso(record.start_time),
                # makes a retried create idempotent at the CRM: same session, same user -> same activity
                "external_id": _call_marker(call, log),
            },
        )
        return LogResult(str(created["id"]), ReturnMessage("Call logged", "success", 2000))

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        """The activity holding this call's idempotency key, written by an earlier create."""
        return await _activity_with_external_id(call, _call_marker(call, log))

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        activity = await call.http.get_json(f"activities/{ref.log_id}")
        body = str(activity.get("body") or "")
        match = _NOTE.match(body)
        info = CallLogInfo(
            subject=activity.get("subject"),
            note=match.group(1).strip() if match else "",
            full_body=body,
            full_log_response=activity,
            dispositions=activity.get("disposition"),
        )
        return CallLogFetched(info)

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        patch: JsonDict = {}
        if update.composed_log_details:
            patch["body"] = update.composed_log_details
        if update.subject:
            patch["subject"] = update.subject
        duration = _as_int(update.duration)
        if duration is not None:
            patch["duration_seconds"] = duration
        await call.http.patch_json(f"activities/{update.log.log_id}", patch)
        return CallLogUpdated(
            updated_note=update.note, return_message=ReturnMessage("Call log updated", "success", 2000)
        )

    async def upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        updated = await call.http.patch_json(
            f"activities/{update.log.log_id}", {"disposition": update.dispositions}
        )
        return LogResult(str(updated["id"]), ReturnMessage("Call disposition updated", "success", 2000))

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        contact_ref = _contact_ref(log.contact.id)
        if contact_ref is None:
            return _unknown_contact()
        tz = _user_tz(call.user)
        who = ", ".join([log.contact.name or log.contact.phone_number, *log.correspondents])
        if log.shared is not None:
            return await self._create_shared(call, log, contact_ref)
        line = _message_line(
            log.message,
            tz,
            image_link=log.image_link,
            recording_link=log.recording_link,
            fax_doc_link=log.fax_doc_link,
        )
        line = f"{line} {_message_tag(log.message)}"
        created = await call.http.post_json(
            "activities",
            {
                "contact_id": contact_ref,
                "kind": "message",
                "subject": f"SMS conversation with {who} - {_message_time(log.message, tz):%Y-%m-%d}",
                "body": f"Conversation(1 messages)\n{line}\n",
                "direction": log.message.direction
                if log.message.direction in ("Inbound", "Outbound")
                else None,
                "external_id": _message_marker(call, log),
            },
        )
        return LogResult(str(created["id"]), ReturnMessage("Message logged", "success", 2000))

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        return await _activity_with_external_id(call, _message_marker(call, log))

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append the message's line and bump the counter, unless an earlier append already wrote it."""
        if update.shared is not None:  # a shared SMS is re-sent whole: its body is replaced
            await call.http.patch_json(f"activities/{update.log_id}", {"body": update.shared.body})
            return ReturnMessage("Message log updated", "success", 2000)
        activity = await call.http.get_json(f"activities/{update.log_id}")
        body = str(activity.get("body") or "")
        tag = _message_tag(update.message)
        if f" {tag}\n" in body:
            return ReturnMessage("Message log updated", "success", 2000)
        line = _message_line(update.message, _user_tz(call.user), image_link=update.image_link)
        line = f"{line} {tag}"
        lines = [entry for entry in body.split("\n") if entry]
        header = _COUNTER.match(lines[0]) if lines else None
        messages = [*(lines[1:] if header else lines), line]
        count = int(header.group(1)) + 1 if header else len(messages)
        new_body = f"Conversation({count} messages)\n" + "".join(f"{entry}\n" for entry in messages)
        await call.http.patch_json(f"activities/{update.log_id}", {"body": new_body})
        return ReturnMessage("Message log updated", "success", 2000)

    async def _create_shared(self, call: CrmCall, log: MessageLogCreate, contact_ref: int) -> LogResult:
        """A shared SMS: the server's composed conversation, as one message activity."""
        assert log.shared is not None
        created = await call.http.post_json(
            "activities",
            {
                "contact_id": contact_ref,
                "kind": "message",
                "subject": log.shared.subject,
                "body": log.shared.body,
                "external_id": _message_marker(call, log),
            },
        )
        return LogResult(str(created["id"]), ReturnMessage("Message logged", "success", 2000))

    # --- account -------------------------------------------------------------------------------------------

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        """The test CRM's users (`GET /users`)."""
        body = await call.http.get_json("users")
        return [
            CrmUser(id=str(u["id"]), name=str(u.get("name") or ""), email=u.get("email") or None)
            for u in body.get("users") or []
            if isinstance(u, dict) and u.get("id") is not None
        ]

"""What most connectors need besides their CRM's own rules.

RingCentral sends times as ISO 8601 or epoch milliseconds; users carry a fixed UTC offset; a log a connector
writes carries markers (the call's session id, the conversation's id, each message's id) so that a create or an
append whose answer was lost can be found again instead of written twice. Each connector used to carry its own
copy of these; one copy here keeps them alike (a marker written by one release is found by the next).
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from appconnect.connectors.sdk import (
    CallLogCreate,
    ContactLookup,
    ContactMatches,
    CrmHttpError,
    Message,
    MessageLogCreate,
    ReturnMessage,
    UserView,
)

T = TypeVar("T")

_OFFSET = re.compile(r"([+-])?(\d{1,2}):?(\d{2})")
_UNSAFE_IN_MARKER = re.compile(r"[^A-Za-z0-9._:-]")
#: longest call a log records: a week (anything longer is a client's mistake)
MAX_CALL_SECONDS = 7 * 24 * 3600


def parse_time(value: Any) -> datetime:
    """A RingCentral timestamp (ISO 8601 or epoch milliseconds) in UTC; now when absent or unreadable."""
    parsed: datetime | None = None
    try:  # an epoch beyond year 9999 overflows: treat it like any unreadable time
        if isinstance(value, int | float) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(value / 1000, UTC)
        elif isinstance(value, str) and value.strip():
            text = value.strip()
            if text.isdigit():
                parsed = datetime.fromtimestamp(int(text) / 1000, UTC)
            else:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                parsed = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        parsed = None
    # a day from the calendar's edge: converting to the user's zone would overflow
    if parsed is None or not 1 < parsed.year < 9999:
        return datetime.now(UTC)
    return parsed


def iso_utc(moment: datetime) -> str:
    """`2026-12-01T20:15:00Z`: the form every CRM here accepts."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_timezone(user: UserView) -> timezone:
    """The user's fixed UTC offset (`+02:00`, `-0530`, or a number of hours or minutes); UTC when unknown."""
    raw = (user.timezone_offset or "").strip()
    match = _OFFSET.fullmatch(raw)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        minutes = int(raw)
    except ValueError:
        return UTC
    if abs(minutes) <= 14:  # hours, not minutes
        minutes *= 60
    return timezone(timedelta(minutes=minutes)) if abs(minutes) < 24 * 60 else UTC


def int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def call_seconds(duration: Any) -> int:
    """A call's duration in whole seconds, 0 to a week; 0 when unknown."""
    try:
        seconds = int(float(duration)) if duration is not None else 0
    except (TypeError, ValueError, OverflowError):
        return 0
    return max(0, min(seconds, MAX_CALL_SECONDS))


def call_subject(direction: str, name: str) -> str:
    return f"Inbound Call from {name}" if direction == "Inbound" else f"Outbound Call to {name}"


def html_link(url: str) -> str:
    safe = html.escape(url, quote=True)
    return f'<a href="{safe}">{safe}</a>'


# --- lookups -------------------------------------------------------------------------------------------------


def caller_number(lookup: ContactLookup) -> str:
    """The caller's E.164 number, with a `+` decoded as a space on its way through a query string put back."""
    phone = lookup.phone_number
    return "+" + phone[1:] if phone.startswith(" ") else phone


def unsearchable(lookup: ContactLookup) -> ContactMatches | None:
    """The answer to a lookup no CRM search serves (an internal extension, a number not in E.164), else None."""
    if lookup.is_extension:
        return ContactMatches(successful=False, contacts=[])
    if not caller_number(lookup).startswith("+"):
        message = ReturnMessage(
            "Logging against internal extension number is not supported.", "warning", 3000
        )
        return ContactMatches(successful=False, contacts=[], return_message=message)
    return None


# --- markers ---------------------------------------------------------------------------------------------------


def _marker_id(raw: str) -> str:
    """An id as it goes into a marker: only characters that survive every CRM's text and HTML handling."""
    return _UNSAFE_IN_MARKER.sub("_", raw)[:120]


def call_marker(log: CallLogCreate) -> str:
    """Written into a call's log so an unanswered create can be found again: the RingCentral session id."""
    return f"rc-call-{_marker_id(log.call.session_id)}"


def message_marker(log: MessageLogCreate) -> str:
    """Written into a conversation's log: the conversation log id (one log per conversation and day)."""
    return conversation_marker(log.conversation_log_id)


def conversation_marker(conversation_log_id: str) -> str:
    """`message_marker` from the conversation log id alone: a shared SMS's rewrite keeps it in the text."""
    return f"rc-sms-{_marker_id(conversation_log_id)}"


#: the opening of anything a server writes to find a record or a message again (`[rc-call-…]`, `[rc-sms-…]`,
#: `[rc-msg-…]`, the test CRM's `[rc:…]`), in any case and spacing
_MARKER_SHAPED = re.compile(r"\[(?=\s*rc\s*[-:])", re.IGNORECASE)


def defused(text: str) -> str:
    """User text (a message body, a name) with every marker-shaped bracket made a full-width one (U+FF3B): it
    reads the same, but no connector's tag check or marker search can take it for the server's own tag, so a
    customer's text can neither suppress a later message's append nor make a log be found as another's."""
    return _MARKER_SHAPED.sub("\uff3b", text)


def message_needle(message: Message) -> str:
    """Written beside each message a conversation's log holds: an append sent again finds it and skips it."""
    return f"[rc-msg-{_marker_id(message.id)}]"


# --- concurrency -----------------------------------------------------------------------------------------------


async def all_or_first_failure(works: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run CRM reads together; the first failure cancels the others (no stray requests) and is raised alone:
    a CRM failure first, else the first other error (an answer a read could not parse), never a group the
    server's error mapping would not recognise."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(work) for work in works]
    except* Exception as failures:
        found = failures.exceptions
        raise next((e for e in found if isinstance(e, CrmHttpError)), found[0]) from None
    return [task.result() for task in tasks]


#: the log date format when the user set none (`logDateFormat`), moment.js tokens as the reference
DEFAULT_DATE_FORMAT = "YYYY-MM-DD hh:mm:ss A"
_DATE_TOKEN_RE = re.compile(r"\[[^\]]*\]|YYYY|YY|MM|M|DD|D|HH|H|hh|h|mm|m|ss|s|A|a")


def format_date(moment: datetime, pattern: str) -> str:
    """Format with the moment.js tokens users put in `logDateFormat`; `[text]` and other text stay literal."""
    hour12 = moment.hour % 12 or 12

    def token(match: re.Match[str]) -> str:
        tok = match.group(0)
        if tok.startswith("["):
            return tok[1:-1]
        values: dict[str, str] = {
            "YYYY": f"{moment.year:04d}",
            "YY": f"{moment.year % 100:02d}",
            "MM": f"{moment.month:02d}",
            "M": str(moment.month),
            "DD": f"{moment.day:02d}",
            "D": str(moment.day),
            "HH": f"{moment.hour:02d}",
            "H": str(moment.hour),
            "hh": f"{hour12:02d}",
            "h": str(hour12),
            "mm": f"{moment.minute:02d}",
            "m": str(moment.minute),
            "ss": f"{moment.second:02d}",
            "s": str(moment.second),
            "A": "AM" if moment.hour < 12 else "PM",
            "a": "am" if moment.hour < 12 else "pm",
        }
        return values[tok]

    return _DATE_TOKEN_RE.sub(token, pattern)

"""Central call-log body composer (spec Appendix A).

Connectors that declare `text/plain`, `text/html` or `text/markdown` receive a ready-made log body instead
of formatting call details themselves. Composition is an upsert over the existing body: on update the CRM's
current body comes back in, every field replaces its own line when present and is appended otherwise, so
repeated updates (recording ready, disposition, AI note) never duplicate lines.

Deliberate differences from the original composer:

- values inserted into HTML are escaped (notes and names are user text), and newlines in HTML notes become
  `<br>`;
- a falsy user time-zone offset means UTC, not the server's local zone (meaningless for a shared server);
- an unparseable start time omits the date line instead of writing `Invalid date`;
- plain and markdown fields are matched as whole lines, so a replaced value never leaves half a line behind.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from appconnect.connectors.kit import DEFAULT_DATE_FORMAT, format_date
from appconnect.connectors.sdk import CallParty, CallRecord, ContactRef, RingSense

PLAIN = "text/plain"
HTML = "text/html"
MARKDOWN = "text/markdown"
FORMATS = frozenset({PLAIN, HTML, MARKDOWN})

PENDING = "(pending...)"

# Single-line fields, by the label plain text and markdown use. HTML spells some labels differently.
_SESSION = "Session Id"
_USER_NAME = "RingCentral user name"
_RC_NUMBER = "RingCentral number and extension"
_SUBJECT = "Summary"
_CONTACT = "Contact Number"
_DATE = "Date/Time"
_DURATION = "Duration"
_RESULT = "Result"
_RECORDING = "Call recording link"
_VOICEMAIL = "Voicemail recording link"
_RS_SCORE = "Call score"
_RS_LINK = "ACE recording link"
_HTML_LABELS = {_DATE: "Date/time"}
_HTML_CONTACT_LABELS = ("Caller phone number", "Recipient phone number")
_LINE_LABELS = (
    _SESSION,
    _USER_NAME,
    _RC_NUMBER,
    _SUBJECT,
    _CONTACT,
    _DATE,
    _DURATION,
    _RESULT,
    _RECORDING,
    _VOICEMAIL,
    _RS_SCORE,
    _RS_LINK,
)

# Multi-line blocks: label and the plain-text end marker.
_AI_NOTE = ("AI Note", "--- END")
_TRANSCRIPT = ("Transcript", "--- END")
_JOURNEY = ("Call journey", "--- JOURNEY END")
# RingSense (the reference's "ACE") blocks
_RS_TRANSCRIPT = ("ACE transcript", "--- END")
_RS_SUMMARY = ("ACE summary", "--- END")
_RS_BULLETS = ("ACE bulleted summary", "--- END")


def _plain_line_re(label: str) -> re.Pattern[str]:
    return re.compile(rf"^- {re.escape(label)}: (?P<value>[^\n]*)", re.MULTILINE)


def _markdown_line_re(label: str) -> re.Pattern[str]:
    return re.compile(rf"^\*\*{re.escape(label)}\*\*: (?P<value>[^\n]*)", re.MULTILINE)


def _html_line_re(label: str) -> re.Pattern[str]:
    # Same tolerance as the original: the <li> wrapper is optional and a link value may be an <a> element.
    return re.compile(
        rf"(?:<li>)?<b>{re.escape(label)}</b>:\s*(?P<value><a[^>]*>[^<]*</a>|[^<\n]+)(?:</li>|(?=[<\n])|\Z)",
        re.IGNORECASE,
    )


_LINE_RES: dict[tuple[str, str], re.Pattern[str]] = {
    **{(PLAIN, label): _plain_line_re(label) for label in _LINE_LABELS},
    **{(MARKDOWN, label): _markdown_line_re(label) for label in _LINE_LABELS},
    **{(HTML, label): _html_line_re(_HTML_LABELS.get(label, label)) for label in _LINE_LABELS},
    **{(HTML, label): _html_line_re(label) for label in _HTML_CONTACT_LABELS},
}


def _block_res(label: str, end: str) -> dict[tuple[str, str], re.Pattern[str]]:
    name = re.escape(label)
    return {
        (PLAIN, label): re.compile(rf"- {name}:[\s\S]*?{re.escape(end)}"),
        (HTML, label): re.compile(rf"<div><b>{name}</b><br>[\s\S]*?</div>"),
        # A markdown block runs to the next heading or field line, or to the end of the body.
        (MARKDOWN, label): re.compile(
            rf"^### {name}\n[\s\S]*?(?=\n(?:### |\*\*[^*\n]+\*\*: )|\n?\Z)", re.MULTILINE
        ),
    }


_BLOCK_RES: dict[tuple[str, str], re.Pattern[str]] = {
    **_block_res(*_AI_NOTE),
    **_block_res(*_TRANSCRIPT),
    **_block_res(*_JOURNEY),
    **_block_res(*_RS_TRANSCRIPT),
    **_block_res(*_RS_SUMMARY),
    **_block_res(*_RS_BULLETS),
}

_PLAIN_NOTE_RE = re.compile(r"- (?:Note|Agent notes): [\s\S]*?(?=\n- [A-Z][a-zA-Z\s/]*:|\n\Z|\Z)")
_HTML_NOTE_RE = re.compile(r"<b>Agent notes</b>[\s\S]+?Call details</b>")
_MARKDOWN_NOTE_RE = re.compile(r"## Agent notes\n[\s\S]*?\n## Call details")

_NEWLINES_RE = re.compile(r"\r\n|\r|\n")
_TRAILING_NEWLINES_RE = re.compile(r"[\r\n]+\Z")
_OFFSET_RE = re.compile(r"^\s*(?P<sign>[+-])?(?P<hours>\d{1,2}):?(?P<minutes>\d{2})\s*$")
_EPOCH_MS_RE = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")

_SETTING_DEFAULTS: dict[str, Any] = {
    "addCallLogNote": True,
    "addCallSessionId": False,
    "addRingCentralUserName": False,
    "addRingCentralNumber": False,
    "addCallLogSubject": True,
    "addCallLogContactNumber": False,
    "addCallLogDateTime": True,
    "logDateFormat": DEFAULT_DATE_FORMAT,
    "addCallLogDuration": True,
    "addCallLogResult": True,
    "addCallLogRecording": True,
    "addCallLogAiNote": True,
    "addCallLogTranscript": True,
    "addCallLogLegs": True,
    "addCallLogRingSenseRecordingTranscript": True,
    "addCallLogRingSenseRecordingSummary": True,
    "addCallLogRingSenseRecordingAIScore": True,
    "addCallLogRingSenseRecordingBulletedSummary": True,
    "addCallLogRingSenseRecordingLink": True,
}


# ------------------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------------------


def compose_call_log(
    *,
    log_format: str,
    existing_body: str = "",
    call: CallRecord | None = None,
    contact: ContactRef | None = None,
    note: str | None = None,
    subject: str | None = None,
    start_time: str | None = None,
    duration: int | str | None = None,
    result: str | None = None,
    recording_link: str | None = None,
    voicemail_link: str | None = None,
    ai_note: str | None = None,
    transcript: str | None = None,
    legs: list[dict[str, Any]] | None = None,
    user_settings: Mapping[str, Any] | None = None,
    timezone_offset: str | int | float | None = None,
    ring_sense: RingSense | None = None,
) -> str:
    """Upsert the call's details into `existing_body` in the given format; `""` for any other format.

    Explicit arguments win over the matching `call` fields (PATCH passes them separately). `contact` is given
    on create only, which is what limits the contact number to new logs.
    """
    if log_format not in FORMATS:
        return ""
    settings = user_settings or {}
    facts = _CallFacts(
        direction=call.direction if call is not None else "Outbound",
        subject=subject or (call.custom_subject if call is not None else None),
        start_time=start_time or (call.start_time if call is not None else None),
        duration=duration if duration is not None else (call.duration if call is not None else None),
        result=result or (call.result if call is not None else None),
        recording_link=recording_link or (call.recording_link if call is not None else None),
        legs=legs if legs is not None else (call.legs if call is not None else []),
    )
    body = _upsert_who(existing_body or "", log_format, settings, call, contact, note, facts)
    body = _upsert_when(body, log_format, settings, facts, timezone_offset)
    body = _upsert_media(body, log_format, settings, facts, voicemail_link, ai_note, transcript)
    return _upsert_ring_sense(body, log_format, settings, ring_sense) if ring_sense is not None else body


@dataclass(slots=True, frozen=True)
class _CallFacts:
    """The call's details with explicit arguments already preferred over the call record's fields."""

    direction: str
    subject: str | None
    start_time: str | None
    duration: int | str | None
    result: str | None
    recording_link: str | None
    legs: list[dict[str, Any]]


def _upsert_who(
    body: str,
    fmt: str,
    settings: Mapping[str, Any],
    call: CallRecord | None,
    contact: ContactRef | None,
    note: str | None,
    facts: _CallFacts,
) -> str:
    """The note and the lines naming the call and its parties: session, agent, numbers, subject."""
    if note and _setting(settings, "addCallLogNote"):
        body = _upsert_note(body, note, fmt)
    if call is not None and call.session_id and _setting(settings, "addCallSessionId"):
        body = _upsert_line(body, fmt, _SESSION, _text(fmt, call.session_id))
    if call is not None and _setting(settings, "addRingCentralUserName"):
        agent = _agent_party(call)
        if agent.name:
            body = _upsert_line(body, fmt, _USER_NAME, _text(fmt, agent.name), only_replace_pending=True)
    if call is not None and _setting(settings, "addRingCentralNumber"):
        agent = _agent_party(call)
        if agent.phone_number:
            number = f"{agent.phone_number} {agent.extension_number or ''}".rstrip()
            body = _upsert_line(body, fmt, _RC_NUMBER, _text(fmt, number))
    if facts.subject and _setting(settings, "addCallLogSubject"):
        body = _upsert_line(body, fmt, _SUBJECT, _text(fmt, facts.subject))
    if contact is not None and contact.phone_number and _setting(settings, "addCallLogContactNumber"):
        label = _CONTACT
        if fmt == HTML:
            label = _HTML_CONTACT_LABELS[0] if facts.direction == "Inbound" else _HTML_CONTACT_LABELS[1]
        body = _upsert_line(body, fmt, label, _text(fmt, contact.phone_number))
    return body


def _upsert_when(
    body: str,
    fmt: str,
    settings: Mapping[str, Any],
    facts: _CallFacts,
    timezone_offset: str | int | float | None,
) -> str:
    """The date and time in the user's offset and format, the duration and the result."""
    if facts.start_time and _setting(settings, "addCallLogDateTime"):
        moment = _parse_start_time(facts.start_time)
        if moment is not None:
            date_format = _setting(settings, "logDateFormat") or DEFAULT_DATE_FORMAT
            try:
                local = moment.astimezone(timezone(_parse_offset(timezone_offset)))
            except OverflowError:  # a time at the very edge of the calendar: show it as given
                local = moment
            body = _upsert_line(body, fmt, _DATE, _text(fmt, format_date(local, str(date_format))))
    if facts.duration is not None and _setting(settings, "addCallLogDuration"):
        body = _upsert_line(body, fmt, _DURATION, _text(fmt, format_duration(facts.duration)))
    if facts.result and _setting(settings, "addCallLogResult"):
        body = _upsert_line(body, fmt, _RESULT, _text(fmt, facts.result))
    return body


def _upsert_media(
    body: str,
    fmt: str,
    settings: Mapping[str, Any],
    facts: _CallFacts,
    voicemail_link: str | None,
    ai_note: str | None,
    transcript: str | None,
) -> str:
    """Links to the recording and voicemail, the AI note, the transcript and the call's journey."""
    if _setting(settings, "addCallLogRecording"):
        if facts.recording_link:
            body = _upsert_link(body, fmt, _RECORDING, facts.recording_link)
        if voicemail_link:
            body = _upsert_link(body, fmt, _VOICEMAIL, voicemail_link)
    if ai_note and _setting(settings, "addCallLogAiNote"):
        body = _upsert_block(body, fmt, _AI_NOTE, ai_note, html_gap=True, plain_gap=True)
    if transcript and _setting(settings, "addCallLogTranscript"):
        body = _upsert_block(body, fmt, _TRANSCRIPT, transcript, html_gap=True, plain_gap=True)
    if facts.legs and _setting(settings, "addCallLogLegs"):
        journey = call_journey(facts.legs)
        if journey:
            body = _upsert_block(body, fmt, _JOURNEY, journey, html_gap=False, plain_gap=False)
    return body


def _upsert_ring_sense(body: str, fmt: str, settings: Mapping[str, Any], rs: RingSense) -> str:
    """RingSense's transcript, summaries, score and link, each behind its own user setting (default on)."""
    if rs.transcript and _setting(settings, "addCallLogRingSenseRecordingTranscript"):
        body = _upsert_block(body, fmt, _RS_TRANSCRIPT, rs.transcript, html_gap=False, plain_gap=True)
    if rs.summary and _setting(settings, "addCallLogRingSenseRecordingSummary"):
        body = _upsert_block(body, fmt, _RS_SUMMARY, rs.summary, html_gap=False, plain_gap=True)
    if rs.ai_score and _setting(settings, "addCallLogRingSenseRecordingAIScore"):
        body = _upsert_line(body, fmt, _RS_SCORE, _text(fmt, rs.ai_score))
    if rs.bulleted_summary and _setting(settings, "addCallLogRingSenseRecordingBulletedSummary"):
        body = _upsert_block(body, fmt, _RS_BULLETS, rs.bulleted_summary, html_gap=False, plain_gap=True)
    if rs.link and _setting(settings, "addCallLogRingSenseRecordingLink"):
        body = _upsert_link(body, fmt, _RS_LINK, rs.link)
    return body


def format_duration(seconds: int | str | None) -> str:
    """`"1 hour, 2 minutes, 5 seconds"`; `"0 seconds"` for zero; non-numeric values (`pending`) pass as is."""
    if seconds is None:
        return ""
    if isinstance(seconds, bool):
        return str(seconds)
    try:
        total = int(float(seconds))
    except (TypeError, ValueError, OverflowError):
        return str(seconds)
    if total < 0:
        return str(seconds)
    if total == 0:
        return "0 seconds"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{n} {unit}{'s' if n > 1 else ''}"
        for n, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second"))
        if n
    ]
    return ", ".join(parts)


def call_journey(legs: list[dict[str, Any]]) -> str:
    """One line per leg: where the call started, then each transfer with its duration."""
    lines: list[str] = []
    for index, leg in enumerate(legs):
        if not isinstance(leg, Mapping):
            continue
        outbound = leg.get("direction") == "Outbound"
        if index == 0:
            if outbound:
                lines.append(f"Made call from {_party_text(leg.get('from'))}")
            else:
                lines.append(f"Received call at {_party_text(leg.get('to'))}")
            continue
        party = leg.get("from") if outbound and leg.get("legType") != "PstnToSip" else leg.get("to")
        leg_duration = leg.get("duration")
        plural = "s" if isinstance(leg_duration, int | float) and leg_duration > 1 else ""
        lines.append(f"Transferred to {_party_text(party)}, duration: {leg_duration} second{plural}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# Upserts
# ------------------------------------------------------------------------------------------------------------


def _upsert_note(body: str, note: str, fmt: str) -> str:
    if fmt == HTML:
        text = _NEWLINES_RE.sub("<br>", html.escape(note, quote=False))
        block = f"<b>Agent notes</b><br>{text}<br><br><b>Call details</b>"
        match = _HTML_NOTE_RE.search(body)
        return _splice(body, match, block) if match else f"{block}<br>{body}"
    if fmt == MARKDOWN:
        match = _MARKDOWN_NOTE_RE.search(body)
        if match:
            return _splice(body, match, f"## Agent notes\n{note}\n\n## Call details")
        if body.startswith("## Call details"):
            return f"## Agent notes\n{note}\n\n{body}"
        return f"## Agent notes\n{note}\n\n## Call details\n{body}"
    match = _PLAIN_NOTE_RE.search(body)
    return _splice(body, match, f"- Note: {note}") if match else f"- Note: {note}\n{body}"


def _upsert_line(body: str, fmt: str, label: str, value: str, *, only_replace_pending: bool = False) -> str:
    """Replace the field's first occurrence, or append it. `value` is already escaped for HTML."""
    pattern = _LINE_RES[fmt, label]
    match = pattern.search(body)
    if match is not None:
        if only_replace_pending and match.group("value").strip() != PENDING:
            return body
        return _splice(body, match, _render_line(fmt, label, value, standalone=False))
    return _append_line(body, fmt, _render_line(fmt, label, value, standalone=True))


def _upsert_link(body: str, fmt: str, label: str, link: str) -> str:
    """A recording link; HTML shows an `open` anchor, or `(pending...)` until the link is an URL."""
    if fmt != HTML:
        return _upsert_line(body, fmt, label, link)
    value = (
        f'<a target="_blank" href="{html.escape(link, quote=True)}">open</a>'
        if link.startswith("http")
        else PENDING
    )
    match = _LINE_RES[HTML, label].search(body)
    line = _render_line(HTML, label, value, standalone=True)
    if match is not None:
        return _splice(body, match, line)
    # A body that wraps its fields in a list gets the link inside the list.
    closing = body.find("</ul>")
    if closing == -1:
        return body + line
    return body[:closing] + line + body[closing:]


def _upsert_block(
    body: str, fmt: str, block: tuple[str, str], text: str, *, html_gap: bool, plain_gap: bool
) -> str:
    label, end = block
    content = _TRAILING_NEWLINES_RE.sub("", text)
    match = _BLOCK_RES[fmt, label].search(body)
    if fmt == HTML:
        content = _NEWLINES_RE.sub("<br>", html.escape(content, quote=False))
        rendered = f"<div><b>{label}</b><br>{content}</div>"
        if match is not None:
            return _splice(body, match, rendered)
        return body + rendered + ("<br>" if html_gap else "")
    if fmt == MARKDOWN:
        rendered = f"### {label}\n{content}"
        if match is not None:
            return _splice(body, match, rendered)
        return _append_line(body, fmt, rendered + "\n")
    rendered = f"- {label}:\n{content}\n{end}"
    if match is not None:
        return _splice(body, match, rendered)
    return body + ("\n" if plain_gap else "") + rendered + "\n"


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------


def _setting(settings: Mapping[str, Any], key: str) -> Any:
    """`userSettings.<key>.value ?? default`."""
    entry = settings.get(key)
    if isinstance(entry, Mapping):
        value = entry.get("value")
        if value is not None:
            return value
    return _SETTING_DEFAULTS.get(key)


def _text(fmt: str, value: str) -> str:
    return html.escape(value, quote=False) if fmt == HTML else value


def _render_line(fmt: str, label: str, value: str, *, standalone: bool) -> str:
    """A field line. Plain and markdown lines get a newline only when appended (a replace keeps its own)."""
    if fmt == HTML:
        return f"<li><b>{_HTML_LABELS.get(label, label)}</b>: {value}</li>"
    line = f"**{label}**: {value}" if fmt == MARKDOWN else f"- {label}: {value}"
    return line + "\n" if standalone else line


def _append_line(body: str, fmt: str, line: str) -> str:
    if fmt != HTML and body and not body.endswith("\n"):
        return f"{body}\n{line}"
    return body + line


def _splice(body: str, match: re.Match[str], replacement: str) -> str:
    """Replace one match literally (`re.sub` would interpret backslashes in user text)."""
    return body[: match.start()] + replacement + body[match.end() :]


def _agent_party(call: CallRecord) -> CallParty:
    """The RingCentral user's side of the call."""
    return call.to_party if call.direction == "Inbound" else call.from_party


def _party_text(party: Any) -> str:
    """`Name, +15551234567, ext 101` with the parts present."""
    if not isinstance(party, Mapping):
        return ""
    parts = [str(party["name"])] if party.get("name") else []
    if party.get("phoneNumber"):
        parts.append(str(party["phoneNumber"]))
    if party.get("extensionNumber"):
        parts.append(f"ext {party['extensionNumber']}")
    return ", ".join(parts)


def _parse_start_time(value: str | int | float) -> datetime | None:
    """An ISO-8601 string or epoch milliseconds; a time without an offset is taken as UTC."""
    try:
        if isinstance(value, int | float) or _EPOCH_MS_RE.match(value):
            return datetime.fromtimestamp(float(value) / 1000, tz=UTC)
        parsed = datetime.fromisoformat(value.strip())
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_offset(offset: str | int | float | None) -> timedelta:
    """moment's `utcOffset` input: `'+05:30'`, or a number that is hours when |n| <= 16 and minutes otherwise.

    A falsy or unreadable offset means UTC: the server's own zone says nothing about the user.
    """
    if not offset:
        return timedelta(0)
    if isinstance(offset, str):
        match = _OFFSET_RE.match(offset) if ":" in offset else None
        if match is not None:
            minutes = int(match["hours"]) * 60 + int(match["minutes"])
            return timedelta(minutes=-minutes if match["sign"] == "-" else minutes)
        try:
            number = float(offset)
        except ValueError:
            return timedelta(0)
    else:
        number = float(offset)
    if not math.isfinite(number):
        return timedelta(0)
    minutes_total = round(number * 60) if abs(number) <= 16 else round(number)
    # datetime.timezone accepts strictly less than a day.
    if abs(minutes_total) >= 24 * 60:
        return timedelta(0)
    return timedelta(minutes=minutes_total)


# ---------------------------------------------------------------------------------------------------------------
# Shared SMS: a shared inbox's whole conversation as one log
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SharedEntry:
    at: datetime
    kind: str  # "message", "note" or "assignment"
    who: str
    text: str


def compose_shared_sms(
    fmt: str,
    conversation: Mapping[str, Any],
    contact_name: str,
    timezone_offset: str | int | float | None,
) -> tuple[str, str]:
    """The subject and body of a shared-inbox conversation's log, in the connector's format.

    A shared conversation belongs to a call queue or to a colleague (`owner`) and is answered by whichever
    agents take it; the client re-sends it whole, with its `entities` (messages, internal notes, assignments),
    each time it is logged, so the body is composed afresh and replaces the previous one. It names the customer,
    every agent who wrote, noted or was assigned, the receiving queue or owner, then the entries newest first.
    """
    offset = timezone(_parse_offset(timezone_offset))
    entities = [e for e in conversation.get("entities") or [] if isinstance(e, Mapping)]
    entries = sorted(
        (entry for entry in (_shared_entry(e, contact_name) for e in entities) if entry is not None),
        key=lambda entry: entry.at,
        reverse=True,
    )
    agents: list[str] = []
    for entity in entities:
        for role in ("author", "from", "initiator", "assignee"):
            party = entity.get(role)
            name = party.get("name") if isinstance(party, Mapping) else None
            if isinstance(name, str) and name and name not in agents:
                agents.append(name)
    started = _moment(conversation.get("creationTime")) or (entries[-1].at if entries else datetime.now(UTC))
    modified = [
        t
        for t in (_moment(m.get("lastModifiedTime")) for m in conversation.get("messages") or [])
        if t is not None
    ]
    ended = max(modified, default=None) or (entries[0].at if entries else started)
    raw_owner = conversation.get("owner")
    owner: Mapping[str, Any] = raw_owner if isinstance(raw_owner, Mapping) else {}
    owner_name = str(owner.get("name") or "")
    is_queue = owner.get("extensionType") == "Department" or "queue" in owner_name.lower()
    messages = sum(1 for e in entries if e.kind == "message")
    notes = sum(1 for e in entries if e.kind == "note")
    counts = [
        f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((messages, "message"), (notes, "note")) if n
    ]
    return _shared_subject(fmt, contact_name), _shared_body(
        fmt,
        started=started.astimezone(offset),
        ended=ended.astimezone(offset),
        contact_name=contact_name,
        agents=agents,
        owner=(("Receiving call queue" if is_queue else "Owner"), owner_name) if owner_name else None,
        count=", ".join(counts) or "0 messages",
        entries=[(e.kind, e.who, f"{e.at.astimezone(offset):%Y-%m-%d %I:%M %p}", e.text) for e in entries],
    )


def _moment(value: Any) -> datetime | None:
    """A client's timestamp, or None when absent, unreadable or at the calendar's edge (no zone shift fits)."""
    if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
        moment = _parse_start_time(value)
        if moment is not None and 1 < moment.year < 9999:
            return moment
    return None


def _shared_entry(entity: Mapping[str, Any], contact_name: str) -> _SharedEntry | None:
    at = _moment(entity.get("creationTime"))
    if at is None:
        return None

    def name_of(*roles: str) -> str:
        for role in roles:
            party = entity.get(role)
            if isinstance(party, Mapping) and isinstance(party.get("name"), str) and party["name"]:
                return str(party["name"])
        return "Unknown"

    kind = entity.get("recordType")
    if kind == "AliveMessage":
        who = contact_name if entity.get("direction") == "Inbound" else name_of("author", "from")
        return _SharedEntry(at, "message", who, str(entity.get("text") or entity.get("subject") or ""))
    if kind == "AliveNote":
        return _SharedEntry(
            at, "note", name_of("author", "initiator"), str(entity.get("text") or entity.get("body") or "")
        )
    if kind == "ThreadAssignedHint":
        return _SharedEntry(at, "assignment", name_of("assignee"), "")
    return None


def _html_text(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _shared_subject(fmt: str, contact_name: str) -> str:
    subject = f"SMS conversation with {contact_name}"
    return f"**{subject}**" if fmt == MARKDOWN else subject


def _shared_body(
    fmt: str,
    *,
    started: datetime,
    ended: datetime,
    contact_name: str,
    agents: list[str],
    owner: tuple[str, str] | None,
    count: str,
    entries: list[tuple[str, str, str, str]],
) -> str:
    span = ended - started
    hours = int(span.total_seconds() // 3600)
    summary = [
        f"Started: {started:%A, %B %d, %Y} at {started:%I:%M %p}",
        f"Ended: {ended:%A, %B %d, %Y} at {ended:%I:%M %p}",
        f"Duration: {hours // 24} d {hours % 24} h",
    ]
    people = [f"{contact_name} (customer)", *agents]
    if fmt == HTML:
        esc = html.escape
        lines = [
            "<div><b>Conversation summary</b><br>" + "".join(f"{esc(s)}<br>" for s in summary) + "</div><br>",
            "<div><b>Participants</b><ul>" + "".join(f"<li>{esc(p)}</li>" for p in people) + "</ul></div>",
        ]
        if owner:
            lines.append(f"<div>{owner[0]}: <b>{esc(owner[1])}</b></div><br>")
        lines.append(f"<div><b>Conversation ({count})</b></div><div>BEGIN</div><hr>")
        for kind, who, when, text in entries:
            if kind == "message":
                lines.append(f"<p><b>{esc(who)}</b> said on {when}:<br>{_html_text(text)}</p>")
            elif kind == "note":
                lines.append(f"<p><b>{esc(who)}</b> left a note on {when}:<br>{_html_text(text)}</p>")
            else:
                lines.append(f"<p><i>Conversation assigned to <b>{esc(who)}</b></i></p>")
        lines.append("<hr><div>END</div>")
        return "".join(lines)
    markdown = fmt == MARKDOWN
    out = ["## Conversation summary" if markdown else "Conversation summary", *summary, ""]
    out += ["### Participants" if markdown else "Participants", *(f"* {p}" for p in people), ""]
    if owner:
        out += [f"{owner[0]}: **{owner[1]}**" if markdown else f"{owner[0]}: {owner[1]}", ""]
    out += [f"### Conversation ({count})" if markdown else f"Conversation ({count})", "BEGIN"]
    out.append("---" if markdown else "------------")
    for kind, who, when, text in entries:
        name = f"**{who}**" if markdown else who
        if kind == "message":
            out += [f"{name} said on {when}:", text, ""]
        elif kind == "note":
            out += [f"{name} left a note on {when}:", text, ""]
        else:
            out += [f"Conversation assigned to {name}", ""]
    out += ["---" if markdown else "------------", "END"]
    return "\n".join(out)

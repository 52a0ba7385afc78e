"""Request-body checks of the test CRM: a real CRM rejects bad input, so connectors are tested against it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: what people type into a phone field: digits, punctuation, `+`, and extension words (`x`, `ext.`, `tel:`)
_PHONE_TEXT = re.compile(r"^[0-9A-Za-z+().\-/ #*,;=:]+$")
#: fewer digits cannot be a phone number; more would not fit the indexed digits column
PHONE_DIGITS = (4, 20)

CONTACT_TYPES = ("contact", "lead")
ACTIVITY_KINDS = ("call", "message")
DIRECTIONS = ("Inbound", "Outbound")


class ValidationFailed(Exception):
    """A 400 answer: `{"error": message, "field": field}`."""

    def __init__(self, message: str, field_name: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.field_name = field_name

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field_name}


def digits_of(number: str) -> str:
    """The ASCII digits of a phone number: what lookups compare, so formatting never hides a match."""
    return "".join(ch for ch in number if "0" <= ch <= "9")


def is_phone_text(number: str) -> bool:
    """A number as a person would type it, in any format: `(415) 555-0100`, `020 7946 0018 x12`, E.164.

    Like a real CRM, the test CRM keeps the text as typed; connectors must find it whatever the format.
    """
    low, high = PHONE_DIGITS
    return bool(_PHONE_TEXT.match(number)) and low <= len(digits_of(number)) <= high


#: Ids and counts are 32-bit columns on PostgreSQL: a larger number cannot name a row (404) or be stored (400).
MAX_INT = 2**31 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _opt_str(data: dict[str, Any], key: str, *, max_len: int = 500) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"{key} must be a string", key)
    if len(value) > max_len:
        raise ValidationFailed(f"{key} is too long", key)
    return value


def _required_str(data: dict[str, Any], key: str, *, max_len: int = 500) -> str:
    value = _opt_str(data, key, max_len=max_len)
    if value is None or not value.strip():
        raise ValidationFailed(f"{key} is required", key)
    return value.strip()


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= MAX_INT:
        raise ValidationFailed(f"{key} must be an integer between 0 and {MAX_INT}", key)
    return int(value)


def _opt_number(data: dict[str, Any], key: str, *, maximum: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= maximum:
        raise ValidationFailed(f"{key} must be a number between 0 and {maximum:g}", key)
    return float(value)


def _opt_iso(data: dict[str, Any], key: str) -> str | None:
    value = _opt_str(data, key, max_len=40)
    if value is None:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{key} must be an ISO 8601 date-time", key) from None
    return value


def _opt_choice(data: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if value not in choices:
        raise ValidationFailed(f"{key} must be one of {', '.join(choices)}", key)
    return str(value)


def _opt_object(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationFailed(f"{key} must be an object", key)
    return value


def require_object(data: Any) -> dict[str, Any]:
    """The body must be a JSON object; anything else is a client bug worth a clear 400."""
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object", "body")
    return data


@dataclass(slots=True)
class PhoneInput:
    number: str
    label: str | None


@dataclass(slots=True)
class ContactInput:
    name: str
    type: str
    phones: list[PhoneInput] = field(default_factory=list)
    email: str | None = None
    company: str | None = None


def parse_contact(data: dict[str, Any]) -> ContactInput:
    """Validate `POST /contacts`; unknown fields are ignored."""
    name = _required_str(data, "name", max_len=300)
    contact_type = data.get("type")
    if contact_type not in CONTACT_TYPES:
        raise ValidationFailed("type must be contact or lead", "type")
    raw_phones = data.get("phones", [])
    if not isinstance(raw_phones, list):
        raise ValidationFailed("phones must be a list", "phones")
    phones: list[PhoneInput] = []
    for index, raw in enumerate(raw_phones):
        where = f"phones[{index}]"
        if not isinstance(raw, dict):
            raise ValidationFailed("each phone must be an object", where)
        number = raw.get("number")
        if not isinstance(number, str) or len(number) > 40 or not is_phone_text(number.strip()):
            raise ValidationFailed(
                "number must be a phone number, e.g. +14155550100 or (415) 555-0100", f"{where}.number"
            )
        label = raw.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > 60):
            raise ValidationFailed("label must be a short string", f"{where}.label")
        phones.append(PhoneInput(number=number.strip(), label=label))
    return ContactInput(
        name=name,
        type=str(contact_type),
        phones=phones,
        email=_opt_str(data, "email", max_len=320),
        company=_opt_str(data, "company", max_len=300),
    )


@dataclass(slots=True)
class ActivityInput:
    contact_id: int
    kind: str
    subject: str
    body: str
    direction: str | None
    duration_seconds: int | None
    started_at: str | None
    disposition: dict[str, Any] | None
    external_id: str | None


def parse_activity(data: dict[str, Any]) -> ActivityInput:
    """Validate `POST /activities` (the contact's existence is checked in the write transaction)."""
    contact_id = data.get("contact_id")
    if not isinstance(contact_id, int) or isinstance(contact_id, bool) or not 0 <= contact_id <= MAX_INT:
        raise ValidationFailed(f"contact_id must be an integer between 0 and {MAX_INT}", "contact_id")
    kind = _opt_choice(data, "kind", ACTIVITY_KINDS)
    if kind is None:
        raise ValidationFailed("kind must be one of call, message", "kind")
    external_id = _opt_str(data, "external_id", max_len=255)
    if external_id is not None and not external_id:
        raise ValidationFailed("external_id must not be empty", "external_id")
    return ActivityInput(
        contact_id=contact_id,
        kind=kind,
        subject=_required_str(data, "subject"),
        body=_opt_str(data, "body", max_len=200_000) or "",
        direction=_opt_choice(data, "direction", DIRECTIONS),
        duration_seconds=_opt_int(data, "duration_seconds"),
        started_at=_opt_iso(data, "started_at"),
        disposition=_opt_object(data, "disposition"),
        external_id=external_id,
    )


def parse_activity_patch(data: dict[str, Any]) -> dict[str, Any]:
    """Validate `PATCH /activities/{id}`: only the fields present change."""
    changes: dict[str, Any] = {}
    if "subject" in data:
        changes["subject"] = _required_str(data, "subject")
    if "body" in data:
        changes["body"] = _opt_str(data, "body", max_len=200_000) or ""
    if "duration_seconds" in data:
        changes["duration_seconds"] = _opt_int(data, "duration_seconds")
    if "disposition" in data:
        changes["disposition"] = _opt_object(data, "disposition")
    return changes


@dataclass(slots=True)
class UserInput:
    name: str
    email: str | None
    timezone_name: str
    timezone_offset: str


def parse_user(data: dict[str, Any]) -> UserInput:
    """Validate `POST /api-keys`."""
    return UserInput(
        name=_required_str(data, "name", max_len=200),
        email=_opt_str(data, "email", max_len=320),
        timezone_name=_opt_str(data, "timezone_name", max_len=64) or "America/Los_Angeles",
        timezone_offset=_opt_str(data, "timezone_offset", max_len=8) or "-08:00",
    )


@dataclass(slots=True)
class FaultInput:
    status: int | None
    retry_after: float | None
    delay_seconds: float | None
    times: int
    method: str | None
    path_prefix: str | None
    after_work: bool = False


def parse_fault(data: dict[str, Any]) -> FaultInput:
    """Validate `POST /api/_faults`: a rule needs a status to answer, a delay, or both."""
    status = data.get("status")
    if status is not None and (not _is_int(status) or not 400 <= status <= 599):
        raise ValidationFailed("status must be an HTTP error status (400-599)", "status")
    delay = _opt_number(data, "delay_seconds", maximum=120)
    if status is None and delay is None:
        raise ValidationFailed("a fault needs status or delay_seconds", "status")
    times = data.get("times", 1)
    if not _is_int(times) or not 1 <= times <= MAX_INT:
        raise ValidationFailed("times must be a positive integer", "times")
    method = _opt_str(data, "method", max_len=10)
    path_prefix = _opt_str(data, "path_prefix", max_len=200)
    if path_prefix is not None and not path_prefix.startswith("/"):
        raise ValidationFailed("path_prefix must start with /", "path_prefix")
    when = data.get("when", "before")
    if when not in ("before", "after"):
        raise ValidationFailed("when must be before or after (the work)", "when")
    return FaultInput(
        status=status,
        retry_after=_opt_number(data, "retry_after", maximum=86_400),
        delay_seconds=delay,
        times=times,
        method=method.upper() if method else None,
        path_prefix=path_prefix,
        after_work=when == "after",
    )

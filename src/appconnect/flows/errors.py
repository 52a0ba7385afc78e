"""One table from a CRM failure to the message the client shows (the contract's `handleApiError`)."""

from __future__ import annotations

import re
from typing import Any

from appconnect.connectors.sdk import CrmAnswerError, CrmHttpError, JsonDict, ReturnMessage
from appconnect.security.redact import redact

_OPERATION_MESSAGES: dict[str, tuple[str, str]] = {
    "createCallLog": (
        "Error creating call log",
        "Please check if your account has permission to CREATE logs.",
    ),
    "updateCallLog": (
        "Error updating call log",
        "Please check if the log entity still exists on {platform} and "
        "your account has permission to EDIT logs.",
    ),
    "getCallLog": (
        "Error getting call log",
        "Please check if the log entity still exists on {platform} and "
        "your account has permission to READ logs.",
    ),
    "createMessageLog": (
        "Error creating message log",
        "Please check if your account has permission to CREATE logs.",
    ),
    "updateMessageLog": (
        "Error updating message log",
        "Please check if the log entity still exists on "
        "{platform} and your account has permission to EDIT logs.",
    ),
    "findContact": ("Error finding contact", "Please check if your account has permission to GET contacts."),
    "createContact": (
        "Error creating contact",
        "Please check if your account has permission to CREATE contacts.",
    ),
    "findContactWithName": (
        "Error searching contacts",
        "Please check if your account has permission to GET contacts.",
    ),
}


def _details(text: str, item_id: str | int) -> list[JsonDict]:
    return [{"title": "Details", "items": [{"id": item_id, "type": "text", "text": text}]}]


#: longest CRM error text shown to the user
_CRM_TEXT_LIMIT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_TEXT_KEYS = ("error", "message", "error_info", "detail", "details", "errors", "title", "field")


def _text_of(value: Any, depth: int = 0) -> list[str]:
    """The human-readable strings in a CRM error body (common shapes: `error`, `message`, `errors[]`)."""
    if depth > 3:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        found: list[str] = []
        for key in _TEXT_KEYS:
            if key in value:
                found += _text_of(value[key], depth + 1)
        return found
    if isinstance(value, list):
        return [text for item in value[:5] for text in _text_of(item, depth + 1)]
    return []


def crm_error_text(body: Any) -> str | None:
    """The CRM's own explanation, safe to show: credentials masked, control characters dropped, truncated."""
    parts: list[str] = []
    for text in _text_of(body):
        cleaned = _CONTROL.sub(" ", text).strip()
        if cleaned and cleaned not in parts:
            parts.append(cleaned)
    if not parts:
        return None
    joined = redact("; ".join(parts))
    if len(joined) > _CRM_TEXT_LIMIT:
        joined = joined[: _CRM_TEXT_LIMIT - 3].rstrip() + "..."
    return joined


def crm_error_message(error: Exception, platform: str, operation: str) -> ReturnMessage:
    """What went wrong, in words the user can act on.

    401/403 -> reconnect; 429 -> rate limited; 400/422 -> the CRM refused the data (with its own words);
    404 -> the record is gone; no answer -> try again; 5xx -> the CRM has problems. The title stays the
    operation's ("Error creating contact"), so the user knows what did not happen.
    """
    status = error.status if isinstance(error, CrmHttpError) else None
    if status == 429:
        text = (
            f"You have exceeded the maximum number of requests allowed by {platform}. Please try again in the "
            "next minute. If the problem persists please contact support."
        )
        return ReturnMessage("Rate limit exceeded", "warning", 5000, _details(text, "1"))
    if status in (401, 403):
        text = (
            f"It seems like there's something wrong with your authorization of {platform}. Please Logout and "
            f"then Connect your {platform} account within this extension."
        )
        return ReturnMessage("Authorization error", "warning", 5000, _details(text, "1"))
    message, detail = _OPERATION_MESSAGES.get(
        operation,
        (f"Error performing {operation}", "Please check if your account has the necessary permissions."),
    )
    detail = detail.format(platform=platform)
    if isinstance(error, CrmAnswerError):
        detail = f"{platform} answered something unexpected. Please try again later."
        if error.outcome_unknown:
            detail += f" It may have been saved in {platform}: please check there before trying again."
    elif isinstance(error, CrmHttpError) and status is None:
        detail = f"{platform} did not answer in time. Please try again."
    elif status in (400, 422):
        crm_text = crm_error_text(error.body if isinstance(error, CrmHttpError) else None)
        detail = f"{platform} did not accept the data" + (f": {crm_text}" if crm_text else ".")
    elif status in (404, 410):
        detail = f"The record was not found in {platform}; it may have been deleted."
    elif status is not None and status >= 500:
        detail = f"{platform} is having problems (HTTP {status}). Please try again later."
    return ReturnMessage(message, "warning", 5000, _details(detail, 1))


def warning(message: str, ttl: int = 5000) -> ReturnMessage:
    return ReturnMessage(message, "warning", ttl)


SESSION_EXPIRED = ReturnMessage("User session expired. Please connect again.", "warning", 5000)
DATABASE_FAILED = ReturnMessage("Database operation failed", "warning", 5000)

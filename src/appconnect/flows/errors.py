"""One table from a CRM failure to the message the client shows (the contract's `handleApiError`)."""

from __future__ import annotations

from appconnect.connectors.sdk import CrmHttpError, JsonDict, ReturnMessage

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


def crm_error_message(error: Exception, platform: str, operation: str) -> ReturnMessage:
    """429 -> rate limited; 400-409 -> the user must reconnect; anything else -> the operation failed."""
    status = error.status if isinstance(error, CrmHttpError) else None
    if status == 429:
        text = (
            f"You have exceeded the maximum number of requests allowed by {platform}. Please try again in the "
            "next minute. If the problem persists please contact support."
        )
        return ReturnMessage("Rate limit exceeded", "warning", 5000, _details(text, "1"))
    if status is not None and 400 <= status <= 409:
        text = (
            f"It seems like there's something wrong with your authorization of {platform}. Please Logout and "
            f"then Connect your {platform} account within this extension."
        )
        return ReturnMessage("Authorization error", "warning", 5000, _details(text, "1"))
    message, detail = _OPERATION_MESSAGES.get(
        operation,
        (f"Error performing {operation}", "Please check if your account has the necessary permissions."),
    )
    return ReturnMessage(message, "warning", 5000, _details(detail.format(platform=platform), 1))


def warning(message: str, ttl: int = 5000) -> ReturnMessage:
    return ReturnMessage(message, "warning", ttl)


SESSION_EXPIRED = ReturnMessage("User session expired. Please connect again.", "warning", 5000)
DATABASE_FAILED = ReturnMessage("Database operation failed", "warning", 5000)

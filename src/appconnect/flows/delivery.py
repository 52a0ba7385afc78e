"""How a log the CRM did not take is classified, kept and retried (shared by call and message logs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import Enum

from appconnect.connectors.sdk import CrmAnswerError, CrmHttpError, ReturnMessage
from appconnect.settings import Settings


class Delivery(Enum):
    """What became of one attempt to write a log into the CRM."""

    DONE = "done"  # the CRM holds it (created now, or found from an earlier attempt)
    RETRY = "retry"  # the CRM could not take it now: kept, tried again later
    FINAL = "final"  # the CRM refused it for good (4xx) or nothing can be done automatically
    BUSY = "busy"  # another request is writing the same log right now: the retrier tries later


def outcome_unknown(exc: CrmHttpError) -> bool:
    """No answer (timeout, reset), a gateway timeout, or a create answered with something unreadable: the
    create may have reached the CRM."""
    if isinstance(exc, CrmAnswerError):
        return exc.outcome_unknown
    return exc.status is None or exc.status in (408, 504)


def refused_for_good(exc: CrmHttpError) -> bool:
    """A 4xx other than throttling/timeout: sending the same request again cannot succeed."""
    if isinstance(exc, CrmAnswerError):
        return False  # an odd answer, not a refusal: the next try may well get a readable one
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 425, 429)


def stale_window(settings: Settings) -> float:
    """How long a `pending` reservation may live before another attempt takes it over: longer than any live
    request holds it (a CRM create plus the look-up before it, each bounded by the read timeout)."""
    if settings.log_stale_seconds > 0:
        return settings.log_stale_seconds
    return settings.crm_read_timeout * 2 + settings.crm_connect_timeout * 2 + 10


def settle_window(settings: Settings) -> float:
    """How long after an unanswered write the CRM may still be carrying it out: until then, finding nothing
    does not prove the write was lost, so nothing is created again."""
    return settings.crm_read_timeout + settings.crm_connect_timeout


def next_attempt(settings: Settings, attempts: int) -> datetime | None:
    """Exponential backoff from `log_retry_base_seconds`; None once `log_retry_max_attempts` are spent."""
    if attempts >= settings.log_retry_max_attempts:
        return None
    delay = min(settings.log_retry_base_seconds * 2 ** max(attempts - 1, 0), 3600.0)
    return datetime.now(UTC) + timedelta(seconds=delay)


def will_retry(settings: Settings, attempts: int) -> bool:
    """A log kept after `attempts` tries is delivered by the retrier: it runs in this server, tries remain."""
    return settings.log_retrier_enabled and next_attempt(settings, attempts) is not None


def kept_for_retry(
    what: str, platform: str, exc: CrmHttpError | None = None, *, unconfirmed: bool = False
) -> ReturnMessage:
    """What the user is told when the CRM could not take a log the server keeps and delivers by itself.

    `successful` stays false (no CRM id yet: the client must not record the log as made), but the words say
    what happens, so the user does not log it again by hand. `what` is "call log" or "message log";
    `unconfirmed`: kept because an earlier attempt's create is not confirmed yet (NOT_SETTLED).
    """
    if unconfirmed:
        reason = f"{platform} has not confirmed an earlier attempt yet"
    else:
        status = exc.status if exc is not None else None
        reason = f"{platform} could not take it just now" + (f" (HTTP {status})" if status else "")
    text = (
        f"{reason}. It is saved on the server and will be logged into {platform} automatically within a few "
        "minutes: there is no need to log it again."
    )
    return ReturnMessage(
        f"{what[:1].upper()}{what[1:]} saved: it will be logged automatically",
        "warning",
        8000,
        [{"title": "Details", "items": [{"id": "1", "type": "text", "text": text}]}],
    )


NEEDS_ATTENTION = ReturnMessage(
    "The CRM did not confirm an earlier attempt to save this log, and it cannot be checked automatically. "
    "Please check the CRM before logging it again.",
    "warning",
    8000,
)
NOT_SETTLED = ReturnMessage(
    "The CRM has not confirmed an earlier attempt yet. Please try again in a few seconds.", "warning", 5000
)

"""Log output for operators: text lines or one JSON object per line, each line of a request carrying its context.

Every line logged while a request is being answered names the request (`request_id`), its route template,
method, the CRM platform once known, the status once the answer started and the milliseconds since the request
arrived. The access log (`appconnect.access`) adds one line per answered request with the final status and
duration, and `appconnect.crm` one line per CRM call that failed (at debug, every call). Nothing a user typed
reaches a line from here: the route is the route table's template (never the raw path or query), the platform
one the registry knows, and every message and traceback passes the redaction of `security/redact.py`
(credentials, JWTs, phone numbers, input echoed by validation errors) first.

Standard library only (plus the stdlib-only `outbound/observe.py`), so the supervisor uses the same formats.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, TextIO

from appconnect.outbound.observe import current_platform
from appconnect.security.redact import install_redaction, redact

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

access_log = logging.getLogger("appconnect.access")
crm_log = logging.getLogger("appconnect.crm")
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
#: how loud a CRM call's outcome is: a refusal (4xx) is the CRM's normal answer, no answer or a 5xx is not
_CRM_OUTCOME_LEVELS = {"ok": logging.DEBUG, "http_4xx": logging.INFO}


@dataclass(slots=True)
class RequestContext:
    """What every log line of one request says about it (set by the edge layer when the request arrives)."""

    request_id: str
    method: str
    route: str
    started: float
    status: int | None = None


current_request: ContextVar[RequestContext | None] = ContextVar("appconnect_request", default=None)


def request_fields(context: RequestContext) -> dict[str, Any]:
    """The request's fields as of now: the duration is the time since the request arrived."""
    platform = current_platform.get()
    return {
        "request_id": context.request_id,
        "method": context.method,
        "route": context.route,
        "status": context.status,
        "duration_ms": round((perf_counter() - context.started) * 1000, 3),
        "platform": None if platform == "unknown" else platform,
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, pid, the request's fields, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        context = current_request.get()
        if context is not None:
            entry.update(request_fields(context))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return _ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    """The classic line, plus `[request <id> <method> <route> <platform>]` on the lines of a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = current_request.get()
        if context is None:
            return line
        platform = current_platform.get()
        suffix = f" {platform}" if platform != "unknown" else ""
        return f"{line} [request {context.request_id} {context.method} {context.route}{suffix}]"

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


def configure(level: str, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Route every logger (uvicorn's included) to one handler on stderr in the chosen format, at `level`."""
    install_redaction()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own set-up must not apply
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def log_access(method: str, route: str, status: int, seconds: float) -> None:
    """The access line of one answered request (an observer of the edge layer, see api/middleware.py).

    The record is made here rather than by `Logger.info`: it holds only the method, the route template, the
    status and the duration, so it skips the caller lookup and the redaction pass (a third of its cost).
    """
    if access_log.isEnabledFor(logging.INFO):
        record = logging.LogRecord(
            access_log.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %d %.1f ms",
            (method, route, status, seconds * 1000),
            None,
        )
        access_log.handle(record)


def log_crm_call(platform: str, outcome: str, seconds: float) -> None:
    """One line per CRM call that did not succeed (an observer of outbound/observe.py): no URL, no body."""
    level = _CRM_OUTCOME_LEVELS.get(outcome, logging.WARNING)
    if crm_log.isEnabledFor(level):
        crm_log.log(level, "CRM call to %s: %s after %.1f ms", platform, outcome, seconds * 1000)

"""Every database connection of this worker is in use: answer "busy, retry" instead of queueing for ever."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from appconnect.api.failures import error_body
from appconnect.api.http import json_response

log = logging.getLogger("appconnect")

BUSY_RETRY_AFTER_SECONDS = 2


async def database_busy(request: Request, _exc: Exception) -> Response:
    """The pool timeout (`APPCONNECT_DATABASE_POOL_TIMEOUT`) bounds the wait; the client may retry."""
    log.warning("no free database connection for %s %s", request.method, request.url.path)
    request_id: str | None = getattr(request.state, "request_id", None)
    return json_response(
        error_body("The server is busy. Please try again in a moment.", request_id),
        503,
        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
    )

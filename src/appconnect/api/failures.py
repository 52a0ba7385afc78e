"""What an error answer looks like: the contract envelope, a plain message, a request id and the right status.

Bad input is 400 and names the field; a dependency that is down (database, Redis) is 503 with `Retry-After`;
anything else is 500. The exception text never reaches the client (it can carry data or internals); the
traceback goes to the log with the request id, which the client sees too so support can find the log line.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from typing import Any

import orjson

from appconnect.flows.availability import is_dependency_down

RETRY_AFTER_SECONDS = 5
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

DEPENDENCY_DOWN_MESSAGE = "A service this server depends on is unavailable. Please try again shortly."
UNEXPECTED_MESSAGE = "Something went wrong on the server. Please try again."


def sane_request_id(given: bytes | None) -> str:
    """The caller's `X-Request-Id` when it is short and plain (it is echoed and logged), else a new one."""
    if given is not None:
        text = given.decode("latin-1")
        if _SANE_REQUEST_ID.match(text):
            return text
    return _new_request_id()


class _RequestIds:
    """32 hex characters: a random per-process prefix and a counter (a fresh uuid4 costs more, no gain)."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)  # a forked worker must not repeat its parent's ids

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_new_request_id = _RequestIds()


def error_body(message: str, request_id: str | None, *, ttl: int = 5000) -> dict[str, Any]:
    """`{successful: false, returnMessage}` the client shows, plus `error` (the contract's 400 shape)."""
    body: dict[str, Any] = {
        "successful": False,
        "returnMessage": {"message": message, "messageType": "warning", "ttl": ttl},
        "error": message,
    }
    if request_id:
        body["requestId"] = request_id
    return body


def classify(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    """Status, message and extra headers for an exception nothing else handled."""
    if is_dependency_down(exc):
        return 503, DEPENDENCY_DOWN_MESSAGE, {"retry-after": str(RETRY_AFTER_SECONDS)}
    return 500, UNEXPECTED_MESSAGE, {}


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)

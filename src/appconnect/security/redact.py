"""Keeps secrets and personal data out of log lines: masks tokens, keys, JWTs, phone numbers and echoed input."""

from __future__ import annotations

import logging
import re
from typing import Any

_PATTERNS = [
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)((?:jwtToken|access_token|refresh_token|apiKey|api_key|token|code|client_secret|"
        r"rcAccessToken)[\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+"
    ),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
]
#: an E.164 number (`+14155550100`, `%2B14155550100`) or a bare run of 9 digits or more (a national number)
_PHONE = re.compile(r"(?:\+|%2[Bb])\d{6,15}\b|\b\d{9,}\b")
#: a validation error echoes what the user sent (`input_value='Ada Lovelace'`): a name, a note, a number
_ECHOED_INPUT = re.compile(r"(input_value=)(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,\]\n]+)")


def redact(text: str) -> str:
    """Mask anything that looks like a credential, a phone number, or input a validation error echoes."""
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)} ***", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}***", text)
    text = _PATTERNS[2].sub("***jwt***", text)
    text = _ECHOED_INPUT.sub(r"\1***", text)
    return _PHONE.sub("***phone***", text)


_installed = False


def install_redaction() -> None:
    """Redact every log record when it is created, whatever logger or handler it goes to."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return record
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return record

    logging.setLogRecordFactory(redacting_factory)
    _installed = True

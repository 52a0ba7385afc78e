"""Keeps secrets out of log lines: a logging filter that masks tokens, keys and JWTs."""

from __future__ import annotations

import logging
import re

_PATTERNS = [
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)((?:jwtToken|access_token|refresh_token|apiKey|api_key|token|code|client_secret|"
        r"rcAccessToken)[\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+"
    ),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
]


def redact(text: str) -> str:
    """Mask anything that looks like a credential."""
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)} ***", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}***", text)
    return _PATTERNS[2].sub("***jwt***", text)


class RedactingFilter(logging.Filter):
    """Applied to every handler: a record's final message is redacted before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def install_redaction() -> None:
    """Attach the filter to the root handlers and uvicorn's, so no library can leak a token."""
    flt = RedactingFilter()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "sqlalchemy"):
        logger = logging.getLogger(name)
        logger.addFilter(flt)
        for handler in logger.handlers:
            handler.addFilter(flt)

"""Signing and encryption keys: from settings, or generated once into a local key file for zero set-up."""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

from appconnect.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """The JWT signing secret, the token encryption keys and the RC-id hash key (all separate)."""

    jwt_secret: str
    encryption_keys: tuple[str, ...]
    hash_key: str


def _load_or_create_key_file(path: Path) -> dict[str, str]:
    """Read the key file; create it atomically (O_EXCL) so concurrent workers agree on one set of keys."""
    try:
        data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except FileNotFoundError:
        pass
    generated = {
        "jwt_secret": secrets.token_urlsafe(48),
        "encryption_key": Fernet.generate_key().decode(),
        "hash_key": secrets.token_urlsafe(24),
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(generated, handle)
    log.warning(
        "generated new server keys in %s; set APPCONNECT_JWT_SECRET and APPCONNECT_ENCRYPTION_KEYS "
        "in production",
        path,
    )
    return generated


def load_keys(settings: Settings) -> ServerKeys:
    """Keys from settings where given, the rest from the local key file."""
    file_keys: dict[str, str] = {}
    if not (settings.jwt_secret and settings.encryption_keys and settings.hash_key):
        file_keys = _load_or_create_key_file(settings.key_file)
    encryption = [k.strip() for k in settings.encryption_keys.split(",") if k.strip()]
    if not encryption:
        encryption = [file_keys["encryption_key"]]
    return ServerKeys(
        jwt_secret=settings.jwt_secret or file_keys["jwt_secret"],
        encryption_keys=tuple(encryption),
        hash_key=settings.hash_key or file_keys["hash_key"],
    )

"""Signing and encryption keys: from settings, or generated once into a local key file for zero set-up."""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
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
    """Read the key file, or create it complete-or-not-at-all so concurrent workers agree on one set of keys.

    The keys are written to a private temporary file that is then hard-linked into place: a reader never sees a
    half-written file, and of two processes racing, the second link fails and that process reads the first's.
    """
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(generated, handle)
        os.chmod(temporary, 0o600)
        try:
            os.link(temporary, path)
        except FileExistsError:
            existing: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
            return existing
    finally:
        os.unlink(temporary)
    log.warning(
        "generated new server keys in %s; set APPCONNECT_JWT_SECRET, APPCONNECT_ENCRYPTION_KEYS and "
        "APPCONNECT_HASH_KEY in production",
        path,
    )
    return generated


def load_keys(settings: Settings) -> ServerKeys:
    """Keys from settings where given, the rest from the local key file."""
    jwt_secret = settings.jwt_secret.get_secret_value()
    encryption_keys = settings.encryption_keys.get_secret_value()
    hash_key = settings.hash_key.get_secret_value()
    file_keys: dict[str, str] = {}
    if not (jwt_secret and encryption_keys and hash_key):
        file_keys = _load_or_create_key_file(settings.key_file)
    encryption = [k.strip() for k in encryption_keys.split(",") if k.strip()]
    if not encryption:
        encryption = [file_keys["encryption_key"]]
    return ServerKeys(
        jwt_secret=jwt_secret or file_keys["jwt_secret"],
        encryption_keys=tuple(encryption),
        hash_key=hash_key or file_keys["hash_key"],
    )

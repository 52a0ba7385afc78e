"""Authenticated encryption of CRM tokens and API keys at rest (Fernet: AES-128-CBC + HMAC-SHA256)."""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_DECRYPTED_KEPT = 2048


class TokenCipher:
    """Encrypts with the newest key, decrypts with any configured key, so keys can be rotated."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        # Every request decrypts its user's tokens; a ciphertext always decrypts to the same text (each
        # encryption has its own IV), so recent answers are kept. Bounded: the oldest entries go first.
        self._decrypted: dict[str, str] = {}

    def encrypt(self, plaintext: str | None) -> str | None:
        if plaintext is None or plaintext == "":
            return plaintext
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str | None) -> str | None:
        if ciphertext is None or ciphertext == "":
            return ciphertext
        known = self._decrypted.get(ciphertext)
        if known is not None:
            return known
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored credential cannot be decrypted with the configured keys") from exc
        if len(self._decrypted) >= _DECRYPTED_KEPT:
            del self._decrypted[next(iter(self._decrypted))]
        self._decrypted[ciphertext] = plaintext
        return plaintext


def hash_value(value: str, hash_key: str) -> str:
    """sha256 of `value:HASH_KEY`, lowercase hex: how RingCentral ids are pseudonymised."""
    return hashlib.sha256(f"{value}:{hash_key}".encode()).hexdigest()

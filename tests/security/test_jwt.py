"""Session JWT verification, including the verified-token memo every request goes through."""

from __future__ import annotations

import time

from appconnect.security.jwt import LEEWAY_SECONDS, TOKEN_LIFETIME_SECONDS, SessionTokens


def test_a_verified_token_is_answered_again_and_a_forged_one_never() -> None:
    tokens = SessionTokens("a-secret-of-sufficient-length-for-hs256")
    token = tokens.sign("7-testcrm", "testcrm")
    first = tokens.verify(token)
    assert first is not None and first.user_id == "7-testcrm"
    assert tokens.verify(token) == first

    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    assert tokens.verify(forged) is None
    assert tokens.verify(forged) is None  # a failure is not remembered as a success
    assert SessionTokens("another-secret-of-sufficient-length!!").verify(token) is None


def test_a_remembered_token_still_expires() -> None:
    tokens = SessionTokens("a-secret-of-sufficient-length-for-hs256")
    # valid for two to three more seconds, leeway included (exp is a whole second)
    now = time.time() - TOKEN_LIFETIME_SECONDS - LEEWAY_SECONDS + 3.0
    token = tokens.sign("7-testcrm", "testcrm", now=now)
    assert tokens.verify(token) is not None
    time.sleep(3.5)
    assert tokens.verify(token) is None
    assert tokens.verify(token) is None


def test_an_expired_token_is_refused_from_the_start() -> None:
    tokens = SessionTokens("a-secret-of-sufficient-length-for-hs256")
    token = tokens.sign("7-testcrm", "testcrm", now=time.time() - TOKEN_LIFETIME_SECONDS - 3600)
    assert tokens.verify(token) is None

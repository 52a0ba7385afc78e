"""Session JWT verification, including the verified-token memo every request goes through."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt as pyjwt
import pytest

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


SECRET = "a-secret-of-sufficient-length-for-hs256"


def test_tokens_interoperate_with_pyjwt() -> None:
    tokens = SessionTokens(SECRET)
    ours = tokens.sign("7-testcrm", "testcrm")
    decoded = pyjwt.decode(ours, SECRET, algorithms=["HS256"], options={"require": ["exp", "iat"]})
    assert decoded["id"] == "7-testcrm" and decoded["platform"] == "testcrm"
    assert pyjwt.get_unverified_header(ours) == {"alg": "HS256", "typ": "JWT"}
    now = time.time()
    for algorithm in ("HS256", "HS384", "HS512"):
        theirs = pyjwt.encode(
            {"id": 42, "platform": "pipedrive", "iat": now, "exp": int(now) + 60}, SECRET, algorithm=algorithm
        )
        claims = SessionTokens(SECRET).verify(theirs)
        assert claims is not None and (claims.user_id, claims.platform) == ("42", "pipedrive")
        assert claims.issued_at == pytest.approx(now)


def _unsigned(header: dict[str, object], payload: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


def _hmac_signed(header: dict[str, object], payload: dict[str, object]) -> str:
    unsigned = _unsigned(header, payload)[:-1]
    signature = hmac.new(SECRET.encode(), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    "claims",
    [
        {"id": "1", "platform": "p", "iat": "now"},  # no exp, iat a string
        {"id": "1", "platform": "p", "exp": "later", "iat": 0},
        {"id": "1", "platform": "p", "exp": True, "iat": 0},
        {"id": "1", "platform": "p", "exp": 2**31},  # no iat
        {"id": "1", "platform": "p", "exp": 2**31, "iat": 2**31},  # issued in the future
        {"id": "1", "platform": "p", "exp": 2**31, "iat": 0, "nbf": 2**31},  # not valid yet
        {"id": "1", "platform": "p", "exp": 2**31, "iat": 0, "nbf": "0"},
        {"id": True, "platform": "p", "exp": 2**31, "iat": 0},
        {"id": "1", "platform": 5, "exp": 2**31, "iat": 0},
    ],
)
def test_claims_that_do_not_hold_are_refused(claims: dict[str, object]) -> None:
    token = pyjwt.encode(claims, SECRET, algorithm="HS256")
    assert SessionTokens(SECRET).verify(token) is None


def test_only_well_formed_hmac_tokens_are_accepted() -> None:
    tokens = SessionTokens(SECRET)
    good = tokens.sign("7-testcrm", "testcrm")
    header, payload, signature = good.split(".")
    claims = {"id": "7", "platform": "testcrm", "iat": 0, "exp": 2**31}
    refused = [
        _unsigned({"alg": "none", "typ": "JWT"}, claims),
        pyjwt.encode(claims, SECRET, algorithm="HS256", headers={"crit": ["exp"]}),
        _hmac_signed({"alg": "RS256", "typ": "JWT"}, claims),  # algorithm confusion, signed with our secret
        f"{header}.{payload}.{signature}.extra",
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}=",  # padding is not base64url
        f"{header}.{payload}.{signature[:-1]}+",
        f"{header}.{payload}!.{signature}",
        "",
        "....",
    ]
    for token in refused:
        assert tokens.verify(token) is None, token
    assert tokens.verify(good) is not None
    assert (
        tokens.verify(_hmac_signed({"alg": "HS256", "typ": "JWT"}, claims)) is not None
    )  # the helper signs right

"""Any token shape is an invalid session, never a crash: in the verifier and over HTTP on every JWT route.

The tokens are signed with the server's own secret where it matters, so the verifier gets past the signature
and meets the odd header and claims (`"alg": ["HS256"]`, a list as payload, `exp` as an object, huge numbers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appconnect.security.jwt import SessionTokens
from tests.conftest import LiveServer

SECRET = "a-secret-of-sufficient-length-for-hs256"
_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_odd = _json | st.just(["HS256"]) | st.just({"alg": "HS256"})
_headers = (
    st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["HS256", "HS384", "HS512", "none", "RS256"]) | _odd,
            "typ": st.just("JWT") | _odd,
            "kid": _odd,
            "crit": _odd,
        },
    )
    | _json
)
_times = st.integers(min_value=-(2**80), max_value=2**80) | st.just(2**31) | _odd
_payloads = (
    st.fixed_dictionaries(
        {},
        optional={
            # no real user has this id: a token that verifies touches nobody's data on the shared test server
            "id": st.just("nobody-testcrm") | _odd,
            "platform": st.just("testcrm") | _odd,
            "iat": _times,
            "exp": _times,
            "nbf": _times,
        },
    )
    | _json
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _dump(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer past 64 bits: the standard library writes it
        return json.dumps(value).encode()


@st.composite
def tokens(draw: st.DrawFn, secret: str = SECRET) -> str:
    """A token of any shape: well signed with odd contents, or broken in its framing or encoding."""
    header, payload = draw(_headers), draw(_payloads)
    header_raw = draw(st.just(_dump(header)) | st.binary(max_size=24))  # binary: not JSON, not UTF-8
    payload_raw = draw(st.just(_dump(payload)) | st.binary(max_size=24))
    signing_input = f"{_b64(header_raw)}.{_b64(payload_raw)}"
    alg = header.get("alg") if isinstance(header, dict) else None
    digest = _DIGESTS.get(alg if isinstance(alg, str) else "HS256", hashlib.sha256)
    signature = _b64(hmac.new(secret.encode(), signing_input.encode(), digest).digest())
    token = f"{signing_input}.{signature}"
    return draw(
        st.just(token)
        | st.just(token + "." + signature)  # an extra part
        | st.just(token.replace(".", "..", 1))
        | st.just(token[:-3] + "%=+")  # not base64url
        | st.just(token[: draw(st.integers(0, len(token)))])  # cut anywhere
        | st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)
    )


@settings(max_examples=400, deadline=None)
@given(token=tokens())
def test_the_verifier_answers_every_token_shape(token: str) -> None:
    claims = SessionTokens(SECRET).verify(token)
    if claims is not None:  # only a real session: the claims the server signs, with sane types
        assert isinstance(claims.user_id, str) and isinstance(claims.platform, str)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": ["HS256"], "typ": "JWT"},
        {"alg": {"HS256": 1}},
        {"alg": "HS256", "typ": 1},
        {"alg": "HS256", "kid": []},
    ],
)
def test_a_header_of_the_wrong_types_is_an_invalid_token(header: dict[str, object]) -> None:
    """The issue's token: `"alg": ["HS256"]` raised TypeError (unhashable list), a 500 with no secret needed."""
    payload = {"id": "nobody-testcrm", "platform": "testcrm", "iat": 0, "exp": 2**31}
    signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(payload))}"
    signature = _b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())
    assert SessionTokens(SECRET).verify(f"{signing_input}.{signature}") is None


@pytest.mark.parametrize("exp", [10**400, 2**80, -(2**80), 1e308])
def test_a_date_beyond_any_calendar_is_an_invalid_token(exp: int | float) -> None:
    body = '{"id":"nobody-testcrm","platform":"testcrm","iat":0,"exp":' + str(exp) + "}"
    signing_input = _b64(b'{"alg":"HS256"}') + "." + _b64(body.encode())
    signature = _b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())
    assert SessionTokens(SECRET).verify(f"{signing_input}.{signature}") is None


#: every route that reads a session token, with the request the client sends
_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/contact?phoneNumber=%2B14155550100", None),
    ("POST", "/contact", {"phoneNumber": "+14155550100", "newContactName": "A", "newContactType": "contact"}),
    ("GET", "/callLog?sessionIds=1", None),
    ("POST", "/callLog", {"logInfo": {"sessionId": "1"}, "contactId": "1"}),
    ("PATCH", "/callLog", {"sessionId": "1"}),
    ("PUT", "/callDisposition", {"sessionId": "1", "dispositions": {}}),
    ("POST", "/messageLog", {"logInfo": {"messages": [], "correspondents": []}, "contactId": "1"}),
    ("GET", "/user/settings", None),
    ("POST", "/user/settings", {"userSettings": {}}),
    ("GET", "/authValidation", None),
    ("GET", "/licenseStatus", None),
    ("GET", "/hostname", None),
    ("POST", "/unAuthorize", None),
    ("POST", "/user/refreshInfo", None),
    ("GET", "/custom/contact/search?name=A", None),
]


def _server_secret(server: LiveServer) -> str:
    secret: str = json.loads(server.settings.key_file.read_text())["jwt_secret"]
    return secret


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_token_shape_makes_the_server_fail(server: LiveServer, data: st.DataObject) -> None:
    token = data.draw(tokens(_server_secret(server)))
    method, path, body = data.draw(st.sampled_from(_ROUTES))
    as_query = data.draw(st.booleans())
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        if as_query:
            answer = http.request(method, path, json=body, params={"jwtToken": token})
        else:
            answer = http.request(
                method, path, json=body, headers={"Authorization": f"Bearer {token}".strip()}
            )
    assert answer.status_code < 500, (method, path, answer.status_code, answer.text)
    assert "Traceback" not in answer.text


def test_the_issues_token_gets_the_invalid_session_answer(server: LiveServer) -> None:
    """Over HTTP, `"alg": ["HS256"]` signed with the server's secret is a missing session: 400, not 500."""
    secret = _server_secret(server)
    payload = {"id": "nobody-testcrm", "platform": "testcrm", "iat": 0, "exp": 2**31}
    signing_input = f"{_b64(orjson.dumps({'alg': ['HS256']}))}.{_b64(orjson.dumps(payload))}"
    signature = _b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        answer = http.get(
            "/contact",
            params={"phoneNumber": "+14155550100"},
            headers={"Authorization": f"Bearer {signing_input}.{signature}"},
        )
    assert answer.status_code == 400
    assert answer.text == "Please go to Settings and authorize CRM platform"

"""Whatever a CRM answers, the client gets a contract answer: property-based fuzz of CRM answers.

For every connector of the conformance suite and every interface (login, lookup, placeholder contact, call log
create / get / update, message log create and append), hypothesis makes the CRM answer something else: any
status, any content type, HTML, truncated or invalid JSON, bytes that are not text, JSON of another shape, huge
numbers and strings, or the CRM's own answer with values of other types and keys dropped. The CRM is reached
through a hostile proxy (`tests/support/hostile_proxy.py`, the server's `HTTP_PROXY`), so the fakes stay as
they are. Asserted every time: no 500 (no traceback), a contract answer the client reads, no match that is not
the caller's, and, after the client's retry, never a record written twice.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer, connector_server, database_url_for
from tests.connectors.conformance.target import ConformanceTarget, FakeCrmTarget, Operation
from tests.connectors.conformance.targets_builtin import TestCrmTarget
from tests.connectors.conformance.test_conformance import (
    PLACEHOLDER,
    TARGETS,
    call_body,
    message,
    message_body,
    new_phone,
)
from tests.support.hostile_proxy import Canned, HostileProxy, Rewrite, dump_json

JsonDict = dict[str, Any]

#: examples per connector and interface: enough to meet every kind of answer, few enough for a fast suite
EXAMPLES = int(os.environ.get("APPCONNECT_FUZZ_EXAMPLES", "6"))

# --- the answers ------------------------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "id",
        "data",
        "items",
        "name",
        "phone",
        "phones",
        "number",
        "success",
        "error",
        "results",
        "person",
        "value",
        "type",
        "access_token",
        "expires_in",
        "user",
        "company_id",
        "first_name",
        "last_name",
        "note",
        "subject",
    ]
) | st.text(max_size=8)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.sampled_from([10**30, -(10**30), 2**63, 1e308, -1e308, 0.5])
    | st.text(max_size=20)
    | st.sampled_from(["", "x" * 5000, "+14155550100", "2026-13-45T99:99:99Z", "null", "<b>"])
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=12,
)
_HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>Log in</form></body></html>"


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    document = dump_json(draw(_json))
    return draw(
        st.sampled_from([document, _HTML, b"", b"null", b"{", b'{"data": [', b"\xff\xfe\x00garbage"])
        | st.just(document[: draw(st.integers(0, max(len(document) - 1, 0)))])  # truncated
        | st.binary(max_size=64)
    )


_CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/html; charset=utf-8",
        "text/plain",
        "application/xml",
        "application/octet-stream",
        "application/json; charset=latin-1",
    ]
)
#: any status a CRM can send; a canned answer "after" the work is 2xx, 500, 502 or 504 (a CRM that did the work
#: and then answers 4xx or 503, "not processed", lies about it: no server can tell)
_STATUSES = st.sampled_from(
    [200, 201, 202, 204, 301, 400, 401, 403, 404, 409, 410, 422, 429, 500, 502, 503]
) | st.integers(200, 599)
_AFTER_STATUSES = st.sampled_from([200, 201, 202, 204, 500, 502, 504])


@st.composite
def answers(draw: st.DrawFn, *, write: bool) -> Canned | Rewrite:
    """An answer for one kind of CRM request; `write`: it may do the work first (creates, appends)."""
    kind = draw(st.sampled_from(["canned", "canned-after", "rewrite"] if write else ["canned", "rewrite"]))
    if kind == "rewrite":
        edits = draw(
            st.lists(st.tuples(st.integers(0, 10_000), _json, st.booleans()), min_size=1, max_size=4)
        )
        status = draw(st.none() | _AFTER_STATUSES)
        return Rewrite(tuple(edits), status)
    after = kind == "canned-after"
    return Canned(draw(_AFTER_STATUSES if after else _STATUSES), draw(_CONTENT_TYPES), draw(_bodies()), after)


# --- servers --------------------------------------------------------------------------------------------------


@dataclass
class Fuzzed:
    """One connector behind the hostile proxy, with its own connector server."""

    target: ConformanceTarget
    server: LiveServer
    proxy: HostileProxy

    def routes(self, operation: Operation | None) -> list[tuple[str | None, str]]:
        """The requests of `operation` (method, path prefix) as the proxy sees them; None: every request."""
        if operation is None:
            return [(None, "/")]
        if isinstance(self.target, TestCrmTarget):
            from tests.connectors.conformance.targets_builtin import _TESTCRM_REQUESTS

            method, prefix = _TESTCRM_REQUESTS[operation]
            return [(method, f"/testcrm{prefix}")]
        assert isinstance(self.target, FakeCrmTarget)
        return [(method, prefix) for method, prefix in self.target.fault_routes[operation]]

    def hostile(self, operation: Operation | None, answer: Canned | Rewrite) -> None:
        note(f"{self.target.platform} {operation or 'every request'}: {answer!r}")
        for method, prefix in self.routes(operation):
            self.proxy.answer(method, prefix, answer)


@pytest.fixture(scope="module", params=TARGETS, ids=lambda t: t.platform)
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    target: ConformanceTarget = type(request.param)()  # its own fake: the suite's harness keeps its own
    folder: Path = tmp_path_factory.mktemp(f"fuzz-{target.platform}")
    proxy = HostileProxy()
    proxy.start()
    target.start()
    proxied = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}
    settings: dict[str, object] = {
        "embedded_testcrm": True,
        "crm_rate_limit": "off",
        # retries of odd answers stay quick: the fuzz is about what is answered, not how long it waits
        "crm_retry_base_delay": 0.01,
        "crm_retry_after_cap_seconds": 0.05,
        **target.server_settings(),
    }
    try:
        with connector_server(
            {**target.server_env(), **proxied}, folder, database_url_for("sqlite", folder), **settings
        ) as live:
            target.bind(live.base_url)
            yield Fuzzed(target, live, proxy)
    finally:
        target.stop()
        proxy.stop()


# --- what the client may get back ------------------------------------------------------------------------------


def _contract_answer(response: httpx.Response) -> JsonDict | None:
    """Fail on a 500 or a shape the client cannot read; the JSON body when there is one."""
    where = f"{response.request.method} {response.request.url.path}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    assert "Traceback" not in response.text, where
    if response.status_code == 401:
        assert response.json().get("errorCode") == "CRM_SESSION_REVOKED", response.text
    if not response.headers.get("content-type", "").startswith("application/json"):
        assert response.status_code == 400, f"{where}: {response.status_code} {response.text[:300]}"
        return None
    body = response.json()
    assert isinstance(body, dict), body
    message = body.get("returnMessage")
    assert message is None or (isinstance(message, dict) and isinstance(message.get("message"), str)), body
    return body


def _an_id(text: str) -> bool:
    """Not the text of a JSON value that is no id (what `str()` makes of null, a boolean, an object...).

    An answer can always name another record by a plausible id: no server can tell. One that names none
    must never become a record's id."""
    return (
        bool(text.strip())
        and text not in ("None", "True", "False", "null")
        and not text.startswith(("{", "["))
    )


def _untouched(answer: Canned | Rewrite) -> bool:
    """The CRM never got the request (a canned answer before the work)."""
    return isinstance(answer, Canned) and not answer.after


def _envelope(response: httpx.Response) -> JsonDict:
    body = _contract_answer(response)
    assert body is not None and isinstance(body.get("successful"), bool), response.text[:300]
    return body


class Agent:
    """The client's requests against one fuzzed server, for one logged-in user."""

    def __init__(self, fuzzed: Fuzzed, jwt: str) -> None:
        self.fuzzed = fuzzed
        self.http = httpx.Client(base_url=fuzzed.server.base_url, timeout=30)
        self.auth = {"Authorization": f"Bearer {jwt}"}

    def close(self) -> None:
        self.http.close()

    def contact(self, name: str = "Maya Patel") -> tuple[JsonDict, str]:
        """A contact seeded straight into the CRM, of the first declared type, and its number."""
        phone = new_phone()
        manifest = self.http.get("/crmManifest", params={"platformName": self.fuzzed.target.platform}).json()
        types = [
            t["value"] for t in manifest["platforms"][self.fuzzed.target.platform].get("contactTypes") or []
        ]
        contact_type = types[0] if types else ""
        contact_id = self.fuzzed.target.seed_contact(name, phone, contact_type)
        return {"id": contact_id, "name": name, "type": contact_type}, phone

    def logged_call(self, contact: JsonDict, phone: str) -> tuple[str, JsonDict]:
        session_id = f"fz-{uuid.uuid4().hex[:12]}"
        body = call_body(session_id, contact, phone)
        logged = _envelope(self.http.post("/callLog", json=body, headers=self.auth))
        assert logged["successful"] is True, logged
        return session_id, body


def _login(fuzzed: Fuzzed, seen: list[httpx.Response] | None = None) -> str:
    async def run() -> str:
        async def record(response: httpx.Response) -> None:
            await response.aread()
            if seen is not None:
                seen.append(response)

        async with httpx.AsyncClient(
            base_url=fuzzed.server.base_url, timeout=30, event_hooks={"response": [record]}
        ) as http:
            return await fuzzed.target.login(http)

    return asyncio.run(run())


@pytest.fixture(scope="module")
def agent(fuzzed: Fuzzed) -> Iterator[Agent]:
    fuzzed.proxy.clear()
    fuzzed.target.reset()
    _unthrottled(fuzzed.target)
    user = Agent(fuzzed, _login(fuzzed))
    yield user
    user.close()


def _settled(fuzzed: Fuzzed) -> int:
    """Back to a CRM that answers honestly (and no fault of the fake left behind); how many requests the
    hostile answer was given to (none would mean the server bypassed the proxy: the test proved nothing)."""
    hits = sum(rule.hits for rule in fuzzed.proxy.rules)
    fuzzed.proxy.clear()
    fuzzed.target.clear_faults()
    _unthrottled(fuzzed.target)
    return hits


def _unthrottled(target: ConformanceTarget) -> None:
    """The fuzz calls fast: the fake's own rate limit (which a reset restores) must not be what answers."""
    if isinstance(target, FakeCrmTarget):
        target.fake.rate_limit.limit = 10**9
        search_limit = getattr(target.fake, "search_rate_limit", None)  # a fake with a limit of its searches
        if search_limit is not None:
            search_limit.limit = 10**9


_FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# the case: a CRM answering 200 with an HTML page (a login page) where JSON is due
_LOGIN_PAGE = Canned(200, "text/html; charset=utf-8", _HTML)


# --- the interfaces -----------------------------------------------------------------------------------------


@_FUZZ
@example(answer=_LOGIN_PAGE)
@given(answer=answers(write=False))
def test_login(fuzzed: Fuzzed, answer: Canned | Rewrite) -> None:
    seen: list[httpx.Response] = []
    fuzzed.hostile(None, answer)
    try:
        _login(fuzzed, seen)
    except (AssertionError, KeyError, TypeError, ValueError):
        pass  # the target's login asserts success: a refused login is fine, what it was answered is checked
    finally:
        hits = _settled(fuzzed)
    assert hits, "the server never sent the request the CRM was to answer"
    server_answers = [r for r in seen if r.url.path in ("/apiKeyLogin", "/oauth-callback")]
    assert server_answers, "the login never reached the server"
    for response in server_answers:
        body = _contract_answer(response)
        if body is not None and response.status_code == 200 and "jwtToken" in body:
            assert isinstance(body["jwtToken"], str) and body["jwtToken"]


@_FUZZ
@example(answer=_LOGIN_PAGE)
@given(answer=answers(write=False))
def test_lookup(fuzzed: Fuzzed, agent: Agent, answer: Canned | Rewrite) -> None:
    seeded, phone = agent.contact()
    fuzzed.hostile("find_contact", answer)
    try:
        found = _envelope(agent.http.get("/contact", params={"phoneNumber": phone}, headers=agent.auth))
    finally:
        hits = _settled(fuzzed)
    assert hits, "the server never sent the request the CRM was to answer"
    contacts = found.get("contact") or []
    assert isinstance(contacts, list), found
    for contact in contacts:
        assert isinstance(contact, dict) and isinstance(contact.get("id"), str | int), found
        assert _an_id(str(contact["id"])), found
    if isinstance(answer, Canned):  # an answer unrelated to the caller can never name someone else
        assert {str(c["id"]) for c in contacts} <= {seeded["id"], PLACEHOLDER}, found
    # nothing odd was kept: the next honest lookup finds the seeded contact
    again = _envelope(
        agent.http.get(
            "/contact", params={"phoneNumber": phone, "isForceRefreshAccountData": "true"}, headers=agent.auth
        )
    )
    assert seeded["id"] in {str(c["id"]) for c in again.get("contact") or []}, again


@_FUZZ
@example(answer=_LOGIN_PAGE)
@given(answer=answers(write=True))
def test_placeholder_contact(fuzzed: Fuzzed, agent: Agent, answer: Canned | Rewrite) -> None:
    phone = new_phone()
    manifest = agent.http.get("/crmManifest", params={"platformName": fuzzed.target.platform}).json()
    types = [t["value"] for t in manifest["platforms"][fuzzed.target.platform].get("contactTypes") or []]
    body = {"phoneNumber": phone, "newContactName": "Ada Fuzz", "newContactType": types[0] if types else ""}
    fuzzed.hostile("create_contact", answer)
    try:
        _envelope(agent.http.post("/contact", json=body, headers=agent.auth))
    finally:
        hits = _settled(fuzzed)
    assert hits, "the server never sent the request the CRM was to answer"
    retried = _envelope(agent.http.post("/contact", json=body, headers=agent.auth))
    held = fuzzed.target.contacts_with_number(phone)
    assert len(held) <= 1, f"two contacts for one number: {held}"
    if retried["successful"]:
        created = str(retried["contact"]["id"])
        assert _an_id(created), retried
        if _untouched(answer):  # the CRM never saw the first try: the retry made the one contact
            assert [created] == [record.id for record in held], (retried, held)


@_FUZZ
@example(answer=_LOGIN_PAGE)
@given(answer=answers(write=True))
def test_call_log_create(fuzzed: Fuzzed, agent: Agent, answer: Canned | Rewrite) -> None:
    contact, phone = agent.contact()
    body = call_body(f"fz-{uuid.uuid4().hex[:12]}", contact, phone)
    fuzzed.hostile("create_call_log", answer)
    try:
        _envelope(agent.http.post("/callLog", json=body, headers=agent.auth))
    finally:
        hits = _settled(fuzzed)
    assert hits, "the server never sent the request the CRM was to answer"
    retried = _envelope(agent.http.post("/callLog", json=body, headers=agent.auth))
    logs = fuzzed.target.logs_for(contact["id"], contact["type"])
    assert len(logs) <= 1, f"one call logged twice: {logs}"
    if retried["successful"]:
        assert _an_id(str(retried["logId"])), retried
        if _untouched(answer):
            assert [str(retried["logId"])] == [log.id for log in logs], (retried, logs)


@_FUZZ
@example(answer=_LOGIN_PAGE)
@given(answer=answers(write=False))
def test_call_log_get(fuzzed: Fuzzed, agent: Agent, answer: Canned | Rewrite) -> None:
    contact, phone = agent.contact()
    session_id, _body = agent.logged_call(contact, phone)
    fuzzed.hostile("get_call_log", answer)
    try:
        found = _envelope(
            agent.http.get(
                "/callLog", params={"sessionIds": session_id, "requireDetails": "true"}, headers=agent.auth
            )
        )
    finally:
        hits = _settled(fuzzed)
    assert hits, "the server never sent the request the CRM was to answer"
    assert isinstance(found.get("logs"), list), found
    for entry in found["logs"]:
        assert entry["sessionId"] == session_id and isinstance(entry["matched"], bool), found


@_FUZZ
@example(answer=_LOGIN_PAGE)
@given(answer=answers(write=True))
def test_call_log_update(fuzzed: Fuzzed, agent: Agent, answer: Canned | Rewrite) -> None:
    contact, phone = agent.contact()
    session_id, _body = agent.logged_call(contact, phone)
    fuzzed.hostile("update_call_log", answer)
    try:
        _envelope(
            agent.http.patch(
                "/callLog", json={"sessionId": session_id, "note": "after the call"}, headers=agent.auth
            )
        )
    finally:
        hits = _settled(fuzzed)
    assert hits, "the server never sent the request the CRM was to answer"
    assert len(fuzzed.target.logs_for(contact["id"], contact["type"])) == 1


@_FUZZ
@example(answer=_LOGIN_PAGE)
@given(answer=answers(write=True))
def test_message_log_create(fuzzed: Fuzzed, agent: Agent, answer: Canned | Rewrite) -> None:
    contact, phone = agent.contact()
    conversation = f"fz-{uuid.uuid4().hex[:10]}"
    body = message_body(
        conversation,
        contact,
        phone,
        [message(f"m-{uuid.uuid4().hex[:8]}", phone, "first", "2026-03-12T10:00:00Z")],
    )
    fuzzed.hostile("create_message_log", answer)
    try:
        _envelope(agent.http.post("/messageLog", json=body, headers=agent.auth))
    finally:
        hits = _settled(fuzzed)
    assert hits, "the server never sent the request the CRM was to answer"
    _envelope(agent.http.post("/messageLog", json=body, headers=agent.auth))
    logs = fuzzed.target.logs_for(contact["id"], contact["type"])
    assert len(logs) <= 1, f"one conversation day logged twice: {logs}"


@_FUZZ
@example(answer=_LOGIN_PAGE)
@given(answer=answers(write=True))
def test_message_log_append(fuzzed: Fuzzed, agent: Agent, answer: Canned | Rewrite) -> None:
    contact, phone = agent.contact()
    conversation = f"fz-{uuid.uuid4().hex[:10]}"
    first = message(f"m-{uuid.uuid4().hex[:8]}", phone, "first", "2026-03-12T10:00:00Z")
    logged = _envelope(
        agent.http.post(
            "/messageLog", json=message_body(conversation, contact, phone, [first]), headers=agent.auth
        )
    )
    assert logged["successful"] is True, logged
    marker = f"second-{uuid.uuid4().hex[:8]}"
    second = message(f"m-{uuid.uuid4().hex[:8]}", phone, marker, "2026-03-12T10:05:00Z")
    body = message_body(conversation, contact, phone, [second, first])
    fuzzed.hostile("update_message_log", answer)
    try:
        _envelope(agent.http.post("/messageLog", json=body, headers=agent.auth))
    finally:
        hits = _settled(fuzzed)
    assert hits, "the server never sent the request the CRM was to answer"
    _envelope(agent.http.post("/messageLog", json=body, headers=agent.auth))
    logs = fuzzed.target.logs_for(contact["id"], contact["type"])
    assert len(logs) == 1, f"one conversation day in {len(logs)} records: {logs}"
    assert logs[0].text.count(marker) <= 1, f"one message appended twice: {logs[0].raw}"

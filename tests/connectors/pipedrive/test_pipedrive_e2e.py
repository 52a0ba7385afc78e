"""End to end: the App Connect client's requests through the real server over loopback HTTP, Pipedrive faked.

A dedicated connector server is started with the `PIPEDRIVE_*` settings pointing at `FakePipedrive`; it shares
the database (and the key file) of the session `server` fixture, so it runs on SQLite and on PostgreSQL and
a third server on the same database is a realistic "two servers, one database" deployment. Every assertion
about what Pipedrive holds reads the fake's own state, and what the server holds is read from the database
with the server's own store (no project code is mocked).

The server computes a token's expiry from `expires_in` with its own clock, so "a token about to expire" is
made by logging in while the fake hands out 60-second tokens; `advance_time()` then makes the fake itself
refuse the old access token, proving the refreshed one is used.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.fernet import Fernet
from fake_pipedrive import FakePipedrive
from sqlalchemy import update

from appconnect.security.crypto import TokenCipher
from appconnect.store.db import create_engine
from appconnect.store.tables import users
from tests.conftest import (
    LiveServer,
    conversation_body,
    new_phone,
    sms_message,
    stored_user,
)
from tests.support.e2e import ClientSession, agent_call_body, client_of, server_beside, server_beside_fixture

USER_ID = "12345-pipedrive"  # the fake's user 12345, keyed the App Connect way
SESSION_EXPIRED = "User session expired. Please connect again."
REDIS_URL = "redis://127.0.0.1:6379/0"
SHORT_LIVED = 60  # seconds: inside the server's 2-minute refresh margin from the start
JsonDict = dict[str, Any]


# ------------------------------------------------------------------------------------------------------------
# servers
# ------------------------------------------------------------------------------------------------------------


#: A second server on the session server's database and keys (no schema reset), set up for Pipedrive.
pd_server = server_beside_fixture("pipedrive", "_fake_pipedrive_server")


def extra_server(
    base: LiveServer, fake: FakePipedrive, folder: Path, **overrides: Any
) -> AbstractContextManager[LiveServer]:
    """One more server on `base`'s database with the same keys: JWTs and stored tokens work on both."""
    return server_beside(base, fake.env(), folder, **overrides)


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------------------
# the client
# ------------------------------------------------------------------------------------------------------------


class Agent(ClientSession):
    """What the App Connect client does, one method per request; any 401 fails the test unless expected."""

    def __init__(self, http: httpx.AsyncClient, server: LiveServer, fake: FakePipedrive) -> None:
        super().__init__(http)
        self.server = server
        self.fake = fake
        self.rc_account_id = f"rc-{uuid.uuid4().hex[:10]}"  # a fresh contact-cache scope per test

    async def request(
        self, method: str, url: str, *, expect_401: bool = False, **kwargs: Any
    ) -> httpx.Response:
        response = await self.http.request(method, url, **kwargs)
        if expect_401:
            assert response.status_code == 401, response.text
        else:
            assert response.status_code != 401, f"unexpected 401 from {method} {url}: {response.text}"
        return response

    async def callback(self, callback_uri: str, **query: str) -> httpx.Response:
        params = {"callbackUri": callback_uri, "hostname": "temp", "rcAccountId": self.rc_account_id, **query}
        return await self.request("GET", "/oauth-callback", params=params)

    async def login(self, *, expires_in: int | None = None) -> JsonDict:
        """The OAuth install: the fake issues a code, the client hands the redirect URL to the server."""
        saved = self.fake.expires_in
        if expires_in is not None:
            self.fake.expires_in = expires_in
        try:
            code = self.fake.issue_code()
            response = await self.callback(f"{self.fake.redirect_uri}?code={code}&state=platform%3Dpipedrive")
        finally:
            self.fake.expires_in = saved
        assert response.status_code == 200, response.text
        body: JsonDict = response.json()
        assert body.get("jwtToken"), body
        self.jwt = body["jwtToken"]
        return body

    async def find_contact(
        self,
        phone: str,
        *,
        force: bool = False,
        expect_401: bool = False,
        http: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """GET /contact as the client sends it: query JWT and an unencoded `+` (it arrives as a space)."""
        url = f"/contact?jwtToken={self.jwt}&phoneNumber={phone}&overridingFormat=&isExtension=false"
        if force:
            url += "&isForceRefreshAccountData=true"
        if http is not None:
            response = await http.get(url)
            assert response.status_code != 401, response.text
            return response
        return await self.request("GET", url, expect_401=expect_401)

    async def create_contact(self, phone: str, name: str) -> JsonDict:
        response = await self.request(
            "POST",
            "/contact",
            headers=self.auth,
            json={"phoneNumber": phone, "newContactName": name, "newContactType": ""},
        )
        assert response.status_code == 200, response.text
        body: JsonDict = response.json()
        return body

    async def log_call(self, body: JsonDict, *, expect_401: bool = False) -> httpx.Response:
        return await self.request("POST", "/callLog", headers=self.auth, json=body, expect_401=expect_401)

    async def call_log_matched(self, session_id: str) -> bool:
        response = await self.request("GET", "/callLog", headers=self.auth, params={"sessionIds": session_id})
        assert response.status_code == 200, response.text
        logs = response.json()["logs"]
        assert [log["sessionId"] for log in logs] == [session_id]
        return bool(logs[0]["matched"])

    async def log_messages(self, body: JsonDict) -> JsonDict:
        response = await self.request("POST", "/messageLog", headers=self.auth, json=body)
        assert response.status_code == 200, response.text
        result: JsonDict = response.json()
        return result


@pytest.fixture
async def agent(pd_server: LiveServer, fake_pipedrive: FakePipedrive) -> AsyncIterator[Agent]:
    async with client_of(pd_server) as http:
        yield Agent(http, pd_server, fake_pipedrive)


def call_body(
    session_id: str, contact_id: str, phone: str, *, note: str = "Asked about the renewal", **extra: Any
) -> JsonDict:
    """A call from Maya Patel to Jordan Lee, 8 min 7 s: the values the Pipedrive assertions expect."""
    return agent_call_body(session_id, contact_id, phone, note=note, **extra)


async def revoke_at_fake(fake: FakePipedrive, token: str) -> None:
    """What uninstalling the app in Pipedrive does: the grant is revoked at the OAuth server."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            fake.revoke_url,
            data={"token": token, "token_type_hint": "refresh_token"},
            auth=(fake.client_id, fake.client_secret),
        )
    assert response.status_code == 200, response.text


def only_activity(fake: FakePipedrive) -> JsonDict:
    activities = list(fake.activities.values())
    assert len(activities) == 1, activities
    return activities[0]


def message_of(body: JsonDict) -> str:
    return str(body["returnMessage"]["message"])


# ------------------------------------------------------------------------------------------------------------
# 1. the whole client sequence
# ------------------------------------------------------------------------------------------------------------


async def test_whole_client_sequence(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    fake = fake_pipedrive
    login = await agent.login()
    assert login["name"] == "Jordan Lee"
    assert login["returnMessage"]["messageType"] == "success"
    assert fake.code_exchanges == 1

    hostname = await agent.request("GET", "/hostname", headers=agent.auth)
    assert hostname.status_code == 200
    assert hostname.text == f"{fake.company_domain}.pipedrive.com"

    # An unknown number: only the "create new contact" placeholder.
    phone = new_phone()
    unknown = (await agent.find_contact(phone)).json()
    assert unknown["successful"] is True
    assert [c["id"] for c in unknown["contact"]] == ["createNewContact"]
    assert unknown["contact"][0]["isNewContact"] is True
    assert "defaultContactType" not in unknown["contact"][0]  # Pipedrive has no contact types
    searches = fake.requests_to("/api/v2/persons/search")
    assert searches[-1].query["term"] == phone[2:]  # national significant number: the `+` survived the URL

    created = await agent.create_contact(phone, "Maya Patel")
    assert created["successful"] is True, created
    persons = list(fake.persons.values())
    assert len(persons) == 1
    person = persons[0]
    assert person["name"] == "Maya Patel"
    assert [p["value"] for p in person["phones"]] == [phone]
    assert created["contact"]["id"] == str(person["id"])
    person_id = str(person["id"])

    deal = fake.add_deal("Renewal 2026", person_id=person["id"])

    session_id = f"s-{uuid.uuid4().hex}"
    logged = await agent.log_call(
        call_body(session_id, person_id, phone, additionalSubmission={"deals": deal["id"]})
    )
    assert logged.status_code == 200
    logged_body = logged.json()
    assert logged_body["successful"] is True, logged_body
    activity = only_activity(fake)
    assert logged_body["logId"] == str(activity["id"])
    assert activity["type"] == "call"
    assert activity["deal_id"] == deal["id"]
    assert activity["lead_id"] is None
    assert activity["participants"] == [{"person_id": person["id"], "primary": True}]
    assert activity["person_id"] == person["id"]
    assert activity["done"] is True
    assert activity["owner_id"] == fake.user["id"]
    assert activity["duration"] == "00:09"  # 487 s rounded up to whole minutes
    assert activity["due_date"] == "2026-03-12" and activity["due_time"] == "14:35"
    assert activity["subject"] == "Inbound Call from Maya Patel"
    assert "<b>Agent notes</b>" in activity["note"] and "Asked about the renewal" in activity["note"]
    assert "<br>" in activity["note"]
    assert await agent.call_log_matched(session_id)
    detailed = await agent.request(
        "GET", "/callLog", headers=agent.auth, params={"sessionIds": session_id, "requireDetails": "true"}
    )
    [detail] = detailed.json()["logs"]
    assert detail["logData"]["contactName"] == "Maya Patel"  # from the activity's person (v2)
    assert detail["logData"]["note"] == "Asked about the renewal"

    patched = await agent.request(
        "PATCH",
        "/callLog",
        headers=agent.auth,
        json={"sessionId": session_id, "note": "Will call back on Friday", "subject": "Renewal call"},
    )
    assert patched.status_code == 200
    patched_body = patched.json()
    assert patched_body["successful"] is True, patched_body
    assert patched_body["logId"] == str(activity["id"])
    updated = fake.activity(activity["id"])
    assert "Will call back on Friday" in updated["note"]
    assert "Asked about the renewal" not in updated["note"]
    assert updated["subject"] == "Renewal call"
    assert updated["deal_id"] == deal["id"]
    assert len(fake.activities) == 1

    conversation = f"conv-{uuid.uuid4().hex}"
    first, second = f"m-{uuid.uuid4().hex}", f"m-{uuid.uuid4().hex}"
    one = await agent.log_messages(
        conversation_body(
            conversation, person_id, phone, [sms_message(first, phone, "Is the renewal ready?")], log_day=None
        )
    )
    assert one["successful"] is True and one["logIds"] == [first], one
    two = await agent.log_messages(
        conversation_body(
            conversation,
            person_id,
            phone,
            [
                sms_message(
                    second,
                    phone,
                    "Yes, sending it today",
                    direction="Outbound",
                    at="2026-03-12T14:40:00.000Z",
                ),
                sms_message(first, phone, "Is the renewal ready?"),
            ],
            log_day=None,
        )
    )
    assert two["successful"] is True and two["logIds"] == [second], two
    sms = [a for a in fake.activities.values() if a["type"] == "sms"]
    assert len(sms) == 1
    assert len(fake.activities) == 2
    note = sms[0]["note"]
    assert "Is the renewal ready?" in note and "Yes, sending it today" in note
    assert note.index("Is the renewal ready?") < note.index("Yes, sending it today")
    assert "Conversation(2 messages)" in note
    assert sms[0]["participants"] == [{"person_id": person["id"], "primary": True}]
    assert sms[0]["subject"].startswith("SMS conversation with Maya Patel")

    # Creating the contact dropped the cached "not found": the lookup now goes to Pipedrive and matches.
    matched = (await agent.find_contact(phone)).json()
    assert matched["successful"] is True
    real = [c for c in matched["contact"] if not c.get("isNewContact")]
    assert [(c["id"], c["name"]) for c in real] == [(person_id, "Maya Patel")]
    assert real[0]["additionalInfo"]["deals"] == [{"const": deal["id"], "title": "Renewal 2026"}]
    forced = (await agent.find_contact(phone, force=True)).json()
    assert [c["id"] for c in forced["contact"] if not c.get("isNewContact")] == [person_id]

    before = await stored_user(agent.server, USER_ID)
    assert before.access_token and before.refresh_token
    out = await agent.request("POST", "/unAuthorize", headers=agent.auth)
    assert out.status_code == 200, out.text
    assert out.json()["messageType"] == "success"
    assert fake.revoke_calls == 2
    revokes = fake.requests_to("/oauth/revoke", "POST")
    assert [r.form and r.form.get("token_type_hint") for r in revokes] == ["refresh_token", "access_token"]
    assert all(r.auth_scheme == "Basic" for r in revokes)
    assert not fake.is_refresh_token_valid(before.refresh_token)
    assert not fake.is_access_token_valid(before.access_token)
    after = await stored_user(agent.server, USER_ID)
    assert not after.access_token and not after.refresh_token

    gone = await agent.find_contact(phone)  # the logged-out session: asked to connect again
    assert (gone.status_code, gone.text) == (400, "Please go to Settings and authorize CRM platform")


async def test_login_replaces_credentials_it_cannot_decrypt(
    agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    """Tokens stored under a key this server no longer has (lost, or rotated away) must not lock the user
    out: connecting again replaces them instead of failing with "Database operation failed"."""
    await agent.login()
    foreign = TokenCipher((Fernet.generate_key().decode(),))
    engine = create_engine(agent.server.settings.database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == USER_ID)
                .values(access_token=foreign.encrypt("at-lost"), refresh_token=foreign.encrypt("rt-lost"))
            )
    finally:
        await engine.dispose()

    again = await agent.login()
    assert again["name"] == "Jordan Lee"
    user = await stored_user(agent.server, USER_ID)
    assert user.access_token and fake_pipedrive.is_access_token_valid(user.access_token)
    found = await agent.find_contact(new_phone())
    assert found.status_code == 200 and found.json()["successful"] is True, found.text


# ------------------------------------------------------------------------------------------------------------
# 2. token refresh
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["same", "omit", "rotate"])
async def test_expiring_token_is_refreshed_once(
    agent: Agent, fake_pipedrive: FakePipedrive, mode: str
) -> None:
    fake = fake_pipedrive
    fake.refresh_token_mode = mode  # type: ignore[assignment]
    await agent.login(expires_in=SHORT_LIVED)
    before = await stored_user(agent.server, USER_ID)
    assert before.token_expiry is not None
    assert before.token_expiry < datetime.now(UTC) + timedelta(minutes=2)
    fake.advance_time(SHORT_LIVED + 5)  # the fake now refuses the old access token
    assert before.access_token and not fake.is_access_token_valid(before.access_token)

    found = await agent.find_contact(new_phone())
    assert found.status_code == 200
    assert found.json()["successful"] is True, found.text
    assert fake.refresh_calls == 1

    after = await stored_user(agent.server, USER_ID)
    assert after.access_token != before.access_token
    assert after.access_token and fake.is_access_token_valid(after.access_token)
    assert after.token_expiry is not None and after.token_expiry > datetime.now(UTC) + timedelta(minutes=30)
    if mode == "rotate":
        assert after.refresh_token != before.refresh_token
        assert after.refresh_token and fake.is_refresh_token_valid(after.refresh_token)
        assert before.refresh_token and not fake.is_refresh_token_valid(before.refresh_token)
    else:  # kept as is, also when the answer carries no refresh_token
        assert after.refresh_token == before.refresh_token
        assert before.refresh_token and fake.is_refresh_token_valid(before.refresh_token)
    refreshes = fake.requests_to("/oauth/token", "POST")
    assert [r.form and r.form.get("grant_type") for r in refreshes] == ["authorization_code", "refresh_token"]
    assert refreshes[-1].auth_scheme == "Basic"

    # The fresh token is not due: the next calls go straight to Pipedrive.
    again = await agent.find_contact(new_phone())
    assert again.json()["successful"] is True
    assert fake.refresh_calls == 1


# ------------------------------------------------------------------------------------------------------------
# 3. single-flight refresh
# ------------------------------------------------------------------------------------------------------------


async def burst(agent: Agent, servers: list[LiveServer], count: int = 50) -> list[httpx.Response]:
    """`count` simultaneous lookups of different numbers, spread round-robin over `servers`."""
    clients = [
        httpx.AsyncClient(base_url=s.base_url, timeout=60, limits=httpx.Limits(max_connections=count))
        for s in servers
    ]
    try:
        phones = [f"+1650555{index:04d}" for index in range(count)]
        return await asyncio.gather(
            *(
                agent.find_contact(phone, http=clients[index % len(clients)])
                for index, phone in enumerate(phones)
            )
        )
    finally:
        for client in clients:
            await client.aclose()


async def prepare_expiring(agent: Agent, fake: FakePipedrive) -> None:
    """Log in with a token inside the refresh margin; the refreshed token will be long-lived.

    The refresh is slowed down so that every request of the burst, on every server, sees the old token
    due before the new one is saved: a lock that is not shared shows up as a second refresh every time.
    """
    await agent.login(expires_in=SHORT_LIVED)
    fake.advance_time(SHORT_LIVED + 5)
    fake.inject(delay=0.3, path_prefix="/oauth/token", method="POST")
    # one token's 50 searches at once are past Pipedrive's 10 per 2 s (the server would rightly wait 10 s and
    # answer "rate limit" after its 2): these tests are about the refresh, so the fake's plan allows them
    fake.search_rate_limit.limit = 100
    assert fake.refresh_calls == 0


def assert_all_found(responses: list[httpx.Response]) -> None:
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    bodies = [r.json() for r in responses]
    assert all(b["successful"] is True for b in bodies), [b for b in bodies if not b["successful"]][:3]
    assert all(b["contact"][-1]["id"] == "createNewContact" for b in bodies)


async def test_fifty_concurrent_lookups_refresh_once(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    await prepare_expiring(agent, fake_pipedrive)
    responses = await burst(agent, [agent.server])
    assert_all_found(responses)
    assert fake_pipedrive.refresh_calls == 1
    assert len(fake_pipedrive.requests_to("/api/v2/persons/search")) == 50


@pytest.fixture(params=["database", "redis"])
def server_pair(
    request: pytest.FixtureRequest,
    pd_server: LiveServer,
    _fake_pipedrive_server: FakePipedrive,
    tmp_path: Path,
) -> Iterator[list[LiveServer]]:
    """Two servers on one database, locking through the database table or through Redis.

    Started here rather than in the test: the server start migrates with `asyncio.run`, which cannot run
    inside the test's event loop.
    """
    fake = _fake_pipedrive_server
    with ExitStack() as stack:
        if request.param == "redis":
            if not redis_reachable():
                if os.environ.get("CI"):
                    pytest.fail("Redis is not reachable on 127.0.0.1:6379 but CI must test it")
                pytest.skip("Redis not reachable on 127.0.0.1:6379 (runs on CI)")
            # Both servers must lock through Redis, so neither is the shared database-locking one.
            yield [
                stack.enter_context(extra_server(pd_server, fake, tmp_path / name, redis_url=REDIS_URL))
                for name in ("a", "b")
            ]
        else:
            yield [pd_server, stack.enter_context(extra_server(pd_server, fake, tmp_path / "b"))]


async def test_two_servers_one_database_refresh_once(
    agent: Agent, fake_pipedrive: FakePipedrive, server_pair: list[LiveServer]
) -> None:
    assert {s.settings.database_url for s in server_pair} == {agent.server.settings.database_url}
    await prepare_expiring(agent, fake_pipedrive)
    responses = await burst(agent, server_pair)
    assert_all_found(responses)
    assert fake_pipedrive.refresh_calls == 1
    user = await stored_user(agent.server, USER_ID)
    assert user.access_token and fake_pipedrive.is_access_token_valid(user.access_token)


# ------------------------------------------------------------------------------------------------------------
# 4. revoked refresh token -> 401 CRM_SESSION_REVOKED (and only then)
# ------------------------------------------------------------------------------------------------------------


def assert_session_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.json() == {
        "successful": False,
        "returnMessage": {"message": SESSION_EXPIRED, "messageType": "warning", "ttl": 5000},
        "errorCode": "CRM_SESSION_REVOKED",
    }


async def test_revoked_refresh_token_answers_401(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    person = fake.add_person("Maya Patel", phones=[maya_phone])
    await agent.login(expires_in=SHORT_LIVED)
    stored = await stored_user(agent.server, USER_ID)
    assert stored.refresh_token
    await revoke_at_fake(fake, stored.refresh_token)

    assert_session_revoked(await agent.find_contact(maya_phone, expect_401=True))
    assert fake.refresh_calls == 1

    session_id = f"s-{uuid.uuid4().hex}"
    assert_session_revoked(
        await agent.log_call(call_body(session_id, str(person["id"]), maya_phone), expect_401=True)
    )
    assert fake.refresh_calls == 1  # the revocation is remembered: no second refresh
    assert fake.activities == {}
    assert not await agent.call_log_matched(session_id)  # the reservation was released

    validation = await agent.request("GET", "/authValidation", headers=agent.auth)
    assert validation.status_code == 200
    assert validation.json() == {
        "successful": False,
        "returnMessage": {"message": SESSION_EXPIRED, "messageType": "warning", "ttl": 5000},
    }

    # Connecting again heals the session.
    await agent.login()
    healed = await agent.log_call(call_body(session_id, str(person["id"]), maya_phone))
    assert healed.status_code == 200 and healed.json()["successful"] is True, healed.text
    assert len(fake.activities) == 1


async def test_crm_401_on_a_normal_call_is_an_authorization_error(
    agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    person = fake.add_person("Maya Patel", phones=[maya_phone])
    await agent.login()
    fake.inject(status=401, path_prefix="/api/v2/persons/search")
    found = await agent.find_contact(maya_phone)
    assert found.status_code == 200
    assert found.json()["successful"] is False
    assert message_of(found.json()) == "Authorization error"

    fake.inject(status=401, path_prefix="/api/v2/activities", method="POST")
    session_id = f"s-{uuid.uuid4().hex}"
    logged = await agent.log_call(call_body(session_id, str(person["id"]), maya_phone))
    assert logged.status_code == 200
    assert logged.json()["successful"] is False
    assert message_of(logged.json()) == "Authorization error"
    assert fake.refresh_calls == 0


# ------------------------------------------------------------------------------------------------------------
# 5. rate limits and server errors
# ------------------------------------------------------------------------------------------------------------


async def test_rate_limited_search(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    """A short Retry-After is waited out by the server: the lookup succeeds, the search was sent twice."""
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    person = fake.add_person("Maya Patel", phones=[maya_phone])
    await agent.login()
    fake.inject(status=429, retry_after=0.3, path_prefix="/api/v2/persons/search")
    found = (await agent.find_contact(maya_phone)).json()
    assert found["successful"] is True
    assert [c["id"] for c in found["contact"] if not c.get("isNewContact")] == [str(person["id"])]
    assert len(fake.requests_to("/api/v2/persons/search")) == 2


async def test_failed_activity_creation_leaves_no_log_and_retry_succeeds(
    agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    person = fake.add_person("Maya Patel", phones=[maya_phone])
    await agent.login()
    fake.inject(status=500, path_prefix="/api/v2/activities", method="POST")
    session_id = f"s-{uuid.uuid4().hex}"
    body = call_body(session_id, str(person["id"]), maya_phone)

    failed = await agent.log_call(body)
    assert failed.status_code == 200
    assert failed.json()["successful"] is False
    assert message_of(failed.json()) == "Error creating call log"
    assert fake.activities == {}
    assert not await agent.call_log_matched(session_id)

    retried = await agent.log_call(body)
    assert retried.status_code == 200
    assert retried.json()["successful"] is True, retried.text
    activity = only_activity(fake)
    assert retried.json()["logId"] == str(activity["id"])
    assert await agent.call_log_matched(session_id)

    repeated = await agent.log_call(body)  # the client repeating itself does not make a second activity
    assert repeated.json()["successful"] is False
    assert message_of(repeated.json()) == f"Existing log for session {session_id}"
    assert len(fake.activities) == 1


# ------------------------------------------------------------------------------------------------------------
# 6. OAuth callback errors
# ------------------------------------------------------------------------------------------------------------


async def test_callback_on_wrong_redirect_path(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    code = fake_pipedrive.issue_code()
    response = await agent.callback(
        f"https://appconnect.example.test/somewhere-else?code={code}&state=platform%3Dpipedrive"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Redirected path should match configured path"
    assert fake_pipedrive.code_exchanges == 0


@pytest.mark.parametrize("reuse", [True, False])
async def test_callback_with_used_or_invalid_code(
    agent: Agent, fake_pipedrive: FakePipedrive, reuse: bool
) -> None:
    if reuse:
        code = fake_pipedrive.issue_code()
        first = await agent.callback(f"{fake_pipedrive.redirect_uri}?code={code}&state=platform%3Dpipedrive")
        assert first.status_code == 200 and first.json().get("jwtToken"), first.text
    else:
        code = "code-never-issued"
    response = await agent.callback(f"{fake_pipedrive.redirect_uri}?code={code}&state=platform%3Dpipedrive")
    assert response.status_code == 200
    body = response.json()
    assert "jwtToken" not in body
    assert body["returnMessage"]["messageType"] == "danger"
    assert "invalid_grant" in body["returnMessage"]["message"]
    assert fake_pipedrive.code_exchanges == (2 if reuse else 1)


async def test_callback_without_platform(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    code = fake_pipedrive.issue_code()
    response = await agent.callback(f"{fake_pipedrive.redirect_uri}?code={code}&state=hostname%3Dtemp")
    assert response.status_code == 400
    assert response.text == "Missing platform name"
    assert fake_pipedrive.code_exchanges == 0


# ------------------------------------------------------------------------------------------------------------
# the manifest
# ------------------------------------------------------------------------------------------------------------


async def test_manifest_carries_client_id_never_secret(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    response = await agent.request("GET", "/crmManifest", params={"platformName": "pipedrive"})
    assert response.status_code == 200
    manifest = response.json()
    assert list(manifest["platforms"]) == ["pipedrive"]
    oauth = manifest["platforms"]["pipedrive"]["auth"]["oauth"]
    assert oauth["clientId"] == fake_pipedrive.client_id
    assert oauth["redirectUri"] == fake_pipedrive.redirect_uri
    assert oauth["authUrl"] == fake_pipedrive.authorize_url
    assert manifest["serverUrl"] == agent.server.base_url
    assert fake_pipedrive.client_secret not in response.text
    assert fake_pipedrive.client_secret not in orjson.dumps(manifest).decode()
    everything = await agent.request("GET", "/crmManifest")
    assert fake_pipedrive.client_secret not in everything.text


# ------------------------------------------------------------------------------------------------------------
# 7. unknown outcome: Pipedrive writes the activity after the server stopped waiting
# ------------------------------------------------------------------------------------------------------------


async def wait_for_activities(fake: FakePipedrive, count: int) -> None:
    """The slow create completes at the fake after the server's read timeout."""
    for _ in range(200):
        if len(fake.activities) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} activities, have {len(fake.activities)}")


async def test_call_log_written_after_the_timeout_is_found_by_its_marker_not_duplicated(
    agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    person = fake.add_person("Maya Patel", phones=[maya_phone])
    await agent.login()
    session_id = f"s-{uuid.uuid4().hex}"
    body = call_body(session_id, str(person["id"]), maya_phone)
    fake.inject(delay=3, path_prefix="/api/v2/activities", method="POST")  # read timeout is 2 s

    timed_out = await agent.log_call(body)
    assert timed_out.json()["successful"] is False
    await wait_for_activities(fake, 1)
    assert not await agent.call_log_matched(session_id)

    retried = await agent.log_call(body)
    assert retried.json()["successful"] is True, retried.text
    activity = only_activity(fake)
    assert retried.json()["logId"] == str(activity["id"])
    assert await agent.call_log_matched(session_id)
    assert len(fake.requests_to("/api/v2/activities", "POST")) == 1


async def test_message_log_written_after_the_timeout_is_found_by_its_marker_not_duplicated(
    agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    person = fake.add_person("Maya Patel", phones=[maya_phone])
    await agent.login()
    conversation = f"c{uuid.uuid4().hex[:8]}"
    body = conversation_body(
        conversation,
        str(person["id"]),
        maya_phone,
        [sms_message(f"m-{conversation}", maya_phone, "Hi there")],
        log_day=None,
    )
    fake.inject(delay=3, path_prefix="/api/v2/activities", method="POST")

    timed_out = await agent.log_messages(body)
    assert timed_out["successful"] is False
    await wait_for_activities(fake, 1)

    retried = await agent.log_messages(body)
    assert retried["successful"] is True and retried["logIds"] == [f"m-{conversation}"], retried
    activity = only_activity(fake)
    assert str(activity["note"]).count("Hi there") == 1
    assert len(fake.requests_to("/api/v2/activities", "POST")) == 1
    later = await agent.log_messages(
        conversation_body(
            conversation,
            str(person["id"]),
            maya_phone,
            [sms_message(f"m2-{conversation}", maya_phone, "Second one", at="2026-03-12T14:40:00.000Z")],
            log_day=None,
        )
    )
    assert later["successful"] is True
    assert "Second one" in str(only_activity(fake)["note"])  # appended to the adopted activity


async def test_message_append_written_after_the_timeout_is_found_by_its_tag_not_appended_again(
    agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    person = fake.add_person("Maya Patel", phones=[maya_phone])
    await agent.login()
    conversation = f"c{uuid.uuid4().hex[:8]}"
    first = sms_message(f"m1-{conversation}", maya_phone, "Hi there")
    second = sms_message(f"m2-{conversation}", maya_phone, "Second one", at="2026-03-12T14:40:00.000Z")
    logged = await agent.log_messages(
        conversation_body(conversation, str(person["id"]), maya_phone, [first], log_day=None)
    )
    assert logged["successful"] is True, logged
    both = conversation_body(conversation, str(person["id"]), maya_phone, [second, first], log_day=None)
    fake.inject(delay=3, path_prefix="/api/v2/activities/", method="PATCH")  # read timeout is 2 s

    timed_out = await agent.log_messages(both)
    assert timed_out["successful"] is False
    for _ in range(200):  # the slow append completes at the fake after the server stopped waiting
        if "Second one" in str(only_activity(fake)["note"]):
            break
        await asyncio.sleep(0.05)

    retried = await agent.log_messages(both)
    assert retried["successful"] is True and retried["logIds"] == [f"m2-{conversation}"], retried
    note = str(only_activity(fake)["note"])
    assert note.count("Hi there") == 1 and note.count("Second one") == 1, note
    assert "Conversation(2 messages)" in note
    assert len(fake.requests_to("/api/v2/activities", "POST")) == 1

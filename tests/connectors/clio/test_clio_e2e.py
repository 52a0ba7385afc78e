"""End to end: the App Connect client's requests through the real server over loopback HTTP, Clio faked.

A connector server is started with the `CLIO_*` settings pointing at FakeClio, on the database of the session
`server` fixture, so every test here runs on SQLite and on PostgreSQL. Login goes through the server's own
`/oauth-callback` route and the fake's token endpoint; what Clio holds is read from the fake's state.
The CRM rate limiter is off: every test logs in as the same Clio user, whose per-token budget would otherwise
carry over from test to test (the limiter has its own tests).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fake_clio import FakeClio

from tests.conftest import (
    LiveServer,
    conversation_body,
    new_phone,
    sms_message,
    stored_user,
)
from tests.support.e2e import ClientSession, agent_call_body, client_of, server_beside, server_beside_fixture

JsonDict = dict[str, Any]


clio_live = server_beside_fixture("clio", "_fake_clio_server", crm_rate_limit="off")


class Agent(ClientSession):
    """What the App Connect client does, one method per request."""

    def __init__(self, http: httpx.AsyncClient, server: LiveServer, fake: FakeClio) -> None:
        super().__init__(http)
        self.server = server
        self.fake = fake

    async def login(
        self, region: str = "", *, hostname: str | None = None, code_region: str | None = None
    ) -> JsonDict:
        """The OAuth install: Clio's consent screen redirects with a code; the client hands it to the server."""
        host = hostname or {"": "app.clio.com"}.get(region, f"{region}.app.clio.com")
        consent = await self.http.get(
            f"{self.fake.base_url}/oauth/authorize",
            params={
                "client_id": self.fake.clients[region if code_region is None else code_region][0],
                "response_type": "code",
                "redirect_uri": self.fake.redirect_uri,
                "state": "platform=clio",
            },
        )
        return await self.oauth_callback(consent, hostname=host, rcAccountId="rc-1")

    async def find_contact(self, phone: str, *, force: bool = False) -> JsonDict:
        return await self.find_contact_by_query(phone, force=force)

    async def create_contact(self, phone: str, name: str, kind: str = "Person") -> JsonDict:
        return await self.send(
            "POST", "/contact", {"phoneNumber": phone, "newContactName": name, "newContactType": kind}
        )

    async def log_call(self, body: JsonDict) -> JsonDict:
        return await self.send("POST", "/callLog", body)

    async def log_messages(self, body: JsonDict) -> JsonDict:
        return await self.send("POST", "/messageLog", body)


@pytest.fixture
async def agent(clio_live: LiveServer, fake_clio: FakeClio) -> AsyncIterator[Agent]:
    async with client_of(clio_live) as http:
        yield Agent(http, clio_live, fake_clio)


def call_body(session_id: str, contact_id: str, phone: str, **extra: Any) -> JsonDict:
    return agent_call_body(
        session_id, contact_id, phone, contactType="Person", note="Asked about the lease", **extra
    )


def only(records: dict[int, JsonDict]) -> JsonDict:
    assert len(records) == 1, records
    return next(iter(records.values()))


async def wait_until(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


# ------------------------------------------------------------------------------------------------------------
# the whole client sequence
# ------------------------------------------------------------------------------------------------------------


async def test_whole_client_sequence(agent: Agent, fake_clio: FakeClio) -> None:
    fake = fake_clio
    login = await agent.login()
    assert login["name"] == "Jordan Lee", login
    user_id = f"{fake.user['id']}-clio"
    token_requests = fake.requests_to("/oauth/token", "POST")
    assert [r.form and r.form.get("grant_type") for r in token_requests] == ["authorization_code"]

    phone, company_phone = new_phone(), new_phone()
    unknown = await agent.find_contact(phone)
    assert unknown["successful"] is True
    assert [c["id"] for c in unknown["contact"]] == ["createNewContact"]
    assert unknown["contact"][0]["defaultContactType"] == "Person"

    created = await agent.create_contact(phone, "Maya Patel")
    assert created["successful"] is True, created
    person = only(fake.contacts)
    assert (person["name"], person["type"]) == ("Maya Patel", "Person")
    assert created["contact"]["id"] == str(person["id"])
    company = await agent.create_contact(company_phone, "Acme Ltd", "Company")
    assert company["successful"] is True and company["contact"]["type"] == "Company", company
    assert fake.contacts[int(company["contact"]["id"])]["type"] == "Company"

    matter = fake.add_matter("Lease dispute", client_id=person["id"])
    second = fake.add_matter("Second matter", client_id=person["id"])
    found = await agent.find_contact(phone)
    real = [c for c in found["contact"] if not c.get("isNewContact")]
    assert [(c["id"], c["name"], c["type"]) for c in real] == [(str(person["id"]), "Maya Patel", "Person")]
    assert [m["const"] for m in real[0]["additionalInfo"]["matters"]] == [matter["id"], second["id"]]

    session_id = f"s-{uuid.uuid4().hex}"
    logged = await agent.log_call(
        call_body(session_id, str(person["id"]), phone, additionalSubmission={"matters": matter["id"]})
    )
    assert logged["successful"] is True, logged
    communication = only(fake.communications)
    assert logged["logId"] == str(communication["id"])
    assert communication["matter"]["id"] == matter["id"]
    assert communication["subject"] == f"[Call] Inbound Call from Maya Patel [{phone}]"
    assert "- Note: Asked about the lease" in communication["body"]
    assert f"[rc-call-{session_id}]" in communication["body"]
    [time_entry] = fake.activities.values()
    assert (time_entry["quantity"], time_entry["matter"]["id"]) == (487, matter["id"])

    fetched = await agent.http.get(
        "/callLog", headers=agent.auth, params={"sessionIds": session_id, "requireDetails": "true"}
    )
    log = fetched.json()["logs"][0]
    assert log["matched"] is True and log["logData"]["note"] == "Asked about the lease", log

    patched = await agent.http.patch(
        "/callLog",
        headers=agent.auth,
        json={"sessionId": session_id, "note": "Will send the draft", "subject": "Lease call"},
    )
    assert patched.json()["successful"] is True, patched.text
    assert communication["subject"] == "Lease call"
    assert (
        "Will send the draft" in communication["body"]
        and "Asked about the lease" not in communication["body"]
    )
    assert f"[rc-call-{session_id}]" in communication["body"]

    disposed = await agent.http.put(
        "/callDisposition",
        headers=agent.auth,
        json={"sessionId": session_id, "dispositions": {"matters": second["id"]}},
    )
    assert disposed.json()["successful"] is True, disposed.text
    assert communication["matter"]["id"] == second["id"]

    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    first_id, second_id = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    one = await agent.log_messages(
        conversation_body(
            conversation,
            str(person["id"]),
            phone,
            [sms_message(first_id, phone, "Is the lease ready?")],
            contact_type="Person",
        )
    )
    assert one["successful"] is True and one["logIds"] == [first_id], one
    two = await agent.log_messages(
        conversation_body(
            conversation,
            str(person["id"]),
            phone,
            [
                sms_message(
                    second_id, phone, "Sending it today", direction="Outbound", at="2026-03-12T14:40:00.000Z"
                ),
                sms_message(first_id, phone, "Is the lease ready?"),
            ],
            contact_type="Person",
        )
    )
    assert two["successful"] is True and two["logIds"] == [second_id], two
    assert len(fake.communications) == 2
    sms = [c for c in fake.communications.values() if c["subject"].startswith("SMS conversation")]
    assert len(sms) == 1
    body = sms[0]["body"]
    assert "Conversation(2 messages)" in body and body.index("Is the lease ready?") < body.index(
        "Sending it today"
    )

    before = await stored_user(agent.server, user_id)
    assert before.access_token and before.refresh_token
    out = await agent.http.post("/unAuthorize", headers=agent.auth)
    assert out.status_code == 200 and out.json()["messageType"] == "success", out.text
    assert fake.deauthorize_calls == 1
    assert not fake.is_access_token_valid(before.access_token)
    assert not fake.is_refresh_token_valid(before.refresh_token)
    after = await stored_user(agent.server, user_id)
    assert not after.access_token and not after.refresh_token


# ------------------------------------------------------------------------------------------------------------
# regions
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["eu", "au", "ca"])
async def test_login_in_a_region_uses_that_regions_application(
    agent: Agent, fake_clio: FakeClio, region: str
) -> None:
    login = await agent.login(region)
    assert login.get("jwtToken"), login
    user = await stored_user(agent.server, f"{fake_clio.user['id']}~{region}-clio")
    assert user.hostname == f"{region}.app.clio.com"
    assert fake_clio.grants.code_exchanges == 1
    found = await agent.find_contact(new_phone())
    assert found["successful"] is True


@pytest.fixture(scope="session")
def two_regions(
    server: LiveServer, _fake_clio_server: FakeClio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, FakeClio]]:
    """A server whose US region is the shared fake and whose EU region is a second fake: two deployments."""
    with (
        FakeClio() as eu,
        server_beside(
            server,
            {**_fake_clio_server.env(), "CLIO_EU_BASE_URL": eu.base_url},
            tmp_path_factory.mktemp("clio-two-regions"),
            crm_rate_limit="off",
        ) as live,
    ):
        yield live, eu


async def test_the_same_user_id_in_two_regions_is_two_users(
    two_regions: tuple[LiveServer, FakeClio], fake_clio: FakeClio
) -> None:
    """Regions are separate Clios: a US and an EU user with one numeric id each keep their own stored user,
    tokens, data and sessions on one server."""
    live, eu = two_regions
    us = fake_clio
    eu.reset()
    clio_id = 700000 + uuid.uuid4().int % 100000  # fresh, so no other test's user has this id
    us.user["id"] = clio_id
    eu.user.update(id=clio_id, name="Eilis Byrne", time_zone="Dublin")
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:
        us_agent, eu_agent = Agent(http, live, us), Agent(http, live, eu)
        assert (await us_agent.login())["name"] == "Jordan Lee"
        assert (await eu_agent.login("eu"))["name"] == "Eilis Byrne"
        us_user = await stored_user(live, f"{clio_id}-clio")  # US ids keep their old form
        eu_user = await stored_user(live, f"{clio_id}~eu-clio")
        assert (us_user.hostname, eu_user.hostname) == ("app.clio.com", "eu.app.clio.com")
        assert us_user.access_token != eu_user.access_token
        assert us.is_access_token_valid(us_user.access_token)
        assert eu.is_access_token_valid(eu_user.access_token)
        assert us_user.timezone_name != eu_user.timezone_name

        us_phone, eu_phone = new_phone(), new_phone()
        us_contact = (await us_agent.create_contact(us_phone, "Maya Patel"))["contact"]["id"]
        eu_contact = (await eu_agent.create_contact(eu_phone, "Maya Patel"))["contact"]["id"]
        assert [c["id"] for c in us.contacts.values()] == [int(us_contact)]
        assert [c["id"] for c in eu.contacts.values()] == [int(eu_contact)]
        # each JWT sees only its own region's Clio
        assert [c["id"] for c in (await eu_agent.find_contact(us_phone))["contact"]] == ["createNewContact"]
        assert [c["id"] for c in (await us_agent.find_contact(eu_phone))["contact"]] == ["createNewContact"]

        us_session, eu_session = f"s-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"
        us_log = await us_agent.log_call(call_body(us_session, us_contact, us_phone))
        eu_log = await eu_agent.log_call(call_body(eu_session, eu_contact, eu_phone))
        assert us_log["successful"] is True and eu_log["successful"] is True, (us_log, eu_log)
        us_call, eu_call = only(us.communications), only(eu.communications)
        assert (str(us_call["id"]), str(eu_call["id"])) == (us_log["logId"], eu_log["logId"])
        assert f"[rc-call-{us_session}]" in us_call["body"]
        assert f"[rc-call-{eu_session}]" in eu_call["body"]
        # the agent party is the bare Clio id in both regions
        assert us_call["receivers"][0] == {**us_call["receivers"][0], "type": "User", "id": clio_id}
        assert eu_call["receivers"][0] == {**eu_call["receivers"][0], "type": "User", "id": clio_id}

        # a new login in one region ends no session of the other
        first_jwts = (us_agent.jwt, eu_agent.jwt)
        await eu_agent.login("eu")
        await us_agent.login()
        for agent, own_phone in ((us_agent, us_phone), (eu_agent, eu_phone)):
            found = await agent.find_contact(own_phone)
            assert found["successful"] is True and len(found["contact"]) == 2, found
        # the sessions from before the other region's logins still work too, each on its own logs
        for agent, first_jwt, session in (
            (us_agent, first_jwts[0], us_session),
            (eu_agent, first_jwts[1], eu_session),
        ):
            agent.jwt = first_jwt
            fetched = await http.get("/callLog", headers=agent.auth, params={"sessionIds": session})
            assert fetched.status_code == 200 and fetched.json()["logs"][0]["matched"] is True, fetched.text
        foreign = await http.get("/callLog", headers=us_agent.auth, params={"sessionIds": eu_session})
        assert foreign.status_code == 200 and foreign.json()["logs"][0]["matched"] is False, foreign.text


async def test_a_code_from_another_region_is_refused(agent: Agent, fake_clio: FakeClio) -> None:
    refused = await agent.login("eu", code_region="")  # a US code handed in for the EU host
    assert "jwtToken" not in refused
    assert "invalid_grant" in refused["returnMessage"]["message"]


async def test_an_unknown_host_is_refused_before_any_token_request(agent: Agent, fake_clio: FakeClio) -> None:
    refused = await agent.login(hostname="clio.example.com")
    assert "jwtToken" not in refused and "Unknown Clio region" in refused["returnMessage"]["message"]
    assert fake_clio.requests_to("/oauth/token") == []


# ------------------------------------------------------------------------------------------------------------
# trust: answers lost after the work was done
# ------------------------------------------------------------------------------------------------------------


async def test_call_log_written_after_the_timeout_is_adopted_not_duplicated(
    agent: Agent, fake_clio: FakeClio
) -> None:
    fake = fake_clio
    phone = new_phone()
    maya = fake.add_contact("Maya Patel", [phone])
    await agent.login()
    session_id = f"s-{uuid.uuid4().hex}"
    body = call_body(session_id, str(maya["id"]), phone)
    fake.inject(delay=3, path_prefix="/api/v4/communications.json", method="POST")  # read timeout is 2 s

    timed_out = await agent.log_call(body)
    assert timed_out["successful"] is False
    await wait_until(lambda: len(fake.communications) == 1, "the slow create lands")

    retried = await agent.log_call(body)
    assert retried["successful"] is True, retried
    assert retried["logId"] == str(only(fake.communications)["id"])
    assert len(fake.requests_to("/api/v4/communications.json", "POST")) == 1


async def test_call_log_answered_500_after_the_work_is_adopted(agent: Agent, fake_clio: FakeClio) -> None:
    fake = fake_clio
    phone = new_phone()
    maya = fake.add_contact("Maya Patel", [phone])
    await agent.login()
    session_id = f"s-{uuid.uuid4().hex}"
    body = call_body(session_id, str(maya["id"]), phone)
    fake.inject(500, path_prefix="/api/v4/communications.json", method="POST", when="after")
    failed = await agent.log_call(body)
    assert failed["successful"] is False
    retried = await agent.log_call(body)
    assert retried["successful"] is True, retried
    assert len(fake.communications) == 1
    assert len(fake.requests_to("/api/v4/communications.json", "POST")) == 1


async def test_message_log_written_after_the_timeout_is_adopted_not_duplicated(
    agent: Agent, fake_clio: FakeClio
) -> None:
    fake = fake_clio
    phone = new_phone()
    maya = fake.add_contact("Maya Patel", [phone])
    await agent.login()
    conversation = f"c{uuid.uuid4().hex[:8]}"
    body = conversation_body(
        conversation,
        str(maya["id"]),
        phone,
        [sms_message(f"m-{conversation}", phone, "Hi there")],
        contact_type="Person",
    )
    fake.inject(delay=3, path_prefix="/api/v4/communications.json", method="POST")
    timed_out = await agent.log_messages(body)
    assert timed_out["successful"] is False
    await wait_until(lambda: len(fake.communications) == 1, "the slow create lands")
    retried = await agent.log_messages(body)
    assert retried["successful"] is True and retried["logIds"] == [f"m-{conversation}"], retried
    assert str(only(fake.communications)["body"]).count("Hi there") == 1
    assert len(fake.requests_to("/api/v4/communications.json", "POST")) == 1


async def test_contact_created_after_the_timeout_is_not_created_twice(
    agent: Agent, fake_clio: FakeClio
) -> None:
    fake = fake_clio
    phone = new_phone()
    await agent.login()
    fake.inject(delay=3, path_prefix="/api/v4/contacts.json", method="POST")
    slow = await agent.create_contact(phone, "Maya Patel")
    assert slow["successful"] is False
    await wait_until(lambda: len(fake.contacts) == 1, "the slow create lands")
    retried = await agent.create_contact(phone, "Maya Patel")
    assert retried["successful"] is True, retried
    made = only(fake.contacts)
    assert retried["contact"]["id"] == str(made["id"]) and retried["contact"]["type"] == "Person"
    assert len(fake.requests_to("/api/v4/contacts.json", "POST")) == 1


async def test_validation_error_shows_clios_words(agent: Agent, fake_clio: FakeClio) -> None:
    await agent.login()
    fake_clio.inject(
        422,
        path_prefix="/api/v4/contacts.json",
        method="POST",
        body={"error": {"type": "RecordInvalid", "message": "Validation failed: Name is reserved"}},
    )
    refused = await agent.create_contact(new_phone(), "Maya Patel")
    assert refused["successful"] is False
    assert "Name is reserved" in str(refused["returnMessage"])
    assert fake_clio.contacts == {}


async def test_429_on_search_is_waited_out(agent: Agent, fake_clio: FakeClio) -> None:
    phone = new_phone()
    maya = fake_clio.add_contact("Maya Patel", [phone])
    await agent.login()
    fake_clio.inject(429, retry_after=0.2, times=2, path_prefix="/api/v4/contacts.json", method="GET")
    found = await agent.find_contact(phone, force=True)
    assert found["successful"] is True, found
    assert [c["id"] for c in found["contact"] if not c.get("isNewContact")] == [str(maya["id"])]


async def test_message_append_written_after_the_timeout_is_not_appended_again(
    agent: Agent, fake_clio: FakeClio
) -> None:
    fake = fake_clio
    phone = new_phone()
    maya = fake.add_contact("Maya Patel", [phone])
    await agent.login()
    conversation = f"c{uuid.uuid4().hex[:8]}"
    first = sms_message(f"m1-{conversation}", phone, "Hi there")
    second = sms_message(f"m2-{conversation}", phone, "Second one", at="2026-03-12T14:40:00.000Z")
    logged = await agent.log_messages(
        conversation_body(conversation, str(maya["id"]), phone, [first], contact_type="Person")
    )
    assert logged["successful"] is True, logged
    both = conversation_body(conversation, str(maya["id"]), phone, [second, first], contact_type="Person")
    # one slow answer: the PATCH sets the whole body, so the server sends it again at once; still one copy
    fake.inject(delay=3, path_prefix="/api/v4/communications/", method="PATCH")
    resent = await agent.log_messages(both)
    assert resent["successful"] is True and resent["logIds"] == [f"m2-{conversation}"], resent
    await asyncio.sleep(1.2)  # the slow first PATCH lands too
    assert str(only(fake.communications)["body"]).count("Second one") == 1

    third = sms_message(f"m3-{conversation}", phone, "Third one", at="2026-03-12T14:45:00.000Z")
    both = conversation_body(
        conversation, str(maya["id"]), phone, [third, second, first], contact_type="Person"
    )
    fake.inject(delay=3, times=3, path_prefix="/api/v4/communications/", method="PATCH")
    timed_out = await agent.log_messages(both)
    assert timed_out["successful"] is False
    await wait_until(lambda: "Third one" in str(only(fake.communications)["body"]), "the slow append lands")

    retried = await agent.log_messages(both)
    assert retried["successful"] is True and retried["logIds"] == [f"m3-{conversation}"], retried
    body = str(only(fake.communications)["body"])
    assert [body.count(text) for text in ("Hi there", "Second one", "Third one")] == [1, 1, 1], body
    assert "Conversation(3 messages)" in body
    patches = fake.requests_to("/api/v4/communications/", "PATCH")
    assert len(patches) == 5  # 2 for the second message, 3 for the third; none for the retry


# ------------------------------------------------------------------------------------------------------------
# tokens
# ------------------------------------------------------------------------------------------------------------


async def test_an_expiring_token_is_refreshed_and_the_refresh_token_kept(
    agent: Agent, fake_clio: FakeClio
) -> None:
    fake = fake_clio
    fake.grants.expires_in = 60  # inside the server's 2-minute refresh margin from the start
    await agent.login("eu")
    fake.grants.expires_in = 3600
    user_id = f"{fake.user['id']}~eu-clio"
    before = await stored_user(agent.server, user_id)
    fake.advance_time(65)  # the fake now refuses the old access token
    assert before.access_token and not fake.is_access_token_valid(before.access_token)

    found = await agent.find_contact(new_phone())
    assert found["successful"] is True, found
    assert fake.grants.refresh_calls == 1
    after = await stored_user(agent.server, user_id)
    assert after.access_token != before.access_token
    assert after.access_token and fake.is_access_token_valid(after.access_token)
    assert after.refresh_token == before.refresh_token  # Clio's refresh answer carries none
    refresh = fake.requests_to("/oauth/token", "POST")[-1]
    assert refresh.form is not None and refresh.form["grant_type"] == "refresh_token"

"""End to end: the App Connect client's requests through the real server over loopback HTTP, Insightly faked.

The connector server is started with `INSIGHTLY_ALLOWED_API_ORIGINS` naming the fake, and no base-URL override:
the user's pasted pod URL (`<fake>/v3.1/`) is what the server stores and calls, as in production. It shares the
database of the session `server` fixture, so everything runs on SQLite and on PostgreSQL. Every assertion about
what Insightly holds reads the fake's own state.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fake_insightly import FakeInsightly

from tests.conftest import LiveServer, conversation_body, new_phone
from tests.support.e2e import ClientSession, agent_call_body, client_of, session_server_beside

JsonDict = dict[str, Any]


def insightly_env(*fakes: FakeInsightly) -> dict[str, str]:
    """Settings under which the server may send Insightly API keys to the fakes' origins (and to insightly.com)."""
    return {"INSIGHTLY_ALLOWED_API_ORIGINS": ",".join(f.base_url for f in fakes), "INSIGHTLY_BASE_URL": ""}


@pytest.fixture(scope="session")
def _other_company_server(_fake_insightly_server: FakeInsightly) -> Iterator[FakeInsightly]:
    """A second Insightly company (its own instance, pod origin and key) whose first user has the SAME
    USER_ID as the first company's default user."""
    first_user = _fake_insightly_server.user_id_of(_fake_insightly_server.default_key)
    with FakeInsightly(instance_id=990002, first_user_id=first_user, default_key="key-other-co") as fake:
        yield fake


@pytest.fixture
def other_company(_other_company_server: FakeInsightly) -> FakeInsightly:
    _other_company_server.reset()
    return _other_company_server


@pytest.fixture(scope="session")
def ins_server(
    server: LiveServer,
    _fake_insightly_server: FakeInsightly,
    _other_company_server: FakeInsightly,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """A second server on the session server's database and keys; the CRM rate limiter off so injected 429s
    and fault tests leave no back-off behind. It may reach both companies' fakes."""
    env = insightly_env(_fake_insightly_server, _other_company_server)
    yield from session_server_beside("insightly", server, env, tmp_path_factory, crm_rate_limit="off")


class Agent(ClientSession):
    """What the App Connect client does, one method per request."""

    def __init__(self, http: httpx.AsyncClient, fake: FakeInsightly) -> None:
        super().__init__(http)
        self.fake = fake

    async def login(self, api_url: str | None = None, api_key: str | None = None) -> httpx.Response:
        return await self.api_key_login(
            {
                "platform": "insightly",
                "apiKey": api_key or self.fake.default_key,
                "hostname": "crm.na1.insightly.com",
                "additionalInfo": {"apiUrl": api_url or f"{self.fake.base_url}/v3.1/"},
            },
            headers={"rc-account-id": f"acct-{uuid.uuid4().hex[:10]}"},
        )

    async def find_contact(self, phone: str, *, force: bool = True, overriding_format: str = "") -> JsonDict:
        response = await self.http.get(
            "/contact",
            params={
                "jwtToken": self.jwt,
                "phoneNumber": phone,
                "overridingFormat": overriding_format,
                "isExtension": "false",
                **({"isForceRefreshAccountData": "true"} if force else {}),
            },
        )
        assert response.status_code == 200, response.text
        body: JsonDict = response.json()
        return body

    async def create_contact(self, phone: str, name: str, contact_type: str) -> JsonDict:
        body = {"phoneNumber": phone, "newContactName": name, "newContactType": contact_type}
        return await self.send("POST", "/contact", body)


@pytest.fixture
async def agent(ins_server: LiveServer, fake_insightly: FakeInsightly) -> AsyncIterator[Agent]:
    async with client_of(ins_server) as http:
        yield Agent(http, fake_insightly)


@pytest.fixture
async def logged_in(agent: Agent) -> Agent:
    response = await agent.login()
    assert response.status_code == 200, response.text
    return agent


def call_body(
    session_id: str, contact_id: str, phone: str, contact_type: str = "contact", **extra: Any
) -> JsonDict:
    return agent_call_body(
        session_id, contact_id, phone, contactType=contact_type, note="Asked about the renewal", **extra
    )


def sms(message_id: str, phone: str, text: str, direction: str = "Inbound", at: str = "14:35:20") -> JsonDict:
    return {
        "id": message_id,
        "type": "SMS",
        "direction": direction,
        "subject": text,
        "creationTime": f"2026-03-12T{at}.000Z",
        "from": {"phoneNumber": phone if direction == "Inbound" else "+14155550101"},
    }


def links(event: JsonDict) -> list[tuple[str, int]]:
    return sorted((link["LINK_OBJECT_NAME"], link["LINK_OBJECT_ID"]) for link in event["LINKS"])


# ------------------------------------------------------------------------------------------------------------
# the whole client sequence
# ------------------------------------------------------------------------------------------------------------


async def test_whole_client_sequence(logged_in: Agent, fake_insightly: FakeInsightly) -> None:
    agent, fake = logged_in, fake_insightly
    me = fake.user_id_of(fake.default_key)
    assert fake.requests_to("/v3.1/users/me")[0].auth_scheme == "Basic"

    phone = new_phone()
    miss = await agent.find_contact(phone)
    assert miss["successful"] is True
    assert [c["id"] for c in miss["contact"]] == ["createNewContact"]
    assert miss["contact"][0]["defaultContactType"] == "contact"
    searched = {
        (r.path, r.query["field_name"], r.query["field_value"])
        for r in fake.requests_to("/v3.1/")
        if "field_name" in r.query
    }
    assert ("/v3.1/contacts/search", "PHONE", phone) in searched  # the `+` survived the query string
    assert ("/v3.1/leads/search", "MOBILE", phone[2:]) in searched
    assert not any(path == "/v3.1/leads/search" and name == "PHONE_MOBILE" for path, name, _v in searched)

    made = await agent.create_contact(phone, "Maya Patel", "contact")
    assert made["successful"] is True, made
    [contact] = [c for c in fake.all_contacts() if c["PHONE"] == phone]
    assert (contact["FIRST_NAME"], contact["LAST_NAME"]) == ("Maya", "Patel")
    assert made["contact"] == {**made["contact"], "id": str(contact["CONTACT_ID"]), "type": "contact"}
    lead_phone = new_phone()
    lead_made = await agent.create_contact(lead_phone, "Sam", "lead")
    assert lead_made["successful"] is True, lead_made
    [lead] = [c for c in fake.all_leads() if c["PHONE"] == lead_phone]
    assert (lead["FIRST_NAME"], lead["LAST_NAME"]) == (None, "Sam")
    assert lead_made["contact"]["id"] == str(lead["LEAD_ID"]) and lead_made["contact"]["type"] == "lead"

    contact_id = str(contact["CONTACT_ID"])
    opportunity = fake.add_opportunity("Renewal 2026")
    session_id = f"s-{uuid.uuid4().hex}"
    logged = await agent.send(
        "POST",
        "/callLog",
        call_body(
            session_id, contact_id, phone, additionalSubmission={"opportunity": opportunity["OPPORTUNITY_ID"]}
        ),
    )
    assert logged["successful"] is True, logged
    [event] = fake.all_events()
    assert logged["logId"] == str(event["EVENT_ID"])
    assert links(event) == [
        ("Contact", contact["CONTACT_ID"]),
        ("Opportunity", opportunity["OPPORTUNITY_ID"]),
    ]
    assert event["OWNER_USER_ID"] == me
    assert event["TITLE"] == "Inbound Call from Maya Patel"
    assert (event["START_DATE_UTC"], event["END_DATE_UTC"]) == ("2026-03-12 14:35:20", "2026-03-12 14:43:27")
    assert "Asked about the renewal" in event["DETAILS"] and f"[rc-call-{session_id}]" in event["DETAILS"]

    got = await agent.http.get(
        "/callLog", headers=agent.auth, params={"sessionIds": session_id, "requireDetails": "true"}
    )
    assert got.status_code == 200, got.text
    [entry] = got.json()["logs"]
    assert entry["matched"] is True and entry["logId"] == str(event["EVENT_ID"])
    assert entry["logData"]["note"] == "Asked about the renewal"
    assert entry["logData"]["contactName"] == "Maya Patel"
    assert "[rc-call-" not in entry["logData"]["fullBody"]
    assert entry["logData"]["dispositions"] == {"opportunity": str(opportunity["OPPORTUNITY_ID"])}

    patched = await agent.send(
        "PATCH",
        "/callLog",
        {"sessionId": session_id, "note": "Will call back on Friday", "subject": "Renewal call"},
    )
    assert patched["successful"] is True, patched
    updated = fake.event(event["EVENT_ID"])
    assert (
        "Will call back on Friday" in updated["DETAILS"]
        and "Asked about the renewal" not in updated["DETAILS"]
    )
    assert updated["TITLE"] == "Renewal call"
    assert f"[rc-call-{session_id}]" in updated["DETAILS"]  # the marker survives edits
    assert len(fake.requests_to("/v3.1/events", "PUT")) == 1

    organisation = fake.add_organisation("Acme Ltd")
    project = fake.add_project("Rollout")
    disposed = await agent.send(
        "PUT",
        "/callDisposition",
        {
            "sessionId": session_id,
            "dispositions": {
                "organisation": organisation["ORGANISATION_ID"],
                "opportunity": opportunity["OPPORTUNITY_ID"],
                "project": project["PROJECT_ID"],
            },
        },
    )
    assert disposed["successful"] is True, disposed
    assert links(fake.event(event["EVENT_ID"])) == sorted(
        [
            ("Contact", contact["CONTACT_ID"]),
            ("Opportunity", opportunity["OPPORTUNITY_ID"]),  # kept, not linked twice
            ("Organisation", organisation["ORGANISATION_ID"]),
            ("Project", project["PROJECT_ID"]),
        ]
    )

    conversation = f"conv-{uuid.uuid4().hex}"
    first, second = f"m-{uuid.uuid4().hex}", f"m-{uuid.uuid4().hex}"
    one = await agent.send(
        "POST",
        "/messageLog",
        conversation_body(conversation, contact_id, phone, [sms(first, phone, "Is it ready?")]),
    )
    assert one["successful"] is True and one["logIds"] == [first], one
    two = await agent.send(
        "POST",
        "/messageLog",
        conversation_body(
            conversation,
            contact_id,
            phone,
            [
                sms(second, phone, "Yes, sending it today", "Outbound", "14:40:00"),
                sms(first, phone, "Is it ready?"),
            ],
        ),
    )
    assert two["successful"] is True and two["logIds"] == [second], two
    [conversation_event] = [e for e in fake.all_events() if e["EVENT_ID"] != event["EVENT_ID"]]
    details = conversation_event["DETAILS"]
    assert details.index("Is it ready?") < details.index("Yes, sending it today")
    assert "Conversation(2 messages)" in details and "Jordan Lee" in details
    assert links(conversation_event) == [("Contact", contact["CONTACT_ID"])]
    assert conversation_event["END_DATE_UTC"] == "2026-03-12 14:40:00"

    matched = await agent.find_contact(phone)
    real = [c for c in matched["contact"] if not c.get("isNewContact")]
    assert [(c["id"], c["name"], c["type"]) for c in real] == [(contact_id, "Maya Patel", "contact")]

    out = await agent.http.post("/unAuthorize", headers=agent.auth)
    assert out.status_code == 200, out.text
    assert out.json()["messageType"] == "success"
    again = await agent.http.get("/contact", params={"jwtToken": agent.jwt, "phoneNumber": phone})
    assert again.status_code != 200 or again.json()["successful"] is False


async def test_lead_call_is_linked_to_the_lead(logged_in: Agent, fake_insightly: FakeInsightly) -> None:
    phone = new_phone()
    lead = fake_insightly.add_lead("Sam", "Rivera", mobile=phone)
    found = await logged_in.find_contact(phone)
    assert [(c["id"], c["type"]) for c in found["contact"] if not c.get("isNewContact")] == [
        (str(lead["LEAD_ID"]), "lead")
    ]
    logged = await logged_in.send(
        "POST", "/callLog", call_body(f"s-{uuid.uuid4().hex}", str(lead["LEAD_ID"]), phone, "lead")
    )
    assert logged["successful"] is True, logged
    [event] = fake_insightly.all_events()
    assert links(event) == [("Lead", lead["LEAD_ID"])]


# ------------------------------------------------------------------------------------------------------------
# pod URL handling at login
# ------------------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------------------
# two companies, one USER_ID
# ------------------------------------------------------------------------------------------------------------


async def test_two_companies_with_the_same_user_id_stay_apart(
    ins_server: LiveServer, fake_insightly: FakeInsightly, other_company: FakeInsightly
) -> None:
    """Insightly's USER_IDs are unique only inside one instance: each company's user is a user of its own."""
    first, second = fake_insightly, other_company
    same_id = first.user_id_of(first.default_key)
    assert second.user_id_of(second.default_key) == same_id
    assert first.instance_id != second.instance_id
    phone = new_phone()  # the same caller is a contact in both companies
    mine = first.add_contact("Maya", "Patel", phone=phone)
    second.add_contact("Someone", "Else")  # the record ids differ too, so a crossed id would show
    theirs = second.add_contact("Noor", "Haddad", phone=phone)
    assert mine["CONTACT_ID"] != theirs["CONTACT_ID"]

    async with (
        client_of(ins_server) as http_a,
        client_of(ins_server) as http_b,
    ):
        a, b = Agent(http_a, first), Agent(http_b, second)
        assert (await a.login()).status_code == 200
        assert (await b.login()).status_code == 200
        assert a.jwt != b.jwt
        assert [r.auth_scheme for r in first.requests_to("/v3.1/users/me")] == ["Basic"]
        assert [r.auth_scheme for r in second.requests_to("/v3.1/users/me")] == ["Basic"]

        # neither login ended the other's session; each sees only its own company's contact
        found_a = await a.find_contact(phone)
        found_b = await b.find_contact(phone)
        assert found_a["successful"] is True and found_b["successful"] is True, (found_a, found_b)
        assert [(c["id"], c["name"]) for c in found_a["contact"] if not c.get("isNewContact")] == [
            (str(mine["CONTACT_ID"]), "Maya Patel")
        ]
        assert [(c["id"], c["name"]) for c in found_b["contact"] if not c.get("isNewContact")] == [
            (str(theirs["CONTACT_ID"]), "Noor Haddad")
        ]

        session_a, session_b = f"s-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"
        logged_b = await b.send("POST", "/callLog", call_body(session_b, str(theirs["CONTACT_ID"]), phone))
        assert logged_b["successful"] is True, logged_b
        assert (await a.login()).status_code == 200  # the first company logs in again: still two users
        logged_a = await a.send("POST", "/callLog", call_body(session_a, str(mine["CONTACT_ID"]), phone))
        assert logged_a["successful"] is True, logged_a

        [event_a], [event_b] = first.all_events(), second.all_events()
        assert (logged_a["logId"], logged_b["logId"]) == (str(event_a["EVENT_ID"]), str(event_b["EVENT_ID"]))
        assert links(event_a) == [("Contact", mine["CONTACT_ID"])]
        assert links(event_b) == [("Contact", theirs["CONTACT_ID"])]
        assert event_a["OWNER_USER_ID"] == event_b["OWNER_USER_ID"] == same_id
        assert f"[rc-call-{session_a}]" in event_a["DETAILS"] and session_b not in event_a["DETAILS"]
        assert f"[rc-call-{session_b}]" in event_b["DETAILS"] and session_a not in event_b["DETAILS"]

        # each JWT still reads only its own company's log, after both logins
        for agent, session, other in ((a, session_a, session_b), (b, session_b, session_a)):
            got = await agent.http.get(
                "/callLog", headers=agent.auth, params={"sessionIds": f"{session},{other}"}
            )
            assert got.status_code == 200, got.text
            assert [entry["matched"] for entry in got.json()["logs"]] == [True, False]

        # each company's lookups went to its own instance (a key of the other one would be refused there)
        assert first.requests_to("/v3.1/contacts/search") and second.requests_to("/v3.1/contacts/search")


@pytest.mark.parametrize(
    "api_url",
    [
        "https://attacker.example.com/v3.1/",
        "http://api.na1.insightly.com/v3.1/",
        "https://api.na1.insightly.com.attacker.example/v3.1/",
        "https://api.na1.insightly.com@attacker.example/v3.1/",
        "https://attacker.example/api.na1.insightly.com/v3.1/",
        "https://api.na1.insightly.com:8443/v3.1/",
        "https://169.254.169.254/latest/meta-data",
        "",
    ],
)
async def test_hostile_api_urls_are_refused_without_sending_the_key(agent: Agent, api_url: str) -> None:
    response = await agent.http.post(
        "/apiKeyLogin",
        json={
            "platform": "insightly",
            "apiKey": agent.fake.default_key,
            "hostname": "crm.na1.insightly.com",
            "additionalInfo": {"apiUrl": api_url},
        },
    )
    assert response.status_code == 400, response.text
    assert response.json()["returnMessage"]["message"] == "Could not load user information"
    assert agent.fake.requests == []


async def test_a_key_of_another_pod_or_an_unknown_key_is_refused(agent: Agent) -> None:
    other_pod = agent.fake.add_user("Eve", "Other", pod="eu1")
    for key in (other_pod, "no-such-key"):
        response = await agent.login(api_key=key)
        assert response.status_code == 400, response.text
        details = response.json()["returnMessage"]["details"][0]["items"][0]["text"]
        assert details == "Insightly did not accept the API key."


async def test_pod_url_spellings_store_the_same_origin(agent: Agent, fake_insightly: FakeInsightly) -> None:
    for spelling in (
        fake_insightly.base_url,
        f"{fake_insightly.base_url}/v3.1",
        f"{fake_insightly.base_url}/V3.1/",
    ):
        response = await agent.login(api_url=spelling)
        assert response.status_code == 200, (spelling, response.text)
        fake_insightly.reset_requests()
        await agent.find_contact(new_phone())
        assert all(r.path.startswith("/v3.1/") for r in fake_insightly.requests)


# ------------------------------------------------------------------------------------------------------------
# trust: lost answers never make a second record
# ------------------------------------------------------------------------------------------------------------


async def _wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the fake never finished the slow work"
        await asyncio.sleep(0.05)


async def test_call_log_answer_lost_after_the_work_then_retried_gives_one_linked_event(
    logged_in: Agent, fake_insightly: FakeInsightly
) -> None:
    fake = fake_insightly
    phone = new_phone()
    contact = fake.add_contact("Maya", "Patel", phone=phone)
    session_id = f"s-{uuid.uuid4().hex}"
    body = call_body(session_id, str(contact["CONTACT_ID"]), phone)
    fake.inject(delay=3.0, path_prefix="/v3.1/events", method="POST", when="after")  # read timeout is 2 s
    lost = await logged_in.send("POST", "/callLog", body)
    assert lost["successful"] is False, lost
    await _wait_for(lambda: len(fake.all_events()) == 1)

    retried = await logged_in.send("POST", "/callLog", body)
    assert retried["successful"] is True, retried
    [event] = fake.all_events()
    assert retried["logId"] == str(event["EVENT_ID"])
    assert links(event) == [("Contact", contact["CONTACT_ID"])]
    assert len(fake.requests_to("/v3.1/events", "POST")) == 2  # the create, then one link (on the retry)


async def test_link_call_failing_after_the_event_exists_is_repaired_on_retry(
    logged_in: Agent, fake_insightly: FakeInsightly
) -> None:
    fake = fake_insightly
    phone = new_phone()
    contact = fake.add_contact("Maya", "Patel", phone=phone)
    body = call_body(f"s-{uuid.uuid4().hex}", str(contact["CONTACT_ID"]), phone)
    fake.inject(503, path_prefix="/v3.1/events/", method="POST")  # the link call only
    failed = await logged_in.send("POST", "/callLog", body)
    assert failed["successful"] is False, failed
    [event] = fake.all_events()
    assert event["LINKS"] == []

    retried = await logged_in.send("POST", "/callLog", body)
    assert retried["successful"] is True, retried
    [event] = fake.all_events()
    assert retried["logId"] == str(event["EVENT_ID"])
    assert links(event) == [("Contact", contact["CONTACT_ID"])]

    again = await logged_in.send("POST", "/callLog", body)
    assert again["successful"] is False and "Existing log" in again["returnMessage"]["message"]
    assert len(fake.all_events()) == 1


async def test_link_answer_lost_after_linking_gives_one_link(
    logged_in: Agent, fake_insightly: FakeInsightly
) -> None:
    fake = fake_insightly
    phone = new_phone()
    contact = fake.add_contact("Maya", "Patel", phone=phone)
    body = call_body(f"s-{uuid.uuid4().hex}", str(contact["CONTACT_ID"]), phone)
    fake.inject(delay=3.0, path_prefix="/v3.1/events/", method="POST", when="after")
    lost = await logged_in.send("POST", "/callLog", body)
    assert lost["successful"] is False, lost
    await _wait_for(lambda: len(fake.all_events()) == 1 and fake.all_events()[0]["LINKS"] != [])
    retried = await logged_in.send("POST", "/callLog", body)
    assert retried["successful"] is True, retried
    [event] = fake.all_events()
    assert links(event) == [("Contact", contact["CONTACT_ID"])]


async def test_contact_create_answer_lost_then_retried_gives_one_contact(
    logged_in: Agent, fake_insightly: FakeInsightly
) -> None:
    fake = fake_insightly
    phone = new_phone()
    fake.inject(delay=3.0, path_prefix="/v3.1/contacts", method="POST", when="after")
    slow = await logged_in.create_contact(phone, "Maya Patel", "contact")
    assert slow["successful"] is False, slow
    await _wait_for(lambda: len(fake.all_contacts()) == 1)
    retried = await logged_in.create_contact(phone, "Maya Patel", "contact")
    assert retried["successful"] is True, retried
    [contact] = fake.all_contacts()
    assert retried["contact"]["id"] == str(contact["CONTACT_ID"])
    assert len(fake.requests_to("/v3.1/contacts", "POST")) == 1


async def test_message_log_answer_lost_then_retried_gives_one_event(
    logged_in: Agent, fake_insightly: FakeInsightly
) -> None:
    fake = fake_insightly
    phone = new_phone()
    contact = fake.add_contact("Maya", "Patel", phone=phone)
    body = conversation_body(
        f"conv-{uuid.uuid4().hex}", str(contact["CONTACT_ID"]), phone, [sms("m-1", phone, "hi")]
    )
    fake.inject(delay=3.0, path_prefix="/v3.1/events", method="POST", when="after")
    first = await logged_in.http.post("/messageLog", headers=logged_in.auth, json=body)
    assert first.status_code == 200
    await _wait_for(lambda: len(fake.all_events()) == 1)
    await asyncio.sleep(0.1)
    again = await logged_in.send("POST", "/messageLog", body)
    assert again["successful"] is True, again
    [event] = fake.all_events()
    assert links(event) == [("Contact", contact["CONTACT_ID"])]
    assert event["DETAILS"].count("hi\n") == 1

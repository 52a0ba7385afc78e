"""End to end: the App Connect client's requests through the real server over loopback HTTP, VinSolutions faked.

The connector server holds the partner's client credentials as settings (`VINSOLUTIONS_CLIENT_ID`, ...), as in
production; the user's login page names the dealer and the CRM user. It shares the database of the session
`server` fixture, so everything runs on SQLite and on PostgreSQL. Assertions about what VinSolutions holds
read the fake's own state.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, conversation_body, new_phone
from tests.connectors.vinsolutions.fake_vinsolutions import (
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    DEALER_ID,
    OTHER_DEALER_ID,
    USER_ID,
    FakeVinSolutions,
)
from tests.support.e2e import ClientSession, agent_call_body, client_of, server_beside_fixture

JsonDict = dict[str, Any]


#: A second server on the session server's database and keys, configured with the partner's credentials.
vs_server = server_beside_fixture("vinsolutions", "_fake_vinsolutions_server", crm_rate_limit="off")


class Agent(ClientSession):
    """What the App Connect client does, one method per request."""

    async def login(
        self, dealer_id: int = DEALER_ID, user_id: int = USER_ID, rc_account: str | None = None
    ) -> httpx.Response:
        return await self.api_key_login(
            {
                "platform": "vinsolutions",
                "hostname": "vinsolutions.app.coxautoinc.com",
                "additionalInfo": {"dealerId": str(dealer_id), "crmUserId": str(user_id)},
            },
            headers={"rc-account-id": rc_account or f"acct-{uuid.uuid4().hex[:10]}"},
        )

    async def find_contact(self, phone: str) -> JsonDict:
        response = await self.http.get(
            "/contact",
            params={
                "jwtToken": self.jwt,
                "phoneNumber": phone,
                "isExtension": "false",
                "isForceRefreshAccountData": "true",
            },
        )
        assert response.status_code == 200, response.text
        body: JsonDict = response.json()
        return body


@pytest.fixture
async def agent(vs_server: LiveServer, fake_vinsolutions: FakeVinSolutions) -> AsyncIterator[Agent]:
    async with client_of(vs_server) as http:
        yield Agent(http)


@pytest.fixture
async def logged_in(agent: Agent) -> Agent:
    response = await agent.login()
    assert response.status_code == 200, response.text
    return agent


def call_body(session_id: str, contact_id: str, phone: str, **extra: Any) -> JsonDict:
    return agent_call_body(
        session_id,
        contact_id,
        phone,
        duration=95,
        caller="Avery Chen",
        callee="Morgan Rivera",
        contactType="contact",
        note="Asked about the blue sedan",
        **extra,
    )


def sms(message_id: str, phone: str, text: str, at: str = "14:35:20") -> JsonDict:
    return {
        "id": message_id,
        "type": "SMS",
        "direction": "Inbound",
        "subject": text,
        "creationTime": f"2026-03-12T{at}.000Z",
        "from": {"phoneNumber": phone},
    }


async def test_whole_client_sequence(logged_in: Agent, fake_vinsolutions: FakeVinSolutions) -> None:
    agent, fake = logged_in, fake_vinsolutions
    phone = new_phone()
    miss = await agent.find_contact(phone)
    assert [c["id"] for c in miss["contact"]] == ["createNewContact"]

    made = await agent.send("POST", "/contact", {"phoneNumber": phone, "newContactName": "Avery Chen"})
    assert made["successful"] is True, made
    [contact] = [
        c for c in fake.contacts_of(DEALER_ID) if c["ContactInformation"]["Phones"][0]["Number"] == phone[2:]
    ]
    contact_id = str(contact["ContactId"])
    assert made["contact"]["id"] == contact_id

    lead = fake.add_lead(DEALER_ID, int(contact_id))
    hit = await agent.find_contact(phone)
    [found, placeholder] = hit["contact"]
    assert found["id"] == contact_id and found["name"] == "Avery Chen" and placeholder["isNewContact"] is True
    assert found["additionalInfo"]["leads"][0]["const"] == lead["leadId"]

    session_id = f"s-{uuid.uuid4().hex}"
    logged = await agent.send(
        "POST",
        "/callLog",
        call_body(session_id, contact_id, phone, additionalSubmission={"leads": lead["leadId"]}),
    )
    assert logged["successful"] is True, logged
    [detail] = fake.call_details_of(DEALER_ID, int(contact_id))
    assert logged["logId"] == str(detail["callDetailId"])
    assert detail["providerReferenceId"] == session_id and detail["vinProperties"]["leadId"] == lead["leadId"]
    assert "Asked about the blue sedan" in detail["transcriptFull"]

    got = await agent.http.get(
        "/callLog", headers=agent.auth, params={"sessionIds": session_id, "requireDetails": "true"}
    )
    [entry] = got.json()["logs"]
    assert entry["matched"] is True and entry["logData"]["contactName"] == "Avery Chen"
    assert entry["logData"]["note"] == "Asked about the blue sedan"

    patched = await agent.send("PATCH", "/callLog", {"sessionId": session_id, "note": "Test drive on Friday"})
    assert patched["successful"] is True, patched
    [detail] = fake.call_details_of(DEALER_ID, int(contact_id))
    assert "Test drive on Friday" in detail["transcriptFull"]

    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    first = await agent.send(
        "POST",
        "/messageLog",
        conversation_body(conversation, contact_id, phone, [sms("m1", phone, "Still there?")]),
    )
    assert first["successful"] is True, first
    second = await agent.send(
        "POST",
        "/messageLog",
        conversation_body(
            conversation,
            contact_id,
            phone,
            [sms("m1", phone, "Still there?"), sms("m2", phone, "At 5?", "14:40:00")],
        ),
    )
    assert second["successful"] is True, second
    new_leads = [x for x in fake.leads_of(DEALER_ID, int(contact_id)) if x["leadId"] != lead["leadId"]]
    [sms_lead] = new_leads
    assert sms_lead["notes"].count("[rc-msg-m1]") == 1 and sms_lead["notes"].count("[rc-msg-m2]") == 1

    out = await agent.send("POST", "/unAuthorize", {})
    assert out["message"] == "Logged out of VinSolutions", out
    again = await agent.http.get(
        "/contact", params={"jwtToken": agent.jwt, "phoneNumber": phone, "isExtension": "false"}
    )
    assert again.status_code != 200 or again.json().get("successful") is False, again.text


async def test_the_same_user_id_at_two_dealers_is_two_users(
    agent: Agent, fake_vinsolutions: FakeVinSolutions
) -> None:
    """Contact and user ids are numbered inside each dealer: each session sees only its own dealer's customers."""
    phone = new_phone()
    mine = fake_vinsolutions.add_contact("Avery", "Chen", [phone[2:]], DEALER_ID)
    theirs = fake_vinsolutions.add_contact("Riley", "Stone", [phone[2:]], OTHER_DEALER_ID)
    assert mine["ContactId"] == theirs["ContactId"]

    assert (await agent.login(DEALER_ID)).status_code == 200
    first_jwt = agent.jwt
    [found, _placeholder] = (await agent.find_contact(phone))["contact"]
    assert found["name"] == "Avery Chen"

    assert (await agent.login(OTHER_DEALER_ID)).status_code == 200
    assert agent.jwt != first_jwt
    [found, _placeholder] = (await agent.find_contact(phone))["contact"]
    assert found["name"] == "Riley Stone"
    session_id = f"s-{uuid.uuid4().hex}"
    logged = await agent.send("POST", "/callLog", call_body(session_id, str(theirs["ContactId"]), phone))
    assert logged["successful"] is True, logged
    assert fake_vinsolutions.call_details_of(DEALER_ID, mine["ContactId"]) == []
    assert len(fake_vinsolutions.call_details_of(OTHER_DEALER_ID, theirs["ContactId"])) == 1

    agent.jwt = first_jwt  # the first dealer's session still reads the first dealer
    [found, _placeholder] = (await agent.find_contact(phone))["contact"]
    assert found["name"] == "Avery Chen"


async def test_a_login_the_dealer_does_not_allow_is_refused(
    agent: Agent, fake_vinsolutions: FakeVinSolutions
) -> None:
    fake_vinsolutions.dealers[OTHER_DEALER_ID]["enabled"] = False
    refused = await agent.login(OTHER_DEALER_ID)
    assert refused.status_code == 400
    assert "Verify dealer enablement" in refused.json()["returnMessage"]["message"]
    unknown = await agent.login(DEALER_ID, 424242)
    assert unknown.status_code == 400


async def test_the_client_is_offered_the_dealer_picker_and_the_refresh(agent: Agent) -> None:
    served = (await agent.http.get("/implementedInterfaces", params={"platform": "vinsolutions"})).json()
    assert served["getManagedAuthOptions"] is True and served["refreshUserInfo"] is True
    assert served["listAppointments"] is False


async def test_refreshing_the_user_checks_the_servers_token_at_the_dealer(
    logged_in: Agent, fake_vinsolutions: FakeVinSolutions
) -> None:
    agent, fake = logged_in, fake_vinsolutions
    reads_before = len(fake.requests_to(f"/gateway/v1/tenant/user/id/{USER_ID}", "GET"))
    refreshed = await agent.send("POST", "/user/refreshInfo", {})
    assert refreshed["successful"] is True
    assert refreshed["returnMessage"]["messageType"] == "success"
    assert len(fake.requests_to(f"/gateway/v1/tenant/user/id/{USER_ID}", "GET")) == reads_before + 1

    # the partner token was revoked early: it is replaced, and the user is told all is well
    fake.revoke_tokens()
    tokens_before = fake.token_requests()
    again = await agent.send("POST", "/user/refreshInfo", {})
    assert again["successful"] is True, again
    assert fake.token_requests() == tokens_before + 1
    found = await agent.find_contact(new_phone())  # later requests use the new token
    assert found["successful"] is True, found


async def test_a_refused_token_request_is_a_warning_without_secrets(
    logged_in: Agent, fake_vinsolutions: FakeVinSolutions
) -> None:
    agent, fake = logged_in, fake_vinsolutions
    fake.revoke_tokens()
    fake.inject(400, path_prefix="/connect/token", method="POST", times=5, body={"error": "invalid_client"})
    try:
        response = await agent.http.post("/user/refreshInfo", headers=agent.auth, json={})
    finally:
        fake.clear_faults()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["successful"] is False
    assert body["returnMessage"]["messageType"] == "warning"
    assert "connect again" in body["returnMessage"]["message"]
    for secret in (CLIENT_ID, CLIENT_SECRET, API_KEY, "invalid_client", *fake.tokens):
        assert secret not in response.text

    recovered = await agent.send("POST", "/user/refreshInfo", {})
    assert recovered["successful"] is True, recovered


async def test_a_user_the_dealer_no_longer_has_is_told_to_check_the_connection(
    logged_in: Agent, fake_vinsolutions: FakeVinSolutions
) -> None:
    fake_vinsolutions.users.pop((DEALER_ID, USER_ID))
    answer = await logged_in.send("POST", "/user/refreshInfo", {})
    assert answer["successful"] is False
    assert "Verify dealer enablement" in answer["returnMessage"]["message"]

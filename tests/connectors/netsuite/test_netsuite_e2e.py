"""End to end: the App Connect client's requests through the real server over loopback HTTP, NetSuite faked.

A connector server is started with the `NETSUITE_*` settings pointing at FakeNetSuite, on the database of the
session `server` fixture (SQLite and PostgreSQL). Login goes through the server's own `/oauth-callback` route
and the fake's consent screen and token endpoint of the account's own host; what NetSuite holds is read from
the fake's state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_netsuite import (
    CLIENT_ID,
    DEFAULT_ACCOUNT,
    OTHER_ACCOUNT,
    RECORD_PREFIX,
    SUITEQL_PATH,
    FakeNetSuite,
    app_host,
)

from tests.conftest import (
    LiveServer,
    call_log_body,
    connector_server,
    database_url_for,
    new_phone,
    stored_user,
)
from tests.support.e2e import ClientSession, agent_call_body, client_of, server_beside_fixture

JsonDict = dict[str, Any]
STATE = "platform=netsuite&fillerString=appconnect"


netsuite_live = server_beside_fixture("netsuite", "_fake_netsuite_server", crm_rate_limit="off")


class Agent(ClientSession):
    """What the App Connect client does, one method per request."""

    def __init__(self, http: httpx.AsyncClient, fake: FakeNetSuite) -> None:
        super().__init__(http)
        self.fake = fake

    async def login(self, account: str = DEFAULT_ACCOUNT, *, hostname: str | None = None) -> JsonDict:
        """NetSuite's consent screen (on the account's own host) redirects with the code, the user and the
        account; the client hands the redirect to the server."""
        consent = await self.http.get(
            self.fake.url(app_host(account), "/app/login/oauth2/authorize.nl"),
            params={
                "client_id": CLIENT_ID,
                "response_type": "code",
                "redirect_uri": self.fake.redirect_uri,
                "scope": "restlets rest_webservices",
                "state": STATE,
            },
        )
        body = await self.oauth_callback(
            consent, hostname=hostname or app_host(account), rcAccountId=f"rc-{account}"
        )
        self.jwt = body.get("jwtToken") or ""  # a refused login ends the earlier session here
        return body

    async def find_contact(self, phone: str) -> JsonDict:
        response = await self.http.get("/contact", params={"phoneNumber": phone}, headers=self.auth)
        assert response.status_code in (200, 429, 503), response.text
        body: JsonDict = response.json()
        return body

    async def create_contact(self, phone: str, name: str, kind: str) -> JsonDict:
        response = await self.http.post(
            "/contact",
            headers=self.auth,
            json={"phoneNumber": phone, "newContactName": name, "newContactType": kind},
        )
        body: JsonDict = response.json()
        return body

    async def log_call(self, session_id: str, contact_id: str, phone: str, kind: str) -> JsonDict:
        body = agent_call_body(
            session_id, contact_id, phone, contactType=kind, note="Asked about the renewal"
        )
        response = await self.http.post("/callLog", headers=self.auth, json=body)
        result: JsonDict = response.json()
        return result


@pytest.fixture
async def agent(netsuite_live: LiveServer, fake_netsuite: FakeNetSuite) -> AsyncIterator[Agent]:
    async with client_of(netsuite_live) as http:
        yield Agent(http, fake_netsuite)


async def test_whole_client_sequence(agent: Agent, fake_netsuite: FakeNetSuite, server: LiveServer) -> None:
    fake = fake_netsuite
    # the user pastes the address as NetSuite shows it: upper case works, the API host is lower-cased
    login = await agent.login(hostname="1234567-SB1.app.netsuite.com")
    assert login["name"] == "Alex Agent", login
    [token] = fake.requests_to(fake.path("/services/rest/auth/oauth2/v1/token"), "POST")
    assert token.auth_scheme == "Basic" and token.form and token.form["grant_type"] == "authorization_code"
    user = await stored_user(server, f"1~{DEFAULT_ACCOUNT}-netsuite")
    assert user.hostname == "1234567-sb1.app.netsuite.com"
    assert user.account_scope is not None and DEFAULT_ACCOUNT in user.account_scope

    phone = new_phone()
    unknown = await agent.find_contact(phone)
    assert [c["id"] for c in unknown["contact"]] == ["createNewContact"]

    created = await agent.create_contact(phone, "Maya Patel", "lead")
    assert created["successful"] is True, created
    lead_id = created["contact"]["id"]
    lead = fake.snapshot(fake.account().customers)[int(lead_id)]
    assert fake.stage_of(lead) == "LEAD"

    found = await agent.find_contact(phone)
    assert (found["contact"][0]["id"], found["contact"][0].get("type")) == (lead_id, "lead")

    logged = await agent.log_call("ns-e2e-1", lead_id, phone, "lead")
    assert logged["successful"] is True, logged
    call = fake.snapshot(fake.account().phonecalls)[int(logged["logId"])]
    assert call["company"] == {"id": lead_id}
    assert "Asked about the renewal" in call["message"]
    assert all(h.endswith(".netsuite.com") and h == h.lower() for h in fake.snapshot(fake.hosts_seen))


async def test_accounts_are_separate_tenants(
    agent: Agent, fake_netsuite: FakeNetSuite, server: LiveServer
) -> None:
    """Entity 1 of one account is not entity 1 of another: two users, two scopes, no shared records."""
    fake = fake_netsuite
    assert fake.login_entity[DEFAULT_ACCOUNT] == fake.login_entity[OTHER_ACCOUNT] == 1
    phone = new_phone()
    assert (await agent.login(DEFAULT_ACCOUNT))["jwtToken"]
    created = await agent.create_contact(phone, "Maya Patel", "contact")
    contact_id = created["contact"]["id"]

    other = Agent(agent.http, fake)
    assert (await other.login(OTHER_ACCOUNT))["jwtToken"]
    first = await stored_user(server, f"1~{DEFAULT_ACCOUNT}-netsuite")
    second = await stored_user(server, f"1~{OTHER_ACCOUNT}-netsuite")
    assert first.account_scope != second.account_scope

    # the other account does not see the contact, and cannot log against its id
    assert [c["id"] for c in (await other.find_contact(phone))["contact"]] == ["createNewContact"]
    # an account without subsidiaries: its user was read without one, and creates send none
    assert second.platform_additional_info["subsidiaryId"] == ""
    made = await other.create_contact(new_phone(), "Omar Haddad", "custjob")
    assert made["successful"] is True, made
    logged = await other.log_call("ns-e2e-tenant", contact_id, phone, "contact")
    assert logged["successful"] is False
    assert fake.snapshot(fake.account(DEFAULT_ACCOUNT).phonecalls) == {}
    assert fake.snapshot(fake.account(OTHER_ACCOUNT).phonecalls) == {}
    # and the first account's user is still the first account's
    assert (await agent.find_contact(phone))["contact"][0]["id"] == contact_id


async def test_suiteql_is_refused_without_prefer_transient(fake_netsuite: FakeNetSuite) -> None:
    tokens = fake_netsuite.issue_tokens()
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            fake_netsuite.url("1234567-sb1.suitetalk.api.netsuite.com", SUITEQL_PATH),
            json={"q": "SELECT id FROM contact"},
            headers={"Authorization": f"Bearer {tokens.access_token}"},
        )
    assert answer.status_code == 400
    assert answer.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_HEADER"


async def test_a_concurrency_429_holds_back_every_user_of_that_account(
    fake_netsuite: FakeNetSuite, tmp_path: Path
) -> None:
    """REST, SOAP and RESTlets share one pool per account: after one user's 429 the server sends nothing to
    that account for the wait NetSuite asked, whoever calls; another account is not held back."""
    fake = fake_netsuite
    colleague = fake.add_employee(DEFAULT_ACCOUNT, "Sam", "Colleague", "sam@example.com")
    with connector_server(fake.env(), tmp_path, database_url_for("sqlite", tmp_path)) as live:
        async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:
            alex, sam, other = Agent(http, fake), Agent(http, fake), Agent(http, fake)
            await alex.login(DEFAULT_ACCOUNT)
            fake.login_entity[DEFAULT_ACCOUNT] = colleague["id"]
            await sam.login(DEFAULT_ACCOUNT)
            await other.login(OTHER_ACCOUNT)

            fake.inject(429, path_prefix=fake.path(SUITEQL_PATH), method="POST", retry_after=30, times=2)
            refused = await alex.find_contact(new_phone())
            assert refused.get("successful") is not True
            sent = len(fake.requests_to(fake.path("/services"), None))

            held = await sam.find_contact(new_phone())
            assert held.get("successful") is not True
            assert len(fake.requests_to(fake.path("/services"), None)) == sent  # nothing reached NetSuite

            served = await other.find_contact(new_phone())
            assert served["successful"] is True
            assert fake.requests_to(fake.path(SUITEQL_PATH, OTHER_ACCOUNT), "POST")
            fake.clear_faults()


async def test_a_create_reads_its_id_from_location_only(agent: Agent, fake_netsuite: FakeNetSuite) -> None:
    await agent.login()
    phone = new_phone()
    created = await agent.create_contact(phone, "Maya Patel", "contact")
    [post] = fake_netsuite.requests_to(fake_netsuite.path(f"{RECORD_PREFIX}/contact"), "POST")
    [company] = fake_netsuite.snapshot(fake_netsuite.account().customers).values()  # the placeholder company
    assert post.json == {
        "firstName": "Maya",
        "lastName": "Patel",
        "phone": phone,
        "subsidiary": {"id": "1"},
        "company": {"id": str(company["id"])},
    }
    contacts = fake_netsuite.snapshot(fake_netsuite.account().contacts)
    assert created["contact"]["id"] in {str(i) for i in contacts}


async def test_an_expired_token_is_refreshed_at_the_account_host_and_logout_revokes(
    agent: Agent, fake_netsuite: FakeNetSuite
) -> None:
    """NetSuite's refresh answer has no refresh token (the old one stays good); logout revokes both tokens at
    the account's own revoke endpoint with the client's Basic credentials."""
    fake = fake_netsuite
    fake.grants.expires_in = 60  # inside the server's refresh margin from the start
    await agent.login()
    fake.grants.expires_in = 3600
    fake.advance_time(65)  # the fake now refuses the old access token
    found = await agent.find_contact(new_phone())
    assert found["successful"] is True, found
    token_path = fake.path("/services/rest/auth/oauth2/v1/token")
    grants = [r.form and r.form.get("grant_type") for r in fake.requests_to(token_path, "POST")]
    assert grants == ["authorization_code", "refresh_token"]

    out = await agent.http.post("/unAuthorize", headers=agent.auth)
    assert out.status_code == 200, out.text
    revokes = fake.requests_to(fake.path("/services/rest/auth/oauth2/v1/revoke"), "POST")
    assert len(revokes) == 2 and all(r.auth_scheme == "Basic" for r in revokes)
    assert fake.grants.revoke_calls == 2


async def test_a_sales_order_chosen_on_the_log_form_goes_on_the_call_and_gets_one_note(
    agent: Agent, fake_netsuite: FakeNetSuite
) -> None:
    """The client's sequence with Sales Order logging on: lookup offers the company's orders, the call names
    the chosen one, and the disposition (sent twice) leaves one user note, found again by name search."""
    fake = fake_netsuite
    fake.account().suiteapp = True  # user notes are the SuiteApp's createusernotes RESTlet
    await agent.login()
    settings = {"enableSalesOrderLogging": {"value": True}}
    saved = await agent.http.post("/user/settings", headers=agent.auth, json={"userSettings": settings})
    assert saved.status_code == 200, saved.text
    try:
        phone = new_phone()
        company = fake.add_customer("Zephyr Holdings", "+1 212 555 0188")["id"]
        order = fake.add_transaction("salesorder", company, "Turbines")["id"]
        contact = fake.add_contact("Maya Zephyrine", phone)["id"]
        fake.link_contact(contact, company)

        found = await agent.find_contact(phone)
        [maya] = [c for c in found["contact"] if c["id"] == str(contact)]
        assert maya["additionalInfo"] == {
            "salesorder": [{"const": str(order), "title": f"Sales Order #SO{order} Turbines"}]
        }

        body = call_log_body(
            "ns-e2e-so",
            str(contact),
            phone,
            log_info={"startTime": "2026-03-12T14:35:20.000Z", "duration": 60},
            contactType="contact",
            note="Turbine delivery date",
            additionalSubmission={"salesorder": str(order)},
        )
        logged = (await agent.http.post("/callLog", headers=agent.auth, json=body)).json()
        assert logged["successful"] is True, logged
        call = fake.snapshot(fake.account().phonecalls)[int(logged["logId"])]
        assert call["transaction"] == {"id": order, "type": "salesorder"}

        for _ in range(2):
            answer = await agent.http.put(
                "/callDisposition",
                headers=agent.auth,
                json={"sessionId": "ns-e2e-so", "dispositions": {"salesorder": str(order)}},
            )
            assert answer.json()["successful"] is True, answer.text
        [note] = fake.user_notes()
        assert note["transaction"] == order and "Turbine delivery date" in note["note"]

        searched = await agent.http.get(
            "/custom/contact/search", params={"name": "zephyr"}, headers=agent.auth
        )
        assert {c["id"] for c in searched.json()["contact"]} == {str(company), str(contact)}
    finally:
        await agent.http.post(
            "/user/settings", headers=agent.auth, json={"settingKeysToRemove": list(settings)}
        )


async def test_without_the_suiteapp_a_sales_order_disposition_warns_and_changes_nothing(
    agent: Agent, fake_netsuite: FakeNetSuite
) -> None:
    """No SuiteApp: the call still names its sales order; the disposition's note cannot be written, so the
    client is warned and the phone call's message is as it was."""
    fake = fake_netsuite
    await agent.login()
    settings = {"enableSalesOrderLogging": {"value": True}}
    saved = await agent.http.post("/user/settings", headers=agent.auth, json={"userSettings": settings})
    assert saved.status_code == 200, saved.text
    try:
        phone = new_phone()
        company = fake.add_customer("Quill Works", "+1 212 555 0177")["id"]
        order = fake.add_transaction("salesorder", company, "Paper")["id"]
        body = call_log_body(
            "ns-e2e-so-no-app",
            str(company),
            phone,
            log_info={"startTime": "2026-03-12T14:35:20.000Z", "duration": 60},
            contactType="custjob",
            additionalSubmission={"salesorder": str(order)},
        )
        logged = (await agent.http.post("/callLog", headers=agent.auth, json=body)).json()
        assert logged["successful"] is True, logged
        before = fake.snapshot(fake.account().phonecalls)[int(logged["logId"])]
        assert before["transaction"] == {"id": order, "type": "salesorder"}
        answer = await agent.http.put(
            "/callDisposition",
            headers=agent.auth,
            json={"sessionId": "ns-e2e-so-no-app", "dispositions": {"salesorder": str(order)}},
        )
        reply = answer.json()
        assert reply["returnMessage"]["messageType"] == "warning", reply
        assert "SuiteApp" in reply["returnMessage"]["message"]
        assert fake.snapshot(fake.account().phonecalls)[int(logged["logId"])]["message"] == before["message"]
        assert fake.user_notes() == []
    finally:
        await agent.http.post(
            "/user/settings", headers=agent.auth, json={"settingKeysToRemove": list(settings)}
        )


async def test_with_the_suiteapp_calls_are_timed_in_the_users_zone_and_contacts_get_a_company(
    agent: Agent, fake_netsuite: FakeNetSuite, server: LiveServer
) -> None:
    fake = fake_netsuite
    fake.account().suiteapp = True
    fake.account().timezones[fake.login_entity[DEFAULT_ACCOUNT]] = "America/New_York"
    await agent.login()
    user = await stored_user(server, f"1~{DEFAULT_ACCOUNT}-netsuite")
    assert user.platform_additional_info["oneWorldEnabled"] is True

    phone = new_phone()
    created = await agent.create_contact(phone, "Maya Patel", "contact")
    contact = fake.snapshot(fake.account().contacts)[int(created["contact"]["id"])]
    logged = await agent.log_call("ns-e2e-tz", created["contact"]["id"], phone, "contact")
    assert logged["successful"] is True, logged
    call = fake.snapshot(fake.account().phonecalls)[int(logged["logId"])]
    assert (call["startDate"], call["startTime"], call["endTime"]) == ("2026-03-12", "10:35", "10:43")
    assert call["company"] == contact["company"]


async def test_a_role_missing_permissions_cannot_connect(agent: Agent, fake_netsuite: FakeNetSuite) -> None:
    fake = fake_netsuite
    fake.account().suiteapp = True
    fake.account().denied_permissions = {"LIST_CONTACT"}
    consent = await agent.http.get(
        fake.url(app_host(DEFAULT_ACCOUNT), "/app/login/oauth2/authorize.nl"),
        params={
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": fake.redirect_uri,
            "scope": "restlets rest_webservices",
            "state": STATE,
        },
    )
    response = await agent.http.get(
        "/oauth-callback",
        params={
            "callbackUri": consent.headers["location"],
            "hostname": app_host(DEFAULT_ACCOUNT),
            "rcAccountId": f"rc-{DEFAULT_ACCOUNT}",
        },
    )
    answer = response.json()
    assert answer["returnMessage"]["messageType"] == "warning"
    assert "Lists > Contacts (Full)" in answer["returnMessage"]["message"]
    assert not answer.get("jwtToken")

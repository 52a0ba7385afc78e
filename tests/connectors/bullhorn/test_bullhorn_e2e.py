"""End to end: the App Connect client's requests through the real server over loopback HTTP, Bullhorn faked.

A connector server is started with the `BULLHORN_*` settings pointing at FakeBullhorn, on the database of the
session `server` fixture, so every test runs on SQLite and on PostgreSQL. Login goes through the server's own
`/oauth-callback`, the fake's loginInfo, token endpoint and REST login; what Bullhorn holds is read from the
fake's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fake_bullhorn import CLIENT_ID, DEFAULT_STATUSES, REDIRECT_URI, FakeBullhorn

from tests.conftest import LiveServer, call_log_body, new_phone, stored_user
from tests.support.e2e import ClientSession, client_of, server_beside_fixture

JsonDict = dict[str, Any]


bullhorn_live = server_beside_fixture("bullhorn", "_fake_bullhorn_server", crm_rate_limit="off")


class Agent(ClientSession):
    """What the App Connect client does, one method per request."""

    def __init__(self, http: httpx.AsyncClient, fake: FakeBullhorn) -> None:
        super().__init__(http)
        self.fake = fake

    async def login(
        self, username: str = "agent.east", dc: str = "east", rc_account: str = "rc-1"
    ) -> JsonDict:
        """Bullhorn's login page (at the user's data centre) redirects with a code; the client hands it on
        with the username and the fixed hostname of the manifest."""
        consent = await self.http.get(
            f"{self.fake.base_url}/auth-{dc}/oauth/authorize",
            params={
                "client_id": CLIENT_ID,
                "response_type": "code",
                "redirect_uri": REDIRECT_URI,
                "state": "platform=bullhorn",
                "username": username,
            },
        )
        return await self.oauth_callback(
            consent, hostname="app.bullhornstaffing.com", username=username, rcAccountId=rc_account
        )

    async def find_contact(self, phone: str) -> JsonDict:
        response = await self.http.get(f"/contact?phoneNumber={phone}&isExtension=false", headers=self.auth)
        assert response.status_code == 200, response.text
        body: JsonDict = response.json()
        return body

    async def log_call(self, body: JsonDict) -> JsonDict:
        return await self.send("POST", "/callLog", body)


@pytest.fixture
async def agent(bullhorn_live: LiveServer, fake_bullhorn: FakeBullhorn) -> AsyncIterator[Agent]:
    async with client_of(bullhorn_live) as http:
        yield Agent(http, fake_bullhorn)


def _names(found: JsonDict) -> list[str]:
    return [c["name"] for c in found["contact"] if not c.get("isNewContact")]


def _add_west(fake: FakeBullhorn) -> None:
    fake.add_corporation(2002, "corp2b", dc="west", swimlane="rest42")
    fake.add_user("agent.west", corporation=2002, user_id=501, first="Wes", last="West")


async def test_login_through_the_data_centre_login_info_names(
    agent: Agent, fake_bullhorn: FakeBullhorn, bullhorn_live: LiveServer
) -> None:
    """The client sends the manifest's fixed hostname; the token request goes to the user's data centre,
    with the client credentials as parameters, and is never redirected."""
    _add_west(fake_bullhorn)
    login = await agent.login("agent.west", dc="west")
    assert login["name"] == "Wes West", login
    [token] = fake_bullhorn.requests_to("/auth-west/oauth/token", "POST")
    assert token.form is not None and token.form["client_secret"] == "<redacted>"
    assert token.auth_scheme is None
    assert fake_bullhorn.redirects == 0
    user = await stored_user(bullhorn_live, "501~2002-bullhorn")
    assert user.hostname == "auth-west.bullhornstaffing.com"
    assert (
        user.platform_additional_info["restUrl"]
        == "https://rest42.bullhornstaffing.com/rest-services/corp2b/"
    )


async def test_an_unknown_username_is_refused_before_any_token_request(
    agent: Agent, fake_bullhorn: FakeBullhorn
) -> None:
    consent = await agent.http.get(
        f"{fake_bullhorn.base_url}/auth-east/oauth/authorize",
        params={
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "state": "platform=bullhorn",
            "username": "agent.east",
        },
    )
    response = await agent.http.get(
        "/oauth-callback",
        params={
            "callbackUri": consent.headers["location"],
            "hostname": "app.bullhornstaffing.com",
            "username": "nobody",
        },
    )
    assert response.status_code == 200 and "jwtToken" not in response.json(), response.text
    assert fake_bullhorn.requests_to("/auth-east/oauth/token") == []


async def test_a_307_from_another_data_centre_is_not_followed(
    agent: Agent, fake_bullhorn: FakeBullhorn
) -> None:
    """loginInfo names west but the code is east's (the corporation moved meanwhile): west answers 307, and
    the server refuses the login instead of sending the code and the secret on to the redirect's target."""
    consent = await agent.http.get(
        f"{fake_bullhorn.base_url}/auth-east/oauth/authorize",
        params={
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "state": "platform=bullhorn",
            "username": "agent.east",
        },
    )
    fake_bullhorn.corporations[1001].dc = "west"
    response = await agent.http.get(
        "/oauth-callback",
        params={
            "callbackUri": consent.headers["location"],
            "hostname": "app.bullhornstaffing.com",
            "username": "agent.east",
        },
    )
    assert response.status_code == 200 and "jwtToken" not in response.json(), response.text
    assert fake_bullhorn.redirects == 1
    assert fake_bullhorn.requests_to("/auth-east/oauth/token") == []


async def test_two_corporations_with_the_same_ids_stay_apart(
    agent: Agent, fake_bullhorn: FakeBullhorn
) -> None:
    """User 501 and contact 101 exist in both corporations: each user sees and logs only their own."""
    _add_west(fake_bullhorn)
    phone = new_phone()
    east_person = fake_bullhorn.add_person("Candidate", "East Person", phone)
    west_person = fake_bullhorn.add_person("Candidate", "West Person", phone, corporation=2002)
    assert east_person["id"] == west_person["id"]

    await agent.login("agent.east")
    east_jwt = agent.jwt
    await agent.login("agent.west", dc="west")
    west_jwt = agent.jwt
    assert east_jwt != west_jwt

    west_found = await agent.find_contact(phone)
    assert _names(west_found) == ["West Person"], west_found
    logged = await agent.log_call(
        call_log_body(
            "w-1", str(west_person["id"]), phone, contactType="Candidate", contactName="West Person"
        )
    )
    assert logged["successful"] is True, logged
    assert fake_bullhorn.notes(1001) == [] and len(fake_bullhorn.notes(2002)) == 1

    agent.jwt = east_jwt
    east_found = await agent.find_contact(phone)
    assert _names(east_found) == ["East Person"], east_found


async def test_concurrent_requests_refresh_once_and_keep_the_session(
    agent: Agent, fake_bullhorn: FakeBullhorn, bullhorn_live: LiveServer
) -> None:
    """Access tokens expire quickly and each refresh token works once: requests arriving together when the
    token is due must refresh one at a time, or the second refresh loses the session."""
    fake_bullhorn.grants.expires_in = 60  # inside the server's 2-minute margin: every request finds it due
    await agent.login()
    refreshes_before = fake_bullhorn.grants.refresh_calls
    phone = new_phone()
    fake_bullhorn.add_person("Lead", "Maya Patel", phone)
    answers = await asyncio.gather(*(agent.find_contact(phone) for _ in range(6)))
    assert all(a["successful"] is True and a["contact"][0]["name"] == "Maya Patel" for a in answers), answers
    assert fake_bullhorn.grants.refresh_calls > refreshes_before  # the token was due and was refreshed
    assert fake_bullhorn.refresh_refusals == 0  # no refresh token was presented twice
    user = await stored_user(bullhorn_live, "501~1001-bullhorn")
    assert user.session_revoked is False
    assert fake_bullhorn.grants.refresh_valid(user.refresh_token or "")


async def test_a_call_note_through_the_server(agent: Agent, fake_bullhorn: FakeBullhorn) -> None:
    await agent.login()
    phone = new_phone()
    person = fake_bullhorn.add_person("ClientContact", "Sam Client", phone)
    body = call_log_body(
        "s-77",
        str(person["id"]),
        phone,
        log_info={"startTime": "2026-03-12T14:35:20.000Z", "duration": 95, "direction": "Inbound"},
        contactType="Contact",
        contactName="Sam Client",
        note="Wants the night shift",
        additionalSubmission={"noteActions": "Call"},
    )
    logged = await agent.log_call(body)
    assert logged["successful"] is True, logged
    [note] = fake_bullhorn.notes()
    assert note["action"] == "Call" and note["minutesSpent"] == 2 and note["dateAdded"] == 1773326120000
    assert "Wants the night shift" in note["comments"]


async def test_name_search_through_the_server(agent: Agent, fake_bullhorn: FakeBullhorn) -> None:
    await agent.login()
    fake_bullhorn.add_person("Candidate", "Maya Patel", new_phone())
    fake_bullhorn.add_person("Lead", "Other Person", new_phone())
    found = await agent.http.get("/custom/contact/search", params={"name": "Maya Patel"}, headers=agent.auth)
    assert found.status_code == 200 and found.json()["successful"] is True, found.text
    assert [(c["name"], c["type"]) for c in found.json()["contact"]] == [("Maya Patel", "Candidate")]
    hostile = await agent.http.get(
        "/custom/contact/search", params={"name": 'x") OR (isDeleted:false'}, headers=agent.auth
    )
    assert hostile.status_code == 200 and _names(hostile.json()) == [], hostile.text
    manifest = (await agent.http.get("/crmManifest", params={"platformName": "bullhorn"})).json()
    assert manifest["platforms"]["bullhorn"]["page"]["useContactSearch"] is True


async def test_the_new_contact_form_offers_bullhorns_statuses(
    agent: Agent, fake_bullhorn: FakeBullhorn
) -> None:
    """A miss offers each contact type's statuses; the one chosen is the new record's status."""
    await agent.login()
    phone = new_phone()
    found = await agent.find_contact(phone)
    [entry] = found["contact"]
    assert entry["isNewContact"] is True
    leads = [o["const"] for o in entry["additionalInfo"]["Lead"]["status"]]
    assert leads == ["New", "Qualified", "Converted"]
    created = await agent.http.post(
        "/contact",
        json={
            "phoneNumber": phone,
            "newContactName": "Ada King",
            "newContactType": "Lead",
            "additionalSubmission": {"status": "Qualified"},
        },
        headers=agent.auth,
    )
    assert created.status_code == 200 and created.json()["successful"] is True, created.text
    [(entity, record)] = fake_bullhorn.people()
    assert entity == "Lead" and record["status"] == "Qualified"


def _meta_reads(fake: FakeBullhorn) -> int:
    return len([r for r in fake.requests_to("/rest91/rest-services/corp1a/meta/") if r.method == "GET"])


async def test_bullhorn_data_through_account_data(agent: Agent, fake_bullhorn: FakeBullhorn) -> None:
    """`GET /accountData?keys=bullhornData` answers the reference's shape, kept for the corporation until
    `forceRefresh` reads Bullhorn again."""
    await agent.login()
    fake_bullhorn.corporations[1001].statuses["Lead"] = ["Cold", "Warm"]
    refreshed = await agent.http.get(
        "/accountData", params={"keys": "bullhornData", "forceRefresh": "true"}, headers=agent.auth
    )
    assert refreshed.status_code == 200 and refreshed.json()["successful"] is True, refreshed.text
    data = refreshed.json()["data"]["bullhornData"]
    assert data["leadStatuses"] == [{"const": "Cold", "title": "Cold"}, {"const": "Warm", "title": "Warm"}]
    assert data["commentActionList"][0] == {"const": "Call", "title": "Call"}
    assert [o["const"] for o in data["contactStatuses"]] == ["New Lead", "Active", "Passive", "Archive"]
    reads = _meta_reads(fake_bullhorn)
    assert reads == 3

    fake_bullhorn.corporations[1001].statuses["Lead"] = ["Hot"]
    kept = await agent.http.get("/accountData", params={"keys": "bullhornData"}, headers=agent.auth)
    assert kept.json()["data"]["bullhornData"] == data
    assert _meta_reads(fake_bullhorn) == reads
    placeholder = await agent.http.get(
        "/contact",
        params={"phoneNumber": new_phone(), "isExtension": "false", "isForceRefreshAccountData": "true"},
        headers=agent.auth,
    )
    [entry] = placeholder.json()["contact"]
    assert entry["additionalInfo"]["Lead"] == {"status": [{"const": "Hot", "title": "Hot"}]}
    again = await agent.http.get("/accountData", params={"keys": "bullhornData"}, headers=agent.auth)
    assert again.json()["data"]["bullhornData"]["leadStatuses"] == [{"const": "Hot", "title": "Hot"}]
    # the corporation's defaults kept again for the tests after this one (the account data outlives the test)
    fake_bullhorn.corporations[1001].statuses["Lead"] = list(DEFAULT_STATUSES["Lead"])
    restored = await agent.http.get(
        "/accountData", params={"keys": "bullhornData", "forceRefresh": "true"}, headers=agent.auth
    )
    assert restored.json()["data"]["bullhornData"]["leadStatuses"][0] == {"const": "New", "title": "New"}

    unknown = await agent.http.get("/accountData", params={"keys": "activityTypes"}, headers=agent.auth)
    assert unknown.status_code == 400, unknown.text
    manifest = (await agent.http.get("/crmManifest", params={"platformName": "bullhorn"})).json()
    page = manifest["platforms"]["bullhorn"]["page"]
    [status] = page["newContact"]["additionalFields"]
    assert status["accountDataKey"] == "bullhornData"
    assert status["accountDataPropertyByContactType"]["Lead"] == "leadStatuses"
    actions = [f for f in page["callLog"]["additionalFields"] if f["const"] == "noteActions"]
    assert actions[0]["accountDataProperty"] == "commentActionList"


async def test_an_edited_log_copies_its_note_to_the_persons_comments(
    agent: Agent, fake_bullhorn: FakeBullhorn
) -> None:
    """`PATCH /callLog` with "Copy to contact comments" writes the edited note to the person the log is on."""
    await agent.login()
    phone = new_phone()
    person = fake_bullhorn.add_person("Candidate", "Maya Patel", phone, comments="Old remark")
    logged = await agent.log_call(
        call_log_body("cp-1", str(person["id"]), phone, contactType="Candidate", contactName="Maya Patel")
    )
    assert logged["successful"] is True, logged
    patched = await agent.http.patch(
        "/callLog",
        json={
            "sessionId": "cp-1",
            "note": "Call back Friday",
            "additionalSubmission": {"copyToContactComments": True},
        },
        headers=agent.auth,
    )
    assert patched.status_code == 200 and patched.json()["successful"] is True, patched.text
    [(entity, record)] = fake_bullhorn.people()
    assert entity == "Candidate" and record["comments"] == "Call back Friday"
    [note] = fake_bullhorn.notes()
    assert "Call back Friday" in note["comments"]

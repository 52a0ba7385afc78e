"""Pipedrive's app-uninstall callback through the real server, Pipedrive faked: the company that uninstalled
keeps no users or tokens here, another company keeps everything, and only Pipedrive (the app's client id and
secret as HTTP Basic) may ask. Runs on SQLite and PostgreSQL (the session `server` fixture's database)."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from fake_pipedrive import FakePipedrive
from test_pipedrive_e2e import USER_ID, Agent, agent, pd_server  # noqa: F401 (fixtures)

from appconnect.store.sql import open_database, sql
from tests.conftest import LiveServer, new_phone

COLLEAGUE, OUTSIDER = 22001, 22002
OTHER_COMPANY = 8888
_USERS = sql("SELECT id, access_token, refresh_token FROM users WHERE id = ?")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def login_as(base: Agent, user_id: int) -> Agent:
    """Another Pipedrive user installs the app in their own browser: a session of their own."""
    other = Agent(base.http, base.server, base.fake)
    code = base.fake.issue_code(user_id=user_id)
    response = await other.callback(f"{base.fake.redirect_uri}?code={code}&state=platform%3Dpipedrive")
    assert response.status_code == 200, response.text
    other.jwt = response.json()["jwtToken"]
    return other


def uninstall_body(fake: FakePipedrive, company_id: int, user_id: int) -> dict[str, object]:
    return {
        "client_id": fake.client_id,
        "company_id": company_id,
        "user_id": user_id,
        "timestamp": time.time(),
    }


async def stored(server: LiveServer, user_id: str) -> list[dict[str, object]]:
    """The user's row as the database holds it, read on a connection of the test's own."""
    db = open_database(server.settings.database_url, max_connections=1, acquire_timeout=10)
    try:
        return [dict(row) for row in await db.all(_USERS, user_id)]
    finally:
        await db.close()


@pytest.fixture
async def company(agent: Agent, fake_pipedrive: FakePipedrive) -> tuple[Agent, Agent, Agent]:  # noqa: F811
    """Two users of the fake's company 7777 and one of another company, each logged in."""
    fake_pipedrive.add_colleague(COLLEAGUE, "Sam Colleague")
    outsider = fake_pipedrive.add_colleague(OUTSIDER, "Olive Outsider")
    with fake_pipedrive._lock:
        outsider["company_id"] = OTHER_COMPANY
    await agent.login()
    return agent, await login_as(agent, COLLEAGUE), await login_as(agent, OUTSIDER)


async def test_uninstall_removes_the_companys_users_and_tokens(
    company: tuple[Agent, Agent, Agent], fake_pipedrive: FakePipedrive
) -> None:
    installer, colleague, outsider = company
    server = installer.server
    removed = [USER_ID, f"{COLLEAGUE}-pipedrive"]
    for user_id in removed:
        assert (await stored(server, user_id))[0]["access_token"]

    answer = await installer.http.request(
        "DELETE",
        "/pipedrive-redirect",
        json=uninstall_body(fake_pipedrive, 7777, COLLEAGUE),  # the colleague uninstalled: the company goes
        headers=basic(fake_pipedrive.client_id, fake_pipedrive.client_secret),
    )
    assert answer.status_code == 200 and answer.text == "User deleted"

    for user_id in removed:
        assert await stored(server, user_id) == []  # the row, with its tokens, is gone
    for gone in (installer, colleague):
        # the contract's answer for a session whose user is gone: nothing found, the CRM not asked
        refused = await gone.http.get("/contact", params={"phoneNumber": new_phone()}, headers=gone.auth)
        assert refused.json() == {
            "successful": False,
            "returnMessage": {"message": "Contact not found", "messageType": "warning", "ttl": 5000},
        }
        settings = await gone.http.get("/user/settings", headers=gone.auth)
        assert settings.status_code == 400 and settings.text == "User not found"
    # the other company's user works as before
    kept = await stored(server, f"{OUTSIDER}-pipedrive")
    assert kept and kept[0]["access_token"] and kept[0]["refresh_token"]
    found = await outsider.find_contact(new_phone())
    assert found.status_code == 200 and found.json()["successful"] is True


@pytest.mark.parametrize("credentials", ["wrong-secret", "wrong-client", "bearer", "none"])
async def test_only_pipedrive_may_uninstall(
    company: tuple[Agent, Agent, Agent], fake_pipedrive: FakePipedrive, credentials: str
) -> None:
    installer = company[0]
    sent = {
        "wrong-secret": basic(fake_pipedrive.client_id, "not-the-secret"),
        "wrong-client": basic("someone-else", fake_pipedrive.client_secret),
        "bearer": {"Authorization": f"Bearer {installer.jwt}"},
        "none": {},
    }[credentials]
    answer = await installer.http.request(
        "DELETE", "/pipedrive-redirect", json=uninstall_body(fake_pipedrive, 7777, 12345), headers=sent
    )
    assert answer.status_code == 401 and answer.text == "Unauthorized"
    assert (await stored(installer.server, USER_ID))[0]["access_token"]
    found = await installer.find_contact(new_phone())
    assert found.status_code == 200 and found.json()["successful"] is True


async def test_a_malformed_uninstall_is_refused(
    company: tuple[Agent, Agent, Agent], fake_pipedrive: FakePipedrive
) -> None:
    installer = company[0]
    auth = basic(fake_pipedrive.client_id, fake_pipedrive.client_secret)
    for body in ({"company_id": "7777%"}, {"user_id": 12345}, {"company_id": [7777]}):
        answer = await installer.http.request("DELETE", "/pipedrive-redirect", json=body, headers=auth)
        assert answer.status_code == 400, body
    assert (await stored(installer.server, USER_ID))[0]["access_token"]


def test_uninstall_needs_no_session(pd_server: LiveServer) -> None:  # noqa: F811
    """Pipedrive calls without any App Connect session; a GET of the path is not the uninstall."""
    with httpx.Client(base_url=pd_server.base_url, timeout=10) as client:
        assert client.delete("/pipedrive-redirect").status_code == 401

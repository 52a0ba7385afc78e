"""Server-side call logging into Pipedrive, end to end: the admin maps RingCentral extensions to Pipedrive users,
then a call RingCentral's server-side logging sends for a colleague's extension lands once, owned by that
colleague, with the note the colleague cached. Real server over loopback, FakePipedrive, fake RingCentral
platform, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from fake_pipedrive import FakePipedrive
from test_pipedrive_e2e import Agent, call_body

from tests.conftest import LiveServer, new_phone
from tests.support.e2e import client_of, ringcentral_fixture, sscl_server_fixture
from tests.support.fake_ringcentral import FakeRingCentral

COLLEAGUE = 2001


rc = ringcentral_fixture()
sscl_server = sscl_server_fixture("pipedrive-sscl", "_fake_pipedrive_server")


@pytest.fixture
async def admin(sscl_server: LiveServer, fake_pipedrive: FakePipedrive) -> AsyncIterator[Agent]:
    """The Pipedrive admin (the fake's logged-in user, Jordan Lee), logged in through the server."""
    async with client_of(sscl_server) as http:
        agent = Agent(http, sscl_server, fake_pipedrive)
        await agent.login()
        yield agent


async def test_a_server_side_logged_call_lands_once_under_the_mapped_user(
    admin: Agent, fake_pipedrive: FakePipedrive, rc: FakeRingCentral
) -> None:
    colleague = fake_pipedrive.add_colleague(COLLEAGUE, "Sam Ortiz")
    account = f"acct-{uuid.uuid4().hex[:8]}"
    rc_admin = rc.extension(account, admin=True, name="Jordan Lee", email=fake_pipedrive.user["email"])
    # the phone system still has Sam's old name: the email says who it is
    sam_ext = rc.extension_of(rc.extension(account, name="Samuel Ortiz", email=colleague["email"]))
    # the client names the user's RingCentral account at login: its mapping is the one a call consults
    admin.rc_account_id = account
    await admin.login()

    mapping = await admin.request(
        "POST", "/admin/userMapping", json={}, headers={**admin.auth, "X-RC-Access-Token": rc_admin}
    )
    assert mapping.status_code == 200, mapping.text
    [sam] = [e for e in mapping.json() if e["crmUser"]["id"] == str(COLLEAGUE)]
    assert [str(u["extensionId"]) for u in sam["rcUser"]] == [sam_ext]

    phone = new_phone()
    person = (await admin.create_contact(phone, "Maya Patel"))["contact"]["id"]
    session = f"sscl-{uuid.uuid4().hex[:8]}"
    cached = await admin.request(
        "POST",
        "/callLog/cacheNote",
        json={"sessionId": session, "note": "Renewal in May"},
        headers=admin.auth,
    )
    assert cached.status_code == 200, cached.text
    body = call_body(session, str(person), phone, note="")
    body["logInfo"]["extension"] = {"id": int(sam_ext)}  # RingCentral's call record names its extension
    sscl = {**admin.auth, "User-Agent": "SSCL"}

    logged = await admin.request("POST", "/callLog", json=body, headers=sscl)
    assert logged.status_code == 200 and logged.json()["successful"] is True, logged.text
    again = await admin.request("POST", "/callLog", json=body, headers=sscl)
    assert again.json()["successful"] is False  # RingCentral's retry: the existing log, nothing new

    [activity] = [a for a in fake_pipedrive.activities.values() if a["person_id"] == int(person)]
    assert activity["owner_id"] == COLLEAGUE
    assert "Renewal in May" in str(activity["note"])
    assert str(activity["id"]) == logged.json()["logId"]

    # Sam is renamed in Pipedrive, email and all: the mapping made stays, with the new name
    colleague.update(name="Sam Ortiz-Reyes", email="sam.reyes@example.test")
    fake_pipedrive.colleagues[COLLEAGUE] = colleague
    renamed = await admin.request(
        "POST", "/admin/userMapping", json={}, headers={**admin.auth, "X-RC-Access-Token": rc_admin}
    )
    [sam] = [e for e in renamed.json() if e["crmUser"]["id"] == str(COLLEAGUE)]
    assert sam["crmUser"]["name"] == "Sam Ortiz-Reyes"
    assert [str(u["extensionId"]) for u in sam["rcUser"]] == [sam_ext]


async def test_a_browser_logged_call_stays_with_the_user(
    admin: Agent, fake_pipedrive: FakePipedrive, rc: FakeRingCentral
) -> None:
    """The mapping only moves calls that are assigned: the user's own call is theirs."""
    fake_pipedrive.add_colleague(COLLEAGUE, "Sam Ortiz")
    phone = new_phone()
    person = (await admin.create_contact(phone, "Maya Patel"))["contact"]["id"]
    body = call_body(f"own-{uuid.uuid4().hex[:8]}", str(person), phone)
    body["logInfo"]["extension"] = {"id": 12345678}
    logged = await admin.log_call(body)
    assert logged.json()["successful"] is True, logged.text
    [activity] = [a for a in fake_pipedrive.activities.values() if a["person_id"] == int(person)]
    assert activity["owner_id"] == fake_pipedrive.user["id"]

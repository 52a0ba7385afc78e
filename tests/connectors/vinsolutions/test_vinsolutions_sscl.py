"""A call assigned to a colleague, end to end: the admin maps RingCentral extensions to VinSolutions users, then
a call RingCentral's server-side logging sends for the colleague's extension is a call detail filed under the
colleague (the reference's resolveAssignedCrmUserId). Real server over loopback, FakeVinSolutions, fake
RingCentral platform, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.conftest import LiveServer, new_phone
from tests.connectors.vinsolutions.fake_vinsolutions import DEALER_ID, USER_ID, FakeVinSolutions
from tests.connectors.vinsolutions.test_vinsolutions_e2e import Agent, call_body
from tests.support.e2e import client_of, ringcentral_fixture, sscl_server_fixture
from tests.support.fake_ringcentral import FakeRingCentral

COLLEAGUE = 13077


rc = ringcentral_fixture()
sscl_server = sscl_server_fixture("vinsolutions-sscl", "_fake_vinsolutions_server", crm_rate_limit="off")


@pytest.fixture
async def admin(sscl_server: LiveServer, fake_vinsolutions: FakeVinSolutions) -> AsyncIterator[Agent]:
    """The dealership's admin (the fake's user Morgan Rivera), logged in through the server."""
    async with client_of(sscl_server) as http:
        agent = Agent(http)
        response = await agent.login()
        assert response.status_code == 200, response.text
        yield agent


async def test_a_server_side_logged_call_is_filed_under_the_mapped_colleague(
    admin: Agent, fake_vinsolutions: FakeVinSolutions, rc: FakeRingCentral
) -> None:
    fake = fake_vinsolutions
    fake.add_user(DEALER_ID, COLLEAGUE, "Jamie", "Soto", "jamie@example.test")
    account = f"acct-{uuid.uuid4().hex[:8]}"
    rc_admin = rc.extension(account, admin=True, name="Morgan Rivera", email="morgan@example.test")
    jamie_ext = rc.extension_of(rc.extension(account, name="Jamie Soto", email="jamie@example.test"))
    # the client names the user's RingCentral account at login: its mapping is the one a call consults
    assert (await admin.login(rc_account=account)).status_code == 200
    mapping = await admin.http.post(
        "/admin/userMapping", json={}, headers={**admin.auth, "X-RC-Access-Token": rc_admin}
    )
    assert mapping.status_code == 200, mapping.text
    [jamie] = [e for e in mapping.json() if e["crmUser"]["id"] == str(COLLEAGUE)]
    assert [str(u["extensionId"]) for u in jamie["rcUser"]] == [jamie_ext]

    phone = new_phone()
    contact = fake.add_contact("Avery", "Chen", [phone.removeprefix("+1")])
    session = f"sscl-{uuid.uuid4().hex[:8]}"
    body = call_body(session, str(contact["ContactId"]), phone)
    body["logInfo"]["extension"] = {"id": int(jamie_ext)}
    logged = await admin.http.post("/callLog", json=body, headers={**admin.auth, "User-Agent": "SSCL"})
    assert logged.status_code == 200 and logged.json()["successful"] is True, logged.text
    [detail] = fake.call_details_of(DEALER_ID, contact["ContactId"])
    assert (detail["providerUserId"], detail["vinProperties"]["userId"]) == (str(COLLEAGUE), COLLEAGUE)

    own = call_body(f"own-{uuid.uuid4().hex[:8]}", str(contact["ContactId"]), phone)
    assert (await admin.send("POST", "/callLog", own))["successful"] is True
    mine = [
        d
        for d in fake.call_details_of(DEALER_ID, contact["ContactId"])
        if d["providerReferenceId"] != session
    ]
    assert [d["vinProperties"]["userId"] for d in mine] == [USER_ID]

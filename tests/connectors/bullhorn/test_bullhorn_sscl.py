"""Server-side call logging into Bullhorn through the admin's API user, end to end: the admin maps RingCentral
extensions to Bullhorn users and saves the API user's credentials; a call RingCentral's server-side logging
sends for a colleague's extension becomes one Note written in the API user's own REST session, by the mapped
colleague. Real server over loopback, FakeBullhorn, fake RingCentral platform, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fake_bullhorn import FakeBullhorn
from test_bullhorn_e2e import Agent

from tests.conftest import LiveServer, call_log_body, new_phone
from tests.support.e2e import client_of, ringcentral_fixture, sscl_server_fixture
from tests.support.fake_ringcentral import FakeRingCentral

JsonDict = dict[str, Any]
API_USER = "api.logger"
API_USER_ID = 590
API_PASSWORD = "Bh-api-pw-8841"
COLLEAGUE_ID = 502


rc = ringcentral_fixture()
sscl_server = sscl_server_fixture("bullhorn-sscl", "_fake_bullhorn_server", crm_rate_limit="off")


class Admin:
    """The Bullhorn admin of one RingCentral account: logged in to App Connect, admin at RingCentral."""

    def __init__(self, agent: Agent, rc_token: str) -> None:
        self.agent = agent
        self.rc_token = rc_token

    @property
    def headers(self) -> dict[str, str]:
        return {**self.agent.auth, "X-RC-Access-Token": self.rc_token}

    async def map_users(self) -> list[JsonDict]:
        answer = await self.agent.http.post("/admin/userMapping", json={}, headers=self.headers)
        assert answer.status_code == 200, answer.text
        mapping: list[JsonDict] = answer.json()
        return mapping

    async def save_api_user(self, username: str, password: str) -> httpx.Response:
        fields = {"apiUsername": username, "apiPassword": password}
        return await self.agent.http.post(
            "/admin/serverLoggingSettings", json={"additionalFieldValues": fields}, headers=self.headers
        )

    async def sscl_call(self, body: JsonDict) -> httpx.Response:
        """What RingCentral's server-side logging sends, with the account's App Connect session."""
        return await self.agent.http.post(
            "/callLog", json=body, headers={**self.agent.auth, "User-Agent": "SSCL"}
        )


@pytest.fixture
async def http(sscl_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(sscl_server) as client:
        yield client


async def _admin_of(
    http: httpx.AsyncClient, fake: FakeBullhorn, rc: FakeRingCentral, username: str, dc: str
) -> tuple[Admin, str]:
    """A RingCentral account whose admin is the Bullhorn user `username`, logged in and mapped; the account id
    and the extension id of the colleague (by email) are returned with it."""
    account = f"acct-{uuid.uuid4().hex[:8]}"
    agent = Agent(http, fake)
    await agent.login(username, dc=dc, rc_account=account)
    admin = Admin(agent, rc.extension(account, admin=True, email=f"{username}@example.com"))
    return admin, account


def _sscl_body(person: JsonDict, phone: str, extension: str) -> JsonDict:
    body: JsonDict = call_log_body(
        f"sscl-{uuid.uuid4().hex[:8]}",
        str(person["id"]),
        phone,
        contactType="Candidate",
        contactName=person["name"],
        note="",
    )
    body["logInfo"]["extension"] = {"id": int(extension)}  # RingCentral's call record names its extension
    return body


@pytest.fixture
def east(fake_bullhorn: FakeBullhorn) -> FakeBullhorn:
    """Corporation 1001 with a colleague to map and an API user that signs in with a password."""
    fake_bullhorn.add_user("sam.ortiz", corporation=1001, user_id=COLLEAGUE_ID, first="Sam", last="Ortiz")
    fake_bullhorn.add_user(
        API_USER, corporation=1001, user_id=API_USER_ID, first="Api", last="Logger", password=API_PASSWORD
    )
    return fake_bullhorn


async def _mapped_colleague(admin: Admin, rc: FakeRingCentral, account: str) -> str:
    extension = rc.extension_of(rc.extension(account, name="Samuel Ortiz", email="sam.ortiz@example.com"))
    mapping = await admin.map_users()
    [sam] = [entry for entry in mapping if entry["crmUser"]["id"] == str(COLLEAGUE_ID)]
    assert [str(u["extensionId"]) for u in sam["rcUser"]] == [extension]
    return extension


async def test_a_server_side_logged_call_is_one_note_by_the_api_user_for_the_mapped_colleague(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral
) -> None:
    admin, account = await _admin_of(http, east, rc, "agent.east", "east")
    extension = await _mapped_colleague(admin, rc, account)
    saved = await admin.save_api_user(API_USER, API_PASSWORD)
    assert saved.status_code == 200 and saved.json()["successful"] is True, saved.text
    shown = await http.get("/admin/serverLoggingSettings", headers=admin.headers)
    assert shown.json() == {"apiUsername": API_USER, "apiPassword": "********"}

    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    body = _sscl_body(person, phone, extension)
    logged = await admin.sscl_call(body)
    assert logged.status_code == 200 and logged.json()["successful"] is True, logged.text
    again = await admin.sscl_call(body)
    assert again.json()["successful"] is False  # RingCentral's retry: the existing log, nothing new

    [note] = east.notes(1001)
    assert str(note["id"]) == logged.json()["logId"]
    assert note["commentingPerson"] == {"id": COLLEAGUE_ID}
    assert east.note_authors[(1001, note["id"])] == API_USER_ID  # written in the API user's session
    assert east.password_logins == 1

    # the API user's session ends (idle): the next call signs it in again and goes through
    east.advance_time(east.session_ttl + 1)
    later = await admin.sscl_call(_sscl_body(person, phone, extension))
    assert later.json()["successful"] is True, later.text
    assert east.password_logins == 2
    assert [east.note_authors[(1001, n["id"])] for n in east.notes(1001)] == [API_USER_ID, API_USER_ID]


async def test_server_side_updates_and_dispositions_are_written_by_the_api_user(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral
) -> None:
    """RingCentral's server-side logging updates the Note it logged (`PATCH /callLog`, its user agent) and sets
    its disposition: both in the API user's session, as the create; the same edit from the user's client stays
    in the user's session."""
    admin, account = await _admin_of(http, east, rc, "agent.east", "east")
    extension = await _mapped_colleague(admin, rc, account)
    assert (await admin.save_api_user(API_USER, API_PASSWORD)).status_code == 200
    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    body = _sscl_body(person, phone, extension)
    logged = await admin.sscl_call(body)
    assert logged.json()["successful"] is True, logged.text
    note_id = int(logged.json()["logId"])
    session_id = body["logInfo"]["sessionId"]
    sscl = {**admin.agent.auth, "User-Agent": "SSCL"}

    updated = await http.patch(
        "/callLog", json={"sessionId": session_id, "duration": 185, "result": "Call connected"}, headers=sscl
    )
    assert updated.status_code == 200 and updated.json()["successful"] is True, updated.text
    disposed = await http.put(
        "/callDisposition",
        json={"sessionId": session_id, "dispositions": {"noteActions": "SMS"}},
        headers=sscl,
    )
    assert disposed.json()["successful"] is True, disposed.text
    by_client = await http.put(
        "/callDisposition",
        json={"sessionId": session_id, "dispositions": {"noteActions": "Call"}},
        headers=admin.agent.auth,
    )
    assert by_client.json()["successful"] is True, by_client.text

    assert [(i, who) for _, _, i, who in east.updates] == [
        (note_id, API_USER_ID),
        (note_id, API_USER_ID),
        (note_id, 501),
    ]
    [note] = east.notes(1001)
    assert note["minutesSpent"] == 4 and note["action"] == "Call"
    assert east.password_logins == 1


async def test_an_sscl_user_agent_never_makes_the_api_user_edit_a_colleagues_note(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral
) -> None:
    """The `SSCL` user agent is any client's to send: a user of the account who names a colleague's logged call
    with it has that Note edited in the user's own session (Bullhorn's permissions decide), never the API
    user's. Only the logs the calling session made are written by the API user."""
    admin, account = await _admin_of(http, east, rc, "agent.east", "east")
    await _mapped_colleague(admin, rc, account)
    assert (await admin.save_api_user(API_USER, API_PASSWORD)).status_code == 200
    colleague = Agent(http, east)
    await colleague.login("sam.ortiz", dc="east", rc_account=account)
    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    body = call_log_body(f"own-{uuid.uuid4().hex[:8]}", str(person["id"]), phone, contactType="Candidate")
    logged = await colleague.log_call(body)
    assert logged["successful"] is True, logged
    note_id = int(logged["logId"])
    session_id = body["logInfo"]["sessionId"]  # type: ignore[index]
    spoofed = {**admin.agent.auth, "User-Agent": "SSCL"}

    updated = await http.patch(
        "/callLog", json={"sessionId": session_id, "note": "rewritten", "duration": 185}, headers=spoofed
    )
    assert updated.json()["successful"] is True, updated.text
    disposed = await http.put(
        "/callDisposition",
        json={"sessionId": session_id, "dispositions": {"noteActions": "SMS"}},
        headers=spoofed,
    )
    assert disposed.json()["successful"] is True, disposed.text

    assert [(i, who) for _, _, i, who in east.updates] == [(note_id, 501), (note_id, 501)]
    assert east.password_logins == 0


async def test_copy_to_contact_comments_is_never_written_by_the_api_user(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral
) -> None:
    """Copying the note into the person's `comments` replaces what is there, on any person the request names:
    the `SSCL` user agent (any client's to send) must not let that happen with the API user's rights. The Note
    is the API user's; the copy is the logging user's own write."""
    admin, account = await _admin_of(http, east, rc, "agent.east", "east")
    extension = await _mapped_colleague(admin, rc, account)
    assert (await admin.save_api_user(API_USER, API_PASSWORD)).status_code == 200
    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    body = _sscl_body(person, phone, extension)
    body["note"] = "Wants the night shift"
    body["additionalSubmission"] = {"copyToContactComments": True}
    logged = await admin.sscl_call(body)
    assert logged.json()["successful"] is True, logged.text
    [note] = east.notes(1001)
    assert east.note_authors[(1001, note["id"])] == API_USER_ID
    assert [(entity, who) for _, entity, _, who in east.updates] == [("Candidate", 501)]


async def test_another_ringcentral_accounts_mapping_never_names_a_calls_owner(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral
) -> None:
    """A user of the same corporation who is the admin of a RingCentral account of their own may map any
    extension id there (a manual choice is not checked against the account's extensions). A call of this
    account's extension must still be owned as this account's mapping says (here: unmapped, so the logging
    user's), never as that other account's mapping says."""
    admin, account = await _admin_of(http, east, rc, "agent.east", "east")
    unmapped = rc.extension_of(rc.extension(account, name="Front desk"))
    east.add_user("mallory", corporation=1001, user_id=503, first="Mal", last="Lory")
    mallory = Agent(http, east)
    own_account = f"acct-{uuid.uuid4().hex[:8]}"
    await mallory.login("mallory", dc="east", rc_account=own_account)
    own_admin = rc.extension(own_account, admin=True, email="mallory@example.com")
    forged = await http.post(
        "/admin/settings",
        json={
            "adminSettings": {"userMappings": [{"crmUserId": str(COLLEAGUE_ID), "rcExtensionId": [unmapped]}]}
        },
        headers={**mallory.auth, "X-RC-Access-Token": own_admin},
    )
    assert forged.status_code == 200, forged.text

    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    logged = await admin.sscl_call(_sscl_body(person, phone, unmapped))
    assert logged.json()["successful"] is True, logged.text
    [note] = east.notes(1001)
    assert note["commentingPerson"] == {"id": 501}


async def test_wrong_api_user_credentials_are_a_clean_error_without_the_secret(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin, account = await _admin_of(http, east, rc, "agent.east", "east")
    extension = await _mapped_colleague(admin, rc, account)
    wrong = "Wrong-pw-5521"
    assert (await admin.save_api_user(API_USER, wrong)).status_code == 200

    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    body = _sscl_body(person, phone, extension)
    refused = await admin.sscl_call(body)
    assert refused.status_code == 200, refused.text
    answer = refused.json()
    assert answer["successful"] is False
    assert "API user" in str(answer["returnMessage"]), answer
    assert wrong not in refused.text and wrong not in caplog.text
    assert east.notes(1001) == [] and east.password_logins == 1

    # the admin corrects the password: the call RingCentral sends again is logged
    assert (await admin.save_api_user(API_USER, API_PASSWORD)).status_code == 200
    logged = await admin.sscl_call(body)
    assert logged.json()["successful"] is True, logged.text
    [note] = east.notes(1001)
    assert east.note_authors[(1001, note["id"])] == API_USER_ID
    assert API_PASSWORD not in caplog.text


async def test_an_api_user_of_another_corporation_never_writes_here(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral
) -> None:
    """The admin names a Bullhorn user of another corporation: it signs in, but no Note is written anywhere."""
    east.add_corporation(2002, "corp2b", dc="west", swimlane="rest42")
    east.add_user(
        "api.west", corporation=2002, user_id=COLLEAGUE_ID, first="W", last="Api", password="West-pw"
    )
    east.add_person("Candidate", "Other Person", new_phone(), corporation=2002)
    admin, account = await _admin_of(http, east, rc, "agent.east", "east")
    extension = await _mapped_colleague(admin, rc, account)
    assert (await admin.save_api_user("api.west", "West-pw")).status_code == 200

    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    refused = await admin.sscl_call(_sscl_body(person, phone, extension))
    assert refused.json()["successful"] is False, refused.text
    assert "API user" in str(refused.json()["returnMessage"])
    assert east.notes(1001) == [] and east.notes(2002) == []


async def test_another_accounts_api_user_is_never_used(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral
) -> None:
    """A user whose client claims another RingCentral account at login: that account's settings were made for
    another Bullhorn corporation, so the call is written in the user's own session, and no API user signs in."""
    east.add_corporation(2002, "corp2b", dc="west", swimlane="rest42")
    east.add_user("agent.west", corporation=2002, user_id=501, first="Wes", last="West")
    east.add_user(
        "api.west", corporation=2002, user_id=COLLEAGUE_ID, first="W", last="Api", password="West-pw"
    )
    west_admin, west_account = await _admin_of(http, east, rc, "agent.west", "west")
    await west_admin.map_users()
    assert (await west_admin.save_api_user("api.west", "West-pw")).status_code == 200

    intruder = Agent(http, east)
    await intruder.login("agent.east", dc="east", rc_account=west_account)
    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    body = _sscl_body(person, phone, "77001")
    logged = await http.post("/callLog", json=body, headers={**intruder.auth, "User-Agent": "SSCL"})
    assert logged.json()["successful"] is True, logged.text
    [note] = east.notes(1001)
    assert east.note_authors[(1001, note["id"])] == 501  # the session's own user
    assert east.password_logins == 0


async def test_calls_arriving_together_sign_the_api_user_in_once(
    http: httpx.AsyncClient, east: FakeBullhorn, rc: FakeRingCentral
) -> None:
    admin, account = await _admin_of(http, east, rc, "agent.east", "east")
    extension = await _mapped_colleague(admin, rc, account)
    assert (await admin.save_api_user(API_USER, API_PASSWORD)).status_code == 200
    phone = new_phone()
    person = east.add_person("Candidate", "Maya Patel", phone)
    answers = await asyncio.gather(*(admin.sscl_call(_sscl_body(person, phone, extension)) for _ in range(5)))
    assert all(a.json()["successful"] is True for a in answers), [a.text for a in answers]
    assert len(east.notes(1001)) == 5
    assert east.password_logins == 1


async def test_the_manifest_asks_the_admin_for_the_api_user(http: httpx.AsyncClient) -> None:
    manifest = (await http.get("/crmManifest", params={"platformName": "bullhorn"})).json()
    fields = manifest["platforms"]["bullhorn"]["serverSideLogging"]["additionalFields"]
    assert [f["const"] for f in fields][:2] == ["apiUsername", "apiPassword"]
    assert fields[1]["uiSchema"] == {"ui:widget": "password"}

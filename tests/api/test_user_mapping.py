"""A company's user mapping and RingCentral's server-side call logging, through the real server over loopback:
the fake RingCentral platform lists the account's extensions, the embedded test CRM its users (SQLite and
PostgreSQL)."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from appconnect.flows.admin import RC_UNAVAILABLE
from appconnect.store.sql import sql
from tests.api.test_user_and_first_write import rows
from tests.conftest import (
    CrmView,
    LiveServer,
    api_key_login,
    call_log_body,
    crm_admin_headers,
    database_url_for,
    new_phone,
    start_server,
)
from tests.support.fake_ringcentral import EXTENSIONS_PATH, FakeRingCentral

_NOTES = sql("SELECT scope FROM call_note_cache WHERE session_id = ?")
_MAPPING = sql("SELECT crm_scope FROM user_mappings WHERE rc_account = ?")
SSCL = {"User-Agent": "SSCL"}


@pytest.fixture(scope="module")
def rc() -> Iterator[FakeRingCentral]:
    with FakeRingCentral() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, rc: FakeRingCentral
) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp(f"mapping-{request.param}")
    yield from start_server(folder, database_url_for(request.param, folder), ringcentral_server=rc.base_url)


class CrmUserMade:
    """A user of the test CRM: its id, and an App Connect session of its own."""

    def __init__(self, client: httpx.Client, name: str, email: str) -> None:
        made = client.post(
            "/testcrm/api/v1/api-keys", json={"name": name, "email": email}, headers=crm_admin_headers()
        )
        assert made.status_code == 201, made.text
        self.id = str(made.json()["user"]["id"])
        self.api_key: str = made.json()["apiKey"]
        self.jwt = api_key_login(client, self.api_key)
        self.auth = {"Authorization": f"Bearer {self.jwt}"}


def mapping_of(answer: httpx.Response, crm_user_id: str) -> list[str]:
    """The extension ids the answer maps this CRM user to."""
    assert answer.status_code == 200, answer.text
    [entry] = [e for e in answer.json() if e["crmUser"]["id"] == crm_user_id]
    return [str(rc_user["extensionId"]) for rc_user in entry["rcUser"]]


def ask_mapping(
    client: httpx.Client, admin: CrmUserMade, rc_token: str, *, reinitialize: bool = False
) -> httpx.Response:
    path = "/admin/reinitializeUserMapping" if reinitialize else "/admin/userMapping"
    # the reference client sends its own extension list: the server asks RingCentral instead
    return client.post(
        path,
        json={"rcExtensionList": [{"id": 1, "email": "forged@example.test"}]},
        headers={**admin.auth, "X-RC-Access-Token": rc_token},
    )


def test_extensions_are_matched_by_email_then_name_and_manual_choices_stay(
    client: httpx.Client, rc: FakeRingCentral
) -> None:
    tag = uuid.uuid4().hex[:8]
    account = f"acct-{tag}"
    admin = CrmUserMade(client, f"Admin {tag}", f"admin-{tag}@corp.example")
    # renamed in the CRM since the phone system was set up: the email still says who it is
    sam = CrmUserMade(client, f"Samantha Ortiz-Reyes {tag}", f"sam-{tag}@corp.example")
    # a different email in each system: the name says who it is
    kim = CrmUserMade(client, f"Kim Park {tag}", f"kim-{tag}@crm.example")
    lee = CrmUserMade(client, f"Lee Wong {tag}", f"lee-{tag}@crm.example")
    rc_admin = rc.extension(account, admin=True, name=f"Admin {tag}", email=f"admin-{tag}@corp.example")
    sam_ext = rc.extension_of(rc.extension(account, name="Sam Ortiz", email=f"SAM-{tag}@corp.example"))
    kim_ext = rc.extension_of(rc.extension(account, name=f"Kim Park {tag}", email=f"kim-{tag}@rc.example"))
    spare_ext = rc.extension_of(rc.extension(account, name=f"Front desk {tag}"))
    rc.page_size = 2  # the account's extensions come in pages
    try:
        first = ask_mapping(client, admin, rc_admin)
    finally:
        rc.page_size = 1000
    assert mapping_of(first, sam.id) == [sam_ext]
    assert mapping_of(first, kim.id) == [kim_ext]
    assert mapping_of(first, lee.id) == []
    assert mapping_of(first, admin.id) == [rc.extension_of(rc_admin)]
    [sam_entry] = [e for e in first.json() if e["crmUser"]["id"] == sam.id]
    assert sam_entry["crmUser"] == {
        "id": sam.id,
        "name": sam_entry["crmUser"]["name"],
        "email": f"sam-{tag}@corp.example",
    }
    assert set(sam_entry["rcUser"][0]) == {"extensionId", "name", "extensionNumber", "email"}
    assert len(rc.requests_to(EXTENSIONS_PATH)) >= 3  # pages 1, 2 (and 3) of this account

    # the admin maps the front desk to Lee and takes Kim's extension away from Kim, by hand
    manual = client.post(
        "/admin/settings",
        json={
            "adminSettings": {
                "userMappings": [
                    {"crmUserId": lee.id, "rcExtensionId": [spare_ext]},
                    {"crmUserId": kim.id, "rcExtensionId": []},
                ]
            }
        },
        headers={"X-RC-Access-Token": rc_admin},
    )
    assert manual.status_code == 200, manual.text
    again = ask_mapping(client, admin, rc_admin)
    assert mapping_of(again, lee.id) == [spare_ext] and mapping_of(again, kim.id) == []

    # re-initialising matches everything again, except what the admin chose
    fresh = ask_mapping(client, admin, rc_admin, reinitialize=True)
    assert mapping_of(fresh, lee.id) == [spare_ext]
    assert mapping_of(fresh, kim.id) == []
    assert mapping_of(fresh, sam.id) == [sam_ext]


@pytest.mark.parametrize("with_session", [True, False], ids=["crm-session", "rc-token-only"])
def test_manual_choices_saved_before_any_mapping_are_kept(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral, with_session: bool
) -> None:
    """The admin's first act may be a manual choice: it is kept (as the reference keeps it in the admin row)
    and the first mapping honours it, instead of matching the extension to someone else."""
    tag = uuid.uuid4().hex[:8]
    account = f"acct-{tag}"
    admin = CrmUserMade(client, f"Admin {tag}", f"admin-{tag}@corp.example")
    lee = CrmUserMade(client, f"Lee Wong {tag}", f"lee-{tag}@crm.example")
    rc_admin = rc.extension(account, admin=True, name=f"Admin {tag}", email=f"admin-{tag}@corp.example")
    # named like Lee, but the admin knows it is the front desk's phone, not Lee's
    lee_named = rc.extension_of(rc.extension(account, name=f"Lee Wong {tag}"))
    desk = rc.extension_of(rc.extension(account, name=f"Front desk {tag}"))

    headers = {"X-RC-Access-Token": rc_admin, **(admin.auth if with_session else {})}
    saved = client.post(
        "/admin/settings",
        json={"adminSettings": {"userMappings": [{"crmUserId": lee.id, "rcExtensionId": [desk]}]}},
        headers=headers,
    )
    assert (saved.status_code, saved.text) == (200, "Admin settings updated")
    account_key = client.get("/userInfoHash", params={"extensionId": "1", "accountId": account}).json()
    [row] = rows(server, _MAPPING, account_key["accountId"])
    # with the admin's CRM session the row is made against that CRM account; without, it waits for one
    assert bool(row["crm_scope"]) is with_session

    first = ask_mapping(client, admin, rc_admin)
    assert mapping_of(first, lee.id) == [desk]
    assert lee_named not in mapping_of(first, lee.id)
    # and it is the admin's choice: re-initialising keeps it
    assert mapping_of(ask_mapping(client, admin, rc_admin, reinitialize=True), lee.id) == [desk]


def test_ringcentral_failing_to_list_extensions_is_not_a_refusal(
    client: httpx.Client, rc: FakeRingCentral
) -> None:
    tag = uuid.uuid4().hex[:8]
    account = f"acct-{tag}"
    admin = CrmUserMade(client, f"Admin {tag}", f"admin-{tag}@corp.example")
    rc_admin = rc.extension(account, admin=True, name=f"Admin {tag}")
    assert ask_mapping(client, admin, rc_admin).status_code == 200  # who the admin is: now known a while
    rc.inject(503, times=10, path_prefix=EXTENSIONS_PATH, method="GET")
    try:
        answer = ask_mapping(client, admin, rc_admin)
    finally:
        rc.clear_faults()
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == RC_UNAVAILABLE
    assert ask_mapping(client, admin, rc_admin).status_code == 200


def test_only_an_admin_with_a_session_maps_users(client: httpx.Client, rc: FakeRingCentral) -> None:
    tag = uuid.uuid4().hex[:8]
    account = f"acct-{tag}"
    agent = CrmUserMade(client, f"Agent {tag}", f"agent-{tag}@corp.example")
    not_admin = rc.extension(account)
    refused = ask_mapping(client, agent, not_admin)
    assert refused.status_code == 403 and refused.text == "Admin validation failed"
    expired = rc.extension(account, admin=True)
    rc.expire(expired)
    assert ask_mapping(client, agent, expired).status_code == 403
    no_session = client.post("/admin/userMapping", json={}, headers={"X-RC-Access-Token": not_admin})
    assert no_session.status_code == 400
    # a non-admin's "manual choices" change nothing either
    choice = client.post(
        "/admin/settings",
        json={"adminSettings": {"userMappings": [{"crmUserId": agent.id, "rcExtensionId": ["1"]}]}},
        headers={"X-RC-Access-Token": not_admin},
    )
    assert choice.status_code == 403


# --- server-side call logging -------------------------------------------------------------------------------


def new_contact(client: httpx.Client, user: CrmUserMade, phone: str) -> str:
    made = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Ada Caller", "newContactType": "contact"},
        headers=user.auth,
    )
    assert made.status_code == 200, made.text
    return str(made.json()["contact"]["id"])


def cache_note(client: httpx.Client, user: CrmUserMade, session_id: str, note: str) -> None:
    answer = client.post(
        "/callLog/cacheNote", json={"sessionId": session_id, "note": note}, headers=user.auth
    )
    assert answer.status_code == 200, answer.text


def sscl_body(session_id: str, contact_id: str, phone: str, **extra: Any) -> dict[str, Any]:
    """What server-side logging sends: the call record, no note of its own."""
    body = call_log_body(session_id, contact_id, phone, **extra)
    body.pop("note")
    return body


def test_a_server_side_logged_call_gets_the_cached_note_once(
    server: LiveServer, client: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    agent = CrmUserMade(client, f"Agent {tag}", f"agent-{tag}@corp.example")
    crm = CrmView(client, agent.api_key)
    phone = new_phone()
    contact = new_contact(client, agent, phone)
    session = f"sscl-{tag}"
    cache_note(client, agent, session, "Wants the premium plan")

    logged = client.post("/callLog", json=sscl_body(session, contact, phone), headers={**agent.auth, **SSCL})
    assert logged.status_code == 200 and logged.json()["successful"] is True, logged.text
    [activity] = crm.activities_of(contact)
    assert "Wants the premium plan" in str(activity["body"])
    assert rows(server, _NOTES, session) == []  # merged, then gone

    # RingCentral did not get the answer and sends the call again: still one activity
    again = client.post("/callLog", json=sscl_body(session, contact, phone), headers={**agent.auth, **SSCL})
    assert again.json()["successful"] is False
    assert again.json()["returnMessage"]["message"] == f"Existing log for session {session}"
    assert len(crm.activities_of(contact)) == 1


def test_a_note_cached_in_one_crm_account_never_reaches_another(
    server: LiveServer, client: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    ours = CrmUserMade(client, f"Ours {tag}", f"ours-{tag}@a.example")
    theirs = CrmUserMade(client, f"Theirs {tag}", f"theirs-{tag}@b.example")
    session = f"shared-{tag}"  # the same call session id, planted by the other company
    cache_note(client, theirs, session, "Planted by another company")
    phone = new_phone()
    contact = new_contact(client, ours, phone)

    logged = client.post("/callLog", json=sscl_body(session, contact, phone), headers={**ours.auth, **SSCL})
    assert logged.json()["successful"] is True, logged.text
    [activity] = CrmView(client, ours.api_key).activities_of(contact)
    assert "Planted" not in str(activity["body"])
    assert len(rows(server, _NOTES, session)) == 1  # theirs stays theirs, untouched


def test_a_browser_logged_call_does_not_take_the_cached_note(
    server: LiveServer, client: httpx.Client
) -> None:
    """Only server-side logging merges: the browser sends the note itself."""
    tag = uuid.uuid4().hex[:8]
    agent = CrmUserMade(client, f"Agent {tag}", f"agent-{tag}@corp.example")
    phone = new_phone()
    contact = new_contact(client, agent, phone)
    session = f"browser-{tag}"
    cache_note(client, agent, session, "Cached copy")
    body = call_log_body(session, contact, phone, note="Typed in the browser")
    assert client.post("/callLog", json=body, headers=agent.auth).json()["successful"] is True
    [activity] = CrmView(client, agent.api_key).activities_of(contact)
    assert "Typed in the browser" in str(activity["body"]) and "Cached copy" not in str(activity["body"])
    assert len(rows(server, _NOTES, session)) == 1


def test_an_sscl_retry_after_a_lost_crm_answer_makes_no_second_activity(
    server: LiveServer, client: httpx.Client
) -> None:
    """The CRM writes the activity after the server gave up waiting; RingCentral's retry adopts it."""
    tag = uuid.uuid4().hex[:8]
    agent = CrmUserMade(client, f"Agent {tag}", f"agent-{tag}@corp.example")
    crm = CrmView(client, agent.api_key)
    phone = new_phone()
    contact = new_contact(client, agent, phone)
    session = f"lost-{tag}"
    cache_note(client, agent, session, "Call back Tuesday")
    crm.inject(delay_seconds=3.0, times=1, method="POST", path_prefix="/api/v1/activities")
    try:
        slow = client.post(
            "/callLog", json=sscl_body(session, contact, phone), headers={**agent.auth, **SSCL}
        )
        assert slow.json()["successful"] is False
    finally:
        crm.clear_faults()
    time.sleep(1.5)  # the slow CRM finishes the write it was still doing
    assert len(rows(server, _NOTES, session)) == 1  # not logged yet as far as the server knows: kept

    retried = client.post("/callLog", json=sscl_body(session, contact, phone), headers={**agent.auth, **SSCL})
    assert retried.json()["successful"] is True, retried.text
    [activity] = crm.activities_of(contact)
    assert retried.json()["logId"] == str(activity["id"])
    assert "Call back Tuesday" in str(activity["body"])
    assert rows(server, _NOTES, session) == []


def test_the_client_is_told_notes_are_merged(client: httpx.Client) -> None:
    interfaces = client.get("/implementedInterfaces", params={"platform": "testcrm"}).json()
    assert interfaces["cacheCallNote"] is True


def test_the_references_newer_call_fields_reach_the_log(client: httpx.Client) -> None:
    """RingSense's summary, score and transcript reach the log on create and on a later update; the voicemail
    message id and the recording download link are taken (for connectors that use them)."""
    tag = uuid.uuid4().hex[:8]
    agent = CrmUserMade(client, f"Agent {tag}", f"agent-{tag}@corp.example")
    phone = new_phone()
    contact = new_contact(client, agent, phone)
    session = f"sense-{tag}"
    body = sscl_body(
        session,
        contact,
        phone,
        ringSenseSummary="Wants a quote",
        ringSenseAIScore=87,
        voicemailMessageId="vm-1",
        recordingDownloadLink="https://media.example/recording/1",
    )
    assert client.post("/callLog", json=body, headers={**agent.auth, **SSCL}).json()["successful"] is True
    update = {"sessionId": session, "ringSenseTranscript": "Agent: hello", "ringSenseSummary": "Signed"}
    patched = client.patch("/callLog", json=update, headers=agent.auth)
    assert patched.json()["successful"] is True, patched.text
    [activity] = CrmView(client, agent.api_key).activities_of(contact)
    text = str(activity["body"])
    assert "- ACE summary:\nSigned\n--- END" in text and "Wants a quote" not in text
    assert "- Call score: 87" in text and "- ACE transcript:\nAgent: hello" in text


def test_two_admins_saving_manual_choices_at_once_lose_neither(
    client: httpx.Client, server: LiveServer, rc: FakeRingCentral
) -> None:
    """The mapping is one row read, changed and written back: saves that overlap must not undo each other."""
    tag = uuid.uuid4().hex[:8]
    account = f"acct-{tag}"
    admin = CrmUserMade(client, f"Admin {tag}", f"admin-{tag}@corp.example")
    agents = [CrmUserMade(client, f"Agent {i} {tag}", f"agent{i}-{tag}@crm.example") for i in range(12)]
    rc_admin = rc.extension(account, admin=True, name=f"Admin {tag}", email=f"admin-{tag}@corp.example")
    other_admin = rc.extension(account, admin=True, name=f"Second admin {tag}")
    desks = [rc.extension_of(rc.extension(account, name=f"Desk {i} {tag}")) for i in range(12)]
    assert ask_mapping(client, admin, rc_admin).status_code == 200

    def save(index: int) -> int:
        token = rc_admin if index % 2 else other_admin
        choice = {"crmUserId": agents[index].id, "rcExtensionId": [desks[index]]}
        with httpx.Client(base_url=server.base_url, timeout=30) as own:
            answer = own.post(
                "/admin/settings",
                json={"adminSettings": {"userMappings": [choice]}},
                headers={"X-RC-Access-Token": token},
            )
        return answer.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        assert list(pool.map(save, range(12))) == [200] * 12
    final = ask_mapping(client, admin, rc_admin)
    assert [mapping_of(final, agent.id) for agent in agents] == [[desk] for desk in desks]


@pytest.mark.parametrize(
    "entry",
    [
        {"crmUserId": "u" * 256, "rcExtensionId": ["1"]},
        {"crmUserId": "7", "rcExtensionId": ["9" * 65]},
        {"crmUserId": "", "rcExtensionId": ["1"]},
    ],
)
def test_a_manual_choice_with_an_id_no_crm_or_ringcentral_has_is_a_400(
    client: httpx.Client, rc: FakeRingCentral, entry: dict[str, Any]
) -> None:
    """Ids are kept in the mapping and sent to the CRM as a call's owner: one far longer than any CRM user id
    (or RingCentral extension id) is refused, naming the field, and nothing of the save is kept."""
    tag = uuid.uuid4().hex[:8]
    account = f"acct-{tag}"
    admin = CrmUserMade(client, f"Admin {tag}", f"admin-{tag}@corp.example")
    rc_admin = rc.extension(account, admin=True, name=f"Admin {tag}", email=f"admin-{tag}@corp.example")
    assert ask_mapping(client, admin, rc_admin).status_code == 200
    answer = client.post(
        "/admin/settings",
        json={"adminSettings": {"userSettings": {"theme": {"value": "dark"}}, "userMappings": [entry]}},
        headers={"X-RC-Access-Token": rc_admin},
    )
    assert answer.status_code == 400, answer.text
    assert "adminSettings.userMappings" in answer.json()["returnMessage"]["message"]
    settings = client.get("/admin/settings", headers={**admin.auth, "X-RC-Access-Token": rc_admin})
    assert settings.json()["userSettings"] == {}

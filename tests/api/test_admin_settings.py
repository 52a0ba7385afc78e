"""A company's rollout: an admin, verified with RingCentral (a fake platform on loopback), sets settings that
every user of the same RingCentral account receives; nobody else reads or writes them (SQLite and PostgreSQL)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from appconnect.flows.admin import RC_UNAVAILABLE
from appconnect.store.sql import sql
from tests.api.test_user_and_first_write import rows
from tests.conftest import LiveServer, api_key_login, database_url_for, start_server
from tests.support.fake_ringcentral import EXTENSION_PATH, FakeRingCentral

SETTINGS = {
    "autoLogCalls": {"customizable": False, "value": True},
    "addCallLogNote": {"customizable": True, "value": False},
}
_NOTES = sql("SELECT scope, note FROM call_note_cache WHERE session_id = ?")


@pytest.fixture(scope="module")
def rc() -> Iterator[FakeRingCentral]:
    with FakeRingCentral() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, rc: FakeRingCentral
) -> Iterator[LiveServer]:
    """The connector server asking the fake RingCentral platform who a token's extension is."""
    folder = tmp_path_factory.mktemp(f"admin-{request.param}")
    yield from start_server(folder, database_url_for(request.param, folder), ringcentral_server=rc.base_url)


def new_account() -> str:
    return str(uuid.uuid4().int)[:12]


def rc_header(token: str) -> dict[str, str]:
    return {"X-RC-Access-Token": token}


def save(client: httpx.Client, token: str, user_settings: object) -> httpx.Response:
    return client.post(
        "/admin/settings", json={"adminSettings": {"userSettings": user_settings}}, headers=rc_header(token)
    )


def preload(client: httpx.Client, token: str) -> httpx.Response:
    return client.get("/user/preloadSettings", headers=rc_header(token))


def test_an_admin_sets_what_every_user_of_the_account_receives(
    client: httpx.Client, rc: FakeRingCentral, jwt: str
) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)

    saved = save(client, admin, SETTINGS)
    assert saved.status_code == 200 and saved.text == "Admin settings updated"

    assert preload(client, agent).json() == {"userSettings": SETTINGS}
    # the token in the query (the reference's last place to look) works the same
    in_query = client.get("/user/preloadSettings", params={"rcAccessToken": agent})
    assert in_query.json() == {"userSettings": SETTINGS}
    # the admin reads back the settings and nothing else of the account's row
    read = client.get("/admin/settings", headers={"Authorization": f"Bearer {jwt}", **rc_header(admin)})
    assert read.status_code == 200 and read.json() == {"customConnector": None, "userSettings": SETTINGS}


def test_a_logged_in_user_gets_the_locked_settings_merged(
    client: httpx.Client, rc: FakeRingCentral, jwt: str
) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    assert save(client, admin, SETTINGS).status_code == 200
    auth = {"Authorization": f"Bearer {jwt}"}
    mine = {"autoLogCalls": {"value": False}, "addCallLogNote": {"value": True}}
    client.post("/user/settings", json={"userSettings": mine}, headers=auth)

    merged = client.get("/user/settings", headers={**auth, **rc_header(agent)}).json()
    assert merged["autoLogCalls"] == SETTINGS["autoLogCalls"]  # locked: the admin's value
    # customizable: the user's own, with only the fields they set
    assert merged["addCallLogNote"] == {"customizable": True, "value": True}
    # without a verified account the user's own settings only, whatever account hash comes along
    assert client.get("/user/settings", headers=auth).json() == mine
    hashed = client.get("/userInfoHash", params={"extensionId": "1", "accountId": account}).json()[
        "accountId"
    ]
    assert client.get("/user/settings", params={"rcAccountId": hashed}, headers=auth).json() == mine


def test_the_admin_token_may_come_in_the_body(client: httpx.Client, rc: FakeRingCentral) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    saved = client.post(
        "/admin/settings", json={"rcAccessToken": admin, "adminSettings": {"userSettings": SETTINGS}}
    )
    assert saved.status_code == 200, saved.text
    assert preload(client, agent).json() == {"userSettings": SETTINGS}


@pytest.mark.parametrize("who", ["non-admin", "expired", "garbage", "none"])
def test_only_a_verified_admin_writes(client: httpx.Client, rc: FakeRingCentral, who: str) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    assert save(client, admin, SETTINGS).status_code == 200
    intruder = {
        "non-admin": rc.extension(account),
        "expired": rc.extension(account, admin=True),
        "garbage": "not-a-token-" + uuid.uuid4().hex,
        "none": "",
    }[who]
    if who == "expired":
        rc.expire(intruder)

    refused = save(client, intruder, {"autoLogCalls": {"customizable": False, "value": False}})
    assert refused.status_code == 403 and refused.text == "Admin validation failed"
    assert preload(client, agent).json() == {"userSettings": SETTINGS}


def test_an_admin_of_another_account_writes_only_their_own(client: httpx.Client, rc: FakeRingCentral) -> None:
    account_a, account_b = new_account(), new_account()
    admin_a, agent_a = rc.extension(account_a, admin=True), rc.extension(account_a)
    admin_b, agent_b = rc.extension(account_b, admin=True), rc.extension(account_b)
    assert save(client, admin_a, SETTINGS).status_code == 200
    theirs = {"autoLogCalls": {"customizable": True, "value": False}}
    assert save(client, admin_b, theirs).status_code == 200

    assert preload(client, agent_a).json() == {"userSettings": SETTINGS}
    assert preload(client, agent_b).json() == {"userSettings": theirs}


def test_a_bare_account_hash_reveals_nothing(client: httpx.Client, rc: FakeRingCentral) -> None:
    account = new_account()
    assert save(client, rc.extension(account, admin=True), SETTINGS).status_code == 200
    hashed = client.get("/userInfoHash", params={"extensionId": "1", "accountId": account}).json()[
        "accountId"
    ]

    answer = client.get("/user/preloadSettings", params={"rcAccountId": hashed})
    assert answer.status_code == 200 and answer.json() == {"userSettings": {}}
    # and with neither a token nor a hash there is nobody to preload for
    assert client.get("/user/preloadSettings").text == "Cannot find rc user login"


def test_a_refused_token_reads_nothing(client: httpx.Client, rc: FakeRingCentral) -> None:
    account = new_account()
    assert save(client, rc.extension(account, admin=True), SETTINGS).status_code == 200
    agent = rc.extension(account)
    rc.expire(agent)
    refused = preload(client, agent)
    assert refused.status_code == 403 and "userSettings" not in refused.text


@pytest.mark.parametrize("failure", ["503", "html", "slow"])
def test_ringcentral_failing_is_not_a_refusal(
    client: httpx.Client, rc: FakeRingCentral, failure: str
) -> None:
    """RingCentral down is not the admin's fault: never "Admin validation failed", but the reference's answer
    when its RingCentral call throws (400 `{error}`), and never remembered as a refusal."""
    account = new_account()
    admin = rc.extension(account, admin=True)
    try:
        if failure == "503":
            rc.inject(503, times=10, path_prefix=EXTENSION_PATH)
        elif failure == "html":
            rc.answer_html()
        else:  # slower than the server's read timeout (2 s in the tests)
            rc.inject(delay=3.0, times=1, path_prefix=EXTENSION_PATH)
        answer = save(client, admin, SETTINGS)
        assert_ringcentral_unavailable(answer)
    finally:
        rc.clear_faults()
        rc.answer_html(False)
    # a failure to ask is not remembered: the same token works once RingCentral answers again
    assert save(client, admin, SETTINGS).status_code == 200


def assert_ringcentral_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == RC_UNAVAILABLE
    assert answer.json()["returnMessage"]["messageType"] == "warning"


@pytest.fixture(scope="module")
def hangs_up() -> Iterator[str]:
    """A "RingCentral" that accepts each connection and closes it without a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_ringcentral_that_hangs_up_is_not_a_refusal(tmp_path: Path, hangs_up: str) -> None:
    database = database_url_for("sqlite", tmp_path)
    with (
        contextmanager(start_server)(tmp_path, database, ringcentral_server=hangs_up) as live,
        httpx.Client(base_url=live.base_url, timeout=30) as http,
    ):
        assert_ringcentral_unavailable(save(http, "rc-token", SETTINGS))
        assert_ringcentral_unavailable(preload(http, "rc-token"))


def test_a_token_is_asked_about_once_in_a_while(client: httpx.Client, rc: FakeRingCentral) -> None:
    account = new_account()
    admin = rc.extension(account, admin=True)
    before = len(rc.requests_to(EXTENSION_PATH))
    for _ in range(3):
        assert save(client, admin, SETTINGS).status_code == 200
    assert len(rc.requests_to(EXTENSION_PATH)) - before == 1


def test_admin_settings_need_the_users_session_to_be_read(client: httpx.Client, rc: FakeRingCentral) -> None:
    admin = rc.extension(new_account(), admin=True)
    answer = client.get("/admin/settings", headers=rc_header(admin))
    assert answer.status_code == 400 and answer.text == "Please go to Settings and authorize CRM platform"


def test_oversized_admin_settings_are_refused(client: httpx.Client, rc: FakeRingCentral) -> None:
    admin = rc.extension(new_account(), admin=True)
    huge = {f"key{i}": {"value": "x" * 500} for i in range(200)}
    answer = save(client, admin, huge)
    assert answer.status_code == 400 and "userSettings" in answer.text


# --- licence, user info, call notes -------------------------------------------------------------------------


def test_license_status_answers_the_references_shapes(client: httpx.Client, jwt: str) -> None:
    assert client.get("/licenseStatus").json() == {
        "isLicenseValid": False,
        "licenseStatus": "Invalid (Invalid user session)",
        "licenseStatusDescription": "",
    }
    # the test CRM has no licences: the reference's default
    licensed = client.get("/licenseStatus", headers={"Authorization": f"Bearer {jwt}"})
    assert licensed.json() == {
        "isLicenseValid": True,
        "licenseStatus": "Basic",
        "licenseStatusDescription": "",
    }
    assert client.get("/licenseStatus", params={"jwtToken": "forged"}).text == "Invalid JWT token"
    forged = client.get("/licenseStatus", headers={"Authorization": f"Bearer {jwt}x"})
    assert forged.status_code == 400 and forged.text == "Invalid JWT token"


def test_refresh_user_info(client: httpx.Client, jwt: str) -> None:
    """The test CRM keeps nothing to refresh: as the reference, success without a CRM call."""
    served = client.get("/implementedInterfaces", params={"platform": "testcrm"}).json()
    assert served["refreshUserInfo"] is False and served["getManagedAuthOptions"] is False
    answer = client.post("/user/refreshInfo", headers={"Authorization": f"Bearer {jwt}"})
    assert answer.status_code == 200 and answer.json() == {"successful": True}
    assert client.post("/user/refreshInfo").status_code == 400


def test_a_cached_note_stays_in_the_callers_account(
    server: LiveServer, client: httpx.Client, jwt: str
) -> None:
    session_id = f"call-{uuid.uuid4().hex}"
    assert client.post("/callLog/cacheNote", json={"sessionId": session_id, "note": "x"}).status_code == 400

    ours = client.post(
        "/callLog/cacheNote",
        json={"sessionId": session_id, "note": "Wants a callback"},
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert ours.status_code == 200 and ours.json() == {
        "successful": True,
        "returnMessage": "Note cache saved",
    }
    # a user of another CRM account with the same call session id plants nothing into ours
    new_key = client.post(
        "/testcrm/api/v1/api-keys",
        json={"name": "Other company"},
        headers={"Authorization": f"Bearer {server.settings.testcrm_admin_token.get_secret_value()}"},
    ).json()["apiKey"]
    other = api_key_login(client, new_key)
    theirs = client.post(
        "/callLog/cacheNote",
        json={"sessionId": session_id, "note": "Planted"},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert theirs.status_code == 200

    stored = rows(server, _NOTES, session_id)
    assert len(stored) == 2 and len({row["scope"] for row in stored}) == 2
    assert all("Wants" not in row["note"] and "Planted" not in row["note"] for row in stored)  # encrypted


def test_no_ringcentral_token_in_the_logs(
    client: httpx.Client, rc: FakeRingCentral, caplog: pytest.LogCaptureFixture
) -> None:
    account = new_account()
    admin, refused = rc.extension(account, admin=True), rc.extension(account)
    rc.expire(refused)
    with caplog.at_level("DEBUG"):
        rc.inject(503, times=1, path_prefix=EXTENSION_PATH)
        assert save(client, admin, SETTINGS).status_code == 400
        assert client.get("/user/preloadSettings", params={"rcAccessToken": refused}).status_code == 403
    assert "RingCentral" in caplog.text  # the failures were logged...
    assert admin not in caplog.text and refused not in caplog.text  # ...without the tokens


def test_a_user_who_set_nothing_gets_the_admins_settings(
    client: httpx.Client, rc: FakeRingCentral, jwt: str
) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    assert save(client, admin, SETTINGS).status_code == 200
    merged = client.get("/user/settings", headers={"Authorization": f"Bearer {jwt}", **rc_header(agent)})
    assert merged.json() == SETTINGS

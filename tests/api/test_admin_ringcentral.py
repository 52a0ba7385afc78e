"""Server-side logging set-up: an admin (verified with a fake RingCentral platform on loopback) authorizes the
server's RingCentral app and saves the logging fields; the tokens are kept encrypted, refreshed once however
many processes need them at the same moment, and never answered or logged (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from appconnect.flows.admin_ringcentral import admin_access_token
from appconnect.flows.services import build_services
from appconnect.security.crypto import TokenCipher, hash_value
from appconnect.security.keys import load_keys
from appconnect.store.sql import sql
from tests.api.test_user_and_first_write import rows
from tests.conftest import LiveServer, database_url_for, start_server
from tests.support.fake_ringcentral import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeRingCentral

_ROW = sql("SELECT access_token, refresh_token, server_logging FROM admin_ringcentral WHERE id = ?")
_EXPIRE = sql("UPDATE admin_ringcentral SET token_expiry = ? WHERE id = ?")
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
FIELDS = {"apiUsername": "logger@example.test", "apiPassword": "pw-" + uuid.uuid4().hex}


@pytest.fixture(scope="module")
def rc() -> Iterator[FakeRingCentral]:
    with FakeRingCentral() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, rc: FakeRingCentral
) -> Iterator[LiveServer]:
    """The connector server with the fake platform's RingCentral app as its own."""
    folder = tmp_path_factory.mktemp(f"rc-admin-{request.param}")
    yield from start_server(
        folder,
        database_url_for(request.param, folder),
        ringcentral_server=rc.base_url,
        ringcentral_client_id=CLIENT_ID,
        ringcentral_client_secret=CLIENT_SECRET,
    )


def new_account() -> str:
    return str(uuid.uuid4().int)[:12]


def headers(jwt: str, rc_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}", "X-RC-Access-Token": rc_token}


def redirect_uri(server: LiveServer) -> str:
    return f"{server.base_url}/ringcentral/oauth/callback"


def authorize(
    client: httpx.Client, server: LiveServer, rc: FakeRingCentral, jwt: str, admin: str, *, grantor: str = ""
) -> httpx.Response:
    """The admin approves the server's app at RingCentral; the client hands the code to the callback."""
    code = rc.issue_code(grantor or admin, redirect_uri(server))
    return client.get("/ringcentral/oauth/callback", params={"code": code}, headers=headers(jwt, admin))


def cipher(server: LiveServer) -> TokenCipher:
    return TokenCipher(load_keys(server.settings).encryption_keys)


def account_hash(server: LiveServer, account: str) -> str:
    return hash_value(account, load_keys(server.settings).hash_key)


def stored(server: LiveServer, account: str) -> dict[str, str | None]:
    found = rows(server, _ROW, account_hash(server, account))
    return found[0] if found else {}


def test_an_admin_authorizes_and_the_tokens_are_kept_encrypted(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral, jwt: str, caplog: pytest.LogCaptureFixture
) -> None:
    account = new_account()
    admin = rc.extension(account, admin=True)
    with caplog.at_level("DEBUG"):
        answer = authorize(client, server, rc, jwt, admin)
        assert answer.status_code == 200 and answer.json() == {"successful": True}
        settings = client.get("/admin/serverLoggingSettings", headers=headers(jwt, admin))
        admin_settings = client.get("/admin/settings", headers=headers(jwt, admin))

    row = stored(server, account)
    access = cipher(server).decrypt(row["access_token"])
    refresh = cipher(server).decrypt(row["refresh_token"])
    assert access and refresh and rc.grants.access_valid(access) and rc.refresh_valid(refresh)
    assert access not in str(row) and refresh not in str(row)  # ciphertext at rest
    for text in (answer.text, settings.text, admin_settings.text, caplog.text):
        assert access not in text and refresh not in text
    assert settings.json() == {}  # nothing saved yet: the reference's empty settings, and no token


def test_a_used_or_unknown_code_is_refused(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral, jwt: str
) -> None:
    admin = rc.extension(new_account(), admin=True)
    code = rc.issue_code(admin, redirect_uri(server))
    # the session and the RingCentral token in the query, as the reference's client may send them
    first = client.get(
        "/ringcentral/oauth/callback", params={"code": code, "jwtToken": jwt, "rcAccessToken": admin}
    )
    assert first.status_code == 200 and first.json() == {"successful": True}
    again = client.get("/ringcentral/oauth/callback", params={"code": code}, headers=headers(jwt, admin))
    assert again.status_code == 400 and again.text == "RingCentral authorization failed"
    missing = client.get("/ringcentral/oauth/callback", headers=headers(jwt, admin))
    assert missing.status_code == 400 and missing.text == "Missing code"


@pytest.mark.parametrize("who", ["non-admin", "other-admin", "no-session"])
def test_only_the_accounts_admin_authorizes(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral, jwt: str, who: str
) -> None:
    account, other = new_account(), new_account()
    admin = rc.extension(account, admin=True)
    if who == "non-admin":
        agent = rc.extension(account)
        answer = authorize(client, server, rc, jwt, agent)
        assert answer.status_code == 403 and answer.text == "Admin validation failed"
        assert stored(server, account) == {}
    elif who == "other-admin":
        # B's admin hands over a code A's admin granted: A's tokens are never kept under B (nor under A)
        other_admin = rc.extension(other, admin=True)
        answer = authorize(client, server, rc, jwt, other_admin, grantor=admin)
        assert answer.status_code == 403
        assert stored(server, other) == {} and stored(server, account) == {}
    else:
        code = rc.issue_code(admin, redirect_uri(server))
        answer = client.get(
            "/ringcentral/oauth/callback", params={"code": code}, headers={"X-RC-Access-Token": admin}
        )
        assert answer.status_code == 400
        assert stored(server, account) == {}


def test_logging_settings_are_the_accounts_and_secrets_never_come_back(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral, jwt: str
) -> None:
    account, other = new_account(), new_account()
    admin, other_admin = rc.extension(account, admin=True), rc.extension(other, admin=True)
    url = "/admin/serverLoggingSettings"

    saved = client.post(url, json={"additionalFieldValues": FIELDS}, headers=headers(jwt, admin))
    assert saved.status_code == 200 and saved.json()["successful"] is True
    shown = client.get(url, headers=headers(jwt, admin)).json()
    assert shown == {"apiUsername": FIELDS["apiUsername"], "apiPassword": "********"}
    assert FIELDS["apiPassword"] not in str(stored(server, account))  # encrypted at rest

    # the form sends the placeholder back with a changed user name: the password is kept
    changed = {"apiUsername": "other@example.test", "apiPassword": "********"}
    assert client.post(url, json={"additionalFieldValues": changed}, headers=headers(jwt, admin)).is_success
    row = stored(server, account)
    kept = cipher(server).decrypt(row["server_logging"]) or ""
    assert FIELDS["apiPassword"] in kept and "other@example.test" in kept

    # another account's admin sees and changes only their own account
    assert client.get(url, headers=headers(jwt, other_admin)).json() == {}
    client.post(url, json={"additionalFieldValues": {"apiUsername": "x"}}, headers=headers(jwt, other_admin))
    assert client.get(url, headers=headers(jwt, admin)).json()["apiUsername"] == "other@example.test"


@pytest.mark.parametrize("who", ["non-admin", "garbage", "no-session"])
def test_logging_settings_only_for_an_admin_with_a_session(
    client: httpx.Client, rc: FakeRingCentral, jwt: str, who: str
) -> None:
    account = new_account()
    admin = rc.extension(account, admin=True)
    url = "/admin/serverLoggingSettings"
    assert client.post(url, json={"additionalFieldValues": FIELDS}, headers=headers(jwt, admin)).is_success
    token = {"non-admin": rc.extension(account), "garbage": "rc-" + uuid.uuid4().hex, "no-session": admin}[
        who
    ]
    sent = headers(jwt, token) if who != "no-session" else {"X-RC-Access-Token": token}
    read = client.get(url, headers=sent)
    write = client.post(url, json={"additionalFieldValues": {"apiUsername": "intruder"}}, headers=sent)
    expected = 400 if who == "no-session" else 403
    assert read.status_code == write.status_code == expected
    assert FIELDS["apiUsername"] not in read.text
    assert client.get(url, headers=headers(jwt, admin)).json()["apiUsername"] == FIELDS["apiUsername"]


def test_concurrent_refreshes_use_the_refresh_token_once(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral, jwt: str
) -> None:
    """Two server processes (two sets of services on one database) and many requests in each need the admin's
    token just as it expires: RingCentral sees one refresh (its refresh token works once)."""
    account = new_account()
    admin = rc.extension(account, admin=True)
    assert authorize(client, server, rc, jwt, admin).status_code == 200
    key = account_hash(server, account)
    old_refresh = cipher(server).decrypt(stored(server, account)["refresh_token"])

    async def race() -> list[str | None]:
        processes = [build_services(server.settings), build_services(server.settings)]
        try:
            await processes[0].db.run(_EXPIRE, processes[0].db.stamp(None), key)  # no expiry: not due
            assert await admin_access_token(processes[0], account) is not None
            expired = processes[0].db.stamp(LONG_AGO)
            await processes[0].db.run(_EXPIRE, expired, key)
            return await asyncio.gather(
                *(admin_access_token(p, account) for p in processes for _ in range(5))
            )
        finally:
            for services in processes:
                await services.close()

    before = rc.refresh_calls
    tokens = asyncio.run(race())
    assert rc.refresh_calls - before == 1
    assert len(set(tokens)) == 1 and tokens[0] is not None and rc.grants.access_valid(tokens[0])
    assert old_refresh is not None and not rc.refresh_valid(old_refresh)  # rotated: used once
    new_refresh = cipher(server).decrypt(stored(server, account)["refresh_token"])
    assert new_refresh and rc.refresh_valid(new_refresh)
    assert len(rc.requests_to(TOKEN_PATH, "POST")) >= 2  # the code exchange and the one refresh


def test_a_refused_refresh_token_forgets_the_tokens(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral, jwt: str
) -> None:
    account = new_account()
    admin = rc.extension(account, admin=True)
    assert authorize(client, server, rc, jwt, admin).status_code == 200
    key = account_hash(server, account)
    refresh = cipher(server).decrypt(stored(server, account)["refresh_token"])
    assert refresh is not None
    with rc._lock:
        rc.grants.revoke(refresh)

    async def ask() -> str | None:
        services = build_services(server.settings)
        try:
            await services.db.run(_EXPIRE, services.db.stamp(LONG_AGO), key)
            return await admin_access_token(services, account)
        finally:
            await services.close()

    assert asyncio.run(ask()) is None
    row = stored(server, account)
    assert row["access_token"] is None and row["refresh_token"] is None


def test_a_secret_inside_a_group_of_fields_is_masked_and_kept(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral, jwt: str
) -> None:
    """A form may group its fields (`{"apiUser": {"username", "password"}}`): the password inside is a secret
    all the same, never answered, and the placeholder sent back keeps it."""
    account = new_account()
    admin = rc.extension(account, admin=True)
    url = "/admin/serverLoggingSettings"
    password = "pw-" + uuid.uuid4().hex
    grouped = {
        "apiUser": {"username": "api@example.test", "password": password},
        "users": [{"token": password}],
    }
    saved = client.post(url, json={"additionalFieldValues": grouped}, headers=headers(jwt, admin))
    assert saved.status_code == 200, saved.text
    shown = client.get(url, headers=headers(jwt, admin))
    assert password not in shown.text
    assert shown.json() == {
        "apiUser": {"username": "api@example.test", "password": "********"},
        "users": [{"token": "********"}],
    }
    assert client.post(
        url, json={"additionalFieldValues": shown.json()}, headers=headers(jwt, admin)
    ).is_success
    kept = cipher(server).decrypt(stored(server, account)["server_logging"]) or ""
    assert kept.count(password) == 2

"""Workers cache users, and a change made by any other process is seen by the very next request.

A second server (`serve --workers 2`, real processes) shares the in-thread server's database, keys and test
CRM, as another machine behind the same load balancer would. Users are read (and cached) on every connection
to it; then the in-thread server logs the user out, changes settings, or logs in again, and every connection to
the second server must see it: on SQLite (shared-memory change counters) at once; on PostgreSQL, where the
second server opts in to the cache (`APPCONNECT_USER_CACHE=true`: off by default there), as soon as the
notification sent by the changing transaction arrives (LISTEN/NOTIFY).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, api_key_login, crm_admin_headers, new_phone
from tests.support.served import serve_process

CONNECTIONS = 6
#: how long a PostgreSQL notification may take to reach the other workers on a loaded test machine
NOTIFY_GRACE_SECONDS = 10.0


def auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


@pytest.fixture(scope="module")
def other_server(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two more worker processes on the same database, keys and test CRM as the in-thread server."""
    folder: Path = tmp_path_factory.mktemp("other-server")
    settings = {
        "APPCONNECT_DATABASE_URL": server.settings.database_url,
        "APPCONNECT_KEY_FILE": str(Path(server.settings.key_file).resolve()),
        "APPCONNECT_EMBEDDED_TESTCRM": "false",
        "TESTCRM_BASE_URL": server.crm_api,
        "APPCONNECT_DATABASE_POOL_SIZE": "2",
        "APPCONNECT_DATABASE_MAX_OVERFLOW": "2",
        "APPCONNECT_LOG_RETRIER_ENABLED": "false",
        "APPCONNECT_USER_CACHE": "true",
    }
    with serve_process(folder, settings) as base:
        yield base


@pytest.fixture
def other_clients(other_server: str) -> Iterator[list[httpx.Client]]:
    """Several keep-alive connections to the second server: the kernel spreads them over its workers."""
    clients = [httpx.Client(base_url=other_server, timeout=30) for _ in range(CONNECTIONS)]
    try:
        yield clients
    finally:
        for http in clients:
            http.close()


def seen(server: LiveServer, check: Callable[[], bool]) -> bool:
    """SQLite: `check` must hold at once. PostgreSQL: once the change notification has arrived."""
    if server.settings.database_url.startswith("sqlite"):
        return check()
    deadline = time.monotonic() + NOTIFY_GRACE_SECONDS
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def lookup_succeeds(http: httpx.Client, jwt: str) -> bool:
    response = http.get("/contact", params={"phoneNumber": new_phone()}, headers=auth(jwt))
    if response.status_code == 400:  # a session ended by a logout: "connect again"
        assert response.text == "Please go to Settings and authorize CRM platform", response.text
        return False
    assert response.status_code == 200, response.text
    return bool(response.json()["successful"])


@pytest.fixture
def api_key(client: httpx.Client) -> str:
    response = client.post("/testcrm/api/v1/api-keys", json={"name": "Cache"}, headers=crm_admin_headers())
    assert response.status_code in (200, 201), response.text
    key: str = response.json()["apiKey"]
    return key


def test_a_logout_elsewhere_is_seen_by_the_next_request_on_every_worker(
    server: LiveServer, client: httpx.Client, other_clients: list[httpx.Client], api_key: str
) -> None:
    jwt = api_key_login(client, api_key)
    # every connection reads (and caches) the user, twice: the second answer may come from the cache
    for http in other_clients:
        assert lookup_succeeds(http, jwt) and lookup_succeeds(http, jwt)

    logged_out = client.post("/unAuthorize", headers=auth(jwt))
    assert logged_out.status_code == 200, logged_out.text

    refused = [seen(server, lambda http=http: not lookup_succeeds(http, jwt)) for http in other_clients]
    assert all(refused), f"a worker still accepted the logged-out session: {refused}"

    # logging in again (on this server) is seen there too, with the new session only
    again = api_key_login(client, api_key)
    for http in other_clients:
        assert seen(server, lambda http=http: lookup_succeeds(http, again))
        assert not lookup_succeeds(http, jwt)


def test_settings_changed_elsewhere_are_read_at_once(
    server: LiveServer, client: httpx.Client, other_clients: list[httpx.Client], api_key: str
) -> None:
    jwt = api_key_login(client, api_key)
    for http in other_clients:
        assert http.get("/user/settings", headers=auth(jwt)).json() == {}

    for value in ("YYYY-MM-DD", "DD/MM/YYYY"):
        saved = client.post(
            "/user/settings", json={"userSettings": {"logDateFormat": {"value": value}}}, headers=auth(jwt)
        )
        assert saved.status_code == 200, saved.text
        wanted = {"logDateFormat": {"value": value}}
        for http in other_clients:
            assert seen(
                server,
                lambda http=http, wanted=wanted: (
                    http.get("/user/settings", headers=auth(jwt)).json() == wanted
                ),
            )

"""A declarative connector with `auth.type: oauth`, through the real server: the manifest's login button, the
code exchange at the configuration's `tokenUrl` (client secret from `<PLATFORM>_CLIENT_SECRET`), a lookup sent
with the user's Bearer token, and the refresh of a token about to expire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appconnect.connectors.declarative.connector import DEFAULT_REDIRECT_URI
from tests.conftest import LiveServer, connector_server, database_url_for
from tests.connectors.conformance.target import authorize_redirect, oauth_callback_login
from tests.connectors.declarative.fake_rest_crm import FakeRelayCrm

RELAY = Path(__file__).with_name("relay_crm.json")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRelayCrm]:
    with FakeRelayCrm() as crm:
        yield crm


@pytest.fixture(scope="module")
def server(fake: FakeRelayCrm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("declarative-oauth")
    config = json.loads(RELAY.read_text())
    config["meta"].update(name="relayOauth", displayName="Relay CRM (OAuth)")
    config["auth"] = {
        "type": "oauth",
        "authUrl": f"{fake.base_url}/oauth/authorize",
        "tokenUrl": f"{fake.base_url}/oauth/token",
        "clientId": fake.client_id,
        "scope": "contacts activities",
    }
    path = folder / "relay_oauth.json"
    path.write_text(json.dumps(config))
    env = {
        "APPCONNECT_DECLARATIVE_CONNECTORS": str(path),
        "RELAYOAUTH_BASE_URL": f"{fake.base_url}/v1",
        "RELAYOAUTH_CLIENT_SECRET": fake.client_secret,
    }
    with connector_server(env, folder, database_url_for("sqlite", folder)) as live:
        yield live


async def test_oauth_login_then_a_lookup_with_the_token_refreshed(
    fake: FakeRelayCrm, server: LiveServer
) -> None:
    fake.reset()
    fake.grants.expires_in = 60  # inside the server's refresh margin: the next call refreshes first
    contact = fake.add_contact("Avery Stone", "(415) 662-0177")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        manifest = (await http.get("/crmManifest", params={"platformName": "relayOauth"})).json()
        auth = manifest["platforms"]["relayOauth"]["auth"]
        assert auth["type"] == "oauth"
        assert auth["oauth"]["authUrl"] == f"{fake.base_url}/oauth/authorize"
        assert auth["oauth"]["clientId"] == fake.client_id and "clientSecret" not in auth["oauth"]
        redirect = await authorize_redirect(
            auth["oauth"]["authUrl"],
            {
                "client_id": fake.client_id,
                "redirect_uri": DEFAULT_REDIRECT_URI,
                "response_type": "code",
                "state": "platform=relayOauth",
                "login_hint": fake.default_key,
            },
        )
        jwt = await oauth_callback_login(http, redirect)
        found = await http.get(
            "/contact", params={"phoneNumber": "+14156620177"}, headers={"Authorization": f"Bearer {jwt}"}
        )
    assert found.status_code == 200, found.text
    assert [c["id"] for c in found.json()["contact"] if not c.get("isNewContact")] == [contact["id"]]
    assert fake.grants.code_exchanges == 1 and fake.grants.refresh_calls >= 1
    searches = fake.requests_to("/v1/contacts", "GET")
    assert searches and all(r.auth_scheme == "Bearer" for r in searches)

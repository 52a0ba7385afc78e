"""Managed auth on a CRM whose address is the user's hostname (a declarative connector with `{{hostname}}` in its
base URL), through the real server: the company's stored API key only ever goes to the CRM the admin stored it
for, never to a host a user of the account names at login."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import LiveServer, connector_server, database_url_for
from tests.connectors.declarative.fake_rest_crm import FakeRelayCrm
from tests.support.fake_ringcentral import FakeRingCentral

RELAY = Path(__file__).parents[1] / "connectors" / "declarative" / "relay_crm.json"
PLATFORM = "relayManaged"


@pytest.fixture(scope="module")
def rc() -> Iterator[FakeRingCentral]:
    with FakeRingCentral() as fake:
        yield fake


@pytest.fixture(scope="module")
def company_crm() -> Iterator[FakeRelayCrm]:
    with FakeRelayCrm() as crm:
        yield crm


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[FakeRelayCrm]:
    """A host a user names at login: it answers as a CRM would, and records what it was sent."""
    with FakeRelayCrm() as crm:
        yield crm


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, rc: FakeRingCentral
) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp(f"managed-host-{request.param}")
    config = json.loads(RELAY.read_text())
    config["meta"].update(name=PLATFORM, displayName="Relay CRM (managed)")
    config["meta"]["manifest"]["auth"] = {
        "type": "apiKey",
        "apiKey": {
            "page": {
                "title": "Relay CRM",
                "content": [
                    {
                        "const": "apiKey",
                        "title": "API key",
                        "type": "string",
                        "required": True,
                        "managed": True,
                    }
                ],
            }
        },
    }
    config["requestDefaults"]["baseUrl"] = "http://{{hostname}}/v1"
    path = folder / "relay_managed.json"
    path.write_text(json.dumps(config))
    env = {"APPCONNECT_DECLARATIVE_CONNECTORS": str(path)}
    database = database_url_for(request.param, folder)
    with connector_server(env, folder, database, ringcentral_server=rc.base_url) as live:
        yield live


def _host(crm: FakeRelayCrm) -> str:
    return urlsplit(crm.base_url).netloc


def _login(client: httpx.Client, rc_token: str, hostname: str, api_key: str | None = None) -> httpx.Response:
    body: dict[str, object] = {"platform": PLATFORM, "hostname": hostname}
    if api_key is not None:
        body["apiKey"] = api_key
    return client.post("/apiKeyLogin", json=body, headers={"X-RC-Access-Token": rc_token})


def test_the_accounts_key_never_goes_to_a_host_a_user_names(
    server: LiveServer, rc: FakeRingCentral, company_crm: FakeRelayCrm, elsewhere: FakeRelayCrm
) -> None:
    company_crm.reset()
    elsewhere.reset()
    account = f"acct-{uuid.uuid4().hex[:8]}"
    admin = rc.extension(account, admin=True)
    agent = rc.extension(account)
    key = company_crm.default_key
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        own = _login(client, admin, _host(company_crm), key)
        assert own.status_code == 200, own.text
        headers = {"Authorization": f"Bearer {own.json()['jwtToken']}", "X-RC-Access-Token": admin}
        saved = client.post(
            "/admin/managedAuth", json={"scope": "org", "values": {"apiKey": key}}, headers=headers
        )
        assert saved.status_code == 200, saved.text

        # the agent logs in without a key at the company's CRM: the stored key is used
        fine = _login(client, agent, _host(company_crm))
        assert fine.status_code == 200, fine.text

        # the agent names another host: the company's key is not filled in for it, nor sent there
        diverted = _login(client, agent, _host(elsewhere))
    assert diverted.status_code == 400, diverted.text
    assert diverted.json()["returnMessage"]["missingRequiredFieldConsts"] == ["apiKey"]
    assert all(r.headers.get("x-api-key") != key for r in elsewhere.requests), "the account's key left"
    assert key not in diverted.text

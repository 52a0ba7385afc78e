"""`GET /licenseStatus` with a connector that reports licences: the connector's answer, and the reference's
"connect to get license status" when the CRM cannot tell (the test CRM's own user endpoint stands in for a
CRM's licence endpoint)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from appconnect.api.app import create_app
from appconnect.connectors.registry import ConnectorRegistry
from appconnect.connectors.sdk import CrmCall, LicenseStatus
from appconnect.connectors.testcrm import TestCrmConnector
from appconnect.store.migrate import upgrade
from tests.conftest import CrmView, LiveServer, api_key_login, crm_admin_headers, make_settings
from tests.support.app_server import run_app


class LicensedTestCrm(TestCrmConnector):
    """The test CRM connector, reporting a licence from what the CRM says about the user."""

    async def get_license_status(self, call: CrmCall) -> LicenseStatus:
        me = await call.http.get_json("me")
        return LicenseStatus(True, "Pro", f"Licensed to user {me['id']}")


@pytest.fixture(scope="module")
def licensed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("licensed")
    database_url = f"sqlite+aiosqlite:///{folder / 'appconnect.sqlite3'}"
    upgrade(database_url)
    holder: dict[str, object] = {}

    def build(base_url: str) -> object:
        settings = make_settings(folder, database_url, public_url=base_url)
        holder["settings"] = settings
        env = {"TESTCRM_BASE_URL": f"{base_url}/testcrm/api/v1"}
        return create_app(settings, ConnectorRegistry([LicensedTestCrm], env))

    with run_app(build) as base_url:
        yield LiveServer(base_url, holder["settings"])  # type: ignore[arg-type]


@pytest.fixture
def licensed(licensed_server: LiveServer) -> Iterator[tuple[httpx.Client, str]]:
    with httpx.Client(base_url=licensed_server.base_url, timeout=30) as client:
        key = client.post("/testcrm/api/v1/api-keys", json={"name": "Agent"}, headers=crm_admin_headers())
        yield client, api_key_login(client, key.json()["apiKey"])


def test_the_connectors_licence_is_answered(licensed: tuple[httpx.Client, str]) -> None:
    client, jwt = licensed
    answer = client.get("/licenseStatus", headers={"Authorization": f"Bearer {jwt}"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["isLicenseValid"] is True and body["licenseStatus"] == "Pro"
    assert body["licenseStatusDescription"].startswith("Licensed to user ")


def test_a_crm_that_cannot_tell_is_the_references_invalid_status(licensed: tuple[httpx.Client, str]) -> None:
    client, jwt = licensed
    crm = CrmView(client, "unused")
    crm.inject(status=500, times=1, method="GET", path_prefix="/api/v1/me")
    try:
        answer = client.get("/licenseStatus", headers={"Authorization": f"Bearer {jwt}"})
    finally:
        crm.clear_faults()
    assert answer.status_code == 200
    assert answer.json() == {
        "isLicenseValid": False,
        "licenseStatus": "Invalid (Connect to get license status)",
        "licenseStatusDescription": "",
    }


def test_the_client_is_told_the_connector_reports_licences(licensed: tuple[httpx.Client, str]) -> None:
    client, _jwt = licensed
    interfaces = client.get("/implementedInterfaces", params={"platform": "testcrm"}).json()
    assert interfaces["getLicenseStatus"] is True

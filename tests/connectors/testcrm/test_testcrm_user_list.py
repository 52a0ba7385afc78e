"""getUserList against the embedded test CRM: its users, as an admin's user mapping will list them."""

from __future__ import annotations

from pathlib import Path

import httpx

from appconnect.connectors.sdk import ConnectorConfig, CrmCall, CrmUser, UserView
from appconnect.connectors.testcrm import TestCrmConnector
from appconnect.embedded_crm import create_testcrm_app
from appconnect.outbound.client import CrmHttpClient, build_transport_client
from tests.support.live_server import serve_asgi

SEED_KEY = "user-list-test-key"
ADMIN_TOKEN = "user-list-test-admin-token"


async def test_user_list_is_every_user_of_the_test_crm(tmp_path: Path) -> None:
    app = create_testcrm_app(
        f"sqlite+aiosqlite:///{tmp_path / 'testcrm.sqlite3'}", seed_api_key=SEED_KEY, admin_token=ADMIN_TOKEN
    )
    with serve_asgi(app, lifespan="on") as crm_url:
        async with httpx.AsyncClient(base_url=f"{crm_url}/api/v1", timeout=10) as admin:
            minted = await admin.post(
                "/api-keys",
                json={"name": "Sam Ortiz", "email": "sam.ortiz@example.test"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert minted.status_code == 201, minted.text
        connector = TestCrmConnector(ConnectorConfig({"base_url": f"{crm_url}/api/v1"}))
        user = UserView(id="1-testcrm", platform="testcrm", hostname="127.0.0.1")
        auth = "Basic " + connector.basic_auth(SEED_KEY)
        client = build_transport_client(connect_timeout=10, read_timeout=10)
        try:
            http = CrmHttpClient(client, base_url=connector.base_url(user), auth_header=auth)
            users = await connector.get_user_list(CrmCall(user=user, auth_header=auth, http=http))
        finally:
            await client.aclose()
    assert users == [
        CrmUser(id="1", name="Test CRM User", email="test.user@testcrm.example"),
        CrmUser(id=str(minted.json()["user"]["id"]), name="Sam Ortiz", email="sam.ortiz@example.test"),
    ]

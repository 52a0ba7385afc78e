"""getUserList against FakeClio: the firm's enabled users for the admin's user mapping."""

from __future__ import annotations

from fake_clio import FakeClio

from appconnect.connectors.clio import ClioConnector
from appconnect.connectors.sdk import ConnectorConfig, CrmCall, CrmUser, UserView
from appconnect.outbound.client import CrmHttpClient, build_transport_client


async def test_user_list_is_the_firms_enabled_users_by_name(fake_clio: FakeClio) -> None:
    fake_clio.colleagues = [
        {"id": 1, "name": "Avery Brooks", "email": "avery@example.test", "enabled": True},
        {"id": 2, "name": "Left Firm", "email": "left@example.test", "enabled": False},
        {
            "id": 3,
            "name": "Kim Nguyen",
            "first_name": "Kim",
            "last_name": "Nguyen",
            "email": None,
            "enabled": True,
        },
    ]
    connector = ClioConnector(ConnectorConfig(fake_clio.connector_config()))
    tokens = fake_clio.issue_tokens()
    auth = f"Bearer {tokens.access_token}"
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=fake_clio.base_url, auth_header=auth)
        user = UserView(id=f"{fake_clio.user['id']}-clio", platform="clio", hostname="app.clio.com")
        users = await connector.get_user_list(CrmCall(user=user, auth_header=auth, http=http))
    finally:
        await client.aclose()
    assert users == [
        CrmUser(id="1", name="Avery Brooks", email="avery@example.test"),
        CrmUser(id="345678", name="Jordan Lee", email="jordan.lee@example.test"),
        CrmUser(id="3", name="Kim Nguyen", email=None),
    ]
    [request] = fake_clio.requests_to("/api/v4/users.json")
    assert request.query == {"enabled": "true", "order": "name(asc)", "fields": "id,name,email"}

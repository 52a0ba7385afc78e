"""getUserList against FakePipedrive: the company's users for the admin's user mapping."""

from __future__ import annotations

from fake_pipedrive import FakePipedrive, TokenPair

from appconnect.connectors.pipedrive import PipedriveConnector
from appconnect.connectors.sdk import ConnectorConfig, CrmCall, CrmUser, UserView, implements
from appconnect.outbound.client import CrmHttpClient, build_transport_client


async def test_user_list_is_the_companys_users_without_deleted_ones(
    fake_pipedrive: FakePipedrive, pipedrive_tokens: TokenPair
) -> None:
    fake_pipedrive.add_colleague(2001, "Sam Ortiz")["email"] = "sam.ortiz@example.test"
    fake_pipedrive.add_colleague(2002, "Gone Person")["is_deleted"] = True
    connector = PipedriveConnector(ConnectorConfig(fake_pipedrive.connector_config()))
    assert implements(connector, "get_user_list")
    auth = f"Bearer {pipedrive_tokens.access_token}"
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=fake_pipedrive.base_url, auth_header=auth)
        user = UserView(id="12345-pipedrive", platform="pipedrive", hostname="testcompany.pipedrive.com")
        users = await connector.get_user_list(CrmCall(user=user, auth_header=auth, http=http))
    finally:
        await client.aclose()
    assert users == [
        CrmUser(id="12345", name="Jordan Lee", email="jordan.lee@example.test"),
        CrmUser(id="2001", name="Sam Ortiz", email="sam.ortiz@example.test"),
    ]
    [request] = fake_pipedrive.requests_to("/api/v1/users")
    assert request.method == "GET"

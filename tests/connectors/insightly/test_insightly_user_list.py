"""getUserList against FakeInsightly: the instance's users for the admin's user mapping."""

from __future__ import annotations

from fake_insightly import FakeInsightly

from appconnect.connectors.insightly import InsightlyConnector
from appconnect.connectors.sdk import ConnectorConfig, CrmCall, CrmUser, UserView, stored_user_id
from appconnect.outbound.client import CrmHttpClient, build_transport_client


async def test_user_list_is_every_user_of_the_instance(fake_insightly: FakeInsightly) -> None:
    fake_insightly.add_user("Sam", "Ortiz", user_id=1300001)
    connector = InsightlyConnector(ConnectorConfig({"base_url": fake_insightly.base_url}))
    user_id = fake_insightly.user_id_of(fake_insightly.default_key)
    user = UserView(
        id=stored_user_id("insightly", user_id, fake_insightly.instance_id), platform="insightly", hostname=""
    )
    auth = "Basic " + connector.basic_auth(fake_insightly.default_key)
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=connector.base_url(user), auth_header=auth)
        users = await connector.get_user_list(CrmCall(user, auth, http))
    finally:
        await client.aclose()
    assert sorted(users, key=lambda u: int(u.id)) == [
        CrmUser(id=str(user_id), name="Jordan Lee", email="jordan.lee@example.test"),
        CrmUser(id="1300001", name="Sam Ortiz", email="sam.ortiz@example.test"),
    ]
    [request] = [r for r in fake_insightly.requests if r.path.lower().endswith("/users")]
    assert request.method == "GET"

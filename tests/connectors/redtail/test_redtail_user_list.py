"""getUserList against FakeRedtail: the database's users for the admin's user mapping."""

from __future__ import annotations

from fake_redtail import FakeRedtail

from appconnect.connectors.redtail import RedtailConnector
from appconnect.connectors.sdk import ConnectorConfig, CrmCall, CrmUser, UserView
from appconnect.outbound.client import CrmHttpClient, build_transport_client


async def test_user_list_is_the_users_of_the_callers_database(fake_redtail: FakeRedtail) -> None:
    colleague = fake_redtail.add_user("sortiz", "pw-2", first_name="Sam", last_name="Ortiz")
    stranger = fake_redtail.add_user("other", "pw-3", first_name="Other", last_name="Firm", database_id=999)
    me = fake_redtail.user()
    connector = RedtailConnector(
        ConnectorConfig({"api_key": fake_redtail.api_key, "api_url": fake_redtail.api_url})
    )
    auth = "Basic " + connector.basic_auth(str(me["user_key"]))
    user = UserView(id=f"{me['id']}-redtail", platform="redtail", hostname="")
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=connector.base_url(user), auth_header=auth)
        users = await connector.get_user_list(CrmCall(user, auth, http))
    finally:
        await client.aclose()
    assert sorted(users, key=lambda u: int(u.id)) == [
        CrmUser(id=str(me["id"]), name="Jordan Lee"),
        CrmUser(id=str(colleague["id"]), name="Sam Ortiz"),
    ]
    assert str(stranger["id"]) not in {u.id for u in users}
    assert len([r for r in fake_redtail.requests if r.path.endswith("/lists/database_users")]) == 1

"""A server-side logged call in Insightly: the event is owned by the mapped colleague, and found again under
that owner when an unanswered create is looked for."""

from __future__ import annotations

from fake_insightly import FakeInsightly

from appconnect.connectors.insightly import InsightlyConnector
from appconnect.connectors.sdk import (
    CallLogCreate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactRef,
    CrmCall,
    CrmUser,
    UserView,
    stored_user_id,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client


async def test_the_event_is_owned_by_the_mapped_user(fake_insightly: FakeInsightly) -> None:
    fake_insightly.add_user("Avery", "Brooks")
    colleague = next(u for u in fake_insightly.users.values() if u["FIRST_NAME"] == "Avery")["USER_ID"]
    contact = fake_insightly.add_contact("Maya", "Patel", phone="+14155550142")
    connector = InsightlyConnector(ConnectorConfig({"base_url": fake_insightly.base_url}))
    user = UserView(
        id=stored_user_id(
            "insightly", fake_insightly.user_id_of(fake_insightly.default_key), fake_insightly.instance_id
        ),
        platform="insightly",
        hostname="",
        platform_additional_info={"instanceId": fake_insightly.instance_id},
    )
    log = CallLogCreate(
        contact=ContactRef(id=str(contact["CONTACT_ID"]), phone_number="+14155550142", type="Contact"),
        call=CallRecord(
            session_id="sscl-7",
            direction="Inbound",
            start_time="2026-03-12T14:35:20.000Z",
            duration=60,
            from_party=CallParty(phone_number="+14155550142"),
            to_party=CallParty(phone_number="+14155550101"),
        ),
        composed_log_details="- Note: cached note",
        owner=CrmUser(id=str(colleague), name="Avery Brooks"),
    )
    auth = "Basic " + connector.basic_auth(fake_insightly.default_key)
    transport = build_transport_client(connect_timeout=5, read_timeout=5)
    try:
        call = CrmCall(
            user, auth, CrmHttpClient(transport, base_url=connector.base_url(user), auth_header=auth)
        )
        result = await connector.create_call_log(call, log)
        found = await connector.find_call_log(call, log)
    finally:
        await transport.aclose()
    assert result.log_id is not None
    assert fake_insightly.event(result.log_id)["OWNER_USER_ID"] == colleague
    assert found == result.log_id

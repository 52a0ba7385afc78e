"""A server-side logged call in Redtail: the mapped colleague attends the activity (the reference's assignee)."""

from __future__ import annotations

import base64

from fake_redtail import API_KEY, USERNAME, FakeRedtail

from appconnect.connectors.redtail import RedtailConnector
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


def _log(contact_id: int, owner: CrmUser | None) -> CallLogCreate:
    return CallLogCreate(
        contact=ContactRef(id=str(contact_id), phone_number="+14155550142", name="Maya Patel"),
        call=CallRecord(
            session_id=f"sscl-{owner.id if owner else 'own'}",
            direction="Inbound",
            start_time="2026-03-12T14:35:20.000Z",
            duration=60,
            from_party=CallParty(phone_number="+14155550142"),
            to_party=CallParty(phone_number="+14155550101"),
        ),
        note="cached note",
        composed_log_details="- Note: cached note",
        owner=owner,
    )


async def test_the_mapped_user_attends_the_call(fake_redtail: FakeRedtail) -> None:
    colleague = fake_redtail.add_user("avery", "pw-avery", first_name="Avery", last_name="Brooks")
    contact = fake_redtail.add_contact("Maya", "Patel", phones=["4155550142"])
    connector = RedtailConnector(ConnectorConfig({"api_key": API_KEY, "api_url": fake_redtail.api_url}))
    auth = "Basic " + base64.b64encode(f"{API_KEY}:{fake_redtail.user_key()}".encode()).decode()
    me = fake_redtail.user()
    user = UserView(
        id=stored_user_id("redtail", me["id"], me["database_id"]),
        platform="redtail",
        hostname="crm.redtailtechnology.com",
        platform_additional_info={"username": USERNAME, "databaseId": me["database_id"]},
    )
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        call = CrmCall(
            user=user,
            auth_header=auth,
            http=CrmHttpClient(client, base_url=fake_redtail.api_url, auth_header=auth),
        )
        assigned = await connector.create_call_log(
            call, _log(contact["id"], CrmUser(id=str(colleague["id"]), name="Avery Brooks"))
        )
        own = await connector.create_call_log(call, _log(contact["id"], None))
    finally:
        await client.aclose()
    assert assigned.log_id is not None and own.log_id is not None
    attendees = fake_redtail.activities[int(assigned.log_id)]["attendees"]
    assert attendees == [{"type": "Crm::Activity::Attendee::User", "user_id": colleague["id"]}]
    assert fake_redtail.activities[int(own.log_id)]["attendees"] == []  # the user's own call: no assignee

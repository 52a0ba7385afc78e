"""A server-side logged call in Clio: the mapped colleague, not the logging user, is the call's user party."""

from __future__ import annotations

import pytest
from fake_clio import FakeClio

from appconnect.connectors.clio import ClioConnector
from appconnect.connectors.sdk import (
    CallLogCreate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactRef,
    CrmCall,
    CrmUser,
    UserView,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

COLLEAGUE = {"id": 7001, "name": "Avery Brooks", "email": "avery@example.test", "enabled": True, "etag": "e1"}


@pytest.mark.parametrize(("direction", "side"), [("Inbound", "receivers"), ("Outbound", "senders")])
async def test_the_mapped_user_is_the_sender_or_receiver(
    fake_clio: FakeClio, direction: str, side: str
) -> None:
    fake_clio.colleagues = [dict(COLLEAGUE)]
    contact = fake_clio.add_contact("Maya Patel", ["+1 415 555 0142"])
    connector = ClioConnector(ConnectorConfig(fake_clio.connector_config()))
    auth = f"Bearer {fake_clio.issue_tokens().access_token}"
    user = UserView(id=f"{fake_clio.user['id']}-clio", platform="clio", hostname="app.clio.com")
    them = CallParty(phone_number="+14155550142", name="Maya Patel")
    agent = CallParty(phone_number="+14155550101", name="Avery Brooks")
    record = CallRecord(
        session_id="sscl-1",
        direction=direction,
        start_time="2026-03-12T14:35:20.000Z",
        duration=60,
        from_party=them if direction == "Inbound" else agent,
        to_party=agent if direction == "Inbound" else them,
    )
    log = CallLogCreate(
        contact=ContactRef(
            id=str(contact["id"]), phone_number="+14155550142", type="Person", name="Maya Patel"
        ),
        call=record,
        composed_log_details="- Note: cached note",
        owner=CrmUser(id=str(COLLEAGUE["id"]), name="Avery Brooks"),
    )
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=fake_clio.base_url, auth_header=auth)
        result = await connector.create_call_log(CrmCall(user=user, auth_header=auth, http=http), log)
    finally:
        await client.aclose()
    assert result.log_id is not None
    stored = fake_clio.communications[int(result.log_id)]
    assert [(p["type"], p["id"]) for p in stored[side]] == [("User", COLLEAGUE["id"])]
    other = "senders" if side == "receivers" else "receivers"
    assert [p["id"] for p in stored[other]] == [contact["id"]]

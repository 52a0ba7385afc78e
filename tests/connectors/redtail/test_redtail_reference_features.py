"""What the reference Redtail connector does beyond logging, end to end against FakeRedtail over loopback HTTP:
the custom time zone of the times written into activities, and the default category's options read from
Redtail's category list."""

from __future__ import annotations

import uuid
from typing import Any

from fake_redtail import FakeRedtail
from redtail_agent import Agent, call_body

from tests.conftest import conversation_body, new_phone, sms_message

JsonDict = dict[str, Any]


async def save_settings(agent: Agent, settings: JsonDict) -> None:
    response = await agent.http.post(
        "/user/settings",
        headers=agent.auth,
        json={"userSettings": {k: {"value": v} for k, v in settings.items()}},
    )
    assert response.status_code == 200, response.text


async def clear_zone(agent: Agent) -> None:
    """Every test logs in as the fake's one user: no time zone of an earlier test carries over."""
    response = await agent.http.post(
        "/user/settings", headers=agent.auth, json={"settingKeysToRemove": ["redtailCustomTimezone"]}
    )
    assert response.status_code == 200, response.text


def only_activity(fake: FakeRedtail) -> JsonDict:
    [activity] = fake.activities.values()
    return activity


async def test_the_call_time_is_written_in_the_custom_time_zone(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    await save_settings(logged_in, {"redtailCustomTimezone": "-5"})
    phone = new_phone()
    contact = fake_redtail.add_contact("Maya", "Patel", phones=[phone[2:]])
    session_id = f"s-{uuid.uuid4().hex}"
    logged = await logged_in.log_call(
        call_body(session_id, str(contact["id"]), phone, note="Asked about the lease")
    )
    assert logged["successful"] is True, logged
    activity = only_activity(fake_redtail)
    # 14:35:20 UTC, five hours behind; the activity's own dates stay UTC, as Redtail's API takes them
    shifted = "<li><b>Date/time</b>: 2026-03-12 09:35:20 AM (UTC-05:00)</li>"
    assert shifted in activity["description"]
    assert activity["start_date"].startswith("2026-03-12T14:35:20")

    updated = await logged_in.http.patch(
        "/callLog",
        headers=logged_in.auth,
        json={"sessionId": session_id, "note": "Sent the draft", "startTime": "2026-03-12T15:00:00.000Z"},
    )
    assert updated.status_code == 200 and updated.json()["successful"] is True, updated.text
    activity = only_activity(fake_redtail)
    assert "Sent the draft" in activity["description"]
    assert "<li><b>Date/time</b>: 2026-03-12 10:00:00 AM (UTC-05:00)</li>" in activity["description"]


async def test_a_half_hour_zone_and_sms_times(logged_in: Agent, fake_redtail: FakeRedtail) -> None:
    await save_settings(logged_in, {"redtailCustomTimezone": "5.5"})
    phone = new_phone()
    contact = fake_redtail.add_contact("Maya", "Patel", phones=[phone[2:]])
    late = sms_message(f"m-{uuid.uuid4().hex[:8]}", phone, "Still there?", at="2026-03-12T20:15:00.000Z")
    logged = await logged_in.log_messages(
        conversation_body(f"conv-{uuid.uuid4().hex[:8]}", str(contact["id"]), phone, [late])
    )
    assert logged["successful"] is True, logged
    activity = only_activity(fake_redtail)
    # 20:15 UTC is 01:45 the next day at UTC+05:30: the subject's date is the user's day
    assert activity["subject"] == "SMS conversation with Maya Patel - 2026-03-13"
    assert "01:45 UTC+05:30" in activity["description"]


async def test_without_the_setting_times_stay_utc(logged_in: Agent, fake_redtail: FakeRedtail) -> None:
    await clear_zone(logged_in)
    phone = new_phone()
    contact = fake_redtail.add_contact("Maya", "Patel", phones=[phone[2:]])
    late = sms_message(f"m-{uuid.uuid4().hex[:8]}", phone, "Still there?", at="2026-03-12T20:15:00.000Z")
    await logged_in.log_messages(
        conversation_body(f"conv-{uuid.uuid4().hex[:8]}", str(contact["id"]), phone, [late])
    )
    activity = only_activity(fake_redtail)
    assert activity["subject"] == "SMS conversation with Maya Patel - 2026-03-12"
    assert "20:15 UTC" in activity["description"]


async def test_the_default_category_offers_redtails_active_categories(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    await logged_in.http.post(
        "/user/settings", headers=logged_in.auth, json={"settingKeysToRemove": ["defaultCategory"]}
    )
    answered = await logged_in.http.get("/user/settings", headers=logged_in.auth)
    assert answered.status_code == 200, answered.text
    default = answered.json()["defaultCategory"]
    # the stock categories less the deleted one; the manifest's default until the user picks one
    assert default == {
        "value": 2,
        "options": [{"id": 1, "name": "Client"}, {"id": 2, "name": "Prospect"}, {"id": 3, "name": "Service"}],
    }

    await save_settings(logged_in, {"defaultCategory": 3})
    picked = (await logged_in.http.get("/user/settings", headers=logged_in.auth)).json()["defaultCategory"]
    assert picked["value"] == 3 and [o["id"] for o in picked["options"]] == [1, 2, 3]
    stored = await logged_in.http.post("/user/settings", headers=logged_in.auth, json={"userSettings": {}})
    assert "options" not in stored.json()["userSettings"]["defaultCategory"]  # read from Redtail, not stored

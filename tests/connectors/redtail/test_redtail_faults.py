"""Redtail under faults, through the real server over loopback HTTP (SQLite and PostgreSQL).

Each test asserts what the fake Redtail finally holds: a create whose answer was lost at any of its steps is
adopted and finished on the client's retry (exactly one activity, one note, completed), a contact created
behind a timeout is not created twice, an append sent again does not show its message twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fake_redtail import FakeRedtail
from redtail_agent import API, Agent, call_body

from tests.conftest import conversation_body, new_phone, sms_message

JsonDict = dict[str, Any]
ACTIVITIES = f"{API}/activities"


async def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, f"the slow fake never finished: {what}"
        await asyncio.sleep(0.05)


def seed(fake: FakeRedtail, phone: str, *, others: int = 0) -> str:
    contact = fake.add_contact("Maya", "Patel", phones=[phone])
    for index in range(others):
        fake.add_activity(contact["id"], f"Earlier call {index}", f"<b>old</b> [rc-call-other-{index}]")
    return str(contact["id"])


def new_activities(fake: FakeRedtail, others: int) -> list[JsonDict]:
    return [a for a in fake.activities.values() if not str(a["subject"]).startswith("Earlier call")]


async def lost_then_retried(agent: Agent, body: JsonDict) -> JsonDict:
    first = await agent.log_call(body)
    assert first["successful"] is False, first
    return await agent.log_call(body)


async def test_call_log_whose_create_answer_was_lost_is_adopted_and_finished(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    fake = fake_redtail
    fake.per_page = 2  # the marker search reads several pages of the contact's activities
    phone = new_phone()
    contact_id = seed(fake, phone, others=5)
    fake.inject(delay=3.0, path_prefix=ACTIVITIES, method="POST", when="after")
    session = f"s-{uuid.uuid4().hex}"
    retried = await lost_then_retried(logged_in, call_body(session, contact_id, phone, note="Call back"))
    assert retried["successful"] is True, retried
    [activity] = new_activities(fake, 5)
    assert retried["logId"] == str(activity["id"])
    assert activity["completed"] is True
    assert [n["body"] for n in fake.notes[activity["id"]]] == ["Call back"]
    assert len(fake.requests_to(ACTIVITIES, "POST")) == 2  # the activity once, its note once


async def test_call_log_whose_note_answer_was_lost_is_finished_without_a_second_note(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    fake = fake_redtail
    phone = new_phone()
    contact_id = seed(fake, phone)
    fake.inject(delay=3.0, path_prefix=f"{ACTIVITIES}/", method="POST", when="after")  # the note only
    session = f"s-{uuid.uuid4().hex}"
    retried = await lost_then_retried(logged_in, call_body(session, contact_id, phone, note="Call back"))
    assert retried["successful"] is True, retried
    [activity] = fake.activities.values()
    assert retried["logId"] == str(activity["id"])
    assert activity["completed"] is True
    assert len(fake.notes[activity["id"]]) == 1


async def test_call_log_whose_completion_was_refused_is_completed_on_retry(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    fake = fake_redtail
    phone = new_phone()
    contact_id = seed(fake, phone)
    fake.inject(422, path_prefix=f"{ACTIVITIES}/", method="PUT")
    session = f"s-{uuid.uuid4().hex}"
    retried = await lost_then_retried(logged_in, call_body(session, contact_id, phone, note="Call back"))
    assert retried["successful"] is True, retried
    [activity] = fake.activities.values()
    assert activity["completed"] is True
    assert len(fake.notes[activity["id"]]) == 1


async def test_contact_created_behind_a_timeout_is_not_created_twice(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    fake = fake_redtail
    phone = new_phone()
    fake.inject(delay=3.0, path_prefix=f"{API}/contacts", method="POST", when="after")
    slow = await logged_in.create_contact(phone, "Maya Patel")
    assert slow["successful"] is False, slow
    await wait_until(lambda: len(fake.contacts) == 1, "the contact")
    retried = await logged_in.create_contact(phone, "Maya Patel")
    assert retried["successful"] is True, retried
    [contact] = fake.contacts.values()
    assert retried["contact"]["id"] == str(contact["id"])
    assert len(fake.requests_to(f"{API}/contacts", "POST")) == 1


async def test_message_log_whose_create_answer_was_lost_is_adopted(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    fake = fake_redtail
    phone = new_phone()
    contact_id = seed(fake, phone)
    conversation = f"conv-{uuid.uuid4().hex}"
    body = conversation_body(
        conversation, contact_id, phone, [sms_message(f"m-{uuid.uuid4().hex}", phone, "Hello")]
    )
    fake.inject(delay=3.0, path_prefix=ACTIVITIES, method="POST", when="after")
    first = await logged_in.log_messages(body)
    assert first["successful"] is False, first
    again = await logged_in.log_messages(body)
    assert again["successful"] is True, again
    [activity] = fake.activities.values()
    assert activity["completed"] is True
    assert activity["description"].count("Hello") == 1


async def test_an_append_sent_again_after_a_lost_answer_shows_the_message_once(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    fake = fake_redtail
    phone = new_phone()
    contact_id = seed(fake, phone)
    conversation = f"conv-{uuid.uuid4().hex}"
    first, second = (
        sms_message(f"m-{uuid.uuid4().hex}", phone, "Hello"),
        sms_message(f"m-{uuid.uuid4().hex}", phone, "Second words", at="2026-03-12T14:50:00.000Z"),
    )
    assert (await logged_in.log_messages(conversation_body(conversation, contact_id, phone, [first])))[
        "successful"
    ]
    # every PATCH lands but its answer is lost: the client's own re-sends of the (absolute) PATCH too
    fake.inject(delay=3.0, times=5, path_prefix=f"{ACTIVITIES}/", method="PATCH", when="after")
    both = conversation_body(conversation, contact_id, phone, [second, first])
    lost = await logged_in.log_messages(both)
    assert lost["successful"] is False, lost
    fake.clear_faults()
    patches = len(fake.requests_to(ACTIVITIES, "PATCH"))
    again = await logged_in.log_messages(both)
    assert again["successful"] is True, again
    [activity] = fake.activities.values()
    assert activity["description"].count("Second words") == 1
    assert "Conversation(2 messages)" in activity["description"]
    assert len(fake.requests_to(ACTIVITIES, "PATCH")) == patches  # found already there: not sent again


async def test_429_on_search_is_waited_out(logged_in: Agent, fake_redtail: FakeRedtail) -> None:
    phone = new_phone()
    contact_id = seed(fake_redtail, phone)
    fake_redtail.inject(429, retry_after=0.2, times=2, path_prefix=f"{API}/contacts/search_basic")
    found = await logged_in.find_contact(phone)
    assert found["successful"] is True, found
    assert [c["id"] for c in found["contact"] if not c.get("isNewContact")] == [contact_id]
    assert len(fake_redtail.requests_to(f"{API}/contacts/search_basic")) == 3


async def test_validation_error_shows_redtails_words(logged_in: Agent, fake_redtail: FakeRedtail) -> None:
    phone = new_phone()
    contact_id = seed(fake_redtail, phone)
    body = call_body(
        f"s-{uuid.uuid4().hex}", contact_id, phone, note="", additionalSubmission={"category": 4}
    )
    refused = await logged_in.log_call(body)
    assert refused["successful"] is False
    detail = refused["returnMessage"]["details"][0]["items"][0]["text"]
    assert detail == "redtail did not accept the data: Category does not exist"
    assert fake_redtail.activities == {}

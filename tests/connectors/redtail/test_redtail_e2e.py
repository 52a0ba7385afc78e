"""End to end: the App Connect client's requests through the real server over loopback HTTP, Redtail faked.

A dedicated connector server runs with `REDTAIL_API_KEY`/`REDTAIL_API_URL` pointing at `FakeRedtail`, on the
database and keys of the session `server` fixture, so every test here runs on SQLite and on PostgreSQL.
Assertions about Redtail read the fake's own state; what the server stored is read from its database.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from fake_redtail import PASSWORD, USERNAME, FakeRedtail
from redtail_agent import (
    API,
    Agent,
    call_body,
    raw_user_row,
    user_id_of,
)

from tests.conftest import conversation_body, new_phone, sms_message, stored_user

JsonDict = dict[str, Any]


def schemes(fake: FakeRedtail, path: str) -> set[str | None]:
    return {r.auth_scheme for r in fake.requests_to(path)}


# ------------------------------------------------------------------------------------------------------------
# the whole client sequence
# ------------------------------------------------------------------------------------------------------------


async def test_whole_client_sequence(agent: Agent, fake_redtail: FakeRedtail) -> None:
    fake = fake_redtail
    login = await agent.login()  # no apiKey: the auth page asks only for username and password
    assert login.status_code == 200, login.text
    assert login.json()["name"] == "Jordan Lee"
    assert fake.authentications == 1
    assert schemes(fake, f"{API}/authentication") == {"Basic"}

    # The user key is the stored credential, encrypted; the password is nowhere in the row.
    row = await raw_user_row(agent.server, user_id_of(agent.fake))
    assert PASSWORD not in repr(row)
    assert fake.user_key() not in repr(row)
    user = await stored_user(agent.server, user_id_of(agent.fake))
    assert user.access_token == fake.user_key()
    assert "password" not in user.platform_additional_info
    assert user.platform_additional_info["username"] == USERNAME
    # stored under the Redtail user id within its database (a username is unique only inside one firm)
    assert user.id == f"{fake.user()['id']}~{fake.user()['database_id']}-redtail"

    phone = new_phone()
    unknown = await agent.find_contact(phone)
    assert unknown["successful"] is True
    assert [c["id"] for c in unknown["contact"]] == ["createNewContact"]
    searches = fake.requests_to(f"{API}/contacts/search_basic")
    assert searches[-1].query["phone_number"] == phone[2:]  # the national significant number
    assert schemes(fake, f"{API}/contacts") == {"Userkeyauth"}

    created = await agent.create_contact(phone, "Maya Patel")
    assert created["successful"] is True, created
    [contact] = fake.contacts.values()
    assert (contact["first_name"], contact["last_name"], contact["type"]) == (
        "Maya",
        "Patel",
        "Crm::Contact::Individual",
    )
    assert fake.phones[contact["id"]][0] | {"id": 0} == {
        "id": 0,
        "phone_type": 6,
        "number": phone[2:],
        "country_code": 1,
        "is_primary": True,
    }
    contact_id = str(contact["id"])
    assert created["contact"]["id"] == contact_id

    session = f"s-{uuid.uuid4().hex}"
    note = "Asked about <b>fees</b> & the\nrenewal"
    logged = await agent.log_call(
        call_body(session, contact_id, phone, note=note, additionalSubmission={"category": 3})
    )
    assert logged["successful"] is True, logged
    [activity] = fake.activities.values()
    assert logged["logId"] == str(activity["id"])
    assert activity["completed"] is True
    assert activity["category_id"] == 3 and activity["activity_code_id"] == 3
    assert activity["linked_contacts"] == [{"contact_id": contact["id"]}]
    assert activity["subject"] == "Inbound Call from Maya Patel"
    assert activity["start_date"] == "2026-03-12T14:35:20Z" and activity["end_date"] == "2026-03-12T14:43:27Z"
    assert "<b>fees</b>" not in activity["description"]  # everything user-supplied is escaped
    assert "&lt;b&gt;fees&lt;/b&gt; &amp; the<br>renewal" in activity["description"]
    assert f"[rc-call-{session}]" in activity["description"]
    notes = fake.notes[activity["id"]]
    assert [n["body"] for n in notes] == ["Asked about &lt;b&gt;fees&lt;/b&gt; &amp; the<br>renewal"]

    details = await agent.http.get(
        "/callLog", params={"sessionIds": session, "requireDetails": "true"}, headers=agent.auth
    )
    log = details.json()["logs"][0]
    assert log["matched"] is True
    assert log["logData"]["note"] == note
    assert "rc-call-" not in log["logData"]["fullBody"]
    gets = fake.requests_to(f"{API}/activities/{activity['id']}", "GET")
    assert gets and all(r.headers.get("include") == "linked_contacts" for r in gets)

    patched = await agent.http.patch(
        "/callLog",
        headers=agent.auth,
        json={"sessionId": session, "note": "Will call back on Friday", "subject": "Renewal call"},
    )
    assert patched.json()["successful"] is True, patched.text
    updated = fake.activities[activity["id"]]
    assert "Will call back on Friday" in updated["description"] and "fees" not in updated["description"]
    assert updated["subject"] == "Renewal call"

    disposed = await agent.http.put(
        "/callDisposition", headers=agent.auth, json={"sessionId": session, "dispositions": {"category": 1}}
    )
    assert disposed.json()["successful"] is True, disposed.text
    assert fake.activities[activity["id"]]["category_id"] == 1
    assert len(fake.activities) == 1

    conversation = f"conv-{uuid.uuid4().hex}"
    first, second = f"m-{uuid.uuid4().hex}", f"m-{uuid.uuid4().hex}"
    one = await agent.log_messages(
        conversation_body(
            conversation, contact_id, phone, [sms_message(first, phone, "Is the <renewal> ready?")]
        )
    )
    assert one["successful"] is True and one["logIds"] == [first], one
    two = await agent.log_messages(
        conversation_body(
            conversation,
            contact_id,
            phone,
            [
                sms_message(second, phone, "Yes, today", direction="Outbound", at="2026-03-12T14:40:00.000Z"),
                sms_message(first, phone, "Is the <renewal> ready?"),
            ],
        )
    )
    assert two["successful"] is True and two["logIds"] == [second], two
    assert len(fake.activities) == 2
    sms = next(a for a in fake.activities.values() if a["id"] != activity["id"])
    text = sms["description"]
    assert sms["completed"] is True
    assert "Is the &lt;renewal&gt; ready?" in text and "Yes, today" in text
    assert text.index("renewal") < text.index("Yes, today")
    assert "Conversation(2 messages)" in text
    assert sms["end_date"] == "2026-03-12T14:40:00Z"
    assert len(fake.requests_to(f"{API}/activities/{sms['id']}", "PATCH")) == 1

    matched = await agent.find_contact(phone)
    real = [c for c in matched["contact"] if not c.get("isNewContact")]
    assert [(c["id"], c["name"]) for c in real] == [(contact_id, "Maya Patel")]
    categories = real[0]["additionalInfo"]["category"]
    assert {c["const"] for c in categories} == {1, 2, 3}  # the deleted category is not offered

    out = await agent.http.post("/unAuthorize", headers=agent.auth)
    assert out.status_code == 200 and out.json()["messageType"] == "success"
    assert (await stored_user(agent.server, user_id_of(agent.fake))).access_token is None


# ------------------------------------------------------------------------------------------------------------
# login
# ------------------------------------------------------------------------------------------------------------


async def test_wrong_password_is_refused_and_nothing_is_stored(
    agent: Agent, fake_redtail: FakeRedtail
) -> None:
    response = await agent.login(username="someone-else", password="nope")
    assert response.status_code == 400
    details = response.json()["returnMessage"]["details"][0]["items"][0]["text"]
    assert details == "Redtail did not accept this username and password."


async def test_login_with_an_api_key_field_too_and_again_keeps_one_user_key(
    agent: Agent, fake_redtail: FakeRedtail
) -> None:
    """A client that also sends apiKey is fine; logging in after a password change finds the same key."""
    assert (await agent.login(api_key="ignored")).status_code == 200
    fake_redtail.set_password(USERNAME, "changed pass")
    assert (await agent.login(password="changed pass")).status_code == 200
    user = await stored_user(agent.server, user_id_of(agent.fake))
    assert user.access_token == fake_redtail.user_key()
    assert "ignored" not in repr(await raw_user_row(agent.server, user_id_of(agent.fake)))


async def test_a_page_with_an_api_key_field_still_needs_the_api_key(agent: Agent) -> None:
    """Only a platform whose auth page has no apiKey field (Redtail) may log in without one."""
    response = await agent.http.post("/apiKeyLogin", json={"platform": "pipedrive", "additionalInfo": {}})
    assert response.status_code == 400
    assert response.json()["returnMessage"]["message"] == "API key is required."


async def test_missing_username_is_explained(agent: Agent) -> None:
    response = await agent.login(username="")
    assert response.status_code == 400
    text = response.json()["returnMessage"]["details"][0]["items"][0]["text"]
    assert text == "Enter your Redtail username and password."


# ------------------------------------------------------------------------------------------------------------
# phone matching
# ------------------------------------------------------------------------------------------------------------


def _tail(count: int) -> str:
    return "".join(random.choice("0123456789") for _ in range(count))


def _case(kind: str) -> tuple[str, str, int]:
    """(stored as typed in Redtail, the caller's E.164, the phone's country code) with fresh digits."""
    t = _tail(4)
    cases = {
        "us-parens": (f"(415) 555-{t}", f"+1415555{t}", 1),
        "us-dots": (f"415.555.{t}", f"+1415555{t}", 1),
        "us-international": (f"+1 415 555 {t}", f"+1415555{t}", 1),
        "us-digits": (f"415555{t}", f"+1415555{t}", 1),
        "us-extension": (f"(415) 555-{t} x12", f"+1415555{t}", 1),
        "uk-national": (f"020 7946 {t}", f"+44207946{t}", 44),
        "de-national": (f"030 1234 {t}", f"+49301234{t}", 49),
        "au-national": (f"02 9876 {t}", f"+6129876{t}", 61),
        "uk-international": (f"+44 20 7946 {t}", f"+44207946{t}", 44),
    }
    return cases[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "us-parens",
        "us-dots",
        "us-international",
        "us-digits",
        "us-extension",
        "uk-national",
        "de-national",
        "au-national",
        "uk-international",
    ],
)
async def test_numbers_stored_in_any_format_are_found(
    logged_in: Agent, fake_redtail: FakeRedtail, kind: str
) -> None:
    stored, e164, code = _case(kind)
    contact = fake_redtail.add_contact("Élodie", "O'Connor", phones=[stored], country_code=code)
    found = await logged_in.find_contact(e164)
    real = [c for c in found["contact"] if not c.get("isNewContact")]
    assert [(c["id"], c["name"]) for c in real] == [(str(contact["id"]), "Élodie O'Connor")], (stored, found)


async def test_a_loose_search_hit_with_another_number_is_never_returned(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    phone = new_phone()
    sig = phone[2:]
    fake_redtail.add_contact("Wrong", "Longer", phones=[f"{sig}99"])  # contains the digits, longer number
    fake_redtail.add_contact("Wrong", "Country", phones=[f"+44 {sig}"], country_code=44)
    right = fake_redtail.add_contact("Right", "Person", phones=[f"+1 {sig[:3]} {sig[3:6]} {sig[6:]}"])
    found = await logged_in.find_contact(phone)
    assert len(fake_redtail.requests_to(f"{API}/contacts/search_basic")) == 1
    assert [c["id"] for c in found["contact"] if not c.get("isNewContact")] == [str(right["id"])]


async def test_search_results_on_several_pages_are_all_checked(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    fake_redtail.per_page = 2
    phone = new_phone()
    made = [fake_redtail.add_contact("Maya", f"Patel{i}", phones=[phone]) for i in range(5)]
    found = await logged_in.find_contact(phone)
    assert [c["id"] for c in found["contact"] if not c.get("isNewContact")] == [str(c["id"]) for c in made]


# ------------------------------------------------------------------------------------------------------------
# categories
# ------------------------------------------------------------------------------------------------------------


async def test_category_comes_from_the_form_else_the_users_setting_else_redtails_default(
    logged_in: Agent, fake_redtail: FakeRedtail
) -> None:
    phone = new_phone()
    contact = fake_redtail.add_contact("Maya", "Patel", phones=[phone])
    contact_id = str(contact["id"])

    async def category_of_a_new_log(**extra: Any) -> int:
        logged = await logged_in.log_call(
            call_body(f"s-{uuid.uuid4().hex}", contact_id, phone, note="", **extra)
        )
        assert logged["successful"] is True, logged
        return int(fake_redtail.activities[int(logged["logId"])]["category_id"])

    assert await category_of_a_new_log() == 2
    saved = await logged_in.http.post(
        "/user/settings", headers=logged_in.auth, json={"userSettings": {"defaultCategory": {"value": 3}}}
    )
    assert saved.status_code == 200, saved.text
    try:
        assert await category_of_a_new_log() == 3
        assert await category_of_a_new_log(additionalSubmission={"category": 1}) == 1
    finally:  # the user row outlives this test
        await logged_in.http.post(
            "/user/settings", headers=logged_in.auth, json={"settingKeysToRemove": ["defaultCategory"]}
        )
    assert all(not notes for notes in fake_redtail.notes.values())  # no note typed: no note record

"""Two firms, one server: Redtail usernames are unique only inside one database, so each firm's `jsmith` must
be its own stored user (own user key, own sessions) and see and log into only its own firm's records.

Over real loopback HTTP through the connector server (SQLite and PostgreSQL), Redtail faked with two databases.
"""

from __future__ import annotations

import uuid

from fake_redtail import FakeRedtail
from redtail_agent import Agent, call_body, user_id_of

from tests.conftest import LiveServer, new_phone, stored_user
from tests.support.e2e import client_of

FIRM_A, FIRM_B = 1001, 1002


async def test_two_firms_with_the_same_username_stay_apart(
    rt_server: LiveServer, fake_redtail: FakeRedtail
) -> None:
    fake = fake_redtail
    fake.add_user("jsmith", "firm A pass", first_name="Jo", last_name="Smith", database_id=FIRM_A)
    fake.add_user("jsmith", "firm B pass", first_name="Jamie", last_name="Smith", database_id=FIRM_B)
    phone = new_phone()  # the same number is a client of both firms, under different names
    ann = fake.add_contact("Ann", "Alpha", phones=[phone[2:]], database_id=FIRM_A)
    bob = fake.add_contact("Bob", "Beta", phones=[phone[2:]], database_id=FIRM_B)

    async with client_of(rt_server) as http:
        a, b = Agent(http, rt_server, fake), Agent(http, rt_server, fake)
        login_a = await a.login(username="jsmith", password="firm A pass")
        assert login_a.status_code == 200, login_a.text
        login_b = await b.login(username="jsmith", password="firm B pass")
        assert login_b.status_code == 200, login_b.text
        assert (login_a.json()["name"], login_b.json()["name"]) == ("Jo Smith", "Jamie Smith")

        # B's login ended nothing of A's: each JWT works and sees only its own firm's client.
        found_a = await a.find_contact(phone)
        found_b = await b.find_contact(phone)
        assert found_a["successful"] is True, found_a
        assert found_b["successful"] is True, found_b
        assert [c["id"] for c in found_a["contact"] if c["id"] != "createNewContact"] == [str(ann["id"])]
        assert [c["id"] for c in found_b["contact"] if c["id"] != "createNewContact"] == [str(bob["id"])]

        # Each logs into its own firm only.
        session_a, session_b = f"s-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"
        logged_a = await a.log_call(call_body(session_a, str(ann["id"]), phone, note="firm A call"))
        logged_b = await b.log_call(call_body(session_b, str(bob["id"]), phone, note="firm B call"))
        assert logged_a["successful"] is True and logged_b["successful"] is True
        [activity_a] = fake.activities_in(FIRM_A)
        [activity_b] = fake.activities_in(FIRM_B)
        assert f"rc-call-{session_a}" in activity_a["description"]
        assert activity_a["linked_contacts"] == [{"contact_id": ann["id"]}]
        assert f"rc-call-{session_b}" in activity_b["description"]
        assert activity_b["linked_contacts"] == [{"contact_id": bob["id"]}]

        # A logging in again still leaves B's session working, and B never sees A's log.
        again = await a.login(username="jsmith", password="firm A pass")
        assert again.status_code == 200, again.text
        assert (await b.find_contact(phone))["successful"] is True
        seen_by_b = await http.get(
            "/callLog", params={"sessionIds": session_a, "requireDetails": "false"}, headers=b.auth
        )
        assert seen_by_b.status_code == 200, seen_by_b.text
        assert seen_by_b.json()["logs"][0]["matched"] is False

        # Two stored users, each with its own firm's user key.
        id_a, id_b = user_id_of(fake, "jsmith", FIRM_A), user_id_of(fake, "jsmith", FIRM_B)
        assert id_a != id_b and id_a.endswith(f"~{FIRM_A}-redtail") and id_b.endswith(f"~{FIRM_B}-redtail")
        user_a, user_b = await stored_user(rt_server, id_a), await stored_user(rt_server, id_b)
        assert user_a.access_token == fake.user_key("jsmith", database_id=FIRM_A)
        assert user_b.access_token == fake.user_key("jsmith", database_id=FIRM_B)
        assert user_a.platform_additional_info["username"] == "jsmith"

"""What issue 16 settled for Redtail, each against a fake that behaves as Redtail's documentation allows.

- `/authentication` answers the user key in `authenticated_user` (the reference) and names the ids
  `redtail_user_id` / `redtail_database_id` (the API's published example); without them the user is
  `<username>-redtail`, as in the reference;
- a lookup costs no more CRM calls than the reference's two (a search and the categories);
- a call's marker is found in a contact's activities whichever order Redtail lists them in.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fake_redtail import API_KEY, PASSWORD, USERNAME, FakeRedtail

from appconnect.connectors.redtail import RedtailConnector
from appconnect.connectors.sdk import (
    PLACEHOLDER_CONTACT_ID,
    CallLogCreate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactLookup,
    ContactRef,
    CrmCall,
    LoginRequest,
    UserView,
    stored_user_id,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

#: CRM calls the reference connector sends per lookup: contacts/search_basic, then lists/categories
#: (src/connectors/redtail/index.ts, findContact)
REFERENCE_LOOKUP_CALLS = 2


@dataclass
class Env:
    fake: FakeRedtail
    connector: RedtailConnector
    http: CrmHttpClient
    call: CrmCall


@pytest.fixture
async def env(fake_redtail: FakeRedtail) -> AsyncIterator[Env]:
    connector = RedtailConnector(ConnectorConfig({"api_key": API_KEY, "api_url": fake_redtail.api_url}))
    auth = "Basic " + base64.b64encode(f"{API_KEY}:{fake_redtail.user_key()}".encode()).decode()
    user = fake_redtail.user()
    view = UserView(
        id=stored_user_id("redtail", user["id"], user["database_id"]),
        platform="redtail",
        hostname="crm.redtailtechnology.com",
        platform_additional_info={"username": USERNAME, "databaseId": user["database_id"]},
    )
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=fake_redtail.api_url, auth_header=auth)
        yield Env(fake_redtail, connector, http, CrmCall(user=view, auth_header=auth, http=http))
    finally:
        await client.aclose()


async def _login(env: Env) -> UserView:
    result = await env.connector.get_user_info(
        LoginRequest(
            auth_header="",
            hostname="crm.redtailtechnology.com",
            platform="redtail",
            http=env.http,
            additional_info={"username": USERNAME, "password": PASSWORD},
        )
    )
    assert result.successful and result.user is not None, result
    assert result.user.overriding_api_key == env.fake.user_key()
    return UserView(id=result.user.id, platform="redtail", hostname="", platform_additional_info={})


async def test_login_reads_the_published_id_fields(env: Env) -> None:
    user = env.fake.user()
    logged = await _login(env)
    assert logged.id == f"{user['id']}~{user['database_id']}-redtail"


async def test_login_without_ids_in_the_answer_is_the_references_username_id(env: Env) -> None:
    env.fake.auth_answer_ids = False
    assert (await _login(env)).id == f"{USERNAME}-redtail"


@pytest.mark.parametrize("honoured", [True, False], ids=["include-honoured", "include-ignored"])
async def test_a_lookup_costs_no_more_calls_than_the_references(env: Env, honoured: bool) -> None:
    env.fake.honour_include = honoured
    maya = env.fake.add_contact("Maya", "Patel", phones=["(415) 555-0142"])
    env.fake.add_contact("Sam", "Ortiz", phones=["(415) 555-0143"])
    counts = []
    for _ in range(2):
        env.fake.reset_requests()
        found = await env.connector.find_contact(env.call, ContactLookup(phone_number="+14155550142"))
        assert [c.id for c in found.contacts] == [str(maya["id"]), PLACEHOLDER_CONTACT_ID]
        counts.append(len(env.fake.requests))
    print(
        f"\nRedtail lookup hit ({'include honoured' if honoured else 'include ignored'}): {counts} CRM calls "
        f"(reference: {REFERENCE_LOOKUP_CALLS})"
    )
    assert counts[1] <= REFERENCE_LOOKUP_CALLS  # the categories are reused; the hit's phones come with it
    if honoured:
        assert counts == [2, 1]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_the_call_marker_is_found_whichever_order_activities_are_listed_in(
    env: Env, order: str
) -> None:
    env.fake.activities_order = order
    env.fake.per_page = 2
    maya = env.fake.add_contact("Maya", "Patel", phones=["4155550142"])
    for n in range(5):
        env.fake.add_activity(maya["id"], f"Earlier call {n}")
    contact = ContactRef(id=str(maya["id"]), phone_number="+14155550142", type="contact", name="Maya Patel")
    party = CallParty(phone_number="+14155550142", name="Maya Patel")
    record = CallRecord(
        session_id="s-order",
        direction="Inbound",
        start_time="2026-03-12T14:35:20.000Z",
        duration=60,
        from_party=party,
        to_party=CallParty(phone_number="+14155550101", name="Jordan Lee"),
    )
    log = CallLogCreate(contact=contact, call=record)
    created = await env.connector.create_call_log(env.call, log)
    env.fake.reset_requests()
    assert await env.connector.find_call_log(env.call, log) == created.log_id
    pages = env.fake.requests_to(f"/api/public/v1/contacts/{maya['id']}/activities", "GET")
    assert len(pages) == (1 if order == "desc" else 2)  # newest page first: page 1, or the last page


# --- the fake refuses what Redtail refuses ------------------------------------------------------------------


async def test_the_fake_refuses_unknown_parameters_fields_and_non_json_writes(
    fake_redtail: FakeRedtail,
) -> None:
    auth = {
        "Authorization": "UserKeyAuth "
        + base64.b64encode(f"{API_KEY}:{fake_redtail.user_key()}".encode()).decode()
    }
    async with httpx.AsyncClient(base_url=fake_redtail.api_url, headers=auth) as http:
        unknown = await http.get("/contacts/search_basic", params={"phone": "4155550142"})
        assert unknown.status_code == 400
        form = await http.post("/contacts", data={"last_name": "Patel"})
        assert form.status_code == 415
        extra = await http.post(
            "/contacts", json={"type": "Crm::Contact::Individual", "last_name": "Patel", "nickname": "M"}
        )
        assert extra.status_code == 422 and "nickname" in extra.text


async def test_the_fake_takes_what_the_reference_sends_in_production(fake_redtail: FakeRedtail) -> None:
    """The reference's lookup, placeholder contact and call log (src/connectors/redtail/index.ts), with its bare
    base64 user-key header."""
    bare = base64.b64encode(f"{API_KEY}:{fake_redtail.user_key()}".encode()).decode()
    async with httpx.AsyncClient(base_url=fake_redtail.api_url, headers={"Authorization": bare}) as http:
        search = await http.get("/contacts/search_basic", params={"phone_number": "4155550142"})
        assert search.status_code == 200 and search.json()["contacts"] == []
        assert (await http.get("/lists/categories")).status_code == 200
        contact = await http.post(
            "/contacts",
            json={
                "type": "Crm::Contact::Individual",
                "first_name": "Maya",
                "last_name": "Patel",
                "phones": [{"phone_type": 6, "number": "4155550142", "country_code": 1}],
            },
        )
        assert contact.status_code == 201, contact.text
        activity = await http.post(
            "/activities",
            json={
                "subject": "Inbound Call from Maya Patel",
                "description": "<b>Agent notes</b><br>hello<br><br>",
                "start_date": "2026-03-12T14:35:20.000Z",
                "end_date": "2026-03-12T14:43:27.000Z",
                "activity_code_id": 3,
                "category_id": 2,
                "repeats": "never",
                "linked_contacts": [{"contact_id": contact.json()["contact"]["id"]}],
            },
        )
        assert activity.status_code == 201, activity.text
        activity_id = activity.json()["activity"]["id"]
        note = await http.post(
            f"/activities/{activity_id}/notes", json={"category_id": 2, "note_type": 1, "body": "hello"}
        )
        assert note.status_code == 201, note.text
        done = await http.put(f"/activities/{activity_id}", json={"completed": True})
        assert done.status_code == 200 and done.json()["activity"]["id"] == activity_id

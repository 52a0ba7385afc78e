"""What issue 16 settled for Clio, each against a fake that behaves as Clio's documentation allows.

- `query` is documented only as a wildcard search: a lookup must find a number whether Clio matches pieces
  of the stored text or whole words, so it searches whole spellings, never digit fragments;
- a lookup costs no more searches than the reference's one on an account that stores numbers one way;
- the marker search orders newest first, which Clio pages by `offset`;
- a call log adopted after a lost answer gets its time entry, exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fake_clio import FakeClio
from test_clio_connector import Env, _call, _ref, _user

from appconnect.connectors.clio import ClioConnector
from appconnect.connectors.sdk import (
    PLACEHOLDER_CONTACT_ID,
    CallLogCreate,
    ConnectorConfig,
    ContactLookup,
    CrmCall,
    CrmHttpError,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

#: how firms type a US number into Clio (national digits 415 555 0142)
STORED = {
    "e164": "+14155550142",
    "parentheses": "(415) 555-0142",
    "dashes": "415-555-0142",
    "dots": "415.555.0142",
    "digits": "4155550142",
    "spaced-e164": "+1 415 555 0142",
    "international": "+1 415-555-0142",
    "extension": "(415) 555-0142 ext. 12",
}
#: CRM requests the reference connector sends for one lookup: one search, then per hit its matters and its
#: related matters (src/connectors/clio/index.ts, findContact)
REFERENCE_SEARCHES = 1


async def _env(fake: FakeClio, **config: str) -> AsyncIterator[Env]:
    connector = ClioConnector(ConnectorConfig({**fake.connector_config(), **config}))
    auth = f"Bearer {fake.issue_tokens().access_token}"
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        http = CrmHttpClient(client, base_url=fake.base_url, auth_header=auth)
        yield Env(fake, connector, CrmCall(user=_user(fake), auth_header=auth, http=http))
    finally:
        await client.aclose()


@pytest.fixture
async def env(fake_clio: FakeClio) -> AsyncIterator[Env]:
    async for value in _env(fake_clio):
        yield value


@pytest.fixture
async def env_one_search(fake_clio: FakeClio) -> AsyncIterator[Env]:
    async for value in _env(fake_clio, phone_search_limit="1"):
        yield value


async def _lookup(env: Env, phone: str) -> list[str]:
    matches = await env.connector.find_contact(env.call, ContactLookup(phone_number=phone))
    assert matches.contacts[-1].id == PLACEHOLDER_CONTACT_ID
    return [c.id for c in matches.contacts[:-1]]


def _searches(fake: FakeClio) -> list[str]:
    return [r.query["query"] for r in fake.requests_to("/api/v4/contacts.json", "GET")]


@pytest.mark.parametrize("mode", ["substring", "words"])
@pytest.mark.parametrize("form", list(STORED))
async def test_every_stored_spelling_is_found_whichever_way_query_matches(
    env: Env, mode: str, form: str
) -> None:
    env.fake.query_mode = mode  # type: ignore[assignment]
    maya = env.fake.add_contact("Maya Patel", [STORED[form]])
    env.fake.add_contact("Someone Else", ["(415) 555-0199"])
    assert await _lookup(env, "+14155550142") == [str(maya["id"])]
    assert all(len(term.replace(" ", "")) >= 10 for term in _searches(env.fake)), "whole spellings only"


async def test_the_accounts_spelling_is_tried_first_so_a_hit_costs_the_references_one_search(
    env: Env,
) -> None:
    env.fake.query_mode = "words"
    first = env.fake.add_contact("Maya Patel", ["415.555.0142"])
    second = env.fake.add_contact("Sam Ortiz", ["415.555.0143"])
    assert await _lookup(env, "+14155550142") == [str(first["id"])]
    learning = len(_searches(env.fake))
    assert learning > REFERENCE_SEARCHES  # the first hit had to find the account's spelling
    env.fake.reset_requests()
    assert await _lookup(env, "+14155550143") == [str(second["id"])]
    assert _searches(env.fake) == ["415.555.0143"]  # remembered: one search, as the reference
    per_hit = len(env.fake.requests) - len(_searches(env.fake))
    assert per_hit == 2  # the hit's matters and related matters, as the reference reads them
    print(
        f"\nClio lookup hit: {len(env.fake.requests)} CRM calls (reference: {REFERENCE_SEARCHES} + 2 per hit)"
    )


async def test_a_miss_searches_the_other_spellings_at_most_as_configured(
    env: Env, env_one_search: Env
) -> None:
    assert await _lookup(env, "+14155550177") == []
    assert 1 < len(_searches(env.fake)) <= 6
    env.fake.reset_requests()
    assert await _lookup(env_one_search, "+14155550177") == []
    assert _searches(env.fake) == ["+14155550177"]


async def test_a_consistent_account_pays_one_search_per_miss_with_a_periodic_full_search(
    fake_clio: FakeClio,
) -> None:
    async for env in _env(fake_clio, phone_consistent_after="2", phone_recheck_every="3"):
        env.fake.query_mode = "words"
        for n in range(2):
            env.fake.add_contact(f"Client {n}", [f"415.555.014{n}"])
            await _lookup(env, f"+1415555014{n}")
        misses = []
        for n in range(3):
            env.fake.reset_requests()
            assert await _lookup(env, f"+1415555017{n}") == []
            misses.append(len(_searches(env.fake)))
        assert misses[:2] == [REFERENCE_SEARCHES, REFERENCE_SEARCHES] and misses[2] > REFERENCE_SEARCHES
        env.fake.reset_requests()
        other = env.fake.add_contact("Typed otherwise", ["(415) 555-0188"])
        assert await _lookup(env, "+14155550188") == []  # narrowed again after the recheck: not found...
        for _ in range(2):
            await _lookup(env, "+14155550188")
        assert await _lookup(env, "+14155550188") == [str(other["id"])]  # ...until the next full search


async def test_the_marker_search_pages_newest_first_by_offset(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    log = CallLogCreate(contact=_ref(maya), call=_call("s-marker"))
    created = await env.connector.create_call_log(env.call, log)
    assert await env.connector.find_call_log(env.call, log) == created.log_id
    marker_search = env.fake.requests_to("/api/v4/communications.json", "GET")[-1]
    assert marker_search.query["order"] == "id(desc)" and marker_search.query["offset"] == "0"


async def test_a_call_log_adopted_after_a_lost_answer_gets_its_time_entry_once(env: Env) -> None:
    maya = env.fake.add_contact("Maya Patel", ["(415) 555-0142"])
    log = CallLogCreate(contact=_ref(maya), call=_call("s-lost"))
    env.fake.inject(500, when="after", path_prefix="/api/v4/communications.json", method="POST")
    with pytest.raises(CrmHttpError):
        await env.connector.create_call_log(env.call, log)
    assert env.fake.activities == {}  # the create stopped before the time entry
    adopted = await env.connector.find_call_log(env.call, log)
    assert adopted is not None and int(adopted) in env.fake.communications
    assert await env.connector.find_call_log(env.call, log) == adopted  # asked again: nothing added
    entries = [a for a in env.fake.activities.values() if a["communication"]["id"] == int(adopted)]
    assert len(entries) == 1 and entries[0]["quantity"] == 487


# --- the fake refuses what Clio refuses -------------------------------------------------------------------------


async def test_the_fake_refuses_unknown_parameters_non_json_bodies_and_unpaged_orders(
    fake_clio: FakeClio,
) -> None:
    headers = {"Authorization": f"Bearer {fake_clio.issue_tokens().access_token}"}
    async with httpx.AsyncClient(base_url=fake_clio.base_url, headers=headers) as http:
        unknown = await http.get("/api/v4/contacts.json", params={"phone": "4155550142"})
        assert unknown.status_code == 400 and "phone" in unknown.text
        form = await http.post("/api/v4/contacts.json", data={"name": "Maya"})
        assert form.status_code == 415
        unpaged = await http.get("/api/v4/communications.json", params={"order": "id(desc)"})
        assert unpaged.status_code == 400
        paged = await http.get("/api/v4/communications.json", params={"order": "id(desc)", "offset": "0"})
        assert paged.status_code == 200
        bearer_only = await http.get("/api/v4/users/who_am_i.json", headers={"Authorization": "Basic eDp5"})
        assert bearer_only.status_code == 401


async def test_the_fake_takes_what_the_reference_sends_in_production(fake_clio: FakeClio) -> None:
    """The reference's call log (src/connectors/clio/index.ts, createCallLog) as Clio takes it."""
    maya = fake_clio.add_contact("Maya Patel", ["(415) 555-0142"])
    headers = {"Authorization": f"Bearer {fake_clio.issue_tokens().access_token}"}
    async with httpx.AsyncClient(base_url=fake_clio.base_url, headers=headers) as http:
        communication = await http.post(
            "/api/v4/communications.json",
            json={
                "data": {
                    "subject": "[Call] Inbound Call from Maya Patel [+14155550142]",
                    "body": "- Note: hello",
                    "type": "PhoneCommunication",
                    "received_at": "2026-03-12T14:35:20.000Z",
                    "senders": [{"id": maya["id"], "type": "Contact"}],
                    "receivers": [{"id": fake_clio.user["id"], "type": "User"}],
                    "notification_event_subscribers": [{"user_id": fake_clio.user["id"]}],
                }
            },
        )
        assert communication.status_code == 201, communication.text
        entry = await http.post(
            "/api/v4/activities.json",
            json={
                "data": {
                    "communication": {"id": communication.json()["data"]["id"]},
                    "quantity": 487,
                    "date": "2026-03-12T14:35:20.000Z",
                    "type": "TimeEntry",
                    "non_billable": False,
                    "note": "- Note: hello",
                }
            },
        )
        assert entry.status_code == 201, entry.text


async def test_a_phone_search_reads_one_page_as_the_references_does(env: Env) -> None:
    """A loosely read spelling must not cost a request per 200 unrelated contacts."""
    for n in range(250):  # 250 contacts whose notes-like name holds a spelling of the number, not the number
        env.fake.add_contact(f"Referred by 415-555-0142 #{n}", [f"(650) 555-{n:04d}"])
    assert await _lookup(env, "+14155550142") == []
    searches = env.fake.requests_to("/api/v4/contacts.json", "GET")
    assert all("page_token" not in r.query for r in searches), "no second page of a phone search"


async def test_a_spelling_clios_query_syntax_refuses_is_skipped_not_fatal(env: Env) -> None:
    env.fake.query_refuses = "()"
    maya = env.fake.add_contact("Maya Patel", ["415.555.0142"])
    assert await _lookup(env, "+14155550142") == [str(maya["id"])]
    env.fake.query_refuses = "+"  # the reference's own term refused: the lookup fails, as the reference's
    with pytest.raises(CrmHttpError):
        await _lookup(env, "+14155550143")

"""CRM calls per Insightly lookup: never more than the reference's four searches on an account that stores its
numbers one way, and a miss fans out only as far as the `lookup_max_spellings` setting allows.

The reference connector searches one spelling (the national significant number, or the user's overriding
format) in contacts' PHONE and PHONE_MOBILE and leads' PHONE and MOBILE: 4 searches per lookup. Counts are read
from the requests the fake received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fake_insightly import FakeInsightly

from appconnect.connectors.insightly import InsightlyConnector
from appconnect.connectors.insightly.connector import SETTLED_AFTER_HITS, insightly_terms
from appconnect.connectors.sdk import ConnectorConfig, ContactLookup, CrmCall, UserView, stored_user_id
from appconnect.outbound.client import CrmHttpClient, build_transport_client

#: the reference's searches per lookup (`src/connectors/insightly/index.ts`, lines 137-218: 4 per spelling)
REFERENCE_SEARCHES = 4


@dataclass
class Env:
    fake: FakeInsightly
    connector: InsightlyConnector
    call: CrmCall


async def _env(fake: FakeInsightly, **config: str) -> AsyncIterator[Env]:
    connector = InsightlyConnector(ConnectorConfig({"base_url": fake.base_url, **config}))
    transport = build_transport_client(connect_timeout=2, read_timeout=2)
    user = UserView(
        id=stored_user_id("insightly", fake.user_id_of(fake.default_key), fake.instance_id),
        platform="insightly",
        hostname="",
        platform_additional_info={"instanceId": fake.instance_id},
    )
    auth = "Basic " + connector.basic_auth(fake.default_key)
    http = CrmHttpClient(transport, base_url=connector.base_url(user), auth_header=auth)
    yield Env(fake, connector, CrmCall(user, auth, http))
    await transport.aclose()


@pytest.fixture
async def env(fake_insightly: FakeInsightly) -> AsyncIterator[Env]:
    async for made in _env(fake_insightly):
        yield made


@pytest.fixture
async def bounded(fake_insightly: FakeInsightly) -> AsyncIterator[Env]:
    async for made in _env(fake_insightly, lookup_max_spellings="2"):
        yield made


async def searches_of(env: Env, phone: str, *, force_refresh: bool = False) -> tuple[list[str], int]:
    """(ids found, searches sent) of one lookup."""
    before = len(env.fake.requests_to("/v3.1/"))
    matches = await env.connector.find_contact(env.call, ContactLookup(phone, force_refresh=force_refresh))
    assert matches.successful
    searches = [r for r in env.fake.requests_to("/v3.1/")[before:] if r.path.endswith("/search")]
    return [c.id for c in matches.contacts if not c.is_new_contact], len(searches)


def _seed(fake: FakeInsightly, spelling: str, count: int) -> list[tuple[str, str]]:
    """`count` contacts whose numbers are stored in one spelling (`{}` stands for the last four digits)."""
    seeded = []
    for n in range(count):
        last4 = f"{100 + n:04d}"
        contact = fake.add_contact("Caller", str(n), phone=spelling.format(last4))
        seeded.append((f"+1415555{last4}", str(contact["CONTACT_ID"])))
    return seeded


async def test_reference_spelling_costs_the_references_four_searches(env: Env) -> None:
    """Numbers stored as the reference searches them (`4155550100`): every lookup, the first included, is 4."""
    for phone, contact_id in _seed(env.fake, "415555{}", 4):
        found, searches = await searches_of(env, phone)
        print(f"insightly lookup: {searches} CRM searches (reference {REFERENCE_SEARCHES})")
        assert found == [contact_id]
        assert searches == REFERENCE_SEARCHES


async def test_a_consistent_account_costs_four_searches_after_its_first_hit(env: Env) -> None:
    """Stored as `(415) 555-0100`: the first lookup fans out to find the spelling, every later one is 4."""
    seeded = _seed(env.fake, "(415) 555-{}", 5)
    found, first = await searches_of(env, seeded[0][0])
    assert found == [seeded[0][1]] and first > REFERENCE_SEARCHES
    for phone, contact_id in seeded[1:]:
        found, searches = await searches_of(env, phone)
        print(f"insightly lookup: {searches} CRM searches (reference {REFERENCE_SEARCHES})")
        assert found == [contact_id]
        assert searches == REFERENCE_SEARCHES


async def test_a_miss_on_a_settled_account_costs_four_searches(env: Env) -> None:
    """After SETTLED_AFTER_HITS hits in one spelling, an unknown caller costs the reference's 4 searches; a
    lookup the user forces (the client's refresh) still tries every spelling."""
    seeded = _seed(env.fake, "(415) 555-{}", SETTLED_AFTER_HITS)
    for phone, _contact_id in seeded:
        await searches_of(env, phone)
    assert await searches_of(env, "+14155559999") == ([], REFERENCE_SEARCHES)
    terms = len(insightly_terms("+14155559999"))
    assert await searches_of(env, "+14155559999", force_refresh=True) == ([], terms * REFERENCE_SEARCHES)


async def test_a_miss_before_the_account_settles_tries_every_spelling(env: Env) -> None:
    found, searches = await searches_of(env, "+14155559999")
    assert found == [] and searches == len(insightly_terms("+14155559999")) * REFERENCE_SEARCHES


async def test_lookup_max_spellings_bounds_a_miss(bounded: Env) -> None:
    """`INSIGHTLY_LOOKUP_MAX_SPELLINGS=2`: a miss costs at most two spellings' searches."""
    assert await searches_of(bounded, "+14155559999") == ([], 2 * REFERENCE_SEARCHES)


async def test_what_one_account_learnt_is_not_used_for_another(env: Env) -> None:
    """The memo is keyed by the Insightly instance: another company starts from the reference's spelling."""
    seeded = _seed(env.fake, "(415) 555-{}", 2)
    await searches_of(env, seeded[0][0])
    assert (await searches_of(env, seeded[1][0]))[1] == REFERENCE_SEARCHES
    env.call.user.platform_additional_info = {"instanceId": 990002}
    found, searches = await searches_of(env, seeded[1][0])
    assert found == [seeded[1][1]] and searches > REFERENCE_SEARCHES


async def test_an_account_that_stores_numbers_two_ways_never_settles(env: Env) -> None:
    """Once a second spelling has found someone, a miss still tries every spelling: nothing stored either way
    is left unfound for the sake of the quota."""
    seeded = _seed(env.fake, "(415) 555-{}", SETTLED_AFTER_HITS)
    other = env.fake.add_contact("Dotted", "Caller", phone="415.555.0999")
    for phone, _contact_id in seeded:
        await searches_of(env, phone)
    found, _ = await searches_of(env, "+14155550999", force_refresh=True)
    assert found == [str(other["CONTACT_ID"])]
    for phone, _contact_id in seeded:
        await searches_of(env, phone)
    terms = len(insightly_terms("+14155559999"))
    assert await searches_of(env, "+14155559999") == ([], terms * REFERENCE_SEARCHES)

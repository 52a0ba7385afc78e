"""Asking RingCentral who a token is: answers reused for a short while, by a hash of the token, in bounded
memory; refusals remembered, outages not (against the fake RingCentral platform on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from appconnect.outbound.client import CrmTransport, build_transport_client
from appconnect.security.ringcentral import RcCheckFailed, RcIdentity, RingCentralIdentities
from tests.support.fake_ringcentral import EXTENSION_PATH, EXTENSIONS_PATH, FakeRingCentral

HASH_KEY = "test-hash-key"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rc() -> Iterator[FakeRingCentral]:
    with FakeRingCentral() as fake:
        yield fake


@pytest_asyncio.fixture
async def http() -> AsyncIterator[CrmTransport]:
    transport = build_transport_client(connect_timeout=2, read_timeout=2, call_deadline=5)
    try:
        yield transport
    finally:
        await transport.aclose()


def asked(rc: FakeRingCentral) -> int:
    return len(rc.requests_to(EXTENSION_PATH))


async def test_the_identity_is_what_ringcentral_says(rc: FakeRingCentral, http: CrmTransport) -> None:
    admin, agent = rc.extension("3001", admin=True), rc.extension("3001")
    identities = RingCentralIdentities()
    found = await identities.identify(http, rc.base_url, admin, HASH_KEY)
    assert found.account_id == "3001" and found.is_admin and found.extension_id
    assert await identities.identify(http, rc.base_url, agent, HASH_KEY) == RcIdentity(
        "3001", rc.extensions[rc.tokens[agent]].extension_id, False
    )


async def test_answers_expire_and_the_cache_is_bounded(rc: FakeRingCentral, http: CrmTransport) -> None:
    clock = Clock()
    identities = RingCentralIdentities(ttl=60, max_entries=2, clock=clock)
    first, second, third = (rc.extension("3002") for _ in range(3))
    start = asked(rc)
    await identities.identify(http, rc.base_url, first, HASH_KEY)
    await identities.identify(http, rc.base_url, first, HASH_KEY)
    assert asked(rc) - start == 1
    clock.now += 61
    await identities.identify(http, rc.base_url, first, HASH_KEY)
    assert asked(rc) - start == 2
    # two more tokens push the first out
    await identities.identify(http, rc.base_url, second, HASH_KEY)
    await identities.identify(http, rc.base_url, third, HASH_KEY)
    await identities.identify(http, rc.base_url, first, HASH_KEY)
    assert asked(rc) - start == 5
    assert all(first not in repr(key) for key in identities._answers)  # only hashes are kept


async def test_a_refusal_is_remembered_an_outage_is_not(rc: FakeRingCentral, http: CrmTransport) -> None:
    identities = RingCentralIdentities()
    expired = rc.extension("3003")
    rc.expire(expired)
    start = asked(rc)
    for _ in range(2):
        with pytest.raises(RcCheckFailed) as refused:
            await identities.identify(http, rc.base_url, expired, HASH_KEY)
        assert refused.value.refused
    assert asked(rc) - start == 1

    token = rc.extension("3003")
    rc.inject(502, times=1, path_prefix=EXTENSION_PATH)
    with pytest.raises(RcCheckFailed) as down:
        await identities.identify(http, rc.base_url, token, HASH_KEY)
    assert not down.value.refused
    assert (await identities.identify(http, rc.base_url, token, HASH_KEY)).account_id == "3003"


async def test_a_token_that_cannot_be_one_is_never_sent(rc: FakeRingCentral, http: CrmTransport) -> None:
    start = asked(rc)
    for token in ("x" * 5000, "line\nbreak"):
        with pytest.raises(RcCheckFailed):
            await RingCentralIdentities().identify(http, rc.base_url, token, HASH_KEY)
    assert asked(rc) == start


async def test_concurrent_checks_of_one_token_ask_once(rc: FakeRingCentral, http: CrmTransport) -> None:
    identities = RingCentralIdentities()
    token = rc.extension("3004", admin=True)
    rc.inject(delay=0.3, times=1, path_prefix=EXTENSION_PATH)
    start = asked(rc)
    found = await asyncio.gather(*(identities.identify(http, rc.base_url, token, HASH_KEY) for _ in range(5)))
    assert {identity.account_id for identity in found} == {"3004"}
    assert asked(rc) - start == 1


def test_the_fake_platform_lists_only_the_tokens_account(rc: FakeRingCentral) -> None:
    """What user mapping will read: the extensions of the caller's account, none of another's."""
    token = rc.extension("3005", admin=True, name="Admin")
    rc.extension("3005", name="Agent")
    rc.extension("3006", name="Stranger")
    answer = httpx.get(f"{rc.base_url}{EXTENSIONS_PATH}", headers={"Authorization": f"Bearer {token}"})
    names = sorted(record["name"] for record in answer.json()["records"])
    assert answer.status_code == 200 and names == ["Admin", "Agent"]
    assert httpx.get(f"{rc.base_url}{EXTENSIONS_PATH}").status_code == 401

"""Pipedrive under faults, through the real server over loopback HTTP (SQLite and PostgreSQL).

Each test asserts what the fake Pipedrive finally holds, or exactly how many requests it received: a write is
never sent twice, a person whose create answer was lost is adopted, reads and 429s are retried within bounds.
The server here has the rate limiter off so these tests leave no back-off behind for the other Pipedrive tests
(the limiter has its own tests on the test CRM and on each backend).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fake_pipedrive import FakePipedrive
from test_pipedrive_e2e import SHORT_LIVED, Agent

from tests.conftest import LiveServer, new_phone
from tests.support.e2e import client_of, server_beside_fixture

JsonDict = dict[str, Any]


faults_server = server_beside_fixture("pipedrive-faults", "_fake_pipedrive_server", crm_rate_limit="off")


@pytest.fixture
async def pd_agent(faults_server: LiveServer, fake_pipedrive: FakePipedrive) -> AsyncIterator[Agent]:
    async with client_of(faults_server) as http:
        agent = Agent(http, faults_server, fake_pipedrive)
        await agent.login()
        yield agent


def detail_text(body: JsonDict) -> str:
    return str(body["returnMessage"]["details"][0]["items"][0]["text"])


def person_posts(fake: FakePipedrive) -> int:
    return len(fake.requests_to("/api/v2/persons", "POST"))


async def wait_for_persons(fake: FakePipedrive, count: int) -> list[JsonDict]:
    deadline = time.monotonic() + 10
    while len(fake.persons) < count:
        assert time.monotonic() < deadline, "the slow fake never finished the create"
        await asyncio.sleep(0.05)
    return list(fake.persons.values())


async def test_person_create_answered_after_the_read_timeout_then_retried_gives_one_person(
    pd_agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    fake = fake_pipedrive
    phone = new_phone()
    fake.inject(delay=3.0, path_prefix="/api/v2/persons", method="POST")
    slow = await pd_agent.create_contact(phone, "Maya Patel")
    assert slow["successful"] is False
    assert detail_text(slow) == "pipedrive did not answer in time. Please try again."
    [made] = await wait_for_persons(fake, 1)

    retried = await pd_agent.create_contact(phone, "Maya Patel")
    assert retried["successful"] is True, retried
    assert retried["contact"]["id"] == str(made["id"])
    assert len(fake.persons) == 1
    assert person_posts(fake) == 1  # the retry asked Pipedrive instead of creating again


async def test_concurrent_duplicate_creates_give_one_person(
    pd_agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    phone = new_phone()
    answers = await asyncio.gather(*(pd_agent.create_contact(phone, "Maya Patel") for _ in range(10)))
    assert len(fake_pipedrive.persons) == 1
    [person] = fake_pipedrive.persons.values()
    assert {a["contact"]["id"] for a in answers if a["successful"]} == {str(person["id"])}
    assert person_posts(fake_pipedrive) == 1


async def test_429_storm_on_search_is_waited_out(pd_agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    person = fake.add_person("Maya Patel", phones=[maya_phone])
    fake.inject(status=429, retry_after=0.2, times=2, path_prefix="/api/v2/persons/search")
    found = (await pd_agent.find_contact(maya_phone, force=True)).json()
    assert found["successful"] is True, found
    assert [c["id"] for c in found["contact"] if not c.get("isNewContact")] == [str(person["id"])]
    assert len(fake.requests_to("/api/v2/persons/search")) == 3


async def test_429_with_a_long_retry_after_is_reported_not_waited(
    pd_agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    fake = fake_pipedrive
    fake.inject(status=429, retry_after=120, path_prefix="/api/v2/persons", method="POST")
    limited = await pd_agent.create_contact(new_phone(), "Maya Patel")
    assert limited["returnMessage"]["message"] == "Rate limit exceeded"
    assert fake.persons == {}
    assert person_posts(fake) == 1


async def test_5xx_burst_on_reads_is_retried(pd_agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    maya_phone = new_phone()  # a number no earlier test cached for the shared company
    fake = fake_pipedrive
    fake.add_person("Maya Patel", phones=[maya_phone])
    fake.inject(status=502, times=1, path_prefix="/api/v2/persons/search")
    fake.inject(status=504, times=1, path_prefix="/api/v2/persons/search")
    found = (await pd_agent.find_contact(maya_phone, force=True)).json()
    assert found["successful"] is True, found
    assert len(fake.requests_to("/api/v2/persons/search")) == 3


async def test_a_person_create_answered_503_is_not_sent_again(
    pd_agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    fake = fake_pipedrive
    fake.inject(status=503, path_prefix="/api/v2/persons", method="POST")
    failed = await pd_agent.create_contact(new_phone(), "Maya Patel")
    assert failed["successful"] is False
    assert failed["returnMessage"]["message"] == "Error creating contact"
    assert detail_text(failed) == "pipedrive is having problems (HTTP 503). Please try again later."
    assert person_posts(fake) == 1
    assert fake.persons == {}


async def test_validation_error_shows_pipedrives_words(
    pd_agent: Agent, fake_pipedrive: FakePipedrive
) -> None:
    fake_pipedrive.inject(status=400, path_prefix="/api/v2/persons", method="POST")
    refused = await pd_agent.create_contact(new_phone(), "Maya Patel")
    assert refused["returnMessage"]["message"] == "Error creating contact"
    assert detail_text(refused) == "pipedrive did not accept the data: Request failed"


async def test_token_refresh_is_sent_once_even_when_it_fails(
    faults_server: LiveServer, fake_pipedrive: FakePipedrive
) -> None:
    """The refresh has its own single-flight and no retry: a failed refresh is not sent again."""
    fake = fake_pipedrive
    async with httpx.AsyncClient(base_url=faults_server.base_url, timeout=30) as http:
        agent = Agent(http, faults_server, fake)
        await agent.login(expires_in=SHORT_LIVED)
        fake.inject(status=503, path_prefix="/oauth/token", method="POST")
        before = fake.refresh_calls
        response = await http.get("/contact", params={"phoneNumber": new_phone()}, headers=agent.auth)
    assert response.status_code != 200 or response.json()["successful"] is False
    assert len(fake.requests_to("/oauth/token", "POST")) == 2  # the code exchange and one refresh attempt
    assert fake.refresh_calls == before  # the fault answered it; nothing was refreshed

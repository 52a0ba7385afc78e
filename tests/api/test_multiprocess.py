"""Stateless workers: `appconnect serve --workers 2` processes share one database and keep every guarantee."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, call_log_body, new_phone
from tests.support.served import serve_process


@pytest.fixture(scope="module")
def workers(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two worker processes on the same database as the in-thread test server."""
    folder: Path = tmp_path_factory.mktemp("workers")
    settings = {
        "APPCONNECT_DATABASE_URL": server.settings.database_url,
        "APPCONNECT_KEY_FILE": str(folder / "keys.json"),
        "APPCONNECT_TESTCRM_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'testcrm.sqlite3'}",
        "TESTCRM_BASE_URL": "{base}/testcrm/api/v1",
    }
    with serve_process(folder, settings) as base:
        yield base


async def test_two_workers_create_one_contact_and_one_activity(workers: str) -> None:
    async with httpx.AsyncClient(
        base_url=workers, timeout=60, limits=httpx.Limits(max_connections=40)
    ) as http:
        key = (await http.post("/testcrm/api/v1/api-keys", json={"name": "Multi"})).json()["apiKey"]
        jwt = (await http.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": key})).json()[
            "jwtToken"
        ]
        auth = {"Authorization": f"Bearer {jwt}"}
        phone = new_phone()
        created = await asyncio.gather(
            *[
                http.post(
                    "/contact",
                    json={"phoneNumber": phone, "newContactName": f"W{i}", "newContactType": "contact"},
                    headers=auth,
                )
                for i in range(20)
            ]
        )
        contact_ids = {r.json()["contact"]["id"] for r in created}
        assert len(contact_ids) == 1
        session = f"mp-{phone}"
        logged = await asyncio.gather(
            *[
                http.post(
                    "/callLog", json=call_log_body(session, next(iter(contact_ids)), phone), headers=auth
                )
                for _ in range(20)
            ]
        )
        assert sum(1 for r in logged if r.json()["successful"]) == 1
        stored = (await http.get("/testcrm/api/v1/contacts", params={"phone": phone}, auth=(key, ""))).json()[
            "data"
        ]
        assert len(stored) == 1
        activities = (
            await http.get(
                "/testcrm/api/v1/activities", params={"contact_id": stored[0]["id"]}, auth=(key, "")
            )
        ).json()["data"]
        assert len(activities) == 1

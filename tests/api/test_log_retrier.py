"""Two retriers (two workers or machines on one database) racing for the same kept log deliver it once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from appconnect.connectors.registry import ConnectorRegistry
from appconnect.flows.log_retrier import run_once
from appconnect.flows.services import build_services
from appconnect.store.db import create_engine
from appconnect.store.tables import call_logs
from tests.conftest import CrmView, LiveServer, call_log_body, new_phone


async def race_two_retriers(server: LiveServer, session: str) -> list[int]:
    registry_env = {"TESTCRM_BASE_URL": server.crm_api}
    workers = [build_services(server.settings, ConnectorRegistry.discover(registry_env)) for _ in range(2)]
    try:
        engine = create_engine(server.settings.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:  # due now instead of after the first backoff
                await conn.execute(
                    update(call_logs)
                    .where(call_logs.c.session_id == session)
                    .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
                )
        finally:
            await engine.dispose()
        return list(await asyncio.gather(*(run_once(w) for w in workers)))
    finally:
        for worker in workers:
            await worker.close()


def test_two_retriers_deliver_a_kept_log_once(
    server: LiveServer, client: httpx.Client, jwt: str, crm: CrmView
) -> None:
    phone = new_phone()
    headers = {"Authorization": f"Bearer {jwt}"}
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Twice", "newContactType": "contact"},
        headers=headers,
    ).json()["contact"]["id"]
    session = f"race-{uuid.uuid4().hex}"
    crm.clear_faults()
    crm.inject(status=503, times=1, method="POST", path_prefix="/api/v1/activities")
    failed = client.post("/callLog", json=call_log_body(session, contact, phone), headers=headers).json()
    assert failed["successful"] is False

    delivered = asyncio.run(race_two_retriers(server, session))
    assert sum(delivered) == 1
    assert len(crm.activities_of(contact)) == 1
    assert crm.received("/api/v1/activities") == 2  # the one refused with a 503, and one delivery
    logs = client.get("/callLog", params={"sessionIds": session}, headers=headers).json()["logs"]
    assert logs[0]["matched"] is True

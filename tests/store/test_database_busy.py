"""Every database connection of a worker in use: the next request waits `database_pool_timeout` seconds and
then gets a clean "busy, retry" answer (503 + Retry-After), never an endless wait."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import create_test_database, crm_admin_headers, start_server


@contextmanager
def users_table_locked(url: str) -> Iterator[None]:
    """Another client holds an exclusive lock on `users`: any read of it waits inside PostgreSQL."""
    import asyncpg

    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    async def hold() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            locked.set()
            await asyncio.to_thread(release.wait, 60)
            await transaction.rollback()
        finally:
            await conn.close()

    def target() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:
            errors.append(exc)
            locked.set()

    thread = threading.Thread(target=target)
    thread.start()
    locked.wait(30)
    try:
        assert not errors, errors
        yield
    finally:
        release.set()
        thread.join(30)


def waiting_on_a_lock(url: str) -> int:
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
        finally:
            await conn.close()

    return asyncio.run(count())


def test_no_free_connection_answers_busy_retry_after_the_pool_timeout(tmp_path: Path) -> None:
    url = create_test_database()
    with (
        contextmanager(start_server)(
            tmp_path, url, database_pool_size=1, database_max_overflow=0, database_pool_timeout=0.5
        ) as live,
        httpx.Client(base_url=live.base_url, timeout=30) as client,
    ):
        key = client.post(
            "/testcrm/api/v1/api-keys", json={"name": "Busy"}, headers=crm_admin_headers()
        ).json()["apiKey"]
        login = client.post(
            "/apiKeyLogin",
            json={"platform": "testcrm", "apiKey": key, "hostname": "busy.local"},
            headers={"rc-account-id": f"acct-{uuid.uuid4().hex}"},
        )
        auth = {"Authorization": f"Bearer {login.json()['jwtToken']}"}
        first: list[httpx.Response] = []
        with users_table_locked(url):
            holder = threading.Thread(target=lambda: first.append(client.get("/hostname", headers=auth)))
            holder.start()
            while waiting_on_a_lock(url) == 0:  # the first request now holds the only connection
                assert holder.is_alive()
                time.sleep(0.05)
            with httpx.Client(base_url=live.base_url, timeout=30) as second_client:
                busy = second_client.get("/hostname", headers=auth)
        holder.join(30)
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "2"
        assert busy.json()["successful"] is False
        assert "busy" in busy.json()["returnMessage"]["message"]
        assert first[0].status_code == 200 and first[0].text == "busy.local"
        assert client.get("/hostname", headers=auth).status_code == 200

"""The App Connect client's side for the Redtail tests: its requests to the server and the bodies it sends."""

from __future__ import annotations

from typing import Any

import httpx
from fake_redtail import DATABASE_ID, PASSWORD, USERNAME, FakeRedtail
from sqlalchemy import select

from appconnect.connectors.sdk import stored_user_id
from appconnect.store.db import create_engine
from appconnect.store.tables import users
from tests.conftest import LiveServer
from tests.support.e2e import ClientSession, agent_call_body

API = "/api/public/v1"
JsonDict = dict[str, Any]


def user_id_of(fake: FakeRedtail, username: str = USERNAME, database_id: int = DATABASE_ID) -> str:
    """The id the server stores a Redtail user under: the Redtail user id within its database (firm)."""
    return stored_user_id("redtail", fake.user(username, database_id=database_id)["id"], database_id)


class Agent(ClientSession):
    """What the App Connect client does, one method per request."""

    def __init__(self, http: httpx.AsyncClient, server: LiveServer, fake: FakeRedtail) -> None:
        super().__init__(http)
        self.server = server
        self.fake = fake

    async def login(
        self, *, username: str = USERNAME, password: str = PASSWORD, api_key: str | None = None
    ) -> httpx.Response:
        """The auth page's answers as the client sends them: the fields go in additionalInfo."""
        body: JsonDict = {
            "platform": "redtail",
            "hostname": "crm.redtailtechnology.com",
            "additionalInfo": {"username": username, "password": password},
        }
        if api_key is not None:
            body["apiKey"] = api_key
        return await self.api_key_login(body)

    async def find_contact(self, phone: str, *, force: bool = True) -> JsonDict:
        return await self.find_contact_by_query(phone, force=force)

    async def create_contact(self, phone: str, name: str) -> JsonDict:
        return await self.send(
            "POST", "/contact", {"phoneNumber": phone, "newContactName": name, "newContactType": ""}
        )

    async def log_call(self, body: JsonDict) -> JsonDict:
        return await self.send("POST", "/callLog", body)

    async def log_messages(self, body: JsonDict) -> JsonDict:
        return await self.send("POST", "/messageLog", body)


def call_body(session_id: str, contact_id: str, phone: str, *, note: str, **extra: Any) -> JsonDict:
    return agent_call_body(session_id, contact_id, phone, note=note, **extra)


async def raw_user_row(server: LiveServer, user_id: str) -> dict[str, Any]:
    """The users row exactly as the database holds it (tokens still encrypted)."""
    engine = create_engine(server.settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().one()
    finally:
        await engine.dispose()
    return dict(row)

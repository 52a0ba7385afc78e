"""POST /contact and POST /callLog read their user and make their first write in one statement on PostgreSQL
(the claim of the number, the reservation of the call): what the client sees, and what is stored, stays as with
a separate read. A JWT issued before a logout, a user on another platform and a legacy user without a stored
scope write nothing they would not have written before (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from appconnect.security.jwt import SessionTokens
from appconnect.security.keys import load_keys
from appconnect.store.sql import Statement, open_database, sql
from appconnect.store.user_cache import announce_user_change
from tests.conftest import CrmView, LiveServer, api_key_login, call_log_body, new_phone

_CLAIMS = sql("SELECT account_id, platform, contact FROM created_contacts WHERE phone_number = ?")
_CALL_LOGS = sql("SELECT scope, status, user_id, platform FROM call_logs WHERE session_id = ?")
_FORGET_SCOPE = sql("UPDATE users SET account_scope = NULL WHERE id = ?")
_SCOPE = sql("SELECT account_scope FROM users WHERE id = ?")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_id_of(token: str) -> str:
    return str(pyjwt.decode(token, options={"verify_signature": False})["id"])


def rows(server: LiveServer, statement: Statement, *args: object) -> list[dict[str, Any]]:
    """What the server's database holds, read on a connection of the test's own."""

    async def read() -> list[dict[str, Any]]:
        db = open_database(server.settings.database_url, max_connections=1, acquire_timeout=10)
        try:
            return [dict(row) for row in await db.all(statement, *args)]
        finally:
            await db.close()

    return asyncio.run(read())


def change_user(server: LiveServer, statement: Statement, user_id: str) -> None:
    """A change made by hand in the database, announced to the running server (its user cache)."""

    async def change() -> None:
        db = open_database(server.settings.database_url, max_connections=1, acquire_timeout=10)
        try:
            await db.run(statement, user_id)
        finally:
            await db.close()
        await announce_user_change(server.settings.database_url, user_id)

    asyncio.run(change())


def contact_body(
    phone: str, name: str = "Ada Placeholder", contact_type: str = "contact"
) -> dict[str, object]:
    return {
        "phoneNumber": phone,
        "newContactName": name,
        "newContactType": contact_type,
        "additionalSubmission": {},
    }


def is_postgres(server: LiveServer) -> bool:
    return not server.settings.database_url.startswith("sqlite")


@contextmanager
def statements(server: LiveServer) -> Iterator[list[str]]:
    """The text of every statement the server runs meanwhile (its own database layer, counted in place)."""
    db = server.app.state.services.db
    seen: list[str] = []
    postgres = is_postgres(server)

    def counted(name: str) -> Any:
        original = getattr(db, name)

        async def run(statement: Statement, *args: Any) -> Any:
            seen.append(statement.postgres if postgres else statement.sqlite)
            return await original(statement, *args)

        return run

    with pytest.MonkeyPatch.context() as patched:
        for name in ("one", "all", "run", "write"):
            patched.setattr(db, name, counted(name))
        yield seen


def flow(seen: list[str]) -> list[str]:
    """The statements of the flow itself: not those of the CRM's shared rate limit."""
    return [s for s in seen if "rate_limits" not in s]


def test_the_placeholder_flow_creates_one_contact_and_one_log(
    server: LiveServer, client: httpx.Client, jwt: str, crm: CrmView
) -> None:
    phone = new_phone()
    session_id = f"s-{uuid.uuid4().hex[:10]}"
    lookup = client.get("/contact", params={"phoneNumber": phone}, headers=bearer(jwt)).json()
    assert lookup["successful"] is True and lookup["contact"][0]["isNewContact"] is True
    created = client.post("/contact", json=contact_body(phone), headers=bearer(jwt)).json()
    assert created["successful"] is True, created
    contact_id = created["contact"]["id"]
    logged = client.post(
        "/callLog", json=call_log_body(session_id, contact_id, phone), headers=bearer(jwt)
    ).json()
    assert logged["successful"] is True, logged

    # the same requests again: the created contact is replayed, the log exists
    again = client.post("/contact", json=contact_body(phone), headers=bearer(jwt)).json()
    assert again["successful"] is True and again["contact"]["id"] == contact_id
    twice = client.post(
        "/callLog", json=call_log_body(session_id, contact_id, phone), headers=bearer(jwt)
    ).json()
    assert twice["successful"] is False
    assert twice["returnMessage"]["message"] == f"Existing log for session {session_id}"

    assert [str(c["id"]) for c in crm.contacts_with_phone(phone)] == [contact_id]
    assert len(crm.activities_of(contact_id)) == 1
    scope = rows(server, _SCOPE, user_id_of(jwt))[0]["account_scope"]
    assert scope is not None
    claims = rows(server, _CLAIMS, phone)
    assert [(c["account_id"], c["platform"]) for c in claims] == [(scope, "testcrm")]
    logs = rows(server, _CALL_LOGS, session_id)
    assert logs == [{"scope": scope, "status": "done", "user_id": user_id_of(jwt), "platform": "testcrm"}]


def test_a_token_issued_before_a_logout_writes_nothing(
    server: LiveServer, client: httpx.Client, jwt: str, crm_api_key: str, crm: CrmView
) -> None:
    assert client.post("/unAuthorize", headers=bearer(jwt)).status_code == 200
    fresh = api_key_login(
        client, crm_api_key
    )  # the user has credentials again: only the old token's age refuses it
    assert user_id_of(fresh) == user_id_of(jwt)
    phone = new_phone()
    session_id = f"s-{uuid.uuid4().hex[:10]}"

    created = client.post("/contact", json=contact_body(phone), headers=bearer(jwt))
    assert (created.status_code, created.text) == (400, "Please go to Settings and authorize CRM platform")
    logged = client.post("/callLog", json=call_log_body(session_id, "42", phone), headers=bearer(jwt))
    assert (logged.status_code, logged.text) == (400, "Please go to Settings and authorize CRM platform")
    assert rows(server, _CLAIMS, phone) == []
    assert rows(server, _CALL_LOGS, session_id) == []
    assert crm.contacts_with_phone(phone) == []

    # nothing left behind blocks the number or the session for the current token
    created = client.post("/contact", json=contact_body(phone), headers=bearer(fresh)).json()
    assert created["successful"] is True, created
    logged = client.post(
        "/callLog", json=call_log_body(session_id, created["contact"]["id"], phone), headers=bearer(fresh)
    ).json()
    assert logged["successful"] is True, logged


def test_a_token_for_another_platform_claims_nothing(
    server: LiveServer, client: httpx.Client, jwt: str, crm: CrmView
) -> None:
    manifest = client.get("/crmManifest", params={"platformName": "clio"}).json()
    types = [t["value"] for t in manifest["platforms"]["clio"].get("contactTypes") or []]
    secret = load_keys(server.settings).jwt_secret
    elsewhere = SessionTokens(secret).sign(user_id_of(jwt), "clio")
    phone = new_phone()
    response = client.post(
        "/contact",
        json=contact_body(phone, contact_type=types[0] if types else ""),
        headers=bearer(elsewhere),
    )
    assert response.status_code == 200
    assert response.json() == {"successful": False}
    assert rows(server, _CLAIMS, phone) == []
    assert crm.contacts_with_phone(phone) == []


def test_a_legacy_user_without_a_stored_scope_still_creates_and_logs(
    server: LiveServer, client: httpx.Client, jwt: str, crm: CrmView
) -> None:
    token = jwt
    user_id = user_id_of(token)
    change_user(server, _FORGET_SCOPE, user_id)
    phone = new_phone()
    session_id = f"s-{uuid.uuid4().hex[:10]}"

    created = client.post("/contact", json=contact_body(phone), headers=bearer(token)).json()
    assert created["successful"] is True, created
    logged = client.post(
        "/callLog", json=call_log_body(session_id, created["contact"]["id"], phone), headers=bearer(token)
    ).json()
    assert logged["successful"] is True, logged

    assert [str(c["id"]) for c in crm.contacts_with_phone(phone)] == [created["contact"]["id"]]
    legacy = f"legacy:{user_id}"
    assert [c["account_id"] for c in rows(server, _CLAIMS, phone)] == [legacy]
    assert [(r["scope"], r["status"]) for r in rows(server, _CALL_LOGS, session_id)] == [(legacy, "done")]


def test_postgres_reads_the_user_in_the_first_write(
    server: LiveServer, client: httpx.Client, jwt: str
) -> None:
    phone = new_phone()
    session_id = f"s-{uuid.uuid4().hex[:10]}"
    with statements(server) as contact_statements:
        created = client.post("/contact", json=contact_body(phone), headers=bearer(jwt)).json()
    assert created["successful"] is True, created
    with statements(server) as log_statements:
        logged = client.post(
            "/callLog", json=call_log_body(session_id, created["contact"]["id"], phone), headers=bearer(jwt)
        ).json()
    assert logged["successful"] is True, logged

    reading_users = [s for s in contact_statements + log_statements if "FROM users" in s]
    if is_postgres(server):
        # one statement each reads the user and makes the first write; no separate read or write is left
        assert len(reading_users) == 2
        assert "INSERT INTO created_contacts" in reading_users[0]
        assert "INSERT INTO call_logs" in reading_users[1]
        assert not any(s.startswith("INSERT INTO created_contacts") for s in contact_statements)
        assert not any(s.startswith("INSERT INTO call_logs") for s in log_statements)
        # besides the CRM's shared rate limit (batched): the claim, then the contact recorded; the
        # reservation, then the log completed
        assert len(flow(contact_statements)) == 2, contact_statements
        assert len(flow(log_statements)) == 2, log_statements
    else:
        # SQLite: no data-modifying WITH; its users come from the worker's cache
        assert not any("admitted" in s for s in contact_statements + log_statements)
        assert any(s.startswith("INSERT INTO created_contacts") for s in contact_statements)
        assert any(s.startswith("INSERT INTO call_logs") for s in log_statements)

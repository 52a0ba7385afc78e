"""With APPCONNECT_LOG_LEVEL=debug the SQL is logged, never its parameters: phone numbers, names and notes
stay out of every log line."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from tests.conftest import CrmView, call_log_body, new_phone


def test_debug_logging_never_carries_sql_parameters(
    client: httpx.Client, jwt: str, crm: CrmView, caplog: pytest.LogCaptureFixture
) -> None:
    # this test's own client (httpx, in the server's process) logs the URLs it requests; the server does not use
    # httpx. First: caplog's handler takes the level of the last call.
    caplog.set_level(logging.WARNING, logger="httpx")
    caplog.set_level(logging.DEBUG)  # APPCONNECT_LOG_LEVEL=debug: drivers (aiosqlite) log their statements
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # and an operator turned on SQL echo too
    auth = {"Authorization": f"Bearer {jwt}"}
    phone = new_phone()
    name = f"Secretname {uuid.uuid4().hex[:8]}"
    note = f"private note {uuid.uuid4().hex[:8]}"
    created = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": name, "newContactType": "contact"},
        headers=auth,
    ).json()
    contact_id = created["contact"]["id"]
    body = call_log_body(f"sql-{uuid.uuid4().hex[:8]}", contact_id, phone, note=note)
    assert client.post("/callLog", json=body, headers=auth).json()["successful"] is True
    assert client.get("/contact", params={"phoneNumber": phone}, headers=auth).json()["successful"] is True
    assert len(crm.contacts_with_phone(phone)) == 1

    sql_lines = [r for r in caplog.records if r.name.startswith("sqlalchemy.engine")]
    assert sql_lines, "debug logging should show the SQL statements"
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for secret in (phone, phone.lstrip("+"), name, note):
        assert secret not in logged

"""Two companies whose CRM reuses a user id never share a stored user (SQLite and PostgreSQL).

Connectors whose CRM ids are unique only inside a tenant name the tenant in the stored id (`stored_user_id`);
and should two logins from different CRM accounts still meet on one id, the later one takes nothing of the
earlier (settings, additional info) and ends its sessions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.fernet import Fernet

from appconnect.connectors.sdk import UserView, stored_user_id
from appconnect.flows.common import login_issued_at, session_is_current
from appconnect.security.crypto import TokenCipher
from appconnect.security.jwt import SessionClaims
from appconnect.store.users import UserRecord, UserStore
from tests.conftest import migrated_database


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def users(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    db = await migrated_database(request.param, tmp_path)
    try:
        yield UserStore(TokenCipher((Fernet.generate_key().decode(),)), db)
    finally:
        await db.close()


def test_stored_ids_name_the_tenant_and_keep_the_crm_id_readable() -> None:
    assert stored_user_id("pipedrive", 12345) == "12345-pipedrive"
    eu = stored_user_id("clio", 77, "eu")
    us = stored_user_id("clio", 77)
    assert eu != us
    assert UserView(id=eu, platform="clio", hostname="").crm_user_id == "77"
    assert UserView(id=us, platform="clio", hostname="").crm_user_id == "77"
    # a separator inside the CRM's own values cannot forge another tenant's id
    assert stored_user_id("redtail", "jo~db2", "db1") != stored_user_id("redtail", "jo", "db2~db1")


async def test_a_login_from_another_account_takes_nothing_and_ends_the_earlier_sessions(
    users: UserStore,
) -> None:
    first = await users.save_login(
        UserRecord(
            id="7-acme",
            platform="acme",
            access_token="key-of-company-a",
            platform_additional_info={"companyA": "secret-ish"},
            account_scope="acme||account:A",
        )
    )
    await users.save_settings(first.id, {"autoLog": {"value": True}})
    issued_before = time.time()
    await asyncio.sleep(0.01)
    second = await users.save_login(
        UserRecord(
            id="7-acme",
            platform="acme",
            access_token="key-of-company-b",
            platform_additional_info={"companyB": "x"},
            account_scope="acme||account:B",
        )
    )
    assert second.account_scope == "acme||account:B"
    assert second.access_token == "key-of-company-b"
    assert "companyA" not in second.platform_additional_info
    assert second.user_settings == {}
    earlier = SessionClaims(user_id="7-acme", platform="acme", expires_at=2**31, issued_at=issued_before)
    # the new login's token is signed as a login signs it: at or past the bound its own replace set
    later_at = login_issued_at(second, time.time())
    later = SessionClaims(user_id="7-acme", platform="acme", expires_at=2**31, issued_at=later_at)
    assert not session_is_current(second, earlier)
    assert session_is_current(second, later)


async def test_a_login_from_the_same_account_keeps_settings_and_sessions(users: UserStore) -> None:
    record = UserRecord(id="8-acme", platform="acme", access_token="k1", account_scope="acme||account:A")
    first = await users.save_login(record)
    await users.save_settings(first.id, {"autoLog": {"value": True}})
    issued_before = time.time()
    again = await users.save_login(
        UserRecord(id="8-acme", platform="acme", access_token="k2", account_scope="acme||account:A")
    )
    assert again.user_settings == {"autoLog": {"value": True}}
    claims = SessionClaims(user_id="8-acme", platform="acme", expires_at=2**31, issued_at=issued_before)
    assert session_is_current(again, claims)

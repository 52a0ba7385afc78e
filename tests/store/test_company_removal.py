"""A CRM company's users removed at once (its app uninstalled), found by the account the CRM reported at login
or, for users stored before scopes existed, by the company id in their additional info (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.fernet import Fernet

from appconnect.security.crypto import TokenCipher
from appconnect.store.users import UserRecord, UserStore
from tests.conftest import migrated_database


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def users(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    db = await migrated_database(request.param, tmp_path)
    try:
        yield UserStore(TokenCipher((Fernet.generate_key().decode(),)), db)
    finally:
        await db.close()


def pipedrive_user(user_id: str, *, scope: str | None, company: object = None) -> UserRecord:
    info = {"companyId": company} if company is not None else {}
    return UserRecord(
        id=user_id,
        platform="pipedrive",
        access_token=f"at-{user_id}",
        refresh_token=f"rt-{user_id}",
        platform_additional_info=info,
        account_scope=scope,
    )


async def test_the_companys_users_go_and_no_one_else(users: UserStore) -> None:
    host = "https://acme.pipedrive.com"
    for record in (
        pipedrive_user("1-pipedrive", scope=f"pipedrive|{host}|account:7777", company=7777),
        pipedrive_user("2-pipedrive", scope=None, company=7777),  # stored before scopes: its reported company
        pipedrive_user("3-pipedrive", scope=f"pipedrive|{host}|account:77770", company=77770),
        pipedrive_user("4-pipedrive", scope=f"pipedrive|{host}|account:17777", company=17777),
        pipedrive_user("5-pipedrive", scope=None, company=None),
        UserRecord(id="7777-clio", platform="clio", access_token="x", account_scope="clio||account:7777"),
    ):
        await users.save_login(record)

    assert await users.delete_company("pipedrive", "7777") == 2
    assert await users.get("1-pipedrive") is None and await users.get("2-pipedrive") is None
    for kept in ("3-pipedrive", "4-pipedrive", "5-pipedrive", "7777-clio"):
        user = await users.get(kept)
        assert user is not None and user.access_token
    assert await users.delete_company("pipedrive", "7777") == 0  # Pipedrive may call again


async def test_a_company_id_cannot_widen_the_match(users: UserStore) -> None:
    await users.save_login(pipedrive_user("1-pipedrive", scope="pipedrive||account:7777", company=7777))
    for pattern in ("%", "7_77", "7777|x"):
        with pytest.raises(ValueError):
            await users.delete_company("pipedrive", pattern)
    assert await users.get("1-pipedrive") is not None

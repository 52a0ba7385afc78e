"""`UserStore.get_with_write`: the user and, in the same PostgreSQL statement, a write gated on that user (the
placeholder contact's claim, the call log's reservation). The gate admits exactly the users `active_user`
accepts (and only those with a stored scope); where it cannot run (SQLite, a cached user) nothing is written
and the caller writes on its own; a row written for a user the Python checks refuse is taken back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import pytest_asyncio
from cryptography.fernet import Fernet

from appconnect.flows import common
from appconnect.flows.common import active_user_with_write, session_bound, session_is_current
from appconnect.flows.reply import SessionEnded
from appconnect.flows.services import Services
from appconnect.security.crypto import TokenCipher
from appconnect.security.jwt import SessionClaims, SessionTokens
from appconnect.store.cache import AccountCache
from appconnect.store.call_logs import CallLogStore, ExtensionIdentity
from appconnect.store.sql import Database, sql
from appconnect.store.user_cache import SharedMemoryChanges, UserCache
from appconnect.store.users import GatedWrite, UserRecord, UserStore, Written
from tests.conftest import migrated_database

SCOPE = "acme||account:A"
_CLAIMS = sql("SELECT account_id, platform FROM created_contacts WHERE phone_number = ?")
_CALL_LOGS = sql("SELECT pk, scope, platform, user_id, status FROM call_logs WHERE session_id = ?")
_FORGET_SCOPE = sql("UPDATE users SET account_scope = NULL WHERE id = ?")


class Stores:
    def __init__(self, db: Database, cipher: TokenCipher, cache: UserCache | None = None) -> None:
        self.db = db
        self.users = UserStore(cipher, db, cache)
        self.cache = AccountCache(db)
        self.call_logs = CallLogStore(cipher, db)

    def claim(self, phone: str, platform: str = "acme") -> GatedWrite:
        return self.cache.claim_for_user(platform, phone, {"createOutcomeUnknown": True}, max_age=60)

    def reserve(self, session_id: str) -> GatedWrite:
        return self.call_logs.reserve_for_user(
            session_id=session_id,
            identity=ExtensionIdentity(extension_number="101", hashed_extension_id="h-101"),
            call_id="call-1",
            contact_id="c-1",
            payload='{"logInfo": {}}',
        )

    async def claims_of(self, phone: str) -> list[tuple[str, str]]:
        return [(r["account_id"], r["platform"]) for r in await self.db.all(_CLAIMS, phone)]

    async def logs_of(self, session_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.db.all(_CALL_LOGS, session_id)]


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    db = await migrated_database(request.param, tmp_path)
    try:
        yield Stores(db, TokenCipher((Fernet.generate_key().decode(),)))
    finally:
        await db.close()


@pytest_asyncio.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[Database]:
    db = await migrated_database("postgres", tmp_path)
    try:
        yield db
    finally:
        await db.close()


async def _user(stores: Stores, user_id: str = "7-acme", scope: str | None = SCOPE) -> UserRecord:
    return await stores.users.save_login(
        UserRecord(id=user_id, platform="acme", access_token="key", account_scope=scope)
    )


def _claims(user_id: str, issued_at: float, platform: str = "acme") -> SessionClaims:
    return SessionClaims(user_id, platform, int(issued_at) + 3600, issued_at)


def test_the_session_bound_agrees_with_session_is_current_to_the_millisecond() -> None:
    logout = datetime(2026, 3, 12, 14, 35, 20, 123456, tzinfo=UTC)
    user = UserRecord(id="u", platform="acme", tokens_valid_after=logout)
    base = logout.timestamp()
    for offset_us in range(-3000, 3000, 7):
        for issued_at in (base + offset_us / 1e6, round(base * 1000 + offset_us / 1000) / 1000):
            claims = _claims("u", issued_at)
            bound = session_bound(claims)
            assert bound is not None
            assert session_is_current(user, claims) == (logout < bound), issued_at
    assert session_bound(_claims("u", 1e20)) is None


async def test_an_active_user_with_a_scope_is_read_and_written_for_in_one_statement(stores: Stores) -> None:
    user = await _user(stores)
    postgres = stores.db.dialect == "postgresql"
    bound = session_bound(_claims(user.id, time.time()))

    read, written = await stores.users.get_with_write(user.id, "acme", bound, stores.claim("+14155550100"))
    assert read is not None and read.account_scope == SCOPE and read.access_token == "key"
    if postgres:
        assert written == Written(SCOPE)
        assert await stores.claims_of("+14155550100") == [(SCOPE, "acme")]
        # the number is claimed now: the same claim again wins nothing
        _read, again = await stores.users.get_with_write(user.id, "acme", bound, stores.claim("+14155550100"))
        assert again == Written(None)
    else:  # no data-modifying WITH: the caller writes on its own
        assert written is None
        assert await stores.claims_of("+14155550100") == []

    read, written = await stores.users.get_with_write(user.id, None, bound, stores.reserve("s-1"))
    assert read is not None
    if postgres:
        assert written is not None and isinstance(written.value, int)
        [row] = await stores.logs_of("s-1")
        assert row == {
            "pk": written.value,
            "scope": SCOPE,
            "platform": "acme",
            "user_id": user.id,
            "status": "pending",
        }
        # a row answers for the session now: nothing more is reserved
        _read, again = await stores.users.get_with_write(user.id, None, bound, stores.reserve("s-1"))
        assert again == Written(None)
    else:
        assert written is None
        assert await stores.logs_of("s-1") == []


async def test_the_gate_writes_nothing_for_a_user_the_flows_would_refuse_or_a_legacy_user(
    stores: Stores,
) -> None:
    user = await _user(stores)
    bound = session_bound(_claims(user.id, time.time() - 1))  # a JWT issued a second before the logout below

    missing, written = await stores.users.get_with_write(
        "nobody", "acme", bound, stores.claim("+14155550101")
    )
    assert (missing, written) == (None, None)
    elsewhere, written = await stores.users.get_with_write(
        user.id, "other", bound, stores.claim("+14155550101")
    )
    assert (elsewhere, written) == (None, None)

    await stores.users.clear_tokens(user.id)  # logged out: no credentials
    read, written = await stores.users.get_with_write(user.id, "acme", bound, stores.claim("+14155550101"))
    assert read is not None and read.access_token is None and written is None

    again = await _user(stores)  # logged in again: a JWT from before the logout is still refused
    assert again.tokens_valid_after is not None
    read, written = await stores.users.get_with_write(user.id, "acme", bound, stores.claim("+14155550101"))
    assert read is not None and read.access_token == "key" and written is None
    read, written = await stores.users.get_with_write(user.id, None, bound, stores.reserve("s-2"))
    assert read is not None and written is None

    await stores.db.run(
        _FORGET_SCOPE, user.id
    )  # a legacy user: the separate write files it under its legacy scope
    fresh = session_bound(_claims(user.id, time.time()))
    read, written = await stores.users.get_with_write(user.id, "acme", fresh, stores.claim("+14155550101"))
    assert read is not None and read.account_scope is None and written is None

    assert await stores.claims_of("+14155550101") == []
    assert await stores.logs_of("s-2") == []


async def test_a_cached_user_is_written_for_separately(postgres: Database, tmp_path: Path) -> None:
    cipher = TokenCipher((Fernet.generate_key().decode(),))
    user = await _user(Stores(postgres, cipher))  # saved elsewhere: not in this worker's cache yet
    stores = Stores(postgres, cipher, UserCache(SharedMemoryChanges(tmp_path / "changes")))
    bound = session_bound(_claims(user.id, time.time()))
    read, written = await stores.users.get_with_write(user.id, None, bound, stores.reserve("s-3"))
    assert read is not None and written is not None and written.value is not None  # read, and cached
    cached, written = await stores.users.get_with_write(user.id, None, bound, stores.reserve("s-4"))
    assert cached is not None and cached.account_scope == SCOPE and written is None
    assert await stores.logs_of("s-4") == []


async def test_a_row_written_for_a_user_python_refuses_is_taken_back(
    postgres: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = Stores(postgres, TokenCipher((Fernet.generate_key().decode(),)))
    user = await _user(stores)
    before_logout = time.time() - 1
    await stores.users.clear_tokens(user.id)
    await _user(stores)
    claims = _claims(user.id, before_logout)
    services = cast(Services, SimpleNamespace(users=stores.users))

    # an SQL gate that disagreed with Python (it cannot: this stands in for any mismatch) would write...
    monkeypatch.setattr(common, "session_bound", lambda _claims: datetime.now(UTC) + timedelta(days=1))
    # (the token predates the logout: the request ends as a revoked session, after the row is taken back)
    with pytest.raises(SessionEnded):
        await active_user_with_write(services, claims, stores.claim("+14155550102"), by_platform=True)
    with pytest.raises(SessionEnded):
        await active_user_with_write(services, claims, stores.reserve("s-5"), by_platform=False)
    # ...and the Python checks take the rows back
    assert await stores.claims_of("+14155550102") == []
    assert await stores.logs_of("s-5") == []


async def test_a_user_whose_credentials_cannot_be_read_leaves_no_row(postgres: Database) -> None:
    writer = Stores(postgres, TokenCipher((Fernet.generate_key().decode(),)))
    user = await _user(writer)
    reader = Stores(postgres, TokenCipher((Fernet.generate_key().decode(),)))  # another key
    bound = session_bound(_claims(user.id, time.time()))
    with pytest.raises(ValueError, match="cannot be decrypted"):
        await reader.users.get_with_write(user.id, "acme", bound, reader.claim("+14155550103"))
    with pytest.raises(ValueError, match="cannot be decrypted"):
        await reader.users.get_with_write(user.id, None, bound, reader.reserve("s-6"))
    assert await reader.claims_of("+14155550103") == []
    assert await reader.logs_of("s-6") == []


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_a_logout_ends_the_tokens_of_its_own_millisecond_and_a_later_login_lives(
    dialect: str, tmp_path: Path
) -> None:
    """`iat` has milliseconds: a login and a logout within one millisecond must still end that login's token,
    and a login right after (in that same millisecond) must get a token the logout does not end."""
    db = await migrated_database(dialect, tmp_path)
    try:
        stores = Stores(db, TokenCipher((Fernet.generate_key().decode(),)))
        user = await _user(stores)
        before = time.time()
        await stores.users.clear_tokens(user.id)
        after = time.time()
        logged_out = await stores.users.get(user.id)
        assert logged_out is not None and logged_out.tokens_valid_after is not None
        bound_ms = round(logged_out.tokens_valid_after.timestamp() * 1000)
        # the bound is just past the logout's own millisecond: a token issued in that millisecond is ended
        assert int(before * 1000) < bound_ms <= int(after * 1000) + 1
        for issued_ms in range(int(before * 1000) - 2, bound_ms):
            assert not session_is_current(logged_out, _claims(user.id, issued_ms / 1000))
        # a login "now" = the logout's own millisecond: its token is signed at the bound, and lives
        again = await _user(stores)
        issued = common.login_issued_at(again, (bound_ms - 1) / 1000)
        assert round(issued * 1000) >= bound_ms
        tokens = SessionTokens("s" * 32)
        claims = tokens.verify(tokens.sign(user.id, "acme", now=issued, issued_at=issued))
        assert claims is not None and session_is_current(again, claims)
        # a later login is unaffected
        assert common.login_issued_at(again, after + 5) == after + 5
    finally:
        await db.close()

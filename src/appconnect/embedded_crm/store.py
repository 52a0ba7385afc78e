"""Persistence of the test CRM. Every piece of API state lives in the database, so worker processes agree."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, CursorResult, RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from appconnect.embedded_crm import schema
from appconnect.embedded_crm.validation import ActivityInput, ContactInput, FaultInput, UserInput, digits_of
from appconnect.store.db import make_sqlite_private, quiet_driver_logs

LIST_LIMIT = 200
#: a phone search with this many digits or more matches numbers containing them; shorter ones match exactly
CONTAINS_SEARCH_DIGITS = 6


def now_iso() -> str:
    """UTC now as ISO 8601 with a `Z`, the form every timestamp of the API takes."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hash_key(api_key: str) -> str:
    """API keys are stored as sha256 so a leaked database file leaks no credential."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def _new_id(result: CursorResult[Any]) -> int:
    """The primary key the INSERT just generated."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class ContactNotFound(Exception):
    """An activity named a contact that does not exist."""


@dataclass(slots=True, frozen=True)
class FaultRule:
    id: int
    status: int | None
    retry_after: float | None
    delay_seconds: float | None
    after_work: bool = False


def _upgrade_older_database(conn: sa.Connection) -> None:
    """Bring a test CRM database from an earlier version up to date (create_all adds tables, not columns):
    `faults.after_work`; `activities.owner_id`, filled in from each activity's contact; and no unique
    constraint on `activities.external_id` (the CRM no longer merges a create sent twice)."""
    inspector = sa.inspect(conn)
    columns = {column["name"] for column in inspector.get_columns("faults")}
    if "after_work" not in columns:
        conn.execute(sa.text("ALTER TABLE faults ADD COLUMN after_work BOOLEAN NOT NULL DEFAULT false"))
    activity_columns = {column["name"] for column in inspector.get_columns("activities")}
    if "owner_id" not in activity_columns:
        conn.execute(sa.text("ALTER TABLE activities ADD COLUMN owner_id INTEGER REFERENCES users (id)"))
    conn.execute(
        sa.text(
            "UPDATE activities SET owner_id = (SELECT contacts.owner_id FROM contacts"
            " WHERE contacts.id = activities.contact_id) WHERE owner_id IS NULL"
        )
    )
    unique = [
        constraint
        for constraint in inspector.get_unique_constraints("activities")
        if constraint["column_names"] == ["external_id"]
    ]
    if unique and conn.dialect.name == "sqlite":
        _rebuild_sqlite_activities(conn)
    for constraint in unique if conn.dialect.name != "sqlite" else []:
        conn.execute(sa.text(f'ALTER TABLE activities DROP CONSTRAINT "{constraint["name"]}"'))
    for index in schema.activities.indexes:
        index.create(conn, checkfirst=True)


def _rebuild_sqlite_activities(conn: sa.Connection) -> None:
    """SQLite cannot drop a constraint: copy the rows into the table as declared now."""
    conn.execute(sa.text("ALTER TABLE activities RENAME TO activities_before_accounts"))
    for row in conn.execute(
        sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'activities_before_accounts'"
        )
    ).all():
        if not str(row[0]).startswith("sqlite_autoindex"):
            conn.execute(sa.text(f'DROP INDEX "{row[0]}"'))
    schema.activities.create(conn)
    names = ", ".join(column.name for column in schema.activities.columns)
    conn.execute(sa.text(f"INSERT INTO activities ({names}) SELECT {names} FROM activities_before_accounts"))  # noqa: S608
    conn.execute(sa.text("DROP TABLE activities_before_accounts"))


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    """WAL + busy_timeout so processes share the file; writes BEGIN IMMEDIATE so they queue, not deadlock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own: _on_begin does
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(str(connection.get_execution_options().get("sqlite_begin", "BEGIN")))


class TestCrmStore:
    """Queries of the test CRM over one async engine; tables are created lazily on first use."""

    __test__ = False  # not a pytest test class

    def __init__(self, database_url: str, *, seed_api_key: str) -> None:
        make_sqlite_private(database_url)
        quiet_driver_logs()
        # the test CRM stores names, phone numbers and notes: never log its SQL parameters
        self.engine = create_async_engine(database_url, hide_parameters=True)
        self._sqlite = self.engine.dialect.name == "sqlite"
        if self._sqlite:
            _install_sqlite_pragmas(self.engine)
        self._seed_api_key = seed_api_key
        self._ready = False
        self._init_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock() if self._sqlite else contextlib.nullcontext()
        self._users_by_key: dict[str, dict[str, Any]] = {}

    async def aclose(self) -> None:
        """Close pooled connections (their driver threads would otherwise keep the process alive)."""
        await self.engine.dispose()

    # --- transactions ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        # one writer per process at a time: SQLite's own busy wait sleeps in coarse steps
        async with self._write_lock, self.engine.connect() as conn:
            if self._sqlite:
                await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            async with conn.begin():
                yield conn

    # --- setup -----------------------------------------------------------------------------------------

    async def ensure_ready(self) -> None:
        """Create tables and the seed user once per process; cheap after the first call."""
        if self._ready:
            return
        async with self._init_lock:
            if self._ready:
                return
            async with self._write() as conn:
                # inside one write transaction: another process doing the same waits instead of racing
                await conn.run_sync(schema.metadata.create_all)
                await conn.run_sync(_upgrade_older_database)
                await self._seed(conn)
            self._ready = True

    async def _seed(self, conn: AsyncConnection) -> None:
        """The demo user and key; the user id comes from the database (PostgreSQL sequences stay right)."""
        keys = schema.api_keys
        key_hash = hash_key(self._seed_api_key)
        if (
            await conn.execute(sa.select(keys.c.user_id).where(keys.c.key_hash == key_hash))
        ).first() is not None:
            return
        result = await conn.execute(
            schema.users.insert().values(
                name="Test CRM User",
                email="test.user@testcrm.example",
                timezone_name="America/Los_Angeles",
                timezone_offset="-08:00",
                created_at=now_iso(),
            )
        )
        await conn.execute(
            keys.insert().values(key_hash=key_hash, user_id=_new_id(result), created_at=now_iso())
        )

    # --- users and keys --------------------------------------------------------------------------------

    async def user_for_key(self, api_key: str) -> dict[str, Any] | None:
        users, keys = schema.users, schema.api_keys
        key_hash = hash_key(api_key)
        columns = (users.c.id, users.c.name, users.c.email, users.c.timezone_name, users.c.timezone_offset)
        query = (
            sa.select(*columns).join(keys, keys.c.user_id == users.c.id).where(keys.c.key_hash == key_hash)
        )
        cached = self._users_by_key.get(key_hash)
        if cached is not None:
            return dict(cached)
        async with self._read() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        if len(self._users_by_key) < 10_000:  # keys are never changed or deleted: safe to remember
            self._users_by_key[key_hash] = dict(row)
        return dict(row)

    async def list_users(self, limit: int = 500) -> list[dict[str, Any]]:
        """The CRM's users (id, name, email), oldest first, at most `limit` (for an admin's user mapping)."""
        users = schema.users
        query = sa.select(users.c.id, users.c.name, users.c.email).order_by(users.c.id).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [{"id": row["id"], "name": row["name"], "email": row["email"]} for row in rows]

    async def create_user_with_key(self, data: UserInput) -> tuple[str, dict[str, Any]]:
        api_key = "tc_" + secrets.token_urlsafe(24)
        async with self._write() as conn:
            result = await conn.execute(
                schema.users.insert().values(
                    name=data.name,
                    email=data.email,
                    timezone_name=data.timezone_name,
                    timezone_offset=data.timezone_offset,
                    created_at=now_iso(),
                )
            )
            user_id = _new_id(result)
            await conn.execute(
                schema.api_keys.insert().values(
                    key_hash=hash_key(api_key), user_id=user_id, created_at=now_iso()
                )
            )
        user = {
            "id": user_id,
            "name": data.name,
            "email": data.email,
            "timezone_name": data.timezone_name,
            "timezone_offset": data.timezone_offset,
        }
        return api_key, user

    # --- contacts --------------------------------------------------------------------------------------

    async def create_contact(self, owner_id: int, data: ContactInput) -> dict[str, Any]:
        stamp = now_iso()
        async with self._write() as conn:
            result = await conn.execute(
                schema.contacts.insert().values(
                    name=data.name,
                    type=data.type,
                    email=data.email,
                    company=data.company,
                    owner_id=owner_id,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
            contact_id = _new_id(result)
            if data.phones:
                await conn.execute(
                    schema.contact_phones.insert(),
                    [
                        {
                            "contact_id": contact_id,
                            "label": p.label,
                            "number": p.number,
                            "digits": digits_of(p.number),
                        }
                        for p in data.phones
                    ],
                )
        return {
            "id": contact_id,
            "name": data.name,
            "type": data.type,
            "phones": [{"label": p.label, "number": p.number} for p in data.phones],
            "email": data.email,
            "company": data.company,
            "owner_id": owner_id,
            "created_at": stamp,
            "updated_at": stamp,
        }

    async def _contacts_where(
        self, conn: AsyncConnection, where: sa.ColumnElement[bool] | None, limit: int = LIST_LIMIT
    ) -> list[dict[str, Any]]:
        query = sa.select(schema.contacts).order_by(schema.contacts.c.id.desc()).limit(limit)
        if where is not None:
            query = query.where(where)
        rows = (await conn.execute(query)).mappings().all()
        return await self._with_phones(conn, rows)

    async def _with_phones(self, conn: AsyncConnection, rows: Sequence[RowMapping]) -> list[dict[str, Any]]:
        if not rows:
            return []
        phones = schema.contact_phones
        ids = [row["id"] for row in rows]
        phone_rows = (
            await conn.execute(
                sa.select(phones.c.contact_id, phones.c.label, phones.c.number)
                .where(phones.c.contact_id.in_(ids))
                .order_by(phones.c.id)
            )
        ).all()
        by_contact: dict[int, list[dict[str, Any]]] = {contact_id: [] for contact_id in ids}
        for contact_id, label, number in phone_rows:
            by_contact[contact_id].append({"label": label, "number": number})
        return [{**dict(row), "phones": by_contact[row["id"]]} for row in rows]

    async def find_contacts_by_digits(self, owner_id: int, digits: str) -> list[dict[str, Any]]:
        """Contacts with a number whose digits contain these: loose on purpose, as real CRMs' searches are.

        `4155550100` finds `(415) 555-0100`, `+1 415 555 0100 x12` and also `+44 4155 550100`: clients
        re-check what they get. Short terms (an internal extension) only match the same digits exactly.
        """
        phones = schema.contact_phones
        condition = (
            phones.c.digits.contains(digits, autoescape=True)
            if len(digits) >= CONTAINS_SEARCH_DIGITS
            else phones.c.digits == digits
        )
        matching = sa.select(phones.c.contact_id).where(condition)
        where = sa.and_(schema.contacts.c.owner_id == owner_id, schema.contacts.c.id.in_(matching))
        async with self._read() as conn:
            return await self._contacts_where(conn, where)

    async def find_contacts_by_name(self, owner_id: int, text: str) -> list[dict[str, Any]]:
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where = sa.and_(
            schema.contacts.c.owner_id == owner_id,
            sa.func.lower(schema.contacts.c.name).like(f"%{escaped}%", escape="\\"),
        )
        async with self._read() as conn:
            return await self._contacts_where(conn, where)

    async def list_contacts(self, owner_id: int | None, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
        """The account's contacts (every account's for None: the operator's web page)."""
        where = None if owner_id is None else schema.contacts.c.owner_id == owner_id
        async with self._read() as conn:
            return await self._contacts_where(conn, where, limit)

    async def get_contact(self, owner_id: int | None, contact_id: int) -> dict[str, Any] | None:
        """The contact if it is this account's (any account's for None: the operator's web page)."""
        where: sa.ColumnElement[bool] = schema.contacts.c.id == contact_id
        if owner_id is not None:
            where = sa.and_(where, schema.contacts.c.owner_id == owner_id)
        async with self._read() as conn:
            found = await self._contacts_where(conn, where, 1)
        return found[0] if found else None

    # --- activities ------------------------------------------------------------------------------------

    async def create_activity(self, owner_id: int, data: ActivityInput) -> dict[str, Any]:
        """Insert into the account's contact. Every create makes a new activity, whatever its external_id:
        a client that sends a create twice gets two, so its own idempotency is what tests see."""
        stamp = now_iso()
        values = {
            "contact_id": data.contact_id,
            "kind": data.kind,
            "subject": data.subject,
            "body": data.body,
            "direction": data.direction,
            "duration_seconds": data.duration_seconds,
            "started_at": data.started_at,
            "disposition": data.disposition,
            "external_id": data.external_id,
            "owner_id": owner_id,
            "created_at": stamp,
            "updated_at": stamp,
        }
        contacts = schema.contacts
        async with self._write() as conn:
            touched = await conn.execute(
                contacts.update()
                .where(contacts.c.id == data.contact_id, contacts.c.owner_id == owner_id)
                .values(updated_at=stamp)
            )
            if touched.rowcount == 0:
                raise ContactNotFound
            result = await conn.execute(schema.activities.insert().values(**values))
            activity_id = _new_id(result)
        return {"id": activity_id, **values}

    async def _activities_where(self, where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
        query = sa.select(schema.activities).where(where).order_by(schema.activities.c.id).limit(LIST_LIMIT)
        async with self._read() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]

    async def find_activities_by_external_id(self, owner_id: int, external_id: str) -> list[dict[str, Any]]:
        """The account's activities created with this external id, oldest first (lets a client check an
        unanswered create)."""
        activities = schema.activities
        return await self._activities_where(
            sa.and_(activities.c.owner_id == owner_id, activities.c.external_id == external_id)
        )

    async def get_activity(self, owner_id: int, activity_id: int) -> dict[str, Any] | None:
        activities = schema.activities
        found = await self._activities_where(
            sa.and_(activities.c.id == activity_id, activities.c.owner_id == owner_id)
        )
        return found[0] if found else None

    async def update_activity(
        self, owner_id: int, activity_id: int, changes: dict[str, Any]
    ) -> dict[str, Any] | None:
        activities = schema.activities
        if changes:
            async with self._write() as conn:
                result = await conn.execute(
                    activities.update()
                    .where(activities.c.id == activity_id, activities.c.owner_id == owner_id)
                    .values(**changes, updated_at=now_iso())
                )
                if result.rowcount == 0:
                    return None
        return await self.get_activity(owner_id, activity_id)

    async def list_activities(self, owner_id: int | None, contact_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The activities of these contacts that belong to the account (any account's for None)."""
        if not contact_ids:
            return []
        activities = schema.activities
        where: sa.ColumnElement[bool] = activities.c.contact_id.in_(list(contact_ids))
        if owner_id is not None:
            where = sa.and_(where, activities.c.owner_id == owner_id)
        query = sa.select(activities).where(where).order_by(activities.c.id)
        async with self._read() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]

    # --- what was received ------------------------------------------------------------------------------

    async def record_received(
        self,
        *,
        owner_id: int | None,
        method: str,
        path: str,
        external_id: str | None,
        phone_digits: str | None,
        status: int,
    ) -> None:
        async with self._write() as conn:
            await conn.execute(
                schema.received.insert().values(
                    owner_id=owner_id,
                    method=method,
                    path=path[:200],
                    external_id=external_id,
                    phone_digits=phone_digits,
                    status=status,
                    created_at=now_iso(),
                )
            )

    async def count_received(
        self,
        *,
        method: str | None = None,
        path: str | None = None,
        owner_id: int | None = None,
        external_id: str | None = None,
        phone_digits: str | None = None,
    ) -> int:
        """How many requests matching every given filter the API received."""
        received = schema.received
        conditions: list[sa.ColumnElement[bool]] = []
        for column, value in (
            (received.c.method, method),
            (received.c.path, path),
            (received.c.owner_id, owner_id),
            (received.c.external_id, external_id),
            (received.c.phone_digits, phone_digits),
        ):
            if value is not None:
                conditions.append(column == value)
        query = sa.select(sa.func.count()).select_from(received).where(sa.and_(sa.true(), *conditions))
        async with self._read() as conn:
            return int((await conn.execute(query)).scalar_one())

    # --- fault injection -------------------------------------------------------------------------------

    async def add_fault(self, data: FaultInput) -> dict[str, Any]:
        values = {
            "status": data.status,
            "retry_after": data.retry_after,
            "delay_seconds": data.delay_seconds,
            "remaining": data.times,
            "method": data.method,
            "path_prefix": data.path_prefix,
            "created_at": now_iso(),
            "after_work": data.after_work,
        }
        async with self._write() as conn:
            result = await conn.execute(schema.faults.insert().values(**values))
        return {"id": _new_id(result), **values}

    async def clear_faults(self) -> int:
        async with self._write() as conn:
            result = await conn.execute(schema.faults.delete())
        return int(result.rowcount)

    async def list_faults(self) -> list[dict[str, Any]]:
        async with self._read() as conn:
            result = await conn.execute(sa.select(schema.faults).order_by(schema.faults.c.id))
            rows = result.mappings().all()
        # column names come back as `quoted_name` (a str subclass) that orjson refuses as a key
        return [{str(key): value for key, value in row.items()} for row in rows]

    async def take_fault(self, method: str, path: str) -> FaultRule | None:
        """Consume one use of the first matching rule; the conditional UPDATE keeps counts exact."""
        faults = schema.faults
        async with self._read() as conn:
            rows = (
                (await conn.execute(sa.select(faults).where(faults.c.remaining > 0).order_by(faults.c.id)))
                .mappings()
                .all()
            )
        for row in rows:
            if row["method"] is not None and row["method"] != method:
                continue
            if row["path_prefix"] is not None and not path.startswith(row["path_prefix"]):
                continue
            async with self._write() as conn:
                taken = await conn.execute(
                    faults.update()
                    .where(faults.c.id == row["id"], faults.c.remaining > 0)
                    .values(remaining=faults.c.remaining - 1)
                )
            if taken.rowcount == 1:
                return FaultRule(
                    id=row["id"],
                    status=row["status"],
                    retry_after=row["retry_after"],
                    delay_seconds=row["delay_seconds"],
                    after_work=bool(row["after_work"]),
                )
        return None

"""Account-level caches: contact matches per number, and the placeholder contact created per number.

Both sit on the hot path (every lookup reads the first; every placeholder contact claims the second): one
statement per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from appconnect.store.sql import Database, from_json, sql, to_json
from appconnect.store.users import GatedWrite, user_and_write

_GET_CONTACTS = sql(
    "SELECT data, updated_at FROM account_data WHERE account_id = ? AND platform = ? AND data_key = ?"
)
_PUT_CONTACTS = sql(
    """INSERT INTO account_data (account_id, platform, data_key, data, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (account_id, platform, data_key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"""
)
_DROP_CONTACTS = sql("DELETE FROM account_data WHERE account_id = ? AND platform = ? AND data_key = ?")

#: Claim a number for one create: a new row, or one whose record is older than the dedupe window (it no longer
#: counts). Returns a row only to the request that now owns the create.
_CLAIM_CREATED = sql(
    """INSERT INTO created_contacts (account_id, platform, phone_number, contact, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (account_id, platform, phone_number) DO UPDATE
    SET contact = excluded.contact, created_at = excluded.created_at, updated_at = excluded.updated_at
    WHERE created_contacts.created_at < ?
    RETURNING phone_number"""
)
#: `_CLAIM_CREATED` run in the read of the claiming user (PostgreSQL): under the user's own scope and platform.
#: Written: the scope, when this request now owns the create.
_CLAIM_CREATED_FOR_USER = user_and_write(
    """INSERT INTO created_contacts (account_id, platform, phone_number, contact, created_at, updated_at)
    SELECT account_scope, platform, ?::varchar, ?::json, ?::timestamptz, ?::timestamptz FROM admitted
    ON CONFLICT (account_id, platform, phone_number) DO UPDATE
    SET contact = excluded.contact, created_at = excluded.created_at, updated_at = excluded.updated_at
    WHERE created_contacts.created_at < ?::timestamptz
    RETURNING account_id AS written"""
)
_READ_CREATED = sql(
    """SELECT contact, created_at, updated_at FROM created_contacts
    WHERE account_id = ? AND platform = ? AND phone_number = ?"""
)
#: Take over a record nobody works on any more (compare-and-set on its last update): keeps `created_at`, the
#: time an earlier create went unanswered, which the settle window counts from.
_TAKE_OVER_CREATED = sql(
    """UPDATE created_contacts SET contact = ?, updated_at = ?
    WHERE account_id = ? AND platform = ? AND phone_number = ? AND updated_at = ?"""
)
_SET_CREATED = sql(
    """UPDATE created_contacts SET contact = ?, created_at = ?, updated_at = ?
    WHERE account_id = ? AND platform = ? AND phone_number = ?"""
)
#: PostgreSQL does both in one statement (a data-modifying WITH): the set and the drop of the lookup answer
_SET_CREATED_AND_DROP = sql(
    """WITH dropped AS (DELETE FROM account_data WHERE account_id = ? AND platform = ? AND data_key = ?)
    UPDATE created_contacts SET contact = ?, created_at = ?, updated_at = ?
    WHERE account_id = ? AND platform = ? AND phone_number = ?"""
)
_FORGET_CREATED = sql(
    "DELETE FROM created_contacts WHERE account_id = ? AND platform = ? AND phone_number = ?"
)


@dataclass(frozen=True, slots=True)
class CreatedRecord:
    """What is recorded for a number: the created contact, or a marker for a create in flight or unanswered."""

    contact: Any
    recorded_at: datetime
    updated_at: datetime
    #: the raw `updated_at` as stored: the compare-and-set token of a take-over
    version: Any


def account_data_key(key: str) -> str:
    """The `account_data` key of a connector's account-level data (apart from the lookup answers)."""
    return f"data-{key}"


def contacts_key(phone: str) -> str:
    """The `account_data` key of a number's cached lookup answer."""
    return f"contact-{phone}"


class AccountCache:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_contacts(self, account_id: str, platform: str, phone: str, *, max_age: float) -> Any | None:
        row = await self._db.one(_GET_CONTACTS, account_id, platform, contacts_key(phone))
        if row is None:
            return None
        return self.fresh_contacts(row["data"], row["updated_at"], max_age=max_age)

    def fresh_contacts(self, data: Any, updated_at: Any, *, max_age: float) -> Any | None:
        """A cached lookup answer as stored (`data`, `updated_at`), or None when there is none or it is too old."""
        if data is None:
            return None
        updated = self._db.when(updated_at)
        if updated is not None and updated < datetime.now(UTC) - timedelta(seconds=max_age):
            return None
        return from_json(data)

    async def put_contacts(self, account_id: str, platform: str, phone: str, contacts: list[Any]) -> None:
        now = self._db.stamp(datetime.now(UTC))
        await self._db.run(
            _PUT_CONTACTS, account_id, platform, contacts_key(phone), to_json(contacts), now, now
        )

    async def get_account_data(self, account_id: str, platform: str, key: str) -> tuple[Any, datetime] | None:
        """A connector's stored account data and when it was stored, or None."""
        row = await self._db.one(_GET_CONTACTS, account_id, platform, account_data_key(key))
        if row is None or row["data"] is None:
            return None
        return from_json(row["data"]), self._db.when(row["updated_at"]) or datetime.now(UTC)

    async def put_account_data(self, account_id: str, platform: str, key: str, data: Any) -> None:
        now = self._db.stamp(datetime.now(UTC))
        await self._db.run(
            _PUT_CONTACTS, account_id, platform, account_data_key(key), to_json(data), now, now
        )

    async def drop_contacts(self, account_id: str, platform: str, phone: str) -> None:
        await self._db.run(_DROP_CONTACTS, account_id, platform, contacts_key(phone))

    async def claim_created_contact(
        self, account_id: str, platform: str, phone: str, marker: Any, *, max_age: float
    ) -> bool:
        """Record `marker` for this number unless a record younger than `max_age` is there: True when this
        request now owns the create (recorded before the CRM is asked, so a crash leaves a trace)."""
        now = datetime.now(UTC)
        stamp = self._db.stamp(now)
        expired_before = self._db.stamp(now - timedelta(seconds=max_age))
        row = await self._db.write(
            _CLAIM_CREATED, account_id, platform, phone, to_json(marker), stamp, stamp, expired_before
        )
        return row is not None

    def claim_for_user(self, platform: str, phone: str, marker: Any, *, max_age: float) -> GatedWrite:
        """`claim_created_contact` to run in the read of the user on `platform` who claims
        (`UserStore.get_with_write`): a value written means this request now owns the create."""
        now = datetime.now(UTC)
        return GatedWrite(
            _CLAIM_CREATED_FOR_USER,
            (phone, to_json(marker), now, now, now - timedelta(seconds=max_age)),
            undo=lambda scope: self.forget_created_contact(scope, platform, phone),
        )

    async def created_contact(self, account_id: str, platform: str, phone: str) -> CreatedRecord | None:
        row = await self._db.one(_READ_CREATED, account_id, platform, phone)
        if row is None:
            return None
        now = datetime.now(UTC)
        return CreatedRecord(
            contact=from_json(row["contact"]),
            recorded_at=self._db.when(row["created_at"]) or now,
            updated_at=self._db.when(row["updated_at"]) or now,
            version=row["updated_at"],
        )

    async def take_over_created_contact(
        self, account_id: str, platform: str, phone: str, record: CreatedRecord, marker: Any
    ) -> bool:
        """Own a record whose create nobody is working on any more; False when another request got it first."""
        taken = await self._db.run(
            _TAKE_OVER_CREATED,
            to_json(marker),
            self._db.stamp(datetime.now(UTC)),
            account_id,
            platform,
            phone,
            record.version,
        )
        return taken == 1

    async def set_created_contact(
        self, account_id: str, platform: str, phone: str, contact: Any, *, drop_lookup: bool = False
    ) -> None:
        """Record the outcome for this number (the contact, or an unanswered-create marker, timed from now);
        `drop_lookup` also drops the number's cached lookup answer."""
        now = self._db.stamp(datetime.now(UTC))
        if drop_lookup and self._db.dialect == "postgresql":
            key = contacts_key(phone)
            await self._db.run(
                _SET_CREATED_AND_DROP,
                account_id,
                platform,
                key,
                to_json(contact),
                now,
                now,
                account_id,
                platform,
                phone,
            )
            return
        await self._db.run(_SET_CREATED, to_json(contact), now, now, account_id, platform, phone)
        if drop_lookup:
            # a separate statement: should it fail, the lookup cache only keeps an older match a while longer
            await self._db.run(_DROP_CONTACTS, account_id, platform, contacts_key(phone))

    async def keep_created_contact(
        self, account_id: str, platform: str, phone: str, record: CreatedRecord, marker: Any
    ) -> None:
        """Hand a record back unchanged in time (its settle window still runs) with `marker` as content."""
        await self._db.run(
            _SET_CREATED,
            to_json(marker),
            self._db.stamp(record.recorded_at),
            self._db.stamp(datetime.now(UTC)),
            account_id,
            platform,
            phone,
        )

    async def forget_created_contact(self, account_id: str, platform: str, phone: str) -> None:
        """The CRM refused the create: nothing to replay or adopt."""
        await self._db.run(_FORGET_CREATED, account_id, platform, phone)

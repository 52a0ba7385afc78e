"""Account-level caches: contact matches per number, and recently created placeholder contacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from appconnect.store.db import write_transaction
from appconnect.store.tables import account_data, admin_configs, created_contacts
from appconnect.store.users import as_utc


class AccountCache:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get_contacts(self, account_id: str, platform: str, phone: str, *, max_age: float) -> Any | None:
        c = account_data.c
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(c.data, c.updated_at).where(
                        c.account_id == account_id, c.platform == platform, c.data_key == f"contact-{phone}"
                    )
                )
            ).first()
        if row is None:
            return None
        updated = as_utc(row.updated_at)
        if updated is not None and updated < datetime.now(UTC) - timedelta(seconds=max_age):
            return None
        return row.data

    async def put_contacts(self, account_id: str, platform: str, phone: str, contacts: list[Any]) -> None:
        now = datetime.now(UTC)
        c = account_data.c
        key = and_(c.account_id == account_id, c.platform == platform, c.data_key == f"contact-{phone}")
        async with write_transaction(self._engine) as conn:
            changed = await conn.execute(
                update(account_data).where(key).values(data=contacts, updated_at=now)
            )
        if changed.rowcount:
            return
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    insert(account_data).values(
                        account_id=account_id,
                        platform=platform,
                        data_key=f"contact-{phone}",
                        data=contacts,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            pass  # a concurrent lookup cached the same answer

    async def drop_contacts(self, account_id: str, platform: str, phone: str) -> None:
        c = account_data.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                delete(account_data).where(
                    c.account_id == account_id, c.platform == platform, c.data_key == f"contact-{phone}"
                )
            )

    async def recent_created_contact(
        self, account_id: str, platform: str, phone: str, *, max_age: float
    ) -> tuple[Any, datetime] | None:
        """The contact (or unknown-outcome marker) recorded for this number, and when it was recorded."""
        c = created_contacts.c
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(c.contact, c.created_at).where(
                        c.account_id == account_id, c.platform == platform, c.phone_number == phone
                    )
                )
            ).first()
        if row is None:
            return None
        created = as_utc(row.created_at) or datetime.now(UTC)
        if created < datetime.now(UTC) - timedelta(seconds=max_age):
            return None
        return row.contact, created

    async def forget_created_contact(self, account_id: str, platform: str, phone: str) -> None:
        """The CRM refused the create: nothing to replay or adopt."""
        c = created_contacts.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                delete(created_contacts).where(
                    c.account_id == account_id, c.platform == platform, c.phone_number == phone
                )
            )

    async def remember_created_contact(
        self, account_id: str, platform: str, phone: str, contact: Any
    ) -> None:
        now = datetime.now(UTC)
        c = created_contacts.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                delete(created_contacts).where(
                    c.account_id == account_id, c.platform == platform, c.phone_number == phone
                )
            )
            await conn.execute(
                insert(created_contacts).values(
                    account_id=account_id,
                    platform=platform,
                    phone_number=phone,
                    contact=contact,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def admin_settings(self, account_hash: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(admin_configs.c.user_settings).where(admin_configs.c.id == account_hash)
                )
            ).first()
        return dict(row.user_settings) if row is not None and row.user_settings else None

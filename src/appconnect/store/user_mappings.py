"""Which CRM user each RingCentral extension is, per RingCentral account: server-side logging logs under it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appconnect.store.sql import Database, from_json, sql, to_json

_GET = sql("SELECT crm_scope, platform, mappings FROM user_mappings WHERE rc_account = ?")
_PUT = sql(
    """INSERT INTO user_mappings (rc_account, crm_scope, platform, mappings, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (rc_account) DO UPDATE SET crm_scope = excluded.crm_scope, platform = excluded.platform,
    mappings = excluded.mappings, updated_at = excluded.updated_at"""
)


@dataclass(frozen=True, slots=True)
class MappedUser:
    """One CRM user and the RingCentral extensions that are them; `manual` when the admin chose it."""

    crm_user_id: str
    name: str
    email: str
    rc_extension_ids: tuple[str, ...]
    manual: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "crmUserId": self.crm_user_id,
            "name": self.name,
            "email": self.email,
            "rcExtensionId": list(self.rc_extension_ids),
            "manual": self.manual,
        }

    @classmethod
    def from_json(cls, value: Any) -> MappedUser | None:
        if not isinstance(value, dict) or not isinstance(value.get("crmUserId"), str):
            return None
        ids = value.get("rcExtensionId")
        return cls(
            crm_user_id=value["crmUserId"],
            name=str(value.get("name") or ""),
            email=str(value.get("email") or ""),
            rc_extension_ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
            manual=value.get("manual") is True,
        )


@dataclass(frozen=True, slots=True)
class AccountMapping:
    """A RingCentral account's mapping, made against one CRM account (`crm_scope`) of one platform."""

    crm_scope: str
    platform: str
    users: tuple[MappedUser, ...]


def _users(raw: Any) -> tuple[MappedUser, ...]:
    value = from_json(raw)
    if not isinstance(value, list):
        return ()
    return tuple(m for m in (MappedUser.from_json(v) for v in value) if m is not None)


class UserMappingStore:
    """One row per RingCentral account (its keyed hash), replaced whole on every change."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, rc_account: str) -> AccountMapping | None:
        row = await self._db.one(_GET, rc_account)
        if row is None:
            return None
        return AccountMapping(row["crm_scope"], row["platform"], _users(row["mappings"]))

    async def put(self, rc_account: str, mapping: AccountMapping) -> None:
        now = self._db.stamp(datetime.now(UTC))
        payload = to_json([m.to_json() for m in mapping.users])
        await self._db.run(_PUT, rc_account, mapping.crm_scope, mapping.platform, payload, now, now)

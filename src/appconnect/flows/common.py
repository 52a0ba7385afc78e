"""Helpers every flow shares: phone numbers, the account scope, loading the caller's user and connector."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

from appconnect.connectors.sdk import Connector, ContactRef, PlatformUser, UserView
from appconnect.flows.reply import ClientError, SessionEnded
from appconnect.flows.services import Services
from appconnect.security.jwt import SessionClaims
from appconnect.store.users import (
    NOT_READ,
    AccountRow,
    GatedWrite,
    NotRead,
    UserRecord,
    Written,
    legacy_scope,
)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def repair_phone(raw: str) -> str:
    """A `+` sent unencoded in a query string arrives as a space: restore the first one."""
    return raw.replace(" ", "+", 1).strip()


def is_e164(phone: str) -> bool:
    return bool(E164.match(phone))


def account_scope(user: UserRecord) -> str:
    """The tenant of every stored log and cache row: what the CRM itself reported at login (never a header).

    Users who have not logged in since scopes exist keep the scope their old rows were migrated to.
    """
    return user.account_scope or legacy_scope(user.id)


def verified_scope(connector: Connector, platform: str, user: PlatformUser, hostname: str) -> str:
    """The scope for a user the CRM just vouched for: its account (company) id, else the user itself.

    When the CRM's address comes from the client (a hostname-driven connector), that host is part of the scope:
    a CRM run by someone else cannot claim another tenant's account id.
    """
    account = f"account:{user.account_id}" if user.account_id else f"user:{user.id}"
    host = ""
    probes = [UserView(id="", platform=platform, hostname=h) for h in ("a.invalid", "b.invalid")]
    if connector.base_url(probes[0]) != connector.base_url(probes[1]):
        host = connector.base_url(UserView(id="", platform=platform, hostname=hostname)).lower()
    scope = f"{platform}|{host}|{account}"
    if len(scope) > 120:  # cache keys and lock names embed it: keep it short
        scope = f"{platform}|sha256:{hashlib.sha256(scope.encode()).hexdigest()}"
    return scope


def connector_for(services: Services, platform: str) -> Connector:
    connector = services.registry.get(platform)
    if connector is None:
        raise ClientError(f"Connector not found for platform: {platform}", as_json=True)
    return connector


def _whole_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def session_is_current(user: UserRecord, claims: SessionClaims) -> bool:
    """False for a session JWT issued before the user's last logout (compared in whole milliseconds)."""
    if user.tokens_valid_after is None:
        return True
    return round(claims.issued_at * 1000) >= _whole_ms(user.tokens_valid_after)


def login_issued_at(user: UserRecord, now: float) -> float:
    """The `iat` of a login's session JWT: `now`, or the user's `tokens_valid_after` when a logout in this very
    millisecond put it past `now` (a logout ends the tokens of its own millisecond; the new login's must live)."""
    if user.tokens_valid_after is None:
        return now
    # half a millisecond in, so the signer's rounding down to whole milliseconds lands on the bound itself
    return max(now, (_whole_ms(user.tokens_valid_after) + 0.5) / 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def session_bound(claims: SessionClaims) -> datetime | None:
    """The first `tokens_valid_after` that ends this JWT's session: `session_is_current` holds exactly when
    the stored value is before it (whole milliseconds, in integers: no float rounding at the edge). None for
    an `iat` beyond any date, which the database then treats as ended by any logout."""
    try:
        return _EPOCH + timedelta(milliseconds=round(claims.issued_at * 1000) + 1)
    except (OverflowError, ValueError):
        return None


def _check_session(user: UserRecord | None, claims: SessionClaims) -> None:
    """A JWT issued before the user's last logout ends the request as an invalid token would (SessionEnded)."""
    if user is not None and not session_is_current(user, claims):
        raise SessionEnded()


async def current_user(
    services: Services, claims: SessionClaims, platform: str | None = None
) -> UserRecord | None:
    """The caller's user row, or None when it is gone; SessionEnded when the JWT was issued before a logout."""
    user = await services.users.get(claims.user_id, platform)
    _check_session(user, claims)
    return user


async def active_user(services: Services, claims: SessionClaims, *, by_platform: bool) -> UserRecord | None:
    """The caller's user row, or None when it is gone or has no credential left; SessionEnded for a revoked JWT."""
    user = await current_user(services, claims, claims.platform if by_platform else None)
    if user is None or not user.access_token:
        return None
    return user


async def active_user_with_write(
    services: Services, claims: SessionClaims, write: GatedWrite, *, by_platform: bool
) -> tuple[UserRecord | None, Written | None]:
    """`active_user` and, in the same statement when it can be (see `UserStore.get_with_write`), `write` for
    that user: `Written` when it ran, None when the caller must still write on its own.

    The checks here stay the authority: a row written for a user they refuse is taken back at once.
    """
    platform = claims.platform if by_platform else None
    user, written = await services.users.get_with_write(
        claims.user_id, platform, session_bound(claims), write
    )
    if user is None or not session_is_current(user, claims) or not user.access_token:
        if written is not None and written.value is not None:
            await write.undo(written.value)
        _check_session(user, claims)
        return None, None
    return user, written


async def active_user_with_account_data(
    services: Services, claims: SessionClaims, data_key: str
) -> tuple[UserRecord | None, AccountRow | NotRead]:
    """`active_user` (by platform) plus its account's `data_key` row, read in the same statement when it can be."""
    user, companion = await services.users.get_with_account_data(claims.user_id, claims.platform, data_key)
    _check_session(user, claims)
    if user is None or not user.access_token:
        return None, NOT_READ
    return user, companion


def chosen_contact(
    contact_id: object, phone: str, contact_type: str | None, name: str | None
) -> ContactRef | None:
    """The contact the client picked for a log; None when it sent none (the contract treats `0` as none)."""
    if contact_id in (None, "", 0, "0"):
        return None
    return ContactRef(id=str(contact_id), phone_number=phone, type=contact_type or "", name=name or "")

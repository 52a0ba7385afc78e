"""The admin's user mapping: each RingCentral extension of the account is one CRM user, so server-side logging
logs a call under the CRM user who took it.

Extensions come from RingCentral (with the admin's token), CRM users from the connector's `get_user_list`; a
CRM user is matched by email, then by name. What the admin chose by hand is kept when the mapping is
re-initialised; everything else is matched again. A mapping belongs to one RingCentral account and to the CRM
account of the admin who made it: logging looks it up by the logging user's CRM account only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from appconnect.connectors.sdk import CrmHttpError, CrmUser, JsonDict, implements
from appconnect.flows import admin
from appconnect.flows.common import account_scope, active_user, connector_for
from appconnect.flows.errors import crm_error_message
from appconnect.flows.reply import ClientError, Reply, envelope
from appconnect.flows.services import Services
from appconnect.flows.session import open_session
from appconnect.security.jwt import SessionClaims
from appconnect.security.ringcentral_directory import DirectoryFailed, RcExtension, account_extensions
from appconnect.store.user_mappings import AccountMapping, MappedUser
from appconnect.store.users import UserRecord

logger = logging.getLogger(__name__)

#: how many manual choices one save may carry (a 500-seat company has 500)
MAX_MANUAL_ENTRIES = 5000
MAX_EXTENSIONS_PER_USER = 50
#: a CRM user id is stored as a call's owner (the users table keeps ids this long); an extension id is a number
MAX_CRM_USER_ID_CHARS = 255
MAX_EXTENSION_ID_CHARS = 64
#: the CRM account of choices an admin saved before any mapping and without a CRM session: the first mapping
#: the admin makes adopts them (no user's account scope is empty, so logging never reads them before)
PENDING_SCOPE = ""


class UserMappingBody(BaseModel):
    """The reference's body carries the client's `rcExtensionList`: ignored, RingCentral itself is asked."""

    model_config = ConfigDict(extra="allow")


def _same(a: str, b: str) -> bool:
    return bool(a.strip()) and a.strip().casefold() == b.strip().casefold()


def _auto_match(crm_user: CrmUser, extensions: Sequence[RcExtension], taken: set[str]) -> RcExtension | None:
    """The extension with the CRM user's email, else the one with their name; never one already mapped."""
    free = [e for e in extensions if e.id not in taken]
    by_email = next((e for e in free if crm_user.email and _same(e.email, crm_user.email)), None)
    return by_email or next((e for e in free if _same(e.name, crm_user.name)), None)


def match_users(
    crm_users: Sequence[CrmUser],
    extensions: Sequence[RcExtension],
    previous: Sequence[MappedUser],
    *,
    reinitialize: bool,
) -> tuple[MappedUser, ...]:
    """The new mapping: manual choices kept; earlier automatic matches kept unless re-initialising; the
    rest matched by email, then name. A CRM user that is no longer listed drops out."""
    earlier = {m.crm_user_id: m for m in previous}
    known = {e.id for e in extensions}
    kept: dict[str, MappedUser] = {}
    for crm_user in crm_users:
        old = earlier.get(crm_user.id)
        if old is not None and (old.manual or not reinitialize):
            ids = tuple(i for i in old.rc_extension_ids if i in known)
            kept[crm_user.id] = MappedUser(crm_user.id, crm_user.name, crm_user.email or "", ids, old.manual)
    taken = {i for m in kept.values() for i in m.rc_extension_ids}
    result: list[MappedUser] = []
    for crm_user in crm_users:
        mapped = kept.get(crm_user.id)
        if mapped is None:
            found = _auto_match(crm_user, extensions, taken)
            if found is None:
                continue
            taken.add(found.id)
            mapped = MappedUser(crm_user.id, crm_user.name, crm_user.email or "", (found.id,))
        result.append(mapped)
    return tuple(result)


def _wire(
    crm_users: Sequence[CrmUser], mapping: Sequence[MappedUser], extensions: Sequence[RcExtension]
) -> list[JsonDict]:
    """The reference's answer: every CRM user with the extensions mapped to it (`rcUser`, maybe empty)."""
    by_user = {m.crm_user_id: m for m in mapping}
    by_id = {e.id: e for e in extensions}
    answer: list[JsonDict] = []
    for crm_user in crm_users:
        mapped = by_user.get(crm_user.id)
        ids = mapped.rc_extension_ids if mapped is not None else ()
        answer.append(
            {
                "crmUser": {"id": crm_user.id, "name": crm_user.name or "", "email": crm_user.email or ""},
                "rcUser": [
                    {
                        "extensionId": by_id[i].wire_id,
                        "name": by_id[i].name,
                        "extensionNumber": by_id[i].extension_number,
                        "email": by_id[i].email,
                    }
                    for i in ids
                    if i in by_id
                ],
            }
        )
    return answer


def mapping_lock(rc_account: str) -> str:
    """The lock every change of an account's mapping holds: the row is read, changed and written back whole,
    so two admins saving at once would otherwise undo each other's choices."""
    return f"user-mapping:{rc_account}"


async def _admin_user(services: Services, claims: SessionClaims) -> UserRecord:
    user = await active_user(services, claims, by_platform=True)
    if user is None:
        raise ClientError("User not found")
    return user


async def user_mapping(
    services: Services, claims: SessionClaims, token: str | None, *, reinitialize: bool
) -> Reply:
    """`POST /admin/userMapping` (and `/admin/reinitializeUserMapping`): the mapping, matched and stored."""
    user = await _admin_user(services, claims)
    identity = await admin.admin_identity(services, token)
    assert token is not None  # admin_identity refused a missing one
    connector = connector_for(services, user.platform)
    if not implements(connector, "get_user_list"):
        return Reply([])
    call = await open_session(services, connector, user)
    try:
        crm_users = await connector.get_user_list(call)
    except CrmHttpError as exc:
        return Reply(envelope(False, crm_error_message(exc, user.platform, "getUserList")))
    try:
        extensions = await account_extensions(services.http, services.settings.ringcentral_server, token)
    except DirectoryFailed as exc:
        logger.info("RingCentral extension list unavailable: %s", exc)
        if exc.unavailable:
            raise admin.ringcentral_unavailable() from None
        raise ClientError(admin.ADMIN_REFUSED, 403) from None
    key = admin.account_key(services, identity)
    scope = account_scope(user)
    async with services.locks.hold(mapping_lock(key)):
        stored = await services.user_mappings.get(key)
        previous = (
            stored.users
            if stored is not None
            and (
                (stored.crm_scope, stored.platform) == (scope, user.platform)
                or stored.crm_scope == PENDING_SCOPE  # the admin's choices, sent before any mapping
            )
            else ()
        )
        mapping = match_users(crm_users, extensions, previous, reinitialize=reinitialize)
        await services.user_mappings.put(key, AccountMapping(scope, user.platform, mapping))
    return Reply(_wire(crm_users, mapping, extensions))


def _extension_ids(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_EXTENSIONS_PER_USER:
        return None
    ids = [str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip()]
    if any(len(i) > MAX_EXTENSION_ID_CHARS for i in ids):
        return None
    return tuple(dict.fromkeys(ids))


def manual_choices(raw: Any) -> dict[str, tuple[str, ...]] | None:
    """The admin's `userMappings` ([{crmUserId, rcExtensionId}]) as CRM user -> extensions; None if malformed."""
    if not isinstance(raw, list) or len(raw) > MAX_MANUAL_ENTRIES:
        return None
    choices: dict[str, tuple[str, ...]] = {}
    for entry in raw:
        if not isinstance(entry, dict):
            return None
        crm_user_id = entry.get("crmUserId")
        ids = _extension_ids(entry.get("rcExtensionId", []))
        if not isinstance(crm_user_id, str | int) or isinstance(crm_user_id, bool) or ids is None:
            return None
        if not 0 < len(str(crm_user_id).strip()) <= MAX_CRM_USER_ID_CHARS:
            return None
        choices[str(crm_user_id)] = ids
    return choices


async def save_manual_choices(
    services: Services,
    rc_account: str,
    choices: dict[str, tuple[str, ...]],
    owner: UserRecord | None = None,
) -> None:
    """Apply the admin's edits of the mapping, CRM user by CRM user (users not named stay as they are): an
    entry that differs from the stored one becomes manual (kept on re-initialisation); one sent back unchanged
    keeps its kind.

    Before any mapping was made the choices start one, all manual: made against the CRM account of `owner`
    (the admin's CRM session), or, without one, held for the first mapping the admin makes (`PENDING_SCOPE`:
    server-side logging never reads such a row)."""
    async with services.locks.hold(mapping_lock(rc_account)):
        await _save_manual_choices(services, rc_account, choices, owner)


async def _save_manual_choices(
    services: Services, rc_account: str, choices: dict[str, tuple[str, ...]], owner: UserRecord | None
) -> None:
    stored = await services.user_mappings.get(rc_account)
    if stored is None:
        scope, platform = (account_scope(owner), owner.platform) if owner is not None else (PENDING_SCOPE, "")
        stored = AccountMapping(scope, platform, ())
    earlier = {m.crm_user_id: m for m in stored.users}
    chosen = {i for ids in choices.values() for i in ids}
    updated: list[MappedUser] = []
    for old in stored.users:
        if old.crm_user_id in choices:
            continue
        # an extension is one CRM user: a manual choice takes it from any other entry
        left = tuple(i for i in old.rc_extension_ids if i not in chosen)
        updated.append(
            MappedUser(old.crm_user_id, old.name, old.email, left, old.manual or left != old.rc_extension_ids)
        )
    for crm_user_id, ids in choices.items():
        before = earlier.get(crm_user_id)
        name, email = (before.name, before.email) if before is not None else ("", "")
        manual = before is None or before.manual or before.rc_extension_ids != ids
        updated.append(MappedUser(crm_user_id, name, email, ids, manual))
    await services.user_mappings.put(
        rc_account, AccountMapping(stored.crm_scope, stored.platform, tuple(updated))
    )

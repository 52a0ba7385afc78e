"""A company's rollout: admin settings per RingCentral account, served to its users; licence, refresh, notes.

The account and the admin role come from RingCentral (security/ringcentral.py), never from the client: a hashed
account id the client sends (`rcAccountId`) reveals nothing on its own.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints, field_validator

from appconnect.connectors.sdk import CrmHttpError, LicenseStatus, implements
from appconnect.flows import oauth, user_mapping
from appconnect.flows.account_data import with_setting_options
from appconnect.flows.common import account_scope, active_user, connector_for, current_user
from appconnect.flows.errors import SESSION_EXPIRED, crm_error_message, warning
from appconnect.flows.reply import ClientError, Reply, SessionEnded, envelope
from appconnect.flows.requests import ID_CHARS, check_settings_size
from appconnect.flows.services import Services
from appconnect.flows.session import SessionRevoked, open_session
from appconnect.flows.user_settings import merge_settings
from appconnect.security.crypto import hash_value
from appconnect.security.jwt import SessionClaims
from appconnect.security.ringcentral import RcCheckFailed, RcIdentity
from appconnect.store.users import UserRecord

logger = logging.getLogger(__name__)

ADMIN_REFUSED = "Admin validation failed"
RC_USER_REFUSED = "RingCentral user validation failed"
ADMIN_SETTINGS_SAVED = "Admin settings updated"
NO_RC_LOGIN = "Cannot find rc user login"
RC_UNAVAILABLE = "Could not reach RingCentral to verify your account. Please try again shortly."
#: how long a cached call note waits for server-side logging (the reference's hour)
NOTE_TTL_SECONDS = 3600.0
MAX_NOTE_CHARS = 64 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AdminSettingsFields(_Body):
    """What an admin sets: the users' settings, each locked or customizable (unknown keys are ignored)."""

    user_settings: dict[str, Any] | None = Field(default=None, alias="userSettings")
    #: the admin's own choices in the user mapping ([{crmUserId, rcExtensionId}], flows/user_mapping.py)
    user_mappings: list[Any] | None = Field(default=None, alias="userMappings")

    @field_validator("user_mappings")
    @classmethod
    def _mapping_entries(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and user_mapping.manual_choices(value) is None:
            raise ValueError(
                "must be a list of {crmUserId, rcExtensionId} (ids of at most "
                f"{user_mapping.MAX_CRM_USER_ID_CHARS} and {user_mapping.MAX_EXTENSION_ID_CHARS} characters)"
            )
        return value

    @field_validator("user_settings")
    @classmethod
    def _small_enough(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_settings_size(value)
        return value


class AdminSettingsBody(_Body):
    admin_settings: AdminSettingsFields = Field(alias="adminSettings")


class CacheNoteBody(_Body):
    session_id: Annotated[StrictStr, StringConstraints(min_length=1, max_length=ID_CHARS)] = Field(
        alias="sessionId"
    )
    note: Annotated[StrictStr, StringConstraints(max_length=MAX_NOTE_CHARS)] = ""


# --- who is asking ----------------------------------------------------------------------------------------------


def ringcentral_unavailable() -> ClientError:
    """RingCentral could not be asked (down, 5xx, timeout, no JSON): not the caller's fault, so never a 403.
    The reference's RingCentral call throws and its route answers 400 `{error}` (contract section 6)."""
    return ClientError(RC_UNAVAILABLE, 400, as_json=True)


def admin_settings_lock(services: Services, account: str) -> AbstractAsyncContextManager[None]:
    """Held by every write of an account's admin settings: a write that changes a few keys of the stored
    settings (the Google Sheets pick) must not undo a whole save made meanwhile, nor the other way round."""
    return services.locks.hold(f"admin-settings:{account}")


async def rc_identity(services: Services, token: str | None, *, refused_text: str) -> RcIdentity:
    """The RingCentral identity of `token`; a missing, refused or untrusted one is a 403 `refused_text`, a
    RingCentral that cannot be asked a 400 `{error}` saying so."""
    if not token:
        raise ClientError(refused_text, 403)
    try:
        return await services.rc_identities.identify(
            services.http, services.settings.ringcentral_server, token, services.keys.hash_key
        )
    except RcCheckFailed as exc:
        logger.info("RingCentral identity check failed: %s", exc)
        if exc.unavailable:
            raise ringcentral_unavailable() from None
        raise ClientError(refused_text, 403) from None


async def admin_identity(services: Services, token: str | None) -> RcIdentity:
    """The identity of an admin of their RingCentral account; anyone else is a 403."""
    identity = await rc_identity(services, token, refused_text=ADMIN_REFUSED)
    if not identity.is_admin:
        raise ClientError(ADMIN_REFUSED, 403)
    return identity


def account_key(services: Services, identity: RcIdentity) -> str:
    """The admin row of a verified account: its keyed hash (what `/userInfoHash` gives for the account)."""
    return hash_value(identity.account_id, services.keys.hash_key)


# --- admin settings ---------------------------------------------------------------------------------------------


async def get_admin_settings(services: Services, claims: SessionClaims, token: str | None) -> Reply:
    """The admin's settings of their own account: the settings only, never anything else of the row."""
    if await current_user(services, claims) is None:
        raise ClientError("User not found")
    identity = await admin_identity(services, token)
    stored = await services.admin_settings.get(account_key(services, identity))
    return Reply({"customConnector": None, "userSettings": stored or {}})


async def set_admin_settings(
    services: Services, token: str | None, body: AdminSettingsBody, claims: SessionClaims | None = None
) -> Reply:
    """Store the admin's settings and their own user-mapping choices (kept even before any mapping was made,
    as the reference keeps them in its admin row). The admin's CRM session, when sent, names the CRM account
    the choices belong to."""
    identity = await admin_identity(services, token)
    fields = body.admin_settings
    if fields.user_settings is not None:
        account = account_key(services, identity)
        async with admin_settings_lock(services, account):
            await services.admin_settings.put(account, fields.user_settings)
    choices = user_mapping.manual_choices(fields.user_mappings)
    if choices is not None:
        owner = await _session_user(services, claims)
        await user_mapping.save_manual_choices(services, account_key(services, identity), choices, owner)
    return Reply(ADMIN_SETTINGS_SAVED)


async def _session_user(services: Services, claims: SessionClaims | None) -> UserRecord | None:
    """The caller's CRM user when a current session came along; the admin settings route does not need one."""
    if claims is None:
        return None
    try:
        return await active_user(services, claims, by_platform=True)
    except SessionEnded:
        return None


async def preload_settings(services: Services, token: str | None, rc_account_id: str | None) -> Reply:
    """Every user of a verified account gets its admin settings; a bare account hash gets none."""
    if token:
        identity = await rc_identity(services, token, refused_text=RC_USER_REFUSED)
        stored = await services.admin_settings.get(account_key(services, identity))
        return Reply({"userSettings": stored or {}})
    if not rc_account_id:
        raise ClientError(NO_RC_LOGIN)
    return Reply({"userSettings": {}})


async def get_user_settings(services: Services, claims: SessionClaims, token: str | None) -> Reply:
    """The user's settings merged with their verified account's admin settings (as the reference does, a token
    that cannot be verified only leaves the admin settings out)."""
    user = await current_user(services, claims)
    if user is None:
        raise ClientError("User not found")
    admin: dict[str, Any] | None = None
    if token:
        try:
            identity = await services.rc_identities.identify(
                services.http, services.settings.ringcentral_server, token, services.keys.hash_key
            )
        except RcCheckFailed as exc:
            logger.info("RingCentral identity check failed, settings served without the admin's: %s", exc)
        else:
            admin = await services.admin_settings.get(account_key(services, identity))
    return Reply(await with_setting_options(services, user, merge_settings(admin, user.user_settings)))


# --- licence, refresh, notes ------------------------------------------------------------------------------------

_NO_SESSION = LicenseStatus(False, "Invalid (Invalid user session)")
_NO_USER = LicenseStatus(False, "Invalid (User not found)")
_UNKNOWN = LicenseStatus(False, "Invalid (Connect to get license status)")


async def license_status(services: Services, claims: SessionClaims | None) -> Reply:
    """The user's CRM licence; always a 200 with the status (the client shows it), as the reference answers."""
    if claims is None:
        return Reply(_NO_SESSION.to_wire())
    user = await active_user(services, claims, by_platform=True)
    if user is None:
        return Reply(_NO_USER.to_wire())
    connector = connector_for(services, user.platform)
    if not implements(connector, "get_license_status"):
        return Reply(LicenseStatus(True, "Basic").to_wire())
    try:
        call = await open_session(services, connector, user)
        status = await connector.get_license_status(call)
    except (CrmHttpError, SessionRevoked, oauth.OAuthError) as exc:
        logger.info("licence status of %s unavailable: %s", user.platform, type(exc).__name__)
        return Reply(_UNKNOWN.to_wire())
    return Reply(status.to_wire())


async def refresh_user_info(services: Services, claims: SessionClaims) -> Reply:
    """The connector's `refresh_user_info`, in a session opened as for any CRM call (OAuth refreshed when due).

    As the reference: a connector without it is a success without a CRM call; an unknown user is a warning;
    a revoked session is a 200 warning here (the route ignores `isRevokeUserSession`); a CRM failure is mapped
    like any other (`handleApiError`)."""
    connector = connector_for(services, claims.platform)
    if not implements(connector, "refresh_user_info"):
        return Reply(envelope(True))
    user = await active_user(services, claims, by_platform=True)
    if user is None:
        return Reply(envelope(False, warning("User not found")))
    try:
        call = await open_session(services, connector, user)
        refreshed = await connector.refresh_user_info(call)
    except SessionRevoked:
        return Reply(envelope(False, SESSION_EXPIRED))
    except (CrmHttpError, oauth.OAuthError) as exc:
        logger.info("refreshing %s user info failed: %s", user.platform, type(exc).__name__)
        return Reply(envelope(False, crm_error_message(exc, user.platform, "refreshUserInfo")))
    return Reply(envelope(refreshed.successful, refreshed.return_message))


async def cache_note(services: Services, claims: SessionClaims, body: CacheNoteBody) -> Reply:
    """Keep a call's note for server-side logging, in the caller's own CRM account only."""
    user = await active_user(services, claims, by_platform=True)
    if user is None:
        raise ClientError("User not found")
    await services.call_notes.put(
        account_scope(user), body.session_id, body.note, ttl_seconds=NOTE_TTL_SECONDS
    )
    return Reply({"successful": True, "returnMessage": "Note cache saved"})

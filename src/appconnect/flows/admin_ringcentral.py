"""An admin's RingCentral authorization and server-side logging settings, per verified RingCentral account.

Server-side logging (and the admin reports) act for a whole RingCentral account with the tokens an admin granted
the server's own RingCentral app: `/ringcentral/oauth/callback` exchanges the admin's authorization code at
RingCentral, checks the tokens belong to the admin's own account, and keeps them encrypted; they are refreshed
single-flight across processes (the lock CRM token refresh uses) and never returned to anyone. Both routes check
the admin role with RingCentral, which the reference does not.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from appconnect.connectors.sdk import OAuthInfo
from appconnect.flows import oauth
from appconnect.flows.admin import account_key, admin_identity
from appconnect.flows.common import current_user
from appconnect.flows.reply import ClientError, Reply
from appconnect.flows.requests import check_settings_size
from appconnect.flows.services import Services
from appconnect.flows.session import REFRESH_MARGIN
from appconnect.security.crypto import hash_value
from appconnect.security.jwt import SessionClaims
from appconnect.security.ringcentral import RcCheckFailed
from appconnect.store.admin import AdminRcTokens

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/ringcentral/oauth/callback"
TOKEN_PATH = "/restapi/oauth/token"
#: what a saved secret field reads as; sent back unchanged on save, it keeps the saved value
SECRET_PLACEHOLDER = "********"
#: field names whose values are never returned (an API password, a client secret, a token, a key)
_SECRET_WORDS = ("password", "secret", "token", "key")
NOT_CONFIGURED = "RingCentral authorization is not configured on this server"
AUTHORIZATION_FAILED = "RingCentral authorization failed"
LOGGING_SAVED = "Server logging settings updated"


class ServerLoggingBody(BaseModel):
    """What the admin's form sends: the connector's server-side logging fields."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    additional_field_values: dict[str, Any] = Field(alias="additionalFieldValues")

    @field_validator("additional_field_values")
    @classmethod
    def _small_enough(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_settings_size(value)
        return value


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _shown(settings: dict[str, Any]) -> dict[str, Any]:
    """The saved fields as the admin's form may see them: secrets only as a placeholder, at any depth (a form
    may group its fields)."""
    return {name: _shown_value(name, value) for name, value in settings.items()}


def _shown_value(name: str, value: Any) -> Any:
    if _is_secret(name) and value not in (None, ""):
        return SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return _shown(value)
    if isinstance(value, list):
        return [_shown_value("", item) for item in value]
    return value


def _merged(saved: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """The form's values; a secret sent back as the placeholder keeps the saved one (inside groups too), an
    emptied field goes."""
    merged: dict[str, Any] = {}
    for name, value in sent.items():
        if value == SECRET_PLACEHOLDER and _is_secret(name):
            if name in saved:
                merged[name] = saved[name]
            continue
        if value in (None, ""):
            continue
        merged[name] = _merged_value(saved.get(name), value)
    return merged


def _merged_value(saved: Any, sent: Any) -> Any:
    if isinstance(sent, dict):
        return _merged(saved if isinstance(saved, dict) else {}, sent)
    if isinstance(sent, list):
        before = saved if isinstance(saved, list) else []
        return [_merged_value(before[i] if i < len(before) else None, item) for i, item in enumerate(sent)]
    return sent


# --- server-side logging settings ----------------------------------------------------------------------------


async def get_server_logging_settings(services: Services, claims: SessionClaims, token: str | None) -> Reply:
    """The admin's account's server-side logging fields, secrets masked; never the RingCentral tokens."""
    if await current_user(services, claims) is None:
        raise ClientError("User not found")
    identity = await admin_identity(services, token)
    saved = await services.admin_ringcentral.logging_settings(account_key(services, identity))
    return Reply(_shown(saved))


async def set_server_logging_settings(
    services: Services, claims: SessionClaims, token: str | None, body: ServerLoggingBody
) -> Reply:
    if await current_user(services, claims) is None:
        raise ClientError("User not found")
    identity = await admin_identity(services, token)
    key = account_key(services, identity)
    saved = await services.admin_ringcentral.logging_settings(key)
    await services.admin_ringcentral.save_logging_settings(key, _merged(saved, body.additional_field_values))
    return Reply(
        {
            "successful": True,
            "returnMessage": {"messageType": "success", "message": LOGGING_SAVED, "ttl": 3000},
        }
    )


# --- the admin's RingCentral tokens ------------------------------------------------------------------------------


def ringcentral_oauth(services: Services) -> OAuthInfo | None:
    """The server's own RingCentral app, or None when its client id and secret are not set."""
    settings = services.settings
    secret = settings.ringcentral_client_secret.get_secret_value()
    if not settings.ringcentral_client_id or not secret:
        return None
    return OAuthInfo(
        client_id=settings.ringcentral_client_id,
        client_secret=secret,
        access_token_uri=settings.ringcentral_server + TOKEN_PATH,
        redirect_uri=settings.server_url() + CALLBACK_PATH,
    )


def _stored(tokens: oauth.TokenSet) -> AdminRcTokens:
    return AdminRcTokens(tokens.access_token, tokens.refresh_token, tokens.expires_at)


async def ringcentral_callback(
    services: Services, claims: SessionClaims, token: str | None, code: str | None
) -> Reply:
    """Exchange an admin's authorization code and keep the tokens for the admin's own RingCentral account."""
    if await current_user(services, claims) is None:
        raise ClientError("User not found")
    identity = await admin_identity(services, token)
    if not code:
        raise ClientError("Missing code")
    info = ringcentral_oauth(services)
    if info is None:
        raise ClientError(NOT_CONFIGURED)
    try:
        tokens = await oauth.exchange_code(services.http, info, code)
    except oauth.OAuthError as exc:
        logger.info("RingCentral refused an admin's authorization code: %s", exc)
        raise ClientError(AUTHORIZATION_FAILED) from None
    # the code must have been granted by someone of the admin's own account: never keep another account's tokens
    try:
        granted = await services.rc_identities.identify(
            services.http, services.settings.ringcentral_server, tokens.access_token, services.keys.hash_key
        )
    except RcCheckFailed as exc:
        logger.info("RingCentral tokens of an admin's authorization could not be checked: %s", exc)
        raise ClientError(AUTHORIZATION_FAILED) from None
    if granted.account_id != identity.account_id:
        logger.warning("an admin's authorization code was granted for another RingCentral account")
        raise ClientError(AUTHORIZATION_FAILED, 403)
    await services.admin_ringcentral.save_tokens(account_key(services, identity), _stored(tokens))
    return Reply({"successful": True})


def _due(tokens: AdminRcTokens, now: datetime) -> bool:
    return tokens.expiry is not None and tokens.expiry < now + REFRESH_MARGIN


async def admin_access_token(services: Services, account_id: str) -> str | None:
    """A current RingCentral access token of the account's admin, refreshed when due: exactly one refresh
    across all processes (the others wait on the lock and read the new token). None when no admin authorized
    the server, or RingCentral refused the refresh token (then the tokens are forgotten: authorize again);
    :class:`oauth.OAuthError` when RingCentral could not be asked (the tokens are kept for the next try)."""
    key = hash_value(
        account_id, services.keys.hash_key
    )  # the row `account_key` names for a verified identity
    tokens = await services.admin_ringcentral.tokens(key)
    if tokens is None or not _due(tokens, datetime.now(UTC)):
        return tokens.access_token if tokens is not None else None
    info = ringcentral_oauth(services)
    if info is None:
        return None
    async with services.locks.hold(f"rc-admin-refresh:{key}", ttl=services.settings.crm_read_timeout + 10):
        current = await services.admin_ringcentral.tokens(key)
        if current is None or not _due(current, datetime.now(UTC)):
            return current.access_token if current is not None else None
        if not current.refresh_token:
            return None
        try:
            fresh = await oauth.refresh(services.http, info, current.refresh_token)
        except oauth.OAuthError as exc:
            if exc.code == "invalid_grant":
                logger.warning("RingCentral refused an admin's refresh token: the admin must authorize again")
                await services.admin_ringcentral.save_tokens(key, None)
                return None
            raise
        await services.admin_ringcentral.save_tokens(key, _stored(fresh))
        return fresh.access_token

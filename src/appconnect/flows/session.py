"""Opens a CRM session for a stored user: refresh the OAuth token when due (single-flight), build the header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from appconnect.connectors.sdk import Connector, CrmCall, UserView
from appconnect.flows import oauth
from appconnect.flows.account_store import StoredAccountData
from appconnect.flows.common import account_scope
from appconnect.flows.managed_apps import oauth_info_of
from appconnect.flows.services import Services
from appconnect.outbound.client import CrmHttpClient
from appconnect.store.users import UserRecord

REFRESH_MARGIN = timedelta(minutes=2)


class SessionRevoked(Exception):
    """The CRM refused the refresh token: the user must connect again (HTTP 401 CRM_SESSION_REVOKED)."""


def user_view(user: UserRecord) -> UserView:
    return UserView(
        id=user.id,
        platform=user.platform,
        hostname=user.hostname,
        timezone_name=user.timezone_name,
        timezone_offset=user.timezone_offset,
        platform_additional_info=user.platform_additional_info,
        user_settings=user.user_settings,
    )


def _due(user: UserRecord, now: datetime) -> bool:
    return bool(
        user.access_token
        and user.refresh_token
        and user.token_expiry is not None
        and user.token_expiry < now + REFRESH_MARGIN
    )


async def _refreshed(services: Services, connector: Connector, user: UserRecord) -> UserRecord:
    """Exactly one refresh per user across all processes; the others wait and read the new token."""
    async with services.locks.hold(f"refresh:{user.id}", ttl=services.settings.crm_read_timeout + 10):
        current = await services.users.get(user.id, fresh=True)
        if current is None or not current.access_token or current.session_revoked:
            raise SessionRevoked(user.id)
        if not _due(current, datetime.now(UTC)):
            return current
        assert current.refresh_token is not None
        try:
            info = await oauth_info_of(
                services, connector, current.platform, current.hostname, current.platform_additional_info
            )
            tokens = await oauth.refresh(services.http, info, current.refresh_token)
        except oauth.OAuthError as exc:
            if exc.code == "invalid_grant":
                # Remember it, so requests queued behind this lock (and later ones) answer 401 at once
                # instead of each asking the CRM again.
                await services.users.mark_revoked(current.id)
                raise SessionRevoked(user.id) from exc
            raise
        await services.users.save_tokens(
            current.id,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            token_expiry=tokens.expires_at,
        )
        current.access_token = tokens.access_token
        current.refresh_token = tokens.refresh_token
        current.token_expiry = tokens.expires_at
        return current


async def open_session(services: Services, connector: Connector, user: UserRecord) -> CrmCall:
    """The auth header and bound HTTP client for this user's CRM calls."""
    if connector.auth_type == "oauth":
        if user.session_revoked:
            raise SessionRevoked(user.id)
        if _due(user, datetime.now(UTC)):
            user = await _refreshed(services, connector, user)
        auth_header = f"Bearer {user.access_token}"
    else:
        auth_header = "Basic " + connector.basic_auth(user.access_token or "")
    view = user_view(user)
    http = CrmHttpClient(
        services.http,
        base_url=connector.base_url(view),
        auth_header=auth_header,
        retry=services.retry_policy(),
        limiter=services.account_limiter(connector, view),
    )
    account_data = StoredAccountData(services.cache, account_scope(user), user.platform)
    return CrmCall(view, auth_header, http, account_data)

"""An account's managed OAuth app as the OAuth code uses it: the admin's client on the connector's endpoints.

Apart from flows/managed_auth.py so that opening a session (token refresh) can read it without the admin flows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from appconnect.connectors.sdk import Connector, OAuthInfo
from appconnect.flows.services import Services

OAUTH_KEY = "oauth"
OAUTH_SECRET = "clientSecret"
#: where a user logged in with their account's managed app keeps that account (its keyed hash, not a secret)
ACCOUNT_MARK = "managedOAuthAccount"


def filled(value: Any) -> bool:
    return value is not None and value != ""


def managed_info(connector: Connector, app: dict[str, Any]) -> OAuthInfo:
    """The connector's OAuth endpoints for the app's host, with the app's client id, secret and scopes."""
    info = connector.oauth_info(str(app["hostname"]) if filled(app.get("hostname")) else None)
    return replace(
        info,
        client_id=str(app.get("clientId") or info.client_id),
        client_secret=str(app[OAUTH_SECRET]) if filled(app.get(OAUTH_SECRET)) else info.client_secret,
        scopes=str(app["scopes"]) if filled(app.get("scopes")) else info.scopes,
    )


async def oauth_info_of(
    services: Services, connector: Connector, platform: str, hostname: str, extra: dict[str, Any]
) -> OAuthInfo:
    """The app a stored user's tokens belong to: their account's managed app, else the server's own."""
    account = extra.get(ACCOUNT_MARK)
    if isinstance(account, str) and account:
        app = await services.managed_auth.get(account, platform, OAUTH_KEY)
        if app and filled(app.get("clientId")):
            return managed_info(connector, {**app, "hostname": app.get("hostname") or hostname})
    return connector.oauth_info(hostname)

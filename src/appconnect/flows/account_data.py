"""`GET /accountData` (a connector's account-level data, kept by flows/account_store.py) and the settings
options filled from the CRM."""

from __future__ import annotations

import logging
from typing import Any

from appconnect.connectors.sdk import CrmHttpError, InterfaceNotImplemented, implements
from appconnect.flows.common import active_user, connector_for
from appconnect.flows.errors import crm_error_message, warning
from appconnect.flows.reply import ClientError, Reply, envelope
from appconnect.flows.services import Services
from appconnect.flows.session import SessionRevoked, open_session
from appconnect.security.jwt import SessionClaims
from appconnect.store.users import UserRecord

logger = logging.getLogger(__name__)


#: keys one `GET /accountData` may ask for at most
MAX_KEYS = 10


async def get_account_data(
    services: Services, claims: SessionClaims, keys: list[str], *, force_refresh: bool
) -> Reply:
    """`GET /accountData?keys=a,b[&forceRefresh=true]`: `{successful, data: {key: value}}`, as the reference."""
    user = await active_user(services, claims, by_platform=False)
    if user is None:
        return Reply(envelope(False, warning("User not found", 5000)))
    connector = connector_for(services, user.platform)
    wanted = list(dict.fromkeys(k for k in keys if k))
    if not wanted or len(wanted) > MAX_KEYS:
        raise ClientError(f"keys: name 1 to {MAX_KEYS} account data keys", as_json=True)
    unknown = [k for k in wanted if k not in connector.account_data_keys]
    if unknown:
        raise ClientError(f"Unknown account data key(s): {', '.join(unknown)}", as_json=True)
    call = await open_session(services, connector, user)
    data: dict[str, Any] = {}
    try:
        for key in wanted:
            data[key] = await connector.account_data(call, key, refresh=force_refresh)
    except CrmHttpError as exc:
        return Reply(envelope(False, crm_error_message(exc, user.platform, "getAccountData")))
    return Reply(envelope(True, None, data=data))


def _defaults(manifest_entry: dict[str, Any]) -> dict[str, Any]:
    """Each setting id of the manifest's `settings` (sections' items included) -> its `defaultValue`."""
    found: dict[str, Any] = {}
    stack = list(manifest_entry.get("settings") or [])
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        stack.extend(item.get("items") or [])
        if "id" in item:
            found[str(item["id"])] = item.get("defaultValue")
    return found


async def with_setting_options(
    services: Services, user: UserRecord, settings: dict[str, Any]
) -> dict[str, Any]:
    """The settings answered to the client, each `dynamicOptions` setting's options filled from the CRM (kept
    as the user's value, else the manifest's default). Without the CRM (down, session ended) they are
    answered as stored: the settings page must open all the same."""
    connector = services.registry.get(user.platform)
    if connector is None or not implements(connector, "setting_options"):
        return settings
    try:
        call = await open_session(services, connector, user)
        options = await connector.setting_options(call)
    except (CrmHttpError, SessionRevoked, InterfaceNotImplemented) as exc:
        logger.warning("%s: settings options not read (%s)", user.platform, type(exc).__name__)
        return settings
    defaults = _defaults(connector.manifest_entry())
    filled = dict(settings)
    for key, choices in options.items():
        current = filled.get(key)
        entry = dict(current) if isinstance(current, dict) else {"value": defaults.get(key)}
        entry["options"] = choices
        filled[key] = entry
    return filled

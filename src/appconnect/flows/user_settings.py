"""Per-user settings, merged with the admin's account-wide settings."""

from __future__ import annotations

from typing import Any

from appconnect.flows.account_data import with_setting_options
from appconnect.flows.common import current_user
from appconnect.flows.reply import ClientError, Reply
from appconnect.flows.requests import UserSettingsBody, check_settings_size
from appconnect.flows.services import Services
from appconnect.security.jwt import SessionClaims


def merge_settings(admin: dict[str, Any] | None, user: dict[str, Any] | None) -> dict[str, Any]:
    """The contract's merge: admin values win unless customizable and the user set one; removed keys go."""
    if not admin:
        return dict(user or {})
    if not user:
        return {}
    merged: dict[str, Any] = {}
    for key in {*admin, *user}:
        admin_value = admin.get(key)
        if isinstance(admin_value, dict) and admin_value.get("isRemoved"):
            continue
        user_value = user.get(key)
        customizable = admin_value is None or (
            isinstance(admin_value, dict) and admin_value.get("customizable")
        )
        if customizable and isinstance(user_value, dict):
            merged[key] = {
                "customizable": True,
                "value": user_value.get("value"),
                "defaultValue": user_value.get("defaultValue"),
                "options": user_value.get("options"),
            }
        elif admin_value is not None:
            merged[key] = admin_value
    return merged


async def get_user_settings(services: Services, claims: SessionClaims, rc_account_id: str | None) -> Reply:
    user = await current_user(services, claims)
    if user is None:
        raise ClientError("User not found")
    admin = await services.cache.admin_settings(rc_account_id) if rc_account_id else None
    merged = merge_settings(admin, user.user_settings)
    return Reply(await with_setting_options(services, user, merged))


async def update_user_settings(services: Services, claims: SessionClaims, body: UserSettingsBody) -> Reply:
    user = await current_user(services, claims)
    if user is None:
        raise ClientError("User not found")
    settings = {**user.user_settings, **body.user_settings}
    for key in body.setting_keys_to_remove:
        settings.pop(key, None)
    try:  # each request is bounded; so is what they add up to
        check_settings_size(settings)
    except ValueError as exc:
        raise ClientError(f"userSettings: together with the stored settings, it {exc}", as_json=True) from exc
    await services.users.save_settings(user.id, settings)
    return Reply({"userSettings": settings})


async def preload_settings(services: Services, rc_account_id: str | None) -> Reply:
    if not rc_account_id:
        raise ClientError("Cannot find rc user login")
    return Reply({"userSettings": await services.cache.admin_settings(rc_account_id) or {}})

"""Managed auth: an admin stores the CRM login fields or an OAuth app once; the account's users log in without them.

The account and the admin role come from RingCentral (flows/admin.py), never from the client. What is stored is
encrypted at rest (store/managed_auth.py) and never returned to anyone, the admin included: the admin's page is
told which fields are set, a secret one shown as :data:`PLACEHOLDER`, and saving the placeholder back keeps it.
Logins read the values for the user's own verified RingCentral account and extension only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints

from appconnect.connectors.sdk import (
    Connector,
    CrmHttpError,
    ManagedAuthOptionsRequest,
    OAuthInfo,
    UserView,
    implements,
)
from appconnect.flows.admin import account_key, admin_identity, rc_identity
from appconnect.flows.common import connector_for, current_user
from appconnect.flows.managed_apps import OAUTH_KEY, OAUTH_SECRET, filled, managed_info
from appconnect.flows.reply import ClientError, Reply
from appconnect.flows.services import Services
from appconnect.outbound.client import CrmHttpClient
from appconnect.security.jwt import SessionClaims
from appconnect.security.ringcentral import ID_PATTERN as RC_ID_PATTERN
from appconnect.security.ringcentral import RcCheckFailed, RcIdentity
from appconnect.store.users import UserRecord

logger = logging.getLogger(__name__)

#: what the admin's page shows for a stored secret; saved back unchanged, it keeps the stored value
PLACEHOLDER = "********"
SAVED = "Shared authentication updated"
RC_USER_REFUSED = "RingCentral user validation failed"
MISSING_TOKEN = "Missing RingCentral access token"
MISSING_PLATFORM = "Missing platform name"
#: a RingCentral extension id is a number of at most 20 digits; the row key has room for a bit more
EXTENSION_ID_CHARS = 64
#: a stored login field is an API key, a host name, an id: anything longer is not one
MAX_VALUE_CHARS = 4096
#: an admin's OAuth app waits this long for the first login that completes it (the reference's day)
PENDING_OAUTH_TTL = timedelta(hours=24)

ORG_KEY = "org"
USER_KEY = "user:"
FAILED_KEY = "login-failure:"
PENDING_OAUTH_KEY = "oauth-pending"
#: the pending OAuth app is the account's, not yet any platform's (the reference keys it by account alone)
NO_PLATFORM = ""
#: what an admin may set of an OAuth app: the endpoints stay the connector's own, so a managed app never sends
#: its secret, or the server's requests, anywhere the connector does not already talk to
OAUTH_FIELDS = ("clientId", "clientSecret", "scopes", "hostname")
_SECRET_WORDS = ("secret", "password", "token", "apikey", "privatekey")
#: where the stored values were set for: the admin's CRM address (a CRM whose address is the login's hostname
#: must never be sent the account's values for a host a user of the account names)
CRM_BASE = "crmBase"


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


Value = Annotated[StrictStr, StringConstraints(max_length=MAX_VALUE_CHARS)] | StrictInt | bool | None
FieldName = Annotated[StrictStr, StringConstraints(min_length=1, max_length=128)]


class ManagedAuthBody(_Body):
    """The admin's save: the account's fields (`scope` "org") or one extension's (`scope` "user")."""

    scope: Annotated[StrictStr, StringConstraints(max_length=16)] = "org"
    #: only an id RingCentral could answer (security/ringcentral.py): a row under another could be no one's
    rc_extension_id: (
        Annotated[StrictStr, StringConstraints(max_length=EXTENSION_ID_CHARS, pattern=f"^{RC_ID_PATTERN}$")]
        | StrictInt
        | None
    ) = Field(default=None, alias="rcExtensionId")
    rc_user_name: Annotated[StrictStr, StringConstraints(max_length=255)] | None = Field(
        default=None, alias="rcUserName"
    )
    values: dict[FieldName, Value] = Field(default_factory=dict)
    fields_to_remove: list[FieldName] = Field(default_factory=list, alias="fieldsToRemove", max_length=256)


class ManagedAuthOptionsBody(_Body):
    field_const: Annotated[StrictStr, StringConstraints(max_length=128)] | None = Field(
        default=None, alias="fieldConst"
    )
    account_values: dict[FieldName, Value] = Field(default_factory=dict, alias="accountValues")


class ManagedOAuthCacheBody(_Body):
    values: dict[FieldName, Value] = Field(default_factory=dict)


# --- the manifest's managed fields ------------------------------------------------------------------------------


def login_fields(services: Services, platform: str) -> list[dict[str, Any]]:
    """The platform's API-key login page fields (`auth.apiKey.page.content`)."""
    entry = services.registry.manifest_entry(platform)
    auth = entry.get("auth")
    api_key = auth.get("apiKey") if isinstance(auth, dict) else None
    page = api_key.get("page") if isinstance(api_key, dict) else None
    content = page.get("content") if isinstance(page, dict) else None
    return [f for f in content or [] if isinstance(f, dict) and isinstance(f.get("const"), str)]


def _managed(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in fields if f.get("managed") is True]


def _scope_of(field: dict[str, Any]) -> str:
    return "user" if field.get("managedScope") == "user" else "account"


def is_secret(field: dict[str, Any]) -> bool:
    """A field never shown again once stored: the API key, a password input, anything named like a secret."""
    name = str(field.get("const", "")).lower().replace("_", "")
    ui = field.get("uiSchema")
    return (
        (isinstance(ui, dict) and ui.get("ui:widget") == "password")
        or field.get("format") == "password"
        or any(word in name for word in _SECRET_WORDS)
    )


def _extension_key(prefix: str, extension_id: str | int) -> str:
    return f"{prefix}{extension_id}"


def crm_base(services: Services, platform: str, hostname: str) -> str:
    """The CRM address a login at `hostname` talks to (the same for every hostname on a fixed-address CRM)."""
    connector = connector_for(services, platform)
    return connector.base_url(UserView(id="", platform=platform, hostname=hostname))


# --- what is stored ---------------------------------------------------------------------------------------------


async def _fields_at(
    services: Services, account: str, platform: str, key: str, *, for_base: str | None = None
) -> dict[str, Any]:
    """The stored fields; with `for_base`, none unless they were stored for that CRM address."""
    stored = await services.managed_auth.get(account, platform, key)
    fields = stored.get("fields") if stored else None
    if for_base is not None and stored:
        saved_for = stored.get(CRM_BASE)
        if for_base != (saved_for if isinstance(saved_for, str) else crm_base(services, platform, "")):
            return {}
    return dict(fields) if isinstance(fields, dict) else {}


def _merged(
    stored: dict[str, Any], values: dict[str, Any], removed: list[str], allowed: set[str]
) -> dict[str, Any]:
    """The stored fields after a save: the placeholder keeps a value, an empty one (or a removal) deletes it."""
    merged = dict(stored)
    for name, value in values.items():
        if name not in allowed or value == PLACEHOLDER:
            continue
        if filled(value):
            merged[name] = value
        else:
            merged.pop(name, None)
    for name in removed:
        merged.pop(name, None)
    return merged


async def _save_fields(
    services: Services, account: str, platform: str, key: str, fields: dict[str, Any], **extra: Any
) -> None:
    if fields or extra.get("rcUserName"):
        await services.managed_auth.put(account, platform, key, {"fields": fields, **extra})
    else:
        await services.managed_auth.delete(account, platform, key)


def _shown(field: dict[str, Any], value: Any) -> dict[str, Any]:
    """What the admin's page sees of one stored field: whether it is set, and never a secret's value."""
    if not filled(value):
        return {"hasValue": False, "value": ""}
    return {"hasValue": True, "value": PLACEHOLDER if is_secret(field) else value}


# --- the admin's page -------------------------------------------------------------------------------------------


async def _admin_user(services: Services, claims: SessionClaims) -> UserRecord:
    user = await current_user(services, claims)
    if user is None:
        raise ClientError("User not found")
    return user


async def _admin_platform(services: Services, claims: SessionClaims) -> str:
    return (await _admin_user(services, claims)).platform


async def get_managed_auth(services: Services, claims: SessionClaims, token: str | None) -> Reply:
    """The managed fields of the admin's CRM and which are set, for the account and for each extension."""
    platform = await _admin_platform(services, claims)
    account = account_key(services, await admin_identity(services, token))
    fields = _managed(login_fields(services, platform))
    org_fields = [f for f in fields if _scope_of(f) == "account"]
    user_fields = [f for f in fields if _scope_of(f) == "user"]
    org_values = await _fields_at(services, account, platform, ORG_KEY)
    users = []
    for key, stored in await services.managed_auth.list(account, platform, USER_KEY):
        kept = stored.get("fields")
        values: dict[str, Any] = kept if isinstance(kept, dict) else {}
        users.append(
            {
                "rcExtensionId": key[len(USER_KEY) :],
                "rcUserName": str(stored.get("rcUserName") or ""),
                "fields": {f["const"]: _shown(f, values.get(f["const"])) for f in user_fields},
            }
        )
    return Reply(
        {
            "hasManagedAuth": bool(fields),
            "fields": fields,
            "orgFields": org_fields,
            "userFields": user_fields,
            "orgValues": {f["const"]: _shown(f, org_values.get(f["const"])) for f in org_fields},
            "userValues": users,
        }
    )


async def set_managed_auth(
    services: Services, claims: SessionClaims, token: str | None, body: ManagedAuthBody
) -> Reply:
    """Store the account's (or one extension's) managed fields; only the CRM's managed fields of that scope,
    for the CRM the admin is logged in to (logins at another address are not given them)."""
    admin = await _admin_user(services, claims)
    platform = admin.platform
    account = account_key(services, await admin_identity(services, token))
    base = crm_base(services, platform, admin.hostname)
    fields = _managed(login_fields(services, platform))
    if body.scope == "user":
        if body.rc_extension_id is None or str(body.rc_extension_id) == "":
            raise ClientError("rcExtensionId: required for user managed auth values", as_json=True)
        key = _extension_key(USER_KEY, body.rc_extension_id)
        allowed = {f["const"] for f in fields if _scope_of(f) == "user"}
    else:
        key = ORG_KEY
        allowed = {f["const"] for f in fields if _scope_of(f) == "account"}
    # the row is read, changed and written back whole: two admins saving it at once must not undo each other
    async with services.locks.hold(f"managed-auth:{account}:{platform}:{key}"):
        stored = await services.managed_auth.get(account, platform, key) or {}
        kept = stored.get("fields")
        previous: dict[str, Any] = kept if isinstance(kept, dict) else {}
        merged = _merged(previous, body.values, body.fields_to_remove, allowed)
        if key == ORG_KEY:
            await _save_fields(services, account, platform, key, merged, **{CRM_BASE: base})
        else:
            name = body.rc_user_name if body.rc_user_name is not None else str(stored.get("rcUserName") or "")
            await _save_fields(services, account, platform, key, merged, rcUserName=name, **{CRM_BASE: base})
    return Reply(SAVED)


async def managed_auth_options(
    services: Services, platform: str | None, token: str | None, body: ManagedAuthOptionsBody
) -> Reply:
    """The choices of one managed field, from the connector (`get_managed_auth_options`), as a bare array."""
    if not platform:
        raise ClientError(MISSING_PLATFORM)
    if not body.field_const:
        raise ClientError("Missing managed auth field")
    account = account_key(services, await admin_identity(services, token))
    connector = connector_for(services, platform)
    fields = login_fields(services, platform)
    field = next((f for f in fields if f["const"] == body.field_const), None)
    if field is None or field.get("managed") is not True:
        raise ClientError(f"fieldConst: {body.field_const} is not a managed field", as_json=True)
    if not implements(connector, "get_managed_auth_options"):
        return Reply([])
    # the account's answers so far: what the admin just typed over what is stored (the placeholder: stored)
    stored = await _fields_at(services, account, platform, ORG_KEY)
    account_values: dict[str, Any] = {}
    for f in fields:
        name = f["const"]
        if f.get("managed") is not True or _scope_of(f) != "account":
            continue
        typed = body.account_values.get(name)
        if filled(typed) and typed != PLACEHOLDER:
            account_values[name] = typed
        elif filled(stored.get(name)):
            account_values[name] = stored[name]
    probe = UserView(id="", platform=platform, hostname="")
    http = CrmHttpClient(services.http, base_url=connector.base_url(probe), auth_header="")
    try:
        options = await connector.get_managed_auth_options(
            ManagedAuthOptionsRequest(body.field_const, http, account_values)
        )
    except CrmHttpError as exc:
        logger.info("managed auth options of %s unavailable: HTTP %s", platform, exc.status)
        raise ClientError("Could not load the options from the CRM", 502) from None
    return Reply([option.to_wire() for option in options])


# --- what a user's client asks before logging in ----------------------------------------------------------------


async def _user_identity(services: Services, token: str | None, platform: str | None) -> RcIdentity:
    if not platform:
        raise ClientError(MISSING_PLATFORM)
    if not token:
        raise ClientError(MISSING_TOKEN)
    connector_for(services, platform)
    return await rc_identity(services, token, refused_text=RC_USER_REFUSED)


async def api_key_state(services: Services, token: str | None, platform: str | None) -> Reply:
    """Which login fields the user's own verified account and extension have managed, and which they must type."""
    identity = await _user_identity(services, token, platform)
    assert platform is not None
    account = account_key(services, identity)
    fields = login_fields(services, platform)
    required = [f["const"] for f in fields if f.get("required")]
    if not _managed(fields):
        return Reply(_state(False, False, None, required, False))
    if await services.managed_auth.get(account, platform, _extension_key(FAILED_KEY, identity.extension_id)):
        return Reply(_state(True, False, None, required, True))
    values = await resolved_values(services, identity, platform)
    visible: list[str] = []
    missing: list[str] = []
    satisfied = True
    for f in fields:
        if not f.get("required"):
            continue
        managed = f.get("managed") is True
        has_value = managed and filled(values.get(f["const"]))
        if not has_value:
            visible.append(f["const"])
            missing.append(f["const"])
            satisfied = False
    return Reply(_state(True, satisfied, visible, missing, False))


def _state(
    has: bool, satisfied: bool, visible: list[str] | None, missing: list[str], fallback: bool
) -> dict[str, Any]:
    return {
        "hasManagedAuth": has,
        "allRequiredFieldsSatisfied": satisfied,
        "visibleFieldConsts": visible,
        "missingRequiredFieldConsts": missing,
        "fallbackToManualAuth": fallback,
    }


async def oauth_state(services: Services, token: str | None, platform: str | None) -> Reply:
    """Whether the user's verified account has an OAuth app for the CRM; its secret is never in the answer."""
    identity = await _user_identity(services, token, platform)
    assert platform is not None
    account = account_key(services, identity)
    app = await services.managed_auth.get(account, platform, OAUTH_KEY)
    pending = None
    if identity.is_admin and app is None:
        pending = await services.managed_auth.get(account, NO_PLATFORM, PENDING_OAUTH_KEY)
    body: dict[str, Any] = {
        "isAdmin": identity.is_admin,
        "hasAccountOAuth": app is not None,
        "hasPendingOAuth": bool(pending),
    }
    if app is not None:
        body["oauthValues"] = _public_oauth(services, platform, app)
    if pending:
        body["pendingValues"] = {
            k: (PLACEHOLDER if k == OAUTH_SECRET else v) for k, v in pending.items() if filled(v)
        }
    return Reply(body)


def _public_oauth(services: Services, platform: str, app: dict[str, Any]) -> dict[str, Any]:
    """The app's client id and scopes with the connector's own endpoints: what the client builds its link from."""
    connector = connector_for(services, platform)
    info = managed_info(connector, app)
    public: dict[str, Any] = {
        "clientId": info.client_id,
        "authorizationUri": info.authorization_uri,
        "accessTokenUri": info.access_token_uri,
        "redirectUri": info.redirect_uri,
    }
    if info.scopes:
        public["scopes"] = info.scopes
    if filled(app.get("hostname")):
        public["hostname"] = app["hostname"]
    return {k: v for k, v in public.items() if v is not None}


async def cache_oauth_app(services: Services, token: str | None, body: ManagedOAuthCacheBody) -> Reply:
    """The admin's OAuth app, kept (encrypted) until the admin's own login with it completes it."""
    account = account_key(services, await admin_identity(services, token))
    previous = await services.managed_auth.get(account, NO_PLATFORM, PENDING_OAUTH_KEY) or {}
    app = _merged(previous, body.values, [], set(OAUTH_FIELDS))
    app = {k: str(v) for k, v in app.items()}
    if app:
        expires = datetime.now(UTC) + PENDING_OAUTH_TTL
        await services.managed_auth.put(account, NO_PLATFORM, PENDING_OAUTH_KEY, app, expires_at=expires)
    else:
        await services.managed_auth.delete(account, NO_PLATFORM, PENDING_OAUTH_KEY)
    return Reply({"successful": True})


async def clear_pending_oauth(services: Services, token: str | None) -> Reply:
    account = account_key(services, await admin_identity(services, token))
    await services.managed_auth.delete(account, NO_PLATFORM, PENDING_OAUTH_KEY)
    return Reply({"successful": True})


async def reset_oauth(services: Services, token: str | None, platform: str | None) -> Reply:
    """Forget the account's OAuth app for the CRM (and any pending one): users log in with the server's app."""
    account = account_key(services, await admin_identity(services, token))
    if not platform:
        raise ClientError(MISSING_PLATFORM)
    await services.managed_auth.delete(account, platform, OAUTH_KEY)
    await services.managed_auth.delete(account, NO_PLATFORM, PENDING_OAUTH_KEY)
    return Reply({"successful": True})


# --- logins -----------------------------------------------------------------------------------------------------


async def login_identity(services: Services, token: str | None) -> RcIdentity | None:
    """The verified RingCentral identity behind a login, or None: a login never fails for want of one."""
    if not token:
        return None
    try:
        return await services.rc_identities.identify(
            services.http, services.settings.ringcentral_server, token, services.keys.hash_key
        )
    except RcCheckFailed as exc:
        logger.info("RingCentral identity check failed, login without managed auth: %s", exc)
        return None


async def resolved_values(
    services: Services, identity: RcIdentity, platform: str, *, hostname: str | None = None
) -> dict[str, Any]:
    """The managed values of this user: the account's fields, then the user's own extension's; with the
    login's `hostname`, only those stored for the CRM address it leads to."""
    account = account_key(services, identity)
    base = crm_base(services, platform, hostname) if hostname is not None else None
    org = await _fields_at(services, account, platform, ORG_KEY, for_base=base)
    mine = await _fields_at(
        services, account, platform, _extension_key(USER_KEY, identity.extension_id), for_base=base
    )
    resolved: dict[str, Any] = {}
    for f in _managed(login_fields(services, platform)):
        source = mine if _scope_of(f) == "user" else org
        if filled(source.get(f["const"])):
            resolved[f["const"]] = source[f["const"]]
    return resolved


@dataclass(slots=True)
class ApiKeyLoginFields:
    """An API-key login after managed values were filled in (`identity`: the verified user, when asked)."""

    api_key: str | None
    additional_info: dict[str, Any]
    missing: list[str]
    identity: RcIdentity | None


async def api_key_login_fields(
    services: Services,
    rc_token: str | None,
    platform: str,
    api_key: str | None,
    additional_info: dict[str, Any],
    hostname: str,
) -> ApiKeyLoginFields:
    """Fill the login's managed fields from the user's verified account (unless it fell back to manual), when
    the login's hostname leads to the CRM they were stored for; RingCentral is asked only for a CRM with
    managed fields."""
    fields = login_fields(services, platform)
    identity = await login_identity(services, rc_token) if _managed(fields) else None
    if identity is None:
        return ApiKeyLoginFields(api_key, additional_info, [], None)
    info = dict(additional_info)
    if info.get("apiKey") is None and api_key is not None:
        info["apiKey"] = api_key
    failed = await services.managed_auth.get(
        account_key(services, identity), platform, _extension_key(FAILED_KEY, identity.extension_id)
    )
    for name, value in (await resolved_values(services, identity, platform, hostname=hostname)).items():
        if failed is None or not filled(info.get(name)):
            info[name] = value
    missing = [f["const"] for f in fields if f.get("required") and not filled(info.get(f["const"]))]
    key = info.get("apiKey")
    return ApiKeyLoginFields(key if isinstance(key, str) else api_key, info, missing, identity)


async def note_login(services: Services, identity: RcIdentity, platform: str, *, succeeded: bool) -> None:
    """A managed login that the CRM refused lets this extension type its own fields next time."""
    key = _extension_key(FAILED_KEY, identity.extension_id)
    account = account_key(services, identity)
    if succeeded:
        await services.managed_auth.delete(account, platform, key)
    else:
        await services.managed_auth.put(account, platform, key, {"failedAt": datetime.now(UTC).isoformat()})


@dataclass(slots=True)
class ManagedOAuth:
    """The OAuth app a login uses, and where it came from (a pending app is completed by a login with it)."""

    info: OAuthInfo
    account: str
    pending: bool


async def managed_oauth(
    services: Services, connector: Connector, identity: RcIdentity | None, platform: str, hostname: str
) -> ManagedOAuth | None:
    """The verified account's OAuth app for the CRM (or the admin's pending one), on the connector's endpoints."""
    if identity is None:
        return None
    account = account_key(services, identity)
    app = await services.managed_auth.get(account, platform, OAUTH_KEY)
    pending = False
    if app is None and identity.is_admin:
        app = await services.managed_auth.get(account, NO_PLATFORM, PENDING_OAUTH_KEY)
        pending = app is not None
    if not app or not filled(app.get("clientId")):
        return None
    if hostname and not filled(app.get("hostname")):
        app = {**app, "hostname": hostname}
    return ManagedOAuth(managed_info(connector, app), account, pending)


async def complete_pending(services: Services, managed: ManagedOAuth, platform: str) -> None:
    """The admin's pending app worked: it becomes the account's app for this CRM."""
    app = await services.managed_auth.get(managed.account, NO_PLATFORM, PENDING_OAUTH_KEY)
    if app:
        await services.managed_auth.put(managed.account, platform, OAUTH_KEY, app)
        await services.managed_auth.delete(managed.account, NO_PLATFORM, PENDING_OAUTH_KEY)

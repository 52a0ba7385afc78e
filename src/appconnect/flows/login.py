"""Connecting and disconnecting a CRM: API-key login, the OAuth callback, logout and session validation."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from appconnect.connectors.sdk import (
    Connector,
    CrmHttpError,
    InterfaceNotImplemented,
    LoginRequest,
    ReturnMessage,
    UserInfoResult,
    UserView,
    implements,
)
from appconnect.flows import managed_auth, oauth
from appconnect.flows.availability import is_dependency_down
from appconnect.flows.common import connector_for, current_user, login_issued_at, verified_scope
from appconnect.flows.errors import DATABASE_FAILED
from appconnect.flows.managed_apps import ACCOUNT_MARK, oauth_info_of
from appconnect.flows.reply import ClientError, Reply
from appconnect.flows.requests import ApiKeyLoginBody
from appconnect.flows.services import Services
from appconnect.flows.session import SessionRevoked, open_session
from appconnect.outbound.client import CrmHttpClient
from appconnect.security.jwt import SessionClaims
from appconnect.store.users import UserRecord

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_HOST_PORT = re.compile(r"^(?P<host>[^:]+)(?::(?P<port>[0-9]{1,5}))?$")
_HOSTNAME_PROBLEM = "hostname: must be a DNS name or host:port (e.g. example.pipedrive.com)"
_STORED_ID_CHARS = 255


def valid_hostname(text: str) -> bool:
    """A DNS name (internationalised names allowed) with an optional port; no scheme, path or markup."""
    match = _HOST_PORT.match(text)
    if match is None:
        return False
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        return False
    host = match["host"].rstrip(".")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return False
    labels = ascii_host.split(".")
    return len(ascii_host) <= 253 and all(_LABEL.match(label) for label in labels)


def checked_hostname(raw: str | None) -> str:
    """The login hostname, refused with a 400 naming the field unless it is a plain host name."""
    hostname = (raw or "").strip()
    if hostname and not valid_hostname(hostname):
        raise ClientError(_HOSTNAME_PROBLEM, as_json=True)
    return hostname


def _checked_id(name: str, value: str | None) -> str | None:
    if value is not None and len(value) > _STORED_ID_CHARS:
        raise ClientError(f"{name}: must be at most {_STORED_ID_CHARS} characters", as_json=True)
    return value


def _auth_page_fields(manifest_entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of the platform's API-key auth page (`auth.apiKey.page.content`)."""
    auth = manifest_entry.get("auth")
    api_key = auth.get("apiKey") if isinstance(auth, dict) else None
    page = api_key.get("page") if isinstance(api_key, dict) else None
    content = page.get("content") if isinstance(page, dict) else None
    return [f for f in content or [] if isinstance(f, dict)]


def _asks_for_api_key(manifest_entry: dict[str, Any]) -> bool:
    """False only for an auth page without an `apiKey` field (e.g. a username and password page)."""
    fields = _auth_page_fields(manifest_entry)
    return not fields or any(f.get("const") == "apiKey" for f in fields)


def _password_fields(manifest_entry: dict[str, Any]) -> frozenset[str]:
    """Auth page fields shown as password inputs: used for the login only, never stored with the user."""
    return frozenset(
        str(f.get("const"))
        for f in _auth_page_fields(manifest_entry)
        if isinstance(f.get("uiSchema"), dict) and f["uiSchema"].get("ui:widget") == "password"
    )


async def _user_info(connector: Connector, request: LoginRequest) -> UserInfoResult:
    try:
        return await connector.get_user_info(request)
    except CrmHttpError:
        return UserInfoResult(
            False, return_message=ReturnMessage("Could not load user information", "warning", 5000)
        )


async def _save(services: Services, record: UserRecord) -> UserRecord | None:
    try:
        return await services.users.save_login(record)
    except Exception as exc:
        if is_dependency_down(exc):
            raise  # 503 + Retry-After, not a login failure
        return None


def _login_reply(services: Services, user: UserRecord, name: str, message: ReturnMessage | None) -> Reply:
    now = time.time()
    token = services.tokens.sign(user.id, user.platform, now=now, issued_at=login_issued_at(user, now))
    body: dict[str, Any] = {"jwtToken": token, "name": name}
    if message is not None:
        body["returnMessage"] = message.to_wire()
    return Reply(body)


async def api_key_login(
    services: Services,
    body: ApiKeyLoginBody,
    *,
    rc_account_header: str | None,
    rc_extension_header: str | None,
    rc_token: str | None = None,
) -> Reply:
    """Log in with an API key (and the login page's other fields); a user whose verified RingCentral account
    has managed fields gets them filled in, and never stores them as anything but their own login."""
    if not body.platform:
        raise ClientError("Missing platform name")
    connector = connector_for(services, body.platform)
    manifest_entry = services.registry.manifest_entry(body.platform)
    hostname = checked_hostname(body.hostname)
    fields = await managed_auth.api_key_login_fields(
        services, rc_token, body.platform, body.api_key, dict(body.additional_info or {}), hostname
    )
    if fields.missing:
        missing = ReturnMessage("Missing required authentication fields.", "warning", 3000).to_wire()
        return Reply({"returnMessage": {**missing, "missingRequiredFieldConsts": fields.missing}}, 400)
    api_key = fields.api_key
    if not api_key and _asks_for_api_key(manifest_entry):
        return Reply({"returnMessage": ReturnMessage("API key is required.", "warning", 3000).to_wire()}, 400)
    _checked_id("rc-account-id", rc_account_header)
    _checked_id("rc-extension-id", rc_extension_header)
    additional = fields.additional_info
    additional.setdefault("apiKey", api_key)
    auth_header = "Basic " + connector.basic_auth(api_key or "")
    probe = UserView(id="", platform=body.platform, hostname=hostname)
    http = CrmHttpClient(services.http, base_url=connector.base_url(probe), auth_header=auth_header)
    result = await _user_info(
        connector,
        LoginRequest(
            auth_header=auth_header,
            hostname=hostname,
            platform=body.platform,
            http=http,
            api_key=api_key,
            additional_info=additional,
        ),
    )
    if fields.identity is not None:
        await managed_auth.note_login(services, fields.identity, body.platform, succeeded=result.successful)
    if not result.successful or result.user is None:
        message = result.return_message or ReturnMessage("Could not log in.", "warning", 3000)
        return Reply({"returnMessage": message.to_wire()}, 400)
    info = result.user
    secrets = {
        str(f["const"])
        for f in managed_auth.login_fields(services, body.platform)
        if managed_auth.is_secret(f)
    }
    never_stored = {"apiKey", *_password_fields(manifest_entry), *secrets}
    extra = {k: v for k, v in additional.items() if k not in never_stored}
    saved = await _save(
        services,
        UserRecord(
            id=info.id,
            platform=body.platform,
            hostname=hostname,
            rc_account_id=rc_account_header
            or (str(body.rc_account_id) if body.rc_account_id is not None else None),
            hashed_rc_extension_id=rc_extension_header,
            timezone_name=info.timezone_name,
            timezone_offset=info.timezone_offset,
            access_token=info.overriding_api_key or api_key,
            platform_additional_info={**extra, **info.platform_additional_info, "proxyId": body.proxy_id},
            account_scope=verified_scope(connector, body.platform, info, hostname),
        ),
    )
    if saved is None:
        return Reply({"returnMessage": DATABASE_FAILED.to_wire()}, 400)
    return _login_reply(services, saved, info.name, result.return_message)


def _state_params(callback_uri: str, query_state: str | None) -> dict[str, str]:
    state = parse_qs(urlparse(callback_uri).query).get("state", [query_state or ""])[0]
    return {k: v[0] for k, v in parse_qs(unquote(state)).items()}


async def oauth_callback(services: Services, query: dict[str, str], rc_token: str | None = None) -> Reply:
    """Exchange the code and log in; a user of a verified account with a managed OAuth app uses that app."""
    callback_uri = query.get("callbackUri")
    if not callback_uri or callback_uri == "undefined":
        if not query.get("code"):
            raise ClientError("Missing callbackUri")
        callback_uri = f"{services.settings.server_url()}/oauth-callback?code={query['code']}"
    state = _state_params(callback_uri, query.get("state"))
    platform = state.get("platform") or query.get("platform")
    if not platform:
        raise ClientError("Missing platform name")
    connector = connector_for(services, platform)
    if connector.auth_type != "oauth":
        raise ClientError(f"platform: {platform} does not log in with OAuth", as_json=True)
    hostname = checked_hostname(query.get("hostname") or state.get("hostname"))
    _checked_id("rcAccountId", query.get("rcAccountId"))
    _checked_id("rcExtensionId", query.get("rcExtensionId"))
    callback_query = parse_qs(urlparse(callback_uri).query)
    if "error" in callback_query:
        reason = callback_query.get("error_description", callback_query["error"])[0]
        return Reply(
            {"returnMessage": ReturnMessage(f"Authorization failed: {reason}", "danger", 5000).to_wire()}
        )
    code = callback_query.get("code", [query.get("code", "")])[0]
    hostname = await connector.resolve_oauth_hostname(
        CrmHttpClient(services.http, base_url="", auth_header=""), hostname, dict(query)
    )
    identity = await managed_auth.login_identity(services, rc_token)
    managed = await managed_auth.managed_oauth(services, connector, identity, platform, hostname)
    info = managed.info if managed is not None else connector.oauth_info(hostname)
    if info.fail_message:
        return Reply({"returnMessage": ReturnMessage(info.fail_message, "danger", 5000).to_wire()})
    if urlparse(callback_uri).path != urlparse(info.redirect_uri).path:
        raise ClientError("Redirected path should match configured path", as_json=True)
    try:
        tokens = await oauth.exchange_code(services.http, info, code)
    except oauth.OAuthError as exc:
        message = ReturnMessage(
            f"Could not connect: the CRM refused the authorization ({exc.code}).", "danger", 5000
        )
        return Reply({"returnMessage": message.to_wire()})
    auth_header = f"Bearer {tokens.access_token}"
    base = connector.base_url(UserView(id="", platform=platform, hostname=info.hostname or hostname))
    http = CrmHttpClient(services.http, base_url=base, auth_header=auth_header)
    result = await _user_info(
        connector,
        LoginRequest(
            auth_header=auth_header,
            hostname=info.hostname or hostname,
            platform=platform,
            http=http,
            token_response=tokens.raw,
            query=dict(query),
        ),
    )
    if not result.successful or result.user is None:
        message = result.return_message or ReturnMessage("Could not load user information", "warning", 5000)
        return Reply({"returnMessage": message.to_wire()})
    user_info = result.user
    saved = await _save(
        services,
        UserRecord(
            id=user_info.id,
            platform=platform,
            hostname=user_info.overriding_hostname or info.hostname or hostname,
            rc_account_id=query.get("rcAccountId"),
            hashed_rc_extension_id=query.get("rcExtensionId"),
            timezone_name=user_info.timezone_name,
            timezone_offset=user_info.timezone_offset,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            token_expiry=tokens.expires_at,
            platform_additional_info={
                **user_info.platform_additional_info,
                "proxyId": query.get("proxyId"),
                ACCOUNT_MARK: managed.account if managed is not None else None,
            },
            account_scope=verified_scope(
                connector, platform, user_info, user_info.overriding_hostname or info.hostname or hostname
            ),
        ),
    )
    if saved is None:
        return Reply({"returnMessage": DATABASE_FAILED.to_wire()})
    if managed is not None and managed.pending:
        await managed_auth.complete_pending(services, managed, platform)
    return _login_reply(services, saved, user_info.name, result.return_message)


async def unauthorize(services: Services, claims: SessionClaims) -> Reply:
    """Revoke at the CRM where possible, then forget the credentials. The body is the bare returnMessage."""
    user = await current_user(services, claims)
    if user is None:
        raise ClientError("User not found")
    connector = connector_for(services, user.platform)
    message: ReturnMessage | None = None
    if user.access_token:
        if implements(connector, "unauthorize"):
            try:
                call = await open_session(services, connector, user)
                message = await connector.unauthorize(call)
            except (CrmHttpError, SessionRevoked, InterfaceNotImplemented):
                message = None
        if connector.auth_type == "oauth":
            info = await oauth_info_of(
                services, connector, user.platform, user.hostname, user.platform_additional_info
            )
            if user.refresh_token:
                await oauth.revoke(services.http, info, user.refresh_token, "refresh_token")
            await oauth.revoke(services.http, info, user.access_token, "access_token")
    await services.users.clear_tokens(user.id)
    message = message or ReturnMessage(
        f"Logged out of {services.registry.manifest_entry(user.platform).get('displayName', user.platform)}",
        "success",
        1000,
    )
    return Reply(message.to_wire())


async def auth_validation(services: Services, claims: SessionClaims) -> Reply:
    user = await current_user(services, claims, claims.platform)
    if user is None or not user.access_token:
        return Reply({"successful": False})
    connector = connector_for(services, user.platform)
    if connector.auth_type != "oauth":
        raise ClientError("Auth validation is only for OAuth platforms", as_json=True)
    try:
        await open_session(services, connector, user)
    except SessionRevoked:
        return Reply(
            {
                "successful": False,
                "returnMessage": ReturnMessage(
                    "User session expired. Please connect again.", "warning", 5000
                ).to_wire(),
            }
        )
    except oauth.OAuthError:
        return Reply({"successful": False})
    return Reply({"successful": True})

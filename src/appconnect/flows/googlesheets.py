"""Google Sheets' settings page: choose the spreadsheet (Google Picker), create one, forget it; the admin's choice.

The reference serves these beside the contract (its `src/index.ts`, `connectors/googleSheets/extra.ts`): the
client's "Google Sheets" settings page opens the picker page with the user's session JWT, the page posts the
picked file with the Google access token it was given, and "Create new sheet" finds or makes a spreadsheet of
that name. The chosen spreadsheet is the `googleSheetsName` / `googleSheetsUrl` user settings the connector
reads; an admin's choice goes into the account's admin settings, locked unless `customizable`.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, StringConstraints

from appconnect.connectors.googlesheets.connector import (
    DEFAULT_SPREADSHEET_NAME,
    GoogleSheetsConnector,
    spreadsheet_id_of,
)
from appconnect.connectors.sdk import CrmHttpError, LoginRequest, UserView
from appconnect.flows import oauth
from appconnect.flows.admin import account_key, admin_identity, admin_settings_lock
from appconnect.flows.common import active_user, connector_for
from appconnect.flows.reply import ClientError, Reply
from appconnect.flows.services import Services
from appconnect.flows.session import SessionRevoked, open_session
from appconnect.outbound.client import CrmHttpClient
from appconnect.security.jwt import SessionClaims
from appconnect.store.users import UserRecord

logger = logging.getLogger(__name__)

PLATFORM = "googleSheets"
NAME_SETTING = "googleSheetsName"
URL_SETTING = "googleSheetsUrl"
#: the reference's answers
USER_NOT_FOUND = "User not found"
SHEET_REMOVED = "Sheet removed"
SHEET_SELECTED = "Sheet selected"
ADMIN_SHEET_SELECTED = "Admin sheet configuration saved"
CREATE_FAILED = "Failed to create new sheet"
#: ours: the page's Google token is not the one this server holds for that Google user
PICKER_EXPIRED = "This picker page has expired: open it again from App Connect's Google Sheets settings"
NOT_CONFIGURED = "Google Picker is not configured on this server (GOOGLESHEETS_PICKER_KEY)"
#: a Drive file name; longer ones are refused rather than cut
MAX_NAME_CHARS = 255
MAX_URL_CHARS = 512
MAX_GOOGLE_TOKEN_CHARS = 4096
_SHEET_ADDRESS = re.compile(r"https://docs\.google\.com/spreadsheets/d/[A-Za-z0-9_-]+(?:[/?#][^\s]*)?")

SheetName = Annotated[
    StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class NewSheetBody(_Body):
    """`POST /googleSheets/sheet`: the name of the spreadsheet to find or make (the reference's default)."""

    name: SheetName | None = None


class PickedSheet(_Body):
    """The Picker's document (`data.docs[0]`): only its name and address are kept."""

    name: SheetName
    url: Annotated[StrictStr, StringConstraints(strip_whitespace=True, max_length=MAX_URL_CHARS)]


class SelectedSheetBody(_Body):
    """What the picker page posts: the Google access token it was given and the picked file."""

    access_token: Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_GOOGLE_TOKEN_CHARS)] = (
        Field(alias="accessToken")
    )
    sheet_data: PickedSheet = Field(alias="sheetData")
    customizable: StrictBool = False


class AdminNewSheetBody(NewSheetBody):
    customizable: StrictBool = False


@dataclass(frozen=True, slots=True)
class PickerPage:
    """What the picker page embeds: only for the page's own user, the token fresh."""

    access_token: str
    api_key: str
    project_id: str
    current_name: str
    #: the admin's page posts the admin's RingCentral token back with the pick
    rc_access_token: str | None = None


# --- who is asking ----------------------------------------------------------------------------------------------


def _connector(services: Services) -> GoogleSheetsConnector:
    connector = connector_for(services, PLATFORM)
    if not isinstance(connector, GoogleSheetsConnector):
        raise ClientError(f"Connector not found for platform: {PLATFORM}", as_json=True)
    return connector


async def _session_user(services: Services, claims: SessionClaims) -> UserRecord:
    """The caller's Google Sheets user (a JWT of another platform names no such user)."""
    if claims.platform != PLATFORM:
        raise ClientError(USER_NOT_FOUND)
    user = await active_user(services, claims, by_platform=True)
    if user is None:
        raise ClientError(USER_NOT_FOUND)
    return user


async def _google_user(services: Services, connector: GoogleSheetsConnector, token: str) -> UserRecord:
    """The stored user a Google access token belongs to, asked of Google (the reference's userinfo check), and
    only when it is the very token this server holds for them: a token another app got for that Google
    account (any token with the profile scope passes userinfo) changes nothing here."""
    probe = UserView(id="", platform=PLATFORM, hostname="")
    auth_header = f"Bearer {token}"
    http = CrmHttpClient(services.http, base_url=connector.base_url(probe), auth_header=auth_header)
    result = await connector.get_user_info(
        LoginRequest(auth_header=auth_header, hostname="", platform=PLATFORM, http=http)
    )
    if not result.successful or result.user is None:
        raise ClientError(USER_NOT_FOUND)
    user = await services.users.get(result.user.id, PLATFORM)
    if user is None or not user.access_token or user.session_revoked:
        raise ClientError(USER_NOT_FOUND)
    if not hmac.compare_digest(user.access_token.encode(), token.encode()):
        raise ClientError(PICKER_EXPIRED, 403)
    return user


# --- the user's sheet -------------------------------------------------------------------------------------------


async def picker_page(
    services: Services, claims: SessionClaims, rc_token: str | None = None, *, admin: bool = False
) -> PickerPage:
    """The page's values: the user's Google token, refreshed first when due (as the reference's
    `checkAndRefreshAccessToken`); the admin's page only for an admin of their RingCentral account."""
    connector = _connector(services)
    user = await _session_user(services, claims)
    if admin:
        await admin_identity(services, rc_token)
    api_key, project_id = connector.picker_settings()
    if not api_key:
        raise ClientError(NOT_CONFIGURED, 503)
    call = await _open(services, connector, user)
    token = call.auth_header.removeprefix("Bearer ")
    current = call.user.setting(NAME_SETTING, "")
    return PickerPage(
        access_token=token,
        api_key=api_key,
        project_id=project_id,
        current_name=current if isinstance(current, str) else "",
        rc_access_token=rc_token if admin else None,
    )


async def _open(services: Services, connector: GoogleSheetsConnector, user: UserRecord) -> Any:
    try:
        return await open_session(services, connector, user)
    except (SessionRevoked, oauth.OAuthError) as exc:
        logger.info("Google session of a picker page unavailable: %s", type(exc).__name__)
        raise ClientError(USER_NOT_FOUND) from None


async def create_sheet(services: Services, claims: SessionClaims, body: NewSheetBody) -> Reply:
    """Find the user's spreadsheet of that name (one this app made or was given) or make it; it becomes their
    sheet. Answers `{name, url}`, as the reference."""
    user = await _session_user(services, claims)
    name, url = await _named_sheet(services, user, body.name or DEFAULT_SPREADSHEET_NAME)
    await _save_choice(services, user, name, url)
    return Reply({"name": name, "url": url})


async def _named_sheet(services: Services, user: UserRecord, name: str) -> tuple[str, str]:
    connector = _connector(services)
    call = await _open(services, connector, user)
    try:
        return await connector.spreadsheet_named(call, name)
    except (CrmHttpError, KeyError, TypeError, ValueError) as exc:
        logger.info("creating a Google spreadsheet failed: %s", getattr(exc, "status", type(exc).__name__))
        raise ClientError(CREATE_FAILED, 500) from None


async def remove_sheet(services: Services, claims: SessionClaims) -> Reply:
    """Forget the user's spreadsheet (the settings emptied, as the reference's `removeSheet` means to; it
    never saves them). The spreadsheet itself stays in the user's Drive."""
    user = await _session_user(services, claims)
    await _save_choice(services, user, "", "")
    return Reply(SHEET_REMOVED)


async def select_sheet(services: Services, body: SelectedSheetBody) -> Reply:
    """The picker page's pick becomes the user's sheet."""
    user = await _google_user(services, _connector(services), body.access_token)
    name, url = _picked(body.sheet_data)
    await _save_choice(services, user, name, url)
    return Reply(_selected(SHEET_SELECTED, body))


def _selected(message: str, body: SelectedSheetBody) -> dict[str, Any]:
    """`{message, Id}`: `Id` echoes the body's `field` when it has one (the reference's JSON drops it else)."""
    field = (body.model_extra or {}).get("field")
    return {"message": message} if field is None else {"message": message, "Id": field}


def _picked(sheet: PickedSheet) -> tuple[str, str]:
    """A spreadsheet's name and its Google address; anything else is refused (the connector reads the id
    from the address)."""
    if not _SHEET_ADDRESS.fullmatch(sheet.url) or spreadsheet_id_of(sheet.url) is None:
        raise ClientError("sheetData.url: must be a Google Sheets address", as_json=True)
    return sheet.name, sheet.url


async def _save_choice(services: Services, user: UserRecord, name: str, url: str) -> None:
    """The two settings the reference writes, `{value}` each; the user's other settings stay."""
    fresh = await services.users.get(user.id, PLATFORM, fresh=True) or user
    settings = {**fresh.user_settings, NAME_SETTING: {"value": name}, URL_SETTING: {"value": url}}
    await services.users.save_settings(user.id, settings)


# --- the admin's sheet for the whole account --------------------------------------------------------------------


async def admin_create_sheet(
    services: Services, claims: SessionClaims, rc_token: str | None, body: AdminNewSheetBody
) -> Reply:
    """As `create_sheet` for the admin's own Google account, then the account's admin settings name it."""
    user = await _session_user(services, claims)
    identity = await admin_identity(services, rc_token)
    name, url = await _named_sheet(services, user, body.name or DEFAULT_SPREADSHEET_NAME)
    await _save_choice(services, user, name, url)
    await _save_admin_choice(services, account_key(services, identity), name, url, body.customizable)
    return Reply({"name": name, "url": url})


async def admin_select_sheet(services: Services, rc_token: str | None, body: SelectedSheetBody) -> Reply:
    """The admin picker page's pick: the admin's own sheet and the account's."""
    user = await _google_user(services, _connector(services), body.access_token)
    identity = await admin_identity(services, rc_token)
    name, url = _picked(body.sheet_data)
    await _save_choice(services, user, name, url)
    await _save_admin_choice(services, account_key(services, identity), name, url, body.customizable)
    return Reply(_selected(ADMIN_SHEET_SELECTED, body))


async def _save_admin_choice(
    services: Services, account: str, name: str, url: str, customizable: bool
) -> None:
    """The two settings in the account's admin settings (the others stay), as the reference's
    `setAdminGoogleSheetsConfig`."""
    async with admin_settings_lock(services, account):
        stored = await services.admin_settings.get(account) or {}
        stored[URL_SETTING] = {"value": url, "customizable": customizable}
        stored[NAME_SETTING] = {"value": name, "customizable": customizable}
        await services.admin_settings.put(account, stored)


async def admin_config(services: Services, claims: SessionClaims, rc_token: str | None) -> Reply:
    """The account's sheet as the admin set it: `{googleSheetsUrl, googleSheetsName}`, each null when unset."""
    await _session_user(services, claims)
    identity = await admin_identity(services, rc_token)
    stored = await services.admin_settings.get(account_key(services, identity)) or {}
    return Reply({URL_SETTING: stored.get(URL_SETTING), NAME_SETTING: stored.get(NAME_SETTING)})

"""The server's own OpenAPI 3.1 document of the contract routes it implements, and its docs page.

Request bodies come from the pydantic models the routes validate with (flows/requests.py), so the document
cannot drift from what is accepted. Responses describe what the routes really answer, errors included: 400
(bad input, missing or invalid JWT: JSON envelope or plain text, as the contract has both), 401 (revoked CRM
session), 413 (body too large), 500 (unexpected) and 503 (a dependency is down, with `Retry-After`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from appconnect.connectors.sdk import INTERFACE_METHODS, UNOFFERED_INTERFACES
from appconnect.flows.admin import AdminSettingsBody, CacheNoteBody
from appconnect.flows.managed_auth import ManagedAuthBody, ManagedAuthOptionsBody, ManagedOAuthCacheBody
from appconnect.flows.requests import (
    ApiKeyLoginBody,
    CallLogBody,
    CallLogPatchBody,
    ContactCreateBody,
    DispositionBody,
    MessageLogBody,
    UserSettingsBody,
)
from appconnect.flows.user_mapping import UserMappingBody

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"

Json = dict[str, Any]

#: `/implementedInterfaces`: the keys always answered (contract 1.1), plus `getOauthInfo` or `getBasicAuth`
_ALWAYS_INTERFACES = (
    "getAuthType",
    *INTERFACE_METHODS,
    *UNOFFERED_INTERFACES,
    "getLicenseStatus",
    "getLogFormatType",
    "cacheCallNote",
)
_INTERFACES: Json = {
    "type": "object",
    "required": list(_ALWAYS_INTERFACES),
    "properties": {
        name: {"type": "boolean"} for name in (*_ALWAYS_INTERFACES, "getOauthInfo", "getBasicAuth")
    },
    "additionalProperties": {"type": "boolean"},
}

_BODY_MODELS: dict[str, type[BaseModel]] = {
    "ApiKeyLoginRequest": ApiKeyLoginBody,
    "CreateContactRequest": ContactCreateBody,
    "CreateCallLogRequest": CallLogBody,
    "UpdateCallLogRequest": CallLogPatchBody,
    "CallDispositionRequest": DispositionBody,
    "MessageLogRequest": MessageLogBody,
    "UserSettingsUpdateRequest": UserSettingsBody,
    "AdminSettingsRequest": AdminSettingsBody,
    "CacheNoteRequest": CacheNoteBody,
    "ManagedAuthRequest": ManagedAuthBody,
    "ManagedAuthOptionsRequest": ManagedAuthOptionsBody,
    "ManagedOAuthCacheRequest": ManagedOAuthCacheBody,
    "UserMappingRequest": UserMappingBody,
}


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Json) -> Json:
    return {"anyOf": [schema, {"type": "null"}]}


_ID: Json = {"anyOf": [{"type": "string"}, {"type": "integer"}]}

_SCHEMAS: dict[str, Json] = {
    "ReturnMessage": {
        "type": "object",
        "description": "A message the client shows: text, severity and how long (ms).",
        "properties": {
            "message": {"type": "string"},
            "messageType": {"type": "string", "examples": ["success", "warning", "danger"]},
            "ttl": {"type": "integer"},
            "details": {"type": "array", "items": {"type": "object"}},
        },
    },
    "ErrorEnvelope": {
        "type": "object",
        "description": (
            "An error answer: the contract envelope (`successful: false`, `returnMessage`), `error` (the "
            "contract's 400 shape) and `requestId` (also the `X-Request-Id` header) to find the log line."
        ),
        "properties": {
            "successful": {"const": False},
            "returnMessage": _ref("ReturnMessage"),
            "error": {"type": "string"},
            "requestId": {"type": "string"},
        },
    },
    "Contact": {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": _ID,
            "name": {"type": "string"},
            "type": _nullable({"type": "string"}),
            "phone": _nullable({"type": "string"}),
            "isNewContact": {"type": "boolean"},
            "additionalInfo": _nullable({"type": "object"}),
        },
    },
    "ContactListResponse": {
        "type": "object",
        "required": ["successful"],
        "properties": {
            "successful": {"type": "boolean"},
            "returnMessage": _ref("ReturnMessage"),
            "contact": {"type": "array", "items": _ref("Contact")},
        },
    },
    "ContactCreateResponse": {
        "type": "object",
        "required": ["successful"],
        "properties": {
            "successful": {"type": "boolean"},
            "returnMessage": _ref("ReturnMessage"),
            "contact": _ref("Contact"),
        },
    },
    "LoginResponse": {
        "type": "object",
        "description": "`jwtToken` on success; only `returnMessage` when the CRM refused the login.",
        "properties": {
            "jwtToken": {"type": "string"},
            "name": {"type": "string"},
            "returnMessage": _ref("ReturnMessage"),
        },
    },
    "Envelope": {
        "type": "object",
        "required": ["successful"],
        "properties": {"successful": {"type": "boolean"}, "returnMessage": _nullable(_ref("ReturnMessage"))},
    },
    "CallLogLookupResponse": {
        "type": "object",
        "required": ["successful", "logs"],
        "properties": {
            "successful": {"type": "boolean"},
            "returnMessage": _ref("ReturnMessage"),
            "logs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["sessionId", "matched"],
                    "properties": {
                        "sessionId": {"type": "string"},
                        "matched": {"type": "boolean"},
                        "logId": _ID,
                        "logData": {"type": "object"},
                    },
                },
            },
        },
    },
    "CallLogMutationResponse": {
        "type": "object",
        "required": ["successful"],
        "properties": {
            "successful": {"type": "boolean"},
            "returnMessage": _ref("ReturnMessage"),
            "logId": _ID,
            "updatedNote": _nullable({"type": "string"}),
        },
    },
    "MessageLogResponse": {
        "type": "object",
        "required": ["successful"],
        "properties": {
            "successful": {"type": "boolean"},
            "returnMessage": _nullable(_ref("ReturnMessage")),
            "logIds": {"type": "array", "items": _ID},
        },
    },
    "UserSettings": {
        "type": "object",
        "description": "Setting id -> `{value, customizable?, defaultValue?, options?}`.",
        "additionalProperties": True,
    },
}

_TEXT: Json = {"text/plain": {"schema": {"type": "string"}}}
#: the contract's fixed error texts, typed as the reference types a string answer
_CONTRACT_TEXT: Json = {"text/html": {"schema": {"type": "string"}}}
_REQUEST_ID_HEADER: Json = {
    "X-Request-Id": {"description": "Id of this request in the server log.", "schema": {"type": "string"}}
}


def _json(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _error(description: str, *, text: bool = False, retry_after: bool = False) -> Json:
    content = _json(_ref("ErrorEnvelope"))
    if text:
        content = {**content, **_CONTRACT_TEXT}
    headers = dict(_REQUEST_ID_HEADER)
    if retry_after:
        headers["Retry-After"] = {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "string"},
        }
    return {"description": description, "content": content, "headers": headers}


_BAD_REQUEST = _error(
    "Bad input (names the field), missing, invalid or revoked JWT, unknown user or platform. Text (typed "
    "`text/html` as the reference types it) where the contract answers text (e.g. `Please go to Settings and "
    "authorize CRM platform`).",
    text=True,
)
_SERVER_ERRORS: Json = {
    "500": _error("Unexpected error; the traceback is in the server log under the request id."),
    "503": _error(
        "The database or Redis is unavailable; retry after `Retry-After` seconds.", retry_after=True
    ),
}


def _param(name: str, description: str, *, required: bool = False, schema: Json | None = None) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_TRUE_FALSE: Json = {"type": "string", "enum": ["true", "false"]}


def _operation(
    operation_id: str,
    summary: str,
    ok: Json,
    *,
    jwt: bool = False,
    body: str | None = None,
    params: list[Json] | None = None,
    ok_text: bool = False,
    tag: str,
) -> Json:
    responses: Json = {
        "200": {
            "description": "Answer; business failures are `successful: false` with a `returnMessage`.",
            "content": _TEXT if ok_text else _json(ok),
            "headers": dict(_REQUEST_ID_HEADER),
        },
        "400": _BAD_REQUEST,
        **_SERVER_ERRORS,
    }
    if jwt:
        responses["401"] = _error(
            "The CRM session was revoked (`errorCode: CRM_SESSION_REVOKED`); log in again."
        )
    operation: Json = {"operationId": operation_id, "summary": summary, "tags": [tag], "responses": responses}
    if jwt:
        operation["security"] = [{"userJwt": []}, {"legacyUserJwt": []}]
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
        responses["413"] = _error("The request body is larger than `APPCONNECT_MAX_BODY_BYTES`.")
    return operation


def _paths() -> Json:
    platform = _param("platform", "Connector name, e.g. `testcrm` or `pipedrive`.", required=True)
    return {
        "/isAlive": {"get": _operation("isAlive", "Health check: `OK`", {}, ok_text=True, tag="Health")},
        "/crmManifest": {
            "get": _operation(
                "getManifest",
                "The manifest (all platforms, or one)",
                {"type": "object", "required": ["platforms"]},
                params=[_param("platformName", "One platform's manifest; `default` (or absent) for all.")],
                tag="Health",
            )
        },
        "/implementedInterfaces": {
            "get": _operation(
                "getImplementedInterfaces",
                "Which connector interfaces a platform implements (true: the connector has it)",
                _INTERFACES,
                params=[platform],
                tag="Health",
            )
        },
        "/serverVersionInfo": {
            "get": _operation(
                "getServerVersionInfo",
                "Server version",
                {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}},
                tag="Health",
            )
        },
        "/releaseNotes": {
            "get": _operation("getReleaseNotes", "Release notes by version", {"type": "object"}, tag="Health")
        },
        "/userInfoHash": {
            "get": _operation(
                "getUserInfoHash",
                "Hashed RingCentral extension and account ids",
                {
                    "type": "object",
                    "required": ["extensionId", "accountId"],
                    "properties": {"extensionId": {"type": "string"}, "accountId": {"type": "string"}},
                },
                params=[
                    _param("extensionId", "RingCentral extension id", required=True),
                    _param("accountId", "RingCentral account id", required=True),
                ],
                tag="Health",
            )
        },
        "/apiKeyLogin": {
            "post": _operation(
                "apiKeyLogin",
                "Log in with a CRM API key; answers the session JWT",
                _ref("LoginResponse"),
                body="ApiKeyLoginRequest",
                tag="Auth",
            )
        },
        "/oauth-callback": {
            "get": _operation(
                "oauthCallback",
                "Finish an OAuth login: exchange the code, answer the session JWT",
                _ref("LoginResponse"),
                params=[
                    _param("callbackUri", "The redirect URL the CRM sent the browser to (`code`, `state`)."),
                    _param("hostname", "The CRM host (DNS name or host:port)."),
                    _param("rcAccountId", "Hashed RingCentral account id."),
                    _param("rcExtensionId", "Hashed RingCentral extension id."),
                    _param("proxyId", "Proxy connector id."),
                    _param("code", "Authorization code (when `callbackUri` is absent)."),
                    _param("state", "OAuth state (fallback)."),
                ],
                tag="Auth",
            )
        },
        "/unAuthorize": {
            "post": _operation(
                "unAuthorize",
                "Log out: revoke at the CRM and forget the credentials; answers the bare returnMessage",
                _ref("ReturnMessage"),
                jwt=True,
                tag="Auth",
            )
        },
        "/authValidation": {
            "get": _operation(
                "authValidation", "Is the OAuth session still valid?", _ref("Envelope"), jwt=True, tag="Auth"
            )
        },
        "/hostname": {
            "get": _operation(
                "getHostname",
                "The CRM hostname given at login (plain text)",
                {},
                jwt=True,
                ok_text=True,
                tag="Auth",
            )
        },
        "/contact": {
            "get": _operation(
                "findContact",
                "Find contacts by phone number (a placeholder entry when none match)",
                _ref("ContactListResponse"),
                jwt=True,
                params=[
                    _param("phoneNumber", "E.164 phone number", required=True),
                    _param("overridingFormat", "Comma-separated phone formats to search too"),
                    _param("isExtension", "`true` when the number is an extension", schema=_TRUE_FALSE),
                    _param(
                        "isForceRefreshAccountData", "`true` bypasses the contact cache", schema=_TRUE_FALSE
                    ),
                ],
                tag="Contacts",
            ),
            "post": _operation(
                "createContact",
                "Create the placeholder contact (one per account and number)",
                _ref("ContactCreateResponse"),
                jwt=True,
                body="CreateContactRequest",
                tag="Contacts",
            ),
        },
        "/custom/contact/search": {
            "get": _operation(
                "searchContactsByName",
                "Search contacts by name",
                _ref("ContactListResponse"),
                jwt=True,
                params=[_param("name", "Name to search for")],
                tag="Contacts",
            )
        },
        "/callLog": {
            "get": _operation(
                "getCallLog",
                "Which of up to five call sessions are logged (empty entries are ignored)",
                _ref("CallLogLookupResponse"),
                jwt=True,
                params=[
                    _param("sessionIds", "Comma-separated RingCentral session ids"),
                    _param("extensionNumber", "Extension identity of the agent"),
                    _param("hashedExtensionId", "Hashed extension identity of the agent"),
                    _param("requireDetails", "`true` adds the CRM activity", schema=_TRUE_FALSE),
                ],
                tag="Call logs",
            ),
            "post": _operation(
                "createCallLog",
                "Log a call (one activity per session and extension identity)",
                _ref("CallLogMutationResponse"),
                jwt=True,
                body="CreateCallLogRequest",
                tag="Call logs",
            ),
            "patch": _operation(
                "updateCallLog",
                "Update a logged call (note, subject, recording, result)",
                _ref("CallLogMutationResponse"),
                jwt=True,
                body="UpdateCallLogRequest",
                tag="Call logs",
            ),
        },
        "/callDisposition": {
            "put": _operation(
                "upsertCallDisposition",
                "Set the disposition fields of a logged call",
                _ref("Envelope"),
                jwt=True,
                body="CallDispositionRequest",
                tag="Call logs",
            )
        },
        "/messageLog": {
            "post": _operation(
                "createMessageLog",
                "Log SMS/MMS/fax/voicemail messages (one activity per conversation and day)",
                _ref("MessageLogResponse"),
                jwt=True,
                body="MessageLogRequest",
                tag="Message logs",
            )
        },
        "/user/settings": {
            "get": _operation(
                "getUserSettings",
                "The user's settings merged with the admin's of their verified RingCentral account."
                + _RC_TOKEN,
                _ref("UserSettings"),
                jwt=True,
                params=[_param("rcAccountId", "Ignored: a hash the client sends names no verified account.")],
                tag="Settings",
            ),
            "post": _operation(
                "updateUserSettings",
                "Merge settings in and remove keys; answers the stored settings",
                {"type": "object", "properties": {"userSettings": _ref("UserSettings")}},
                jwt=True,
                body="UserSettingsUpdateRequest",
                tag="Settings",
            ),
        },
        "/accountData": {
            "get": _operation(
                "getAccountData",
                "Account-level CRM data (e.g. Pipedrive's activity types), stored per account and refreshed",
                {
                    "allOf": [
                        _ref("Envelope"),
                        {"type": "object", "properties": {"data": {"type": "object"}}},
                    ]
                },
                jwt=True,
                params=[
                    _param("keys", "Comma-separated account data keys", required=True),
                    _param("forceRefresh", "Fetch from the CRM again", schema=_TRUE_FALSE),
                ],
                tag="Settings",
            )
        },
        "/user/preloadSettings": {
            "get": _operation(
                "preloadSettings",
                "The admin's settings of the caller's verified RingCentral account; a bare `rcAccountId`"
                " gets none." + _RC_TOKEN,
                {
                    "type": "object",
                    "required": ["userSettings"],
                    "properties": {"userSettings": {"type": "object"}},
                },
                params=[_param("rcAccountId", "Hashed RingCentral account id", required=True)],
                tag="Settings",
            )
        },
        **_rollout_paths(),
        **_server_logging_paths(),
        **_managed_auth_paths(),
    }


_RC_TOKEN = (
    " The RingCentral access token comes as the `X-RC-Access-Token` header, or `rcAccessToken` in the body or"
    " query; the server asks RingCentral whose it is."
)
_REFUSED = {
    "description": "RingCentral refused the token, or the extension is no admin. (A RingCentral that cannot "
    "be asked is a 400 `{error}`, the reference's answer when its RingCentral call throws.)",
    # a refusal is a ClientError: the contract's fixed text, typed as the reference types it (text/html)
    "content": {**_TEXT, **_CONTRACT_TEXT},
    "headers": dict(_REQUEST_ID_HEADER),
}
_LICENSE: Json = {
    "type": "object",
    "required": ["isLicenseValid", "licenseStatus", "licenseStatusDescription"],
    "properties": {
        "isLicenseValid": {"type": "boolean"},
        "licenseStatus": {"type": "string"},
        "licenseStatusDescription": {"type": "string"},
    },
}


def _refusable(operation: Json) -> Json:
    operation["responses"]["403"] = _REFUSED
    return operation


_USER_MAPPING: Json = {
    "anyOf": [
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["crmUser", "rcUser"],
                "properties": {
                    "crmUser": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "email": {"type": "string"},
                        },
                    },
                    "rcUser": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "extensionId": _ID,
                                "name": {"type": "string"},
                                "extensionNumber": {"type": "string"},
                                "email": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
        _ref("Envelope"),
    ]
}


def _rollout_paths() -> Json:
    """A company's rollout (flows/admin.py): admin settings, licence, user info, cached call notes."""
    settings = {
        "type": "object",
        "required": ["userSettings"],
        "properties": {"customConnector": {"type": "null"}, "userSettings": _ref("UserSettings")},
    }
    return {
        "/admin/settings": {
            "get": _refusable(
                _operation(
                    "getAdminSettings",
                    "The admin's settings of their RingCentral account (settings only)." + _RC_TOKEN,
                    settings,
                    jwt=True,
                    tag="Admin",
                )
            ),
            "post": _refusable(
                _operation(
                    "setAdminSettings",
                    "Set the locked and pre-set settings of every user of the admin's account." + _RC_TOKEN,
                    {},
                    body="AdminSettingsRequest",
                    ok_text=True,
                    tag="Admin",
                )
            ),
        },
        "/admin/userMapping": {
            "post": _refusable(
                _operation(
                    "getUserMapping",
                    "The account's RingCentral extensions (asked of RingCentral) matched to the CRM's users by "
                    "email, then name; the admin's manual choices kept." + _RC_TOKEN,
                    _USER_MAPPING,
                    jwt=True,
                    body="UserMappingRequest",
                    tag="Admin",
                )
            )
        },
        "/admin/reinitializeUserMapping": {
            "post": _refusable(
                _operation(
                    "reinitializeUserMapping",
                    "Match every CRM user again, except the admin's manual choices." + _RC_TOKEN,
                    _USER_MAPPING,
                    jwt=True,
                    body="UserMappingRequest",
                    tag="Admin",
                )
            )
        },
        "/licenseStatus": {
            "get": _operation(
                "getLicenseStatus", "The user's CRM licence (always 200 with a status)", _LICENSE, tag="Auth"
            )
        },
        "/user/refreshInfo": {
            "post": _operation(
                "refreshUserInfo",
                "Refresh what the server knows of the CRM user",
                _ref("Envelope"),
                jwt=True,
                tag="Auth",
            )
        },
        "/callLog/cacheNote": {
            "post": _operation(
                "cacheCallNote",
                "Keep a call's note an hour for server-side logging, in the caller's CRM account",
                {
                    "type": "object",
                    "required": ["successful"],
                    "properties": {"successful": {"type": "boolean"}, "returnMessage": {"type": "string"}},
                },
                jwt=True,
                body="CacheNoteRequest",
                tag="Call logs",
            )
        },
    }


def _admin_only(operation: Json) -> Json:
    """The refusal is the contract's text (`Admin validation failed`), typed as the reference types it."""
    operation["responses"]["403"] = _error(
        "RingCentral refused the token, could not be asked, or the extension is no admin.", text=True
    )
    return operation


def _server_logging_paths() -> Json:
    """Server-side logging set-up (flows/admin_ringcentral.py) and Pipedrive's uninstall (flows/uninstall.py)."""
    fields = {
        "type": "object",
        "description": "The CRM's server-side logging fields; secrets read `********`.",
    }
    saving = _admin_only(
        _operation(
            "setServerLoggingSettings",
            "Save the account's server-side logging fields (a `********` secret is kept)." + _RC_TOKEN,
            _ref("Envelope"),
            jwt=True,
            tag="Admin",
        )
    )
    saving["requestBody"] = {
        "required": True,
        "content": _json(
            {
                "type": "object",
                "required": ["additionalFieldValues"],
                "properties": {"additionalFieldValues": {"type": "object"}},
            }
        ),
    }
    saving["responses"]["413"] = _error("The request body is larger than `APPCONNECT_MAX_BODY_BYTES`.")
    uninstall = _operation(
        "pipedriveUninstall",
        "Pipedrive's app-uninstall callback (HTTP Basic: the app's client id and secret): the company's users go",
        {},
        ok_text=True,
        tag="Auth",
    )
    uninstall["responses"]["401"] = _error("Not Pipedrive: wrong or missing Basic credentials.", text=True)
    return {
        "/admin/serverLoggingSettings": {
            "get": _admin_only(
                _operation(
                    "getServerLoggingSettings",
                    "The account's server-side logging fields, secrets masked." + _RC_TOKEN,
                    fields,
                    jwt=True,
                    tag="Admin",
                )
            ),
            "post": saving,
        },
        "/ringcentral/oauth/callback": {
            "get": _admin_only(
                _operation(
                    "ringcentralOAuthCallback",
                    "Exchange the admin's RingCentral authorization code; the tokens are kept, never answered."
                    + _RC_TOKEN,
                    _ref("Envelope"),
                    jwt=True,
                    params=[_param("code", "RingCentral's authorization code", required=True)],
                    tag="Admin",
                )
            )
        },
        "/pipedrive-redirect": {"delete": uninstall},
    }


def _managed_auth_paths() -> Json:
    """Managed auth (flows/managed_auth.py): login fields and OAuth apps an admin stores for the account."""
    platform = _param("platform", "Connector name, e.g. `testcrm` or `pipedrive`.")
    done = {"type": "object", "required": ["successful"], "properties": {"successful": {"type": "boolean"}}}
    stored = {
        "type": "object",
        "required": ["hasValue", "value"],
        "properties": {"hasValue": {"type": "boolean"}, "value": {}},
        "description": "Whether the field is set; a secret's value is always a placeholder.",
    }
    admin_page = {
        "type": "object",
        "required": ["hasManagedAuth", "fields", "orgFields", "userFields", "orgValues", "userValues"],
        "properties": {
            "hasManagedAuth": {"type": "boolean"},
            "fields": {"type": "array", "items": {"type": "object"}},
            "orgFields": {"type": "array", "items": {"type": "object"}},
            "userFields": {"type": "array", "items": {"type": "object"}},
            "orgValues": {"type": "object", "additionalProperties": stored},
            "userValues": {"type": "array", "items": {"type": "object"}},
        },
    }
    api_key_state = {
        "type": "object",
        "required": [
            "hasManagedAuth",
            "allRequiredFieldsSatisfied",
            "visibleFieldConsts",
            "missingRequiredFieldConsts",
            "fallbackToManualAuth",
        ],
        "properties": {
            "hasManagedAuth": {"type": "boolean"},
            "allRequiredFieldsSatisfied": {"type": "boolean"},
            "visibleFieldConsts": _nullable({"type": "array", "items": {"type": "string"}}),
            "missingRequiredFieldConsts": {"type": "array", "items": {"type": "string"}},
            "fallbackToManualAuth": {"type": "boolean"},
        },
    }
    oauth_state = {
        "type": "object",
        "required": ["isAdmin", "hasAccountOAuth", "hasPendingOAuth"],
        "properties": {
            "isAdmin": {"type": "boolean"},
            "hasAccountOAuth": {"type": "boolean"},
            "hasPendingOAuth": {"type": "boolean"},
            "oauthValues": {"type": "object"},
            "pendingValues": {"type": "object"},
        },
    }
    options = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["value", "label"],
            "properties": {"value": {"type": "string"}, "label": {"type": "string"}},
        },
    }
    options_operation = _refusable(
        _operation(
            "getManagedAuthOptions",
            "The choices of one managed login field, from the connector." + _RC_TOKEN,
            options,
            body="ManagedAuthOptionsRequest",
            params=[platform],
            tag="Admin",
        )
    )
    options_operation["responses"]["502"] = _error("The CRM did not answer with the options.")
    return {
        "/admin/managedAuth": {
            "get": _refusable(
                _operation(
                    "getManagedAuth",
                    "The CRM's managed login fields and which are set (never a secret)." + _RC_TOKEN,
                    admin_page,
                    jwt=True,
                    tag="Admin",
                )
            ),
            "post": _refusable(
                _operation(
                    "setManagedAuth",
                    "Store the account's (or one extension's) managed login fields; the placeholder keeps a"
                    " value, an empty value deletes it." + _RC_TOKEN,
                    {},
                    jwt=True,
                    body="ManagedAuthRequest",
                    ok_text=True,
                    tag="Admin",
                )
            ),
        },
        "/admin/managedAuth/options": {"post": options_operation},
        "/apiKeyManagedAuthState": {
            "get": _refusable(
                _operation(
                    "getApiKeyManagedAuthState",
                    "Which login fields the user's account manages and which they must type." + _RC_TOKEN,
                    api_key_state,
                    params=[platform],
                    tag="Auth",
                )
            )
        },
        "/oauthManagedAuthState": {
            "get": _refusable(
                _operation(
                    "getOauthManagedAuthState",
                    "Whether the user's account has an OAuth app for the CRM (never its secret)." + _RC_TOKEN,
                    oauth_state,
                    params=[platform],
                    tag="Auth",
                )
            )
        },
        "/admin/managedOAuth/cache": {
            "post": _refusable(
                _operation(
                    "cacheManagedOAuth",
                    "Keep the admin's OAuth app (a day) until their login with it completes it." + _RC_TOKEN,
                    done,
                    body="ManagedOAuthCacheRequest",
                    tag="Admin",
                )
            ),
            "delete": _refusable(
                _operation(
                    "clearManagedOAuthCache",
                    "Forget the admin's pending OAuth app." + _RC_TOKEN,
                    done,
                    tag="Admin",
                )
            ),
        },
        "/admin/managedOAuth/account": {
            "delete": _refusable(
                _operation(
                    "resetManagedOAuth",
                    "Forget the account's OAuth app for the CRM: users log in with the server's app."
                    + _RC_TOKEN,
                    done,
                    params=[platform],
                    tag="Admin",
                )
            )
        },
    }


def _body_schemas() -> dict[str, Json]:
    """Request-body schemas straight from the pydantic models (by alias: the wire names)."""
    schemas: dict[str, Json] = {}
    for name, model in _BODY_MODELS.items():
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    return schemas


def build_openapi(version: str, server_url: str) -> Json:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "App Connect connector server",
            "version": version,
            "description": (
                "The RingCentral App Connect connector-server contract routes this server implements. "
                "Business failures are HTTP 200 with `successful: false` and a `returnMessage`; every answer "
                "carries `X-Request-Id`."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": _paths(),
        "components": {
            "schemas": {**_body_schemas(), **_SCHEMAS},
            "securitySchemes": {
                "userJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "legacyUserJwt": {"type": "apiKey", "in": "query", "name": "jwtToken"},
            },
        },
    }


def docs_page(title: str) -> str:
    """Swagger UI over the local document. The UI's own script and style come from a CDN."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script src="{DOCS_PATH}/init.js"></script>
</body></html>"""


DOCS_INIT_JS = f'window.ui = SwaggerUIBundle({{url: "{OPENAPI_PATH}", dom_id: "#swagger-ui"}});\n'
DOCS_CSP = (
    "default-src 'none'; script-src 'self' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://cdn.jsdelivr.net; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)

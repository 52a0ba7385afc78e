"""The App Connect HTTP contract, route by route. Routes parse and answer; flows decide."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from appconnect import __version__
from appconnect.api import googlesheets as googlesheets_routes
from appconnect.api.dispatch import Router
from appconnect.api.http import (
    caller_of,
    contract_text,
    json_response,
    parse_body,
    respond,
    services_of,
    text_response,
)
from appconnect.api.metrics import METRICS_PATH, may_read
from appconnect.api.openapi import DOCS_CSP, DOCS_INIT_JS, DOCS_PATH, OPENAPI_PATH, build_openapi, docs_page
from appconnect.connectors.registry import CrmManifest
from appconnect.connectors.sdk import INTERFACE_METHODS, UNOFFERED_INTERFACES, implements
from appconnect.flows import (
    account_data,
    admin,
    admin_ringcentral,
    call_logs,
    contacts,
    login,
    managed_auth,
    message_logs,
    uninstall,
    user_mapping,
    user_settings,
)
from appconnect.flows.common import current_user
from appconnect.flows.reply import ClientError
from appconnect.flows.requests import (
    PHONE_CHARS,
    ApiKeyLoginBody,
    CallLogBody,
    CallLogPatchBody,
    ContactCreateBody,
    DispositionBody,
    MessageLogBody,
    UserSettingsBody,
)
from appconnect.security.crypto import hash_value
from appconnect.security.ringcentral import token_from as rc_token_from

router = Router()

INVALID_JWT = "Invalid JWT token"
USER_NOT_FOUND = "User not found"
#: the user agent of RingCentral's server-side call logging (the reference's mark)
SSCL_USER_AGENT = "SSCL"


# --- health and metadata ------------------------------------------------------------------------------------


@router.get("/isAlive")
async def is_alive(_request: Request) -> Response:
    return text_response("OK")


@router.get("/crmManifest")
async def crm_manifest(request: Request) -> Response:
    platform = request.query_params.get("platformName", "default")
    manifest: CrmManifest = request.app.state.manifest
    if platform == "default":
        return json_response(manifest.whole())
    found = manifest.of(platform)
    if found is None:
        return contract_text("Platform not found")
    return json_response(found)


@router.get("/implementedInterfaces")
async def implemented_interfaces(request: Request) -> Response:
    platform = request.query_params.get("platform")
    if not platform:
        return contract_text("Please provide platform.")
    connector = services_of(request).registry.get(platform)
    if connector is None:
        return json_response({"error": f"Connector not found for platform: {platform}"}, 400)
    result = {name: implements(connector, method) for name, method in INTERFACE_METHODS.items()}
    result["getAuthType"] = True
    for name in UNOFFERED_INTERFACES:
        result[name] = False
    result["getLogFormatType"] = True
    result["getLicenseStatus"] = implements(connector, "get_license_status")
    if connector.auth_type == "oauth":
        result["getOauthInfo"] = True
    else:
        result["getBasicAuth"] = True
    result["cacheCallNote"] = True  # server-side logging merges notes cached through /callLog/cacheNote
    return json_response(result)


@router.get("/serverVersionInfo")
async def server_version_info(request: Request) -> Response:
    return json_response({"version": request.app.state.manifest.version})


@router.get("/releaseNotes")
async def release_notes(_request: Request) -> Response:
    return json_response(
        {
            __version__: {
                "global": [
                    {
                        "type": "New",
                        "description": "Python connector server: placeholder contacts, call and SMS logging.",
                    }
                ]
            }
        }
    )


@router.get("/userInfoHash")
async def user_info_hash(request: Request) -> Response:
    key = services_of(request).keys.hash_key
    extension_id = request.query_params.get("extensionId")
    account_id = request.query_params.get("accountId")
    if not extension_id or not account_id:
        return json_response({"error": "extensionId and accountId are required"}, 400)
    return json_response(
        {"extensionId": hash_value(extension_id, key), "accountId": hash_value(account_id, key)}
    )


@router.get(OPENAPI_PATH)
async def openapi_document(request: Request) -> Response:
    document = getattr(request.app.state, "openapi_document", None)
    if document is None:
        document = build_openapi(__version__, services_of(request).settings.server_url())
        request.app.state.openapi_document = document
    return json_response(document)


@router.get(DOCS_PATH)
async def docs(_request: Request) -> Response:
    return Response(
        docs_page("App Connect connector server API"),
        media_type="text/html; charset=utf-8",
        headers={"content-security-policy": DOCS_CSP},
    )


@router.get(f"{DOCS_PATH}/init.js")
async def docs_script(_request: Request) -> Response:
    return Response(DOCS_INIT_JS, media_type="text/javascript; charset=utf-8")


@router.get(METRICS_PATH)
async def metrics(request: Request) -> Response:
    """Prometheus text (or OpenMetrics) of all workers; a token (or a loopback client) is needed, see api/metrics.py."""
    worker_metrics = getattr(request.app.state, "metrics", None)
    if worker_metrics is None:
        raise ClientError("Not Found", 404, as_json=True)
    client = request.scope.get("client")
    if not may_read(
        services_of(request).settings, request.headers.get("authorization"), client and client[0]
    ):
        raise ClientError("Not allowed to read the metrics", 403, as_json=True)
    body, content_type = worker_metrics.render(request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})


# --- auth ---------------------------------------------------------------------------------------------------


@router.post("/apiKeyLogin")
async def api_key_login(request: Request) -> Response:
    body = await parse_body(request, ApiKeyLoginBody)
    reply = await login.api_key_login(
        services_of(request),
        body,
        rc_account_header=request.headers.get("rc-account-id"),
        rc_extension_header=request.headers.get("rc-extension-id"),
        rc_token=rc_token_from(request, body.model_extra),
    )
    return respond(request, reply)


@router.get("/oauth-callback")
async def oauth_callback(request: Request) -> Response:
    query = dict(request.query_params)
    return respond(request, await login.oauth_callback(services_of(request), query, rc_token_from(request)))


@router.post("/unAuthorize")
async def unauthorize(request: Request) -> Response:
    claims = caller_of(request).require(invalid_text=USER_NOT_FOUND)
    return respond(request, await login.unauthorize(services_of(request), claims))


@router.get("/authValidation")
async def auth_validation(request: Request) -> Response:
    claims = caller_of(request).require(invalid_text=INVALID_JWT)
    return respond(request, await login.auth_validation(services_of(request), claims))


@router.get("/hostname")
async def hostname(request: Request) -> Response:
    claims = caller_of(request).require(invalid_text=USER_NOT_FOUND)
    user = await current_user(services_of(request), claims)
    if user is None:
        raise ClientError(USER_NOT_FOUND)
    return text_response(user.hostname or "")


# --- contacts -----------------------------------------------------------------------------------------------


@router.get("/contact")
async def find_contact(request: Request) -> Response:
    claims = caller_of(request).require()
    q = request.query_params
    if len(q.get("phoneNumber") or "") > PHONE_CHARS:
        raise ClientError(f"phoneNumber: must be at most {PHONE_CHARS} characters", as_json=True)
    reply = await contacts.find_contact(
        services_of(request),
        claims,
        phone_number=q.get("phoneNumber"),
        overriding_format=q.get("overridingFormat", ""),
        is_extension=q.get("isExtension", "false"),
        force_refresh=q.get("isForceRefreshAccountData") == "true",
    )
    return respond(request, reply)


@router.post("/contact")
async def create_contact(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, ContactCreateBody)
    return respond(request, await contacts.create_contact(services_of(request), claims, body))


@router.get("/custom/contact/search")
async def search_contacts(request: Request) -> Response:
    claims = caller_of(request).require(invalid_text=INVALID_JWT)
    name = request.query_params.get("name", "")
    return respond(request, await contacts.search_by_name(services_of(request), claims, name))


# --- call logs ----------------------------------------------------------------------------------------------


@router.get("/callLog")
async def get_call_log(request: Request) -> Response:
    claims = caller_of(request).require()
    q = request.query_params
    reply = await call_logs.get_call_logs(
        services_of(request),
        claims,
        # empty entries (`sessionIds=,,`) name no session: they must not match anything
        session_ids=",".join(s for s in (q.get("sessionIds") or "").split(",") if s.strip()),
        extension_number=q.get("extensionNumber"),
        hashed_extension_id=q.get("hashedExtensionId"),
        require_details=q.get("requireDetails") == "true",
    )
    return respond(request, reply)


@router.post("/callLog")
async def create_call_log(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, CallLogBody)
    if request.headers.get("user-agent") == SSCL_USER_AGENT:
        body.is_from_sscl = True
    return respond(request, await call_logs.create_call_log(services_of(request), claims, body))


@router.patch("/callLog")
async def update_call_log(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, CallLogPatchBody)
    if request.headers.get("user-agent") == SSCL_USER_AGENT:
        body.is_from_sscl = True
    return respond(request, await call_logs.update_call_log(services_of(request), claims, body))


@router.put("/callDisposition")
async def call_disposition(request: Request) -> Response:
    claims = caller_of(request).require(invalid_text=INVALID_JWT)
    body = await parse_body(request, DispositionBody)
    if request.headers.get("user-agent") == SSCL_USER_AGENT:
        body.is_from_sscl = True
    return respond(request, await call_logs.upsert_disposition(services_of(request), claims, body))


@router.post("/messageLog")
async def create_message_log(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, MessageLogBody)
    return respond(request, await message_logs.create_message_log(services_of(request), claims, body))


# --- user settings ------------------------------------------------------------------------------------------


@router.get("/user/settings")
async def get_user_settings(request: Request) -> Response:
    claims = caller_of(request).require()
    reply = await admin.get_user_settings(services_of(request), claims, rc_token_from(request))
    return respond(request, reply)


@router.post("/user/settings")
async def post_user_settings(request: Request) -> Response:
    claims = caller_of(request).require(invalid_text="Unknown platform")
    body = await parse_body(request, UserSettingsBody)
    return respond(request, await user_settings.update_user_settings(services_of(request), claims, body))


@router.get("/accountData")
async def get_account_data(request: Request) -> Response:
    claims = caller_of(request).require()
    keys = (request.query_params.get("keys") or "").split(",")
    force = request.query_params.get("forceRefresh") == "true"
    reply = await account_data.get_account_data(
        services_of(request), claims, [k.strip() for k in keys], force_refresh=force
    )
    return respond(request, reply)


@router.get("/user/preloadSettings")
async def preload_settings(request: Request) -> Response:
    """Admin settings for a user of an account RingCentral vouches for (a token); a bare `rcAccountId`: none."""
    reply = await admin.preload_settings(
        services_of(request), rc_token_from(request), request.query_params.get("rcAccountId")
    )
    return respond(request, reply)


# --- company rollout: admin settings, licence, user info, call notes ----------------------------------------


@router.get("/admin/settings")
async def get_admin_settings(request: Request) -> Response:
    claims = caller_of(request).require()
    reply = await admin.get_admin_settings(services_of(request), claims, rc_token_from(request))
    return respond(request, reply)


@router.post("/admin/settings")
async def post_admin_settings(request: Request) -> Response:
    body = await parse_body(request, admin.AdminSettingsBody)
    token = rc_token_from(request, body.model_extra)
    claims = caller_of(request).claims  # optional: names the CRM account of the admin's mapping choices
    return respond(request, await admin.set_admin_settings(services_of(request), token, body, claims))


# --- managed auth: CRM login fields and OAuth apps an admin stores once for the account ---------------------


@router.get("/admin/managedAuth")
async def get_managed_auth(request: Request) -> Response:
    claims = caller_of(request).require()
    reply = await managed_auth.get_managed_auth(services_of(request), claims, rc_token_from(request))
    return respond(request, reply)


@router.post("/admin/managedAuth")
async def post_managed_auth(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, managed_auth.ManagedAuthBody)
    token = rc_token_from(request, body.model_extra)
    return respond(request, await managed_auth.set_managed_auth(services_of(request), claims, token, body))


@router.post("/admin/managedAuth/options")
async def post_managed_auth_options(request: Request) -> Response:
    body = await parse_body(request, managed_auth.ManagedAuthOptionsBody)
    reply = await managed_auth.managed_auth_options(
        services_of(request),
        request.query_params.get("platform"),
        rc_token_from(request, body.model_extra),
        body,
    )
    return respond(request, reply)


@router.get("/apiKeyManagedAuthState")
async def api_key_managed_auth_state(request: Request) -> Response:
    platform = request.query_params.get("platform")
    reply = await managed_auth.api_key_state(services_of(request), rc_token_from(request), platform)
    return respond(request, reply)


@router.get("/oauthManagedAuthState")
async def oauth_managed_auth_state(request: Request) -> Response:
    platform = request.query_params.get("platform")
    reply = await managed_auth.oauth_state(services_of(request), rc_token_from(request), platform)
    return respond(request, reply)


@router.post("/admin/managedOAuth/cache")
async def post_managed_oauth_cache(request: Request) -> Response:
    body = await parse_body(request, managed_auth.ManagedOAuthCacheBody)
    token = rc_token_from(request, body.model_extra)
    return respond(request, await managed_auth.cache_oauth_app(services_of(request), token, body))


@router.delete("/admin/managedOAuth/cache")
async def delete_managed_oauth_cache(request: Request) -> Response:
    return respond(
        request, await managed_auth.clear_pending_oauth(services_of(request), rc_token_from(request))
    )


@router.delete("/admin/managedOAuth/account")
async def delete_managed_oauth_account(request: Request) -> Response:
    platform = request.query_params.get("platform")
    reply = await managed_auth.reset_oauth(services_of(request), rc_token_from(request), platform)
    return respond(request, reply)


@router.post("/admin/userMapping")
async def post_user_mapping(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, user_mapping.UserMappingBody)
    token = rc_token_from(request, body.model_extra)
    reply = await user_mapping.user_mapping(services_of(request), claims, token, reinitialize=False)
    return respond(request, reply)


@router.post("/admin/reinitializeUserMapping")
async def post_reinitialize_user_mapping(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, user_mapping.UserMappingBody)
    token = rc_token_from(request, body.model_extra)
    reply = await user_mapping.user_mapping(services_of(request), claims, token, reinitialize=True)
    return respond(request, reply)


@router.get("/licenseStatus")
async def license_status(request: Request) -> Response:
    caller = caller_of(request)
    # a session JWT that is there but does not verify is the reference's 400; no JWT at all is a 200 status
    if caller.claims is None and (caller.invalid_query_token or "authorization" in request.headers):
        raise ClientError(INVALID_JWT)
    return respond(request, await admin.license_status(services_of(request), caller.claims))


@router.post("/user/refreshInfo")
async def refresh_user_info(request: Request) -> Response:
    claims = caller_of(request).require()
    return respond(request, await admin.refresh_user_info(services_of(request), claims))


@router.post("/callLog/cacheNote")
async def cache_call_note(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, admin.CacheNoteBody)
    return respond(request, await admin.cache_note(services_of(request), claims, body))


# --- server-side logging: the admin's RingCentral authorization; a CRM's app uninstalled --------------------


@router.get("/admin/serverLoggingSettings")
async def get_server_logging_settings(request: Request) -> Response:
    claims = caller_of(request).require()
    reply = await admin_ringcentral.get_server_logging_settings(
        services_of(request), claims, rc_token_from(request)
    )
    return respond(request, reply)


@router.post("/admin/serverLoggingSettings")
async def post_server_logging_settings(request: Request) -> Response:
    claims = caller_of(request).require()
    body = await parse_body(request, admin_ringcentral.ServerLoggingBody)
    token = rc_token_from(request, body.model_extra)
    reply = await admin_ringcentral.set_server_logging_settings(services_of(request), claims, token, body)
    return respond(request, reply)


@router.get(admin_ringcentral.CALLBACK_PATH)
async def ringcentral_oauth_callback(request: Request) -> Response:
    claims = caller_of(request).require()
    reply = await admin_ringcentral.ringcentral_callback(
        services_of(request), claims, rc_token_from(request), request.query_params.get("code")
    )
    return respond(request, reply)


@router.route("DELETE", "/pipedrive-redirect")
async def pipedrive_uninstall(request: Request) -> Response:
    """Pipedrive's app-uninstall callback (its app's callback URL, as the reference serves it)."""
    services = services_of(request)
    uninstall.check_pipedrive_caller(services, request.headers.get("authorization"))
    body = await parse_body(request, uninstall.PipedriveUninstallBody)
    return respond(request, await uninstall.pipedrive_uninstalled(services, body))


# --- connector-specific pages and settings routes ------------------------------------------------------------

router.include(googlesheets_routes.router)

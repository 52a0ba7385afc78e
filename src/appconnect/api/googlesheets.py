"""Google Sheets' own routes (the reference's `/googleSheets/*`, `/admin/googleSheets/*`): the picker page and
the sheet the user or the admin chose. Routes parse and answer; flows/googlesheets.py decides.

The picker page is a page of this server holding the user's Google access token (Google's Picker needs it in
the browser): it is never cached, sends no referrer, runs only its own script (by nonce) and Google's from
apis.google.com, and embeds every value as escaped JSON that the script reads, never as HTML or script text.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response

from appconnect.api.dispatch import Router
from appconnect.api.http import caller_of, parse_body, respond, services_of
from appconnect.flows import googlesheets
from appconnect.flows.reply import ClientError
from appconnect.security.jwt import SessionClaims
from appconnect.security.ringcentral import token_from as rc_token_from

router = Router()

#: the reference's answers to a request without a session JWT
AUTHORIZE_FIRST = "Please go to Settings and authorize CRM platform"
AUTHORIZE_ADMIN = "Please authorize admin access"
SELECTED_PATH = "/googleSheets/selectedSheet"
ADMIN_SELECTED_PATH = "/admin/googleSheets/selectedSheet"
#: where Google's Picker comes from: its loader and what it loads (apis.google.com), its dialog (a frame of
#: docs.google.com; drive.google.com for some views)
GOOGLE_SCRIPTS = "https://apis.google.com"
GOOGLE_FRAMES = "https://docs.google.com https://drive.google.com"
USER_TITLE = "Choose your App Connect sheet"
ADMIN_TITLE = "Choose your company's App Connect sheet"


def _claims(request: Request, *, missing_text: str) -> SessionClaims:
    """The session JWT: the reference's `token` query (the page's link), `jwtToken`, or a bearer header."""
    caller = caller_of(request)
    if caller.claims is not None:
        return caller.claims
    query_token = request.query_params.get("token")
    if query_token and not caller.invalid_query_token and "authorization" not in request.headers:
        claims = services_of(request).tokens.verify(query_token)
        if claims is not None:
            return claims
        raise ClientError(googlesheets.USER_NOT_FOUND)
    if caller.invalid_query_token or "authorization" in request.headers:
        raise ClientError(googlesheets.USER_NOT_FOUND)
    raise ClientError(missing_text)


# --- the user's sheet -------------------------------------------------------------------------------------------


@router.get("/googleSheets/filePicker")
async def file_picker(request: Request) -> Response:
    claims = _claims(request, missing_text=AUTHORIZE_FIRST)
    page = await googlesheets.picker_page(services_of(request), claims)
    return _page(request, page, admin=False)


@router.post("/googleSheets/sheet")
async def create_sheet(request: Request) -> Response:
    claims = _claims(request, missing_text=AUTHORIZE_FIRST)
    body = await parse_body(request, googlesheets.NewSheetBody)
    return respond(request, await googlesheets.create_sheet(services_of(request), claims, body))


@router.delete("/googleSheets/sheet")
async def remove_sheet(request: Request) -> Response:
    claims = _claims(request, missing_text=AUTHORIZE_FIRST)
    return respond(request, await googlesheets.remove_sheet(services_of(request), claims))


@router.post(SELECTED_PATH)
async def selected_sheet(request: Request) -> Response:
    """The picker page's pick; the page proves its user with the Google token it was given (as the reference)."""
    body = await parse_body(request, googlesheets.SelectedSheetBody)
    return respond(request, await googlesheets.select_sheet(services_of(request), body))


# --- the admin's sheet for the account --------------------------------------------------------------------------


@router.get("/admin/googleSheets/filePicker")
async def admin_file_picker(request: Request) -> Response:
    claims = _claims(request, missing_text=AUTHORIZE_ADMIN)
    page = await googlesheets.picker_page(services_of(request), claims, rc_token_from(request), admin=True)
    return _page(request, page, admin=True)


@router.post("/admin/googleSheets/sheet")
async def admin_create_sheet(request: Request) -> Response:
    claims = _claims(request, missing_text=AUTHORIZE_ADMIN)
    body = await parse_body(request, googlesheets.AdminNewSheetBody)
    token = rc_token_from(request, body.model_extra)
    return respond(request, await googlesheets.admin_create_sheet(services_of(request), claims, token, body))


@router.post(ADMIN_SELECTED_PATH)
async def admin_selected_sheet(request: Request) -> Response:
    body = await parse_body(request, googlesheets.SelectedSheetBody)
    token = rc_token_from(request, body.model_extra)
    return respond(request, await googlesheets.admin_select_sheet(services_of(request), token, body))


@router.get("/admin/googleSheets/config")
async def admin_config(request: Request) -> Response:
    claims = _claims(request, missing_text=AUTHORIZE_ADMIN)
    reply = await googlesheets.admin_config(services_of(request), claims, rc_token_from(request))
    return respond(request, reply)


# --- the page ---------------------------------------------------------------------------------------------------


def _page(request: Request, page: googlesheets.PickerPage, *, admin: bool) -> Response:
    server = services_of(request).settings.server_url().rstrip("/")
    nonce = secrets.token_urlsafe(18)
    config = {
        "accessToken": page.access_token,
        "apiKey": page.api_key,
        "projectId": page.project_id,
        "currentName": page.current_name,
        "selectUrl": server + (ADMIN_SELECTED_PATH if admin else SELECTED_PATH),
        "rcAccessToken": page.rc_access_token,
        "admin": admin,
    }
    origin = urlsplit(server)
    csp = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}' {GOOGLE_SCRIPTS}; "
        # Google's dialog styles the page it opens in; a nonce would switch 'unsafe-inline' off
        "style-src 'unsafe-inline'; "
        f"frame-src {GOOGLE_FRAMES}; "
        "img-src https://*.googleusercontent.com https://ssl.gstatic.com https://www.gstatic.com; "
        f"connect-src 'self' {origin.scheme}://{origin.netloc}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    title = ADMIN_TITLE if admin else USER_TITLE
    html = _PAGE.replace("{nonce}", nonce).replace("{title}", title).replace("{config}", script_json(config))
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={
            "cache-control": "no-store",
            "pragma": "no-cache",
            "content-security-policy": csp,
            "referrer-policy": "no-referrer",
        },
    )


_SCRIPT_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def script_json(value: object) -> str:
    """JSON that stays inert inside a `<script>` element: no `<`, `>`, `&` or line separator survives as itself
    (`</script>` cannot end the element, `<!--` cannot open a comment), and it parses to the same value."""
    text = orjson.dumps(value).decode()
    for raw, escaped in _SCRIPT_ESCAPES:
        text = text.replace(raw, escaped)
    return text


# Only constants are replaced into this text: the nonce (URL-safe base64), the title (a constant) and the
# config (script_json, above). The script reads the config and writes every value with textContent.
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; background: #f4f6f8; color: #1f2933; }
  main { max-width: 34rem; margin: 12vh auto; padding: 2rem; background: #fff; border-radius: 8px; }
  h1 { font-size: 1.25rem; margin-top: 0; }
  button { font: inherit; padding: .5rem 1.25rem; border: 0; border-radius: 4px; background: #0b57d0; color: #fff; }
  button:disabled { background: #9aa5b1; }
  #status { min-height: 1.5em; }
</style>
</head>
<body>
<main>
  <h1>{title}</h1>
  <p id="current"></p>
  <p>Pick the spreadsheet App Connect keeps contacts and call and message logs in.</p>
  <button id="choose" type="button" disabled>Choose a spreadsheet</button>
  <p id="status" role="status"></p>
</main>
<script type="application/json" id="picker-config">{config}</script>
<script nonce="{nonce}">
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("picker-config").textContent);
  var button = document.getElementById("choose");
  var status = document.getElementById("status");
  function say(text) { status.textContent = text; }
  if (config.currentName) {
    document.getElementById("current").textContent = "Current sheet: " + config.currentName;
  }

  function save(doc) {
    var headers = { "Content-Type": "application/json" };
    if (config.rcAccessToken) { headers["X-RC-Access-Token"] = config.rcAccessToken; }
    say("Saving \\u201c" + doc.name + "\\u201d\\u2026");
    return fetch(config.selectUrl, {
      method: "POST",
      headers: headers,
      credentials: "omit",
      body: JSON.stringify({
        accessToken: config.accessToken,
        sheetData: { name: doc.name, url: doc.url },
        customizable: false
      })
    }).then(function (answer) {
      if (answer.ok) {
        say("\\u201c" + doc.name + "\\u201d is now " + (config.admin ? "your company's" : "your") +
            " App Connect sheet. You can close this window and return to App Connect.");
      } else {
        say("The sheet was not saved (HTTP " + answer.status + "). Open this page again from App Connect.");
      }
    }, function () { say("The sheet was not saved: the server could not be reached."); });
  }

  function picked(data) {
    var action = data[google.picker.Response.ACTION];
    if (action === google.picker.Action.PICKED) {
      var doc = data[google.picker.Response.DOCUMENTS][0];
      save({ name: String(doc[google.picker.Document.NAME]), url: String(doc[google.picker.Document.URL]) });
    } else if (action === google.picker.Action.CANCEL) {
      say("No sheet chosen.");
    }
  }

  function open() {
    var view = new google.picker.DocsView(google.picker.ViewId.SPREADSHEETS)
      .setMimeTypes("application/vnd.google-apps.spreadsheet");
    var builder = new google.picker.PickerBuilder()
      .addView(view)
      .setOAuthToken(config.accessToken)
      .setDeveloperKey(config.apiKey)
      .setOrigin(window.location.protocol + "//" + window.location.host)
      .setCallback(picked)
      .setTitle("Select a Google Sheet");
    if (config.projectId) { builder = builder.setAppId(config.projectId); }
    builder.build().setVisible(true);
  }

  button.addEventListener("click", open);
  var loader = document.createElement("script");
  loader.src = "https://apis.google.com/js/api.js";
  loader.async = true;
  loader.nonce = document.currentScript ? document.currentScript.nonce : "";
  loader.addEventListener("load", function () {
    gapi.load("picker", { callback: function () { button.disabled = false; open(); } });
  });
  loader.addEventListener("error", function () { say("Google's picker could not be loaded."); });
  document.head.appendChild(loader);
}());
</script>
</body>
</html>
"""

"""A strict in-memory NetSuite (REST web services, SuiteQL, OAuth 2.0) on loopback HTTP, built on fake_crm.py.

What it holds to, from Oracle's NetSuite REST web services guide and the reference connector:

- one host per account: every request names the host it was meant for (the connector's `base_url` setting is
  `http://127.0.0.1:<port>/~{host}`, so a request reaches `/~<host>/services/...`, and fault paths and the
  request log keep the host); the host must be the
  account id lower-cased with `_` as `-` (`1234567_SB1` -> `1234567-sb1.suitetalk.api.netsuite.com`), any
  other spelling is an unknown host; a token works only on its own account's host;
- OAuth 2.0 authorization code: the consent screen on `<account>.app.netsuite.com` wants a `state` of 22 to
  1024 characters and redirects with `state`, `role`, `entity`, `company` and `code`; the token endpoint takes
  the client's Basic credentials and answers `expires_in` as a string; `revoke` ends a refresh token;
- SuiteQL (`POST /services/rest/query/v1/suiteql`) needs `Prefer: transient` (refused without), takes only
  `limit` (1 to 1,000) and `offset`, pages with `hasMore`, answers every value as a string, leaves null
  columns out, and lower-cases column names; a column or table it does not know is a 400;
- the record API: a create answers 204 with no body and the id only in `Location`; a field the record type
  does not have is a 400; references must name existing records; record type names in paths are
  case-insensitive (`phonecall`, `phoneCall`);
- errors in NetSuite's envelope: `{type, title, status, o:errorDetails: [{detail, o:errorCode}]}`;
- REST, SOAP and RESTlets share one concurrency pool per account (`concurrency_limit`): a request over it is
  answered 429 with `CONCURRENCY_LIMIT_EXCEEDED`;
- people are contacts, customers (leads and prospects at their stage) and vendors (a role denied
  `LIST_VENDOR` knows no `vendor` table); a phone call's `company` names a customer or a vendor;
- transactions (sales orders `SalesOrd`, opportunities `Opprtnty`) are SuiteQL rows of `transaction`, and a
  phone call's `transaction` must name one of them;
- the RingCentral SuiteApp's RESTlets on `<account>.restlets.api.netsuite.com/app/site/hosting/restlet.nl`
  (`?script=...&deploy=...`), only where the SuiteApp is installed (`Account.suiteapp`; off, every script,
  createusernotes included, answers as undeployed); they want a JSON Content-Type for a body and a token whose
  consent granted the `restlets` scope (REST web services want `rest_webservices`); see the RESTlet block.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    OAuthGrants,
    TokenPair,
    basic_credentials,
    bearer_token,
    same_secret,
)

JsonDict = dict[str, Any]

DEFAULT_ACCOUNT = "1234567_SB1"
OTHER_ACCOUNT = "7654321"
DEFAULT_REDIRECT_URI = "https://ringcentral.github.io/ringcentral-embeddable/redirect.html"
CLIENT_ID = "netsuite-client-id"
CLIENT_SECRET = "netsuite-client-secret"
MAX_PAGE = 1000
RECORD_PREFIX = "/services/rest/record/v1"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
RESTLET_PATH = "/app/site/hosting/restlet.nl"

_STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
}

#: fields the record API takes on create and update, per record type (REST names)
RECORD_FIELDS: dict[str, frozenset[str]] = {
    "contact": frozenset(
        {
            "firstName",
            "middleName",
            "lastName",
            "phone",
            "mobilePhone",
            "homePhone",
            "officePhone",
            "email",
            "company",
            "subsidiary",
            "title",
            "comments",
            "entityId",
        }
    ),
    "customer": frozenset(
        {
            "isPerson",
            "firstName",
            "middleName",
            "lastName",
            "companyName",
            "entityId",
            "phone",
            "mobilePhone",
            "homePhone",
            "altPhone",
            "email",
            "subsidiary",
            "entityStatus",
            "comments",
        }
    ),
    # a vendor (Oracle schema browser, record "vendor": isPerson, names, companyName, entityId, phone, altPhone,
    # homePhone, mobilePhone; the reference's vendor create and its vendor phone fields)
    "vendor": frozenset(
        {
            "isPerson",
            "firstName",
            "middleName",
            "lastName",
            "companyName",
            "entityId",
            "phone",
            "mobilePhone",
            "homePhone",
            "altPhone",
            "email",
            "subsidiary",
            "comments",
        }
    ),
    "phonecall": frozenset(
        {
            "title",
            "phone",
            "priority",
            "status",
            "startDate",
            "completedDate",
            "timedEvent",
            "startTime",
            "endTime",
            "message",
            "contact",
            "company",
            "assigned",
            "transaction",
        }
    ),
}
#: reference fields and the record types they may name
_REFERENCES = {
    # a phone call's `company` names any entity the call was with: a customer, or a vendor (the reference
    # sends a vendor's id there)
    "company": ("customer", "vendor"),
    "contact": ("contact",),
    "subsidiary": ("subsidiary",),
    "entityStatus": ("customerstatus",),
    "assigned": ("employee",),
    "transaction": ("transaction",),
}
#: SuiteQL columns per table (the analytics data source's lower-case names)
TABLE_COLUMNS: dict[str, frozenset[str]] = {
    "contact": frozenset(
        {
            "id",
            "firstname",
            "middlename",
            "lastname",
            "entityid",
            "entitytitle",
            "phone",
            "mobilephone",
            "homephone",
            "officephone",
            "email",
            "company",
            "subsidiary",
            "title",
            "comments",
            "datecreated",
            "lastmodifieddate",
        }
    ),
    "customer": frozenset(
        {
            "id",
            "isperson",
            "firstname",
            "middlename",
            "lastname",
            "companyname",
            "entityid",
            "entitytitle",
            "searchstage",
            "entitystatus",
            "phone",
            "mobilephone",
            "homephone",
            "altphone",
            "email",
            "subsidiary",
            "comments",
            "datecreated",
            "lastmodifieddate",
        }
    ),
    "vendor": frozenset(
        {
            "id",
            "isperson",
            "firstname",
            "middlename",
            "lastname",
            "companyname",
            "entityid",
            "entitytitle",
            "phone",
            "mobilephone",
            "homephone",
            "altphone",
            "email",
            "subsidiary",
            "comments",
            "datecreated",
            "lastmodifieddate",
        }
    ),
    "employee": frozenset(
        {"id", "firstname", "middlename", "lastname", "email", "subsidiary", "giveaccess", "isinactive"}
    ),
    "customerstatus": frozenset({"id", "name", "stage", "isinactive"}),
    "transaction": frozenset(
        {"id", "tranid", "trandisplayname", "title", "type", "entity", "status", "createddate"}
    ),
    "file": frozenset({"id", "name", "folder"}),
    "phonecall": frozenset(
        {
            "id",
            "title",
            "message",
            "phone",
            "priority",
            "status",
            "startdate",
            "starttime",
            "endtime",
            "contact",
            "company",
        }
    ),
}
_STAGE_NAMES = {"LEAD": "Lead", "PROSPECT": "Prospect", "CUSTOMER": "Customer"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}")


def account_label(account: str) -> str:
    return account.lower().replace("_", "-")


def api_host(account: str) -> str:
    return f"{account_label(account)}.suitetalk.api.netsuite.com"


def app_host(account: str) -> str:
    return f"{account_label(account)}.app.netsuite.com"


def restlet_host(account: str) -> str:
    return f"{account_label(account)}.restlets.api.netsuite.com"


@dataclass
class Account:
    """One NetSuite account: its own ids (an id means nothing in another account)."""

    id: str
    employees: dict[int, JsonDict] = field(default_factory=dict)
    contacts: dict[int, JsonDict] = field(default_factory=dict)
    customers: dict[int, JsonDict] = field(default_factory=dict)
    vendors: dict[int, JsonDict] = field(default_factory=dict)
    statuses: dict[int, JsonDict] = field(default_factory=dict)
    phonecalls: dict[int, JsonDict] = field(default_factory=dict)
    #: sales orders and opportunities (`type` `SalesOrd` / `Opprtnty`, `entity` the customer)
    transactions: dict[int, JsonDict] = field(default_factory=dict)
    #: user notes the `customscript_createusernotes` RESTlet wrote: {id, transaction, title, note}
    user_notes: dict[int, JsonDict] = field(default_factory=dict)
    subsidiaries: set[int] = field(default_factory=lambda: {1})
    #: False: an account without subsidiaries (not OneWorld), where no record has a `subsidiary` field
    one_world: bool = True
    in_flight: int = 0
    #: the RingCentral SuiteApp is installed: its RESTlets are deployed (off: NetSuite's answer for a script
    #: that is not deployed)
    suiteapp: bool = False
    #: the time zone preference (`TIMEZONE`) of each employee, by entity id; unset: `default_timezone`
    timezones: dict[int, str] = field(default_factory=dict)
    default_timezone: str = "America/Los_Angeles"
    #: the logged-in role's permissions, by NetSuite permission id (an id not listed: granted)
    denied_permissions: set[str] = field(default_factory=set)
    #: False: entity ids are generated (Auto-Generated Numbers on), so two customers may share a given entityId
    unique_entity_ids: bool = True
    folders: dict[int, str] = field(default_factory=dict)
    files: dict[int, JsonDict] = field(default_factory=dict)
    #: (phone call id, file id) pairs: a file attached to a record once, however often attached
    attachments: set[tuple[int, int]] = field(default_factory=set)

    def store(self, record_type: str) -> dict[int, JsonDict]:
        return {
            "contact": self.contacts,
            "customer": self.customers,
            "vendor": self.vendors,
            "phonecall": self.phonecalls,
            "employee": self.employees,
            "customerstatus": self.statuses,
            "transaction": self.transactions,
            "file": self.files,
        }[record_type]


class FakeNetSuite(FakeCrm):
    """NetSuite REST web services for two accounts, with OAuth 2.0: `1234567_SB1` (OneWorld: subsidiaries) and
    `7654321` (no subsidiaries: a `subsidiary` column or field is unknown there)."""

    crm_name = "NetSuite"

    def init_state(self) -> None:
        self.grants = OAuthGrants(self.now, expires_in=3600)
        self.redirect_uri = DEFAULT_REDIRECT_URI
        self.accounts: dict[str, Account] = {}
        #: concurrent requests each account allows (REST, SOAP and RESTlets together)
        self.concurrency_limit = 1000
        #: who the consent screen logs in as, per account
        self.login_entity: dict[str, int] = {}
        self.hosts_seen: list[str] = []
        #: False: a create answers 204 without `Location` (a proxy that drops it), to test the connector
        self.send_location = True
        for account_id in (DEFAULT_ACCOUNT, OTHER_ACCOUNT):
            self.add_account(account_id)

    # --- test helpers ----------------------------------------------------------------------------------------

    def add_account(self, account_id: str) -> Account:
        account = Account(account_id, one_world=account_id != OTHER_ACCOUNT)
        with self._lock:
            self.accounts[account_id] = account
            for status_id, name, stage in (
                (6, "LEAD-Unqualified", "LEAD"),
                (7, "LEAD-Qualified", "LEAD"),
                (8, "PROSPECT-In Discussion", "PROSPECT"),
                (13, "CUSTOMER-Closed Won", "CUSTOMER"),
            ):
                account.statuses[status_id] = {
                    "id": status_id,
                    "name": name,
                    "stage": stage,
                    "isInactive": False,
                }
        # entity ids start low in every account: the same id names different people in two accounts
        self.login_entity[account_id] = self.add_employee(account_id, "Alex", "Agent", "alex@example.com")[
            "id"
        ]
        return account

    def account(self, account_id: str = DEFAULT_ACCOUNT) -> Account:
        return self.accounts[account_id]

    def add_employee(
        self, account_id: str, first: str, last: str, email: str | None, *, inactive: bool = False
    ) -> JsonDict:
        record: JsonDict = {
            "id": self.next_id(f"{account_id}:entity", 0),
            "firstName": first,
            "lastName": last,
            "email": email,
            "giveAccess": True,
            "isInactive": inactive,
        }
        with self._lock:
            if self.accounts[account_id].one_world:
                record["subsidiary"] = {"id": "1"}
            self.accounts[account_id].employees[record["id"]] = record
        return record

    def add_contact(
        self, name: str, phone: str, *, account_id: str = DEFAULT_ACCOUNT, field_name: str = "phone"
    ) -> JsonDict:
        first, _, last = name.partition(" ")
        record: JsonDict = {"firstName": first, "lastName": last or first, field_name: phone}
        return self._insert(account_id, "contact", record)

    def add_customer(
        self, name: str, phone: str, *, stage: str = "CUSTOMER", account_id: str = DEFAULT_ACCOUNT
    ) -> JsonDict:
        first, _, last = name.partition(" ")
        status = {"LEAD": 6, "PROSPECT": 8, "CUSTOMER": 13}[stage]
        record: JsonDict = {
            "isPerson": True,
            "firstName": first,
            "lastName": last or first,
            "phone": phone,
            "entityStatus": {"id": str(status)},
        }
        return self._insert(account_id, "customer", record)

    def add_vendor(
        self,
        name: str,
        phone: str,
        *,
        company: bool = False,
        field_name: str = "phone",
        account_id: str = DEFAULT_ACCOUNT,
    ) -> JsonDict:
        """A vendor: a person, or (`company`) a company named `name`."""
        record: JsonDict
        if company:
            record = {"isPerson": False, "companyName": name, "entityId": name, field_name: phone}
        else:
            first, _, last = name.partition(" ")
            record = {"isPerson": True, "firstName": first, "lastName": last or first, field_name: phone}
        return self._insert(account_id, "vendor", record)

    def add_transaction(
        self,
        kind: str,
        entity_id: int,
        name: str,
        *,
        created: str = "12/1/2026",
        account_id: str = DEFAULT_ACCOUNT,
    ) -> JsonDict:
        """A sales order (`kind` "salesorder") or opportunity ("opportunity") of a customer; `created` in the
        account's date format (M/D/YYYY), as SuiteQL answers `createddate`."""
        type_code = {"salesorder": "SalesOrd", "opportunity": "Opprtnty"}[kind]
        with self._lock:
            record: JsonDict = {
                "id": self.next_id(f"{account_id}:transaction", 400),
                "type": type_code,
                "entity": {"id": str(entity_id)},
                "createdDate": created,
            }
            prefix = "Sales Order" if kind == "salesorder" else "Opportunity"
            record["tranId"] = f"{'SO' if kind == 'salesorder' else 'OP'}{record['id']}"
            record["tranDisplayName"] = f"{prefix} #{record['tranId']} {name}".strip()
            record["title"] = name
            self.accounts[account_id].transactions[record["id"]] = record
        return record

    def link_contact(self, contact_id: int, company_id: int, account_id: str = DEFAULT_ACCOUNT) -> None:
        """The contact works for that customer (its `company`)."""
        with self._lock:
            self.accounts[account_id].contacts[contact_id]["company"] = {"id": str(company_id)}

    def user_notes(self, account_id: str = DEFAULT_ACCOUNT) -> list[JsonDict]:
        """The user notes the createusernotes RESTlet wrote, oldest first."""
        with self._lock:
            return [dict(n) for _, n in sorted(self.accounts[account_id].user_notes.items())]

    def connector_config(self) -> dict[str, str]:
        return {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uri": self.redirect_uri,
            "base_url": f"{self.base_url}/~{{host}}",
        }

    def env(self) -> dict[str, str]:
        return {f"NETSUITE_{key.upper()}": value for key, value in self.connector_config().items()}

    def url(self, host: str, path: str) -> str:
        return f"{self.base_url}/~{host}{path}"

    def issue_tokens(
        self, account_id: str = DEFAULT_ACCOUNT, scopes: str = "restlets rest_webservices"
    ) -> TokenPair:
        """Tokens of the account's login employee, as a consent granting `scopes` would give them."""
        with self._lock:
            entity = self.login_entity.get(account_id)
            return self.grants.issue_tokens(account=account_id, entity=entity, scopes=scopes)

    def stage_of(self, record: JsonDict, account_id: str = DEFAULT_ACCOUNT) -> str:
        status_id = int(record.get("entityStatus", {}).get("id") or 13)
        return str(self.accounts[account_id].statuses[status_id]["stage"])

    # --- the host in front of every request ------------------------------------------------------------------

    def path(self, path: str, account_id: str = DEFAULT_ACCOUNT) -> str:
        """A REST path as the fake sees it: behind the account's API host."""
        return f"/~{api_host(account_id)}{path}"

    def app(self) -> ASGIApp:  # type: ignore[override]
        inner = super().app()
        pattern = re.compile(r"^/~([^/]+)(/.*)$")

        async def by_host(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            match = pattern.match(scope["path"])
            host = match.group(1).lower() if match else ""
            account = self._account_of_host(host)
            if match is None or account is None:
                await self._send_error(
                    send, 404, "Unknown host: no NetSuite account lives there.", "NOT_FOUND"
                )
                return
            with self._lock:
                self.hosts_seen.append(host)
                over = account.in_flight >= self.concurrency_limit and host.endswith(
                    (".suitetalk.api.netsuite.com", ".restlets.api.netsuite.com")
                )
                if not over:
                    account.in_flight += 1
            if over:
                await self._send_error(
                    send,
                    429,
                    "Request blocked: this account's concurrency limit is used up; retry later.",
                    "CONCURRENCY_LIMIT_EXCEEDED",
                )
                return
            try:
                await inner(scope, receive, send)
            finally:
                with self._lock:
                    account.in_flight -= 1

        return by_host

    def _account_of_host(self, host: str) -> Account | None:
        for account in self.accounts.values():
            if host in (api_host(account.id), app_host(account.id), restlet_host(account.id)):
                return account
        return None

    async def _send_error(self, send: Send, status: int, detail: str, code: str) -> None:
        body = orjson.dumps(self.error_body(status, detail, {"o:errorCode": code}))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _host_account(self, request: FakeRequest, kind: str = "api") -> Account:
        host = str(request.path_params.get("host", "")).lower()
        account = self._account_of_host(host)
        wanted = api_host if kind == "api" else app_host
        if account is None or host != wanted(account.id):
            raise HttpError(
                404, f"This resource is not served on {host}.", extra={"o:errorCode": "NOT_FOUND"}
            )
        return account

    # --- FakeCrm hooks --------------------------------------------------------------------------------------

    def routes(self) -> list[FakeRoute]:
        return [
            FakeRoute("GET", "/~{host}/app/login/oauth2/authorize.nl", self._authorize, auth=False),
            FakeRoute("POST", "/~{host}/services/rest/auth/oauth2/v1/token", self._token, auth=False),
            FakeRoute("POST", "/~{host}/services/rest/auth/oauth2/v1/revoke", self._revoke, auth=False),
            FakeRoute("POST", "/~{host}" + SUITEQL_PATH, self._suiteql),
            FakeRoute("POST", "/~{host}" + RECORD_PREFIX + "/{type}", self._create),
            FakeRoute("GET", "/~{host}" + RECORD_PREFIX + "/{type}/{id}", self._get),
            FakeRoute("PATCH", "/~{host}" + RECORD_PREFIX + "/{type}/{id}", self._patch),
            # RESTlets answer auth failures in their own envelope: the one dispatcher checks host, token and scope
            FakeRoute("GET", "/~{host}" + RESTLET_PATH, self._restlet, auth=False),
            FakeRoute("POST", "/~{host}" + RESTLET_PATH, self._restlet, auth=False),
            FakeRoute("PUT", "/~{host}" + RESTLET_PATH, self._restlet, auth=False),
        ]

    def authenticate(self, request: FakeRequest) -> bool:
        token = bearer_token(request.headers.get("authorization", ""))
        if token is None:
            return False
        host = str(request.path_params.get("host", "")).lower()
        with self._lock:
            if not self.grants.access_valid(token):
                return False
            extra = self.grants.extra_of_access(token)
        account, scopes = extra.get("account"), str(extra.get("scopes") or "").split()
        # REST web services only (RESTlets check their own login in `_restlet`): a token works on its own
        # account's host, and only if its consent granted `rest_webservices`
        return isinstance(account, str) and host == api_host(account) and "rest_webservices" in scopes

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        code = extra.get("o:errorCode") or ("INVALID_LOGIN" if status == 401 else "USER_ERROR")
        if status == 429 and "o:errorCode" not in extra:
            code = "CONCURRENCY_LIMIT_EXCEEDED"
        return {
            "type": f"https://www.rfc-editor.org/rfc/rfc9110.html#status.{status}",
            "title": _STATUS_TITLES.get(status, "Internal Server Error" if status >= 500 else "Error"),
            "status": status,
            "o:errorDetails": [{"detail": message, "o:errorCode": code}],
        }

    def unauthorized(self) -> Response:
        return self.error(401, "Invalid login attempt. For more details, see the Login Audit Trail.")

    # --- OAuth ----------------------------------------------------------------------------------------------

    async def _authorize(self, request: FakeRequest) -> Response:
        """The consent screen, approved: back to the redirect URI with the code and who logged in where."""
        account = self._host_account(request, "app")
        query = request.query
        state = query.get("state", "")
        scopes = set(query.get("scope", "").replace(",", " ").split())
        if (
            query.get("response_type") != "code"
            or query.get("client_id") != CLIENT_ID
            or query.get("redirect_uri") != self.redirect_uri
            or not 22 <= len(state) <= 1024
            or "rest_webservices" not in scopes
        ):
            raise HttpError(400, "invalid_request")
        with self._lock:
            entity = self.login_entity[account.id]
            code = self.grants.issue_code(
                query["redirect_uri"],
                " ".join(sorted(scopes & {"rest_webservices", "restlets"})),
                account=account.id,
                entity=entity,
                scopes=" ".join(sorted(scopes & {"rest_webservices", "restlets"})),
            )
        params = f"state={state}&role=3&entity={entity}&company={account.id}&code={code}"
        return RedirectResponse(f"{query['redirect_uri']}?{params}", status_code=302)

    async def _token(self, request: FakeRequest) -> Response:
        account = self._host_account(request)
        form = request.form or {}
        basic = basic_credentials(request.headers.get("authorization", ""))
        if basic is None or basic[0] != CLIENT_ID or not same_secret(basic[1], CLIENT_SECRET):
            return self.json({"error": "invalid_client"}, 401)
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                exchanged = self.grants.exchange_code(form.get("code", ""), form.get("redirect_uri"))
                if exchanged is None or exchanged[1].get("account") != account.id:
                    return self.json({"error": "invalid_grant"}, 400)
                pair = exchanged[0]
            elif grant_type == "refresh_token":
                token = form.get("refresh_token", "")
                refreshed = self.grants.refresh(token)
                if refreshed is None:
                    return self.json({"error": "invalid_grant"}, 400)
                pair = refreshed
            else:
                return self.json({"error": "unsupported_grant_type"}, 400)
        answer: JsonDict = {
            "access_token": pair.access_token,
            "expires_in": str(pair.expires_in),  # NetSuite sends a string
            "token_type": "Bearer",
        }
        if grant_type == "authorization_code":
            answer["refresh_token"] = pair.refresh_token
        return self.json(answer)

    async def _revoke(self, request: FakeRequest) -> Response:
        self._host_account(request)
        basic = basic_credentials(request.headers.get("authorization", ""))
        if basic is None or basic[0] != CLIENT_ID or not same_secret(basic[1], CLIENT_SECRET):
            return self.json({"error": "invalid_client"}, 401)
        token = (request.form or {}).get("token", "")
        if not token:
            return self.json({"error": "invalid_request"}, 400)
        with self._lock:
            self.grants.revoke(token)
        return Response(status_code=200)

    # --- SuiteQL --------------------------------------------------------------------------------------------

    async def _suiteql(self, request: FakeRequest) -> Response:
        account = self._host_account(request)
        if request.headers.get("prefer", "").strip().lower() != "transient":
            raise HttpError(
                400,
                "The request header 'Prefer: transient' is required for this resource.",
                extra={"o:errorCode": "INVALID_HEADER"},
            )
        unknown = set(request.query) - {"limit", "offset"}
        if unknown:
            raise HttpError(
                400,
                f"Unknown query parameter {sorted(unknown)[0]}",
                extra={"o:errorCode": "INVALID_PARAMETER"},
            )
        limit = request.int_param("limit", MAX_PAGE, minimum=1) or MAX_PAGE
        offset = request.int_param("offset", 0, minimum=0) or 0
        if limit > MAX_PAGE:
            raise HttpError(
                400, "The limit must be between 1 and 1000.", extra={"o:errorCode": "INVALID_PARAMETER"}
            )
        body = request.json_object()
        query = body.get("q")
        if not isinstance(query, str) or set(body) != {"q"}:
            raise HttpError(
                400, 'The request body must be {"q": "<query>"}.', extra={"o:errorCode": "INVALID_PARAMETER"}
            )
        if not account.one_world and re.search(r"\bsubsidiary\b", query, re.I):
            raise SuiteQlError("Field 'subsidiary' was not found.")
        with self._lock:
            rows = run_suiteql(query, lambda table: self._table(account, table))
        page = rows[offset : offset + limit]
        has_more = offset + limit < len(rows)
        return self.json(
            {
                "links": [],
                "count": len(page),
                "hasMore": has_more,
                "items": [{"links": [], **row} for row in page],
                "offset": offset,
                "totalResults": len(rows),
            }
        )

    def _table(self, account: Account, table: str) -> list[JsonDict]:
        """A table's rows as SuiteQL shows them: lower-case names, string values, null columns left out."""
        # a role denied `TRAN_SALESORD` knows no `transaction` table (this fake's simplification of NetSuite's
        # per-type transaction permissions)
        hidden = table == "transaction" and "TRAN_SALESORD" in account.denied_permissions
        # a role denied `LIST_VENDOR` knows no `vendor` table
        hidden = hidden or (table == "vendor" and "LIST_VENDOR" in account.denied_permissions)
        if table not in TABLE_COLUMNS or hidden:
            raise SuiteQlError(f"Record '{table}' was not found.")
        rows = []
        for record in account.store(table).values():
            row: JsonDict = {}
            for key, value in record.items():
                name = key.lower()
                if value is None or value == "":
                    continue
                if isinstance(value, dict):
                    value = value.get("id")
                if isinstance(value, bool):
                    value = "T" if value else "F"
                row[name] = str(value)
            if table in ("contact", "customer", "vendor"):
                title = " ".join(
                    str(record.get(k) or "") for k in ("firstName", "middleName", "lastName")
                ).split()
                row["entitytitle"] = " ".join(title) or str(record.get("companyName") or "")
                row["datecreated"] = "12/1/2026"
                row["lastmodifieddate"] = "12/1/2026"
            if table == "vendor":
                row.setdefault("isperson", "F")
            if table == "customer":
                row["searchstage"] = _STAGE_NAMES[self._stage(account, record)]
                row.setdefault("isperson", "F")
            rows.append({k: v for k, v in row.items() if k in TABLE_COLUMNS[table]})
        return rows

    def _stage(self, account: Account, record: JsonDict) -> str:
        status_id = int((record.get("entityStatus") or {}).get("id") or 13)
        return str(account.statuses[status_id]["stage"])

    # --- records --------------------------------------------------------------------------------------------

    def _record_type(self, request: FakeRequest) -> str:
        record_type = str(request.path_params["type"]).lower()
        if record_type not in RECORD_FIELDS:
            raise HttpError(
                404, f"Record type '{record_type}' does not exist.", extra={"o:errorCode": "NONEXISTENT_ID"}
            )
        return record_type

    def _validate(self, account: Account, record_type: str, body: JsonDict) -> None:
        if "subsidiary" in body and not account.one_world:
            raise HttpError(
                400, "Invalid field name: subsidiary.", extra={"o:errorCode": "INVALID_KEY_OR_REF"}
            )
        for key, value in body.items():
            if key not in RECORD_FIELDS[record_type]:
                raise HttpError(
                    400, f"Invalid field name: {key}.", extra={"o:errorCode": "INVALID_KEY_OR_REF"}
                )
            if key == "transaction":
                _check_transaction(account, value)
            elif key in _REFERENCES:
                ref = value.get("id") if isinstance(value, dict) else None
                exists = False
                if isinstance(ref, str | int) and str(ref).isdigit():
                    exists = any(
                        int(ref) in account.subsidiaries
                        if target == "subsidiary"
                        else int(ref) in account.store(target)
                        for target in _REFERENCES[key]
                    )
                if not exists:
                    raise HttpError(
                        400,
                        f"Invalid Field Value {value} for the following field: {key}.",
                        extra={"o:errorCode": "INVALID_KEY_OR_REF"},
                    )
        if record_type == "phonecall":
            for key, pattern in (
                ("startDate", _DATE),
                ("completedDate", _DATE),
                ("startTime", _TIME),
                ("endTime", _TIME),
            ):
                if key in body and not (isinstance(body[key], str) and pattern.fullmatch(body[key])):
                    raise HttpError(400, f"Invalid value for {key}.", extra={"o:errorCode": "INVALID_VALUE"})
            if "status" in body and body["status"] not in ("COMPLETE", "SCHEDULED"):
                raise HttpError(400, "Invalid value for status.", extra={"o:errorCode": "INVALID_VALUE"})
            if "priority" in body and body["priority"] not in ("HIGH", "MEDIUM", "LOW"):
                raise HttpError(400, "Invalid value for priority.", extra={"o:errorCode": "INVALID_VALUE"})

    def _insert(self, account_id: str, record_type: str, body: JsonDict) -> JsonDict:
        kind = "phonecall" if record_type == "phonecall" else "entity"
        record = {"id": self.next_id(f"{account_id}:{kind}", 0 if kind == "entity" else 500), **body}
        with self._lock:
            self.accounts[account_id].store(record_type)[record["id"]] = record
        return record

    async def _create(self, request: FakeRequest) -> Response:
        account = self._host_account(request)
        record_type = self._record_type(request)
        body = request.json_object()
        with self._lock:
            self._validate(account, record_type, body)
        if record_type == "phonecall" and not body.get("title"):
            raise HttpError(400, "Please enter value(s) for: Subject", extra={"o:errorCode": "USER_ERROR"})
        if record_type in ("contact", "customer", "vendor"):
            person = record_type == "contact" or body.get("isPerson") is True
            if person and not body.get("lastName") and not body.get("firstName"):
                raise HttpError(400, "Please enter value(s) for: Name", extra={"o:errorCode": "USER_ERROR"})
            if not person and not body.get("companyName"):
                raise HttpError(
                    400, "Please enter value(s) for: Company Name", extra={"o:errorCode": "USER_ERROR"}
                )
        if record_type in ("customer", "vendor") and body.get("entityId") and account.unique_entity_ids:
            with self._lock:
                taken = any(
                    c.get("entityId") == body["entityId"]
                    for c in (*account.customers.values(), *account.vendors.values())
                )
            if taken:
                raise HttpError(400, "This entity already exists.", extra={"o:errorCode": "DUP_ENTITY"})
        record = self._insert(account.id, record_type, body)
        location = f"{request.base_url}/~{api_host(account.id)}{RECORD_PREFIX}/{record_type}/{record['id']}"
        return Response(status_code=204, headers={"Location": location} if self.send_location else None)

    def _find(self, account: Account, request: FakeRequest, record_type: str) -> JsonDict:
        raw = str(request.path_params["id"])
        record = account.store(record_type).get(int(raw)) if raw.isdigit() else None
        if record is None:
            raise HttpError(
                404,
                "The record instance does not exist. Provide a valid record instance ID.",
                extra={"o:errorCode": "NONEXISTENT_ID"},
            )
        return record

    async def _get(self, request: FakeRequest) -> Response:
        account = self._host_account(request)
        record_type = self._record_type(request)
        with self._lock:
            record = dict(self._find(account, request, record_type))
        answer: JsonDict = {"links": []}
        for key, value in record.items():
            if key == "id":
                answer["id"] = str(value)
            elif isinstance(value, dict):
                answer[key] = {"links": [], "id": str(value.get("id")), "refName": str(value.get("id"))}
            elif value is not None:
                answer[key] = value
        return self.json(answer)

    async def _patch(self, request: FakeRequest) -> Response:
        account = self._host_account(request)
        record_type = self._record_type(request)
        body = request.json_object()
        with self._lock:
            record = self._find(account, request, record_type)
            self._validate(account, record_type, body)
            record.update(body)
        return Response(status_code=204)

    # --- RESTlets (the RingCentral SuiteApp) -----------------------------------------------------------------
    #
    # One URL for every script: `/app/site/hosting/restlet.nl?script=<script id>&deploy=<deployment id>` on the
    # account's RESTlet host. `restlet_scripts()` maps a script id to its deployment and a handler per HTTP
    # method; add a script there (never a second route for `restlet.nl`: two routes on one path shadow each
    # other). `Account.suiteapp` off: every script, createusernotes included, answers as not deployed. Errors
    # are SuiteScript's RESTlet envelope `{"error": {code, message}}`, not the REST web services one. Oracle,
    # "SuiteScript 2.x RESTlet Error Handling" (section_4634920277): 400 for an unhandled error (a script that is
    # not deployed included), 401 without a valid login, 405 for a method the script does not implement, 415 for
    # an unsupported Content-Type.

    def restlet_scripts(self) -> dict[str, tuple[str, dict[str, RestletHandler]]]:
        """script id -> (deployment id, {method: handler}) of the SuiteApp's RESTlets this fake serves."""
        return {
            "customscript_getcurrentuser": ("customdeploy_getcurrentuser", {"GET": self._rl_current_user}),
            "customscript_getoneworldlicense_scriptid": (
                "customdeploy_getoneworldlicense_deployid",
                {"GET": self._rl_one_world},
            ),
            "customscript_checkrolepermissionscriptid": (
                "customdeploy_checkrolepermissiondeployid",
                {"POST": self._rl_permissions},
            ),
            "customscript_gettimezone": ("customdeploy_gettimezone", {"GET": self._rl_timezone}),
            "customscript_getappconnectfolderbyname": (
                "customdeploy_getappconnectfolderbyname",
                {"GET": self._rl_folder_by_name},
            ),
            "customscript_createappconnectfolder": (
                "customdeploy_createappconnectfolder",
                {"POST": self._rl_create_folder},
            ),
            "customscript_createappconnectfile": (
                "customdeploy_createappconnectfile",
                {"POST": self._rl_create_file},
            ),
            "customscript_attachfilewithphonecalls": (
                "customdeploy_attachfilewithphonecalls",
                {"POST": self._rl_attach_file},
            ),
            "customscript_createusernotes": (
                "customdeploy_createusernotes",
                {"POST": self._rl_create_user_note, "PUT": self._rl_update_user_note},
            ),
        }

    def restlet_path(self, account_id: str = DEFAULT_ACCOUNT) -> str:
        """The RESTlet URL path as the fake sees it (every script shares it; the script is in the query)."""
        return f"/~{restlet_host(account_id)}{RESTLET_PATH}"

    def restlet_calls(self, script: str, account_id: str = DEFAULT_ACCOUNT) -> list[Any]:
        return [r for r in self.requests_to(self.restlet_path(account_id)) if r.query.get("script") == script]

    def _restlet_error(self, status: int, code: str, message: str) -> Response:
        return self.json({"error": {"code": code, "message": message}}, status)

    async def _restlet(self, request: FakeRequest) -> Response:
        host = str(request.path_params.get("host", "")).lower()
        account = self._account_of_host(host)
        if account is None or host != restlet_host(account.id):
            return self._restlet_error(404, "NOT_FOUND", "No RESTlet is served on this host.")
        token = bearer_token(request.headers.get("authorization", ""))
        with self._lock:
            grant = self.grants.extra_of_access(token) if token and self.grants.access_valid(token) else {}
        if grant.get("account") != account.id or "restlets" not in str(grant.get("scopes") or "").split():
            # a token without the `restlets` scope is no login for a RESTlet
            return self._restlet_error(401, "INVALID_LOGIN_ATTEMPT", "Invalid login attempt.")
        script = request.query.get("script", "")
        known = self.restlet_scripts().get(script)
        if not account.suiteapp or known is None or request.query.get("deploy") != known[0]:
            return self._restlet_error(
                400, "SSS_INVALID_SCRIPTLET_ID", "That Suitelet is invalid, disabled, or no longer exists."
            )
        handler = known[1].get(request.method)
        if handler is None:
            return self._restlet_error(
                405, "SSS_INVALID_HTTP_METHOD", f"This RESTlet does not implement {request.method}."
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method in ("POST", "PUT"):
            # Oracle: a RESTlet call with a body needs its Content-Type (JSON here: these scripts read objects)
            if content_type != "application/json":
                return self._restlet_error(415, "SSS_UNSUPPORTED_CONTENT_TYPE", "Unsupported Content-Type.")
            if not isinstance(request.json, dict):
                return self._restlet_error(400, "SSS_INVALID_JSON", "The request body is not a JSON object.")
        elif await request.raw.body():
            return self._restlet_error(400, "SSS_REQUEST_BODY_NOT_ALLOWED", "A GET request has no body.")
        entity = grant.get("entity")
        try:
            with self._lock:
                answer = handler(account, int(entity) if entity is not None else 0, request)
        except RestletScriptError as exc:
            return self._restlet_error(400, exc.code, str(exc))
        return self.json(answer)

    def _rl_current_user(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        employee = account.employees[entity]
        name = f"{employee.get('firstName') or ''} {employee.get('lastName') or ''}".strip()
        answer: JsonDict = {"id": entity, "name": name, "email": employee.get("email") or "", "role": 3}
        if account.one_world:
            answer["subsidiary"] = str((employee.get("subsidiary") or {}).get("id") or "")
        return answer

    def _rl_one_world(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        return {"oneWorldEnabled": account.one_world}

    def _rl_permissions(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        wanted = request.json.get("requiredPermissions")
        if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
            raise RestletScriptError("JS_EXCEPTION", "requiredPermissions must be a list of permission ids.")
        return {"permissionResults": {p: p not in account.denied_permissions for p in wanted}}

    def _rl_timezone(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        return {"userTimezone": account.timezones.get(entity, account.default_timezone)}

    def _rl_folder_by_name(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        name = request.query.get("name", "")
        found = [{"id": str(i), "name": n} for i, n in sorted(account.folders.items()) if n == name]
        if not found:
            return {"success": False, "message": f"No folder found with name {name}"}
        return {"success": True, "results": found}

    def _rl_create_folder(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        name = request.json.get("folderName")
        if not isinstance(name, str) or not name:
            raise RestletScriptError("JS_EXCEPTION", "folderName is required.")
        if name in account.folders.values():
            # NetSuite keeps folder names unique among siblings
            raise RestletScriptError("DUP_FOLDER", "A folder with this name already exists.")
        folder_id = self.next_id(f"{account.id}:folder", 700)
        account.folders[folder_id] = name
        return {"success": True, "folderId": folder_id}

    def _rl_create_file(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        body = request.json
        folder = body.get("folderId")
        if not isinstance(folder, int | str) or int_or_zero(folder) not in account.folders:
            raise RestletScriptError("INVALID_KEY_OR_REF", "Invalid folder reference key.")
        name, content = body.get("fileName"), body.get("content")
        if not isinstance(name, str) or not name or not isinstance(content, str):
            raise RestletScriptError("JS_EXCEPTION", "fileName and content are required.")
        # a second file of the same name is a second file here: the connector, not the fake, avoids it
        file_id = self.next_id(f"{account.id}:file", 900)
        account.files[file_id] = {
            "id": file_id,
            "name": name,
            "folder": int_or_zero(folder),
            "content": content,
        }
        return {"success": True, "fileId": file_id}

    def _rl_attach_file(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        call_id, file_id = (
            int_or_zero(request.json.get("phoneCallId")),
            int_or_zero(request.json.get("fileId")),
        )
        if call_id not in account.phonecalls or file_id not in account.files:
            raise RestletScriptError("INVALID_KEY_OR_REF", "Invalid phone call or file reference key.")
        account.attachments.add((call_id, file_id))
        return {"success": True}

    # customscript_createusernotes: user notes on a transaction (reference src/connectors/netsuite/index.ts
    # handleDispositionNote / createMessageLog; its tests tests/connectors/netsuite.int.test.ts answer
    # {success: true, noteId}). The script's source is not public: how it answers a transaction or note it
    # cannot find is this fake's choice ({success: false, message}).

    def _rl_create_user_note(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        """POST {salesOrderId, noteTitle, noteText}: a new user note on that transaction (any transaction type:
        the reference sends opportunity ids in `salesOrderId` too)."""
        body = request.json
        transaction = int_or_zero(body.get("salesOrderId"))
        if transaction not in account.transactions:
            return {"success": False, "message": "Transaction not found."}
        note_id = max([700, *account.user_notes]) + 1
        account.user_notes[note_id] = {
            "id": note_id,
            "transaction": transaction,
            "title": str(body.get("noteTitle") or ""),
            "note": str(body.get("noteText") or ""),
        }
        return {"success": True, "noteId": note_id}

    def _rl_update_user_note(self, account: Account, entity: int, request: FakeRequest) -> JsonDict:
        """PUT {noteId, noteTitle, noteText}: the note's title and text replaced."""
        body = request.json
        note_id = int_or_zero(body.get("noteId"))
        note = account.user_notes.get(note_id)
        if note is None:
            return {"success": False, "message": "Note not found."}
        note["title"] = str(body.get("noteTitle") or "")
        note["note"] = str(body.get("noteText") or "")
        return {"success": True, "noteId": note_id}


class RestletScriptError(Exception):
    """An error a SuiteApp script throws: NetSuite answers 400 with its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


RestletHandler = Callable[[Account, int, FakeRequest], JsonDict]


def int_or_zero(value: Any) -> int:
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return int(text) if text.isdigit() else 0


def _check_transaction(account: Account, value: object) -> None:
    """A phone call's `transaction` names an existing transaction; a `type` given must be its type."""
    ref = value.get("id") if isinstance(value, dict) else None
    record = account.transactions.get(int(ref)) if isinstance(ref, int | str) and str(ref).isdigit() else None
    kind = value.get("type") if isinstance(value, dict) else None
    types = {"salesorder": "SalesOrd", "opportunity": "Opprtnty"}
    if record is None or (kind is not None and types.get(str(kind).lower()) != record["type"]):
        raise HttpError(
            400,
            f"Invalid Field Value {value} for the following field: transaction.",
            extra={"o:errorCode": "INVALID_KEY_OR_REF"},
        )


# ------------------------------------------------------------------------------------------------------------
# A small SuiteQL: SELECT columns FROM table [WHERE condition] [ORDER BY column [ASC|DESC]]
# ------------------------------------------------------------------------------------------------------------


class SuiteQlError(HttpError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            400,
            f"Invalid search query. Detailed unprocessed description follows. {detail}",
            extra={"o:errorCode": "INVALID_PARAMETER"},
        )


_TOKEN = re.compile(r"\s*(?:('(?:[^']|'')*')|(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(<>|[=(),*]))")
_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<columns>.+?)\s+FROM\s+(?P<table>[A-Za-z_]+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER\s+BY\s+(?P<order>[A-Za-z_]+)(?:\s+(?P<dir>ASC|DESC))?)?\s*$",
    re.I | re.S,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise SuiteQlError(f"Unexpected text at {position}.")
        position = match.end()
        string, number, word, symbol = match.groups()
        if string is not None:
            tokens.append(("str", string[1:-1].replace("''", "'")))
        elif number is not None:
            tokens.append(("num", number))
        elif word is not None:
            tokens.append(("word", word))
        else:
            tokens.append(("sym", symbol))
    return tokens


Row = JsonDict
Predicate = Callable[[Row], bool]
Operand = Callable[[Row], "str | None"]


class _Parser:
    def __init__(self, text: str, columns: frozenset[str]) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        self.columns = columns

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise SuiteQlError("Unexpected end of query.")
        self.position += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token[1].upper() != value:
            raise SuiteQlError(f"Expected {value}.")

    def is_word(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1].upper() == value

    def condition(self) -> Predicate:
        parts = [self.conjunction()]
        while self.is_word("OR"):
            self.take()
            parts.append(self.conjunction())
        return lambda row: any(p(row) for p in parts)

    def conjunction(self) -> Predicate:
        parts = [self.comparison()]
        while self.is_word("AND"):
            self.take()
            parts.append(self.comparison())
        return lambda row: all(p(row) for p in parts)

    def comparison(self) -> Predicate:
        token = self.peek()
        if token == ("sym", "("):
            self.take()
            inner = self.condition()
            self.expect(")")
            return inner
        left = self.operand()
        operator = self.take()[1].upper()
        right = self.operand()
        if operator == "=":
            return lambda row: (a := left(row)) is not None and a == right(row)
        if operator == "<>":
            return lambda row: (a := left(row)) is not None and (b := right(row)) is not None and a != b
        if operator == "LIKE":

            def like(row: Row) -> bool:
                value, pattern = left(row), right(row)
                if value is None or pattern is None:
                    return False
                regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
                return re.fullmatch(regex, value, re.S) is not None

            return like
        raise SuiteQlError(f"Unsupported operator {operator}.")

    def operand(self) -> Operand:
        kind, value = self.take()
        if kind == "str":
            return lambda row: value
        if kind == "num":
            return lambda row: value
        if kind == "word" and value.upper() == "REGEXP_REPLACE":
            self.expect("(")
            source = self.operand()
            self.expect(",")
            pattern_kind, pattern = self.take()
            self.expect(",")
            replacement_kind, replacement = self.take()
            self.expect(")")
            if pattern_kind != "str" or replacement_kind != "str":
                raise SuiteQlError("REGEXP_REPLACE takes text.")
            compiled = re.compile(pattern)
            return lambda row: None if (v := source(row)) is None else compiled.sub(replacement, v)
        if kind == "word" and value.upper() == "LOWER":
            self.expect("(")
            inner = self.operand()
            self.expect(")")
            return lambda row: None if (v := inner(row)) is None else v.lower()
        if kind == "word":
            column = value.lower()
            if column not in self.columns:
                raise SuiteQlError(f"Field '{column}' was not found.")
            return lambda row: row.get(column)
        raise SuiteQlError(f"Unexpected {value}.")


_DATE_VALUE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _sort_key(value: object) -> tuple[int, str]:
    """Numbers by value, dates (M/D/YYYY, as SuiteQL answers them) by day, other text as text."""
    text = str(value or "")
    if text.isdigit():
        return int(text), ""
    date = _DATE_VALUE.fullmatch(text)
    if date:
        return int(date[3]) * 10000 + int(date[1]) * 100 + int(date[2]), ""
    return 0, text


def run_suiteql(query: str, table_rows: Callable[[str], list[Row]]) -> list[Row]:
    """The rows a query selects (every row before paging)."""
    match = _QUERY.match(query)
    if match is None:
        raise SuiteQlError("Only SELECT ... FROM ... [WHERE ...] [ORDER BY ...] is understood here.")
    table = match["table"].lower()
    rows = table_rows(table)
    columns = TABLE_COLUMNS[table]
    wanted = [c.strip().lower() for c in match["columns"].split(",")]
    if wanted != ["*"]:
        for column in wanted:
            if column not in columns:
                raise SuiteQlError(f"Field '{column}' for record '{table}' was not found.")
    if match["where"]:
        parser = _Parser(match["where"], columns)
        predicate = parser.condition()
        if parser.peek() is not None:
            raise SuiteQlError("Unexpected text after the condition.")
        rows = [row for row in rows if predicate(row)]
    order = (match["order"] or "id").lower()
    if order not in columns:
        raise SuiteQlError(f"Field '{order}' was not found.")
    rows.sort(key=lambda r: _sort_key(r.get(order)))
    if (match["dir"] or "").upper() == "DESC":
        rows.reverse()
    if wanted == ["*"]:
        return rows
    return [{k: v for k, v in row.items() if k in wanted} for row in rows]

"""A strict fake of Bullhorn's OAuth server and REST API, built from Bullhorn's REST reference.

Every Bullhorn host is served by this one fake under a path prefix named after the host's first label (the
connector's `origin` setting maps `https://rest-east.bullhornstaffing.com/x` to `<fake>/rest-east/x`):

- `rest` (the global host): `GET /rest-services/loginInfo?username=` names the user's data centre;
- `auth`, `auth-<dc>`: `/oauth/authorize` and `/oauth/token`; `/oauth/authorize?action=Login&username=&password=`
  signs an API user in without a browser (302 with the code; a wrong password gets the login page again, 200);
  a code or refresh token of another data centre
  answers 307 to the right one, as Bullhorn documents; client credentials are parameters (query or form);
  access tokens last 10 minutes and each refresh token works once (a second use is `invalid_grant`);
- `rest-<dc>`: `POST /rest-services/login?version=*&access_token=` opens a REST session (`BhRestToken`) and
  names the corporation's `restUrl` (`https://<swimlane>.bullhornstaffing.com/rest-services/<corptoken>/`);
  a session idle for `session_ttl` seconds ends (401);
- `<swimlane>/rest-services/<corptoken>/...`: `settings`, `entity` (`PUT` creates, `POST` updates, `GET`
  reads), `search` (the Lucene subset the connector sends) and `query` (the `where` subset it sends). Times
  must be epoch milliseconds and `minutesSpent` an integer; an unknown field is refused.

Ids are unique only inside a corporation: each corporation numbers its own records from the same start.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    JsonDict,
    OAuthGrants,
    TokenPair,
    same_secret,
)

DOMAIN = "bullhornstaffing.com"
REDIRECT_URI = "https://ringcentral.github.io/ringcentral-embeddable/redirect.html"
CLIENT_ID = "bh-client-id"
CLIENT_SECRET = "bh-client-secret"
ACCESS_TOKEN_SECONDS = 600
SESSION_TTL = 600.0

PERSON_ENTITIES = ("Candidate", "ClientContact", "Lead")
#: fields each writable entity accepts (a create or update naming any other is a 400)
WRITABLE: dict[str, frozenset[str]] = {
    "Candidate": frozenset(
        {
            "firstName",
            "lastName",
            "name",
            "phone",
            "mobile",
            "phone2",
            "phone3",
            "workPhone",
            "email",
            "status",
            "comments",
        }
    ),
    "ClientContact": frozenset(
        {
            "firstName",
            "lastName",
            "name",
            "phone",
            "mobile",
            "phone2",
            "phone3",
            "email",
            "status",
            "clientCorporation",
            "comments",
        }
    ),
    "Lead": frozenset(
        {
            "firstName",
            "lastName",
            "name",
            "phone",
            "mobile",
            "phone2",
            "phone3",
            "email",
            "status",
            "comments",
        }
    ),
    "ClientCorporation": frozenset({"name", "companyDescription", "phone"}),
    "Note": frozenset(
        {
            "comments",
            "personReference",
            "action",
            "dateAdded",
            "minutesSpent",
            "externalID",
            "commentingPerson",
        }
    ),
}
READABLE_EXTRA = frozenset({"id", "dateAdded", "dateLastModified", "isDeleted"})
#: each person entity's `status` picklist (Bullhorn's field map options, per corporation; these the defaults)
DEFAULT_STATUSES: dict[str, list[str]] = {
    "Candidate": ["New Lead", "Active", "Placed", "Archived"],
    "ClientContact": ["New Lead", "Active", "Passive", "Archive"],
    "Lead": ["New", "Qualified", "Converted"],
}
PHONE_FIELDS = frozenset({"phone", "mobile", "phone2", "phone3", "workPhone"})


@dataclass(slots=True)
class Corporation:
    id: int
    token: str
    dc: str
    swimlane: str
    comment_actions: list[str]
    records: dict[str, dict[int, JsonDict]] = field(default_factory=dict)
    statuses: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_STATUSES.items()}
    )
    next_id: int = 100


@dataclass(slots=True)
class BhUser:
    id: int
    username: str
    corporation: int
    first_name: str
    last_name: str
    tz_offset_est: int = 0
    #: the password an API user signs in with (`action=Login`); empty: no password login
    password: str = ""


@dataclass(slots=True)
class Session:
    user: int
    corporation: int
    last_used: float


class FakeBullhorn(FakeCrm):
    """Bullhorn's data centres, OAuth, REST login and the entities the connector uses."""

    crm_name = "Bullhorn"

    def init_state(self) -> None:
        self.grants = OAuthGrants(self.now, expires_in=ACCESS_TOKEN_SECONDS)
        self.grants.refresh_token_mode = "rotate"  # Bullhorn: a refresh token works once
        self.session_ttl = SESSION_TTL
        self.corporations: dict[int, Corporation] = {}
        self.users: dict[str, BhUser] = {}
        self.sessions: dict[str, Session] = {}
        self.rest_logins = 0
        self.redirects = 0
        #: refresh requests refused (a refresh token presented again, or unknown)
        self.refresh_refusals = 0
        #: (corporation, note id) -> the id of the user whose REST session created the Note
        self.note_authors: dict[tuple[int, int], int] = {}
        #: password logins (`action=Login`) answered, successful or not
        self.password_logins = 0
        #: every update (`POST entity/<Entity>/<id>`) taken: (corporation, entity, id, the session's user id)
        self.updates: list[tuple[int, str, int, int]] = []
        self.add_corporation(1001, "corp1a", dc="east", swimlane="rest91")
        self.add_user("agent.east", corporation=1001, user_id=501, first="Ada", last="Agent")

    # --- seeding ------------------------------------------------------------------------------------------

    def add_corporation(self, corp_id: int, token: str, *, dc: str, swimlane: str) -> Corporation:
        with self._lock:
            corporation = Corporation(corp_id, token, dc, swimlane, ["Call", "SMS", "Left Message"])
            corporation.records = {e: {} for e in (*PERSON_ENTITIES, "ClientCorporation", "Note")}
            self.corporations[corp_id] = corporation
            return corporation

    def add_user(
        self, username: str, *, corporation: int, user_id: int, first: str, last: str, password: str = ""
    ) -> BhUser:
        with self._lock:
            user = BhUser(user_id, username, corporation, first, last, password=password)
            self.users[username] = user
            return user

    def add_person(
        self,
        entity: str,
        name: str,
        phone: str,
        *,
        corporation: int = 1001,
        status: str = "Active",
        **extra: Any,
    ) -> JsonDict:
        first, _, last = name.partition(" ")
        record: JsonDict = {
            "firstName": first,
            "lastName": last,
            "name": name,
            "phone": phone,
            "status": status,
        }
        record.update(extra)
        if entity == "ClientContact":
            record.setdefault("clientCorporation", {"id": self._company(corporation)})
        return self._insert(corporation, entity, record)

    def _company(self, corporation: int) -> int:
        companies = self.corporations[corporation].records["ClientCorporation"]
        if companies:
            return next(iter(companies))
        return int(self._insert(corporation, "ClientCorporation", {"name": "Acme Staffing"})["id"])

    def _insert(self, corporation: int, entity: str, record: JsonDict) -> JsonDict:
        with self._lock:
            corp = self.corporations[corporation]
            corp.next_id += 1
            stored = {
                **record,
                "id": corp.next_id,
                "dateAdded": int(self.now() * 1000) if entity != "Note" else record.get("dateAdded"),
                "isDeleted": False,
            }
            corp.records[entity][corp.next_id] = stored
            return stored

    def notes(self, corporation: int = 1001) -> list[JsonDict]:
        with self._lock:
            return [dict(n) for n in self.corporations[corporation].records["Note"].values()]

    def people(self, corporation: int = 1001) -> list[tuple[str, JsonDict]]:
        with self._lock:
            corp = self.corporations[corporation]
            return [(e, dict(r)) for e in PERSON_ENTITIES for r in corp.records[e].values()]

    def issue_code(self, username: str = "agent.east") -> str:
        """A code of the data centre the user is in now (a grant stays with the data centre that issued it)."""
        with self._lock:
            return self.grants.issue_code(
                REDIRECT_URI, username=username, dc=self._dc_of(self.users[username])
            )

    def issue_tokens(self, username: str = "agent.east") -> TokenPair:
        with self._lock:
            return self.grants.issue_tokens(username=username, dc=self._dc_of(self.users[username]))

    def env(self) -> dict[str, str]:
        """The connector server's settings pointing the Bullhorn connector at this fake."""
        return {
            "BULLHORN_CLIENT_ID": CLIENT_ID,
            "BULLHORN_CLIENT_SECRET": CLIENT_SECRET,
            "BULLHORN_REDIRECT_URI": REDIRECT_URI,
            "BULLHORN_ORIGIN": self.base_url,
        }

    def connector_config(self) -> dict[str, str]:
        return {k.removeprefix("BULLHORN_").lower(): v for k, v in self.env().items()}

    # --- FakeCrm hooks ------------------------------------------------------------------------------------

    def routes(self) -> list[FakeRoute]:
        rest = "/{host}/rest-services/{corp}"
        return [
            FakeRoute("GET", "/rest/rest-services/loginInfo", self._login_info, auth=False),
            FakeRoute("GET", "/{host}/oauth/authorize", self._authorize, auth=False),
            FakeRoute("POST", "/{host}/oauth/token", self._token, auth=False),
            FakeRoute("POST", "/{host}/rest-services/login", self._rest_login, auth=False),
            FakeRoute("GET", rest + "/settings/{names}", self._settings),
            FakeRoute("GET", rest + "/ping", self._ping),
            FakeRoute("PUT", rest + "/entity/{entity}", self._create),
            FakeRoute("GET", rest + "/entity/{entity}/{id}", self._get),
            FakeRoute("POST", rest + "/entity/{entity}/{id}", self._update),
            FakeRoute("POST", rest + "/search/{entity}", self._search),
            FakeRoute("GET", rest + "/query/{entity}", self._query),
            FakeRoute("GET", rest + "/meta/{entity}", self._meta),
        ]

    def _session_of(self, request: FakeRequest) -> Session | None:
        token = request.headers.get("bhresttoken") or request.query.get("BhRestToken") or ""
        with self._lock:
            session = self.sessions.get(token)
            if session is None or self.now() - session.last_used > self.session_ttl:
                return None
            corp = self.corporations[session.corporation]
            if request.path_params.get("corp") != corp.token:
                return None
            session.last_used = self.now()
            return session

    def authenticate(self, request: FakeRequest) -> bool:
        return self._session_of(request) is not None

    def credential_of(self, request: FakeRequest) -> str:
        return request.headers.get("bhresttoken", "")

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        return {"errorMessage": message, "errorCode": status, **extra}

    def unauthorized(self) -> Response:
        return self.error(
            401,
            "Bad 'BhRestToken' or timed-out.",
            extra={"errorMessageKey": "errors.authentication.invalidRestToken"},
        )

    # --- data centres and OAuth -------------------------------------------------------------------------------

    def _redirect(self, request: FakeRequest, host: str) -> Response:
        """Bullhorn's answer at the wrong data centre: 307 to the same path there."""
        self.redirects += 1
        rest = request.path.split("/", 2)[2]
        query = f"?{request.raw_query}" if request.raw_query else ""
        return RedirectResponse(f"https://{host}.{DOMAIN}/{rest}{query}", status_code=307)

    def _user(self, username: str) -> BhUser:
        user = self.users.get(username)
        if user is None:
            raise HttpError(400, "Invalid username")
        return user

    def _dc_of(self, user: BhUser) -> str:
        return self.corporations[user.corporation].dc

    async def _login_info(self, request: FakeRequest) -> Response:
        user = self._user(request.query.get("username", ""))
        dc = self._dc_of(user)
        return self.json(
            {
                "atsUrl": f"https://cls-{dc}.{DOMAIN}",
                "oauthUrl": f"https://auth-{dc}.{DOMAIN}/oauth",
                "restUrl": f"https://rest-{dc}.{DOMAIN}/rest-services",
            }
        )

    async def _authorize(self, request: FakeRequest) -> Response:
        """The login page, already signed in as `username`: back to the redirect URI with a code."""
        query = request.query
        user = self._user(query.get("username", ""))
        if request.path_params["host"] != f"auth-{self._dc_of(user)}":
            return self._redirect(request, f"auth-{self._dc_of(user)}")
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            raise HttpError(400, "invalid_request")
        if query.get("action") == "Login":
            with self._lock:
                self.password_logins += 1
            if not user.password or not same_secret(query.get("password", ""), user.password):
                return Response("<html><form>Bullhorn login: invalid credentials</form></html>", 200)
        code = self.issue_code(user.username)
        params = {"code": code, **({"state": query["state"]} if query.get("state") else {})}
        return RedirectResponse(
            f"{query.get('redirect_uri') or REDIRECT_URI}?{urlencode(params)}", status_code=302
        )

    async def _token(self, request: FakeRequest) -> Response:
        params = {**request.query, **(request.form or {})}
        if params.get("client_id") != CLIENT_ID or not same_secret(
            params.get("client_secret", ""), CLIENT_SECRET
        ):
            return self.json({"error": "invalid_client", "error_description": "Bad client credentials"}, 401)
        host = request.path_params["host"]
        grant_type = params.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                dc = self._grant_dc(self.grants._codes.get(params.get("code", "")))
                if dc and host != f"auth-{dc}":
                    return self._redirect(request, f"auth-{dc}")
                exchanged = self.grants.exchange_code(params.get("code", ""), params.get("redirect_uri"))
                pair = exchanged[0] if exchanged else None
            elif grant_type == "refresh_token":
                dc = self._grant_dc(self.grants._refresh.get(params.get("refresh_token", "")))
                if dc and host != f"auth-{dc}":
                    return self._redirect(request, f"auth-{dc}")
                pair = self.grants.refresh(params.get("refresh_token", ""))
            else:
                return self.json({"error": "unsupported_grant_type"}, 400)
        if pair is None:
            if grant_type == "refresh_token":
                self.refresh_refusals += 1
            return self.json({"error": "invalid_grant", "error_description": "Invalid grant"}, 400)
        return self.json(
            {
                "access_token": pair.access_token,
                "token_type": "Bearer",
                "expires_in": pair.expires_in,
                "refresh_token": pair.refresh_token,
            }
        )

    @staticmethod
    def _grant_dc(grant: Any) -> str | None:
        """The data centre that issued a code or refresh token (None for an unknown one)."""
        return None if grant is None else str(grant.extra.get("dc") or "") or None

    async def _rest_login(self, request: FakeRequest) -> Response:
        if request.query.get("version") is None:
            raise HttpError(400, "version is required")
        token = request.query.get("access_token", "")
        with self._lock:
            self.rest_logins += 1
            if not self.grants.access_valid(token):
                return self.error(
                    401,
                    "Invalid access token",
                    extra={"errorMessageKey": "errors.authentication.invalidAccessToken"},
                )
            user = self.users[str(self.grants.extra_of_access(token)["username"])]
            corp = self.corporations[user.corporation]
            if request.path_params["host"] != f"rest-{corp.dc}":
                return self._redirect(request, f"rest-{corp.dc}")
            session_token = f"bh-{secrets.token_urlsafe(12)}"
            self.sessions[session_token] = Session(user.id, corp.id, self.now())
        return self.json(
            {
                "BhRestToken": session_token,
                "restUrl": f"https://{corp.swimlane}.{DOMAIN}/rest-services/{corp.token}/",
            }
        )

    # --- REST ---------------------------------------------------------------------------------------------

    def _context(self, request: FakeRequest) -> tuple[Session, Corporation] | Response:
        session = self._session_of(request)
        if session is None:
            return self.unauthorized()
        corp = self.corporations[session.corporation]
        if request.path_params["host"] != corp.swimlane:
            return self._redirect(request, corp.swimlane)
        return session, corp

    async def _settings(self, request: FakeRequest) -> Response:
        context = self._context(request)
        if isinstance(context, Response):
            return context
        session, corp = context
        known = {
            "userId": session.user,
            "corporationId": corp.id,
            "commentActionList": list(corp.comment_actions),
        }
        answer: JsonDict = {}
        for name in str(request.path_params["names"]).split(","):
            if name not in known:
                raise HttpError(400, f"Unknown setting: {name}")
            answer[name] = known[name]
        return self.json(answer)

    async def _ping(self, request: FakeRequest) -> Response:
        context = self._context(request)
        if isinstance(context, Response):
            return context
        return self.json({"sessionExpires": int((self.now() + self.session_ttl) * 1000)})

    def _entity(self, request: FakeRequest, corp: Corporation) -> dict[int, JsonDict]:
        entity = str(request.path_params["entity"])
        if entity == "CorporateUser":
            return {
                u.id: {
                    "id": u.id,
                    "firstName": u.first_name,
                    "lastName": u.last_name,
                    "name": f"{u.first_name} {u.last_name}",
                    "timeZoneOffsetEST": u.tz_offset_est,
                    "username": u.username,
                    "email": f"{u.username}@example.com",
                }
                for u in self.users.values()
                if u.corporation == corp.id
            }
        if entity not in corp.records:
            raise HttpError(400, f"Invalid entity type: {entity}")
        return corp.records[entity]

    def _fields(self, request: FakeRequest, entity: str) -> list[str] | None:
        raw = request.query.get("fields")
        if not raw:
            raise HttpError(400, "fields is required")
        names = [f.strip() for f in raw.split(",") if f.strip()]
        allowed = WRITABLE.get(entity, frozenset()) | READABLE_EXTRA
        if entity == "CorporateUser":
            allowed = frozenset(
                {"id", "firstName", "lastName", "name", "timeZoneOffsetEST", "username", "email"}
            )
        if entity == "Note":
            allowed |= {"personReference"}
        for name in names:
            if name not in allowed:
                raise HttpError(400, f"Invalid field '{name}' on {entity}")
        return names

    def _project(self, record: JsonDict, names: list[str] | None, corp: Corporation) -> JsonDict:
        out: JsonDict = {}
        for name in names or list(record):
            value = record.get(name)
            if name == "personReference" and isinstance(value, dict):
                person = self._person(corp, int(value["id"]))
                value = {
                    "id": person["id"],
                    "firstName": person.get("firstName"),
                    "lastName": person.get("lastName"),
                }
            out[name] = value
        return out

    def _person(self, corp: Corporation, person_id: int) -> JsonDict:
        for entity in PERSON_ENTITIES:
            if person_id in corp.records[entity]:
                return corp.records[entity][person_id]
        raise HttpError(400, f"personReference {person_id} does not exist")

    def _validate(self, corp: Corporation, entity: str, body: JsonDict, *, create: bool) -> None:
        if entity not in WRITABLE:
            raise HttpError(400, f"Cannot write {entity}")
        for name in body:
            if name not in WRITABLE[entity]:
                raise HttpError(400, f"Invalid field '{name}' on {entity}")
        for name in ("dateAdded", "minutesSpent"):
            if name in body and (not isinstance(body[name], int) or isinstance(body[name], bool)):
                raise HttpError(400, f"{name} must be an integer (epoch milliseconds for dates)")
        if entity == "Note":
            reference = body.get("personReference")
            if create and not (isinstance(reference, dict) and isinstance(reference.get("id"), int)):
                raise HttpError(400, "personReference must be {id}")
            if isinstance(reference, dict):
                self._person(corp, reference["id"])
            commenter = body.get("commentingPerson")
            if commenter is not None and not (
                isinstance(commenter, dict)
                and any(u.id == commenter.get("id") and u.corporation == corp.id for u in self.users.values())
            ):
                raise HttpError(400, "commentingPerson must be a CorporateUser of this corporation")
        if entity == "ClientContact" and create:
            company = body.get("clientCorporation")
            if not (isinstance(company, dict) and company.get("id") in corp.records["ClientCorporation"]):
                raise HttpError(400, "clientCorporation is required")

    async def _create(self, request: FakeRequest) -> Response:
        context = self._context(request)
        if isinstance(context, Response):
            return context
        session, corp = context
        entity = str(request.path_params["entity"])
        body = request.json_object()
        with self._lock:
            self._validate(corp, entity, body, create=True)
            record = self._insert(corp.id, entity, body)
            if entity == "Note":
                self.note_authors[(corp.id, int(record["id"]))] = session.user
        return self.json(
            {
                "changedEntityType": entity,
                "changedEntityId": record["id"],
                "changeType": "INSERT",
                "data": body,
            }
        )

    async def _get(self, request: FakeRequest) -> Response:
        context = self._context(request)
        if isinstance(context, Response):
            return context
        _, corp = context
        entity = str(request.path_params["entity"])
        names = self._fields(request, entity)
        with self._lock:
            record = self._entity(request, corp).get(request.path_int("id"))
            if record is None or record.get("isDeleted"):
                raise HttpError(404, f"Entity {entity} with id {request.path_params['id']} not found")
            return self.json({"data": self._project(record, names, corp)})

    async def _meta(self, request: FakeRequest) -> Response:
        """`GET meta/<Entity>?fields=`: each named field's meta; `status` of a person carries its picklist as
        value/label `options` (Bullhorn's _meta.md: "options ... an array of value/label pairs; may be missing")."""
        context = self._context(request)
        if isinstance(context, Response):
            return context
        _, corp = context
        entity = str(request.path_params["entity"])
        if entity not in WRITABLE:
            raise HttpError(404, f"Entity {entity} not found")
        names = self._fields(request, entity) or []
        fields: list[JsonDict] = []
        for name in names:
            meta: JsonDict = {"name": name, "type": "SCALAR", "dataType": "String", "label": name}
            if name == "status" and entity in corp.statuses:
                meta["inputType"] = "SELECT"
                meta["options"] = [{"value": v, "label": v} for v in corp.statuses[entity]]
            fields.append(meta)
        return self.json({"entity": entity, "label": entity, "fields": fields})

    async def _update(self, request: FakeRequest) -> Response:
        context = self._context(request)
        if isinstance(context, Response):
            return context
        session, corp = context
        entity = str(request.path_params["entity"])
        body = request.json_object()
        with self._lock:
            records = self._entity(request, corp)
            record = records.get(request.path_int("id"))
            if record is None:
                raise HttpError(404, f"Entity {entity} with id {request.path_params['id']} not found")
            self._validate(corp, entity, body, create=False)
            record.update(body)
            self.updates.append((corp.id, entity, int(record["id"]), session.user))
        return self.json(
            {
                "changedEntityType": entity,
                "changedEntityId": record["id"],
                "changeType": "UPDATE",
                "data": body,
            }
        )

    async def _search(self, request: FakeRequest) -> Response:
        context = self._context(request)
        if isinstance(context, Response):
            return context
        _, corp = context
        entity = str(request.path_params["entity"])
        names = self._fields(request, entity)
        count = request.int_param("count", 20, minimum=1) or 20
        if count > 500:
            raise HttpError(400, "count must be at most 500")
        query = request.json_object().get("query")
        if not isinstance(query, str) or not query:
            raise HttpError(400, "query is required")
        matcher = _lucene(query)
        with self._lock:
            found = [r for r in self._entity(request, corp).values() if matcher(r)]
            data = [self._project(r, names, corp) for r in found[:count]]
        return self.json({"total": len(found), "start": 0, "count": len(data), "data": data})

    async def _query(self, request: FakeRequest) -> Response:
        context = self._context(request)
        if isinstance(context, Response):
            return context
        _, corp = context
        entity = str(request.path_params["entity"])
        names = self._fields(request, entity)
        where = request.query.get("where", "")
        if entity == "CorporateUser":
            if where != "isDeleted=false":
                raise HttpError(400, "Unsupported where clause")
            start = request.int_param("start", 0, minimum=0) or 0
            count = request.int_param("count", 20, minimum=1) or 20
            if count > 500:
                raise HttpError(400, "count must be at most 500")
            with self._lock:
                users = sorted(self._entity(request, corp).values(), key=lambda u: int(u["id"]))
                data = [self._project(u, names, corp) for u in users[start : start + count]]
            return self.json({"start": start, "count": len(data), "data": data})
        match = re.fullmatch(r"externalID='([^']*)' AND isDeleted=false", where)
        if match is None:
            raise HttpError(400, "Unsupported where clause")
        with self._lock:
            found = [
                r
                for r in self._entity(request, corp).values()
                if r.get("externalID") == match.group(1) and not r.get("isDeleted")
            ]
            data = [self._project(r, names, corp) for r in found]
        return self.json({"start": 0, "count": len(data), "data": data})


def _digits(text: Any) -> str:
    return "".join(ch for ch in str(text or "") if ch.isdigit())


_TOKEN = re.compile(
    r"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<op>AND|OR|NOT)(?=[\s(]|$)"""
    r"""|(?P<field>[A-Za-z][A-Za-z0-9_.]*):(?:"(?P<phrase>(?:[^"\\]|\\.)*)"|(?P<bare>[A-Za-z0-9_.]+)(?=[\s)]|$)))"""
)


def _words(text: Any) -> list[str]:
    """Words as Bullhorn's index splits them (assumed: letters and digits, case-insensitive)."""
    return re.findall(r"[^\W_]+", str(text or "").lower())


def _lex(query: str) -> list[tuple[str, str, str]]:
    """The query as tokens: ("(",..), (")",..), ("op", AND|OR|NOT), ("term", field, value). Anything else (an
    unquoted special character, an unterminated phrase, a bare word without a field) is a 400, as Lucene's
    parser refuses it or reads it otherwise than meant."""
    tokens: list[tuple[str, str, str]] = []
    position = 0
    while position < len(query):
        if not query[position:].strip():
            break
        match = _TOKEN.match(query, position)
        if match is None:
            raise HttpError(400, f"Cannot parse query at {position}")
        if match.group("open"):
            tokens.append(("(", "", ""))
        elif match.group("close"):
            tokens.append((")", "", ""))
        elif match.group("op"):
            tokens.append(("op", match.group("op"), ""))
        elif match.group("phrase") is not None:
            value = re.sub(r"\\(.)", r"\1", match.group("phrase"))
            if not _words(value):
                raise HttpError(400, "Cannot parse query: an empty phrase")
            tokens.append(("term", match.group("field"), value))
        else:
            tokens.append(("term", match.group("field"), match.group("bare")))
        position = match.end()
    return tokens


def _lucene(query: str) -> Any:
    """The subset the connector sends, parsed strictly: `(<term> OR <term> ...) AND <term> NOT <term>` or one
    term, each term `field:value` or `field:"phrase"` (backslash escapes inside the phrase).

    A phone field matches when its digits hold the term's digits (the reference searches digits only);
    `isDeleted` compares the flag; other fields match when their words hold the value's words in a row
    (case-insensitive, as Bullhorn's search finds "Bob Smith" in "Bob Smith Ltd").
    """
    tokens = _lex(query)
    alternatives: list[tuple[str, str]] = []
    required: list[tuple[str, str]] = []
    excluded: list[tuple[str, str]] = []
    i = 0
    if tokens and tokens[0][0] == "(":
        i = 1
        while True:
            if i >= len(tokens) or tokens[i][0] != "term":
                raise HttpError(400, "Cannot parse query: a term expected in the group")
            alternatives.append((tokens[i][1], tokens[i][2]))
            i += 1
            if i < len(tokens) and tokens[i] == ("op", "OR", ""):
                i += 1
                continue
            if i < len(tokens) and tokens[i][0] == ")":
                i += 1
                break
            raise HttpError(400, "Cannot parse query: OR or ) expected in the group")
    elif tokens and tokens[0][0] == "term":
        required.append((tokens[0][1], tokens[0][2]))
        i = 1
    else:
        raise HttpError(400, "Unparseable query")
    while i < len(tokens):
        if i + 1 >= len(tokens) or tokens[i][0] != "op" or tokens[i][1] == "OR" or tokens[i + 1][0] != "term":
            raise HttpError(400, "Cannot parse query: AND <term> or NOT <term> expected")
        (excluded if tokens[i][1] == "NOT" else required).append((tokens[i + 1][1], tokens[i + 1][2]))
        i += 2

    def matches(record: JsonDict) -> bool:
        def hit(name: str, value: str) -> bool:
            if name == "isDeleted":
                return str(bool(record.get("isDeleted"))).lower() == value
            stored = record.get(name)
            if name in PHONE_FIELDS:
                return bool(_digits(value)) and _digits(value) in _digits(stored)
            have, want = _words(stored), _words(value)
            return bool(want) and any(
                have[k : k + len(want)] == want for k in range(len(have) - len(want) + 1)
            )

        if alternatives and not any(hit(n, v) for n, v in alternatives):
            return False
        if not all(hit(n, v) for n, v in required):
            return False
        return not any(hit(n, v) for n, v in excluded)

    return matches

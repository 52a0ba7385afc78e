"""A faithful in-memory Clio (API v4 plus its OAuth server) on loopback HTTP, built on tests/support/fake_crm.py.

What it holds to, because a connector bug should show up here and not in production:

- four regions, each with its own developer application: a code is redeemed only by the application of the
  region it was issued for; client credentials in the form body (Clio's documented way) or a Basic header;
- Bearer tokens that expire, refresh, and end with `/oauth/deauthorize`;
- every body wrapped in `{"data": ...}`, every answer too; unknown or malformed input is refused with a 4xx
  in Clio's error envelope `{"error": {"type", "message"}}` (validation failures are 422);
- `fields` is honoured: without it a record is only `id` and `etag`, nested resources likewise, an unknown
  field is a 400, so a connector that forgets to ask for a field gets nothing;
- the contacts `query` is a case-insensitive search over the text as stored (name, numbers, email): Clio
  documents it only as a "wildcard search", so `query_mode` picks the reading, `"substring"` (the term is a
  piece of a stored value) or `"words"` (the term's whitespace-separated words are whole consecutive words of
  a stored value); a connector must find people under both;
- a query parameter an endpoint does not take is a 400 (Clio's own filters, `fields`, and paging only), and
  a body that is not JSON is a 415;
- lists page with `limit` (at most 200) and `meta.paging.next` absolute URLs: by `page_token` (cursor) in
  Clio's default `id(asc)` order, by `offset` with any other order (Clio's paging documentation: cursor
  paging is for `id(asc)` only), an `order` other than `id(asc)` without `offset` being refused;
- X-RateLimit-Limit/Remaining/Reset on every API answer, 429 with Retry-After;
- Documents are uploaded in Clio's three steps: `POST documents` (name and a Matter or Contact parent) answers
  the version's `uuid`, `put_url` and `put_headers`; the bytes are PUT to `put_url` (the storage bucket, played
  here under `/bucket/`) with exactly those headers and without Clio's token; `PATCH documents/{id}` with the
  uuid and `fully_uploaded: true` completes it, only once the bytes arrived.

It also plays RingCentral's media host (`/restapi/v1.0/account/~/extension/~/message-store/...`): attachments
registered with `add_media` are served to the Bearer token `rc_token` only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.responses import RedirectResponse, Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    OAuthGrants,
    TokenPair,
    absolute_url,
    basic_credentials,
    bearer_token,
    cursor_offset,
    make_cursor,
    offset_page,
    same_secret,
)

JsonDict = dict[str, Any]

#: region prefix ("" is the US) -> host; the application of each region has its own id and secret
REGION_HOSTS = {"": "app.clio.com", "eu": "eu.app.clio.com", "au": "au.app.clio.com", "ca": "ca.app.clio.com"}
DEFAULT_REDIRECT_URI = "https://ringcentral.github.io/ringcentral-embeddable/redirect.html"
MAX_LIMIT = 200

_SCALAR = None
#: the fields each resource offers; a set names the fields of a nested resource (or of each list element)
CONTACT_SCHEMA: dict[str, frozenset[str] | None] = {
    "id": _SCALAR,
    "etag": _SCALAR,
    "name": _SCALAR,
    "first_name": _SCALAR,
    "last_name": _SCALAR,
    "type": _SCALAR,
    "created_at": _SCALAR,
    "updated_at": _SCALAR,
    "primary_email_address": _SCALAR,
    "primary_phone_number": _SCALAR,
    "phone_numbers": frozenset({"id", "etag", "name", "number", "default_number"}),
}
USER_SCHEMA: dict[str, frozenset[str] | None] = dict.fromkeys(
    ("id", "etag", "name", "first_name", "last_name", "email", "enabled", "time_zone"), _SCALAR
)
MATTER_SCHEMA: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(("id", "etag", "display_number", "description", "status"), _SCALAR),
    "client": frozenset({"id", "etag", "name", "type"}),
}
RELATIONSHIP_SCHEMA: dict[str, frozenset[str] | None] = {
    "id": _SCALAR,
    "etag": _SCALAR,
    "description": _SCALAR,
    "matter": frozenset(k for k in MATTER_SCHEMA if k != "client"),
    "contact": frozenset({"id", "etag", "name", "type"}),
}
_PARTY = frozenset({"id", "etag", "name", "type"})
COMMUNICATION_SCHEMA: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(
        ("id", "etag", "subject", "body", "type", "received_at", "created_at", "updated_at"), _SCALAR
    ),
    "matter": frozenset({"id", "etag", "display_number", "description", "status"}),
    "senders": _PARTY,
    "receivers": _PARTY,
    "user": frozenset({"id", "etag", "name"}),
}

ACTIVITY_SCHEMA: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(("id", "etag", "type", "quantity", "date", "note", "non_billable"), _SCALAR),
    "communication": frozenset({"id", "etag"}),
    "matter": frozenset({"id", "etag", "display_number"}),
}

PHONE_NAMES = frozenset({"Work", "Home", "Mobile", "Fax", "Pager", "Skype", "Other"})
CONTACT_TYPES = frozenset({"Person", "Company"})
COMMUNICATION_TYPES = frozenset({"PhoneCommunication", "EmailCommunication"})
_CONTACT_KEYS = frozenset(
    {"name", "first_name", "last_name", "type", "phone_numbers", "email_addresses", "title"}
)
#: `notification_event_subscribers` is sent by the reference connector in production, so Clio takes it
_COMMUNICATION_KEYS = frozenset(
    {
        "subject",
        "body",
        "type",
        "received_at",
        "senders",
        "receivers",
        "matter",
        "notification_event_subscribers",
    }
)
DOCUMENT_VERSION_SCHEMA = frozenset(
    {"id", "etag", "uuid", "put_url", "put_headers", "fully_uploaded", "size"}
)
DOCUMENT_SCHEMA: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(("id", "etag", "name", "content_type", "received_at", "created_at"), _SCALAR),
    "parent": frozenset({"id", "etag", "type"}),
    "latest_document_version": DOCUMENT_VERSION_SCHEMA,
}
_DOCUMENT_KEYS = frozenset({"name", "parent", "received_at", "content_type"})
_DOCUMENT_PATCH_KEYS = frozenset({"name", "parent", "uuid", "fully_uploaded", "received_at"})
#: what the storage bucket requires of every upload (Clio answers them as `put_headers`)
BUCKET_HEADERS = {"x-amz-server-side-encryption": "AES256", "x-amz-meta-clio": "document"}
MEDIA_PATH = "/restapi/v1.0/account/~/extension/~/message-store/{message}/content/{attachment}"
_ACTIVITY_KEYS = frozenset({"type", "quantity", "date", "note", "non_billable", "communication", "matter"})
#: paging parameters every list takes (Clio's paging documentation)
_PAGING = frozenset({"fields", "limit", "page_token", "order", "offset"})
#: the query parameters each list endpoint takes besides paging (the connector's and a few more of Clio's)
CONTACT_FILTERS = frozenset(
    {"query", "type", "initial", "email_only", "client_only", "updated_since", "created_since"}
)
MATTER_FILTERS = frozenset({"client_id", "status", "query", "updated_since", "created_since"})
RELATIONSHIP_FILTERS = frozenset({"contact_id", "matter_id"})
COMMUNICATION_FILTERS = frozenset({"contact_id", "matter_id", "type", "user_id", "query"})
ACTIVITY_FILTERS = frozenset({"communication_id", "matter_id", "type", "user_id", "query"})
#: offset paging reaches this many records at most (Clio's paging documentation)
MAX_OFFSET_RECORDS = 10_000
QueryMode = Literal["substring", "words"]
Handler = Callable[[FakeRequest], Awaitable[Response]]

_ERROR_TYPES = {
    400: "ArgumentError",
    401: "AuthenticationError",
    403: "ForbiddenError",
    404: "RecordNotFound",
    415: "UnsupportedMediaType",
    422: "RecordInvalid",
    429: "RateLimited",
}


def invalid(message: str) -> HttpError:
    """A 422, as Clio answers a record it will not save."""
    return HttpError(422, f"Validation failed: {message}")


def parse_fields(
    raw: str | None, schema: dict[str, frozenset[str] | None]
) -> dict[str, frozenset[str] | None]:
    """`id,name,phone_numbers{name,number}` -> {field: nested fields or None}; a bad field is a 400."""
    if not raw:
        return {"id": None, "etag": None}
    spec: dict[str, frozenset[str] | None] = {}
    for part in re.findall(r"[^,{}]+(?:\{[^{}]*\})?", raw):
        name, _, rest = part.strip().partition("{")
        name = name.strip()
        if name not in schema:
            raise HttpError(400, f"Invalid fields: {name}")
        if not rest:
            spec[name] = None
            continue
        nested = schema[name]
        wanted = frozenset(f.strip() for f in rest.rstrip("}").split(",") if f.strip())
        if nested is None or "{" in rest or not wanted <= nested:
            raise HttpError(400, f"Invalid nested fields for {name}: {rest.rstrip('}')}")
        spec[name] = wanted
    if raw.count("{") != raw.count("}"):
        raise HttpError(400, "Invalid fields parameter")
    return spec


def project(record: JsonDict, spec: dict[str, frozenset[str] | None]) -> JsonDict:
    """The record as Clio shows it for these fields: a nested resource without braces is only id and etag."""

    def nested(value: Any, wanted: frozenset[str]) -> Any:
        if isinstance(value, dict):
            return {k: value.get(k) for k in wanted}
        if isinstance(value, list):
            return [nested(v, wanted) for v in value]
        return value

    out: JsonDict = {}
    for name, wanted in spec.items():
        value = record.get(name)
        if isinstance(value, (dict, list)):
            out[name] = nested(value, wanted or frozenset({"id", "etag"}))
        else:
            out[name] = value
    return out


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _valid_date(value: Any) -> bool:
    """A date (`2026-03-12`), or a full ISO time, which the reference sends in production and Clio takes."""
    try:
        datetime.strptime(str(value), "%Y-%m-%d")
    except ValueError:
        return _valid_time(value)
    return True


def _valid_time(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class FakeClio(FakeCrm):
    """Clio's OAuth server and API v4 (contacts, matters, relationships, communications, who_am_i)."""

    crm_name = "Clio"

    def __init__(
        self, *, redirect_uri: str = DEFAULT_REDIRECT_URI, query_mode: QueryMode = "substring"
    ) -> None:
        self.redirect_uri = redirect_uri
        self.query_mode: QueryMode = query_mode
        #: region -> (client id, client secret) of the firm's developer application in that region
        self.clients = {
            region: (f"clio-{region or 'us'}-client", f"clio-{region or 'us'}-secret")
            for region in REGION_HOSTS
        }
        super().__init__()

    # --- state ----------------------------------------------------------------------------------------------

    def init_state(self) -> None:
        #: how `query` matches (see the module docstring); tests set "words" after a reset
        self.query_mode: QueryMode = "substring"
        #: characters `query` refuses with a 400 (a stricter query syntax); none by default
        self.query_refuses = ""
        self.grants = OAuthGrants(self.now)
        self.grants.refresh_token_mode = "omit"  # Clio's refresh answer carries no new refresh token
        self.rate_limit.window = 60.0  # Clio counts per access token in 60-second windows
        self.deauthorize_calls = 0
        self._refresh_of: dict[str, str] = {}
        self.user: JsonDict = {
            "id": 345678,
            "etag": '"u1"',
            "name": "Jordan Lee",
            "first_name": "Jordan",
            "last_name": "Lee",
            "email": "jordan.lee@example.test",
            "enabled": True,
            "time_zone": "Pacific Time (US & Canada)",
        }
        self.contacts: dict[int, JsonDict] = {}
        self.colleagues: list[JsonDict] = []  # other users of the account (GET users)
        self.matters: dict[int, JsonDict] = {}
        self.relationships: dict[int, JsonDict] = {}
        self.communications: dict[int, JsonDict] = {}
        self.activities: dict[int, JsonDict] = {}
        self.documents: dict[int, JsonDict] = {}
        #: bytes the bucket received, by version uuid
        self.uploads: dict[str, bytes] = {}
        #: RingCentral's media: (message id, attachment id) -> (content type, bytes)
        self.media: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.rc_token = "rc-access-token-1"

    def reset_requests(self) -> None:
        """Forget the requests seen so far (a test counting the calls of one step)."""
        with self._lock:
            self.requests.clear()

    def add_contact(
        self, name: str, phones: list[str], *, type: str = "Person", email: str | None = None
    ) -> JsonDict:
        """A contact as if typed into Clio, numbers kept exactly as given."""
        contact_id = self.next_id("contact", 7000)
        now = _now_iso()
        record: JsonDict = {
            "id": contact_id,
            "etag": f'"c{contact_id}"',
            "name": name,
            "first_name": name.split(" ")[0] if type == "Person" else None,
            "last_name": name.split(" ")[-1] if type == "Person" else None,
            "type": type,
            "created_at": now,
            "updated_at": now,
            "primary_email_address": email,
            "primary_phone_number": phones[0] if phones else None,
            "phone_numbers": [
                {
                    "id": self.next_id("phone", 100),
                    "etag": '"p"',
                    "name": "Work",
                    "number": number,
                    "default_number": index == 0,
                }
                for index, number in enumerate(phones)
            ],
        }
        with self._lock:
            self.contacts[contact_id] = record
        return record

    def add_matter(self, description: str, *, client_id: int | None, status: str = "Open") -> JsonDict:
        matter_id = self.next_id("matter", 9000)
        record: JsonDict = {
            "id": matter_id,
            "etag": f'"m{matter_id}"',
            "display_number": f"{matter_id:05d}-{description.split(' ')[0]}",
            "description": description,
            "status": status,
            "client": self._contact_ref(client_id) if client_id is not None else None,
        }
        with self._lock:
            self.matters[matter_id] = record
        return record

    def relate(self, contact_id: int, matter_id: int, description: str = "Witness") -> JsonDict:
        relationship_id = self.next_id("relationship", 500)
        record = {
            "id": relationship_id,
            "etag": f'"r{relationship_id}"',
            "description": description,
            "contact": {"id": contact_id},
            "matter": {"id": matter_id},
        }
        with self._lock:
            self.relationships[relationship_id] = record
        return record

    # --- OAuth helpers for tests ----------------------------------------------------------------------------

    def issue_code(self, region: str = "", *, redirect_uri: str | None = None) -> str:
        """An authorization code, as if the user approved the app in that region's Clio."""
        with self._lock:
            return self.grants.issue_code(redirect_uri or self.redirect_uri, region=region)

    def issue_tokens(self, region: str = "") -> TokenPair:
        with self._lock:
            pair = self.grants.issue_tokens(region=region)
            self._refresh_of[pair.access_token] = pair.refresh_token
            return pair

    def connector_config(self) -> dict[str, str]:
        """`ConnectorConfig` values pointing the Clio connector at this fake (every region's application)."""
        config = {"redirect_uri": self.redirect_uri, "base_url": self.base_url}
        for region, (client_id, secret) in self.clients.items():
            prefix = f"{region}_" if region else ""
            config[f"{prefix}client_id"] = client_id
            config[f"{prefix}client_secret"] = secret
        return config

    def env(self) -> dict[str, str]:
        return {f"CLIO_{key.upper()}": value for key, value in self.connector_config().items()}

    # --- FakeCrm hooks --------------------------------------------------------------------------------------

    def routes(self) -> list[FakeRoute]:
        one = frozenset({"fields"})
        return [
            FakeRoute("GET", "/oauth/authorize", self._authorize, auth=False),
            FakeRoute("POST", "/oauth/token", self._token, auth=False),
            FakeRoute("POST", "/oauth/deauthorize", strict(frozenset(), self._deauthorize)),
            FakeRoute("GET", "/api/v4/users/who_am_i.json", strict(one, self._who_am_i)),
            FakeRoute("GET", "/api/v4/users.json", strict(_PAGING | {"enabled"}, self._list_users)),
            FakeRoute("GET", "/api/v4/contacts.json", strict(_PAGING | CONTACT_FILTERS, self._list_contacts)),
            FakeRoute("POST", "/api/v4/contacts.json", strict(one, self._create_contact)),
            FakeRoute("GET", "/api/v4/contacts/{id}.json", strict(one, self._get_contact)),
            FakeRoute("GET", "/api/v4/matters.json", strict(_PAGING | MATTER_FILTERS, self._list_matters)),
            FakeRoute(
                "GET",
                "/api/v4/relationships.json",
                strict(_PAGING | RELATIONSHIP_FILTERS, self._list_relationships),
            ),
            FakeRoute(
                "GET",
                "/api/v4/communications.json",
                strict(_PAGING | COMMUNICATION_FILTERS, self._list_communications),
            ),
            FakeRoute("POST", "/api/v4/communications.json", strict(one, self._create_communication)),
            FakeRoute("GET", "/api/v4/communications/{id}.json", strict(one, self._get_communication)),
            FakeRoute("PATCH", "/api/v4/communications/{id}.json", strict(one, self._patch_communication)),
            FakeRoute(
                "GET", "/api/v4/activities.json", strict(_PAGING | ACTIVITY_FILTERS, self._list_activities)
            ),
            FakeRoute("POST", "/api/v4/activities.json", strict(one, self._create_activity)),
            FakeRoute("PATCH", "/api/v4/activities/{id}.json", strict(one, self._patch_activity)),
            FakeRoute("POST", "/api/v4/documents.json", strict(one, self._create_document)),
            FakeRoute("PATCH", "/api/v4/documents/{id}.json", strict(one, self._patch_document)),
            FakeRoute("PUT", "/bucket/{uuid}", strict(frozenset(), self._bucket_put), auth=False),
            FakeRoute("GET", MEDIA_PATH, strict(frozenset(), self._media), auth=False),
        ]

    def authenticate(self, request: FakeRequest) -> bool:
        token = bearer_token(request.headers.get("authorization", ""))
        with self._lock:
            return token is not None and self.grants.access_valid(token)

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        kind = _ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "ClientError")
        return {"error": {"type": kind, "message": message, **extra}}

    def rate_limit_headers(self, limit: int, remaining: int, reset_seconds: float) -> dict[str, str]:
        """Reset is a unix timestamp: when the current window ends."""
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(self.now() + reset_seconds)),
        }

    # --- OAuth ----------------------------------------------------------------------------------------------

    def _region_of_client(self, client_id: str, secret: str | None) -> str | None:
        for region, (known_id, known_secret) in self.clients.items():
            if client_id == known_id and (secret is None or same_secret(secret, known_secret)):
                return region
        return None

    async def _authorize(self, request: FakeRequest) -> Response:
        """The consent screen, already approved: back to the redirect URI with a code for this region."""
        query = request.query
        region = self._region_of_client(query.get("client_id", ""), None)
        if region is None or query.get("response_type") != "code" or not query.get("redirect_uri"):
            raise HttpError(400, "invalid_request")
        code = self.issue_code(region, redirect_uri=query["redirect_uri"])
        state = f"&state={query['state']}" if query.get("state") else ""
        return RedirectResponse(f"{query['redirect_uri']}?code={code}{state}", status_code=302)

    async def _token(self, request: FakeRequest) -> Response:
        form = request.form or {}
        basic = basic_credentials(request.headers.get("authorization", ""))
        client_id, secret = basic if basic else (form.get("client_id", ""), form.get("client_secret", ""))
        region = self._region_of_client(client_id, secret) if client_id and secret else None
        if region is None:
            return self.json(
                {"error": "invalid_client", "error_description": "Client authentication failed"}, 401
            )
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                exchanged = self.grants.exchange_code(form.get("code", ""), form.get("redirect_uri"))
                if exchanged is None or exchanged[1].get("region", "") != region:
                    return self._invalid_grant()
                pair = exchanged[0]
            elif grant_type == "refresh_token":
                refreshed = self.grants.refresh(form.get("refresh_token", ""))
                if refreshed is None:
                    return self._invalid_grant()
                pair = refreshed
            else:
                return self.json({"error": "unsupported_grant_type"}, 400)
            self._refresh_of[pair.access_token] = pair.refresh_token or form.get("refresh_token", "")
        answer: JsonDict = {
            "access_token": pair.access_token,
            "token_type": "bearer",
            "expires_in": pair.expires_in,
        }
        if pair.refresh_token:
            answer["refresh_token"] = pair.refresh_token
        return self.json(answer)

    def _invalid_grant(self) -> Response:
        return self.json(
            {"error": "invalid_grant", "error_description": "The provided authorization grant is invalid"},
            400,
        )

    async def _deauthorize(self, request: FakeRequest) -> Response:
        """Ends the whole grant: the access token and the refresh token behind it."""
        token = (request.form or {}).get("token", "")
        if token != bearer_token(request.headers.get("authorization", "")):
            raise HttpError(400, "token must be the access token of this request")
        with self._lock:
            self.deauthorize_calls += 1
            refresh = self._refresh_of.get(token)
            self.grants.revoke(refresh if refresh else token)
            self.grants.revoke(token)
        return Response(status_code=200)

    def is_access_token_valid(self, token: str) -> bool:
        with self._lock:
            return self.grants.access_valid(token)

    def is_refresh_token_valid(self, token: str) -> bool:
        with self._lock:
            return self.grants.refresh_valid(token)

    # --- shared ---------------------------------------------------------------------------------------------

    def _data(self, request: FakeRequest, allowed: frozenset[str]) -> JsonDict:
        if "application/json" not in request.headers.get("content-type", ""):
            raise HttpError(415, "Content-Type must be application/json")
        body = request.json_object()
        data = body.get("data")
        if set(body) != {"data"} or not isinstance(data, dict):
            raise HttpError(400, 'The request body must be {"data": {...}}')
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise HttpError(422, f"Unknown attributes: {', '.join(unknown)}")
        return data

    def _page(
        self, request: FakeRequest, records: list[JsonDict], schema: dict[str, frozenset[str] | None]
    ) -> Response:
        spec = parse_fields(request.query.get("fields"), schema)
        limit = request.int_param("limit", MAX_LIMIT, minimum=1) or MAX_LIMIT
        if limit > MAX_LIMIT:
            raise HttpError(400, f"limit must be at most {MAX_LIMIT}")
        order = request.query.get("order", "id(asc)")
        if order not in ("id(asc)", "id(desc)"):
            raise HttpError(400, f"Invalid order: {order}")
        ordered = sorted(records, key=lambda r: int(r["id"]), reverse=order == "id(desc)")
        meta: JsonDict = {"paging": {}, "records": len(ordered)}
        if "offset" in request.query:
            if "page_token" in request.query:
                raise HttpError(400, "offset and page_token cannot be combined")
            offset = request.int_param("offset", 0, minimum=0) or 0
            if offset + limit > MAX_OFFSET_RECORDS:
                raise HttpError(400, f"offset paging reaches at most {MAX_OFFSET_RECORDS} records")
            page, more = offset_page(ordered, offset, limit)
            if more and offset + 2 * limit <= MAX_OFFSET_RECORDS:
                meta["paging"]["next"] = absolute_url(request, offset=offset + limit)
            if offset:
                meta["paging"]["previous"] = absolute_url(request, offset=max(0, offset - limit))
        else:
            if order != "id(asc)":
                raise HttpError(400, "An order other than id(asc) needs offset paging")
            offset = cursor_offset(request.query.get("page_token"))
            page, more = offset_page(ordered, offset, limit)
            if more:
                meta["paging"]["next"] = absolute_url(request, page_token=make_cursor(offset + limit))
            if offset:
                meta["paging"]["previous"] = absolute_url(
                    request, page_token=make_cursor(max(0, offset - limit))
                )
        return self.json({"data": [project(r, spec) for r in page], "meta": meta})

    def _one(
        self,
        request: FakeRequest,
        record: JsonDict,
        schema: dict[str, frozenset[str] | None],
        status: int = 200,
    ) -> Response:
        return self.json({"data": project(record, parse_fields(request.query.get("fields"), schema))}, status)

    def _contact_ref(self, contact_id: int | None) -> JsonDict | None:
        contact = self.contacts.get(contact_id) if contact_id is not None else None
        if contact is None:
            return None
        return {
            "id": contact["id"],
            "etag": contact["etag"],
            "name": contact["name"],
            "type": contact["type"],
        }

    # --- users and contacts ---------------------------------------------------------------------------------

    async def _who_am_i(self, request: FakeRequest) -> Response:
        return self._one(request, self.user, USER_SCHEMA)

    async def _list_users(self, request: FakeRequest) -> Response:
        """The firm's users: `enabled` filters, `order` may also be by name, `fields` as everywhere."""
        enabled = request.query.get("enabled")
        if enabled not in (None, "true", "false"):
            raise HttpError(400, f"Invalid enabled: {enabled}")
        order = request.query.get("order", "id(asc)")
        if order not in ("id(asc)", "id(desc)", "name(asc)", "name(desc)"):
            raise HttpError(400, f"Invalid order: {order}")
        spec = parse_fields(request.query.get("fields"), USER_SCHEMA)
        with self._lock:
            users = [self.user, *self.colleagues]
            if enabled is not None:
                users = [u for u in users if bool(u.get("enabled")) == (enabled == "true")]
            key = "name" if order.startswith("name") else "id"
            users = sorted(users, key=lambda u: u[key], reverse=order.endswith("(desc)"))
            return self.json(
                {"data": [project(u, spec) for u in users], "meta": {"paging": {}, "records": len(users)}}
            )

    async def _list_contacts(self, request: FakeRequest) -> Response:
        term = request.query.get("query", "").strip().lower()
        if any(ch in term for ch in self.query_refuses):
            raise HttpError(400, "Invalid query")
        kind = request.query.get("type")
        with self._lock:
            records = [c for c in self.contacts.values() if (not kind or c["type"] == kind)]
            if term:
                records = [c for c in records if self._query_matches(term, c)]
            return self._page(request, records, CONTACT_SCHEMA)

    def _query_matches(self, term: str, contact: JsonDict) -> bool:
        values = [contact.get("name") or "", contact.get("primary_email_address") or ""]
        values += [str(p.get("number") or "") for p in contact.get("phone_numbers") or []]
        values = [str(v).lower() for v in values if v]
        if self.query_mode == "substring":
            return any(term in value for value in values)
        wanted = term.split()
        for value in values:
            words = value.split()
            if any(words[i : i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1)):
                return True
        return False

    async def _get_contact(self, request: FakeRequest) -> Response:
        with self._lock:
            contact = self.contacts.get(request.path_int("id"))
            if contact is None:
                raise HttpError(404, "Contact not found")
            return self._one(request, contact, CONTACT_SCHEMA)

    async def _create_contact(self, request: FakeRequest) -> Response:
        data = self._data(request, _CONTACT_KEYS)
        kind = data.get("type")
        if kind not in CONTACT_TYPES:
            raise invalid("Type must be Person or Company")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            parts = [data.get("first_name"), data.get("last_name")]
            name = " ".join(p for p in parts if isinstance(p, str) and p.strip())
        if not name:
            raise invalid("Name can't be blank")
        phones = data.get("phone_numbers") or []
        if not isinstance(phones, list):
            raise invalid("phone_numbers must be a list")
        numbers: list[str] = []
        for phone in phones:
            if not isinstance(phone, dict) or not isinstance(phone.get("number"), str) or not phone["number"]:
                raise invalid("Phone numbers number can't be blank")
            if phone.get("name") not in PHONE_NAMES:
                raise invalid(f"Phone numbers name is not included in the list ({phone.get('name')!r})")
            numbers.append(phone["number"])
        record = self.add_contact(name, numbers, type=kind)
        return self._one(request, record, CONTACT_SCHEMA, status=201)

    # --- matters and relationships --------------------------------------------------------------------------

    async def _list_matters(self, request: FakeRequest) -> Response:
        client_id = request.int_param("client_id")
        status = request.query.get("status")
        with self._lock:
            records = [
                m
                for m in self.matters.values()
                if (client_id is None or (m.get("client") or {}).get("id") == client_id)
                and (not status or m["status"].lower() in status.lower().split(","))
            ]
            return self._page(request, records, MATTER_SCHEMA)

    async def _list_relationships(self, request: FakeRequest) -> Response:
        contact_id = request.int_param("contact_id")
        with self._lock:
            records = []
            for rel in self.relationships.values():
                if contact_id is not None and rel["contact"]["id"] != contact_id:
                    continue
                matter = self.matters.get(rel["matter"]["id"])
                records.append({**rel, "contact": self._contact_ref(rel["contact"]["id"]), "matter": matter})
            return self._page(request, records, RELATIONSHIP_SCHEMA)

    # --- communications -------------------------------------------------------------------------------------

    def _parties(self, value: Any, label: str) -> list[JsonDict]:
        if not isinstance(value, list) or not value:
            raise invalid(f"{label} can't be blank")
        parties = []
        for party in value:
            if not isinstance(party, dict) or party.get("type") not in ("User", "Contact"):
                raise invalid(f"{label} type must be User or Contact")
            if party["type"] == "User":
                # any user of the firm may be a party (the logged-in user or a colleague)
                user = next((u for u in (self.user, *self.colleagues) if u["id"] == party.get("id")), None)
                if user is None:
                    raise invalid(f"{label} user {party.get('id')!r} not found")
                parties.append(
                    {
                        "id": user["id"],
                        "etag": user.get("etag", ""),
                        "name": user["name"],
                        "type": "User",
                    }
                )
            else:
                contact = self._contact_ref(party.get("id") if isinstance(party.get("id"), int) else None)
                if contact is None:
                    raise invalid(f"{label} contact {party.get('id')!r} not found")
                parties.append(contact)
        return parties

    def _apply_communication(self, record: JsonDict, data: JsonDict) -> None:
        if "type" in data and data["type"] not in COMMUNICATION_TYPES:
            raise invalid("Type must be PhoneCommunication or EmailCommunication")
        for key in ("subject", "body"):
            if key in data and not isinstance(data[key], str):
                raise invalid(f"{key} must be a string")
        if "received_at" in data and not _valid_time(data["received_at"]):
            raise invalid("Received at is not a valid date time")
        if "senders" in data:
            record["senders"] = self._parties(data["senders"], "Senders")
        if "receivers" in data:
            record["receivers"] = self._parties(data["receivers"], "Receivers")
        if "matter" in data:
            matter = data["matter"]
            matter_id = matter.get("id") if isinstance(matter, dict) else None
            found = self.matters.get(matter_id) if isinstance(matter_id, int) else None
            if matter is not None and found is None:
                raise invalid(f"Matter {matter_id!r} not found")
            record["matter"] = (
                {k: found[k] for k in ("id", "etag", "display_number", "description", "status")}
                if found
                else None
            )
        subscribers = data.get("notification_event_subscribers", [])
        if not isinstance(subscribers, list) or not all(
            isinstance(x, dict) and set(x) == {"user_id"} for x in subscribers
        ):
            raise invalid("Notification event subscribers must be a list of {user_id}")
        record.update({k: data[k] for k in ("type", "subject", "body", "received_at") if k in data})
        record["updated_at"] = _now_iso()

    async def _create_communication(self, request: FakeRequest) -> Response:
        data = self._data(request, _COMMUNICATION_KEYS)
        if "type" not in data:
            raise invalid("Type can't be blank")
        with self._lock:
            now = _now_iso()
            record: JsonDict = {
                "etag": '"x"',
                "subject": "",
                "body": "",
                "received_at": now,
                "created_at": now,
                "matter": None,
                "senders": [],
                "receivers": [],
                "user": {"id": self.user["id"], "etag": self.user["etag"], "name": self.user["name"]},
            }
            self._apply_communication(record, data)
            record["id"] = self.next_id("communication", 30000)
            self.communications[record["id"]] = record
            return self._one(request, record, COMMUNICATION_SCHEMA, status=201)

    async def _list_communications(self, request: FakeRequest) -> Response:
        contact_id = request.int_param("contact_id")
        matter_id = request.int_param("matter_id")
        kind = request.query.get("type")
        with self._lock:
            records = [
                c
                for c in self.communications.values()
                if (not kind or c["type"] == kind)
                and (matter_id is None or (c.get("matter") or {}).get("id") == matter_id)
                and (
                    contact_id is None
                    or any(
                        p["type"] != "User" and p["id"] == contact_id for p in c["senders"] + c["receivers"]
                    )
                )
            ]
            return self._page(request, records, COMMUNICATION_SCHEMA)

    def _communication(self, request: FakeRequest) -> JsonDict:
        record = self.communications.get(request.path_int("id"))
        if record is None:
            raise HttpError(404, "Communication not found")
        return record

    async def _get_communication(self, request: FakeRequest) -> Response:
        with self._lock:
            return self._one(request, self._communication(request), COMMUNICATION_SCHEMA)

    async def _patch_communication(self, request: FakeRequest) -> Response:
        data = self._data(request, _COMMUNICATION_KEYS)
        with self._lock:
            record = self._communication(request)
            updated = dict(record)
            self._apply_communication(updated, data)  # all or nothing: a 422 leaves the record as it was
            record.update(updated)
            return self._one(request, record, COMMUNICATION_SCHEMA)

    # --- activities (time entries) --------------------------------------------------------------------------

    def _apply_activity(self, record: JsonDict, data: JsonDict) -> None:
        if "type" in data and data["type"] != "TimeEntry":
            raise invalid("Type must be TimeEntry")
        quantity = data.get("quantity", record.get("quantity"))
        if isinstance(quantity, bool) or not isinstance(quantity, (int, float)) or quantity < 0:
            raise invalid("Quantity must be a number of seconds, 0 or more")
        if "date" in data and not _valid_date(data["date"]):
            raise invalid("Date is not a valid date")
        if "non_billable" in data and not isinstance(data["non_billable"], bool):
            raise invalid("Non billable must be true or false")
        if "note" in data and not isinstance(data["note"], str):
            raise invalid("Note must be a string")
        for key, table in (("communication", self.communications), ("matter", self.matters)):
            if key in data:
                ref = data[key]
                ref_id = ref.get("id") if isinstance(ref, dict) else None
                found = table.get(ref_id) if isinstance(ref_id, int) else None
                if found is None:
                    raise invalid(f"{key.capitalize()} {ref_id!r} not found")
                record[key] = {k: found.get(k) for k in ("id", "etag", "display_number") if k in found}
        record.update({k: data[k] for k in ("type", "quantity", "date", "note", "non_billable") if k in data})

    async def _create_activity(self, request: FakeRequest) -> Response:
        data = self._data(request, _ACTIVITY_KEYS)
        if "type" not in data or "date" not in data:
            raise invalid("Type and date can't be blank")
        with self._lock:
            record: JsonDict = {
                "etag": '"a"',
                "note": "",
                "non_billable": False,
                "communication": None,
                "matter": None,
            }
            self._apply_activity(record, data)
            record["id"] = self.next_id("activity", 60000)
            self.activities[record["id"]] = record
            return self._one(request, record, ACTIVITY_SCHEMA, status=201)

    async def _list_activities(self, request: FakeRequest) -> Response:
        communication_id = request.int_param("communication_id")
        kind = request.query.get("type")
        with self._lock:
            records = [
                a
                for a in self.activities.values()
                if (not kind or a["type"] == kind)
                and (communication_id is None or (a.get("communication") or {}).get("id") == communication_id)
            ]
            return self._page(request, records, ACTIVITY_SCHEMA)

    async def _patch_activity(self, request: FakeRequest) -> Response:
        data = self._data(request, _ACTIVITY_KEYS)
        with self._lock:
            record = self.activities.get(request.path_int("id"))
            if record is None:
                raise HttpError(404, "Activity not found")
            updated = dict(record)
            self._apply_activity(updated, data)
            record.update(updated)
            return self._one(request, record, ACTIVITY_SCHEMA)

    # --- documents -----------------------------------------------------------------------------------------

    def add_media(self, content_type: str, content: bytes) -> str:
        """An attachment on RingCentral's media host; its URI (as a message's `attachments[].uri` names it)."""
        with self._lock:
            message = str(self.next_id("rc-message", 9000))
            self.media[(message, "1")] = (content_type, content)
        return f"{self.base_url}/restapi/v1.0/account/~/extension/~/message-store/{message}/content/1"

    async def _media(self, request: FakeRequest) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.rc_token}":
            raise HttpError(401, "Invalid token")
        with self._lock:
            found = self.media.get((request.path_params["message"], request.path_params["attachment"]))
        if found is None:
            raise HttpError(404, "Resource not found")
        return Response(found[1], media_type=found[0])

    async def _create_document(self, request: FakeRequest) -> Response:
        data = self._data(request, _DOCUMENT_KEYS)
        name, parent = data.get("name"), data.get("parent")
        if not isinstance(name, str) or not name:
            raise invalid("Name can't be blank")
        with self._lock:
            ref = self._document_parent(parent)
            uuid = f"v{self.next_id('document-version', 1)}-{len(self.documents)}"
            record: JsonDict = {
                "id": self.next_id("document", 80000),
                "etag": '"d"',
                "name": name,
                "parent": ref,
                "created_at": _now_iso(),
                "received_at": data.get("received_at"),
                "latest_document_version": {
                    "id": self.next_id("version", 90000),
                    "etag": '"v"',
                    "uuid": uuid,
                    "put_url": f"{self.base_url}/bucket/{uuid}",
                    "put_headers": [{"name": k, "value": v} for k, v in BUCKET_HEADERS.items()],
                    "fully_uploaded": False,
                    "size": None,
                },
            }
            self.documents[record["id"]] = record
            return self._one(request, record, DOCUMENT_SCHEMA, status=201)

    def _document_parent(self, parent: Any) -> JsonDict:
        if not isinstance(parent, dict) or set(parent) != {"id", "type"}:
            raise invalid("Parent must be {id, type}")
        table = {"Matter": self.matters, "Contact": self.contacts}.get(str(parent["type"]))
        if table is None or not isinstance(parent["id"], int) or parent["id"] not in table:
            raise invalid(f"Parent {parent.get('type')} {parent.get('id')!r} not found")
        return {"id": parent["id"], "etag": '"p"', "type": parent["type"]}

    async def _bucket_put(self, request: FakeRequest) -> Response:
        if "authorization" in request.headers:
            raise HttpError(400, "The bucket takes a signed URL, not a credential")
        for name, value in BUCKET_HEADERS.items():
            if request.headers.get(name) != value:
                raise HttpError(403, "SignatureDoesNotMatch")
        body = await request.raw.body()
        if not body:
            raise HttpError(400, "Empty upload")
        with self._lock:
            uuid = request.path_params["uuid"]
            if not any(d["latest_document_version"]["uuid"] == uuid for d in self.documents.values()):
                raise HttpError(404, "NoSuchKey")
            self.uploads[uuid] = body
        return Response(b"", status_code=200)

    async def _patch_document(self, request: FakeRequest) -> Response:
        data = self._data(request, _DOCUMENT_PATCH_KEYS)
        with self._lock:
            record = self.documents.get(request.path_int("id"))
            if record is None:
                raise HttpError(404, "Document not found")
            version = record["latest_document_version"]
            if "uuid" in data and data["uuid"] != version["uuid"]:
                raise invalid("Uuid does not match the latest version")
            if data.get("fully_uploaded") is True:
                uploaded = self.uploads.get(version["uuid"])
                if uploaded is None:
                    raise invalid("The document version has not been uploaded")
                version["fully_uploaded"] = True
                version["size"] = len(uploaded)
            if "name" in data:
                record["name"] = data["name"]
            return self._one(request, record, DOCUMENT_SCHEMA)


def strict(allowed: frozenset[str], handler: Handler) -> Handler:
    """The handler behind a check that the request names only query parameters the endpoint takes."""

    async def checked(request: FakeRequest) -> Response:
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            raise HttpError(400, f"Unknown parameters: {', '.join(unknown)}")
        return await handler(request)

    return checked

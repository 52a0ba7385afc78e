"""A strict in-memory VinSolutions (Cox Automotive) API served over real HTTP, for connector and e2e tests.

Built from the reference connector's requests (`src/connectors/vinsolutions/index.ts`, 1.7.42) and Cox's
published partner setup (client credentials, scope `PublicAPI`, an `api_key` header): one partner token
serves every dealer that enabled the partner; the gateway (`/gateway/v1/...`) speaks `application/json`, lead
management `application/vnd.coxauto.v3+json` (lead sources v1) and call tracking
`application/vnd.coxauto.v1+json`, and a wrong media type is refused (406/415). Contact and user ids are
numbered per dealer, so two dealers hold the same ids: a connector that loses the dealer reads another
dealer's customer. A second call detail with one `providerReferenceId` answers 500 `AlreadyLoggedException`
with the first one's `Location`, as the reference expects.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.responses import Response

from tests.support.fake_crm import (
    FakeCrm,
    FakeRequest,
    FakeRoute,
    HttpError,
    bad_request,
    bearer_token,
    not_found,
    same_secret,
)

JsonDict = dict[str, Any]

CLIENT_ID = "fake-vinsolutions-client"
CLIENT_SECRET = "fake-vinsolutions-secret"
API_KEY = "fake-vinsolutions-api-key"
PROVIDER_NAME = "RingCentral"
GATEWAY = "application/json"
LEADS_V3 = "application/vnd.coxauto.v3+json"
V1 = "application/vnd.coxauto.v1+json"
DEALER_ID = 23002
OTHER_DEALER_ID = 23003
USER_ID = 13001
_DIGITS = re.compile(r"\D")
_CONTACT_URL = re.compile(r"/contacts/id/(\d+)$")
_LEAD_SOURCE_URL = re.compile(r"/leadSources/id/(\d+)$")
_CALL_KEYS = frozenset(
    {
        "providerName",
        "accountId",
        "marketingSource",
        "providerUserId",
        "communicationType",
        "callDirection",
        "fromNumber",
        "toNumber",
        "callRingStartUTC",
        "callTalkStartUTC",
        "callEndUTC",
        "callDurationSeconds",
        "callResult",
        "recordingHref",
        "transcriptFull",
        "providerReferenceId",
        "vinProperties",
    }
)
_LEAD_PUT_KEYS = frozenset({"isHot", "coBuyerContact", "trades", "vehiclesOfInterest", "notes"})


def digits(text: str) -> str:
    return _DIGITS.sub("", text)


class FakeVinSolutions(FakeCrm):
    """VinSolutions' token endpoint and the API paths the connector uses, for two dealers."""

    crm_name = "VinSolutions"

    def init_state(self) -> None:
        self.token_lifetime = 3600
        # access token -> expiry on the fake's clock; tokens outlive a reset, as a real partner token does
        self.tokens: dict[str, float] = getattr(self, "tokens", {})
        self.dealers: dict[int, JsonDict] = {
            DEALER_ID: {"DealerId": DEALER_ID, "Name": "Bayview Motors", "enabled": True},
            OTHER_DEALER_ID: {"DealerId": OTHER_DEALER_ID, "Name": "Hillside Auto", "enabled": True},
        }
        self.users: dict[tuple[int, int], JsonDict] = {}
        self.contacts: dict[tuple[int, int], JsonDict] = {}
        self.leads: dict[int, JsonDict] = {}
        self.lead_sources: dict[int, list[JsonDict]] = {}
        self.call_details: dict[int, JsonDict] = {}
        for dealer_id in (DEALER_ID, OTHER_DEALER_ID):
            self.add_user(dealer_id, USER_ID, "Morgan", "Rivera", "morgan@example.test")
            self.lead_sources[dealer_id] = [self._lead_source(dealer_id, 501, "Website")]

    # --- seeding and reading ------------------------------------------------------------------------------

    def add_user(self, dealer_id: int, user_id: int, first: str, last: str, email: str = "") -> JsonDict:
        user = {
            "UserId": user_id,
            "FirstName": first,
            "LastName": last,
            "FullName": f"{first} {last}",
            "EmailAddress": email,
        }
        with self._lock:
            self.users[(dealer_id, user_id)] = user
        return user

    def add_contact(
        self, first: str, last: str, phones: list[str], dealer_id: int = DEALER_ID, phone_type: str = "Cell"
    ) -> JsonDict:
        """A contact numbered inside its dealer (the first contact of each dealer gets the same id)."""
        contact_id = self.next_id(f"contact-{dealer_id}", 76000)
        record = {
            "ContactId": contact_id,
            "DealerId": dealer_id,
            "ContactInformation": {
                "FirstName": first,
                "LastName": last,
                "Phones": [{"PhoneType": phone_type, "Number": p} for p in phones],
            },
        }
        with self._lock:
            self.contacts[(dealer_id, contact_id)] = record
        return record

    def add_lead(
        self, dealer_id: int, contact_id: int, notes: str = "", status: str = "ACTIVE_NEW_LEAD"
    ) -> JsonDict:
        lead_id = self.next_id("lead", 96000)
        source = self.lead_sources[dealer_id][0]
        lead = {
            "leadId": lead_id,
            "href": f"https://api.vinsolutions.com/leads/id/{lead_id}",
            "dealerId": dealer_id,
            "contactId": contact_id,
            "leadSource": {
                "leadSourceId": source["leadSourceId"],
                "leadSourceName": source["leadSourceName"],
            },
            "leadStatus": status,
            "leadType": "INTERNET",
            "isHot": False,
            "notes": notes,
        }
        with self._lock:
            self.leads[lead_id] = lead
        return lead

    def contacts_of(self, dealer_id: int) -> list[JsonDict]:
        with self._lock:
            return self.snapshot([c for (d, _i), c in sorted(self.contacts.items()) if d == dealer_id])

    def leads_of(self, dealer_id: int, contact_id: int) -> list[JsonDict]:
        with self._lock:
            found = [
                lead
                for lead in self.leads.values()
                if lead["dealerId"] == dealer_id and lead["contactId"] == contact_id
            ]
            return self.snapshot(sorted(found, key=lambda lead: int(lead["leadId"])))

    def call_details_of(self, dealer_id: int, contact_id: int) -> list[JsonDict]:
        with self._lock:
            found = [
                d
                for d in self.call_details.values()
                if d["vinProperties"].get("dealerId") == dealer_id
                and d["vinProperties"].get("contactId") == contact_id
            ]
            return self.snapshot(sorted(found, key=lambda d: int(d["callDetailId"])))

    def env(self) -> dict[str, str]:
        """The connector's settings pointing at this fake."""
        return {
            "VINSOLUTIONS_CLIENT_ID": CLIENT_ID,
            "VINSOLUTIONS_CLIENT_SECRET": CLIENT_SECRET,
            "VINSOLUTIONS_API_KEY": API_KEY,
            "VINSOLUTIONS_BASE_URL": self.base_url,
            "VINSOLUTIONS_TOKEN_URL": f"{self.base_url}/connect/token",
        }

    def token_requests(self) -> int:
        return len(self.requests_to("/connect/token", "POST"))

    # --- toolkit hooks ------------------------------------------------------------------------------------

    def routes(self) -> list[FakeRoute]:
        return [
            FakeRoute("POST", "/connect/token", self._token, auth=False),
            FakeRoute("GET", "/gateway/v1/organization/dealers", self._dealers),
            FakeRoute("GET", "/gateway/v1/tenant/user", self._users),
            FakeRoute("GET", "/gateway/v1/tenant/user/id/{user_id}", self._user),
            FakeRoute("GET", "/gateway/v1/contact", self._search_contacts),
            FakeRoute("POST", "/gateway/v1/contact", self._create_contact),
            FakeRoute("GET", "/leads", self._list_leads),
            FakeRoute("POST", "/leads", self._create_lead),
            FakeRoute("GET", "/leads/id/{lead_id}", self._get_lead),
            FakeRoute("PUT", "/leads/id/{lead_id}", self._put_lead),
            FakeRoute("GET", "/leadSources", self._list_lead_sources),
            FakeRoute("POST", "/calldetails", self._create_call_detail),
            FakeRoute("GET", "/calldetails/id/{detail_id}", self._get_call_detail),
            FakeRoute("PATCH", "/calldetails/id/{detail_id}", self._patch_call_detail),
        ]

    def authenticate(self, request: FakeRequest) -> bool:
        token = bearer_token(request.headers.get("authorization", ""))
        with self._lock:
            expiry = self.tokens.get(token or "")
        if expiry is None or self.now() >= expiry:
            return False
        return same_secret(request.headers.get("api_key", ""), API_KEY)

    def credential_of(self, request: FakeRequest) -> str:
        return "partner"

    def error_body(self, status: int, message: str, extra: JsonDict) -> Any:
        return {"message": message, **extra}

    # --- auth ---------------------------------------------------------------------------------------------

    async def _token(self, request: FakeRequest) -> Response:
        form = request.form
        if form is None:
            raise bad_request("invalid_request")
        if form.get("grant_type") != "client_credentials":
            return self.json({"error": "unsupported_grant_type"}, 400)
        if form.get("client_id") != CLIENT_ID or not same_secret(
            form.get("client_secret", ""), CLIENT_SECRET
        ):
            return self.json({"error": "invalid_client"}, 400)
        if form.get("scope") != "PublicAPI":
            return self.json({"error": "invalid_scope"}, 400)
        token = f"vs-{self.next_id('token')}-{CLIENT_ID}"
        with self._lock:
            self.tokens[token] = self.now() + self.token_lifetime
        body = {
            "access_token": token,
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
            "scope": "PublicAPI",
        }
        return self.json(body)

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    # --- rules shared by the handlers -----------------------------------------------------------------------

    def _media(self, request: FakeRequest, media: str) -> Any:
        """The Accept (and, with a body, Content-Type) the endpoint's version requires; the parsed body."""
        if media not in request.headers.get("accept", ""):
            raise HttpError(406, f"Accept must be {media}")
        if request.method in ("POST", "PUT", "PATCH"):
            if request.headers.get("content-type", "").split(";")[0].strip() != media:
                raise HttpError(415, f"Content-Type must be {media}")
            raw = request.raw._body if hasattr(request.raw, "_body") else b""
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise bad_request("The request body is not JSON") from None
        return None

    def _dealer(self, value: Any) -> int:
        """An enabled dealer; one that did not enable the partner is a 403."""
        try:
            dealer_id = int(str(value))
        except ValueError:
            raise bad_request("dealerId must be an integer") from None
        dealer = self.dealers.get(dealer_id)
        if dealer is None or not dealer["enabled"]:
            raise HttpError(403, "The dealer has not enabled this partner")
        return dealer_id

    def _dealer_user(
        self, request: FakeRequest, dealer_key: str = "dealerId", user_key: str = "userId"
    ) -> tuple[int, int]:
        dealer_id = self._dealer(request.query.get(dealer_key, request.query.get(dealer_key.lower(), "")))
        raw_user = request.query.get(user_key, request.query.get(user_key.lower(), ""))
        try:
            user_id = int(raw_user)
        except ValueError:
            raise bad_request("userId must be an integer") from None
        if (dealer_id, user_id) not in self.users:
            raise HttpError(403, "The user does not belong to the dealer")
        return dealer_id, user_id

    # --- gateway ----------------------------------------------------------------------------------------------

    async def _dealers(self, request: FakeRequest) -> Response:
        self._media(request, GATEWAY)
        items = [
            {"DealerId": d["DealerId"], "Name": d["Name"]} for d in self.dealers.values() if d["enabled"]
        ]
        return self.json({"Items": items})

    async def _users(self, request: FakeRequest) -> Response:
        self._media(request, GATEWAY)
        dealer_id = self._dealer(request.query.get("dealerId", ""))
        with self._lock:
            users = [u for (d, _i), u in sorted(self.users.items()) if d == dealer_id]
        return self.json(users)

    async def _user(self, request: FakeRequest) -> Response:
        self._media(request, GATEWAY)
        dealer_id = self._dealer(request.query.get("dealerId", ""))
        user = self.users.get((dealer_id, request.path_int("user_id")))
        if user is None:
            raise not_found("User not found")
        return self.json(user)

    async def _search_contacts(self, request: FakeRequest) -> Response:
        self._media(request, GATEWAY)
        dealer_id, _user_id = self._dealer_user(request)
        page_size = request.int_param("pageSize", 25, minimum=1) or 25
        if page_size > 100:
            raise bad_request("pageSize must be at most 100")
        phone = digits(request.query.get("phone", ""))
        contact_id = request.int_param("contactId")
        first = request.query.get("firstName", "").lower()
        last = request.query.get("lastName", "").lower()
        if not (phone or contact_id or first or last):
            raise bad_request("A search needs phone, contactId, firstName or lastName")
        matches: list[JsonDict] = []
        with self._lock:
            for (d, cid), record in sorted(self.contacts.items()):
                info = record["ContactInformation"]
                if d != dealer_id:
                    continue
                if contact_id is not None and cid != contact_id:
                    continue
                if phone and not any(digits(p["Number"]) == phone for p in info["Phones"]):
                    continue
                if first and str(info.get("FirstName", "")).lower() != first:
                    continue
                if last and str(info.get("LastName", "")).lower() != last:
                    continue
                matches.append({k: v for k, v in record.items() if k != "DealerId"})
        return self.json(self.snapshot(matches[:page_size]))

    async def _create_contact(self, request: FakeRequest) -> Response:
        body = self._media(request, GATEWAY)
        if not isinstance(body, dict) or set(body) - {
            "DealerId",
            "UserId",
            "ContactInformation",
            "LeadInformation",
        }:
            raise bad_request("Unknown contact fields")
        dealer_id = self._dealer(body.get("DealerId"))
        if not isinstance(body.get("UserId"), int) or (dealer_id, body["UserId"]) not in self.users:
            raise bad_request("UserId must be a user of the dealer")
        info = body.get("ContactInformation")
        if not isinstance(info, dict) or not info.get("FirstName") or not info.get("LastName"):
            raise bad_request("ContactInformation.FirstName and LastName are required")
        phones = info.get("Phones") or []
        if not all(
            isinstance(p, dict) and isinstance(p.get("Number"), str) and p.get("PhoneType") for p in phones
        ):
            raise bad_request("Phones need PhoneType and Number")
        record = self.add_contact(
            info["FirstName"],
            info["LastName"],
            [p["Number"] for p in phones],
            dealer_id,
            phones[0]["PhoneType"] if phones else "Cell",
        )
        return self.json({"ContactId": record["ContactId"]}, 201)

    # --- lead management ------------------------------------------------------------------------------------

    def _lead_source(self, dealer_id: int, source_id: int, name: str) -> JsonDict:
        return {
            "leadSourceId": source_id,
            "leadSourceName": name,
            "href": f"https://api.vinsolutions.com/leadSources/id/{source_id}?dealerId={dealer_id}",
        }

    async def _list_lead_sources(self, request: FakeRequest) -> Response:
        self._media(request, V1)
        dealer_id = self._dealer(request.query.get("dealerId", ""))
        return self.json({"items": self.lead_sources.get(dealer_id, [])})

    async def _list_leads(self, request: FakeRequest) -> Response:
        self._media(request, LEADS_V3)
        dealer_id, _user_id = self._dealer_user(request)
        contact_id = request.int_param("contactId")
        limit = request.int_param("limit", 25, minimum=1) or 25
        if limit > 100:
            raise bad_request("limit must be at most 100")
        with self._lock:
            items = [
                {k: v for k, v in lead.items() if k not in ("notes", "dealerId")}
                for lead in sorted(self.leads.values(), key=lambda lead: int(lead["leadId"]))
                if lead["dealerId"] == dealer_id and (contact_id is None or lead["contactId"] == contact_id)
            ]
        return self.json({"items": self.snapshot(items[:limit])})

    def _lead_of_partner(self, lead_id: int) -> JsonDict:
        lead = self.leads.get(lead_id)
        if lead is None:
            raise not_found("Lead not found")
        self._dealer(lead["dealerId"])
        return lead

    async def _get_lead(self, request: FakeRequest) -> Response:
        self._media(request, LEADS_V3)
        dealer_id, _user_id = self._dealer_user(request)
        with self._lock:
            lead = self._lead_of_partner(request.path_int("lead_id"))
            if lead["dealerId"] != dealer_id:
                raise not_found("Lead not found")
            return self.json({k: v for k, v in lead.items() if k != "dealerId"})

    async def _create_lead(self, request: FakeRequest) -> Response:
        body = self._media(request, LEADS_V3)
        if not isinstance(body, dict) or set(body) - {"leadSource", "leadType", "contact"}:
            raise bad_request("Unknown lead fields")
        contact_url = urlsplit(str(body.get("contact") or ""))
        contact_match = _CONTACT_URL.search(contact_url.path)
        query = {k.lower(): v[0] for k, v in parse_qs(contact_url.query).items()}
        if contact_match is None or "dealerid" not in query or "userid" not in query:
            raise bad_request("contact must be a contact URL with dealerid and userid")
        dealer_id = self._dealer(query["dealerid"])
        contact_id = int(contact_match.group(1))
        if (dealer_id, contact_id) not in self.contacts:
            raise bad_request("The contact does not exist")
        hrefs = {s["href"] for s in self.lead_sources.get(dealer_id, [])}
        if body.get("leadSource") not in hrefs:
            raise bad_request("leadSource must be a lead source of the dealer")
        if body.get("leadType") not in ("INTERNET", "PHONE", "WALK_IN", "CAMPAIGN", "UNKNOWN"):
            raise bad_request("leadType is not a lead type")
        lead = self.add_lead(dealer_id, contact_id)
        return self.json({"leadId": lead["leadId"], "href": lead["href"]}, 201)

    async def _put_lead(self, request: FakeRequest) -> Response:
        body = self._media(request, LEADS_V3)
        if not isinstance(body, dict) or set(body) != _LEAD_PUT_KEYS:
            raise bad_request(f"A lead update has exactly the fields {sorted(_LEAD_PUT_KEYS)}")
        if not isinstance(body["notes"], str) or not isinstance(body["isHot"], bool):
            raise bad_request("notes must be text and isHot a boolean")
        with self._lock:
            lead = self._lead_of_partner(request.path_int("lead_id"))
            lead["notes"] = body["notes"]
            lead["isHot"] = body["isHot"]
        return Response(status_code=204)

    # --- call tracking --------------------------------------------------------------------------------------

    async def _create_call_detail(self, request: FakeRequest) -> Response:
        body = self._media(request, V1)
        if not isinstance(body, dict) or set(body) - _CALL_KEYS:
            raise bad_request("Unknown call detail fields")
        if body.get("providerName") != PROVIDER_NAME:
            raise bad_request("providerName is not a registered provider")
        dealer_id = self._dealer(body.get("accountId"))
        vin = body.get("vinProperties")
        if not isinstance(vin, dict) or vin.get("dealerId") != dealer_id:
            raise bad_request("vinProperties.dealerId must be the account")
        if (dealer_id, vin.get("contactId")) not in self.contacts:
            raise bad_request("vinProperties.contactId is not a contact of the dealer")
        if (dealer_id, vin.get("userId")) not in self.users:
            raise bad_request("vinProperties.userId is not a user of the dealer")
        if "leadId" in vin and self.leads.get(vin["leadId"], {}).get("dealerId") != dealer_id:
            raise bad_request("vinProperties.leadId is not a lead of the dealer")
        if body.get("callDirection") not in ("INBOUND", "OUTBOUND"):
            raise bad_request("callDirection must be INBOUND or OUTBOUND")
        if not isinstance(body.get("callDurationSeconds"), int):
            raise bad_request("callDurationSeconds must be an integer")
        reference = body.get("providerReferenceId")
        if not isinstance(reference, str) or not reference:
            raise bad_request("providerReferenceId is required")
        with self._lock:
            for existing in self.call_details.values():
                if (existing["accountId"], existing["providerReferenceId"]) == (str(dealer_id), reference):
                    location = f"{request.base_url}/calldetails/id/{existing['callDetailId']}"
                    return self.json(
                        {"message": "Cox.CallTracking.AlreadyLoggedException: the call is already logged"},
                        500,
                        headers={"Location": location},
                    )
            detail_id = self.next_id("calldetail", 55000)
            self.call_details[detail_id] = {"callDetailId": detail_id, **body}
        return Response(
            status_code=201, headers={"Location": f"{request.base_url}/calldetails/id/{detail_id}"}
        )

    def _detail(self, request: FakeRequest) -> JsonDict:
        detail = self.call_details.get(request.path_int("detail_id"))
        if detail is None:
            raise not_found("Call detail not found")
        return detail

    async def _get_call_detail(self, request: FakeRequest) -> Response:
        self._media(request, V1)
        if request.query.get("providerName") != PROVIDER_NAME:
            raise bad_request("providerName is required")
        with self._lock:
            detail = self._detail(request)
            if detail["accountId"] != request.query.get("accountId"):
                raise not_found("Call detail not found")
            return self.json(self.snapshot(detail))

    async def _patch_call_detail(self, request: FakeRequest) -> Response:
        body = self._media(request, V1)
        allowed = {"providerName", "vinProperties", "transcriptFull", "callDurationSeconds"}
        if not isinstance(body, dict) or set(body) - allowed or body.get("providerName") != PROVIDER_NAME:
            raise bad_request("A call detail update names the provider and only changes known fields")
        with self._lock:
            detail = self._detail(request)
            vin = body.get("vinProperties") or {}
            if vin.get("dealerId") != detail["vinProperties"]["dealerId"]:
                raise not_found("Call detail not found")
            if "transcriptFull" in body:
                detail["transcriptFull"] = body["transcriptFull"]
            if "callDurationSeconds" in body:
                if not isinstance(body["callDurationSeconds"], int):
                    raise bad_request("callDurationSeconds must be an integer")
                detail["callDurationSeconds"] = body["callDurationSeconds"]
            dealer_id = detail["vinProperties"]["dealerId"]
            if "userId" in vin and (dealer_id, vin["userId"]) not in self.users:
                raise bad_request("vinProperties.userId is not a user of the dealer")
            if "leadId" in vin and self.leads.get(vin["leadId"], {}).get("dealerId") != dealer_id:
                raise bad_request("vinProperties.leadId is not a lead of the dealer")
            for key in ("userId", "leadId"):
                if key in vin:
                    detail["vinProperties"][key] = vin[key]
        return Response(status_code=204)

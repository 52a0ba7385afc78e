"""VinSolutions (Cox Automotive): contacts are the dealer's customers; calls are call details, SMS go in lead notes.

There is no user login at VinSolutions: the server holds the partner's OAuth client credentials
(`VINSOLUTIONS_CLIENT_ID` / `VINSOLUTIONS_CLIENT_SECRET`) and the API key, and one bearer token serves every
dealer that enabled the partner. The user names a dealer and their CRM user id on the login page (an admin's
managed auth lists the dealer's users through `get_managed_auth_options`). CRM ids are unique only inside a
dealer, so the stored user id and the account scope both carry the dealer id.

A call detail is deduplicated by VinSolutions itself: a second create with the same `providerReferenceId` (the
call's session id) answers 500 `AlreadyLoggedException` with the first one's `Location`, which this connector
reads as success, so a retried create never makes a second record. An SMS conversation's day is a block in a
lead's notes, between begin and end markers, so a lost answer is found again and the dealer's own notes stay.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from appconnect.connectors.kit import (
    all_or_first_failure,
    call_seconds,
    caller_number,
    conversation_marker,
    iso_utc,
    message_needle,
    parse_time,
    unsearchable,
    user_timezone,
)
from appconnect.connectors.phone import any_same_number, overriding_renderings, significant_number
from appconnect.connectors.sdk import (
    CallLogCreate,
    CallLogFetched,
    CallLogInfo,
    CallLogRef,
    CallLogUpdate,
    CallLogUpdated,
    Connector,
    Contact,
    ContactLookup,
    ContactMatches,
    CreatedContact,
    CrmCall,
    CrmHttp,
    CrmHttpError,
    CrmResponse,
    CrmUser,
    JsonDict,
    LoginRequest,
    LogResult,
    ManagedAuthOption,
    ManagedAuthOptionsRequest,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    PlatformUser,
    ReturnMessage,
    UserInfoResult,
    UserRefreshed,
    UserView,
    placeholder_contact,
    stored_user_id,
)

log = logging.getLogger(__name__)

API_BASE_URL = "https://api.vinsolutions.com"
TOKEN_URL = "https://authentication.vinsolutions.com/connect/token"
SCOPE = "PublicAPI"
#: `/gateway/v1/*` is versioned in the path; `/leads` and `/calldetails` by media type
GATEWAY_JSON = "application/json"
LEADS_V3 = "application/vnd.coxauto.v3+json"
V1_JSON = "application/vnd.coxauto.v1+json"
#: the provider name VinSolutions registers for the partner (call details are filed under it)
PROVIDER_NAME = "RingCentral"
#: a token is renewed this long before it expires (at most half its life)
REFRESH_MARGIN_SECONDS = 300.0
#: what the stored session holds instead of a credential: the bearer token is the server's, not the user's
CONNECTED_SENTINEL = "vinsolutions-connected"
#: contacts of one lookup whose open leads are listed in the log form (a lookup rarely matches more)
LEADS_FOR_CONTACTS = 10
LEAD_LOOKUPS_AT_ONCE = 4
#: leads of a contact searched for a conversation's marker after a lost create answer
MARKER_SEARCH_LEADS = 5
_LOCATION_ID = re.compile(r"/calldetails/id/(\d+)", re.I)
_PLAIN_NOTE = re.compile(r"- (?:Note|Agent notes): ([\s\S]*?)(?=\n- [A-Z][a-zA-Z\s/]*:|\n\Z|\Z)")
_COUNT = re.compile(r"Conversation \((\d+) messages?\):")
_FOOTER = "--- Created via RingCentral App Connect"
_MAX_ID = 10**15

Profile = Literal["leads", "calls"]


@dataclass(slots=True)
class _Token:
    value: str
    renew_at: float


class TokenCache:
    """The server's client-credentials tokens, one per profile: fetched once, renewed before expiry,
    single-flight (concurrent requests wait for one fetch instead of each asking for a token)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        # a lock belongs to one event loop; tests run several servers, each on its own loop
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def _lock(self, profile: str) -> asyncio.Lock:
        per_loop = self._locks.setdefault(asyncio.get_running_loop(), {})
        return per_loop.setdefault(profile, asyncio.Lock())

    def _fresh(self, profile: str) -> str | None:
        token = self._tokens.get(profile)
        return token.value if token is not None and self._clock() < token.renew_at else None

    async def get(self, profile: str, fetch: Callable[[], Awaitable[tuple[str, float]]]) -> str:
        found = self._fresh(profile)
        if found is not None:
            return found
        async with self._lock(profile):
            found = self._fresh(profile)  # another request fetched it while this one waited
            if found is not None:
                return found
            value, lifetime = await fetch()
            margin = min(REFRESH_MARGIN_SECONDS, lifetime / 2)
            self._tokens[profile] = _Token(value, self._clock() + lifetime - margin)
            return value

    def drop(self, profile: str, value: str) -> None:
        """Forget a token the API refused (revoked early), unless a newer one already replaced it."""
        token = self._tokens.get(profile)
        if token is not None and token.value == value:
            del self._tokens[profile]


class VinSolutionsConnector(Connector):
    """VinSolutions CRM: server-held client credentials, the dealer and CRM user chosen at login."""

    platform: ClassVar[str] = "vinsolutions"
    auth_type = "apiKey"
    log_format: ClassVar[str] = "text/plain"
    manifest_path: ClassVar[Path | None] = Path(__file__).with_name("manifest.json")
    idempotent_message_append: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.tokens = TokenCache()

    # --- platform ------------------------------------------------------------------------------------------

    def base_url(self, user: UserView) -> str:
        """One API host for every dealer: the client's hostname never chooses where the token goes."""
        return (self.config.get("base_url") or API_BASE_URL).rstrip("/")

    def rate_limit_key(self, user: UserView) -> str:
        return f"dealer:{user.platform_additional_info.get('dealerId', '')}"

    def _dealer_allowed(self, dealer_id: int) -> bool:
        """`VINSOLUTIONS_ALLOWED_DEALERS` (comma-separated ids) limits the dealers this server logs in to: the
        login page's answers are not secrets, and the partner token reaches every dealer that enabled it."""
        allowed = {part.strip() for part in self.config.get("allowed_dealers").split(",") if part.strip()}
        return not allowed or str(dealer_id) in allowed

    def _credentials(self, profile: Profile) -> tuple[str, str]:
        """Call tracking may be a separate partner application; it falls back to the lead management one."""
        client_id = self.config.get("client_id")
        client_secret = self.config.get("client_secret")
        if profile == "calls" and self.config.get("call_tracking_client_id"):
            client_id = self.config.get("call_tracking_client_id")
            client_secret = self.config.get("call_tracking_client_secret")
        return client_id, client_secret

    def _api_key(self, profile: Profile) -> str:
        if profile == "calls" and self.config.get("call_tracking_api_key"):
            return self.config.get("call_tracking_api_key")
        return self.config.get("api_key")

    async def _fetch_token(self, http: CrmHttp, profile: Profile) -> tuple[str, float]:
        client_id, client_secret = self._credentials(profile)
        if not client_id or not client_secret:
            log.warning("vinsolutions: the partner's client credentials are not configured (%s)", profile)
            raise CrmHttpError(401, method="POST", url="token: client credentials not configured")
        answer = await http.request(
            "POST",
            self.config.get("token_url") or TOKEN_URL,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
                "scope": SCOPE,
            },
            auth=False,
        )
        body = answer.json()
        token = body["access_token"]
        if not isinstance(token, str) or not token:
            raise TypeError("access_token")
        lifetime = float(body.get("expires_in") or 3600)
        return token, max(0.0, lifetime)

    async def _send(
        self,
        http: CrmHttp,
        method: str,
        path: str,
        *,
        profile: Profile = "leads",
        media: str = GATEWAY_JSON,
        params: dict[str, Any] | None = None,
        json: Any = None,
        allow_status: tuple[int, ...] = (),
        idempotent: bool = False,
    ) -> CrmResponse:
        """One API request with the server's bearer token and API key.

        A 401 drops the token (revoked or rotated before its expiry) so that the next request fetches a new
        one; this one fails as the CRM answered, as for any connector (one refused answer is not retried).
        """

        # one token serves both APIs unless Cox issued Call Tracking its own application
        if profile == "calls" and not self.config.get("call_tracking_client_id"):
            profile = "leads"

        async def fetch() -> tuple[str, float]:
            return await self._fetch_token(http, profile)

        token = await self.tokens.get(profile, fetch)
        headers = {"Authorization": f"Bearer {token}", "api_key": self._api_key(profile), "Accept": media}
        if json is not None:
            headers["Content-Type"] = media
        try:
            return await http.request(
                method,
                path,
                params=params,
                json=json,
                headers=headers,
                auth=False,
                allow_status=allow_status,
                idempotent=idempotent,
            )
        except CrmHttpError as exc:
            if exc.status == 401:
                self.tokens.drop(profile, token)
            raise

    async def _get(self, http: CrmHttp, path: str, params: dict[str, Any], media: str = GATEWAY_JSON) -> Any:
        return (await self._send(http, "GET", path, params=params, media=media)).json()

    # --- auth ----------------------------------------------------------------------------------------------

    async def get_user_info(self, request: LoginRequest) -> UserInfoResult:
        """The dealer must list the partner (Partner Enablement) and hold the CRM user."""
        dealer_id = _positive_id(request.additional_info.get("dealerId"))
        crm_user_id = _positive_id(request.additional_info.get("crmUserId"))
        if dealer_id is None or crm_user_id is None:
            message = ReturnMessage("Dealer ID and CRM User ID are required.", "warning", 5000)
            return UserInfoResult(False, return_message=message)
        if not self._dealer_allowed(dealer_id):
            return UserInfoResult(False, return_message=_not_connected())
        try:
            user, dealers = await all_or_first_failure(
                [
                    self._get(
                        request.http, f"/gateway/v1/tenant/user/id/{crm_user_id}", {"dealerId": dealer_id}
                    ),
                    self._get(request.http, "/gateway/v1/organization/dealers", {}),
                ]
            )
        except CrmHttpError as exc:
            if exc.status in (401, 403, 404):
                return UserInfoResult(False, return_message=_not_connected())
            raise
        dealer = next((d for d in dealers["Items"] if _positive_id(d.get("DealerId")) == dealer_id), None)
        if dealer is None or _positive_id(user.get("UserId")) not in (None, crm_user_id):
            return UserInfoResult(False, return_message=_not_connected())
        name = _user_name(user) or str(crm_user_id)
        dealer_name = str(dealer.get("Name") or "")
        info = PlatformUser(
            id=stored_user_id(self.platform, crm_user_id, tenant=dealer_id),
            name=name,
            timezone_name="UTC",
            timezone_offset="0",
            overriding_api_key=CONNECTED_SENTINEL,
            account_id=str(dealer_id),
            platform_additional_info={
                "dealerId": dealer_id,
                "crmUserId": crm_user_id,
                "dealerName": dealer_name,
                "userName": name,
                "email": str(user.get("EmailAddress") or ""),
            },
        )
        text = f"Connected to VinSolutions ({dealer_name})." if dealer_name else "Connected to VinSolutions."
        return UserInfoResult(True, info, ReturnMessage(text, "success", 2000))

    async def get_managed_auth_options(self, request: ManagedAuthOptionsRequest) -> list[ManagedAuthOption]:
        """`dealerId`: the dealers that enabled the partner; `crmUserId`: the users of the dealer given."""
        if request.field_const == "dealerId":
            dealers = await self._get(request.http, "/gateway/v1/organization/dealers", {})
            return [
                ManagedAuthOption(str(d["DealerId"]), f"{d.get('Name') or 'Dealer'} #{d['DealerId']}")
                for d in dealers["Items"]
            ]
        if request.field_const != "crmUserId":
            return []
        dealer_id = _positive_id(request.account_values.get("dealerId"))
        if dealer_id is None:
            return []
        users = await self._get(request.http, "/gateway/v1/tenant/user", {"dealerId": dealer_id})
        options = []
        for entry in users:
            name = _user_name(entry) or str(entry["UserId"])
            email = str(entry.get("EmailAddress") or "").strip()
            options.append(ManagedAuthOption(str(entry["UserId"]), f"{name} + {email}" if email else name))
        return options

    async def refresh_user_info(self, call: CrmCall) -> UserRefreshed:
        """Make sure the server's tokens still serve this user (the reference re-ensures both token profiles):
        the user's own record at the dealer is read with the token, a token refused there is replaced once,
        and Call Tracking's own token (when it has its own application) is ensured too. Every failure is a
        warning the client shows, never the CRM's words or a credential."""
        try:
            dealer_id, crm_user_id = _dealer_context(call.user)
            path = f"/gateway/v1/tenant/user/id/{crm_user_id}"
            try:
                record = await self._get(call.http, path, {"dealerId": dealer_id})
            except CrmHttpError as exc:
                if exc.status != 401:  # _send dropped a refused token: the next read fetches a new one
                    raise
                record = await self._get(call.http, path, {"dealerId": dealer_id})
            if _positive_id(record.get("UserId")) not in (None, crm_user_id):
                raise CrmHttpError(404, method="GET", url="another user answered")
            if self.config.get("call_tracking_client_id"):
                await self.tokens.get("calls", lambda: self._fetch_token(call.http, "calls"))
        except CrmHttpError as exc:
            log.warning("vinsolutions: refreshing the session failed (HTTP %s)", exc.status or "no answer")
            return UserRefreshed(False, _refresh_failed(exc.status))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning(
                "vinsolutions: refreshing the session read an unexpected answer (%s)", type(exc).__name__
            )
            return UserRefreshed(False, _refresh_failed(None))
        return UserRefreshed(True, ReturnMessage("VinSolutions session is up to date", "success", 1000))

    async def unauthorize(self, call: CrmCall) -> ReturnMessage | None:
        """Nothing to revoke: the token is the server's and serves other users."""
        return ReturnMessage("Logged out of VinSolutions", "success", 1000)

    # --- contacts ------------------------------------------------------------------------------------------

    async def find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        """The contact search by phone in each spelling a dealer stores, each hit re-checked, then open leads."""
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        e164 = caller_number(lookup)
        dealer_id, user_id = _dealer_context(call.user)
        national = significant_number(e164)
        spellings = [national, e164.lstrip("+"), *overriding_renderings(e164, lookup.overriding_format)]
        pages = await all_or_first_failure(
            [
                self._get(
                    call.http,
                    "/gateway/v1/contact",
                    {"dealerId": dealer_id, "userId": user_id, "phone": term, "pageSize": 100},
                )
                for term in dict.fromkeys(spellings)
            ]
        )
        found: dict[int, JsonDict] = {}
        for page in pages:
            for record in page:
                if any_same_number(_phones(record), e164):
                    found.setdefault(int(record["ContactId"]), record)
        contacts = await self._with_leads(call, list(found.values()))
        return ContactMatches(True, [*contacts, placeholder_contact()])

    async def find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        words = name.split()
        if not words:
            return ContactMatches(True, [])
        dealer_id, user_id = _dealer_context(call.user)
        params: JsonDict = {"dealerId": dealer_id, "userId": user_id, "pageSize": 100, "firstName": words[0]}
        if len(words) > 1:
            params["lastName"] = " ".join(words[1:])
        records = await self._get(call.http, "/gateway/v1/contact", params)
        return ContactMatches(True, await self._with_leads(call, list(records)))

    async def _with_leads(self, call: CrmCall, records: list[JsonDict]) -> list[Contact]:
        """Each contact with its leads as the log form's `leads` choices (the first contacts only)."""
        gate = asyncio.Semaphore(LEAD_LOOKUPS_AT_ONCE)

        async def leads_of(record: JsonDict) -> list[JsonDict]:
            async with gate:
                try:
                    return await self._leads(call, int(record["ContactId"]))
                except CrmHttpError as exc:
                    # the caller is still shown (as the reference does): only the lead choices are missing
                    log.warning("vinsolutions: the leads of a contact could not be listed (%s)", exc.status)
                    return []

        leads = await all_or_first_failure([leads_of(r) for r in records[:LEADS_FOR_CONTACTS]])
        contacts = []
        for index, record in enumerate(records):
            choices = [_lead_choice(lead) for lead in leads[index]] if index < len(leads) else []
            contacts.append(
                Contact(
                    id=str(int(record["ContactId"])),
                    name=_contact_name(record),
                    phone=_primary_phone(record) or None,
                    type="contact",
                    additional_info={"leads": choices} if choices else None,
                )
            )
        return contacts

    async def _leads(self, call: CrmCall, contact_id: int) -> list[JsonDict]:
        dealer_id, user_id = _dealer_context(call.user)
        body = await self._get(
            call.http,
            "/leads",
            {"dealerId": dealer_id, "userId": user_id, "contactId": contact_id, "limit": 100},
            media=LEADS_V3,
        )
        items = body["items"]
        if not isinstance(items, list):
            raise TypeError("items")
        return items

    async def create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        """A contact of the dealer owned by the user: first word the first name, the rest the last name."""
        dealer_id, user_id = _dealer_context(call.user)
        words = new.name.split()
        first = words[0] if words else "Unknown"
        last = " ".join(words[1:]) or "Customer"
        body = {
            "DealerId": dealer_id,
            "UserId": user_id,
            "ContactInformation": {
                "FirstName": first,
                "LastName": last,
                "Phones": [{"PhoneType": "Cell", "Number": significant_number(new.phone_number)}],
            },
            "LeadInformation": {},
        }
        answer = (await self._send(call.http, "POST", "/gateway/v1/contact", json=body)).json()
        contact_id = answer.get("ContactId") or (answer.get("ContactInformation") or {}).get("ContactId")
        created = _positive_id(contact_id)
        if created is None:
            raise TypeError("ContactId")
        contact = Contact(id=str(created), name=new.name, phone=new.phone_number, type="contact")
        return CreatedContact(contact, ReturnMessage("Contact created in VinSolutions.", "success", 2000))

    # --- call logs -----------------------------------------------------------------------------------------

    async def create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        """A call detail under the partner's provider name, keyed by the call's session id, filed under the
        call's owner (the admin's user mapping) when it has one, else the logged-in user."""
        contact_id = _positive_id(log.contact.id)
        if contact_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        dealer_id, user_id = _dealer_context(call.user)
        # the reference's resolveAssignedCrmUserId: a call the admin assigned to (or server-side logging made
        # for) another extension is filed under the CRM user that extension is mapped to
        owner = _positive_id(log.owner.id) if log.owner is not None else None
        if owner is not None:
            user_id = owner
        record = log.call
        start = parse_time(record.start_time)
        seconds = 0 if record.duration == "pending" else call_seconds(record.duration)
        lead_id = _positive_id(log.additional_submission.get("leads"))
        vin: JsonDict = {"dealerId": dealer_id, "userId": user_id, "contactId": contact_id}
        if lead_id is not None:
            vin["leadId"] = lead_id
        body = {
            "providerName": PROVIDER_NAME,
            "accountId": str(dealer_id),
            "marketingSource": PROVIDER_NAME,
            "providerUserId": str(user_id),
            "communicationType": "PHONE",
            "callDirection": "OUTBOUND" if record.direction == "Outbound" else "INBOUND",
            "fromNumber": record.from_party.phone_number or record.to_party.phone_number or "",
            "toNumber": record.to_party.phone_number or "",
            "callRingStartUTC": iso_utc(start),
            "callTalkStartUTC": iso_utc(start),
            "callEndUTC": iso_utc(start + timedelta(seconds=seconds)),
            "callDurationSeconds": seconds,
            "callResult": _call_result(record.result, seconds),
            "recordingHref": record.recording_link or "",
            "transcriptFull": log.composed_log_details,
            "providerReferenceId": record.session_id,
            "vinProperties": vin,
        }
        # VinSolutions refuses a second call detail with this providerReferenceId (500 AlreadyLoggedException,
        # with the first one's Location): a create sent again after a lost answer finds the first one
        answer = await self._send(
            call.http, "POST", "/calldetails", profile="calls", media=V1_JSON, json=body, allow_status=(500,)
        )
        if answer.status_code == 500 and not _already_logged(answer):
            raise CrmHttpError(500, method="POST", url="/calldetails", outcome_unknown=True)
        match = _LOCATION_ID.search(str(answer.headers.get("location") or ""))
        if match is None:
            raise LookupError("Location")
        return LogResult(match.group(1), ReturnMessage("Call logged to VinSolutions.", "success", 2000))

    async def find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        """The call detail an earlier create made, asked the only way VinSolutions offers: the same create again.

        VinSolutions keys call details by `providerReferenceId` (the session id) and answers a second create
        with 500 AlreadyLoggedException and the first one's Location, so sending it again returns the earlier
        record and can never make a second one (there is no search of call details by reference).
        """
        result = await self.create_call_log(call, log)
        return result.log_id

    async def get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        dealer_id, user_id = _dealer_context(call.user)
        detail = await self._get_call_detail(call, ref.log_id)
        full_body = str(detail.get("transcriptFull") or detail.get("transcriptShort") or "")
        vin = detail.get("vinProperties") or {}
        contact_id = _positive_id(vin.get("contactId")) or _positive_id(ref.contact_id)
        contact_name = ""
        if contact_id is not None:
            records = await self._get(
                call.http,
                "/gateway/v1/contact",
                {"dealerId": dealer_id, "userId": user_id, "contactId": contact_id, "pageSize": 1},
            )
            contact_name = _contact_name(records[0]) if records else ""
        direction = detail.get("callDirection")
        subject = {"OUTBOUND": "Outbound call", "INBOUND": "Inbound call"}.get(str(direction), "Phone call")
        lead = _positive_id(vin.get("leadId"))
        info = CallLogInfo(
            subject=subject,
            note=_note_of(full_body),
            full_body=full_body,
            contact_name=contact_name,
            dispositions={"leads": lead} if lead is not None else {},
            full_log_response=detail,
        )
        return CallLogFetched(info)

    async def _get_call_detail(self, call: CrmCall, log_id: str) -> JsonDict:
        detail_id = _positive_id(log_id)
        if detail_id is None:
            raise CrmHttpError(404, method="GET", url="/calldetails/id")
        dealer_id, _user_id = _dealer_context(call.user)
        detail = await self._get(
            call.http,
            f"/calldetails/id/{detail_id}",
            {"accountId": str(dealer_id), "providerName": PROVIDER_NAME},
            media=V1_JSON,
        )
        if not isinstance(detail, dict):
            raise TypeError("call detail")
        return detail

    async def update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        """A PATCH of absolute values (the transcript, the duration, the lead): safe to send again."""
        detail_id = _positive_id(update.log.log_id)
        if detail_id is None:
            return CallLogUpdated(return_message=ReturnMessage("Call log ID not found.", "warning", 3000))
        dealer_id, user_id = _dealer_context(call.user)
        body: JsonDict = {"providerName": PROVIDER_NAME, "vinProperties": {"dealerId": dealer_id}}
        if update.composed_log_details:
            body["transcriptFull"] = update.composed_log_details
        if update.duration not in (None, "", "pending"):
            body["callDurationSeconds"] = call_seconds(update.duration)
        lead_id = _positive_id(update.additional_submission.get("leads"))
        if lead_id is not None:
            # the user the call detail is filed under stays (a call assigned to a colleague stays theirs; the
            # reference resolves the assigned user again, from the same mapping)
            existing = update.existing_call_log_details
            vin = existing.get("vinProperties") if isinstance(existing, dict) else None
            owner = _positive_id(vin.get("userId")) if isinstance(vin, dict) else None
            body["vinProperties"].update({"userId": owner or user_id, "leadId": lead_id})
        if len(body) == 2 and lead_id is None:
            return CallLogUpdated(
                update.composed_log_details, ReturnMessage("Nothing to update.", "success", 1000)
            )
        await self._send(
            call.http,
            "PATCH",
            f"/calldetails/id/{detail_id}",
            profile="calls",
            media=V1_JSON,
            json=body,
            idempotent=True,
        )
        return CallLogUpdated(
            update.composed_log_details, ReturnMessage("Call log updated in VinSolutions.", "success", 2000)
        )

    # --- message logs --------------------------------------------------------------------------------------

    async def create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        """The conversation's day as a block in a lead's notes: the chosen lead, else a new lead of the contact."""
        contact_id = _positive_id(log.contact.id)
        if contact_id is None:
            return LogResult(None, ReturnMessage("Contact not found", "warning", 5000))
        lead_id = _positive_id(log.additional_submission.get("leads"))
        if lead_id is None:
            lead_id = await self._create_lead(call, contact_id)
        lead = await self._lead(call, lead_id)
        marker = conversation_marker(log.conversation_log_id)
        notes = str(lead.get("notes") or "")
        if _block(notes, marker) is None:
            text = log.shared.body if log.shared is not None else _conversation_text(call.user, log)
            notes = _add_block(notes, marker, text)
            await self._put_notes(call, lead_id, lead, notes)
        return LogResult(str(lead_id), ReturnMessage("Message logged to VinSolutions lead.", "success", 2000))

    async def find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        """The chosen lead, or one of the contact's latest leads, whose notes hold the conversation's block."""
        marker = conversation_marker(log.conversation_log_id)
        chosen = _positive_id(log.additional_submission.get("leads"))
        if chosen is not None:
            candidates = [chosen]
        else:
            contact_id = _positive_id(log.contact.id)
            if contact_id is None:
                return None
            ids = [_positive_id(item.get("leadId")) for item in await self._leads(call, contact_id)]
            candidates = sorted((i for i in ids if i is not None), reverse=True)[:MARKER_SEARCH_LEADS]
        for lead_id in candidates:
            lead = await self._lead(call, lead_id)
            if _block(str(lead.get("notes") or ""), marker) is not None:
                return str(lead_id)
        return None

    async def update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        """Append one message inside the conversation's block (skipped when its marker is there already)."""
        lead_id = _positive_id(update.log_id)
        if lead_id is None:
            return ReturnMessage("Lead ID not found for message log update.", "warning", 3000)
        lead = await self._lead(call, lead_id)
        notes = str(lead.get("notes") or "")
        marker = conversation_marker(update.conversation_log_id)
        if update.shared is not None:
            rewritten = _replace_block(notes, marker, update.shared.body)
        else:
            needle = message_needle(update.message)
            block = _block(notes, marker)
            if needle in notes:
                return None
            line = _message_line(call.user, update.contact.name, update.contact.phone_number, update.message)
            rewritten = (
                _add_block(notes, marker, line) if block is None else _append_to_block(notes, marker, line)
            )
        if rewritten != notes:
            await self._put_notes(call, lead_id, lead, rewritten)
        return None

    async def _create_lead(self, call: CrmCall, contact_id: int) -> int:
        """A lead of the contact from the dealer's first lead source, as the reference makes one."""
        dealer_id, user_id = _dealer_context(call.user)
        sources = await self._get(
            call.http, "/leadSources", {"dealerId": dealer_id, "limit": 100}, media=V1_JSON
        )
        items = sources["items"]
        if not items:
            raise CrmHttpError(422, method="GET", url="/leadSources: the dealer has no lead source")
        contact_url = f"{API_BASE_URL}/contacts/id/{contact_id}?dealerid={dealer_id}&userid={user_id}"
        body = {"leadSource": str(items[0]["href"]), "leadType": "INTERNET", "contact": contact_url}
        answer = (await self._send(call.http, "POST", "/leads", media=LEADS_V3, json=body)).json()
        lead_id = _positive_id(answer.get("leadId"))
        if lead_id is None:
            raise TypeError("leadId")
        return lead_id

    async def _lead(self, call: CrmCall, lead_id: int) -> JsonDict:
        dealer_id, user_id = _dealer_context(call.user)
        lead = await self._get(
            call.http, f"/leads/id/{lead_id}", {"dealerId": dealer_id, "userId": user_id}, LEADS_V3
        )
        if not isinstance(lead, dict):
            raise TypeError("lead")
        return lead

    async def _put_notes(self, call: CrmCall, lead_id: int, lead: JsonDict, notes: str) -> None:
        """The reference's lead update body; the lead's own `isHot` is kept (the reference resets it)."""
        body = {
            "isHot": bool(lead.get("isHot", False)),
            "coBuyerContact": None,
            "trades": None,
            "vehiclesOfInterest": None,
            "notes": notes,
        }
        await self._send(call.http, "PUT", f"/leads/id/{lead_id}", media=LEADS_V3, json=body)

    # --- account -------------------------------------------------------------------------------------------

    async def get_user_list(self, call: CrmCall) -> list[CrmUser]:
        dealer_id, _user_id = _dealer_context(call.user)
        users = await self._get(call.http, "/gateway/v1/tenant/user", {"dealerId": dealer_id})
        return [
            CrmUser(str(int(u["UserId"])), _user_name(u) or str(u["UserId"]), str(u["EmailAddress"]))
            for u in users
            if u.get("EmailAddress")
        ]


# --- helpers ---------------------------------------------------------------------------------------------------


def _positive_id(value: Any) -> int | None:
    """A VinSolutions id (a positive integer) from a number or its text; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        return None
    return number if 0 < number < _MAX_ID else None


def _dealer_context(user: UserView) -> tuple[int, int]:
    info = user.platform_additional_info
    dealer_id = _positive_id(info.get("dealerId"))
    user_id = _positive_id(info.get("crmUserId"))
    if dealer_id is None or user_id is None:
        raise CrmHttpError(401, method="GET", url="session without a dealer")
    return dealer_id, user_id


def _not_connected() -> ReturnMessage:
    return ReturnMessage(
        "Could not connect to VinSolutions. Verify dealer enablement, dealer ID and CRM user ID.",
        "warning",
        8000,
        details=[
            {
                "title": "Details",
                "items": [
                    {
                        "id": "1",
                        "type": "text",
                        "text": "The dealership must enable RingCentral under Settings > Dealer Settings > "
                        "Partner Enablement (Application Service Providers and Call Tracking Providers).",
                    }
                ],
            }
        ],
    )


def _refresh_failed(status: int | None) -> ReturnMessage:
    """The reference asks the user to reconnect; a VinSolutions that did not answer is worth a retry first."""
    if status in (403, 404):
        return _not_connected()
    if status is None or status == 429 or status >= 500:
        text = "VinSolutions could not renew the session just now. Please try again later."
    else:
        text = "Could not renew the VinSolutions session. Please connect again."
    return ReturnMessage(text, "warning", 5000)


def _user_name(user: JsonDict) -> str:
    full = str(user.get("FullName") or "").strip()
    return full or f"{user.get('FirstName') or ''} {user.get('LastName') or ''}".strip()


def _phones(record: JsonDict) -> list[str]:
    phones = (record.get("ContactInformation") or {}).get("Phones") or []
    return [str(p.get("Number") or "") for p in phones if isinstance(p, dict)]


def _primary_phone(record: JsonDict) -> str:
    phones = [p for p in (record.get("ContactInformation") or {}).get("Phones") or [] if isinstance(p, dict)]
    for kind in ("cell", "home"):
        for phone in phones:
            if str(phone.get("PhoneType") or "").lower() == kind:
                return str(phone.get("Number") or "")
    return str(phones[0].get("Number") or "") if phones else ""


def _contact_name(record: JsonDict) -> str:
    info = record.get("ContactInformation") or {}
    parts = [str(info[k]) for k in ("FirstName", "MiddleName", "LastName") if info.get(k)]
    return " ".join(parts) or str(info.get("CompanyName") or "") or f"Contact {record['ContactId']}"


def _lead_choice(lead: JsonDict) -> JsonDict:
    title = f"Lead #{lead['leadId']}"
    status = lead.get("leadStatus") or lead.get("leadStatusType")
    if status:
        title += f" ({status})"
    source = (lead.get("leadSource") or {}).get("leadSourceName")
    if source:
        title += f" - {source}"
    return {"const": lead["leadId"], "title": title}


def _call_result(result: str | None, seconds: int) -> str:
    text = (result or "").lower()
    if "voicemail" in text or "message" in text:
        return "LEFT_MESSAGE"
    if "missed" in text or "no answer" in text or "busy" in text:
        return "NO_ANSWER"
    if seconds > 0 or "connect" in text or "answered" in text or "accepted" in text:
        return "SPOKE"
    return "NO_ANSWER"


def _already_logged(answer: CrmResponse) -> bool:
    """The 500 VinSolutions answers to a second create of one providerReferenceId (the reference's check)."""
    content = getattr(answer, "content", b"")
    return isinstance(content, bytes) and b"AlreadyLoggedException" in content


def _note_of(full_body: str) -> str:
    match = _PLAIN_NOTE.search(full_body)
    if match is not None and match.group(1).strip():
        return match.group(1).strip()
    if not full_body or full_body.lstrip().startswith("-"):
        return ""
    return full_body.strip()


# --- the SMS blocks in a lead's notes ----------------------------------------------------------------------------


def _begin(marker: str) -> str:
    return f"[{marker}]"


def _end(marker: str) -> str:
    return f"[/{marker}]"


def _block(notes: str, marker: str) -> tuple[int, int] | None:
    """Where the conversation's block sits in the notes: (start of its text, start of its end marker)."""
    begin = notes.find(_begin(marker))
    if begin < 0:
        return None
    start = begin + len(_begin(marker)) + 1
    end = notes.find(_end(marker), start - 1)
    return (start, end if end >= 0 else len(notes))


def _add_block(notes: str, marker: str, text: str) -> str:
    block = f"{_begin(marker)}\n{text.rstrip()}\n{_end(marker)}"
    return f"{notes.rstrip()}\n\n{block}" if notes.strip() else block


def _replace_block(notes: str, marker: str, text: str) -> str:
    found = _block(notes, marker)
    if found is None:
        return _add_block(notes, marker, text)
    start, end = found
    return f"{notes[:start]}{text.rstrip()}\n{notes[end:]}"


def _append_to_block(notes: str, marker: str, line: str) -> str:
    """The line goes before the block's footer; the block's message count goes up by one."""
    start, end = _block(notes, marker) or (0, 0)
    body = notes[start:end].rstrip("\n")
    footer_at = body.rfind(_FOOTER)
    head, tail = (body[:footer_at].rstrip(), f"\n\n{body[footer_at:]}") if footer_at >= 0 else (body, "")
    body = f"{head}\n{line}{tail}"
    count = _COUNT.search(body)
    if count is not None:
        total = int(count.group(1)) + 1
        body = f"{body[: count.start()]}Conversation ({total} messages):{body[count.end() :]}"
    return f"{notes[:start]}{body}\n{notes[end:]}"


def _message_line(user: UserView, contact_name: str, contact_phone: str, message: Message) -> str:
    zone = user_timezone(user)
    when = parse_time(message.creation_time).astimezone(zone).strftime("%Y-%m-%d %I:%M %p")
    if message.direction == "Inbound":
        sender = f"{contact_name or 'Contact'}{f' ({contact_phone})' if contact_phone else ''}"
    else:
        sender = str(user.platform_additional_info.get("userName") or "Agent")
    return f"[{when}] {sender}: {message.subject} {message_needle(message)}"


def _conversation_text(user: UserView, log: MessageLogCreate) -> str:
    """The reference's note: a voicemail or fax link, or the SMS conversation with its first message."""
    zone = user_timezone(user)
    day = parse_time(log.message.creation_time).astimezone(zone).strftime("%A, %B %d, %Y")
    name = log.contact.name or "Contact"
    if log.recording_link:
        lines = [f"Voicemail left by {name} - {day}", f"Voicemail recording link: {log.recording_link}"]
    elif log.fax_doc_link:
        lines = [f"Fax document from {name} - {day}", f"Fax document link: {log.fax_doc_link}"]
    else:
        agent = str(user.platform_additional_info.get("userName") or "")
        participants = [p for p in (agent, log.contact.name, *log.correspondents) if p]
        lines = [
            f"SMS conversation with {name} - {day}",
            f"Participants: {', '.join(participants)}",
            "Conversation (1 message):",
            _message_line(user, log.contact.name, log.contact.phone_number, log.message),
        ]
    return "\n".join([*lines, "", _FOOTER])

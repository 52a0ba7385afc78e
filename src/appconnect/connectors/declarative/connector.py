"""A connector written as configuration: each operation renders requests and maps the answers.

:func:`connector_class` turns one validated configuration into a :class:`~appconnect.connectors.sdk.Connector`
subclass whose platform is `meta.name` and which overrides exactly the interfaces the configuration declares, so
`/implementedInterfaces`, the answer guard, sessions, token refresh, idempotent logging and error mapping are the
server's as for any code connector.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Any, ClassVar

from appconnect.connectors.declarative.engine import Engine, as_text, get_by_path, render_string
from appconnect.connectors.declarative.hosts import fixed_hosts
from appconnect.connectors.kit import (
    all_or_first_failure,
    call_marker,
    call_seconds,
    call_subject,
    caller_number,
    conversation_marker,
    iso_utc,
    message_marker,
    message_needle,
    parse_time,
    unsearchable,
)
from appconnect.connectors.phone import overriding_renderings, significant_number
from appconnect.connectors.sdk import (
    AuthType,
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
    ContactRef,
    CreatedContact,
    CrmCall,
    CrmHttp,
    CrmUser,
    DispositionUpdate,
    JsonDict,
    LicenseStatus,
    LimitRule,
    LoginRequest,
    LogResult,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    OAuthInfo,
    PlatformUser,
    ReturnMessage,
    RingSense,
    UserInfoResult,
    UserView,
    placeholder_contact,
    stored_user_id,
)

#: the client's OAuth redirect page, where the reference sends every CRM's authorization answer
DEFAULT_REDIRECT_URI = "https://ringcentral.github.io/ringcentral-embeddable/redirect.html"
#: additional login fields never kept beside the user (the reference drops `password`; the key is the token)
_NEVER_KEPT = frozenset({"apiKey", "password", "secret", "clientSecret"})

#: configuration operation -> the Connector method it implements
OPERATION_METHODS: dict[str, str] = {
    "getUserInfo": "get_user_info",
    "findContact": "find_contact",
    "findContactWithName": "find_contact_with_name",
    "createContact": "create_contact",
    "createCallLog": "create_call_log",
    "getCallLog": "get_call_log",
    "updateCallLog": "update_call_log",
    "upsertCallDisposition": "upsert_call_disposition",
    "findCallLog": "find_call_log",
    "createMessageLog": "create_message_log",
    "updateMessageLog": "update_message_log",
    "findMessageLog": "find_message_log",
    "getUserList": "get_user_list",
    "getLicenseStatus": "get_license_status",
    "unAuthorize": "unauthorize",
}


def _party(phone: str | None, name: str | None) -> JsonDict:
    return {"phoneNumber": phone, "name": name}


def _contact_info(contact: ContactRef) -> JsonDict:
    return {"id": contact.id, "name": contact.name, "type": contact.type, "phoneNumber": contact.phone_number}


def _message(message: Message) -> JsonDict:
    return {
        **message.raw,
        "id": message.id,
        "type": message.type,
        "direction": message.direction,
        "subject": message.subject,
        "creationTime": message.creation_time,
        "from": _party(message.from_party.phone_number, message.from_party.name),
    }


def parsed_phone(e164: str) -> JsonDict:
    """The caller's number in the shape the reference's `parsedPhoneNumber` has (awesome-phonenumber's)."""
    import phonenumbers

    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return {"valid": False, "possible": False, "number": {"input": e164}}
    fmt = phonenumbers.PhoneNumberFormat
    return {
        "valid": phonenumbers.is_valid_number(number),
        "possible": phonenumbers.is_possible_number(number),
        "regionCode": phonenumbers.region_code_for_number(number),
        "countryCode": number.country_code,
        "number": {
            "input": e164,
            "e164": phonenumbers.format_number(number, fmt.E164),
            "international": phonenumbers.format_number(number, fmt.INTERNATIONAL),
            "national": phonenumbers.format_number(number, fmt.NATIONAL),
            "rfc3966": phonenumbers.format_number(number, fmt.RFC3966),
            "significant": phonenumbers.national_significant_number(number),
        },
    }


def _spellings(names: list[str], e164: str, overriding_format: str) -> list[str]:
    """The caller's number in each named spelling (extension `findContact.phoneSpellings`), without repeats."""
    parsed = parsed_phone(e164)["number"]
    found: list[str] = []
    for name in names:
        if name == "overridingFormat":
            values = overriding_renderings(e164, overriding_format)
        elif name == "digits":
            values = ["".join(ch for ch in e164 if ch.isdigit())]
        elif name == "significant":
            values = [significant_number(e164)]
        else:
            values = [str(parsed.get(name) or "")]
        found.extend(v for v in values if v and v not in found)
    return found or [e164]


class DeclarativeConnector(Connector):
    """The base of every configured connector; subclasses come from :func:`connector_class` only.

    The server hands a connector a user's API key only inside the header it builds from :meth:`basic_auth`;
    here that header carries the key itself (base64 of the key, no `:`), so the configuration's
    `credentialTemplate` can place `{{apiKey}}` wherever the CRM wants it.
    """

    spec: ClassVar[JsonDict] = {}

    # --- description -------------------------------------------------------------------------------------

    def manifest_entry(self) -> JsonDict:
        meta: JsonDict = self.spec["meta"]
        name = meta["name"]
        entry: JsonDict = {"name": name, "displayName": meta.get("displayName") or name}
        if self.auth_type == "oauth":
            auth: JsonDict = self.spec.get("auth") or {}
            entry["auth"] = {
                "type": "oauth",
                "oauth": {"authUrl": self._auth_url(), "scope": auth.get("scope")},
            }
        else:
            page = {"title": entry["displayName"], "content": [
                {"const": "apiKey", "title": "API key", "type": "string", "required": True},
            ]}  # fmt: skip
            entry["auth"] = {"type": "apiKey", "apiKey": {"page": page}}
        extra: JsonDict = meta.get("manifest") or {}
        entry.update({k: v for k, v in extra.items() if k != "name"})
        return entry

    def _auth_url(self) -> str | None:
        """Where the client sends the user to sign in: `<PLATFORM>_AUTH_URL`, else `auth.authUrl` (the
        reference keeps it in the Developer Console's manifest, not in the configuration)."""
        auth: JsonDict = self.spec.get("auth") or {}
        return self.config.get("auth_url") or auth.get("authUrl") or None

    def _secret_key(self) -> str | None:
        """`{{secretKey}}`: `<PLATFORM>_SECRET_KEY`, else the configuration's top-level `secretKey` (where the
        reference's store puts the connector's secret)."""
        return self.config.get("secret_key") or self.spec.get("secretKey") or None

    def base_url(self, user: UserView) -> str:
        """`<PLATFORM>_BASE_URL`, else `requestDefaults.baseUrl` (which may name `{{hostname}}`), else the host."""
        if self.config.get("base_url"):
            return self.config.get("base_url").rstrip("/")
        base = str((self.spec.get("requestDefaults") or {}).get("baseUrl") or "")
        if base:
            context = {"hostname": user.hostname, "user": {"hostname": user.hostname}}
            return as_text(render_string(base, context)).rstrip("/")
        return super().base_url(user)

    def rate_limit_key(self, user: UserView) -> str:
        """The company whose calls a `company` rule counts: the tenant `tenantIdPath` read at login, else the
        host the user signed in to, else the user alone (a fixed base URL is no company: it serves them all)."""
        tenant = user.platform_additional_info.get("tenantId")
        if tenant:
            return f"tenant:{tenant}"
        return user.hostname.lower() if user.hostname else f"user:{user.id}"

    def oauth_info(self, hostname: str | None = None) -> OAuthInfo:
        auth: JsonDict = self.spec.get("auth") or {}
        return OAuthInfo(
            client_id=self.config.get("client_id") or str(auth.get("clientId") or ""),
            client_secret=self.config.get("client_secret") or auth.get("clientSecret") or None,
            access_token_uri=self.config.get("token_url") or str(auth.get("tokenUrl") or ""),
            redirect_uri=self.config.get("redirect_uri")
            or str(auth.get("redirectUri") or DEFAULT_REDIRECT_URI),
            authorization_uri=self._auth_url(),
            scopes=auth.get("scope") or None,
        )

    def basic_auth(self, api_key: str) -> str:
        return base64.b64encode(api_key.encode()).decode()

    # --- the engine --------------------------------------------------------------------------------------

    def _credential(self, session_header: str) -> str:
        """The API key or access token inside the header the server built for this session."""
        scheme, _, value = session_header.partition(" ")
        if scheme == "Basic" and self.auth_type == "apiKey":
            try:
                return base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return ""
        return value

    def _reference_header(self, credential: str) -> str:
        """The header the reference's core prepares (`{{authHeader}}` and the fallback when `auth` has no
        `credentialTemplate`): `Basic base64(<key>:)` for an API key, `Bearer <token>` for OAuth."""
        if self.auth_type == "oauth":
            return f"Bearer {credential}"
        return "Basic " + base64.b64encode(f"{credential}:".encode()).decode()

    def _allowed_hosts(self) -> tuple[str, ...]:
        """Where a request carrying `{{secretKey}}` may go: the configuration's fixed hosts (its base URL or
        `<PLATFORM>_BASE_URL`, its absolute URLs) and `meta.allowedHosts`; never a host only a login named."""
        listed: list[str] = list((self.spec.get("meta") or {}).get("allowedHosts") or [])
        return (*fixed_hosts(self.spec, self.config.get("base_url")), *listed)

    def _engine(self, http: CrmHttp, credential: str, base_url: str) -> Engine:
        return Engine(
            self.spec,
            http,
            self._reference_header(credential),
            base_url,
            allowed_hosts=self._allowed_hosts(),
            secret=self._secret_key(),
        )

    def _context(self, call: CrmCall, inputs: JsonDict) -> tuple[Engine, JsonDict]:
        credential = self._credential(call.auth_header)
        user = call.user
        context: JsonDict = {
            **inputs,
            "user": {
                "accessToken": credential,
                "id": user.crm_user_id,
                "hostname": user.hostname,
                "timezoneName": user.timezone_name,
                "timezoneOffset": user.timezone_offset,
                "platform": user.platform,
                "platformAdditionalInfo": user.platform_additional_info,
            },
            "authHeader": self._reference_header(credential),
            "apiKey": credential,
            "secretKey": self._secret_key(),
        }
        return self._engine(call.http, credential, call.http.base_url), context

    def _mapping(self, op_name: str) -> JsonDict:
        mapping: JsonDict = self.spec["operations"][op_name].get("responseMapping") or {}
        return mapping

    async def _run(self, call: CrmCall, op_name: str, inputs: JsonDict) -> JsonDict:
        engine, context = self._context(call, inputs)
        return await engine.run(op_name, context)

    # --- interfaces (bound into a subclass only when the configuration declares the operation) ------------

    async def _get_user_info(self, request: LoginRequest) -> UserInfoResult:
        credential = request.api_key or self._credential(request.auth_header)
        platform = request.platform
        additional = {k: v for k, v in request.additional_info.items() if k not in _NEVER_KEPT}
        inputs: JsonDict = {
            "apiKey": credential,
            "hostname": request.hostname,
            "platform": platform,
            "userEmail": request.query.get("userEmail"),
            "additionalInfo": additional,
            "user": {"accessToken": credential},
            "authHeader": self._reference_header(credential),
            "secretKey": self._secret_key(),
        }
        answer = await self._engine(request.http, credential, request.http.base_url).run(
            "getUserInfo", inputs
        )
        read = {**answer, "additionalInfo": additional, "apiKey": credential, "hostname": request.hostname}
        read["platform"] = platform
        mapping = self._mapping("getUserInfo")
        raw_id = get_by_path(read, mapping.get("idPath") or "body.id")
        if raw_id is None or raw_id == "":
            message = ReturnMessage("Could not load user information.", "warning", 3000)
            return UserInfoResult(successful=False, return_message=message)
        tenant = get_by_path(read, mapping["tenantIdPath"]) if mapping.get("tenantIdPath") else None
        account = get_by_path(read, mapping["accountIdPath"]) if mapping.get("accountIdPath") else None
        info = dict(additional)
        for key, path in (mapping.get("platformAdditionalInfoPaths") or {}).items():
            info[key] = get_by_path(read, path)
        if tenant is not None:
            info["tenantId"] = as_text(tenant)
        name = get_by_path(read, mapping.get("namePath")) if mapping.get("namePath") else raw_id
        message_text = get_by_path(read, mapping["messagePath"]) if mapping.get("messagePath") else None
        overriding = (
            get_by_path(read, mapping["overridingApiKeyPath"])
            if mapping.get("overridingApiKeyPath")
            else None
        )
        return UserInfoResult(
            successful=True,
            user=PlatformUser(
                id=stored_user_id(platform, as_text(raw_id), as_text(tenant) if tenant is not None else None),
                name=as_text(name),
                timezone_name=_optional_text(read, mapping.get("timezoneNamePath")),
                timezone_offset=_optional_text(read, mapping.get("timezoneOffsetPath")),
                platform_additional_info=info,
                overriding_api_key=as_text(overriding) if overriding else None,
                account_id=as_text(account) if account is not None and account != "" else None,
            ),
            return_message=ReturnMessage(
                as_text(message_text) or f"Connected to {platform}.", "success", 1000
            ),
        )

    def _contacts(self, op_name: str, answer: JsonDict) -> list[Contact]:
        if "responseMapping" not in self.spec["operations"][op_name]:
            return []  # the reference's answer for a search it is not told how to read
        mapping = self._mapping(op_name)
        items = get_by_path(answer, mapping.get("listPath") or "body")
        if items is None:
            return []
        if not isinstance(items, list):
            raise TypeError("the contact list is not a list")
        item_map: JsonDict = mapping.get("item") or {}

        def read(item: Any, key: str, default: str) -> Any:
            return get_by_path(item, item_map.get(key) or default)

        contacts: list[Contact] = []
        for item in items:
            additional = read(item, "additionalInfoPath", "additionalInfo")
            contacts.append(
                Contact(
                    id=as_text(read(item, "idPath", "id")) if read(item, "idPath", "id") is not None else "",
                    name=as_text(read(item, "namePath", "name")),
                    phone=as_text(read(item, "phonePath", "phone")) or None,
                    type=as_text(read(item, "typePath", "type")) or "Contact",
                    title=as_text(read(item, "titlePath", "title")),
                    company=as_text(read(item, "companyPath", "company")),
                    created_date=as_text(read(item, "createdDatePath", "createdDate")) or None,
                    most_recent_activity_date=as_text(
                        read(item, "mostRecentActivityDatePath", "mostRecentActivityDate")
                    )
                    or None,
                    additional_info=additional if isinstance(additional, dict) else None,
                )
            )
        return contacts

    def _placeholder_type(self) -> str | None:
        types = self.contact_types()
        return types[0] if types else None

    async def _find_contact(self, call: CrmCall, lookup: ContactLookup) -> ContactMatches:
        refused = unsearchable(lookup)
        if refused is not None:
            return refused
        phone = caller_number(lookup)
        names: list[str] = self.spec["operations"]["findContact"].get("phoneSpellings") or []
        spellings = _spellings(names, phone, lookup.overriding_format) if names else [phone]
        common: JsonDict = {
            "parsedPhoneNumber": parsed_phone(phone),
            "overridingFormat": lookup.overriding_format,
            "isExtension": lookup.is_extension,
            "e164": phone,
        }
        answers = await all_or_first_failure(
            [self._run(call, "findContact", {**common, "phoneNumber": s}) for s in spellings]
        )
        unique: dict[str, Contact] = {}
        for answer in answers:
            for contact in self._contacts("findContact", answer):
                unique.setdefault(contact.id, contact)
        return ContactMatches(True, [*unique.values(), placeholder_contact(self._placeholder_type())])

    async def _find_contact_with_name(self, call: CrmCall, name: str) -> ContactMatches:
        answer = await self._run(call, "findContactWithName", {"name": name})
        return ContactMatches(True, self._contacts("findContactWithName", answer))

    async def _create_contact(self, call: CrmCall, new: NewContact) -> CreatedContact | None:
        inputs = {
            "phoneNumber": new.phone_number,
            "newContactName": new.name,
            "newContactType": new.contact_type,
            "additionalSubmission": new.additional_submission,
        }
        answer = await self._run(call, "createContact", inputs)
        mapping = self._mapping("createContact")
        contact_id = get_by_path(answer, mapping.get("idPath") or "body.id")
        if contact_id is None or contact_id == "":
            raise KeyError("contact id")  # created, but the answer does not say which: an unexpected answer
        name = get_by_path(answer, mapping.get("namePath") or "body.name")
        kind = get_by_path(answer, mapping.get("typePath") or "body.type")
        contact = Contact(
            id=as_text(contact_id),
            name=as_text(name) or new.name,
            type=as_text(kind) or new.contact_type or "Contact",
        )
        return CreatedContact(contact, ReturnMessage("Contact created", "success", 2000))

    def _call_inputs(self, log: CallLogCreate) -> JsonDict:
        record = log.call
        started = parse_time(record.start_time)
        subject = record.custom_subject or log.subject or call_subject(record.direction, log.contact.name)
        return {
            "contactInfo": _contact_info(log.contact),
            "callLog": {
                **record.raw,
                "sessionId": record.session_id,
                "id": record.id,
                "telephonySessionId": record.telephony_session_id,
                "direction": record.direction,
                "startTime": record.start_time,
                "duration": call_seconds(record.duration),
                "result": record.result,
                "from": _party(record.from_party.phone_number, record.from_party.name),
                "to": _party(record.to_party.phone_number, record.to_party.name),
                "recording": {"link": record.recording_link} if record.recording_link else None,
                "legs": record.legs,
            },
            "note": log.note,
            "additionalSubmission": log.additional_submission,
            "aiNote": log.ai_note,
            "transcript": log.transcript,
            "voicemailLink": log.voicemail_link,
            "voicemailMessageId": log.voicemail_message_id,
            "recordingDownloadLink": log.recording_download_link,
            "isFromSSCL": log.from_server_side_logging,
            **_ring_sense(log.ring_sense),
            "composedLogDetails": log.composed_log_details,
            "subject": subject,
            "startTime": iso_utc(started),
            "endTime": iso_utc(started + timedelta(seconds=call_seconds(record.duration))),
            "marker": call_marker(log),
        }

    async def _create_call_log(self, call: CrmCall, log: CallLogCreate) -> LogResult:
        answer = await self._run(call, "createCallLog", self._call_inputs(log))
        return LogResult(
            self._created_id("createCallLog", answer), ReturnMessage("Call logged", "success", 2000)
        )

    def _created_id(self, op_name: str, answer: JsonDict) -> str:
        log_id = get_by_path(answer, self._mapping(op_name).get("idPath") or "body.id")
        if log_id is None or log_id == "":
            raise KeyError(
                "log id"
            )  # the CRM took it but did not say its id: the server asks the marker search
        return as_text(log_id)

    async def _find_call_log(self, call: CrmCall, log: CallLogCreate) -> str | None:
        answer = await self._run(call, "findCallLog", self._call_inputs(log))
        return self._marked("findCallLog", answer, call_marker(log))

    def _marked(self, op_name: str, answer: JsonDict, marker: str) -> str | None:
        """The id of the first record of a marker search's answer that holds the marker."""
        mapping = self._mapping(op_name)
        items = get_by_path(answer, mapping["listPath"])
        if items is None:
            return None
        if not isinstance(items, list):
            raise TypeError("the search answer is not a list")
        for item in items:
            text_path = mapping.get("textPath")
            if text_path and marker not in as_text(get_by_path(item, text_path)):
                continue
            found = get_by_path(item, mapping.get("idPath") or "id")
            if found is not None and found != "":
                return as_text(found)
        return None

    async def _get_call_log(self, call: CrmCall, ref: CallLogRef) -> CallLogFetched:
        answer = await self._run(
            call, "getCallLog", {"thirdPartyLogId": ref.log_id, "contactId": ref.contact_id}
        )
        mapping = self._mapping("getCallLog")
        info = CallLogInfo(
            subject=_optional_text(answer, mapping.get("subjectPath") or "body.subject"),
            note=_optional_text(answer, mapping.get("notePath") or "body.note"),
            full_body=_optional_text(answer, mapping.get("fullBodyPath") or "body.note"),
            contact_name=_optional_text(answer, mapping.get("contactNamePath"))
            if mapping.get("contactNamePath")
            else None,
            full_log_response=answer["body"],
        )
        return CallLogFetched(info, ReturnMessage("Call log fetched.", "success", 3000))

    async def _update_call_log(self, call: CrmCall, update: CallLogUpdate) -> CallLogUpdated:
        started = parse_time(update.start_time)
        inputs = {
            "thirdPartyLogId": update.log.log_id,
            "existingCallLog": {"thirdPartyLogId": update.log.log_id, "contactId": update.log.contact_id},
            "subject": update.subject,
            "note": update.note,
            "startTime": iso_utc(started),
            "endTime": iso_utc(started + timedelta(seconds=call_seconds(update.duration))),
            "duration": call_seconds(update.duration),
            "result": update.result,
            "recordingLink": update.recording_link,
            "recordingDownloadLink": update.recording_download_link,
            **_ring_sense(update.ring_sense),
            "additionalSubmission": update.additional_submission,
            "composedLogDetails": update.composed_log_details,
            "existingCallLogDetails": update.existing_call_log_details,
        }
        await self._run(call, "updateCallLog", inputs)
        return CallLogUpdated(None, ReturnMessage("Call log updated.", "success", 3000))

    async def _upsert_call_disposition(self, call: CrmCall, update: DispositionUpdate) -> LogResult:
        inputs = {
            "thirdPartyLogId": update.log.log_id,
            "existingCallLog": {"thirdPartyLogId": update.log.log_id, "contactId": update.log.contact_id},
            "dispositions": update.dispositions,
        }
        await self._run(call, "upsertCallDisposition", inputs)
        return LogResult(update.log.log_id, ReturnMessage("Disposition updated", "success", 2000))

    def _message_inputs(self, log: MessageLogCreate | MessageLogUpdate) -> JsonDict:
        created = parse_time(log.message.creation_time)
        shared = log.shared
        return {
            "contactInfo": _contact_info(log.contact),
            "message": _message(log.message),
            "creationTime": iso_utc(created),
            "additionalSubmission": log.additional_submission,
            "imageLink": log.image_link,
            "videoLink": None,
            "conversationLogId": log.conversation_log_id,
            "shared": {"subject": shared.subject, "body": shared.body} if shared else None,
            "marker": conversation_marker(log.conversation_log_id),
            "messageMarker": message_needle(log.message),
        }

    async def _create_message_log(self, call: CrmCall, log: MessageLogCreate) -> LogResult:
        inputs = {
            **self._message_inputs(log),
            "recordingLink": log.recording_link,
            "faxDocLink": log.fax_doc_link,
            "faxDownloadLink": log.fax_doc_link,
            "conversationId": log.conversation_id,
            "correspondents": log.correspondents,
            "participants": ", ".join([log.contact.name, *log.correspondents]),
            "marker": message_marker(log),
        }
        op_name = self._message_op("createMessageLog", log.shared is not None)
        answer = await self._run(call, op_name, inputs)
        log_id = self._created_id(op_name, answer)
        return LogResult(log_id, ReturnMessage("Message logged", "success", 1000))

    async def _find_message_log(self, call: CrmCall, log: MessageLogCreate) -> str | None:
        answer = await self._run(call, "findMessageLog", self._message_inputs(log))
        return self._marked("findMessageLog", answer, message_marker(log))

    async def _update_message_log(self, call: CrmCall, update: MessageLogUpdate) -> ReturnMessage | None:
        inputs = {
            **self._message_inputs(update),
            "thirdPartyLogId": update.log_id,
            "existingMessageLog": {"thirdPartyLogId": update.log_id},
        }
        await self._run(call, self._message_op("updateMessageLog", update.shared is not None), inputs)
        return ReturnMessage("Message log updated", "success", 3000)

    def _message_op(self, op_name: str, shared: bool) -> str:
        """A shared conversation's own operation when the configuration has one (`createSharedMessageLog`)."""
        shared_name = op_name.replace("MessageLog", "SharedMessageLog")
        return shared_name if shared and shared_name in self.spec["operations"] else op_name

    async def _get_user_list(self, call: CrmCall) -> list[CrmUser]:
        answer = await self._run(call, "getUserList", {})
        mapping = self._mapping("getUserList")
        if mapping.get("listPath"):
            items = get_by_path(answer, mapping["listPath"]) or []
            if not isinstance(items, list):
                raise TypeError("the user list is not a list")
        else:  # the reference reads no list without a listPath; an answer that is itself the list is read
            items = answer["body"] if isinstance(answer["body"], list) else []
        return [
            CrmUser(
                id=as_text(get_by_path(item, mapping.get("idPath") or "id")),
                name=as_text(get_by_path(item, mapping.get("namePath") or "name")),
                email=_optional_text(item, mapping.get("emailPath") or "email"),
            )
            for item in items
        ]

    async def _get_license_status(self, call: CrmCall) -> LicenseStatus:
        answer = await self._run(
            call, "getLicenseStatus", {"userId": call.user.id, "platform": call.user.platform}
        )
        mapping = self._mapping("getLicenseStatus")
        valid = get_by_path(answer, mapping.get("isLicenseValidPath") or "body.isLicenseValid")
        return LicenseStatus(
            valid is True or as_text(valid).lower() == "true",
            as_text(get_by_path(answer, mapping.get("licenseStatusPath") or "body.licenseStatus")),
            as_text(
                get_by_path(
                    answer, mapping.get("licenseStatusDescriptionPath") or "body.licenseStatusDescription"
                )
            ),
        )

    async def _unauthorize(self, call: CrmCall) -> ReturnMessage | None:
        await self._run(call, "unAuthorize", {})
        return None


def _ring_sense(found: RingSense | None) -> JsonDict:
    """The reference's `ringSense*` template variables ("" when RingSense has nothing, as there)."""
    found = found or RingSense()
    return {
        "ringSenseTranscript": found.transcript or "",
        "ringSenseSummary": found.summary or "",
        "ringSenseAIScore": found.ai_score or "",
        "ringSenseBulletedSummary": found.bulleted_summary or "",
        "ringSenseLink": found.link or "",
    }


def _optional_text(value: Any, path: str | None) -> str | None:
    if not path:
        return None
    found = get_by_path(value, path)
    return None if found is None else as_text(found)


def connector_class(config: JsonDict) -> type[DeclarativeConnector]:
    """A connector class for one validated configuration: `meta.name` is its platform, and it overrides the
    interfaces of the operations the configuration declares, no others."""
    meta: JsonDict = config.get("meta") or {}
    name = str(meta["name"])
    auth_type: AuthType = "oauth" if (config.get("auth") or {}).get("type") == "oauth" else "apiKey"
    rules = tuple(
        LimitRule(
            str(rule["name"]),
            rule["scope"],
            per_seconds=float(rule["perSeconds"]),
            requests=rule.get("requests"),
            paths=tuple(str(p).lower() for p in rule.get("paths") or ()),
        )
        for rule in meta.get("rateLimits") or ()
    )
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": f"DeclarativeConnector[{name}]",
        "__doc__": f"The declarative connector {name!r} (from its configuration).",
        "platform": name,
        "auth_type": auth_type,
        "log_format": str(meta.get("logFormat") or "text/plain"),
        "rate_limits": rules,
        "spec": config,
    }
    for op_name, method in OPERATION_METHODS.items():
        if op_name in config["operations"]:
            namespace[method] = getattr(DeclarativeConnector, f"_{method}")
    return type(f"DeclarativeConnector_{name}", (DeclarativeConnector,), namespace)

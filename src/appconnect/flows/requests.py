"""Typed request bodies: wrong JSON types are refused with a clear message before anything is written.

Every string that ends up in a database column is bounded to the column's length (so both databases answer the
same clear 400 instead of PostgreSQL failing the insert), and `check_json` refuses what no field may carry
anywhere in a body: NUL characters (PostgreSQL cannot store them), integers JSON tools cannot round-trip, and
nesting deeper than any real client sends.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
)

from appconnect.connectors.sdk import CallParty

# Column lengths of the tables these values are stored in (store/tables.py).
ID_CHARS = 255
EXTENSION_CHARS = 64
PHONE_CHARS = 32
PLATFORM_CHARS = 64
# Message ids and conversation ids get `-<contactId>` appended for group SMS and must still fit ID_CHARS.
MESSAGE_ID_CHARS = 128
CONTACT_ID_CHARS = 120

MAX_DURATION_SECONDS = 10**9  # ~31 years; a call is shorter
MAX_JSON_DEPTH = 32
INT_RANGE = (-(2**63), 2**63 - 1)  # what orjson (and the CRMs' JSON parsers) can carry

MAX_SETTINGS_KEYS = 300
MAX_SETTINGS_DEPTH = 8
MAX_SETTINGS_BYTES = 64 * 1024


class InvalidField(ValueError):
    """A request value no route accepts; `field` is its dotted path in the body (or the query name)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def check_json(value: Any, path: str = "", depth: int = 0) -> None:
    """Refuse NUL characters (in keys too), out-of-range integers and absurd nesting, naming where."""
    where = path or "body"
    if depth > MAX_JSON_DEPTH:
        raise InvalidField(where, f"nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidField(where, "must not contain NUL characters")
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        return
    elif isinstance(value, int):
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise InvalidField(where, "number out of range")
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                raise InvalidField(path or "body", "keys must not contain NUL characters")
            check_json(item, child, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]", depth + 1)


def _bounded(limit: int) -> AfterValidator:
    def check(value: str | int) -> str | int:
        if len(str(value)) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value

    return AfterValidator(check)


def _session_id(value: str | int) -> str | int:
    text = str(value)
    if not text.strip():
        raise ValueError("must not be empty")
    if "," in text:
        raise ValueError("must not contain a comma (GET /callLog takes a comma-separated list)")
    if len(text) > ID_CHARS:
        raise ValueError(f"must be at most {ID_CHARS} characters")
    return value


def _duration(value: int | str | float) -> int | str | float:
    if isinstance(value, str):
        if len(value) > 32:
            raise ValueError("must be a number of seconds or 'pending'")
    elif not 0 <= value <= MAX_DURATION_SECONDS:
        raise ValueError(f"must be between 0 and {MAX_DURATION_SECONDS} seconds")
    return value


def _documented(**keywords: int | str) -> Any:
    """JSON-schema keywords for the OpenAPI document; string keywords do not constrain the integer branch."""
    extra: dict[str, JsonValue] = dict(keywords)
    return Field(json_schema_extra=extra)


Id = Annotated[StrictStr, StringConstraints(max_length=ID_CHARS)]
Duration = Annotated[
    StrictInt | StrictStr | float,
    AfterValidator(_duration),
    _documented(minimum=0, maximum=MAX_DURATION_SECONDS, maxLength=32),
]
IdOrNumber = Annotated[StrictStr | StrictInt, _bounded(ID_CHARS), _documented(maxLength=ID_CHARS)]
SessionId = Annotated[
    StrictStr | StrictInt,
    AfterValidator(_session_id),
    _documented(maxLength=ID_CHARS, pattern=r"^[^,]*[^,\s][^,]*$"),
]
ExtensionNumber = Annotated[
    StrictStr | StrictInt, _bounded(EXTENSION_CHARS), _documented(maxLength=EXTENSION_CHARS)
]
ContactId = Annotated[
    StrictStr | StrictInt, _bounded(CONTACT_ID_CHARS), _documented(maxLength=CONTACT_ID_CHARS)
]
MessageId = Annotated[
    StrictStr | StrictInt, _bounded(MESSAGE_ID_CHARS), _documented(maxLength=MESSAGE_ID_CHARS)
]
Phone = Annotated[StrictStr, StringConstraints(max_length=PHONE_CHARS)]
ConversationLogId = Annotated[StrictStr, StringConstraints(max_length=MESSAGE_ID_CHARS)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class ApiKeyLoginBody(_Body):
    platform: Annotated[StrictStr, StringConstraints(max_length=PLATFORM_CHARS)] | None = None
    api_key: StrictStr | None = Field(default=None, alias="apiKey")
    hostname: Annotated[StrictStr, StringConstraints(max_length=512)] | None = None
    proxy_id: StrictStr | None = Field(default=None, alias="proxyId")
    additional_info: dict[str, Any] | None = Field(default=None, alias="additionalInfo")
    #: the client sends the RingCentral account id as a number or as text (the contract allows both)
    rc_account_id: IdOrNumber | None = Field(default=None, alias="rcAccountId")


class ContactCreateBody(_Body):
    phone_number: Phone | None = Field(default=None, alias="phoneNumber")
    new_contact_name: StrictStr | None = Field(default=None, alias="newContactName")
    new_contact_type: StrictStr | None = Field(default=None, alias="newContactType")
    additional_submission: dict[str, Any] | None = Field(default=None, alias="additionalSubmission")


class PartyBody(_Body):
    phone_number: StrictStr | None = Field(default=None, alias="phoneNumber")
    extension_number: StrictStr | StrictInt | None = Field(default=None, alias="extensionNumber")
    name: StrictStr | None = None


def party_of(body: PartyBody | None) -> CallParty:
    """The SDK's view of a `from`/`to` party (empty when the client sent none)."""
    if body is None:
        return CallParty()
    extension = body.extension_number
    return CallParty(
        phone_number=body.phone_number,
        extension_number=None if extension is None else str(extension),
        name=body.name,
    )


class CallLogInfoBody(_Body):
    session_id: SessionId = Field(alias="sessionId")
    id: IdOrNumber | None = None
    telephony_session_id: Id | None = Field(default=None, alias="telephonySessionId")
    direction: StrictStr = "Outbound"
    start_time: StrictStr | StrictInt | None = Field(default=None, alias="startTime")
    duration: Duration | None = None
    result: StrictStr | None = None
    from_: PartyBody | None = Field(default=None, alias="from")
    to: PartyBody | None = None
    recording: dict[str, Any] | None = None
    legs: list[dict[str, Any]] | None = None
    custom_subject: StrictStr | None = Field(default=None, alias="customSubject")
    account_id: StrictStr | None = Field(default=None, alias="accountId")
    extension_number: ExtensionNumber | None = Field(default=None, alias="extensionNumber")
    hashed_extension_id: Id | None = Field(default=None, alias="hashedExtensionId")
    rc_extension_id: StrictStr | StrictInt | None = Field(default=None, alias="rcExtensionId")
    voicemail: dict[str, Any] | None = None


class CallLogBody(_Body):
    log_info: CallLogInfoBody = Field(alias="logInfo")
    contact_id: ContactId | None = Field(default=None, alias="contactId")
    contact_type: StrictStr | None = Field(default=None, alias="contactType")
    contact_name: StrictStr | None = Field(default=None, alias="contactName")
    note: StrictStr | None = None
    ai_note: StrictStr | None = Field(default=None, alias="aiNote")
    transcript: StrictStr | None = None
    additional_submission: dict[str, Any] | None = Field(default=None, alias="additionalSubmission")
    extension_number: ExtensionNumber | None = Field(default=None, alias="extensionNumber")
    hashed_extension_id: Id | None = Field(default=None, alias="hashedExtensionId")
    rc_extension_id: StrictStr | StrictInt | None = Field(default=None, alias="rcExtensionId")
    voicemail_link: StrictStr | None = Field(default=None, alias="voicemailLink")
    voicemail_message_id: StrictStr | StrictInt | None = Field(default=None, alias="voicemailMessageId")
    recording_download_link: StrictStr | None = Field(default=None, alias="recordingDownloadLink")
    ring_sense_transcript: StrictStr | None = Field(default=None, alias="ringSenseTranscript")
    ring_sense_summary: StrictStr | None = Field(default=None, alias="ringSenseSummary")
    ring_sense_ai_score: StrictStr | StrictInt | float | None = Field(default=None, alias="ringSenseAIScore")
    ring_sense_bulleted_summary: StrictStr | None = Field(default=None, alias="ringSenseBulletedSummary")
    ring_sense_link: StrictStr | None = Field(default=None, alias="ringSenseLink")
    #: sent by RingCentral's server-side call logging (the server also sets it from the `SSCL` user agent)
    is_from_sscl: StrictBool | None = Field(default=None, alias="isFromSSCL")


class CallLogPatchBody(_Body):
    session_id: SessionId = Field(alias="sessionId")
    extension_number: ExtensionNumber | None = Field(default=None, alias="extensionNumber")
    hashed_extension_id: Id | None = Field(default=None, alias="hashedExtensionId")
    rc_extension_id: StrictStr | StrictInt | None = Field(default=None, alias="rcExtensionId")
    account_id: StrictStr | None = Field(default=None, alias="accountId")
    recording_link: StrictStr | None = Field(default=None, alias="recordingLink")
    subject: StrictStr | None = None
    note: StrictStr | None = None
    start_time: StrictStr | StrictInt | None = Field(default=None, alias="startTime")
    duration: Duration | None = None
    result: StrictStr | None = None
    direction: StrictStr | None = None
    from_: PartyBody | None = Field(default=None, alias="from")
    to: PartyBody | None = None
    legs: list[dict[str, Any]] | None = None
    ai_note: StrictStr | None = Field(default=None, alias="aiNote")
    transcript: StrictStr | None = None
    voicemail_link: StrictStr | None = Field(default=None, alias="voicemailLink")
    additional_submission: dict[str, Any] | None = Field(default=None, alias="additionalSubmission")
    recording_download_link: StrictStr | None = Field(default=None, alias="recordingDownloadLink")
    ring_sense_transcript: StrictStr | None = Field(default=None, alias="ringSenseTranscript")
    ring_sense_summary: StrictStr | None = Field(default=None, alias="ringSenseSummary")
    ring_sense_ai_score: StrictStr | StrictInt | float | None = Field(default=None, alias="ringSenseAIScore")
    ring_sense_bulleted_summary: StrictStr | None = Field(default=None, alias="ringSenseBulletedSummary")
    ring_sense_link: StrictStr | None = Field(default=None, alias="ringSenseLink")
    #: set by the server from the `SSCL` user agent (RingCentral's server-side call logging), as the reference
    is_from_sscl: StrictBool | None = Field(default=None, alias="isFromSSCL")


class DispositionBody(_Body):
    session_id: SessionId = Field(alias="sessionId")
    extension_number: ExtensionNumber | None = Field(default=None, alias="extensionNumber")
    hashed_extension_id: Id | None = Field(default=None, alias="hashedExtensionId")
    rc_extension_id: StrictStr | StrictInt | None = Field(default=None, alias="rcExtensionId")
    dispositions: dict[str, Any] = Field(default_factory=dict)
    #: set by the server from the `SSCL` user agent
    is_from_sscl: StrictBool | None = Field(default=None, alias="isFromSSCL")


class MessageBody(_Body):
    id: MessageId
    type: StrictStr = "SMS"
    direction: StrictStr = "Inbound"
    subject: StrictStr | None = ""
    creation_time: StrictStr | None = Field(default=None, alias="creationTime")
    from_: PartyBody | None = Field(default=None, alias="from")
    attachments: list[dict[str, Any]] | None = None


class CorrespondentBody(_Body):
    phone_number: StrictStr | None = Field(default=None, alias="phoneNumber")
    name: StrictStr | None = None


class MessageLogInfoBody(_Body):
    conversation_id: MessageId | None = Field(default=None, alias="conversationId")
    conversation_log_id: ConversationLogId | None = Field(default=None, alias="conversationLogId")
    messages: list[MessageBody] = Field(default_factory=list)
    correspondents: list[CorrespondentBody] = Field(default_factory=list)
    #: a shared SMS (a call queue's or a colleague's conversation): its owner, assignee, creation time and
    #: whole history (messages, notes, assignments) as the client sends it
    owner: dict[str, Any] | None = None
    assignee: dict[str, Any] | None = None
    creation_time: StrictStr | StrictInt | None = Field(default=None, alias="creationTime")
    entities: list[dict[str, Any]] | None = None
    #: the user's RingCentral token, to download attachments (images, faxes) into the CRM; never stored (the
    #: retry queue keeps the request without it: a replay links the attachment instead)
    rc_access_token: StrictStr | None = Field(default=None, alias="rcAccessToken", exclude=True, repr=False)


class MessageLogBody(_Body):
    log_info: MessageLogInfoBody = Field(alias="logInfo")
    contact_id: ContactId | None = Field(default=None, alias="contactId")
    contact_type: StrictStr | None = Field(default=None, alias="contactType")
    contact_name: StrictStr | None = Field(default=None, alias="contactName")
    additional_submission: dict[str, Any] | None = Field(default=None, alias="additionalSubmission")


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def check_settings_size(settings: dict[str, Any]) -> None:
    """Settings are read back on every `GET /user/settings`: keep them small, shallow and few."""
    if len(settings) > MAX_SETTINGS_KEYS:
        raise ValueError(f"has more than {MAX_SETTINGS_KEYS} settings")
    if _depth(settings) > MAX_SETTINGS_DEPTH:
        raise ValueError(f"is nested more than {MAX_SETTINGS_DEPTH} levels deep")
    if len(orjson.dumps(settings)) > MAX_SETTINGS_BYTES:
        raise ValueError(f"is larger than {MAX_SETTINGS_BYTES} bytes")


class UserSettingsBody(_Body):
    user_settings: dict[str, Any] = Field(default_factory=dict, alias="userSettings")
    setting_keys_to_remove: list[Annotated[StrictStr, StringConstraints(max_length=ID_CHARS)]] = Field(
        default_factory=list, alias="settingKeysToRemove", max_length=MAX_SETTINGS_KEYS
    )

    @field_validator("user_settings")
    @classmethod
    def _small_enough(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_settings_size(value)
        return value

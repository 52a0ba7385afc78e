"""Typed request bodies: wrong JSON types are refused with a clear message before anything is written."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from appconnect.connectors.sdk import CallParty


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ApiKeyLoginBody(_Body):
    platform: StrictStr | None = None
    api_key: StrictStr | None = Field(default=None, alias="apiKey")
    hostname: StrictStr | None = None
    proxy_id: StrictStr | None = Field(default=None, alias="proxyId")
    additional_info: dict[str, Any] | None = Field(default=None, alias="additionalInfo")
    rc_account_id: StrictStr | None = Field(default=None, alias="rcAccountId")


class ContactCreateBody(_Body):
    phone_number: StrictStr | None = Field(default=None, alias="phoneNumber")
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
    session_id: StrictStr | StrictInt = Field(alias="sessionId")
    id: StrictStr | StrictInt | None = None
    telephony_session_id: StrictStr | None = Field(default=None, alias="telephonySessionId")
    direction: StrictStr = "Outbound"
    start_time: StrictStr | StrictInt | None = Field(default=None, alias="startTime")
    duration: StrictInt | StrictStr | float | None = None
    result: StrictStr | None = None
    from_: PartyBody | None = Field(default=None, alias="from")
    to: PartyBody | None = None
    recording: dict[str, Any] | None = None
    legs: list[dict[str, Any]] | None = None
    custom_subject: StrictStr | None = Field(default=None, alias="customSubject")
    account_id: StrictStr | None = Field(default=None, alias="accountId")
    extension_number: StrictStr | StrictInt | None = Field(default=None, alias="extensionNumber")
    hashed_extension_id: StrictStr | None = Field(default=None, alias="hashedExtensionId")
    rc_extension_id: StrictStr | StrictInt | None = Field(default=None, alias="rcExtensionId")
    voicemail: dict[str, Any] | None = None


class CallLogBody(_Body):
    log_info: CallLogInfoBody = Field(alias="logInfo")
    contact_id: StrictStr | StrictInt | None = Field(default=None, alias="contactId")
    contact_type: StrictStr | None = Field(default=None, alias="contactType")
    contact_name: StrictStr | None = Field(default=None, alias="contactName")
    note: StrictStr | None = None
    ai_note: StrictStr | None = Field(default=None, alias="aiNote")
    transcript: StrictStr | None = None
    additional_submission: dict[str, Any] | None = Field(default=None, alias="additionalSubmission")
    extension_number: StrictStr | StrictInt | None = Field(default=None, alias="extensionNumber")
    hashed_extension_id: StrictStr | None = Field(default=None, alias="hashedExtensionId")
    rc_extension_id: StrictStr | StrictInt | None = Field(default=None, alias="rcExtensionId")
    voicemail_link: StrictStr | None = Field(default=None, alias="voicemailLink")


class CallLogPatchBody(_Body):
    session_id: StrictStr | StrictInt = Field(alias="sessionId")
    extension_number: StrictStr | StrictInt | None = Field(default=None, alias="extensionNumber")
    hashed_extension_id: StrictStr | None = Field(default=None, alias="hashedExtensionId")
    rc_extension_id: StrictStr | StrictInt | None = Field(default=None, alias="rcExtensionId")
    account_id: StrictStr | None = Field(default=None, alias="accountId")
    recording_link: StrictStr | None = Field(default=None, alias="recordingLink")
    subject: StrictStr | None = None
    note: StrictStr | None = None
    start_time: StrictStr | StrictInt | None = Field(default=None, alias="startTime")
    duration: StrictInt | StrictStr | float | None = None
    result: StrictStr | None = None
    direction: StrictStr | None = None
    from_: PartyBody | None = Field(default=None, alias="from")
    to: PartyBody | None = None
    legs: list[dict[str, Any]] | None = None
    ai_note: StrictStr | None = Field(default=None, alias="aiNote")
    transcript: StrictStr | None = None
    voicemail_link: StrictStr | None = Field(default=None, alias="voicemailLink")
    additional_submission: dict[str, Any] | None = Field(default=None, alias="additionalSubmission")


class DispositionBody(_Body):
    session_id: StrictStr | StrictInt = Field(alias="sessionId")
    extension_number: StrictStr | StrictInt | None = Field(default=None, alias="extensionNumber")
    hashed_extension_id: StrictStr | None = Field(default=None, alias="hashedExtensionId")
    rc_extension_id: StrictStr | StrictInt | None = Field(default=None, alias="rcExtensionId")
    dispositions: dict[str, Any] = Field(default_factory=dict)


class MessageBody(_Body):
    id: StrictStr | StrictInt
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
    conversation_id: StrictStr | StrictInt | None = Field(default=None, alias="conversationId")
    conversation_log_id: StrictStr | None = Field(default=None, alias="conversationLogId")
    messages: list[MessageBody] = Field(default_factory=list)
    correspondents: list[CorrespondentBody] = Field(default_factory=list)


class MessageLogBody(_Body):
    log_info: MessageLogInfoBody = Field(alias="logInfo")
    contact_id: StrictStr | StrictInt | None = Field(default=None, alias="contactId")
    contact_type: StrictStr | None = Field(default=None, alias="contactType")
    contact_name: StrictStr | None = Field(default=None, alias="contactName")
    additional_submission: dict[str, Any] | None = Field(default=None, alias="additionalSubmission")


class UserSettingsBody(_Body):
    user_settings: dict[str, Any] = Field(default_factory=dict, alias="userSettings")
    setting_keys_to_remove: list[StrictStr] = Field(default_factory=list, alias="settingKeysToRemove")

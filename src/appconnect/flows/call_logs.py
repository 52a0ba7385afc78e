"""Call logging: exactly one CRM activity per call session and agent, even when the client repeats itself."""

from __future__ import annotations

from typing import Any

from appconnect.connectors.sdk import (
    CallLogCreate,
    CallLogFetched,
    CallLogRef,
    CallLogUpdate,
    CallRecord,
    Connector,
    CrmCall,
    CrmHttpError,
    DispositionUpdate,
    ReturnMessage,
)
from appconnect.flows.common import active_user, chosen_contact, connector_for, current_user
from appconnect.flows.composer import compose_call_log
from appconnect.flows.errors import DATABASE_FAILED, crm_error_message, warning
from appconnect.flows.reply import Reply, envelope
from appconnect.flows.requests import (
    CallLogBody,
    CallLogInfoBody,
    CallLogPatchBody,
    DispositionBody,
    party_of,
)
from appconnect.flows.services import Services
from appconnect.flows.session import SessionRevoked, open_session
from appconnect.security.crypto import hash_value
from appconnect.security.jwt import SessionClaims
from appconnect.store.call_logs import CallLogRow, ExtensionIdentity, Reservation

COMPOSED_FORMATS = ("text/plain", "text/html", "text/markdown")


def _text(value: object) -> str:
    return "" if value is None else str(value)


def identity_of(
    services: Services, *, extension_number: object, hashed_extension_id: str | None, rc_extension_id: object
) -> ExtensionIdentity:
    """The agent identity a log is deduplicated by (the contract's callLogLookup)."""
    hashed = hashed_extension_id or ""
    if not hashed and rc_extension_id not in (None, ""):
        hashed = hash_value(str(rc_extension_id), services.keys.hash_key)
    return ExtensionIdentity(extension_number=_text(extension_number), hashed_extension_id=hashed)


def call_record(info: CallLogInfoBody) -> CallRecord:
    recording = info.recording or {}
    return CallRecord(
        session_id=str(info.session_id),
        id=_text(info.id) or None,
        telephony_session_id=info.telephony_session_id,
        direction=info.direction,
        start_time=_text(info.start_time) or None,
        duration=_duration(info.duration),
        result=info.result,
        from_party=party_of(info.from_),
        to_party=party_of(info.to),
        recording_link=recording.get("link") if isinstance(recording.get("link"), str) else None,
        custom_subject=info.custom_subject,
        legs=list(info.legs or []),
        raw=info.model_dump(by_alias=True, exclude_none=True),
    )


async def create_call_log(services: Services, claims: SessionClaims, body: CallLogBody) -> Reply:
    info = body.log_info
    session_id = str(info.session_id)
    identity = identity_of(
        services,
        extension_number=body.extension_number or info.extension_number,
        hashed_extension_id=body.hashed_extension_id or info.hashed_extension_id,
        rc_extension_id=body.rc_extension_id or info.rc_extension_id,
    )
    existing_message = ReturnMessage(f"Existing log for session {session_id}", "warning", 3000)
    if session_id in await services.call_logs.find([session_id], identity, include_pending=True):
        return Reply(envelope(False, existing_message))
    user = await active_user(services, claims, by_platform=False)
    if user is None:
        return Reply(envelope(False, warning("User not found")))
    connector = connector_for(services, user.platform)
    record = call_record(info)
    contact_phone = record.contact_party.phone_number or ""
    contact = chosen_contact(body.contact_id, contact_phone, body.contact_type, body.contact_name)
    if contact is None:
        return Reply(envelope(False, warning(f"Contact not found for number {contact_phone}")))
    outcome, pk = await services.call_logs.reserve(
        session_id=session_id,
        identity=identity,
        call_id=record.telephony_session_id or record.id or "",
        platform=user.platform,
        user_id=user.id,
        contact_id=contact.id,
        stale_after=services.settings.crm_read_timeout * 2 + 10,
    )
    if outcome is Reservation.EXISTS or pk is None:
        return Reply(envelope(False, existing_message))
    try:
        call = await open_session(services, connector, user)
        composed = ""
        if connector.log_format in COMPOSED_FORMATS:
            composed = compose_call_log(
                log_format=connector.log_format,
                call=record,
                contact=contact,
                note=body.note,
                subject=record.custom_subject,
                ai_note=body.ai_note,
                transcript=body.transcript,
                voicemail_link=body.voicemail_link or _voicemail_link(info),
                user_settings=user.user_settings,
                timezone_offset=user.timezone_offset,
            )
        result = await connector.create_call_log(
            call,
            CallLogCreate(
                contact=contact,
                call=record,
                note=body.note or "",
                subject=record.custom_subject,
                composed_log_details=composed,
                additional_submission=body.additional_submission or {},
                ai_note=body.ai_note,
                transcript=body.transcript,
                voicemail_link=body.voicemail_link,
            ),
        )
    except SessionRevoked:
        await services.call_logs.release(pk)
        raise
    except CrmHttpError as exc:
        await services.call_logs.release(pk)
        return Reply(envelope(False, crm_error_message(exc, user.platform, "createCallLog")))
    except BaseException:
        await services.call_logs.release(pk)
        raise
    if not result.log_id:
        await services.call_logs.release(pk)
        return Reply(envelope(False, result.return_message))
    try:
        await services.call_logs.complete(pk, result.log_id)
    except Exception:
        return Reply(envelope(False, DATABASE_FAILED))
    return Reply(envelope(True, result.return_message, logId=result.log_id))


def _voicemail_link(info: CallLogInfoBody) -> str | None:
    link = (info.voicemail or {}).get("link")
    return link if isinstance(link, str) else None


async def _existing_body(connector: Connector, call: CrmCall, row: CallLogRow) -> CallLogFetched | None:
    """The CRM's current log, so the composer updates fields in place; failures leave the body empty."""
    try:
        return await connector.get_call_log(call, _ref(row))
    except Exception:
        return None


def _ref(row: CallLogRow) -> CallLogRef:
    return CallLogRef(
        log_id=row.third_party_log_id or "",
        contact_id=row.contact_id,
        telephony_session_id=row.call_id or None,
    )


async def _logged_row(services: Services, body: CallLogPatchBody | DispositionBody) -> CallLogRow | None:
    """The completed log of the body's session for the body's agent identity."""
    identity = identity_of(
        services,
        extension_number=body.extension_number,
        hashed_extension_id=body.hashed_extension_id,
        rc_extension_id=body.rc_extension_id,
    )
    session_id = str(body.session_id)
    return (await services.call_logs.find([session_id], identity)).get(session_id)


async def update_call_log(services: Services, claims: SessionClaims, body: CallLogPatchBody) -> Reply:
    session_id = str(body.session_id)
    row = await _logged_row(services, body)
    if row is None:
        return Reply({"successful": False})
    user = await active_user(services, claims, by_platform=False)
    if user is None:
        return Reply({"successful": False})
    connector = connector_for(services, user.platform)
    call = await open_session(services, connector, user)
    try:
        fetched = None
        composed = ""
        if connector.log_format in COMPOSED_FORMATS:
            fetched = await _existing_body(connector, call, row)
            existing = ""
            if fetched is not None:
                existing = fetched.info.full_body or fetched.info.note or ""
            composed = compose_call_log(
                log_format=connector.log_format,
                existing_body=existing,
                note=body.note,
                subject=body.subject,
                start_time=_text(body.start_time) or None,
                duration=_duration(body.duration),
                result=body.result,
                recording_link=body.recording_link,
                voicemail_link=body.voicemail_link,
                ai_note=body.ai_note,
                transcript=body.transcript,
                legs=body.legs,
                user_settings=user.user_settings,
                timezone_offset=user.timezone_offset,
                call=_patch_record(session_id, body),
            )
        updated = await connector.update_call_log(
            call,
            CallLogUpdate(
                log=_ref(row),
                composed_log_details=composed,
                subject=body.subject,
                note=body.note,
                start_time=_text(body.start_time) or None,
                duration=_duration(body.duration),
                result=body.result,
                recording_link=body.recording_link,
                additional_submission=body.additional_submission or {},
                existing_call_log_details=fetched.info.full_log_response if fetched else None,
            ),
        )
    except CrmHttpError as exc:
        return Reply(envelope(False, crm_error_message(exc, user.platform, "updateCallLog")))
    fields: dict[str, Any] = {"logId": row.third_party_log_id}
    if updated.updated_note is not None:
        fields["updatedNote"] = updated.updated_note
    return Reply(envelope(True, updated.return_message, **fields))


def _duration(value: int | str | float | None) -> int | str | None:
    return int(value) if isinstance(value, float) else value


def _patch_record(session_id: str, body: CallLogPatchBody) -> CallRecord:
    return CallRecord(
        session_id=session_id,
        direction=body.direction or "Outbound",
        start_time=_text(body.start_time) or None,
        duration=_duration(body.duration),
        result=body.result,
        from_party=party_of(body.from_),
        to_party=party_of(body.to),
        legs=list(body.legs or []),
    )


async def get_call_logs(
    services: Services,
    claims: SessionClaims,
    *,
    session_ids: str | None,
    extension_number: str | None,
    hashed_extension_id: str | None,
    require_details: bool,
) -> Reply:
    user = await current_user(services, claims)
    if user is None or not session_ids:
        return Reply({"successful": False})
    wanted = [s for s in session_ids.split(",")][:5]
    identity = identity_of(
        services,
        extension_number=extension_number,
        hashed_extension_id=hashed_extension_id,
        rc_extension_id=None,
    )
    rows = await services.call_logs.find(wanted, identity)
    logs: list[dict[str, Any]] = []
    last_message: ReturnMessage | None = None
    call: CrmCall | None = None
    connector = connector_for(services, user.platform)
    for session_id in wanted:
        row = rows.get(session_id)
        if row is None or (require_details and session_id == "0"):
            logs.append({"sessionId": session_id, "matched": False})
            continue
        entry: dict[str, Any] = {
            "sessionId": row.session_id,
            "matched": True,
            "logId": row.third_party_log_id,
        }
        if require_details and user.access_token:
            call = call or await open_session(services, connector, user)
            try:
                fetched = await connector.get_call_log(call, _ref(row))
                entry["logData"] = fetched.info.to_wire()
                last_message = fetched.return_message or last_message
            except CrmHttpError as exc:
                last_message = crm_error_message(exc, user.platform, "getCallLog")
        logs.append(entry)
    return Reply(
        {"successful": True, "logs": logs, "returnMessage": last_message.to_wire() if last_message else None}
    )


async def upsert_disposition(services: Services, claims: SessionClaims, body: DispositionBody) -> Reply:
    row = await _logged_row(services, body)
    if row is None:
        return Reply(envelope(False, warning("Cannot find log", 3000)))
    user = await active_user(services, claims, by_platform=False)
    if user is None:
        return Reply(envelope(False, warning("Cannot find user", 3000)))
    connector = connector_for(services, user.platform)
    call = await open_session(services, connector, user)
    try:
        result = await connector.upsert_call_disposition(
            call, DispositionUpdate(_ref(row), body.dispositions)
        )
    except CrmHttpError as exc:
        return Reply(envelope(False, crm_error_message(exc, user.platform, "upsertCallDisposition")))
    return Reply(envelope(bool(result.log_id), result.return_message))

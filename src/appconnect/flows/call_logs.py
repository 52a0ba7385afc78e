"""Call logging: exactly one CRM activity per call session and agent, even when the client repeats itself."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from appconnect.connectors.sdk import (
    CallLogCreate,
    CallLogFetched,
    CallLogRef,
    CallLogUpdate,
    CallRecord,
    Connector,
    ContactRef,
    CrmCall,
    CrmHttpError,
    CrmUser,
    DispositionUpdate,
    InterfaceNotImplemented,
    LogResult,
    ReturnMessage,
    RingSense,
    implements,
)
from appconnect.flows.common import (
    account_scope,
    active_user,
    active_user_with_write,
    chosen_contact,
    connector_for,
    current_user,
)
from appconnect.flows.composer import compose_call_log
from appconnect.flows.delivery import (
    NEEDS_ATTENTION,
    NOT_SETTLED,
    Delivery,
    kept_for_retry,
    next_attempt,
    outcome_unknown,
    refused_for_good,
    settle_window,
    stale_window,
    will_retry,
)
from appconnect.flows.errors import DATABASE_FAILED, SESSION_EXPIRED, crm_error_message, warning
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
from appconnect.settings import Settings
from appconnect.store.call_logs import (
    DONE,
    FAILED,
    QUEUED,
    UNKNOWN,
    CallLogRow,
    CallLogStore,
    Claim,
    ExtensionIdentity,
    NewCallLog,
    Reservation,
    new_claim,
)
from appconnect.store.user_mappings import AccountMapping
from appconnect.store.users import UserRecord

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
    identity = _identity_of_body(services, body)
    existing_message = ReturnMessage(f"Existing log for session {session_id}", "warning", 3000)
    record = call_record(info)
    contact_phone = record.contact_party.phone_number or ""
    contact = chosen_contact(body.contact_id, contact_phone, body.contact_type, body.contact_name)
    call_id = record.telephony_session_id or record.id or ""
    written = None
    merged_note = False
    if contact is None or body.is_from_sscl:
        user = await active_user(services, claims, by_platform=False)
        if user is not None and contact is not None:
            merged_note = await _merge_cached_note(services, account_scope(user), body)
        payload = body.model_dump_json(by_alias=True) if contact is not None else None
    else:
        payload = body.model_dump_json(by_alias=True)
        # the common case, a call nobody logged yet: reserved in the statement that reads the user
        first_reserve = services.call_logs.reserve_for_user(
            session_id=session_id, identity=identity, call_id=call_id, contact_id=contact.id, payload=payload
        )
        user, written = await active_user_with_write(services, claims, first_reserve, by_platform=False)
    if user is None:
        return Reply(envelope(False, warning("User not found")))
    scope = account_scope(user)
    claim = None
    new = None
    if contact is not None:
        new = NewCallLog(
            scope=scope,
            session_id=session_id,
            identity=identity,
            call_id=call_id,
            platform=user.platform,
            user_id=user.id,
            contact_id=contact.id,
            payload=payload,
        )
        # reserved with the user's read, else (SQLite, a cached or legacy user) in a statement of its own
        claim = new_claim(written.value) if written is not None else await services.call_logs.reserve_new(new)
    if claim is None:
        # a row answers for this session (or no contact was chosen): one lookup decides
        existing = (await services.call_logs.find(scope, [session_id], identity, include_pending=True)).get(
            session_id
        )
        if existing is not None and existing.status == DONE:
            return Reply(envelope(False, existing_message))
        if new is None:
            return Reply(envelope(False, warning(f"Contact not found for number {contact_phone}")))
        outcome, claim = await services.call_logs.reserve(
            new, stale_after=stale_window(services.settings), existing=existing
        )
        if outcome is Reservation.EXISTS or claim is None:
            return Reply(envelope(False, existing_message))
    reply, delivery = await deliver_call_log(services, user, body, claim, from_client=True)
    if merged_note and delivery is Delivery.DONE:
        # only once logged: a log kept for later may be retried by a request that must merge the note again
        await services.call_notes.delete(scope, session_id)
    return reply


async def _merge_cached_note(services: Services, scope: str, body: CallLogBody) -> bool:
    """Server-side logging carries no note: the one the agent cached for this call, in this CRM account only,
    goes into the log (after any note the request has). True when a cached note was merged."""
    cached = await services.call_notes.get(scope, str(body.log_info.session_id))
    if not cached:
        return False
    own = (body.note or "").strip()
    if own and own != cached.strip():
        body.note = f"{cached}\n\n{own}"
    else:
        body.note = cached
    return True


def _identity_of_body(services: Services, body: CallLogBody) -> ExtensionIdentity:
    info = body.log_info
    return identity_of(
        services,
        extension_number=body.extension_number or info.extension_number,
        hashed_extension_id=body.hashed_extension_id or info.hashed_extension_id,
        rc_extension_id=body.rc_extension_id or info.rc_extension_id,
    )


async def deliver_call_log(
    services: Services, user: UserRecord, body: CallLogBody, claim: Claim, *, from_client: bool
) -> tuple[Reply, Delivery]:
    """Write the reserved log into the CRM exactly once: look for an earlier unanswered create first, then
    create; a CRM that cannot take it leaves the log kept (`queued`/`unknown`) for the retrier.

    `from_client`: a user's request (a refusal forgets the reservation so the user can fix and retry) rather
    than the retrier (a refusal marks the kept log `failed`).
    """
    connector = connector_for(services, user.platform)
    record = call_record(body.log_info)
    contact = chosen_contact(
        body.contact_id, record.contact_party.phone_number or "", body.contact_type, body.contact_name
    )
    attempt = _Attempt(
        services.call_logs, services.settings, user.platform, claim, claim.attempts + 1, from_client
    )
    try:
        if contact is None:
            raise ValueError("a kept call log without a contact")
        call = await open_session(services, connector, user)
        create = _call_log_create(connector, user, body, record, contact)
        create.owner = await _mapped_owner(services, user, body)
        if create.from_server_side_logging:
            create.server_logging = await _server_logging_settings(services, user)
        if claim.must_check or (claim.retried and implements(connector, "find_call_log")):
            answered = await _look_before_create(attempt, connector, call, create)
            if answered is not None:
                return answered
        try:
            result = await connector.create_call_log(call, create)
        except CrmHttpError as exc:
            if refused_for_good(exc):
                raise
            # a 5xx may hide a create that was done: a connector that can look it up does so on any retry of a
            # kept log; for one that cannot, the outcome is unknown and the user is asked to check the CRM
            landed = exc.outcome_unknown and not implements(connector, "find_call_log")
            await attempt.keep(UNKNOWN if outcome_unknown(exc) or landed else QUEUED)
            failure = crm_error_message(exc, user.platform, "createCallLog")
            if landed:  # the retrier cannot tell either, so it will not log it by itself
                return Reply(envelope(False, failure)), Delivery.RETRY
            return attempt.kept(failure, exc, attempt.attempts), Delivery.RETRY
    except SessionRevoked:
        if from_client:
            await attempt.store.release(claim.pk)
            raise
        await attempt.keep(QUEUED)
        return Reply(envelope(False, SESSION_EXPIRED)), Delivery.RETRY
    except CrmHttpError as exc:
        await _refused(attempt.store, claim, attempt.attempts, from_client=from_client)
        return Reply(envelope(False, crm_error_message(exc, user.platform, "createCallLog"))), Delivery.FINAL
    except BaseException:
        # the outcome is unknown (a bug, a cancelled request): keep it so the next attempt looks first
        with contextlib.suppress(Exception):
            await attempt.keep(UNKNOWN)
        raise
    return await _record_created(attempt, result)


@dataclass(slots=True, frozen=True)
class _Attempt:
    """One delivery attempt of a reserved log: how a failure is kept for the retrier and answered to the user."""

    store: CallLogStore
    settings: Settings
    platform: str
    claim: Claim
    #: the attempt count once this one is spent
    attempts: int
    from_client: bool

    def kept(self, failure: ReturnMessage, exc: CrmHttpError | None, tries: int) -> Reply:
        """The user's answer for a log kept for the retrier: "saved, logged automatically" when it will be."""
        if self.from_client and will_retry(self.settings, tries):
            message = kept_for_retry("call log", self.platform, exc, unconfirmed=failure is NOT_SETTLED)
            return Reply(envelope(False, message))
        return Reply(envelope(False, failure))

    async def keep(self, status: str) -> None:
        """Park the log with what is known of it, for the retrier.

        Once the attempts are spent the retrier stops (next_attempt_at None) but the status keeps what is known,
        so a later client retry still checks the CRM first when the outcome was unknown.
        """
        await self.store.park(
            self.claim.pk,
            status=status,
            payload=None,
            attempts=self.attempts,
            next_attempt_at=next_attempt(self.settings, self.attempts),
        )


def _assigned_extension(body: CallLogBody) -> str | None:
    """The RingCentral extension a call is logged for: the one the admin assigned it to, else (server-side
    logging) the extension whose call it is."""
    extra = body.additional_submission or {}
    assigned = extra.get("adminAssignedUserRcId") if extra.get("isAssignedToUser") else None
    candidates: list[object] = [assigned]
    if body.is_from_sscl:
        raw_extension = body.log_info.model_extra.get("extension") if body.log_info.model_extra else None
        candidates += [
            body.rc_extension_id,
            body.log_info.rc_extension_id,
            raw_extension.get("id") if isinstance(raw_extension, dict) else None,
        ]
    for value in candidates:
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


async def _mapped_owner(services: Services, user: UserRecord, body: CallLogBody) -> CrmUser | None:
    """The CRM user the admin mapped the call's extension to, looked up in the logging user's CRM account only;
    None (the logging user owns it) when the call is not assigned or the extension is not mapped."""
    extension = _assigned_extension(body)
    if extension is None:
        return None
    found = await _own_mapping(services, user)
    if found is None:
        return None
    mapped = next((m for m in found[1].users if extension in m.rc_extension_ids), None)
    if mapped is None:
        return None
    return CrmUser(id=mapped.crm_user_id, name=mapped.name, email=mapped.email or None)


async def _own_mapping(services: Services, user: UserRecord) -> tuple[str, AccountMapping] | None:
    """The user mapping of the user's RingCentral account (its key with it), only when it was made against
    this very CRM account. Never another RingCentral account's, even one mapped against the same CRM account:
    its admin may be any user of the CRM account, and a manual choice may name any extension id."""
    if not user.rc_account_id:
        return None
    key = hash_value(user.rc_account_id, services.keys.hash_key)
    mapping = await services.user_mappings.get(key)
    if mapping is None or (mapping.crm_scope, mapping.platform) != (account_scope(user), user.platform):
        return None
    return key, mapping


async def _server_logging_settings(services: Services, user: UserRecord) -> dict[str, Any]:
    """The admin's server-side logging fields of the user's RingCentral account, only when that account's user
    mapping was made against this very CRM account: one account's fields (an API user's password) never reach
    another tenant's logs, whatever RingCentral account id a user's client claimed at login."""
    found = await _own_mapping(services, user)
    if found is None:
        return {}
    return await services.admin_ringcentral.logging_settings(found[0])


async def _later_write_settings(
    services: Services, user: UserRecord, row: CallLogRow, body: CallLogPatchBody | DispositionBody
) -> dict[str, Any]:
    """The server-side logging fields for an update or disposition of a kept log: only when server-side
    logging sent it and the log is one the calling user made. The `SSCL` user agent is any client's to send, and
    the lookup finds any log of the CRM account by session and extension, so a colleague's log is edited in the
    caller's own CRM session (the CRM's permissions decide), never with the admin's credentials."""
    if not body.is_from_sscl or row.user_id != user.id:
        return {}
    return await _server_logging_settings(services, user)


def _call_log_create(
    connector: Connector, user: UserRecord, body: CallLogBody, record: CallRecord, contact: ContactRef
) -> CallLogCreate:
    """What the connector creates: the server composes the log body for connectors that declare a text format."""
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
            voicemail_link=body.voicemail_link or _voicemail_link(body.log_info),
            user_settings=user.user_settings,
            timezone_offset=user.timezone_offset,
            ring_sense=_ring_sense(body),
        )
    return CallLogCreate(
        contact=contact,
        call=record,
        note=body.note or "",
        subject=record.custom_subject,
        composed_log_details=composed,
        additional_submission=body.additional_submission or {},
        ai_note=body.ai_note,
        transcript=body.transcript,
        voicemail_link=body.voicemail_link,
        voicemail_message_id=_text(body.voicemail_message_id or _voicemail_field(body.log_info, "messageId"))
        or None,
        recording_download_link=body.recording_download_link,
        ring_sense=_ring_sense(body),
        from_server_side_logging=bool(body.is_from_sscl),
    )


def _ring_sense(body: CallLogBody | CallLogPatchBody) -> RingSense | None:
    """The reference's `ringSense*` fields, when any came."""
    score = body.ring_sense_ai_score
    sense = RingSense(
        transcript=body.ring_sense_transcript,
        summary=body.ring_sense_summary,
        ai_score=None if score is None else str(score),
        bulleted_summary=body.ring_sense_bulleted_summary,
        link=body.ring_sense_link,
    )
    return sense if sense != RingSense() else None


def _voicemail_field(info: CallLogInfoBody, key: str) -> object:
    return (info.voicemail or {}).get(key)


async def _look_before_create(
    attempt: _Attempt, connector: Connector, call: CrmCall, create: CallLogCreate
) -> tuple[Reply, Delivery] | None:
    """A kept log is looked up before it is created again, so an earlier create that landed is adopted, not
    repeated; None when creating now is safe.

    Required when the earlier create may have landed (`must_check`), and cheap insurance after a CRM error when
    the connector can look.
    """
    claim = attempt.claim
    try:
        found = await connector.find_call_log(call, create)
    except InterfaceNotImplemented:
        # cannot tell whether the earlier create landed: never risk a second activity
        await attempt.store.park(
            claim.pk, status=FAILED, payload=None, attempts=attempt.attempts, next_attempt_at=None
        )
        return Reply(envelope(False, NEEDS_ATTENTION)), Delivery.FINAL
    except CrmHttpError as exc:
        await attempt.keep(UNKNOWN if claim.must_check else QUEUED)
        failure = crm_error_message(exc, attempt.platform, "createCallLog")
        return attempt.kept(failure, exc, attempt.attempts), Delivery.RETRY
    if found:
        await attempt.store.complete(claim.pk, found)
        return Reply(
            envelope(True, ReturnMessage("Call logged", "success", 2000), logId=found)
        ), Delivery.DONE
    if claim.unanswered_at is not None:
        settled_at = claim.unanswered_at + timedelta(seconds=settle_window(attempt.settings))
        if datetime.now(UTC) < settled_at:
            # the CRM may still be writing the unanswered create: creating now could make a second one
            await attempt.store.park(
                claim.pk,
                status=UNKNOWN,
                payload=None,
                attempts=claim.attempts,
                next_attempt_at=settled_at,
                recorded_at=claim.unanswered_at,
            )
            return attempt.kept(NOT_SETTLED, None, claim.attempts), Delivery.RETRY
    return None


async def _record_created(attempt: _Attempt, result: LogResult) -> tuple[Reply, Delivery]:
    """The CRM answered the create: the kept log is done with the CRM's id, or refused when no id came back."""
    claim = attempt.claim
    if not result.log_id:
        await _refused(attempt.store, claim, attempt.attempts, from_client=attempt.from_client)
        return Reply(envelope(False, result.return_message)), Delivery.FINAL
    try:
        await attempt.store.complete(claim.pk, result.log_id)
    except Exception:
        # the reservation stays `pending`; once stale, the next attempt finds this log in the CRM and adopts it
        return Reply(envelope(False, DATABASE_FAILED)), Delivery.RETRY
    return Reply(envelope(True, result.return_message, logId=result.log_id)), Delivery.DONE


async def _refused(store: CallLogStore, claim: Claim, attempts: int, *, from_client: bool) -> None:
    if from_client:
        await store.release(claim.pk)
    else:
        await store.park(claim.pk, status=FAILED, payload=None, attempts=attempts, next_attempt_at=None)


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


async def _logged_row(
    services: Services, user: UserRecord, body: CallLogPatchBody | DispositionBody
) -> CallLogRow | None:
    """The completed log of the body's session for the body's agent identity, in the caller's scope."""
    identity = identity_of(
        services,
        extension_number=body.extension_number,
        hashed_extension_id=body.hashed_extension_id,
        rc_extension_id=body.rc_extension_id,
    )
    session_id = str(body.session_id)
    return (await services.call_logs.find(account_scope(user), [session_id], identity)).get(session_id)


async def update_call_log(services: Services, claims: SessionClaims, body: CallLogPatchBody) -> Reply:
    session_id = str(body.session_id)
    user = await active_user(services, claims, by_platform=False)
    if user is None:
        return Reply({"successful": False})
    row = await _logged_row(services, user, body)
    if row is None:
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
                ring_sense=_ring_sense(body),
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
                recording_download_link=body.recording_download_link,
                ring_sense=_ring_sense(body),
                from_server_side_logging=bool(body.is_from_sscl),
                server_logging=await _later_write_settings(services, user, row, body),
                ai_note=body.ai_note,
                transcript=body.transcript,
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
        # `logs` is required by the contract's schema even when nothing was looked up
        return Reply({"successful": False, "logs": []})
    wanted = [s for s in session_ids.split(",")][:5]
    identity = identity_of(
        services,
        extension_number=extension_number,
        hashed_extension_id=hashed_extension_id,
        rc_extension_id=None,
    )
    rows = await services.call_logs.find(account_scope(user), wanted, identity)
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
    # the contract's `returnMessage` is an object: absent (not null) when there is nothing to say
    return Reply(envelope(True, last_message, logs=logs))


async def upsert_disposition(services: Services, claims: SessionClaims, body: DispositionBody) -> Reply:
    user = await active_user(services, claims, by_platform=False)
    if user is None:
        return Reply(envelope(False, warning("Cannot find user", 3000)))
    row = await _logged_row(services, user, body)
    if row is None:
        return Reply(envelope(False, warning("Cannot find log", 3000)))
    connector = connector_for(services, user.platform)
    call = await open_session(services, connector, user)
    try:
        result = await connector.upsert_call_disposition(
            call,
            DispositionUpdate(
                _ref(row),
                body.dispositions,
                from_server_side_logging=bool(body.is_from_sscl),
                server_logging=await _later_write_settings(services, user, row, body),
            ),
        )
    except CrmHttpError as exc:
        return Reply(envelope(False, crm_error_message(exc, user.platform, "upsertCallDisposition")))
    return Reply(envelope(bool(result.log_id), result.return_message))

"""SMS/fax/voicemail logging: one CRM activity per conversation log (conversation and day), messages appended."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from appconnect.connectors.kit import defused
from appconnect.connectors.sdk import (
    CallParty,
    Connector,
    ContactRef,
    CrmCall,
    CrmHttpError,
    InterfaceNotImplemented,
    MediaFile,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    ReturnMessage,
    SharedConversation,
)
from appconnect.flows.common import account_scope, active_user, chosen_contact, connector_for
from appconnect.flows.composer import compose_shared_sms
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
)
from appconnect.flows.errors import crm_error_message, warning
from appconnect.flows.media import RingCentralMedia
from appconnect.flows.reply import Reply, envelope
from appconnect.flows.requests import MessageBody, MessageLogBody, party_of
from appconnect.flows.services import Services
from appconnect.flows.session import open_session
from appconnect.security.jwt import SessionClaims
from appconnect.settings import Settings
from appconnect.store.locks import LockTimeout
from appconnect.store.message_logs import APPEND_UNKNOWN, MessageLogRow
from appconnect.store.users import UserRecord


def _message(body: MessageBody) -> Message:
    return Message(
        id=str(body.id),
        type=body.type,
        direction=body.direction,
        subject=defused(body.subject or ""),  # a customer's text never reads as the server's tag
        creation_time=body.creation_time,
        from_party=_defused_party(party_of(body.from_)),
        raw=body.model_dump(by_alias=True, exclude_none=True),
    )


def _defused_party(party: CallParty) -> CallParty:
    """The sender as the client named it, its name unable to read as a tag (see `kit.defused`)."""
    if party.name:
        party.name = defused(party.name)
    return party


def _attachment_link(body: MessageBody, kind: str) -> str | None:
    for attachment in body.attachments or []:
        if attachment.get("type") == kind and isinstance(
            attachment.get("link") or attachment.get("uri"), str
        ):
            return str(attachment.get("link") or attachment.get("uri"))
    return None


def _attachment_file(body: MessageBody, kind: str, content_prefix: str = "") -> MediaFile | None:
    """The first attachment of `kind` (and content type) with a download URI, for a connector to copy."""
    for attachment in body.attachments or []:
        uri, content_type = attachment.get("uri"), attachment.get("contentType")
        if attachment.get("type") != kind or not isinstance(uri, str) or not uri:
            continue
        if not isinstance(content_type, str) or not content_type.startswith(content_prefix):
            continue
        return MediaFile(uri=uri, content_type=content_type)
    return None


async def create_message_log(services: Services, claims: SessionClaims, body: MessageLogBody) -> Reply:
    if not body.log_info.messages:
        return Reply(envelope(False, warning("No message to log.", 3000)))
    user = await active_user(services, claims, by_platform=False)
    if user is None:
        return Reply(envelope(False, warning("Contact not found")))
    reply, delivery = await log_messages(services, user, body)
    if delivery is Delivery.RETRY:
        # the CRM could not take it: keep the request; the retrier replays it (idempotent per message id)
        await services.message_logs.enqueue(
            scope=account_scope(user),
            user_id=user.id,
            platform=user.platform,
            payload=body.model_dump_json(by_alias=True),
            next_attempt_at=next_attempt(services.settings, 0) or datetime.now(UTC),
        )
        if services.settings.log_retrier_enabled:
            body_sent = reply.body if isinstance(reply.body, dict) else {}
            unconfirmed = body_sent.get("returnMessage") == NOT_SETTLED.to_wire()
            return Reply(
                envelope(False, kept_for_retry("message log", user.platform, unconfirmed=unconfirmed))
            )
    return reply


async def log_messages(services: Services, user: UserRecord, body: MessageLogBody) -> tuple[Reply, Delivery]:
    """Log each message not yet logged into the conversation log's one CRM activity, within the user's scope.

    A create whose answer never came is recorded as `unknown`; the next attempt asks the CRM whether that
    activity exists (adopting it) before creating one. An append whose answer never came is recorded as
    `append_unknown`: it is sent again only to a connector whose appends skip a message already in the activity
    (`idempotent_message_append`); otherwise that message is answered as needing attention, never re-appended.
    """
    info = body.log_info
    connector = connector_for(services, user.platform)
    phone = (info.correspondents[0].phone_number if info.correspondents else None) or ""
    contact = chosen_contact(body.contact_id, phone, body.contact_type, defused(body.contact_name or ""))
    if contact is None:
        return Reply(envelope(False, warning(f"Contact not found for number {phone}"))), Delivery.FINAL
    if not info.messages:
        return Reply(envelope(True, None, logIds=[])), Delivery.DONE
    if _shared_owner(body) is not None:
        return await _log_shared(services, user, body, contact)
    group = len(info.correspondents) > 1
    others = await _correspondent_names(services, user, body) if group else []
    log = _conversation_log(user, body, contact, others)
    if info.rc_access_token:  # attachments a connector copies into the CRM are fetched with the user's token
        log.media = RingCentralMedia(services, info.rc_access_token)
    try:
        call = await open_session(services, connector, user)
        async with services.locks.hold(
            _conversation_lock(log.scope, log.conversation_log_id), ttl=stale_window(services.settings)
        ):
            answer = await _log_new_messages(services, connector, call, log)
            if answer is not None:
                return answer
    except CrmHttpError as exc:
        operation = "updateMessageLog" if log.logged else "createMessageLog"
        delivery = Delivery.FINAL if refused_for_good(exc) else Delivery.RETRY
        return Reply(envelope(False, crm_error_message(exc, user.platform, operation))), delivery
    except LockTimeout:
        message = warning("This conversation is being logged by another request. Please try again.")
        return Reply(envelope(False, message)), Delivery.BUSY
    if log.needs_attention:
        return Reply(envelope(False, NEEDS_ATTENTION, logIds=log.logged)), Delivery.FINAL
    return (
        Reply(
            {
                "successful": True,
                "logIds": log.logged,
                "returnMessage": log.last_message.to_wire() if log.last_message else None,
            }
        ),
        Delivery.DONE,
    )


@dataclass(slots=True)
class _ConversationLog:
    """One conversation log as this request writes it: its keys, and what it has logged so far (the error
    answer reads that too, to name the operation that failed)."""

    user: UserRecord
    scope: str
    body: MessageLogBody
    contact: ContactRef
    #: a group SMS is logged once per contact: the contact's id suffixes every key
    suffix: str
    conversation_id: str
    conversation_log_id: str
    #: the group SMS's other people, named in each created activity
    correspondents: list[str]
    log_id: str | None = None
    logged: list[str] = field(default_factory=list)
    needs_attention: bool = False
    last_message: ReturnMessage | None = None
    #: RingCentral media (MMS images, faxes) the connector may copy into the CRM; None: links only
    media: RingCentralMedia | None = None

    def create_of(self, message_body: MessageBody) -> MessageLogCreate:
        """The activity created with this message as its first."""
        return MessageLogCreate(
            contact=self.contact,
            message=_message(message_body),
            conversation_id=self.conversation_id,
            conversation_log_id=self.conversation_log_id,
            additional_submission=self.body.additional_submission or {},
            recording_link=_attachment_link(message_body, "AudioRecording"),
            fax_doc_link=_attachment_link(message_body, "RenderedDocument"),
            image_link=_attachment_link(message_body, "MmsAttachment"),
            correspondents=self.correspondents,
            image=_attachment_file(message_body, "MmsAttachment", "image/"),
            fax=_attachment_file(message_body, "RenderedDocument"),
            media=self.media,
        )

    def row(self, message_id: str, log_id: str | None, status: str) -> MessageLogRow:
        """The store's record of one message of this conversation log."""
        return _row(self.user, message_id, self.conversation_id, self.conversation_log_id, log_id, status)


def _conversation_log(
    user: UserRecord, body: MessageLogBody, contact: ContactRef, correspondents: list[str]
) -> _ConversationLog:
    """The conversation log this request writes: the client's id, else the conversation and its first day."""
    info = body.log_info
    suffix = f"-{contact.id}" if len(info.correspondents) > 1 else ""
    default_log_id = f"{info.conversation_id or ''}-{(info.messages[0].creation_time or '')[:10]}"
    return _ConversationLog(
        user=user,
        scope=account_scope(user),
        body=body,
        contact=contact,
        suffix=suffix,
        conversation_id=f"{info.conversation_id or ''}{suffix}",
        conversation_log_id=f"{info.conversation_log_id or default_log_id}{suffix}",
        correspondents=correspondents,
    )


def _conversation_lock(scope: str, conversation_log_id: str) -> str:
    """One writer per conversation log at a time, across requests and processes (the key names no user data)."""
    return "conversation:" + hashlib.sha256(f"{scope}\n{conversation_log_id}".encode()).hexdigest()


async def _log_new_messages(
    services: Services, connector: Connector, call: CrmCall, log: _ConversationLog
) -> tuple[Reply, Delivery] | None:
    """Write, oldest first, each message the store has not recorded as logged; an answer instead when the
    conversation cannot be written now (an earlier unanswered create is unsettled or cannot be looked up)."""
    store = services.message_logs
    scope = log.scope
    messages = log.body.log_info.messages
    ids = [f"{m.id}{log.suffix}" for m in messages]
    already = await store.logged_ids(scope, ids)
    append_unknown = await store.append_unknown_ids(scope, ids)
    log.log_id = await store.conversation_log_id_owner(scope, log.conversation_log_id)
    unknown, unanswered_at = await store.unknown_ids(scope, log.conversation_log_id)
    if unknown and log.log_id is None:
        probe = log.create_of(messages[-1])
        log.log_id, answer = await _look_for_unanswered_create(
            services, connector, call, scope, probe, unanswered_at
        )
        if answer is not None:
            return answer
        if log.log_id is not None:  # the earlier create did land: its message is logged
            already.update(unknown)
            log.logged.extend(i for i in ids if i in unknown)
    for message_body in reversed(messages):  # the client sends newest first
        message_id = f"{message_body.id}{log.suffix}"
        if message_id in already:
            continue
        resent = message_id in append_unknown
        if resent and not connector.idempotent_message_append:
            log.needs_attention = True  # appending it again could show it twice in the activity
            continue
        log_id = log.log_id
        if log_id is not None:
            await _append(services, connector, call, log, log_id, message_body, message_id, resent=resent)
        else:
            log_id = await _create(services, connector, call, log, message_body, message_id)
            if log_id is None:
                continue
            log.log_id = log_id
        if resent:
            await store.mark_done(scope, message_id, log_id)
        else:
            await store.add(scope, log.row(message_id, log_id, "done"))
        already.add(message_id)
        log.logged.append(message_id)
    return None


async def _look_for_unanswered_create(
    services: Services,
    connector: Connector,
    call: CrmCall,
    scope: str,
    probe: MessageLogCreate,
    unanswered_at: datetime | None,
) -> tuple[str | None, tuple[Reply, Delivery] | None]:
    """An earlier create went unanswered: adopt the activity if the CRM has it, so it is never created twice.

    Returns the activity id (None: create it now), or an answer when that is not safe yet: the connector cannot
    look, or the CRM may still be writing a create it did not answer (the settle window).
    """
    try:
        log_id = await connector.find_message_log(call, probe)
    except InterfaceNotImplemented:
        return None, (Reply(envelope(False, NEEDS_ATTENTION)), Delivery.FINAL)
    settle = timedelta(seconds=settle_window(services.settings))
    if log_id is None and unanswered_at is not None and datetime.now(UTC) < unanswered_at + settle:
        # the CRM may still be writing the unanswered create: creating now could make a second one
        return None, (Reply(envelope(False, NOT_SETTLED)), Delivery.RETRY)
    await services.message_logs.resolve_unknown(scope, probe.conversation_log_id, log_id)
    return log_id, None


async def _append(
    services: Services,
    connector: Connector,
    call: CrmCall,
    log: _ConversationLog,
    log_id: str,
    message_body: MessageBody,
    message_id: str,
    *,
    resent: bool,
) -> None:
    """Append one message to the conversation's activity; an append that may have landed unanswered is
    recorded (`append_unknown`) so it is never blindly appended twice."""
    update = MessageLogUpdate(
        contact=log.contact,
        message=_message(message_body),
        log_id=log_id,
        conversation_log_id=log.conversation_log_id,
        additional_submission=log.body.additional_submission or {},
        image_link=_attachment_link(message_body, "MmsAttachment"),
        image=_attachment_file(message_body, "MmsAttachment", "image/"),
        media=log.media,
    )
    try:
        log.last_message = await connector.update_message_log(call, update)
    except CrmHttpError as exc:
        if not resent and _may_have_landed(exc):
            await services.message_logs.add(log.scope, log.row(message_id, log_id, APPEND_UNKNOWN))
        raise


async def _create(
    services: Services,
    connector: Connector,
    call: CrmCall,
    log: _ConversationLog,
    message_body: MessageBody,
    message_id: str,
) -> str | None:
    """Create the conversation's activity with this message: its id, None when the CRM gave none (nothing logged).

    A create that may have landed unanswered is recorded `unknown`, so the next attempt looks before creating.
    """
    try:
        result = await connector.create_message_log(call, log.create_of(message_body))
    except CrmHttpError as exc:
        # a 500/502/504 or an unreadable 2xx after the create was sent: the CRM may hold it
        if _may_have_landed(exc):
            # the CRM itself answered (a 500, an unreadable 2xx); a gateway's 502/504 or a timeout is no proof
            # that it is done writing, so that one waits out the settle window first
            answered = exc.status is not None and exc.status not in (408, 502, 504)
            await services.message_logs.add(
                log.scope,
                log.row(message_id, None, "unknown"),
                # so nothing is still being written: the next attempt looks, then creates
                recorded_at=_settled_since(services.settings) if answered else None,
            )
        raise
    log.last_message = result.return_message
    return result.log_id or None


def _settled_since(settings: Settings) -> datetime:
    """A time the settle window has already passed since (see `delivery.settle_window`)."""
    return datetime.now(UTC) - timedelta(seconds=settle_window(settings) + 1)


#: a group SMS's correspondents looked up in the account's contact cache; any beyond are named as the client sent
MAX_CORRESPONDENT_LOOKUPS = 20


async def _correspondent_names(services: Services, user: UserRecord, body: MessageLogBody) -> list[str]:
    """The other people of a group SMS, each named as the account's contact cache knows the number (the
    contact a lookup found), else as the client named them, else by the number; the logged contact is left out.
    """
    scope = account_scope(user)
    own_name = (body.contact_name or "").strip()
    names: list[str] = []
    for index, correspondent in enumerate(body.log_info.correspondents):
        phone = (correspondent.phone_number or "").strip()
        name = ""
        if phone and index < MAX_CORRESPONDENT_LOOKUPS:
            cached = await services.cache.get_contacts(
                scope, user.platform, phone, max_age=services.settings.contact_cache_seconds
            )
            real = [c for c in cached or [] if isinstance(c, dict) and not c.get("isNewContact")]
            if any(str(c.get("id")) == str(body.contact_id) for c in real):
                continue  # the logged contact's own number
            if real:
                name = str(real[0].get("name") or "").strip()
        name = name or (correspondent.name or "").strip() or phone
        name = defused(name)
        if name and name != defused(own_name) and name not in names:
            names.append(name)
    return names


def _shared_owner(body: MessageLogBody) -> str | None:
    """A shared SMS is a conversation of a shared inbox: the client names its owner (a call queue or a user)."""
    owner = body.log_info.owner
    name = owner.get("name") if isinstance(owner, dict) else None
    return name if isinstance(name, str) and name.strip() else None


async def _log_shared(
    services: Services, user: UserRecord, body: MessageLogBody, contact: ContactRef
) -> tuple[Reply, Delivery]:
    """A shared SMS is one activity per conversation log, rewritten whole each time it is logged.

    The server composes the conversation (every message and note, the agents who answered, the owning queue)
    and the connector creates the activity, or replaces its text once it exists. The row is keyed by the
    conversation log id; a create whose answer went missing is found again by the connector's marker first.
    """
    info = body.log_info
    scope = account_scope(user)
    connector = connector_for(services, user.platform)
    conversation_log_id = info.conversation_log_id or str(info.conversation_id or "")
    conversation_id = str(info.conversation_id or "")
    create = _shared_create(connector, user, body, contact, conversation_id, conversation_log_id)
    shared = create.shared
    store = services.message_logs
    logged: list[str] = []
    try:
        call = await open_session(services, connector, user)
        async with services.locks.hold(
            _conversation_lock(scope, conversation_log_id), ttl=stale_window(services.settings)
        ):
            log_id = await store.conversation_log_id_owner(scope, conversation_log_id)
            unknown, unanswered_at = await store.unknown_ids(scope, conversation_log_id)
            if unknown and log_id is None:
                log_id, answer = await _look_for_unanswered_create(
                    services, connector, call, scope, create, unanswered_at
                )
                if answer is not None:
                    return answer
            if log_id is not None:
                # the whole conversation is re-sent: replacing the text again is harmless, so no marker is needed
                last_message = await connector.update_message_log(
                    call,
                    MessageLogUpdate(
                        contact=contact,
                        message=create.message,
                        log_id=log_id,
                        conversation_log_id=conversation_log_id,
                        additional_submission=create.additional_submission,
                        shared=shared,
                    ),
                )
            else:
                try:
                    result = await connector.create_message_log(call, create)
                except CrmHttpError as exc:
                    if _may_have_landed(exc):
                        row = _row(
                            user, conversation_log_id, conversation_id, conversation_log_id, None, "unknown"
                        )
                        await store.add(scope, row)
                    raise
                last_message = result.return_message
                if result.log_id:
                    row = _row(
                        user, conversation_log_id, conversation_id, conversation_log_id, result.log_id, "done"
                    )
                    await store.add(scope, row)
                    logged.append(conversation_log_id)
    except CrmHttpError as exc:
        delivery = Delivery.FINAL if refused_for_good(exc) else Delivery.RETRY
        return Reply(envelope(False, crm_error_message(exc, user.platform, "createMessageLog"))), delivery
    except LockTimeout:
        message = warning("This conversation is being logged by another request. Please try again.")
        return Reply(envelope(False, message)), Delivery.BUSY
    reply = {
        "successful": True,
        "logIds": logged,
        "returnMessage": last_message.to_wire() if last_message else None,
    }
    return Reply(reply), Delivery.DONE


def _shared_create(
    connector: Connector,
    user: UserRecord,
    body: MessageLogBody,
    contact: ContactRef,
    conversation_id: str,
    conversation_log_id: str,
) -> MessageLogCreate:
    """The shared conversation's activity: the server composes the whole text, in the connector's format."""
    info = body.log_info
    subject, text = compose_shared_sms(
        connector.log_format,
        info.model_dump(by_alias=True, exclude_none=True),
        contact.name,
        user.timezone_offset,
    )
    started = info.creation_time if info.creation_time is not None else info.messages[-1].creation_time
    shared = SharedConversation(
        subject=defused(subject), body=defused(text), started_at=None if started is None else str(started)
    )
    return MessageLogCreate(
        contact=contact,
        message=_message(info.messages[0]),
        conversation_id=conversation_id,
        conversation_log_id=conversation_log_id,
        additional_submission=body.additional_submission or {},
        shared=shared,
    )


def _may_have_landed(exc: CrmHttpError) -> bool:
    """The write was sent and not answered, or answered by an error that does not prove it was not applied
    (a 500, a gateway's 502/504, an answer that could not be read): the CRM may hold it."""
    return exc.outcome_unknown or outcome_unknown(exc)


def _row(
    user: UserRecord,
    message_id: str,
    conversation_id: str,
    conversation_log_id: str,
    log_id: str | None,
    status: str,
) -> MessageLogRow:
    return MessageLogRow(
        id=message_id,
        platform=user.platform,
        conversation_id=conversation_id,
        conversation_log_id=conversation_log_id,
        third_party_log_id=log_id,
        user_id=user.id,
        status=status,
    )

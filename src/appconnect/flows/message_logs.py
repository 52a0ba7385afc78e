"""SMS/fax/voicemail logging: one CRM activity per conversation log (conversation and day), messages appended."""

from __future__ import annotations

from appconnect.connectors.sdk import (
    CrmHttpError,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    ReturnMessage,
)
from appconnect.flows.common import active_user, chosen_contact, connector_for
from appconnect.flows.errors import crm_error_message, warning
from appconnect.flows.reply import Reply, envelope
from appconnect.flows.requests import MessageBody, MessageLogBody, party_of
from appconnect.flows.services import Services
from appconnect.flows.session import open_session
from appconnect.security.jwt import SessionClaims
from appconnect.store.locks import LockTimeout
from appconnect.store.message_logs import MessageLogRow


def _message(body: MessageBody) -> Message:
    return Message(
        id=str(body.id),
        type=body.type,
        direction=body.direction,
        subject=body.subject or "",
        creation_time=body.creation_time,
        from_party=party_of(body.from_),
        raw=body.model_dump(by_alias=True, exclude_none=True),
    )


def _attachment_link(body: MessageBody, kind: str) -> str | None:
    for attachment in body.attachments or []:
        if attachment.get("type") == kind and isinstance(
            attachment.get("link") or attachment.get("uri"), str
        ):
            return str(attachment.get("link") or attachment.get("uri"))
    return None


async def create_message_log(services: Services, claims: SessionClaims, body: MessageLogBody) -> Reply:
    info = body.log_info
    if not info.messages:
        return Reply(envelope(False, warning("No message to log.", 3000)))
    user = await active_user(services, claims, by_platform=False)
    if user is None:
        return Reply(envelope(False, warning("Contact not found")))
    connector = connector_for(services, user.platform)
    phone = (info.correspondents[0].phone_number if info.correspondents else None) or ""
    contact = chosen_contact(body.contact_id, phone, body.contact_type, body.contact_name)
    if contact is None:
        return Reply(envelope(False, warning(f"Contact not found for number {phone}")))
    group = len(info.correspondents) > 1
    suffix = f"-{contact.id}" if group else ""
    conversation_id = f"{info.conversation_id or ''}{suffix}"
    default_log_id = f"{info.conversation_id or ''}-{(info.messages[0].creation_time or '')[:10]}"
    conversation_log_id = f"{info.conversation_log_id or default_log_id}{suffix}"
    call = await open_session(services, connector, user)
    logged: list[str] = []
    last_message: ReturnMessage | None = None
    try:
        async with services.locks.hold(
            f"conversation:{user.platform}:{conversation_log_id}",
            ttl=services.settings.crm_read_timeout * 2 + 10,
        ):
            ids = [f"{m.id}{suffix}" for m in info.messages]
            already = await services.message_logs.logged_ids(ids)
            log_id = await services.message_logs.conversation_log_id_owner(conversation_log_id)
            for message_body in reversed(info.messages):  # the client sends newest first
                message_id = f"{message_body.id}{suffix}"
                if message_id in already:
                    continue
                message = _message(message_body)
                if log_id is not None:
                    last_message = await connector.update_message_log(
                        call,
                        MessageLogUpdate(
                            contact=contact,
                            message=message,
                            log_id=log_id,
                            conversation_log_id=conversation_log_id,
                            additional_submission=body.additional_submission or {},
                            image_link=_attachment_link(message_body, "MmsAttachment"),
                        ),
                    )
                else:
                    result = await connector.create_message_log(
                        call,
                        MessageLogCreate(
                            contact=contact,
                            message=message,
                            conversation_id=conversation_id,
                            conversation_log_id=conversation_log_id,
                            additional_submission=body.additional_submission or {},
                            recording_link=_attachment_link(message_body, "AudioRecording"),
                            fax_doc_link=_attachment_link(message_body, "RenderedDocument"),
                            image_link=_attachment_link(message_body, "MmsAttachment"),
                        ),
                    )
                    last_message = result.return_message
                    if not result.log_id:
                        continue
                    log_id = result.log_id
                await services.message_logs.add(
                    MessageLogRow(
                        id=message_id,
                        platform=user.platform,
                        conversation_id=conversation_id,
                        conversation_log_id=conversation_log_id,
                        third_party_log_id=log_id,
                        user_id=user.id,
                    )
                )
                already.add(message_id)
                logged.append(message_id)
    except CrmHttpError as exc:
        operation = "updateMessageLog" if logged else "createMessageLog"
        return Reply(envelope(False, crm_error_message(exc, user.platform, operation)))
    except LockTimeout:
        return Reply(
            envelope(
                False, warning("This conversation is being logged by another request. Please try again.")
            )
        )
    return Reply(
        {
            "successful": True,
            "logIds": logged,
            "returnMessage": last_message.to_wire() if last_message else None,
        }
    )

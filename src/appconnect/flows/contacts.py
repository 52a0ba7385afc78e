"""Contact lookup, search and the placeholder-contact creation (one CRM contact per account and number)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta

from appconnect.connectors.sdk import (
    Connector,
    Contact,
    ContactLookup,
    ContactMatches,
    CrmCall,
    CrmHttpError,
    InterfaceNotImplemented,
    NewContact,
    ReturnMessage,
    placeholder_contact,
)
from appconnect.flows.common import (
    account_scope,
    active_user,
    active_user_with_account_data,
    active_user_with_write,
    connector_for,
    is_e164,
    repair_phone,
)
from appconnect.flows.delivery import NOT_SETTLED, settle_window
from appconnect.flows.errors import crm_error_message, warning
from appconnect.flows.reply import ClientError, Reply, envelope
from appconnect.flows.requests import ContactCreateBody
from appconnect.flows.services import Services
from appconnect.flows.session import open_session
from appconnect.security.jwt import SessionClaims
from appconnect.store.cache import CreatedRecord, contacts_key
from appconnect.store.locks import LockTimeout
from appconnect.store.users import AccountRow


def _not_found_message(phone: str, platform: str) -> ReturnMessage:
    text = f"A contact with the phone number {phone} could not be found in your {platform} account."
    return ReturnMessage(
        "Contact not found",
        "warning",
        5000,
        [{"title": "Details", "items": [{"id": "1", "type": "text", "text": text}]}],
    )


def _default_contact_type(services: Services, platform: str) -> str | None:
    types = services.registry.contact_types(platform)
    return types[0] if types else None


async def find_contact(
    services: Services,
    claims: SessionClaims,
    *,
    phone_number: str | None,
    overriding_format: str,
    is_extension: str,
    force_refresh: bool,
) -> Reply:
    if not phone_number:
        raise ClientError("phoneNumber is required", as_json=True)
    phone = repair_phone(phone_number)
    platform = claims.platform
    user, prefetched = await active_user_with_account_data(services, claims, contacts_key(phone))
    if user is None:
        return Reply(envelope(False, warning("Contact not found")))
    connector = connector_for(services, platform)
    scope = account_scope(user)
    if not force_refresh:
        max_age = services.settings.contact_cache_seconds
        if isinstance(prefetched, AccountRow):
            cached = services.cache.fresh_contacts(prefetched.data, prefetched.updated_at, max_age=max_age)
        else:
            cached = await services.cache.get_contacts(scope, platform, phone, max_age=max_age)
        if cached is not None:
            # no `returnMessage: null`: the contract's schema has an object there (absent is what the client
            # reads as "nothing to show" too)
            return Reply({"successful": True, "contact": cached})
    call = await open_session(services, connector, user)
    try:
        matches = await connector.find_contact(
            call,
            ContactLookup(
                phone_number=phone,
                overriding_format=overriding_format,
                is_extension=is_extension == "true",
                force_refresh=force_refresh,
            ),
        )
    except CrmHttpError as exc:
        return Reply(envelope(False, crm_error_message(exc, platform, "findContact")))
    return Reply(
        await _matches_reply(
            services, matches, scope=scope, platform=platform, phone=phone, force_refresh=force_refresh
        )
    )


async def _matches_reply(
    services: Services, matches: ContactMatches, *, scope: str, platform: str, phone: str, force_refresh: bool
) -> dict[str, object]:
    real = [c for c in matches.contacts if not c.is_new_contact]
    contacts = list(matches.contacts)
    if matches.successful and not any(c.is_new_contact for c in contacts):
        contacts.append(placeholder_contact(_default_contact_type(services, platform)))
    wire = [c.to_wire() for c in contacts]
    if real:
        await services.cache.put_contacts(scope, platform, phone, wire)
        return envelope(matches.successful, matches.return_message, contact=wire)
    if force_refresh:
        await services.cache.drop_contacts(scope, platform, phone)
    message = matches.return_message or _not_found_message(phone, platform)
    return envelope(matches.successful, message, contact=wire)


def _validate_new_contact(services: Services, platform: str, body: ContactCreateBody) -> NewContact | str:
    """The new contact, or the reason it is refused."""
    phone = repair_phone(body.phone_number or "")
    if not is_e164(phone):
        return "Invalid phone number: use the E.164 format, for example +14155550100."
    name = (body.new_contact_name or "").strip()
    if not name:
        return "Contact name is required."
    if len(name) > 255:
        return "Contact name is too long (255 characters at most)."
    allowed = services.registry.contact_types(platform)
    contact_type = (body.new_contact_type or "").strip()
    if allowed and contact_type not in allowed:
        return f"Unknown contact type {contact_type!r}: expected one of {', '.join(allowed)}."
    if not allowed and contact_type:
        return f"{platform} has no contact types; leave the contact type empty."
    return NewContact(
        phone_number=phone,
        name=name,
        contact_type=contact_type,
        additional_submission=body.additional_submission or {},
    )


async def create_contact(services: Services, claims: SessionClaims, body: ContactCreateBody) -> Reply:
    platform = claims.platform
    connector = connector_for(services, platform)
    new = _validate_new_contact(services, platform, body)
    if isinstance(new, str):
        return Reply(envelope(False, warning(new)))
    # the marker names this request as the one creating: the first claim runs with the user's read
    marker = _unknown_outcome_marker(new, owner=uuid.uuid4().hex)
    first_claim = services.cache.claim_for_user(
        platform, new.phone_number, marker, max_age=services.settings.contact_dedupe_seconds
    )
    user, written = await active_user_with_write(services, claims, first_claim, by_platform=True)
    if user is None:
        return Reply({"successful": False})
    scope = account_scope(user)
    claimed = None if written is None else written.value is not None
    try:
        earlier = await _claim_number(services, scope, platform, new, marker, claimed=claimed)
    except LockTimeout:
        return Reply(envelope(False, warning("Another request is creating this contact. Please try again.")))
    if isinstance(earlier, dict):  # created before, within the dedupe window: the same answer again
        return Reply(envelope(True, ReturnMessage("Contact created.", "success", 2000), contact=earlier))
    cache = services.cache
    sent = False
    try:
        call = await open_session(services, connector, user)
        if earlier is not None:
            # An earlier create got no answer: the CRM may have made the contact. Adopt it if so.
            try:
                at_crm = await _contacts_with_number(connector, call, new.phone_number)
            except CrmHttpError as exc:
                await cache.keep_created_contact(
                    scope, platform, new.phone_number, earlier, _unowned(earlier)
                )
                return Reply(envelope(False, crm_error_message(exc, platform, "createContact")))
            adopted = _same_contact(at_crm, new.name, new.contact_type)
            if adopted is not None:
                wire = await _remember(services, scope, platform, new, adopted)
                return Reply(envelope(True, ReturnMessage("Contact created.", "success", 2000), contact=wire))
            previous = earlier.contact
            landed = _same_contact(at_crm, str(previous.get("name") or ""), str(previous.get("type") or ""))
            settled_at = earlier.recorded_at + timedelta(seconds=settle_window(services.settings))
            if landed is None and datetime.now(UTC) < settled_at:
                # the CRM may still be making the earlier one: creating now could make a second contact
                await cache.keep_created_contact(
                    scope, platform, new.phone_number, earlier, _unowned(earlier)
                )
                return Reply(envelope(False, NOT_SETTLED))
        sent = True
        try:
            created = await connector.create_contact(call, new)
        except InterfaceNotImplemented:
            await cache.forget_created_contact(scope, platform, new.phone_number)
            return Reply(envelope(False, warning(f"{platform} does not support creating contacts.")))
        except CrmHttpError as exc:
            if exc.outcome_unknown:  # recorded again: the settle window runs from the missing answer
                await cache.set_created_contact(
                    scope, platform, new.phone_number, _unknown_outcome_marker(new)
                )
            else:
                await cache.forget_created_contact(scope, platform, new.phone_number)
            return Reply(envelope(False, crm_error_message(exc, platform, "createContact")))
        if created is None:
            await cache.forget_created_contact(scope, platform, new.phone_number)
            return Reply(envelope(False, warning("Contact was not created.")))
    except BaseException:
        # Anything unexpected (the session refresh failed, a bug, cancellation): once the create was sent it
        # may have reached the CRM, so the record stays an unanswered create, free for the next attempt to check;
        # before that, a fresh claim is simply dropped.
        await _release_claim(services, scope, platform, new, forget=not sent and earlier is None)
        raise
    wire = await _remember(services, scope, platform, new, created.contact)
    return Reply(envelope(True, created.return_message, contact=wire))


async def _claim_number(
    services: Services,
    scope: str,
    platform: str,
    new: NewContact,
    marker: dict[str, object],
    *,
    claimed: bool | None,
) -> dict[str, object] | CreatedRecord | None:
    """Make this request the one creating the contact for this number (`marker` names it as the owner;
    `claimed`: the outcome of a first claim already made with the user's read, None when none was made).

    Returns None (a fresh claim: create), the earlier unanswered create's record (claimed: check the CRM
    first), or the contact created within the dedupe window (replay it). A create another live request is
    working on is waited for, at most the lock wait; its marker names its owner and expires with the
    outbound call's budget, so a crashed request never blocks the number for longer than that.
    """
    cache = services.cache
    settings = services.settings
    in_flight_for = timedelta(seconds=settings.crm_read_timeout + 10)
    deadline = time.monotonic() + settings.lock_wait_seconds
    delay = 0.005
    while True:
        if claimed is None:
            claimed = await cache.claim_created_contact(
                scope, platform, new.phone_number, marker, max_age=settings.contact_dedupe_seconds
            )
        if claimed:
            return None
        claimed = None  # every later attempt claims again
        record = await cache.created_contact(scope, platform, new.phone_number)
        if record is not None:
            if not _is_unknown_outcome(record.contact):
                contact: dict[str, object] = record.contact
                return contact
            busy = record.contact.get("owner") and datetime.now(UTC) < record.updated_at + in_flight_for
            if not busy and await cache.take_over_created_contact(
                scope, platform, new.phone_number, record, marker
            ):
                return record
        if time.monotonic() > deadline:
            raise LockTimeout(f"contact:{platform}:{new.phone_number}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def _release_claim(
    services: Services, scope: str, platform: str, new: NewContact, *, forget: bool
) -> None:
    """Give the number up: forgotten, or left as an unanswered create nobody works on (best effort: the
    database may be what failed; the claim then expires by itself)."""
    with contextlib.suppress(Exception):
        if forget:
            await services.cache.forget_created_contact(scope, platform, new.phone_number)
            return
        record = await services.cache.created_contact(scope, platform, new.phone_number)
        if record is not None and _is_unknown_outcome(record.contact):
            await services.cache.keep_created_contact(
                scope, platform, new.phone_number, record, _unowned(record)
            )


def _unowned(record: CreatedRecord) -> dict[str, object]:
    """A record's unanswered-create marker without the owner: nobody works on it now."""
    return {k: v for k, v in dict(record.contact).items() if k != "owner"}


async def _remember(
    services: Services, scope: str, platform: str, new: NewContact, contact: Contact
) -> dict[str, object]:
    """The contact now stands for this number: replayed to duplicates; the stale lookup cache is dropped."""
    wire = _with_defaults(contact, new).to_wire()
    await services.cache.set_created_contact(scope, platform, new.phone_number, wire, drop_lookup=True)
    return wire


_UNKNOWN_OUTCOME_KEY = "createOutcomeUnknown"


def _unknown_outcome_marker(new: NewContact, *, owner: str | None = None) -> dict[str, object]:
    """Stored in place of the created contact until the CRM's answer is stored: a create in flight (`owner`
    names the request working on it), or one the CRM may have taken without our hearing back."""
    marker: dict[str, object] = {_UNKNOWN_OUTCOME_KEY: True, "name": new.name, "type": new.contact_type}
    if owner is not None:
        marker["owner"] = owner
    return marker


def _is_unknown_outcome(stored: object) -> bool:
    return isinstance(stored, dict) and bool(stored.get(_UNKNOWN_OUTCOME_KEY))


def _same_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


async def _contacts_with_number(connector: Connector, call: CrmCall, phone: str) -> list[Contact]:
    """What the CRM holds for this number now, asked past the cache (an unanswered create may have landed)."""
    try:
        matches = await connector.find_contact(call, ContactLookup(phone_number=phone, force_refresh=True))
    except InterfaceNotImplemented:
        return []
    return [c for c in matches.contacts if not c.is_new_contact]


def _same_contact(contacts: list[Contact], name: str, contact_type: str) -> Contact | None:
    """The contact an unanswered create made: this number and the requested name (and type, when both are
    known).

    A contact with this number but another name is not adopted: it is another record (a colleague's, or one
    made in the CRM meanwhile), and the user asked for this name; a new contact is created as before. Until
    the settle window has passed, finding nothing is not proof that the earlier create was lost.
    """
    for contact in contacts:
        if not _same_name(contact.name, name):
            continue
        if contact.type and contact_type and contact.type != contact_type:
            continue
        return contact
    return None


def _with_defaults(contact: Contact, new: NewContact) -> Contact:
    if contact.type is None and new.contact_type:
        contact.type = new.contact_type
    if contact.phone is None:
        contact.phone = new.phone_number
    return contact


async def search_by_name(services: Services, claims: SessionClaims, name: str) -> Reply:
    platform = claims.platform
    user = await active_user(services, claims, by_platform=True)
    if user is None:
        return Reply(envelope(False, warning(f"No contact found with name {name}")))
    connector = connector_for(services, platform)
    call = await open_session(services, connector, user)
    try:
        matches = await connector.find_contact_with_name(call, name)
    except CrmHttpError as exc:
        return Reply(envelope(False, crm_error_message(exc, platform, "findContactWithName")))
    wire = [c.to_wire() for c in matches.contacts]
    message = matches.return_message
    if not any(not c.is_new_contact for c in matches.contacts) and message is None:
        message = warning(f"No contact found with name {name} ")
    return Reply(envelope(matches.successful, message, contact=wire))

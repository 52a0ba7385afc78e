"""`appconnect connector check FILE`: validate a configuration and, given a test account, try it for real.

With `--api-key` it logs in; with `--phone` too it looks the number up and logs a call against the first contact
found, then reads the log back (`getCallLog`) and finds it by its marker (`findCallLog`), so a configuration
whose marker search cannot find what its create writes is caught before a lost answer makes a duplicate. It
prints what it did, never the key, names or numbers it read.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from appconnect.connectors.declarative.config import ConfigError, JsonDict, load_file
from appconnect.connectors.declarative.connector import (
    OPERATION_METHODS,
    DeclarativeConnector,
    connector_class,
)
from appconnect.connectors.sdk import (
    CallLogCreate,
    CallLogRef,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactLookup,
    ContactRef,
    CrmCall,
    CrmHttpError,
    LoginRequest,
    UserView,
    implements,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

Print = Callable[[str], None]


def check(path: Path, *, api_key: str | None, phone: str | None, base_url: str | None, out: Print) -> int:
    """0 when everything asked for worked, 1 otherwise (each step printed as one line)."""
    try:
        config = load_file(path)
    except ConfigError as exc:
        out(f"invalid: {exc}")
        return 1
    declared = [op for op in config["operations"] if op in OPERATION_METHODS]
    out(f"valid: platform {config['meta']['name']!r}, operations: {', '.join(declared) or 'none'}")
    for note in _deployment_notes(config, given={"BASE_URL"} if base_url else set()):
        out(note)
    if not api_key:
        return 0
    return asyncio.run(_try_account(config, api_key, phone, base_url, out))


def _deployment_notes(config: JsonDict, *, given: set[str]) -> list[str]:
    """What the file leaves to the deployment's settings (as the reference leaves it to its console) and no
    setting gives."""
    prefix = str(config["meta"]["name"]).upper()
    auth: JsonDict = config.get("auth") or {}
    defaults: JsonDict = config.get("requestDefaults") or {}
    given = given | {k[len(prefix) + 1 :] for k in os.environ if k.upper().startswith(f"{prefix}_")}
    notes: list[str] = []
    if not defaults.get("baseUrl") and "BASE_URL" not in given:
        notes.append(f"note: requestDefaults.baseUrl is blank: set {prefix}_BASE_URL (or pass --base-url)")
    for key, setting in (("authUrl", "AUTH_URL"), ("tokenUrl", "TOKEN_URL")):
        if auth.get("type") == "oauth" and not auth.get(key) and setting not in given:
            notes.append(
                f"note: auth.{key} is missing: set {prefix}_{setting} (OAuth cannot work without it)"
            )
    return notes


async def _try_account(
    config: dict[str, object], api_key: str, phone: str | None, base_url: str | None, out: Print
) -> int:
    cls = connector_class(config)
    from appconnect.connectors.registry import connector_config  # the registry loads this module lazily

    # the platform's own settings (`<PLATFORM>_SECRET_KEY`...), as the server would read them
    settings = connector_config(cls.platform, os.environ).values
    connector = cls(ConnectorConfig({**settings, "base_url": base_url} if base_url else settings))
    transport = build_transport_client(connect_timeout=5.0, read_timeout=20.0)
    platform = cls.platform
    # an OAuth configuration takes an access token of the test account in place of a key
    header = f"Bearer {api_key}" if cls.auth_type == "oauth" else "Basic " + connector.basic_auth(api_key)
    try:
        probe = UserView(id="", platform=platform, hostname="")
        http = CrmHttpClient(transport, base_url=connector.base_url(probe), auth_header=header)
        if not implements(connector, "get_user_info"):
            out("login: skipped (no getUserInfo operation)")
            return 1
        result = await connector.get_user_info(
            LoginRequest(
                auth_header=header,
                hostname="",
                platform=platform,
                http=http,
                api_key=api_key if cls.auth_type == "apiKey" else None,
            )
        )
        if not result.successful or result.user is None:
            out("login: refused (the mapping found no user id)")
            return 1
        out("login: ok")
        if not phone:
            return 0
        view = UserView(
            id=result.user.id,
            platform=platform,
            hostname="",
            platform_additional_info=result.user.platform_additional_info,
        )
        call = CrmCall(
            view, header, CrmHttpClient(transport, base_url=connector.base_url(view), auth_header=header)
        )
        return await _try_logging(connector, call, phone, out)
    except CrmHttpError as exc:
        out(f"failed: the CRM answered {exc.status if exc.status is not None else 'nothing in time'}")
        return 1
    finally:
        await transport.aclose()


async def _try_logging(connector: DeclarativeConnector, call: CrmCall, phone: str, out: Print) -> int:
    matches = await connector.find_contact(call, ContactLookup(phone_number=phone))
    found = [c for c in matches.contacts if not c.is_new_contact]
    out(f"lookup: {len(found)} contact(s)")
    if not found:
        out("call log: skipped (no contact has that number in the CRM)")
        return 1
    if not implements(connector, "create_call_log"):
        out("call log: skipped (no createCallLog operation)")
        return 1
    session = f"appconnect-check-{uuid.uuid4().hex[:12]}"
    contact = found[0]
    log = CallLogCreate(
        contact=ContactRef(id=contact.id, phone_number=phone, type=contact.type or "", name=contact.name),
        call=CallRecord(
            session_id=session,
            direction="Inbound",
            duration=60,
            result="Call connected",
            from_party=CallParty(phone_number=phone),
            to_party=CallParty(phone_number=phone),
        ),
        note="App Connect connector check",
        composed_log_details="- Note: App Connect connector check",
    )
    created = await connector.create_call_log(call, log)
    out(f"call log: created ({'an id' if created.log_id else 'no id'})")
    status = 0 if created.log_id else 1
    if created.log_id and implements(connector, "get_call_log"):
        fetched = await connector.get_call_log(call, CallLogRef(created.log_id, contact.id))
        readable = "App Connect connector check" in f"{fetched.info.note} {fetched.info.full_body}"
        out(f"get call log: {'ok' if readable else 'the note is not in what getCallLog maps'}")
        status = status or (0 if readable else 1)
    if created.log_id and implements(connector, "find_call_log"):
        again = await connector.find_call_log(call, log)
        ok = again == created.log_id
        out(f"marker search: {'finds the log' if ok else 'does not find the log just written'}")
        status = status or (0 if ok else 1)
    return status

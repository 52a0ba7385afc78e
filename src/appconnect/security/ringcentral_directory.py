"""A RingCentral account's extensions, asked of RingCentral with the admin's own token (never the client's list).

The admin's user mapping matches these to the CRM's users; taking the list from RingCentral means a client can
only ever map extensions of the account RingCentral says the admin belongs to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from appconnect.outbound.client import CrmTransport, TransportError

logger = logging.getLogger(__name__)

EXTENSIONS_PATH = "/restapi/v1.0/account/~/extension"
PER_PAGE = 1000
#: a bound on the walk: 100 pages of 1000 extensions is far beyond any account that maps users by hand
MAX_PAGES = 100


@dataclass(frozen=True, slots=True)
class RcExtension:
    """One user extension of the account, as RingCentral lists it."""

    id: str
    #: the id as RingCentral wrote it (a number): answered back unchanged, the client compares with its own list
    wire_id: Any
    name: str
    email: str
    extension_number: str


class DirectoryFailed(Exception):
    """RingCentral did not give the account's extensions: it could not be asked (`unavailable`: unreachable,
    timed out, a 5xx, no JSON), refused the token, or answered no extension records."""

    def __init__(self, reason: str, *, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.unavailable = unavailable


def _extension(record: Any) -> RcExtension | None:
    if not isinstance(record, dict):
        return None
    wire_id = record.get("id")
    if wire_id is None or isinstance(wire_id, bool) or not isinstance(wire_id, str | int):
        return None
    raw_contact = record.get("contact")
    contact: dict[str, Any] = raw_contact if isinstance(raw_contact, dict) else {}
    name = record.get("name")
    if not isinstance(name, str) or not name.strip():
        first, last = contact.get("firstName") or "", contact.get("lastName") or ""
        name = f"{first} {last}".strip()
    email = contact.get("email") if isinstance(contact.get("email"), str) else record.get("email")
    return RcExtension(
        id=str(wire_id),
        wire_id=wire_id,
        name=str(name or ""),
        email=email if isinstance(email, str) else "",
        extension_number=str(record.get("extensionNumber") or ""),
    )


async def account_extensions(http: CrmTransport, server: str, token: str) -> list[RcExtension]:
    """Every user extension of the token's account, page by page."""
    url = server.rstrip("/") + EXTENSIONS_PATH
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    found: list[RcExtension] = []
    for page in range(1, MAX_PAGES + 1):
        params = {"page": page, "perPage": PER_PAGE, "type": "User"}
        try:
            response = await http.send("GET", url, params=params, headers=headers)
        except TransportError as exc:
            logger.warning("RingCentral platform unreachable listing extensions: %s", exc)
            raise DirectoryFailed("RingCentral unreachable", unavailable=True) from None
        if not response.is_success:
            logger.warning("RingCentral platform answered HTTP %s listing extensions", response.status_code)
            unavailable = response.status_code not in (400, 401, 403, 404)
            raise DirectoryFailed(
                f"RingCentral answered HTTP {response.status_code}", unavailable=unavailable
            )
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise DirectoryFailed("RingCentral answered no JSON", unavailable=True) from None
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise DirectoryFailed("RingCentral answered no extension records")
        found.extend(e for e in (_extension(r) for r in records) if e is not None)
        paging = data.get("paging") if isinstance(data.get("paging"), dict) else {}
        total = paging.get("totalPages")
        if not records or not isinstance(total, int) or page >= total:
            return found
    logger.warning("RingCentral extension list longer than %s pages: the rest is left out", MAX_PAGES)
    return found

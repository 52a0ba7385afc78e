"""What a flow answers: HTTP status plus a JSON object or a plain-text body (the contract mixes both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appconnect.connectors.sdk import JsonDict, ReturnMessage


@dataclass(slots=True)
class Reply:
    #: a list only where the contract answers one (the admin's user mapping, managed-auth options)
    body: JsonDict | list[Any] | str | None
    status: int = 200


class ClientError(Exception):
    """Refuse the request: 400 plain text by default (missing JWT, unknown user), or `{error}` JSON."""

    def __init__(self, text: str, status: int = 400, *, as_json: bool = False) -> None:
        self.text = text
        self.status = status
        self.as_json = as_json
        super().__init__(text)


class SessionEnded(ClientError):
    """The session JWT verified, but the user logged out after it was issued: the route answers as for an
    invalid token (400, "Please go to Settings and authorize CRM platform"), never its "not found" answer,
    so the client asks the user to connect again instead of showing "Contact not found"."""

    def __init__(self) -> None:
        super().__init__("Please go to Settings and authorize CRM platform")


def envelope(successful: bool, return_message: ReturnMessage | None = None, **fields: Any) -> JsonDict:
    """`{successful, returnMessage?, ...}`: keys the contract leaves undefined are omitted."""
    body: JsonDict = {"successful": successful}
    if return_message is not None:
        body["returnMessage"] = return_message.to_wire()
    body.update(fields)
    return body

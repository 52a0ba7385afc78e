"""A CRM's app-uninstall callback: the company that removed the app leaves no users or tokens on this server.

Pipedrive sends `DELETE` to the app's callback URL with `{client_id, company_id, user_id, timestamp}`,
authenticated with HTTP Basic as the app's own client id and secret. The reference looks the user up under
Pipedrive's bare user id (stored ids are `<id>-pipedrive`) and so never deletes anyone; here every user of that
company goes, whoever of them uninstalled.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, StringConstraints

from appconnect.flows.reply import ClientError, Reply
from appconnect.flows.services import Services

logger = logging.getLogger(__name__)

PIPEDRIVE = "pipedrive"
UNAUTHORIZED = "Unauthorized"


class PipedriveUninstallBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    company_id: StrictInt | Annotated[StrictStr, StringConstraints(pattern=r"^[0-9]{1,20}$")]


def _basic(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def check_pipedrive_caller(services: Services, authorization: str | None) -> None:
    """Only Pipedrive (who knows the app's client secret) may uninstall; anyone else is a 401."""
    connector = services.registry.get(PIPEDRIVE)
    client_id = connector.config.get("client_id") if connector is not None else ""
    client_secret = connector.config.get("client_secret") if connector is not None else ""
    given = _basic(authorization)
    if not client_id or not client_secret or given is None:
        raise ClientError(UNAUTHORIZED, 401)
    # both compared, whatever the first gives: the answer's timing says nothing of which was wrong
    if not (_same(given[0], client_id) & _same(given[1], client_secret)):
        raise ClientError(UNAUTHORIZED, 401)


async def pipedrive_uninstalled(services: Services, body: PipedriveUninstallBody) -> Reply:
    removed = await services.users.delete_company(PIPEDRIVE, str(body.company_id))
    logger.info("Pipedrive app uninstalled by a company: %d users removed", removed)
    return Reply("User deleted")

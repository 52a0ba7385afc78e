"""Downloads of message attachments from RingCentral, for connectors that copy them into the CRM.

The attachment URL comes from the client's request body, so it is fetched only when its origin is one the
operator allows (`APPCONNECT_RC_MEDIA_HOSTS`, RingCentral's media hosts by default): anything else would let
a request make this server fetch an arbitrary URL (SSRF). The user's RingCentral token goes in the
Authorization header, never in the URL, and only to an allowed host; the answer is bounded in size and time.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from appconnect.connectors.sdk import CrmHttpError, MediaFile, MediaUnavailable
from appconnect.flows.services import Services
from appconnect.outbound.client import CrmHttpClient


def allowed_origins(setting: str) -> frozenset[tuple[str, str, int]]:
    """(scheme, host, port) of each entry: a bare host means https on 443; an origin is taken as written."""
    origins: set[tuple[str, str, int]] = set()
    for entry in setting.split(","):
        text = entry.strip().lower()
        if not text:
            continue
        parts = urlsplit(text if "://" in text else f"https://{text}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            continue
        origins.add((parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    return frozenset(origins)


def origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    return (parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80))


class RingCentralMedia:
    """A :class:`~appconnect.connectors.sdk.MediaFetcher` for one request: its user's RingCentral token."""

    def __init__(self, services: Services, access_token: str) -> None:
        self._services = services
        self._token = access_token
        self._allowed = allowed_origins(services.settings.rc_media_hosts)
        self._max_bytes = services.settings.rc_media_max_bytes

    def allows(self, uri: str) -> bool:
        origin = origin_of(uri)
        return origin is not None and origin in self._allowed

    async def fetch(self, media: MediaFile) -> bytes:
        if not self.allows(media.uri):
            raise MediaUnavailable("the attachment's host is not an allowed RingCentral media host")
        # no CRM limiter: RingCentral's own limits are not the CRM's budget
        http = CrmHttpClient(self._services.http, base_url="", retry=self._services.retry_policy())
        try:
            response = await http.request(
                "GET",
                media.uri,
                auth=False,
                headers={"Authorization": f"Bearer {self._token}", "Accept": media.content_type or "*/*"},
            )
        except CrmHttpError as exc:
            raise MediaUnavailable(f"RingCentral answered {exc.status or 'nothing'}") from None
        body = getattr(response, "content", b"")
        if not isinstance(body, bytes) or not body:
            raise MediaUnavailable("RingCentral sent an empty attachment")
        if len(body) > self._max_bytes:
            raise MediaUnavailable("the attachment is larger than APPCONNECT_RC_MEDIA_MAX_BYTES")
        return body

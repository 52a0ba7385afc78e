"""Which attachment URLs the server may download (flows/media.py): only RingCentral's media hosts by default."""

from __future__ import annotations

import pytest

from appconnect.flows.media import allowed_origins, origin_of
from appconnect.settings import Settings

DEFAULT = allowed_origins(Settings.model_fields["rc_media_hosts"].default)


@pytest.mark.parametrize(
    "uri",
    [
        "https://media.ringcentral.com/restapi/v1.0/account/1/extension/2/message-store/3/content/4",
        "https://MEDIA.ringcentral.com:443/restapi/v1.0/account/~/extension/~/message-store/3/content/4",
        "https://media.devtest.ringcentral.com/restapi/v1.0/account/~/extension/~/message-store/3/content/4",
    ],
)
def test_ringcentral_media_is_allowed_by_default(uri: str) -> None:
    assert origin_of(uri) in DEFAULT


@pytest.mark.parametrize(
    "uri",
    [
        "http://media.ringcentral.com/restapi/v1.0/x",  # not https
        "https://media.ringcentral.com:8443/restapi/v1.0/x",  # another port
        "https://media.ringcentral.com.evil.example/x",
        "https://evil.example/?media.ringcentral.com",
        "https://user@media.ringcentral.com/x",  # credentials in the URL
        "https://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "https://[::1/x",  # not a URL
        "",
    ],
)
def test_anything_else_is_refused(uri: str) -> None:
    assert origin_of(uri) not in DEFAULT


def test_an_origin_entry_allows_that_scheme_and_port_only() -> None:
    allowed = allowed_origins(" http://127.0.0.1:8123 , media.ringcentral.com,,ftp://x")
    assert origin_of("http://127.0.0.1:8123/a") in allowed
    assert origin_of("http://127.0.0.1:8124/a") not in allowed
    assert origin_of("https://127.0.0.1:8123/a") not in allowed
    assert origin_of("https://media.ringcentral.com/a") in allowed
    assert len(allowed) == 2

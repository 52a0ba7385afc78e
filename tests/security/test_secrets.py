"""Secrets stay secret: encrypted at rest, never in a log line, never in an error message."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from sqlalchemy import select

from appconnect.security.crypto import TokenCipher
from appconnect.security.redact import install_redaction, redact
from appconnect.settings import Settings
from appconnect.store.db import create_engine
from appconnect.store.tables import users
from tests.conftest import LiveServer, new_phone


def stored_user_tokens(server: LiveServer, user_id: str) -> tuple[str | None, str | None]:
    async def read() -> tuple[str | None, str | None]:
        engine = create_engine(server.settings.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(users.c.access_token, users.c.refresh_token).where(users.c.id == user_id)
                    )
                ).one()
                return row.access_token, row.refresh_token
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_api_key_is_encrypted_at_rest(server: LiveServer, client: httpx.Client, crm_api_key: str) -> None:
    login = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": crm_api_key})
    import jwt as pyjwt

    user_id = pyjwt.decode(login.json()["jwtToken"], options={"verify_signature": False})["id"]
    stored, _refresh = stored_user_tokens(server, user_id)
    assert stored is not None and crm_api_key not in stored
    keys = json.loads(server.settings.key_file.read_text())
    assert TokenCipher((keys["encryption_key"],)).decrypt(stored) == crm_api_key
    with pytest.raises(ValueError, match="cannot be decrypted"):
        TokenCipher(("ZmFrZS1rZXktZmFrZS1rZXktZmFrZS1rZXktZmFrZTE=",)).decrypt(stored)


def test_no_token_or_key_in_any_log_line(
    client: httpx.Client, crm_api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": crm_api_key})
    jwt = login.json()["jwtToken"]
    client.get(f"/contact?phoneNumber={new_phone()}&jwtToken={jwt}")
    client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": "wrong-" + crm_api_key})
    client.post(f"/contact?jwtToken={jwt}", content=b"{broken")
    logging.getLogger("appconnect.test").warning("outbound Authorization: Bearer %s", jwt)
    text = caplog.text
    assert crm_api_key not in text
    assert jwt not in text
    assert "Bearer ***" in text


def test_redaction_masks_the_usual_shapes() -> None:
    install_redaction()
    assert redact("GET /contact?jwtToken=abc.def.ghi&x=1") == "GET /contact?jwtToken=***&x=1"
    assert redact("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic ***"
    assert redact('{"access_token": "s3cr3t", "refresh_token": "r3fr3sh"}') == (
        '{"access_token": "***", "refresh_token": "***"}'
    )
    assert "eyJ" not in redact("token eyJhbGciOiJIUzI1NiJ9.eyJpZCI6IjEifQ.sig")


def test_unexpected_error_message_does_not_echo_the_token(client: httpx.Client, jwt: str) -> None:
    response = client.get("/callLog", params={"sessionIds": "x", "jwtToken": jwt})
    assert jwt not in response.text


def test_settings_never_show_their_secrets() -> None:
    """Secrets are SecretStr: a repr, a dump or a log of the settings shows stars, never the value."""
    values = {
        "jwt_secret": "jwt-s3cret-value",
        "encryption_keys": "enc-s3cret-value",
        "hash_key": "hash-s3cret-value",
        "testcrm_admin_token": "admin-s3cret-value",
        "testcrm_api_key": "api-s3cret-value",
        "metrics_token": "metrics-s3cret-value",
    }
    settings = Settings(**values)  # type: ignore[arg-type]
    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    for secret in values.values():
        assert secret not in shown
    assert settings.jwt_secret.get_secret_value() == "jwt-s3cret-value"


def test_redaction_masks_phone_numbers_and_echoed_input() -> None:
    assert redact("lookup of +14155550123 failed") == "lookup of ***phone*** failed"
    assert redact("GET /contact?phoneNumber=%2B14155550123") == "GET /contact?phoneNumber=***phone***"
    assert redact("national 4155550123 number") == "national ***phone*** number"
    echoed = (
        "1 validation error\nnote\n  Input should be a valid integer [input_value='Asked about pricing', x]"
    )
    assert "pricing" not in redact(echoed)
    # what operators need stays readable: pids, times, counts
    assert (
        redact("worker 12345 ended at 2026-12-07 02:11:29,936")
        == "worker 12345 ended at 2026-12-07 02:11:29,936"
    )

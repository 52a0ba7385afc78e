"""The embedded test CRM cannot be exposed by accident: it is on by default only on a loopback public URL,
and its key minting and fault injection never answer without the admin token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from appconnect.api.app import create_app
from appconnect.embedded_crm import create_testcrm_app
from appconnect.store.migrate import upgrade
from tests.conftest import make_settings
from tests.support.app_server import run_app
from tests.support.live_server import serve_asgi

PUBLIC = "https://appconnect.example.com"
ADMIN_TOKEN = "exposure-admin-token"


@contextmanager
def server(
    folder: Path, monkeypatch: pytest.MonkeyPatch, testcrm_base_url: str | None = None, **overrides: object
) -> Iterator[httpx.Client]:
    """A server on loopback whose settings are `overrides`; TESTCRM_BASE_URL only if given (other tests set it)."""
    if testcrm_base_url is None:
        monkeypatch.delenv("TESTCRM_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("TESTCRM_BASE_URL", testcrm_base_url)
    folder.mkdir(exist_ok=True)
    url = f"sqlite+aiosqlite:///{folder / 'server.sqlite3'}"
    upgrade(url)
    values: dict[str, object] = {"testcrm_admin_token": "", "testcrm_fault_injection": False, **overrides}

    def build(base: str) -> object:
        values.setdefault("public_url", base)
        return create_app(make_settings(folder, url, **values))

    with run_app(build) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def test_a_public_url_that_is_not_loopback_turns_the_test_crm_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with server(tmp_path, monkeypatch, public_url=PUBLIC) as client:
        assert client.get("/testcrm/").status_code == 404
        assert client.get("/testcrm/api/v1/me", auth=("testcrm-demo-key", "")).status_code == 404
        assert client.post("/testcrm/api/v1/api-keys", json={"name": "Intruder"}).status_code == 404
        assert "testcrm" not in client.get("/crmManifest").json()["platforms"]
        assert client.get("/crmManifest", params={"platformName": "testcrm"}).status_code == 400
        login = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": "testcrm-demo-key"})
        assert login.status_code == 400 and "jwtToken" not in login.text


def test_auto_accepts_the_word_auto_and_loopback_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPCONNECT_EMBEDDED_TESTCRM", "auto")
    for public_url, expected in (
        ("http://127.0.0.1:6066", True),
        ("http://127.8.9.10", True),
        ("http://localhost:8080", True),
        ("http://[::1]:6066", True),
        ("http://0.0.0.0:6066", False),
        ("http://10.0.0.5:6066", False),
        (PUBLIC, False),
    ):
        settings = make_settings(tmp_path, "sqlite://", public_url=public_url)
        assert settings.embedded_testcrm is None
        assert settings.testcrm_enabled() is expected, public_url


def test_explicitly_enabled_on_a_public_url_warns_and_keeps_key_minting_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="appconnect")
    with server(tmp_path, monkeypatch, public_url=PUBLIC, embedded_testcrm=True) as client:
        assert any("embedded test CRM is ON" in r.getMessage() for r in caplog.records)
        assert client.get("/testcrm/api/v1/me", auth=("testcrm-demo-key", "")).status_code == 200
        # no admin token configured and a public URL: nobody mints keys, not even a loopback client
        minted = client.post("/testcrm/api/v1/api-keys", json={"name": "Intruder"})
        assert minted.status_code == 403
        assert "apiKey" not in minted.text


def test_key_minting_needs_the_admin_token_when_one_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with server(tmp_path, monkeypatch, testcrm_admin_token=ADMIN_TOKEN) as client:
        body = {"name": "Agent"}
        assert client.post("/testcrm/api/v1/api-keys", json=body).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert client.post("/testcrm/api/v1/api-keys", json=body, headers=wrong).status_code == 401
        good = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        minted = client.post("/testcrm/api/v1/api-keys", json=body, headers=good)
        assert minted.status_code == 201 and minted.json()["apiKey"]


def test_without_an_admin_token_a_loopback_server_lets_loopback_clients_mint_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with server(tmp_path, monkeypatch) as client:
        minted = client.post("/testcrm/api/v1/api-keys", json={"name": "Local agent"})
        assert minted.status_code == 201, minted.text


def test_fault_injection_needs_the_switch_and_the_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = {"status": 500, "path_prefix": "/api/v1/nothing"}
    good = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with server(tmp_path / "a", monkeypatch, testcrm_fault_injection=True) as client:
        # switched on, but no admin token configured: refused, even from loopback
        assert client.post("/testcrm/api/_faults", json=rule).status_code == 403
        assert client.get("/testcrm/api/_faults").status_code == 403
    with server(
        tmp_path / "b", monkeypatch, testcrm_fault_injection=True, testcrm_admin_token=ADMIN_TOKEN
    ) as client:
        assert client.post("/testcrm/api/_faults", json=rule).status_code == 401
        assert client.delete("/testcrm/api/_faults").status_code == 401
        assert client.get("/testcrm/api/_stats").status_code == 401
        created = client.post("/testcrm/api/_faults", json=rule, headers=good)
        assert created.status_code == 201
        listed = client.get("/testcrm/api/_faults", headers=good)
        assert listed.status_code == 200
        assert [(f["status"], f["path_prefix"]) for f in listed.json()["data"]] == [(500, "/api/v1/nothing")]


def test_an_external_test_crm_is_still_offered_when_the_embedded_one_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    external = create_testcrm_app(
        f"sqlite+aiosqlite:///{tmp_path / 'external.sqlite3'}", seed_api_key="ext-key"
    )
    with (
        serve_asgi(external, lifespan="on") as crm_base,
        server(tmp_path, monkeypatch, testcrm_base_url=f"{crm_base}/api/v1", public_url=PUBLIC) as client,
    ):
        assert client.get("/testcrm/").status_code == 404  # the embedded one stays off
        assert "testcrm" in client.get("/crmManifest").json()["platforms"]
        login = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": "ext-key"})
        assert login.status_code == 200 and login.json()["jwtToken"]


def test_a_base_url_naming_this_server_does_not_count_as_external(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with server(
        tmp_path, monkeypatch, testcrm_base_url=f"{PUBLIC}/testcrm/api/v1", public_url=PUBLIC
    ) as client:
        assert "testcrm" not in client.get("/crmManifest").json()["platforms"]

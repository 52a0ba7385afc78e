"""The connectors' end-to-end plumbing, written once: a connector server beside a fake CRM, the App Connect
client's logins (`/oauth-callback`, `/apiKeyLogin`) and its JSON requests with the session's Bearer token.

Each connector's `Agent` subclasses `ClientSession` and keeps only what its CRM makes different (the consent
screen it drives, the fields of its login page); the servers come from `server_beside` (the session server's
database and keys, so SQLite and PostgreSQL) or `server_on` (a fresh database of one backend).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from tests.conftest import LiveServer, call_log_body, connector_server, database_url_for
from tests.support.fake_ringcentral import FakeRingCentral

JsonDict = dict[str, Any]
#: the databases every end-to-end test runs on
BACKENDS = ["sqlite", "postgres"]


@contextmanager
def server_beside(
    server: LiveServer, env: Mapping[str, str], folder: Path, **overrides: object
) -> Iterator[LiveServer]:
    """A second server on `server`'s database with the same keys (JWTs and stored tokens work on both); its
    connectors read `env`, a fake CRM's settings."""
    with connector_server(
        env, folder, server.settings.database_url, key_file=server.settings.key_file, **overrides
    ) as live:
        yield live


def session_server_beside(
    name: str,
    server: LiveServer,
    env: Mapping[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    **overrides: object,
) -> Iterator[LiveServer]:
    """The body of a session fixture: `server_beside` in a folder of its own named after the CRM."""
    with server_beside(server, env, tmp_path_factory.mktemp(f"{name}-server"), **overrides) as live:
        yield live


def server_beside_fixture(
    name: str,
    fake_server_fixture: str,
    *,
    scope: Literal["session", "module"] = "session",
    **overrides: object,
) -> Callable[..., Iterator[LiveServer]]:
    """A fixture: `session_server_beside` the session `server` (so SQLite and PostgreSQL), its connectors
    reading the env of the session fake named `fake_server_fixture`.

    Bind it to the fixture's name in the module: `clio_live = server_beside_fixture("clio", "_fake_clio_server")`."""

    @pytest.fixture(scope=scope)
    def live(
        request: pytest.FixtureRequest, server: LiveServer, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[LiveServer]:
        env = request.getfixturevalue(fake_server_fixture).env()
        yield from session_server_beside(name, server, env, tmp_path_factory, **overrides)

    return live


def server_on(
    backend: str, env: Mapping[str, str], folder: Path, **overrides: object
) -> AbstractContextManager[LiveServer]:
    """A connector server on a fresh, empty database of `backend` ("sqlite" or "postgres")."""
    return connector_server(env, folder, database_url_for(backend, folder), **overrides)


def backend_server(
    name: str,
    request: pytest.FixtureRequest,
    env: Mapping[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    **overrides: object,
) -> Iterator[LiveServer]:
    """The body of a fixture parametrized over `BACKENDS`: `server_on` the backend of `request.param`."""
    folder = tmp_path_factory.mktemp(f"{name}-{request.param}")
    with server_on(request.param, env, folder, **overrides) as live:
        yield live


def ringcentral_fixture() -> Callable[[], Iterator[FakeRingCentral]]:
    """A module fixture: one fake RingCentral platform (extensions, admins) for a test module.

    Bind it to the fixture's name in the module: `rc = ringcentral_fixture()`."""

    @pytest.fixture(scope="module")
    def rc() -> Iterator[FakeRingCentral]:
        with FakeRingCentral() as fake:
            yield fake

    return rc


def sscl_server_fixture(
    name: str, fake_server_fixture: str, **overrides: object
) -> Callable[..., Iterator[LiveServer]]:
    """A module fixture over `BACKENDS` for server-side call logging: a server whose connectors read the env of
    the session fake named `fake_server_fixture` and that asks the module's `rc` fixture about RingCentral users.

    Bind it to the fixture's name in the module: `sscl_server = sscl_server_fixture(...)`."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def sscl_server(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, rc: FakeRingCentral
    ) -> Iterator[LiveServer]:
        env = request.getfixturevalue(fake_server_fixture).env()
        yield from backend_server(
            name, request, env, tmp_path_factory, ringcentral_server=rc.base_url, **overrides
        )

    return sscl_server


@asynccontextmanager
async def client_of(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client the App Connect extension would hold towards `live`."""
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:
        yield http


class ClientSession:
    """The App Connect client's side of one user's session: the login's JWT and requests that carry it."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.jwt = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}

    async def send(self, method: str, path: str, body: JsonDict) -> JsonDict:
        """A JSON request with the session's token that must succeed; its JSON answer."""
        response = await self.http.request(method, path, headers=self.auth, json=body)
        assert response.status_code == 200, response.text
        result: JsonDict = response.json()
        return result

    async def oauth_callback(self, consent: httpx.Response, **params: str) -> JsonDict:
        """Hand the CRM consent screen's redirect to the server's `/oauth-callback` as `callbackUri`, with the
        client's other query `params`; keeps the JWT when the server issues one."""
        assert consent.status_code == 302, consent.text
        response = await self.http.get(
            "/oauth-callback", params={"callbackUri": consent.headers["location"], **params}
        )
        assert response.status_code == 200, response.text
        body: JsonDict = response.json()
        if body.get("jwtToken"):
            self.jwt = body["jwtToken"]
        return body

    async def api_key_login(self, body: JsonDict, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """POST the login page's answers to `/apiKeyLogin`; keeps the JWT of a successful login."""
        response = await self.http.post("/apiKeyLogin", json=body, headers=headers)
        if response.status_code == 200:
            self.jwt = response.json()["jwtToken"]
        return response

    async def find_contact_by_query(self, phone: str, *, force: bool) -> JsonDict:
        """GET /contact as the client sends it: the JWT in the query and an unencoded `+` (it arrives as a
        space)."""
        url = f"/contact?jwtToken={self.jwt}&phoneNumber={phone}&overridingFormat=&isExtension=false"
        if force:
            url += "&isForceRefreshAccountData=true"
        response = await self.http.get(url)
        assert response.status_code == 200, response.text
        body: JsonDict = response.json()
        return body


def agent_call_body(
    session_id: str,
    contact_id: str,
    phone: str,
    *,
    duration: int = 487,
    caller: str = "Maya Patel",
    callee: str = "Jordan Lee",
    **extra: Any,
) -> JsonDict:
    """An inbound call from `caller` at `phone` to the agent `callee`, on 2026-03-12 at 14:35:20 UTC."""
    return call_log_body(
        session_id,
        contact_id,
        phone,
        log_info={
            "startTime": "2026-03-12T14:35:20.000Z",
            "duration": duration,
            "from": {"phoneNumber": phone, "name": caller},
            "to": {"phoneNumber": "+14155550101", "name": callee},
        },
        contactName=caller,
        **extra,
    )

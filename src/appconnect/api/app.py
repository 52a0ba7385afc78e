"""The ASGI application: routes, middleware, error mapping and the embedded test CRM."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from appconnect import __version__
from appconnect.api.busy import install_busy_handler
from appconnect.api.failures import (
    DEPENDENCY_DOWN_MESSAGE,
    RETRY_AFTER_SECONDS,
    error_body,
)
from appconnect.api.http import json_response, text_response
from appconnect.api.middleware import BodySizeLimit, ErrorBoundary, QueryGuard, RequestContext
from appconnect.api.routes import router
from appconnect.connectors.registry import ConnectorRegistry
from appconnect.flows import oauth
from appconnect.flows.availability import is_dependency_down
from appconnect.flows.errors import DATABASE_FAILED, SESSION_EXPIRED
from appconnect.flows.log_retrier import LogRetrier
from appconnect.flows.reply import ClientError
from appconnect.flows.services import build_services
from appconnect.flows.session import SessionRevoked
from appconnect.security.redact import install_redaction
from appconnect.settings import Settings
from appconnect.store.locks import LockTimeout

log = logging.getLogger("appconnect")


def _manifest(settings: Settings, registry: ConnectorRegistry) -> dict[str, object]:
    overrides = None
    if settings.manifest_file is not None:
        overrides = json.loads(settings.manifest_file.read_text(encoding="utf-8"))
    return registry.manifest(server_url=settings.server_url(), version=__version__, overrides=overrides)


def create_app(settings: Settings, registry: ConnectorRegistry | None = None) -> FastAPI:
    """Build the server. The database schema must exist (`appconnect migrate`; `serve` runs it first)."""
    install_redaction()
    services = build_services(settings, registry)

    embedded_crm = None
    if settings.testcrm_enabled():
        from appconnect.embedded_crm import create_testcrm_app

        exposure = settings.testcrm_exposure_warning()
        if exposure:
            log.warning(exposure)
        if settings.testcrm_fault_injection and not settings.testcrm_admin_token:
            log.warning(
                "test CRM fault injection is on but APPCONNECT_TESTCRM_ADMIN_TOKEN is unset: "
                "/testcrm/api/_faults refuses every request"
            )
        embedded_crm = create_testcrm_app(
            settings.testcrm_database_url,
            seed_api_key=settings.testcrm_api_key,
            fault_injection=settings.testcrm_fault_injection,
            admin_token=settings.testcrm_admin_token,
            loopback_key_minting=settings.public_url_is_loopback(),
        )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        retrier = LogRetrier(services)
        if settings.log_retrier_enabled:
            retrier.start()
        yield
        await retrier.stop()
        await services.close()
        if embedded_crm is not None:  # a mounted app's own lifespan never runs
            await embedded_crm.state.testcrm.aclose()

    app = FastAPI(
        title="App Connect connector server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.services = services
    app.state.manifest = _manifest(settings, services.registry)
    app.include_router(router)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> Response:
        if exc.as_json:
            return json_response(error_body(exc.text, _request_id(request)), exc.status)
        return text_response(exc.text, exc.status)

    @app.exception_handler(SessionRevoked)
    async def session_revoked(_request: Request, _exc: SessionRevoked) -> Response:
        return json_response(
            {
                "successful": False,
                "returnMessage": SESSION_EXPIRED.to_wire(),
                "errorCode": "CRM_SESSION_REVOKED",
            },
            401,
        )

    @app.exception_handler(oauth.OAuthError)
    async def oauth_failed(_request: Request, exc: oauth.OAuthError) -> Response:
        log.warning("token refresh failed: %s", exc)
        return json_response(
            {
                "successful": False,
                "returnMessage": {
                    "message": "Could not refresh the CRM session. Please try again.",
                    "messageType": "warning",
                    "ttl": 5000,
                },
            }
        )

    @app.exception_handler(LockTimeout)
    async def lock_timeout(_request: Request, _exc: LockTimeout) -> Response:
        return json_response(
            {
                "successful": False,
                "returnMessage": {
                    "message": "The CRM is busy with another request for this user. Please try again.",
                    "messageType": "warning",
                    "ttl": 5000,
                },
            }
        )

    install_busy_handler(app)

    @app.exception_handler(SQLAlchemyError)
    async def database_failed(request: Request, exc: SQLAlchemyError) -> Response:
        request_id = _request_id(request)
        if is_dependency_down(exc):
            log.error("database unavailable, request %s", request_id, exc_info=exc)
            return json_response(
                error_body(DEPENDENCY_DOWN_MESSAGE, request_id),
                503,
                headers={"retry-after": str(RETRY_AFTER_SECONDS)},
            )
        log.error("database error, request %s: %s", request_id, type(exc).__name__, exc_info=exc)
        return json_response({"successful": False, "returnMessage": DATABASE_FAILED.to_wire()})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown route or method: the same envelope as every other error answer."""
        headers = dict(exc.headers) if exc.headers else None
        return json_response(error_body(str(exc.detail), _request_id(request)), exc.status_code, headers)

    # Anything else escapes to ErrorBoundary (innermost middleware), so its answer still gets CORS headers.

    if embedded_crm is not None:
        app.mount("/testcrm", embedded_crm)

    # add_middleware wraps: the last added is the outermost layer.
    app.add_middleware(ErrorBoundary)
    app.add_middleware(QueryGuard)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
        allow_headers=["*"],
        expose_headers=["x-refreshed-jwt-token", "x-request-id"],
    )
    app.add_middleware(RequestContext)
    return app


def _request_id(request: Request) -> str | None:
    request_id: str | None = getattr(request.state, "request_id", None)
    return request_id

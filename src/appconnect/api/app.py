"""The ASGI application: the route table in one edge layer, error mapping and the embedded test CRM."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from appconnect import __version__
from appconnect.api.busy import database_busy
from appconnect.api.failures import (
    DEPENDENCY_DOWN_MESSAGE,
    RETRY_AFTER_SECONDS,
    error_body,
)
from appconnect.api.http import contract_text, json_response
from appconnect.api.metrics import WorkerMetrics, database_pool_stats, run_directory
from appconnect.api.middleware import Edge
from appconnect.api.routes import router
from appconnect.api.session import Caller
from appconnect.connectors.registry import ConnectorRegistry, CrmManifest
from appconnect.flows import oauth
from appconnect.flows.availability import is_dependency_down
from appconnect.flows.errors import DATABASE_FAILED, SESSION_EXPIRED
from appconnect.flows.log_retrier import LogRetrier
from appconnect.flows.reply import ClientError, SessionEnded
from appconnect.flows.services import build_services
from appconnect.flows.session import SessionRevoked
from appconnect.logs import log_access, log_crm_call
from appconnect.outbound import observe
from appconnect.security.redact import install_redaction
from appconnect.settings import Settings
from appconnect.store.locks import LockTimeout
from appconnect.store.sql import DatabaseBusy, DatabaseError

log = logging.getLogger("appconnect")


def _manifest(settings: Settings, registry: ConnectorRegistry) -> CrmManifest:
    """The manifest's answers, built on first request; the operator's overrides file is read now (a broken one
    stops the start)."""
    overrides = None
    if settings.manifest_file is not None:
        overrides = json.loads(settings.manifest_file.read_text(encoding="utf-8"))
    return CrmManifest(registry, server_url=settings.server_url(), version=__version__, overrides=overrides)


def create_app(settings: Settings, registry: ConnectorRegistry | None = None) -> Edge:
    """Build the server. The database schema must exist (`appconnect migrate`; `serve` runs it first)."""
    install_redaction()
    services = build_services(settings, registry)

    embedded_crm = None
    if settings.testcrm_enabled():
        from appconnect.embedded_crm import create_testcrm_app

        exposure = settings.testcrm_exposure_warning()
        if exposure:
            log.warning(exposure)
        admin_token = settings.testcrm_admin_token.get_secret_value()
        if settings.testcrm_fault_injection and not admin_token:
            log.warning(
                "test CRM fault injection is on but APPCONNECT_TESTCRM_ADMIN_TOKEN is unset: "
                "/testcrm/api/_faults refuses every request"
            )
        embedded_crm = create_testcrm_app(
            settings.testcrm_database_url,
            seed_api_key=settings.testcrm_api_key.get_secret_value(),
            fault_injection=settings.testcrm_fault_injection,
            admin_token=admin_token,
            loopback_key_minting=settings.public_url_is_loopback(),
        )

    worker_metrics = None
    if settings.metrics_enabled:
        worker_metrics = WorkerMetrics(run_directory(settings), database_pool_stats(services))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        retrier = LogRetrier(services)
        if settings.log_retrier_enabled:
            retrier.start()
        if worker_metrics is not None:
            worker_metrics.start()
        observe.add_observer(log_crm_call)
        yield
        observe.remove_observer(log_crm_call)
        if worker_metrics is not None:
            await worker_metrics.stop()
        await retrier.stop()
        await services.close()
        if embedded_crm is not None:  # a mounted app's own lifespan never runs
            await embedded_crm.state.testcrm.aclose()

    app = Edge(
        router,
        exception_handlers={
            ClientError: client_error,
            SessionRevoked: session_revoked,
            oauth.OAuthError: oauth_failed,
            LockTimeout: lock_timeout,
            DatabaseBusy: database_busy,
            DatabaseError: database_failed,
            **_sqlalchemy_handlers(),
        },
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        testcrm=embedded_crm,
    )
    app.state.services = services
    app.state.manifest = _manifest(settings, services.registry)
    app.state.metrics = worker_metrics
    if worker_metrics is not None:
        app.observers.append(worker_metrics.observe_request)
    if settings.access_log:
        app.observers.append(log_access)
    return app


# Exception handlers: an exception a route raises becomes the answer here, by the exception's class (the most
# specific registered one wins). Anything else becomes the edge layer's 500/503 envelope.


async def client_error(request: Request, exc: ClientError) -> Response:
    if isinstance(exc, SessionEnded):
        caller: Caller | None = getattr(request.state, "caller", None)
        return contract_text(caller.ended_text() if caller is not None else exc.text, exc.status)
    if exc.as_json:
        return json_response(error_body(exc.text, _request_id(request)), exc.status)
    return contract_text(exc.text, exc.status)


async def session_revoked(_request: Request, _exc: SessionRevoked) -> Response:
    return json_response(
        {
            "successful": False,
            "returnMessage": SESSION_EXPIRED.to_wire(),
            "errorCode": "CRM_SESSION_REVOKED",
        },
        401,
    )


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


def _sqlalchemy_handlers() -> dict[type[BaseException], Any]:
    """The embedded test CRM (and only it) runs on SQLAlchemy: map its errors too when it is loaded."""
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None:
        return {}
    return {errors.TimeoutError: database_busy, errors.SQLAlchemyError: database_failed}


async def database_failed(request: Request, exc: Exception) -> Response:
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


def _request_id(request: Request) -> str | None:
    request_id: str | None = getattr(request.state, "request_id", None)
    return request_id

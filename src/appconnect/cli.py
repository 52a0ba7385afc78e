"""`appconnect serve` and `appconnect migrate`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from appconnect.settings import Settings, get_settings

if TYPE_CHECKING:
    from appconnect.api.middleware import Edge


class CommandFailed(Exception):
    """Printed as one `appconnect: <message>` line on stderr; the command exits with status 2."""


def app_factory() -> Edge:
    """Entry point for uvicorn workers: each worker builds its app from the environment."""
    from appconnect.api.app import create_app

    return create_app(get_settings())


def _migrate(settings: Settings) -> None:
    from appconnect.store.migrate import MigrationFailed, upgrade_or_explain

    try:
        upgrade_or_explain(settings.database_url)
    except MigrationFailed as exc:
        raise CommandFailed(str(exc)) from None


def _load_settings() -> Settings:
    """Settings from the environment, `.env` and flags; a bad value is one clear line, not a traceback."""
    get_settings.cache_clear()
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"APPCONNECT_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise CommandFailed(f"invalid setting: {problems}") from None


def _check_connection_budget(settings: Settings) -> None:
    """Print the most database connections this machine opens; refuse more than the configured maximum."""
    from appconnect.store.db import is_sqlite

    total = settings.database_connections_total()
    budget = (
        f"{settings.workers} worker(s) x ({settings.database_pool_size} pool + "
        f"{settings.database_max_overflow} overflow) = {total} database connections at most"
    )
    if is_sqlite(settings.database_url):
        return
    if total > settings.database_max_connections:
        raise CommandFailed(
            f"{budget}, above APPCONNECT_DATABASE_MAX_CONNECTIONS={settings.database_max_connections}: "
            "lower APPCONNECT_WORKERS, APPCONNECT_DATABASE_POOL_SIZE or APPCONNECT_DATABASE_MAX_OVERFLOW, "
            "or raise the maximum if PostgreSQL's max_connections allows it"
        )
    print(f"PostgreSQL: {budget} (maximum {settings.database_max_connections})", flush=True)


def _serve(args: argparse.Namespace) -> int:
    # Workers are separate processes: hand them the command-line choices through the environment.
    overrides = {
        "APPCONNECT_HOST": args.host,
        "APPCONNECT_PORT": args.port,
        "APPCONNECT_WORKERS": args.workers,
        "APPCONNECT_DATABASE_URL": args.database_url,
        "APPCONNECT_MANIFEST_FILE": args.manifest,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)
    settings = _load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    _check_connection_budget(settings)
    exposure = settings.testcrm_exposure_warning()
    if exposure:
        print(exposure, file=sys.stderr, flush=True)
    if settings.auto_migrate:
        _migrate(settings)
    from appconnect.security.keys import load_keys

    load_keys(settings)  # create any generated keys once, before the workers read them
    import uvicorn

    platform = "testcrm" if settings.testcrm_enabled() else "<platform>"
    print(
        f"App Connect server on {settings.server_url()}  manifest: "
        f"{settings.server_url()}/crmManifest?platformName={platform}",
        flush=True,
    )
    uvicorn.run(
        "appconnect.cli:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        access_log=False,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        proxy_headers=True,
        # SIGTERM: stop accepting, let in-flight requests finish (a CRM call is bounded by its timeouts)
        timeout_graceful_shutdown=int(settings.crm_read_timeout * 2 + settings.crm_connect_timeout + 10),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appconnect", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server (creates/upgrades the schema first)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 6066)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--database-url", help="SQLAlchemy URL (default SQLite file ./appconnect.sqlite3)")
    serve.add_argument("--manifest", help="JSON file merged over the generated manifest")
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--database-url", help="SQLAlchemy URL (default from settings)")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.database_url:
            os.environ["APPCONNECT_DATABASE_URL"] = args.database_url
        _migrate(_load_settings())
    except CommandFailed as exc:
        print(f"appconnect: {exc}", file=sys.stderr, flush=True)
        return 2
    print("schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

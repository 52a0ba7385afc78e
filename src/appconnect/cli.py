"""`appconnect serve` and `appconnect migrate`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from fastapi import FastAPI

from appconnect.settings import Settings, get_settings


def app_factory() -> FastAPI:
    """Entry point for uvicorn workers: each worker builds its app from the environment."""
    from appconnect.api.app import create_app

    return create_app(get_settings())


def _migrate(settings: Settings) -> None:
    from appconnect.store.migrate import upgrade

    upgrade(settings.database_url)


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
    get_settings.cache_clear()
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if settings.auto_migrate:
        _migrate(settings)
    from appconnect.security.keys import load_keys

    load_keys(settings)  # create any generated keys once, before the workers read them
    import uvicorn

    print(
        f"App Connect server on {settings.server_url()}  manifest: "
        f"{settings.server_url()}/crmManifest?platformName=testcrm",
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
    if args.command == "serve":
        return _serve(args)
    if args.database_url:
        os.environ["APPCONNECT_DATABASE_URL"] = args.database_url
        get_settings.cache_clear()
    _migrate(get_settings())
    print("schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

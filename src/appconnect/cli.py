"""`appconnect serve`, `appconnect migrate` and `appconnect connector check`.

Every flag overrides the environment variable its help names.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from appconnect import __version__, logs
from appconnect.server.drain import graceful_timeout
from appconnect.settings import Settings, get_settings

EPILOG = (
    "Settings come from environment variables (and a .env file in the working folder); a flag overrides the "
    "variable its help names. The full list: the README's Configuration section."
)


class CommandFailed(Exception):
    """Printed as one `appconnect: <message>` line on stderr; the command exits with status 2."""


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
    total = settings.database_connections_total()
    budget = (
        f"{settings.workers} worker(s) x ({settings.database_pool_size} pool + "
        f"{settings.database_max_overflow} overflow) = {total} database connections at most"
    )
    if settings.database_url.startswith("sqlite"):
        return
    if total > settings.database_max_connections:
        raise CommandFailed(
            f"{budget}, above APPCONNECT_DATABASE_MAX_CONNECTIONS={settings.database_max_connections}: "
            "lower APPCONNECT_WORKERS, APPCONNECT_DATABASE_POOL_SIZE or APPCONNECT_DATABASE_MAX_OVERFLOW, "
            "or raise the maximum if PostgreSQL's max_connections allows it"
        )
    print(f"PostgreSQL: {budget} (maximum {settings.database_max_connections})", flush=True)


def _serve(args: argparse.Namespace) -> int:
    """Validate, then serve: in this process with one worker, else under a thin supervisor (`server/`)."""
    # Workers are separate processes: hand them the command-line choices through the environment.
    overrides = {
        "APPCONNECT_HOST": args.host,
        "APPCONNECT_PORT": args.port,
        "APPCONNECT_WORKERS": args.workers,
        "APPCONNECT_DATABASE_URL": args.database_url,
        "APPCONNECT_MANIFEST_FILE": args.manifest,
        "APPCONNECT_LOG_LEVEL": args.log_level,
        "APPCONNECT_LOG_FORMAT": args.log_format,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)
    settings = _load_settings()
    logs.configure(settings.log_level, settings.log_format)
    _check_connection_budget(settings)
    exposure = settings.testcrm_exposure_warning()
    if exposure and settings.log_format == "json":
        logging.getLogger("appconnect").warning(exposure)  # stderr stays one JSON object per line
    elif exposure:
        print(exposure, file=sys.stderr, flush=True)
    platform = "testcrm" if settings.testcrm_enabled() else "<platform>"
    print(
        f"App Connect server on {settings.server_url()}  manifest: "
        f"{settings.server_url()}/crmManifest?platformName={platform}",
        flush=True,
    )
    from appconnect.server import preflight

    preflight_pid = preflight.start(settings)
    # The slow part of a start, once for all workers (they are forked from here), while the preflight runs.
    from appconnect.server import worker

    if settings.workers == 1:
        return _serve_in_this_process(settings, preflight_pid)
    import threading

    # forking is safe only without threads (none is started by importing the app); else the supervisor spawns
    forked = worker.fork(settings.workers) if threading.active_count() == 1 else []
    arguments = [
        "--workers", str(settings.workers),
        "--host", settings.host,
        "--port", str(settings.port),
        "--graceful-timeout", str(graceful_timeout(settings)),
        "--log-level", settings.log_level,
        "--log-format", settings.log_format,
        "--preflight-pid", str(preflight_pid),
    ]  # fmt: skip
    for pid, gate in forked:
        os.set_inheritable(gate, True)
        arguments += ["--worker", f"{pid}:{gate}"]
    # the supervisor takes this pid and the children; the application, pydantic and the rest are left behind
    os.execv(sys.executable, [sys.executable, "-m", "appconnect.server.supervisor", *arguments])  # noqa: S606


def _serve_in_this_process(settings: Settings, preflight_pid: int) -> int:
    """One worker: this process serves, once the preflight (schema, keys) is done."""
    status = os.waitstatus_to_exitcode(os.waitpid(preflight_pid, 0)[1])
    if status != 0:
        return status  # the preflight printed its one line
    from appconnect.api.app import create_app
    from appconnect.server import worker
    from appconnect.server.sockets import bound_socket

    try:
        sock = bound_socket(settings.host, settings.port, reuse_port=False)
    except OSError as exc:
        raise CommandFailed(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    worker.run(create_app(settings), settings, sock)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appconnect", description=__doc__, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"appconnect {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the HTTP server (creates/upgrades the schema first)", epilog=EPILOG
    )
    serve.add_argument("--host", help="bind address (default 127.0.0.1) [env APPCONNECT_HOST]")
    serve.add_argument("--port", type=int, help="port (default 6066) [env APPCONNECT_PORT]")
    serve.add_argument("--workers", type=int, help="worker processes (default 1) [env APPCONNECT_WORKERS]")
    serve.add_argument(
        "--database-url",
        help="database URL, sqlite:///FILE or postgresql://USER@HOST/DB (default SQLite file "
        "./appconnect.sqlite3) [env APPCONNECT_DATABASE_URL or DATABASE_URL]",
    )
    serve.add_argument(
        "--manifest", help="JSON file merged over the generated manifest [env APPCONNECT_MANIFEST_FILE]"
    )
    _log_flags(serve)
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema", epilog=EPILOG)
    migrate.add_argument(
        "--database-url",
        help="database URL (default from settings) [env APPCONNECT_DATABASE_URL or DATABASE_URL]",
    )
    _log_flags(migrate)
    connector = commands.add_parser("connector", help="declarative connector tools", epilog=EPILOG)
    tools = connector.add_subparsers(dest="tool", required=True)
    check = tools.add_parser(
        "check",
        help="validate a declarative connector configuration; with a test account, log in, look up and log a call",
    )
    check.add_argument("file", help="the configuration (JSON)")
    check.add_argument(
        "--api-key",
        help="a test account's API key (an access token for an OAuth configuration): log in with it",
    )
    check.add_argument(
        "--phone", help="an E.164 number of a test contact: look it up and log a call against it"
    )
    check.add_argument("--base-url", help="send the requests here instead of requestDefaults.baseUrl")
    return parser


def _connector_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from appconnect.connectors.declarative.check import check

    return check(
        Path(args.file),
        api_key=args.api_key or os.environ.get("APPCONNECT_CHECK_API_KEY"),
        phone=args.phone,
        base_url=args.base_url,
        out=lambda line: print(line, flush=True),
    )


def _log_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--log-level", choices=logs.LEVELS, help="log level (default info) [env APPCONNECT_LOG_LEVEL]"
    )
    command.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="text lines, or one JSON object per line (default text) [env APPCONNECT_LOG_FORMAT]",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "connector":
            return _connector_check(args)
        for key, value in (
            ("APPCONNECT_DATABASE_URL", args.database_url),
            ("APPCONNECT_LOG_LEVEL", args.log_level),
            ("APPCONNECT_LOG_FORMAT", args.log_format),
        ):
            if value:
                os.environ[key] = value
        settings = _load_settings()
        logs.configure(settings.log_level, settings.log_format)
        _migrate(settings)
    except CommandFailed as exc:
        print(f"appconnect: {exc}", file=sys.stderr, flush=True)
        return 2
    print("schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What runs once before any worker serves: the schema upgrade (only when needed) and the server keys.

`serve` forks it off as a short-lived process while the workers import the application, so Alembic and its
imports never stay in a long-lived process. Exit status 2 with one `appconnect: ...` line when the database
cannot be migrated.
"""

from __future__ import annotations

import logging
import os
import sys

from appconnect.server.schema_version import schema_is_current
from appconnect.settings import Settings
from appconnect.store.fresh_schema import create_if_empty

log = logging.getLogger("appconnect.preflight")


class PreflightFailed(Exception):
    """One line for the operator; the server does not start."""


def prepare(settings: Settings) -> None:
    """Refuse a proxy setting the outbound client cannot use, bring the schema to head if it is not there yet,
    then create any generated keys once."""
    from appconnect.outbound.client import ProxyConfigError, check_proxy_environment

    try:
        check_proxy_environment()
    except ProxyConfigError as exc:
        raise PreflightFailed(str(exc)) from None
    if (
        settings.auto_migrate
        and not schema_is_current(settings.database_url)
        and not create_if_empty(settings.database_url)  # a first start: no Alembic, no SQLAlchemy
    ):
        from appconnect.store.migrate import MigrationFailed, upgrade_or_explain

        try:
            upgrade_or_explain(settings.database_url)
        except MigrationFailed as exc:
            raise PreflightFailed(str(exc)) from None
    from appconnect.security.keys import load_keys

    load_keys(settings)  # before the workers read them: one key file, not one per worker


def start(settings: Settings) -> int:
    """Fork the preflight off this process (its settings and pydantic already imported); the child's pid.

    The child exits with 0, or 2 after printing one `appconnect: ...` line. The caller waits for it with
    `os.waitpid` (after `exec`, the supervisor still can: the child stays its child).
    """
    # SQLAlchemy and Alembic are imported in the child only, and only when it has to migrate: the server's
    # own processes never load them (store/sql.py talks to the drivers directly).
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid != 0:
        return pid
    status = 1
    try:
        prepare(settings)
        status = 0
    except PreflightFailed as exc:
        print(f"appconnect: {exc}", file=sys.stderr)
        status = 2
    except BaseException:
        log.exception("the preflight failed")  # in the configured format, redacted (logs.py)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

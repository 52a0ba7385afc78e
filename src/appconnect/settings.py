"""Server settings from environment variables and a `.env` file (prefix `APPCONNECT_`)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from appconnect.store.urls import connect_options


class Settings(BaseSettings):
    """Every knob of the server; the defaults run everything on one machine with no set-up."""

    model_config = SettingsConfigDict(env_prefix="APPCONNECT_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=6066, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    public_url: str = Field(
        default="", description="URL the client reaches this server at; default http://host:port"
    )
    database_url: str = Field(
        default="sqlite:///./appconnect.sqlite3",
        validation_alias=AliasChoices("APPCONNECT_DATABASE_URL", "DATABASE_URL"),
    )
    database_pool_size: int = Field(default=5, ge=1, description="connections each worker keeps open")
    database_max_overflow: int = Field(default=5, ge=0, description="extra connections a worker may open")
    database_pool_timeout: float = Field(
        default=10.0, gt=0, description="seconds a request waits for a free connection before 'busy, retry'"
    )
    database_max_connections: int = Field(
        default=50, ge=1, description="`serve` refuses workers x (pool + overflow) above this (PostgreSQL)"
    )
    # PostgreSQL connections (store/sql.py); the database URL's `?application_name=`, `statement_timeout=`
    # and `statement_cache_size=` win over these
    database_pool_idle_seconds: float = Field(
        default=60.0, gt=0, description="a connection beyond the pool size idle this long is closed"
    )
    database_pool_recycle_seconds: float = Field(
        default=1800.0, ge=0, description="connections are replaced after about this long (0: never)"
    )
    database_application_name: str = Field(
        default="appconnect", description="application_name of the server's PostgreSQL connections"
    )
    database_statement_timeout_ms: int = Field(
        default=0, ge=0, description="PostgreSQL cancels longer statements (0: the server's own setting)"
    )
    database_statement_cache_size: int = Field(
        default=100, ge=0, description="prepared statements kept per connection; 0 behind PgBouncer"
    )
    auto_migrate: bool = True
    user_cache: bool | None = Field(
        default=None,
        description=(
            "workers keep recently used users (store/user_cache.py). None (auto): on with SQLite, where a "
            "change is seen by the very next request; off with PostgreSQL, where other machines learn of a "
            "change (a logout) by LISTEN/NOTIFY, milliseconds later"
        ),
    )
    redis_url: str = Field(default="", validation_alias=AliasChoices("APPCONNECT_REDIS_URL", "REDIS_URL"))

    # secrets are SecretStr: a repr, a validation error or a log of the settings shows `**********`
    jwt_secret: SecretStr = SecretStr("")
    encryption_keys: SecretStr = Field(
        default=SecretStr(""), description="comma-separated Fernet keys, newest first"
    )
    hash_key: SecretStr = SecretStr("")
    key_file: Path = Path(".appconnect-keys.json")

    manifest_file: Path | None = None
    embedded_testcrm: bool | None = Field(
        default=None, description="None (auto): on only when the public URL is a loopback address"
    )
    testcrm_database_url: str = "sqlite+aiosqlite:///./testcrm.sqlite3"
    testcrm_api_key: SecretStr = SecretStr("testcrm-demo-key")
    testcrm_fault_injection: bool = False
    testcrm_admin_token: SecretStr = Field(
        default=SecretStr(""), description="bearer token for the test CRM's key minting and fault injection"
    )

    # RingCentral's platform API: who an admin is (security/ringcentral.py); the fake platform in tests
    ringcentral_server: str = Field(
        default="https://platform.ringcentral.com", description="RingCentral platform API base URL"
    )
    # The server's own RingCentral app: an admin's authorization code is exchanged with it (flows/admin_ringcentral.py)
    ringcentral_client_id: str = ""
    ringcentral_client_secret: SecretStr = SecretStr("")
    crm_connect_timeout: float = 5.0
    crm_read_timeout: float = 20.0
    max_body_bytes: int = 2 * 1024 * 1024
    # What one connection may cost a worker before its request head is complete (server/http_protocol.py)
    max_header_line_bytes: int = Field(
        default=8192, ge=256, description="a longer request line gets 414, a longer header 431"
    )
    max_headers: int = Field(default=100, ge=1, description="more request headers get 431")
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="a larger request head gets 431")
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a request head not complete this long after it began gets 408"
    )
    max_connections_per_worker: int = Field(
        default=1000, ge=1, description="connections per worker; a new one beyond them gets 503 and is closed"
    )
    contact_dedupe_seconds: int = 600
    contact_cache_seconds: int = 86400
    lock_wait_seconds: float = 25.0
    # logs the CRM could not take are kept and delivered by a background retrier (one at a time across workers)
    log_retry_interval_seconds: float = 30.0
    log_retry_base_seconds: float = 30.0
    log_retry_max_attempts: int = 8
    log_retrier_enabled: bool = True
    #: a `pending` log reservation older than this was abandoned (0: derived from the CRM timeouts)
    log_stale_seconds: float = 0.0
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text lines, or one JSON object per line (logs.py)"
    )
    access_log: bool = Field(
        default=False,
        description="one log line per answered request (off by default: about 0.1 ms of CPU per request)",
    )
    # Prometheus `/metrics` (api/metrics.py): on unless turned off; without a token only loopback clients read it
    metrics_enabled: bool = True
    metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description="bearer token a scraper must send to read /metrics from a non-loopback address",
    )

    # Outbound CRM calls: retries (outbound/client.py) and the per-account limiter (store/rate_limits.py)
    crm_retry_attempts: int = Field(
        default=3, ge=1, le=10, description="tries per CRM call, the first included"
    )
    crm_retry_base_delay: float = Field(
        default=0.25, ge=0, description="first backoff step, doubled per retry"
    )
    crm_retry_budget_seconds: float = Field(
        default=6.0, ge=0, description="total time one CRM call may spend waiting between tries"
    )
    crm_retry_after_cap_seconds: float = Field(
        default=5.0, ge=0, description="a longer Retry-After is not waited for: the 429 is reported"
    )
    crm_call_deadline_seconds: float = Field(
        default=25.0, gt=0, description="no new try starts past this (the client gives up at 30 s)"
    )
    crm_max_connections_per_host: int = Field(
        default=32,
        ge=1,
        le=1000,
        description="open connections per worker to one CRM host (calls beyond wait)",
    )
    crm_keepalive_seconds: float = Field(
        default=15.0, ge=0, description="idle seconds a CRM connection is kept when the CRM does not say"
    )
    crm_rate_limit: str = Field(
        default="",
        description="empty: follow each CRM's documented limits and answers; 'off'; a fixed 'N/S' added for "
        "every platform; or 'pipedrive=N/S,testcrm=off'",
    )
    crm_rate_limit_max_wait_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how long a call waits for the CRM's window before failing as 429 (as long as a Retry-After)",
    )

    # Connectors written as configuration (connectors/declarative/, docs/connectors/declarative.md)
    declarative_connectors: str = Field(
        default="",
        description="comma-separated JSON files or folders of declarative (proxy) connector configurations, each "
        "offered as the platform its meta.name names; validated at start",
    )

    # Message attachments (MMS images, faxes) a connector copies into the CRM: downloaded from these hosts only
    rc_media_hosts: str = Field(
        default="media.ringcentral.com,media.devtest.ringcentral.com",
        description="comma-separated hosts (https) or origins (`scheme://host:port`) attachments are downloaded "
        "from; any other URL a request names is refused",
    )
    rc_media_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="a larger attachment is linked, not copied into the CRM"
    )

    @field_validator("database_url")
    @classmethod
    def _url_options_are_numbers(cls, value: str) -> str:
        """`?statement_timeout=` and `?statement_cache_size=` in the URL are refused here, not in each worker."""
        connect_options(value)
        return value

    @field_validator("declarative_connectors")
    @classmethod
    def _declarative_configs_valid(cls, value: str) -> str:
        """A configuration with a mistake stops the start with one line naming the file and the path in it."""
        if value.strip():
            from appconnect.connectors.declarative import ConfigError, load_all

            try:
                load_all(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("embedded_testcrm", mode="before")
    @classmethod
    def _auto_is_none(cls, value: Any) -> Any:
        """`auto` (or empty) means: decide from the public URL."""
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
            return None
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        """`INFO` and `info` are the same level."""
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("ringcentral_server")
    @classmethod
    def _http_base_url(cls, value: str) -> str:
        """A typo here would refuse every admin at run time: refuse it at start instead."""
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://platform.ringcentral.com")
        return value.strip().rstrip("/")

    def server_url(self) -> str:
        """The URL this server is reached at, as written into the manifest."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def public_url_is_loopback(self) -> bool:
        """Only this machine can reach the server at its public URL."""
        return is_loopback_host(urlsplit(self.server_url()).hostname)

    def testcrm_enabled(self) -> bool:
        """The embedded test CRM is served: explicitly, or by default only on a loopback public URL."""
        if self.embedded_testcrm is None:
            return self.public_url_is_loopback()
        return self.embedded_testcrm

    def testcrm_exposure_warning(self) -> str | None:
        """The loud start-up warning for a test CRM served where other machines can reach it."""
        if not self.testcrm_enabled() or self.public_url_is_loopback():
            return None
        return (
            f"WARNING: the embedded test CRM is ON at a non-loopback public URL ({self.server_url()}/testcrm): "
            "anyone who can reach this server can read every test-CRM contact and note and log in with its "
            "seeded API key. Unset APPCONNECT_EMBEDDED_TESTCRM (or set it to false) unless this is a demo."
        )

    def database_connections_per_worker(self) -> int:
        return self.database_pool_size + self.database_max_overflow

    def database_connections_total(self) -> int:
        """The most connections all workers of this machine may open to the database."""
        return self.workers * self.database_connections_per_worker()


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can be on the other end."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

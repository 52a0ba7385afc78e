"""Server settings from environment variables and a `.env` file (prefix `APPCONNECT_`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the server; the defaults run everything on one machine with no set-up."""

    model_config = SettingsConfigDict(env_prefix="APPCONNECT_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 6066
    workers: int = 1
    public_url: str = Field(
        default="", description="URL the client reaches this server at; default http://host:port"
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///./appconnect.sqlite3",
        validation_alias=AliasChoices("APPCONNECT_DATABASE_URL", "DATABASE_URL"),
    )
    database_pool_size: int = 20
    auto_migrate: bool = True
    redis_url: str = Field(default="", validation_alias=AliasChoices("APPCONNECT_REDIS_URL", "REDIS_URL"))

    jwt_secret: str = ""
    encryption_keys: str = Field(default="", description="comma-separated Fernet keys, newest first")
    hash_key: str = ""
    key_file: Path = Path(".appconnect-keys.json")

    manifest_file: Path | None = None
    embedded_testcrm: bool = True
    testcrm_database_url: str = "sqlite+aiosqlite:///./testcrm.sqlite3"
    testcrm_api_key: str = "testcrm-demo-key"
    testcrm_fault_injection: bool = False

    crm_connect_timeout: float = 5.0
    crm_read_timeout: float = 20.0
    max_body_bytes: int = 2 * 1024 * 1024
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
    log_level: str = "info"

    def server_url(self) -> str:
        """The URL this server is reached at, as written into the manifest."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

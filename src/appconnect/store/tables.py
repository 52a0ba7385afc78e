"""The database schema (SQLAlchemy Core). Alembic migrations under `migrations/` create it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

metadata = MetaData()


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


users = Table(
    "users",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("platform", String(64), nullable=False),
    Column("hostname", String(512), nullable=False, server_default=""),
    Column("rc_account_id", String(255)),
    Column("hashed_rc_extension_id", String(255)),
    Column("timezone_name", String(128)),
    Column("timezone_offset", String(32)),
    Column("access_token", Text),  # encrypted
    Column("refresh_token", Text),  # encrypted
    Column("token_expiry", DateTime(timezone=True)),
    # set when the CRM refused the refresh token (invalid_grant): answer 401 without asking it again
    Column("session_revoked_at", DateTime(timezone=True)),
    # set at logout: session JWTs issued before it are refused (checked on every authenticated request)
    Column("tokens_valid_after", DateTime(timezone=True)),
    Column("platform_additional_info", JSON, nullable=False, default=dict),
    Column("user_settings", JSON, nullable=False, default=dict),
    *_timestamps(),
)

#: One row per logged call and extension identity. The row is reserved (status `pending`) before the CRM is
#: called, so concurrent or repeated `POST /callLog` for one session create a single CRM activity.
call_logs = Table(
    "call_logs",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(255), nullable=False),
    Column("extension_number", String(64), nullable=False, server_default=""),
    Column("hashed_extension_id", String(255), nullable=False, server_default=""),
    Column("call_id", String(255), nullable=False, server_default=""),
    Column("platform", String(64), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("contact_id", String(255)),
    Column("third_party_log_id", String(255)),
    Column("status", String(16), nullable=False, server_default="done"),
    *_timestamps(),
    UniqueConstraint("session_id", "extension_number", "hashed_extension_id", name="uq_call_logs_identity"),
)

message_logs = Table(
    "message_logs",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("platform", String(64), nullable=False),
    Column("conversation_id", String(255)),
    Column("conversation_log_id", String(255)),
    Column("third_party_log_id", String(255)),
    Column("user_id", String(255), nullable=False),
    *_timestamps(),
    Index("ix_message_logs_conversation_log_id", "conversation_log_id"),
)

#: Account-level cache: `contact-<E164>` -> the matched contacts, shared by the users of one account.
account_data = Table(
    "account_data",
    metadata,
    Column("account_id", String(255), primary_key=True),
    Column("platform", String(64), primary_key=True),
    Column("data_key", String(255), primary_key=True),
    Column("data", JSON, nullable=False),
    *_timestamps(),
)

#: Placeholder contacts recently created per account and number: the answer replayed to a duplicate request.
created_contacts = Table(
    "created_contacts",
    metadata,
    Column("account_id", String(255), primary_key=True),
    Column("platform", String(64), primary_key=True),
    Column("phone_number", String(32), primary_key=True),
    Column("contact", JSON, nullable=False),
    *_timestamps(),
)

#: Cross-process mutual exclusion when no Redis is configured (token refresh, contact creation, conversations).
locks = Table(
    "locks",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

admin_configs = Table(
    "admin_configs",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("user_settings", JSON, nullable=False, default=dict),
    *_timestamps(),
)

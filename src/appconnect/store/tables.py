"""The database schema (SQLAlchemy Core). Alembic migrations under `migrations/` create it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()


def _timestamps() -> list[Column[object]]:
    # the same default expression the migrations wrote, so a database created from these definitions is
    # identical to one the migrations built (tests/store/test_migrations.py)
    return [
        Column(
            "created_at", DateTime(timezone=True), nullable=False, server_default=text("(CURRENT_TIMESTAMP)")
        ),
        Column(
            "updated_at", DateTime(timezone=True), nullable=False, server_default=text("(CURRENT_TIMESTAMP)")
        ),
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
    # the tenant every stored log and cache row of this user belongs to, from what the CRM reported at login
    Column("account_scope", String(512)),
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
    # tenant: a session id is only ever seen within the account scope that logged it
    Column("scope", String(512), nullable=False, server_default=""),
    # the request body (encrypted) of a log the CRM has not taken yet: the retrier delivers it later
    Column("payload", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    UniqueConstraint(
        "scope", "session_id", "extension_number", "hashed_extension_id", name="uq_call_logs_scope_identity"
    ),
    Index("ix_call_logs_status_next_attempt", "status", "next_attempt_at"),
)

#: One row per logged message, per tenant. `status` `unknown`: the CRM create timed out after it was sent.
message_logs = Table(
    "message_logs",
    metadata,
    Column("scope", String(512), primary_key=True),
    Column("id", String(255), primary_key=True),
    Column("platform", String(64), nullable=False),
    Column("conversation_id", String(255)),
    Column("conversation_log_id", String(255)),
    Column("third_party_log_id", String(255)),
    Column("user_id", String(255), nullable=False),
    Column("status", String(16), nullable=False, server_default="done"),
    *_timestamps(),
    Index("ix_message_logs_scope_conversation_log_id", "scope", "conversation_log_id"),
)

#: Message-log requests the CRM could not take: the encrypted body, replayed by the retrier (idempotent per
#: message id, so a client retry that got there first makes the replay a no-op).
message_outbox = Table(
    "message_outbox",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(512), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("platform", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    *_timestamps(),
    Index("ix_message_outbox_status_next_attempt", "status", "next_attempt_at"),
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

#: Notes typed during a call, per CRM account (`scope`) and call session, for server-side logging to merge;
#: encrypted, and gone after `expires_at` (store/admin.py).
call_note_cache = Table(
    "call_note_cache",
    metadata,
    Column("scope", String(512), primary_key=True),
    Column("session_id", String(255), primary_key=True),
    Column("note", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_call_note_cache_expires_at", "expires_at"),
)

#: The admin's settings for every user of one RingCentral account; `id` is the account id's keyed hash.
admin_configs = Table(
    "admin_configs",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("user_settings", JSON, nullable=False, default=dict),
    *_timestamps(),
)

#: An admin's RingCentral OAuth tokens and server-side logging settings, one row per RingCentral account (`id`,
#: the account id's keyed hash); tokens and settings encrypted (store/admin.py).
admin_ringcentral = Table(
    "admin_ringcentral",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("access_token", Text),
    Column("refresh_token", Text),
    Column("token_expiry", DateTime(timezone=True)),
    Column("server_logging", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: What an admin stores once for every user of a RingCentral account (`account_hash`, the account id's keyed hash):
#: managed CRM login fields ("org", "user:<extension>") and OAuth apps ("oauth", "oauth-pending"). `data` is one
#: Fernet token of the JSON values: nothing in it is readable without the server's encryption keys.
managed_auth = Table(
    "managed_auth",
    metadata,
    Column("account_hash", String(64), primary_key=True),
    Column("platform", String(64), primary_key=True),
    Column("data_key", String(128), primary_key=True),
    Column("data", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    *_timestamps(),
)

#: A RingCentral account's extensions mapped to the users of its admin's CRM account (`crm_scope`), for
#: server-side logging to log each call under the right CRM user (store/user_mappings.py); `rc_account` is the
#: RingCentral account id's keyed hash. `mappings`: one entry per CRM user, auto-matched or the admin's choice.
user_mappings = Table(
    "user_mappings",
    metadata,
    Column("rc_account", String(255), primary_key=True),
    Column("crm_scope", String(512), nullable=False),
    Column("platform", String(64), nullable=False),
    Column("mappings", JSON, nullable=False),
    *_timestamps(),
    Index("ix_user_mappings_crm_scope", "crm_scope", "platform"),
)

#: The shared rate limiter when no Redis is configured (store/rate_limits.py): one row per limit key
#: (`<platform>:<rule>:<scope>`), `tat` the end of its back-off after a CRM's 429 (epoch seconds); the row also
#: serialises the key's grants. (`grant_id` is no longer used.)
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("limit_key", String(255), primary_key=True),
    Column("tat", Float, nullable=False),
    Column("grant_id", String(32), nullable=False, server_default=""),
)

#: The sliding-window log of those keys: one row per grant (`calls` calls at `granted_at`, epoch seconds),
#: dropped once it has left the window.
rate_limit_grants = Table(
    "rate_limit_grants",
    metadata,
    Column("limit_key", String(255), primary_key=True),
    Column("grant_id", String(32), primary_key=True),
    Column("granted_at", Float, nullable=False),
    Column("calls", Integer, nullable=False),
    Index("ix_rate_limit_grants_key_time", "limit_key", "granted_at"),
)

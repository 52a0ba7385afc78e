"""Tables of the embedded test CRM: its own small database, separate from the connector server's."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("timezone_name", sa.String(64), nullable=False),
    sa.Column("timezone_offset", sa.String(8), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),  # sha256 hex: the key itself is never stored
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("created_at", sa.String(40), nullable=False),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("company", sa.String(300), nullable=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

contact_phones = sa.Table(
    "contact_phones",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False, index=True),
    sa.Column("label", sa.String(60), nullable=True),
    sa.Column("number", sa.String(40), nullable=False),
    # digits only: an indexed equality lookup, whatever formatting the number was stored with
    sa.Column("digits", sa.String(20), nullable=False, index=True),
)

activities = sa.Table(
    "activities",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("subject", sa.String(500), nullable=False),
    sa.Column("body", sa.Text, nullable=False, default=""),
    sa.Column("direction", sa.String(20), nullable=True),
    sa.Column("duration_seconds", sa.Integer, nullable=True),
    sa.Column("started_at", sa.String(40), nullable=True),
    sa.Column("disposition", sa.JSON(none_as_null=True), nullable=True),
    # only data: a create sent twice makes two activities, as in most real CRMs, so a test sees every send
    sa.Column("external_id", sa.String(255), nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    # the account (API key's user) the activity belongs to; NULL only in a database from before accounts, where
    # the start-up upgrade fills it in from the contact
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
    sa.Index("ix_activities_owner_external_id", "owner_id", "external_id"),
)

#: every create (POST) the API received, answered or not: tests count what a client sent, not what was kept
received = sa.Table(
    "received",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner_id", sa.Integer, nullable=True),  # None: no valid API key
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("path", sa.String(200), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=True, index=True),
    sa.Column("phone_digits", sa.String(20), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)

faults = sa.Table(
    "faults",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("retry_after", sa.Float, nullable=True),
    sa.Column("delay_seconds", sa.Float, nullable=True),
    sa.Column("remaining", sa.Integer, nullable=False),
    sa.Column("method", sa.String(10), nullable=True),
    sa.Column("path_prefix", sa.String(200), nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    #: True: the request is carried out first, then the delay and/or status (the answer to done work is lost)
    sa.Column("after_work", sa.Boolean, nullable=False, server_default=sa.false()),
)

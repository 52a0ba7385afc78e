"""tenant scope on every log row, per-scope unique keys, the log outbox

Revision ID: 0003_tenant_scope_outbox
Revises: 0002
Create Date: 2026-12-01

Rows logged before this revision belonged to no scope; they get `legacy:<user id>` so they stay with the user
who logged them and never match another tenant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_tenant_scope_outbox"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.add_column("users", sa.Column("account_scope", sa.String(length=512), nullable=True))

    with op.batch_alter_table("call_logs") as batch:
        batch.add_column(sa.Column("scope", sa.String(length=512), server_default="", nullable=False))
        batch.add_column(sa.Column("payload", sa.Text(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint("uq_call_logs_identity", type_="unique")
    op.execute("UPDATE call_logs SET scope = 'legacy:' || user_id")
    with op.batch_alter_table("call_logs") as batch:
        batch.create_unique_constraint(
            "uq_call_logs_scope_identity", ["scope", "session_id", "extension_number", "hashed_extension_id"]
        )
        batch.create_index("ix_call_logs_status_next_attempt", ["status", "next_attempt_at"])

    # message_logs changes its primary key: rebuild it (portable across SQLite and PostgreSQL)
    op.drop_index("ix_message_logs_conversation_log_id", table_name="message_logs")
    op.rename_table("message_logs", "message_logs_unscoped")
    op.create_table(
        "message_logs",
        sa.Column("scope", sa.String(length=512), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=255), nullable=True),
        sa.Column("conversation_log_id", sa.String(length=255), nullable=True),
        sa.Column("third_party_log_id", sa.String(length=255), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="done", nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("scope", "id"),
    )
    op.execute(
        "INSERT INTO message_logs (scope, id, platform, conversation_id, conversation_log_id, third_party_log_id,"
        " user_id, status, created_at, updated_at)"
        " SELECT 'legacy:' || user_id, id, platform, conversation_id, conversation_log_id, third_party_log_id,"
        " user_id, 'done', created_at, updated_at FROM message_logs_unscoped"
    )
    op.drop_table("message_logs_unscoped")
    op.create_index(
        "ix_message_logs_scope_conversation_log_id", "message_logs", ["scope", "conversation_log_id"]
    )

    op.create_table(
        "message_outbox",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=512), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_message_outbox_status_next_attempt", "message_outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_message_outbox_status_next_attempt", table_name="message_outbox")
    op.drop_table("message_outbox")
    op.drop_index("ix_message_logs_scope_conversation_log_id", table_name="message_logs")
    op.rename_table("message_logs", "message_logs_scoped")
    op.create_table(
        "message_logs",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=255), nullable=True),
        sa.Column("conversation_log_id", sa.String(length=255), nullable=True),
        sa.Column("third_party_log_id", sa.String(length=255), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id"),
    )
    # ids logged in several scopes collapse to one row on the way down
    op.execute(
        "INSERT INTO message_logs (id, platform, conversation_id, conversation_log_id, third_party_log_id,"
        " user_id, created_at, updated_at)"
        " SELECT id, MIN(platform), MIN(conversation_id), MIN(conversation_log_id), MIN(third_party_log_id),"
        " MIN(user_id), MIN(created_at), MIN(updated_at) FROM message_logs_scoped"
        " WHERE status = 'done' GROUP BY id"
    )
    op.drop_table("message_logs_scoped")
    op.create_index("ix_message_logs_conversation_log_id", "message_logs", ["conversation_log_id"])
    op.execute("DELETE FROM call_logs WHERE status <> 'done'")
    with op.batch_alter_table("call_logs") as batch:
        batch.drop_index("ix_call_logs_status_next_attempt")
        batch.drop_constraint("uq_call_logs_scope_identity", type_="unique")
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
        batch.drop_column("payload")
        batch.drop_column("scope")
    with op.batch_alter_table("call_logs") as batch:
        batch.create_unique_constraint(
            "uq_call_logs_identity", ["session_id", "extension_number", "hashed_extension_id"]
        )
    with op.batch_alter_table("users") as batch:
        batch.drop_column("account_scope")

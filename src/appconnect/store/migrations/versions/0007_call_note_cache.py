"""call_note_cache: notes typed during a call, per CRM account and call session, kept for a while

Revision ID: 0007_call_note_cache
Revises: 0006_rate_limit_grants
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_call_note_cache"
down_revision = "0006_rate_limit_grants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_note_cache",
        sa.Column("scope", sa.String(512), primary_key=True),
        sa.Column("session_id", sa.String(255), primary_key=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_note_cache_expires_at", "call_note_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_call_note_cache_expires_at", table_name="call_note_cache")
    op.drop_table("call_note_cache")

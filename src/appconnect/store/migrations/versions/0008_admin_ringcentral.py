"""admin_ringcentral: an account admin's RingCentral tokens and server-side logging settings, encrypted

Revision ID: 0008_admin_ringcentral
Revises: 0007_call_note_cache
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_admin_ringcentral"
down_revision = "0007_call_note_cache"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_ringcentral",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("access_token", sa.Text, nullable=True),
        sa.Column("refresh_token", sa.Text, nullable=True),
        sa.Column("token_expiry", sa.DateTime(timezone=True), nullable=True),
        sa.Column("server_logging", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("admin_ringcentral")

"""managed_auth: CRM login fields and OAuth apps an admin stores once for a RingCentral account (encrypted)

Revision ID: 0009_managed_auth
Revises: 0008_admin_ringcentral
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_managed_auth"
down_revision = "0008_admin_ringcentral"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "managed_auth",
        sa.Column("account_hash", sa.String(64), primary_key=True),
        sa.Column("platform", sa.String(64), primary_key=True),
        sa.Column("data_key", sa.String(128), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
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
    )


def downgrade() -> None:
    op.drop_table("managed_auth")

"""user_mappings: a RingCentral account's extensions mapped to its CRM account's users, for server-side logging

Revision ID: 0010_user_mappings
Revises: 0009_managed_auth
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_user_mappings"
down_revision = "0009_managed_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_mappings",
        sa.Column("rc_account", sa.String(255), primary_key=True),
        sa.Column("crm_scope", sa.String(512), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("mappings", sa.JSON, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
        ),
    )
    op.create_index("ix_user_mappings_crm_scope", "user_mappings", ["crm_scope", "platform"])


def downgrade() -> None:
    op.drop_index("ix_user_mappings_crm_scope", table_name="user_mappings")
    op.drop_table("user_mappings")

"""rate_limit_grants: the shared rate limiter's sliding-window log (one row per grant, by key and time)

Revision ID: 0006_rate_limit_grants
Revises: 0005_token_revocation
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_rate_limit_grants"
down_revision = "0005_token_revocation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_grants",
        sa.Column("limit_key", sa.String(255), nullable=False),
        sa.Column("grant_id", sa.String(32), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("limit_key", "grant_id"),
    )
    op.create_index("ix_rate_limit_grants_key_time", "rate_limit_grants", ["limit_key", "granted_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_grants_key_time", table_name="rate_limit_grants")
    op.drop_table("rate_limit_grants")

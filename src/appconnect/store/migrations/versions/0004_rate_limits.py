"""rate_limits: the per-CRM-account rate limiter's state when no Redis is configured

Revision ID: 0004_rate_limits
Revises: 0003_tenant_scope_outbox
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_rate_limits"
down_revision = "0003_tenant_scope_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("limit_key", sa.String(255), primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
        sa.Column("grant_id", sa.String(32), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")

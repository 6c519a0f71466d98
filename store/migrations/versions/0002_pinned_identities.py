"""pinned identities

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pinned_identities",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("master_key", sa.String(length=64), nullable=False),
        sa.Column("pending_master_key", sa.String(length=64), nullable=True),
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_pinned_identities")),
    )


def downgrade() -> None:
    op.drop_table("pinned_identities")

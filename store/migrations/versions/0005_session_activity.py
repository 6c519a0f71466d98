"""session activity, bot departure and purge

Secure sessions record when their room last saw a message (the idle timeout; written at most
about once a minute per session), when the bot left the room (zero-knowledge mode,
`rooms.bot_stays: false`) and when the room was purged from the homeserver (so that
`sessions wipe` is idempotent).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("secure_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("bot_left_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("secure_sessions", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
        batch_op.drop_column("bot_left_at")
        batch_op.drop_column("last_activity_at")

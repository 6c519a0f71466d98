"""an index on invites by session

Re-opening a ticket revokes its session's unused invites (`WHERE session_id = ?`), on the
webhook path; without an index that scanned every invite ever issued.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invites_session_id", "invites", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_invites_session_id", table_name="invites")

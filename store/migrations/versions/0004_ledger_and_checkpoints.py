"""ledger and checkpoints

The idempotency keys move from jobs.dedupe_key to their own table (handled_keys), so finished
jobs can be pruned without forgetting what was handled; the "noop" marker jobs become ledger
rows. Jobs get a checkpoint for long, resumable work. A webhook delivery keeps the kind of its
first answer instead of an HTTP status (the domain knows no HTTP).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handled_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["secure_sessions.id"],
            name=op.f("fk_handled_keys_session_id_secure_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_handled_keys")),
    )
    op.create_index(
        op.f("ix_handled_keys_session_id"), "handled_keys", ["session_id"], unique=False
    )
    op.execute(
        "INSERT INTO handled_keys (key, session_id, at) "
        "SELECT dedupe_key, session_id, created_at FROM jobs WHERE dedupe_key IS NOT NULL"
    )
    op.execute("DELETE FROM jobs WHERE action = 'noop'")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_jobs_dedupe_key", type_="unique")
        batch_op.drop_column("dedupe_key")
        batch_op.add_column(sa.Column("checkpoint", sa.JSON(), nullable=True))
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=16), nullable=True))
    op.execute(
        "UPDATE webhook_deliveries SET outcome = CASE status WHEN 201 THEN 'created' "
        "WHEN 202 THEN 'closing' ELSE 'reused' END"
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.alter_column("outcome", existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column("status")


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE webhook_deliveries SET status = CASE outcome WHEN 'created' THEN 201 "
        "WHEN 'closing' THEN 202 ELSE 200 END"
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.alter_column("status", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("outcome")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("checkpoint")
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint("uq_jobs_dedupe_key", ["dedupe_key"])
    op.drop_index(op.f("ix_handled_keys_session_id"), table_name="handled_keys")
    op.drop_table("handled_keys")

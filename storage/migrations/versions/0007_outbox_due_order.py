"""The outbox's due index holds the claim's whole order (state, next_attempt_at, id), so claiming the next e-mail
reads one index entry. With (state, next_attempt_at) alone, PostgreSQL read and sorted every pending row for each
claim: 5 ms a claim with 3,000 replies waiting, the size of one hub's answers after a deadline-day burst.

Revision ID: 0007_outbox_due_order
Revises: 0006_scale
Create Date: 2026-11-27
"""
from __future__ import annotations

from alembic import op

revision = "0007_outbox_due_order"
down_revision = "0006_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at"])

"""Security and recovery: ``outbox.data_started_at`` marks the moment a send reached SMTP DATA (before it, a send
a crash interrupted is safe to retry; after it, it may have gone, and the hub's mailbox is asked); on ``messages``,
``in_reply_to`` and ``own_copy`` (a copy of an e-mail the bot itself sent: its Bcc or Sent-folder copy) let a
restored database recognise mail it answered in a life it no longer remembers, and find the copy of an uncertain
send. An index on ``messages.in_reply_to`` serves that lookup.

Revision ID: 0005_security
Revises: 0004_decisions
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_security"
down_revision = "0004_decisions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("data_started_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("in_reply_to", sa.String(998), nullable=True))
        batch.add_column(sa.Column("own_copy", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index("ix_messages_hub_in_reply_to", ["hub_id", "in_reply_to"])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_hub_in_reply_to")
        batch.drop_column("own_copy")
        batch.drop_column("in_reply_to")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("data_started_at")

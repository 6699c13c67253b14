"""A refusal is a field: ``outbox.refused`` is true when the receiving server refused the e-mail for good (5xx),
instead of a prefix on ``last_error``; existing rows are carried over. An index on ``outbox.created_at`` serves
the daily per-address cap, which looks at the last 24 hours of the outbox for every reply.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_OLD_PREFIX = "refused by the mail server: "


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("refused", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index("ix_outbox_created_at", ["created_at"])
    outbox = sa.table("outbox", sa.column("refused", sa.Boolean()), sa.column("last_error", sa.Text()))
    op.execute(outbox.update().where(outbox.c.last_error.startswith(_OLD_PREFIX))
               .values(refused=True, last_error=sa.func.substr(outbox.c.last_error, len(_OLD_PREFIX) + 1)))


def downgrade() -> None:
    outbox = sa.table("outbox", sa.column("refused", sa.Boolean()), sa.column("last_error", sa.Text()))
    op.execute(outbox.update().where(outbox.c.refused.is_(True))
               .values(last_error=sa.literal(_OLD_PREFIX) + sa.func.coalesce(outbox.c.last_error, "")))
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_created_at")
        batch.drop_column("refused")

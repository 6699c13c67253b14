"""Keep each message's verdict with it: status, the full verdict record and the application it belongs to, so staff
views (digest, export) can list mail that needs a person without re-reading raw bytes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("verdict_status", sa.String(32), nullable=True))
        batch.add_column(sa.Column("verdict", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("application_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_messages_application", "applications", ["application_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index("ix_messages_verdict_status", ["hub_id", "verdict_status"])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_verdict_status")
        batch.drop_constraint("fk_messages_application", type_="foreignkey")
        batch.drop_column("application_id")
        batch.drop_column("verdict")
        batch.drop_column("verdict_status")

"""PostgreSQL stores a message's raw bytes as they are, out of line, without trying to compress them (storage
EXTERNAL instead of EXTENDED). Mail is mostly base64 attachments, which pglz cannot shrink: on the scale bench's
mail (41 KB a message) the table was the same size either way, and each insert cost the server 1.5 ms with the
attempt against 0.6 ms without. Rows stored before keep their form; reading either is the same. SQLite never
compresses, so nothing changes there.

Revision ID: 0008_raw_mail_uncompressed
Revises: 0007_outbox_due_order
Create Date: 2026-11-27
"""
from __future__ import annotations

from alembic import op

revision = "0008_raw_mail_uncompressed"
down_revision = "0007_outbox_due_order"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE messages ALTER COLUMN raw SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE messages ALTER COLUMN raw SET STORAGE EXTENDED")

"""Scale: ``outbox_recipients`` (one row per address an outbox e-mail went to, indexed by address and time) so the
daily per-address reply cap counts with an index instead of reading the last 24 hours of the outbox for every
reply; existing outbox rows are carried over. ``ix_outbox_hub_sent`` serves the hourly cap per hub the same way.

Revision ID: 0006_scale
Revises: 0005_security
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_scale"
down_revision = "0005_security"
branch_labels = None
depends_on = None

_CHUNK = 1000


def upgrade() -> None:
    op.create_table(
        "outbox_recipients",
        sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_outbox_recipients_address_created", "outbox_recipients", ["address", "created_at"])
    op.create_index("ix_outbox_hub_sent", "outbox", ["hub_id", "state", "sent_at"])
    # Carry the existing outbox over, so the cap counts e-mails queued before the upgrade too.
    outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("to", sa.JSON), sa.column("cc", sa.JSON),
                      sa.column("created_at", sa.DateTime(timezone=True)))
    recipients = sa.table("outbox_recipients", sa.column("outbox_id", sa.Integer), sa.column("address", sa.String),
                          sa.column("created_at", sa.DateTime(timezone=True)))
    bind = op.get_bind()
    rows: list[dict] = []
    for item_id, to, cc, created_at in bind.execute(sa.select(outbox.c.id, outbox.c.to, outbox.c.cc,
                                                              outbox.c.created_at)):
        for address in sorted({str(a).lower()[:320] for a in (*(to or ()), *(cc or ()))}):
            rows.append({"outbox_id": item_id, "address": address, "created_at": created_at})
        if len(rows) >= _CHUNK:
            bind.execute(recipients.insert(), rows)
            rows = []
    if rows:
        bind.execute(recipients.insert(), rows)


def downgrade() -> None:
    op.drop_index("ix_outbox_hub_sent", table_name="outbox")
    op.drop_index("ix_outbox_recipients_address_created", table_name="outbox_recipients")
    op.drop_table("outbox_recipients")

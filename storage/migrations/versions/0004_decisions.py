"""Staff decisions and what the outcome e-mails need: each application gains its decision (``shortlisted``,
``selected``, ``waitlisted``, ``declined``, ``withdrawn``; NULL until staff decide) with who recorded it (an actor
label, never an address), when, and an optional note; and the domain its forms come from, so a resubmission or a
withdrawal request from the school's own domain finds its application (back-filled from each application's latest
stored verdict). Outbox rows gain ``attachments`` (a JSON list of {filename, content_type, data (base64)}), for the
digest's XLSX export.

Revision ID: 0004_decisions
Revises: 0003
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_decisions"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.add_column(sa.Column("decision", sa.String(32), nullable=True))
        batch.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("decided_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("decision_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("sender_domain", sa.String(255), nullable=True))
        batch.create_index("ix_applications_hub_sender_domain", ["hub_id", "sender_domain"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("attachments", sa.JSON(), nullable=True))
    _backfill_sender_domains()


def _backfill_sender_domains() -> None:
    bind = op.get_bind()
    applications = sa.table("applications", sa.column("id", sa.Integer()), sa.column("latest_version_id", sa.Integer()),
                            sa.column("sender_domain", sa.String()))
    versions = sa.table("application_versions", sa.column("id", sa.Integer()), sa.column("verdict", sa.JSON()))
    rows = bind.execute(sa.select(applications.c.id, versions.c.verdict)
                        .join(versions, versions.c.id == applications.c.latest_version_id)).all()
    for app_id, verdict in rows:
        sender = (verdict or {}).get("sender") or ""
        domain = sender.rpartition("@")[2].lower() if "@" in sender else None
        if domain:
            bind.execute(applications.update().where(applications.c.id == app_id).values(sender_domain=domain))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("attachments")
    with op.batch_alter_table("applications") as batch:
        batch.drop_index("ix_applications_hub_sender_domain")
        batch.drop_column("sender_domain")
        batch.drop_column("decision_note")
        batch.drop_column("decided_by")
        batch.drop_column("decided_at")
        batch.drop_column("decision")

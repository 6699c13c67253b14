"""Initial schema: mailbox ledger, messages, applications, versions, signatories, outbox, events, job claims.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _state(name: str, nullable: bool = False) -> sa.Column:
    # Enums are VARCHAR on purpose (see storage.models): adding a state needs no migration.
    return sa.Column(name, sa.String(32), nullable=nullable)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    op.create_table(
        "mailbox_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hub_id", sa.String(64), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=True),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        _ts("updated_at"),
        sa.UniqueConstraint("hub_id", "folder", name="uq_mailbox_state_hub_folder"),
    )

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hub_id", sa.String(64), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("uid", sa.BigInteger, nullable=False),
        sa.Column("message_id", sa.String(998), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        _ts("received_at", nullable=True),
        _ts("stored_at"),
        _state("state"),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        _ts("claimed_at", nullable=True),
        _ts("processed_at", nullable=True),
        sa.UniqueConstraint("hub_id", "folder", "uidvalidity", "uid", name="uq_messages_location"),
        sa.UniqueConstraint("hub_id", "sha256", name="uq_messages_hub_sha256"),
    )
    op.create_index("ix_messages_hub_message_id", "messages", ["hub_id", "message_id"])
    op.create_index("ix_messages_state", "messages", ["state", "id"])
    op.create_index("ix_messages_stored_at", "messages", ["stored_at"])

    # applications <-> application_versions reference each other. SQLite accepts the forward reference inline
    # (and cannot ALTER a constraint in later); PostgreSQL needs the target table first, so it gets the FK after.
    latest_fk: list[sa.SchemaItem] = []
    if sqlite:
        latest_fk = [sa.ForeignKeyConstraint(["latest_version_id"], ["application_versions.id"],
                                             name="fk_applications_latest_version", ondelete="SET NULL")]
    op.create_table(
        "applications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hub_id", sa.String(64), nullable=False),
        sa.Column("programme", sa.String(128), nullable=False),
        sa.Column("school_urn", sa.String(16), nullable=False),
        sa.Column("school_name", sa.String(255), nullable=True),
        _state("status"),
        sa.Column("latest_version_id", sa.Integer, nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("hub_id", "programme", "school_urn", name="uq_applications_hub_programme_urn"),
        *latest_fk,
    )

    op.create_table(
        "application_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("application_id", sa.Integer, sa.ForeignKey("applications.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("verdict", sa.JSON, nullable=False),
        _state("status"),
        sa.Column("flags", sa.JSON, nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("application_id", "message_id", name="uq_application_versions_app_message"),
    )
    op.create_index("ix_application_versions_application_id", "application_versions", ["application_id"])
    op.create_index("ix_application_versions_message_id", "application_versions", ["message_id"])
    if not sqlite:
        op.create_foreign_key("fk_applications_latest_version", "applications", "application_versions",
                              ["latest_version_id"], ["id"], ondelete="SET NULL")

    op.create_table(
        "signatories",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("application_id", sa.Integer, sa.ForeignKey("applications.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("copied", sa.Boolean, nullable=False),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        sa.Column("confirmed_by_message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL"),
                  nullable=True),
        _ts("confirmed_at", nullable=True),
        sa.UniqueConstraint("application_id", "role", name="uq_signatories_app_role"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hub_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("source_message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("application_id", sa.Integer, sa.ForeignKey("applications.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("from_addr", sa.String(320), nullable=False),
        sa.Column("to", sa.JSON, nullable=False),
        sa.Column("cc", sa.JSON, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=True),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("in_reply_to", sa.String(998), nullable=True),
        sa.Column("references", sa.Text, nullable=True),
        _state("state"),
        sa.Column("attempts", sa.Integer, nullable=False),
        _ts("next_attempt_at"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        _ts("claimed_at", nullable=True),
        _ts("sent_at", nullable=True),
        _ts("created_at"),
        sa.UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_source_message_id", "outbox", ["source_message_id"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        _ts("at"),
        sa.Column("hub_id", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="SET NULL"), nullable=True),
        sa.Column("application_id", sa.Integer, sa.ForeignKey("applications.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id", ondelete="SET NULL"), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_events_hub_kind", "events", ["hub_id", "kind"])

    op.create_table(
        "job_claims",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(255), nullable=False),
        _ts("claimed_at"),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("key", name="uq_job_claims_key"),
    )


def downgrade() -> None:
    for table in ("job_claims", "events", "outbox", "signatories"):
        op.drop_table(table)
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_applications_latest_version", "applications", type_="foreignkey")
    for table in ("application_versions", "applications", "messages", "mailbox_state"):
        op.drop_table(table)

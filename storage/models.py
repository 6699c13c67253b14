"""The database schema of hubbot as typed SQLAlchemy 2 ORM classes: the mailbox ledger, raw messages, applications
with their versions and signatories, the outbox, the event log and scheduled-job claims. States are Python enums
stored as plain strings (``native_enum=False``) so adding a state never needs a database type change. Every time is
timezone-aware UTC on the Python side whatever the database does with it. The Alembic migrations in
``storage/migrations/versions`` create exactly this schema; the models are not used to create tables.
"""
from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from rules.outcomes import StaffDecision
from rules.verdict import Status
from templates import EmailKind


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out. SQLite keeps no zone, so everything is normalised to UTC first;
    a naive value is refused because it is always a bug (whose local time would it be?)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware one")
        value = value.astimezone(timezone.utc)
        # SQLite compares the stored text, so stored and compared values must have the same (naive UTC) shape.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _enum(cls: type[enum.Enum], name: str, length: int = 32) -> Enum:
    # Store the values ("stored"), not the member names ("STORED"); VARCHAR, no CHECK, so new states need no DDL.
    return Enum(cls, name=name, native_enum=False, create_constraint=False, length=length,
                values_callable=lambda members: [m.value for m in members])


class MessageState(enum.StrEnum):
    STORED = "stored"            # raw bytes safe in the database, not yet turned into a verdict
    PROCESSED = "processed"
    QUARANTINED = "quarantined"  # processing failed repeatedly or the message is unsafe; a person must look


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"          # claimed by a worker; the SMTP call may be in flight
    SENT = "sent"
    FAILED = "failed"            # permanent failure, or out of attempts
    UNCERTAIN = "uncertain"      # a worker died mid-send: the server may have accepted it, so it is not resent
                                 # automatically; the digest asks a person to check and requeue it


class EventKind(enum.StrEnum):
    """Every kind of entry in the event log."""

    # A message and what was decided about it (one of the first five per processed message).
    APPLICATION_VERSION = "application_version"
    THREAD_REPLY = "thread_reply"
    PROCESSED = "processed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    SIGNATORY_CONFIRMED = "signatory_confirmed"
    REPLY_SUPPRESSED = "reply_suppressed"
    PROCESSING_FAILED = "processing_failed"
    MESSAGE_QUARANTINED = "message_quarantined"
    # The mailbox.
    MAILBOX_ERROR = "mailbox_error"
    MAILBOX_OK = "mailbox_ok"              # a poll succeeded after errors
    MAILBOX_WARNING = "mailbox_warning"    # read, but something around it failed (e.g. moving to move_to)
    UIDVALIDITY_CHANGED = "uidvalidity_changed"
    MESSAGE_SKIPPED = "message_skipped"
    # The outbox.
    REPLY_SENT = "reply_sent"
    REPLY_RETRY = "reply_retry"
    REPLY_FAILED = "reply_failed"
    REPLY_UNCERTAIN = "reply_uncertain"
    REPLY_REQUEUED = "reply_requeued"
    SMTP_OK = "smtp_ok"                    # a mail server worked again after failures
    # Health and data protection.
    INCIDENT_OPENED = "incident_opened"
    INCIDENT_CLOSED = "incident_closed"
    ALERT_QUEUED = "alert_queued"
    PRIVACY_ERASED = "privacy_erased"
    REPLY_RESOLVED = "reply_resolved"          # an uncertain send settled by the hub's mailbox: sent, or safe again
    CLAIM_TAKEN_OVER = "claim_taken_over"      # a dead worker's claim released at once
    # Recovery.
    MAILBOX_STARTED = "mailbox_started"        # first poll of a mailbox: started at its end (or a backfill date)
    MAILBOX_BEHIND = "mailbox_behind"          # the database is older than the mailbox (a restored backup?)
    # Scheduled jobs.
    REMINDER_QUEUED = "reminder_queued"
    DIGEST_QUEUED = "digest_queued"
    RETENTION = "retention"
    # Staff decisions and the outcome e-mails that announce them.
    DECISION_RECORDED = "decision_recorded"
    OUTCOME_QUEUED = "outcome_queued"


class ApplicationStatus(enum.StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    REVIEW = "review"            # something on the form could not be read with certainty: a person looks first
    UNREADABLE = "unreadable"
    WITHDRAWN = "withdrawn"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class MailboxState(Base):
    """Where polling got to in one hub's folder: the IMAP UIDVALIDITY seen last and the highest UID handled."""

    __tablename__ = "mailbox_state"
    __table_args__ = (UniqueConstraint("hub_id", "folder", name="uq_mailbox_state_hub_folder"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class Message(Base):
    """One raw e-mail as fetched, byte for byte. (hub, folder, uidvalidity, uid) says where it was found; identical
    bytes are stored once per hub (sha256). The same Message-ID in two hubs is two submissions, so every duplicate
    lookup is per hub."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("hub_id", "folder", "uidvalidity", "uid", name="uq_messages_location"),
        UniqueConstraint("hub_id", "sha256", name="uq_messages_hub_sha256"),
        Index("ix_messages_hub_message_id", "hub_id", "message_id"),
        Index("ix_messages_state", "state", "id"),
        Index("ix_messages_stored_at", "stored_at"),
        Index("ix_messages_verdict_status", "hub_id", "verdict_status"),
        Index("ix_messages_hub_in_reply_to", "hub_id", "in_reply_to"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998))
    sha256: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime | None]
    stored_at: Mapped[datetime]
    state: Mapped[MessageState] = mapped_column(_enum(MessageState, "message_state"), default=MessageState.STORED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    # The verdict (migration 0002): its status, the full record (``Verdict.to_record``; read it back with
    # ``Verdict.from_record``), and the application.
    verdict_status: Mapped[Status | None] = mapped_column(_enum(Status, "verdict_status"))
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    application_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id", ondelete="SET NULL"))
    # Migration 0005: what it answers, and whether it is a copy of an e-mail the bot sent (Bcc or Sent folder).
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    own_copy: Mapped[bool] = mapped_column(Boolean, default=False)


class Application(Base):
    """One school's application to one programme through one hub; each e-mail about it adds a version."""

    __tablename__ = "applications"
    __table_args__ = (
        UniqueConstraint("hub_id", "programme", "school_urn", name="uq_applications_hub_programme_urn"),
        Index("ix_applications_hub_sender_domain", "hub_id", "sender_domain"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64))
    programme: Mapped[str] = mapped_column(String(128))
    school_urn: Mapped[str] = mapped_column(String(16))
    school_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[ApplicationStatus] = mapped_column(_enum(ApplicationStatus, "application_status"))
    latest_version_id: Mapped[int | None] = mapped_column(
        Integer,
        ForeignKey("application_versions.id", ondelete="SET NULL", use_alter=True,
                   name="fk_applications_latest_version"),
    )
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The staff decision (migration 0004_decisions): NULL until staff decide; who (an actor label such as
    # "staff:cli", never an address) and when; and the domain the school's forms come from.
    decision: Mapped[StaffDecision | None] = mapped_column(_enum(StaffDecision, "staff_decision"))
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decision_note: Mapped[str | None] = mapped_column(Text)
    sender_domain: Mapped[str | None] = mapped_column(String(255))

    versions: Mapped[list[ApplicationVersion]] = relationship(
        back_populates="application", foreign_keys="ApplicationVersion.application_id",
        passive_deletes=True, order_by="ApplicationVersion.id")
    signatories: Mapped[list[Signatory]] = relationship(
        back_populates="application", passive_deletes=True, order_by="Signatory.id")


class ApplicationVersion(Base):
    """What one message said about an application: the fields read, the verdict, the flags."""

    __tablename__ = "application_versions"
    __table_args__ = (
        UniqueConstraint("application_id", "message_id", name="uq_application_versions_app_message"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), index=True)
    fields: Mapped[dict[str, Any]]
    verdict: Mapped[dict[str, Any]]
    status: Mapped[ApplicationStatus] = mapped_column(_enum(ApplicationStatus, "application_status"))
    flags: Mapped[list[Any]]
    created_at: Mapped[datetime]

    application: Mapped[Application] = relationship(back_populates="versions", foreign_keys=[application_id])


class Signatory(Base):
    """A person who must sign (head, teacher...) and whether they were copied in and have confirmed."""

    __tablename__ = "signatories"
    __table_args__ = (UniqueConstraint("application_id", "role", name="uq_signatories_app_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    copied: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    confirmed_by_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    confirmed_at: Mapped[datetime | None]

    application: Mapped[Application] = relationship(back_populates="signatories")


class OutboxItem(Base):
    """One e-mail to send. ``dedupe_key`` (by default "<source message id>:<kind>") makes enqueueing idempotent;
    ``message_id`` is derived from it, so a resend after a crash carries the same Message-ID."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
        UniqueConstraint("message_id", name="uq_outbox_message_id"),
        Index("ix_outbox_due", "state", "next_attempt_at", "id"),   # the claim's order (migration 0007)
        Index("ix_outbox_created_at", "created_at"),
        # The hourly cap per hub counts the hub's sends of the last hour (bot/sending/caps.py).
        Index("ix_outbox_hub_sent", "hub_id", "state", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[EmailKind] = mapped_column(_enum(EmailKind, "email_kind", 64))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    source_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), index=True)
    application_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id", ondelete="SET NULL"))
    from_addr: Mapped[str] = mapped_column(String(320))
    to: Mapped[list[Any]]
    cc: Mapped[list[Any]]
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]]
    message_id: Mapped[str] = mapped_column(String(255))
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    state: Mapped[OutboxState] = mapped_column(_enum(OutboxState, "outbox_state"), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    refused: Mapped[bool] = mapped_column(Boolean, default=False)   # the receiving server refused it (5xx)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # Files to attach (migration 0004_decisions): [{"filename", "content_type", "data" (base64)}], or NULL.
    attachments: Mapped[list[Any] | None] = mapped_column(JSON)
    # Migration 0005: set (and committed) just before SMTP DATA. A send interrupted before it never reached the
    # server and is retried; after it the server may have the e-mail, so the hub's mailbox is asked first.
    data_started_at: Mapped[datetime | None]


class Event(Base):
    """The audit trail. ``detail`` holds ids, codes and counts; names and e-mail addresses belong in the rows the
    event points at, so deleting those rows (retention) leaves no personal data behind in the log."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_at", "at"), Index("ix_events_hub_kind", "hub_id", "kind"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    hub_id: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind, "event_kind", 64))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    application_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id", ondelete="SET NULL"))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]]


class JobClaim(Base):
    """A scheduled job done once ever, e.g. "reminder:<application>:<days>" or "digest:<hub>:<date>"."""

    __tablename__ = "job_claims"
    __table_args__ = (UniqueConstraint("key", name="uq_job_claims_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    claimed_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(128))


class OutboxRecipient(Base):
    """One address one outbox e-mail went to (lower-cased, once per e-mail), written with the e-mail. The daily
    reply cap is then one indexed count per address instead of a scan of the last day's outbox for every reply
    (migration 0006); deleting the outbox row deletes these with it."""

    __tablename__ = "outbox_recipients"
    __table_args__ = (Index("ix_outbox_recipients_address_created", "address", "created_at"),)

    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    created_at: Mapped[datetime]

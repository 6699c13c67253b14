"""Read-side views of stored applications for the staff jobs (reminders, digests, outcome e-mails): one typed
``ApplicationView`` per application with its latest verdict, what is still missing, each signatory's state and the
staff decision, plus the addresses that bounced and what the bot last sent each school. Reading only: nothing here
writes to the database."""
from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.orm import Session

from rules.outcomes import StaffDecision
from rules.verdict import IssueKind, Status, Verdict
from storage.json_parts import without_keys
from storage.models import (
    Application,
    ApplicationStatus,
    ApplicationVersion,
    Message,
    OutboxItem,
    OutboxState,
    Signatory,
)
from templates import EmailKind


@dataclass(frozen=True)
class SignatoryView:
    role: str
    title: str
    name: str | None
    email: str | None
    copied: bool
    confirmed: bool
    confirmed_at: datetime | None

    @property
    def signed(self) -> bool:
        return self.copied or self.confirmed


@dataclass(frozen=True)
class IssueView:
    label: str
    section: str
    reason: str
    missing: bool
    value: str | None = None        # what the bot read, for an invalid answer


@dataclass(frozen=True)
class ApplicationView:
    id: int
    hub_id: str
    programme: str
    school_name: str | None
    school_urn: str
    status: ApplicationStatus
    flags: tuple[str, ...]
    issues: tuple[IssueView, ...]
    signatories: tuple[SignatoryView, ...]
    sender: str | None              # who sent the latest form: reminders go back to them
    school_message_id: str | None   # the latest form e-mail's Message-ID, for threading
    received_at: datetime | None    # the latest version's receipt
    created_at: datetime
    versions: int
    decision: StaffDecision | None = None
    decided_at: datetime | None = None
    ever_complete: bool = False     # some form from the school was complete (it is never told "not complete yet")
    urn_as_written: str | None = None   # the URN on the latest form, even when it is not a valid one
    school_subject: str = ""        # the latest form e-mail's subject, for threading
    flag_details: tuple[tuple[str, str], ...] = ()   # (code, detail) of each flag of the latest version
    # Every address that was on one of the school's e-mails (From, To, Cc) or confirmed from its own address: the
    # only addresses any e-mail about this application may go to (sorted, so e-mails list them in a stable order).
    correspondents: tuple[str, ...] = ()

    @property
    def awaiting(self) -> tuple[SignatoryView, ...]:
        return tuple(s for s in self.signatories if not s.signed and s.email)

    @property
    def urn(self) -> str:
        """The URN as staff should see it: applications without a valid one are keyed internally by message."""
        return "" if self.school_urn.startswith("?") else self.school_urn

    @property
    def display_name(self) -> str:
        return self.school_name or (f"URN {self.urn}" if self.urn else "school not named")

    @property
    def shown_urn(self) -> str:
        """The URN as the school wrote it (an invalid one too), for staff."""
        return self.urn or self.urn_as_written or ""


def application_views(session: Session, *, hub_id: str | None = None,
                      programme: str | None = None) -> list[ApplicationView]:
    """Every application (of the hub, of the programme), in three queries whatever their number: the applications
    with their latest version, their signatories, and of every version its status and correspondence."""
    conditions: list[ColumnElement[bool]] = []
    if hub_id:
        conditions.append(Application.hub_id == hub_id)
    if programme:
        conditions.append(Application.programme == programme)
    # Columns, not entities: thousands of ORM objects would cost more memory than the views they make.
    signatories: dict[int, list[Row]] = {}
    for signatory in session.execute(
            select(Signatory.application_id, Signatory.role, Signatory.name, Signatory.email, Signatory.copied,
                   Signatory.confirmed, Signatory.confirmed_at)
            .join(Application, Application.id == Signatory.application_id).where(*conditions)
            .order_by(Signatory.id)):
        signatories.setdefault(signatory.application_id, []).append(signatory)
    # Of the older versions only what the views need: how many, whether one was complete, who was on the mail
    # (the database picks the correspondence out of each verdict).
    versions: dict[int, _Versions] = {}
    for app_id, status, mail in session.execute(
            select(ApplicationVersion.application_id, ApplicationVersion.status,
                   ApplicationVersion.verdict["correspondence"])
            .join(Application, Application.id == ApplicationVersion.application_id).where(*conditions)
            .execution_options(yield_per=500)):
        versions.setdefault(app_id, _Versions()).add(status, mail)
    # Application.id last: ties in the order (two schools of one name) come out the same every time.
    query = (select(Application, without_keys(ApplicationVersion.verdict, NOT_VIEWED), ApplicationVersion.flags)
             .outerjoin(ApplicationVersion, ApplicationVersion.id == Application.latest_version_id)
             .where(*conditions).order_by(Application.hub_id, Application.programme, Application.school_name,
                                          Application.id))
    views = []
    # Streamed, a hundred at a time: each latest verdict is decoded, turned into its view and let go.
    for app, record, flags in session.execute(query.execution_options(yield_per=100)):
        latest = record is not None
        verdict = Verdict.from_record(record) if latest else None
        titles = {s.role: s.title for s in verdict.signatories} if verdict else {}
        people = signatories.get(app.id, ())
        seen = versions.get(app.id) or _Versions()
        views.append(ApplicationView(
            id=app.id, hub_id=app.hub_id, programme=app.programme, school_name=app.school_name,
            school_urn=app.school_urn, status=app.status, flags=tuple(flags or ()) if latest else (),
            issues=tuple(IssueView(i.label, i.section, i.reason, i.kind is IssueKind.MISSING,
                                   None if i.kind is IssueKind.MISSING else verdict.fields.get(i.field))
                         for i in (verdict.issues if verdict else ())),
            signatories=tuple(SignatoryView(s.role, titles.get(s.role, s.role), s.name, s.email, s.copied,
                                            s.confirmed, s.confirmed_at) for s in people),
            sender=verdict.sender if verdict else None,
            school_message_id=(verdict.message_id or None) if verdict else None,
            received_at=verdict.received_at if verdict else None,
            created_at=app.created_at, versions=seen.count,
            decision=app.decision, decided_at=app.decided_at,
            ever_complete=seen.complete,
            urn_as_written=(verdict.fields.get("school.urn") or verdict.school_urn) if verdict else None,
            correspondents=tuple(sorted(seen.correspondents | {s.email.lower() for s in people
                                                               if s.email and s.confirmed})),
            school_subject=verdict.correspondence.subject if verdict and verdict.correspondence else "",
            flag_details=tuple((f.code.value, f.detail) for f in verdict.flags) if verdict else (),
        ))
    return views


# The parts of a stored verdict no view reads (the reply's text and HTML, how each label was matched): most of its
# bytes. The database leaves them out (``storage.json_parts``); ``Verdict.from_record`` reads the rest as usual.
NOT_VIEWED = ("readings", "reply", "recognition")


def views_by_hub(session: Session) -> dict[str, list[ApplicationView]]:
    """Every application's view, by hub, each hub's in ``application_views``' order: one reading (three queries)
    for jobs that go through every hub more than once."""
    by_hub: dict[str, list[ApplicationView]] = {}
    for view in application_views(session):
        by_hub.setdefault(view.hub_id, []).append(view)
    return by_hub


class _Versions:
    """What the views keep of an application's versions: their number, whether one was complete, and every
    address that was on one of the school's e-mails (From, To, Cc)."""

    __slots__ = ("complete", "correspondents", "count")

    def __init__(self) -> None:
        self.count = 0
        self.complete = False
        self.correspondents: set[str] = set()

    def add(self, status: ApplicationStatus, mail: dict | None) -> None:
        self.count += 1
        self.complete = self.complete or status is ApplicationStatus.COMPLETE
        mail = mail or {}
        self.correspondents.update(a.lower() for a in mail.get("correspondents") or ())
        if mail.get("sender"):
            self.correspondents.add(str(mail["sender"]).lower())


def bounced_addresses(session: Session, hub_id: str) -> frozenset[str]:
    """Addresses our mail could not reach: replies refused for good (5xx), and the final recipients named in
    delivery-failure reports that came back to the hub's mailbox."""
    found: set[str] = set()
    # Only refusals count: a reply that failed because our relay was down says nothing about the address.
    refused = select(OutboxItem.to).where(OutboxItem.hub_id == hub_id, OutboxItem.state == OutboxState.FAILED,
                                          OutboxItem.refused.is_(True))
    for to in session.scalars(refused):
        found.update(address.lower() for address in to)
    # Automatic mail is a small share of a mailbox; only delivery reports among it are parsed.
    ignored = select(Message.raw).where(Message.hub_id == hub_id, Message.verdict_status == Status.IGNORED)
    for raw in session.scalars(ignored.execution_options(yield_per=100)):   # streamed: a mailbox's worth of bytes
        if b"delivery-status" in raw:
            found.update(_failed_recipients(raw))
    return frozenset(found)


def _failed_recipients(raw: bytes) -> set[str]:
    out: set[str] = set()
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        for part in message.walk():
            if part.get_content_type() != "message/delivery-status":
                continue
            for block in part.get_payload() if part.is_multipart() else []:
                action = str(block.get("Action", "")).lower()
                recipient = str(block.get("Final-Recipient", ""))
                if action.startswith("failed") and ";" in recipient:
                    out.add(recipient.split(";", 1)[1].strip().strip("<>").lower())
    except Exception:  # noqa: BLE001 - a report we cannot read names nobody
        return out
    return out


# E-mails to hub staff: not "contact with the school".
STAFF_KINDS = frozenset({EmailKind.DIGEST, EmailKind.STAFF_NOTICE, EmailKind.DECISIONS_RECORDED})


@dataclass(frozen=True)
class LastSent:
    kind: EmailKind
    at: datetime               # sent, or queued when not sent yet
    sent: bool


def last_sent(session: Session, *, hub_id: str | None = None) -> dict[int, LastSent]:
    """What the bot last sent (or queued for) each application's school, by application id: one query."""
    query = (select(OutboxItem.application_id, OutboxItem.kind, OutboxItem.sent_at, OutboxItem.created_at)
             .where(OutboxItem.application_id.is_not(None), OutboxItem.kind.not_in(list(STAFF_KINDS)))
             .order_by(OutboxItem.id))
    if hub_id is not None:
        query = query.where(OutboxItem.hub_id == hub_id)
    out: dict[int, LastSent] = {}
    for application_id, kind, sent_at, created_at in session.execute(query):
        out[application_id] = LastSent(kind, sent_at or created_at, sent_at is not None)
    return out

"""Read-side views of stored applications for the staff jobs (reminders, digests): one typed ``ApplicationView``
per application with its latest verdict, what is still missing, and each signatory's state, plus the addresses
that bounced. Reading only: nothing here writes to the database."""
from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from rules.verdict import IssueKind, Status, Verdict
from storage.models import (
    Application,
    ApplicationStatus,
    ApplicationVersion,
    Message,
    OutboxItem,
    OutboxState,
    Signatory,
)


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


def application_views(session: Session, *, hub_id: str | None = None,
                      programme: str | None = None) -> list[ApplicationView]:
    """Every application (of the hub, of the programme), in three queries whatever their number: the applications
    with their latest version, their signatories, their version counts."""
    conditions: list[ColumnElement[bool]] = []
    if hub_id:
        conditions.append(Application.hub_id == hub_id)
    if programme:
        conditions.append(Application.programme == programme)
    signatories: dict[int, list[Signatory]] = {}
    for signatory in session.scalars(select(Signatory).join(Application, Application.id == Signatory.application_id)
                                     .where(*conditions).order_by(Signatory.id)):
        signatories.setdefault(signatory.application_id, []).append(signatory)
    versions = {app_id: count for app_id, count in session.execute(
        select(ApplicationVersion.application_id, func.count(ApplicationVersion.id))
        .join(Application, Application.id == ApplicationVersion.application_id).where(*conditions)
        .group_by(ApplicationVersion.application_id))}
    query = (select(Application, ApplicationVersion.verdict, ApplicationVersion.flags)
             .outerjoin(ApplicationVersion, ApplicationVersion.id == Application.latest_version_id)
             .where(*conditions).order_by(Application.hub_id, Application.programme, Application.school_name))
    views = []
    for app, record, flags in session.execute(query):
        verdict = Verdict.from_record(record) if record is not None else None
        titles = {s.role: s.title for s in verdict.signatories} if verdict else {}
        views.append(ApplicationView(
            id=app.id, hub_id=app.hub_id, programme=app.programme, school_name=app.school_name,
            school_urn=app.school_urn, status=app.status, flags=tuple(flags or ()) if record is not None else (),
            issues=tuple(IssueView(i.label, i.section, i.reason, i.kind is IssueKind.MISSING)
                         for i in (verdict.issues if verdict else ())),
            signatories=tuple(SignatoryView(s.role, titles.get(s.role, s.role), s.name, s.email, s.copied,
                                            s.confirmed, s.confirmed_at) for s in signatories.get(app.id, ())),
            sender=verdict.sender if verdict else None,
            school_message_id=(verdict.message_id or None) if verdict else None,
            received_at=verdict.received_at if verdict else None,
            created_at=app.created_at, versions=versions.get(app.id, 0),
        ))
    return views


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

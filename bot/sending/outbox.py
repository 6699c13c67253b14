"""Draining the outbox: claim the replies that are due, turn each row into an e-mail, hand it to the sender (SMTP or
the ``.eml`` writer), and record the outcome: sent; retried later with exponential backoff after a TEMPORARY
failure; failed for good after a PERMANENT one or too many attempts. Each claim is committed (state SENDING) just
before the SMTP conversation and each outcome straight after it, so at most one worker talks to the server about a
row. If a worker dies inside that window we cannot know whether the server accepted the e-mail, so the row is not
sent again automatically: it becomes UNCERTAIN, the digest asks a person to check, and ``requeue_reply`` sends it
again. A school is therefore never answered twice; the price is that a crash in the few milliseconds of an SMTP
conversation delays that one reply until a person looks.
"""
from __future__ import annotations

import email.policy
import logging
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from bot.sending.smtp import SendResult, SendStatus, SmtpConnection, SmtpSettings, write_eml
from rules.automatic import LOOP_HEADER
from storage import repository as repo
from storage.db import Database
from storage.models import EventKind, OutboxItem, OutboxState

log = logging.getLogger(__name__)

Sender = Callable[[EmailMessage], SendResult]
# Headers the row's free-form ``headers`` may not override: they carry threading and loop protection.
_PROTECTED = {"from", "to", "cc", "subject", "message-id", "date", "in-reply-to", "references",
              "auto-submitted", LOOP_HEADER.lower(), "mime-version", "content-type",
              "content-transfer-encoding"}


@dataclass(frozen=True)
class OutboxPolicy:
    max_attempts: int = 12                     # with the cap below, about a day of trying before giving up
    base_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=6)
    lease: timedelta = timedelta(minutes=10)   # longer than any SMTP conversation (timeouts are 60 s)


@dataclass
class DrainReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    uncertain: int = 0        # interrupted sends found and parked for a person to check
    lost_claims: int = 0      # our lease expired and another worker took the row before we recorded the outcome


def backoff(attempts: int, policy: OutboxPolicy) -> timedelta:
    """Delay before the next try after ``attempts`` tries: base, 2x base, 4x base ... capped."""
    delay = policy.base_delay * (2 ** max(0, attempts - 1))
    return min(delay, policy.max_delay)


def _one_line(value: str) -> str:
    # A CR or LF in a header value would be header injection (and EmailMessage refuses it anyway).
    return re.sub(r"[\r\n]+", " ", value).strip()


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, keeping the class it makes for each header name: the stock one builds a new
    class for every header set, which was a good part of the time spent building a reply."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# email.policy.default with the header classes kept: the same headers, folding and bytes.
_POLICY = email.policy.default.clone(header_factory=_HeaderClasses())


def build_email(item: OutboxItem) -> EmailMessage:
    message = EmailMessage(policy=_POLICY)
    message["From"] = _one_line(item.from_addr)
    message["To"] = ", ".join(_one_line(a) for a in item.to)
    if item.cc:
        message["Cc"] = ", ".join(_one_line(a) for a in item.cc)
    message["Subject"] = _one_line(item.subject)
    # Date from the row, not the clock: a resend after a crash is then the same e-mail, not a near-copy.
    message["Date"] = format_datetime(item.created_at.astimezone(timezone.utc))
    message["Message-ID"] = item.message_id
    if item.in_reply_to:
        message["In-Reply-To"] = _one_line(item.in_reply_to)
    references = item.references or item.in_reply_to
    if references:
        message["References"] = _one_line(references)
    message["Auto-Submitted"] = "auto-replied"   # RFC 3834: other robots must not answer this
    message[LOOP_HEADER] = _one_line(item.from_addr)
    for name, value in (item.headers or {}).items():
        if name.lower() not in _PROTECTED:
            message[_one_line(name)] = _one_line(str(value))
    message.set_content(item.text)
    if item.html:
        message.add_alternative(item.html, subtype="html")
    return message


def smtp_sender(settings: SmtpSettings) -> Sender:
    """An SMTP sender keeping its connection across a drain (``drain_outbox`` closes it at the end)."""
    return SmtpConnection(settings)


def eml_sender(directory: str | Path) -> Sender:
    def send(message: EmailMessage) -> SendResult:
        path = write_eml(directory, message)
        return SendResult(SendStatus.SENT, None, path.name)
    return send


def default_worker_id() -> str:
    import os
    return f"{socket.gethostname()}:{os.getpid()}"


def drain_outbox(db: Database, sender: Sender, *, worker: str | None = None, now: datetime | None = None,
                 policy: OutboxPolicy = OutboxPolicy(), max_items: int = 5000,
                 hub_senders: Mapping[str, Sender] | None = None,
                 hub_ids: Sequence[str] | None = None) -> DrainReport:
    """Send everything due (up to ``max_items`` per call; only ``hub_ids``' e-mails when given, for a worker run for
    a group of hubs). ``hub_senders`` lets a hub use its own sender; others use ``sender``. ``now`` fixes the clock
    (tests, ``--now``); otherwise the real time is read at each step.

    Rows are claimed one at a time, just before their own SMTP conversation: a row marked SENDING is always the
    one being sent, so a crash leaves exactly that row UNCERTAIN and the rest simply PENDING. The outcome of one
    send and the claim of the next row share a commit (one commit per e-mail): at every commit the only row in
    SENDING is the one about to be sent."""
    worker = worker or default_worker_id()
    report = DrainReport()
    with db.session() as session:
        for item in repo.park_interrupted_sends(session, now=now or repo.utcnow(), lease=policy.lease):
            report.uncertain += 1
            repo.record_event(session, EventKind.REPLY_UNCERTAIN, hub_id=item.hub_id, actor=worker, outbox_id=item.id,
                              message_id=item.source_message_id, application_id=item.application_id,
                              detail={"kind": item.kind}, now=now)
        claimed = _claim_one(session, worker, now, policy, hub_ids)
    while claimed is not None and report.claimed < max_items:
        report.claimed += 1
        item = claimed
        # Built after the claim's commit, from the row as claimed: the SMTP work happens outside any transaction.
        message = build_email(item)
        chosen = (hub_senders or {}).get(item.hub_id, sender)
        try:
            result = chosen(message)
        except Exception as exc:  # noqa: BLE001 - a sender bug must not leave the row stuck in SENDING
            log.exception("sender raised for outbox row %s", item.id)
            result = SendResult(SendStatus.TEMPORARY, None, f"sender error: {type(exc).__name__}")
        with db.session() as session:
            _record(session, item, worker, result, now, policy, report)
            claimed = _claim_one(session, worker, now, policy, hub_ids) if report.claimed < max_items else None
    for used in {sender, *(hub_senders or {}).values()}:
        close = getattr(used, "close", None)
        if close is not None:
            close()
    log.info("outbox drained: claimed=%d sent=%d retried=%d failed=%d", report.claimed, report.sent,
             report.retried, report.failed)
    return report


def _claim_one(session: Session, worker: str, now: datetime | None, policy: OutboxPolicy,
               hub_ids: Sequence[str] | None) -> OutboxItem | None:
    """``repo.claim_due_replies`` for one row, as one statement: UPDATE the first due row (skipping rows another
    worker has locked) and RETURN it, rather than SELECT, UPDATE and SELECT again."""
    at = now or repo.utcnow()
    due = and_(OutboxItem.state == OutboxState.PENDING, OutboxItem.next_attempt_at <= at)
    if hub_ids is not None:
        due = and_(due, OutboxItem.hub_id.in_(list(hub_ids)))
    first = select(OutboxItem.id).where(due).order_by(OutboxItem.next_attempt_at, OutboxItem.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        first = first.with_for_update(skip_locked=True)
    claim = (update(OutboxItem).where(OutboxItem.id == first.scalar_subquery(), due)
             .values(state=OutboxState.SENDING, claimed_by=worker, claimed_at=at, attempts=OutboxItem.attempts + 1)
             .returning(OutboxItem))
    return session.scalars(claim, execution_options={"populate_existing": True,
                                                     "synchronize_session": False}).one_or_none()


def _record(session: Session, item: OutboxItem, worker: str, result: SendResult, now: datetime | None,
            policy: OutboxPolicy, report: DrainReport) -> None:
    """Record the outcome of sending ``item`` (as claimed by ``worker``; not attached to ``session``). Each
    outcome is a conditional UPDATE on our claim: if the lease ran out and another worker took the row, theirs
    wins and this one counts as a lost claim."""
    at = now or repo.utcnow()
    attempts = item.attempts
    detail = {"kind": item.kind, "attempt": attempts, "code": result.code}
    if result.status is SendStatus.SENT:
        if repo.mark_sent(session, item, now=at):
            report.sent += 1
            repo.record_event(session, EventKind.REPLY_SENT, hub_id=item.hub_id, actor=worker, outbox_id=item.id,
                              message_id=item.source_message_id, application_id=item.application_id,
                              detail={**detail, "refused_recipients": result.refused_recipients}, now=at)
            return
    elif result.status is SendStatus.TEMPORARY and attempts < policy.max_attempts:
        delay = backoff(attempts, policy)
        if repo.schedule_retry(session, item, error=result.detail, delay=delay, now=at):
            report.retried += 1
            repo.record_event(session, EventKind.REPLY_RETRY, hub_id=item.hub_id, actor=worker, outbox_id=item.id,
                              message_id=item.source_message_id,
                              detail={**detail, "delay_seconds": int(delay.total_seconds())}, now=at)
            return
    else:
        # A refusal (5xx) means the address does not work; running out of retries means our side failed.
        refused = result.status is SendStatus.PERMANENT
        error = result.detail if refused else f"gave up after {attempts} attempts: {result.detail}"
        if repo.mark_failed(session, item, error=error, refused=refused, now=at):
            report.failed += 1
            repo.record_event(session, EventKind.REPLY_FAILED, hub_id=item.hub_id, actor=worker, outbox_id=item.id,
                              message_id=item.source_message_id,
                              detail={**detail, "status": result.status.value}, now=at)
            return
    report.lost_claims += 1

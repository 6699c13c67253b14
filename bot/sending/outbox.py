"""Draining the outbox: claim the replies that are due, turn each row into an e-mail, hand it to the sender (SMTP or
the ``.eml`` writer), and record the outcome: sent; retried later with exponential backoff after a TEMPORARY
failure; failed for good after a PERMANENT one or too many attempts. Each claim is committed (state SENDING) just
before the SMTP conversation and each outcome straight after it, so at most one worker talks to the server about a
row. The window in which nobody can know whether the server took an e-mail is narrowed to SMTP DATA: a marker is
committed on the row just before it, so a send a dead worker (or a cut connection) left before DATA is simply sent
again, and only one cut after it is UNCERTAIN. An uncertain send is settled by the hub's mailbox where it can show
what went (``bot.worker.Worker.resolve_uncertain``: a copy in the Sent folder or a Bcc to the hub means sent, none
after the settle time means send again); otherwise the digest asks a person and ``requeue_reply`` sends it again.
Every recipient of every e-mail counts against the caps (``bot.sending.caps``); one over them waits. Which sender
takes a row is the caller's choice: one for everything, one per hub (``[hubs.smtp]``), or a ``pick`` function that
sees the row's hub, kind and key (alerts use it to go around a broken server). Each outcome's event names its cause
(``FailureCause``) so the health checks can tell a broken server from a mistyped address. A claimed row is read as
the few columns sending needs and its outcome written by one UPDATE, with no object of the ORM; the e-mail is put
together from its parts directly (``build_email``), the same e-mail the stdlib's ``set_content`` would make.
"""
from __future__ import annotations

import base64
import email.charset
import logging
import re
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from bot.config import SmtpSettings
from bot.faults import crash_point
from bot.oauth import TokenProvider
from bot.sending.caps import Caps, hold_until
from bot.sending.smtp import SendResult, SendStatus, SmtpConnection, write_eml
from rules.automatic import LOOP_HEADER
from storage import repository as repo
from storage.db import Database
from storage.models import EventKind, OutboxItem
from storage.recovery import mark_data_started, mark_uncertain, take_over_dead_claims, worker_identity

log = logging.getLogger(__name__)

Sender = Callable[[EmailMessage], SendResult]
M = TypeVar("M", bound=MIMEPart)


@dataclass(frozen=True)
class Routing:
    """What a ``pick`` function knows about a row when it chooses its sender."""

    hub_id: str
    kind: str
    dedupe_key: str


Pick = Callable[[Routing], Sender]
# Headers the row's free-form ``headers`` may not override: they carry threading and loop protection.
_PROTECTED = {"from", "to", "cc", "bcc", "subject", "message-id", "date", "in-reply-to", "references",
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
    partly_refused: int = 0   # sent, but the server refused some recipients (a Cc): listed for staff
    held: int = 0             # over a cap (per address per day, per hub per hour): waiting, not dropped

    def add(self, other: DrainReport) -> None:
        """Count another drain of the same cycle in this one."""
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


def backoff(attempts: int, policy: OutboxPolicy) -> timedelta:
    """Delay before the next try after ``attempts`` tries: base, 2x base, 4x base ... capped."""
    delay = policy.base_delay * (2 ** max(0, attempts - 1))
    return min(delay, policy.max_delay)


def _one_line(value: str) -> str:
    # A CR or LF in a header value would be header injection (and EmailMessage refuses it anyway).
    return re.sub(r"[\r\n]+", " ", value).strip()


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, keeping the class it makes for each header name (the stock one builds a new
    class for every header set) and the header it last made from a Content-Type or Content-Transfer-Encoding value:
    those are read again and again while a message is written (for every part, its type to choose how to write it,
    the boundary), and every part of every reply has one of a few such values. Addresses and subjects are not
    kept."""

    _KEPT = frozenset({"content-type", "content-transfer-encoding"})

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}
        self._parsed: dict[tuple[str, str], object] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: str):
        if name.lower() not in self._KEPT:
            return self[name](name, value)
        header = self._parsed.get((name, value))
        if header is None:
            if len(self._parsed) >= 64:   # bounded: each multipart's boundary is new
                self._parsed.clear()
            header = self._parsed[name, value] = self[name](name, value)
        return header


class _Policy(EmailPolicy):
    """``email.policy.default``, except that a header value of printable ASCII is stored as written, as a parsed
    message stores its headers, folded if it is too long for one line: the generator writes it out unchanged
    (parsing it and refolding it from the parse would write the same text) and it is parsed only when someone reads
    it. Parsing every value as it was set (an address list above all) and refolding it when written was most of the
    cost of a reply. Any other value (non-ASCII, a word too long for a line, CR or LF) goes through the standard
    header classes: RFC 2047 encoding, their folding, refusal of line breaks."""

    def header_store_parse(self, name, value):
        if isinstance(value, str) and value.isascii() and value.isprintable():
            folded = _folded(value, len(name) + 2, self.max_line_length)
            if folded is not None:
                return (name, folded)
        return super().header_store_parse(name, value)


def _folded(value: str, used: int, limit: int) -> str | None:
    """``value`` with a line break put in front of some of its spaces so that no line is longer than ``limit``, the
    first line having ``used`` characters before it; None if a word is too long for that. Unfolding (taking out the
    line breaks, RFC 5322 2.2.3) gives back ``value`` exactly, so this is the same header whatever the syntax."""
    if used + len(value) <= limit:
        return value
    lines: list[str] = []
    start, room = 0, limit - used
    while len(value) - start > room:
        cut = value.rfind(" ", start + 1, start + room + 1)
        if cut <= start or not value[start:cut].strip():
            return None
        lines.append(value[start:cut])
        start, room = cut, limit      # the next line starts with the space
    lines.append(value[start:])
    return "\n".join(lines)


_POLICY = _Policy(header_factory=_HeaderClasses())
_MAX_LINE = _POLICY.max_line_length
# Text whose lines are too long to send as they are: quoted-printable, or base64 when that is shorter (the choice
# EmailMessage.set_content makes); both through the stdlib's charset encoders.
_QP = email.charset.Charset("utf-8")
_QP.body_encoding = email.charset.QP
_BASE64 = email.charset.Charset("utf-8")
_BASE64.body_encoding = email.charset.BASE64


def build_email(item: OutboxItem) -> EmailMessage:
    """The e-mail for an outbox row (an ``OutboxItem``, or a claimed row with the same fields): text, with the
    HTML as its alternative, then any attachments. The parts are put together directly, as
    ``EmailMessage.set_content``/``add_alternative``/``add_attachment`` would make them (the same types, charset and
    transfer encodings) but without their rounds of writing and parsing the Content-Type; attachments, which only
    the digest has, still go through ``set_content``."""
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
    message["MIME-Version"] = "1.0"
    attachments = [_attachment(one) for one in item.attachments or ()]
    if not item.html and not attachments:
        return _text(message, item.text, "plain")
    body = _text(MIMEPart(policy=_POLICY), item.text, "plain")
    if item.html:
        html = _text(MIMEPart(policy=_POLICY), item.html, "html")
        body = _multipart(message if not attachments else MIMEPart(policy=_POLICY), "alternative", [body, html])
    if attachments:
        _multipart(message, "mixed", [body, *attachments])
    return message


def _text(part: M, text: str, subtype: str) -> M:
    """Make ``part`` a UTF-8 text part, encoded as ``set_content`` encodes it: 7bit or 8bit when every line fits in
    78 bytes (line ends made LF; each writer writes its own, and turns 8bit into base64 for a server without
    8BITMIME), otherwise quoted-printable or base64, whichever is shorter."""
    lines = text.encode("utf-8").splitlines()
    data = b"\n".join(lines) + b"\n"
    if max(map(len, lines), default=0) <= _MAX_LINE:
        cte = "7bit" if data.isascii() else "8bit"
        payload = data.decode("ascii", "surrogateescape")
    else:
        quoted, based = _QP.body_encode(data), _BASE64.body_encode(data)
        cte, payload = ("quoted-printable", quoted) if len(quoted) <= len(based) else ("base64", based)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = cte
    part.set_payload(payload)
    return part


def _attachment(attachment: Mapping[str, str]) -> MIMEPart:
    # Stored base64 so the row stays JSON; the digest's export is the only attachment the bot sends, so the
    # stdlib's set_content (RFC 2231 for a non-ASCII file name) is worth its cost here.
    maintype, _, subtype = str(attachment.get("content_type", "application/octet-stream")).partition("/")
    part = MIMEPart(policy=_POLICY)
    part.set_content(base64.b64decode(attachment["data"]), maintype=maintype, subtype=subtype or "octet-stream",
                     disposition="attachment", filename=_one_line(attachment["filename"]))
    return part


def _multipart(part: M, subtype: str, parts: list[MIMEPart]) -> M:
    """Make ``part`` a multipart of ``parts``, with a boundary chosen here (the generator would otherwise choose one
    while writing and rewrite the Content-Type to hold it) that, as the generator makes sure of its own, is in none
    of their contents. 24 random hex digits keep the header on one line."""
    contents = [one.get_payload() for one in parts for one in one.walk() if not one.is_multipart()]
    while True:
        boundary = "=_" + secrets.token_hex(12)
        if not any(boundary in content for content in contents):
            break
    part["Content-Type"] = f'multipart/{subtype}; boundary="{boundary}"'
    part.set_payload(parts)
    return part


def smtp_sender(settings: SmtpSettings, *, token_provider: TokenProvider | None = None) -> Sender:
    """An SMTP sender keeping its connection across a drain (``drain_outbox`` closes it at the end)."""
    return SmtpConnection(settings, token_provider=token_provider)


def eml_sender(directory: str | Path) -> Sender:
    def send(message: EmailMessage) -> SendResult:
        path = write_eml(directory, message)
        return SendResult(SendStatus.SENT, None, path.name)
    return send


def default_worker_id() -> str:
    """``host:pid:start``, so a worker on the same host can tell at once that this one is gone
    (``storage.recovery.take_over_dead_claims``)."""
    return worker_identity()


def drain_outbox(db: Database, sender: Sender, *, worker: str | None = None, now: datetime | None = None,
                 policy: OutboxPolicy = OutboxPolicy(), max_items: int = 5000,
                 hub_senders: Mapping[str, Sender] | None = None, pick: Pick | None = None,
                 bcc: Mapping[str, str] | None = None, caps: Caps = Caps(),
                 hub_ids: Sequence[str] | None = None) -> DrainReport:
    """Send everything due (up to ``max_items`` per call; with ``hub_ids``, only those hubs' e-mails and alerts, for
    a worker run for a group of hubs). ``hub_senders`` lets a hub use its own sender; others
    use ``sender``; ``pick``, when given, chooses for every row instead. ``now`` fixes the clock (tests,
    ``--now``); otherwise the real time is read at each step.

    Rows are claimed one at a time, just before their own SMTP conversation: a row marked SENDING is always the
    one being sent, so a crash leaves exactly that row UNCERTAIN and the rest simply PENDING."""
    worker = worker or default_worker_id()
    report = DrainReport()
    used = {id(one): one for one in (sender, *(hub_senders or {}).values())}
    with db.session() as session:
        # A dead worker on this host: its sends that never reached DATA go again now; the rest are uncertain.
        taken = take_over_dead_claims(session, host=socket.gethostname(), actor=worker, now=now)
        report.uncertain += taken.uncertain
        for item in repo.park_interrupted_sends(session, now=now or repo.utcnow(), lease=policy.lease):
            report.uncertain += 1
            repo.record_event(session, EventKind.REPLY_UNCERTAIN, hub_id=item.hub_id, actor=worker, outbox_id=item.id,
                              message_id=item.source_message_id, application_id=item.application_id,
                              detail={"kind": item.kind}, now=now)
    with db.session() as session:
        work = _claim_next(session, worker, now, policy, caps, report, hub_ids, max_items)
    while work is not None:
        row, message = work
        report.claimed += 1
        routing = Routing(row.hub_id, row.kind, row.dedupe_key)
        chosen = pick(routing) if pick else (hub_senders or {}).get(row.hub_id, sender)
        used.setdefault(id(chosen), chosen)
        if bcc and bcc.get(row.hub_id):
            # The hub's own copy: when it lands in the mailbox it proves the send (storage.recovery).
            message["Bcc"] = bcc[row.hub_id]
        try:
            result = _send(chosen, message, _data_marker(db, row.id, worker, now))
        except Exception as exc:  # noqa: BLE001 - a sender bug must not leave the row stuck in SENDING
            log.exception("sender raised for outbox row %s", row.id)
            result = SendResult(SendStatus.TEMPORARY, None, f"sender error: {type(exc).__name__}")
        with db.session() as session:
            # The outcome of this send and the claim of the next row share a commit (one commit per e-mail); at
            # every commit the only row of ours in SENDING is the one about to be sent.
            _record(session, row, worker, result, now, policy, report)
            work = (_claim_next(session, worker, now, policy, caps, report, hub_ids, max_items - report.claimed)
                    if report.claimed < max_items else None)
    for one in used.values():
        close = getattr(one, "close", None)
        if close is not None:
            close()
    # Every 30 seconds an empty drain: only worth a line at DEBUG.
    log.log(logging.INFO if report.claimed or report.uncertain else logging.DEBUG,
            "outbox drained: claimed=%d sent=%d retried=%d failed=%d", report.claimed, report.sent,
            report.retried, report.failed)
    return report


# A claimed row (storage.repository.CLAIMED_COLUMNS, read by name: no ORM object) and its e-mail.
_Work = tuple[Any, EmailMessage]


def _claim_next(session: Session, worker: str, now: datetime | None, policy: OutboxPolicy, caps: Caps,
                report: DrainReport, hub_ids: Sequence[str] | None, tries: int) -> _Work | None:
    """Claim the next due row that no cap holds back and build its e-mail (the SMTP work happens outside any
    transaction); rows a cap holds go back to waiting. None when nothing is due."""
    for _ in range(max(tries, 0)):
        claim_time = now or repo.utcnow()
        row = repo.claim_next_reply(session, worker=worker, now=claim_time, lease=policy.lease, hub_ids=hub_ids)
        if row is None:
            return None
        # Every recipient of every e-mail counts against the caps; one over them waits (bot.sending.caps).
        if _held(session, row, caps, claim_time, worker, report):
            continue
        return row, build_email(row)
    return None


def _held(session: Session, row: Any, caps: Caps, now: datetime, worker: str, report: DrainReport) -> bool:
    hold = hold_until(session, row, caps, now)
    if hold is None:
        return False
    # Back to waiting, and the claim does not count as an attempt: nothing was tried.
    repo.hold_back(session, row, until=hold.until)
    report.held += 1
    repo.record_event(session, EventKind.REPLY_SUPPRESSED, hub_id=row.hub_id, actor=worker, outbox_id=row.id,
                      detail={"reason": hold.reason, "limit": hold.limit, "until": hold.until.isoformat(),
                              "kind": row.kind}, now=now)
    return True


def _send(sender: Sender, message: EmailMessage, before_data: Callable[[], None]) -> SendResult:
    if getattr(sender, "supports_before_data", False):
        return sender(message, before_data=before_data)  # type: ignore[call-arg]
    return sender(message)


def _data_marker(db: Database, item_id: int, worker: str, now: datetime | None) -> Callable[[], None]:
    """Commit "DATA is starting" on the row before the message itself goes: a crash before this line left
    nothing at the server (safe to send again), one after it may have (the hub's mailbox decides)."""
    def mark() -> None:
        with db.session() as session:
            mark_data_started(session, item_id, worker=worker, now=now or repo.utcnow())
        crash_point("after_data_marker")
    return mark


def _record(session: Session, row: Any, worker: str, result: SendResult, now: datetime | None,
            policy: OutboxPolicy, report: DrainReport) -> None:
    """Record the outcome of a send on its row, each with one conditional UPDATE (by id, still SENDING and still
    claimed by us): no UPDATE means our lease ran out and another worker took the row, whose outcome wins."""
    at = now or repo.utcnow()
    attempts = row.attempts
    detail = {"kind": row.kind, "attempt": attempts, "code": result.code,
              "cause": result.cause.value if result.cause else None}
    if result.status is SendStatus.SENT:
        # Sent, but not to everyone (a Cc the server refused): kept on the row for the digest.
        note = "partly refused: " + "; ".join(result.refused) if result.refused else None
        if not repo.mark_sent(session, row, now=at, note=note):
            report.lost_claims += 1
            return
        report.sent += 1
        if result.refused:
            report.partly_refused += 1
        repo.record_event(session, EventKind.REPLY_SENT, hub_id=row.hub_id, actor=worker, outbox_id=row.id,
                          message_id=row.source_message_id, application_id=row.application_id,
                          detail={**detail, "refused_recipients": result.refused_recipients}, now=at)
    elif result.status is SendStatus.UNCERTAIN:
        # The answer to the final "." was lost: it may have gone. Never sent again blindly; the hub's mailbox
        # (a stored copy of it, or none after the settle time) or a person decides. Rare: the ORM row is loaded for
        # storage.recovery.mark_uncertain.
        item = session.get(OutboxItem, row.id)
        if item is None or item.claimed_by != worker or not mark_uncertain(session, item, error=result.detail):
            report.lost_claims += 1
            return
        report.uncertain += 1
        repo.record_event(session, EventKind.REPLY_UNCERTAIN, hub_id=row.hub_id, actor=worker,
                          outbox_id=row.id, message_id=row.source_message_id,
                          application_id=row.application_id, detail=detail, now=at)
    elif result.status is SendStatus.TEMPORARY and attempts < policy.max_attempts:
        delay = backoff(attempts, policy)
        if not repo.schedule_retry(session, row, error=result.detail, delay=delay, now=at):
            report.lost_claims += 1
            return
        report.retried += 1
        repo.record_event(session, EventKind.REPLY_RETRY, hub_id=row.hub_id, actor=worker, outbox_id=row.id,
                          message_id=row.source_message_id,
                          detail={**detail, "delay_seconds": int(delay.total_seconds())}, now=at)
    else:
        # A refusal (5xx) means the address does not work; running out of retries means our side failed.
        refused = result.status is SendStatus.PERMANENT
        error = result.detail if refused else f"gave up after {attempts} attempts: {result.detail}"
        if not repo.mark_failed(session, row, error=error, refused=refused, now=at):
            report.lost_claims += 1
            return
        report.failed += 1
        repo.record_event(session, EventKind.REPLY_FAILED, hub_id=row.hub_id, actor=worker, outbox_id=row.id,
                          message_id=row.source_message_id,
                          detail={**detail, "status": result.status.value}, now=at)

"""Everything the bot does to its database, as small functions that take a ``Session`` and leave committing to the
caller. Storing a fetched message is idempotent (by mailbox location, and by identical bytes within a hub);
claiming work (messages to process, replies to send) is a conditional UPDATE, with ``SELECT ... FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so two workers never hold the same row, and claims are leases that expire so a crashed
worker's row is taken again later. Callers should commit a claim before doing the slow work (parsing, SMTP) so the
lease and the attempt count survive a crash. Nothing here logs or records names or addresses outside the rows
that need them.
"""
from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from parsers.email import header_block
from rules.automatic import LOOP_HEADER
from rules.verdict import Verdict
from storage.counters import record_recipients
from storage.inserts import flushed_connection, insert_once, update_by_id, update_params, update_row
from storage.models import (
    Application,
    ApplicationStatus,
    ApplicationVersion,
    Event,
    EventKind,
    JobClaim,
    MailboxState,
    Message,
    MessageState,
    OutboxItem,
    OutboxState,
    Signatory,
)
from storage.sanitize import db_text
from templates import EmailKind

DEFAULT_MESSAGE_LEASE = timedelta(minutes=15)
DEFAULT_SEND_LEASE = timedelta(minutes=10)
# A message whose processing failed (or whose worker died) this many times is quarantined for a person.
MAX_MESSAGE_ATTEMPTS = 3
# last_error of a reply taken over from a worker that stopped mid-send: the one case that may send twice.
INTERRUPTED_MARKER = "the worker stopped while sending: it may or may not have been delivered"

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# ---- mailbox ledger -------------------------------------------------------------------------------------------

def get_mailbox_state(session: Session, hub_id: str, folder: str, *, now: datetime | None = None) -> MailboxState:
    lookup = select(MailboxState).where(MailboxState.hub_id == hub_id, MailboxState.folder == folder)
    found = session.scalar(lookup)
    if found is not None:
        return found
    row = MailboxState(hub_id=hub_id, folder=folder, uidvalidity=None, last_uid=0, updated_at=now or utcnow())
    return insert_once(session, row, lambda: lookup)[0]


def advance_mailbox(session: Session, state: MailboxState, *, uidvalidity: int, uid: int,
                    now: datetime | None = None) -> None:
    """Record that everything up to ``uid`` under ``uidvalidity`` is handled. A new UIDVALIDITY restarts the count:
    the old UIDs mean nothing any more."""
    if state.uidvalidity != uidvalidity:
        state.uidvalidity = uidvalidity
        state.last_uid = uid
    else:
        state.last_uid = max(state.last_uid, uid)
    state.updated_at = now or utcnow()


# ---- raw messages ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoreResult:
    message: Message
    created: bool                   # False: this exact message (location or bytes) was already stored


def _header_block(raw: bytes) -> Any:
    """The message's headers, parsed from its header block only (``parsers.email.header_block``)."""
    return BytesHeaderParser(policy=compat32).parsebytes(header_block(raw), headersonly=True)


def extract_message_id(raw: bytes) -> str | None:
    return _message_id_of(_header_block(raw))


def _message_id_of(headers: Any) -> str | None:
    value = headers.get("Message-ID")
    if value is None:
        return None
    # Escaped before it is cut (storage.sanitize): NULs must not push it past the column's 998 characters. A
    # longer one keeps a digest of the whole, so two long IDs sharing a prefix are not taken for one e-mail.
    value = db_text(" ".join(str(value).split()))
    if len(value) > 998:
        value = f"{value[:900]}#{hashlib.sha256(value.encode()).hexdigest()}"
    return value or None


def extract_threading(raw: bytes) -> tuple[str | None, bool]:
    """The first Message-ID in In-Reply-To, and whether the message carries our own loop header (a copy of an
    e-mail the bot sent, come back through Bcc or a Sent folder)."""
    return _threading_of(_header_block(raw))


def _threading_of(headers: Any) -> tuple[str | None, bool]:
    value = " ".join(str(headers.get("In-Reply-To") or "").split())
    first = value[value.find("<"):value.find(">") + 1] if "<" in value and ">" in value else value
    return (db_text(first)[:998] or None), headers.get(LOOP_HEADER) is not None


def store_raw_message(session: Session, *, hub_id: str, folder: str, uidvalidity: int, uid: int, raw: bytes,
                      received_at: datetime | None, now: datetime | None = None,
                      size: int | None = None) -> StoreResult:
    """Store one fetched message unless it is already here. Already here means the same mailbox location, or the
    same bytes in the same hub (what a UIDVALIDITY reset or a copy in a second folder looks like). A different
    message that reuses a Message-ID already seen in this hub is stored; the workflow finds the earlier one and
    does not answer twice. ``size`` is the whole message's size when ``raw`` is only its headers (a message too
    large to download).

    One statement for a new message: the insert, which the unique keys turn into nothing when the message is here
    already (``INSERT ... ON CONFLICT DO NOTHING``: no row is written, dead or alive); only then is it looked up."""
    sha = hashlib.sha256(raw).hexdigest()
    headers = _header_block(raw)   # parsed once for the Message-ID and the threading
    in_reply_to, own_copy = _threading_of(headers)
    row = Message(hub_id=hub_id, folder=folder, uidvalidity=uidvalidity, uid=uid, message_id=_message_id_of(headers),
                  in_reply_to=in_reply_to, own_copy=own_copy, sha256=sha, raw=raw,
                  size=size if size is not None else len(raw), received_at=received_at, stored_at=now or utcnow(),
                  state=MessageState.STORED, attempts=0)
    stored, created = insert_once(session, row, lambda: _STORED_HERE_OR_SAME.params(
        hub=hub_id, in_folder=folder, in_uidvalidity=uidvalidity, at_uid=uid, digest=sha))
    return StoreResult(stored, created)


def _here_or_same() -> Any:
    """The stored message at this location or with these bytes in this hub: one lookup for both, this location
    first (the cursor was behind), else the same bytes found elsewhere. Built once, its values passed each time."""
    here = and_(Message.folder == bindparam("in_folder"), Message.uidvalidity == bindparam("in_uidvalidity"),
                Message.uid == bindparam("at_uid"))
    return (select(Message).where(Message.hub_id == bindparam("hub"), or_(here, Message.sha256 == bindparam("digest")))
            .order_by(case((here, 0), else_=1)).limit(1))


_STORED_HERE_OR_SAME = _here_or_same()


def find_duplicates(session: Session, *, hub_id: str, message_id: str | None = None, sha256: str | None = None,
                    exclude_id: int | None = None) -> list[Message]:
    """Earlier messages in the same hub with this Message-ID or these bytes (never across hubs)."""
    conditions = []
    if message_id:
        conditions.append(Message.message_id == message_id)
    if sha256:
        conditions.append(Message.sha256 == sha256)
    if not conditions:
        return []
    query = select(Message).where(Message.hub_id == hub_id, or_(*conditions)).order_by(Message.id)
    if exclude_id is not None:
        query = query.where(Message.id != exclude_id)
    return list(session.scalars(query))


def claim_next_message(session: Session, *, worker: str, now: datetime | None = None, hub_id: str | None = None,
                       lease: timedelta = DEFAULT_MESSAGE_LEASE,
                       max_attempts: int = MAX_MESSAGE_ATTEMPTS,
                       exclude: Sequence[int] = (), hub_ids: Sequence[str] | None = None) -> Message | None:
    """Take the oldest stored message nobody holds (``claim_messages`` for one)."""
    claimed = claim_messages(session, worker=worker, now=now, hub_id=hub_id, lease=lease, max_attempts=max_attempts,
                             exclude=exclude, hub_ids=hub_ids)
    return claimed[0] if claimed else None


def claim_messages(session: Session, *, worker: str, now: datetime | None = None, limit: int = 1,
                   batch_bytes: int = 0, hub_id: str | None = None, lease: timedelta = DEFAULT_MESSAGE_LEASE,
                   max_attempts: int = MAX_MESSAGE_ATTEMPTS, exclude: Sequence[int] = (),
                   hub_ids: Sequence[str] | None = None) -> list[Message]:
    """Take the oldest stored messages nobody holds (or whose holder's lease ran out), of ``hub_id`` or of one of
    ``hub_ids`` when given, in the order they were stored: the first, and with it up to ``limit`` in all while
    they are new and come to at most ``batch_bytes`` together. A message tried before (its worker died on it, or
    its processing failed) is only ever taken alone: if it is what kills a worker, it must not cost the messages
    beside it their attempts. A message claimed more than ``max_attempts`` times has crashed workers repeatedly;
    it is quarantined instead of being handed out again."""
    now = now or utcnow()
    claim = _message_claim(_is_postgres(session), hub_id is not None, hub_ids is not None)
    params = {"stored": MessageState.STORED, "expired": now - lease, "worker": worker, "now": now,
              "one_hub": hub_id, "hub_ids": list(hub_ids or ()), "exclude": list(exclude),
              "limit": max(limit, 1), "batch_bytes": batch_bytes}
    for _ in range(100):  # bounded: each turn either claims, quarantines, or finds nothing
        claimed = sorted(session.scalars(claim, params, execution_options={
            "populate_existing": True, "synchronize_session": False}).all(), key=lambda m: m.id)
        if not claimed:
            return []
        message = claimed[0]
        if message.attempts > max_attempts:   # tried before, so claimed alone
            mark_quarantined(session, message, error=f"gave up after {max_attempts} attempts", now=now)
            record_event(session, EventKind.MESSAGE_QUARANTINED, hub_id=message.hub_id, actor=worker,
                         message_id=message.id, detail={"reason": "attempts", "attempts": message.attempts},
                         now=now)
            continue
        return claimed
    return []


@functools.cache
def _message_claim(postgres: bool, one_hub: bool, some_hubs: bool) -> Any:
    """The claim as one statement, built once (building it costs more than running it; its parameters are named
    unlike any column, which an UPDATE would take as values to set): UPDATE the chosen claimable rows and RETURN
    them. The candidates are the next ``limit`` claimable rows; chosen are the first, then the following ones while
    none of them has been tried before and their sizes add up to at most ``batch_bytes`` (running sums over the
    candidates in order, so a batch is always a run of consecutive messages: a reply is never read before the
    e-mail it answers). SKIP LOCKED on PostgreSQL, so workers do not queue behind each other's claims; SQLite runs
    one writer at a time and the WHERE is checked again."""
    claimable = and_(Message.state == bindparam("stored"),
                     or_(Message.claimed_at.is_(None), Message.claimed_at < bindparam("expired")),
                     Message.id.not_in(bindparam("exclude", expanding=True)))
    if one_hub:
        claimable = and_(claimable, Message.hub_id == bindparam("one_hub"))
    if some_hubs:
        # A worker run for a group of hubs processes its own hubs' mail; another group's worker does the rest.
        claimable = and_(claimable, Message.hub_id.in_(bindparam("hub_ids", expanding=True)))
    # Ordered as ix_messages_state is (state, id), so the first rows are read off the index whatever the planner
    # believes of the table: after a burst of mail, stale statistics made PostgreSQL collect and sort every
    # entry, the dead ones of messages claimed since included, for every claim.
    candidates = (select(Message.id, Message.size, Message.attempts).where(claimable)
                  .order_by(Message.state, Message.id).limit(bindparam("limit")))
    if postgres:
        candidates = candidates.with_for_update(skip_locked=True)
    candidates = candidates.subquery("candidates")
    in_order = {"order_by": candidates.c.id}
    running = select(
        candidates.c.id,
        func.row_number().over(**in_order).label("position"),
        func.sum(case((candidates.c.attempts > 0, 1), else_=0)).over(**in_order).label("tried"),
        func.sum(candidates.c.size).over(**in_order).label("bytes"),
    ).subquery("running")
    chosen = select(running.c.id).where(or_(running.c.position == 1, and_(
        running.c.tried == 0, running.c.bytes <= bindparam("batch_bytes"))))
    return (update(Message).where(Message.id.in_(chosen), claimable)
            .values(claimed_by=bindparam("worker", type_=Message.claimed_by.type),
                    claimed_at=bindparam("now", type_=Message.claimed_at.type), attempts=Message.attempts + 1)
            .returning(Message))


def mark_processed(session: Session, message: Message, *, now: datetime | None = None,
                   verdict: Verdict | None = None, application_id: int | None = None) -> None:
    """The message is done, with its ``verdict`` and the application it went to where given: one UPDATE."""
    changes: dict[str, Any] = {}
    if verdict is not None:
        changes = {"verdict_status": verdict.status, "verdict": verdict.to_record(), "application_id": application_id}
    update_row(session, message, state=MessageState.PROCESSED, processed_at=now or utcnow(), error=None,
               claimed_by=None, claimed_at=None, **changes)


def mark_quarantined(session: Session, message: Message, *, error: str, now: datetime | None = None) -> None:
    message.state = MessageState.QUARANTINED
    message.processed_at = now or utcnow()
    message.error = error
    message.claimed_by = None
    message.claimed_at = None


def release_message(session: Session, message: Message, *, error: str | None = None) -> None:
    """Give a claimed message back for another try now (e.g. after a transient failure)."""
    message.claimed_by = None
    message.claimed_at = None
    message.error = error


# ---- applications ---------------------------------------------------------------------------------------------

def get_or_create_application(session: Session, *, hub_id: str, programme: str, school_urn: str,
                              school_name: str | None, status: ApplicationStatus, now: datetime | None = None,
                              sender_domain: str | None = None) -> tuple[Application, bool]:
    now = now or utcnow()
    # No look first: callers ask when they found none, and the unique key answers the race (storage/inserts.py).
    def lookup() -> Any:
        return select(Application).where(Application.hub_id == hub_id, Application.programme == programme,
                                         Application.school_urn == school_urn)

    row = Application(hub_id=hub_id, programme=programme, school_urn=school_urn, school_name=school_name,
                      status=status, created_at=now, updated_at=now, sender_domain=sender_domain)
    application, created = insert_once(session, row, lookup)
    if created:
        # A row inserted a moment ago has no versions or signatories yet: say so rather than have the ORM ask.
        set_committed_value(application, "signatories", [])
        set_committed_value(application, "versions", [])
    return application, created


def add_application_version(session: Session, application: Application, *, message_id: int | None,
                            fields: dict[str, Any], verdict: dict[str, Any], status: ApplicationStatus,
                            flags: Sequence[Any] = (), now: datetime | None = None,
                            also: Mapping[str, Any] | None = None) -> tuple[ApplicationVersion, bool]:
    """Add what one message said and make it the application's latest state, setting ``also`` (more of the
    application's columns) in the same UPDATE; reprocessing the same message returns the version it already made
    and changes nothing."""
    now = now or utcnow()
    def lookup() -> Any:
        return select(ApplicationVersion).where(ApplicationVersion.application_id == application.id,
                                                ApplicationVersion.message_id == message_id)

    # Reprocessing finds its version through the unique (application, message) key: no look first.
    row = ApplicationVersion(application_id=application.id, message_id=message_id, fields=dict(fields),
                             verdict=dict(verdict), status=status, flags=list(flags), created_at=now)
    version, created = insert_once(session, row, lookup)
    if created:
        changes: dict[str, Any] = {**(also or {}), "latest_version_id": version.id, "status": status,
                                   "updated_at": now}
        school_name = fields.get("school.name")
        if isinstance(school_name, str) and school_name:
            changes["school_name"] = school_name
        update_row(session, application, **changes)
        if "versions" in application.__dict__:   # a loaded list stays true; an unloaded one loads when asked
            set_committed_value(application, "versions", [*application.versions, version])
    return version, created


@dataclass(frozen=True)
class SignatoryCopy:
    """A signatory as one e-mail names them: the form's name and address for the role, and whether they were
    copied."""

    role: str
    name: str | None
    email: str | None
    copied: bool


def upsert_signatories(session: Session, application: Application, people: Iterable[SignatoryCopy]) -> None:
    """The application's signatories for these roles, created or updated: new roles in one INSERT, changed ones
    an UPDATE each, against the application's loaded signatories (one query per application, none for one just
    created). Two workers adding the same role at once collide on the unique (application, role) key, and the
    loser's message is simply processed again."""
    held = {s.role: s for s in application.signatories}
    new_rows: list[dict[str, Any]] = []
    for person in people:
        found = held.get(person.role)
        if found is None:
            new_rows.append({"application_id": application.id, "role": person.role, "name": person.name,
                             "email": person.email, "copied": person.copied, "confirmed": False})
            continue
        changes: dict[str, Any] = {}
        if person.email and found.email and person.email.lower() != found.email.lower():
            # A different person now holds the role: their predecessor's copy or confirmation does not carry over.
            changes = {"confirmed": False, "confirmed_by_message_id": None, "confirmed_at": None, "copied": False}
        copied = changes.get("copied", found.copied) or person.copied
        changes.update(name=person.name, email=person.email, copied=copied)
        if any(getattr(found, key) != value for key, value in changes.items()):
            update_row(session, found, **changes)
    if new_rows:
        flushed_connection(session).execute(_NEW_SIGNATORY, new_rows)
        # Read again when next asked for, with the new rows' ids.
        session.expire(application, ["signatories"])


_NEW_SIGNATORY = insert(Signatory)


def confirm_signatory(session: Session, signatory: Signatory, *, message_id: int | None,
                      now: datetime | None = None) -> None:
    if signatory.confirmed:
        return
    update_row(session, signatory, confirmed=True, confirmed_by_message_id=message_id, confirmed_at=now or utcnow())


# ---- outbox ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnqueueResult:
    item: OutboxItem
    created: bool


def new_message_id(domain: str) -> str:
    """A Message-ID for a new outbox row: 128 random bits, chosen once when the row is queued and stored with it, so
    a resend after a crash carries the same ID while no two e-mails ever share one, even after the database is
    reset (IDs derived from keys or row ids would repeat), and nobody can guess the ID of a reply to forge an "I
    confirm" in its thread."""
    return f"<hubbot.{secrets.token_hex(16)}@{domain or 'hubbot.invalid'}>"


def enqueue_reply(session: Session, *, hub_id: str, kind: EmailKind, from_addr: str, to: Iterable[str],
                  subject: str, text: str, cc: Iterable[str] = (), html: str | None = None,
                  source_message_id: int | None = None, application_id: int | None = None,
                  dedupe_key: str | None = None, headers: dict[str, str] | None = None,
                  in_reply_to: str | None = None, references: str | None = None,
                  message_id: str | None = None, now: datetime | None = None,
                  attachments: Sequence[dict[str, str]] | None = None) -> EnqueueResult:
    """Queue one e-mail, once. The key defaults to "<source message row id>:<kind>", i.e. one reply of each kind
    per received message; jobs with no source message (reminders, digests) must pass ``dedupe_key``.
    ``attachments`` are {"filename", "content_type", "data" (base64)} dicts (the digest's export)."""
    if dedupe_key is None:
        if source_message_id is None:
            raise ValueError("enqueue_reply needs source_message_id or an explicit dedupe_key")
        dedupe_key = f"msg:{source_message_id}:{EmailKind(kind).value}"
    # Queued before (a message read again) is found through the unique dedupe key: no look first.
    now = now or utcnow()
    domain = parseaddr(from_addr)[1].rpartition("@")[2]
    row = OutboxItem(hub_id=hub_id, kind=kind, dedupe_key=dedupe_key, source_message_id=source_message_id,
                     application_id=application_id, from_addr=from_addr, to=list(to), cc=list(cc),
                     subject=subject, text=text, html=html, headers=dict(headers or {}),
                     message_id=message_id or new_message_id(domain),
                     in_reply_to=in_reply_to, references=references, state=OutboxState.PENDING, attempts=0,
                     next_attempt_at=now, created_at=now, attachments=list(attachments) if attachments else None)
    item, created = insert_once(session, row, lambda: select(OutboxItem).where(OutboxItem.dedupe_key == dedupe_key))
    if created:
        record_recipients(session, item)   # the daily cap counts it from now on (storage/counters.py)
    return EnqueueResult(item, created)


def outbox_has(session: Session, dedupe_key: str) -> bool:
    """Whether an e-mail with this key was ever queued (keys are unique: a reminder or digest goes out once)."""
    return session.scalar(select(OutboxItem.id).where(OutboxItem.dedupe_key == dedupe_key)) is not None


def claim_due_replies(session: Session, *, worker: str, now: datetime | None = None, limit: int = 10,
                      lease: timedelta = DEFAULT_SEND_LEASE, hub_ids: Sequence[str] | None = None) -> list[OutboxItem]:
    """Claim up to ``limit`` pending replies that are due, marking them SENDING; with ``hub_ids``, only those hubs'
    e-mails (the caller adds the alerts' own hub id), for a worker run for a group of hubs. A row left in SENDING
    by a worker that died is never claimed again here: see ``park_interrupted_sends``."""
    now = now or utcnow()
    claim = _reply_claim(_is_postgres(session), hub_ids is not None, False)
    params = _claim_params(worker, now, hub_ids)
    claimed: list[OutboxItem] = []
    for _ in range(limit):
        item = session.scalars(claim, params, execution_options={"populate_existing": True,
                                                                 "synchronize_session": False}).one_or_none()
        if item is None:
            break
        claimed.append(item)
    return sorted(claimed, key=lambda i: i.id)


def claim_next_reply(session: Session, *, worker: str, now: datetime | None = None,
                     lease: timedelta = DEFAULT_SEND_LEASE, hub_ids: Sequence[str] | None = None) -> Any | None:
    """Claim the next due reply as ``claim_due_replies`` does, for a drain that sends each row as soon as it claims
    it: the claimed row's columns that sending it needs (``CLAIMED_COLUMNS``, read by name) straight from the
    UPDATE's RETURNING, with no ORM object to build and track. None when nothing is due."""
    claim = _reply_claim(_is_postgres(session), hub_ids is not None, True)
    return flushed_connection(session).execute(claim, _claim_params(worker, now or utcnow(), hub_ids)).one_or_none()


# What claim_next_reply returns of a row: what the e-mail is made of, where it goes, and who holds it.
CLAIMED_COLUMNS = (OutboxItem.id, OutboxItem.hub_id, OutboxItem.kind, OutboxItem.dedupe_key,
                   OutboxItem.source_message_id, OutboxItem.application_id, OutboxItem.attempts,
                   OutboxItem.claimed_by, OutboxItem.from_addr, OutboxItem.to, OutboxItem.cc, OutboxItem.subject,
                   OutboxItem.text, OutboxItem.html, OutboxItem.headers, OutboxItem.message_id,
                   OutboxItem.in_reply_to, OutboxItem.references, OutboxItem.created_at, OutboxItem.attachments)


def _claim_params(worker: str, now: datetime, hub_ids: Sequence[str] | None) -> dict[str, Any]:
    return {"pending": OutboxState.PENDING, "sending": OutboxState.SENDING, "now": now, "worker": worker,
            "hub_ids": list(hub_ids or ())}


@functools.cache
def _reply_claim(postgres: bool, some_hubs: bool, columns: bool) -> Any:
    """One row's claim as one statement, built once: UPDATE the first due row and RETURN it, as an ORM object or
    (``columns``) as ``CLAIMED_COLUMNS`` (SKIP LOCKED on PostgreSQL, so workers take different rows; SQLite runs one
    writer at a time and the WHERE is checked again)."""
    due = and_(OutboxItem.state == bindparam("pending"),
               OutboxItem.next_attempt_at <= bindparam("now", type_=OutboxItem.next_attempt_at.type))
    if some_hubs:
        due = and_(due, OutboxItem.hub_id.in_(bindparam("hub_ids", expanding=True)))
    # Ordered as ix_outbox_due is (state, next_attempt_at): the first row is read off the index (see _message_claim).
    first = (select(OutboxItem.id).where(due).order_by(OutboxItem.state, OutboxItem.next_attempt_at, OutboxItem.id)
             .limit(1))
    if postgres:
        first = first.with_for_update(skip_locked=True)
    return (update(OutboxItem).where(OutboxItem.id == first.scalar_subquery(), due)
            .values(state=bindparam("sending", type_=OutboxItem.state.type),
                    claimed_by=bindparam("worker", type_=OutboxItem.claimed_by.type),
                    claimed_at=bindparam("now", type_=OutboxItem.claimed_at.type),
                    attempts=OutboxItem.attempts + 1)
            .returning(*(CLAIMED_COLUMNS if columns else (OutboxItem,))))


def park_interrupted_sends(session: Session, *, now: datetime | None = None,
                           lease: timedelta = DEFAULT_SEND_LEASE) -> list[OutboxItem]:
    """Rows whose sender died mid-send (SENDING past the lease) become UNCERTAIN. The server may have accepted
    the e-mail before the crash, and sending it again could answer a school twice, so a person decides (the
    digest lists them; ``requeue_reply`` sends again)."""
    now = now or utcnow()
    stale = and_(OutboxItem.state == OutboxState.SENDING, OutboxItem.claimed_at < now - lease)
    ids = list(session.scalars(select(OutboxItem.id).where(stale)))
    parked = []
    for item_id in ids:
        result = session.execute(
            update(OutboxItem).where(OutboxItem.id == item_id, stale)
            .values(state=OutboxState.UNCERTAIN, last_error=INTERRUPTED_MARKER, claimed_by=None, claimed_at=None)
            .execution_options(synchronize_session=False))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            item = session.get(OutboxItem, item_id, populate_existing=True)
            assert item is not None
            parked.append(item)
    return parked


def requeue_reply(session: Session, item: OutboxItem, *, now: datetime | None = None) -> bool:
    """Send an UNCERTAIN or FAILED reply again (a person checked it was not delivered), or one the digest lists as
    retrying (PENDING after a failed attempt) now instead of after its backoff."""
    result = session.execute(
        update(OutboxItem).where(OutboxItem.id == item.id, or_(
            OutboxItem.state.in_([OutboxState.UNCERTAIN, OutboxState.FAILED]),
            and_(OutboxItem.state == OutboxState.PENDING, OutboxItem.attempts > 0)))
        .values(state=OutboxState.PENDING, next_attempt_at=now or utcnow(), claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False))
    session.refresh(item)
    return result.rowcount == 1  # type: ignore[attr-defined]


def _finish(session: Session, item: Any, **values: Any) -> bool:
    """Apply an outcome only if this worker still holds the claim: if our lease expired and someone else took the
    row, their outcome wins. ``item`` is an ``OutboxItem`` or a row from ``claim_next_reply`` (its ``id`` and
    ``claimed_by`` are all this reads)."""
    result = flushed_connection(session).execute(_outcome(frozenset(values)), {
        **update_params(item.id, values), "holder": item.claimed_by, "sending": OutboxState.SENDING})
    done = result.rowcount == 1  # type: ignore[attr-defined]
    if isinstance(item, OutboxItem) and item in session:
        if done:
            for key, value in values.items():   # what the row now holds, without reading it back
                set_committed_value(item, key, value)
        else:
            session.refresh(item)
    return done


@functools.cache
def _outcome(names: frozenset[str]) -> Any:
    """The conditional UPDATE that records an outcome setting these columns (``update_by_id``, only while the row
    is still SENDING and held by the worker that claimed it), built once per kind of outcome."""
    return update_by_id(OutboxItem.__table__, names).where(
        OutboxItem.state == bindparam("sending", type_=OutboxItem.state.type),
        OutboxItem.claimed_by == bindparam("holder", type_=OutboxItem.claimed_by.type))


def mark_sent(session: Session, item: Any, *, now: datetime | None = None, note: str | None = None) -> bool:
    """Sent. ``note`` is kept as the row's last error (a Cc the server refused while taking the rest)."""
    return _finish(session, item, state=OutboxState.SENT, sent_at=now or utcnow(),
                   last_error=note[:2000] if note is not None else None, claimed_by=None, claimed_at=None)


def mark_failed(session: Session, item: Any, *, error: str, refused: bool = False,
                now: datetime | None = None) -> bool:
    """Failed for good: ``refused`` when the receiving server refused it (the address does not work), otherwise
    our side gave up (retries ran out)."""
    return _finish(session, item, state=OutboxState.FAILED, last_error=error[:2000], refused=refused,
                   claimed_by=None, claimed_at=None)


def schedule_retry(session: Session, item: Any, *, error: str, delay: timedelta,
                   now: datetime | None = None) -> bool:
    return _finish(session, item, state=OutboxState.PENDING, next_attempt_at=(now or utcnow()) + delay,
                   last_error=error[:2000], claimed_by=None, claimed_at=None)


def hold_back(session: Session, item: Any, *, until: datetime) -> bool:
    """A claimed row a send-time cap holds (``bot.sending.caps``) goes back to waiting until ``until``; the claim
    does not count as an attempt, since nothing was tried."""
    return _finish(session, item, state=OutboxState.PENDING, next_attempt_at=until,
                   attempts=max(0, item.attempts - 1), claimed_by=None, claimed_at=None)


# ---- events and jobs ------------------------------------------------------------------------------------------

def record_event(session: Session, kind: EventKind, *, hub_id: str | None = None, actor: str = "bot",
                 message_id: int | None = None, application_id: int | None = None, outbox_id: int | None = None,
                 detail: dict[str, Any] | None = None, now: datetime | None = None) -> Event:
    """Append to the audit log. Put ids, codes and counts in ``detail``, never names or addresses."""
    values = {"at": now or utcnow(), "hub_id": hub_id, "actor": actor, "kind": kind, "message_id": message_id,
              "application_id": application_id, "outbox_id": outbox_id, "detail": dict(detail or {})}
    # Written now, in order with what the session holds, as one INSERT: the log is only appended to, so the row
    # needs no object in the session.
    event = Event(**values)
    event.id = flushed_connection(session).execute(_NEW_EVENT, values).scalar_one()
    return event


_NEW_EVENT = insert(Event).returning(Event.id)


def claim_job(session: Session, key: str, *, now: datetime | None = None, worker: str | None = None) -> bool:
    """True exactly once per key, across reruns and concurrent workers (the unique key decides)."""
    row = JobClaim(key=key, claimed_at=now or utcnow(), claimed_by=worker)
    _, created = insert_once(session, row, lambda: select(JobClaim).where(JobClaim.key == key))
    return created


# ---- retention ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetentionReport:
    applications: int
    messages: int
    outbox: int
    events: int


def delete_personal_data(session: Session, *, older_than: datetime, hub_id: str | None = None) -> RetentionReport:
    """Delete applications (with their versions and signatories), raw messages, finished outbox rows and events
    older than ``older_than``. References from rows that stay are set to NULL by the foreign keys; a message still
    waiting to be processed is kept whatever its age, because deleting it would silently lose a submission."""
    def scoped(query: Any, column: Any) -> Any:
        return query.where(column == hub_id) if hub_id is not None else query

    apps = session.execute(scoped(delete(Application).where(Application.updated_at < older_than),
                                  Application.hub_id).execution_options(synchronize_session=False))
    outbox = session.execute(scoped(delete(OutboxItem).where(
        OutboxItem.created_at < older_than, OutboxItem.state.in_([OutboxState.SENT, OutboxState.FAILED])),
        OutboxItem.hub_id).execution_options(synchronize_session=False))
    messages = session.execute(scoped(delete(Message).where(
        Message.stored_at < older_than, Message.state != MessageState.STORED),
        Message.hub_id).execution_options(synchronize_session=False))
    events = session.execute(scoped(delete(Event).where(Event.at < older_than), Event.hub_id)
                             .execution_options(synchronize_session=False))
    session.expire_all()
    return RetentionReport(applications=apps.rowcount, messages=messages.rowcount,  # type: ignore[attr-defined]
                           outbox=outbox.rowcount, events=events.rowcount)  # type: ignore[attr-defined]


def delete_expired_rounds(session: Session, *, now: datetime, retention: timedelta,
                          round_ends: Mapping[tuple[str, str], datetime],
                          keep_event_kinds: Sequence[str] = ()) -> RetentionReport:
    """Retention counted from the end of each application round: a row is deleted ``retention`` after the later of
    its arrival and the end of its round (``round_ends[(hub, programme)]``: the last notification date in force for
    that hub, else the deadline; the caller works it out). Mail and replies belonging to no programme count from
    their arrival. So a school's application is kept through the whole round however early it came, and never
    less than ``retention`` after it arrived. Messages not yet processed are kept whatever their age; events (ids
    and codes only) go by their own time, except the kinds in ``keep_event_kinds``."""
    def reference(arrived: datetime, hub_id: str, programme: str | None) -> datetime:
        end = round_ends.get((hub_id, programme)) if programme else None
        return max(arrived, end) if end is not None else arrived

    expired = now - retention
    app_refs: dict[int, datetime] = {}
    for app_id, hub_id, programme, updated in session.execute(
            select(Application.id, Application.hub_id, Application.programme, Application.updated_at)):
        app_refs[app_id] = reference(updated, hub_id, programme)
    old_apps = [i for i, ref in app_refs.items() if ref < expired]

    message_refs: dict[int, datetime] = {}
    old_messages: list[int] = []
    for message_id, hub_id, app_id, stored, state, verdict in session.execute(
            select(Message.id, Message.hub_id, Message.application_id, Message.stored_at, Message.state,
                   Message.verdict)):
        if app_id is not None and app_id in app_refs:
            ref = max(stored, app_refs[app_id])
        else:
            ref = reference(stored, hub_id, (verdict or {}).get("programme"))
        message_refs[message_id] = ref
        if ref < expired and state != MessageState.STORED:
            old_messages.append(message_id)

    old_outbox: list[int] = []
    for item_id, created, app_id, source_id in session.execute(
            select(OutboxItem.id, OutboxItem.created_at, OutboxItem.application_id, OutboxItem.source_message_id)
            .where(OutboxItem.state.in_([OutboxState.SENT, OutboxState.FAILED]))):
        ref = created
        if app_id is not None and app_id in app_refs:
            ref = max(ref, app_refs[app_id])
        if source_id is not None and source_id in message_refs:
            ref = max(ref, message_refs[source_id])
        if ref < expired:
            old_outbox.append(item_id)

    def delete_ids(model: Any, ids: list[int]) -> int:
        deleted = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            result = session.execute(delete(model).where(model.id.in_(chunk))
                                     .execution_options(synchronize_session=False))
            deleted += result.rowcount  # type: ignore[attr-defined]
        return deleted

    apps = delete_ids(Application, old_apps)
    outbox = delete_ids(OutboxItem, old_outbox)
    messages = delete_ids(Message, old_messages)
    events_query = delete(Event).where(Event.at < expired)
    if keep_event_kinds:
        events_query = events_query.where(Event.kind.not_in(list(keep_event_kinds)))
    events = session.execute(events_query.execution_options(synchronize_session=False))
    session.expire_all()
    return RetentionReport(applications=apps, messages=messages, outbox=outbox,
                           events=events.rowcount)  # type: ignore[attr-defined]

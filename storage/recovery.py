"""Storage helpers for keeping the bot going with nobody watching: a message that cannot be stored is quarantined
with its mailbox location (so the cursor can move past it and the poll never stops on it); claims held by a worker
on this host that is gone are taken over at once instead of after the lease (``claimed_by`` is ``host:pid:start``);
a send that reached SMTP DATA before its worker died is settled by the hub's mailbox (a stored copy of it: sent;
none after the settle time: send again) rather than by a person; and a database restored from before some of the
replies it sent recognises, from the copies of those replies in the mailbox, the mail it already answered.

Everything here takes a ``Session`` and leaves committing to the caller, like ``storage.repository``.
"""
from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from storage.models import EventKind, Message, MessageState, OutboxItem, OutboxState
from storage.repository import INTERRUPTED_MARKER, record_event, utcnow

__all__ = ["quarantine_unstorable", "worker_identity", "holder_is_gone", "take_over_dead_claims", "TakeOver",
           "mark_data_started", "mark_uncertain", "Resolution", "uncertain_sends", "behind_evidence", "copy_is_stored",
           "settle_uncertain", "answered_in_a_forgotten_life", "FORGOTTEN_REPLY"]


def quarantine_unstorable(session: Session, *, hub_id: str, folder: str, uidvalidity: int, uid: int, raw: bytes,
                          received_at: datetime | None, error: str, actor: str,
                          now: datetime | None = None) -> Message:
    """Record a message whose normal store failed: its bytes when the database takes them, else an empty row
    that still names its UID, quarantined for a person. Idempotent by mailbox location."""
    now = now or utcnow()
    found = session.scalar(select(Message).where(Message.hub_id == hub_id, Message.folder == folder,
                                                 Message.uidvalidity == uidvalidity, Message.uid == uid))
    if found is not None:
        return found
    for body in (raw, b""):
        # The bytes themselves are never the problem for a binary column, but a row that names the UID is what
        # must get in; the sha256 is of the location when the bytes are dropped, so it cannot collide.
        digest = hashlib.sha256(body or f"{hub_id}/{folder}/{uidvalidity}/{uid}".encode()).hexdigest()
        try:
            with session.begin_nested():
                row = Message(hub_id=hub_id, folder=folder, uidvalidity=uidvalidity, uid=uid, message_id=None,
                              sha256=digest, raw=body, size=len(raw), received_at=received_at, stored_at=now,
                              state=MessageState.QUARANTINED, attempts=0, processed_at=now,
                              error=f"could not be stored: {error}"[:2000])
                session.add(row)
                session.flush()
        except Exception:  # noqa: BLE001 - try the smaller row; if that fails too the caller sees it
            if not body:
                raise
            continue
        record_event(session, EventKind.MESSAGE_QUARANTINED, hub_id=hub_id, actor=actor, message_id=row.id,
                     detail={"reason": "could not be stored", "uid": uid, "error": error[:200]}, now=now)
        return row
    raise AssertionError("unreachable")


# ---- claims of workers that are gone ----------------------------------------------------------------------------

def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def worker_identity() -> str:
    """``host:pid:start``: enough for any worker on this host to tell whether the claim's holder still runs, and
    not to mistake a new process that reused the pid for it."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '0'}"


def holder_is_gone(claimed_by: str | None, host: str) -> bool:
    """True when ``claimed_by`` names a process on ``host`` that no longer runs (or a new process with its pid).
    Claims from other hosts, or in another format, are never judged here: their lease decides."""
    if not claimed_by:
        return False
    parts = claimed_by.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    pid, start = int(parts[1]), parts[2]
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass   # someone else's process: it exists
    now_start = _start_time(pid)
    return start != "0" and now_start is not None and now_start != start


@dataclass(frozen=True)
class TakeOver:
    messages: int = 0           # messages a dead worker held, free again now
    retry: int = 0              # sends it had not begun DATA for: pending again, nothing can have gone
    uncertain: int = 0          # sends it had begun DATA for: the hub's mailbox decides


def take_over_dead_claims(session: Session, *, host: str, actor: str, now: datetime | None = None) -> TakeOver:
    """Release at once every claim held by a worker on this host that is gone (SIGKILL, OOM, power cut): its
    messages go back to the queue, its sends that never reached DATA are pending again, and those that had are
    UNCERTAIN for ``resolve_uncertain``. Claims of live workers, and of other hosts, are left to their leases."""
    now = now or utcnow()
    released = retry = uncertain = 0
    held = session.scalars(select(Message).where(Message.state == MessageState.STORED,
                                                 Message.claimed_by.like(f"{host}:%")))
    for message in held:
        if holder_is_gone(message.claimed_by, host):
            gone = message.claimed_by
            message.claimed_by = None
            message.claimed_at = None
            released += 1
            record_event(session, EventKind.CLAIM_TAKEN_OVER, hub_id=message.hub_id, actor=actor,
                         message_id=message.id, detail={"what": "message", "from": gone}, now=now)
    sending = session.scalars(select(OutboxItem).where(OutboxItem.state == OutboxState.SENDING,
                                                       OutboxItem.claimed_by.like(f"{host}:%")))
    for item in sending:
        if not holder_is_gone(item.claimed_by, host):
            continue
        gone = item.claimed_by
        if item.data_started_at is None:
            item.state = OutboxState.PENDING
            item.next_attempt_at = now
            retry += 1
        else:
            item.state = OutboxState.UNCERTAIN
            item.last_error = INTERRUPTED_MARKER
            uncertain += 1
            record_event(session, EventKind.REPLY_UNCERTAIN, hub_id=item.hub_id, actor=actor, outbox_id=item.id,
                         message_id=item.source_message_id, application_id=item.application_id,
                         detail={"kind": item.kind}, now=now)
        item.claimed_by = None
        item.claimed_at = None
        record_event(session, EventKind.CLAIM_TAKEN_OVER, hub_id=item.hub_id, actor=actor, outbox_id=item.id,
                     detail={"what": "send", "from": gone, "reached_data": item.data_started_at is not None},
                     now=now)
    session.flush()
    return TakeOver(released, retry, uncertain)


def mark_data_started(session: Session, item_id: int, *, worker: str, now: datetime | None = None) -> bool:
    """Record, before SMTP DATA, that this send may reach the server from now on (only while we hold it)."""
    result = session.execute(update(OutboxItem).where(
        OutboxItem.id == item_id, OutboxItem.state == OutboxState.SENDING, OutboxItem.claimed_by == worker)
        .values(data_started_at=now or utcnow()).execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


def mark_uncertain(session: Session, item: OutboxItem, *, error: str) -> bool:
    """Our own send lost its answer after DATA began: UNCERTAIN, if we still hold the row."""
    result = session.execute(update(OutboxItem).where(
        OutboxItem.id == item.id, OutboxItem.state == OutboxState.SENDING, OutboxItem.claimed_by == item.claimed_by)
        .values(state=OutboxState.UNCERTAIN, last_error=error[:2000], claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False))
    if item in session:
        session.refresh(item)
    return result.rowcount == 1  # type: ignore[attr-defined]


# ---- uncertain sends settled by the hub's mailbox ----------------------------------------------------------------

class Resolution(StrEnum):
    SENT = "sent"               # a copy of it is in the hub's mailbox: it went
    RESEND = "resend"           # the mailbox, checked after the settle time, has no copy: it did not go
    UNKNOWN = "unknown"         # nothing can tell yet (or ever, without a Sent folder or Bcc): a person decides


def uncertain_sends(session: Session) -> list[OutboxItem]:
    return list(session.scalars(select(OutboxItem).where(OutboxItem.state == OutboxState.UNCERTAIN)
                                .order_by(OutboxItem.id)))


def copy_is_stored(session: Session, item: OutboxItem) -> bool:
    """Whether a copy of this e-mail (same Message-ID, our loop header) was fetched from the hub's mailbox."""
    return session.scalar(select(Message.id).where(Message.hub_id == item.hub_id,
                                                   Message.message_id == item.message_id,
                                                   Message.own_copy.is_(True)).limit(1)) is not None


def settle_uncertain(session: Session, item: OutboxItem, resolution: Resolution, *, actor: str, how: str,
                     now: datetime | None = None) -> bool:
    """Apply a resolution to an UNCERTAIN row (only if it is still uncertain): SENT, or PENDING to send again."""
    now = now or utcnow()
    if resolution is Resolution.UNKNOWN:
        return False
    values: dict = ({"state": OutboxState.SENT, "sent_at": now, "last_error": None}
                    if resolution is Resolution.SENT else
                    {"state": OutboxState.PENDING, "next_attempt_at": now, "data_started_at": None,
                     "last_error": "resent: the hub's mailbox showed it had not gone"})
    result = session.execute(update(OutboxItem).where(OutboxItem.id == item.id,
                                                      OutboxItem.state == OutboxState.UNCERTAIN)
                             .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    record_event(session, EventKind.REPLY_RESOLVED, hub_id=item.hub_id, actor=actor, outbox_id=item.id,
                 message_id=item.source_message_id, detail={"resolution": resolution.value, "how": how}, now=now)
    return True


# ---- a database older than its mailbox ---------------------------------------------------------------------------

def answered_in_a_forgotten_life(session: Session, message: Message) -> bool:
    """Whether the hub's mailbox holds a copy of a reply *we* sent to this message that our outbox does not know:
    the database was restored from before that reply, and answering again would answer twice."""
    if not message.message_id:
        return False
    return session.scalar(FORGOTTEN_REPLY, {"hub": message.hub_id, "answered": message.message_id}) is not None


def _forgotten_reply() -> Any:
    # Built once, its values passed each time (``hub``, ``answered``): the workflow asks it of every message.
    known = select(OutboxItem.message_id).where(OutboxItem.hub_id == bindparam("hub"))
    return select(Message.id).where(Message.hub_id == bindparam("hub"), Message.own_copy.is_(True),
                                    Message.in_reply_to == bindparam("answered"),
                                    or_(Message.message_id.is_(None), Message.message_id.not_in(known))).limit(1)


FORGOTTEN_REPLY = _forgotten_reply()


def behind_evidence(session: Session, hub_id: str, row_ids: list[int]) -> int:
    """Among newly stored messages, how many show the bot sent mail this database does not remember: a copy of
    one of our own e-mails (Bcc or Sent folder) whose Message-ID the outbox lacks, or a reply to a Message-ID in
    our format that the outbox lacks."""
    known = select(OutboxItem.message_id).where(OutboxItem.hub_id == hub_id)
    own = select(Message.id).where(Message.id.in_(row_ids), Message.own_copy.is_(True),
                                   Message.message_id.is_not(None), Message.message_id.not_in(known))
    replies = select(Message.id).where(Message.id.in_(row_ids), Message.own_copy.is_(False),
                                       Message.in_reply_to.like("<hubbot.%"), Message.in_reply_to.not_in(known))
    return len(list(session.scalars(own))) + len(list(session.scalars(replies)))

"""Storage helpers for keeping the bot going with nobody watching: a message that cannot be stored is quarantined
with its mailbox location (so the cursor can move past it and the poll never stops on it), and staff see it.

Everything here takes a ``Session`` and leaves committing to the caller, like ``storage.repository``.
"""
from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import EventKind, Message, MessageState
from storage.repository import record_event, utcnow

__all__ = ["quarantine_unstorable"]


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

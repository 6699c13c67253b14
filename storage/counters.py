"""Per-recipient counts for the daily reply cap. Every e-mail queued in the outbox writes one ``outbox_recipients``
row per address it goes to (lower-cased, once per e-mail), in the transaction that queues it; "how many e-mails did
each of these addresses get from us in the last 24 hours" is then one indexed ``GROUP BY`` over those addresses,
whose cost depends on what those few addresses were sent, not on the size of the outbox. The answer is exactly
what reading the outbox's ``to`` and ``cc`` would give (each e-mail counts once per address, whatever its state),
and retention keeps it right: deleting an outbox row deletes its recipients with it (``ON DELETE CASCADE``).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session

from storage.inserts import flushed_connection
from storage.models import OutboxItem, OutboxRecipient

WINDOW = timedelta(days=1)
ADDRESS_MAX = 320   # the column's width; no deliverable address is longer


def _addresses(values: Iterable[str]) -> list[str]:
    return sorted({str(a).lower()[:ADDRESS_MAX] for a in values if a})


def record_recipients(session: Session, item: OutboxItem) -> None:
    """Count ``item`` (just inserted, so it has an id) against each of its addresses."""
    rows = [{"outbox_id": item.id, "address": address, "created_at": item.created_at}
            for address in _addresses((*(item.to or ()), *(item.cc or ())))]
    if rows:
        flushed_connection(session).execute(_NEW, rows)   # Core's executemany: the ORM's bulk insert costs more


def sent_in_last_day(session: Session, addresses: Iterable[str], now: datetime) -> dict[str, int]:
    """How many outbox e-mails each of ``addresses`` (any case) got in the 24 hours before ``now``; addresses with
    none are left out."""
    wanted = _addresses(addresses)
    if not wanted:
        return {}
    rows = flushed_connection(session).execute(_SENT, {"wanted": wanted, "since": now - WINDOW})
    return {address: count for address, count in rows}


# Built once: building the statement costs more than running it.
_NEW = insert(OutboxRecipient)
_SENT = (select(OutboxRecipient.address, func.count())
         .where(OutboxRecipient.address.in_(bindparam("wanted", expanding=True)),
                OutboxRecipient.created_at >= bindparam("since"))
         .group_by(OutboxRecipient.address))

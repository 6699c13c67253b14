"""Send-time caps: every recipient of every e-mail the bot sends counts, whatever kind it is (reply, reminder,
notice, digest). ``per_address_per_day`` stops any one address getting more than so many e-mails from us in 24
hours (a loop with another robot, or someone using the bot to pester a third party, ends here even when the
e-mails were queued by different jobs at once); ``per_hub_per_hour`` spreads a flood (a round's deadline day)
over time instead of letting one hub's relay be used as a cannon. A capped e-mail is not dropped: it waits until
the window frees, and staff see why in the event log. The hub's own addresses and its staff are exempt from the
per-address cap (they are us) but count towards the hub's hourly total.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session

from storage.counters import ADDRESS_MAX
from storage.inserts import flushed_connection
from storage.models import OutboxItem, OutboxRecipient, OutboxState

__all__ = ["Caps", "Hold", "hold_until"]

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Caps:
    per_address_per_day: int | None = None
    per_hub_per_hour: int | None = None
    exempt: frozenset[str] = frozenset()      # lower-case: the hubs' own addresses and their staff


@dataclass(frozen=True)
class Hold:
    until: datetime
    reason: str                                # "daily limit for an address" | "hourly limit for the hub"
    limit: int


def _recipients(item: Any) -> set[str]:
    return {a.lower() for a in (*(item.to or ()), *(item.cc or ()))}


def hold_until(session: Session, item: Any, caps: Caps, now: datetime) -> Hold | None:
    """When this e-mail (an ``OutboxItem``, or a row claimed by ``storage.repository.claim_next_reply``: its
    ``id``, ``hub_id``, ``to`` and ``cc`` are read) may go if sending it now would break a cap, else None. Counts
    what went (or may have gone: uncertain sends) in the window before ``now``. Both counts are indexed lookups
    (the recipients' rows in ``outbox_recipients``; the hub's sends of the last hour by ``ix_outbox_hub_sent``), so
    their cost depends on what these addresses and this hub were sent, not on the size of the outbox."""
    if caps.per_address_per_day is None and caps.per_hub_per_hour is None:
        return None
    mine = _recipients(item)
    # Straight on the session's connection: the ORM's handling of a statement cost more than the lookups themselves.
    db = flushed_connection(session)
    if caps.per_address_per_day is not None:
        watched = mine - caps.exempt
        if watched:
            # Two lookups, each by an index whatever the planner believes: the e-mails these addresses were on,
            # then which of those went in the window. (As one join, a burst that outran the table statistics made
            # PostgreSQL read every sent e-mail for every send.)
            on = db.execute(_ADDRESS_EMAILS, {"addresses": sorted(a[:ADDRESS_MAX] for a in watched)}).all()
            # Asked only about other e-mails: with an empty list of ids SQLite read every e-mail ever sent.
            others = sorted({i for i, _ in on} - {item.id})
            went = dict(db.execute(_WENT_SINCE, {"ids": others, "since": now - DAY}).all()) if others else {}
            times: dict[str, list[datetime]] = {}
            for outbox_id, address in on:
                if outbox_id in went:
                    times.setdefault(address, []).append(went[outbox_id])
            # The e-mail may go when every one of its addresses is under the cap again: the latest of their times.
            frees = [sorted(seen)[len(seen) - caps.per_address_per_day] + DAY
                     for seen in times.values() if len(seen) >= caps.per_address_per_day]
            if frees:
                return Hold(max(*frees, now + timedelta(minutes=1)), "daily limit for an address",
                            caps.per_address_per_day)
    if caps.per_hub_per_hour is not None:
        # Counted only as far as deciding needs: one past the room left, so a busy hour costs no more than the cap.
        params = {"hub": item.hub_id, "item": item.id, "since": now - HOUR,
                  "enough": max(caps.per_hub_per_hour - len(mine) + 1, 1)}
        if (db.scalar(_HUB_RECIPIENTS_UP_TO, params) or 0) + len(mine) > caps.per_hub_per_hour:
            # Over the cap: wait until enough of the last hour's sends have aged out to make room.
            sends = db.execute(_HUB_RECIPIENTS_BY_TIME, params).all()
            total = sum(recipients for _, recipients in sends) + len(mine)
            for at, recipients in sends:
                total -= recipients
                if total <= caps.per_hub_per_hour:
                    return Hold(max(at + HOUR, now + timedelta(minutes=1)), "hourly limit for the hub",
                                caps.per_hub_per_hour)
            return Hold(now + HOUR, "hourly limit for the hub", caps.per_hub_per_hour)
    return None


# The statements, built once (building one costs more than running it). What went, or may have gone, is a SENT or
# UNCERTAIN row; its time is when it went (or when DATA began).
_WENT = func.coalesce(OutboxItem.sent_at, OutboxItem.data_started_at)
_GONE = OutboxItem.state.in_((OutboxState.SENT, OutboxState.UNCERTAIN))
# The recipients' own rows in outbox_recipients, by its address index; then those e-mails, by their ids.
_ADDRESS_EMAILS = select(OutboxRecipient.outbox_id, OutboxRecipient.address).where(
    OutboxRecipient.address.in_(bindparam("addresses", expanding=True)))
_WENT_SINCE = select(OutboxItem.id, _WENT).where(
    OutboxItem.id.in_(bindparam("ids", expanding=True)), _GONE,
    _WENT >= bindparam("since", type_=OutboxItem.sent_at.type))
# The hub's last hour, each half a range of ix_outbox_hub_sent (a sent row's time is its sent_at); recipients
# counted by the database, each address once per e-mail.
_RECENT = (OutboxItem.hub_id == bindparam("hub"), OutboxItem.id != bindparam("item"),
           or_(and_(OutboxItem.state == OutboxState.SENT,
                    OutboxItem.sent_at >= bindparam("since", type_=OutboxItem.sent_at.type)),
               and_(OutboxItem.state == OutboxState.UNCERTAIN,
                    _WENT >= bindparam("since", type_=OutboxItem.sent_at.type))))
_HUB_RECIPIENTS = (select(func.count()).select_from(OutboxRecipient)
                   .join(OutboxItem, OutboxItem.id == OutboxRecipient.outbox_id).where(*_RECENT))
_HUB_RECIPIENTS_UP_TO = select(func.count()).select_from(
    _HUB_RECIPIENTS.with_only_columns(OutboxRecipient.outbox_id).limit(bindparam("enough")).subquery())
_HUB_RECIPIENTS_BY_TIME = _HUB_RECIPIENTS.with_only_columns(_WENT, func.count()).group_by(_WENT).order_by(_WENT)

"""Health: what is broken now, which incidents are open, and the transitions between the two.

Everything is read from what the bot already records, so every worker and ``hubbot status`` see the same thing:

- a **mailbox** is unreadable when its last ``mailbox_failures`` polls (``mailbox_error`` events since the last
  ``mailbox_ok``) all failed; a poll that could not get an OAuth2 token because a person must act (a secret
  expired, consent withdrawn) makes it an incident at once;
- a **mail server** (an endpoint: ``[smtp]`` or a hub's ``[hubs.smtp]``) is failing when its last ``smtp_failures``
  sending attempts failed for a server-side cause (connection, login, token), counted from its last success
  (``reply_sent`` or a successful login probe, ``smtp_ok``); a school's refused address is not the server failing;
- a hub's **outbox** is stuck when an e-mail has been due for more than ``outbox_stuck_minutes`` and nobody has
  taken it (no worker running, or the drain crashing), unless its mail server already has an incident.

An incident is opened and closed at most once, whichever worker sees it first: the transition is claimed in the job
table (``incident:<key>:opened``/``closed``), recorded in the event log (ids and codes only, never an address) and
announced by an alert e-mail with a unique outbox key. Its key names the component, the target and the first
event (or outbox row) of the trouble, so the next incident on the same target after a recovery is a new one.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.sending.senders import EML_ENDPOINT, describe_endpoint, endpoint_of
from bot.sending.smtp import SERVER_SIDE, FailureCause
from storage import repository as repo
from storage.db import Database
from storage.models import Event, EventKind, OutboxItem, OutboxState

log = logging.getLogger(__name__)

# Alerts belong to no hub: their sends must never count as a hub's mail server working again.
ALERT_HUB = "_alerts"
MAILBOX_ERROR, MAILBOX_OK = EventKind.MAILBOX_ERROR, EventKind.MAILBOX_OK
SMTP_OK = EventKind.SMTP_OK
SEND_SUCCESS = (EventKind.REPLY_SENT, SMTP_OK)
SEND_FAILURE = (EventKind.REPLY_RETRY, EventKind.REPLY_FAILED)
OPENED, CLOSED = EventKind.INCIDENT_OPENED, EventKind.INCIDENT_CLOSED
_SCAN = 200   # failures looked at to find where an SMTP streak starts: far more than any threshold


class Component(enum.StrEnum):
    MAILBOX = "mailbox"
    SMTP = "smtp"
    OUTBOX = "outbox"


class Problem(enum.StrEnum):
    UNREADABLE = "unreadable"
    TOKEN = "token"
    FAILING = "failing"
    STUCK = "stuck"


@dataclass(frozen=True)
class Incident:
    component: Component
    target: str                  # hub id (mailbox, outbox) or endpoint label (smtp)
    number: int                  # the first event (or outbox row) of the trouble
    problem: Problem
    hubs: tuple[str, ...]        # the hubs it touches
    since: datetime
    title: str                   # one line for a person, with no personal data
    detail: str                  # the last error

    @property
    def key(self) -> str:
        return f"{self.component.value}:{self.target}:{self.number}"

    def to_detail(self) -> dict[str, Any]:
        return {"incident": self.key, "component": self.component.value, "target": self.target,
                "number": self.number, "problem": self.problem.value, "hubs": list(self.hubs),
                "since": self.since.isoformat(), "title": self.title, "error": self.detail[:300]}

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> Incident:
        return cls(Component(detail["component"]), str(detail["target"]), int(detail["number"]),
                   Problem(detail["problem"]), tuple(detail.get("hubs") or ()),
                   datetime.fromisoformat(detail["since"]), str(detail.get("title", "")),
                   str(detail.get("error", "")))


@dataclass(frozen=True)
class OpenIncident:
    incident: Incident
    opened_at: datetime


@dataclass(frozen=True)
class Streak:
    """Failures in a row since the last success."""

    count: int
    first_id: int
    first_at: datetime
    last_error: str
    last_cause: str | None


# ---- what is broken now ---------------------------------------------------------------------------------------

def mailbox_streak(session: Session, hub_id: str) -> Streak | None:
    last_ok = session.scalar(select(func.max(Event.id)).where(Event.hub_id == hub_id, Event.kind == MAILBOX_OK)) or 0
    errors = select(Event).where(Event.hub_id == hub_id, Event.kind == MAILBOX_ERROR, Event.id > last_ok)
    first = session.scalar(errors.order_by(Event.id).limit(1))
    if first is None:
        return None
    last = session.scalar(errors.order_by(Event.id.desc()).limit(1))
    assert last is not None
    count = session.scalar(select(func.count()).select_from(errors.subquery())) or 0
    return Streak(count, first.id, first.at, str(last.detail.get("error", "")), last.detail.get("cause"))


def smtp_streak(session: Session, hub_ids: list[str]) -> Streak | None:
    """Server-side sending failures in a row for the hubs that share one mail server."""
    if not hub_ids:
        return None
    last_ok = session.scalar(select(func.max(Event.id)).where(Event.hub_id.in_(hub_ids),
                                                              Event.kind.in_(SEND_SUCCESS))) or 0
    recent = session.scalars(select(Event).where(Event.hub_id.in_(hub_ids), Event.kind.in_(SEND_FAILURE),
                                                  Event.id > last_ok).order_by(Event.id.desc()).limit(_SCAN))
    streak: list[Event] = []
    for event in recent:
        # A refused recipient or a 5xx about the message means the server answered: the streak ends there.
        if event.detail.get("cause") not in SERVER_SIDE:
            break
        streak.append(event)
    if not streak:
        return None
    first, last = streak[-1], streak[0]
    return Streak(len(streak), first.id, first.at, str(last.detail.get("error") or ""), last.detail.get("cause"))


def stuck_replies(session: Session, hub_id: str, now: datetime,
                  minutes: int) -> tuple[int, OutboxItem | None]:
    """E-mails due for more than ``minutes`` that nobody has taken: (how many, the oldest row)."""
    cutoff = now - timedelta(minutes=minutes)
    where = and_(OutboxItem.hub_id == hub_id, or_(
        and_(OutboxItem.state == OutboxState.PENDING, OutboxItem.next_attempt_at < cutoff),
        and_(OutboxItem.state == OutboxState.SENDING, OutboxItem.claimed_at < cutoff)))
    count = session.scalar(select(func.count()).select_from(OutboxItem).where(where)) or 0
    oldest = session.scalar(select(OutboxItem).where(where).order_by(OutboxItem.id).limit(1)) if count else None
    return count, oldest


def endpoint_hubs(config: Config) -> dict[str, list[HubSettings]]:
    """Mail servers (by label) and the hubs sending through each; the .eml folder is left out."""
    found: dict[str, list[HubSettings]] = {}
    for hub in config.hubs:
        label = endpoint_of(config, hub)
        if label != EML_ENDPOINT:
            found.setdefault(label, []).append(hub)
    return found


def detect(session: Session, config: Config, now: datetime) -> list[Incident]:
    """Everything broken at ``now``, as the incident it would be if it were opened now."""
    found: list[Incident] = []
    for hub in config.hubs:
        streak = mailbox_streak(session, hub.id)
        if streak is None:
            continue
        token = streak.last_cause == FailureCause.TOKEN_REFUSED.value
        if streak.count >= config.alerts.mailbox_failures or token:
            problem = Problem.TOKEN if token else Problem.UNREADABLE
            title = (f"the OAuth2 token for the mailbox of {hub.name} ({hub.id}) cannot be refreshed" if token else
                     f"the mailbox of {hub.name} ({hub.id}) could not be read for {streak.count} polls in a row")
            found.append(Incident(Component.MAILBOX, hub.id, streak.first_id, problem, (hub.id,), streak.first_at,
                                  title, streak.last_error))
    failing_endpoints: set[str] = set()
    for label, hubs in endpoint_hubs(config).items():
        streak = smtp_streak(session, [h.id for h in hubs])
        if streak is None:
            continue
        token = streak.last_cause == FailureCause.TOKEN_REFUSED.value
        if streak.count >= config.alerts.smtp_failures or token:
            where = describe_endpoint(config, label)
            title = (f"the OAuth2 token for {where} cannot be refreshed" if token else
                     f"{where} is failing: {streak.count} sending attempts in a row")
            found.append(Incident(Component.SMTP, label, streak.first_id, Problem.TOKEN if token else Problem.FAILING,
                                  tuple(h.id for h in hubs), streak.first_at, title, streak.last_error))
            failing_endpoints.add(label)
    minutes = config.alerts.outbox_stuck_minutes
    for hub in config.hubs:
        if endpoint_of(config, hub) in failing_endpoints:
            continue   # the mail server's incident already says why replies wait
        count, oldest = stuck_replies(session, hub.id, now, minutes)
        if count and oldest is not None:
            found.append(Incident(Component.OUTBOX, hub.id, oldest.id, Problem.STUCK, (hub.id,),
                                  oldest.next_attempt_at,
                                  f"the outbox of {hub.name} ({hub.id}) is stuck: {count} e-mail(s) due for more "
                                  f"than {minutes} minutes and not sent", "nothing is sending the outbox"))
    return found


# ---- open incidents -------------------------------------------------------------------------------------------

def incident_events(session: Session) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.kind.in_([OPENED, CLOSED])).order_by(Event.id)))


def open_incidents(session: Session, hub_id: str | None = None) -> list[OpenIncident]:
    """Incidents opened and not yet closed (all, or those touching one hub), oldest first."""
    opened: dict[str, OpenIncident] = {}
    for event in incident_events(session):
        key = str(event.detail.get("incident", ""))
        if event.kind == OPENED:
            try:
                opened[key] = OpenIncident(Incident.from_detail(event.detail), event.at)
            except (KeyError, ValueError):
                log.warning("event %s: an incident record that cannot be read", event.id)
        else:
            opened.pop(key, None)
    found = list(opened.values())
    return [o for o in found if hub_id is None or hub_id in o.incident.hubs]


@dataclass(frozen=True)
class Transition:
    """One incident opened or closed by a review."""

    incident: Incident
    phase: str                   # "opened" | "recovered"
    at: datetime
    opened_at: datetime | None = None


def last_transition(session: Session, hub_id: str) -> Transition | None:
    """The latest incident opened or closed for this hub (``hubbot status`` shows it as the last alert)."""
    known: dict[str, tuple[Incident, datetime]] = {}
    last: Transition | None = None
    for event in incident_events(session):
        key = str(event.detail.get("incident", ""))
        if event.kind == OPENED:
            try:
                incident = Incident.from_detail(event.detail)
            except (KeyError, ValueError):
                continue
            known[key] = (incident, event.at)
            if hub_id in incident.hubs:
                last = Transition(incident, "opened", event.at)
        elif key in known and hub_id in known[key][0].hubs:
            last = Transition(known[key][0], "recovered", event.at, known[key][1])
    return last


@dataclass(frozen=True)
class Review:
    opened: tuple[Transition, ...] = ()
    closed: tuple[Transition, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.closed)


def review(db: Database, config: Config, now: datetime, *, actor: str,
           probe: Callable[[str], bool] | None = None) -> Review:
    """Open what broke, close what recovered, queue one alert for each (``bot.ops.alerts``). ``probe(label)``
    logs in to a mail server without sending: used when a server's incident is open and nothing is waiting to
    go through it, since only a send (or a probe) can show that it works again."""
    from bot.ops.alerts import queue_alert

    opened: list[Transition] = []
    closed: list[Transition] = []
    if probe is not None:
        _probe_quiet_servers(db, config, now, probe, actor)
    with db.session() as session:
        current = {(i.component, i.target): i for i in detect(session, config, now)}
        already = {(o.incident.component, o.incident.target): o for o in open_incidents(session)}
        for where, incident in current.items():
            if where in already:
                continue
            if repo.claim_job(session, f"incident:{incident.key}:opened", now=now, worker=actor):
                repo.record_event(session, OPENED, hub_id=incident.hubs[0] if len(incident.hubs) == 1 else None,
                                  actor=actor, detail=incident.to_detail(), now=now)
                transition = Transition(incident, "opened", now)
                queue_alert(session, config, transition, now)
                opened.append(transition)
                log.warning("incident opened: %s: %s", incident.key, incident.title)
        for where, open_incident in already.items():
            if where in current:
                continue
            incident = open_incident.incident
            if repo.claim_job(session, f"incident:{incident.key}:closed", now=now, worker=actor):
                repo.record_event(session, CLOSED, hub_id=incident.hubs[0] if len(incident.hubs) == 1 else None,
                                  actor=actor, detail={"incident": incident.key}, now=now)
                transition = Transition(incident, "recovered", now, open_incident.opened_at)
                queue_alert(session, config, transition, now)
                closed.append(transition)
                log.warning("incident closed: %s (recovered)", incident.key)
    return Review(tuple(opened), tuple(closed))


def _probe_quiet_servers(db: Database, config: Config, now: datetime, probe: Callable[[str], bool],
                         actor: str) -> None:
    hubs_of = endpoint_hubs(config)
    quiet: dict[str, list[str]] = {}
    with db.session() as session:
        for open_incident in open_incidents(session):
            incident = open_incident.incident
            if incident.component is not Component.SMTP or incident.target not in hubs_of:
                continue
            hub_ids = [h.id for h in hubs_of[incident.target]]
            waiting = session.scalar(select(func.count()).select_from(OutboxItem).where(
                OutboxItem.hub_id.in_(hub_ids), OutboxItem.state == OutboxState.PENDING)) or 0
            if not waiting:   # with mail waiting, the next send will tell
                quiet[incident.target] = hub_ids
    # The login happens outside any transaction: a slow server must not hold the database.
    working = [label for label in quiet if probe(label)]
    if working:
        with db.session() as session:
            for label in working:
                for hub_id in quiet[label]:
                    repo.record_event(session, SMTP_OK, hub_id=hub_id, actor=actor, detail={"endpoint": label},
                                      now=now)

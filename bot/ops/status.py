"""``hubbot status``: the health of each hub, for a person or a monitoring check.

Per hub: the last good poll of its mailbox and the failures since, mail stored but not yet processed, replies
pending, failed and uncertain, the next digest and the next reminder, open incidents and the last alert. It reads
only: the database is not migrated, nothing is sent, and the health is judged from the records every worker
writes (``bot.ops.health.detect``), so it says the truth even when no worker is running, which is then itself a
finding (no good poll for too long). The config checks that need no network come from ``hubbot doctor`` (every
``_env`` variable set, programmes known, a deadline ahead). The exit code is for monitoring: 0 healthy, 1 degraded,
2 the config or the database cannot be read at all.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.ops.health import (
    Incident,
    OpenIncident,
    Transition,
    detect,
    last_transition,
    mailbox_streak,
    open_incidents,
)
from rules.calendar import LONDON, STAFF_NOTICE_DAYS_BEFORE, at_nine, deadline_end
from rules.settings import CheckSettings
from storage import repository as repo
from storage.db import make_engine, redacted_url, schema_revision
from storage.models import Event, EventKind, MailboxState, Message, MessageState, OutboxItem, OutboxState


class Health(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    BROKEN = "broken"          # the config or the database cannot be read: nothing else can be said

    @property
    def exit_code(self) -> int:
        return {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.BROKEN: 2}[self]


@dataclass(frozen=True)
class MailboxStatus:
    kind: str                           # imap | maildir | none
    where: str                          # host:port/folder or the Maildir path
    last_good_poll: datetime | None
    failures_in_a_row: int
    last_error: str | None
    warning: str | None                 # read, but something is wrong (move_to)


@dataclass(frozen=True)
class ReplyCounts:
    pending: int
    failed: int
    uncertain: int


@dataclass(frozen=True)
class HubStatus:
    hub_id: str
    name: str
    health: Health
    problems: tuple[str, ...]
    mailbox: MailboxStatus
    waiting: int                        # stored, not yet processed
    quarantined: int
    replies: ReplyCounts
    next_digest: datetime
    next_digest_note: str
    next_reminder: datetime | None
    next_reminder_note: str
    incidents: tuple[OpenIncident, ...]
    last_alert: Transition | None


@dataclass(frozen=True)
class StatusReport:
    at: datetime
    health: Health
    database: str
    problems: tuple[str, ...] = ()      # not about one hub (the database, the config)
    hubs: tuple[HubStatus, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        return self.health.exit_code


def stale_after(config: Config) -> timedelta:
    """A mailbox not polled successfully for this long means the worker is stopped or stuck."""
    return timedelta(minutes=max(3 * config.schedule.poll_every_minutes, 15))


def collect(config: Config, settings: CheckSettings, now: datetime) -> StatusReport:
    where = redacted_url(config.database_url)
    try:
        engine = make_engine(config.database_url)
    except Exception as exc:  # noqa: BLE001 - a bad URL is reported like an unreachable server
        return StatusReport(now, Health.BROKEN, where, (f"database {where} cannot be opened: {type(exc).__name__}",))
    try:
        try:
            revision = schema_revision(engine)
        except SQLAlchemyError as exc:
            return StatusReport(now, Health.BROKEN, where,
                                (f"database {where} cannot be opened: {type(exc).__name__}",))
        if revision.current is None:
            return StatusReport(now, Health.DEGRADED, where, (
                f"database {where} is empty: the worker creates the schema when it first starts",))
        # The config checks that need no network (doctor does the rest): a missing secret, an unknown programme,
        # a round whose dates have all passed.
        from bot.ops.doctor import env_checks, programme_checks

        problems = [f"config: {c.subject}: {c.detail}" for c in (*env_checks(config),
                                                                 *programme_checks(config, settings, now))
                    if not c.ok]
        if not revision.up_to_date:
            problems.append(f"database at revision {revision.current}, this hubbot expects {revision.head}"
                            + (": the worker migrates it when it starts" if revision.known else
                               ": it was migrated by a newer hubbot (see docs/admin.md, rolling back)"))
            if not revision.known:
                return StatusReport(now, Health.DEGRADED, where, tuple(problems))
        with Session(engine) as session:
            detected = detect(session, config, now)
            hubs = tuple(_hub_status(session, config, settings, hub, now, detected) for hub in config.hubs)
    finally:
        engine.dispose()
    health = Health.DEGRADED if problems or any(h.health is not Health.HEALTHY for h in hubs) else Health.HEALTHY
    return StatusReport(now, health, where, tuple(problems), hubs)


def _mailbox(session: Session, config: Config, hub: HubSettings) -> MailboxStatus:
    if hub.imap is not None:
        kind, where, folder = "imap", f"{hub.imap.where}/{hub.imap.folder}", hub.imap.folder
    elif hub.maildir is not None:
        kind, where, folder = "maildir", str(hub.maildir), "maildir"
    else:
        return MailboxStatus("none", "", None, 0, "no [hubs.imap] and no maildir", None)
    state = session.scalar(select(MailboxState).where(MailboxState.hub_id == hub.id, MailboxState.folder == folder))
    # The row exists from the first attempt; only a poll that got through sets UIDVALIDITY.
    good = state.updated_at if state is not None and state.uidvalidity is not None else None
    streak = mailbox_streak(session, hub.id)
    warning = None
    if good is not None:
        event = session.scalar(select(Event).where(Event.hub_id == hub.id, Event.kind == EventKind.MAILBOX_WARNING,
                                                   Event.at >= good).order_by(Event.id.desc()).limit(1))
        warning = str(event.detail.get("error", "")) if event is not None else None
    return MailboxStatus(kind, where, good, streak.count if streak else 0, streak.last_error if streak else None,
                         warning)


def _count(session: Session, *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(OutboxItem).where(*where)) or 0


def _next_digest(session: Session, config: Config, hub: HubSettings, now: datetime) -> tuple[datetime, str]:
    today = now.astimezone(LONDON).date()
    at = datetime.combine(today, config.schedule.digest_at, tzinfo=LONDON)
    done = repo.outbox_has(session, f"digest:{hub.id}:{today.isoformat()}")
    if done or now >= at:
        at = datetime.combine(today + timedelta(days=1), config.schedule.digest_at, tzinfo=LONDON)
    note = "" if hub.staff else "no staff configured: none will be sent"
    if hub.staff and not config.schedule.digest_when_quiet:
        note = "only if there is news: digest_when_quiet = false"
    return at, note


def _next_reminder(config: Config, settings: CheckSettings, hub: HubSettings,
                   now: datetime) -> tuple[datetime | None, str]:
    found: list[tuple[datetime, str]] = []
    for programme_id in hub.programmes:
        programme = settings.registry.get(programme_id)
        if programme is None:
            continue
        dates = settings.dates(hub.id, programme)
        if dates.deadline is not None and now <= deadline_end(dates.deadline):
            for days in config.schedule.reminder_days_before:
                when = at_nine(dates.deadline - timedelta(days=days))
                if when > now:
                    found.append((when, f"{days}-day reminders for {programme_id} (deadline "
                                        f"{_day(dates.deadline)})"))
        for notice in dates.notifications:
            when = at_nine(notice.date - timedelta(days=STAFF_NOTICE_DAYS_BEFORE))
            if when > now:
                found.append((when, f"staff notice for {programme_id}: {notice.what} on {_day(notice.date)}"))
    if not found:
        return None, "no reminder dates ahead"
    return min(found, key=lambda f: f[0])


def _day(value: date) -> str:
    return f"{value:%a %-d %b %Y}"


def _hub_status(session: Session, config: Config, settings: CheckSettings, hub: HubSettings, now: datetime,
                detected: list[Incident]) -> HubStatus:
    problems: list[str] = []
    mailbox = _mailbox(session, config, hub)
    if mailbox.kind == "none":
        problems.append("no mailbox configured")
    elif mailbox.last_good_poll is None:
        problems.append("the mailbox has never been read successfully")
    elif now - mailbox.last_good_poll > stale_after(config):
        minutes = int((now - mailbox.last_good_poll).total_seconds() // 60)
        problems.append(f"no good poll for {minutes} min: is the worker running?")
    if mailbox.warning:
        problems.append(f"move_to: {mailbox.warning}")
    incidents = tuple(open_incidents(session, hub.id))
    open_keys = {(o.incident.component, o.incident.target) for o in incidents}
    for incident in incidents:
        problems.append(f"incident since {_time(incident.incident.since)}: {incident.incident.title}")
    for incident in detected:
        # Broken now but not (yet) opened: no worker has reviewed it, which status must not wait for.
        if hub.id in incident.hubs and (incident.component, incident.target) not in open_keys:
            problems.append(incident.title)
    waiting = session.scalar(select(func.count()).select_from(Message).where(
        Message.hub_id == hub.id, Message.state == MessageState.STORED)) or 0
    quarantined = session.scalar(select(func.count()).select_from(Message).where(
        Message.hub_id == hub.id, Message.state == MessageState.QUARANTINED)) or 0
    replies = ReplyCounts(
        pending=_count(session, OutboxItem.hub_id == hub.id,
                       OutboxItem.state.in_([OutboxState.PENDING, OutboxState.SENDING])),
        failed=_count(session, OutboxItem.hub_id == hub.id, OutboxItem.state == OutboxState.FAILED),
        uncertain=_count(session, OutboxItem.hub_id == hub.id, OutboxItem.state == OutboxState.UNCERTAIN))
    if replies.uncertain:
        problems.append(f"{replies.uncertain} repl(ies) may not have been sent: check, then `hubbot requeue`")
    next_digest, digest_note = _next_digest(session, config, hub, now)
    next_reminder, reminder_note = _next_reminder(config, settings, hub, now)
    return HubStatus(hub.id, hub.name, Health.DEGRADED if problems else Health.HEALTHY, tuple(problems), mailbox,
                     waiting, quarantined, replies, next_digest, digest_note, next_reminder, reminder_note, incidents,
                     last_transition(session, hub.id))


def _time(moment: datetime | None) -> str:
    return f"{moment.astimezone(LONDON):%a %-d %b %Y %H:%M}" if moment else "never"


# ---- output ---------------------------------------------------------------------------------------------------

def format_text(report: StatusReport) -> str:
    lines = [f"hubbot status at {_time(report.at)} (London): {report.health.value.upper()}",
             f"database  {report.database}"]
    lines += [f"  ! {p}" for p in report.problems]
    for hub in report.hubs:
        m = hub.mailbox
        lines.append("")
        lines.append(f"{hub.hub_id} ({hub.name}): {hub.health.value.upper()}")
        lines += [f"  ! {p}" for p in hub.problems]
        mailbox = f"{m.kind} {m.where}".strip()
        lines.append(f"  mailbox         {mailbox}: last good poll {_time(m.last_good_poll)}"
                     + (f", {m.failures_in_a_row} failure(s) since: {m.last_error}" if m.failures_in_a_row else ""))
        lines.append(f"  mail waiting    {hub.waiting} to process, {hub.quarantined} quarantined")
        r = hub.replies
        lines.append(f"  replies         {r.pending} pending, {r.failed} failed, {r.uncertain} uncertain")
        lines.append(f"  next digest     {_time(hub.next_digest)}" + (f" ({hub.next_digest_note})"
                                                                       if hub.next_digest_note else ""))
        lines.append("  next reminders  " + (f"{_time(hub.next_reminder)}: {hub.next_reminder_note}"
                                               if hub.next_reminder else hub.next_reminder_note))
        last = hub.last_alert
        lines.append("  last alert      " + (f"{_time(last.at)}: {last.phase}: {last.incident.title}" if last
                                              else "none"))
    return "\n".join(lines)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def to_json(report: StatusReport) -> dict[str, Any]:
    def incident(o: OpenIncident) -> dict[str, Any]:
        return {"key": o.incident.key, "component": o.incident.component.value, "problem": o.incident.problem.value,
                "title": o.incident.title, "since": _iso(o.incident.since), "opened_at": _iso(o.opened_at),
                "error": o.incident.detail}

    return {
        "at": _iso(report.at), "status": report.health.value, "exit_code": report.exit_code,
        "database": report.database, "problems": list(report.problems),
        "hubs": [{
            "id": h.hub_id, "name": h.name, "status": h.health.value, "problems": list(h.problems),
            "mailbox": {"kind": h.mailbox.kind, "where": h.mailbox.where,
                        "last_good_poll": _iso(h.mailbox.last_good_poll),
                        "failures_in_a_row": h.mailbox.failures_in_a_row, "last_error": h.mailbox.last_error,
                        "warning": h.mailbox.warning},
            "mail_waiting": h.waiting, "quarantined": h.quarantined,
            "replies": {"pending": h.replies.pending, "failed": h.replies.failed,
                        "uncertain": h.replies.uncertain},
            "next_digest": _iso(h.next_digest), "next_reminder": _iso(h.next_reminder),
            "next_reminder_note": h.next_reminder_note,
            "incidents": [incident(o) for o in h.incidents],
            "last_alert": {"at": _iso(h.last_alert.at), "phase": h.last_alert.phase,
                           "incident": h.last_alert.incident.key, "title": h.last_alert.incident.title}
            if h.last_alert else None,
        } for h in report.hubs],
    }


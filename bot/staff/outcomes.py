"""Outcome e-mails: on each programme's shortlist and outcome dates (as in force for the hub), every school whose
application carries a decision announced that day gets one e-mail saying so, and no school gets anything else.

``due_outcomes`` works out what is due at a moment (reading only, so ``hubbot remind`` can show it ahead with
``--now``); ``bot.staff.reminders.queue_reminders`` writes them to the outbox like any reminder. The outbox key is
``outcome:<application>:<date>`` (``shortlist:`` for a shortlist date) and names no decision, so an e-mail goes
once, whatever happens to the decision later, across restarts and with two workers: a decision changed after its
e-mail went is listed to staff by ``changed_after_sent`` (in the staff notice and the digest) and never re-sent on
its own. E-mails go from 09:00 London on the date, or on the next working day when the date is not one (never
earlier than announced), to the school's own addresses: the sender of its latest form e-mail and the others on that
e-mail, never an address that appears only on the form, and never one that bounced. A school with no decision, or
a withdrawn one, gets nothing; ``undecided`` lists them for staff. Decisions recorded after the date are announced
when next the job runs, for up to ``SEND_WINDOW_DAYS``; after that a person writes to the school.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.staff.reminders import DueReminder, queued_keys
from bot.staff.views import ApplicationView, application_views, bounced_addresses
from rules.calendar import at_nine
from rules.definitions import Notification
from rules.outcomes import Announcement, StaffDecision, announcements, outcome_notification, outcome_send_day
from rules.settings import CheckSettings
from rules.verdict import FlagCode, Status, Verdict
from storage.models import Application, Message, OutboxItem
from templates import EmailKind

SEND_WINDOW_DAYS = 30
OUTCOME_KINDS = {
    StaffDecision.SHORTLISTED: EmailKind.OUTCOME_SHORTLISTED,
    StaffDecision.SELECTED: EmailKind.OUTCOME_SELECTED,
    StaffDecision.WAITLISTED: EmailKind.OUTCOME_WAITLISTED,
    StaffDecision.DECLINED: EmailKind.OUTCOME_DECLINED,
}
_FINAL_KINDS = {kind: decision for decision, kind in OUTCOME_KINDS.items() if decision is not StaffDecision.SHORTLISTED}
WHY_SENT = ("This e-mail was sent by the hub's application system on behalf of the hub team, who made the "
            "decision. Simply reply if you have any questions.")


def outcome_key(application_id: int, announcement: Announcement) -> str:
    prefix = "shortlist" if announcement.shortlist else "outcome"
    return f"{prefix}:{application_id}:{announcement.day.isoformat()}"


def school_addresses(app: ApplicationView, hub: HubSettings, bounced: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    """(to, cc) for an e-mail to the school: its latest form e-mail's sender, copied to the others on that e-mail
    (not the hub's own addresses, not bounced ones). ("", ()) when there is nobody to write to."""
    own = {hub.address.lower(), *(a.lower() for a in hub.aliases)}
    sender = (app.sender or "").lower()
    if not sender or sender in bounced or sender in own:
        return "", ()
    cc = tuple(a for a in dict.fromkeys(c.lower() for c in app.correspondents)
               if a not in own and a != sender and a not in bounced)
    return sender, cc


def _announcements(settings: CheckSettings, hub: HubSettings, programme_id: str) -> tuple[Announcement, ...]:
    programme = settings.registry.get(programme_id)
    if programme is None:
        return ()
    return announcements(settings.dates(hub.id, programme).notifications)


def _outcome_date(settings: CheckSettings, hub: HubSettings, programme_id: str) -> Notification | None:
    programme = settings.registry.get(programme_id)
    return outcome_notification(settings.dates(hub.id, programme).notifications) if programme else None


def due_outcomes(session: Session, config: Config, settings: CheckSettings, now: datetime, *,
                 views: Mapping[str, list[ApplicationView]] | None = None) -> list[DueReminder]:
    """Every outcome or shortlist e-mail due at ``now`` and not queued before, in a fixed number of queries however
    many applications there are. ``views`` (``views_by_hub``) spares reading the applications again."""
    due: list[DueReminder] = []
    queued: set[str] | None = None      # read once, when some announcement is in its window
    for hub in config.hubs:
        apps = views.get(hub.id, []) if views is not None else application_views(session, hub_id=hub.id)
        bounced: frozenset[str] | None = None
        for programme_id in sorted({*hub.programmes, *(a.programme for a in apps)}):
            programme = settings.registry.get(programme_id)
            if programme is None:
                continue
            outcome = _outcome_date(settings, hub, programme_id)
            for announcement in _announcements(settings, hub, programme_id):
                send_from = at_nine(outcome_send_day(announcement.day, config.schedule.working_days))
                if not send_from <= now < send_from + timedelta(days=SEND_WINDOW_DAYS):
                    continue
                for app in apps:
                    if app.programme != programme_id or app.decision not in announcement.decisions:
                        continue
                    key = outcome_key(app.id, announcement)
                    if queued is None:
                        queued = queued_keys(session, ("outcome:", "shortlist:"))
                    if key in queued:
                        continue
                    if bounced is None:
                        bounced = bounced_addresses(session, hub.id)
                    to, cc = school_addresses(app, hub, bounced)
                    if not to:
                        continue
                    assert app.decision is not None
                    kind = OUTCOME_KINDS[app.decision]
                    context = {"hub_name": hub.name, "hub_address": hub.address,
                               "programme_title": programme.title, "school_name": app.school_name or "",
                               "date": f"{announcement.day:%-d %B %Y}",
                               "outcome_date": f"{outcome.date:%-d %B %Y}" if outcome else "",
                               "why_sent": WHY_SENT}
                    due.append(DueReminder(kind, key, hub, (to,), cc, context,
                                           f"{app.display_name}: {app.decision.value}, announced "
                                           f"{announcement.day:%-d %B %Y}", app.id, app.school_message_id,
                                           config.templates_dir_for(hub)))
    return due


# ---- what staff are told --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChangedAfterSent:
    """A decision that no longer matches the outcome e-mail the school was sent."""

    application_id: int
    school: str
    programme: str
    sent: StaffDecision
    sent_at: datetime
    now: StaffDecision | None
    changed_at: datetime | None = None     # when the decision was last recorded


def changed_after_sent(session: Session, hub_id: str) -> list[ChangedAfterSent]:
    """Applications whose final outcome e-mail announced a decision they no longer have (one query)."""
    rows = session.execute(
        select(Application.id, Application.school_name, Application.programme, Application.decision,
               Application.decided_at, OutboxItem.kind, OutboxItem.sent_at, OutboxItem.created_at)
        .join(OutboxItem, OutboxItem.application_id == Application.id)
        .where(Application.hub_id == hub_id, OutboxItem.kind.in_(list(_FINAL_KINDS)))
        .order_by(OutboxItem.id))
    latest: dict[int, ChangedAfterSent] = {}
    for app_id, name, programme, decision, decided_at, kind, sent_at, created_at in rows:
        sent = _FINAL_KINDS[EmailKind(kind)]
        latest[app_id] = ChangedAfterSent(app_id, name or "school not named", programme, sent,
                                          sent_at or created_at, decision, decided_at)
    return [c for c in latest.values() if c.now is not c.sent]


def undecided(apps: list[ApplicationView]) -> list[ApplicationView]:
    """Applications with no decision yet: they get no outcome e-mail, so staff must see them before the date."""
    return [a for a in apps if a.decision is None]


@dataclass(frozen=True)
class WithdrawalRequest:
    message_id: int
    received: datetime | None
    sender: str
    application_id: int | None
    school: str | None


def withdrawal_requests(session: Session, hub_id: str, *, since: datetime | None = None) -> list[WithdrawalRequest]:
    """Requests to withdraw (status review, flag withdrawal) received in this hub, with the application each was
    tied to (None when the bot could not tell which)."""
    query = (select(Message.id, Message.received_at, Message.verdict, Message.application_id,
                    Application.school_name, Application.decision)
             .outerjoin(Application, Application.id == Message.application_id)
             .where(Message.hub_id == hub_id, Message.verdict_status == Status.REVIEW).order_by(Message.id))
    if since is not None:
        query = query.where(Message.stored_at >= since)
    out = []
    for message_id, received, record, app_id, school, decision in session.execute(query):
        verdict = Verdict.from_record(record) if record else None
        if verdict is None or not verdict.has_flag(FlagCode.WITHDRAWAL):
            continue
        if decision is StaffDecision.WITHDRAWN:
            continue     # staff have recorded it: done
        out.append(WithdrawalRequest(message_id, received, verdict.sender or "", app_id, school))
    return out


def announcement_for(settings: CheckSettings, hub: HubSettings, programme_id: str,
                     notification: Notification) -> Announcement | None:
    """The shortlist or outcome announcement a notification date is, if it is one."""
    return next((a for a in _announcements(settings, hub, programme_id) if a.day == notification.date), None)

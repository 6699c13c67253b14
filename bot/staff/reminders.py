"""Reminders: to schools whose application is still incomplete as the deadline nears, to signatories not yet
copied, and to hub staff before each notification date.

``due_reminders`` works out what is due at a moment (pure reading, so ``hubbot remind`` can show on Monday what
Friday will send); ``queue_reminders`` writes them to the outbox. Each reminder's outbox key names the
application (or hub and date) and the reminder point, and the outbox key is unique, so a reminder is queued at
most once whatever happens: a restart mid-send, a rerun, or two workers at the same moment. None goes after the
deadline, none to an address that bounced, and none to a school that sent a complete form (even if a later version
is not), that staff have decided about, or that asked to withdraw: none of them is "not complete yet". Reminders
go on working days (``[schedule] working_days``): one falling on another day goes on the next working day, unless
that is after the deadline, then on the working day before. The staff notice before a shortlist or outcome date
lists the schools with no decision yet (they will get nothing) and any decision changed after its e-mail went.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formataddr
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.staff.views import ApplicationView, application_views, bounced_addresses
from rules.calendar import LONDON, days_until, due_reminder_point, due_staff_notices
from rules.outcomes import StaffDecision
from rules.replies import greeting_name, issues_by_section
from rules.settings import CheckSettings
from storage import repository as repo
from storage.models import ApplicationStatus, EventKind, OutboxItem
from templates import EmailKind, RenderedEmail, render_email, render_subject


@dataclass(frozen=True)
class DueReminder:
    kind: EmailKind               # reminder, signatory_reminder, staff_notice or an outcome e-mail
    key: str                      # the outbox dedupe key: one reminder per key, ever
    hub: HubSettings
    to: tuple[str, ...]
    cc: tuple[str, ...]
    context: Mapping[str, Any] = field(compare=False, repr=False)   # what its templates are rendered from
    why: str = ""                 # for `hubbot remind`: what this is and why it is due
    application_id: int | None = None
    in_reply_to: str | None = None
    templates_dir: Path | None = None     # the hub's own templates, if it has some

    # Rendered when first wanted, not when found due: `hubbot remind` lists subjects only, a reminder already
    # queued is never rendered, and a round has thousands of reminders.
    @cached_property
    def email(self) -> RenderedEmail:
        return render_email(self.kind, dict(self.context), templates_dir=self.templates_dir)

    @cached_property
    def subject(self) -> str:
        if "email" in self.__dict__:
            return self.email.subject
        return render_subject(self.kind, dict(self.context), templates_dir=self.templates_dir)


def due_reminders(session: Session, config: Config, settings: CheckSettings, now: datetime, *,
                  views: Mapping[str, list[ApplicationView]] | None = None) -> list[DueReminder]:
    """Every reminder due at ``now`` that has not been queued before, in a fixed number of queries however many
    applications there are. ``views`` (``views_by_hub``) spares reading the applications again."""
    # Imported here: bot.staff.outcomes builds on DueReminder, defined above.
    from bot.staff.outcomes import (
        ChangedAfterSent,
        announcement_for,
        changed_after_sent,
        undecided,
        withdrawal_requests,
    )

    due: list[DueReminder] = []
    queued = queued_keys(session, ("reminder:", "staff:"))
    for hub in config.hubs:
        changed_in_hub: list[ChangedAfterSent] | None = None     # read once a hub, when a staff notice is due
        bounced = bounced_addresses(session, hub.id)
        apps = views.get(hub.id, []) if views is not None else application_views(session, hub_id=hub.id)
        withdrawing = {w.application_id for w in withdrawal_requests(session, hub.id) if w.application_id}
        programme_ids = sorted({*hub.programmes, *(a.programme for a in apps)})
        for programme_id in programme_ids:
            programme = settings.registry.get(programme_id)
            if programme is None:
                continue
            dates = settings.dates(hub.id, programme)
            templates_dir = config.templates_dir_for(hub)
            base = {"hub_name": hub.name, "hub_address": hub.address, "programme_title": programme.title,
                    "deadline": f"{dates.deadline:%-d %B %Y}" if dates.deadline else "",
                    "why_sent": "This reminder was sent automatically by the hub's application system, which "
                                "keeps track of the forms and signatures we have received."}
            mine = [a for a in apps if a.programme == programme_id]
            point = due_reminder_point(dates.deadline, config.schedule.reminder_days_before, now,
                                       config.schedule.working_days)
            if point is not None and dates.deadline is not None:
                left = days_until(dates.deadline, now)
                for app in mine:
                    if (app.status is not ApplicationStatus.INCOMPLETE or app.ever_complete
                            or app.decision is not None or app.id in withdrawing):
                        continue
                    due.extend(_for_application(app, hub, point.days_before, left, base, bounced,
                                                programme.sections, templates_dir))
            for notice in due_staff_notices(dates, now):
                if not hub.staff:
                    continue
                announcement = announcement_for(settings, hub, programme_id, notice)
                counts = {s.value: sum(1 for a in mine if a.status is s) for s in ApplicationStatus}
                # A late school is counted once, as late; "flagged" counts the other reasons to look.
                late = [a.display_name for a in mine if "late" in a.flags]
                flagged = [(a.display_name, ", ".join(f for f in dict.fromkeys(a.flags) if f != "late"))
                           for a in mine if any(f != "late" for f in a.flags)]
                if changed_in_hub is None:
                    changed_in_hub = changed_after_sent(session, hub.id)
                changed = [c for c in changed_in_hub if c.programme == programme_id]
                context = {**base, "what": notice.what, "date": f"{notice.date:%-d %B %Y}",
                           "days_left": days_until(notice.date, now), "counts": counts, "late": late,
                           "flagged": flagged, "total": len(mine),
                           "announces": sorted(d.value for d in announcement.decisions) if announcement else [],
                           "undecided": [_notice_row(a) for a in undecided(mine)] if announcement else [],
                           "still_shortlisted": [_notice_row(a) for a in mine
                                                 if a.decision is StaffDecision.SHORTLISTED]
                           if announcement and not announcement.shortlist else [],
                           "changed": [{"number": c.application_id, "school": c.school, "sent": c.sent.value,
                                        "now": c.now.value if c.now else "no decision"} for c in changed],
                           "applications": [{**_notice_row(a), "flags": ", ".join(dict.fromkeys(a.flags))}
                                            for a in mine]}
                due.append(DueReminder(
                    EmailKind.STAFF_NOTICE, f"staff:{hub.id}:{programme_id}:{notice.date.isoformat()}", hub,
                    tuple(hub.staff), (), context, f"staff note: {programme_id} {notice.what} on {notice.date}",
                    templates_dir=templates_dir))
    return [d for d in due if d.key not in queued]


def queued_keys(session: Session, prefixes: Iterable[str]) -> set[str]:
    """The outbox keys starting with one of ``prefixes``: every such e-mail ever queued (the outbox keeps keys
    unique), in one query rather than one look-up per e-mail that may be due."""
    return set(session.scalars(select(OutboxItem.dedupe_key).where(
        or_(*(OutboxItem.dedupe_key.startswith(prefix, autoescape=True) for prefix in prefixes)))))


def _notice_row(app: ApplicationView) -> dict:
    return {"number": app.id, "school": app.display_name, "urn": app.shown_urn or "not given",
            "status": app.status.value, "decision": app.decision.value if app.decision else "no decision yet"}


def _for_application(app: ApplicationView, hub: HubSettings, days_before: int, days_left: int, base: dict,
                     bounced: frozenset[str], section_order: tuple[str, ...],
                     templates_dir: Path | None = None) -> list[DueReminder]:
    out: list[DueReminder] = []
    school = app.display_name
    context = {**base, "school_name": school, "days_left": days_left,
               "sections": issues_by_section(app.issues, section_order),
               "not_copied": [{"title": s.title, "name": s.name, "email": s.email} for s in app.awaiting]}
    # Only addresses that were on the school's own e-mails: an address only the form names is never mailed.
    allowed = app.correspondents
    signed = tuple(s.email for s in app.signatories if s.email and s.signed and s.email not in bounced
                   and s.email != app.sender and s.email.lower() in allowed)
    if app.sender and app.sender not in bounced:
        out.append(DueReminder(
            EmailKind.REMINDER, f"reminder:{app.id}:{days_before}", hub, (app.sender,), signed, context,
            f"{school}: {len(app.issues)} field problem(s), {len(app.awaiting)} signatory(ies) awaited; "
            f"{days_before}-day reminder", app.id, app.school_message_id, templates_dir))
    for signatory in app.awaiting:
        if signatory.email in bounced or (signatory.email or "").lower() not in allowed:
            continue
        note = {**base, "school_name": school, "days_left": days_left, "title": signatory.title,
                "name": signatory.name, "greeting": greeting_name(signatory.name)}
        out.append(DueReminder(
            EmailKind.SIGNATORY_REMINDER, f"reminder:{app.id}:{days_before}:{signatory.role}", hub, (signatory.email,),
            (), note, f"{school}: {signatory.title} asked to confirm; {days_before}-day reminder", app.id,
            app.school_message_id, templates_dir))
    return out


def queue_reminders(session: Session, reminders: list[DueReminder], now: datetime, *, actor: str) -> int:
    """Write the reminders to the outbox (the caller commits, then drains the outbox); returns how many were new."""
    queued = 0
    for r in reminders:
        result = repo.enqueue_reply(
            session, hub_id=r.hub.id, kind=r.kind, from_addr=formataddr((r.hub.name, r.hub.address)),
            to=r.to, cc=r.cc, subject=r.email.subject, text=r.email.text, html=r.email.html,
            application_id=r.application_id, dedupe_key=r.key, in_reply_to=r.in_reply_to,
            references=r.in_reply_to, now=now)
        if result.created:
            queued += 1
            event = EventKind.OUTCOME_QUEUED if r.kind.value.startswith("outcome_") else EventKind.REMINDER_QUEUED
            repo.record_event(session, event, hub_id=r.hub.id, actor=actor,
                              application_id=r.application_id, outbox_id=result.item.id,
                              detail={"kind": r.kind.value, "key": r.key}, now=now)
    return queued


def describe(reminders: list[DueReminder], now: datetime) -> str:
    if not reminders:
        return f"No reminders due at {now.astimezone(LONDON):%a %d %b %Y %H:%M} (London)."
    lines = [f"{len(reminders)} reminder(s) due at {now.astimezone(LONDON):%a %d %b %Y %H:%M} (London):"]
    for r in reminders:
        lines.append(f"  [{r.hub.id}] {r.kind.value}: to {', '.join(r.to)} - {r.why}")
        lines.append(f"      Subject: {r.subject}")
    return "\n".join(lines)

"""The daily digest for hub staff: where the round stands, in one e-mail.

``build_digest`` gathers, for one hub at one moment: new applications since the last digest, counts by status and
by decision per programme (against the hub's ``targets``, when set), what staff must act on (requests to withdraw,
schools with no decision before a shortlist or outcome date, decisions changed after the school was told),
incomplete applications with what is missing and the days to the deadline, signatories awaiting confirmation, late
and flagged applications with each flag in words and its detail, mail that needs a person (not an application,
unreadable files, quarantined messages), replies that failed, bounced or may not have gone, and the next dates.
Each school is shown with its application number (the one ``decide`` and a decisions file use) and what the bot
last sent it; each reply problem with the number ``requeue`` takes. It tells staff no shell commands. The HTML is
one column of stacked rows, which reads on a phone as well as on a desktop (tests draw it in Chromium at 390 and
1000 px). ``queue_digest`` writes it to the outbox under the key ``digest:<hub>:<date>``, so a hub gets one digest
a day even across restarts and with two workers, with the XLSX export attached when the config asks
(``attach_export``). On a day with nothing new and nothing due no digest is sent, unless the config asks; an
open incident (a mailbox that cannot be read, a mail server failing: ``bot.ops.health``) opens the digest and makes
the day not quiet, so a broken mailbox is never reported as a quiet day.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.utils import formataddr

from sqlalchemy import LargeBinary, and_, func, or_, select
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.ops.health import OpenIncident, open_incidents
from bot.staff.outcomes import ChangedAfterSent, WithdrawalRequest, changed_after_sent, undecided, withdrawal_requests
from bot.staff.views import ApplicationView, LastSent, SignatoryView, application_views, bounced_addresses, last_sent
from parsers.email import header_values
from parsers.safe_text import ECHO_LIMIT, one_line
from rules.calendar import LONDON, days_until
from rules.outcomes import StaffDecision, announcements
from rules.replies import shown_value
from rules.settings import CheckSettings
from rules.verdict import Status, Verdict
from storage import repository as repo
from storage.models import ApplicationStatus, Event, EventKind, Message, MessageState, OutboxItem, OutboxState
from templates import EmailKind, RenderedEmail, render_email

UPCOMING_DAYS = 60
DUE_SOON_DAYS = 7
NEEDS_PERSON = (Status.NOT_APPLICATION, Status.UNREADABLE, Status.NO_FORM, Status.REVIEW)
STAFF_FLAGS = ("late", "region", "wrong_hub", "word_guidance", "resubmission", "duplicate")
# Each flag in words a hub administrator reads without a glossary; the flag's own detail follows it.
FLAG_WORDS = {"late": "Late", "region": "Outside the area", "wrong_hub": "Another hub's form",
              "word_guidance": "Long statement", "resubmission": "Sent again", "duplicate": "Delivered twice",
              "withdrawal": "Asks to withdraw"}


@dataclass(frozen=True)
class MailForStaff:
    received: datetime | None
    sender: str
    subject: str
    status: str
    note: str


@dataclass(frozen=True)
class ReplyProblem:
    number: int            # the outbox row: `hubbot requeue NUMBER` sends it again
    kind: str
    to: str
    state: str
    detail: str
    new: bool = True       # happened since the last digest (an older uncertain send is listed until resolved)


@dataclass(frozen=True)
class DateAhead:
    day: date
    days_left: int
    programme: str
    what: str


@dataclass
class Digest:
    hub: HubSettings
    day: date
    since: datetime
    new: list[ApplicationView] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)        # programme -> status -> n
    incomplete: list[tuple[ApplicationView, int | None]] = field(default_factory=list)
    awaiting: list[tuple[ApplicationView, SignatoryView]] = field(default_factory=list)
    flagged: list[ApplicationView] = field(default_factory=list)
    needs_person: list[MailForStaff] = field(default_factory=list)
    reply_problems: list[ReplyProblem] = field(default_factory=list)
    ahead: list[DateAhead] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    incidents: list[OpenIncident] = field(default_factory=list)
    decisions: dict[str, dict[str, int]] = field(default_factory=dict)     # programme -> decision -> n
    targets: dict[str, int] = field(default_factory=dict)                  # programme -> places (config)
    undecided: list[ApplicationView] = field(default_factory=list)         # before a shortlist/outcome date
    withdrawals: list[WithdrawalRequest] = field(default_factory=list)     # not yet recorded as withdrawn
    changed: list[ChangedAfterSent] = field(default_factory=list)
    last: dict[int, LastSent] = field(default_factory=dict)                # application -> what we last sent

    @property
    def quiet(self) -> bool:
        """Nothing new since the last digest and nothing due soon: no digest unless configured."""
        due_soon = any(d.days_left <= DUE_SOON_DAYS for d in self.ahead)
        new_withdrawals = any(w.received is None or w.received > self.since for w in self.withdrawals)
        newly_changed = any(c.changed_at is None or c.changed_at > self.since for c in self.changed)
        return not (self.incidents or self.new or self.needs_person or any(p.new for p in self.reply_problems) or due_soon
                    or new_withdrawals or newly_changed)


def _last_digest_time(session: Session, hub_id: str) -> datetime | None:
    return session.scalar(select(OutboxItem.created_at).where(OutboxItem.hub_id == hub_id,
                                                               OutboxItem.kind == EmailKind.DIGEST)
                          .order_by(OutboxItem.created_at.desc()).limit(1))


HEAD_BYTES = 65536      # of a message, all the digest reads: its From and Subject are in there


def _headers(raw: bytes) -> tuple[str, str]:
    shown = header_values(raw, ("from", "subject"), HEAD_BYTES)
    if shown is None:
        return "(unreadable header)", ""   # a broken header block still deserves a row for a person
    return one_line(shown["from"], ECHO_LIMIT), one_line(shown["subject"], ECHO_LIMIT)


def build_digest(session: Session, config: Config, settings: CheckSettings, hub: HubSettings,
                 now: datetime) -> Digest:
    # Strictly after the last digest: what happened in the same moment (one ``run --once`` polls, then queues the
    # digest, all at one ``now``) was in that digest already.
    since = _last_digest_time(session, hub.id) or now - timedelta(days=1)
    digest = Digest(hub=hub, day=now.astimezone(LONDON).date(), since=since,
                    incidents=open_incidents(session, hub.id))
    apps = application_views(session, hub_id=hub.id)
    digest.last = last_sent(session, hub_id=hub.id)
    programme_ids = sorted({*hub.programmes, *(a.programme for a in apps)})
    for programme_id in programme_ids:
        programme = settings.registry.get(programme_id)
        digest.titles[programme_id] = programme.title if programme else programme_id
        mine = [a for a in apps if a.programme == programme_id]
        digest.counts[programme_id] = {s.value: sum(1 for a in mine if a.status is s)
                                       for s in (ApplicationStatus.COMPLETE, ApplicationStatus.INCOMPLETE)}
        digest.decisions[programme_id] = {d.value: sum(1 for a in mine if a.decision is d) for d in StaffDecision}
        if programme_id in hub.targets:
            digest.targets[programme_id] = hub.targets[programme_id]
        if programme is None:
            continue
        dates = settings.dates(hub.id, programme)
        if any(a.day >= digest.day for a in announcements(dates.notifications)):
            # Schools hear on these dates only if staff decide: list who has no decision until then.
            digest.undecided.extend(undecided(mine))
        left = days_until(dates.deadline, now) if dates.deadline else None
        for app in mine:
            if app.created_at > since or (app.received_at and app.received_at > since):
                digest.new.append(app)
            if app.status is not ApplicationStatus.COMPLETE:
                digest.incomplete.append((app, left))
                digest.awaiting.extend((app, s) for s in app.awaiting)
            if any(f in STAFF_FLAGS for f in app.flags):
                digest.flagged.append(app)
        for day, what in ([(dates.deadline, "deadline for applications")] if dates.deadline else []) + \
                [(n.date, n.what) for n in dates.notifications]:
            left_days = days_until(day, now)
            if 0 <= left_days <= UPCOMING_DAYS:
                digest.ahead.append(DateAhead(day, left_days, programme_id, what))
    digest.ahead.sort(key=lambda d: d.day)

    # The first HEAD_BYTES of each message is all _headers reads (the database cuts it): a 20 MB attachment nobody
    # could read stays in the database.
    needing = select(Message.received_at, Message.state, Message.application_id, Message.verdict_status,
                     Message.verdict, func.substr(Message.raw, 1, HEAD_BYTES, type_=LargeBinary).label("head")).where(
        Message.hub_id == hub.id, Message.stored_at > since, or_(
            Message.verdict_status.in_(NEEDS_PERSON), Message.state == MessageState.QUARANTINED)).order_by(Message.id)
    for message in session.execute(needing.execution_options(yield_per=200)):
        sender, subject = _headers(message.head)
        if message.state is MessageState.QUARANTINED:
            status, note = "quarantined", "hubbot could not process this message; please read it"
        elif message.application_id is not None and message.verdict_status is not Status.REVIEW:
            continue   # a signatory's reply in an application's thread: already handled
        elif _is_decisions_file(message.verdict):
            continue   # a staff member's decisions file: recorded, and they were answered
        else:
            verdict = Verdict.from_record(message.verdict) if message.verdict else None
            status = message.verdict_status.value if message.verdict_status else ""
            note = "; ".join(verdict.problems if verdict else ()) or _review_note(verdict) or {
                Status.NOT_APPLICATION: "a question or a note for you",
                Status.NO_FORM: "says a form is attached, but none was"}.get(message.verdict_status, "")
        digest.needs_person.append(MailForStaff(message.received_at, sender, subject, status, note))

    digest.withdrawals = withdrawal_requests(session, hub.id)
    digest.changed = changed_after_sent(session, hub.id)
    for event in session.scalars(select(Event).where(Event.hub_id == hub.id, Event.at >= since,
                                                     Event.kind == EventKind.MAILBOX_BEHIND).order_by(Event.id)):
        digest.needs_person.append(MailForStaff(
            event.at, "hubbot", "the database looks older than the mailbox", "check",
            "restored from a backup? Mail whose reply is in the mailbox is not answered again; check the rest"))

    bounced = bounced_addresses(session, hub.id)
    # A problem is reported the first time in the digest after it happened; an uncertain send stays on the list
    # until a person requeues it, but only a new problem makes a day not quiet.
    recent = set(session.scalars(select(Event.outbox_id).where(
        Event.hub_id == hub.id, Event.at > since, Event.outbox_id.is_not(None),
        Event.kind.in_([EventKind.REPLY_FAILED, EventKind.REPLY_UNCERTAIN, EventKind.REPLY_RETRY,
                        EventKind.REPLY_SENT]))))
    problems = select(OutboxItem).where(OutboxItem.hub_id == hub.id, OutboxItem.kind != EmailKind.DIGEST, or_(
        OutboxItem.state.in_([OutboxState.FAILED, OutboxState.UNCERTAIN]),
        and_(OutboxItem.state == OutboxState.PENDING, OutboxItem.attempts > 0),
        # Sent, but the server refused some of its recipients (a Cc): staff may want to tell them another way.
        and_(OutboxItem.state == OutboxState.SENT, OutboxItem.last_error.like("partly refused%")))
    ).order_by(OutboxItem.id)
    for item in session.scalars(problems):
        new = item.id in recent
        if not new and item.state is not OutboxState.UNCERTAIN:
            continue
        state = {OutboxState.FAILED: "failed", OutboxState.PENDING: "retrying",
                 OutboxState.UNCERTAIN: "may not have been sent (check, then requeue)",
                 OutboxState.SENT: "sent, but some recipients were refused"}[item.state]
        if item.state is OutboxState.FAILED and any(a.lower() in bounced for a in item.to):
            state = "bounced"
        digest.reply_problems.append(ReplyProblem(item.id, item.kind.replace("_", " "), ", ".join(item.to), state,
                                                  item.last_error or "", new))
    return digest


def _review_note(verdict: Verdict | None) -> str:
    """What a person must look at on a form the bot was not sure of (the school was told only that it arrived)."""
    if verdict is None or verdict.status is not Status.REVIEW:
        return ""
    if verdict.unsure:
        return "please check the form: " + "; ".join(f"{u.label}: {u.reason}" for u in verdict.unsure)
    return "; ".join(f"{f.code.value}: {f.detail}" for f in verdict.flags) or "please check the form"


def render_digest(digest: Digest, *, templates_dir: str | None = None) -> RenderedEmail:
    titles = digest.titles
    undecided_ids = {a.id for a in digest.undecided}
    context = {
        "hub_name": digest.hub.name, "hub_address": digest.hub.address,
        "day": f"{digest.day:%A %-d %B %Y}", "since": f"{digest.since.astimezone(LONDON):%-d %B %H:%M}",
        "titles": titles, "counts": digest.counts,
        "standing": [_standing(digest, programme) for programme in digest.counts],
        "new": [_row(digest, a) for a in digest.new],
        "incomplete": [{**_row(digest, a), "missing": _missing(a),
                        "deadline": "" if left is None else ("passed" if left < 0 else
                                                             "today" if left == 0 else f"{left} days")}
                       for a, left in digest.incomplete],
        "awaiting": [{"school": a.display_name, "number": a.id, "programme": titles.get(a.programme, a.programme),
                      "title": s.title, "name": s.name or "", "email": s.email} for a, s in digest.awaiting],
        "flagged": [{**_row(digest, a), "flags": _flag_lines(a)} for a in digest.flagged],
        "undecided": [{**_row(digest, a), "complete": a.status is ApplicationStatus.COMPLETE}
                      for a in digest.undecided],
        "withdrawals": [{"number": w.application_id or "", "school": w.school or "school not identified",
                         "sender": w.sender, "received": _when(w.received),
                         "undecided": w.application_id in undecided_ids} for w in digest.withdrawals],
        "changed": [{"number": c.application_id, "school": c.school, "programme": titles.get(c.programme,
                                                                                             c.programme),
                     "sent": c.sent.value, "sent_at": _when(c.sent_at),
                     "now": c.now.value if c.now else "no decision"} for c in digest.changed],
        "needs_person": [{"received": _when(m.received), "sender": m.sender, "subject": m.subject,
                          "status": m.status.replace("_", " "), "note": m.note} for m in digest.needs_person],
        "reply_problems": [{"number": p.number, "kind": p.kind, "to": p.to, "state": p.state, "detail": p.detail}
                           for p in digest.reply_problems],
        "ahead": [{"day": f"{d.day:%a %-d %b %Y}", "days_left": d.days_left,
                   "programme": titles.get(d.programme, d.programme), "what": d.what} for d in digest.ahead],
        "incidents": [{"title": o.incident.title, "since": f"{o.incident.since.astimezone(LONDON):%a %-d %b %H:%M}",
                       "detail": o.incident.detail} for o in digest.incidents],
    }
    return render_email(EmailKind.DIGEST, context, templates_dir=templates_dir)


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(LONDON):%-d %b %Y %H:%M}" if moment else ""


def _standing(digest: Digest, programme: str) -> dict:
    counts = digest.counts[programme]
    decided = {k: v for k, v in digest.decisions.get(programme, {}).items() if v}
    total = sum(counts.values())
    return {"programme": programme, "title": digest.titles.get(programme, programme), "total": total,
            "complete": counts.get("complete", 0), "incomplete": counts.get("incomplete", 0),
            "target": digest.targets.get(programme), "decisions": decided,
            "selected": decided.get("selected", 0)}


def _row(digest: Digest, app: ApplicationView) -> dict:
    last = digest.last.get(app.id)
    urn = app.urn or (f"{app.urn_as_written} (not valid)" if app.urn_as_written else "not given")
    return {"number": app.id, "school": app.display_name, "urn": urn,
            "programme": digest.titles.get(app.programme, app.programme), "status": app.status.value,
            "decision": app.decision.value if app.decision else "",
            "received": _when(app.received_at),
            "last_sent": (f"{last.kind.value.replace('_', ' ')}, {_when(last.at)}"
                          + ("" if last.sent else " (not sent yet)")) if last else "nothing yet"}


def _flag_lines(app: ApplicationView) -> list[str]:
    """Each flag once, in words, with its detail: "Outside the area: address is not in Birmingham, ..."."""
    lines: list[str] = []
    for code, detail in app.flag_details or tuple((f, "") for f in app.flags):
        if code not in STAFF_FLAGS:
            continue
        line = f"{FLAG_WORDS.get(code, code)}: {detail}" if detail else FLAG_WORDS.get(code, code)
        if line not in lines:
            lines.append(line)
    return lines


def _missing(app: ApplicationView) -> list[str]:
    items = []
    for i in app.issues:
        what = "missing" if i.missing else i.reason
        if not i.missing and i.value:
            what += f' (we read "{shown_value(i.value)}")'
        items.append(f"{i.label} ({what})")
    items += [f"{s.title} to confirm" for s in app.awaiting]
    return list(dict.fromkeys(items))


def missing_in_words(app: ApplicationView) -> str:
    """What is still missing, in words, for the export's ``problems`` column ("" when nothing is)."""
    return "; ".join(_missing(app))


def _is_decisions_file(verdict: dict | None) -> bool:
    reply = (verdict or {}).get("reply") or {}
    return reply.get("kind") == EmailKind.DECISIONS_RECORDED.value


def _digest_key(digest: Digest) -> str:
    return f"digest:{digest.hub.id}:{digest.day.isoformat()}"


def digest_queued(session: Session, digest: Digest) -> bool:
    """Whether this hub's digest for this day has already been queued."""
    return repo.outbox_has(session, _digest_key(digest))


def export_attachment(session: Session, settings: CheckSettings, digest: Digest) -> dict[str, str]:
    """The hub's XLSX export as an outbox attachment (the same workbook ``hubbot export`` writes)."""
    from bot.staff.export import spool_rows, write_xlsx

    buffer = io.BytesIO()
    with spool_rows(session, hub=digest.hub.id, registry=settings.registry) as sheets:
        write_xlsx(sheets, buffer)
    return {"filename": f"applications-{digest.hub.id}-{digest.day.isoformat()}.xlsx",
            "content_type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "data": base64.b64encode(buffer.getvalue()).decode("ascii")}


def queue_digest(session: Session, digest: Digest, now: datetime, *, actor: str, config: Config | None = None,
                 settings: CheckSettings | None = None) -> bool:
    """Queue today's digest for the hub's staff; False if it was already queued today (or there is no staff).
    With ``config`` and ``settings``, the hub's templates are used and the export attached when it asks."""
    if not digest.hub.staff:
        return False
    templates_dir = config.templates_dir_for(digest.hub) if config else None
    rendered = render_digest(digest, templates_dir=str(templates_dir) if templates_dir else None)
    attachments = ([export_attachment(session, settings, digest)]
                   if config is not None and settings is not None and config.attach_export_for(digest.hub) else None)
    result = repo.enqueue_reply(
        session, hub_id=digest.hub.id, kind=EmailKind.DIGEST, from_addr=formataddr((digest.hub.name, digest.hub.address)),
        to=digest.hub.staff, subject=rendered.subject, text=rendered.text, html=rendered.html,
        dedupe_key=_digest_key(digest), now=now, attachments=attachments)
    if result.created:
        repo.record_event(session, EventKind.DIGEST_QUEUED, hub_id=digest.hub.id, actor=actor, outbox_id=result.item.id,
                          detail={"new": len(digest.new), "needs_person": len(digest.needs_person),
                                  "export": bool(attachments)}, now=now)
    return result.created

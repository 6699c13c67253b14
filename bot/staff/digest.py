"""The daily digest for hub staff: where the round stands, in one e-mail.

``build_digest`` gathers, for one hub at one moment: new applications since the last digest, counts by status per
programme, incomplete applications with what is missing and the days to the deadline, signatories awaiting
confirmation, late and flagged applications, mail that needs a person (not an application, unreadable files,
quarantined messages), replies that failed, bounced or may not have gone, and the next dates. ``queue_digest``
writes it to the outbox under the key ``digest:<hub>:<date>``, so a hub gets one digest a day even across restarts
and with two workers. On a day with nothing new and nothing due no digest is sent, unless the config asks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import formataddr

from sqlalchemy import LargeBinary, and_, func, or_, select
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.staff.views import ApplicationView, SignatoryView, application_views, bounced_addresses
from rules.calendar import LONDON, days_until
from rules.pipeline import CheckSettings
from rules.verdict import Status, Verdict
from storage import repository as repo
from storage.repository import header_block
from storage.models import ApplicationStatus, Event, EventKind, Message, MessageState, OutboxItem, OutboxState
from templates import EmailKind, RenderedEmail, render_email

UPCOMING_DAYS = 60
DUE_SOON_DAYS = 7
NEEDS_PERSON = (Status.NOT_APPLICATION, Status.UNREADABLE, Status.NO_FORM)
STAFF_FLAGS = ("late", "region", "wrong_hub", "word_guidance", "resubmission", "duplicate")


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

    @property
    def quiet(self) -> bool:
        """Nothing new since the last digest and nothing due soon: no digest unless configured."""
        due_soon = any(d.days_left <= DUE_SOON_DAYS for d in self.ahead)
        return not (self.new or self.needs_person or any(p.new for p in self.reply_problems) or due_soon)


def _last_digest_time(session: Session, hub_id: str) -> datetime | None:
    return session.scalar(select(OutboxItem.created_at).where(OutboxItem.hub_id == hub_id,
                                                               OutboxItem.kind == EmailKind.DIGEST)
                          .order_by(OutboxItem.created_at.desc()).limit(1))


def _headers(raw: bytes) -> tuple[str, str]:
    try:
        headers = BytesHeaderParser(policy=default_policy).parsebytes(header_block(raw[:65536]), headersonly=True)
        return (" ".join(str(headers.get("From", "")).split())[:120],
                " ".join(str(headers.get("Subject", "")).split())[:160])
    except Exception:  # noqa: BLE001 - a broken header block still deserves a row for a person
        return "(unreadable header)", ""


def build_digest(session: Session, config: Config, settings: CheckSettings, hub: HubSettings,
                 now: datetime) -> Digest:
    since = _last_digest_time(session, hub.id) or now - timedelta(days=1)
    digest = Digest(hub=hub, day=now.astimezone(LONDON).date(), since=since)
    apps = application_views(session, hub_id=hub.id)
    programme_ids = sorted({*hub.programmes, *(a.programme for a in apps)})
    for programme_id in programme_ids:
        programme = settings.registry.get(programme_id)
        digest.titles[programme_id] = programme.title if programme else programme_id
        mine = [a for a in apps if a.programme == programme_id]
        digest.counts[programme_id] = {s.value: sum(1 for a in mine if a.status is s)
                                       for s in (ApplicationStatus.COMPLETE, ApplicationStatus.INCOMPLETE)}
        if programme is None:
            continue
        dates = settings.dates(hub.id, programme)
        left = days_until(dates.deadline, now) if dates.deadline else None
        for app in mine:
            if app.created_at >= since or (app.received_at and app.received_at >= since):
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

    # The first 64 KiB of each message is all _headers reads: a 20 MB unreadable attachment stays in the database.
    needing = select(Message.received_at, Message.state, Message.application_id, Message.verdict_status,
                     Message.verdict, func.substr(Message.raw, 1, 65536, type_=LargeBinary).label("head")).where(
        Message.hub_id == hub.id, Message.stored_at >= since, or_(
            Message.verdict_status.in_(NEEDS_PERSON), Message.state == MessageState.QUARANTINED)).order_by(Message.id)
    for message in session.execute(needing.execution_options(yield_per=200)):
        sender, subject = _headers(message.head)
        if message.state is MessageState.QUARANTINED:
            status, note = "quarantined", "hubbot could not process this message; please read it"
        elif message.application_id is not None:
            continue   # a signatory's reply in an application's thread: already handled
        else:
            verdict = Verdict.from_record(message.verdict) if message.verdict else None
            status = message.verdict_status.value if message.verdict_status else ""
            note = "; ".join(verdict.problems if verdict else ()) or {
                Status.NOT_APPLICATION: "a question or a note for you",
                Status.NO_FORM: "says a form is attached, but none was"}.get(message.verdict_status, "")
        digest.needs_person.append(MailForStaff(message.received_at, sender, subject, status, note))

    bounced = bounced_addresses(session, hub.id)
    # A problem is reported the first time in the digest after it happened; an uncertain send stays on the list
    # until a person requeues it, but only a new problem makes a day not quiet.
    recent = set(session.scalars(select(Event.outbox_id).where(
        Event.hub_id == hub.id, Event.at >= since, Event.outbox_id.is_not(None),
        Event.kind.in_([EventKind.REPLY_FAILED, EventKind.REPLY_UNCERTAIN, EventKind.REPLY_RETRY]))))
    problems = select(OutboxItem).where(OutboxItem.hub_id == hub.id, OutboxItem.kind != EmailKind.DIGEST, or_(
        OutboxItem.state.in_([OutboxState.FAILED, OutboxState.UNCERTAIN]),
        and_(OutboxItem.state == OutboxState.PENDING, OutboxItem.attempts > 0))).order_by(OutboxItem.id)
    for item in session.scalars(problems):
        new = item.id in recent
        if not new and item.state is not OutboxState.UNCERTAIN:
            continue
        state = {OutboxState.FAILED: "failed", OutboxState.PENDING: "retrying",
                 OutboxState.UNCERTAIN: "may not have been sent (check, then requeue)"}[item.state]
        if item.state is OutboxState.FAILED and any(a.lower() in bounced for a in item.to):
            state = "bounced"
        digest.reply_problems.append(ReplyProblem(item.id, item.kind.replace("_", " "), ", ".join(item.to), state,
                                                  item.last_error or "", new))
    return digest


def render_digest(digest: Digest) -> RenderedEmail:
    context = {
        "hub_name": digest.hub.name, "hub_address": digest.hub.address,
        "day": f"{digest.day:%A %-d %B %Y}", "since": f"{digest.since.astimezone(LONDON):%-d %B %H:%M}",
        "titles": digest.titles, "counts": digest.counts,
        "new": [_row(a) for a in digest.new],
        "incomplete": [{**_row(a), "missing": _missing(a),
                        "deadline": "" if left is None else ("passed" if left < 0 else
                                                             "today" if left == 0 else f"{left} days")}
                       for a, left in digest.incomplete],
        "awaiting": [{"school": a.display_name, "programme": a.programme, "title": s.title, "name": s.name or "",
                      "email": s.email} for a, s in digest.awaiting],
        "flagged": [{**_row(a), "flags": [f for f in a.flags if f in STAFF_FLAGS]} for a in digest.flagged],
        "needs_person": [{"received": f"{m.received.astimezone(LONDON):%-d %b %H:%M}" if m.received else "",
                          "sender": m.sender, "subject": m.subject, "status": m.status.replace("_", " "),
                          "note": m.note} for m in digest.needs_person],
        "reply_problems": [{"number": p.number, "kind": p.kind, "to": p.to, "state": p.state, "detail": p.detail}
                           for p in digest.reply_problems],
        "ahead": [{"day": f"{d.day:%a %-d %b %Y}", "days_left": d.days_left, "programme": d.programme,
                   "what": d.what} for d in digest.ahead],
    }
    return render_email(EmailKind.DIGEST, context)


def _row(app: ApplicationView) -> dict:
    return {"school": app.display_name, "urn": app.urn or "not valid", "programme": app.programme,
            "status": app.status.value,
            "received": f"{app.received_at.astimezone(LONDON):%-d %b %Y %H:%M}" if app.received_at else ""}


def _missing(app: ApplicationView) -> list[str]:
    items = [f"{i.label} ({'missing' if i.missing else i.reason})" for i in app.issues]
    items += [f"{s.title} to confirm" for s in app.awaiting]
    return items


def _digest_key(digest: Digest) -> str:
    return f"digest:{digest.hub.id}:{digest.day.isoformat()}"


def digest_queued(session: Session, digest: Digest) -> bool:
    """Whether this hub's digest for this day has already been queued."""
    return repo.outbox_has(session, _digest_key(digest))


def queue_digest(session: Session, digest: Digest, now: datetime, *, actor: str) -> bool:
    """Queue today's digest for the hub's staff; False if it was already queued today (or there is no staff)."""
    if not digest.hub.staff:
        return False
    rendered = render_digest(digest)
    result = repo.enqueue_reply(
        session, hub_id=digest.hub.id, kind=EmailKind.DIGEST, from_addr=formataddr((digest.hub.name, digest.hub.address)),
        to=digest.hub.staff, subject=rendered.subject, text=rendered.text, html=rendered.html,
        dedupe_key=_digest_key(digest), now=now)
    if result.created:
        repo.record_event(session, EventKind.DIGEST_QUEUED, hub_id=digest.hub.id, actor=actor, outbox_id=result.item.id,
                          detail={"new": len(digest.new), "needs_person": len(digest.needs_person)}, now=now)
    return result.created

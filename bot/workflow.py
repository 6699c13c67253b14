"""The workflow: what the bot does with one stored message, in one database transaction.

It reads the stored bytes (``rules.pipeline.read_email``), loads the history that matters to the decision (an earlier
copy of the same e-mail, the application the message answers, the school's application, the applications whose
forms came from the sender's domain, a staff member's decisions file read into rows, what each correspondent was
sent today), asks ``rules.decision.decide`` what to do, and carries that out: the message's verdict, the
application and its version and signatories (and its key, when a corrected URN names it for the first time),
confirmations, staff decisions, the reply in the outbox and the event, all in the caller's transaction, so a crash
leaves either all of it or none. It decides nothing itself.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr
from typing import Any

from sqlalchemy import bindparam, func, null, select
from sqlalchemy.orm import Session

from bot.config import Config
from bot.staff.decisions import Authenticator, apply_plan, default_authenticator, staff_file
from parsers.email import parse_email
from parsers.types import ParsedEmail
from rules.decision import Action, ApplicationHistory, Decision, History, SignatoryHistory, application_key, decide
from rules.pipeline import CheckSettings, read_email
from rules.verdict import FlagCode, Reply, Status, Verdict
from storage.counters import sent_in_last_day
from storage.inserts import flushed_connection, update_row
from storage.models import Application, ApplicationStatus, ApplicationVersion, EventKind, Message, OutboxItem
from storage.recovery import FORGOTTEN_REPLY
from storage.repository import (
    SignatoryCopy,
    add_application_version,
    confirm_signatory,
    enqueue_reply,
    get_or_create_application,
    mark_processed,
    record_event,
    upsert_signatories,
)
from templates import EmailKind

log = logging.getLogger(__name__)

_EVENT_FOR_ACTION = {
    Action.IGNORE: EventKind.IGNORED,
    Action.DUPLICATE: EventKind.DUPLICATE,
    Action.RECORD: EventKind.APPLICATION_VERSION,
    Action.CONFIRM: EventKind.THREAD_REPLY,
    Action.NOTE: EventKind.PROCESSED,
    Action.WITHDRAW: EventKind.PROCESSED,
    Action.DECISIONS: EventKind.PROCESSED,
}
CANDIDATES = 20     # applications from one sender domain looked at per message (a trust's schools, at most)


@dataclass(frozen=True)
class Outcome:
    """What processing one message decided, for the run summary and tests."""

    message_row_id: int
    status: Status
    reply: EmailKind | None
    application_id: int | None
    flags: tuple[FlagCode, ...]
    confirmed_roles: tuple[str, ...] = ()


class Workflow:
    def __init__(self, config: Config, settings: CheckSettings, *, worker: str = "hubbot",
                 staff_authenticated: Authenticator | None = None) -> None:
        self.config = config
        self.settings = settings
        self.worker = worker
        self.hub_settings = {h.id: h for h in config.hubs}
        # Whether a staff member's decisions e-mail is really from them (see bot.staff.decisions).
        self.staff_authenticated = staff_authenticated or default_authenticator(config)

    def process(self, session: Session, message: Message, now: datetime) -> Outcome:
        """Read, decide and record ``message``; the caller commits. Nothing here talks to a network."""
        email = parse_email(message.raw, self.settings.limits)
        hub = self.settings.hubs.get(message.hub_id)
        verdict = read_email(email, message.size, self.settings, received_at=message.received_at, hub=hub)
        history = self._history(session, message, email, verdict, now)
        decision = decide(verdict, history, self.settings, hub, message_key=_message_key(message))
        return self._carry_out(session, message, decision, now)

    # ---- loading the history -----------------------------------------------------------------------------------

    def _history(self, session: Session, message: Message, email: ParsedEmail, verdict: Verdict,
                 now: datetime) -> History:
        if verdict.status is Status.IGNORED:
            return History()   # nothing about the past changes what happens to automatic mail
        form = bool(verdict.programme) and verdict.status in (Status.COMPLETE, Status.INCOMPLETE)
        # The school's key as the form gives it; an application in the thread may change it (application_key).
        key = application_key(verdict, None, _message_key(message)) if form else None
        found = self._probe(session, message, email, verdict.programme, key)
        thread = session.get(Application, found.thread) if found.thread else None
        school = None
        if form:
            if thread is not None:
                key = application_key(verdict, _history_of(thread), _message_key(message))
            if key != found.key:   # the thread's application changed the key the probe looked up
                school = session.scalar(_SCHOOL, {"hub": message.hub_id, "programme": verdict.programme, "key": key})
            elif found.school:
                school = session.get(Application, found.school)
        candidates: list[Application] = []
        if form or verdict.has_flag(FlagCode.WITHDRAWAL):
            candidates = self._same_domain(session, message.hub_id, verdict.sender,
                                           verdict.programme if form else None,
                                           exclude={a.id for a in (thread, school) if a is not None})
        hub = self.hub_settings.get(message.hub_id)
        decisions = (staff_file(session, email, hub, self.settings.limits, self.staff_authenticated)
                     if hub is not None and hub.staff else None)
        return History(
            duplicate=found.duplicate, answered_before=found.answered_before,
            thread=_history_of(thread) if thread else None, answers_our_reply=found.answers_our_reply,
            school=_history_of(school) if school else None,
            candidates=tuple(_history_of(a) for a in candidates),
            staff_file=decisions,
            sent_today=self._sent_today(session, email.all_recipients_and_sender(), now),
            daily_cap=self.config.max_replies_per_address_per_day,
        )

    def _probe(self, session: Session, message: Message, email: ParsedEmail, programme: str | None,
               key: str | None) -> _Probe:
        """What every message asks of the past, in one statement: an earlier copy of the same e-mail, a reply we
        sent to it that the outbox forgot, the application of the thread (and whether the e-mail names one of our
        own e-mails, which only can confirm a signatory, or only the school's), and the school's application
        under ``key``."""
        ids = [i for i in (email.in_reply_to, *email.references) if i][:50]
        row = flushed_connection(session).execute(_probe_query(bool(ids)), {
            "hub": message.hub_id, "wanted": message.message_id, "before": message.id, "answered": message.message_id,
            "ids": ids, "programme": programme, "key": key}).one()
        return _Probe(duplicate=row.earlier is not None, answered_before=row.forgotten is not None,
                      thread=row.ours or row.theirs, answers_our_reply=row.ours is not None,
                      key=key, school=row.school)

    def _same_domain(self, session: Session, hub_id: str, sender: str | None, programme: str | None,
                     exclude: set[int]) -> list[Application]:
        """Applications of this hub (and programme) whose latest form came from the sender's domain."""
        domain = _domain(sender)
        if not domain:
            return []
        return list(session.scalars(_same_domain_query(programme is not None), {
            "hub": hub_id, "domain": domain, "programme": programme, "exclude": sorted(exclude)}))

    def _sent_today(self, session: Session, addresses: Iterable[str], now: datetime) -> dict[str, int]:
        """How many e-mails each of ``addresses`` got from us in the last 24 hours, counting every recipient: one
        indexed count per address (storage/counters.py), not a read of the day's outbox."""
        return sent_in_last_day(session, addresses, now)

    # ---- carrying the decision out -----------------------------------------------------------------------------

    def _carry_out(self, session: Session, message: Message, decision: Decision, now: datetime) -> Outcome:
        verdict = decision.verdict
        application: Application | None = None
        detail: dict = {}
        if decision.action is Action.RECORD:
            application, detail = self._record_form(session, message, decision, now)
        elif decision.action is Action.CONFIRM:
            application = self._confirm(session, message, decision, now)
            detail = {"confirmed": list(decision.confirmed)}
        elif decision.action is Action.IGNORE:
            detail = {"because": verdict.ignored_because}
        elif decision.action is Action.WITHDRAW:
            # Only linked: the decision changes when staff record it, never because a school asked.
            application = session.get(Application, decision.application_id) if decision.application_id else None
            detail = {"withdrawal_request": True}
        elif decision.action is Action.DECISIONS and decision.plan is not None:
            recorded = apply_plan(session, decision.plan, actor=decision.actor or "staff:e-mail", route="e-mail",
                                  now=now)
            detail = {"decisions": recorded, "refused": len(decision.plan.refused)}
        if decision.held_back is not None:
            record_event(session, EventKind.REPLY_SUPPRESSED, hub_id=message.hub_id, actor=self.worker,
                         message_id=message.id,
                         detail={"reason": "daily limit", "limit": self.config.max_replies_per_address_per_day},
                         now=now)
        if decision.reply is not None:
            self._enqueue(session, message, decision.reply, application, now)
        for notice in decision.notices:
            self._enqueue(session, message, notice, application, now)
        mark_processed(session, message, now=now, verdict=verdict,
                       application_id=application.id if application else None)
        reply = decision.reply
        record_event(session, _EVENT_FOR_ACTION[decision.action], hub_id=message.hub_id, actor=self.worker,
                     message_id=message.id, application_id=application.id if application else None,
                     detail={"status": verdict.status.value, "reply": reply.kind.value if reply else None,
                             "flags": [f.code.value for f in verdict.flags], **detail}, now=now)
        return Outcome(message.id, verdict.status, reply.kind if reply else None,
                       application.id if application else None, tuple(f.code for f in verdict.flags),
                       decision.confirmed)

    def _record_form(self, session: Session, message: Message, decision: Decision,
                     now: datetime) -> tuple[Application, dict]:
        verdict = decision.verdict
        key = decision.application_key or _message_key(message)
        domain = _domain(verdict.sender)
        existing = session.get(Application, decision.application_id) if decision.application_id else None
        changes: dict = {}
        if existing is not None:
            application, created = existing, False
            if existing.school_urn != key and not _key_taken(session, existing, key):
                # The school corrected its URN: the application now goes by it (one application per school).
                changes["school_urn"] = key
            if domain and domain != existing.sender_domain:
                changes["sender_domain"] = domain
        else:
            application, created = get_or_create_application(
                session, hub_id=message.hub_id, programme=verdict.programme or "", school_urn=key,
                school_name=verdict.school_name, status=ApplicationStatus.INCOMPLETE, now=now, sender_domain=domain)
            if not created and domain and domain != application.sender_domain:
                changes["sender_domain"] = domain
        upsert_signatories(session, application, (
            SignatoryCopy(s.role, s.name, s.email, s.copied) for s in decision.copied_on_this_email))
        # The version, and the application's latest state with the changes above, in one UPDATE.
        add_application_version(session, application, message_id=message.id, fields=verdict.fields,
                                verdict=verdict.to_record(), status=ApplicationStatus(verdict.status.value),
                                flags=[f.code.value for f in verdict.flags], now=now, also=changes)
        # Counted, not loaded: every earlier version's fields and verdict would otherwise be read for one number.
        versions = 1 if created else session.scalar(
            select(func.count()).where(ApplicationVersion.application_id == application.id))
        return application, {"version": versions, "created": created}

    def _confirm(self, session: Session, message: Message, decision: Decision, now: datetime) -> Application:
        application = session.get(Application, decision.application_id)
        assert application is not None   # it was loaded for the history in this same transaction
        for signatory in application.signatories:
            if signatory.role in decision.confirmed:
                confirm_signatory(session, signatory, message_id=message.id, now=now)
                record_event(session, EventKind.SIGNATORY_CONFIRMED, hub_id=message.hub_id, actor=self.worker,
                             message_id=message.id, application_id=application.id,
                             detail={"role": signatory.role}, now=now)
        if decision.completes_application:
            update_row(session, application, status=ApplicationStatus.COMPLETE, updated_at=now)
        return application

    def _enqueue(self, session: Session, message: Message, reply: Reply, application: Application | None,
                 now: datetime) -> None:
        hub = self.hub_settings[message.hub_id]
        from_addr = formataddr((hub.name, reply.from_address or hub.address))
        enqueue_reply(
            session, hub_id=message.hub_id, kind=reply.kind, from_addr=from_addr, to=reply.to, cc=reply.cc,
            subject=reply.subject, text=reply.text, html=reply.html, source_message_id=message.id,
            application_id=application.id if application else None, in_reply_to=reply.in_reply_to or None,
            references=" ".join(reply.references) or None, now=now)


@dataclass(frozen=True)
class _Probe:
    duplicate: bool
    answered_before: bool
    thread: int | None           # the application the e-mail's thread belongs to
    answers_our_reply: bool
    key: str | None              # the school key the probe looked up
    school: int | None           # the application under that key


# The history's queries, built once (building one costs about what running it does); values are passed each time.
_SCHOOL = select(Application).where(Application.hub_id == bindparam("hub"),
                                    Application.programme == bindparam("programme"),
                                    Application.school_urn == bindparam("key"))


@functools.cache
def _probe_query(threaded: bool) -> Any:
    """One row of scalar subqueries (a NULL value matches nothing). An e-mail that names no earlier e-mail
    (``threaded`` false: no In-Reply-To or References) has no thread to look up, and the statement leaves those
    lookups out: with an empty list of ids SQLite read every outbox row of the hub to match none of them, which
    made each new application cost more than the one before (1.9 ms at 5,000 messages)."""
    earlier = select(Message.id).where(Message.hub_id == bindparam("hub"), Message.message_id == bindparam("wanted"),
                                       Message.id < bindparam("before")).limit(1)
    school = _SCHOOL.with_only_columns(Application.id)
    if not threaded:
        ours = theirs = null()
    else:
        # The application of one of our e-mails named in the thread, else of one of the school's own.
        ours = select(OutboxItem.application_id).where(
            OutboxItem.hub_id == bindparam("hub"), OutboxItem.message_id.in_(bindparam("ids", expanding=True)),
            OutboxItem.application_id.is_not(None)).limit(1).scalar_subquery()
        theirs = (select(ApplicationVersion.application_id)
                  .join(Message, Message.id == ApplicationVersion.message_id)
                  .where(Message.hub_id == bindparam("hub"), Message.message_id.in_(bindparam("ids", expanding=True)))
                  .limit(1).scalar_subquery())
    return select(earlier.scalar_subquery().label("earlier"), FORGOTTEN_REPLY.scalar_subquery().label("forgotten"),
                  ours.label("ours"), theirs.label("theirs"), school.scalar_subquery().label("school"))


@functools.cache
def _same_domain_query(of_programme: bool) -> Any:
    query = select(Application).where(Application.hub_id == bindparam("hub"),
                                      Application.sender_domain == bindparam("domain"),
                                      Application.id.not_in(bindparam("exclude", expanding=True)))
    if of_programme:
        query = query.where(Application.programme == bindparam("programme"))
    return query.order_by(Application.id).limit(CANDIDATES)


def _domain(address: str | None) -> str | None:
    return address.rpartition("@")[2].lower() if address and "@" in address else None


def _key_taken(session: Session, application: Application, key: str) -> bool:
    return session.scalar(select(Application.id).where(
        Application.hub_id == application.hub_id, Application.programme == application.programme,
        Application.school_urn == key, Application.id != application.id).limit(1)) is not None


def _message_key(message: Message) -> str:
    """The key of an application whose form has no usable URN: its own message, so it is never merged."""
    return f"?{message.sha256[:14]}"


def _history_of(application: Application) -> ApplicationHistory:
    latest = next((v for v in reversed(application.versions) if v.id == application.latest_version_id), None)
    return ApplicationHistory(
        id=application.id, programme=application.programme, key=application.school_urn,
        complete=application.status is ApplicationStatus.COMPLETE, versions=len(application.versions),
        signatories=tuple(SignatoryHistory(s.role, s.email, s.copied or s.confirmed)
                          for s in application.signatories),
        latest=Verdict.from_record(latest.verdict) if latest is not None else None)


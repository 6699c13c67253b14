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

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot.config import Config
from bot.staff.decisions import Authenticator, apply_plan, default_authenticator, staff_file
from parsers.email import parse_email
from parsers.types import ParsedEmail
from rules.decision import Action, ApplicationHistory, Decision, History, SignatoryHistory, application_key, decide
from rules.pipeline import CheckSettings, read_email
from rules.verdict import FlagCode, Reply, Status, Verdict
from storage.counters import sent_in_last_day
from storage.models import Application, ApplicationStatus, ApplicationVersion, EventKind, Message, OutboxItem
from storage.recovery import answered_in_a_forgotten_life
from storage.repository import (
    add_application_version,
    confirm_signatory,
    enqueue_reply,
    get_or_create_application,
    mark_processed,
    record_event,
    upsert_signatory,
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
        thread, answers_our_reply = self._application_in_thread(session, message.hub_id, email)
        school = None
        candidates: list[Application] = []
        form = bool(verdict.programme) and verdict.status in (Status.COMPLETE, Status.INCOMPLETE)
        if form:
            key = application_key(verdict, _history_of(thread) if thread else None, _message_key(message))
            school = session.scalar(select(Application).where(
                Application.hub_id == message.hub_id, Application.programme == verdict.programme,
                Application.school_urn == key))
        if form or verdict.has_flag(FlagCode.WITHDRAWAL):
            candidates = self._same_domain(session, message.hub_id, verdict.sender,
                                           verdict.programme if form else None,
                                           exclude={a.id for a in (thread, school) if a is not None})
        hub = self.hub_settings.get(message.hub_id)
        decisions = (staff_file(session, email, hub, self.settings.limits, self.staff_authenticated)
                     if hub is not None and hub.staff else None)
        return History(
            duplicate=self._is_duplicate(session, message),
            answered_before=answered_in_a_forgotten_life(session, message),
            thread=_history_of(thread) if thread else None, answers_our_reply=answers_our_reply,
            school=_history_of(school) if school else None,
            candidates=tuple(_history_of(a) for a in candidates),
            staff_file=decisions,
            sent_today=self._sent_today(session, email.all_recipients_and_sender(), now),
            daily_cap=self.config.max_replies_per_address_per_day,
        )

    def _same_domain(self, session: Session, hub_id: str, sender: str | None, programme: str | None,
                     exclude: set[int]) -> list[Application]:
        """Applications of this hub (and programme) whose latest form came from the sender's domain."""
        domain = _domain(sender)
        if not domain:
            return []
        query = select(Application).where(Application.hub_id == hub_id, Application.sender_domain == domain)
        if programme is not None:
            query = query.where(Application.programme == programme)
        if exclude:
            query = query.where(Application.id.not_in(exclude))
        return list(session.scalars(query.order_by(Application.id).limit(CANDIDATES)))

    def _is_duplicate(self, session: Session, message: Message) -> bool:
        if not message.message_id:
            return False
        earlier = session.scalar(select(Message.id).where(
            Message.hub_id == message.hub_id, Message.message_id == message.message_id, Message.id < message.id)
            .limit(1))
        return earlier is not None

    def _application_in_thread(self, session: Session, hub_id: str,
                               email: ParsedEmail) -> tuple[Application | None, bool]:
        """The application this e-mail answers, and whether it names one of our own e-mails (True) or only the
        school's (False): only the first can confirm a signatory."""
        ids = [i for i in (email.in_reply_to, *email.references) if i][:50]
        if not ids:
            return None, False
        via_outbox = select(OutboxItem.application_id).where(
            OutboxItem.hub_id == hub_id, OutboxItem.message_id.in_(ids), OutboxItem.application_id.is_not(None))
        via_messages = (select(ApplicationVersion.application_id)
                        .join(Message, Message.id == ApplicationVersion.message_id)
                        .where(Message.hub_id == hub_id, Message.message_id.in_(ids)))
        ours = session.scalar(via_outbox.limit(1))
        app_id = ours or session.scalar(via_messages.limit(1))
        return (session.get(Application, app_id) if app_id else None), ours is not None

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
        message.verdict_status = verdict.status
        message.verdict = verdict.to_record()
        message.application_id = application.id if application else None
        mark_processed(session, message, now=now)   # before the event's flush: one UPDATE of the message, not two
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
        existing = session.get(Application, decision.application_id) if decision.application_id else None
        if existing is not None:
            application, created = existing, False
            if existing.school_urn != key and not _key_taken(session, existing, key):
                # The school corrected its URN: the application now goes by it (one application per school).
                existing.school_urn = key
        else:
            application, created = get_or_create_application(
                session, hub_id=message.hub_id, programme=verdict.programme or "", school_urn=key,
                school_name=verdict.school_name, status=ApplicationStatus.INCOMPLETE, now=now)
            if created:
                # A row inserted a moment ago has no signatories yet: say so rather than have the ORM ask.
                set_committed_value(application, "signatories", [])
        application.sender_domain = _domain(verdict.sender) or application.sender_domain
        for state in decision.copied_on_this_email:
            upsert_signatory(session, application, role=state.role, name=state.name, email=state.email,
                             copied=state.copied)
        add_application_version(session, application, message_id=message.id, fields=verdict.fields,
                                verdict=verdict.to_record(), status=ApplicationStatus(verdict.status.value),
                                flags=[f.code.value for f in verdict.flags], now=now)
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
            application.status = ApplicationStatus.COMPLETE
            application.updated_at = now
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


"""The workflow: what the bot does with one stored message, in one database transaction.

It reads the stored bytes (``rules.pipeline.read_email``), loads the history that matters to the decision (an earlier
copy of the same e-mail, the application the message answers, the school's application, what each correspondent
was sent today), asks ``rules.decision.decide`` what to do, and carries that out: the message's verdict, the
application and its version and signatories, confirmations, the reply in the outbox and the event, all in the
caller's transaction, so a crash leaves either all of it or none. It decides nothing itself.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Config
from parsers.email import parse_email
from parsers.types import ParsedEmail
from rules.decision import Action, ApplicationHistory, Decision, History, SignatoryHistory, application_key, decide
from rules.pipeline import CheckSettings, read_email
from rules.verdict import FlagCode, Reply, Status, Verdict
from storage.counters import sent_in_last_day
from storage.models import Application, ApplicationStatus, ApplicationVersion, EventKind, Message, OutboxItem
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
}


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
    def __init__(self, config: Config, settings: CheckSettings, *, worker: str = "hubbot") -> None:
        self.config = config
        self.settings = settings
        self.worker = worker
        self.hub_settings = {h.id: h for h in config.hubs}

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
        thread = self._application_in_thread(session, message.hub_id, email)
        school = None
        if verdict.programme and verdict.status in (Status.COMPLETE, Status.INCOMPLETE):
            key = application_key(verdict, _history_of(thread) if thread else None, _message_key(message))
            school = session.scalar(select(Application).where(
                Application.hub_id == message.hub_id, Application.programme == verdict.programme,
                Application.school_urn == key))
        return History(
            duplicate=self._is_duplicate(session, message),
            thread=_history_of(thread) if thread else None,
            school=_history_of(school) if school else None,
            sent_today=self._sent_today(session, email.all_recipients_and_sender(), now),
            daily_cap=self.config.max_replies_per_address_per_day,
        )

    def _is_duplicate(self, session: Session, message: Message) -> bool:
        if not message.message_id:
            return False
        earlier = session.scalar(select(Message.id).where(
            Message.hub_id == message.hub_id, Message.message_id == message.message_id, Message.id < message.id)
            .limit(1))
        return earlier is not None

    def _application_in_thread(self, session: Session, hub_id: str, email: ParsedEmail) -> Application | None:
        ids = [i for i in (email.in_reply_to, *email.references) if i]
        if not ids:
            return None
        via_outbox = select(OutboxItem.application_id).where(
            OutboxItem.hub_id == hub_id, OutboxItem.message_id.in_(ids), OutboxItem.application_id.is_not(None))
        via_messages = (select(ApplicationVersion.application_id)
                        .join(Message, Message.id == ApplicationVersion.message_id)
                        .where(Message.hub_id == hub_id, Message.message_id.in_(ids)))
        app_id = session.scalar(via_outbox.limit(1)) or session.scalar(via_messages.limit(1))
        return session.get(Application, app_id) if app_id else None

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
        if decision.held_back is not None:
            record_event(session, EventKind.REPLY_SUPPRESSED, hub_id=message.hub_id, actor=self.worker,
                         message_id=message.id,
                         detail={"reason": "daily limit", "limit": self.config.max_replies_per_address_per_day},
                         now=now)
        if decision.reply is not None:
            self._enqueue(session, message, decision.reply, application, now)
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
        application, created = get_or_create_application(
            session, hub_id=message.hub_id, programme=verdict.programme or "",
            school_urn=decision.application_key or _message_key(message), school_name=verdict.school_name,
            status=ApplicationStatus.INCOMPLETE, now=now)
        for state in decision.copied_on_this_email:
            upsert_signatory(session, application, role=state.role, name=state.name, email=state.email,
                             copied=state.copied)
        add_application_version(session, application, message_id=message.id, fields=verdict.fields,
                                verdict=verdict.to_record(), status=ApplicationStatus(verdict.status.value),
                                flags=[f.code.value for f in verdict.flags], now=now)
        return application, {"version": len(application.versions), "created": created}

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


"""The workflow: what the bot does with one stored message, in one database transaction.

It runs the check pipeline on the stored bytes, then joins the verdict to what is already known: a new
application or a new version of one (same school and programme: flag ``resubmission``), signatories confirmed
by a later reply in the thread, the same e-mail delivered twice (flag ``duplicate``, answered once), automatic
mail stored and never answered, and at most N automatic replies to one address a day. The reply is written to
the outbox in the same transaction as the verdict, so a crash leaves either both or neither.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import formataddr

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Config
from parsers.email import parse_email
from parsers.types import ParsedEmail
from rules.checks import HubView
from rules.definitions import ProgrammeDefinition
from rules.pipeline import CheckSettings, assess_parsed
from rules.replies import build_reply
from rules.verdict import (
    Flag,
    FlagCode,
    Reply,
    ReplyKind,
    SignatoryState,
    Status,
    Verdict,
)
from storage.models import (
    Application,
    ApplicationStatus,
    ApplicationVersion,
    Message,
    OutboxItem,
)
from storage.repository import (
    add_application_version,
    confirm_signatory,
    enqueue_reply,
    get_or_create_application,
    mark_processed,
    record_event,
    upsert_signatory,
)

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Outcome:
    """What processing one message decided, for the run summary and tests."""

    message_row_id: int
    status: Status
    reply: ReplyKind | None
    application_id: int | None
    flags: tuple[FlagCode, ...]
    confirmed_roles: tuple[str, ...] = ()


class Workflow:
    def __init__(self, config: Config, settings: CheckSettings, *, worker: str = "hubbot") -> None:
        self.config = config
        self.settings = settings
        self.worker = worker
        self.hub_settings = {h.id: h for h in config.hubs}

    # ---- entry point -----------------------------------------------------------------------------------------

    def process(self, session: Session, message: Message, now: datetime) -> Outcome:
        """Decide everything about ``message`` and write it (verdict, application, outbox, events); the caller
        commits. Nothing here talks to a network."""
        email = parse_email(message.raw, self.settings.limits)
        hub = self.settings.hubs.get(message.hub_id)
        verdict = assess_parsed(email, message.size, self.settings, received_at=message.received_at, hub=hub)
        programme = self.settings.registry.get(verdict.programme) if verdict.programme else None

        if verdict.status is Status.IGNORED:
            return self._finish(session, message, verdict, now, event="ignored",
                                detail={"because": verdict.ignored_because})

        if self._is_duplicate(session, message):
            verdict = replace(verdict, flags=(*verdict.flags, Flag(FlagCode.DUPLICATE, "delivered more than once")),
                              reply=None)
            return self._finish(session, message, verdict, now, event="duplicate")

        thread_app = self._application_in_thread(session, message.hub_id, email)
        if thread_app is not None and verdict.status in (Status.NO_FORM, Status.NOT_APPLICATION):
            confirmed = self._confirm_from_thread(session, message, email, verdict, thread_app, hub, now)
            if confirmed is not None:
                return confirmed
            # Nobody new confirmed: a question or a note in the thread is for a person, like any other mail.

        if verdict.status in (Status.COMPLETE, Status.INCOMPLETE) and programme is not None:
            return self._record_application(session, message, email, verdict, programme, hub, thread_app, now)

        # unreadable, no_form, not_application: the verdict's own reply (if any) stands.
        return self._finish(session, message, verdict, now, event="processed")

    # ---- the cases -------------------------------------------------------------------------------------------

    def _record_application(self, session: Session, message: Message, email: ParsedEmail, verdict: Verdict,
                            programme: ProgrammeDefinition, hub: HubView | None, thread_app: Application | None,
                            now: datetime) -> Outcome:
        urn = verdict.school_urn if verdict.school_urn and not _urn_invalid(verdict) else None
        if urn is None and thread_app is not None and thread_app.programme == programme.id:
            urn = thread_app.school_urn
        # Without a URN the application is keyed by this message, so it is never merged with another school's.
        key = urn or f"?{message.sha256[:14]}"
        application, created = get_or_create_application(
            session, hub_id=message.hub_id, programme=programme.id, school_urn=key, school_name=verdict.school_name,
            status=ApplicationStatus.INCOMPLETE, now=now)
        flags = list(verdict.flags)
        if not created and application.versions:
            flags.append(Flag(FlagCode.RESUBMISSION, f"version {len(application.versions) + 1} of this application"))

        previous = {s.role: s for s in application.signatories}
        states: list[SignatoryState] = []
        for state in verdict.signatories:
            before = previous.get(state.role)
            same_person = before is not None and bool(state.email) and (before.email or "").lower() == state.email
            already = same_person and before is not None and (before.copied or before.confirmed)
            upsert_signatory(session, application, role=state.role, name=state.name, email=state.email,
                             copied=state.copied)
            states.append(replace(state, copied=state.copied or already))
        complete = not verdict.issues and all(s.copied for s in states)
        status = Status.COMPLETE if complete else Status.INCOMPLETE
        verdict = replace(verdict, status=status, signatories=tuple(states), flags=tuple(flags))
        verdict = replace(verdict, reply=self._reply(verdict, email, programme, hub))
        add_application_version(session, application, message_id=message.id, fields=verdict.fields,
                                verdict=verdict.to_record(), status=ApplicationStatus(status.value),
                                flags=[f.code.value for f in verdict.flags], now=now)
        return self._finish(session, message, verdict, now, event="application_version", application=application,
                            detail={"version": len(application.versions), "created": created})

    def _confirm_from_thread(self, session: Session, message: Message, email: ParsedEmail, verdict: Verdict,
                             application: Application, hub: HubView | None, now: datetime) -> Outcome | None:
        """A reply in an application's thread: every signatory still awaited whose address wrote or was copied
        confirms; when the last one does, the application is complete and the school is told. None when the
        reply confirmed nobody."""
        people = email.all_recipients_and_sender() - (hub.addresses if hub else frozenset())
        confirmed: list[str] = []
        for signatory in application.signatories:
            if signatory.email and not (signatory.copied or signatory.confirmed) and signatory.email.lower() in people:
                confirm_signatory(session, signatory, message_id=message.id, now=now)
                confirmed.append(signatory.role)
                record_event(session, "signatory_confirmed", hub_id=message.hub_id, actor=self.worker,
                             message_id=message.id, application_id=application.id, detail={"role": signatory.role},
                             now=now)
        if not confirmed:
            return None
        verdict = replace(verdict, reply=None)
        latest = session.get(ApplicationVersion, application.latest_version_id) if application.latest_version_id \
            else None
        fields_ok = latest is not None and not latest.verdict.get("issues")
        all_signed = all(s.copied or s.confirmed for s in application.signatories)
        if fields_ok and all_signed and application.status is not ApplicationStatus.COMPLETE:
            application.status = ApplicationStatus.COMPLETE
            application.updated_at = now
            verdict = replace(verdict, reply=self._acknowledge_application(session, application, latest, hub))
        return self._finish(session, message, verdict, now, event="thread_reply", application=application,
                            detail={"confirmed": confirmed}, confirmed=tuple(confirmed))

    def _acknowledge_application(self, session: Session, application: Application, latest: ApplicationVersion,
                                 hub: HubView | None) -> Reply | None:
        """The acknowledgement for an application completed by confirmations, threaded to the school's form
        e-mail and addressed as the reply to that e-mail would have been."""
        source = session.get(Message, latest.message_id) if latest.message_id else None
        programme = self.settings.registry.get(application.programme)
        if source is None or programme is None:
            return None
        original = parse_email(source.raw, self.settings.limits)
        states = tuple(SignatoryState(s.role, latest.verdict.get("signatory_titles", {}).get(s.role, s.role), s.name,
                                      s.email, True) for s in application.signatories)
        verdict = Verdict(message_id=original.message_id, received_at=None, sender=original.sender.email
                          if original.sender else None, status=Status.COMPLETE, programme=programme.id,
                          hub=application.hub_id, school_name=application.school_name,
                          signatories=states, late="late" in (latest.flags or []))
        return self._reply(verdict, original, programme, hub)

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _reply(self, verdict: Verdict, email: ParsedEmail, programme: ProgrammeDefinition | None,
               hub: HubView | None) -> Reply | None:
        deadline = self.settings.deadline(hub, programme) if programme else None
        return build_reply(verdict, email, programme=programme, hub=hub, deadline=deadline)

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

    def _replies_today(self, session: Session, address: str, now: datetime) -> int:
        rows = session.scalars(select(OutboxItem.to).where(
            OutboxItem.created_at >= now - timedelta(days=1),
            OutboxItem.kind.in_([k.value for k in ReplyKind])))
        return sum(1 for to in rows if address in [t.lower() for t in to])

    def _finish(self, session: Session, message: Message, verdict: Verdict, now: datetime, *, event: str,
                application: Application | None = None, detail: dict | None = None,
                confirmed: tuple[str, ...] = ()) -> Outcome:
        reply = verdict.reply
        if reply is not None and reply.to:
            limit = self.config.max_replies_per_address_per_day
            if self._replies_today(session, reply.to[0], now) >= limit:
                record_event(session, "reply_suppressed", hub_id=message.hub_id, actor=self.worker,
                             message_id=message.id, detail={"reason": "daily limit", "limit": limit}, now=now)
                reply = None
                verdict = replace(verdict, reply=None)
        if reply is not None:
            self._enqueue(session, message, reply, application, now)
        message.verdict_status = verdict.status.value
        message.verdict = verdict.to_record()
        message.application_id = application.id if application else None
        record_event(session, event, hub_id=message.hub_id, actor=self.worker, message_id=message.id,
                     application_id=application.id if application else None,
                     detail={"status": verdict.status.value, "reply": reply.kind.value if reply else None,
                             "flags": [f.code.value for f in verdict.flags], **(detail or {})}, now=now)
        mark_processed(session, message, now=now)
        return Outcome(message.id, verdict.status, reply.kind if reply else None,
                       application.id if application else None, tuple(f.code for f in verdict.flags), confirmed)

    def _enqueue(self, session: Session, message: Message, reply: Reply, application: Application | None,
                 now: datetime) -> None:
        hub = self.hub_settings[message.hub_id]
        from_addr = formataddr((hub.name, reply.from_address or hub.address))
        enqueue_reply(
            session, hub_id=message.hub_id, kind=reply.kind.value, from_addr=from_addr, to=reply.to, cc=reply.cc,
            subject=reply.subject, text=reply.text, html=reply.html, source_message_id=message.id,
            application_id=application.id if application else None, in_reply_to=reply.in_reply_to or None,
            references=" ".join(reply.references) or None, now=now)


def _urn_invalid(verdict: Verdict) -> bool:
    return any(i.field == "school.urn" for i in verdict.issues)

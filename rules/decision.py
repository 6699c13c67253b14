"""Decide once: what the bot does about one message, from what was read and what came before.

``decide`` is one pure function. It takes the verdict on a message (``rules.pipeline.read_email``: what the e-mail
*is*) and the application's ``History`` (plain typed values the worker loads: was this e-mail seen before, which
application does it answer, that school's application so far, how many e-mails each address got today) and returns
one ``Decision``: the final status and flags, the reply to send (rendered) or none, and what to record. ``bot/``
loads the history, calls this, and carries the decision out in one transaction; ``hubbot check`` calls it with an
empty history, so what ``check`` prints is what the worker does with a first e-mail.

The cases, in order: automatic mail is stored and never answered; the same e-mail delivered twice is recorded and
not answered again; a sender the hub's own servers say failed DMARC gets nothing and goes to staff (``review``); a
reply to one of our own e-mails, from an awaited signatory's own address (and passing authentication where it is
checked), confirms that signatory (and, when it completes the application, is acknowledged); a form becomes a new
application or a new version of the school's application, keeping signatures already given, unless it comes from
outside the domain the application came from, when staff decide and the original sender is told; anything else
keeps the reply its verdict calls for. Last, a reply that would take any recipient over the daily cap is held
back.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from rules.authentication import AuthResult, aligned
from rules.checks import HubView
from rules.definitions import ProgrammeDefinition
from rules.replies import build_reply, threading
from rules.settings import CheckSettings
from rules.verdict import Flag, FlagCode, Reply, SignatoryState, Status, Verdict
from templates import EmailKind, render_email


class Action(StrEnum):
    """What the worker records for a message."""

    IGNORE = "ignore"          # automatic mail: stored, never answered
    DUPLICATE = "duplicate"    # the same e-mail delivered again: answered once already
    RECORD = "record"          # a form: a new application, or a new version of the school's application
    CONFIRM = "confirm"        # a reply in an application's thread in which signatories confirm
    NOTE = "note"              # unreadable, no form, not an application: the verdict's own reply (if any)


@dataclass(frozen=True)
class SignatoryHistory:
    role: str
    email: str | None
    signed: bool               # copied on a form e-mail, or confirmed by a reply in the thread


@dataclass(frozen=True)
class ApplicationHistory:
    """One stored application as the decision needs it."""

    id: int
    programme: str
    key: str                                    # the school's URN, or a per-message key when it has none
    complete: bool                              # its stored status is complete
    versions: int
    signatories: tuple[SignatoryHistory, ...]
    latest: Verdict | None                      # the verdict of its latest form e-mail

    def signatory(self, role: str) -> SignatoryHistory | None:
        return next((s for s in self.signatories if s.role == role), None)


@dataclass(frozen=True)
class History:
    """Everything about the past that decides what happens to a message. Empty for ``hubbot check``."""

    duplicate: bool = False                      # an earlier message in this hub has the same Message-ID
    answered_before: bool = False                # the mailbox holds our reply to it, from a life the DB forgot
    thread: ApplicationHistory | None = None     # the application whose e-mails this one answers
    answers_our_reply: bool = False              # In-Reply-To/References names one of our own e-mails to ``thread``
    school: ApplicationHistory | None = None     # the application ``application_key`` names, if stored
    sent_today: Mapping[str, int] = field(default_factory=dict)   # address -> e-mails sent to it in 24 hours
    daily_cap: int | None = None                 # at most this many e-mails to one address a day


@dataclass(frozen=True)
class Decision:
    action: Action
    verdict: Verdict                             # final: status, flags, signatories and reply as decided
    application_key: str | None = None           # RECORD: which of the school's applications
    copied_on_this_email: tuple[SignatoryState, ...] = ()   # RECORD: signatories as this e-mail copied them
    application_id: int | None = None            # CONFIRM: the application the thread belongs to
    confirmed: tuple[str, ...] = ()              # CONFIRM: the roles that confirmed
    completes_application: bool = False          # CONFIRM: the last signature arrived; the application is complete
    held_back: Reply | None = None               # the reply the daily cap stopped
    notices: tuple[Reply, ...] = ()              # other e-mails to send (the original sender told of a change)

    @property
    def reply(self) -> Reply | None:
        return self.verdict.reply


def application_key(verdict: Verdict, thread: ApplicationHistory | None, message_key: str) -> str:
    """Which application of the school a form belongs to: its URN when valid; else the URN of the application it
    answers (a school correcting its form in the thread); else a key of its own (``message_key``), so a form
    without a URN is never merged into another school's application."""
    urn_invalid = any(i.field == "school.urn" for i in verdict.issues)
    if verdict.school_urn and not urn_invalid:
        return verdict.school_urn
    if thread is not None and thread.programme == verdict.programme:
        return thread.key
    return message_key


def decide(verdict: Verdict, history: History, settings: CheckSettings, hub: HubView | None,
           *, message_key: str = "?") -> Decision:
    """The one decision about a message whose verdict (without a reply) is ``verdict``."""
    programme = settings.registry.get(verdict.programme) if verdict.programme else None
    if verdict.status is Status.IGNORED:
        return Decision(Action.IGNORE, replace(verdict, reply=None))
    if history.duplicate or history.answered_before:
        why = "delivered more than once" if history.duplicate else "answered before the database was restored"
        flags = (*verdict.flags, Flag(FlagCode.DUPLICATE, why))
        return Decision(Action.DUPLICATE, replace(verdict, flags=flags, reply=None))
    if verdict.authentication.result is AuthResult.FAIL:
        # A forged sender gets nothing (no reply goes to, or names, anyone on it) and changes nothing: staff look.
        flags = (*verdict.flags, Flag(FlagCode.UNAUTHENTICATED, verdict.authentication.detail))
        return Decision(Action.NOTE, replace(verdict, status=Status.REVIEW, flags=flags, reply=None))
    if history.thread is not None and verdict.status in (Status.NO_FORM, Status.NOT_APPLICATION) \
            and _may_confirm(verdict, history, settings):
        confirmation = _confirmation(verdict, history.thread, settings, hub)
        if confirmation is not None:
            return _within_cap(confirmation, history)
        # Nobody new confirmed: a question or a note in the thread is for a person, like any other mail.
    if verdict.status in (Status.COMPLETE, Status.INCOMPLETE) and programme is not None:
        return _within_cap(_form(verdict, history, programme, settings, hub, message_key), history)
    return _within_cap(Decision(Action.NOTE, _with_reply(verdict, programme, settings, hub)), history)


def _may_confirm(verdict: Verdict, history: History, settings: CheckSettings) -> bool:
    """A thread reply may confirm only when it answers one of our own e-mails (their Message-IDs are random, so
    only someone who received it can name one) and, where the hub's servers vouch for senders, its sender passed:
    quoting a school's own Message-ID, or forging a signatory's From, confirms nothing."""
    if not history.answers_our_reply:
        return False
    return not settings.trusted_authserv_ids or verdict.authentication.result is AuthResult.PASS


def _form(verdict: Verdict, history: History, programme: ProgrammeDefinition, settings: CheckSettings,
          hub: HubView | None, message_key: str) -> Decision:
    """A form: signatures given earlier to the same person carry over, and the status follows from both."""
    key = application_key(verdict, history.thread, message_key)
    earlier = history.school if history.school is not None and history.school.key == key else None
    if earlier is not None and _from_elsewhere(verdict, earlier):
        return _held_for_staff(verdict, earlier, programme, settings, hub)
    flags = list(verdict.flags)
    if earlier is not None and earlier.versions:
        flags.append(Flag(FlagCode.RESUBMISSION, f"version {earlier.versions + 1} of this application"))
    states: list[SignatoryState] = []
    for state in verdict.signatories:
        before = earlier.signatory(state.role) if earlier else None
        same_person = before is not None and bool(state.email) and (before.email or "").lower() == state.email
        states.append(replace(state, copied=state.copied or (same_person and before is not None and before.signed)))
    complete = not verdict.issues and all(s.copied for s in states)
    decided = replace(verdict, status=Status.COMPLETE if complete else Status.INCOMPLETE,
                      signatories=tuple(states), flags=tuple(flags))
    return Decision(Action.RECORD, _with_reply(decided, programme, settings, hub), application_key=key,
                    copied_on_this_email=verdict.signatories)


def _from_elsewhere(verdict: Verdict, earlier: ApplicationHistory) -> bool:
    """A form that would change a school's application sent from outside the domain the application came from."""
    before = earlier.latest.sender if earlier.latest is not None else None
    if not before or not verdict.sender:
        return False
    return not aligned(before, verdict.sender)


def _held_for_staff(verdict: Verdict, earlier: ApplicationHistory, programme: ProgrammeDefinition,
                    settings: CheckSettings, hub: HubView | None) -> Decision:
    """Never silently replaced: the new form goes to staff (``review``) and the application's own sender is told,
    in a short e-mail that names nobody, so a stranger cannot quietly take over a school's application."""
    flags = (*verdict.flags, Flag(FlagCode.RESUBMISSION, "would change an application sent from another domain"))
    held = _with_reply(replace(verdict, status=Status.REVIEW, flags=flags), programme, settings, hub)
    latest = earlier.latest
    notice = None
    if latest is not None and latest.correspondence is not None and latest.sender:
        mail = latest.correspondence
        hub_name = hub.name if hub else programme.hub.name
        hub_address = (next((a for a in mail.addressed_to if hub and a in hub.addresses), None)
                       or (sorted(hub.addresses)[0] if hub else programme.hub.address))
        rendered = render_email(EmailKind.RESUBMISSION_NOTICE, {
            "hub_name": hub_name, "hub_address": hub_address, "programme_title": programme.title,
            "school_name": " ".join((latest.school_name or "").split())})
        in_reply_to, references = threading(mail)
        notice = Reply(kind=EmailKind.RESUBMISSION_NOTICE, to=(latest.sender,), cc=(), subject=rendered.subject,
                       text=rendered.text, html=rendered.html, in_reply_to=in_reply_to, references=references,
                       from_address=hub_address)
    return Decision(Action.NOTE, held, notices=(notice,) if notice else ())


def _confirmation(verdict: Verdict, application: ApplicationHistory, settings: CheckSettings,
                  hub: HubView | None) -> Decision | None:
    """A reply in an application's thread: every signatory still awaited whose address wrote or was copied
    confirms. When that was the last signature and the form itself had nothing missing, the school gets the
    acknowledgement its form would have had, threaded to its form e-mail. None when nobody confirmed."""
    # Only the signatory writing from their own address confirms: being copied on someone else's note is not a
    # signature, and a Cc is the easiest header to forge.
    sender = (verdict.sender or "").lower()
    confirmed = tuple(s.role for s in application.signatories
                      if s.email and not s.signed and s.email.lower() == sender
                      and sender not in (hub.addresses if hub else ()))
    if not confirmed:
        return None
    all_signed = all(s.signed or s.role in confirmed for s in application.signatories)
    latest = application.latest
    completes = (all_signed and not application.complete and latest is not None and not latest.issues)
    reply = None
    if completes and latest is not None and latest.correspondence is not None:
        programme = settings.registry.get(application.programme)
        signed = tuple(replace(s, copied=True) for s in latest.signatories)
        acknowledged = replace(latest, status=Status.COMPLETE, signatories=signed)
        if programme is not None:
            reply = build_reply(acknowledged, latest.correspondence, programme=programme, hub=hub,
                                deadline=settings.deadline(hub, programme))
    return Decision(Action.CONFIRM, replace(verdict, reply=reply), application_id=application.id,
                    confirmed=confirmed, completes_application=completes)


def _with_reply(verdict: Verdict, programme: ProgrammeDefinition | None, settings: CheckSettings,
                hub: HubView | None) -> Verdict:
    if verdict.correspondence is None:
        return replace(verdict, reply=None)
    deadline = settings.deadline(hub, programme) if programme else None
    return replace(verdict, reply=build_reply(verdict, verdict.correspondence, programme=programme, hub=hub,
                                              deadline=deadline))


def _within_cap(decision: Decision, history: History) -> Decision:
    """Hold the reply back when any of its recipients already had ``daily_cap`` e-mails from us today: a loop
    with another robot, or someone using the bot to mail a third party, stops here."""
    if history.daily_cap is None:
        return decision

    def over(mail: Reply) -> bool:
        return any(history.sent_today.get(a.lower(), 0) >= history.daily_cap for a in (*mail.to, *mail.cc))

    notices = tuple(n for n in decision.notices if not over(n))
    if notices != decision.notices:
        decision = replace(decision, notices=notices)
    reply = decision.reply
    if reply is not None and over(reply):
        return replace(decision, verdict=replace(decision.verdict, reply=None), held_back=reply)
    return decision

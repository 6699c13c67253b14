"""Decide once: what the bot does about one message, from what was read and what came before.

``decide`` is one pure function. It takes the verdict on a message (``rules.pipeline.read_email``: what the e-mail
*is*) and the application's ``History`` (plain typed values the worker loads: was this e-mail seen before, which
application does it answer, that school's application so far, how many e-mails each address got today) and returns
one ``Decision``: the final status and flags, the reply to send (rendered) or none, and what to record. ``bot/``
loads the history, calls this, and carries the decision out in one transaction; ``hubbot check`` calls it with an
empty history, so what ``check`` prints is what the worker does with a first e-mail.

The cases, in order: automatic mail is stored and never answered; the same e-mail delivered twice is recorded and
not answered again; a sender the hub's own servers say failed DMARC gets nothing and goes to staff
(``review``); a hub staff member's filled export (subject "Decisions ...", read by the bot beforehand into a
``StaffFile``) has its decisions checked and the staff member is told what changed and what was refused; a request
to withdraw is tied to the school's application (the thread, else the one application of the sender's address or
domain), flagged for staff and acknowledged, and changes no decision; a reply to one of our own e-mails, from an
awaited signatory's own address (and passing authentication where it is checked), confirms that signatory (and,
when it completes the application, is acknowledged); a form becomes a new application or a new version of the school's application (the one its e-mail answers, the one its URN names,
or one from the same sender address or domain with the same school name or URN as written, even when the URN was
corrected since), keeping signatures already given, unless it comes from outside the domain the application came
from, when staff decide and the original sender is told; anything else keeps the reply its verdict calls for. Last, a
reply that would take any recipient over the daily cap is held back.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from rules.authentication import AuthResult, aligned
from rules.checks import HubView
from rules.definitions import ProgrammeDefinition
from rules.outcomes import Announcement, DecisionPlan, DecisionRow, KnownApplication, next_announcement, plan_decisions
from rules.replies import build_reply, staff_reply, threading
from rules.settings import CheckSettings
from rules.text import normalise
from rules.verdict import FieldIssue, Flag, FlagCode, Reply, SignatoryState, Status, UnsureField, Verdict
from templates import EmailKind, render_email


class Action(StrEnum):
    """What the worker records for a message."""

    IGNORE = "ignore"          # automatic mail: stored, never answered
    DUPLICATE = "duplicate"    # the same e-mail delivered again: answered once already
    RECORD = "record"          # a form: a new application, or a new version of the school's application
    CONFIRM = "confirm"        # a reply in an application's thread in which signatories confirm
    NOTE = "note"              # unreadable, no form, not an application: the verdict's own reply (if any)
    WITHDRAW = "withdraw"      # a request to withdraw: tied to the school's application, flagged, acknowledged
    DECISIONS = "decisions"    # a staff member's filled export: the decisions to record, and the answer to them


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

    @property
    def school_name(self) -> str | None:
        return self.latest.school_name if self.latest else None

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
    # Applications of this hub whose latest form came from the sender's address or domain: the school's own
    # application when its URN was wrong before (or is now), and the application a withdrawal request is about.
    candidates: tuple[ApplicationHistory, ...] = ()
    staff_file: StaffFile | None = None          # a staff member's decisions file (see ``StaffFile``)
    sent_today: Mapping[str, int] = field(default_factory=dict)   # address -> e-mails sent to it in 24 hours
    daily_cap: int | None = None                 # at most this many e-mails to one address a day


@dataclass(frozen=True)
class StaffFile:
    """A decisions file e-mailed by one of the hub's staff (subject starting "Decisions", sender on the hub's
    ``staff`` list and, where the config trusts authentication results, authenticated), read by the bot before
    deciding: its rows as written, and the hub's applications they may name. ``problem`` says why the file could
    not be read (then nothing is recorded). ``actor`` names the staff member in the event log without an address."""

    filename: str
    rows: tuple[DecisionRow, ...]
    known: Mapping[int, KnownApplication]
    actor: str
    problem: str | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    verdict: Verdict                             # final: status, flags, signatories and reply as decided
    application_key: str | None = None           # RECORD: which of the school's applications
    copied_on_this_email: tuple[SignatoryState, ...] = ()   # RECORD: signatories as this e-mail copied them
    application_id: int | None = None            # CONFIRM: the application the thread belongs to; RECORD: the
                                                 # school's existing application; WITHDRAW: the one it is about
    confirmed: tuple[str, ...] = ()              # CONFIRM: the roles that confirmed
    completes_application: bool = False          # CONFIRM: the last signature arrived; the application is complete
    held_back: Reply | None = None               # the reply the daily cap stopped
    plan: DecisionPlan | None = None             # DECISIONS: what to record, and what was refused
    actor: str | None = None                     # DECISIONS: who made them (no address)
    notices: tuple[Reply, ...] = ()              # other e-mails to send (the original sender told of a change)

    @property
    def reply(self) -> Reply | None:
        return self.verdict.reply


# A form of one of this hub's programmes: it becomes (a version of) the school's application. A form under review
# (something unsure) is recorded too, so staff see it with the school's other versions; another hub's form is
# ``not_application`` and never recorded.
_FORM_STATUSES = (Status.COMPLETE, Status.INCOMPLETE, Status.REVIEW)


def form_status(issues: Sequence[FieldIssue], unsure: Sequence[UnsureField],
                signatories: Sequence[SignatoryState]) -> Status:
    """A recognised form's status, the one place it is worked out (the pipeline for what the e-mail itself shows,
    ``decide`` again with signatures given earlier). Something certainly missing, invalid or not copied:
    incomplete. Only unsure fields in the way: review, for a person. Otherwise complete."""
    if issues or any(s.known and not s.copied for s in signatories):
        return Status.INCOMPLETE
    return Status.REVIEW if unsure else Status.COMPLETE


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
    if history.staff_file is not None:
        return _within_cap(_staff_decisions(verdict, history.staff_file, settings, hub), history)
    if verdict.has_flag(FlagCode.WITHDRAWAL):
        return _within_cap(_withdrawal(verdict, history, settings, hub), history)
    if (history.thread is not None and verdict.programme is None
            and verdict.status in (Status.NO_FORM, Status.NOT_APPLICATION) and _may_confirm(verdict, history, settings)):
        confirmation = _confirmation(verdict, history.thread, settings, hub)
        if confirmation is not None:
            return _within_cap(confirmation, history)
        # Nobody new confirmed: a question or a note in the thread is for a person, like any other mail.
    if verdict.status in _FORM_STATUSES and programme is not None:
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
    earlier = school_application(verdict, history, key)
    if earlier is not None and _from_elsewhere(verdict, earlier):
        return _held_for_staff(verdict, earlier, programme, settings, hub)
    if earlier is not None and not _valid_urn(verdict):
        key = earlier.key    # a form without a usable URN keeps the application's key (a URN, or its own)
    flags = list(verdict.flags)
    if earlier is not None and earlier.versions:
        flags.append(Flag(FlagCode.RESUBMISSION, f"version {earlier.versions + 1} of this application"))
    states: list[SignatoryState] = []
    for state in verdict.signatories:
        before = earlier.signatory(state.role) if earlier else None
        same_person = before is not None and bool(state.email) and (before.email or "").lower() == state.email
        states.append(replace(state, copied=state.copied or (same_person and before is not None and before.signed)))
    decided = replace(verdict, status=form_status(verdict.issues, verdict.unsure, states),
                      signatories=tuple(states), flags=tuple(flags))
    return Decision(Action.RECORD, _with_reply(decided, programme, settings, hub), application_key=key,
                    copied_on_this_email=verdict.signatories, application_id=earlier.id if earlier else None)


def _valid_urn(verdict: Verdict) -> bool:
    return bool(verdict.school_urn) and not any(i.field == "school.urn" for i in verdict.issues)


def _domain(address: str | None) -> str:
    return (address or "").rpartition("@")[2].lower()


def school_application(verdict: Verdict, history: History, key: str) -> ApplicationHistory | None:
    """The school's existing application a form belongs to, if any: the one its e-mail answers (same programme);
    else the one its key names; else a candidate of the same programme from the same sender address or domain
    whose school name or URN as written matches, unless both carry valid URNs that differ (two schools of one
    trust writing from one domain are two applications)."""
    thread = history.thread
    if thread is not None and thread.programme == verdict.programme:
        return thread
    if history.school is not None and history.school.key == key:
        return history.school
    sender = (verdict.sender or "").lower()
    for candidate in history.candidates:
        latest = candidate.latest
        if candidate.programme != verdict.programme or latest is None or not sender:
            continue
        their_sender = (latest.sender or "").lower()
        if their_sender != sender and _domain(their_sender) != _domain(sender):
            continue
        if _valid_urn(verdict) and not candidate.key.startswith("?") and candidate.key != verdict.school_urn:
            continue
        same_name = bool(verdict.school_name and latest.school_name
                         and normalise(verdict.school_name) == normalise(latest.school_name))
        same_urn = bool(verdict.school_urn and verdict.school_urn in (latest.school_urn, candidate.key))
        if same_name or same_urn:
            return candidate
    return None


def _withdrawal(verdict: Verdict, history: History, settings: CheckSettings, hub: HubView | None) -> Decision:
    """A request to withdraw: the application it is about is the one the e-mail answers, else the only one whose
    forms came from the same address, else the only one from the same domain (none when it is ambiguous: staff
    see the request either way). Acknowledged briefly; the decision changes only when staff record it."""
    application = history.thread
    if application is None:
        sender = (verdict.sender or "").lower()
        same_address = [c for c in history.candidates if c.latest and (c.latest.sender or "").lower() == sender]
        same_domain = [c for c in history.candidates
                       if c.latest and sender and _domain(c.latest.sender) == _domain(sender)]
        for group in (same_address, same_domain):
            if len(group) == 1:
                application = group[0]
                break
    programme = settings.registry.get(application.programme) if application else None
    reply = None
    if verdict.correspondence is not None:
        reply = build_reply(verdict, verdict.correspondence, programme=programme, hub=hub, deadline=None,
                            templates_dir=settings.templates_dir(hub),
                            school_name=application.school_name if application else None)
    return Decision(Action.WITHDRAW, replace(verdict, reply=reply),
                    application_id=application.id if application else None)


def _staff_decisions(verdict: Verdict, staff_file: StaffFile, settings: CheckSettings,
                     hub: HubView | None) -> Decision:
    """A staff member's filled export: the decisions to record, and one answer to them saying what changed and
    what was refused. A file that could not be read records nothing and the answer says why."""
    plan = DecisionPlan() if staff_file.problem else plan_decisions(staff_file.rows, dict(staff_file.known))
    reply = None
    mail = verdict.correspondence
    if mail is not None and mail.sender:
        context = {
            "filename": staff_file.filename, "problem": staff_file.problem or "",
            "changes": [{"number": c.number, "school": c.school, "before": c.before.value if c.before else "",
                         "after": c.after.value} for c in plan.changes],
            "unchanged": plan.unchanged,
            "refused": [{"where": r.where, "number": r.number, "word": r.word, "reason": r.reason}
                        for r in plan.refused],
        }
        reply = staff_reply(EmailKind.DECISIONS_RECORDED, mail, hub=hub, context=context,
                            templates_dir=settings.templates_dir(hub))
    status = Status.NOT_APPLICATION if verdict.status is not Status.IGNORED else verdict.status
    return Decision(Action.DECISIONS, replace(verdict, status=status, reply=reply), plan=plan, actor=staff_file.actor)


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
                                deadline=settings.deadline(hub, programme),
                                next_date=_next_date(acknowledged, programme, settings, hub),
                                templates_dir=settings.templates_dir(hub))
    return Decision(Action.CONFIRM, replace(verdict, reply=reply), application_id=application.id,
                    confirmed=confirmed, completes_application=completes)


def _with_reply(verdict: Verdict, programme: ProgrammeDefinition | None, settings: CheckSettings,
                hub: HubView | None) -> Verdict:
    if verdict.correspondence is None:
        return replace(verdict, reply=None)
    deadline = settings.deadline(hub, programme) if programme else None
    next_date = _next_date(verdict, programme, settings, hub) if programme else None
    return replace(verdict, reply=build_reply(verdict, verdict.correspondence, programme=programme, hub=hub,
                                              deadline=deadline, next_date=next_date,
                                              runs_it=settings.hub_running(programme) if programme else None,
                                              templates_dir=settings.templates_dir(hub)))


def _next_date(verdict: Verdict, programme: ProgrammeDefinition, settings: CheckSettings,
               hub: HubView | None) -> Announcement | None:
    """The shortlist or outcome date (as in force for the hub) still to come when the form arrived."""
    if verdict.received_at is None:
        return None
    notifications = (settings.dates(hub.id, programme).notifications if hub is not None
                     else programme.notifications)
    return next_announcement(notifications, verdict.received_at.date())


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

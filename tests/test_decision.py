"""``rules.decision.decide`` on its own: a pure function of the verdict and plain history values, so every case the
worker meets (automatic mail, a second delivery, a resubmission keeping earlier signatures, a signatory confirming
in the thread, the daily cap) is tested here with no database, and ``check`` is shown to give what the worker
gives a first e-mail.
"""
from __future__ import annotations

import re
from dataclasses import replace

from parsers.email import parse_email
from rules.decision import Action, ApplicationHistory, History, SignatoryHistory, application_key, decide
from rules.pipeline import CheckSettings, assess, read_email
from rules.verdict import FlagCode, Status, Verdict
from samples.applications import application_email, complete_answers, fill_form
from samples.mail import build_email
from templates import EmailKind

P24 = "secondary-tfm-wg-2024"
SETTINGS = CheckSettings.builtin()


def read(raw: bytes) -> Verdict:
    return read_email(parse_email(raw), len(raw), SETTINGS)


def form_email(pattern: str = "all", **changes: str | None) -> bytes:
    answers = {**complete_answers(P24), **changes}
    return application_email(P24, fill_form(P24, answers), answers=answers, pattern=pattern)


def history_of(verdict: Verdict, *, app_id: int = 7, complete: bool = False, signed: bool = False,
               versions: int = 1) -> ApplicationHistory:
    return ApplicationHistory(
        id=app_id, programme=verdict.programme or "", key=verdict.school_urn or "?", complete=complete,
        versions=versions, signatories=tuple(SignatoryHistory(s.role, s.email, signed or s.copied)
                                             for s in verdict.signatories), latest=verdict)


def test_check_gives_what_the_worker_gives_a_first_email() -> None:
    raw = form_email()
    assert assess(raw, SETTINGS) == decide(read(raw), History(), SETTINGS, None).verdict


def test_a_complete_form_is_recorded_and_acknowledged() -> None:
    decision = decide(read(form_email()), History(), SETTINGS, None)
    assert decision.action is Action.RECORD and decision.verdict.status is Status.COMPLETE
    assert decision.reply is not None and decision.reply.kind is EmailKind.ACKNOWLEDGEMENT
    assert decision.application_key == decision.verdict.school_urn


def test_automatic_mail_is_never_answered_whatever_the_history() -> None:
    raw = build_email(sender="mailer-daemon@example.org", to=("hub@example.org",), subject="Undeliverable",
                      body_text="Delivery has failed", extra_headers=[("Auto-Submitted", "auto-replied")])
    verdict = read(raw)
    decision = decide(verdict, History(duplicate=True, thread=history_of(read(form_email()))), SETTINGS, None)
    assert decision.action is Action.IGNORE and decision.reply is None


def test_a_second_delivery_is_not_answered_again() -> None:
    decision = decide(read(form_email()), History(duplicate=True), SETTINGS, None)
    assert decision.action is Action.DUPLICATE and decision.reply is None
    assert decision.verdict.has_flag(FlagCode.DUPLICATE)


def test_a_resubmission_keeps_signatures_given_before() -> None:
    first = read(form_email())
    second = read(form_email(pattern="none"))      # this time nobody was copied
    earlier = history_of(first, signed=True)
    decision = decide(second, History(school=earlier), SETTINGS, None)
    assert decision.verdict.status is Status.COMPLETE and decision.verdict.has_flag(FlagCode.RESUBMISSION)
    assert not any(s.copied for s in decision.copied_on_this_email)   # what this e-mail itself did
    without = decide(second, History(), SETTINGS, None)
    assert without.verdict.status is Status.INCOMPLETE


def test_a_corrected_urn_in_the_thread_stays_the_same_application() -> None:
    first = read(form_email(**{"school.urn": "12345"}))
    assert application_key(first, None, "?abc") == "?abc"
    thread = replace(history_of(first), key="?abc")
    corrected = read(form_email())
    assert application_key(corrected, thread, "?def") == corrected.school_urn
    still_invalid = read(form_email(**{"school.urn": "1234"}))
    assert application_key(still_invalid, thread, "?def") == "?abc"


def test_a_signatory_confirming_in_the_thread_completes_the_application() -> None:
    form = read(form_email(pattern="one_missing"))
    waiting = [s for s in form.signatories if not s.copied]
    assert len(waiting) == 1
    application = history_of(form)
    confirm = build_email(sender=waiting[0].email, to=("mathshub@bishopchalloner.bham.sch.uk",), subject="Re: x",
                          body_text="I confirm.")
    decision = decide(read(confirm), History(thread=application, answers_our_reply=True), SETTINGS, None)
    assert decision.action is Action.CONFIRM and decision.confirmed == (waiting[0].role,)
    assert decision.completes_application and decision.application_id == application.id
    assert decision.reply is not None and decision.reply.kind is EmailKind.ACKNOWLEDGEMENT
    assert decision.reply.to == (form.sender,) and decision.reply.in_reply_to == form.message_id
    # The same note from someone who is not an awaited signatory is for a person, not a confirmation.
    stranger = build_email(sender="someone@else.example", to=("mathshub@bishopchalloner.bham.sch.uk",),
                           subject="Re: x", body_text="I confirm.")
    assert decide(read(stranger), History(thread=application, answers_our_reply=True), SETTINGS,
                  None).action is Action.NOTE


def test_a_confirmation_counts_only_from_the_signatory_answering_our_own_email() -> None:
    form = read(form_email(pattern="one_missing"))
    (waiting,) = [s for s in form.signatories if not s.copied]
    application = history_of(form)
    hub = ("mathshub@bishopchalloner.bham.sch.uk",)
    own = build_email(sender=waiting.email, to=hub, subject="Re: x", body_text="I confirm.")
    # It names only the school's own Message-ID (anyone who saw the school's e-mail could): not a signature.
    assert decide(read(own), History(thread=application), SETTINGS, None).action is Action.NOTE
    # Someone else writing with the signatory in Cc: not a signature either.
    copied = build_email(sender=form.sender, to=hub, cc=(waiting.email,), subject="Re: x", body_text="I confirm.")
    assert decide(read(copied), History(thread=application, answers_our_reply=True), SETTINGS,
                  None).action is Action.NOTE
    # Where the hub's servers vouch for senders, the signatory must pass.
    strict = replace(SETTINGS, trusted_authserv_ids=frozenset({"mx.hub.example"}))
    unvouched = read_email(parse_email(own), len(own), strict)
    assert decide(unvouched, History(thread=application, answers_our_reply=True), strict,
                  None).action is Action.NOTE
    domain = waiting.email.rpartition("@")[2]
    vouched_raw = f"Authentication-Results: mx.hub.example; dmarc=pass header.from={domain}\r\n".encode() + own
    vouched = read_email(parse_email(vouched_raw), len(vouched_raw), strict)
    assert decide(vouched, History(thread=application, answers_our_reply=True), strict,
                  None).action is Action.CONFIRM


def test_a_form_from_another_domain_never_silently_replaces_the_application() -> None:
    first = read(form_email())
    school = history_of(first, signed=True, complete=True)
    raw = re.sub(rb"(?m)^From: .*$", b"From: Someone <a@elsewhere.example>", form_email(), count=1)
    decision = decide(read(raw), History(school=school), SETTINGS, None)
    assert decision.action is Action.NOTE and decision.verdict.status is Status.REVIEW
    assert decision.verdict.has_flag(FlagCode.RESUBMISSION)
    (notice,) = decision.notices
    assert notice.kind is EmailKind.RESUBMISSION_NOTICE and notice.to == (first.sender,) and notice.cc == ()
    assert notice.in_reply_to == first.message_id and "a@elsewhere.example" not in notice.text
    # The same school's own domain is an ordinary resubmission.
    again = decide(read(form_email()), History(school=school), SETTINGS, None)
    assert again.action is Action.RECORD and not again.notices


def test_the_daily_cap_holds_a_reply_back_for_any_recipient() -> None:
    verdict = read(form_email())
    free = decide(verdict, History(daily_cap=2), SETTINGS, None)
    assert free.reply is not None
    cc = free.reply.cc[-1]
    capped = decide(verdict, History(sent_today={cc: 2}, daily_cap=2), SETTINGS, None)
    assert capped.reply is None and capped.held_back == free.reply


def test_replies_go_only_to_addresses_on_the_email() -> None:
    verdict = read(form_email(pattern="one_missing"))
    decision = decide(verdict, History(), SETTINGS, None)
    assert decision.reply is not None
    on_the_email = set(verdict.correspondence.correspondents)
    assert set(decision.reply.to) | set(decision.reply.cc) <= on_the_email
    not_copied = [s.email for s in verdict.signatories if not s.copied]
    assert not_copied and not set(not_copied) & set(decision.reply.cc)


def test_a_stored_verdict_reads_back_the_same() -> None:
    verdict = decide(read(form_email(pattern="one_missing", **{"school.urn": "12345"})), History(), SETTINGS,
                     None).verdict
    assert Verdict.from_record(verdict.to_record()) == verdict

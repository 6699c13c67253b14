"""The pure rules behind decisions and outcomes, with no database: the words staff may write for a decision, which
notification is the outcome date and which are shortlist dates, working days for reminders and outcome e-mails,
checking a filled export's rows, spotting a request to withdraw (and not in quoted text), greeting a person by
name, and ``decide`` tying a corrected resubmission, and a withdrawal request, to the school's one application.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from parsers.email import parse_email
from rules.decision import Action, ApplicationHistory, History, SignatoryHistory, StaffFile, decide
from rules.definitions import Notification
from rules.outcomes import (
    DecisionRow,
    KnownApplication,
    StaffDecision,
    announcements,
    next_announcement,
    outcome_notification,
    outcome_send_day,
    parse_decision,
    plan_decisions,
    reminder_send_day,
    shortlist_notifications,
)
from rules.pipeline import CheckSettings, assess, read_email
from rules.replies import greeting_name
from rules.verdict import FlagCode, Status, Verdict
from rules.withdrawal import asks_to_withdraw, own_text
from samples.applications import application_email, complete_answers, fill_form
from samples.mail import build_email
from templates import EmailKind

P24 = "secondary-tfm-wg-2024"
HUB = "mathshub@bishopchalloner.bham.sch.uk"
SETTINGS = CheckSettings.builtin()


# ---- decision words -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("word, decision", [
    ("selected", StaffDecision.SELECTED), ("Selected", StaffDecision.SELECTED), (" SELECT. ", StaffDecision.SELECTED),
    ("waitlisted", StaffDecision.WAITLISTED), ("waiting list", StaffDecision.WAITLISTED),
    ("Wait-listed", StaffDecision.WAITLISTED), ("declined", StaffDecision.DECLINED),
    ("not selected", StaffDecision.DECLINED), ("shortlisted", StaffDecision.SHORTLISTED),
    ("short listed", StaffDecision.SHORTLISTED), ("withdrawn", StaffDecision.WITHDRAWN),
])
def test_the_words_staff_write_for_each_decision(word: str, decision: StaffDecision) -> None:
    assert parse_decision(word) is decision


@pytest.mark.parametrize("word", ["maybe", "yes", "no", "", "selectd", "TBC", "selected?"])
def test_anything_else_is_not_a_decision(word: str) -> None:
    assert parse_decision(word) is None


# ---- dates ----------------------------------------------------------------------------------------------------

SHORT = Notification(date(2017, 1, 13), "shortlisted schools informed")
OUTCOME = Notification(date(2017, 1, 20), "selected schools informed")
CONFERENCE = Notification(date(2017, 6, 1), "Mastery conference")


def test_the_outcome_date_is_the_one_selected_schools_are_informed_on() -> None:
    assert outcome_notification([SHORT, OUTCOME, CONFERENCE]) == OUTCOME
    assert shortlist_notifications([SHORT, OUTCOME, CONFERENCE]) == (SHORT,)
    # None says "selected": the last one is the outcome date.
    assert outcome_notification([SHORT, CONFERENCE]) == CONFERENCE
    assert outcome_notification([]) is None
    found = announcements([CONFERENCE, OUTCOME, SHORT])
    assert [(a.day, a.shortlist) for a in found] == [(SHORT.date, True), (OUTCOME.date, False)]
    assert found[0].decisions == {StaffDecision.SHORTLISTED}
    assert found[1].decisions == {StaffDecision.SELECTED, StaffDecision.WAITLISTED, StaffDecision.DECLINED}
    assert next_announcement([SHORT, OUTCOME], date(2017, 1, 14)).day == OUTCOME.date
    assert next_announcement([SHORT, OUTCOME], date(2017, 1, 21)) is None


def test_outcome_emails_wait_for_a_working_day_never_go_early() -> None:
    assert outcome_send_day(date(2024, 7, 12)) == date(2024, 7, 12)        # a Friday
    assert outcome_send_day(date(2024, 7, 13)) == date(2024, 7, 15)        # Saturday -> Monday
    assert outcome_send_day(date(2024, 7, 14)) == date(2024, 7, 15)        # Sunday -> Monday
    assert outcome_send_day(date(2024, 7, 13), ("mon", "tue", "wed", "thu", "fri", "sat")) == date(2024, 7, 13)


def test_a_weekend_reminder_goes_on_the_next_working_day_unless_that_is_after_the_deadline() -> None:
    monday_deadline = date(2024, 7, 1)
    assert reminder_send_day(date(2024, 6, 29), monday_deadline) == date(2024, 7, 1)       # Sat -> Mon (deadline)
    sunday_deadline = date(2024, 6, 30)
    assert reminder_send_day(date(2024, 6, 29), sunday_deadline) == date(2024, 6, 28)      # Sat -> Fri before
    assert reminder_send_day(date(2024, 6, 26), sunday_deadline) == date(2024, 6, 26)      # a Wednesday stays


# ---- a filled export's rows -----------------------------------------------------------------------------------

KNOWN = {1: KnownApplication(1, "Valley School", None), 2: KnownApplication(2, "St Anne's", StaffDecision.SELECTED),
         3: KnownApplication(3, "Hillside Academy", None)}


def test_rows_are_checked_and_nothing_is_guessed() -> None:
    plan = plan_decisions([
        DecisionRow(2, "1", "Selected", "strong statement"),
        DecisionRow(3, "2", "selected"),              # already so
        DecisionRow(4, "3", ""),                      # not decided yet: skipped
        DecisionRow(5, "99", "declined"),             # nobody has 99
        DecisionRow(6, "3", "maybe"),                 # not a decision
        DecisionRow(7, "", "declined"),               # no number
        DecisionRow(8, "1.0", "declined"),            # 1 again, with another decision
    ], KNOWN)
    assert [(c.number, c.before, c.after, c.note) for c in plan.changes] == \
        [(1, None, StaffDecision.SELECTED, "strong statement")]
    assert plan.unchanged == 1
    assert [(r.where, r.reason) for r in plan.refused] == [
        ("row 5", "no application has the number 99"),
        ("row 6", '"maybe" is not a decision (use shortlisted, selected, waitlisted, declined or withdrawn)'),
        ("row 7", "no number given"),
        ("row 8", "application 1 is given two different decisions"),
    ]


# ---- withdrawal requests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "Dear hub,\n\nPlease withdraw our application; we cannot release staff next year.\n\nKate",
    "Hello,\nWe would like to withdraw from the Work Group application.\nThanks",
    "We'd like to withdraw our application, sorry.",
    "i have decided to withdraw the school's application",
])
def test_a_request_to_withdraw_is_seen(body: str) -> None:
    assert asks_to_withdraw("Re: your application", body)


@pytest.mark.parametrize("body", [
    "Thanks, all fine.\n\n> Please withdraw our application\n> if you cannot attend.",
    "Thank you.\n\nOn Tue, 4 Jun 2024 at 10:00, Central Maths Hub <hub@x.org> wrote:\nWe would like to withdraw",
    "Thank you.\n\nOn Tue, 4 Jun 2024 at 10:00, Central Maths Hub\n<hub@x.org> wrote:\nplease withdraw our application",
    "Thanks\n-----Original Message-----\nFrom: someone\nWe would like to withdraw",
    "We do not wish to withdraw our application, we just have a question.",
    "Could you tell me how to withdraw if we need to later?",
])
def test_quoted_text_and_questions_are_not_a_request(body: str) -> None:
    assert not asks_to_withdraw("Re: your application", body)


def test_own_text_stops_at_the_quote() -> None:
    assert own_text("Yes please.\n\nOn Mon, 3 Jun 2024, Hub wrote:\n> old text") == "Yes please.\n"


def test_a_withdrawal_email_is_review_with_the_flag_and_a_short_receipt() -> None:
    raw = build_email(sender="School Office <office@valley.example.sch.uk>", to=HUB, subject="Our application",
                      body_text="Dear colleagues,\n\nWe would like to withdraw our application this year.\n\nKate")
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.REVIEW and verdict.has_flag(FlagCode.WITHDRAWAL)
    assert verdict.to_json()["flags"] == [{"code": "withdrawal", "detail": "asks to withdraw an application"}]
    assert verdict.reply is not None and verdict.reply.kind is EmailKind.WITHDRAWAL_RECEIVED
    assert "passed this to the hub team" in verdict.reply.text and verdict.reply.to == ("office@valley.example.sch.uk",)


# ---- greetings ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, greeting", [
    ("Mr Sam Reid", "Mr Reid"), ("Miss Grace Li", "Miss Li"), ("Dr Ruth Evans", "Dr Evans"),
    ("Mr Mr Sam Reid", "Mr Reid"), ("Mr. Sam Reid", "Mr. Reid"), ("Sam Reid", "Sam Reid"), ("Mr Reid", "Mr Reid"),
    ("", ""), (None, ""), ("Mr", ""),
])
def test_greeting_uses_the_name_once_without_doubling_titles(name: str | None, greeting: str) -> None:
    assert greeting_name(name) == greeting


# ---- one application per school -------------------------------------------------------------------------------

def read(raw: bytes) -> Verdict:
    return read_email(parse_email(raw), len(raw), SETTINGS)


def form(urn: str, *, name: str = "Valley School", sender_domain: str = "valley.example.sch.uk") -> Verdict:
    answers = {**complete_answers(P24), "school.urn": urn, "school.name": name}
    verdict = read(application_email(P24, fill_form(P24, answers), answers=answers))
    return replace(verdict, sender=f"office@{sender_domain}")


def stored(verdict: Verdict, app_id: int, key: str) -> ApplicationHistory:
    return ApplicationHistory(id=app_id, programme=P24, key=key, complete=False, versions=1,
                              signatories=tuple(SignatoryHistory(s.role, s.email, s.copied)
                                                for s in verdict.signatories), latest=verdict)


def test_a_corrected_urn_from_the_same_sender_is_the_same_application() -> None:
    first = form("12268")                      # one digit short: keyed by its own message
    earlier = stored(first, 7, "?abc")
    corrected = form("122687")
    decision = decide(corrected, History(candidates=(earlier,)), SETTINGS, None, message_key="?def")
    assert decision.action is Action.RECORD and decision.application_id == 7
    assert decision.application_key == "122687"           # the application now goes by the valid URN
    assert decision.verdict.has_flag(FlagCode.RESUBMISSION)


def test_same_domain_same_school_name_joins_but_another_valid_urn_is_another_school() -> None:
    first = form("122687")
    earlier = stored(first, 7, "122687")
    # The same school writes again from the same domain with its URN mistyped: the same application.
    typo = decide(form("12268"), History(candidates=(earlier,)), SETTINGS, None, message_key="?x")
    assert typo.application_id == 7 and typo.application_key == "122687"
    # A trust writing for another school (its own valid URN) from the same domain: a new application.
    other = decide(form("140233"), History(candidates=(earlier,)), SETTINGS, None, message_key="?y")
    assert other.application_id is None and other.application_key == "140233"
    # Another domain, same name: not the same sender, so not joined.
    elsewhere = decide(form("12268", sender_domain="other.example.org"), History(candidates=(earlier,)),
                       SETTINGS, None, message_key="?z")
    assert elsewhere.application_id is None and elsewhere.application_key == "?z"


def test_a_withdrawal_is_tied_to_the_one_application_of_the_senders_domain() -> None:
    earlier = stored(form("122687"), 7, "122687")
    raw = build_email(sender="office@valley.example.sch.uk", to=HUB, subject="Withdrawal",
                      body_text="Please withdraw our application.")
    decision = decide(read(raw), History(candidates=(earlier,)), SETTINGS, None)
    assert decision.action is Action.WITHDRAW and decision.application_id == 7
    assert decision.reply is not None and "Valley School" in decision.reply.text
    # Two applications from that domain and no thread: staff decide which; the school is still answered.
    other = stored(form("140233", name="St Anne's"), 8, "140233")
    ambiguous = decide(read(raw), History(candidates=(earlier, other)), SETTINGS, None)
    assert ambiguous.action is Action.WITHDRAW and ambiguous.application_id is None and ambiguous.reply


def test_a_staff_decisions_file_is_planned_and_answered() -> None:
    raw = build_email(sender="lead@central.example.org", to=HUB, subject="Decisions", body_text="Attached.")
    staff = StaffFile("export.xlsx", (DecisionRow(2, "1", "selected"), DecisionRow(3, "99", "selected")),
                      KNOWN, "staff:e-mail #1 (central)")
    decision = decide(read(raw), History(staff_file=staff), SETTINGS, None)
    assert decision.action is Action.DECISIONS and decision.actor == "staff:e-mail #1 (central)"
    assert decision.plan is not None and [c.number for c in decision.plan.changes] == [1]
    reply = decision.reply
    assert reply is not None and reply.kind is EmailKind.DECISIONS_RECORDED
    assert reply.to == ("lead@central.example.org",) and reply.cc == ()
    assert "1 changed, 1 refused" in reply.subject and "no application has the number 99" in reply.text
    unreadable = decide(read(raw), History(staff_file=replace(staff, problem="it is not a spreadsheet")), SETTINGS,
                        None)
    assert unreadable.plan is not None and unreadable.plan.changes == ()
    assert unreadable.reply is not None and "Nothing has been recorded" in unreadable.reply.text

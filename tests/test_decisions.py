"""Decisions and outcomes through the real worker on a Maildir hub (replies land as .eml files): ``hubbot decide``
by number and by ``--import`` (a dry run unless ``--apply``), a staff member e-mailing the filled export (and
anyone else's file recording nothing), authentication where the config trusts it, outcome and shortlist e-mails
once each at 09:00 London on a working day to the school's own addresses, nothing to undecided schools, a decision
changed after its e-mail listed to staff and not re-sent, a request to withdraw, a corrected URN joining the
school's application, no "not complete yet" to a school that sent a complete form, the export's new columns, a
hub's own templates, the digest's attached export, ``requeue`` of a retrying reply, and replies that say what to do.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.staff import jobs
from bot.staff.digest import build_digest, render_digest
from bot.staff.export import export_rows, write_csv, write_xlsx
from bot.staff.outcomes import changed_after_sent
from rules.outcomes import StaffDecision
from samples.applications import LONDON, SCHOOLS
from samples.mail import build_email
from storage.models import Event, OutboxItem, OutboxState
from templates import EmailKind
from tests.test_cli import hubbot
from tests.test_reminders import HUB_ADDRESS, PID, STAFF, form_email, frozen, hub_block, make_bot, person
from tests.test_workflow import Bot, body_text, deliver, sent_files

VALLEY, STANNES, HILLSIDE, RIVERSIDE = SCHOOLS
DAY = datetime(2024, 6, 20, 10, 0, tzinfo=LONDON)
# Shortlisted schools hear on Friday 5 July, selected (and waitlisted, declined) ones on Friday 12 July 2024.
DATES = {PID: 'notifications = [{ date = "2024-07-05", what = "shortlisted schools informed" }, '
              '{ date = "2024-07-12", what = "selected schools informed" }]'}
OUTCOME_DAY = datetime(2024, 7, 12, 9, 0, tzinfo=LONDON)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def central(tmp_path: Path, *, dates: dict[str, str] | None = None, extra_hub: str = "", extra: str = "") -> Bot:
    return make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}",
                    hubs=hub_block(dates=DATES if dates is None else dates) + extra_hub, extra=extra)


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    b = central(tmp_path)
    yield b
    b.close()


def four_schools(bot: Bot, tmp_path: Path) -> dict[str, int]:
    """Valley, St Anne's and Hillside complete; Riverside with its last signatory left off the Cc."""
    mail = tmp_path / "mail"
    for i, school in enumerate((VALLEY, STANNES, HILLSIDE)):
        deliver(mail, form_email(school, received=DAY + timedelta(minutes=i)), DAY + timedelta(minutes=i))
    deliver(mail, form_email(RIVERSIDE, pattern="one_missing", received=DAY + timedelta(minutes=5)),
            DAY + timedelta(minutes=5))
    bot.now = DAY + timedelta(hours=1)
    report = bot.run()
    assert report.failed_messages == 0 and len(report.outcomes) == 4
    return {a.school_name: a.id for a in bot.applications()}


def decide(bot: Bot, *args: str, now: datetime = DAY + timedelta(days=2)):
    return hubbot("decide", *args, "--config", str(bot.config_path), "--now", now.isoformat(),
                  cwd=bot.config_path.parent)


def decisions(bot: Bot) -> dict[str, StaffDecision | None]:
    return {a.school_name: a.decision for a in bot.applications()}


def outcome_rows(bot: Bot) -> list[OutboxItem]:
    return [i for i in bot.outbox() if i.kind.value.startswith("outcome_")]


def remind(bot: Bot, now: datetime, *, send: bool = True, staff: bool = False):
    """``jobs.remind`` at ``now`` (then the outbox drained); what it queued for schools (and staff notes too when
    ``staff``: the staff note before each date is tested on its own)."""
    bot.now = now
    with frozen(now):
        due = jobs.remind(bot.db, bot.config, bot.settings, now, send=send, actor="test")
        if send:
            bot.worker().send_due()
    return [d for d in due if staff or d.kind is not EmailKind.STAFF_NOTICE]


# ---- hubbot decide --------------------------------------------------------------------------------------------

def test_decide_by_number_records_who_and_when_and_logs_no_address(bot: Bot, tmp_path: Path) -> None:
    ids = four_schools(bot, tmp_path)
    done = decide(bot, str(ids[VALLEY.name]), f"#{ids[STANNES.name]}", "--as", "Selected", "--note", "strong")
    assert done.returncode == 0, done.stderr
    assert "2 decision(s) recorded" in done.stdout and "Valley School: no decision -> selected" in done.stdout
    valley = next(a for a in bot.applications() if a.id == ids[VALLEY.name])
    assert valley.decision is StaffDecision.SELECTED and valley.decided_by == "staff:command line"
    assert valley.decided_at == DAY + timedelta(days=2) and valley.decision_note == "strong"

    # The same again changes nothing; an unknown number and a word that is not a decision are refused.
    again = decide(bot, str(ids[VALLEY.name]), "--as", "selected")
    assert again.returncode == 0 and "0 decision(s) recorded, 1 already so" in again.stdout
    unknown = decide(bot, "999", str(ids[HILLSIDE.name]), "--as", "declined")
    assert unknown.returncode == 2 and "no application has the number 999" in unknown.stdout
    assert decisions(bot)[HILLSIDE.name] is StaffDecision.DECLINED      # the known number is still recorded
    word = decide(bot, str(ids[RIVERSIDE.name]), "--as", "maybe")
    assert word.returncode == 2 and "'maybe' is not a decision" in word.stderr
    assert decisions(bot)[RIVERSIDE.name] is None
    assert decide(bot, "--as", "selected").returncode == 2

    events = bot.events("decision_recorded")
    assert [(e.application_id, e.detail["decision"], e.detail["before"], e.detail["route"]) for e in events] == [
        (ids[VALLEY.name], "selected", None, "command"), (ids[STANNES.name], "selected", None, "command"),
        (ids[HILLSIDE.name], "declined", None, "command")]
    for e in events:
        assert e.actor == "staff:command line" and "@" not in repr(e.detail) and "@" not in e.actor


def filled_export(bot: Bot, path: Path, filled: dict[int, str]) -> Path:
    """The export as ``hubbot export`` writes it, with the "Decision" column filled in as staff would."""
    with bot.db.session() as session:
        sheets = export_rows(session, hub="central", registry=bot.settings.registry)
    if path.suffix == ".csv":
        stream = io.StringIO(newline="")
        write_csv(sheets, stream)
        rows = list(csv.reader(io.StringIO(stream.getvalue().lstrip("\ufeff"))))
        number, decision = rows[0].index("number"), rows[0].index("decision")
        for row in rows[1:]:
            row[decision] = filled.get(int(row[number]), row[decision])
        out = io.StringIO(newline="")
        csv.writer(out).writerows(rows)
        path.write_text("\ufeff" + out.getvalue(), encoding="utf-8", newline="")
        return path
    write_xlsx(sheets, path)
    workbook = load_workbook(path)
    for ws in workbook.worksheets:
        header = [c.value for c in ws[1]]
        number, decision = header.index("Number") + 1, header.index("Decision") + 1
        for r in range(2, ws.max_row + 1):
            wanted = filled.get(ws.cell(row=r, column=number).value)
            if wanted is not None:
                ws.cell(row=r, column=decision, value=wanted)
    workbook.save(path)
    return path


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_import_is_a_dry_run_unless_apply(bot: Bot, tmp_path: Path, suffix: str) -> None:
    ids = four_schools(bot, tmp_path)
    path = filled_export(bot, tmp_path / f"decisions{suffix}",
                         {ids[VALLEY.name]: "selected", ids[STANNES.name]: "Waiting list",
                          ids[HILLSIDE.name]: "perhaps"})
    dry = decide(bot, "--import", str(path))
    assert dry.returncode == 2, dry.stderr            # one row refused
    assert "2 decision(s) would be recorded" in dry.stdout and "Nothing has been recorded" in dry.stdout
    assert '"perhaps" is not a decision' in dry.stdout
    assert set(decisions(bot).values()) == {None} and bot.events("decision_recorded") == []

    applied = decide(bot, "--import", str(path), "--apply")
    assert "2 decision(s) recorded" in applied.stdout
    assert decisions(bot) == {VALLEY.name: StaffDecision.SELECTED, STANNES.name: StaffDecision.WAITLISTED,
                              HILLSIDE.name: None, RIVERSIDE.name: None}
    assert {e.actor for e in bot.events("decision_recorded")} == {"staff:import"}
    not_an_export = tmp_path / "notes.csv"
    not_an_export.write_text("school,comment\nValley,great\n")
    refused = decide(bot, "--import", str(not_an_export))
    assert refused.returncode == 2 and 'no "number" and "decision" columns' in refused.stderr


# ---- the e-mail route -----------------------------------------------------------------------------------------

def decisions_email(sender: str, attachment: Path | None, *, subject: str = "Decisions for the Work Group",
                    when: datetime, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    files = [(attachment.name, attachment.read_bytes(), XLSX if attachment.suffix == ".xlsx" else "text/csv")] \
        if attachment else []
    return build_email(sender=sender, to=HUB_ADDRESS, subject=subject, body_text="Please find attached the "
                       "decisions for the applications.\n\nLead", attachments=files, date=when, received=when,
                       message_id=f"<decisions-{when:%H%M%S}-{abs(hash(sender)) % 1000}@central.example.org>",
                       extra_headers=headers)


def test_staff_email_records_decisions_and_answers_only_them(bot: Bot, tmp_path: Path) -> None:
    ids = four_schools(bot, tmp_path)
    path = filled_export(bot, tmp_path / "filled.xlsx", {ids[VALLEY.name]: "selected",
                                                         ids[HILLSIDE.name]: "declined", 999: "selected"})
    # Add a row staff typed by hand: a number nobody has.
    workbook = load_workbook(path)
    ws = workbook[PID]
    header = [c.value for c in ws[1]]
    ws.cell(row=ws.max_row + 1, column=header.index("Number") + 1, value=999)
    ws.cell(row=ws.max_row, column=header.index("Decision") + 1, value="selected")
    workbook.save(path)

    when = DAY + timedelta(days=3)
    mail = tmp_path / "mail"
    # First someone not on the staff list sends the same file: nothing recorded, no decisions answer.
    deliver(mail, decisions_email("Someone <someone@valley.example.sch.uk>", path, when=when), when)
    # Then a staff member, but the subject does not start with "Decisions": ordinary mail.
    deliver(mail, decisions_email(f"Hub Lead <{STAFF}>", path, subject="Re: the file", when=when), when)
    bot.now = when + timedelta(minutes=5)
    bot.run()
    assert set(decisions(bot).values()) == {None}
    assert not [i for i in bot.outbox() if i.kind is EmailKind.DECISIONS_RECORDED]

    deliver(mail, decisions_email(f"Hub Lead <{STAFF}>", path, when=when + timedelta(hours=1)),
            when + timedelta(hours=1))
    bot.now = when + timedelta(hours=1, minutes=5)
    report = bot.run()
    assert report.failed_messages == 0
    assert decisions(bot) == {VALLEY.name: StaffDecision.SELECTED, STANNES.name: None,
                              HILLSIDE.name: StaffDecision.DECLINED, RIVERSIDE.name: None}
    (answer,) = [i for i in bot.outbox() if i.kind is EmailKind.DECISIONS_RECORDED]
    assert answer.to == [STAFF] and answer.cc == [] and answer.state is OutboxState.SENT
    assert answer.subject == "Decisions recorded: 2 changed, 1 refused"
    assert f"No. {ids[VALLEY.name]} Valley School: no decision -> selected" in answer.text
    assert "no application has the number 999" in answer.text
    assert {e.actor for e in bot.events("decision_recorded")} == {"staff:e-mail #1 (central)"}
    assert all("@" not in repr(e.detail) for e in bot.events("decision_recorded"))
    # The staff member's file is done with; the stranger's is mail for a person to read.
    with bot.db.session() as session:
        digest = build_digest(session, bot.config, bot.settings, bot.config.hubs[0], bot.now + timedelta(hours=12))
    assert sorted((m.sender, m.subject) for m in digest.needs_person) == [
        (f"Hub Lead <{STAFF}>", "Re: the file"),
        ("Someone <someone@valley.example.sch.uk>", "Decisions for the Work Group")]


def test_a_staff_file_must_pass_authentication_when_the_config_trusts_it(bot: Bot, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.staff.decisions as staff_decisions

    # As [security] trusted_authserv_ids = ["mx.hub.example"] will say once the config has it.
    monkeypatch.setattr(staff_decisions, "trusted_authserv_ids", lambda config: ("mx.hub.example",))
    ids = four_schools(bot, tmp_path)
    path = filled_export(bot, tmp_path / "filled.csv", {ids[VALLEY.name]: "selected"})
    mail = tmp_path / "mail"
    when = DAY + timedelta(days=3)
    forged = (("Authentication-Results", "mx.elsewhere.example; dmarc=pass header.from=central.example.org"),)
    failed = (("Authentication-Results", "mx.hub.example; dmarc=fail header.from=central.example.org"),)
    deliver(mail, decisions_email(STAFF, path, when=when, headers=forged), when)
    deliver(mail, decisions_email(STAFF, path, when=when + timedelta(minutes=1), headers=failed),
            when + timedelta(minutes=1))
    bot.now = when + timedelta(minutes=5)
    bot.run()
    assert decisions(bot)[VALLEY.name] is None
    assert not [i for i in bot.outbox() if i.kind is EmailKind.DECISIONS_RECORDED]
    passed = (("Authentication-Results", "mx.hub.example; dkim=pass header.d=central.example.org; "
                                         "dmarc=pass header.from=central.example.org"),)
    deliver(mail, decisions_email(STAFF, path, when=when + timedelta(minutes=2), headers=passed),
            when + timedelta(minutes=2))
    bot.run()
    assert decisions(bot)[VALLEY.name] is StaffDecision.SELECTED


# ---- outcome e-mails ------------------------------------------------------------------------------------------

def test_outcome_emails_go_once_each_at_nine_on_the_date_to_the_schools_own_addresses(bot: Bot,
                                                                                      tmp_path: Path) -> None:
    ids = four_schools(bot, tmp_path)
    decide(bot, str(ids[VALLEY.name]), "--as", "selected")
    decide(bot, str(ids[STANNES.name]), "--as", "waitlisted")
    decide(bot, str(ids[RIVERSIDE.name]), "--as", "declined")
    decide(bot, str(ids[HILLSIDE.name]), "--as", "shortlisted")
    before = len(sent_files(tmp_path / "outbox"))

    assert remind(bot, datetime(2024, 7, 5, 8, 59, tzinfo=LONDON)) == []
    (short,) = remind(bot, datetime(2024, 7, 5, 9, 0, tzinfo=LONDON))
    assert short.kind is EmailKind.OUTCOME_SHORTLISTED and short.key == f"shortlist:{ids[HILLSIDE.name]}:2024-07-05"
    assert "12 July 2024" in short.email.text        # when they will hear again
    assert remind(bot, OUTCOME_DAY - timedelta(seconds=1)) == []
    due = remind(bot, OUTCOME_DAY)
    assert sorted((d.kind.value, d.application_id) for d in due) == sorted([
        ("outcome_selected", ids[VALLEY.name]), ("outcome_waitlisted", ids[STANNES.name]),
        ("outcome_declined", ids[RIVERSIDE.name])])
    assert remind(bot, OUTCOME_DAY + timedelta(hours=3)) == [] and remind(bot, OUTCOME_DAY + timedelta(days=1)) == []
    rows = outcome_rows(bot)
    assert len(rows) == 4 and all(r.state is OutboxState.SENT for r in rows)
    files = sent_files(tmp_path / "outbox")
    assert len([m for m in files if str(m["Message-ID"]).strip() in {r.message_id for r in rows}]) == 4
    assert len(files) == before + 4 + 2          # and the staff note before each of the two dates

    riverside = next(r for r in rows if r.application_id == ids[RIVERSIDE.name])
    assert riverside.to == ["office@riverside.example.sch.uk"]
    left_off = person(RIVERSIDE, "teacher2")[1]               # named on the form only, never on the e-mail
    assert left_off not in riverside.cc and set(riverside.cc) == {person(RIVERSIDE, r)[1]
                                                                   for r in ("head", "hod", "teacher1")}
    assert riverside.in_reply_to == f"<form-{RIVERSIDE.urn}-06201005@{RIVERSIDE.domain}>"
    valley = next(r for r in rows if r.application_id == ids[VALLEY.name])
    assert valley.subject.startswith("Your school has been selected") and "Dear colleagues" in valley.text
    assert "when your e-mail arrived" not in valley.text
    assert len(bot.events("outcome_queued")) == 4

    # Changed after its e-mail went: listed to staff, never sent again on its own.
    decide(bot, str(ids[VALLEY.name]), "--as", "declined", now=OUTCOME_DAY + timedelta(hours=4))
    assert remind(bot, OUTCOME_DAY + timedelta(hours=5)) == []
    with bot.db.session() as session:
        (changed,) = changed_after_sent(session, "central")
        digest = build_digest(session, bot.config, bot.settings, bot.config.hubs[0], OUTCOME_DAY + timedelta(days=1))
    assert (changed.application_id, changed.sent, changed.now) == (ids[VALLEY.name], StaffDecision.SELECTED,
                                                                    StaffDecision.DECLINED)
    assert "told selected on 12 Jul 2024" in render_digest(digest).text
    assert len(outcome_rows(bot)) == 4


def test_undecided_schools_get_nothing_and_are_listed_to_staff_before_the_date(bot: Bot, tmp_path: Path) -> None:
    ids = four_schools(bot, tmp_path)
    decide(bot, str(ids[VALLEY.name]), "--as", "selected")
    (notice,) = remind(bot, datetime(2024, 7, 9, 9, 0, tzinfo=LONDON), staff=True)
    assert notice.kind is EmailKind.STAFF_NOTICE and notice.to == (STAFF,)
    text = notice.email.text
    assert "NO DECISION YET (3)" in text
    for school in (STANNES, HILLSIDE, RIVERSIDE):
        assert f"No. {ids[school.name]} {school.name} (URN {school.urn})" in text
    assert f"No. {ids[VALLEY.name]} Valley School (URN" not in text.split("ALL APPLICATIONS")[0]
    (selected,) = remind(bot, OUTCOME_DAY)
    assert selected.application_id == ids[VALLEY.name]
    assert [r.application_id for r in outcome_rows(bot)] == [ids[VALLEY.name]]


def test_a_weekend_outcome_date_goes_on_monday(tmp_path: Path) -> None:
    b = central(tmp_path, dates={PID: 'notifications = [{ date = "2024-07-13", what = "selected schools informed" }]'})
    try:
        ids = four_schools(b, tmp_path)
        decide(b, str(ids[VALLEY.name]), "--as", "selected")
        assert remind(b, datetime(2024, 7, 13, 9, 0, tzinfo=LONDON)) == []            # Saturday
        assert remind(b, datetime(2024, 7, 14, 18, 0, tzinfo=LONDON)) == []           # Sunday
        (monday,) = remind(b, datetime(2024, 7, 15, 9, 0, tzinfo=LONDON))
        assert monday.key == f"outcome:{ids[VALLEY.name]}:2024-07-13"
    finally:
        b.close()


def test_a_hubs_own_template_replaces_the_built_in(tmp_path: Path) -> None:
    own = tmp_path / "our-templates"
    own.mkdir()
    (own / "outcome_selected.subject.j2").write_text("Congratulations from {{ hub_name }}: {{ school_name }}")
    hubs = hub_block(dates=DATES).replace('maildir = "mail"', 'maildir = "mail"\ntemplates_dir = "our-templates"')
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", hubs=hubs)
    try:
        ids = four_schools(b, tmp_path)
        decide(b, str(ids[VALLEY.name]), "--as", "selected")
        (email_,) = remind(b, OUTCOME_DAY)
        assert email_.email.subject == "Congratulations from Central Maths Hub: Valley School"
        assert "has been selected" in email_.email.text          # the rest of the trio is the built-in
    finally:
        b.close()


# ---- withdrawals ----------------------------------------------------------------------------------------------

def test_a_request_to_withdraw_is_flagged_acknowledged_and_changes_no_decision(bot: Bot, tmp_path: Path) -> None:
    ids = four_schools(bot, tmp_path)
    mail = tmp_path / "mail"
    when = DAY + timedelta(days=1)
    head_name, head = person(STANNES, "head")
    deliver(mail, build_email(sender=f"{head_name} <{head}>", to=HUB_ADDRESS, subject="Work Group",
                              body_text="Dear Hub,\n\nWe would like to withdraw our application: we cannot release "
                                        "staff next year.\n\nDavid Okafor", date=when, received=when,
                              message_id="<withdraw@stannes.example.sch.uk>"), when)
    # A school quoting text that mentions withdrawing is not asking to withdraw.
    deliver(mail, build_email(sender="office@valley.example.sch.uk", to=HUB_ADDRESS, subject="Re: Work Group",
                              body_text="Thank you, noted.\n\n> We would like to withdraw if dates change.",
                              date=when, received=when, message_id="<quoted@valley.example.sch.uk>"), when)
    bot.now = when + timedelta(minutes=5)
    report = bot.run()
    outcomes = {o.application_id: o for o in report.outcomes}
    request = outcomes[ids[STANNES.name]]
    assert request.status.value == "review" and request.reply is EmailKind.WITHDRAWAL_RECEIVED
    assert [o.status.value for o in report.outcomes if o.application_id is None] == ["not_application"]
    (ack,) = [i for i in bot.outbox() if i.kind is EmailKind.WITHDRAWAL_RECEIVED]
    assert ack.to == [head] and "passed this to the hub team" in ack.text and "St Anne's" in ack.text
    assert decisions(bot)[STANNES.name] is None          # only staff change a decision

    with bot.db.session() as session:
        digest = build_digest(session, bot.config, bot.settings, bot.config.hubs[0], when + timedelta(hours=20))
    assert [(w.application_id, w.school) for w in digest.withdrawals] == [(ids[STANNES.name], STANNES.name)]
    assert "ASKING TO WITHDRAW (1)" in render_digest(digest).text and not digest.quiet
    decide(bot, str(ids[STANNES.name]), "--as", "withdrawn", now=when + timedelta(days=1))
    with bot.db.session() as session:
        digest = build_digest(session, bot.config, bot.settings, bot.config.hubs[0], when + timedelta(days=2))
    assert digest.withdrawals == []
    # A withdrawn school gets no outcome e-mail.
    assert not [d for d in remind(bot, OUTCOME_DAY) if d.application_id == ids[STANNES.name]]


# ---- one application per school -------------------------------------------------------------------------------

def test_a_resubmission_with_the_urn_corrected_is_the_same_application(bot: Bot, tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    deliver(mail, form_email(STANNES, changes={"school.urn": "14023"}, received=DAY), DAY)
    bot.now = DAY + timedelta(minutes=5)
    (first,) = bot.run().outcomes
    assert first.reply is EmailKind.MISSING_INFORMATION
    (reply,) = sent_files(tmp_path / "outbox")
    assert 'School URN: a URN has 6 digits; this has 5 (we read "14023")' in body_text(reply)
    assert "Please send everything by 28 June 2024" in body_text(reply)

    later = DAY + timedelta(days=1)                       # a new e-mail, not a reply in the thread
    deliver(mail, form_email(STANNES, received=later), later)
    bot.now = later + timedelta(minutes=5)
    (second,) = bot.run().outcomes
    assert second.reply is EmailKind.ACKNOWLEDGEMENT and second.application_id == first.application_id
    (app,) = bot.applications()
    assert app.school_urn == STANNES.urn and len(bot.versions(app.id)) == 2 and app.sender_domain == STANNES.domain
    ack = sent_files(tmp_path / "outbox")[-1]
    assert "What happens next: Shortlisted schools informed on 5 July 2024." in body_text(ack)
    assert remind(bot, datetime(2024, 6, 21, 9, 0, tzinfo=LONDON), send=False) == []


def test_a_school_that_sent_a_complete_form_is_never_told_it_is_not_complete(bot: Bot, tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    deliver(mail, form_email(HILLSIDE, received=DAY), DAY)
    later = DAY + timedelta(hours=3)
    deliver(mail, form_email(HILLSIDE, drop=("hod.trn",), received=later), later)      # a worse copy, sent again
    bot.now = later + timedelta(minutes=5)
    bot.run()
    (app,) = bot.applications()
    assert app.status.value == "incomplete" and len(bot.versions(app.id)) == 2
    assert remind(bot, datetime(2024, 6, 21, 9, 0, tzinfo=LONDON), send=False) == []


# ---- what staff get -------------------------------------------------------------------------------------------

def test_export_has_number_decision_problems_last_contact_and_the_urn_as_written(bot: Bot, tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    deliver(mail, form_email(STANNES, changes={"school.urn": "14023", "school.telephone": "0121 496 0000 ext"},
                             received=DAY), DAY)
    deliver(mail, form_email(VALLEY, received=DAY), DAY)
    bot.now = DAY + timedelta(minutes=5)
    bot.run()
    ids = {a.school_name: a.id for a in bot.applications()}
    decide(bot, str(ids[VALLEY.name]), "--as", "selected")
    with bot.db.session() as session:
        (sheet,) = export_rows(session, registry=bot.settings.registry)
    rows = {r.get("school_name"): r for r in sheet.rows}
    stannes, valley = rows[STANNES.name], rows[VALLEY.name]
    assert stannes.get("number") == ids[STANNES.name] and stannes.get("urn") == "14023"
    assert stannes.get("decision") is None and valley.get("decision") == "selected"
    problems = stannes.get("problems")
    assert "School URN: a URN has 6 digits; this has 5" in problems
    assert 'Contact telephone number: a telephone number has 10 or 11 digits (we read "0121 496 0000 ext")' in problems
    assert valley.get("problems") is None
    assert stannes.get("last_contact") == "missing information, 2024-06-20 10:05"
    assert valley.get("last_contact") == "acknowledgement, 2024-06-20 10:05"


def test_the_digest_attaches_the_export_when_asked(tmp_path: Path) -> None:
    b = central(tmp_path, extra="[schedule]\nattach_export = true\n")
    try:
        four_schools(b, tmp_path)
        now = datetime(2024, 6, 21, 7, 30, tzinfo=LONDON)
        with frozen(now):
            (run,) = jobs.digests(b.db, b.config, b.settings, now, send=True, actor="test")
        assert run.queued
        b.now = now
        b.worker().send_due()
        (row,) = [i for i in b.outbox() if i.kind is EmailKind.DIGEST]
        (sent,) = [m for m in sent_files(tmp_path / "outbox") if str(m["Message-ID"]).strip() == row.message_id]
        (attachment,) = list(sent.iter_attachments())
        assert attachment.get_filename() == "applications-central-2024-06-21.xlsx"
        workbook = load_workbook(io.BytesIO(attachment.get_content()))
        header = [c.value for c in workbook[PID][1]]
        assert "Number" in header and "Decision" in header and workbook[PID].max_row == 5
    finally:
        b.close()


def test_requeue_takes_the_number_the_digest_shows_for_a_retrying_reply(bot: Bot, tmp_path: Path) -> None:
    from bot.sending.smtp import SendResult, SendStatus

    deliver(tmp_path / "mail", form_email(VALLEY, received=DAY), DAY)
    bot.now = DAY + timedelta(minutes=5)
    bot.run(sender=lambda message: SendResult(SendStatus.TEMPORARY, 451, "4.3.0 Try again later"))
    (item,) = bot.outbox()
    assert item.state is OutboxState.PENDING and item.attempts == 1
    with bot.db.session() as session:
        digest = build_digest(session, bot.config, bot.settings, bot.config.hubs[0], DAY + timedelta(hours=1))
    text = render_digest(digest).text
    assert f"Reply {item.id}, acknowledgement" in text and "retrying" in text
    done = hubbot("requeue", f"#{item.id}", "--config", str(bot.config_path), "--now",
                  (DAY + timedelta(minutes=6)).isoformat(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"reply {item.id}: queued again" in done.stdout and "sent 1" in done.stdout
    (item,) = bot.outbox()
    assert item.state is OutboxState.SENT


def test_no_address_in_any_decision_or_outcome_event(bot: Bot, tmp_path: Path) -> None:
    ids = four_schools(bot, tmp_path)
    decide(bot, str(ids[VALLEY.name]), "--as", "selected")
    remind(bot, OUTCOME_DAY)
    events = bot.scalars(select(Event).where(Event.kind.in_(["decision_recorded", "outcome_queued"])))
    assert len(events) == 2
    for event in events:
        assert not re.search(r"[\w.]+@[\w.]+", repr(event.detail) + event.actor)


def test_the_outcome_emails_are_in_the_eml_outbox_as_real_mail(bot: Bot, tmp_path: Path) -> None:
    ids = four_schools(bot, tmp_path)
    decide(bot, str(ids[STANNES.name]), "--as", "waitlisted")
    remind(bot, OUTCOME_DAY)
    (row,) = outcome_rows(bot)
    (sent,) = [m for m in sent_files(tmp_path / "outbox") if str(m["Message-ID"]).strip() == row.message_id]
    assert sent["Auto-Submitted"] == "auto-replied" and HUB_ADDRESS in sent["From"]
    assert "waiting list" in body_text(sent) and sent.get_body(("html",)) is not None
    assert str(sent["In-Reply-To"]).strip() == f"<form-{STANNES.urn}-06201001@{STANNES.domain}>"


# ---- config and the scheduled jobs ----------------------------------------------------------------------------

def test_the_new_config_keys_are_checked(tmp_path: Path) -> None:
    from bot.config import load_config
    from parsers.errors import ConfigError

    good = central(tmp_path, extra='templates_dir = "shared-templates"\n[schedule]\nworking_days = ["Mon", "tue"]\n')
    try:
        assert good.config.schedule.working_days == ("mon", "tue")
        assert good.config.templates_dir == tmp_path / "shared-templates"
        assert good.config.templates_dir_for(good.config.hubs[0]) == tmp_path / "shared-templates"
        assert good.config.attach_export_for(good.config.hubs[0]) is False
    finally:
        good.close()
    bad_days = tmp_path / "days.toml"
    bad_days.write_text('[schedule]\nworking_days = ["monday", "someday"]\n')
    with pytest.raises(ConfigError, match="working_days"):
        load_config(bad_days)
    bad_target = tmp_path / "target.toml"
    bad_target.write_text(hub_block() + f'[hubs.targets]\n"{PID}" = -3\n')
    with pytest.raises(ConfigError, match="targets"):
        load_config(bad_target)


def test_run_due_runs_each_job_once_a_day(tmp_path: Path) -> None:
    b = central(tmp_path, extra="retention_days = 400\n")
    try:
        four_schools(b, tmp_path)
        early = datetime(2024, 6, 21, 7, 0, tzinfo=LONDON)        # before the digest time and after 03:15
        with frozen(early):
            first = jobs.run_due(b.db, b.config, b.settings, early)
        assert first.digests == [] and first.retention is not None
        later = datetime(2024, 6, 21, 9, 30, tzinfo=LONDON)
        with frozen(later):
            second = jobs.run_due(b.db, b.config, b.settings, later)
            third = jobs.run_due(b.db, b.config, b.settings, later)
        assert [r.queued for r in second.digests] == [True] and second.retention is None
        assert [r.queued for r in third.digests] == [False] and third.reminders == []
        assert len(b.events("retention")) == 1 and len(b.events("digest_queued")) == 1
    finally:
        b.close()

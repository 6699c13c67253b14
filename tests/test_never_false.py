""""Never tell a school something false" (``shared/spec/interface.md``), through ``assess`` and the worker.

Only found-and-empty is missing; what the bot is unsure of goes to ``unsure_fields`` and a ``review`` status with a
warm ``received`` receipt that names nothing. With certain problems as well, the school hears only the certain ones,
and that the team will look over the rest. A form-shaped document of no known programme is ``review`` +
``unknown_form``, never "no form arrived". A form for another hub's programme gets ``wrong_hub`` naming the hub
that runs it and is never recorded as this hub's application. Replies name labels as printed on the school's form
(no "*", no doubled colon) and the programme by the year of the deadline in force. A bare form is read alone.
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from rules.calendar import shift_years, title_in_force
from rules.checks import label_as_printed
from rules.mapping import FieldReading, Place
from rules.pipeline import CheckSettings, assess, assess_document
from rules.verdict import FlagCode, Status
from samples.applications import FORM_FILES, LONDON, application_email, complete_answers, fill_form, programme
from samples.forms import FormFiller, _w, form_path, minimal_docx
from samples.mail import DOCX_TYPE, build_email
from samples.variants import Edit, build_variant, fill_variant, variant_answers
from templates import EmailKind
from tests.test_workflow import deliver, make_bot, sent_files

SETTINGS = CheckSettings.builtin()
PID = "secondary-tfm-wg-2024"
CENTRAL = programme(PID).hub


def unknown_form_docx() -> bytes:
    """A booking form: label cells beside empty cells and a signature block, but no programme's."""
    def row(*cells: str) -> str:
        return "<w:tr>" + "".join(f"<w:tc><w:p><w:r><w:t>{c}</w:t></w:r></w:p></w:tc>" if c else "<w:tc><w:p/></w:tc>"
                                  for c in cells) + "</w:tr>"
    table = "<w:tbl>" + "".join(row(label, "") for label in
                                ("Name of pupil", "Class", "Parent or carer", "Parent e-mail", "Allergies")) + \
        row("Parent", "Signature of parent") + "</w:tbl>"
    return minimal_docx("<w:p><w:r><w:t>Holiday Maths Club: booking form</w:t></w:r></w:p>" + table)


def send_to(hub_address: str, attachment: bytes, filename: str = "Application form.docx",
            content_type: str = DOCX_TYPE, cc: tuple[str, ...] = ()) -> bytes:
    return build_email(sender="School Office <office@valley.example.sch.uk>", to=[hub_address], cc=cc,
                       subject="Our application", body_text="Please find attached our application form.",
                       attachments=[(filename, attachment, content_type)])


# ---- an unknown form -------------------------------------------------------------------------------------------

def test_a_form_of_no_known_programme_is_review_not_no_form() -> None:
    verdict = assess(send_to(CENTRAL.address, unknown_form_docx(), filename="booking.docx"), SETTINGS)
    assert verdict.status is Status.REVIEW
    assert verdict.programme is None and verdict.attachment == "booking.docx"
    assert [f.code for f in verdict.flags] == [FlagCode.UNKNOWN_FORM]
    reply = verdict.reply
    assert reply is not None and reply.kind is EmailKind.RECEIVED
    assert reply.to == ("office@valley.example.sch.uk",) and reply.cc == ()
    assert "arrived safely" in reply.text and "Central Maths Hub team will check it" in reply.text
    for false in ("did not arrive", "no form", "not attached", "missing", "required"):
        assert false not in reply.text.lower()
    out = verdict.to_json()
    assert out["status"] == "review" and out["programme"] is None and out["unsure_fields"] == []
    assert out["reply"]["kind"] == "received"


def test_a_cover_letter_alone_is_still_no_form() -> None:
    letter = minimal_docx("<w:p><w:r><w:t>Dear Hub, we are keen to join.</w:t></w:r></w:p>")
    verdict = assess(send_to(CENTRAL.address, letter, filename="Cover letter.docx"), SETTINGS)
    assert verdict.status is Status.NO_FORM and verdict.reply.kind is EmailKind.MISSING_ATTACHMENT


# ---- another hub's programme -----------------------------------------------------------------------------------

def test_another_hubs_programme_gets_wrong_hub_naming_that_hub() -> None:
    other = "secondary-tfm-wg-2016"
    answers = complete_answers(other)
    verdict = assess(send_to(CENTRAL.address, fill_form(other, answers), cc=(answers["head.email"],)), SETTINGS)
    assert verdict.status is Status.NOT_APPLICATION
    assert verdict.programme == other and verdict.hub == "central"
    assert verdict.has_flag(FlagCode.WRONG_HUB)
    reply = verdict.reply
    assert reply is not None and reply.kind is EmailKind.WRONG_HUB
    runs_it = programme(other).hub
    for body in (reply.text, reply.html):
        assert runs_it.name in body and runs_it.address in body
        assert "Central Maths Hub" in body
    assert "not recorded it as an application here" in reply.text
    assert runs_it.name in reply.subject
    # Copied only to people who were on the school's e-mail.
    assert reply.cc == (answers["head.email"],)
    assert reply.from_address == CENTRAL.address


def test_wrong_hub_form_is_not_recorded_as_this_hubs_application(tmp_path: Path) -> None:
    bot = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    try:
        other = "secondary-tfm-wg-2016"
        deliver(tmp_path / "mail", application_email(other, fill_form(other, complete_answers(other))))
        report = bot.run()
        assert [(o.status, o.reply) for o in report.outcomes] == [(Status.NOT_APPLICATION, EmailKind.WRONG_HUB)]
        assert bot.applications() == []
        (reply,) = sent_files(tmp_path / "outbox")
        assert "matterby@carmel.org.uk" in reply.get_body(preferencelist=("plain",)).get_content()
    finally:
        bot.close()


# ---- unsure fields ---------------------------------------------------------------------------------------------

def _emails_in_rows_of_their_own() -> bytes:
    """The 2024 form with the head's and head of department's "Email" cells moved into rows of their own at the end
    of School details, after "Maths Hub": nothing on the form says whose each is."""
    filler = FormFiller(form_path(FORM_FILES[PID]))
    head = filler._find_label("School details", "Name of headteacher/senior leader", 1, 1).getparent()
    hod = filler._find_label("School details", "Name of head of department", 1, 1).getparent()
    table = head.getparent()
    for row in (head, hod):
        cells = row.findall(_w("tc"))
        new = row.makeelement(_w("tr"), {})
        for cell in cells[2:]:
            new.append(cell)
        table.append(new)
    answers = complete_answers(PID)
    data = FormFiller(filler.to_docx())
    for f in programme(PID).fields:
        if f.id in ("head.email", "hod.email") or not answers.get(f.id):
            continue
        if f.prompt:
            data.fill_below(f.section, answers[f.id])
        else:
            data.fill(f.section, f.label, answers[f.id], label_occurrence=f.label_occurrence)
    data.fill("School details", "Email", answers["head.email"], label_occurrence=1)
    data.fill("School details", "Email", answers["hod.email"], label_occurrence=2)
    return data.to_docx()


def test_emails_nobody_can_tell_apart_are_unsure_and_the_school_gets_a_receipt() -> None:
    docx = _emails_in_rows_of_their_own()
    verdict = assess(application_email(PID, docx), SETTINGS)
    assert verdict.status is Status.REVIEW
    assert verdict.missing_fields == [] and verdict.invalid_fields == []
    assert verdict.unsure_fields == ["head.email", "hod.email"]
    assert all("more than one person" in u.reason for u in verdict.unsure)
    head, hod = verdict.signatories[0], verdict.signatories[1]
    assert not head.known and not hod.known and verdict.signatories_not_copied == []
    out = verdict.to_json()
    assert [s["copied"] for s in out["signatories"]] == [None, None, True, True]
    assert out["unsure_fields"][0] == {"field": "head.email", "reason": verdict.unsure[0].reason}
    reply = verdict.reply
    assert reply.kind is EmailKind.RECEIVED
    for word in ("Email", "missing", "required", "not copied", "I confirm"):
        assert word not in reply.text


def test_certain_problems_are_listed_and_unsure_ones_never_named() -> None:
    variant = build_variant(PID, frozenset({Edit.REMOVE}))     # the Address row is gone: unsure
    answers = variant_answers(variant)
    answers.pop("school.urn")                                   # genuinely empty: certain
    verdict = assess(application_email(PID, fill_variant(variant, answers)), SETTINGS)
    assert verdict.status is Status.INCOMPLETE
    assert verdict.missing_fields == ["school.urn"] and verdict.unsure_fields == ["school.address"]
    reply = verdict.reply
    assert reply.kind is EmailKind.MISSING_INFORMATION
    for body in (reply.text, reply.html):
        assert "School URN" in body and "Address" not in body
        assert "look over the rest of your form" in body
    complete = assess(application_email(PID, fill_form(PID, {k: v for k, v in complete_answers(PID).items()
                                                              if k != "school.urn"})), SETTINGS)
    assert "look over the rest" not in complete.reply.text   # nothing unsure: the list is all there is


# ---- how replies name things -----------------------------------------------------------------------------------

def test_missing_label_named_as_printed_without_star_or_doubled_colon() -> None:
    answers = {k: v for k, v in complete_answers(PID).items() if k != "hod.trn"}
    verdict = assess(application_email(PID, fill_form(PID, answers)), SETTINGS)
    assert verdict.missing_fields == ["hod.trn"]
    assert "- HoD Teacher Ref. Numbber: this is required" in verdict.reply.text
    assert "::" not in verdict.reply.text and "*" not in verdict.reply.text
    fixed = build_variant(PID, frozenset({Edit.TYPO, Edit.EMAIL}))
    answers = {k: v for k, v in variant_answers(fixed).items() if k not in ("hod.trn", "hod.email")}
    verdict = assess(application_email(PID, fill_variant(fixed, answers)), SETTINGS)
    assert verdict.missing_fields == ["hod.email", "hod.trn"]
    assert "- HoD Teacher Ref. Number: this is required" in verdict.reply.text       # as on this year's form
    assert "- E-mail (Head of department): this is required" in verdict.reply.text


def test_reply_names_the_programme_year_of_the_deadline_in_force() -> None:
    settings = CheckSettings(registry=SETTINGS.registry, hubs=SETTINGS.hubs,
                             deadlines={("central", PID): date(2025, 6, 27)})
    variant = build_variant(PID, frozenset({Edit.YEAR}))
    answers = variant_answers(variant)
    received = datetime(2025, 6, 20, 10, 0, tzinfo=LONDON)
    verdict = assess(application_email(PID, fill_variant(variant, answers), received=received), settings)
    assert verdict.status is Status.COMPLETE and not verdict.late
    for text in (verdict.reply.subject, verdict.reply.text, verdict.reply.html):
        assert "(2025/26)" in text and "2024/25" not in text
    answers.pop("school.urn")
    late = datetime(2025, 6, 30, 10, 0, tzinfo=LONDON)
    verdict = assess(application_email(PID, fill_variant(variant, answers), received=late), settings)
    assert verdict.late and "27 June 2025" in verdict.reply.text
    assert "(2025/26)" in verdict.reply.text and "2024/25" not in verdict.reply.text


def test_title_in_force_and_shift_years() -> None:
    p2024, p2020 = programme(PID), programme("primary-tfm-wg-2020")
    assert title_in_force(p2024, None) == p2024.title
    assert title_in_force(p2024, date(2024, 6, 1)).endswith("(2024/25)")
    assert title_in_force(p2024, date(2026, 6, 26)).endswith("(2026/27)")
    # No deadline of its own: it closes in the spring of its first year.
    assert title_in_force(p2020, date(2020, 7, 10)).endswith("(2020/21)")
    assert title_in_force(p2020, date(2023, 5, 1)).endswith("(2023/24)")
    assert title_in_force(programme("primary-trg-pilot-2019"), date(2021, 3, 5)).endswith("(Summer 2021)")
    assert shift_years("2099/00, 1999-2000 and 2019", 1) == "2100/01, 2000-2001 and 2020"
    assert shift_years("no year", 3) == "no year"


def test_label_as_printed_in_a_pdf_only_when_its_words_are_the_definitions() -> None:
    p = programme(PID)
    head = p.field("head.name")
    broken = FieldReading("head.name", True, printed="Name of\nheadteacher/sen\nior leader",
                          place=Place("School details", 0, 3, 0), score=0.98)
    assert label_as_printed(p, head, broken, pdf=True) == "Name of headteacher/senior leader"
    assert label_as_printed(p, head, broken, pdf=False) == "Name of headteacher/sen ior leader"
    years = FieldReading("teacher1.year_groups", True, printed="Year groups being\ntaught in 2024/25")
    assert label_as_printed(p, p.field("teacher1.year_groups"), years, pdf=True) == \
        "Year groups being taught in 2024/25"
    assert label_as_printed(p, p.field("hod.email"), None) == "Email (Head of department)"


def test_flag_codes_for_later_work_exist() -> None:
    assert {FlagCode("unknown_form"), FlagCode("unauthenticated"), FlagCode("withdrawal")} <= set(FlagCode)
    assert Status("review") and EmailKind("received") and EmailKind("wrong_hub")


# ---- a bare form -----------------------------------------------------------------------------------------------

def test_a_bare_form_is_read_as_if_it_came_alone() -> None:
    answers = complete_answers(PID)
    verdict = assess_document(fill_form(PID, answers), "form.docx", SETTINGS)
    assert verdict.status is Status.COMPLETE and verdict.reply is None
    assert verdict.hub is None and verdict.sender is None and verdict.attachment == "form.docx"
    out = verdict.to_json()
    assert [s["copied"] for s in out["signatories"]] == [None] * 4
    assert out["fields"]["school.urn"] == "122687"
    partial = {k: v for k, v in answers.items() if k != "teacher1.trn"}
    verdict = assess_document(fill_form(PID, partial), "form.docx", SETTINGS)
    assert verdict.status is Status.INCOMPLETE and verdict.missing_fields == ["teacher1.trn"]
    assert verdict.signatories_not_copied == [] and verdict.reply is None
    assert assess_document(unknown_form_docx(), "b.docx", SETTINGS).has_flag(FlagCode.UNKNOWN_FORM)
    assert assess_document(b"PK\x03\x04 broken", "x.docx", SETTINGS).status is Status.UNREADABLE
    assert assess_document(b"hello", "notes.txt", SETTINGS).status is Status.NOT_APPLICATION


def test_hubbot_check_on_a_bare_form(tmp_path: Path) -> None:
    path = tmp_path / "form.docx"
    path.write_bytes(fill_form(PID, complete_answers(PID)))
    eml = tmp_path / "mail.eml"
    eml.write_bytes(application_email(PID, fill_form(PID, complete_answers(PID))))
    done = subprocess.run([sys.executable, "-m", "bot.cli", "check", "--json", str(path), str(eml)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    bare, mail = json.loads(done.stdout)
    assert bare["status"] == "complete" and bare["reply"] is None and bare["unsure_fields"] == []
    assert all(s["copied"] is None for s in bare["signatories"])
    assert mail["status"] == "complete" and mail["reply"]["kind"] == "acknowledgement"
    summary = subprocess.run([sys.executable, "-m", "bot.cli", "check", str(path)], capture_output=True,
                             text=True, cwd=tmp_path, timeout=120)
    assert "a form on its own" in summary.stdout and "unknown" in summary.stdout


@pytest.mark.slow
def test_a_bare_pdf_form() -> None:
    from samples.pdf import docx_to_pdf

    variant = build_variant(PID, frozenset({Edit.YEAR, Edit.REWORD}))
    verdict = assess_document(docx_to_pdf(fill_variant(variant, variant_answers(variant))), "form.pdf", SETTINGS)
    assert verdict.status is Status.COMPLETE and verdict.programme == PID and verdict.reply is None

"""The check pipeline end to end through ``assess``: every programme's form filled every way a secretary fills it,
as .docx and as PDF, sent with every pattern of copying; missing, invalid and conditional fields, word limits,
region and hub flags; the form found by content among other files, forwarded, or under an encoded file name; and
the reply each verdict calls for (one e-mail listing every problem, addressed only to people on the e-mail or form,
with the HTML escaped).
"""
from __future__ import annotations

import re
from email.header import Header
from functools import cache

import pytest

from rules.pipeline import CheckSettings, assess
from rules.verdict import FlagCode, IssueKind, Status, Verdict
from samples.applications import FORM_FILES, application_email, complete_answers, correspondents, fill_form, programme
from samples.forms import FillStyle, FormFiller, form_path, minimal_docx
from samples.mail import build_email
from samples.pdf import docx_to_pdf
from templates import EmailKind

SETTINGS = CheckSettings.builtin()
PROGRAMMES = list(FORM_FILES)
PATTERNS = ["all", "one_missing", "none", "sender_is_signatory", "in_to", "upper"]
PDF_TYPE = "application/pdf"



# ---- helpers --------------------------------------------------------------------------------------------------

def collapse(value: str | None) -> str:
    return " ".join((value or "").split())


def expected(programme_id: str, field_id: str, answer: str) -> str:
    """What the verdict should hold for an answer: whitespace collapsed; yes/no lower-case; an address's lines are
    joined with ', ' so commas are not compared."""
    validator = programme(programme_id).field(field_id).validator
    value = collapse(answer)
    if validator == "yes_no":
        return value.lower()
    if validator == "address":
        return collapse(value.replace(",", " "))
    return value


def assert_fields_as_answered(verdict: Verdict, programme_id: str, answers: dict[str, str]) -> None:
    assert list(verdict.fields) == list(programme(programme_id).field_ids)
    for field_id, got in verdict.fields.items():
        answer = answers.get(field_id)
        if not answer:
            assert got is None, field_id
            continue
        value = collapse(got)
        if programme(programme_id).field(field_id).validator == "address":
            value = collapse(value.replace(",", " "))
        assert value == expected(programme_id, field_id, answer), field_id


@cache
def filled(programme_id: str, style: FillStyle = FillStyle.VALUE_CELL) -> bytes:
    """The complete form in one fill style. LABEL_CELL is filled last field first, because the builder's
    ``fill_form`` cannot find the second of two equal labels once the first has text typed after it (see
    ``test_builder_fills_repeated_labels_label_cell``)."""
    answers = complete_answers(programme_id)
    if style is not FillStyle.LABEL_CELL:
        return fill_form(programme_id, answers, style=style)
    filler = FormFiller(form_path(FORM_FILES[programme_id]))
    for f in reversed(programme(programme_id).fields):
        value = answers.get(f.id)
        if not value:
            continue
        if f.prompt:
            filler.fill_below(f.section, value, how=FillStyle.VALUE_CELL, occurrence=f.section_occurrence)
        else:
            filler.fill(f.section, f.label, value, how=style, occurrence=f.section_occurrence,
                        label_occurrence=f.label_occurrence)
    return filler.to_docx()


def with_answers(programme_id: str, **changes: str | None) -> dict[str, str | None]:
    answers: dict[str, str | None] = dict(complete_answers(programme_id))
    answers.update({k.replace("__", "."): v for k, v in changes.items()})
    return answers


def send(programme_id: str, answers: dict[str, str | None], **kwargs) -> Verdict:
    """Fill the form with ``answers`` and send it copied to the signatories of the complete answers."""
    docx = fill_form(programme_id, {k: v for k, v in answers.items() if v})
    return assess(application_email(programme_id, docx, answers=complete_answers(programme_id), **kwargs),
                  SETTINGS)


def addresses_on_email(raw: bytes) -> set[str]:
    import email
    import email.utils

    msg = email.message_from_bytes(raw)
    found = email.utils.getaddresses([*msg.get_all("From", []), *msg.get_all("To", []), *msg.get_all("Cc", [])])
    return {addr.lower() for _, addr in found if addr}


def email_to(programme_id: str, attachment: bytes, *, hub_address: str, filename: str = "Application form.docx",
             content_type: str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document") -> bytes:
    people = correspondents(programme_id, complete_answers(programme_id))
    return build_email(sender=people.sender, to=[hub_address], cc=people.cc, subject="Our application",
                       body_text="Please find attached our application form.",
                       attachments=[(filename, attachment, content_type)])


# ---- every programme, every fill style -----------------------------------------------------------------------------

def _style_cases():
    for pid in PROGRAMMES:
        for style in FillStyle:
            if style is FillStyle.PLACEHOLDER_CONTROL:
                continue
            yield pytest.param(pid, style, id=f"{pid}-{style.value}")


@pytest.mark.parametrize(("programme_id", "style"), list(_style_cases()))
def test_complete_docx_in_every_fill_style(programme_id: str, style: FillStyle) -> None:
    verdict = assess(application_email(programme_id, filled(programme_id, style)), SETTINGS)
    assert verdict.status is Status.COMPLETE, (verdict.issues, verdict.signatories)
    assert verdict.programme == programme_id
    assert verdict.flags == ()
    assert_fields_as_answered(verdict, programme_id, complete_answers(programme_id))


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_placeholder_controls_never_filled_give_missing_fields(programme_id: str) -> None:
    verdict = assess(application_email(programme_id, filled(programme_id, FillStyle.PLACEHOLDER_CONTROL)), SETTINGS)
    assert verdict.status is Status.INCOMPLETE
    required = [f.id for f in programme(programme_id).fields if f.required]
    assert verdict.missing_fields == required
    assert all(value is None for value in verdict.fields.values())
    assert verdict.reply.kind is EmailKind.MISSING_INFORMATION


@pytest.mark.parametrize("programme_id", ["secondary-tfm-wg-2016", "secondary-tfm-wg-2024"])
def test_builder_fills_repeated_labels_label_cell(programme_id: str) -> None:
    fill_form(programme_id, complete_answers(programme_id), style=FillStyle.LABEL_CELL)


# ---- PDF ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pdfs() -> dict[str, bytes]:
    return {pid: docx_to_pdf(filled(pid)) for pid in PROGRAMMES}


@pytest.mark.slow
@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_complete_pdf(programme_id: str, pdfs: dict[str, bytes]) -> None:
    raw = application_email(programme_id, pdfs[programme_id], filename="Application form.pdf",
                            content_type=PDF_TYPE)
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.COMPLETE, (verdict.issues, verdict.problems)
    assert verdict.programme == programme_id
    assert verdict.attachment == "Application form.pdf"
    assert_fields_as_answered(verdict, programme_id, complete_answers(programme_id))


@pytest.mark.slow
def test_pdf_statement_over_page_break_is_still_recognised_and_complete(pdfs: dict[str, bytes]) -> None:
    """The part of the trg-pilot PDF case that works: the form is read and judged complete."""
    pid = "primary-trg-pilot-2019"
    verdict = assess(application_email(pid, pdfs[pid], filename="form.pdf", content_type=PDF_TYPE), SETTINGS)
    assert verdict.status is Status.COMPLETE


# ---- who was copied -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_copy_patterns(programme_id: str, pattern: str) -> None:
    answers = complete_answers(programme_id)
    raw = application_email(programme_id, filled(programme_id), pattern=pattern)
    verdict = assess(raw, SETTINGS)
    signatories = programme(programme_id).signatories
    not_copied = [s.role for s in verdict.signatories if not s.copied]
    assert [s.role for s in verdict.signatories] == [s.role for s in signatories]
    assert verdict.issues == ()
    if pattern == "one_missing":
        last = signatories[-1].role
        assert not_copied == [last]
        assert verdict.status is Status.INCOMPLETE
        assert verdict.reply.kind is EmailKind.MISSING_INFORMATION
        state = verdict.signatories[-1]
        assert (state.name, state.email) == (answers[f"{last}.name"], answers[f"{last}.email"])
    elif pattern == "none":
        assert not_copied == [s.role for s in signatories]
        assert verdict.status is Status.INCOMPLETE
    else:
        assert not_copied == []
        assert verdict.status is Status.COMPLETE
        assert verdict.reply.kind is EmailKind.ACKNOWLEDGEMENT


def test_hub_address_on_the_form_never_counts_as_copied() -> None:
    pid = "primary-trg-pilot-2019"
    answers = with_answers(pid, teacher2__email=programme(pid).hub.address)
    verdict = send(pid, answers)
    state = next(s for s in verdict.signatories if s.role == "teacher2")
    assert not state.copied
    assert verdict.status is Status.INCOMPLETE


# ---- missing, invalid and conditional fields -------------------------------------------------------------------------

@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_missing_required_field(programme_id: str) -> None:
    verdict = send(programme_id, with_answers(programme_id, school__urn=None))
    assert verdict.status is Status.INCOMPLETE
    assert verdict.missing_fields == ["school.urn"]
    assert verdict.invalid_fields == []
    assert verdict.fields["school.urn"] is None
    assert verdict.reply.kind is EmailKind.MISSING_INFORMATION


@pytest.mark.parametrize("non_answer", ["n/a", "N/A", "-", "TBC", "none"])
def test_non_answers_are_missing(non_answer: str) -> None:
    verdict = send("secondary-tfm-wg-2016", with_answers("secondary-tfm-wg-2016", hod__name=non_answer))
    assert verdict.missing_fields == ["hod.name"]


@pytest.mark.parametrize(("programme_id", "field_id", "bad"), [
    ("secondary-tfm-wg-2016", "school.urn", "12345"),
    ("secondary-tfm-wg-2016", "school.urn", "12345A"),
    ("secondary-tfm-wg-2024", "teacher1.email", "k.wright at valley.example.sch.uk"),
    ("secondary-tfm-wg-2024", "teacher1.trn", "12345"),
    ("primary-tfm-wg-2020", "school.telephone", "0132 546"),
    ("secondary-tfm-wg-2024", "specialist.engaged", "Maybe"),
    ("primary-tfm-wg-2020", "group.requested", "Possibly"),
])
def test_invalid_field_per_validator(programme_id: str, field_id: str, bad: str) -> None:
    verdict = send(programme_id, with_answers(programme_id, **{field_id.replace(".", "__"): bad}))
    assert verdict.status is Status.INCOMPLETE
    assert [i.field for i in verdict.invalid_fields] == [field_id]
    assert verdict.invalid_fields[0].reason
    assert verdict.missing_fields == []
    assert verdict.reply.kind is EmailKind.MISSING_INFORMATION
    assert programme(programme_id).field(field_id).label in verdict.reply.text


def test_group_requested_yes_without_schools_is_missing() -> None:
    verdict = send("primary-tfm-wg-2020", with_answers("primary-tfm-wg-2020", group__requested="Yes"))
    assert verdict.missing_fields == ["group.schools"]
    assert "Yes" in verdict.issues[0].reason


def test_group_requested_yes_with_schools_is_complete() -> None:
    answers = with_answers("primary-tfm-wg-2020", group__requested="Yes", group__schools="Hill Primary, Dale Primary")
    verdict = send("primary-tfm-wg-2020", answers)
    assert verdict.status is Status.COMPLETE
    assert verdict.fields["group.schools"] == "Hill Primary, Dale Primary"


@pytest.mark.parametrize("answer", ["No", "no", "N"])
def test_group_requested_no_needs_no_schools(answer: str) -> None:
    verdict = send("primary-tfm-wg-2020", with_answers("primary-tfm-wg-2020", group__requested=answer))
    assert verdict.status is Status.COMPLETE
    assert verdict.fields["group.requested"] == "no"


def test_specialist_engaged_yes_without_details_is_missing() -> None:
    verdict = send("secondary-tfm-wg-2024", with_answers("secondary-tfm-wg-2024", specialist__details=None))
    assert verdict.missing_fields == ["specialist.details"]


def test_specialist_engaged_no_without_details_is_fine() -> None:
    answers = with_answers("secondary-tfm-wg-2024", specialist__engaged="no", specialist__details=None)
    assert send("secondary-tfm-wg-2024", answers).status is Status.COMPLETE


# ---- word limits ---------------------------------------------------------------------------------------------------------

def _words(n: int) -> str:
    return " ".join(f"word{i}" for i in range(n))


def test_up_to_word_limit_exceeded_is_invalid() -> None:
    pid = "primary-tfm-wg-2020"
    assert programme(pid).field("head.statement").words.limit == 250
    verdict = send(pid, with_answers(pid, head__statement=_words(251)))
    assert [(i.field, i.kind) for i in verdict.issues] == [("head.statement", IssueKind.INVALID)]
    assert "250" in verdict.issues[0].reason and "251" in verdict.issues[0].reason
    assert verdict.status is Status.INCOMPLETE


def test_up_to_word_limit_exactly_is_fine() -> None:
    pid = "primary-tfm-wg-2020"
    assert send(pid, with_answers(pid, head__statement=_words(250))).status is Status.COMPLETE


@pytest.mark.parametrize(("programme_id", "field_id", "limit"), [
    ("secondary-tfm-wg-2016", "hod.statement", 150),
    ("primary-trg-pilot-2019", "teacher1.statement", 100),
])
def test_about_word_guidance_over_one_and_a_half_times(programme_id: str, field_id: str, limit: int) -> None:
    key = field_id.replace(".", "__")
    at_limit = send(programme_id, with_answers(programme_id, **{key: _words(int(limit * 1.5))}))
    assert at_limit.status is Status.COMPLETE and not at_limit.has_flag(FlagCode.WORD_GUIDANCE)
    over = send(programme_id, with_answers(programme_id, **{key: _words(int(limit * 1.5) + 1)}))
    assert over.status is Status.COMPLETE, "about-N is guidance, never invalid"
    assert [f.code for f in over.flags] == [FlagCode.WORD_GUIDANCE]


# ---- eligibility and hub ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["1 High Street, Walsall, WS1 1AA", "Valley Road\nWolverhampton\nWV1 1AA"])
def test_region_flag_outside_birmingham_sandwell_dudley(address: str) -> None:
    verdict = send("secondary-tfm-wg-2024", with_answers("secondary-tfm-wg-2024", school__address=address))
    assert verdict.status is Status.COMPLETE, "the region is for hub staff to decide, never a rejection"
    assert [f.code for f in verdict.flags] == [FlagCode.REGION]


@pytest.mark.parametrize("address", ["Hill Lane, Stourbridge DY8 1AA", "Park Road\nSmethwick\nB66 1AA",
                                     "12 New Street, BIRMINGHAM, B2 4QA"])
def test_no_region_flag_inside(address: str) -> None:
    verdict = send("secondary-tfm-wg-2024", with_answers("secondary-tfm-wg-2024", school__address=address))
    assert not verdict.has_flag(FlagCode.REGION)


def test_no_region_flag_when_town_name_is_split_over_lines() -> None:
    verdict = send("secondary-tfm-wg-2024",
                   with_answers("secondary-tfm-wg-2024", school__address="Valley Road, West\nBromwich B70 6QE"))
    assert not verdict.has_flag(FlagCode.REGION)


def test_region_rule_is_only_for_2024() -> None:
    verdict = send("secondary-tfm-wg-2016", with_answers("secondary-tfm-wg-2016", school__address="Walsall WS1 1AA"))
    assert not verdict.has_flag(FlagCode.REGION)


def test_wrong_hub_when_sent_to_another_programmes_mailbox() -> None:
    central = programme("secondary-tfm-wg-2024").hub
    raw = email_to("secondary-tfm-wg-2016", filled("secondary-tfm-wg-2016"), hub_address=central.address)
    verdict = assess(raw, SETTINGS)
    assert verdict.programme == "secondary-tfm-wg-2016"
    assert verdict.hub == central.id
    assert verdict.has_flag(FlagCode.WRONG_HUB)


def test_right_hub_gives_no_flag() -> None:
    pid = "secondary-tfm-wg-2016"
    verdict = assess(email_to(pid, filled(pid), hub_address=programme(pid).hub.address), SETTINGS)
    assert not verdict.has_flag(FlagCode.WRONG_HUB)


@pytest.mark.parametrize(("programme_id", "named"), [
    ("secondary-tfm-wg-2024", "Archimedes"),
    ("secondary-tfm-wg-2024", "NE2"),
    ("primary-tfm-wg-2020", "Central Maths Hub"),
    ("primary-mastery-readiness-2018", "Central"),   # not one of the Northern Powerhouse hubs
])
def test_wrong_hub_when_maths_hub_names_another(programme_id: str, named: str) -> None:
    verdict = send(programme_id, with_answers(programme_id, maths_hub=named))
    assert verdict.has_flag(FlagCode.WRONG_HUB), verdict.flags


@pytest.mark.parametrize(("programme_id", "named"), [
    ("secondary-tfm-wg-2024", "Central Maths Hub"),
    ("primary-mastery-readiness-2018", "NE2: Archimedes NE Maths Hub"),
    ("primary-mastery-readiness-2018", "archimedes"),
])
def test_maths_hub_matched_loosely(programme_id: str, named: str) -> None:
    verdict = send(programme_id, with_answers(programme_id, maths_hub=named))
    assert not verdict.has_flag(FlagCode.WRONG_HUB), verdict.flags


# ---- finding the form ----------------------------------------------------------------------------------------------

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


def test_form_found_by_content_not_file_name() -> None:
    pid = "secondary-tfm-wg-2024"
    cover = minimal_docx(
        "<w:p><w:r><w:t>Dear Central Maths Hub,</w:t></w:r></w:p>"
        "<w:p><w:r><w:t>Please accept our Application Form (2024-25) for the Secondary Mathematics Teaching for "
        "Mastery Work Group. Our head of department statement and school details are on the form.</w:t></w:r></w:p>"
    )
    docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    raw = application_email(pid, filled(pid), filename="scan001.docx", extra_attachments=[
        ("logo.png", PNG, "image/png"), ("Application form cover letter.docx", cover, docx_type)])
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.COMPLETE
    assert verdict.attachment == "scan001.docx"


def test_cover_letter_first_form_second() -> None:
    pid = "primary-trg-pilot-2019"
    cover = minimal_docx("<w:p><w:r><w:t>Covering letter for our Expression of Interest Form.</w:t></w:r></w:p>")
    docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    people = correspondents(pid, complete_answers(pid))
    raw = build_email(sender=people.sender, to=people.to, cc=people.cc, subject="EoI",
                      body_text="Please find attached our application.",
                      attachments=[("Application form.docx", cover, docx_type),
                                   ("document (2).docx", filled(pid), docx_type)])
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.COMPLETE
    assert verdict.attachment == "document (2).docx"


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_forwarded_form(programme_id: str) -> None:
    verdict = assess(application_email(programme_id, filled(programme_id), forward=True), SETTINGS)
    assert verdict.status is Status.COMPLETE
    assert verdict.programme == programme_id


NAME = "Formulaire d’inscription – École Saint‑Rémi 2024.docx"


def test_rfc2231_file_name() -> None:
    pid = "secondary-tfm-wg-2024"
    raw = application_email(pid, filled(pid), filename=NAME, filename_encoding="rfc2231")
    assert b"filename*" in raw
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.COMPLETE
    assert verdict.attachment == NAME


def test_rfc2047_windows_1252_file_name() -> None:
    pid = "secondary-tfm-wg-2024"
    name = "Candidature – École Hélène.docx"
    raw = application_email(pid, filled(pid), filename="PLACEHOLDER.docx", filename_encoding="plain",
                            charset="windows-1252")
    encoded = Header(name, "windows-1252").encode()
    assert encoded.startswith("=?windows-1252?")
    raw = raw.replace(b"PLACEHOLDER.docx", encoded.encode("ascii"))
    assert b"PLACEHOLDER" not in raw and b"=?windows-1252?" in raw
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.COMPLETE
    assert verdict.attachment == name


# ---- replies ------------------------------------------------------------------------------------------------------------------

def test_missing_information_reply_lists_everything_in_one_email() -> None:
    pid = "secondary-tfm-wg-2024"
    p = programme(pid)
    answers = with_answers(pid, teacher1__trn=None, school__urn="12345", teacher2__year_groups=None)
    docx = fill_form(pid, {k: v for k, v in answers.items() if v})
    raw = application_email(pid, docx, pattern="one_missing")
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.INCOMPLETE
    reply = verdict.reply
    assert reply.kind is EmailKind.MISSING_INFORMATION
    problems = {"teacher1.trn", "school.urn", "teacher2.year_groups"}
    assert {i.field for i in verdict.issues} == problems
    for field_id in problems:
        f = p.field(field_id)
        for body in (reply.text, reply.html):
            assert collapse(f.label) in collapse(body), field_id
            assert f.section in body, field_id
        # the label is listed under its own section heading
        assert reply.text.index(f.section) < reply.text.index(f"- {f.label}")
    missing = verdict.signatories_not_copied
    assert [s.role for s in missing] == ["teacher2"]
    person = missing[0]
    for body in (reply.text, reply.html):
        assert "Mastery Advocate Teacher 2" in body
        assert person.name.replace("'", "&#39;") in body or person.name in body
        assert person.email in body
    assert '"I confirm"' in reply.text
    assert "I confirm" in reply.html
    assert "copying in every signatory" in reply.text


def test_acknowledgement_reply_for_complete() -> None:
    pid = "primary-tfm-wg-2020"
    raw = application_email(pid, filled(pid))
    verdict = assess(raw, SETTINGS)
    reply = verdict.reply
    assert reply.kind is EmailKind.ACKNOWLEDGEMENT
    assert "Valley School" in reply.text and programme(pid).title in reply.text
    assert "after the deadline" not in reply.text
    assert reply.to == ("office@valley.example.sch.uk",)
    answers = complete_answers(pid)
    assert set(reply.cc) == {answers[f"{s.role}.email"] for s in programme(pid).signatories}
    assert reply.in_reply_to == verdict.message_id
    assert verdict.message_id in reply.references


@pytest.mark.parametrize("pattern", PATTERNS)
def test_reply_goes_to_sender_and_only_people_on_email_or_form(pattern: str) -> None:
    pid = "secondary-tfm-wg-2016"
    answers = complete_answers(pid)
    raw = application_email(pid, filled(pid), pattern=pattern,
                            extra_headers=[("Reply-To", "Someone Else <someone@elsewhere.example>")])
    verdict = assess(raw, SETTINGS)
    reply = verdict.reply
    assert reply.to == (verdict.sender,)
    on_form = {answers[f"{s.role}.email"] for s in programme(pid).signatories}
    allowed = (addresses_on_email(raw) | on_form) - {programme(pid).hub.address}
    assert set(reply.to) | set(reply.cc) <= allowed
    assert "someone@elsewhere.example" not in {*reply.to, *reply.cc}
    assert verdict.sender not in reply.cc
    assert len(reply.cc) == len(set(reply.cc))


def test_reply_never_copies_an_address_only_in_the_email_body() -> None:
    pid = "primary-trg-pilot-2019"
    people = correspondents(pid, complete_answers(pid))
    raw = build_email(sender=people.sender, to=people.to, cc=people.cc, subject="Application",
                      body_text="Please find attached our application. Also copy bursar@valley.example.sch.uk.",
                      attachments=[("form.docx", filled(pid),
                                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document")])
    reply = assess(raw, SETTINGS).reply
    assert "bursar@valley.example.sch.uk" not in {*reply.to, *reply.cc}


@pytest.mark.parametrize("status_answers", ["complete", "incomplete"])
def test_reply_html_escapes_school_name(status_answers: str) -> None:
    pid = "primary-mastery-readiness-2018"
    name = "<script>alert('x')</script> Valley & Hill <b>School</b>"
    changes = {"school__name": name}
    if status_answers == "incomplete":
        changes["school__urn"] = None
    verdict = send(pid, with_answers(pid, **changes))
    assert verdict.school_name == name
    html = verdict.reply.html
    assert "<script>" not in html and "<b>School</b>" not in html
    assert "&lt;script&gt;" in html
    assert "&amp; Hill" in html
    assert name in verdict.reply.text


def test_subject_stays_one_line_whatever_the_school_typed() -> None:
    pid = "primary-mastery-readiness-2018"
    verdict = send(pid, with_answers(pid, school__name="Valley\nSchool\r\nBcc: x@evil.example"))
    assert "\n" not in verdict.reply.subject and "\r" not in verdict.reply.subject
    assert not re.search(r"evil", " ".join(verdict.reply.cc + verdict.reply.to))

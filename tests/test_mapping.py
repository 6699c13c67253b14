"""``rules.mapping.map_fields`` on small documents built from the neutral content types: a field is *found* only when
its label (or prompt) is; found-and-empty is the only empty; printed text of the form (another field's label, a
heading, a hint) never becomes an answer; a repeated "Email" belongs to the person named in its row or the row
above, never to an occurrence count; an answer the reader would have to guess about is *untrusted*, with the reason.
Each reading says where its label was and how well it matched."""
from __future__ import annotations

from parsers.types import Cell, DocumentKind, FormDocument, Paragraph, Table
from rules.definitions import ProgrammeDefinition, load_registry
from rules.mapping import FieldReading, Place, map_fields

REGISTRY = load_registry()
P2024: ProgrammeDefinition = REGISTRY.get("secondary-tfm-wg-2024")   # type: ignore[assignment]
P2016: ProgrammeDefinition = REGISTRY.get("secondary-tfm-wg-2016")   # type: ignore[assignment]
TRG: ProgrammeDefinition = REGISTRY.get("primary-trg-pilot-2019")     # type: ignore[assignment]
HEAD_NAME, HOD_NAME = "Name of headteacher/senior leader", "Name of head of department"


def cell(text: str) -> Cell:
    return Cell(tuple(text.split("\n")) if text else ())


def table(*rows: tuple[str, ...]) -> Table:
    return Table(tuple(tuple(cell(t) for t in row) for row in rows))


def doc(*blocks: str | Table, kind: DocumentKind = DocumentKind.DOCX) -> FormDocument:
    return FormDocument(kind, tuple(Paragraph(b) if isinstance(b, str) else b for b in blocks))


def read(programme: ProgrammeDefinition, *blocks: str | Table, kind: DocumentKind = DocumentKind.DOCX):
    return map_fields(doc(*blocks, kind=kind), programme)


# ---- found, empty, not found -----------------------------------------------------------------------------------

def test_found_empty_is_not_the_same_as_not_found() -> None:
    reading = read(P2024, "School details", table(("Name of school", ""), ("School URN", "122687")))
    name = reading["school.name"]
    assert name.found and name.sure and name.answer is None
    assert reading["school.urn"].answer == "122687"
    address = reading["school.address"]
    assert not address.found and not address.sure and address.answer is None
    assert address.doubt == "its label was not found on the form"
    # Fields under a heading that never appears are not found either.
    assert not reading["teacher1.name"].found


def test_every_field_of_the_programme_is_read_in_definition_order() -> None:
    reading = read(P2024, "School details", table(("Name of school", "Valley")))
    assert list(reading.readings) == list(P2024.field_ids)
    assert reading.answers["school.name"] == "Valley"


def test_reading_says_where_and_how_sure() -> None:
    reading = read(P2024, "Title", "School details",
                   table(("Name of school", "Valley"), ("School contact telephone number", "0121 496 0000")))
    phone = reading["school.telephone"]
    assert phone.place == Place("School details", 0, 1, 0)
    assert phone.printed == "School contact telephone number"
    assert 0.82 <= phone.score < 1.0 and phone.margin > 0.2
    assert reading["school.name"].score == 1.0


# ---- printed text is never an answer ---------------------------------------------------------------------------

def test_another_label_is_never_taken_into_an_answer() -> None:
    reading = read(P2024, "School details", table(("School URN", "", "Contact telephone number", "")))
    assert reading["school.urn"].found and reading["school.urn"].answer is None
    assert reading["school.telephone"].found and reading["school.telephone"].answer is None


def test_a_label_beside_printed_text_with_no_answer_cell_is_untrusted_not_empty() -> None:
    # Another section's label sits where the answer cell should be: nowhere to read "empty" from.
    reading = read(P2024, "School details", table(("Address", "Teacher Ref. Number")))
    address = reading["school.address"]
    assert address.found and not address.sure
    assert address.untrusted == "no answer space was found next to its label"


def test_hints_are_empty_answer_space_and_are_stripped_from_answers() -> None:
    reading = read(P2024, "Engagement with a Secondary Mastery Specialist",
                   table(("Has your school worked with a Maths Hub Mastery Specialist?", "(Yes/No)")))
    assert reading["specialist.engaged"].sure and reading["specialist.engaged"].answer is None
    reading = read(P2024, "Engagement with a Secondary Mastery Specialist",
                   table(("Has your school worked with a Maths Hub Mastery Specialist?", "(Yes/No) Yes")))
    assert reading["specialist.engaged"].answer == "Yes"


def test_several_texts_in_one_answer_space_are_untrusted() -> None:
    # A question added next year in the same row: its label is not in the definition, so it cannot be told from
    # an answer; the reader says so rather than joining the two.
    reading = read(P2024, "School details", table(("Name of school", "Valley School", "Number on roll", "850")))
    name = reading["school.name"]
    assert name.found and not name.sure
    assert name.untrusted == "its answer space holds several separate pieces of text"


def test_an_answer_holding_another_labels_text_is_untrusted() -> None:
    reading = read(P2024, "School details", table(("Name of school", "Valley School\nSchool URN")))
    assert reading["school.name"].untrusted == "the answer contains the printed label 'School URN'"
    reading = read(P2024, "Teacher 1", table(("Role/responsibility in the maths department",
                                              "Maths lead Year groups being taught in")))
    assert reading["teacher1.role"].untrusted is not None


def test_answers_that_merely_start_with_label_words_are_answers() -> None:
    reading = read(P2024, "School details", table(("Name of school", "Name Academy")))
    assert reading["school.name"].answer == "Name Academy" and reading["school.name"].sure
    reading = read(P2024, "Teacher 1", table(("Role/responsibility in the maths department", "Head of department")))
    assert reading["teacher1.role"].answer == "Head of department" and reading["teacher1.role"].sure


def test_answer_box_in_the_row_below_a_lone_label() -> None:
    reading = read(P2024, "School details", table(("Address",), ("1 High Street, Dudley",), ("School URN", "")))
    assert reading["school.address"].answer == "1 High Street, Dudley"
    reading = read(P2024, "School details", table(("Address",)))
    assert reading["school.address"].untrusted == "no answer space was found next to its label"


def test_answer_typed_after_the_label_in_its_own_cell() -> None:
    reading = read(P2024, "School details", table(
        ("Name of School: Valley School", ""),
        ("Name of the head of department: Mr Ravi Patel", "", "Email: r.patel@valley.example.sch.uk", ""),
        ("HoD Teacher Ref. * Number: 1234567", "*"),
    ))
    assert reading["school.name"].answer == "Valley School"
    assert reading["hod.name"].answer == "Mr Ravi Patel"
    assert reading["hod.email"].answer == "r.patel@valley.example.sch.uk"
    assert reading["hod.trn"].answer == "1234567"
    # "Name of school", not the teachers' "Name", even though both begin the cell.
    assert reading["school.name"].printed == "Name of School:"


# ---- whose repeated label ----------------------------------------------------------------------------------------

def test_email_belongs_to_the_name_in_its_row_whatever_the_order() -> None:
    rows = [(HOD_NAME, "Mr Ravi Patel", "Email", "r.patel@x.sch.uk"),
            (HEAD_NAME, "Mrs Helen O'Neill", "Email", "h.oneill@x.sch.uk")]
    reading = read(P2024, "School details", table(*rows))
    # Counting occurrences would give the head the head of department's address (the first "Email").
    assert reading["head.email"].answer == "h.oneill@x.sch.uk"
    assert reading["hod.email"].answer == "r.patel@x.sch.uk"


def test_email_in_the_row_after_the_name() -> None:
    reading = read(P2024, "School details", table(
        (HOD_NAME, "Mr Ravi Patel"), ("Email", "r.patel@x.sch.uk"),
        (HEAD_NAME, "Mrs Helen O'Neill"), ("Email", "h.oneill@x.sch.uk")))
    assert reading["head.email"].answer == "h.oneill@x.sch.uk"
    assert reading["hod.email"].answer == "r.patel@x.sch.uk"


def test_email_in_the_row_after_the_name_across_a_split_table() -> None:
    reading = read(P2016, "School details", table(("Name of Head of Department", "Mr Ravi Patel")),
                   "", table(("E-mail", "r.patel@x.sch.uk"), ("Name of Head Teacher/Senior Leader", "Mrs O'Neill",
                                                              "E-mail", "h.oneill@x.sch.uk")))
    assert reading["hod.email"].answer == "r.patel@x.sch.uk"
    assert reading["head.email"].answer == "h.oneill@x.sch.uk"


def test_email_whose_row_names_nobody_is_never_guessed() -> None:
    reading = read(P2024, "School details", table(
        (HEAD_NAME, "Mrs Helen O'Neill"), ("School URN", "122687"), ("Email", "a@x.sch.uk"), ("Email", "b@x.sch.uk")))
    for field_id in ("head.email", "hod.email"):
        email: FieldReading = reading[field_id]
        assert not email.sure and email.answer is None
        assert "more than one person" in (email.doubt or "")


def test_single_email_in_a_teacher_section_needs_no_name_beside_it() -> None:
    reading = read(P2024, "Teacher 1", table(("Email", "k@x.sch.uk"), ("Name", "Ms Kate Wright")))
    assert reading["teacher1.email"].answer == "k@x.sch.uk" and reading["teacher1.email"].sure


def test_a_label_printed_twice_for_one_field_is_untrusted() -> None:
    reading = read(P2024, "Teacher 1", table(("Name", "Ms Kate Wright"), ("Name", "Mr Tom Ellis")))
    assert reading["teacher1.name"].untrusted == "its label is printed 2 times in this section"


# ---- sections --------------------------------------------------------------------------------------------------

def test_headings_match_loosely_but_never_another_number() -> None:
    reading = read(P2024, "TEACHER 2:", table(("Name", "Mr Tom Ellis")), "Teacher 3", table(("Name", "Ms Other")))
    # "Teacher 3" is none of the form's sections: its table is nobody's, not a second "Name" for Teacher 2.
    assert reading["teacher2.name"].answer == "Mr Tom Ellis" and reading["teacher2.name"].sure
    assert not reading["teacher1.name"].found
    assert "Ms Other" not in reading.answers.values()


def test_repeated_headings_count_their_occurrences() -> None:
    prompt = "Explain briefly (about 100 words) why you wish to participate."
    reading = read(TRG, "Teacher 1", table(("Name", "A")), "Teacher statement", table((prompt,), ("First",)),
                   "Teacher 2", table(("Name", "B")), "Teacher statement", table((prompt,), ("Second",)))
    assert reading["teacher1.statement"].answer == "First"
    assert reading["teacher2.statement"].answer == "Second"


# ---- statements ------------------------------------------------------------------------------------------------

def test_statement_found_by_a_reworded_prompt_with_its_answer_below() -> None:
    prompt = ("Explain briefly why the department would like to participate in this Work Group and what it hopes "
              "will be the expected benefits and impact (approx. 180 words).")
    reading = read(P2024, "Head of department statement", table((prompt,), ("We are keen.",)))
    statement = reading["hod.statement"]
    assert statement.found and statement.answer == "We are keen." and statement.score < 1.0


def test_statement_typed_into_the_prompt_cell_of_a_docx() -> None:
    prompt = "Explain briefly why the department wishes to participate in this Work Group."
    reading = read(P2024, "Head of department statement", table((f"{prompt}\nWe are keen.",), ("",)))
    assert reading["hod.statement"].answer == "We are keen."


def test_statement_prompt_with_no_box_under_it_is_untrusted() -> None:
    prompt = "Explain briefly why the department wishes to participate in this Work Group."
    reading = read(P2024, "Head of department statement", table((prompt,)))
    assert reading["hod.statement"].untrusted == "no answer box was found under its printed prompt"
    empty = read(P2024, "Head of department statement", table((prompt,), ("",)))
    assert empty["hod.statement"].sure and empty["hod.statement"].answer is None


def test_pdf_statement_over_a_page_break_keeps_its_last_lines() -> None:
    prompt = "Explain briefly why the department wishes to participate in this Work Group."
    reading = read(P2024, "Head of department statement", table((prompt,), ("We are keen",)),
                   "and ready to start.", "Confirmation of school commitment (electronic signatures)",
                   kind=DocumentKind.PDF)
    assert reading["hod.statement"].answer == "We are keen\nand ready to start."

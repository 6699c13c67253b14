"""``hubbot programme draft`` on the five shipped blank forms: drafted from nothing, each definition passes
``programme test`` (every .docx fill style; the PDF where the reader allows) and reads the project's existing filled
forms (``samples.applications`` answers filled with ``samples.forms``) with the same values as the hand-written
definition, fields paired by where they are printed; the field ids that cannot be guessed without ``--from`` are
named exactly. With ``--from`` the ids, checks, word limits, conditions and signatories match the hand-written ones.
Forms that cannot be drafted from give one clear reason.
"""
from __future__ import annotations

from functools import cache

import pytest

from parsers.docx_form import read_docx
from parsers.types import Limits
from rules.definitions import ProgrammeDefinition, Registry, load_registry, parse_definition
from rules.drafting import CannotDraft, Draft, draft_programme
from rules.hubs import HubDirectory
from rules.pipeline import CheckSettings, assess
from rules.text import normalise
from rules.verdict import Status
from samples.applications import FORM_FILES, application_email, complete_answers, fill_form, programme
from samples.forms import FillStyle, form_path, minimal_docx
from samples.pdf import text_pdf
from samples.proving import Outcome, prove

PROGRAMMES = list(FORM_FILES)

# Ids a drafter cannot know from the printed labels alone (the contract names them); every other id is guessed
# exactly. Listed here so a change in what is guessed shows.
ID_DIFFERENCES = {
    "primary-tfm-wg-2020": {"group.requested": "group.considered_part_group",
                            "group.schools": "group.name_schools_like",
                            "group.relationship": "group.describe_relationship_schools"},
    "primary-trg-pilot-2019": {},
    "secondary-tfm-wg-2016": {},
    "secondary-tfm-wg-2024": {"specialist.engaged": "specialist.school_worked_maths",
                              "specialist.details": "specialist.name_mastery_specialist"},
    "primary-mastery-readiness-2018": {},
}

def _document(name: str):
    return read_docx(form_path(name).read_bytes(), Limits())


@cache
def fresh(programme_id: str) -> Draft:
    name = FORM_FILES[programme_id]
    return draft_programme(_document(name), form_name=name)


@cache
def aligned(programme_id: str) -> Draft:
    name = FORM_FILES[programme_id]
    return draft_programme(_document(name), form_name=name, base=programme(programme_id))


def alone(definition: ProgrammeDefinition) -> CheckSettings:
    registry = Registry((definition,))
    return CheckSettings(registry=registry, hubs=HubDirectory.builtin(registry))


def pairing(hand: ProgrammeDefinition, drafted: ProgrammeDefinition) -> dict[str, str]:
    """Hand-written field id to drafted field id, by where each is printed: heading (and its repeat), label (and
    its repeat), or a statement box's prompt."""
    def place(f):
        if f.prompt:
            return (normalise(f.section), f.section_occurrence, "prompt")
        return (normalise(f.section), f.section_occurrence, normalise(f.label), f.label_occurrence)

    drafted_at = {place(f): f.id for f in drafted.fields}
    return {f.id: drafted_at[place(f)] for f in hand.fields if place(f) in drafted_at}


# ---- drafted from nothing ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_fresh_draft_is_a_loadable_readable_definition(programme_id: str) -> None:
    import tomllib

    draft = fresh(programme_id)
    again = parse_definition(tomllib.loads(draft.text), "again.toml")
    assert again.field_ids == draft.definition.field_ids
    assert f"# Blank form: {FORM_FILES[programme_id]}" in draft.text
    assert draft.text.count("[[fields]]") == len(programme(programme_id).fields)
    hand = programme(programme_id)
    assert draft.definition.sections == hand.sections
    assert [(s.role, s.label) for s in draft.definition.signatories] == [(s.role, s.label) for s in hand.signatories]
    assert draft.definition.hub.address == hand.hub.address
    assert draft.definition.deadline == (hand.deadline if programme_id != "secondary-tfm-wg-2024" else None)
    kinds = {item.kind.value for item in draft.confirm}
    assert {"signatories", "required", "field ids", "title", "hub", "dates"} <= kinds


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_fresh_draft_pairs_every_field_and_guesses_ids_from_headings_and_labels(programme_id: str) -> None:
    hand, drafted = programme(programme_id), fresh(programme_id).definition
    pairs = pairing(hand, drafted)
    assert set(pairs) == set(hand.field_ids), "every hand-written field is found on the form by the drafter"
    assert len(drafted.fields) == len(hand.fields)
    differing = {h: d for h, d in pairs.items() if h != d}
    assert differing == ID_DIFFERENCES[programme_id]
    for h, d in pairs.items():
        assert drafted.field(d).validator == hand.field(h).validator, h
        assert drafted.field(d).words == hand.field(h).words, h


@pytest.mark.parametrize("style", [FillStyle.VALUE_CELL, FillStyle.INLINE_CONTENT_CONTROL, FillStyle.TRACKED_INSERT,
                                   FillStyle.MULTI_PARAGRAPH, FillStyle.NESTED_TABLE])
@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_fresh_draft_reads_the_existing_fixtures_with_the_same_values(programme_id: str, style: FillStyle) -> None:
    hand, drafted = programme(programme_id), fresh(programme_id).definition
    raw = application_email(programme_id, fill_form(programme_id, complete_answers(programme_id), style=style))
    by_hand, by_draft = assess(raw, alone(hand)), assess(raw, alone(drafted))
    assert by_hand.status is Status.COMPLETE and by_hand.programme == hand.id
    assert by_draft.programme == drafted.id
    for h, d in pairing(hand, drafted).items():
        assert by_draft.fields[d] == by_hand.fields[h], (h, d)


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_fresh_draft_passes_programme_test_in_every_docx_style(programme_id: str) -> None:
    proof = prove(fresh(programme_id).definition, form_path(FORM_FILES[programme_id]), load_registry(), pdf=False)
    assert proof.passed, [c.line() for c in proof.checks if c.outcome is Outcome.FAIL]
    names = {c.name for c in proof.checks if c.outcome is Outcome.PASS}
    assert len([n for n in names if n.startswith("docx ")]) == len(FillStyle) - 1
    assert any("left empty in turn" in n for n in names)
    # The built-in programme read from this same blank form is named, never silently compared.
    assert any(c.outcome is Outcome.NOTE and c.name.startswith(programme_id) for c in proof.checks)
    assert proof.margin is not None and proof.margin > 0


@pytest.mark.slow
@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_fresh_draft_reads_its_form_saved_as_pdf(programme_id: str) -> None:
    proof = prove(fresh(programme_id).definition, form_path(FORM_FILES[programme_id]), load_registry())
    pdf = [c for c in proof.checks if c.name.startswith("PDF")]
    assert [c.outcome for c in pdf] == [Outcome.PASS], [c.line() for c in pdf]


# ---- lined up with the hand-written definition -----------------------------------------------------------------------

@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_from_the_same_programme_keeps_every_id_check_and_rule(programme_id: str) -> None:
    hand, drafted = programme(programme_id), aligned(programme_id).definition
    assert drafted.field_ids == hand.field_ids
    for a, b in zip(drafted.fields, hand.fields):
        assert (a.section, a.section_occurrence, a.label, a.label_occurrence, a.required, a.validator, a.words,
                a.required_when) == (b.section, b.section_occurrence, b.label, b.label_occurrence, b.required,
                                     b.validator, b.words, b.required_when), a.id
    assert drafted.signatories == hand.signatories
    assert drafted.region == hand.region and drafted.hub_eligibility == hand.hub_eligibility
    assert set(aligned(programme_id).kept_ids) == set(hand.field_ids)
    assert not [i for i in aligned(programme_id).confirm if i.kind.value in ("new field", "field gone")]


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_from_the_same_programme_reads_the_fixtures_exactly_as_the_hand_written(programme_id: str) -> None:
    hand, drafted = programme(programme_id), aligned(programme_id).definition
    raw = application_email(programme_id, fill_form(programme_id, complete_answers(programme_id)))
    assert assess(raw, alone(drafted)).fields == assess(raw, alone(hand)).fields


# ---- what cannot be drafted ----------------------------------------------------------------------------------------

def test_a_document_with_no_tables_cannot_be_drafted() -> None:
    document = read_docx(minimal_docx("<w:p><w:r><w:t>Dear colleagues, please apply.</w:t></w:r></w:p>"), Limits())
    with pytest.raises(CannotDraft, match="no tables of labels"):
        draft_programme(document, form_name="letter.docx")


def test_a_table_with_no_heading_above_it_cannot_be_drafted() -> None:
    body = ("<w:p><w:r><w:t>Please fill this in and send it back.</w:t></w:r></w:p><w:tbl><w:tr>"
            "<w:tc><w:p><w:r><w:t>Name of school</w:t></w:r></w:p></w:tc><w:tc><w:p/></w:tc></w:tr></w:tbl>")
    with pytest.raises(CannotDraft, match="no heading above it"):
        draft_programme(read_docx(minimal_docx(body), Limits()), form_name="x.docx")


def test_a_pdf_of_the_form_is_refused_by_the_command(tmp_path, capsys) -> None:
    from bot.cli.main import main

    pdf = tmp_path / "form.pdf"
    pdf.write_bytes(text_pdf([["School details", "Name of school"]]))
    assert main(["programme", "draft", str(pdf)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "it is a PDF" in err and ".docx" in err


# ---- the guesses, one by one -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "moved"), [
    ("Year groups being taught in 2023/24", "Year groups being taught in 2024/25"),
    ("Application Form (2024-25)", "Application Form (2025-26)"),
    ("School role/s including teaching group/s in 2017-18", "School role/s including teaching group/s in 2018-19"),
    ("by 10th January 2017", "by 10th January 2018"),
    ("September 2024 to July 2025", "September 2025 to July 2026"),
    ("2024-2025", "2025-2026"),
    ("1999/00", "2000/01"),
    ("Teacher 1, 150 words", "Teacher 1, 150 words"),
])
def test_shift_years(text: str, moved: str) -> None:
    from rules.labels import shift_years, years_in

    assert shift_years(text, 1) == moved
    assert shift_years(moved, -1) == text
    assert len(years_in(text)) == len(years_in(moved))


@pytest.mark.parametrize(("text", "heading"), [
    ("School details", True), ("Teacher 2", True), ("Confirmation of school commitment (electronic signatures)", True),
    ("School details:", True), ("Please complete and return to admin@cambridgemathshub.org by 6th March 2019.", False),
    ("(Note: When the form is emailed, please copy in all signatories)", False),
    ("· The teacher will be released to attend four separate half days in 2018", False),
    ("Declaration of Commitment by 25th May 2018", False),
    ("*As this is a DFE funded programme a Teacher Reference Number (TRN) is required.", False),
])
def test_what_reads_as_a_heading(text: str, heading: bool) -> None:
    from rules.drafting.layout import heading_like

    assert heading_like(text) is heading


@pytest.mark.parametrize(("label", "part", "validator"), [
    ("School URN", "urn", "urn"), ("HoD Teacher Ref. * Numbber:", "trn", "trn"), ("TRN", "trn", "trn"),
    ("E-mail", "email", "email"), ("Contact telephone number", "telephone", "telephone"), ("Tel. no.", "telephone",
                                                                                          "telephone"),
    ("Address", "address", "address"), ("Maths Hub (if known)", "maths_hub", "maths_hub"),
    ("Has your school worked with a Maths Hub Mastery Specialist?", "school_worked_maths", "text"),
    ("Name of Head Teacher", "name", "text"), ("Head Teacher", "name", "text"), ("Year Group", "year_groups", "text"),
    ("Please name the schools you would like to be placed with", "name_schools_like", "text"),
])
def test_what_a_label_asks_for(label: str, part: str, validator: str) -> None:
    from rules.drafting.guess import label_part

    found = label_part(label)
    assert (found.part, found.validator) == (part, validator)


@pytest.mark.parametrize(("text", "limit", "kind"), [
    ("(up to 250 words)", 250, "up_to"), ("Explain briefly (about 100 words) why", 100, "about"),
    ("(approx. 150 words).", 150, "about"), ("no more than 300 words", 300, "up_to"), ("Explain why.", None, None),
])
def test_word_guidance_in_a_prompt(text: str, limit, kind) -> None:
    from rules.drafting.guess import word_limit

    words, _ = word_limit(text)
    assert (words.limit if words else None, words.kind.value if words else None) == (limit, kind)


def test_dates_in_the_text_are_deadlines_notifications_or_neither() -> None:
    from datetime import date

    from rules.drafting.guess import DateKind, find_dates

    found = find_dates((
        "Please complete and return to admin@cambridgemathshub.org by 6th March 2019.",
        "Selected schools will be informed by 22nd March 2019. Shortlisted schools will hear on 15 March 2019.",
        "The first meeting is on 30th April 2019.",
        "A bad date: 31st June 2019.",
    ))
    assert [(d.day, d.kind, d.what) for d in found] == [
        (date(2019, 3, 6), DateKind.DEADLINE, ""),
        (date(2019, 3, 22), DateKind.NOTIFICATION, "selected schools informed"),
        (date(2019, 3, 15), DateKind.NOTIFICATION, "shortlisted schools informed"),
        (date(2019, 4, 30), DateKind.OTHER, ""),
    ]


def test_the_hub_from_its_name_or_address_on_the_form() -> None:
    from rules.drafting.guess import guess_hub

    named = guess_hub(("Please complete and return to Archimedes NE Maths Hub matterby@carmel.org.uk",))
    assert (named.id, named.name, named.address) == ("archimedes-ne", "Archimedes NE Maths Hub",
                                                     "matterby@carmel.org.uk")
    by_address = guess_hub(("(Please complete and return to info@bbomathshub.org.uk )",))
    assert (by_address.id, by_address.name) == ("bbo", "Bucks, Berks and Oxon Maths Hub")
    unknown = guess_hub(("Please complete and return to mathshub@bishopchalloner.bham.sch.uk",))
    assert "name the hub" in unknown.how
    assert guess_hub(("No address here",)) is None

"""Next year's form without a programmer: each shipped blank form is edited in code the way a hub edits it
(``tests/next_year.py``: years moved on, a typo fixed, a label and a heading reworded, a field added and one removed,
a row moved, a new sentence with a date); ``draft --from`` last year's programme and ``programme test`` pass with no
hand edits; filled next-year forms come back complete with every value right; and with the drafted file in a
``programmes_dir`` beside the built-ins, last year's forms are still read as last year's programme.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.context import check_settings
from parsers.docx_form import read_docx
from parsers.types import Limits
from rules.definitions import load_registry
from rules.drafting import Draft, draft_programme
from rules.labels import shift_years
from rules.verdict import Status
from samples.applications import application_email, complete_answers, fill_form, programme
from samples.forms import FillStyle
from samples.proving import Outcome, fill, prove, wrong_values
from tests.next_year import PLANS, next_year_form

PROGRAMMES = list(PLANS)


@cache
def form(programme_id: str) -> bytes:
    return next_year_form(programme_id)


@cache
def drafted(programme_id: str) -> Draft:
    return draft_programme(read_docx(form(programme_id), Limits()), form_name=f"{PLANS[programme_id].new_id}.docx",
                           base=programme(programme_id))


def installed(tmp_path: Path, programme_id: str) -> tuple[Path, Path]:
    """The drafted file and its blank form in a programmes_dir, as a hub would install them; a config naming it."""
    folder = tmp_path / "programmes"
    folder.mkdir(exist_ok=True)
    plan = PLANS[programme_id]
    (folder / f"{plan.new_id}.docx").write_bytes(form(programme_id))
    (folder / f"{plan.new_id}.toml").write_text(drafted(programme_id).text, encoding="utf-8")
    return folder, folder / f"{plan.new_id}.docx"


def settings_with(tmp_path: Path, programme_id: str):
    installed(tmp_path, programme_id)
    return check_settings(parse_config({"programmes_dir": "programmes"}, str(tmp_path / "hubbot.toml"), tmp_path))


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_draft_from_last_year_keeps_what_still_matches(programme_id: str) -> None:
    plan, draft, base = PLANS[programme_id], drafted(programme_id), programme(programme_id)
    new = draft.definition
    assert new.id == plan.new_id
    assert set(new.field_ids) == (set(base.field_ids) - {plan.expected_gone}) | {"school.number_pupils_roll"}
    assert set(draft.kept_ids) == set(base.field_ids) - {plan.expected_gone}
    for f in new.fields:
        if f.id in base.field_ids:
            old = base.field(f.id)
            assert (f.validator, f.required, f.words, f.required_when) == \
                   (old.validator, old.required, old.words, old.required_when), f.id
    assert new.field("school.number_pupils_roll").label == "Number of pupils on roll"
    reworded_field = new.field(plan.expected_reworded)
    assert reworded_field.label != base.field(plan.expected_reworded).label
    assert new.signatories == base.signatories
    assert new.title == shift_years(base.title, 1)      # the years moved on, the wording kept


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_the_confirm_list_names_every_change_a_person_must_decide(programme_id: str) -> None:
    plan, draft = PLANS[programme_id], drafted(programme_id)
    lines = [str(item) for item in draft.confirm]
    text = "\n".join(lines)
    assert any(line.startswith("[new field]") and "'Number of pupils on roll'" in line and "required?" in line
               for line in lines)
    assert any(line.startswith("[field gone]") and f"({plan.expected_gone}," in line for line in lines)
    assert f"Heading '{plan.heading[0]}' now reads '{plan.heading[1]}'" in text
    assert "[signatories]" in text
    assert any(line.startswith("[dates]") and plan.sentence.rstrip(".") in line for line in lines)
    assert len(lines) == len(set(lines)), "no line is listed twice"


def test_a_fixed_typo_and_years_in_labels_are_not_listed_but_a_rewording_is() -> None:
    draft = drafted("secondary-tfm-wg-2024")
    assert draft.definition.field("hod.trn").label == "HoD Teacher Ref. * Number:"
    assert draft.definition.field("teacher1.year_groups").label == "Year groups being taught in 2024/25"
    text = "\n".join(map(str, draft.confirm))
    assert "Numbber" not in text and "Year groups" not in text
    assert draft.definition.deadline.isoformat() == "2025-06-27"     # the new sentence, not last year's date
    trg = "\n".join(map(str, drafted("primary-trg-pilot-2019").confirm))
    assert "'Year Group' now reads 'Year group taught' (teacher1.year_groups, teacher2.year_groups" in trg


def test_moved_rows_keep_each_email_with_its_person() -> None:
    # Next year's 2016 and 2024 forms print the head of department's row above the head's: both say "E-mail".
    for programme_id in ("secondary-tfm-wg-2016", "secondary-tfm-wg-2024"):
        new = drafted(programme_id).definition
        order = [f.id for f in new.fields if f.section == "School details"]
        assert order.index("hod.email") < order.index("head.email")
        assert new.field("hod.email").label_occurrence == 1 and new.field("head.email").label_occurrence == 2


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_next_year_definition_passes_programme_test_with_no_hand_edits(programme_id: str, tmp_path: Path) -> None:
    _, blank = installed(tmp_path, programme_id)
    proof = prove(drafted(programme_id).definition, blank, load_registry(), pdf=False)
    assert proof.passed, [c.line() for c in proof.checks if c.outcome is Outcome.FAIL]
    assert proof.margin is not None and proof.margin > 0
    # Last year's filled form was among those checked, and is not taken for next year's programme.
    assert any(c.outcome is Outcome.PASS and c.name.startswith("5 other known") for c in proof.checks)


@pytest.mark.slow
@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_next_year_form_saved_as_pdf(programme_id: str, tmp_path: Path) -> None:
    _, blank = installed(tmp_path, programme_id)
    proof = prove(drafted(programme_id).definition, blank, load_registry())
    pdf = [c for c in proof.checks if c.name.startswith("PDF")]
    assert [c.outcome for c in pdf] == [Outcome.PASS], [c.line() for c in pdf]


@pytest.mark.parametrize("style", [FillStyle.VALUE_CELL, FillStyle.LABEL_CELL, FillStyle.BLOCK_CONTENT_CONTROL,
                                   FillStyle.SOFT_BREAKS])
@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_filled_next_year_forms_come_back_complete_with_every_value(programme_id: str, style: FillStyle,
                                                                    tmp_path: Path) -> None:
    settings = settings_with(tmp_path, programme_id)
    new = settings.registry.get(PLANS[programme_id].new_id)
    _, blank = installed(tmp_path, programme_id)
    answers = complete_answers(new)
    docx = fill(new, blank, answers, style)
    verdict = assess_with(settings, application_email(new, docx, answers=answers))
    assert verdict.programme == new.id
    assert verdict.status is Status.COMPLETE, (verdict.issues, verdict.signatories)
    assert wrong_values(new, verdict, answers) == []


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_last_years_forms_are_still_read_as_last_years_programme(programme_id: str, tmp_path: Path) -> None:
    settings = settings_with(tmp_path, programme_id)
    assert settings.registry.get(PLANS[programme_id].new_id) is not None
    answers = complete_answers(programme_id)
    verdict = assess_with(settings, application_email(programme_id, fill_form(programme_id, answers)))
    assert verdict.programme == programme_id
    assert verdict.status is Status.COMPLETE
    assert any(line.startswith(f"{PLANS[programme_id].new_id} (") and programme_id in line
               for line in settings.registry.overrides), settings.registry.overrides


def assess_with(settings, raw: bytes):
    from rules.pipeline import assess

    return assess(raw, settings)

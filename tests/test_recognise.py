"""``rules.recognise``: next year's edition of every form is still recognised (headings and labels compared through
``rules.labels``, title patterns tried with their years made generic), a tie between two programmes goes to the
receiving hub's own and is reported, and ``looks_like_form`` tells a form-shaped document from a cover letter."""
from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from parsers.sniff import read_form, sniff
from parsers.types import Cell, DocumentKind, FormDocument, Limits, Paragraph, Table
from rules.definitions import Registry, load_registry, parse_definition
from rules.recognise import looks_like_form, recognise
from samples.applications import FORM_FILES
from samples.forms import form_path
from samples.variants import ALL_EDITS, Edit, build_variant

REGISTRY = load_registry()


def document(data: bytes, name: str = "form.docx") -> FormDocument:
    return read_form(sniff(name, "", data), data, Limits())


@pytest.mark.parametrize("programme_id", list(FORM_FILES))
def test_blank_forms_are_recognised_with_their_title(programme_id: str) -> None:
    found = recognise(document(form_path(FORM_FILES[programme_id]).read_bytes()), REGISTRY)
    assert found is not None and found.programme.id == programme_id
    assert found.title_found and found.title_exact and found.margin > 0.3


@pytest.mark.parametrize("programme_id", list(FORM_FILES))
@pytest.mark.parametrize("edits", [frozenset({Edit.YEAR}), frozenset({Edit.EMAIL}), frozenset({Edit.REWORD}),
                                   frozenset(ALL_EDITS)], ids=["year", "email", "reword", "all"])
def test_next_years_form_is_recognised(programme_id: str, edits: frozenset[Edit]) -> None:
    variant = build_variant(programme_id, edits)
    found = recognise(document(variant.docx), REGISTRY)
    assert found is not None and found.programme.id == programme_id
    assert found.label_share >= 0.75 and found.margin > 0.3


def test_a_title_with_next_years_year_is_found_loosely() -> None:
    # The 2016/17 form's only title pattern names its year: "(2017/18)" is found, and said to be found loosely.
    variant = build_variant("secondary-tfm-wg-2016", frozenset({Edit.YEAR}))
    found = recognise(document(variant.docx), REGISTRY)
    assert found is not None and found.title_found and not found.title_exact


def _twin_registry() -> Registry:
    """The 2024 programme and a copy of it under another id and hub: every document scores the same for both."""
    source = resources.files("rules.programmes") / "secondary-tfm-wg-2024.toml"
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    data = {**data, "id": "secondary-tfm-wg-2024-copy", "hub": {**data["hub"], "id": "other"}}
    original = REGISTRY.get("secondary-tfm-wg-2024")
    assert original is not None
    return Registry((original, parse_definition(data, "copy.toml")))


def test_a_tie_goes_to_the_receiving_hubs_programme_and_is_reported() -> None:
    registry = _twin_registry()
    form = document(form_path(FORM_FILES["secondary-tfm-wg-2024"]).read_bytes())
    plain = recognise(form, registry)
    assert plain is not None and plain.margin == 0 and not plain.chosen_for_hub
    ours = recognise(form, registry, hub_programmes={"secondary-tfm-wg-2024-copy"})
    assert ours is not None and ours.programme.id == "secondary-tfm-wg-2024-copy"
    assert ours.chosen_for_hub and ours.runner_up == "secondary-tfm-wg-2024" and ours.margin == 0
    assert ours.to_record()["tie_broken_by_hub"] is True
    # Not a tie: the hub's preference changes nothing.
    other = recognise(document(form_path(FORM_FILES["primary-trg-pilot-2019"]).read_bytes()), REGISTRY,
                      hub_programmes={"secondary-tfm-wg-2024"})
    assert other is not None and other.programme.id == "primary-trg-pilot-2019" and not other.chosen_for_hub


def _doc(*blocks: str | tuple[tuple[str, ...], ...]) -> FormDocument:
    out = []
    for block in blocks:
        if isinstance(block, str):
            out.append(Paragraph(block))
        else:
            out.append(Table(tuple(tuple(Cell((text,) if text else ()) for text in row) for row in block)))
    return FormDocument(DocumentKind.DOCX, tuple(out))


@pytest.mark.parametrize("programme_id", list(FORM_FILES))
def test_every_blank_form_looks_like_a_form(programme_id: str) -> None:
    assert looks_like_form(document(form_path(FORM_FILES[programme_id]).read_bytes()))


def test_an_unknown_form_looks_like_a_form_and_a_letter_does_not() -> None:
    unknown = _doc("Holiday club booking", (("Pupil name", ""), ("Date of birth", ""), ("Parent e-mail", ""),
                                            ("Allergies", "")), (("Parent", "Signature of parent"),))
    assert looks_like_form(unknown)
    assert recognise(unknown, REGISTRY) is None
    letter = _doc("Dear Maths Hub,", "We would love to join the Work Group. Please find our form attached.",
                  "Kind regards,", "Mrs Evans")
    assert not looks_like_form(letter)
    # A small table in a letter (a timetable) is not a form without a signature block or an application's words.
    timetable = _doc("Dear Hub,", (("Monday", "Maths"), ("Tuesday", "English"), ("Wednesday", "Art"),
                                   ("Thursday", "PE")))
    assert not looks_like_form(timetable)

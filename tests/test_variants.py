"""Next year's forms (``samples.variants``: years changed, a typo fixed, "E-mail"/"Email", labels reworded, a question
added, a required question dropped, rows moved, a table split, and all of it together), filled by the same
machinery as every other sample, as .docx (typed in the answer cell, and typed after the label) and, for the
all-edits variant, as PDF.

A correctly filled variant never yields a false missing or invalid field: it is ``complete``, or ``review`` exactly
when a required question is no longer on the form (and then only that field is unsure). Every value lands in its own
field id: moving the head's and the head of department's rows never swaps their addresses. A required answer
genuinely left empty is still listed as missing, by its label as printed on that form. The last tests show the
checks have teeth: a bot that sends everything to review, or tells repeated labels apart by counting, fails them.
"""
from __future__ import annotations

import pytest

from rules.pipeline import CheckSettings, assess
from rules.verdict import Status, Verdict
from samples.applications import FORM_FILES, application_email, complete_answers, programme
from samples.forms import FillStyle
from samples.variants import (
    ALL_EDITS,
    EXTRA_VALUE,
    VARIANTS,
    Edit,
    Variant,
    build_variant,
    fill_variant,
    variant_answers,
)
from templates import EmailKind

SETTINGS = CheckSettings.builtin()
PROGRAMMES = list(FORM_FILES)
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
STYLES = [FillStyle.VALUE_CELL, FillStyle.LABEL_CELL]


def _key(value: str | None) -> str:
    # Letters and digits in order: an address's commas, line breaks and yes/no's case are how it is written.
    return "".join(ch for ch in (value or "").lower() if ch.isalnum() or ch in "@.")


def send(variant: Variant, answers: dict[str, str], *, style: FillStyle = FillStyle.VALUE_CELL,
         pdf: bool = False) -> Verdict:
    data = fill_variant(variant, answers, style=style)
    if pdf:
        from samples.pdf import docx_to_pdf

        data = docx_to_pdf(data)
    raw = application_email(variant.programme_id, data, answers=complete_answers(variant.programme_id),
                            filename="Application form.pdf" if pdf else "Application form.docx",
                            content_type="application/pdf" if pdf else DOCX_TYPE)
    return assess(raw, SETTINGS)


def required_removed(variant: Variant) -> list[str]:
    p = programme(variant.programme_id)
    return [f.id for f in p.fields if f.required and f.id in variant.removed]


def assert_reads_right(verdict: Verdict, variant: Variant, answers: dict[str, str]) -> None:
    """A correctly filled variant: nothing false, every value in its own field, complete unless a required question
    was dropped from the form (then review, unsure of exactly that)."""
    assert verdict.programme == variant.programme_id
    assert verdict.missing_fields == [], "a false missing field"
    assert verdict.invalid_fields == [], "a false invalid field"
    removed = required_removed(variant)
    if removed:
        assert verdict.status is Status.REVIEW, (verdict.status, verdict.unsure)
        assert verdict.unsure_fields == removed
        assert verdict.reply is not None and verdict.reply.kind is EmailKind.RECEIVED
    else:
        assert verdict.status is Status.COMPLETE, (verdict.status, verdict.unsure, verdict.issues)
        assert verdict.unsure == ()
        assert verdict.reply is not None and verdict.reply.kind is EmailKind.ACKNOWLEDGEMENT
    for field_id, value in verdict.fields.items():
        if field_id in variant.removed:
            assert value is None, field_id
        else:
            assert _key(value) == _key(answers.get(field_id)), field_id
    # Whose address is whose: the moved-row swap must not happen.
    for s in verdict.signatories:
        assert s.email == answers[f"{s.role}.email"], s.role
    assert EXTRA_VALUE not in {v for v in verdict.fields.values() if v}, "the added question's answer was taken in"


def assert_empty_listed(verdict: Verdict, variant: Variant, field_id: str) -> None:
    """A required answer genuinely left empty is listed as missing (and nothing answered is)."""
    assert verdict.status is Status.INCOMPLETE, (verdict.status, verdict.unsure)
    assert verdict.missing_fields == [field_id]
    assert verdict.invalid_fields == []
    assert verdict.reply is not None and verdict.reply.kind is EmailKind.MISSING_INFORMATION
    printed = variant.placements[field_id].label
    shown = " ".join(printed.replace("*", " ").split()).rstrip(":")
    assert f"- {shown}: this is required" in verdict.reply.text
    assert "::" not in verdict.reply.text
    unsure_labels = [u.label for u in verdict.unsure]
    for label in unsure_labels:
        assert label not in verdict.reply.text, "an unsure field was named to the school"


def _cases():
    for pid in PROGRAMMES:
        for name, edits in VARIANTS:
            yield pytest.param(pid, name, edits, id=f"{pid}-{name}")


@pytest.mark.parametrize("style", STYLES, ids=[s.value for s in STYLES])
@pytest.mark.parametrize(("programme_id", "name", "edits"), list(_cases()))
def test_correctly_filled_variant_reads_right(programme_id: str, name: str, edits: frozenset[Edit],
                                              style: FillStyle) -> None:
    variant = build_variant(programme_id, edits, name)
    answers = variant_answers(variant)
    assert_reads_right(send(variant, answers, style=style), variant, answers)


@pytest.mark.parametrize(("programme_id", "name", "edits"), list(_cases()))
def test_variant_with_an_answer_left_empty_lists_it(programme_id: str, name: str, edits: frozenset[Edit]) -> None:
    variant = build_variant(programme_id, edits, name)
    answers = variant_answers(variant)
    answers.pop("school.urn")
    assert_empty_listed(send(variant, answers), variant, "school.urn")


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_moved_rows_keep_each_persons_address(programme_id: str) -> None:
    variant = build_variant(programme_id, frozenset({Edit.MOVE, Edit.EMAIL}))
    answers = variant_answers(variant)
    verdict = send(variant, answers)
    for s in programme(programme_id).signatories:
        assert verdict.fields[f"{s.role}.email"] == answers[f"{s.role}.email"]
    assert verdict.status is Status.COMPLETE


@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_a_required_email_left_empty_on_the_moved_rows_form(programme_id: str) -> None:
    """The head's address left empty on a form whose rows moved: it is the head's, not the next person's."""
    variant = build_variant(programme_id, frozenset({Edit.MOVE, Edit.SPLIT, Edit.EMAIL}))
    answers = variant_answers(variant)
    answers.pop("head.email")
    verdict = send(variant, answers)
    assert verdict.missing_fields == ["head.email"]
    assert "hod.email" not in verdict.missing_fields
    if "hod.email" in answers:
        assert verdict.fields["hod.email"] == answers["hod.email"]


@pytest.mark.slow
@pytest.mark.parametrize("programme_id", PROGRAMMES)
def test_all_edits_variant_as_pdf(programme_id: str) -> None:
    variant = build_variant(programme_id, frozenset(ALL_EDITS), "all")
    answers = variant_answers(variant)
    verdict = send(variant, answers, pdf=True)
    # A PDF's line breaks may split a word of a long statement ("small- step"): compared letter by letter.
    assert_reads_right(verdict, variant, answers)
    answers.pop("school.urn")
    assert_empty_listed(send(variant, answers, pdf=True), variant, "school.urn")


# ---- the checks have teeth ---------------------------------------------------------------------------------------

def test_a_bot_that_sends_everything_to_review_fails_these_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    import rules.decision

    # The one place a form's status is worked out, for the reading and for the decision alike.
    monkeypatch.setattr(rules.decision, "form_status", lambda issues, unsure, signatories: Status.REVIEW)
    variant = build_variant("secondary-tfm-wg-2024", frozenset({Edit.YEAR, Edit.MOVE}))
    answers = variant_answers(variant)
    with pytest.raises(AssertionError):
        assert_reads_right(send(variant, answers), variant, answers)
    answers.pop("school.urn")
    with pytest.raises(AssertionError):
        assert_empty_listed(send(variant, answers), variant, "school.urn")


def test_a_bot_that_counts_repeated_labels_fails_these_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Telling the head's "Email" from the head of department's by counting (the first is the head's) swaps their
    addresses once the rows move; the checks catch it."""
    import rules.mapping

    def by_count(r, c, kinds, by_key, roles):
        order = [role for role in ("head", "hod", "teacher1", "teacher2") if role in roles]
        earlier = sum(1 for row in kinds[:r] for k in row if k.kind is rules.mapping._Kind.LABEL
                      and len(by_key.get(k.key, ())) > 1) + \
            sum(1 for k in kinds[r][:c] if k.kind is rules.mapping._Kind.LABEL and len(by_key.get(k.key, ())) > 1)
        return order[earlier % len(order)] if len(order) > 1 else order[0]

    monkeypatch.setattr(rules.mapping, "_role_of", by_count)
    variant = build_variant("secondary-tfm-wg-2024", frozenset({Edit.MOVE}))
    answers = variant_answers(variant)
    verdict = send(variant, answers)
    assert (verdict.fields["head.email"], verdict.fields["hod.email"]) == (answers["hod.email"], answers["head.email"])
    with pytest.raises(AssertionError):
        assert_reads_right(verdict, variant, answers)

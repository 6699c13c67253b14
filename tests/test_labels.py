"""``rules.labels``: what counts as the same printed label. Years, case, punctuation, "E-mail"/"Email", "Ref."/
"Reference", little words and a typo are the same label; a label inside generic words ("Head Teacher name") is the
same but less sure; a different number or a different question is not. Also the cheap ``match_score``, the margin of
``best_match``, where a label typed in front of an answer ends, and how a label is shown in a reply."""
from __future__ import annotations

import pytest

from rules.labels import (
    CONTAINED,
    SAME_LABEL,
    best_match,
    clean_label,
    label_key,
    match_score,
    same_label,
    similarity,
    starts_with_label,
)


@pytest.mark.parametrize(("printed", "expected"), [
    ("Year groups being taught in 2024/25", "Year groups being taught in 2023/24"),
    ("School role/s including teaching group/s in 2018-19", "School role/s including teaching group/s in 2017-18"),
    ("Email", "E-mail"),
    ("e mail:", "E-mail"),
    ("NAME OF SCHOOL:", "Name of school"),
    ("Name of the head of department", "Name of head of department"),
    ("Your Maths Hub", "Maths Hub"),
    ("Teacher Reference Number", "Teacher Ref. Number"),
    ("Tel. no.", "Telephone"),
    ("Telephone number:", "Telephone"),
    ("Head Teacher's name", "Head Teacher name"),
    ("Role/responsibility in the mathematics department", "Role/responsibility in the maths department"),
])
def test_same_label_folded_to_one_key(printed: str, expected: str) -> None:
    assert label_key(printed) == label_key(expected)
    assert similarity(printed, expected) == 1.0


@pytest.mark.parametrize(("printed", "expected"), [
    ("HoD Teacher Ref. * Number:", "HoD Teacher Ref. * Numbber:"),          # the typo fixed
    ("Year groups taught in 2024/25", "Year groups being taught in 2023/24"),
    ("School contact telephone number", "Contact telephone number"),
    ("Name of headteacher or senior leader", "Name of headteacher/senior leader"),
    ("Name of\nheadteacher/sen\nior leader", "Name of headteacher/senior leader"),   # a PDF broke a word
    ("Year Group(s)", "Year Group"),
])
def test_small_rewordings_still_the_same_label(printed: str, expected: str) -> None:
    score = similarity(printed, expected)
    assert SAME_LABEL <= score < 1.0, score
    assert same_label(printed, expected)


@pytest.mark.parametrize(("printed", "expected"), [
    ("Head Teacher name", "Head Teacher"),
    ("Name of Head Teacher", "Head Teacher"),
    ("School URN number", "School URN"),
    ("Email address", "Email"),
])
def test_label_inside_generic_words_is_contained(printed: str, expected: str) -> None:
    assert similarity(printed, expected) == CONTAINED
    assert similarity(expected, printed) == CONTAINED


@pytest.mark.parametrize(("printed", "expected"), [
    ("Teacher 1", "Teacher 2"),
    ("Details of lead teacher 1", "Details of lead teacher 2"),
    ("Name of school", "Name"),
    ("Email address", "Address"),                 # "email" is not a generic word around "Address"
    ("Head Teacher statement", "Head Teacher"),
    ("Number of pupils on roll", "Name of school"),
    ("Year 5 and Year 6", "Year Group"),          # an answer, not the label
    ("Name of head of department", "Name of headteacher/senior leader"),
])
def test_different_questions_are_not_the_same_label(printed: str, expected: str) -> None:
    assert similarity(printed, expected) < SAME_LABEL
    assert not same_label(printed, expected)


def test_years_are_not_numbers_that_make_labels_differ() -> None:
    assert similarity("Year groups being taught in 2031/32", "Year groups being taught in 2023/24") == 1.0
    assert similarity("Lead teacher 1 (2024)", "Lead teacher 1") == 1.0


def test_match_score_is_similarity_above_the_floor_and_cheap_below() -> None:
    assert match_score("Year groups taught in 2024/25", "Year groups being taught in 2023/24") == \
        pytest.approx(similarity("Year groups taught in 2024/25", "Year groups being taught in 2023/24"))
    # Far apart in length: rejected without a full comparison, and never reported as a match.
    assert match_score("x", "Role/responsibility in the maths department") < SAME_LABEL


def test_best_match_reports_the_margin_over_the_next_label() -> None:
    labels = ["Name of school", "E-mail", "Email", "Address", "Teacher Ref. Number", "HoD Teacher Ref. * Numbber:"]
    exact = best_match("Address", labels)
    assert exact is not None and (exact.index, exact.score) == (3, 1.0) and exact.margin == 1.0
    # Equal labels count once: "Email" is E-mail, not a tie between two fields.
    email = best_match("Email:", labels)
    assert email is not None and email.index == 1 and email.margin == 1.0
    close = best_match("HoD Teacher Reference Number", labels)
    assert close is not None and labels[close.index] == "HoD Teacher Ref. * Numbber:"
    assert 0 < close.margin < 0.2          # "Teacher Ref. Number" came close: the margin says so
    assert best_match("Valley School", labels) is None


def test_starts_with_label_where_a_school_typed_after_it() -> None:
    assert starts_with_label("Name of school: Valley School", "Name of school") == (1.0, 3)
    assert starts_with_label("Valley School", "Name of school") is None
    # Several word counts read as the label; the colon the school typed says where it ends.
    assert starts_with_label("Year groups being taught in 2024/25: Years 7 and 8",
                             "Year groups being taught in 2023/24") == (1.0, 6)
    assert starts_with_label("School contact telephone number: 01325 460 123", "Contact telephone number",
                             prefer_colon=True)[1] == 4
    # A longer reading ending at the colon beats a better-scoring shorter one only when asked.
    assert starts_with_label("Head Teacher name: Mrs Evans", "Head Teacher") == (1.0, 2)
    assert starts_with_label("Head Teacher name: Mrs Evans", "Head Teacher", prefer_colon=True) == (CONTAINED, 3)


@pytest.mark.parametrize(("printed", "shown"), [
    ("HoD Teacher Ref. * Numbber:", "HoD Teacher Ref. Numbber"),
    ("Name of\nheadteacher/senior leader:", "Name of headteacher/senior leader"),
    ("*Teacher Ref. Number", "Teacher Ref. Number"),
    ("Which Maths Hub are you applying to?", "Which Maths Hub are you applying to?"),
    ("E-mail :", "E-mail"),
])
def test_clean_label_for_replies(printed: str, shown: str) -> None:
    assert clean_label(printed) == shown

"""Every validator in ``rules/validators.py``, table-driven: the answer as a school types it, the normalised value
kept, and whether it is invalid (with a reason a secretary understands), following the validator table in
``shared/spec/programmes.md``.
"""
from __future__ import annotations

import pytest

from rules.definitions import VALIDATORS as DEFINITION_VALIDATORS
from rules.validators import VALIDATORS, extract_email

VALID = None  # expected reason for a valid answer


def test_every_validator_is_covered_and_registered() -> None:
    assert set(VALIDATORS) == set(DEFINITION_VALIDATORS)
    covered = {name for name, *_ in CASES}
    assert covered == set(VALIDATORS)


CASES: list[tuple[str, str, str, bool]] = [
    # (validator, answer, normalised value, invalid?)
    ("urn", "122687", "122687", False),
    ("urn", "  122687 ", "122687", False),
    ("urn", "122 687", "122687", False),
    ("urn", "12268", "12268", True),
    ("urn", "1226870", "1226870", True),
    ("urn", "URN122687", "URN122687", True),
    ("urn", "12268A", "12268A", True),

    ("email", "k.wright@valley.example.sch.uk", "k.wright@valley.example.sch.uk", False),
    ("email", "K.Wright@Valley.Example.SCH.UK", "k.wright@valley.example.sch.uk", False),
    ("email", "k.wright@valley.exam\nple.sch.uk", "k.wright@valley.example.sch.uk", False),
    ("email", "k.wright@\nvalley.example.\nsch.uk", "k.wright@valley.example.sch.uk", False),
    ("email", "Kate Wright <k.wright@valley.example.sch.uk>", "k.wright@valley.example.sch.uk", False),
    ("email", '"Wright, Kate" <k.wright@valley.example.sch.uk>', "k.wright@valley.example.sch.uk", False),
    ("email", "mailto:k.wright@valley.example.sch.uk", "k.wright@valley.example.sch.uk", False),
    ("email", "MAILTO:k.wright@valley.example.sch.uk", "k.wright@valley.example.sch.uk", False),
    ("email", "k.wright@valley.example.sch.uk.", "k.wright@valley.example.sch.uk", False),
    ("email", "o'neill+maths@valley.example.sch.uk", "o'neill+maths@valley.example.sch.uk", False),
    ("email", "k.wright at valley.example.sch.uk", "k.wright at valley.example.sch.uk", True),
    ("email", "k.wright@valley", "k.wright@valley", True),
    ("email", "k..wright@valley.example.sch.uk", "k..wright@valley.example.sch.uk", True),
    ("email", "k.wright@valley.example.sch.uk t.ellis@valley.example.sch.uk",
     "k.wright@valley.example.sch.uk t.ellis@valley.example.sch.uk", True),
    ("email", "@valley.example.sch.uk", "@valley.example.sch.uk", True),

    ("trn", "1234567", "1234567", False),
    ("trn", " 1234567 ", "1234567", False),
    ("trn", "123 4567", "1234567", False),
    ("trn", "RP12/34567", "RP12/34567", False),
    ("trn", "RP 12/34567", "RP12/34567", False),
    ("trn", "rp12 / 34567", "RP12/34567", False),
    ("trn", "UQT", "UQT", False),
    ("trn", "uqt", "UQT", False),
    ("trn", "Uqt", "UQT", False),
    ("trn", "123456", "123456", True),
    ("trn", "12345678", "12345678", True),
    ("trn", "RP1/234567", "RP1/234567", True),
    ("trn", "RP12-34567", "RP12-34567", True),
    ("trn", "QTS", "QTS", True),

    ("telephone", "01325 460123", "01325 460123", False),
    ("telephone", "(01325) 460-123", "(01325) 460-123", False),
    ("telephone", "0121 496 0000", "0121 496 0000", False),
    ("telephone", "020 7946 0000", "020 7946 0000", False),
    ("telephone", "+44 1325 460123", "+44 1325 460123", False),
    ("telephone", "+44 (0)1325 460123", "+44 (0)1325 460123", False),
    ("telephone", "+447700900123", "+447700900123", False),
    ("telephone", "0132546", "0132546", True),
    ("telephone", "01325 460123 ext 4", "01325 460123 ext 4", True),
    ("telephone", "013254601234567", "013254601234567", True),

    ("yes_no", "Yes", "yes", False),
    ("yes_no", "yes", "yes", False),
    ("yes_no", "YES", "yes", False),
    ("yes_no", "Y", "yes", False),
    ("yes_no", "y", "yes", False),
    ("yes_no", "No", "no", False),
    ("yes_no", "no", "no", False),
    ("yes_no", "NO.", "no", False),
    ("yes_no", "N", "no", False),
    ("yes_no", "n", "no", False),
    ("yes_no", "Yes - with Jo Brown", "yes", False),
    ("yes_no", "Maybe", "Maybe", True),
    ("yes_no", "Not sure", "Not sure", True),

    ("text", "Valley School", "Valley School", False),
    ("text", "Mrs Helen\nO'Neill", "Mrs Helen O'Neill", False),
    ("text", "  Ms Kate Wright  ", "Ms Kate Wright", False),
    ("address", "Valley Road\nDarlington\nDL1 4AB", "Valley Road, Darlington, DL1 4AB", False),
    ("address", "Valley Road,\nDarlington DL1 4AB", "Valley Road, Darlington DL1 4AB", False),
    ("statement", "  First paragraph.\n\nSecond paragraph.  ", "First paragraph.\n\nSecond paragraph.", False),
    ("maths_hub", "Archimedes\nNE", "Archimedes NE", False),
    ("maths_hub", "NE2", "NE2", False),
]


@pytest.mark.parametrize(("validator", "answer", "value", "invalid"), CASES,
                         ids=[f"{c[0]}:{c[1]!r}" for c in CASES])
def test_validator(validator: str, answer: str, value: str, invalid: bool) -> None:
    checked = VALIDATORS[validator](answer)
    assert checked.value == value
    if invalid:
        assert checked.reason, "an invalid answer needs a reason"
        assert "\n" not in checked.reason
    else:
        assert checked.reason is VALID


@pytest.mark.parametrize(("answer", "reason_part"), [
    ("12345", "has 5"),
    ("12345A", "no letters"),
])
def test_urn_reasons_are_specific(answer: str, reason_part: str) -> None:
    assert reason_part in VALIDATORS["urn"](answer).reason


def test_email_reasons_are_plain_english() -> None:
    assert "no @" in VALIDATORS["email"]("k.wright").reason
    assert "no spaces" in VALIDATORS["email"]("k wright@valley.example.sch.uk").reason


@pytest.mark.parametrize(("answer", "address"), [
    ("Kate Wright <k.wright@valley.example.sch.uk>", "k.wright@valley.example.sch.uk"),
    ("mailto:k.wright@valley.example.sch.uk", "k.wright@valley.example.sch.uk"),
    ("k.wright@valley.\nexample.sch.uk", "k.wright@valley.example.sch.uk"),
])
def test_extract_email(answer: str, address: str) -> None:
    assert extract_email(answer) == address

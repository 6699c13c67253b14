"""Comparing a label as printed on a form with a label a programme definition expects, the way a person would.

Next year's form is last year's with small edits: the year in a label ("Year groups being taught in 2025/26"), a
typo fixed ("Numbber"), "E-mail" become "Email", a trailing colon or asterisk, a word added. ``label_key`` folds
everything a person would not call a different label (case, punctuation, white space, years, common spellings);
``similarity`` scores what is left from 0 to 1, so a reworded label is still found while a different question is
not. The reader, the recogniser and ``hubbot programme draft`` all compare labels here and nowhere else, so they
agree on what "the same label" means.
"""
from __future__ import annotations

import re
from difflib import SequenceMatcher
from functools import lru_cache

from rules.text import normalise

# A label scoring at least this against an expected one is taken for it; the margin over the next-best candidate
# is reported so staff can see how sure the match was.
SAME_LABEL = 0.82

# School years ("2024/25", "2024-2025", "2024 to 2025") and lone years say nothing about which question it is.
_YEARS = re.compile(r"\b(19|20)\d\d\s*(?:[/\-–]|to)\s*(?:(19|20)?\d\d)\b|\b(19|20)\d\d\b")
# Spellings that differ from form to form with the same meaning.
_SPELLINGS = (
    (re.compile(r"\be[\s-]?mail\b"), "email"),
    (re.compile(r"\btel(?:ephone|\.)?\s*(?:no\.?|number)?(?=\s|$)"), "telephone number"),
    (re.compile(r"\bphone\b"), "telephone"),
    (re.compile(r"\bhead\s?teacher\b"), "headteacher"),
    (re.compile(r"\bno\.(?=\s|$)"), "number"),
    (re.compile(r"\bpost\s?code\b"), "postcode"),
    (re.compile(r"\band\b|&"), "and"),
)
_NOT_WORD = re.compile(r"[^\w/]+")   # "headteacher/senior leader" keeps its slash: it is part of the wording


@lru_cache(maxsize=16384)
def label_key(text: str) -> str:
    """The label reduced to what makes it that label: lower case, no punctuation, years, or spelling variants."""
    key = normalise(text)
    key = _YEARS.sub(" ", key)
    for pattern, replacement in _SPELLINGS:
        key = pattern.sub(replacement, key)
    key = _NOT_WORD.sub(" ", key)
    return " ".join(key.replace("/", " / ").split())


@lru_cache(maxsize=65536)
def similarity(printed: str, expected: str) -> float:
    """How alike two labels are, 0 to 1, after ``label_key``. Equal keys score 1; a typo or one changed word
    scores about 0.85-0.95; a different question scores well under ``SAME_LABEL``."""
    a, b = label_key(printed), label_key(expected)
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def same_label(printed: str, expected: str, threshold: float = SAME_LABEL) -> bool:
    return similarity(printed, expected) >= threshold


def starts_with_label(text: str, expected: str, threshold: float = SAME_LABEL) -> tuple[float, int] | None:
    """Whether ``text`` (a cell's text) begins with something that reads as ``expected``: the best score and how
    many of ``text``'s words the label took, or None. Used where a school typed its answer after the label."""
    words = normalise(text).split()
    want = len(label_key(expected).split())
    best: tuple[float, int] | None = None
    # A label may have gained or lost a couple of words; years and punctuation make word counts differ too.
    for count in range(max(1, want - 2), min(len(words), want + 4) + 1):
        score = similarity(" ".join(words[:count]), expected)
        if score >= threshold and (best is None or score > best[0]):
            best = (score, count)
    return best


# ---- years, for lining next year's form up with last year's (``hubbot programme draft --from``) ------------------

# A year, optionally followed by the end of its school year ("2024/25", "2024-2025", "2024 to 25").
_YEAR_SPAN = re.compile(r"(?<!\d)((?:19|20)\d\d)(?:(\s*[/\-–]\s*|\s+to\s+)((?:19|20)?\d\d))?(?!\d)")


def years_in(text: str) -> tuple[int, ...]:
    """Every four-digit year printed in ``text`` (the start of a school year counts once), in order."""
    return tuple(int(m.group(1)) for m in _YEAR_SPAN.finditer(text))


def shift_years(text: str, delta: int) -> str:
    """``text`` with every year moved on by ``delta``: "2024/25" becomes "2025/26" for 1, "2019" becomes "2020".
    The end of a school year keeps its width ("25" stays two digits). A second number that is not the next year
    ("2024-30") is left alone: it is not a school year."""
    if not delta:
        return text

    def move(match: re.Match[str]) -> str:
        start = int(match.group(1))
        sep, end = match.group(2), match.group(3)
        out = str(start + delta)
        if sep is None:
            return out
        end_value = int(end)
        if (len(end) == 2 and end_value == (start + 1) % 100) or (len(end) == 4 and end_value == start + 1):
            moved = start + 1 + delta
            return f"{out}{sep}{moved % 100:02d}" if len(end) == 2 else f"{out}{sep}{moved}"
        return f"{out}{sep}{end}"

    return _YEAR_SPAN.sub(move, text)


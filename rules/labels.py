"""Comparing a label as printed on a form with a label a programme definition expects, the way a person would.

Next year's form is last year's with small edits: the year in a label ("Year groups being taught in 2025/26"), a
typo fixed ("Numbber"), "E-mail" become "Email", a trailing colon or asterisk, a word added ("Name of the head of
department", "Head Teacher name"). ``label_key`` folds everything a person would not call a different label (case,
punctuation, white space, years, common spellings, little words such as "the" and "your"); ``similarity`` scores
what is left from 0 to 1, so a reworded label is still found while a different question is not: a different number
("Teacher 1" / "Teacher 2") is always a different label. The reader, the recogniser, the replies and ``hubbot
programme draft`` all compare labels here and nowhere else, so they agree on what "the same label" means.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

from rules.text import normalise

# A label scoring at least this against an expected one is taken for it; the margin over the next-best candidate
# is reported so staff can see how sure the match was.
SAME_LABEL = 0.82
# What a label scores against one that only adds or drops words such as "name" or "number" around it ("Head
# Teacher" / "Head Teacher name"): the same question, but less sure than an equal label, so an equal one wins.
CONTAINED = 0.9
# Two labels whose only difference is a number ("Teacher 1", "Teacher 2") are different questions: their score is
# scaled down well under SAME_LABEL.
_OTHER_NUMBER = 0.6

# School years ("2024/25", "2024-2025", "2024 to 2025") and lone years say nothing about which question it is.
_YEARS = re.compile(r"\b(19|20)\d\d\s*(?:[/\-–]|to)\s*(?:(19|20)?\d\d)\b|\b(19|20)\d\d\b")
# Spellings that differ from form to form with the same meaning.
_SPELLINGS = (
    (re.compile(r"'s\b"), ""),
    (re.compile(r"\be[\s-]?mail\b"), "email"),
    (re.compile(r"\btel(?:ephone|\.)?\s*(?:no\.?|number)?(?=\W|$)"), "telephone number"),
    (re.compile(r"\bphone\b"), "telephone"),
    (re.compile(r"\bhead\s?teacher\b"), "headteacher"),
    (re.compile(r"\bno\.(?=\W|$)"), "number"),
    (re.compile(r"\bref\b\.?"), "reference"),
    (re.compile(r"\bmathematics\b"), "maths"),
    (re.compile(r"\buser\s?name\b"), "username"),
    (re.compile(r"\bpost\s?code\b"), "postcode"),
    (re.compile(r"\band\b|&"), "and"),
)
_NOT_WORD = re.compile(r"[^\w/]+")   # "headteacher/senior leader" keeps its slash: it is part of the wording
# Little words a rewording adds or drops without changing the question ("Name of the head of department").
_LITTLE_WORDS = frozenset({"the", "a", "an", "your", "our", "please", "this"})
# Words around a label that do not change what is asked ("Head Teacher" / "Head Teacher name" / "Name of Head
# Teacher", "School URN" / "School URN number", "Email" / "Email address").
_GENERIC_WORDS = frozenset({"name", "number", "details", "full", "of", "address"})
_NUMBER = re.compile(r"\d+")
# Runner-up scores under this are reported as 0 in a margin: "nothing else came near".
_MARGIN_FLOOR = 0.5


@lru_cache(maxsize=16384)
def label_words(text: str) -> str:
    """The label's words as a person reads them: lower case, no punctuation, years or spelling variants, every
    word kept ("please name the schools ..."), for working out what a label asks (``hubbot programme draft``)."""
    key = normalise(text)
    key = _YEARS.sub(" ", key)
    for pattern, replacement in _SPELLINGS:
        key = pattern.sub(replacement, key)
    key = _NOT_WORD.sub(" ", key)
    return " ".join(key.replace("/", " / ").split())


@lru_cache(maxsize=16384)
def label_key(text: str) -> str:
    """The label reduced to what makes it that label, for comparing two labels: ``label_words`` without the little
    words a rewording adds or drops."""
    return " ".join(w for w in label_words(text).split() if w not in _LITTLE_WORDS)


def _contained(short: list[str], long: list[str]) -> bool:
    """``short``'s words appear, in order and together, inside ``long``, which adds only generic words."""
    n = len(short)
    if not n or n >= len(long) or len(long) - n > 2:
        return False
    for start in range(len(long) - n + 1):
        if long[start:start + n] == short:
            extra = long[:start] + long[start + n:]
            return all(w in _GENERIC_WORDS for w in extra)
    return False


_MATCHERS = threading.local()


def _matcher(expected: str) -> SequenceMatcher:
    """A SequenceMatcher already indexed on ``expected``: a form's labels are compared with many printed texts,
    and indexing the label is most of the cost of a comparison. One cache per thread (matchers are stateful)."""
    cache: dict[str, SequenceMatcher] | None = getattr(_MATCHERS, "cache", None)
    if cache is None or len(cache) > 4096:
        cache = _MATCHERS.cache = {}
    matcher = cache.get(expected)
    if matcher is None:
        matcher = cache[expected] = SequenceMatcher(None, "", expected, autojunk=False)
    return matcher


@lru_cache(maxsize=65536)
def _score_keys(a: str, b: str, floor: float) -> float:
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    # Containment needs one key inside the other; a ratio can never exceed 2*min/(sum of lengths). Most pairs (an
    # answer against a label) stop here, before any word splitting or sequence matching.
    bound = 2 * min(len(a), len(b)) / (len(a) + len(b))
    inside = a in b or b in a
    if bound < floor and not inside:
        return 0.0
    score = CONTAINED if inside and (_contained(a.split(), b.split()) or _contained(b.split(), a.split())) else 0.0
    if bound > score and bound >= floor:
        matcher = _matcher(b)
        matcher.set_seq1(a)
        if matcher.quick_ratio() >= floor:
            score = max(score, matcher.ratio())
    if score and sorted(_NUMBER.findall(a)) != sorted(_NUMBER.findall(b)):
        score *= _OTHER_NUMBER
    return score


def similarity(printed: str, expected: str) -> float:
    """How alike two labels are, 0 to 1, after ``label_key``. Equal keys score 1; a typo or one changed word
    scores about 0.85-0.95; a label inside generic words scores ``CONTAINED``; a different question, or the same
    words with a different number, scores well under ``SAME_LABEL``."""
    return _score_keys(label_key(printed), label_key(expected), 0.0)


def match_score(printed: str, expected: str, floor: float = SAME_LABEL) -> float:
    """``similarity`` when it reaches ``floor``, else 0.0 (or any score under ``floor``): cheap for the many pairs
    that are plainly different, which is most of them when every cell of a form is compared with every label."""
    return _score_keys(label_key(printed), label_key(expected), floor)


def same_label(printed: str, expected: str, threshold: float = SAME_LABEL) -> bool:
    return match_score(printed, expected, threshold) >= threshold


@dataclass(frozen=True)
class LabelMatch:
    """The best of several expected labels for one printed text: which (index), how well, and by what margin over
    the next best (1.0 when no other came near)."""

    index: int
    score: float
    margin: float


def best_match(printed: str, expected: Sequence[str], threshold: float = SAME_LABEL) -> LabelMatch | None:
    """The expected label ``printed`` reads as, or None when none reaches ``threshold``. Equal expected labels
    (the same label for two fields) count as one: the caller decides between them by where they are."""
    best: tuple[float, int, str] | None = None
    for index, label in enumerate(expected):
        score = match_score(printed, label, threshold)
        if score >= threshold and (best is None or score > best[0]):
            best = (score, index, label_key(label))
    if best is None:
        return None   # the usual case for an answer: cheap, every comparison stopped at the threshold
    # The margin: the next-best distinct label, scored more finely (labels repeat, so this is mostly cached).
    runner_up = max((match_score(printed, label, _MARGIN_FLOOR) for label in expected
                     if label_key(label) != best[2]), default=0.0)
    return LabelMatch(best[1], best[0], round(best[0] - runner_up, 3))


def starts_with_label(text: str, expected: str, threshold: float = SAME_LABEL,
                      prefer_colon: bool = False) -> tuple[float, int] | None:
    """Whether ``text`` (a cell's text) begins with something that reads as ``expected``: the best score and how
    many of ``text``'s words the label took, or None. Used where a school typed its answer after the label.
    ``prefer_colon``: a reading that ends where the school put a colon (or at the label's question mark) beats a
    better-scoring shorter one ("Head Teacher name: Mrs Evans" is the label "Head Teacher name", not "Head
    Teacher" with the answer "name: Mrs Evans")."""
    words = normalise(text).split()
    want = len(normalise(expected).split())
    best: tuple[bool, float, bool, int] | None = None
    # A label may have gained or lost a couple of words; years, punctuation and little words make counts differ.
    # Several counts can score alike ("Year groups being taught in" with or without "2024/25:"): the one ending
    # where the school's colon or question mark does wins, then the longer.
    for count in range(max(1, want - 2), min(len(words), want + 4) + 1):
        score = match_score(" ".join(words[:count]), expected, threshold)
        if score >= threshold:
            colon = words[count - 1][-1] in ":?"
            candidate = (prefer_colon and colon, round(score, 3), colon, count)
            if best is None or candidate > best:
                best = candidate
    return None if best is None else (best[1], best[3])


def clean_label(text: str) -> str:
    """A label as it should read in an e-mail: one line, no "*" marking it required, no trailing colon (the reply
    adds its own)."""
    words = [w for w in text.split() if w.strip("*")]
    cleaned = " ".join(w if not w.startswith("*") else w.lstrip("*") for w in words)
    return cleaned.rstrip(" :").strip()


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


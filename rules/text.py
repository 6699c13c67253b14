"""Small text helpers shared by the rules: normalising labels for comparison and deciding what counts as empty.

A printed hint ("*", "(Yes/No)", "Click or tap here to enter text.") or a non-answer ("n/a", "tbc") is not an
answer; these functions are where that is decided, once, for every field of every form.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Printed on many forms or inserted by Word; a field holding only these is empty.
COMMON_HINTS = (
    "Click or tap here to enter text.",
    "Click here to enter text.",
    "Click or tap to enter a date.",
    "Choose an item.",
)
NON_ANSWERS = frozenset({"n/a", "na", "n.a.", "-", "--", "–", "—", "tbc", "tba", "none", "nil", "?", "x", "."})

_SPACES = re.compile(r"\s+")
_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


@lru_cache(maxsize=8192)
def normalise(text: str) -> str:
    """Lower-case, straight quotes and dashes, one space between words; for comparing labels and headings."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return _SPACES.sub(" ", text).strip().lower()


@lru_cache(maxsize=8192)
def normalise_keep_case(text: str) -> str:
    """Like ``normalise`` but keeping case and line breaks: for cutting a label off the front of an answer."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return "\n".join(" ".join(line.split()) for line in text.splitlines()).strip()


@lru_cache(maxsize=64)
def _hint_rules(hints: tuple[str, ...]) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    """For one form's hints: one pattern removing every long hint, and the short hints to trim from the ends."""
    long = [h.translate(_QUOTES) for h in (*COMMON_HINTS, *hints) if len(h) >= 4]
    short = tuple(h.translate(_QUOTES) for h in hints if len(h) < 4)
    # A PDF wraps a long hint over lines: match it word by word, whatever the white space between.
    alternatives = [r"\s+".join(re.escape(word) for word in h.split()) for h in sorted(long, key=len, reverse=True)]
    return (re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None), short


def strip_hints(value: str, hints: tuple[str, ...]) -> str:
    """Remove printed hint text from an answer. Long hints are removed wherever they are (a school may type after
    them); very short ones ("*") only at the ends, so an asterisk inside a statement survives."""
    pattern, short = _hint_rules(hints)
    cleaned = value.translate(_QUOTES)
    if pattern is not None:
        cleaned = pattern.sub(" ", cleaned)
    for hint in short:
        while cleaned.strip().startswith(hint) or cleaned.strip().endswith(hint):
            stripped = cleaned.strip()
            cleaned = stripped[len(hint):] if stripped.startswith(hint) else stripped[: -len(hint)]
    # Word keeps a placeholder's trailing spaces and blank paragraphs: tidy lines, keep line structure.
    lines = [line.strip() for line in cleaned.splitlines()]
    return "\n".join(line for line in lines if line).strip()


def is_non_answer(value: str) -> bool:
    return normalise(value).rstrip(".") in NON_ANSWERS or normalise(value) in NON_ANSWERS


def one_line(value: str) -> str:
    """A cell's lines as one line, for names and addresses."""
    return _SPACES.sub(" ", value).strip()


def word_count(value: str) -> int:
    return len(re.findall(r"\S+", value))


def join_lines(value: str, separator: str = " ") -> str:
    """A one-line answer typed over several lines or paragraphs, as one line. With ``separator`` ", " (addresses),
    a line already ending in punctuation is joined with a plain space."""
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    out = ""
    for line in lines:
        if not out:
            out = line
        elif separator != " " and out[-1] in ",;:.":
            out += " " + line
        else:
            out += separator + line
    return out

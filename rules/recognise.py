"""Recognise which programme's form a document is, from its content: the title patterns of each definition and
how many of its section headings and field labels appear. File names never decide it.

Headings and labels are compared through ``rules.labels`` (years, "E-mail"/"Email", punctuation, typos and small
rewordings folded) and title patterns are also tried with their years made generic, so next year's edition of a
form is still recognised. When two programmes score within ``TIE`` of each other, the receiving hub's own
programme wins, and the recognition says so. A document that matches no programme but looks like an application
form (tables of short labels beside answer cells, a signature block) is told apart from a cover letter by
``looks_like_form``, so the pipeline can pass it to a person instead of telling the school no form arrived.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from parsers.types import FormDocument, Paragraph
from rules.definitions import ProgrammeDefinition, Registry
from rules.labels import SAME_LABEL, label_key, match_score
from rules.text import normalise

# A document must carry this share of a form's headings and labels to count as that form without its title, or
# this lower share with it: a cover letter quoting the programme's name is not the form.
_SHARE_WITHOUT_TITLE = 0.75
_SHARE_WITH_TITLE = 0.4
_TITLE_ZONE = 4000   # characters from the start of the document
# Two programmes scoring within this of each other are a tie, broken in favour of the receiving hub's programme.
TIE = 0.05
# Label keys within this length ratio can reach SAME_LABEL (ratio <= 2*min/(a+b)); others are never compared.
_LENGTH_RATIO = SAME_LABEL / (2 - SAME_LABEL)


@dataclass(frozen=True)
class Recognition:
    programme: ProgrammeDefinition
    title_found: bool
    label_share: float
    title_exact: bool = True            # the title pattern matched as written (not only with its years made generic)
    margin: float = 1.0                 # score over the next-best programme (1.0 when no other qualified)
    runner_up: str | None = None        # that programme's id
    chosen_for_hub: bool = False        # a tie, settled because the receiving hub runs this programme

    @property
    def score(self) -> float:
        return self.label_share + (1.0 if self.title_found else 0.0)

    def to_record(self) -> dict[str, object]:
        return {"programme": self.programme.id, "score": round(self.score, 3), "title": self.title_found,
                "title_exact": self.title_exact, "label_share": round(self.label_share, 3),
                "margin": round(self.margin, 3), "runner_up": self.runner_up, "tie_broken_by_hub": self.chosen_for_hub}


_MARKERS: dict[tuple[str, str], tuple[str, ...]] = {}


def _markers(programme: ProgrammeDefinition) -> tuple[str, ...]:
    """The label keys of a programme's headings and labels (a definition is big to hash: cached by file and id)."""
    markers = _MARKERS.get((programme.source, programme.id))
    if markers is None:
        keys = {label_key(s) for s in programme.sections} | {label_key(f.label) for f in programme.fields}
        markers = _MARKERS[(programme.source, programme.id)] = tuple(sorted(k for k in keys if k))
    return markers


@lru_cache(maxsize=64)
def _year_free(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """The title pattern with any year in it made generic ("\\(2016/17\\)" also finds "(2017/18)"), or None when it
    names no year."""
    source = re.sub(r"(?<![\d\\])(?:19|20)\d\d(?!\d)", r"(?:19|20)\\d\\d", pattern.pattern)
    source = re.sub(r"(?<=[/\-])\d\d(?!\d)", r"\\d\\d", source)
    return re.compile(source, pattern.flags) if source != pattern.pattern else None


class _Text:
    """The document's text, keyed once: every paragraph and cell as a label key, for all programmes."""

    def __init__(self, document: FormDocument) -> None:
        raw = document.all_text()
        self.head = normalise(raw[:_TITLE_ZONE])
        # Markers are headings and labels: short. Long lines (statements, notes) can hold one only as a substring.
        units = (label_key(line) for line in raw.splitlines() if line.strip() and len(line) < 400)
        self.keys = list(dict.fromkeys(u for u in units if u))
        self.joined = " " + " \n ".join(self.keys) + " "
        self._by_word: dict[str, list[str]] | None = None
        self._loose: dict[str, bool] = {}

    def exact(self, marker: str) -> bool:
        return f" {marker} " in self.joined

    def loose(self, marker: str) -> bool:
        """A text reading as the marker though not equal to it (a typo fixed, a word added)."""
        found = self._loose.get(marker)
        if found is None:
            if self._by_word is None:
                # Word -> the texts holding it: a loose match shares at least one word with the marker, so only
                # those texts are compared (a one-word label misspelt is left to the other markers).
                self._by_word = {}
                for key in self.keys:
                    for word in set(key.split()):
                        self._by_word.setdefault(word, []).append(key)
            low, high = len(marker) * _LENGTH_RATIO, len(marker) / _LENGTH_RATIO
            candidates = {k for w in marker.split() for k in self._by_word.get(w, ())}
            found = any(low <= len(k) <= high and match_score(k, marker) >= SAME_LABEL for k in candidates)
            self._loose[marker] = found
        return found


def _share(text: _Text, markers: tuple[str, ...]) -> float:
    """The share of ``markers`` the text carries, exactly or loosely (only the few not found exactly are compared
    loosely, which is the costly part)."""
    if not markers:
        return 0.0
    missing = [m for m in markers if not text.exact(m)]
    return (len(markers) - sum(1 for m in missing if not text.loose(m))) / len(markers)


def _title(text: _Text, programme: ProgrammeDefinition) -> tuple[bool, bool]:
    """(found, exact): a form's title is printed at its top; searching only there keeps statements out."""
    if any(p.search(text.head) for p in programme.title_patterns):
        return True, True
    loose = (_year_free(p) for p in programme.title_patterns)
    return any(p is not None and p.search(text.head) for p in loose), False


def recognise(document: FormDocument, registry: Registry,
              hub_programmes: Iterable[str] = ()) -> Recognition | None:
    """The best-matching programme, or None when the document is not one of the known forms. ``hub_programmes``:
    the receiving hub's programmes, which win a tie."""
    text = _Text(document)
    titled = [(p, *_title(text, p)) for p in registry.programmes]
    candidates: list[Recognition] = []
    # A programme whose title is at the top outscores any without (share + 1 against a share of at most 1), so
    # the others are read only when no titled programme qualifies.
    for with_title in (True, False):
        for programme, title, exact in titled:
            if title is not with_title:
                continue
            need = _SHARE_WITH_TITLE if title else _SHARE_WITHOUT_TITLE
            share = _share(text, _markers(programme))
            if share >= need:
                candidates.append(Recognition(programme, title, share, title_exact=exact or not title))
        if candidates:
            break
    if not candidates:
        return None
    candidates.sort(key=lambda c: -c.score)
    best = candidates[0]
    ours = frozenset(hub_programmes)
    tied = [c for c in candidates if best.score - c.score <= TIE]
    chosen_for_hub = False
    if len(tied) > 1 and ours:
        mine = [c for c in tied if c.programme.id in ours]
        if mine and mine[0] is not best:
            best, chosen_for_hub = mine[0], True
    if ours and best.programme.id not in ours:
        # Next year's definition has last year's title (years aside): for a hub that runs it, it wins over the
        # old one even when last year's form matches the old title to the year (interface.md, "Programmes").
        same_title = [c for c in candidates if c.programme.id in ours
                      and label_key(c.programme.title) == label_key(best.programme.title)]
        if same_title:
            best, chosen_for_hub = same_title[0], True
    others = [c for c in candidates if c is not best]
    runner = others[0] if others else None
    return Recognition(best.programme, best.title_found, best.label_share, best.title_exact,
                       round(best.score - runner.score, 3) if runner else 1.0,
                       runner.programme.id if runner else None, chosen_for_hub)


_SIGNATURE = re.compile(r"\bsignature\b|\bsigned\b", re.IGNORECASE)
_FORM_WORDS = re.compile(r"\b(application form|expression of interest|declaration|application)\b", re.IGNORECASE)


def looks_like_form(document: FormDocument) -> bool:
    """A document shaped like an application form: tables whose rows pair a short printed label with answer
    cells, with a signature block or the words of an application. A cover letter (paragraphs) is not."""
    label_rows = 0
    signature = False
    for block in document.blocks:
        if isinstance(block, Paragraph):
            signature = signature or bool(_SIGNATURE.search(block.text))
            continue
        for row in block.rows:
            if len(row) >= 2 and _label_like(row[0].text):
                label_rows += 1
            signature = signature or any(_SIGNATURE.search(cell.text) for cell in row)
    if label_rows >= 8:
        return True
    return label_rows >= 4 and (signature or bool(_FORM_WORDS.search(document.all_text()[:_TITLE_ZONE])))


def _label_like(text: str) -> bool:
    words = text.split()
    return 1 <= len(words) <= 12 and "@" not in text and not text.strip().replace(" ", "").isdigit()

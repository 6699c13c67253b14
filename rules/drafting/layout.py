"""The shape of a blank form, read from the same ``FormDocument`` the reader makes of a filled one.

A blank form is headings (short plain paragraphs) each followed by tables; in a table a *label* cell is followed by
its empty answer cells (or cells holding printed hints such as "(Yes/No)" or "*"), a statement box is a prompt
alone in its row with empty rows below, and the "Signature of ..." rows name the signatories. Paragraphs before the
first heading (title, "please return to ... by ...") and notes between tables are kept as text for the title,
the hub's address and the dates. Nothing here guesses what a field *is*; ``rules.drafting.guess`` does that.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from parsers.types import Cell, FormDocument, Paragraph, Table
from rules.text import COMMON_HINTS, normalise

# A date written out in full ("6th March 2019", "March 6, 2019"): a paragraph holding one is a sentence, never a
# heading.
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|" \
         r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
FULL_DATE = re.compile(
    rf"\b(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>{_MONTH})\.?,?\s+(?P<year>(?:19|20)\d\d)\b"
    rf"|\b(?P<month2>{_MONTH})\.?\s+(?P<day2>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year2>(?:19|20)\d\d)\b"
    r"|\b(?P<day3>\d{1,2})/(?P<month3>\d{1,2})/(?P<year3>(?:19|20)\d\d)\b",
    re.IGNORECASE,
)
_MAX_HEADING_WORDS = 12
_MAX_HEADING_CHARS = 90
_NOT_HEADING_START = ("(", "*", "·", "•", "-", "–", "—", "[")
_INSTRUCTION = ("please", "note", "nb", "n.b", "if ", "for schools", "return ", "send ")


class CellKind(StrEnum):
    EMPTY = "empty"
    HINT = "hint"            # printed guidance in an answer space: "(Yes/No)", "*", "(This is not your password...)"
    SIGNATURE = "signature"  # "Signature of Head Teacher"
    LABEL = "label"


@dataclass(frozen=True)
class Slot:
    """One question on the form: its printed label (or a statement's prompt) and where it sits."""

    label: str                  # as printed, white space collapsed
    hints: tuple[str, ...]      # hint text printed in its answer cells
    table: int                  # which table of its section (0 = first)
    row: int
    column: int
    prompt: bool = False        # a statement box: the answer goes in the empty row(s) below


@dataclass(frozen=True)
class SectionLayout:
    heading: str
    occurrence: int             # 1 for the first heading with this text, 2 for a repeat ("Teacher statement")
    slots: tuple[Slot, ...]
    notes: tuple[str, ...]      # paragraphs under the heading that are not headings


@dataclass(frozen=True)
class SignatureLine:
    label: str                  # the signatory's title as printed beside the signature space
    printed: str                # "Signature of Head Teacher"


@dataclass(frozen=True)
class FormLayout:
    preamble: tuple[str, ...]           # paragraphs before the first heading: title, where to send it, by when
    sections: tuple[SectionLayout, ...]
    signatures: tuple[SignatureLine, ...]
    hints: tuple[str, ...]              # every printed hint, in form order
    unanswerable: tuple[str, ...]       # labels with no answer space beside or below them
    paragraphs: tuple[str, ...]         # every paragraph, for dates and addresses

    def all_slots(self) -> tuple[tuple[SectionLayout, Slot], ...]:
        return tuple((s, slot) for s in self.sections for slot in s.slots)


class CannotDraft(ValueError):
    """The document has no shape a definition can be drafted from; ``str()`` is one line saying why."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def heading_like(text: str) -> bool:
    """Whether a paragraph reads as a section heading: short, not a sentence, not an instruction or a note."""
    t = one_line(text)
    if not t or len(t) > _MAX_HEADING_CHARS or len(t.split()) > _MAX_HEADING_WORDS:
        return False
    if t.startswith(_NOT_HEADING_START) or not any(c.isalpha() for c in t):
        return False
    if t.endswith((".", ",", ";")) or ". " in t:
        return False
    low = t.lower()
    if "@" in t or "http" in low or "www." in low or low.startswith(_INSTRUCTION):
        return False
    return FULL_DATE.search(t) is None


def heading_text(text: str) -> str:
    """A heading as a definition lists it: the reader drops a trailing colon when it compares headings."""
    return one_line(text).rstrip(":").rstrip()


def cell_kind(text: str) -> CellKind:
    t = one_line(text)
    if not t:
        return CellKind.EMPTY
    low = normalise(t)
    if low.startswith("signature of"):
        return CellKind.SIGNATURE
    if (t.startswith("(") and t.endswith(")")) or t.startswith("*") or t in COMMON_HINTS or not any(
            c.isalnum() for c in t):
        return CellKind.HINT
    return CellKind.LABEL


def _first_heading_index(blocks: tuple, label_table: int) -> int | None:
    """The heading paragraph nearest above the first table of labels (nothing but paragraphs in between)."""
    for index in range(label_table - 1, -1, -1):
        block = blocks[index]
        if isinstance(block, Table):
            return None
        if heading_like(block.text):
            return index
    return None


def _has_labels(table: Table) -> bool:
    for row in table.rows:
        kinds = [cell_kind(c.text) for c in row]
        if CellKind.SIGNATURE in kinds:
            continue
        if CellKind.LABEL in kinds:
            return True
    return False


def read_layout(document: FormDocument) -> FormLayout:
    """The form's shape. Raises ``CannotDraft`` when it has no table of labels under a heading."""
    blocks = document.blocks
    first_table = next((i for i, b in enumerate(blocks) if isinstance(b, Table) and _has_labels(b)), None)
    if first_table is None:
        raise CannotDraft("it has no tables of labels with answer spaces (is it a blank application form?)")
    start = _first_heading_index(blocks, first_table)
    if start is None:
        raise CannotDraft("its first table of labels has no heading above it, and the reader finds every field "
                          "by the heading above its table")
    preamble = tuple(one_line(b.text) for b in blocks[:start] if isinstance(b, Paragraph) and one_line(b.text))
    paragraphs = tuple(one_line(b.text) for b in blocks if isinstance(b, Paragraph) and one_line(b.text))

    sections: list[SectionLayout] = []
    signatures: list[SignatureLine] = []
    hints: list[str] = []
    unanswerable: list[str] = []
    seen: dict[str, int] = {}
    heading: str | None = None
    slots: list[Slot] = []
    notes: list[str] = []
    tables = 0

    def close() -> None:
        if heading is not None:
            key = normalise(heading)
            seen[key] = seen.get(key, 0) + 1
            sections.append(SectionLayout(heading, seen[key], tuple(slots), tuple(notes)))

    for block in blocks[start:]:
        if isinstance(block, Paragraph):
            text = one_line(block.text)
            if not text:
                continue
            if heading_like(text):
                close()
                heading, slots, notes, tables = heading_text(text), [], [], 0
            else:
                notes.append(text)
            continue
        _read_table(block, tables, slots, signatures, hints, unanswerable)
        tables += 1
    close()
    return FormLayout(preamble, tuple(sections), tuple(signatures), tuple(dict.fromkeys(hints)),
                      tuple(unanswerable), paragraphs)


def _read_table(table: Table, index: int, slots: list[Slot], signatures: list[SignatureLine], hints: list[str],
                unanswerable: list[str]) -> None:
    rows = table.rows
    for r, row in enumerate(rows):
        texts = [one_line(c.text) for c in row]
        kinds = [cell_kind(t) for t in texts]
        hints.extend(t for t, k in zip(texts, kinds) if k in (CellKind.HINT, CellKind.SIGNATURE))
        if CellKind.SIGNATURE in kinds:
            signatures.extend(_signature_lines(texts, kinds))
            continue
        for c, kind in enumerate(kinds):
            if kind is not CellKind.LABEL:
                continue
            answer = []
            for n in range(c + 1, len(row)):
                if kinds[n] is CellKind.LABEL:
                    break
                answer.append(n)
            if answer:
                slots.append(Slot(texts[c], tuple(texts[n] for n in answer if kinds[n] is CellKind.HINT),
                                  index, r, c))
            elif _empty_below(rows, r, c) and sum(k is CellKind.LABEL for k in kinds) == 1:
                slots.append(Slot(texts[c], (), index, r, c, prompt=True))
            else:
                unanswerable.append(texts[c])


def _empty_below(rows: tuple[tuple[Cell, ...], ...], r: int, c: int) -> bool:
    """A statement box: the next row has a cell under the prompt and nothing is printed in it."""
    if r + 1 >= len(rows) or not rows[r + 1]:
        return False
    below = rows[r + 1][min(c, len(rows[r + 1]) - 1)]
    return cell_kind(below.text) in (CellKind.EMPTY, CellKind.HINT)


def _signature_lines(texts: list[str], kinds: list[CellKind]) -> list[SignatureLine]:
    out = []
    for c, kind in enumerate(kinds):
        if kind is not CellKind.SIGNATURE:
            continue
        printed = texts[c]
        left = next((texts[n] for n in range(c - 1, -1, -1) if kinds[n] is CellKind.LABEL), None)
        label = left or re.sub(r"(?i)^\s*signature\s+of\s+", "", printed).strip()
        out.append(SignatureLine(label, printed))
    return out

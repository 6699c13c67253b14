"""Map a form's neutral content (headings, paragraphs, tables) to a programme's field ids.

The walk follows the document in reading order. A paragraph equal to one of the programme's section headings
sets the current section (a repeated heading counts its occurrences), and inside tables a cell that starts with
a field label of that section takes its answer from the cells to its right up to the next label, or, when those
are empty, from what was typed after the label in the label cell itself ("Name of school: St Anne's"). Statement
boxes are found by their printed prompt and answered in the row below. Pure: bytes never reach here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from parsers.types import Cell, DocumentKind, FormDocument, Paragraph, Table
from rules.definitions import FieldDefinition, ProgrammeDefinition
from rules.text import normalise, normalise_keep_case, strip_hints

_SEPARATORS = ":-–—=\n\t (*"


@dataclass(frozen=True)
class _Label:
    field: FieldDefinition
    text: str   # normalised


@lru_cache(maxsize=1024)
def _label_pattern(label: str) -> re.Pattern[str]:
    words = normalise(label).split()
    return re.compile(r"\s*" + r"\s+".join(re.escape(w) for w in words), re.IGNORECASE)


def _after_label(cell_text: str, label: str) -> str | None:
    """The text typed after a label in its own cell, or None when the cell does not start with that label."""
    text = normalise_keep_case(cell_text)
    match = _label_pattern(label).match(text)
    if match is None:
        return None
    rest = text[match.end():]
    if rest and rest[0] not in _SEPARATORS and not label.rstrip().endswith((":", "?")):
        return None   # "Name" must not match "Names of schools"
    return rest.lstrip(":-–—= \t*").strip()


class _SectionState:
    def __init__(self, programme: ProgrammeDefinition) -> None:
        self.headings = {normalise(s) for s in programme.sections}
        self.occurrences: dict[str, int] = {}
        self.current: tuple[str, int] | None = None

    def see_paragraph(self, text: str) -> None:
        norm = normalise(text).rstrip(":")
        if norm in self.headings:
            self.occurrences[norm] = self.occurrences.get(norm, 0) + 1
            self.current = (norm, self.occurrences[norm])


def map_fields(document: FormDocument, programme: ProgrammeDefinition) -> dict[str, str | None]:
    """Every field id of the programme with the answer found for it (hints removed), or None."""
    answers: dict[str, str | None] = {f.id: None for f in programme.fields}
    found: set[str] = set()
    sections = _SectionState(programme)
    fields_by_section: dict[tuple[str, int], list[FieldDefinition]] = {}
    for f in programme.fields:
        fields_by_section.setdefault((normalise(f.section), f.section_occurrence), []).append(f)

    def record(field: FieldDefinition, value: str) -> None:
        cleaned = strip_hints(value, programme.hints)
        found.add(field.id)
        answers[field.id] = cleaned or None

    pdf = document.kind is DocumentKind.PDF
    open_statement: FieldDefinition | None = None
    for block in document.blocks:
        if isinstance(block, Paragraph):
            before = sections.current
            sections.see_paragraph(block.text)
            if pdf and open_statement is not None and sections.current == before and answers[open_statement.id]:
                # A statement box that runs over a page break: its last lines come out of the PDF as text after
                # the table, before the next heading.
                answers[open_statement.id] = f"{answers[open_statement.id]}\n{block.text}"
            else:
                open_statement = None
            continue
        open_statement = None
        if sections.current is None:
            continue
        candidates = [f for f in fields_by_section.get(sections.current, []) if f.id not in found]
        if candidates:
            taken_before = set(found)
            _map_table(block, candidates, programme, record, not pdf)
            statements = [f for f in candidates if f.prompt and f.id in found and f.id not in taken_before]
            open_statement = statements[-1] if statements else None
    return answers


def _map_table(table: Table, candidates: list[FieldDefinition], programme: ProgrammeDefinition, record,
               same_cell_statements: bool) -> None:
    taken: set[str] = set()
    prompts = [f for f in candidates if f.prompt]
    labelled = sorted((f for f in candidates if not f.prompt), key=lambda f: (-len(f.label), f.label_occurrence))

    def label_at(cell: Cell) -> tuple[FieldDefinition, str] | None:
        # Fields sharing a label ("E-mail" twice) are sorted by label_occurrence, and a taken one is skipped,
        # so the n-th occurrence of a label goes to the n-th field.
        for f in labelled:
            if f.id not in taken:
                rest = _after_label(cell.text, f.label)
                if rest is not None:
                    return f, rest
        return None

    for row_index, row in enumerate(table.rows):
        # Statement boxes: the printed prompt, then the answer in the row(s) below.
        for col, cell in enumerate(row):
            for f in prompts:
                if f.id in taken:
                    continue
                rest = _after_prompt(cell.text, f.prompt or "")
                if rest is None:
                    continue
                if not same_cell_statements:
                    rest = ""   # a PDF cell's extra lines are the prompt wrapping, not an answer
                below = [r[min(col, len(r) - 1)].text for r in table.rows[row_index + 1:] if r]
                answer = "\n".join(t for t in below if t.strip())
                taken.add(f.id)
                record(f, answer if strip_hints(answer, programme.hints) else rest)
        col = 0
        while col < len(row):
            hit = label_at(row[col])
            if hit is None:
                col += 1
                continue
            field, rest = hit
            values: list[str] = []
            nxt = col + 1
            while nxt < len(row) and label_at(row[nxt]) is None:
                values.append(row[nxt].text)
                nxt += 1
            value = "\n".join(v for v in values if strip_hints(v, programme.hints))
            taken.add(field.id)
            record(field, value if value else rest)
            col = nxt


def _after_prompt(cell_text: str, prompt: str) -> str | None:
    """Text typed after a statement's printed prompt in the prompt's own cell, or None if this is not the prompt."""
    norm_cell, norm_prompt = normalise(cell_text), normalise(prompt)
    if not norm_cell.startswith(norm_prompt):
        return None
    # In a .docx the printed prompt is one paragraph, so further paragraphs in its cell were typed by the school.
    lines = [line for line in cell_text.splitlines() if line.strip()]
    return "\n".join(lines[1:]).strip() if len(lines) > 1 else ""

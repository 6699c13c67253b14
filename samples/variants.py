"""Next year's forms, built in code from the shipped blank forms: the small edits a hub makes when it re-issues a
form, one at a time or all together, and filled in with the same machinery as every other sample.

A hub re-issuing a form changes the years in it, fixes a typo ("Numbber"), writes "Email" for "E-mail", rewords a
label a little, adds a question, drops one, moves rows (the head's and the head of department's) and lets Word split
a table in two. The bot must read such a form against the programme definition written for last year's without
ever telling a school something false. ``build_variant`` applies a set of ``Edit``s to a blank form with python-docx
(never by hand-editing a binary) and records where each field's label now is, so ``fill_variant`` can fill the new
form exactly as a school would, and tests can say what the bot should have read.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache

from lxml import etree

from samples.applications import FORM_FILES, complete_answers, programme
from samples.forms import FillStyle, FormFiller, _is_heading, _norm, _text, _w, form_path

__all__ = ["ALL_EDITS", "EXTRA_LABEL", "EXTRA_VALUE", "Edit", "Placement", "Variant", "VARIANTS", "build_variant",
           "fill_variant", "variant_answers"]


class Edit(StrEnum):
    REWORD = "reword"    # a label or prompt reworded a little ("Teacher Ref. Number" -> "Teacher Reference Number")
    TYPO = "typo"        # a typo fixed ("Numbber"), a label's case and trailing colon tidied
    EMAIL = "email"      # "E-mail" written "Email" (and the other way round)
    YEAR = "year"        # every year one on: "in 2023/24" -> "in 2024/25", the title and dates too
    ADD = "add"          # a question added: "Number of pupils on roll" under School details
    REMOVE = "remove"    # a question dropped: the school's address row (a required field)
    MOVE = "move"        # rows moved: head and head of department swapped (else the head's row first); the first
                         # teacher table upside down
    SPLIT = "split"      # the School details table split in two (as Word does at a page break or a pasted row)


# The order edits are applied in: rewordings name last year's printed text, so they go before years change it, and
# rows are moved before a table is split so the split falls between the moved rows.
ALL_EDITS: tuple[Edit, ...] = tuple(Edit)
VARIANTS: tuple[tuple[str, frozenset[Edit]], ...] = (
    ("blank", frozenset()),
    *((edit.value, frozenset({edit})) for edit in Edit),
    ("all", frozenset(Edit)),
)

EXTRA_LABEL = "Number of pupils on roll"
EXTRA_VALUE = "850"

# Whole labels reworded the way a person re-issuing the form would; each is still plainly the same question.
_LABEL_REWORDS = {
    "Contact telephone number": "School contact telephone number",
    "Name of head of department": "Name of the head of department",
    "Name of Head of Department": "Name of the Head of Department",
    "Name of headteacher/senior leader": "Name of headteacher or senior leader",
    "Name of Head Teacher/Senior Leader": "Name of Head Teacher or Senior Leader",
    "Name of Head Teacher": "Name of the Head Teacher",
    "Head Teacher": "Head Teacher name",
    "Teacher Ref. Number": "Teacher Reference Number",
    "Role/responsibility in the maths department": "Role/responsibilities in the mathematics department",
    "Year Group": "Year Group(s)",
    "Year Groups being taught in 2016/17": "Year groups taught in 2016/17",
    "Year groups being taught in 2023/24": "Year groups taught in 2023/24",
    "Maths Hub": "Your Maths Hub",
    "Maths Hub (if known)": "Your Maths Hub (if known)",
    "NCETM Username": "NCETM user name",
    "Has your school worked with a Maths Hub Mastery Specialist?":
        "Has your school worked with a Maths Hub Secondary Mastery Specialist?",
    "We wish to be considered as part of a group application Yes/No":
        "We wish to be considered as part of a group application (Yes/No)",
}
# Inside the long printed prompts of statement boxes.
_PROMPT_REWORDS = {
    "why you wish to participate": "why you would like to participate",
    "why you wish the school to participate": "why you would like the school to participate",
    "why the department wishes to participate": "why the department would like to participate",
    "why the school supports the above teachers": "why the school supports these teachers",
}
_TYPOS = {"Numbber": "Number"}
_TIDY = {"Name of school": "Name of School:"}
_YEAR = re.compile(r"\b((?:19|20)\d\d)(\s*[/\-–]\s*)((?:19|20)?\d\d)\b|\b((?:19|20)\d\d)\b")


@dataclass(frozen=True)
class Placement:
    """Where a question is on the variant, in the terms ``FormFiller`` fills by: the heading it is under (and which
    occurrence of it), the label as now printed and which of equal labels under that heading it is. ``prompt``:
    a statement box, answered in the row below its printed prompt."""

    section: str
    occurrence: int
    label: str
    label_occurrence: int
    prompt: bool = False


@dataclass(frozen=True)
class Variant:
    programme_id: str
    name: str
    edits: frozenset[Edit]
    docx: bytes
    placements: Mapping[str, Placement]       # field id -> where it is now; removed fields are absent
    extra: Mapping[str, Placement] = field(default_factory=dict)   # questions not in the definition: label -> where

    @property
    def removed(self) -> frozenset[str]:
        return frozenset(programme(self.programme_id).field_ids) - frozenset(self.placements)


def _paragraph_text_set(paragraph: etree._Element, text: str) -> None:
    """Give a paragraph new text, keeping the formatting of its first run (labels are one bold run)."""
    texts = list(paragraph.iter(_w("t")))
    if not texts:
        return
    first = next((t for t in texts if t.text), texts[0])
    for t in texts:
        t.text = ""
    first.text = text
    first.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")


def _paragraphs(element: etree._Element) -> Iterable[etree._Element]:
    return element.iter(_w("p"))


def _cell_paragraphs(body: etree._Element) -> Iterable[etree._Element]:
    for tc in body.iter(_w("tc")):
        yield from tc.iter(_w("p"))


def _shift_years(text: str) -> str:
    def one_on(match: re.Match[str]) -> str:
        if match.group(4):
            return str(int(match.group(4)) + 1)
        first, sep, second = match.group(1), match.group(2), match.group(3)
        later = int(second) + 1
        return f"{int(first) + 1}{sep}{later % 100:02d}" if len(second) == 2 else f"{int(first) + 1}{sep}{later}"
    return _YEAR.sub(one_on, text)


class _Builder:
    """One blank form being edited. The label cells (and prompt tables) of every field are found first, by last
    year's definition, and followed through the edits as elements, so their new place is known at the end."""

    def __init__(self, programme_id: str) -> None:
        self.programme_id = programme_id
        self.definition = programme(programme_id)
        self.filler = FormFiller(form_path(FORM_FILES[programme_id]))
        self.body: etree._Element = self.filler._body   # the sample builders share the filler's document
        self.cells: dict[str, etree._Element] = {}       # field id -> label cell (w:tc) or prompt table (w:tbl)
        self.extra: dict[str, etree._Element] = {}
        for f in self.definition.fields:
            if f.prompt:
                self.cells[f.id] = self.filler._section_tables(f.section, f.section_occurrence)[0]
            else:
                self.cells[f.id] = self.filler._find_label(f.section, f.label, f.section_occurrence,
                                                           f.label_occurrence)

    # ---- edits ---------------------------------------------------------------------------------------------------

    def apply(self, edits: frozenset[Edit]) -> None:
        for edit in ALL_EDITS:
            if edit in edits:
                getattr(self, f"_{edit.value}")()

    def _replace_whole(self, table: Mapping[str, str]) -> None:
        for p in _cell_paragraphs(self.body):
            text = _text(p).strip()
            if text in table:
                _paragraph_text_set(p, table[text])

    def _reword(self) -> None:
        self._replace_whole(_LABEL_REWORDS)
        for p in _cell_paragraphs(self.body):
            text = _text(p)
            new = text
            for old, replacement in _PROMPT_REWORDS.items():
                new = new.replace(old, replacement)
            if new != text:
                _paragraph_text_set(p, new)

    def _typo(self) -> None:
        for p in _cell_paragraphs(self.body):
            text = _text(p)
            new = text
            for old, replacement in _TYPOS.items():
                new = new.replace(old, replacement)
            if new != text:
                _paragraph_text_set(p, new)
        self._replace_whole(_TIDY)

    def _email(self) -> None:
        self._replace_whole({"E-mail": "Email", "Email": "E-mail"})

    def _year(self) -> None:
        for p in _paragraphs(self.body):
            text = _text(p)
            new = _shift_years(text)
            if new != text:
                _paragraph_text_set(p, new)

    def _row_of(self, field_id: str) -> etree._Element:
        return self.cells[field_id].getparent()

    def _add(self) -> None:
        # A copy of the "Name of school" row (label, one wide answer cell), relabelled and emptied.
        source = self._row_of("school.name")
        row = copy.deepcopy(source)
        cells = row.findall(_w("tc"))
        for p in _paragraphs(cells[0]):
            _paragraph_text_set(p, EXTRA_LABEL)
        for cell in cells[1:]:
            for child in list(cell):
                if child.tag != _w("tcPr"):
                    cell.remove(child)
            etree.SubElement(cell, _w("p"))
        source.addnext(row)
        self.extra[EXTRA_LABEL] = cells[0]

    def _remove(self) -> None:
        row = self._row_of("school.address")
        row.getparent().remove(row)
        del self.cells["school.address"]

    def _move(self) -> None:
        head = self._row_of("head.name")
        if "hod.name" in self.cells:
            hod = self._row_of("hod.name")
            marker = etree.Element(_w("tr"))
            head.addprevious(marker)
            hod.addprevious(head)
            marker.addprevious(hod)
            marker.getparent().remove(marker)
        else:
            table = head.getparent()
            table.find(_w("tr")).addprevious(head)
        teacher_table = self._row_of("teacher1.name").getparent()
        rows = teacher_table.findall(_w("tr"))
        for row in rows:
            teacher_table.remove(row)
        for row in reversed(rows):
            teacher_table.append(row)

    def _split(self) -> None:
        head = self._row_of("head.name")
        table = head.getparent()
        rows = table.findall(_w("tr"))
        at = rows.index(head) + 1
        if at >= len(rows):
            at = max(1, len(rows) // 2)
        second = etree.Element(_w("tbl"))
        for child in table:
            if child.tag in (_w("tblPr"), _w("tblGrid")):
                second.append(copy.deepcopy(child))
        for row in rows[at:]:
            second.append(row)
        gap = etree.Element(_w("p"))   # Word merges two tables that touch: a paragraph keeps them apart
        table.addnext(gap)
        gap.addnext(second)

    # ---- where everything is now ---------------------------------------------------------------------------------

    def placements(self) -> tuple[dict[str, Placement], dict[str, Placement]]:
        governing: dict[etree._Element, tuple[str, int]] = {}   # body table -> (heading, occurrence)
        seen: dict[str, int] = {}
        current: tuple[str, int] | None = None
        for element in self.body.iterchildren(_w("p"), _w("tbl")):
            if element.tag == _w("p"):
                text = _text(element).strip()
                if text and _is_heading(element):
                    seen[_norm(text)] = seen.get(_norm(text), 0) + 1
                    current = (text, seen[_norm(text)])
            elif current is not None:
                governing[element] = current

        def body_table(element: etree._Element) -> etree._Element:
            while element.getparent() is not self.body:
                element = element.getparent()
            return element

        def place(element: etree._Element, prompt: bool) -> Placement:
            table = element if prompt else body_table(element)
            section, occurrence = governing[table]
            if prompt:
                return Placement(section, occurrence, "", 1, prompt=True)
            label = _text(element).strip()
            same = [c for t, where in governing.items() if where == (section, occurrence)
                    for c in t.iter(_w("tc")) if _norm(_text(c)) == _norm(label)]
            return Placement(section, occurrence, label, same.index(element) + 1)

        fields = {fid: place(cell, cell.tag == _w("tbl")) for fid, cell in self.cells.items()}
        extra = {label: place(cell, False) for label, cell in self.extra.items()}
        return fields, extra


@cache
def build_variant(programme_id: str, edits: frozenset[Edit], name: str = "") -> Variant:
    """The programme's blank form with ``edits`` applied, and where each question now is."""
    builder = _Builder(programme_id)
    builder.apply(edits)
    fields, extra = builder.placements()
    label = name or "+".join(sorted(e.value for e in edits)) or "blank"
    return Variant(programme_id, label, edits, builder.filler.to_docx(), fields, extra)


def variant_answers(variant: Variant, school_index: int = 0) -> dict[str, str]:
    """The complete answers for the fields still on the variant (a removed question cannot be answered)."""
    from samples.applications import SCHOOLS

    answers = complete_answers(variant.programme_id, SCHOOLS[school_index])
    return {k: v for k, v in answers.items() if k in variant.placements}


def fill_variant(variant: Variant, answers: Mapping[str, str | None], *, style: FillStyle = FillStyle.VALUE_CELL,
                 extra: Mapping[str, str] | None = None) -> bytes:
    """The variant filled with ``answers`` (field id -> value) and ``extra`` (added label -> value; by default the
    added question is answered too, as a school filling the new form would)."""
    filler = FormFiller(variant.docx)
    definition = programme(variant.programme_id)
    for f in definition.fields:
        value = answers.get(f.id)
        where = variant.placements.get(f.id)
        if not value or where is None:
            continue
        if where.prompt:
            how = FillStyle.VALUE_CELL if style is FillStyle.LABEL_CELL else style
            filler.fill_below(where.section, value, how=how, occurrence=where.occurrence)
        else:
            filler.fill(where.section, where.label, value, how=style, occurrence=where.occurrence,
                        label_occurrence=where.label_occurrence)
    for label, value in (extra if extra is not None else {EXTRA_LABEL: EXTRA_VALUE}).items():
        where = variant.extra.get(label)
        if where is not None and value:
            filler.fill(where.section, where.label, value, how=style, occurrence=where.occurrence,
                        label_occurrence=where.label_occurrence)
    return filler.to_docx()

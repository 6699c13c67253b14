"""Next year's version of each shipped blank form, made in code with python-docx the way a hub edits last year's
form in Word: every year moved on by one (title, labels, dates), a typo fixed, a label reworded, a field added and
one removed, a row moved, a heading reworded, and a new sentence with a date. Used by the ``programme`` tests and
by ``tests/measure_programmes.py``; nobody hand-edits binaries."""
from __future__ import annotations

import copy
import io
from dataclasses import dataclass

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from rules.labels import shift_years
from samples.applications import FORM_FILES
from samples.forms import form_path


@dataclass(frozen=True)
class Plan:
    """What changes in one form next year (labels and headings as printed, before the years move on)."""

    new_id: str
    reworded: tuple[str, str]          # a label and its new wording (every cell printing it)
    heading: tuple[str, str]           # a heading and its new wording
    removed: str                       # the label of a row taken out
    added: str                         # the label of a new row under "School details"
    sentence: str                      # a new paragraph after the "please return to ..." line
    expected_gone: str                 # the field id that disappears with the removed row
    expected_reworded: str             # the field id of the reworded label (kept)


PLANS: dict[str, Plan] = {
    "primary-tfm-wg-2020": Plan(
        "primary-tfm-wg-2021", ("Which Maths Hub are you applying to?", "Which Maths Hub is your school applying to?"),
        ("Head teacher statement", "Statement from the head teacher"), "Local Authority", "Number of pupils on roll",
        "Please return the completed form by Friday 5th March 2021.", "school.local_authority", "maths_hub"),
    "primary-trg-pilot-2019": Plan(
        "primary-trg-pilot-2020", ("Year Group", "Year group taught"),
        ("Head Teacher statement", "Statement from the Head Teacher"), "Address", "Number of pupils on roll",
        "Selected schools will be informed by 20th March 2020.", "school.address", "teacher1.year_groups"),
    "secondary-tfm-wg-2016": Plan(
        "secondary-tfm-wg-2017", ("Name of Head Teacher/Senior Leader", "Name of Headteacher or Senior Leader"),
        ("Head of department statement", "Statement from the head of department"), "Address",
        "Number of pupils on roll", "Shortlisted schools will be informed by 12th January 2018.", "school.address",
        "head.name"),
    "secondary-tfm-wg-2024": Plan(
        "secondary-tfm-wg-2025", ("Role/responsibility in the maths department",
                                  "Role and responsibilities in the maths department"),
        ("Engagement with a Secondary Mastery Specialist", "Work with a Secondary Mastery Specialist"),
        "Maths Hub (if known)", "Number of pupils on roll",
        "Please return the completed form by Friday 27th June 2025.", "maths_hub", "teacher1.role"),
    "primary-mastery-readiness-2018": Plan(
        "primary-mastery-readiness-2019", ("School role/s including teaching group/s in 2017-18",
                                           "Current school role/s including teaching group/s in 2017-18"),
        ("Head teacher statement", "Statement from the head teacher"), "Maths Hub", "Number of pupils on roll",
        "Successful schools will be told by 14th June 2019.", "maths_hub", "teacher1.role"),
}


def _set_text(paragraph: Paragraph, text: str) -> None:
    """New text in the paragraph's first run (keeping its bold or size), the other runs removed."""
    runs = paragraph.runs
    if not runs:
        paragraph.add_run(text)
        return
    runs[0].text = text
    for run in runs[1:]:
        run._r.getparent().remove(run._r)


def _paragraphs(document: docx.document.Document) -> list[Paragraph]:
    out, seen = [], set()
    candidates = list(document.paragraphs)
    for table in document.tables:
        for row in table.rows:
            for cell in row.cells:     # a merged cell is listed twice: seen keeps it from being edited twice
                candidates.extend(cell.paragraphs)
    for paragraph in candidates:
        if id(paragraph._p) not in seen:
            seen.add(id(paragraph._p))
            out.append(paragraph)
    return out


def _cell_text(cell) -> str:
    return " ".join(cell.text.split())


def _school_details_table(document: docx.document.Document) -> Table:
    body = document.element.body
    after = False
    for child in body.iterchildren():
        if child.tag.endswith("}p") and " ".join(Paragraph(child, document).text.split()) == "School details":
            after = True
        elif after and child.tag.endswith("}tbl"):
            return Table(child, document)
    raise LookupError("no table under 'School details'")


def next_year_form(programme_id: str) -> bytes:
    plan = PLANS[programme_id]
    document = docx.Document(str(form_path(FORM_FILES[programme_id])))
    old_label, new_label = plan.reworded
    old_heading, new_heading = plan.heading
    # Rows first (found by last year's printed text), then wording, then years.
    school = _school_details_table(document)
    for table in document.tables:
        for row in list(table.rows):
            if _cell_text(row.cells[0]) == plan.removed:
                row._tr.getparent().remove(row._tr)
    template = next(r for r in school.rows if _cell_text(r.cells[0]) in ("Address", "Name of school"))
    added = copy.deepcopy(template._tr)
    school._tbl.append(added)
    cells = [c for c in added.iter() if c.tag.endswith("}tc")]
    for n, cell in enumerate(cells):
        for p_index, p in enumerate(c for c in cell.iter() if c.tag.endswith("}p")):
            paragraph = Paragraph(p, document)
            _set_text(paragraph, plan.added if (n == 0 and p_index == 0) else "")
    email_rows = [r for r in school.rows if any(_cell_text(c).lower() in ("e-mail", "email") for c in r.cells)]
    if email_rows:
        moving = email_rows[-1]._tr
        previous = moving.getprevious()
        previous.addprevious(moving)      # the row moves one up: a person's row above the one before it
    for paragraph in _paragraphs(document):
        text = " ".join(paragraph.text.split())
        if text == old_label:
            _set_text(paragraph, new_label)
        elif text == old_heading:
            _set_text(paragraph, new_heading)
        elif "Numbber" in paragraph.text:
            _set_text(paragraph, paragraph.text.replace("Numbber", "Number"))
    for paragraph in _paragraphs(document):
        moved = shift_years(paragraph.text, 1)
        if moved != paragraph.text:
            _set_text(paragraph, moved)
    anchor = next(p for p in document.paragraphs if "@" in p.text)
    sentence = copy.deepcopy(anchor._p)
    anchor._p.addnext(sentence)
    _set_text(Paragraph(sentence, document), plan.sentence)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()

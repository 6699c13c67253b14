"""Whole applications for tests, benchmarks and the demo: realistic answers for every programme, filled into the
blank form (in any fill style), saved as .docx or PDF, and wrapped in the e-mail a school would send.

Field placement comes from the programme definitions themselves (section, label, occurrence, prompt), and answers
for fields this module has no realistic table for are made from each field's validator, label and word limit, so a
new programme file (with its blank form) is enough to build its test applications too: ``hubbot programme test``
runs on exactly this.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from rules.calendar import LONDON
from rules.definitions import FieldDefinition, ProgrammeDefinition, WordLimitKind, load_registry
from rules.labels import label_key
from rules.maths_hubs import all_hubs, match_maths_hub
from rules.text import word_count
from rules.validators import VALIDATORS
from samples.forms import FillStyle, FormFiller, form_path
from samples.mail import build_email

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

FORM_FILES = {
    "primary-tfm-wg-2020": "primary-tfm-work-group-application-2020-21.docx",
    "primary-trg-pilot-2019": "primary-mastery-pilot-trg-eoi-2019.docx",
    "secondary-tfm-wg-2016": "secondary-mastery-work-group-eoi-2016-17.docx",
    "secondary-tfm-wg-2024": "secondary-tfm-work-group-application-2024-25.docx",
    "primary-mastery-readiness-2018": "primary-mastery-readiness-declaration-2018.docx",
}

@dataclass(frozen=True)
class School:
    name: str
    urn: str
    street: str
    domain: str
    people: tuple[tuple[str, str, str], ...]   # head, hod, teacher1, teacher2: (name, local part, TRN)

    def person(self, role: str) -> tuple[str, str, str] | None:
        index = {"head": 0, "hod": 1, "teacher1": 2, "teacher2": 3}.get(role)
        if index is None:
            return None
        name, local, trn = self.people[index]
        return name, f"{local}@{self.domain}", trn


SCHOOLS = (
    School("Valley School", "122687", "Valley Road", "valley.example.sch.uk",
           (("Mrs Helen O'Neill", "h.oneill", "RP99/12345"), ("Mr Ravi Patel", "r.patel", "1234567"),
            ("Ms Kate Wright", "k.wright", "7654321"), ("Mr Tom Ellis", "t.ellis", "UQT"))),
    School("St Anne's C of E Primary", "140233", "Church Lane", "stannes.example.sch.uk",
           (("Mr David Okafor", "head", "2345678"), ("Ms Priya Shah", "p.shah", "3456789"),
            ("Mrs Joanna Kowalski", "j.kowalski", "4567890"), ("Mr Sam Reid", "s.reid", "5678901"))),
    School("Hillside Academy", "138912", "Hill Top", "hillside.example.sch.uk",
           (("Dr Ruth Evans", "r.evans", "6789012"), ("Mr Tariq Hussain", "t.hussain", "7890123"),
            ("Ms Ellie Brown", "e.brown", "8901234"), ("Miss Grace Li", "g.li", "RP12/34567"))),
    School("Riverside Community School", "117654", "Mill Street", "riverside.example.sch.uk",
           (("Mrs Anne Walsh", "a.walsh", "9012345"), ("Mr Ben Carter", "b.carter", "0123456"),
            ("Ms Chloe Adams", "c.adams", "1122334"), ("Mr Dan Moore", "d.moore", "2233445"))),
)
_TOWNS = {"secondary-tfm-wg-2024": "West Bromwich, B70 6QE"}
_HUB_ANSWERS = {"primary-tfm-wg-2020": "BBO Maths Hub", "secondary-tfm-wg-2024": "Central",
                "primary-mastery-readiness-2018": "Archimedes NE"}

_STATEMENT = ("We are committed to teaching for mastery across the department. Our teachers have begun using "
              "small-step lesson design and would value working with other schools to deepen this work. ")


@cache
def programme(programme_id: str) -> ProgrammeDefinition:
    found = load_registry().get(programme_id)
    assert found is not None, programme_id
    return found


# A programme given by its id (a built-in one) or as a loaded definition (a new file, e.g. for `programme test`).
Programme = str | ProgrammeDefinition


def definition_of(which: Programme) -> ProgrammeDefinition:
    return programme(which) if isinstance(which, str) else which


def complete_answers(programme_id: Programme, school: School = SCHOOLS[0], *,
                     every_field: bool = False) -> dict[str, str]:
    """A correct answer for every field of the programme, as a careful school would give. Field ids the project
    knows get the realistic answers below; any other field (or one whose realistic answer would not pass its
    validator or word limit) gets an answer made from its validator, label and word limit, so a new programme file
    needs no table here. ``every_field`` answers optional fields too, and answers each Yes/No question a condition
    hangs on so that the condition applies: ``hubbot programme test`` reads every field back that way."""
    p = definition_of(programme_id)
    answers: dict[str, str] = {}
    for index, f in enumerate(p.fields):
        value = _realistic(f, p, school)
        if value is None or (value and not fits(f, value, p)) or (every_field and not value):
            value = generated_answer(f, p, school, index)
        if value:
            answers[f.id] = value
    if every_field:
        for f in p.fields:
            condition = f.required_when
            if condition and condition.field in answers and p.field(condition.field).validator == "yes_no":
                answers[condition.field] = condition.equals.capitalize()
    return answers


def _realistic(f: FieldDefinition, p: ProgrammeDefinition, school: School) -> str | None:
    """The hand-written answers for the project's own field ids (None for an id this table does not know)."""
    role, _, part = f.id.partition(".")
    person = school.person(role)
    if f.id == "school.name":
        return school.name
    if f.id == "school.address":
        return f"{school.street}, {_TOWNS.get(p.id, 'Darlington, DL1 4AB')}"
    if f.id == "school.urn":
        return school.urn
    if f.id == "school.telephone":
        return "01325 460 123"
    if f.id == "school.local_authority":
        return "Buckinghamshire"
    if f.id == "maths_hub":
        return _HUB_ANSWERS.get(p.id)
    if f.id == "group.requested":
        return "No"
    if f.id == "specialist.engaged":
        return "Yes"
    if f.id == "specialist.details":
        return "Jo Brown, Mastery Specialist: two years of lesson study with our Year 7 team."
    if f.id.startswith("group.") and not f.required:
        return ""
    if person and part == "name":
        return person[0]
    if person and part == "email":
        return person[1]
    if person and part == "trn":
        return person[2]
    if part == "telephone":
        return "07700 900123"
    if part == "year_groups":
        return "Year 5 and Year 6" if p.id.startswith("primary") else "Years 7, 8 and 10"
    if part == "role":
        return "Maths lead; Year 6 class teacher"
    if part == "ncetm_username":
        return "kwright_maths"
    if part == "statement":
        return _STATEMENT * 3
    return None


def fits(f: FieldDefinition, value: str, p: ProgrammeDefinition | None = None) -> bool:
    """Whether an answer passes the field's validator, stays inside its word guidance and (an address) names a
    place of the programme's region: nothing the bot would report or flag."""
    if VALIDATORS[f.validator](value).reason is not None:
        return False
    if p is not None and p.region and p.region.field == f.id:
        if not any(f" {_words(place)} " in f" {_words(value)} " for place in p.region.places):
            return False
    if f.words is None:
        return True
    words = word_count(value)
    return words <= f.words.limit if f.words.kind is WordLimitKind.UP_TO else words <= 1.5 * f.words.limit


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


_SENTENCES = (
    "We are committed to teaching for mastery across the school.",
    "Our teachers have begun using small-step lesson design and want to deepen this work with other schools.",
    "Leaders will give release time for planning, lesson study and the work between meetings.",
    "We will share what we learn with colleagues in every year group through staff meetings.",
    "Pupils already talk about their reasoning with confidence and we want to build on that.",
)


def generated_answer(f: FieldDefinition, p: ProgrammeDefinition, school: School = SCHOOLS[0],
                     index: int = 0) -> str:
    """A valid answer made from the field alone: its validator, its label, its word limit and its programme's
    eligibility rules. ``index`` (the field's place on the form) keeps free-text answers apart, so an answer read
    into the wrong field shows."""
    role, _, part = f.id.partition(".")
    person = school.person(role)
    key = label_key(f.label)
    if f.validator == "urn":
        return school.urn
    if f.validator == "email":
        if person:
            return person[1]
        local = re.sub(r"[^a-z0-9]+", ".", (role if part else "office").lower()).strip(".") or "office"
        return f"{local}@{school.domain}"
    if f.validator == "trn":
        return person[2] if person else "3141592"
    if f.validator == "telephone":
        return "01325 460 123" if role == "school" or not person else f"07700 900{100 + index:03d}"
    if f.validator == "yes_no":
        return "Yes"
    if f.validator == "address":
        town = f"{p.region.places[0]}, B70 6QE" if p.region and p.region.field == f.id else "Darlington, DL1 4AB"
        return f"{school.street}, {town}"
    if f.validator == "maths_hub":
        return _hub_answer(p)
    if f.validator == "statement" or f.prompt or f.words:
        return _statement(f, index)
    if part == "name" or re.search(r"^(?:full\s+)?name\b|\bname$", key):
        if role == "school":
            return school.name
        return person[0] if person else "Jo Brown"
    if re.search(r"\byear\s+groups?\b", key):
        return "Years 7, 8 and 10"
    if re.search(r"\broles?\b", key):
        return "Maths lead; Year 6 class teacher"
    if "username" in key:
        return "kwright_maths"
    if "local authority" in key:
        return "Buckinghamshire"
    return f"Sample answer {index + 1}"


def _statement(f: FieldDefinition, index: int) -> str:
    target = 90 if f.words is None else max(1, min(f.words.limit, 90))
    start = index % len(_SENTENCES)
    words: list[str] = []
    while len(words) < target:
        for sentence in (*_SENTENCES[start:], *_SENTENCES[:start]):
            words.extend(sentence.split())
    text = " ".join(words[:target])
    return text if text.endswith(".") else text.rstrip(",;") + "."


def _hub_answer(p: ProgrammeDefinition) -> str:
    """A Maths Hub the programme's own hub accepts: itself, or one its eligibility list names."""
    own = match_maths_hub(p.hub.name)
    if p.hub_eligibility:
        if own and own.code in p.hub_eligibility.codes:
            return own.name
        return next((h.name for h in all_hubs() if h.code in p.hub_eligibility.codes), p.hub.name)
    return own.name if own else p.hub.name


def fill_form(programme_id: Programme, answers: Mapping[str, str | None], *, style: FillStyle = FillStyle.VALUE_CELL,
              styles: Mapping[str, FillStyle] | None = None, blank: Path | None = None) -> bytes:
    """The programme's blank form with ``answers`` typed in; ``styles`` overrides the fill style per field;
    ``blank`` is the form to fill (default: the shipped blank form of a built-in programme)."""
    p = definition_of(programme_id)
    filler = FormFiller(blank or form_path(FORM_FILES[p.id]))
    for f in p.fields:
        value = answers.get(f.id)
        if not value:
            continue
        how = (styles or {}).get(f.id, style)
        if f.prompt:
            if how is FillStyle.LABEL_CELL:
                how = FillStyle.VALUE_CELL
            filler.fill_below(f.section, value, how=how, occurrence=f.section_occurrence, prompt=f.prompt)
        else:
            filler.fill(f.section, f.label, value, how=how, occurrence=f.section_occurrence,
                        label_occurrence=f.label_occurrence)
    return filler.to_docx()


@dataclass(frozen=True)
class Correspondents:
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]


def correspondents(programme_id: Programme, answers: Mapping[str, str | None], pattern: str = "all") -> Correspondents:
    """Who a school puts on the e-mail. ``pattern``: all (office sends, every signatory in Cc), one_missing,
    none, sender_is_signatory, in_to (signatories in To), upper (upper-case addresses with display names)."""
    p = definition_of(programme_id)
    people = [(answers.get(f"{s.role}.name") or "", answers.get(f"{s.role}.email") or "") for s in p.signatories]
    people = [(name, email) for name, email in people if email]
    listed = [f"{name} <{email}>" if name else email for name, email in people]
    domain = (people[0][1] if people else "office@valley.example.sch.uk").rpartition("@")[2]
    office = f"School Office <office@{domain}>"
    hub = p.hub.address
    if pattern == "all":
        return Correspondents(office, (hub,), tuple(listed))
    if pattern == "one_missing":
        return Correspondents(office, (hub,), tuple(listed[:-1]))
    if pattern == "none":
        return Correspondents(office, (hub,), ())
    if pattern == "sender_is_signatory":
        return Correspondents(listed[0], (hub,), tuple(listed[1:]))
    if pattern == "in_to":
        return Correspondents(office, (hub, *listed), ())
    if pattern == "upper":
        return Correspondents(office, (hub,), tuple(f"{n} <{e.upper()}>" for n, e in people))
    raise ValueError(pattern)


def application_email(programme_id: Programme, attachment: bytes, *, filename: str = "Application form.docx",
                      content_type: str = DOCX_TYPE, answers: Mapping[str, str | None] | None = None,
                      pattern: str = "all", received: datetime | None = None, subject: str | None = None,
                      extra_attachments: Sequence[tuple[str, bytes, str]] = (), **kwargs) -> bytes:
    """The e-mail carrying a filled form to the programme's hub, copied as ``pattern`` says."""
    answers = complete_answers(programme_id) if answers is None else answers
    people = correspondents(programme_id, answers, pattern)
    received = received or datetime(2016, 12, 1, 10, 30, tzinfo=LONDON)
    return build_email(
        sender=people.sender, to=people.to, cc=people.cc,
        subject=subject or f"Application: {definition_of(programme_id).short_title}",
        body_text="Dear Maths Hub team,\n\nPlease find attached our application form.\n\nKind regards,\nSchool Office",
        attachments=[(filename, attachment, content_type), *extra_attachments],
        date=received, received=received, **kwargs,
    )

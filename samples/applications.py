"""Whole applications for tests, benchmarks and the demo: realistic answers for every programme, filled into the
blank form (in any fill style), saved as .docx or PDF, and wrapped in the e-mail a school would send.

Field placement comes from the programme definitions themselves (section, label, occurrence, prompt), so a new
programme file is enough to build its test applications too.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from rules.calendar import LONDON
from rules.definitions import ProgrammeDefinition, load_registry
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

_STATEMENT = ("We are committed to teaching for mastery across the department. Our teachers have begun using "
              "small-step lesson design and would value working with other schools to deepen this work. ")


@cache
def programme(programme_id: str) -> ProgrammeDefinition:
    found = load_registry().get(programme_id)
    assert found is not None, programme_id
    return found


def complete_answers(programme_id: str, school: School = SCHOOLS[0]) -> dict[str, str]:
    """A correct answer for every field of the programme, as a careful school would give."""
    p = programme(programme_id)
    answers: dict[str, str] = {}
    for f in p.fields:
        role, _, part = f.id.partition(".")
        person = school.person(role)
        if f.id == "school.name":
            value = school.name
        elif f.id == "school.address":
            value = f"{school.street}, {_TOWNS.get(programme_id, 'Darlington, DL1 4AB')}"
        elif f.id == "school.urn":
            value = school.urn
        elif f.id == "school.telephone":
            value = "01325 460 123"
        elif f.id == "school.local_authority":
            value = "Buckinghamshire"
        elif f.id == "maths_hub":
            value = {"primary-tfm-wg-2020": "BBO Maths Hub", "secondary-tfm-wg-2024": "Central",
                     "primary-mastery-readiness-2018": "Archimedes NE"}[programme_id]
        elif f.id == "group.requested":
            value = "No"
        elif f.id == "specialist.engaged":
            value = "Yes"
        elif f.id == "specialist.details":
            value = "Jo Brown, Mastery Specialist: two years of lesson study with our Year 7 team."
        elif f.id.startswith("group."):
            value = ""
        elif person and part == "name":
            value = person[0]
        elif person and part == "email":
            value = person[1]
        elif person and part == "trn":
            value = person[2]
        elif part == "telephone":
            value = "07700 900123"
        elif part == "year_groups":
            value = "Year 5 and Year 6" if programme_id.startswith("primary") else "Years 7, 8 and 10"
        elif part == "role":
            value = "Maths lead; Year 6 class teacher"
        elif part == "ncetm_username":
            value = "kwright_maths"
        elif part == "statement":
            value = _STATEMENT * 3
        else:
            value = "Something sensible"
        if value:
            answers[f.id] = value
    return answers


def fill_form(programme_id: str, answers: Mapping[str, str | None], *, style: FillStyle = FillStyle.VALUE_CELL,
              styles: Mapping[str, FillStyle] | None = None) -> bytes:
    """The programme's blank form with ``answers`` typed in; ``styles`` overrides the fill style per field."""
    p = programme(programme_id)
    filler = FormFiller(form_path(FORM_FILES[programme_id]))
    for f in p.fields:
        value = answers.get(f.id)
        if not value:
            continue
        how = (styles or {}).get(f.id, style)
        if f.prompt:
            if how is FillStyle.LABEL_CELL:
                how = FillStyle.VALUE_CELL
            filler.fill_below(f.section, value, how=how, occurrence=f.section_occurrence)
        else:
            filler.fill(f.section, f.label, value, how=how, occurrence=f.section_occurrence,
                        label_occurrence=f.label_occurrence)
    return filler.to_docx()


@dataclass(frozen=True)
class Correspondents:
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]


def correspondents(programme_id: str, answers: Mapping[str, str | None], pattern: str = "all") -> Correspondents:
    """Who a school puts on the e-mail. ``pattern``: all (office sends, every signatory in Cc), one_missing,
    none, sender_is_signatory, in_to (signatories in To), upper (upper-case addresses with display names)."""
    p = programme(programme_id)
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


def application_email(programme_id: str, attachment: bytes, *, filename: str = "Application form.docx",
                      content_type: str = DOCX_TYPE, answers: Mapping[str, str | None] | None = None,
                      pattern: str = "all", received: datetime | None = None, subject: str | None = None,
                      extra_attachments: Sequence[tuple[str, bytes, str]] = (), **kwargs) -> bytes:
    """The e-mail carrying a filled form to the programme's hub, copied as ``pattern`` says."""
    answers = complete_answers(programme_id) if answers is None else answers
    people = correspondents(programme_id, answers, pattern)
    received = received or datetime(2016, 12, 1, 10, 30, tzinfo=LONDON)
    return build_email(
        sender=people.sender, to=people.to, cc=people.cc,
        subject=subject or f"Application: {programme(programme_id).short_title}",
        body_text="Dear Maths Hub team,\n\nPlease find attached our application form.\n\nKind regards,\nSchool Office",
        attachments=[(filename, attachment, content_type), *extra_attachments],
        date=received, received=received, **kwargs,
    )

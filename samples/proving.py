"""The engine of ``hubbot programme test``: prove that a programme definition reads its own blank form.

Everything is driven by the definition alone. The blank form is filled in code the ways schools fill it (typed in
the answer cell or after the label, content controls, tracked changes, pasted tables, hyperlinks; as .docx and as a
PDF saved by LibreOffice), sent as a school would send it with every signatory copied, and run through the bot's
own ``rules.pipeline.assess``: each must come back complete, as this programme, with every value as typed. Then
each required field is left empty in turn and must be reported missing; every other known programme's filled form
must not be taken for this one; and the recognition margin (this programme's score on its own form minus the next
best) is measured. Each failure is one line a hub's staff can act on.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from enum import StrEnum
from pathlib import Path

from parsers.docx_form import read_docx
from parsers.types import Limits
from rules.calendar import LONDON
from rules.definitions import FieldDefinition, ProgrammeDefinition, Registry
from rules.hubs import HubDirectory
from rules.pipeline import CheckSettings, assess
from rules.recognise import recognise
from rules.validators import VALIDATORS
from rules.verdict import Status, Verdict
from samples.applications import FORM_FILES, application_email, complete_answers, fill_form
from samples.forms import FillStyle, FormFiller, form_path
from samples.pdf import docx_to_pdf, libreoffice_available

PDF_TYPE = "application/pdf"

# How each fill style reads in a report, in the words a hub would use.
STYLES: dict[FillStyle, str] = {
    FillStyle.VALUE_CELL: "typed in the answer cells",
    FillStyle.LABEL_CELL: "typed after the labels",
    FillStyle.HINT_LEFT: "typed after the printed hints",
    FillStyle.INLINE_CONTENT_CONTROL: "typed in content controls",
    FillStyle.BLOCK_CONTENT_CONTROL: "typed in cell-wide content controls",
    FillStyle.PARAGRAPH_CONTENT_CONTROL: "typed in paragraph content controls",
    FillStyle.TRACKED_INSERT: "typed with Track Changes on",
    FillStyle.MULTI_PARAGRAPH: "typed over several paragraphs",
    FillStyle.SOFT_BREAKS: "typed with line breaks",
    FillStyle.NESTED_TABLE: "pasted as small tables",
    FillStyle.HYPERLINK: "typed as Word hyperlinks",
}


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    SKIP = "skip"
    NOTE = "note"


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str = ""

    def line(self) -> str:
        return f"{self.outcome.value:<4}  {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Proof:
    programme: str
    checks: tuple[Check, ...]
    margin: float | None          # this programme's recognition score on its filled form minus the next best
    nearest: str | None           # the next best programme on that form

    @property
    def passed(self) -> bool:
        return all(c.outcome is not Outcome.FAIL for c in self.checks)

    def count(self, outcome: Outcome) -> int:
        return sum(c.outcome is outcome for c in self.checks)


def _collapse(value: str | None) -> str:
    return " ".join((value or "").split())


def expected_value(f: FieldDefinition, answer: str) -> str:
    """What the bot should hold for a typed answer: the validator's normal form, white space collapsed; an address
    compared without its commas (lines typed apart are joined with them)."""
    value = _collapse(VALIDATORS[f.validator](answer).value)
    return _collapse(value.replace(",", " ")) if f.validator == "address" else value


def _got(f: FieldDefinition, value: str | None) -> str:
    got = _collapse(value)
    return _collapse(got.replace(",", " ")) if f.validator == "address" else got


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _named(f: FieldDefinition) -> str:
    return f"'{_short(f.label, 50)}' ({f.id})"


def wrong_values(definition: ProgrammeDefinition, verdict: Verdict, answers: Mapping[str, str]) -> list[str]:
    out = []
    for f in definition.fields:
        answer = answers.get(f.id)
        got = verdict.fields.get(f.id)
        if not answer:
            if got:
                out.append(f"{_named(f)} read as '{_short(got)}' but nothing was typed")
            continue
        want = expected_value(f, answer)
        if _got(f, got) != want:
            out.append(f"{_named(f)} {_difference(_got(f, got), want)}")
    return out


def _difference(got: str, want: str) -> str:
    """Where a read value parts from the typed one, short enough for one line."""
    if len(got) <= 40 and len(want) <= 40:
        return f"read as '{got}' instead of '{want}'"
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    start = max(0, at - 15)
    return (f"differs at character {at + 1}: read '...{got[start:at + 20]}...' where the form has "
            f"'...{want[start:at + 20]}...'")


def fill(definition: ProgrammeDefinition, blank: Path, answers: Mapping[str, str], style: FillStyle) -> bytes:
    if style is not FillStyle.LABEL_CELL:
        return fill_form(definition, answers, style=style, blank=blank)
    # Typed after the label, last field first: the filler finds a repeated label by its printed text, which typing
    # after the first one would change.
    filler = FormFiller(blank)
    for f in reversed(definition.fields):
        value = answers.get(f.id)
        if not value:
            continue
        if f.prompt:
            filler.fill_below(f.section, value, occurrence=f.section_occurrence, prompt=f.prompt)
        else:
            filler.fill(f.section, f.label, value, how=style, occurrence=f.section_occurrence,
                        label_occurrence=f.label_occurrence)
    return filler.to_docx()


def _received(definition: ProgrammeDefinition) -> datetime:
    # A week before the deadline, so no form is flagged late.
    day = (definition.deadline - timedelta(days=7)) if definition.deadline else datetime(2016, 12, 1).date()
    return datetime.combine(day, time(10, 30), tzinfo=LONDON)


def test_registry(definition: ProgrammeDefinition, registry: Registry) -> Registry:
    """The registry the bot would have with this file in ``programmes_dir``: it first (as files there are), any
    programme with its id replaced."""
    others = tuple(p for p in registry.programmes if p.id != definition.id)
    return replace(registry, programmes=(definition, *others))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _known_blanks(registry: Registry, extra: Mapping[str, Path]) -> dict[str, Path]:
    blanks = {pid: form_path(name) for pid, name in FORM_FILES.items() if registry.get(pid) is not None}
    blanks.update({pid: path for pid, path in extra.items() if registry.get(pid) is not None})
    return blanks


class _Prover:
    def __init__(self, definition: ProgrammeDefinition, blank: Path, registry: Registry,
                 blanks: Mapping[str, Path]) -> None:
        self.definition, self.blank = definition, blank
        self.registry = test_registry(definition, registry)
        self.settings = CheckSettings(registry=self.registry, hubs=HubDirectory.builtin(self.registry))
        self.answers = complete_answers(definition, every_field=True)
        self.blanks = _known_blanks(self.registry, blanks)
        self.checks: list[Check] = []

    def add(self, name: str, outcome: Outcome, detail: str = "") -> None:
        self.checks.append(Check(name, outcome, detail))

    def send(self, attachment: bytes, answers: Mapping[str, str], *, pdf: bool = False) -> Verdict:
        kwargs = {"filename": "Application form.pdf", "content_type": PDF_TYPE} if pdf else {}
        # Every signatory of the complete answers is copied, whatever was left out of the form.
        raw = application_email(self.definition, attachment, answers=self.answers, received=_received(
            self.definition), **kwargs)
        return assess(raw, self.settings)

    def judge_complete(self, name: str, verdict: Verdict) -> None:
        problems: list[str] = []
        if verdict.programme != self.definition.id:
            problems.append(f"the form was taken for {verdict.programme or 'no known programme'}")
        else:
            if verdict.status is not Status.COMPLETE:
                reported = [i.field for i in verdict.issues]
                uncopied = [s.role for s in verdict.signatories if not s.copied]
                problems.append(f"status {verdict.status.value}" + (f" (said: {', '.join(reported[:4])})"
                                                                    if reported else "")
                                + (f" (signatories not copied: {', '.join(uncopied)})" if uncopied else ""))
            problems += [f"flagged {flag.code.value}: {_short(flag.detail, 60)}" for flag in verdict.flags]
            problems += wrong_values(self.definition, verdict, self.answers)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            self.add(name, Outcome.FAIL, "; ".join(problems[:3]) + more)
        else:
            self.add(name, Outcome.PASS)

    def filled_styles(self) -> bytes | None:
        plain = None
        for style, words in STYLES.items():
            name = f"docx {words}"
            try:
                docx = fill(self.definition, self.blank, self.answers, style)
            except (LookupError, ValueError) as exc:
                self.add(name, Outcome.FAIL, f"could not fill the form: {exc} (check the section and label in the "
                                             f"definition against the printed form)")
                continue
            if style is FillStyle.VALUE_CELL:
                plain = docx
            self.judge_complete(name, self.send(docx, self.answers))
        return plain

    def pdf(self, docx: bytes) -> None:
        name = "PDF saved from Word (LibreOffice)"
        if not libreoffice_available():
            self.add(name, Outcome.SKIP, "LibreOffice is not installed here, so no PDF could be made")
            return
        try:
            pdf = docx_to_pdf(docx)
        except Exception as exc:   # a converter crash is the machine's problem, not the definition's
            self.add(name, Outcome.SKIP, f"LibreOffice could not convert the form ({type(exc).__name__})")
            return
        self.judge_complete(name, self.send(pdf, self.answers, pdf=True))

    def blanking(self) -> None:
        needed = [f for f in self.definition.fields if f.required or (
            f.required_when and (self.answers.get(f.required_when.field) or "").lower() == f.required_when.equals)]
        failures = 0
        for f in needed:
            answers = {k: v for k, v in self.answers.items() if k != f.id}
            try:
                verdict = self.send(fill(self.definition, self.blank, answers, FillStyle.VALUE_CELL), answers)
            except (LookupError, ValueError) as exc:
                self.add(f"leaving {_named(f)} empty", Outcome.FAIL, f"could not fill the form: {exc}")
                failures += 1
                continue
            if f.id not in verdict.missing_fields:
                failures += 1
                said = ", ".join(verdict.missing_fields) or "nothing missing"
                self.add(f"leaving {_named(f)} empty", Outcome.FAIL,
                         f"not reported missing (status {verdict.status.value}; missing: {said})")
        if not failures:
            self.add(f"each of the {len(needed)} required fields left empty in turn", Outcome.PASS,
                     "each reported missing")

    def recognition(self, docx: bytes | None) -> tuple[float | None, str | None]:
        own_digest = _digest(self.blank)
        checked = taken = 0
        for other in self.registry.programmes:
            if other.id == self.definition.id or other.id not in self.blanks:
                continue
            path = self.blanks[other.id]
            if _digest(path) == own_digest:
                self.add(f"{other.id}'s form", Outcome.NOTE,
                         f"it is this same blank form: with this file installed, its forms are read as "
                         f"{self.definition.id} (programmes_dir comes first); draft with --from {other.id} to keep "
                         f"its ids")
                continue
            try:
                theirs = fill_form(other, complete_answers(other), blank=path)
            except (LookupError, ValueError, KeyError) as exc:
                self.add(f"{other.id}'s form", Outcome.SKIP, f"could not fill it ({exc})")
                continue
            checked += 1
            found = recognise(read_docx(theirs, Limits()), self.registry)
            if found is not None and found.programme.id == self.definition.id:
                taken += 1
                self.add(f"{other.id}'s filled form", Outcome.FAIL,
                         f"taken for {self.definition.id}: make [recognise] title_patterns match only this form's "
                         f"title")
        if checked > taken:
            self.add(f"{checked - taken} other known programmes' filled forms", Outcome.PASS,
                     f"none taken for {self.definition.id}")
        if docx is None:
            return None, None
        return self.margin(read_docx(docx, Limits()), own_digest)

    def margin(self, document, own_digest: str) -> tuple[float | None, str | None]:
        """This programme's score on its own filled form minus the best other programme's (one read from this very
        blank form is left out: it was noted above)."""
        scores = {}
        for p in self.registry.programmes:
            same_form = p.id in self.blanks and _digest(self.blanks[p.id]) == own_digest
            if p.id != self.definition.id and same_form:
                continue
            if (r := recognise(document, Registry((p,)))) is not None:
                scores[p.id] = r.score
        own = scores.pop(self.definition.id, None)
        if own is None:
            self.add("recognition", Outcome.FAIL, f"the filled form is not recognised as {self.definition.id} at "
                                                  f"all: check the title_patterns, sections and labels")
            return None, None
        if not scores:
            return own, None
        nearest = max(scores, key=scores.get)
        margin = own - scores[nearest]
        if margin <= 0:
            self.add("recognition", Outcome.FAIL, f"{nearest} scores {scores[nearest]:.2f} on this form against "
                                                  f"{own:.2f}: make [recognise] title_patterns match only this form")
        return margin, nearest


def prove(definition: ProgrammeDefinition, blank: Path, registry: Registry, *, pdf: bool = True,
          blanks: Mapping[str, Path] | None = None) -> Proof:
    """Run every check of ``programme test`` on ``definition`` with its blank form. ``registry`` is every other
    programme the bot knows (the definition is added first, replacing one with its id); ``blanks`` gives the blank
    forms of programmes that are not built in (id to path), so their forms are checked against this one too."""
    prover = _Prover(definition, blank, registry, blanks or {})
    plain = prover.filled_styles()
    if pdf and plain is not None:
        prover.pdf(plain)
    elif not pdf:
        prover.add("PDF saved from Word", Outcome.SKIP, "left out (--no-pdf)")
    prover.blanking()
    margin, nearest = prover.recognition(plain)
    return Proof(definition.id, tuple(prover.checks), margin, nearest)

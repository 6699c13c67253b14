"""Read a form's neutral content (headings, paragraphs, tables) against a programme definition: for every field,
whether its printed label (or a statement's prompt) was found and where, the answer in its answer space, and how
sure the reading is.

Labels, prompts, headings and hints are compared through ``rules.labels``, so next year's form (years changed, a
typo fixed, "E-mail" become "Email", a label reworded a little) is read like last year's. The document is cut into
sections at its headings; inside a section every table cell is first classified (a label of one of this section's
fields, other printed text of the form, a hint, or an answer), and only then are answers read: a label owns the
cells to its right up to the next printed text (or, with nothing to its right, the row below), or what was typed
after it in its own cell. Printed text (another field's label, a heading, a hint) is never taken into an answer.
Where a label is printed for several people in one section ("Email" for the head and for the head of department),
whose it is comes from its row: the ``<role>.name`` label in the same row, else in the row directly above; never
from counting, so a moved row cannot swap two people's addresses.

A field is ``found`` only when its label was found; an answer is ``untrusted`` (with the reason) when reading it
would mean guessing: whose repeated label it is, several separate texts in one answer space, another label's text
inside the answer, a label with no answer space. The checks report only found-and-trusted empty answers as
missing; everything else is unsure, for a person. Pure: bytes never reach here.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from parsers.types import Cell, DocumentKind, FormDocument, Paragraph, Table
from rules.definitions import FieldDefinition, ProgrammeDefinition
from rules.labels import LabelMatch, best_match, clean_label, label_key, starts_with_label
from rules.text import normalise, normalise_keep_case, strip_hints

# After a label typed into its own cell, one of these must come before the answer ("Name of school: St Anne's").
_SEPARATORS = ":-–—=\n\t (*"
# How closely a cell must match a label of another section to be taken for that printed label (and so never an
# answer): a loose likeness to a label that does not belong here is more likely a school's answer.
_OTHER_SECTION_LABEL = 0.95
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Place:
    """Where a field's label (or prompt) is: the section heading as printed, and the cell (the table's index among
    the document's tables, then row and column, from 0)."""

    section: str
    table: int
    row: int
    col: int


@dataclass(frozen=True)
class FieldReading:
    field: str
    found: bool                       # its label or prompt was found in its section
    answer: str | None = None         # what its answer space holds, hints removed; None when empty
    printed: str | None = None        # the label (or prompt) as printed on this form
    place: Place | None = None
    score: float = 0.0                # similarity of the printed label to the definition's (1.0: the same)
    margin: float = 0.0               # over the next-best known label for that printed text
    untrusted: str | None = None      # why the answer (or whose it is) cannot be trusted; None when it can

    @property
    def sure(self) -> bool:
        """Found, and its answer (even an empty one) can be told to the school."""
        return self.found and self.untrusted is None

    @property
    def doubt(self) -> str | None:
        """Why this field cannot be reported with certainty, or None."""
        if self.untrusted:
            return self.untrusted
        return None if self.found else "its label was not found on the form"

    def to_record(self) -> dict[str, object]:
        return {"found": self.found, "printed": self.printed, "score": round(self.score, 3),
                "margin": round(self.margin, 3), "untrusted": self.untrusted,
                "place": None if self.place is None else [self.place.section, self.place.table, self.place.row,
                                                          self.place.col]}


@dataclass(frozen=True)
class FormReading:
    """A reading of every field of the programme, in the definition's order."""

    readings: Mapping[str, FieldReading]

    @property
    def answers(self) -> dict[str, str | None]:
        return {fid: r.answer for fid, r in self.readings.items()}

    def __getitem__(self, field_id: str) -> FieldReading:
        return self.readings[field_id]


class _Kind(Enum):
    EMPTY = "empty"       # nothing, or only hint text: an empty answer space
    LABEL = "label"       # a label of one of this section's fields (perhaps with an answer typed after it)
    PRINTED = "printed"   # any other printed text of the form: another field's label, a heading, a prompt
    ANSWER = "answer"


@dataclass(frozen=True)
class _Cell:
    kind: _Kind
    key: str = ""                        # LABEL: the label key it matched
    printed: str = ""                    # LABEL: the label part as printed
    rest: str = ""                       # LABEL: text typed after the label in the same cell
    score: float = 0.0
    margin: float = 0.0
    prefix: bool = False                 # LABEL: the label began the cell, with an answer typed after it


@dataclass(frozen=True)
class _Row:
    table: int
    index: int
    cells: tuple[Cell, ...]


@dataclass(frozen=True, eq=False)   # compared and hashed by identity: one per programme, a cache key
class _Known:
    """Everything printed on a programme's form that the reader must recognise, by label key."""

    owners: Mapping[str, tuple[str, ...]]    # label key -> field ids with that label
    labels: tuple[str, ...]                  # one label text per key (for fuzzy matching), owners' order
    keys: tuple[str, ...]                    # their keys, in the same order
    long_keys: tuple[tuple[str, str], ...]   # (key, label) of labels of two words or more
    printed: tuple[str, ...]                 # other printed text that may sit in a table: headings and prompts
    prompts: Mapping[str, str]               # field id -> prompt
    hints: tuple[str, ...]
    sections: tuple[str, ...]                # distinct section headings, in order
    fields_by_section: Mapping[tuple[str, int], tuple[FieldDefinition, ...]]


_KNOWN: dict[str, _Known] = {}


def _known(programme: ProgrammeDefinition) -> _Known:
    cache_key = programme.source + "\0" + programme.id
    known = _KNOWN.get(cache_key)
    if known is None:
        owners: dict[str, list[str]] = {}
        labels: list[str] = []
        for f in programme.fields:
            if f.prompt:
                continue
            key = label_key(f.label)
            if key not in owners:
                owners[key] = []
                labels.append(f.label)
            owners[key].append(f.id)
        sections = tuple(dict.fromkeys(programme.sections))
        # Signatory titles ("Head of department") are left out: they are also answers (a teacher's role).
        printed = (*sections, *(f.prompt for f in programme.fields if f.prompt))
        by_section: dict[tuple[str, int], list[FieldDefinition]] = {}
        for f in programme.fields:
            by_section.setdefault((f.section, f.section_occurrence), []).append(f)
        keys = tuple(label_key(label) for label in labels)
        known = _Known({k: tuple(v) for k, v in owners.items()}, tuple(labels), keys,
                       tuple((k, label) for k, label in zip(keys, labels) if len(k.split()) >= 2),
                       tuple(p for p in printed if p),
                       {f.id: f.prompt for f in programme.fields if f.prompt},
                       tuple(h for h in programme.hints if label_key(h)), sections,
                       {k: tuple(v) for k, v in by_section.items()})
        _KNOWN[cache_key] = known
    return known


# ---- the walk ----------------------------------------------------------------------------------------------------

@dataclass
class _Section:
    name: str                 # the definition's heading
    occurrence: int
    printed: str              # as printed on this form
    blocks: list[tuple[int, Table | Paragraph]]   # tables (with their document index) and paragraphs, in order


def _sections(document: FormDocument, known: _Known) -> list[_Section]:
    """The document cut at its section headings (matched loosely; a repeated heading counts its occurrences)."""
    out: list[_Section] = []
    seen: dict[str, int] = {}
    table_index = -1
    for block in document.blocks:
        if isinstance(block, Table):
            table_index += 1
            if out:
                out[-1].blocks.append((table_index, block))
            continue
        heading = _heading(block.text, known.sections)
        if heading is None:
            if out:
                out[-1].blocks.append((-1, block))
            continue
        if heading:
            seen[heading] = seen.get(heading, 0) + 1
        out.append(_Section(heading, seen.get(heading, 0), " ".join(block.text.split()), []))
    return out


@lru_cache(maxsize=4096)
def _heading(text: str, sections: tuple[str, ...]) -> str | None:
    """The definition's heading this paragraph is, "" for a heading the definition does not have but that is
    shaped like one of its own ("Teacher 3" on a form with "Teacher 1" and "Teacher 2": what follows belongs to
    none of the known sections), or None for ordinary text."""
    if not text.strip() or len(text) > 200:
        return None
    text = text.rstrip().rstrip(":")
    match = best_match(text, sections)
    if match is not None:
        return sections[match.index]
    numbered = [_DIGITS.sub("#", s) for s in sections if _DIGITS.search(s)]
    if numbered and _DIGITS.search(text) and best_match(_DIGITS.sub("#", text), numbered) is not None:
        return ""
    return None


def map_fields(document: FormDocument, programme: ProgrammeDefinition) -> FormReading:
    """Every field of the programme, read from the document (see the module docstring)."""
    known = _known(programme)
    readings: dict[str, FieldReading] = {}
    pdf = document.kind is DocumentKind.PDF
    for section in _sections(document, known):
        fields = [f for f in known.fields_by_section.get((section.name, section.occurrence), ())
                  if f.id not in readings]
        if fields:
            readings.update(_read_section(section, fields, known, programme, pdf))
    return FormReading({f.id: readings.get(f.id) or FieldReading(f.id, found=False) for f in programme.fields})


# ---- one section -------------------------------------------------------------------------------------------------

def _read_section(section: _Section, fields: list[FieldDefinition], known: _Known, programme: ProgrammeDefinition,
                  pdf: bool) -> dict[str, FieldReading]:
    rows = [_Row(t, i, row) for t, block in section.blocks if isinstance(block, Table)
            for i, row in enumerate(block.rows)]
    labelled = [f for f in fields if not f.prompt]
    wanted = frozenset(label_key(f.label) for f in labelled)
    kinds = [[_classify(cell, wanted, known, programme.hints) for cell in row.cells] for row in rows]
    _demote_answers_after_labels(kinds)
    out: dict[str, FieldReading] = {}

    # Statement boxes: the printed prompt, the answer under it.
    for f in fields:
        if f.prompt:
            out[f.id] = _read_statement(f, section, rows, kinds, pdf)

    # Which label cells belong to which field.
    by_key: dict[str, list[FieldDefinition]] = {}
    for f in labelled:
        by_key.setdefault(label_key(f.label), []).append(f)
    cells_for: dict[str, list[tuple[int, int]]] = {f.id: [] for f in labelled}
    unresolved: dict[str, list[tuple[int, int]]] = {}
    for r, row_kinds in enumerate(kinds):
        for c, k in enumerate(row_kinds):
            if k.kind is not _Kind.LABEL or k.key not in by_key:
                continue
            owners = by_key[k.key]
            if len(owners) == 1:
                cells_for[owners[0].id].append((r, c))
                continue
            role = _role_of(r, c, kinds, by_key, {o.role for o in owners})
            owner = next((o for o in owners if o.role == role), None)
            if owner is None:
                unresolved.setdefault(k.key, []).append((r, c))
            else:
                cells_for[owner.id].append((r, c))

    for f in labelled:
        places = cells_for[f.id]
        key = label_key(f.label)
        twins = len(by_key[key]) > 1
        if len(places) > 1 and not twins:
            # The same label twice for one field (a heading the reader missed, a pasted row): its row may say whose.
            mine = [p for p in places if _role_of(p[0], p[1], kinds, by_key, {f.role}) == f.role]
            places = mine if len(mine) == 1 else places
        if not places:
            if unresolved.get(key):
                out[f.id] = FieldReading(f.id, found=False, untrusted=(
                    f"'{clean_label(f.label)}' is printed for more than one person here, and its row does not say whose "
                    f"this is"))
            else:
                out[f.id] = FieldReading(f.id, found=False)
            continue
        if len(places) > 1:
            r, c = places[0]
            out[f.id] = FieldReading(f.id, found=True, printed=kinds[r][c].printed,
                                     place=_place(section, rows[r], c), score=kinds[r][c].score,
                                     margin=kinds[r][c].margin, untrusted=(
                                         f"its label is printed {len(places)} times in this section"))
            continue
        out[f.id] = _read_labelled(f, places[0], section, rows, kinds, known, programme)
    return out


def _place(section: _Section, row: _Row, col: int) -> Place:
    return Place(section.printed, row.table, row.index, col)


# ---- classifying cells -------------------------------------------------------------------------------------------

@lru_cache(maxsize=16384)
def _stripped(text: str, hints: tuple[str, ...]) -> str:
    """``strip_hints``, remembered: the same printed cells come back in every copy of a form."""
    return strip_hints(text, hints)


def _classify(cell: Cell, wanted: frozenset[str], known: _Known, hints: tuple[str, ...]) -> _Cell:
    text = cell.text
    # Printed hints go first: what is left is what was typed ("(This is not your password...) kwright_maths").
    stripped = _stripped(text, hints) if text else ""
    if not stripped:
        return _Cell(_Kind.EMPTY)
    return _classify_text(stripped, wanted, known)


@lru_cache(maxsize=8192)
def _classify_text(text: str, wanted: frozenset[str], known: _Known) -> _Cell:
    key = label_key(text)
    if not key:
        return _Cell(_Kind.ANSWER)
    whole = _whole_label(text, known)
    if whole is not None and whole[1].score == 1.0:
        return _label_or_printed(text, whole, wanted)   # the printed label cell of a blank form: the usual case
    # A label with the answer typed after it in the same cell. A long label with a short answer after it can
    # also read loosely as the whole label ("Which Maths Hub are you applying to?: BBO"): the better reading wins.
    prefixed = _label_prefix(text, wanted, known)
    if prefixed is not None and (whole is None or prefixed.score > whole[1].score):
        return prefixed
    if whole is not None:
        return _label_or_printed(text, whole, wanted)
    if _is_printed(text, known):
        return _Cell(_Kind.PRINTED)
    return _Cell(_Kind.ANSWER)


def _label_or_printed(text: str, whole: tuple[str, LabelMatch], wanted: frozenset[str]) -> _Cell:
    found_key, match = whole
    if found_key in wanted:
        return _Cell(_Kind.LABEL, found_key, " ".join(text.split()), "", match.score, match.margin)
    if match.score >= _OTHER_SECTION_LABEL:
        return _Cell(_Kind.PRINTED)   # another section's label: printed text, never an answer
    # Only loosely like a label this section does not have ("Head of department" beside "Role"): an answer.
    return _Cell(_Kind.ANSWER)


def _whole_label(text: str, known: _Known) -> tuple[str, LabelMatch] | None:
    if len(text) > 300:
        return None
    match = best_match(text, known.labels)
    if match is None:
        return None
    return label_key(known.labels[match.index]), match


def _is_printed(text: str, known: _Known) -> bool:
    """Headings, signatory titles, prompts and hints printed on the form (loosely: next year's may be reworded)."""
    if len(text) > 600:
        return False
    if best_match(text, known.printed) is not None or best_match(text, known.hints) is not None:
        return True
    return False


def _label_prefix(text: str, wanted: frozenset[str], known: _Known) -> _Cell | None:
    """A label of this section with an answer typed after it in the same cell ("Name of school: St Anne's"), or
    None. The longest known label that begins the cell wins ("Name of school", not "Name"); when that is not one
    of this section's labels the cell is an answer that merely starts with a label's words."""
    flat = normalise_keep_case(text)
    spans = list(re.finditer(r"\S+", flat))
    if len(spans) < 2:
        return None
    head = set(label_key(" ".join(m.group() for m in spans[:3])).split())
    best: tuple[bool, int, float, str] | None = None      # (ends at a colon, words taken, score, label)
    for label in known.labels:
        key_words = label_key(label).split()
        # Cheap filter: one of the label's first words (a word may have been added in front) opens the cell.
        if not key_words or not set(key_words[:2]) & head:
            continue
        hits: list[tuple[float, int]] = []
        exact = _label_pattern(label).match(flat)
        if exact is not None:
            after = flat[exact.end():]
            # "Name" must not match "Names of schools"
            if not after or after[0] in _SEPARATORS or label.rstrip().endswith((":", "?")):
                hits.append((1.0, sum(1 for m in spans if m.start() < exact.end())))
        loose = starts_with_label(flat, label, prefer_colon=True)
        if loose is not None:
            hits.append(loose)
        for score, taken in hits:
            if taken >= len(spans):
                continue
            # Where the school put a colon (or the label its question mark) is where the label ends.
            candidate = (_ends_label(flat, spans, taken), taken, score, label)
            if best is None or candidate[:3] > best[:3]:
                best = candidate
    if best is None:
        return None
    _, taken, score, label = best
    key = label_key(label)
    if key not in wanted:
        return None
    rest = flat[spans[taken - 1].end():].lstrip(":-–—= \t*").strip()
    if not rest:
        return None
    printed = flat[:spans[taken - 1].end()]
    match = best_match(printed, known.labels)
    return _Cell(_Kind.LABEL, key, " ".join(printed.split()), rest, score, match.margin if match else 0.0,
                 prefix=True)


def _ends_label(flat: str, spans: list[re.Match[str]], taken: int) -> bool:
    last = spans[taken - 1]
    return last.group()[-1] in ":?" or flat[last.end():].lstrip(" \t")[:1] in ("\n", ":", "-", "–", "—", "=")


@lru_cache(maxsize=1024)
def _label_pattern(label: str) -> re.Pattern[str]:
    words = normalise(label).split()
    return re.compile(r"\s*" + r"\s+".join(re.escape(w) for w in words), re.IGNORECASE)


def _demote_answers_after_labels(kinds: list[list[_Cell]]) -> None:
    """A cell right of a printed label is that label's answer space: an answer there that happens to begin with a
    label's words ("Head of department: ...") is still an answer, not a second label."""
    for row_kinds in kinds:
        for c in range(1, len(row_kinds)):
            k = row_kinds[c]
            if k.kind is _Kind.LABEL and k.prefix and row_kinds[c - 1].kind is _Kind.LABEL \
                    and not row_kinds[c - 1].prefix:
                row_kinds[c] = _Cell(_Kind.ANSWER)


# ---- whose repeated label ----------------------------------------------------------------------------------------

def _role_of(r: int, c: int, kinds: list[list[_Cell]], by_key: Mapping[str, list[FieldDefinition]],
             roles: set[str]) -> str | None:
    """The person a label at (r, c) belongs to: the ``<role>.name`` label in the same row (nearest to its left,
    else its right), else in the row directly above (in the same column when that row names several)."""
    def names(row: int) -> list[tuple[int, str]]:
        found = []
        for col, k in enumerate(kinds[row]):
            if k.kind is _Kind.LABEL:
                for f in by_key.get(k.key, ()):
                    if f.id.endswith(".name") and f.role in roles and len(by_key[k.key]) == 1:
                        found.append((col, f.role))
        return found

    same = names(r)
    left = [(col, role) for col, role in same if col < c]
    if left:
        return max(left)[1]
    if same:
        return min(same)[1]
    if r > 0:
        above = names(r - 1)
        if len({role for _, role in above}) == 1:
            return above[0][1]
        aligned = [role for col, role in above if col == c]
        if len(aligned) == 1:
            return aligned[0]
    return None


# ---- answers -----------------------------------------------------------------------------------------------------

def _read_labelled(f: FieldDefinition, at: tuple[int, int], section: _Section, rows: list[_Row],
                   kinds: list[list[_Cell]], known: _Known, programme: ProgrammeDefinition) -> FieldReading:
    r, c = at
    label = kinds[r][c]
    row = rows[r]
    space: list[Cell] = []
    for col in range(c + 1, len(row.cells)):
        if kinds[r][col].kind in (_Kind.LABEL, _Kind.PRINTED):
            break
        space.append(row.cells[col])
    if not space and not label.rest and r + 1 < len(rows) and rows[r + 1].table == row.table:
        # Nothing to its right: the answer box may be the row below ("Address" over a wide box).
        below = kinds[r + 1]
        if below and all(k.kind in (_Kind.EMPTY, _Kind.ANSWER) for k in below):
            space = list(rows[r + 1].cells)
    base = dict(field=f.id, found=True, printed=label.printed, place=_place(section, row, c), score=label.score,
                margin=label.margin)
    values = [v for v in (_stripped(cell.text, programme.hints) for cell in space) if v]
    if not space and not label.rest:
        return FieldReading(**base, untrusted="no answer space was found next to its label")
    if len(values) > 1:
        return FieldReading(**base, answer="\n".join(values), untrusted=(
            "its answer space holds several separate pieces of text"))
    answer = values[0] if values else _stripped(label.rest, programme.hints)
    intruder = _printed_inside(answer, f, known) if answer else None
    if intruder:
        return FieldReading(**base, answer=answer, untrusted=f"the answer contains the printed label '{intruder}'")
    return FieldReading(**base, answer=answer or None)


def _printed_inside(answer: str, f: FieldDefinition, known: _Known) -> str | None:
    """Another field's label inside an answer: a whole line of it, or, in a one-line answer, its words. Such an
    answer took in printed text of the form and cannot be trusted."""
    own = label_key(f.label)
    for line in answer.splitlines():
        key = label_key(line) if len(line) <= 200 else ""
        if key and key != own and key in known.owners:
            return clean_label(known.labels[known.keys.index(key)])
    if f.validator != "statement":
        flat = f" {label_key(answer)} "
        for key, label in known.long_keys:
            if key != own and f" {key} " in flat:
                return clean_label(label)
    return None


def _read_statement(f: FieldDefinition, section: _Section, rows: list[_Row], kinds: list[list[_Cell]],
                    pdf: bool) -> FieldReading:
    prompt = f.prompt or ""
    for r, row in enumerate(rows):
        for c, cell in enumerate(row.cells):
            hit = _prompt_hit(cell, prompt, pdf)
            if hit is None:
                continue
            score, same_cell = hit
            base = dict(field=f.id, found=True, printed=" ".join(prompt.split()), place=_place(section, row, c),
                        score=score, margin=score)
            below: list[str] = []
            for later in range(r + 1, len(rows)):
                # The box is in the prompt's own table (a table pasted into it follows as another table) and
                # ends at printed text of the form.
                if rows[later].table != row.table or \
                        any(k.kind in (_Kind.LABEL, _Kind.PRINTED) for k in kinds[later]):
                    break
                cells = rows[later].cells
                below.append(cells[min(c, len(cells) - 1)].text if cells else "")
            answer = "\n".join(t for t in below if t.strip())
            if not answer.strip() and same_cell:
                answer = same_cell
            if not below and not same_cell:
                # The prompt is the last thing in its section's tables: its answer box went over a page break
                # the reader could not rejoin, or was removed.
                spill = _spill(section, row.table) if pdf else ""
                if spill:
                    return FieldReading(**base, answer=spill)
                return FieldReading(**base, untrusted="no answer box was found under its printed prompt")
            if pdf and answer:
                spill = _spill(section, rows[-1].table)
                if spill:
                    answer = f"{answer}\n{spill}"
            return FieldReading(**base, answer=answer.strip() or None)
    return FieldReading(f.id, found=False)


def _prompt_hit(cell: Cell, prompt: str, pdf: bool) -> tuple[float, str] | None:
    """Whether the cell holds the printed prompt: its score, and (in a .docx) any paragraphs typed after the prompt
    in the same cell. In a PDF a cell's further lines are the prompt wrapping, never an answer."""
    text = cell.text
    if len(text) < len(prompt) // 2:
        return None
    if pdf:
        hit = starts_with_label(text, prompt)
        return (hit[0], "") if hit else None
    lines = [line for line in cell.lines if line.strip()]
    if not lines:
        return None
    # The definition may hold only the opening words of a long printed prompt.
    hit = starts_with_label(lines[0], prompt)
    if hit is None:
        return None
    return hit[0], "\n".join(lines[1:]).strip()


def _spill(section: _Section, after_table: int) -> str:
    """Paragraphs after the section's last table, before the next heading: in a PDF, the last lines of a statement
    box that ran over a page break come out as text after the table."""
    texts: list[str] = []
    seen_table = False
    for index, block in section.blocks:
        if isinstance(block, Table):
            seen_table = index >= after_table
            texts = []
        elif seen_table and block.text.strip():
            texts.append(block.text)
    return "\n".join(texts)


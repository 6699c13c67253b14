"""``hubbot export``: one row per application (its latest version) for hub staff, as CSV, XLSX or JSON. Rows come from
the database and columns from the programme definitions: the metadata columns (the application number that
``hubbot decide`` and a decisions file use, hub, programme, school, URN as written even when invalid, status, the
staff decision, the problems still open in words, flags, received times, what the bot last sent the school and when,
version count), one column per field id of the programme in form order, then ``<role>.copied`` and
``<role>.confirmed`` for each signatory. The "Decision" column is the one staff fill in and send back
(``bot.staff.decisions``). ``export_rows`` builds typed sheets, one per programme, and the writers only format them;
``spool_rows`` gives the same sheets read from the database in one streamed pass into a temporary file, their rows
built as they are written, so ``hubbot export`` never holds every row in memory (XLSX in openpyxl's write-only mode,
JSON object by object). XLSX keeps one sheet per programme, headed by the form's own labels (the field id sits in a
comment on each header cell, so the header stays one row and filters and sorting keep working). CSV is a single file
even with several programmes, because a person double-clicking a CSV gets exactly one sheet in Excel: a second header
block half-way down would break filters and sorting, and a set of files cannot go to stdout; so it has the union of
the programmes' columns, headed by field ids (labels differ between forms, ids do not), empty where a programme has
no such field, with a UTF-8 byte order mark so Excel reads accents. JSON is a flat list of objects with the same
keys, for scripts. Values are written as read from the form; in CSV a text that starts with ``= + - @`` (or a tab or
carriage return) gets a leading ``'`` and in XLSX it is stored as a text cell, so nothing a school typed can run as a
formula. The export holds personal data: nothing here logs.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import pickle
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, aliased

from bot.staff.views import NOT_VIEWED, LastSent, last_sent
from rules.calendar import LONDON
from rules.definitions import ProgrammeDefinition, Registry
from rules.outcomes import StaffDecision
from rules.replies import shown_value
from rules.verdict import IssueKind, Verdict
from storage.json_parts import without_keys
from storage.models import Application, ApplicationStatus, ApplicationVersion, Message, Signatory

DATETIME_TEXT = "%Y-%m-%d %H:%M"         # CSV: a shape Excel turns into a date by itself
EXCEL_DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")   # OWASP's list for CSV injection
SHEET_NAME_MAX = 31
# Excel's own "Good", "Neutral" and "Bad" cell-style fills, so the colours look familiar to staff.
STATUS_FILLS = {"complete": "C6EFCE", "incomplete": "FFEB9C", "unreadable": "FFC7CE"}

Value = str | int | bool | datetime | tuple[str, ...] | None


class ColumnKind(StrEnum):
    META = "meta"
    FIELD = "field"
    SIGNATORY = "signatory"


class Confirmation(StrEnum):
    COPIED = "copied"
    REPLY = "confirmed by reply"
    AWAITING = "awaiting"


@dataclass(frozen=True)
class Column:
    key: str          # CSV header and JSON key: a field id, "<role>.copied", or a metadata key
    label: str        # XLSX header: the form's own wording
    kind: ColumnKind


@dataclass(frozen=True)
class ExportRow:
    application_id: int
    status: str
    values: Mapping[str, Value]

    def get(self, key: str) -> Value:
        return self.values.get(key)


@dataclass(frozen=True)
class ExportSheet:
    programme: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[ExportRow, ...] | SpooledRows   # in memory (``export_rows``) or read back in turn (``spool_rows``)


# Metadata keys cannot clash with field ids in practice ("maths_hub", "school.name"); _field_key guards anyway.
META_COLUMNS = (
    Column("number", "Number", ColumnKind.META),
    Column("hub", "Hub", ColumnKind.META),
    Column("programme", "Programme", ColumnKind.META),
    Column("school_name", "School", ColumnKind.META),
    Column("urn", "URN", ColumnKind.META),
    Column("status", "Status", ColumnKind.META),
    Column("decision", "Decision", ColumnKind.META),
    Column("problems", "Problems", ColumnKind.META),
    Column("flags", "Flags", ColumnKind.META),
    Column("received_at", "Received (latest version)", ColumnKind.META),
    Column("first_received_at", "First received", ColumnKind.META),
    Column("last_contact", "Last contact", ColumnKind.META),
    Column("versions", "Versions", ColumnKind.META),
)
_META_KEYS = frozenset(c.key for c in META_COLUMNS)


# ---- building the sheets ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Person:
    """One signatory as the export shows them."""

    email: str | None
    copied: bool
    confirmed: bool
    confirmed_at: datetime | None
    replied_at: datetime | None    # when the server received the reply that confirmed (None: not known)


@dataclass(frozen=True)
class _Stored:
    """What the export needs of one application, as read from the database in one pass."""

    id: int
    hub_id: str
    programme: str
    school_name: str | None
    school_urn: str
    status: str
    decision: str | None
    fields: Mapping[str, Any]
    flags: tuple[Any, ...]
    problems: str                 # what is still missing or wrong, in words (from the latest verdict)
    received: datetime | None     # the latest version's receipt, from its verdict
    first_received: str | None    # the first version's verdict "received_at" (ISO 8601), as stored
    versions: int
    contact: LastSent | None      # what the bot last sent the school

    @property
    def order(self) -> tuple[str, str, str, int]:
        return (self.hub_id, (self.school_name or "").casefold(), self.school_urn, self.id)


class SpooledRows:
    """A sheet's rows, built one at a time, in the sheet's order, from what ``spool_rows`` wrote to a temporary file
    (as often as a writer needs)."""

    def __init__(self, spool: _Spool, ids: Sequence[int], columns: tuple[Column, ...], tz: ZoneInfo) -> None:
        self._spool, self._ids, self._columns, self._tz = spool, ids, columns, tz

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[ExportRow]:
        for app_id in self._ids:
            stored = self._spool.read(app_id)
            yield _row(stored, self._columns, self._spool.people.get(app_id, {}), self._tz)


class _Spool:
    """Applications pickled to an anonymous temporary file as they stream from the database, found again by
    offset: memory holds offsets, sort keys and signatories, never the rows."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="hubbot-export-")
        self.offsets: dict[int, int] = {}
        self.people: dict[int, dict[str, _Person]] = {}

    def write(self, stored: _Stored) -> None:
        self.file.seek(0, os.SEEK_END)
        self.offsets[stored.id] = self.file.tell()
        pickle.dump(stored, self.file, protocol=pickle.HIGHEST_PROTOCOL)

    def read(self, app_id: int) -> _Stored:
        self.file.seek(self.offsets[app_id])
        stored: _Stored = pickle.load(self.file)
        return stored

    def close(self) -> None:
        self.file.close()


def export_rows(session: Session, *, hub: str | None = None, programme: str | None = None, registry: Registry,
                tz: ZoneInfo = LONDON) -> list[ExportSheet]:
    """One sheet per programme that has applications (plus ``programme`` when asked for, even if empty), with
    every row in memory. ``spool_rows`` gives the same sheets without holding the rows."""
    with spool_rows(session, hub=hub, programme=programme, registry=registry, tz=tz) as sheets:
        return [replace(sheet, rows=tuple(sheet.rows)) for sheet in sheets]


@contextlib.contextmanager
def spool_rows(session: Session, *, hub: str | None = None, programme: str | None = None, registry: Registry,
               tz: ZoneInfo = LONDON) -> Iterator[list[ExportSheet]]:
    """The export's sheets, read from the database in one streamed pass (three queries whatever the number of
    applications) into a temporary spool; the rows are built from it in order as a writer reads them, so memory
    does not grow with the export. The sheets are valid inside the block; the database is not needed after it
    starts."""
    conditions: list[ColumnElement[bool]] = []
    if hub is not None:
        conditions.append(Application.hub_id == hub)
    if programme is not None:
        conditions.append(Application.programme == programme)

    spool = _Spool()
    try:
        # The date of a confirmation is when the server received the reply (as for applications), not when the
        # bot got round to reading it; confirmed_at (processing time) is the fallback. The signatory's columns
        # rather than the entity: no ORM object per signatory (the statement, and so the order, is the same).
        for s in session.execute(
                select(*Signatory.__table__.columns, Message.received_at.label("replied_at"))
                .join(Application, Application.id == Signatory.application_id)
                .outerjoin(Message, Message.id == Signatory.confirmed_by_message_id).where(*conditions)):
            spool.people.setdefault(s.application_id, {})[s.role] = _Person(
                s.email, bool(s.copied), bool(s.confirmed), s.confirmed_at, s.replied_at)
        contacts = last_sent(session, hub_id=hub)

        # Joins on the filtered applications rather than IN lists of ids, so a large database needs no chunking;
        # of the first version's verdict only its received time is read (the database picks it out of the JSON).
        # A hundred rows at a time; of the latest verdict only what the views read (``NOT_VIEWED`` is left out).
        latest, first = aliased(ApplicationVersion), aliased(ApplicationVersion)
        stats = (select(ApplicationVersion.application_id.label("app_id"),
                        func.min(ApplicationVersion.id).label("first_id"),
                        func.count(ApplicationVersion.id).label("versions"))
                 .join(Application, Application.id == ApplicationVersion.application_id).where(*conditions)
                 .group_by(ApplicationVersion.application_id).subquery())
        query = (select(Application.id, Application.hub_id, Application.programme, Application.school_name,
                        Application.school_urn, Application.status, Application.decision, latest.id, latest.fields,
                        latest.flags, without_keys(latest.verdict, NOT_VIEWED),
                        first.verdict["received_at"].as_string(), stats.c.versions)
                 .outerjoin(latest, latest.id == Application.latest_version_id)
                 .outerjoin(stats, stats.c.app_id == Application.id)
                 .outerjoin(first, first.id == stats.c.first_id)
                 .where(*conditions).order_by(Application.id))
        by_programme: dict[str, list[tuple[tuple[str, str, str, int], int]]] = {}
        if programme is not None:
            by_programme[programme] = []
        field_ids: dict[int, tuple[str, ...]] = {}   # only for programmes whose definition is gone (see _columns)
        for (app_id, hub_id, programme_id, school_name, school_urn, status, decision, latest_id, fields, flags,
             record, first_received, versions) in session.execute(query.execution_options(yield_per=100)):
            verdict = Verdict.from_record(record) if latest_id is not None and record else None
            stored = _Stored(app_id, hub_id, programme_id, school_name, school_urn, ApplicationStatus(status).value,
                             StaffDecision(decision).value if decision else None,
                             (fields if latest_id is not None else None) or {},
                             tuple((flags if latest_id is not None else None) or ()),
                             _problems(verdict, spool.people.get(app_id, {})),
                             verdict.received_at if verdict else None, first_received, versions or 0,
                             contacts.pop(app_id, None))
            spool.write(stored)
            by_programme.setdefault(stored.programme, []).append((stored.order, stored.id))
            if registry.get(stored.programme) is None:
                field_ids[stored.id] = tuple(stored.fields)

        sheets = []
        for programme_id in sorted(by_programme):
            ids = [app_id for _, app_id in sorted(by_programme[programme_id])]
            definition = registry.get(programme_id)
            columns = _columns(definition, ids, field_ids, spool.people)
            title = definition.title if definition else programme_id
            sheets.append(ExportSheet(programme_id, title, columns, SpooledRows(spool, ids, columns, tz)))
        yield sheets
    finally:
        spool.close()


def _columns(definition: ProgrammeDefinition | None, ids: Sequence[int], field_ids: Mapping[int, Sequence[str]],
             people: Mapping[int, Mapping[str, _Person]]) -> tuple[Column, ...]:
    if definition is not None:
        labels = _field_labels(definition)
        fields = [Column(_field_key(f.id), labels[f.id], ColumnKind.FIELD) for f in definition.fields]
        roles = [(s.role, s.label) for s in definition.signatories]
    else:
        # A programme whose definition file is gone: its stored answers are still exported, under their ids.
        found_ids = dict.fromkeys(k for app_id in ids for k in field_ids.get(app_id, ()))
        fields = [Column(_field_key(i), i, ColumnKind.FIELD) for i in found_ids]
        found = dict.fromkeys(r for app_id in ids for r in people.get(app_id, {}))
        roles = [(r, r) for r in found]
    people_columns = [column for role, label in roles for column in (
        Column(f"{role}.copied", f"{label}: copied", ColumnKind.SIGNATORY),
        Column(f"{role}.confirmed", f"{label}: confirmation", ColumnKind.SIGNATORY))]
    return (*META_COLUMNS, *fields, *people_columns)


def _field_key(field_id: str) -> str:
    return f"field:{field_id}" if field_id in _META_KEYS else field_id


def _field_labels(definition: ProgrammeDefinition) -> dict[str, str]:
    """The form's label, made unique the way a reader of the form would: "Name" becomes "Teacher 1: Name"; two
    "E-mail"s in one section get the person's title as the form prints it; the field id only as a last resort."""
    titles = {s.role: s.label for s in definition.signatories}

    def levels(f: Any) -> list[str]:
        in_section = f.label if f.section == f.label else f"{f.section}: {f.label}"
        return [f.label, in_section, f"{in_section} ({titles.get(f.role, f.id)})"]

    chosen: dict[str, str] = {}
    candidates = {f.id: levels(f) for f in definition.fields}
    counts = [Counter(c[depth] for c in candidates.values()) for depth in range(3)]
    for f in definition.fields:
        for depth in range(3):
            if counts[depth][candidates[f.id][depth]] == 1:
                chosen[f.id] = candidates[f.id][depth]
                break
        else:
            chosen[f.id] = f"{f.label} ({f.id})"
    return chosen


def _row(app: _Stored, columns: Sequence[Column], people: Mapping[str, _Person], tz: ZoneInfo) -> ExportRow:
    fields = app.fields
    contact = app.contact
    values: dict[str, Value] = {
        "number": app.id,
        "hub": app.hub_id,
        "programme": app.programme,
        "school_name": app.school_name,
        # An application read without a valid URN is keyed "?<hash>" internally; that key means nothing to staff,
        # so the URN is shown as the school wrote it.
        "urn": _urn_as_written(app, fields),
        # The application's status, not the latest version's: a reply confirming the last signatory completes
        # the application without adding a version.
        "status": app.status,
        "decision": app.decision,
        "problems": app.problems or None,
        "flags": tuple(dict.fromkeys(str(f) for f in app.flags)),
        "received_at": _in_zone(app.received, tz),
        "first_received_at": _in_zone(datetime.fromisoformat(app.first_received) if app.first_received else None,
                                      tz),
        "last_contact": (f"{contact.kind.value.replace('_', ' ')}, {contact.at.astimezone(tz):{DATETIME_TEXT}}"
                         + ("" if contact.sent else " (not sent yet)")) if contact else None,
        "versions": app.versions,
    }
    for column in columns:
        if column.kind is ColumnKind.FIELD:
            field_id = column.key.removeprefix("field:") if column.key.startswith("field:") else column.key
            value = fields.get(field_id)
            values[column.key] = None if value is None else str(value)
        elif column.kind is ColumnKind.SIGNATORY:
            role, _, part = column.key.rpartition(".")
            signatory = people.get(role)
            if part == "copied":
                values[column.key] = bool(signatory and signatory.copied)
            else:
                values[column.key] = _confirmation(signatory, tz)
    return ExportRow(app.id, app.status, values)


def _urn_as_written(app: _Stored, fields: Mapping[str, Any]) -> str | None:
    if not app.school_urn.startswith("?"):
        return app.school_urn
    written = fields.get("school.urn")
    return str(written) if written else None


def _problems(verdict: Verdict | None, people: Mapping[str, _Person]) -> str:
    """What is still missing or wrong, in words: each field by its label, each signatory still to confirm."""
    if verdict is None:
        return ""
    items = []
    for issue in verdict.issues:
        if issue.kind is IssueKind.MISSING:
            items.append(f"{issue.label}: missing")
        else:
            value = shown_value(verdict.fields.get(issue.field))
            items.append(f"{issue.label}: {issue.reason}" + (f' (we read "{value}")' if value else ""))
    titles = {s.role: s.title for s in verdict.signatories}
    for role, signatory in people.items():
        if signatory.email and not signatory.copied and not signatory.confirmed:
            items.append(f"{titles.get(role, role)} to confirm")
    return "; ".join(dict.fromkeys(items))


def _in_zone(moment: datetime | None, tz: ZoneInfo) -> datetime | None:
    # The server's receipt time recorded in the verdict (read as Verdict.from_record reads it); never the
    # processing time (programmes.md).
    if moment is None:
        return None
    return moment.astimezone(tz) if moment.tzinfo else moment.replace(tzinfo=tz)


def _confirmation(signatory: _Person | None, tz: ZoneInfo) -> str:
    if signatory is not None and signatory.copied:
        return Confirmation.COPIED.value
    if signatory is not None and signatory.confirmed:
        moment = signatory.replied_at or signatory.confirmed_at
        when = moment.astimezone(tz).date().isoformat() if moment else "date unknown"
        return f"{Confirmation.REPLY.value} ({when})"
    return Confirmation.AWAITING.value


# ---- writers ---------------------------------------------------------------------------------------------------

def _text(value: Value) -> str:
    """One cell as text, the same for every text format."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime(DATETIME_TEXT)
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _defuse(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def union_columns(sheets: Iterable[ExportSheet]) -> list[str]:
    """Column keys for one table over several programmes: metadata, fields in first-seen order, then signatories."""
    keys = dict.fromkeys(c.key for c in META_COLUMNS)
    fields: dict[str, None] = {}
    people: dict[str, None] = {}
    for sheet in sheets:
        for column in sheet.columns:
            if column.kind is ColumnKind.FIELD:
                fields.setdefault(column.key)
            elif column.kind is ColumnKind.SIGNATORY:
                people.setdefault(column.key)
    return [*keys, *fields, *people]


def write_csv(sheets: Sequence[ExportSheet], stream: TextIO) -> None:
    """One table (see the module docstring). Writes the BOM itself: open ``stream`` as UTF-8 with newline=""."""
    keys = union_columns(sheets)
    stream.write("\ufeff")
    writer = csv.writer(stream)
    writer.writerow(keys)
    for sheet in sheets:
        for row in sheet.rows:
            writer.writerow([_defuse(_text(row.get(k))) for k in keys])


def _json_value(value: Value) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def write_json(sheets: Sequence[ExportSheet], stream: TextIO) -> None:
    """A list of objects with every union column (null where a programme lacks it), so each object has the
    same keys; dates are ISO 8601 with their offset, flags a list, ``<role>.copied`` a boolean."""
    keys = union_columns(sheets)
    # Object by object, laid out exactly as json.dump(items, indent=2) lays out the whole list.
    stream.write("[")
    first = True
    for sheet in sheets:
        for row in sheet.rows:
            item = json.dumps({k: _json_value(row.get(k)) for k in keys}, ensure_ascii=False, indent=2)
            stream.write(("\n" if first else ",\n") + "\n".join("  " + line for line in item.split("\n")))
            first = False
    stream.write("]\n" if first else "\n]\n")


def sheet_names(sheets: Sequence[ExportSheet]) -> list[str]:
    """Programme ids cut to Excel's 31 characters, kept unique (Excel compares names case-insensitively)."""
    names: list[str] = []
    for sheet in sheets:
        base = "".join("_" if ch in "[]:*?/\\" else ch for ch in sheet.programme)[:SHEET_NAME_MAX] or "programme"
        name, n = base, 1
        while name.casefold() in {x.casefold() for x in names}:
            n += 1
            suffix = f"~{n}"
            name = base[:SHEET_NAME_MAX - len(suffix)] + suffix
        names.append(name)
    return names


def write_xlsx(sheets: Sequence[ExportSheet], path_or_stream: str | Path | IO[bytes]) -> None:
    """The workbook, written as it goes (openpyxl's write-only mode). The column widths come before the rows in
    the file, so each sheet's rows are read once, sized and turned into cell values into a temporary file, then
    written from it: never all held, never built twice."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    if not sheets:
        # A workbook needs a sheet; an empty export still shows staff the columns it would have had.
        sheets = [ExportSheet("applications", "No applications", META_COLUMNS, ())]
    fills = {status: PatternFill(fill_type="solid", start_color=colour, end_color=colour)
             for status, colour in STATUS_FILLS.items()}
    bold = Font(bold=True)
    top = Alignment(vertical="top", wrap_text=True)
    for sheet, name in zip(sheets, sheet_names(sheets)):
        ws = workbook.create_sheet(name)
        status_col = next(i for i, c in enumerate(sheet.columns) if c.key == "status")
        widths = [len(c.label) for c in sheet.columns]
        keys = [c.key for c in sheet.columns]
        with tempfile.TemporaryFile(prefix="hubbot-xlsx-") as prepared:
            count = 0
            for row in sheet.rows:
                values = []
                for col, key in enumerate(keys):
                    value, width = _xlsx_value(row.get(key))
                    values.append(value)
                    if width > widths[col]:
                        widths[col] = width
                pickle.dump((row.status, values), prepared, protocol=pickle.HIGHEST_PROTOCOL)
                count += 1
            for col, width in enumerate(widths, start=1):
                # Long statements would make a column screens wide; 60 characters is enough to recognise them.
                ws.column_dimensions[get_column_letter(col)].width = min(max(width, 6), 60) + 2
            ws.freeze_panes = "A2"
            last = get_column_letter(len(sheet.columns))
            ws.auto_filter.ref = f"A1:{last}{max(count + 1, 1)}"
            header = []
            for column in sheet.columns:
                cell = WriteOnlyCell(ws, value=column.label)
                cell.font = bold
                cell.alignment = top
                # The key (field id) as a comment rather than a second header row, which filters would treat as
                # data.
                cell.comment = Comment(column.key, "hubbot")
                header.append(cell)
            ws.append(header)
            prepared.seek(0)
            for _ in range(count):
                status, values = pickle.load(prepared)
                cells = [_xlsx_cell(ws, WriteOnlyCell, v) if type(v) is tuple else v for v in values]
                fill = fills.get(status)
                if fill is not None:
                    value = values[status_col]
                    cell = cells[status_col] if type(value) is tuple else _xlsx_cell(ws, WriteOnlyCell, ("n", value))
                    cell.fill = fill
                    cells[status_col] = cell
                ws.append(cells)
    workbook.save(path_or_stream)  # type: ignore[arg-type]  # openpyxl accepts a binary file object too


def _xlsx_value(value: Value) -> tuple[Any, int]:
    """A cell's value as handed to openpyxl and its width. Most cells are a plain text or number, given as they are
    (openpyxl writes them as a string or number cell); the others are tagged for ``_xlsx_cell``: ("d", moment),
    ("q", text) for a text that must not run as a formula, ("s", text) for one openpyxl would take for an error."""
    if isinstance(value, datetime):
        # Excel has no time zones: London wall-clock time, as staff read the deadline.
        return ("d", value.replace(tzinfo=None)), len(EXCEL_DATETIME_FORMAT)
    if isinstance(value, int) and not isinstance(value, bool):
        return value, len(str(value))
    text = _text(value)
    if not text:
        return None, 0
    width = max((len(line) for line in text.splitlines()), default=0)
    if text.startswith(FORMULA_TRIGGERS):
        return ("q", text), width
    if text in _error_codes():
        return ("s", text), width
    return text, width


@functools.cache
def _error_codes() -> frozenset[str]:
    # Texts openpyxl would store as Excel's error values ("#N/A") rather than as text.
    from openpyxl.cell.cell import ERROR_CODES
    return frozenset(ERROR_CODES)


def _xlsx_cell(ws: Any, cell_class: Any, tagged: tuple[str, Any]) -> Any:
    """The cell object for a tagged value (or ("n", plain value) for a plain one that needs a style)."""
    tag, value = tagged
    cell = cell_class(ws, value=value)
    if tag == "d":
        cell.number_format = EXCEL_DATETIME_FORMAT
    elif tag in ("q", "s") or isinstance(value, str):
        # openpyxl would store "=..." as a formula; a string cell is never evaluated, and quotePrefix keeps it text
        # even when someone edits the cell in Excel.
        cell.data_type = "s"
        if tag == "q":
            cell.quotePrefix = True
    return cell

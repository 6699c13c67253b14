"""``hubbot export``: one row per application (its latest version) for hub staff, as CSV, XLSX or JSON. Rows come
from the database and columns from the programme definitions: the metadata columns (the application number that
``hubbot decide`` and a decisions file use, hub, programme, school, URN as written even when invalid, status, the
staff decision, the problems still open in words, flags, received times, what the bot last sent the school and
when, version count), one column per field id of the programme in form order, then ``<role>.copied`` and
``<role>.confirmed`` for each signatory. The "Decision" column is the one staff fill in and send back
(``bot.staff.decisions``). ``export_rows`` builds typed sheets, one per
programme, and the writers only format them. XLSX keeps one sheet per programme, headed by the form's own labels
(the field id sits in a comment on each header cell, so the header stays one row and filters and sorting keep
working). CSV is a single file even with several programmes, because a person double-clicking a CSV gets exactly
one sheet in Excel: a second header block half-way down would break filters and sorting, and a set of files cannot
go to stdout; so it has the union of the programmes' columns, headed by field ids (labels differ between forms, ids
do not), empty where a programme has no such field, with a UTF-8 byte order mark so Excel reads accents. JSON is a
flat list of objects with the same keys, for scripts. Values are written as read from the form; in CSV a text that
starts with ``= + - @`` (or a tab or carriage return) gets a leading ``'`` and in XLSX it is stored as a text cell,
so nothing a school typed can run as a formula. The export holds personal data: nothing here logs.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from bot.staff.views import LastSent, last_sent
from rules.calendar import LONDON
from rules.definitions import ProgrammeDefinition, Registry
from rules.replies import shown_value
from rules.verdict import IssueKind, Verdict
from storage.models import Application, ApplicationVersion, Message, Signatory

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
    rows: tuple[ExportRow, ...]


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

def export_rows(session: Session, *, hub: str | None = None, programme: str | None = None, registry: Registry,
                tz: ZoneInfo = LONDON) -> list[ExportSheet]:
    """One sheet per programme that has applications (plus ``programme`` when asked for, even if empty)."""
    conditions: list[ColumnElement[bool]] = []
    if hub is not None:
        conditions.append(Application.hub_id == hub)
    if programme is not None:
        conditions.append(Application.programme == programme)

    # Joins on the filtered applications rather than IN lists of ids, so a large database needs no chunking.
    applications = list(session.scalars(select(Application).where(*conditions)))
    latest = {v.application_id: v for v in session.scalars(
        select(ApplicationVersion).join(Application, Application.latest_version_id == ApplicationVersion.id)
        .where(*conditions))}
    counts: dict[int, int] = {app_id: count for app_id, count in session.execute(
        select(ApplicationVersion.application_id, func.count(ApplicationVersion.id))
        .join(Application, Application.id == ApplicationVersion.application_id).where(*conditions)
        .group_by(ApplicationVersion.application_id))}
    first_ids = select(func.min(ApplicationVersion.id)).join(
        Application, Application.id == ApplicationVersion.application_id).where(*conditions).group_by(
        ApplicationVersion.application_id)
    first = {v.application_id: v for v in session.scalars(
        select(ApplicationVersion).where(ApplicationVersion.id.in_(first_ids)))}
    signatories: dict[int, dict[str, Signatory]] = {}
    replied_at: dict[int, datetime] = {}
    # The date of a confirmation is when the server received the reply (as for applications), not when the bot
    # got round to reading it; confirmed_at (processing time) is the fallback.
    for s, received in session.execute(
            select(Signatory, Message.received_at).join(Application, Application.id == Signatory.application_id)
            .outerjoin(Message, Message.id == Signatory.confirmed_by_message_id).where(*conditions)):
        signatories.setdefault(s.application_id, {})[s.role] = s
        if received is not None:
            replied_at[s.id] = received

    contacts = last_sent(session, hub_id=hub)

    by_programme: dict[str, list[Application]] = {}
    if programme is not None:
        by_programme[programme] = []
    for app in applications:
        by_programme.setdefault(app.programme, []).append(app)

    sheets = []
    for programme_id in sorted(by_programme):
        apps = sorted(by_programme[programme_id],
                      key=lambda a: (a.hub_id, (a.school_name or "").casefold(), a.school_urn, a.id))
        definition = registry.get(programme_id)
        columns = _columns(definition, apps, latest, signatories)
        rows = tuple(_row(app, columns, latest.get(app.id), first.get(app.id), counts.get(app.id, 0),
                          signatories.get(app.id, {}), replied_at, tz, contacts.get(app.id)) for app in apps)
        title = definition.title if definition else programme_id
        sheets.append(ExportSheet(programme_id, title, columns, rows))
    return sheets


def _columns(definition: ProgrammeDefinition | None, apps: Sequence[Application],
             latest: Mapping[int, ApplicationVersion],
             signatories: Mapping[int, Mapping[str, Signatory]]) -> tuple[Column, ...]:
    if definition is not None:
        labels = _field_labels(definition)
        fields = [Column(_field_key(f.id), labels[f.id], ColumnKind.FIELD) for f in definition.fields]
        roles = [(s.role, s.label) for s in definition.signatories]
    else:
        # A programme whose definition file is gone: its stored answers are still exported, under their ids.
        ids = dict.fromkeys(k for a in apps if (v := latest.get(a.id)) for k in (v.fields or {}))
        fields = [Column(_field_key(i), i, ColumnKind.FIELD) for i in ids]
        found = dict.fromkeys(r for a in apps for r in signatories.get(a.id, {}))
        roles = [(r, r) for r in found]
    people = [column for role, label in roles for column in (
        Column(f"{role}.copied", f"{label}: copied", ColumnKind.SIGNATORY),
        Column(f"{role}.confirmed", f"{label}: confirmation", ColumnKind.SIGNATORY))]
    return (*META_COLUMNS, *fields, *people)


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


def _row(app: Application, columns: Sequence[Column], latest: ApplicationVersion | None,
         first: ApplicationVersion | None, versions: int, people: Mapping[str, Signatory],
         replied_at: Mapping[int, datetime], tz: ZoneInfo, contact: LastSent | None = None) -> ExportRow:
    fields: Mapping[str, Any] = (latest.fields if latest else None) or {}
    verdict = Verdict.from_record(latest.verdict) if latest and latest.verdict else None
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
        "status": app.status.value,
        "decision": app.decision.value if app.decision else None,
        "problems": _problems(verdict, people) or None,
        "flags": tuple(dict.fromkeys(str(f) for f in (latest.flags if latest else None) or ())),
        "received_at": _received(latest, tz),
        "first_received_at": _received(first, tz),
        "last_contact": (f"{contact.kind.value.replace('_', ' ')}, {contact.at.astimezone(tz):{DATETIME_TEXT}}"
                         + ("" if contact.sent else " (not sent yet)")) if contact else None,
        "versions": versions,
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
                values[column.key] = _confirmation(signatory, replied_at, tz)
    return ExportRow(app.id, app.status.value, values)


def _urn_as_written(app: Application, fields: Mapping[str, Any]) -> str | None:
    if not app.school_urn.startswith("?"):
        return app.school_urn
    written = fields.get("school.urn")
    return str(written) if written else None


def _problems(verdict: Verdict | None, people: Mapping[str, Signatory]) -> str:
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


def _received(version: ApplicationVersion | None, tz: ZoneInfo) -> datetime | None:
    # The server's receipt time recorded in the verdict; never the processing time (programmes.md).
    moment = Verdict.from_record(version.verdict).received_at if version and version.verdict else None
    if moment is None:
        return None
    return moment.astimezone(tz) if moment.tzinfo else moment.replace(tzinfo=tz)


def _confirmation(signatory: Signatory | None, replied_at: Mapping[int, datetime], tz: ZoneInfo) -> str:
    if signatory is not None and signatory.copied:
        return Confirmation.COPIED.value
    if signatory is not None and signatory.confirmed:
        moment = replied_at.get(signatory.id) or signatory.confirmed_at
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
    items = [{k: _json_value(row.get(k)) for k in keys} for sheet in sheets for row in sheet.rows]
    json.dump(items, stream, ensure_ascii=False, indent=2)
    stream.write("\n")


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
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    assert workbook.active is not None
    workbook.remove(workbook.active)
    if not sheets:
        # A workbook needs a sheet; an empty export still shows staff the columns it would have had.
        sheets = [ExportSheet("applications", "No applications", META_COLUMNS, ())]
    fills = {status: PatternFill(fill_type="solid", start_color=colour, end_color=colour)
             for status, colour in STATUS_FILLS.items()}
    bold = Font(bold=True)
    for sheet, name in zip(sheets, sheet_names(sheets)):
        ws = workbook.create_sheet(name)
        status_col = next(i for i, c in enumerate(sheet.columns, start=1) if c.key == "status")
        widths = [len(c.label) for c in sheet.columns]
        for col, column in enumerate(sheet.columns, start=1):
            cell = ws.cell(row=1, column=col, value=column.label)
            cell.font = bold
            cell.alignment = Alignment(vertical="top", wrap_text=True)
            # The key (field id) as a comment rather than a second header row, which filters would treat as data.
            cell.comment = Comment(column.key, "hubbot")
        for r, row in enumerate(sheet.rows, start=2):
            for col, column in enumerate(sheet.columns, start=1):
                value = row.get(column.key)
                cell = ws.cell(row=r, column=col)
                if isinstance(value, datetime):
                    # Excel has no time zones: London wall-clock time, as staff read the deadline.
                    cell.value = value.replace(tzinfo=None)
                    cell.number_format = EXCEL_DATETIME_FORMAT
                    width = len(EXCEL_DATETIME_FORMAT)
                elif isinstance(value, int) and not isinstance(value, bool):
                    cell.value = value
                    width = len(str(value))
                else:
                    text = _text(value)
                    if not text:
                        continue
                    cell.value = text
                    # openpyxl would store "=..." as a formula; a string cell is never evaluated, and quotePrefix
                    # keeps it text even when someone edits the cell in Excel.
                    cell.data_type = "s"
                    if text.startswith(FORMULA_TRIGGERS):
                        cell.quotePrefix = True
                    width = max((len(line) for line in text.splitlines()), default=0)
                widths[col - 1] = max(widths[col - 1], width)
            fill = fills.get(row.status)
            if fill is not None:
                ws.cell(row=r, column=status_col).fill = fill
        for col, width in enumerate(widths, start=1):
            # Long statements would make a column screens wide; 60 characters is enough to recognise them.
            ws.column_dimensions[get_column_letter(col)].width = min(max(width, 6), 60) + 2
        ws.freeze_panes = "A2"
        last = get_column_letter(len(sheet.columns))
        ws.auto_filter.ref = f"A1:{last}{max(len(sheet.rows) + 1, 1)}"
    workbook.save(path_or_stream)  # type: ignore[arg-type]  # openpyxl accepts a binary file object too

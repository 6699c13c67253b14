"""The staff commands at scale: the streamed export writes what the in-memory export and the writers before
streaming wrote, byte for byte (CSV, JSON) and cell for cell (XLSX), plain values and formatted cells alike; and
the application views, reminders, outcome e-mails, digest, status and export each run in the same number of SQL
statements with three applications as with nine (no query per application), on SQLite and PostgreSQL.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from bot.ops.status import collect
from bot.staff.digest import build_digest, render_digest
from bot.staff.export import (
    EXCEL_DATETIME_FORMAT,
    FORMULA_TRIGGERS,
    META_COLUMNS,
    STATUS_FILLS,
    ExportSheet,
    _json_value,
    _text,
    export_rows,
    sheet_names,
    spool_rows,
    union_columns,
    write_csv,
    write_json,
    write_xlsx,
)
from bot.staff.outcomes import due_outcomes
from bot.staff.reminders import describe, due_reminders
from bot.staff.views import application_views
from rules.outcomes import StaffDecision
from samples.applications import LONDON, School
from storage.models import Application
from tests.test_export import exported  # noqa: F401 - the export tests' database, reused
from tests.test_reminders import PID, form_email, hub_block
from tests.test_workflow import Bot, deliver, write_config

# ---- the export, streamed --------------------------------------------------------------------------------------


def _reference_xlsx(sheets: list[ExportSheet], stream: io.BytesIO) -> None:
    """The XLSX writer as it was before streaming (openpyxl's ordinary mode, every cell in memory)."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    assert workbook.active is not None
    workbook.remove(workbook.active)
    if not sheets:
        sheets = [ExportSheet("applications", "No applications", META_COLUMNS, ())]
    fills = {status: PatternFill(fill_type="solid", start_color=colour, end_color=colour)
             for status, colour in STATUS_FILLS.items()}
    for sheet, name in zip(sheets, sheet_names(sheets)):
        ws = workbook.create_sheet(name)
        status_col = next(i for i, c in enumerate(sheet.columns, start=1) if c.key == "status")
        widths = [len(c.label) for c in sheet.columns]
        for col, column in enumerate(sheet.columns, start=1):
            cell = ws.cell(row=1, column=col, value=column.label)
            cell.font = Font(bold=True)
            cell.alignment = Alignment(vertical="top", wrap_text=True)
            cell.comment = Comment(column.key, "hubbot")
        for r, row in enumerate(sheet.rows, start=2):
            for col, column in enumerate(sheet.columns, start=1):
                value = row.get(column.key)
                cell = ws.cell(row=r, column=col)
                if isinstance(value, datetime):
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
                    cell.data_type = "s"
                    if text.startswith(FORMULA_TRIGGERS):
                        cell.quotePrefix = True
                    width = max((len(line) for line in text.splitlines()), default=0)
                widths[col - 1] = max(widths[col - 1], width)
            fill = fills.get(row.status)
            if fill is not None:
                ws.cell(row=r, column=status_col).fill = fill
        for col, width in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(col)].width = min(max(width, 6), 60) + 2
        ws.freeze_panes = "A2"
        ws.auto_filter.ref = f"A1:{get_column_letter(len(sheet.columns))}{max(len(sheet.rows) + 1, 1)}"
    workbook.save(stream)


def _workbook(data: bytes) -> dict[str, Any]:
    """Everything staff can see in a workbook: values, types, formats, styles, comments, widths, panes, filters."""
    wb = load_workbook(io.BytesIO(data))
    seen: dict[str, Any] = {"sheets": wb.sheetnames}
    for ws in wb.worksheets:
        cells = [(c.coordinate, c.value, c.data_type, c.number_format, c.font.b, c.fill.fill_type,
                  c.fill.start_color.rgb if c.fill.fill_type else None, c.quotePrefix, c.alignment.vertical,
                  c.alignment.wrap_text, c.comment.text if c.comment else None)
                 for row in ws.iter_rows() for c in row if c.value is not None or c.has_style]
        seen[ws.title] = (cells, {k: d.width for k, d in ws.column_dimensions.items()}, ws.freeze_panes,
                          ws.auto_filter.ref, ws.max_row, ws.max_column)
    return seen


@pytest.mark.parametrize("filters", [{}, {"hub": "central"}, {"programme": "primary-trg-pilot-2019"}])
def test_streamed_export_writes_what_the_export_wrote_before(exported, filters: dict[str, str]) -> None:  # noqa: F811
    with exported.bot.db.session() as session:
        in_memory = export_rows(session, registry=exported.registry, **filters)
        with spool_rows(session, registry=exported.registry, **filters) as streamed:
            csv_streamed, json_streamed, xlsx_streamed = io.StringIO(), io.StringIO(), io.BytesIO()
            write_csv(streamed, csv_streamed)
            write_json(streamed, json_streamed)
            write_xlsx(streamed, xlsx_streamed)
            assert [len(s.rows) for s in streamed] == [len(s.rows) for s in in_memory]
    csv_before = io.StringIO()
    write_csv(in_memory, csv_before)
    keys = union_columns(in_memory)
    json_before = io.StringIO()
    # The JSON writer as it was: the whole list at once.
    json.dump([{k: _json_value(row.get(k)) for k in keys} for sheet in in_memory for row in sheet.rows],
              json_before, ensure_ascii=False, indent=2)
    json_before.write("\n")
    xlsx_before = io.BytesIO()
    _reference_xlsx(in_memory, xlsx_before)
    assert csv_streamed.getvalue() == csv_before.getvalue()
    assert json_streamed.getvalue() == json_before.getvalue()
    assert _workbook(xlsx_streamed.getvalue()) == _workbook(xlsx_before.getvalue())


def test_streamed_json_of_nothing_is_an_empty_list() -> None:
    stream = io.StringIO()
    write_json([], stream)
    assert stream.getvalue() == "[]\n" and json.loads(stream.getvalue()) == []


def test_xlsx_cells_written_plain_or_as_cells_read_as_before() -> None:
    """Plain texts and numbers go to openpyxl as values, the rest as formatted cells: each reads back as the
    writer before streaming wrote it, texts that look like formulas or Excel errors included."""
    from bot.staff.export import Column, ColumnKind, ExportRow

    columns = (*META_COLUMNS, Column("note", "Note", ColumnKind.FIELD), Column("head.copied", "Head: copied",
                                                                             ColumnKind.SIGNATORY))
    tricky = ["plain", "#N/A", "#DIV/0!", "=1+1", "+44 1325", "-3", "@home", "\tx", "", "multi\nline text", "x" * 90]
    rows = tuple(ExportRow(i, status, {"number": i, "hub": "h", "programme": "p", "school_name": note,
                                       "urn": "100001", "status": status, "decision": "selected" if i % 3 else None,
                                       "problems": note or None, "flags": ("late",) if i % 2 else (),
                                       "received_at": datetime(2024, 6, 20, 10, i), "versions": i, "note": note,
                                       "head.copied": bool(i % 2)})
                 for i, (note, status) in enumerate(zip(tricky, ["complete", "incomplete", "unreadable", "other"] * 3)))
    sheets = [ExportSheet("p", "P", columns, rows)]
    streamed, before = io.BytesIO(), io.BytesIO()
    write_xlsx(sheets, streamed)
    _reference_xlsx(sheets, before)
    assert _workbook(streamed.getvalue()) == _workbook(before.getvalue())


# ---- a fixed number of statements ------------------------------------------------------------------------------

RECEIVED = datetime(2024, 6, 10, 10, 0, tzinfo=LONDON)
SEVEN = datetime(2024, 6, 21, 9, 0, tzinfo=LONDON)          # the 7-day reminder point before 28 June
OUTCOME = datetime(2024, 7, 5, 10, 0, tzinfo=LONDON)        # selected schools informed
DATES = 'deadline = "2024-06-28"\nnotifications = [{ date = "2024-07-05", what = "selected schools informed" }]'
DECISIONS = (StaffDecision.SELECTED, StaffDecision.DECLINED, None)


def _school(j: int) -> School:
    people = tuple((f"Ms Person{j}x{k}", f"p{k}.s{j}", f"{2000000 + j * 4 + k:07d}") for k in range(4))
    return School(f"School {j}", f"{150000 + j:06d}", f"{j} Long Road", f"school{j}.example.sch.uk", people)


def _deliver(bot: Bot, mail: Path, schools: range) -> None:
    """Complete forms, forms with answers missing and forms with a signatory not copied, in turn; then staff
    decide about some of them."""
    for j in schools:
        kind = j % 3
        deliver(mail, form_email(_school(j), received=RECEIVED + timedelta(minutes=j),
                                 drop=("school.telephone",) if kind == 1 else (),
                                 pattern="one_missing" if kind == 2 else "all"), RECEIVED + timedelta(minutes=j))
    bot.now = RECEIVED + timedelta(hours=2)
    report = bot.run()
    assert report.failed_messages == 0
    with bot.db.session() as session:
        for app in session.scalars(select(Application)):
            app.decision = DECISIONS[app.id % len(DECISIONS)]


@contextmanager
def _counting() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def _statements(bot: Bot) -> dict[str, int]:
    """How many statements each staff command's reading issues, and what it found (so the counts are of real
    work: reminders, outcome e-mails, digest rows and export rows)."""
    config, settings = bot.config, bot.settings
    hub = config.hubs[0]

    def staff(session: Any) -> None:
        assert application_views(session, hub_id=hub.id)
        assert "Subject:" in describe(due_reminders(session, config, settings, SEVEN), SEVEN)
        assert due_outcomes(session, config, settings, OUTCOME)
        assert render_digest(build_digest(session, config, settings, hub, SEVEN)).text

    def export(session: Any) -> None:
        with spool_rows(session, registry=settings.registry) as sheets:
            for write, stream in ((write_csv, io.StringIO()), (write_json, io.StringIO()),
                                  (write_xlsx, io.BytesIO())):
                write(sheets, stream)  # type: ignore[operator]
            assert sum(len(s.rows) for s in sheets)

    counts: dict[str, int] = {}
    jobs: dict[str, Callable[[Any], None]] = {"staff": staff, "export": export}
    for name, job in jobs.items():
        with bot.db.session() as session, _counting() as statements:
            job(session)
        counts[name] = len(statements)
    with _counting() as statements:
        collect(config, settings, SEVEN)
    counts["status"] = len(statements)
    return counts


def test_staff_commands_read_in_a_fixed_number_of_statements(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, hubs=hub_block(dates={PID: DATES}))
    bot = Bot(config, now=RECEIVED)
    try:
        _deliver(bot, tmp_path / "mail", range(3))
        few = _statements(bot)
        _deliver(bot, tmp_path / "mail", range(3, 9))
        assert len(bot.applications()) == 9
        assert _statements(bot) == few
    finally:
        bot.close()

"""``hubbot export`` on a database the real worker filled from two Maildir hubs: three programmes, complete,
incomplete, late, a resubmission, a signatory who confirmed by reply, a school name that is a formula, a name with
accents, and one unreadable application. The XLSX is opened back with openpyxl and checked cell by cell (labels,
field-id comments, frozen header, filter range, fills, real dates, text cells), the CSV and JSON are parsed back,
the hub and programme filters are checked, and the CLI runs end to end in a subprocess.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from bot.staff.export import (
    EXCEL_DATETIME_FORMAT,
    META_COLUMNS,
    Column,
    ColumnKind,
    ExportSheet,
    _field_labels,
    export_rows,
    sheet_names,
    union_columns,
    write_csv,
    write_json,
    write_xlsx,
)
from rules.definitions import load_registry
from rules.verdict import Status, Verdict
from samples.applications import SCHOOLS, application_email, complete_answers, fill_form, programme
from samples.mail import build_email
from storage.models import Application, ApplicationStatus, ApplicationVersion
from storage.repository import add_application_version, get_or_create_application
from tests.test_workflow import LONDON, Bot, deliver, write_config

REPO = Path(__file__).resolve().parents[1]
P24, P16, P19 = "secondary-tfm-wg-2024", "secondary-tfm-wg-2016", "primary-trg-pilot-2019"
CENTRAL = programme(P24).hub.address
NORTH, NORTH_ALIAS = programme(P16).hub.address, programme(P19).hub.address
FORMULA_NAME = '=HYPERLINK("http://evil.example/","Click me")'
ACCENTED_NAME = "Sainte-Thérèse Catholic Academy"

VALLEY, STANNES, HILLSIDE, RIVERSIDE = SCHOOLS
ACCENTED = replace(STANNES, name=ACCENTED_NAME)
FORMULA = replace(HILLSIDE, name=FORMULA_NAME, urn="100001", domain="formula.example.sch.uk")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)  # type: ignore[misc]


def hubs_toml() -> str:
    return (f'[[hubs]]\nid = "central"\nname = "Central Maths Hub"\naddress = "{CENTRAL}"\n'
            f'programmes = ["{P24}"]\nmaildir = "mail-central"\n'
            f'[[hubs]]\nid = "north"\nname = "Archimedes NE Maths Hub"\naddress = "{NORTH}"\n'
            f'aliases = ["{NORTH_ALIAS}"]\nprogrammes = ["{P16}", "{P19}"]\nmaildir = "mail-north"\n')


def form_email(pid: str, school: Any, when: datetime, *, drop: tuple[str, ...] = (), pattern: str = "all",
               changes: dict[str, str] | None = None) -> bytes:
    answers = {k: v for k, v in complete_answers(pid, school).items() if k not in drop}
    answers.update(changes or {})
    return application_email(pid, fill_form(pid, answers), answers=answers, pattern=pattern, received=when,
                             message_id=f"<{pid}-{school.urn}-{when:%Y%m%d%H%M}@{school.domain}>")


@dataclass
class Exported:
    directory: Path
    config: Path
    bot: Bot
    registry: Any

    def sheets(self, **filters: str) -> list[ExportSheet]:
        with self.bot.db.session() as session:
            return export_rows(session, registry=self.registry, **filters)

    def latest_fields(self, urn: str, pid: str = P24) -> dict[str, Any]:
        with self.bot.db.session() as session:
            app = session.scalars(select(Application).where(Application.school_urn == urn,
                                                            Application.programme == pid)).one()
            return dict(session.get(ApplicationVersion, app.latest_version_id).fields)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    directory = tmp_path_factory.mktemp("export")
    config = write_config(directory, f"sqlite:///{directory / 'hubbot.db'}", hubs=hubs_toml())
    bot = Bot(config, now=at(2024, 6, 30, 8, 0))
    central, north = directory / "mail-central", directory / "mail-north"

    # Central, 2024 (deadline 28 June): a first form missing a TRN, a late one, one whose last signatory is not
    # copied, one with a missing telephone and an accented name, one whose school name is a formula.
    deliver(central, form_email(P24, VALLEY, at(2024, 6, 20, 10, 0), drop=("teacher1.trn",)), at(2024, 6, 20, 10, 0))
    deliver(central, form_email(P24, RIVERSIDE, at(2024, 6, 29, 10, 0)), at(2024, 6, 29, 10, 0))
    deliver(central, form_email(P24, HILLSIDE, at(2024, 6, 20, 11, 0), pattern="one_missing"), at(2024, 6, 20, 11, 0))
    deliver(central, form_email(P24, ACCENTED, at(2024, 6, 24, 16, 45), drop=("school.telephone",)),
            at(2024, 6, 24, 16, 45))
    deliver(central, form_email(P24, FORMULA, at(2024, 6, 25, 9, 0),
                                changes={"school.telephone": "+44 1325 460123"}), at(2024, 6, 25, 9, 0))
    # North: the 2016 form (to the hub address) and the 2019 form (to its alias).
    deliver(north, form_email(P16, VALLEY, at(2016, 12, 1, 10, 30)), at(2016, 12, 1, 10, 30))
    deliver(north, form_email(P19, STANNES, at(2019, 3, 1, 14, 5)), at(2019, 3, 1, 14, 5))
    report = bot.run()
    assert report.failed_messages == 0 and len(report.outcomes) == 7

    # Valley sends the corrected form the next day; Hillside's missing signatory confirms in the thread.
    deliver(central, form_email(P24, VALLEY, at(2024, 6, 21, 9, 15)), at(2024, 6, 21, 9, 15))
    waiting = [i for i in bot.outbox() if i.kind == "missing_information" and HILLSIDE.domain in i.to[0]]
    assert len(waiting) == 1
    teacher2 = HILLSIDE.person("teacher2")
    assert teacher2 is not None
    confirm = build_email(sender=f"{teacher2[0]} <{teacher2[1]}>", to=CENTRAL, subject=f"Re: {waiting[0].subject}",
                          body_text="I confirm.\n\nGrace", date=at(2024, 6, 20, 15, 30),
                          message_id="<confirm@hillside.example.sch.uk>", in_reply_to=waiting[0].message_id,
                          references=[waiting[0].message_id])
    # Received that afternoon, read by the bot ten days later: the export dates the confirmation by receipt.
    deliver(central, confirm, at(2024, 6, 20, 15, 30))
    report = bot.run()
    assert report.failed_messages == 0 and len(report.outcomes) == 2

    # The workflow does not yet keep unreadable forms as applications, but the table allows it and hub staff
    # may mark one so; the export must show it (in red).
    with bot.db.session() as session:
        app, _ = get_or_create_application(session, hub_id="north", programme=P19, school_urn=HILLSIDE.urn,
                                           school_name=HILLSIDE.name, status=ApplicationStatus.UNREADABLE,
                                           now=at(2019, 3, 2, 9, 0))
        add_application_version(session, app, message_id=None, fields={}, status=ApplicationStatus.UNREADABLE,
                                verdict=Verdict(message_id="", received_at=at(2019, 3, 2, 8, 59), sender=None,
                                                status=Status.UNREADABLE, programme=P19, hub="north").to_record(),
                                now=at(2019, 3, 2, 9, 0))
    yield Exported(directory, config, bot, load_registry())
    bot.close()


def by_school(sheet: ExportSheet) -> dict[str, Any]:
    return {row.get("school_name"): row for row in sheet.rows}


# ---- the rows --------------------------------------------------------------------------------------------------

def test_one_sheet_per_programme_one_row_per_application(exported: Exported) -> None:
    sheets = exported.sheets()
    assert [s.programme for s in sheets] == [P19, P16, P24]
    assert [len(s.rows) for s in sheets] == [2, 1, 5]
    p24 = sheets[2]
    # Sorted by hub, then school name as a person would (the "=" name sorts first).
    assert [r.get("school_name") for r in p24.rows] == [FORMULA_NAME, "Hillside Academy",
                                                         "Riverside Community School", ACCENTED_NAME, "Valley School"]
    keys = [c.key for c in p24.columns]
    meta = len(META_COLUMNS)
    assert keys[:meta] == [c.key for c in META_COLUMNS]
    assert keys[meta:meta + len(programme(P24).fields)] == list(programme(P24).field_ids)
    assert keys[-8:] == ["head.copied", "head.confirmed", "hod.copied", "hod.confirmed", "teacher1.copied",
                         "teacher1.confirmed", "teacher2.copied", "teacher2.confirmed"]


def test_row_values_statuses_flags_versions_and_signatories(exported: Exported) -> None:
    rows = by_school(exported.sheets(programme=P24)[0])
    valley = rows["Valley School"]
    assert (valley.get("hub"), valley.get("urn"), valley.get("status"), valley.get("versions")) == \
           ("central", VALLEY.urn, "complete", 2)
    assert valley.get("flags") == ("resubmission",)
    assert valley.get("received_at") == at(2024, 6, 21, 9, 15)
    assert valley.get("first_received_at") == at(2024, 6, 20, 10, 0)
    assert valley.get("teacher1.trn") == complete_answers(P24, VALLEY)["teacher1.trn"]

    late = rows["Riverside Community School"]
    assert late.get("status") == "complete" and late.get("flags") == ("late",) and late.get("versions") == 1

    # Completed by the reply: the application is complete though its only version said incomplete.
    hillside = rows["Hillside Academy"]
    assert hillside.get("status") == "complete" and hillside.get("versions") == 1
    assert (hillside.get("teacher2.copied"), hillside.get("teacher2.confirmed")) == \
           (False, "confirmed by reply (2024-06-20)")
    assert (hillside.get("head.copied"), hillside.get("head.confirmed")) == (True, "copied")

    accented = rows[ACCENTED_NAME]
    assert accented.get("status") == "incomplete" and accented.get("school.telephone") is None

    # Every field column holds exactly what was read for that application.
    for name, row in rows.items():
        fields = exported.latest_fields(row.get("urn"))
        for field_id in programme(P24).field_ids:
            assert row.get(field_id) == fields.get(field_id), (name, field_id)


def test_hub_and_programme_filters(exported: Exported) -> None:
    assert [s.programme for s in exported.sheets(hub="north")] == [P19, P16]
    assert {r.get("hub") for s in exported.sheets(hub="north") for r in s.rows} == {"north"}
    (only,) = exported.sheets(programme=P16)
    assert [r.get("school_name") for r in only.rows] == ["Valley School"]
    (empty,) = exported.sheets(hub="central", programme=P16)   # asked for: a sheet with its columns, no rows
    assert empty.programme == P16 and empty.rows == () and len(empty.columns) > len(META_COLUMNS)
    assert exported.sheets(hub="nowhere") == []


def test_labels_are_the_forms_own_and_unique() -> None:
    registry = load_registry()
    for definition in registry.programmes:
        labels = _field_labels(definition)
        assert len(set(labels.values())) == len(definition.fields), definition.id
    p19 = _field_labels(registry.get(P19))  # type: ignore[arg-type]
    assert p19["school.name"] == "Name of school" and p19["teacher1.email"] == "Teacher 1: E-mail"
    assert p19["teacher2.statement"] == "Teacher statement (TRG Teacher 2)"
    p16 = _field_labels(registry.get(P16))  # type: ignore[arg-type]
    assert p16["hod.email"] == "School details: E-mail (Head of department)"


# ---- XLSX ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workbook(exported: Exported):
    path = exported.directory / "all.xlsx"
    write_xlsx(exported.sheets(), path)
    return path, load_workbook(path)


def test_xlsx_sheets_header_and_layout(exported: Exported, workbook) -> None:
    _, wb = workbook
    assert wb.sheetnames == [P19, P16, P24]
    sheet = exported.sheets(programme=P24)[0]
    ws = wb[P24]
    header = [c.value for c in ws[1]]
    assert header == [c.label for c in sheet.columns]
    assert header[:13] == ["Number", "Hub", "Programme", "School", "URN", "Status", "Decision", "Problems", "Flags",
                           "Received (latest version)", "First received", "Last contact", "Versions"]
    assert "Name of school" in header and "Teacher 1: Email" in header and "Teacher 2: Name" in header
    assert [c.comment.text for c in ws[1]] == [c.key for c in sheet.columns]   # the field ids
    assert all(c.font.bold for c in ws[1])
    assert ws.freeze_panes == "A2"
    last = ws.cell(row=1, column=len(header)).column_letter
    assert ws.auto_filter.ref == f"A1:{last}6"
    assert ws.max_row == 6 and ws.max_column == len(header)   # one row per application
    widths = [ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width for i in range(1, len(header) + 1)]
    assert all(8 <= w <= 62 for w in widths)
    statement = header.index("Head of department statement") + 1
    assert widths[statement - 1] == 62   # long statements are capped, not screens wide


def test_xlsx_cells(exported: Exported, workbook) -> None:
    _, wb = workbook
    sheet = exported.sheets(programme=P24)[0]
    ws = wb[P24]
    col = {c.key: i for i, c in enumerate(sheet.columns, start=1)}
    rows = {ws.cell(row=r, column=col["school_name"]).value: r for r in range(2, ws.max_row + 1)}

    def cell(school: str, key: str):
        return ws.cell(row=rows[school], column=col[key])

    fills = {"complete": "C6EFCE", "incomplete": "FFEB9C"}
    for school, r in rows.items():
        status = cell(school, "status")
        assert status.fill.fill_type == "solid" and status.fill.start_color.rgb.endswith(fills[status.value])
    assert cell(ACCENTED_NAME, "status").value == "incomplete"

    received = cell("Valley School", "received_at")
    assert received.is_date and received.value == datetime(2024, 6, 21, 9, 15)   # naive London time
    assert received.number_format == EXCEL_DATETIME_FORMAT
    assert cell("Valley School", "first_received_at").value == datetime(2024, 6, 20, 10, 0)
    assert cell("Valley School", "versions").value == 2 and cell("Valley School", "versions").data_type == "n"
    assert cell("Valley School", "flags").value == "resubmission"
    assert cell("Riverside Community School", "flags").value == "late"
    assert cell("Hillside Academy", "teacher2.copied").value == "no"
    assert cell("Hillside Academy", "teacher2.confirmed").value == "confirmed by reply (2024-06-20)"
    assert cell("Hillside Academy", "head.copied").value == "yes"

    # Every field cell, every row: the value as read, or an empty cell.
    for row in sheet.rows:
        for column in sheet.columns:
            if column.kind is ColumnKind.FIELD:
                got = ws.cell(row=rows[row.get("school_name")], column=col[column.key]).value
                assert got == row.get(column.key), (row.get("school_name"), column.key)

    # The formula stays text, unchanged, and nothing in the file is a formula.
    name = cell(FORMULA_NAME, "school_name")
    assert name.value == FORMULA_NAME and name.data_type == "s" and name.quotePrefix
    phone = cell(FORMULA_NAME, "school.telephone")
    assert phone.value.startswith("+44") and phone.data_type == "s"
    assert cell(FORMULA_NAME, "school.name").data_type == "s"


def test_xlsx_holds_no_formula_and_unreadable_is_red(exported: Exported, workbook) -> None:
    path, wb = workbook
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/sheet"):
                assert b"<f>" not in z.read(name) and b"<f " not in z.read(name)
    ws = wb[P19]
    school, status = (header_column(ws, "School"), header_column(ws, "Status"))
    statuses = {ws.cell(row=r, column=school).value: ws.cell(row=r, column=status) for r in range(2, ws.max_row + 1)}
    assert statuses["Hillside Academy"].value == "unreadable"
    assert statuses["Hillside Academy"].fill.start_color.rgb.endswith("FFC7CE")
    assert statuses["St Anne's C of E Primary"].value == "complete"


def header_column(ws, label: str) -> int:
    return next(c.column for c in ws[1] if c.value == label)


def test_xlsx_to_a_stream_and_with_nothing_to_export() -> None:
    buffer = io.BytesIO()
    write_xlsx([], buffer)
    wb = load_workbook(io.BytesIO(buffer.getvalue()))
    (ws,) = wb.worksheets
    assert [c.value for c in ws[1]] == [c.label for c in META_COLUMNS] and ws.max_row == 1


def test_sheet_names_fit_excel() -> None:
    long = "primary-mastery-readiness-declaration-2025"
    sheets = [ExportSheet(pid, pid, META_COLUMNS, ()) for pid in (long, long + "-b", "odd/name")]
    names = sheet_names(sheets)
    assert names == [long[:31], long[:29] + "~2", "odd_name"]
    assert all(len(n) <= 31 for n in names)


# ---- CSV and JSON ----------------------------------------------------------------------------------------------

def parse_csv(data: str) -> tuple[list[str], list[dict[str, str]]]:
    assert data.startswith("\ufeff")
    reader = csv.reader(io.StringIO(data[1:], newline=""))
    header = next(reader)
    return header, [dict(zip(header, row, strict=True)) for row in reader]


def test_csv_is_one_table_with_the_union_of_columns(exported: Exported) -> None:
    sheets = exported.sheets()
    stream = io.StringIO(newline="")
    write_csv(sheets, stream)
    header, rows = parse_csv(stream.getvalue())
    assert header == union_columns(sheets)
    assert len(header) == len(set(header))
    assert header[:len(META_COLUMNS)] == [c.key for c in META_COLUMNS]
    assert {"teacher1.trn", "teacher1.statement", "hod.statement", "hod.copied"} <= set(header)
    assert len(rows) == 8
    by = {(r["programme"], r["school_name"].lstrip("'")): r for r in rows}

    valley = by[(P24, "Valley School")]
    assert valley["status"] == "complete" and valley["flags"] == "resubmission" and valley["versions"] == "2"
    assert valley["received_at"] == "2024-06-21 09:15" and valley["first_received_at"] == "2024-06-20 10:00"
    assert valley["school.urn"] == VALLEY.urn and valley["teacher1.statement"] == ""   # not a 2024 field
    hillside = by[(P24, "Hillside Academy")]
    assert hillside["teacher2.copied"] == "no" and hillside["teacher2.confirmed"] == "confirmed by reply (2024-06-20)"
    assert hillside["head.copied"] == "yes" and hillside["head.confirmed"] == "copied"
    assert by[(P24, ACCENTED_NAME)]["school_name"] == ACCENTED_NAME   # accents survive
    old = by[(P16, "Valley School")]
    assert old["hub"] == "north" and old["teacher1.trn"] == "" and old["hod.copied"] == "yes"
    assert old["received_at"] == "2016-12-01 10:30"   # GMT in December: London time is UTC

    # The injection guard: a leading quote, so Excel shows the text and runs nothing.
    formula = by[(P24, FORMULA_NAME)]
    assert formula["school_name"] == "'" + FORMULA_NAME and formula["school.name"] == "'" + FORMULA_NAME
    assert formula["school.telephone"] == "'+44 1325 460123"
    for row in rows:
        assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())


def test_csv_bytes_have_a_bom_and_crlf(exported: Exported) -> None:
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    write_csv(exported.sheets(programme=P24), text)
    text.flush()
    data = raw.getvalue()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    assert "Thérèse".encode() in data


def test_json_objects_keyed_by_field_id(exported: Exported) -> None:
    stream = io.StringIO()
    sheets = exported.sheets()
    write_json(sheets, stream)
    items = json.loads(stream.getvalue())
    assert len(items) == 8 and all(list(i) == union_columns(sheets) for i in items)
    valley = next(i for i in items if i["programme"] == P24 and i["school_name"] == "Valley School")
    assert valley["received_at"] == "2024-06-21T09:15:00+01:00" and valley["versions"] == 2
    assert valley["flags"] == ["resubmission"] and valley["teacher1.copied"] is True
    assert valley["school.urn"] == VALLEY.urn and valley["teacher1.statement"] is None
    formula = next(i for i in items if i["urn"] == "100001")
    assert formula["school_name"] == FORMULA_NAME   # JSON is data for scripts: values exactly as read
    unreadable = next(i for i in items if i["status"] == "unreadable")
    assert unreadable["programme"] == P19 and unreadable["head.confirmed"] == "awaiting"


def test_field_id_clashing_with_a_metadata_key_keeps_both() -> None:
    columns = (*META_COLUMNS, Column("field:status", "Status of the school", ColumnKind.FIELD))
    sheet = ExportSheet("x", "x", columns, ())
    assert union_columns([sheet]).count("status") == 1 and "field:status" in union_columns([sheet])


# ---- the command line ------------------------------------------------------------------------------------------

def hubbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "HUBBOT_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "bot.cli", "export", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=120)


def test_cli_csv_and_json_to_stdout(exported: Exported) -> None:
    done = hubbot("--config", str(exported.config), "--format", "csv", "--hub", "central", cwd=exported.directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"\xef\xbb\xbf") and done.stderr == b""
    header, rows = parse_csv(done.stdout.decode("utf-8"))
    assert len(rows) == 5 and {r["hub"] for r in rows} == {"central"}
    assert "school.name" in header

    done = hubbot("--config", str(exported.config), "--format", "json", "--programme", P19, cwd=exported.directory)
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout.decode("utf-8"))
    assert sorted(i["school_name"] for i in items) == ["Hillside Academy", "St Anne's C of E Primary"]


def test_cli_xlsx_to_a_file(exported: Exported) -> None:
    out = exported.directory / "central.xlsx"
    done = hubbot("--config", str(exported.config), "--format", "xlsx", "--hub", "central", "-o", str(out),
                  "--now", "2024-07-01T09:00", cwd=exported.directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"" and b"5 application(s)" in done.stderr
    assert FORMULA_NAME.encode() not in done.stderr   # no personal data on the terminal
    wb = load_workbook(out)
    assert wb.sheetnames == [P24] and wb[P24].max_row == 6
    assert (out.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(("args", "message"), [
    (("--format", "xlsx"), b"-o FILE"),
    (("--format", "csv", "--hub", "atlantis"), b"unknown hub 'atlantis'"),
    (("--format", "json", "--programme", "primary-nothing-2031"), b"unknown programme 'primary-nothing-2031'"),
])
def test_cli_usage_errors_exit_2(exported: Exported, args: tuple[str, ...], message: bytes) -> None:
    done = hubbot("--config", str(exported.config), *args, cwd=exported.directory)
    assert done.returncode == 2 and message in done.stderr and done.stdout == b""


def test_cli_needs_a_config_and_a_format(tmp_path: Path) -> None:
    done = hubbot("--format", "csv", cwd=tmp_path)
    assert done.returncode == 2 and b"no config" in done.stderr
    done = hubbot("--config", "x.toml", cwd=tmp_path)
    assert done.returncode == 2 and b"--format" in done.stderr


def test_cli_exports_a_hub_since_removed_from_the_config(exported: Exported, tmp_path: Path) -> None:
    only_central = hubs_toml().split("[[hubs]]")[1]
    config = write_config(tmp_path, f"sqlite:///{exported.directory / 'hubbot.db'}", hubs="[[hubs]]" + only_central)
    done = hubbot("--config", str(config), "--format", "json", "--hub", "north", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {i["hub"] for i in json.loads(done.stdout)} == {"north"}

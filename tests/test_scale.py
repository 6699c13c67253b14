"""Several workers on one database, and the pieces that keep cost per message flat: workers started together on a
new database migrate it once (the others wait for the lock, none crashes), on PostgreSQL and SQLite; two workers
polling the same mailboxes store each message once and process and answer it once, and a mailbox being polled by
one worker is skipped by the other; storing the same bytes from two sessions at once inserts one row and no dead
one; the daily reply cap counted from ``outbox_recipients`` gives exactly what reading the outbox gave (every
recipient, any case, each e-mail once, the last 24 hours), follows retention, and counts e-mails queued before the
upgrade; the streamed export writes what the in-memory export and the writers before streaming wrote, byte for
byte (CSV, JSON) and cell for cell (XLSX); a worker told to stop hands back the message it had claimed for next.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import create_engine, inspect, select, text

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
from storage import repository as repo
from storage.counters import sent_in_last_day
from storage.db import open_database, upgrade
from storage.locks import try_lock
from storage.models import Event, Message, MessageState, OutboxItem
from templates import EmailKind
from tests.servers import POSTGRES_ADMIN_URL
from tests.test_export import exported  # noqa: F401 - the export tests' database, reused
from tests.test_workflow import Bot, application, deliver, hub_toml, write_config

NOW = datetime(2024, 6, 20, 12, 0, tzinfo=timezone.utc)


# ---- workers starting together ----------------------------------------------------------------------------------

def _open_at_barrier(url: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        open_database(url).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def _start_together(url: str, count: int) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(count), ctx.Queue()
    processes = [ctx.Process(target=_open_at_barrier, args=(url, barrier, results)) for _ in range(count)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return outcomes


@pytest.fixture
def fresh_pg_url() -> Any:
    """A database that has never been migrated (created here, dropped afterwards)."""
    psycopg = pytest.importorskip("psycopg")
    import uuid
    name = f"hubbot_scale_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrated_once(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert {"messages", "outbox", "outbox_recipients"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_workers_starting_together_on_a_new_postgres_database_migrate_it_once(fresh_pg_url: str) -> None:
    assert _start_together(fresh_pg_url, 3) == ["ok", "ok", "ok"]
    _migrated_once(fresh_pg_url)


def test_workers_starting_together_on_a_new_sqlite_file_migrate_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert _start_together(url, 3) == ["ok", "ok", "ok"]
    _migrated_once(url)


# ---- two workers, one mailbox ----------------------------------------------------------------------------------

def _run_worker(config: str, barrier: Any, results: Any) -> None:
    from bot.config import load_config
    from bot.context import check_settings
    from bot.worker import Worker
    from tests.test_workflow import NOW as WORKFLOW_NOW

    cfg = load_config(Path(config))
    db = open_database(cfg.database_url)
    worker = Worker(cfg, db, check_settings(cfg), clock=lambda: WORKFLOW_NOW)
    barrier.wait()
    report = worker.run_once()
    worker.close()
    db.close()
    results.put((sum(report.fetched.values()), len(report.outcomes), report.outbox.sent, report.failed_messages))


def test_two_workers_store_each_message_once_and_answer_it_once(tmp_path: Path, fresh_pg_url: str) -> None:
    hubs = hub_toml("central", maildir="mail-a") + hub_toml("second", maildir="mail-b", address="hub2@example.org",
                                                            name="Second Maths Hub")
    config = write_config(tmp_path, fresh_pg_url, hubs=hubs, extra="max_replies_per_address_per_day = 100")
    count = 12
    for i in range(count):
        deliver(tmp_path / ("mail-a" if i % 2 else "mail-b"), application(urn=f"40{i:04d}"))
    open_database(fresh_pg_url).close()

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_run_worker, args=(str(config), barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    # Each message stored by exactly one of the two (the other skipped the mailbox or found it done) ...
    assert sum(r[0] for r in reports) == count and sum(r[3] for r in reports) == 0
    assert sum(r[1] for r in reports) == count

    bot = Bot(config)
    try:
        messages = bot.messages()
        assert len(messages) == count == len({m.sha256 for m in messages})
        assert all(m.state is MessageState.PROCESSED for m in messages)
        with bot.db.session() as session:
            decided = Counter(session.scalars(select(Event.message_id).where(Event.kind.in_(
                ("application_version", "thread_reply", "processed", "ignored", "duplicate")))))
            # ... and inserted once: no losing INSERT left a dead row behind.
            inserted = session.scalar(text("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'messages'"))
        assert decided == Counter({m.id: 1 for m in messages})
        assert inserted == count
        items = bot.outbox()
        replies = Counter(i.source_message_id for i in items)
        assert replies and set(replies.values()) == {1}                 # never two replies to one message
        assert len(list((tmp_path / "outbox").glob("*.eml"))) == len(items)   # each written once
    finally:
        bot.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_mailbox_being_polled_is_skipped_by_another_worker(tmp_path: Path, backend: str, request) -> None:
    url = f"sqlite:///{tmp_path / 'hubbot.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg_url")
    config = write_config(tmp_path, url)
    deliver(tmp_path / "mail", application(urn="500001"))
    bot = Bot(config)
    try:
        hub = bot.config.hubs[0]
        with try_lock(bot.db.engine, f"poll:{hub.id}:maildir") as held:
            assert held
            assert bot.worker().poll(hub) == 0          # another worker is polling this mailbox: left to it
        assert bot.worker().poll(hub) == 1              # free again
    finally:
        bot.close()


def test_the_same_bytes_stored_from_two_sessions_at_once_make_one_row(db_url: str) -> None:
    database = open_database(db_url)
    raw = b"Message-ID: <race@example.sch.uk>\r\nSubject: race\r\n\r\nbody\r\n"
    barrier = threading.Barrier(2)
    results: list[tuple[bool, int]] = []

    def store(uid: int) -> None:
        with database.session() as session:
            barrier.wait()
            result = repo.store_raw_message(session, hub_id="h", folder="INBOX", uidvalidity=1, uid=uid, raw=raw,
                                            received_at=NOW, now=NOW)
            results.append((result.created, result.message.id))

    threads = [threading.Thread(target=store, args=(uid,)) for uid in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert sorted(created for created, _ in results) == [False, True]
        assert len({message_id for _, message_id in results}) == 1
        with database.session() as session:
            assert len(session.scalars(select(Message)).all()) == 1
    finally:
        database.close()


# ---- the daily reply cap ---------------------------------------------------------------------------------------

def _scan(session: Any, addresses: list[str], now: datetime) -> dict[str, int]:
    """The cap as it was counted before outbox_recipients: every outbox row of the last 24 hours read."""
    wanted = {a.lower() for a in addresses}
    counts: dict[str, int] = {}
    for to, cc in session.execute(select(OutboxItem.to, OutboxItem.cc).where(
            OutboxItem.created_at >= now - timedelta(days=1))):
        for address in {a.lower() for a in (*(to or ()), *(cc or ()))} & wanted:
            counts[address] = counts.get(address, 0) + 1
    return counts


def _queue(session: Any, key: str, to: list[str], cc: list[str], at: datetime,
           kind: EmailKind = EmailKind.ACKNOWLEDGEMENT) -> None:
    repo.enqueue_reply(session, hub_id="h", kind=kind, from_addr="Hub <hub@example.org>", to=to, cc=cc,
                       subject="s", text="t", dedupe_key=key, now=at)


def test_reply_cap_counts_what_reading_the_outbox_counted(db_url: str) -> None:
    database = open_database(db_url)
    people = ["office@valley.example.sch.uk", "Head@Valley.example.sch.uk", "hod@valley.example.sch.uk",
              "nobody@example.org"]
    try:
        with database.session() as session:
            _queue(session, "a", ["office@valley.example.sch.uk"], ["head@valley.example.sch.uk"], NOW)
            # The same address twice on one e-mail counts once; case never matters.
            _queue(session, "b", ["OFFICE@valley.example.sch.uk"], ["office@valley.example.sch.uk"],
                   NOW - timedelta(hours=3))
            _queue(session, "c", ["hod@valley.example.sch.uk"], [], NOW - timedelta(hours=23, minutes=59))
            _queue(session, "d", ["hod@valley.example.sch.uk"], [], NOW - timedelta(hours=24, minutes=1))   # too old
            _queue(session, "e", ["head@valley.example.sch.uk"], [], NOW - timedelta(hours=1), EmailKind.REMINDER)
            _queue(session, "f", ["lead@example.org"], [], NOW, EmailKind.DIGEST)
            _queue(session, "a", ["head@valley.example.sch.uk"], [], NOW)   # already queued: not counted again
        with database.session() as session:
            for moment in (NOW, NOW + timedelta(hours=2), NOW + timedelta(hours=23), NOW + timedelta(days=2)):
                expected = _scan(session, people + ["lead@example.org"], moment)
                assert sent_in_last_day(session, people + ["lead@example.org"], moment) == expected
            assert sent_in_last_day(session, people, NOW) == {"office@valley.example.sch.uk": 2,
                                                               "head@valley.example.sch.uk": 2,
                                                               "hod@valley.example.sch.uk": 1}
            assert sent_in_last_day(session, [], NOW) == {}
        with database.session() as session:
            # Retention deletes finished outbox rows, and their counts with them.
            session.execute(OutboxItem.__table__.update().values(state="sent"))
            repo.delete_personal_data(session, older_than=NOW + timedelta(days=3))
        with database.session() as session:
            assert sent_in_last_day(session, people, NOW) == {} == _scan(session, people, NOW)
    finally:
        database.close()


def test_reply_cap_counts_mail_queued_before_the_upgrade(db_url: str) -> None:
    engine = open_database(db_url, migrate=False).engine
    upgrade(engine, "0003")
    with engine.begin() as conn:
        for n, (to, cc) in enumerate([(["office@valley.example.sch.uk"], ["Head@valley.example.sch.uk"]),
                                      (["head@valley.example.sch.uk"], [])]):
            conn.execute(OutboxItem.__table__.insert().values(
                hub_id="h", kind="acknowledgement", dedupe_key=f"k{n}", from_addr="hub@example.org", to=to, cc=cc,
                subject="s", text="t", headers={}, message_id=f"<m{n}@example.org>", state="sent", attempts=1,
                next_attempt_at=NOW, refused=False, created_at=NOW))
    engine.dispose()
    database = open_database(db_url)   # upgrades to head, carrying the outbox over
    try:
        with database.session() as session:
            assert sent_in_last_day(session, ["HEAD@valley.example.sch.uk", "office@valley.example.sch.uk"], NOW) \
                == {"head@valley.example.sch.uk": 2, "office@valley.example.sch.uk": 1}
    finally:
        database.close()


def test_the_worker_holds_replies_back_at_the_cap_counted_per_recipient(tmp_path: Path) -> None:
    """End to end: a school sending the same incomplete form again and again is answered ``cap`` times a day."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", extra="max_replies_per_address_per_day = 2")
    bot = Bot(config)
    try:
        for n in range(4):
            deliver(tmp_path / "mail", application(urn="600001", drop=("teacher1.trn",),
                                                   message_id=f"<again-{n}@valley.example.sch.uk>"))
            bot.run()
        assert len(bot.outbox()) == 2
        assert len(bot.events("reply_suppressed")) == 2
        bot.now += timedelta(days=1, minutes=1)
        deliver(tmp_path / "mail", application(urn="600001", drop=("teacher1.trn",),
                                               message_id="<next-day@valley.example.sch.uk>"))
        bot.run()
        assert len(bot.outbox()) == 3   # a new day: answered again
    finally:
        bot.close()


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


def test_stopping_gives_back_the_message_claimed_for_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next message is claimed in the commit of the previous one; a worker told to stop then hands it back
    at once, its attempt uncounted, rather than leaving it leased for the next worker to wait out."""
    from bot.workflow import Workflow

    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    for urn in ("700001", "700002", "700003"):
        deliver(tmp_path / "mail", application(urn=urn))
    bot = Bot(config)
    try:
        worker = bot.worker()
        real = Workflow.process

        def process_then_stop(self, session, message, now):
            worker.stop_requested = True   # SIGTERM while the first message is being processed
            return real(self, session, message, now)

        monkeypatch.setattr(Workflow, "process", process_then_stop)
        report = worker.run_once()
        assert len(report.outcomes) == 1
        states = [(m.state, m.attempts, m.claimed_by) for m in bot.messages()]
        assert states == [(MessageState.PROCESSED, 1, None), (MessageState.STORED, 0, None),
                          (MessageState.STORED, 0, None)]
        monkeypatch.setattr(Workflow, "process", real)
        assert len(bot.run().outcomes) == 2   # the next worker takes them straight away
    finally:
        bot.close()


def test_xlsx_cells_written_plain_or_as_cells_read_as_before() -> None:
    """Plain texts and numbers go to openpyxl as values, the rest as formatted cells: each reads back as the
    writer before streaming wrote it, texts that look like formulas or Excel errors included."""
    from bot.staff.export import Column, ColumnKind, ExportRow

    columns = (*META_COLUMNS, Column("note", "Note", ColumnKind.FIELD), Column("head.copied", "Head: copied",
                                                                             ColumnKind.SIGNATORY))
    tricky = ["plain", "#N/A", "#DIV/0!", "=1+1", "+44 1325", "-3", "@home", "\tx", "", "multi\nline text", "x" * 90]
    rows = tuple(ExportRow(i, status, {"hub": "h", "programme": "p", "school_name": note, "urn": "100001",
                                       "status": status, "flags": ("late",) if i % 2 else (), "received_at":
                                       datetime(2024, 6, 20, 10, i), "versions": i, "note": note,
                                       "head.copied": bool(i % 2)})
                 for i, (note, status) in enumerate(zip(tricky, ["complete", "incomplete", "unreadable", "other"] * 3)))
    sheets = [ExportSheet("p", "P", columns, rows)]
    streamed, before = io.BytesIO(), io.BytesIO()
    write_xlsx(sheets, streamed)
    _reference_xlsx(sheets, before)
    assert _workbook(streamed.getvalue()) == _workbook(before.getvalue())

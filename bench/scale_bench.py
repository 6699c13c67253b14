"""Every hub's round on one database: the worker and the staff commands at 1,000 and 5,000 applications, on SQLite
and PostgreSQL, against the check pipeline's own time measured in the same run.

The mail is four hubs' Maildirs (the built-in hubs and their programmes, every deadline moved to 28 June 2024) of
distinct applications: each school its own name, URN, domain and people, forms with assorted faults and fill
styles, resubmissions, signatories confirming in the thread, questions, forgotten attachments, out-of-office
replies and bounces; no [smtp], so replies are .eml files and the figures are the bot's own. The mail is built once
and cached on disk (``--cache``, default ``~/.cache/hubbot-scale-bench``); each run hard-links it into fresh
Maildirs. For each N, on each database: a fresh process timing ``Worker.run_once`` (one cycle: poll, process,
send; then the outbox drained to the end, as the next cycles would) between two measurements of the floor (``rules.pipeline.assess`` over the same messages, each in a fresh
process; their mean is the floor, as other people's load comes and goes), then ``hubbot digest``,
``hubbot remind`` and ``hubbot export --format xlsx`` each in a fresh process (wall time of the command, peak RSS of
the process). SQL statements are counted with SQLAlchemy's ``before_cursor_execute`` event. Last, the curve: 1, 2
and 4 workers started together on a new PostgreSQL database (so they also race on the first migration) and the same
mailboxes, with the duplicate check (each message stored and processed once, one reply per source message, each
.eml written once). ``--code DIR`` runs the bot from another checkout (the "before" figures), with this file's
mail and harness. Usage: ``python bench/scale_bench.py [-n 1000 5000] [--big] [--skip sqlite,pg,staff,curve]``.
Timings are for reading, never for pass/fail: the machine is shared, so compare ratios within one run (CPU time,
printed beside wall time, is the steadier figure when other work competes for the cores).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

# Nothing of the project is imported at module level: children put ``--code`` first on sys.path before importing.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

LONDON = ZoneInfo("Europe/London")
CACHE_VERSION = "v1"
PG_ADMIN = os.environ.get("HUBBOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
START = datetime(2024, 6, 1, 9, 0, tzinfo=LONDON)      # message i is received START + i minutes
WORKER_NOW = datetime(2024, 6, 17, 12, 0, tzinfo=LONDON)
DIGEST_NOW = datetime(2024, 6, 17, 13, 0, tzinfo=LONDON)
REMIND_NOW = datetime(2024, 6, 21, 10, 0, tzinfo=LONDON)   # the 7-day reminder point before 28 June
DEADLINE = "2024-06-28"
# hub id -> its programmes (the built-in hubs); message i goes to HUBS[i % 4].
HUBS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("central", "Central Maths Hub", "mathshub@bishopchalloner.bham.sch.uk", ("secondary-tfm-wg-2024",)),
    ("cambridge", "Cambridge Maths Hub", "admin@cambridgemathshub.org", ("primary-trg-pilot-2019",)),
    ("bbo", "BBO Maths Hub", "info@bbomathshub.org.uk", ("primary-tfm-wg-2020",)),
    ("archimedes-ne", "Archimedes NE Maths Hub", "", ("secondary-tfm-wg-2016", "primary-mastery-readiness-2018")),
]
FIRST = ("Helen", "Ravi", "Kate", "Tom", "Priya", "Sam", "Ruth", "Tariq", "Ellie", "Grace", "Anne", "Ben")
LAST = ("O'Neill", "Patel", "Wright", "Ellis", "Shah", "Reid", "Evans", "Hussain", "Brown", "Li", "Walsh", "Carter")
TOWNS = ("Valley", "Hillside", "Riverside", "Oakfield", "Marston", "Greenfield", "Kingsway", "Ashby")
KINDS = ("School", "Academy", "Primary School", "High School", "Community College")
# What slot (i // 4) % 20 of the mix holds: applications with faults, a corrected resubmission, a signatory's
# confirmation in the thread, mail for a person, automatic mail.
APP_FAULTS: list[tuple[tuple[str, ...], str]] = [
    ((), "all"), ((), "all"), (("teacher1.trn",), "all"), ((), "one_missing"), (("school.telephone",), "all"),
    ((), "in_to"), ((), "none"), ((), "upper"), (("school.urn",), "all"), ((), "sender_is_signatory"),
    ((), "all"), (("hod.email",), "all"), ((), "all"), ((), "one_missing"),
]
RESUBMISSION, CONFIRMATION = 14, 15


# ---- building the mail ----------------------------------------------------------------------------------------

def _hub_addresses() -> dict[str, str]:
    from samples.applications import programme
    return {hub_id: address or programme(pids[0]).hub.address for hub_id, _, address, pids in HUBS}


def _school(j: int):
    from samples.applications import School
    people = tuple((f"{'Mrs' if k % 2 else 'Mr'} {FIRST[(j + k) % len(FIRST)]} {LAST[(j * 7 + k) % len(LAST)]}",
                    f"{('head', 'hod', 'teacher.one', 'teacher.two')[k]}", f"{2000000 + j * 4 + k:07d}")
                   for k in range(4))
    return School(f"{TOWNS[j % len(TOWNS)]} {KINDS[j % len(KINDS)]} {j}", f"{100000 + j:06d}",
                  f"{j} {TOWNS[(j // 8) % len(TOWNS)]} Road", f"school{j}.example.sch.uk", people)


def _programme_for(i: int) -> str:
    pids = HUBS[i % 4][3]
    return pids[(i // 4) % len(pids)]


def _app_message_id(i: int) -> str:
    return f"<scale-app-{i}@school{i}.example.sch.uk>"


def build_message(i: int, hubs: dict[str, str]) -> bytes:
    """Message number ``i`` of the mix: a function of ``i`` alone, so the first 1,000 of 5,000 are the 1,000."""
    from samples.applications import application_email, complete_answers, correspondents, fill_form
    from samples.forms import FillStyle
    from samples.mail import bounce_report, build_email, forgot_attachment_email, out_of_office, question_email

    hub_id = HUBS[i % 4][0]
    hub = hubs[hub_id]
    when = START + timedelta(minutes=i)
    slot = (i // 4) % 20
    styles = (FillStyle.VALUE_CELL, FillStyle.INLINE_CONTENT_CONTROL, FillStyle.TRACKED_INSERT,
              FillStyle.PARAGRAPH_CONTENT_CONTROL)
    if slot < RESUBMISSION or slot == RESUBMISSION:
        # A resubmission is the school of the application one round earlier in this hub, now complete.
        school_i = i - 4 if slot == RESUBMISSION else i
        pid = _programme_for(school_i)
        drop, pattern = ((), "all") if slot == RESUBMISSION else APP_FAULTS[slot]
        answers = {k: v for k, v in complete_answers(pid, _school(school_i)).items() if k not in drop}
        docx = fill_form(pid, answers, style=styles[i % len(styles)])
        return application_email(pid, docx, answers=answers, pattern=pattern, received=when,
                                 message_id=_app_message_id(i), subject=f"Application from {answers['school.name']}")
    if slot == CONFIRMATION:
        # The signatory left off the form e-mail at slot 13 (one_missing: the last one) confirms in its thread.
        app_i = i - 8
        pid = _programme_for(app_i)
        answers = complete_answers(pid, _school(app_i))
        people = correspondents(pid, answers, "all").cc
        return build_email(sender=people[-1], to=hub, subject="Re: Your application", body_text="I confirm.\n",
                           date=when, received=when, in_reply_to=_app_message_id(app_i),
                           references=[_app_message_id(app_i)], message_id=f"<scale-confirm-{i}@example.sch.uk>")
    person = f"Parent {i} <parent{i}@example.com>"
    if slot == 16:
        return question_email(sender=person, to=hub, subject=f"Question {i} about the Work Group", date=when,
                              received=when)
    if slot == 17:
        return forgot_attachment_email(sender=person, to=hub, cc=(), subject=f"Application {i}", date=when)
    if slot == 18:
        return out_of_office(sender=person, to=hub, original_subject=f"Your application {i}",
                             style=("exchange", "gmail", "x-autoreply", "subject-only")[i % 4], date=when)
    return bounce_report(to=hub, failed_recipient=f"gone{i}@school{i}.example.sch.uk", date=when)


def cached_mail(cache: Path, n: int) -> Path:
    """The directory holding messages 0..n-1 as ``<i>.eml`` (mtime = received time), building what is missing."""
    folder = cache / CACHE_VERSION
    folder.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(n) if not (folder / f"{i:06d}.eml").exists()]
    if missing:
        print(f"building {len(missing)} messages into {folder} ...", flush=True)
        started = time.perf_counter()
        hubs = _hub_addresses()
        for count, i in enumerate(missing, 1):
            path = folder / f"{i:06d}.eml"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(build_message(i, hubs))
            stamp = (START + timedelta(minutes=i)).timestamp()
            os.utime(tmp, (stamp, stamp))
            os.replace(tmp, path)
            if count % 500 == 0:
                print(f"  {count}/{len(missing)} ({time.perf_counter() - started:.0f} s)", flush=True)
    return folder


def make_workspace(root: Path, mail: Path, n: int, db_url: str) -> Path:
    """A config, four Maildirs of hard links to the cached mail, an outbox folder; returns the config path."""
    root.mkdir(parents=True)
    hubs = []
    for hub_id, name, address, pids in HUBS:
        maildir = root / "inbox" / hub_id
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True)
        address = address or _hub_addresses()[hub_id]
        dates = "".join(f'[hubs.dates."{pid}"]\ndeadline = "{DEADLINE}"\n'
                        f'notifications = [{{ date = "2024-07-05", what = "selected schools informed" }}]\n'
                        for pid in pids)
        hubs.append(f'[[hubs]]\nid = "{hub_id}"\nname = "{name}"\naddress = "{address}"\n'
                    f'staff = ["lead@{address.partition("@")[2]}"]\n'
                    f'programmes = [{", ".join(f"{p!r}" for p in pids)}]\n'.replace("'", '"')
                    + f'maildir = "inbox/{hub_id}"\n'
                    + dates)
    for i in range(n):
        hub_id = HUBS[i % 4][0]
        # Maildir names start with the delivery time, so the ledger numbers them in arrival order.
        stamp = int((START + timedelta(minutes=i)).timestamp())
        os.link(mail / f"{i:06d}.eml", root / "inbox" / hub_id / "new" / f"{stamp}.M{i:06d}P1.bench")
    path = root / "hubbot.toml"
    # The hourly cap per hub is set out of reach: a whole round arrives here in one cycle, and what is measured is
    # the bot's work per message, not how long a flood waits (the cap's cost per e-mail is measured all the same).
    path.write_text(f'[database]\nurl = "{db_url}"\n[outbox]\npath = "outbox"\n[limits]\nper_hub_per_hour = 1000000\n\n'
                    + "\n".join(hubs))
    return path


# ---- databases ------------------------------------------------------------------------------------------------

def new_pg_database() -> str:
    import psycopg
    name = f"hubbot_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- children (fresh processes: their peak RSS and imports are their own) -------------------------------------

def _child_setup(code: str) -> dict[str, int]:
    """Put ``code`` first on the path and count SQL statements from here on."""
    sys.path.insert(0, code)
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counter = {"statements": 0}

    def count(*_args: Any) -> None:
        counter["statements"] += 1

    event.listen(Engine, "before_cursor_execute", count)
    return counter


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_floor(code: str, mail: str, n: int, config: str, queue: Any) -> None:
    _child_setup(code)
    from bot.config import load_config
    from bot.context import check_settings
    from rules.pipeline import assess

    settings = check_settings(load_config(Path(config)))
    raws = [(Path(mail) / f"{i:06d}.eml").read_bytes() for i in range(n)]
    assess(raws[0], settings)   # warm-up: registry, templates, imports
    started, cpu = time.perf_counter(), time.process_time()
    for raw in raws:
        assess(raw, settings)
    queue.put({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu})


def child_worker(code: str, config: str, now: str, queue: Any, barrier: Any = None) -> None:
    counter = _child_setup(code)
    os.chdir(Path(config).parent)
    from bot.config import load_config
    from bot.context import check_settings
    from bot.worker import Worker
    from storage.db import open_database

    cfg = load_config(Path(config))
    settings = check_settings(cfg)
    if barrier is not None:
        barrier.wait()   # every worker of the curve starts on the new database at the same moment
    started, cpu = time.perf_counter(), time.process_time()
    try:
        db = open_database(cfg.database_url)
    except Exception as exc:  # noqa: BLE001 - the "before" code crashes here when workers race on migrations
        queue.put({"error": f"open_database: {type(exc).__name__}: {str(exc)[:200]}"})
        return
    opened, cpu = time.perf_counter(), time.process_time()
    counter["statements"] = 0
    when = datetime.fromisoformat(now)
    import inspect
    # A mailbox's first poll starts at its end unless told to answer older mail (--backfill), where the code has it.
    backfill = {"backfill": START - timedelta(days=1)} if "backfill" in inspect.signature(Worker).parameters else {}
    worker = Worker(cfg, db, settings, clock=lambda: when, **backfill)
    try:
        report = worker.run_once()
        # One drain sends at most 5,000 e-mails (a cron line's next `run --once` sends the rest): drain to the end,
        # so that every N answers its whole round and the figures compare.
        while (more := worker.send_due()).claimed:
            report.outbox.sent += more.sent
    finally:
        worker.close()
    finished = time.perf_counter()
    queue.put({"seconds": finished - opened, "cpu": time.process_time() - cpu, "open_seconds": opened - started,
               "stored": sum(report.fetched.values()),
               "processed": len(report.outcomes), "failed": report.failed_messages, "sent": report.outbox.sent,
               "errors": report.mailbox_errors, "statements": counter["statements"], "rss": _peak_rss_mb()})
    db.close()


def child_command(code: str, argv: list[str], queue: Any) -> None:
    counter = _child_setup(code)
    import contextlib
    import io

    from bot.cli.main import main

    out = io.StringIO()
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = main(argv)
    queue.put({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "status": status,
               "statements": counter["statements"],
               "rss": _peak_rss_mb(), "output_chars": len(out.getvalue())})


def run_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get(timeout=7200)
    process.join()
    return result


# ---- checks ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    messages: int
    distinct: int
    processed_once: bool
    replies: int
    max_replies_per_message: int
    eml_files: int
    eml_distinct_ids: int
    applications: int = 0

    @property
    def ok(self) -> bool:
        return (self.messages == self.distinct and self.processed_once and self.max_replies_per_message <= 1
                and self.eml_files == self.eml_distinct_ids == self.replies)

    def __str__(self) -> str:
        return (f"messages {self.messages} (distinct bytes {self.distinct}; {self.applications} applications), "
                f"each processed once: "
                f"{self.processed_once}, replies {self.replies} (at most {self.max_replies_per_message} per source "
                f"message), .eml files {self.eml_files} ({self.eml_distinct_ids} distinct Message-IDs): "
                f"{'OK' if self.ok else 'DUPLICATES'}")


def check_once(db_url: str, outbox: Path, expected: int) -> Check:
    """Every message stored once and processed once (one decision event each), each reply queued and written once."""
    from sqlalchemy import bindparam, create_engine, text
    engine = create_engine(db_url)
    decided = ("application_version", "thread_reply", "processed", "ignored", "duplicate")
    with engine.connect() as conn:
        count, distinct = conn.execute(text("SELECT count(*), count(DISTINCT sha256) FROM messages")).one()
        applications = conn.execute(text("SELECT count(*) FROM applications")).scalar_one()
        per_message = Counter(conn.execute(text("SELECT message_id FROM events WHERE kind IN :kinds").bindparams(
            bindparam("kinds", expanding=True)), {"kinds": list(decided)}).scalars())
        processed = conn.execute(text("SELECT count(*) FROM messages WHERE state = 'processed'")).scalar_one()
        replies = conn.execute(text("SELECT count(*) FROM outbox WHERE source_message_id IS NOT NULL")).scalar_one()
        most = conn.execute(text("SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM outbox "
                                 "WHERE source_message_id IS NOT NULL GROUP BY source_message_id) AS t")).scalar_one()
    engine.dispose()
    from email.parser import BytesHeaderParser
    files = list(outbox.glob("*.eml")) if outbox.exists() else []
    ids = [" ".join(str(BytesHeaderParser().parsebytes(path.read_bytes(), headersonly=True)["Message-ID"]).split())
           for path in files]
    once = (count == expected and processed == expected and len(per_message) == expected
            and set(per_message.values()) == {1})
    return Check(count, distinct, once, replies, most, len(files), len(set(ids)), applications)


# ---- the measurements -----------------------------------------------------------------------------------------

def bench_database(label: str, code: str, mail: Path, n: int, work: Path, db_url: str, staff: bool) -> dict:
    workspace = work / f"{label}-{n}"
    config = make_workspace(workspace, mail, n, db_url)
    # The floor just before and just after the worker, averaged: other people's load comes and goes.
    before = run_child(child_floor, code, str(mail), n, str(config))
    result = run_child(child_worker, code, str(config), WORKER_NOW.isoformat())
    after = run_child(child_floor, code, str(mail), n, str(config))
    floor = {key: (before[key] + after[key]) / 2 for key in ("seconds", "cpu")}
    row: dict[str, Any] = {"floor": floor["seconds"], "floor_cpu": floor["cpu"], "worker": result}
    if "error" in result:
        print(f"  {label}: {result['error']}")
        return row
    check = check_once(db_url, workspace / "outbox", n)
    row["check"] = check
    ms = 1000 * result["seconds"] / n
    print(f"  {label:<6} run --once {result['seconds']:6.1f} s ({ms:5.1f} ms/msg, {n / result['seconds']:5.1f} msg/s) "
          f"pipeline {floor['seconds']:5.1f} s ({1000 * floor['seconds'] / n:4.1f} ms/msg) ratio "
          f"{result['seconds'] / floor['seconds']:4.2f}x; CPU {1000 * result['cpu'] / n:5.1f} vs "
          f"{1000 * floor['cpu'] / n:4.1f} ms/msg = {result['cpu'] / floor['cpu']:4.2f}x; "
          f"{result['statements'] / n:5.1f} SQL/msg; sent {result['sent']}; peak RSS {result['rss']:.0f} MB; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"         {check}")
    if staff:
        common = ["--config", str(config)]
        for name, argv in (("digest", ["digest", *common, "--now", DIGEST_NOW.isoformat()]),
                           ("remind", ["remind", *common, "--now", REMIND_NOW.isoformat()]),
                           ("status", ["status", *common, "--now", DIGEST_NOW.isoformat()]),
                           ("export", ["export", *common, "--format", "xlsx", "-o", str(workspace / "export.xlsx")]),
                           ("export_csv", ["export", *common, "--format", "csv", "-o", str(workspace / "export.csv")])):
            row[name] = run_child(child_command, code, argv)
            r = row[name]
            print(f"         {name:<10} {r['seconds']:6.2f} s (CPU {r['cpu']:5.2f} s)  {r['statements']:6d} SQL  "
                  f"peak RSS {r['rss']:5.0f} MB  (exit {r['status']}, {r['output_chars']} chars printed)", flush=True)
    return row


def bench_curve(code: str, mail: Path, n: int, work: Path, workers: list[int]) -> list[dict]:
    print(f"PostgreSQL, {n} messages, workers started together on a new database:", flush=True)
    curve = []
    for count in workers:
        db_url = new_pg_database()
        try:
            workspace = work / f"curve-{count}"
            config = make_workspace(workspace, mail, n, db_url)
            ctx = multiprocessing.get_context("spawn")
            queue = ctx.Queue()
            barrier = ctx.Barrier(count + 1)
            children = [ctx.Process(target=child_worker, args=(code, str(config), WORKER_NOW.isoformat(), queue,
                                                               barrier)) for _ in range(count)]
            for child in children:
                child.start()
            barrier.wait()
            started, busy = time.perf_counter(), _cpu_ticks()
            results = [queue.get(timeout=7200) for _ in children]
            wall = time.perf_counter() - started
            idle = _idle_share(busy, _cpu_ticks())
            for child in children:
                child.join()
            errors = [r["error"] for r in results if "error" in r]
            check = check_once(db_url, workspace / "outbox", n) if not errors else None
            point = {"workers": count, "wall": wall, "results": results, "check": check, "errors": errors}
            curve.append(point)
            processed = [r.get("processed", 0) for r in results]
            stored = [r.get("stored", 0) for r in results]
            # The workers' own CPU per message: flat across the curve means more workers add no work of their
            # own (waiting on each other would show as wall time, not here), so they scale with free cores.
            cpu = sum(r.get("cpu", 0.0) for r in results) / n
            print(f"  {count} worker(s): {wall:6.1f} s wall, {n / wall:5.1f} msg/s; stored per worker {stored}, "
                  f"processed per worker {processed}; workers' CPU {1000 * cpu:.1f} ms/msg; the machine's cores "
                  f"were idle {100 * idle:.0f}% of the time "
                  f"(load {os.getloadavg()[0]:.1f})"
                  + (f"; ERRORS: {errors}" if errors else ""), flush=True)
            if check is not None:
                print(f"    {check}")
        finally:
            drop_pg_database(db_url)
    base = curve[0]["wall"] if curve and not curve[0]["errors"] else None
    if base:
        print("  speed-up: " + ", ".join(f"{p['workers']}: {base / p['wall']:.2f}x" for p in curve))
    return curve


def _cpu_ticks() -> tuple[int, int]:
    """(idle, total) CPU ticks of the whole machine so far, from /proc/stat (zeros where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)


def _idle_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How much of the machine's CPU time went unused between two readings: a worker curve can only climb into
    cores nobody else is using."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def print_table(rows: dict[int, dict[str, dict]]) -> None:
    print()
    print("| N | pipeline (floor) | run --once SQLite | run --once PG | digest SQLite / PG | remind SQLite / PG "
          "| export xlsx SQLite / PG (peak RSS) | SQL per message SQLite / PG |")
    print("|---|---|---|---|---|---|---|---|")

    def once(r: dict | None) -> str:
        if not r or "error" in r.get("worker", {}):
            return "-"
        w = r["worker"]
        return (f"{w['seconds']:.1f} s ({w['seconds'] / r['floor']:.2f}x; CPU {w['cpu'] / r['floor_cpu']:.2f}x; "
                f"{1000 * w['seconds'] / w['processed']:.1f} ms/msg)")

    def cmd(r: dict | None, name: str, rss: bool = False) -> str:
        if not r or name not in r:
            return "-"
        c = r[name]
        return (f"{c['seconds']:.1f} s, {c['rss']:.0f} MB" if rss
                else f"{c['seconds']:.1f} s (CPU {c['cpu']:.1f} s, {c['statements']} SQL)")

    for n, by_db in sorted(rows.items()):
        s, p = by_db.get("sqlite"), by_db.get("pg")
        floors = [r["floor"] for r in (s, p) if r]
        middle = statistics.median(floors) if floors else 0.0
        floor = f"{middle:.1f} s ({1000 * middle / n:.1f} ms/msg)" if floors else "-"
        sql = " / ".join(f"{r['worker']['statements'] / n:.1f}" if r and "statements" in r.get("worker", {}) else "-"
                         for r in (s, p))
        print(f"| {n:,} | {floor} | {once(s)} | {once(p)} | {cmd(s, 'digest')} / {cmd(p, 'digest')} | "
              f"{cmd(s, 'remind')} / {cmd(p, 'remind')} | {cmd(s, 'export', True)} / {cmd(p, 'export', True)} "
              f"| {sql} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, nargs="+", default=[1000, 5000], help="application counts (default 1000 5000)")
    parser.add_argument("--big", action="store_true", help="also N = 20,000 (slow)")
    parser.add_argument("--curve-n", type=int, default=2000, help="messages for the worker curve (default 2000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts for the curve")
    parser.add_argument("--skip", default="", help="comma-separated: sqlite,pg,staff,curve")
    parser.add_argument("--code", default=str(REPO), help="checkout whose bot is measured (default: this one)")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "hubbot-scale-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed) for inspection")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    sizes = sorted(set(args.n + ([20_000] if args.big else [])))
    code = str(Path(args.code).resolve())
    cache = Path(args.cache)
    mail = cached_mail(cache, max(sizes + ([args.curve_n] if "curve" not in skip else [])))
    work = Path(tempfile.mkdtemp(prefix="hubbot-scale-"))
    print(f"code: {code}; work folder {work}; {os.cpu_count()} cores", flush=True)
    rows: dict[int, dict[str, dict]] = {}
    try:
        for n in sizes:
            print(f"N = {n:,}", flush=True)
            rows[n] = {}
            if "sqlite" not in skip:
                url = f"sqlite:///{work / f'sqlite-{n}.db'}"
                rows[n]["sqlite"] = bench_database("sqlite", code, mail, n, work, url, "staff" not in skip)
            if "pg" not in skip:
                url = new_pg_database()
                try:
                    rows[n]["pg"] = bench_database("pg", code, mail, n, work, url, "staff" not in skip)
                finally:
                    drop_pg_database(url)
        print_table(rows)
        if "curve" not in skip:
            print()
            bench_curve(code, mail, args.curve_n, work, args.workers)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

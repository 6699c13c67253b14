"""Several workers on one database, and the pieces that keep cost per message flat: workers started together on a
new database migrate it once (the others wait for the lock, none crashes), on PostgreSQL and SQLite; two workers
polling the same mailboxes store each message once and process and answer it once, and a mailbox being polled by
one worker is skipped by the other; storing the same bytes from two sessions at once inserts one row and no dead
one; the daily reply cap counted from ``outbox_recipients`` gives exactly what reading the outbox gave (every
recipient, any case, each e-mail once, the last 24 hours), follows retention, and counts e-mails queued before the
upgrade; the send-time caps counted by indexed lookups hold exactly what reading the outbox held; the history's
lookup for each message, and the daily cap for an address that got nothing yet, read the same however full the
outbox is; a worker told to stop hands back the batch it had claimed for next; a worker run for a group of hubs
processes and sends only that group's mail; a batch of stored messages with one the database refuses quarantines
that one alone; a worker that stored and processed a burst of mail refreshes the planner's statistics; a long
backlog sends the replies decided so far as it goes, and a short cycle sends once, after reading.
"""
from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select, text

from storage import repository as repo
from storage.counters import sent_in_last_day
from storage.db import open_database, upgrade
from storage.locks import try_lock
from storage.models import Event, Message, MessageState, OutboxItem
from templates import EmailKind
from tests.test_workflow import EVERYTHING, Bot, application, deliver, hub_toml, write_config

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
    worker = Worker(cfg, db, check_settings(cfg), clock=lambda: WORKFLOW_NOW, backfill=EVERYTHING)
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


# Steps an index one level deeper may add: 400 more rows cost a lookup that, not 400 more rows read.
DEEPER = 10


def _sqlite_steps(session: Any, run: Any) -> int:
    """SQLite virtual-machine steps (not time: the same on any machine) taken by ``run()`` on the session's
    connection."""
    raw = session.connection().connection.dbapi_connection
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    raw.set_progress_handler(count, 1)
    try:
        run()
    finally:
        raw.set_progress_handler(None, 1)
    return steps[0]


def _probe_steps(session: Any, ids: list[str]) -> int:
    """Steps of the history's one statement for an e-mail naming ``ids`` as the e-mails it answers."""
    from bot.workflow import _probe_query

    return _sqlite_steps(session, lambda: session.connection().execute(_probe_query(bool(ids)), {
        "hub": "central", "wanted": "<new@school.example.sch.uk>", "before": 10**9,
        "answered": "<new@school.example.sch.uk>", "ids": ids, "programme": "secondary-tfm-wg-2024",
        "key": "100001"}).one())


def _sent(db: Any, count: int, to: str = "head@school.example.sch.uk") -> list[int]:
    """``count`` e-mails of hub central to ``to``, queued and marked sent now."""
    with db.session() as session:
        ids = [repo.enqueue_reply(session, hub_id="central", kind=EmailKind.ACKNOWLEDGEMENT, from_addr="hub@x.org",
                                  to=[to], subject="s", text="t", now=NOW,
                                  dedupe_key=f"k{repo.new_message_id('x.org')}").item.id for _ in range(count)]
        session.execute(text("UPDATE outbox SET state = 'sent', sent_at = :at"), {"at": NOW.replace(tzinfo=None)})
    return ids


def test_the_history_of_an_email_costs_the_same_however_full_the_outbox(tmp_path: Path) -> None:
    """What the workflow asks of the past for each message (an earlier copy, the thread's application, the
    school's) reads the same whatever the hub sent before, for a new e-mail and for a reply naming an earlier
    one: with an empty list of thread ids, SQLite used to read every outbox row of the hub to match none."""
    db = open_database(f"sqlite:///{tmp_path / 'h.db'}")
    try:
        _sent(db, 10)
        with db.session() as session:
            small = (_probe_steps(session, []), _probe_steps(session, ["<old@school.example.sch.uk>"]))
        _sent(db, 400)
        with db.session() as session:
            large = (_probe_steps(session, []), _probe_steps(session, ["<old@school.example.sch.uk>"]))
        assert all(b <= a + DEEPER for a, b in zip(small, large)), (small, large)
    finally:
        db.close()


def test_the_daily_cap_for_a_new_address_costs_the_same_however_much_was_sent(tmp_path: Path) -> None:
    """The per-address daily cap asks when each of an e-mail's addresses last got mail from us; for an address
    that never did, that is one lookup whatever the outbox holds (SQLite used to read every e-mail ever sent,
    asked about an empty list of them)."""
    from bot.sending.caps import Caps, hold_until

    db = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    caps = Caps(per_address_per_day=5)

    def steps() -> int:
        (new,) = _sent(db, 1, to=f"new-{repo.new_message_id('x.org')[1:9]}@school.example.sch.uk")
        with db.session() as session:
            item = session.get(OutboxItem, new)
            return _sqlite_steps(session, lambda: hold_until(session, item, caps, NOW))

    try:
        _sent(db, 10)
        small = steps()
        _sent(db, 400)
        assert steps() <= small + DEEPER
    finally:
        db.close()


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


def test_stopping_gives_back_the_message_claimed_for_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next batch is claimed in the commit of the previous one; a worker told to stop then hands it back
    at once, its attempts uncounted, rather than leaving it leased for the next worker to wait out. (Batches of
    one message here, so that the stop comes between batches; a batch under way is finished first.)"""
    from bot.workflow import Workflow

    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    for urn in ("700001", "700002", "700003"):
        deliver(tmp_path / "mail", application(urn=urn))
    bot = Bot(config)
    try:
        worker = bot.worker()
        worker.batch_size = 1
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


# ---- a worker for a group of hubs ---------------------------------------------------------------------------------

def test_a_worker_for_a_group_of_hubs_processes_and_sends_only_that_groups_mail(tmp_path: Path) -> None:
    """Two workers, one per hub group, on one database: each reads, answers and sends its own hubs' mail only."""
    url = f"sqlite:///{tmp_path / 'hubbot.db'}"
    central = hub_toml("central", maildir="mail-a")
    second = hub_toml("second", maildir="mail-b", address="hub2@example.org", name="Second Maths Hub")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config_a = write_config(tmp_path / "a", url, hubs=central.replace('"mail-a"', f'"{tmp_path / "mail-a"}"'),
                            extra=f'[outbox]\npath = "{tmp_path / "outbox"}"')
    config_b = write_config(tmp_path / "b", url, hubs=second.replace('"mail-b"', f'"{tmp_path / "mail-b"}"'),
                            extra=f'[outbox]\npath = "{tmp_path / "outbox"}"')
    deliver(tmp_path / "mail-a", application(urn="810001"))
    deliver(tmp_path / "mail-b", application(urn="810002"))
    group_a, group_b = Bot(config_a), Bot(config_b)
    try:
        # Group B's message is stored first (by its own worker polling), but only group A's worker runs next.
        group_b.worker().poll(group_b.config.hubs[0])
        report = group_a.run()
        assert [o.status for o in report.outcomes] and len(report.outcomes) == 1
        by_hub = {m.hub_id: m.state for m in group_a.messages()}
        assert by_hub == {"central": MessageState.PROCESSED, "second": MessageState.STORED}
        assert {i.hub_id for i in group_a.outbox()} == {"central"}
        report = group_b.run()
        assert len(report.outcomes) == 1
        assert {m.state for m in group_b.messages()} == {MessageState.PROCESSED}
        assert sorted(i.hub_id for i in group_b.outbox()) == ["central", "second"]
        assert {i.state.value for i in group_b.outbox()} == {"sent"}
    finally:
        group_a.close()
        group_b.close()


# ---- storing in batches -----------------------------------------------------------------------------------------

def test_a_batch_with_a_message_the_database_refuses_quarantines_that_one_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    for urn in ("820001", "820002", "820003"):
        deliver(tmp_path / "mail", application(urn=urn))
    bot = Bot(config)
    real = repo.store_raw_message

    def refuse_the_second(session: Any, **kwargs: Any) -> Any:
        if b"820002" in kwargs["raw"] or b"ODIwMDAy" in kwargs["raw"]:
            raise ValueError("refused")   # what the driver raises for a value it cannot send
        return real(session, **kwargs)

    try:
        monkeypatch.setattr(repo, "store_raw_message", refuse_the_second)
        worker = bot.worker()
        stored = worker.poll(bot.config.hubs[0])
        states = sorted((m.state.value, (m.error or "")[:24]) for m in bot.messages())
        raws = [m for m in bot.messages() if m.state is MessageState.QUARANTINED]
        assert stored == 2
        assert states == [("quarantined", "could not be stored: Val"), ("stored", ""), ("stored", "")]
        assert len(raws) == 1 and raws[0].uid is not None
        # The cursor is past all three: the next poll fetches nothing again.
        monkeypatch.setattr(repo, "store_raw_message", real)
        assert worker.poll(bot.config.hubs[0]) == 0 and len(bot.messages()) == 3
    finally:
        bot.close()


# ---- the send-time caps ----------------------------------------------------------------------------------------

def _hold_by_scan(session: Any, item: OutboxItem, caps: Any, now: datetime) -> Any:
    """The send-time caps as they were counted before the indexed lookups (the day's sent outbox read whole), an
    e-mail over the daily cap for several addresses waiting for the latest of their times."""
    from sqlalchemy import func, or_

    from bot.sending.caps import DAY, HOUR, Hold
    from storage.models import OutboxState

    went = func.coalesce(OutboxItem.sent_at, OutboxItem.data_started_at)
    gone = select(OutboxItem.to, OutboxItem.cc, went).where(
        OutboxItem.id != item.id, or_(OutboxItem.state == OutboxState.SENT, OutboxItem.state == OutboxState.UNCERTAIN),
        went >= now - DAY)
    mine = {a.lower() for a in (*(item.to or ()), *(item.cc or ()))}
    watched = mine - caps.exempt
    if watched:
        times: dict[str, list[datetime]] = {}
        for to, cc, at in session.execute(gone):
            for address in {a.lower() for a in (*(to or ()), *(cc or ()))} & watched:
                times.setdefault(address, []).append(at)
        # The e-mail may go when every one of its addresses is under the cap again: the latest of their times.
        frees = [sorted(seen)[len(seen) - caps.per_address_per_day] + DAY
                 for seen in times.values() if len(seen) >= caps.per_address_per_day]
        if frees:
            return Hold(max(*frees, now + timedelta(minutes=1)), "daily limit for an address",
                        caps.per_address_per_day)
    counted: Counter[datetime] = Counter()
    for to, cc, at in session.execute(gone.where(OutboxItem.hub_id == item.hub_id, went >= now - HOUR)):
        counted[at] += len({a.lower() for a in (*(to or ()), *(cc or ()))})
    total = sum(counted.values()) + len(mine)
    if total > caps.per_hub_per_hour:
        for at in sorted(counted):
            total -= counted[at]
            if total <= caps.per_hub_per_hour:
                return Hold(max(at + HOUR, now + timedelta(minutes=1)), "hourly limit for the hub",
                            caps.per_hub_per_hour)
        return Hold(now + HOUR, "hourly limit for the hub", caps.per_hub_per_hour)
    return None


def test_send_time_caps_hold_what_reading_the_outbox_held(db_url: str) -> None:
    import random

    from bot.sending.caps import Caps, hold_until
    from storage.models import OutboxState

    rng = random.Random(13)
    people = ["office@a.sch.uk", "Head@A.sch.uk", "head@a.sch.uk", "hod@b.sch.uk", "x@c.sch.uk", "hub@example.org"]
    database = open_database(db_url)
    try:
        with database.session() as session:
            for n in range(160):
                at = NOW - timedelta(minutes=rng.randrange(0, 36 * 60))
                to = rng.sample(people, rng.randint(1, 2))
                cc = rng.sample(people, rng.randint(0, 2))
                item = repo.enqueue_reply(session, hub_id=rng.choice(["h", "g"]), kind=EmailKind.ACKNOWLEDGEMENT,
                                          from_addr="hub@example.org", to=to, cc=cc, subject="s", text="t",
                                          dedupe_key=f"k{n}", now=at - timedelta(minutes=5)).item
                state = rng.choice([OutboxState.SENT, OutboxState.SENT, OutboxState.UNCERTAIN, OutboxState.PENDING,
                                    OutboxState.FAILED])
                item.state = state
                if state is OutboxState.SENT:
                    item.sent_at = at
                    item.data_started_at = at if rng.random() < 0.5 else None
                elif state is OutboxState.UNCERTAIN:
                    item.data_started_at = at if rng.random() < 0.8 else None
        holds = 0
        with database.session() as session:
            items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
            for per_address, per_hub in ((2, 5), (3, 8), (5, 200), (1, 3)):
                caps = Caps(per_address_per_day=per_address, per_hub_per_hour=per_hub,
                            exempt=frozenset({"hub@example.org"}))
                for moment in (NOW, NOW - timedelta(hours=7), NOW + timedelta(hours=20)):
                    for item in items:
                        expected = _hold_by_scan(session, item, caps, moment)
                        assert hold_until(session, item, caps, moment) == expected, (item.id, caps, moment)
                        holds += expected is not None
        assert holds > 100   # the comparison saw both answers, many times
    finally:
        database.close()


# ---- the planner's statistics after a burst -------------------------------------------------------------------------

def _analyzed(url: str) -> dict[str, float]:
    """reltuples per table: -1 until the table is first analyzed (PostgreSQL 14 and later)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT relname, reltuples FROM pg_class WHERE relname IN "
                                          "('messages', 'outbox', 'outbox_recipients', 'applications')")).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("every", [500, 2])
def test_a_burst_of_mail_refreshes_the_planners_statistics(tmp_path: Path, fresh_pg_url: str, every: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that stored and processed ``STATISTICS_EVERY`` messages analyzes the tables its statements read, so
    the planner does not go on believing them empty while a round arrives faster than autovacuum looks; below
    that, it leaves them to autovacuum (too few rows here for autovacuum to analyze them within the test)."""
    import bot.worker

    monkeypatch.setattr(bot.worker, "STATISTICS_EVERY", every)
    config = write_config(tmp_path, fresh_pg_url)
    for urn in ("710001", "710002", "710003"):
        deliver(tmp_path / "mail", application(urn=urn))
    bot = Bot(config)
    try:
        assert len(bot.run().outcomes) == 3
    finally:
        bot.close()
    counts = _analyzed(fresh_pg_url)
    if every == 2:
        # Analyzed after the three were stored, and again after their batch was processed.
        assert counts["messages"] == 3 and counts["applications"] == 3 and counts["outbox"] >= 0
    else:
        assert set(counts.values()) == {-1}


# ---- a long backlog ---------------------------------------------------------------------------------------------

def _three_forms(tmp_path: Path) -> Bot:
    """A worker's database and a Maildir holding three schools' forms; replies are .eml files."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}",
                          extra=f'[outbox]\npath = "{tmp_path / "outbox"}"')
    for number in range(3):
        deliver(tmp_path / "mail", application(urn=f"82000{number}"))
    return Bot(config)


def test_a_long_backlog_sends_the_replies_decided_so_far_as_it_goes(tmp_path: Path) -> None:
    """A deadline's flood must not hold every school's reply until the last stored message is read: the worker
    sends between batches every ``send_every`` seconds, and the cycle's report counts every send."""
    bot = _three_forms(tmp_path)
    try:
        worker = bot.worker()
        worker.send_every = 0   # every batch is "a while" here
        worker.batch_size = 1   # three batches, not one
        report = worker.run_once()
        decided = bot.events("application_version")
        sent = bot.events("reply_sent")
        assert len(decided) == len(sent) == report.outbox.sent == 3
        # The first school's reply went before the last message was read, not after it.
        assert sent[0].id < decided[-1].id
        assert len(list((tmp_path / "outbox").glob("*.eml"))) == 3
    finally:
        bot.close()


def test_a_short_cycle_sends_once_after_reading(tmp_path: Path) -> None:
    bot = _three_forms(tmp_path)
    try:
        report = bot.run()
        decided, sent = bot.events("application_version"), bot.events("reply_sent")
        assert report.outbox.sent == len(sent) == 3 and sent[0].id > decided[-1].id
    finally:
        bot.close()

"""The database layer on SQLite and PostgreSQL: migrations from empty, idempotent storing, per-hub duplicate
detection, idempotent enqueueing and job claims, expiring leases, retention, and (PostgreSQL) two workers claiming
at once never getting the same message or reply."""
from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from storage import repository as repo
from storage.db import HEAD_REVISION, SchemaRevision, alembic_config, open_database, schema_revision
from storage.models import ApplicationStatus, Base, Event, Message, MessageState, OutboxItem, OutboxState
from templates import EmailKind

NOW = datetime(2024, 6, 28, 9, 0, tzinfo=timezone.utc)


def raw(n: int, message_id: str | None = None, body: str = "hello") -> bytes:
    mid = message_id or f"<m{n}@example.sch.uk>"
    return f"Message-ID: {mid}\r\nSubject: s{n}\r\n\r\n{body}\r\n".encode()


@pytest.fixture
def db(db_url):
    database = open_database(db_url)
    yield database
    database.close()


def test_migrations_from_empty_match_models(db_url):
    database = open_database(db_url)
    tables = set(inspect(database.engine).get_table_names())
    assert {"mailbox_state", "messages", "applications", "application_versions", "signatories", "outbox",
            "events", "job_claims", "alembic_version"} <= tables
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # Only type-rendering noise is tolerated; a missing table, column, index or constraint is a real drift.
    assert [d for d in diff if d[0] in ("add_table", "remove_table", "add_column", "remove_column",
                                        "add_index", "remove_index", "add_constraint", "remove_constraint")] == []
    database.close()
    open_database(db_url).close()   # a second upgrade is a no-op


def test_open_skips_alembic_only_at_the_shipped_head(db_url):
    """``open_database`` reads the version itself and leaves Alembic out at ``HEAD_REVISION``: that constant must be
    Alembic's head, and a database one migration behind must still be brought up to it."""
    database = open_database(db_url)
    try:
        assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION
        assert schema_revision(database.engine) == SchemaRevision(HEAD_REVISION, HEAD_REVISION)
        config = alembic_config()
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "-1")
        assert schema_revision(database.engine).current != HEAD_REVISION
    finally:
        database.close()
    database = open_database(db_url)
    try:
        assert schema_revision(database.engine).current == HEAD_REVISION
    finally:
        database.close()


def test_sqlite_pragmas(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    database.close()


def test_store_is_idempotent_and_duplicates_are_per_hub(db):
    with db.session() as s:
        first = repo.store_raw_message(s, hub_id="north", folder="INBOX", uidvalidity=7, uid=1, raw=raw(1),
                                       received_at=NOW, now=NOW)
        assert first.created and first.message.message_id == "<m1@example.sch.uk>"
        assert first.message.sha256 and first.message.size == len(raw(1))
        again = repo.store_raw_message(s, hub_id="north", folder="INBOX", uidvalidity=7, uid=1, raw=raw(1),
                                       received_at=NOW, now=NOW)
        assert not again.created and again.message.id == first.message.id
        # Same bytes under a new UIDVALIDITY (mailbox renumbered): recognised, not stored twice.
        renumbered = repo.store_raw_message(s, hub_id="north", folder="INBOX", uidvalidity=8, uid=1, raw=raw(1),
                                            received_at=NOW, now=NOW)
        assert not renumbered.created and renumbered.message.id == first.message.id
        # Same Message-ID, different bytes, same hub: stored, and found as a duplicate of the first (the workflow
        # then does not answer it twice: test_workflow).
        resent = repo.store_raw_message(s, hub_id="north", folder="INBOX", uidvalidity=7, uid=2,
                                        raw=raw(1, body="changed"), received_at=NOW, now=NOW)
        assert resent.created and resent.message.id != first.message.id
        assert [m.id for m in repo.find_duplicates(s, hub_id="north", message_id="<m1@example.sch.uk>",
                                                   exclude_id=resent.message.id)] == [first.message.id]
        # The same message in another hub is another submission: stored, and no duplicate there.
        other = repo.store_raw_message(s, hub_id="south", folder="INBOX", uidvalidity=7, uid=1, raw=raw(1),
                                       received_at=NOW, now=NOW)
        assert other.created and repo.find_duplicates(s, hub_id="south", message_id="<m1@example.sch.uk>",
                                                      exclude_id=other.message.id) == []
        dups = repo.find_duplicates(s, hub_id="north", message_id="<m1@example.sch.uk>",
                                    exclude_id=resent.message.id)
        assert [m.id for m in dups] == [first.message.id]
        assert repo.find_duplicates(s, hub_id="south", message_id="<m1@example.sch.uk>",
                                    exclude_id=other.message.id) == []


def test_mailbox_cursor(db):
    with db.session() as s:
        state = repo.get_mailbox_state(s, "north", "INBOX", now=NOW)
        assert state.uidvalidity is None and state.last_uid == 0
        repo.advance_mailbox(s, state, uidvalidity=5, uid=10, now=NOW)
        repo.advance_mailbox(s, state, uidvalidity=5, uid=4, now=NOW)
        assert state.last_uid == 10
        repo.advance_mailbox(s, state, uidvalidity=6, uid=2, now=NOW)
        assert (state.uidvalidity, state.last_uid) == (6, 2)
    with db.session() as s:
        assert repo.get_mailbox_state(s, "north", "INBOX").last_uid == 2


def test_message_claims_leases_and_quarantine(db):
    with db.session() as s:
        for i in range(2):
            repo.store_raw_message(s, hub_id="h", folder="INBOX", uidvalidity=1, uid=i + 1, raw=raw(i),
                                   received_at=NOW, now=NOW)
    with db.session() as s:
        a = repo.claim_next_message(s, worker="a", now=NOW)
        b = repo.claim_next_message(s, worker="b", now=NOW)
        assert a and b and a.id != b.id
        assert repo.claim_next_message(s, worker="c", now=NOW) is None
        repo.mark_processed(s, a, now=NOW)
    # b's worker died: after the lease the message is handed out again.
    with db.session() as s:
        later = NOW + repo.DEFAULT_MESSAGE_LEASE + timedelta(seconds=1)
        again = repo.claim_next_message(s, worker="c", now=later)
        assert again is not None and again.id == b.id and again.attempts == 2
    # A message that keeps killing workers ends up quarantined, not claimed forever.
    t = later
    with db.session() as s:
        for _ in range(10):
            t += repo.DEFAULT_MESSAGE_LEASE * 2
            if repo.claim_next_message(s, worker="d", now=t, max_attempts=3) is None:
                break
        poisoned = s.get(type(again), b.id)
        assert poisoned.state is MessageState.QUARANTINED
        assert s.scalar(select(Event).where(Event.kind == "message_quarantined")) is not None


def test_message_batches_are_runs_of_new_messages(db):
    """A batch is the next stored messages in order: it stops before a message tried before (which goes alone, so
    a message that kills its worker does not cost its neighbours their attempts) and at the byte limit (a large
    message goes in a batch of its own), and never skips one to take a later one."""
    with db.session() as s:
        ids = [repo.store_raw_message(s, hub_id="h", folder="INBOX", uidvalidity=1, uid=i + 1,
                                      raw=raw(i, body="x" * (5000 if i == 5 else 10)),
                                      received_at=NOW, now=NOW).message.id for i in range(8)]
    with db.session() as s:   # message 3 was claimed by a worker that died: tried before
        s.get(Message, ids[3]).attempts = 1
    later = NOW + timedelta(minutes=1)
    batches = []
    with db.session() as s:
        while claimed := repo.claim_messages(s, worker="w", now=later, limit=10, batch_bytes=2000):
            batches.append([ids.index(m.id) for m in claimed])
            assert all(m.claimed_by == "w" for m in claimed)
    assert batches == [[0, 1, 2], [3], [4], [5], [6, 7]]
    with db.session() as s:
        attempts = {m.id: m.attempts for m in s.scalars(select(Message))}
    assert [attempts[i] for i in ids] == [1, 1, 1, 2, 1, 1, 1, 1]


def test_outbox_enqueue_claim_retry_and_finish(db):
    with db.session() as s:
        m = repo.store_raw_message(s, hub_id="h", folder="INBOX", uidvalidity=1, uid=1, raw=raw(1),
                                   received_at=NOW, now=NOW).message
        first = repo.enqueue_reply(s, hub_id="h", kind="acknowledgement", from_addr="hub@example.org",
                                   to=["school@example.sch.uk"], subject="Thanks", text="t", source_message_id=m.id,
                                   now=NOW)
        second = repo.enqueue_reply(s, hub_id="h", kind="acknowledgement", from_addr="hub@example.org",
                                    to=["school@example.sch.uk"], subject="Thanks", text="t",
                                    source_message_id=m.id, now=NOW)
        assert first.created and not second.created and first.item.id == second.item.id
        # Random, chosen once at queue time and kept with the row (interface.md: never derived from ids or keys).
        assert re.fullmatch(r"<hubbot\.[0-9a-f]{32}@example\.org>", first.item.message_id)
        assert second.item.message_id == first.item.message_id
        assert repo.new_message_id("example.org") != repo.new_message_id("example.org")
        with pytest.raises(ValueError):
            repo.enqueue_reply(s, hub_id="h", kind="digest", from_addr="hub@example.org", to=[], subject="",
                               text="")
    with db.session() as s:
        [item] = repo.claim_due_replies(s, worker="w1", now=NOW)
        assert item.state is OutboxState.SENDING and item.attempts == 1
        assert repo.claim_due_replies(s, worker="w2", now=NOW) == []
        assert repo.schedule_retry(s, item, error="451", delay=timedelta(minutes=5), now=NOW)
        assert repo.claim_due_replies(s, worker="w2", now=NOW + timedelta(minutes=1)) == []
    with db.session() as s:
        [item] = repo.claim_due_replies(s, worker="w2", now=NOW + timedelta(minutes=6))
        assert item.attempts == 2
    # w2 crashed mid-send: nobody may send it again automatically (the server may have accepted it); once the
    # lease runs out it is parked as UNCERTAIN for a person, who can requeue it.
    with db.session() as s:
        assert repo.claim_due_replies(s, worker="w3", now=NOW + timedelta(hours=1)) == []
        [parked] = repo.park_interrupted_sends(s, now=NOW + timedelta(hours=1))
        assert parked.state is OutboxState.UNCERTAIN and parked.last_error == repo.INTERRUPTED_MARKER
        stale = OutboxItem(id=parked.id, claimed_by="w2")
        assert not repo.mark_sent(s, stale, now=NOW)   # w2 waking up late cannot mark it sent any more
        assert repo.claim_due_replies(s, worker="w3", now=NOW + timedelta(hours=1)) == []
        assert repo.requeue_reply(s, parked, now=NOW + timedelta(hours=2))
    with db.session() as s:
        [item] = repo.claim_due_replies(s, worker="w3", now=NOW + timedelta(hours=2))
        assert item.claimed_by == "w3" and item.attempts == 3
        assert repo.mark_sent(s, item, now=NOW + timedelta(hours=2))
        assert item.state is OutboxState.SENT and item.sent_at is not None


def test_job_claims_and_events(db):
    with db.session() as s:
        assert repo.claim_job(s, "reminder:1:7", now=NOW)
        assert not repo.claim_job(s, "reminder:1:7", now=NOW)
        assert repo.claim_job(s, "reminder:1:2", now=NOW)
        event = repo.record_event(s, "poll", hub_id="h", detail={"fetched": 3}, now=NOW)
        assert event.id and event.detail == {"fetched": 3}
    with db.session() as s:
        assert not repo.claim_job(s, "reminder:1:7", now=NOW)


def test_applications_versions_signatories_and_retention(db):
    with db.session() as s:
        m = repo.store_raw_message(s, hub_id="h", folder="INBOX", uidvalidity=1, uid=1, raw=raw(1),
                                   received_at=NOW, now=NOW).message
        app, created = repo.get_or_create_application(s, hub_id="h", programme="p", school_urn="122687",
                                                      school_name=None, status=ApplicationStatus.INCOMPLETE,
                                                      now=NOW)
        assert created
        version, _ = repo.add_application_version(s, app, message_id=m.id, fields={"school.name": "Valley School"},
                                                  verdict={"status": "complete"}, status=ApplicationStatus.COMPLETE,
                                                  flags=[{"code": "late"}], now=NOW)
        again, made = repo.add_application_version(s, app, message_id=m.id, fields={}, verdict={},
                                                   status=ApplicationStatus.COMPLETE, now=NOW)
        assert not made and again.id == version.id
        assert app.latest_version_id == version.id and app.school_name == "Valley School"
        repo.upsert_signatories(s, app, [repo.SignatoryCopy("head", "Mrs O'Neill", "h@example.sch.uk", True)])
        [head] = app.signatories
        assert (head.name, head.email, head.copied, head.confirmed) == ("Mrs O'Neill", "h@example.sch.uk", True, False)
        repo.confirm_signatory(s, head, message_id=m.id, now=NOW)
        assert head.confirmed and head.confirmed_by_message_id == m.id
        repo.mark_processed(s, m, now=NOW)
        repo.enqueue_reply(s, hub_id="h", kind=EmailKind.ACKNOWLEDGEMENT, from_addr="hub@example.org", to=["x@example.org"],
                           subject="s", text="t", source_message_id=m.id, now=NOW)
        repo.record_event(s, "processed", hub_id="h", message_id=m.id, application_id=app.id, now=NOW)
        pending = repo.store_raw_message(s, hub_id="h", folder="INBOX", uidvalidity=1, uid=2, raw=raw(2),
                                         received_at=NOW, now=NOW).message
        pending_id = pending.id
    with db.session() as s:
        report = repo.delete_personal_data(s, older_than=NOW + timedelta(days=1))
        # The pending outbox row and the unprocessed message survive; everything finished is gone.
        assert (report.applications, report.messages, report.events) == (1, 1, 1)
        assert report.outbox == 0
    with db.session() as s:
        from storage.models import Application, Message, Signatory
        assert s.scalars(select(Application)).all() == [] and s.scalars(select(Signatory)).all() == []
        assert [m.id for m in s.scalars(select(Message))] == [pending_id]
        assert s.scalar(select(OutboxItem)).source_message_id is None


# ---- concurrency on PostgreSQL --------------------------------------------------------------------------------

@pytest.fixture
def pg_db(pg_url):
    from tests.servers import _empty_postgres
    _empty_postgres(pg_url)
    database = open_database(pg_url, pool_size=8)
    yield database
    database.close()


def test_postgres_keeps_raw_mail_uncompressed(pg_db):
    """Mail is mostly base64, which PostgreSQL's compression cannot shrink but spends the server's time trying
    (migration 0008): the raw bytes are stored out of line as they are, and read back whole."""
    with pg_db.engine.connect() as conn:
        storage = conn.exec_driver_sql(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = 'messages'::regclass AND attname = 'raw'").scalar()
    assert storage == "e"
    body = "x" * 200_000
    with pg_db.session() as session:
        stored = repo.store_raw_message(session, hub_id="h", folder="INBOX", uidvalidity=1, uid=1,
                                        raw=raw(1, body=body), received_at=NOW, now=NOW).message
        row_id = stored.id
    with pg_db.session() as session:
        assert session.get(Message, row_id).raw == raw(1, body=body)


def _race(worker_count: int, work) -> list[list[int]]:
    barrier = threading.Barrier(worker_count)
    results: list[list[int]] = [[] for _ in range(worker_count)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(worker_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_postgres_workers_never_claim_the_same_message(pg_db):
    with pg_db.session() as s:
        for i in range(60):
            repo.store_raw_message(s, hub_id="h", folder="INBOX", uidvalidity=1, uid=i + 1, raw=raw(i),
                                   received_at=NOW, now=NOW)

    def work(index: int) -> list[int]:
        got = []
        while True:
            with pg_db.session() as s:   # claim, commit: the lease is what other workers see
                message = repo.claim_next_message(s, worker=f"w{index}", now=NOW)
                if message is None:
                    return got
                got.append(message.id)

    results = _race(4, work)
    claimed = [i for r in results for i in r]
    assert len(claimed) == 60 and len(set(claimed)) == 60
    assert sum(1 for r in results if r) >= 2   # the work really was shared


def test_postgres_workers_never_claim_the_same_reply(pg_db):
    with pg_db.session() as s:
        for i in range(40):
            repo.enqueue_reply(s, hub_id="h", kind="digest", dedupe_key=f"digest:{i}", from_addr="hub@example.org",
                               to=["staff@example.org"], subject="d", text="t", now=NOW)

    def work(index: int) -> list[int]:
        got = []
        while True:
            with pg_db.session() as s:
                items = repo.claim_due_replies(s, worker=f"w{index}", now=NOW, limit=3)
                if not items:
                    return got
                got.extend(item.id for item in items)

    results = _race(4, work)
    claimed = [i for r in results for i in r]
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_sqlite_two_connections_never_claim_the_same_message(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'c.db'}")
    with database.session() as s:
        for i in range(30):
            repo.store_raw_message(s, hub_id="h", folder="INBOX", uidvalidity=1, uid=i + 1, raw=raw(i),
                                   received_at=NOW, now=NOW)

    def work(index: int) -> list[int]:
        got = []
        while True:
            with database.session() as s:
                message = repo.claim_next_message(s, worker=f"w{index}", now=NOW)
                if message is None:
                    return got
                got.append(message.id)

    claimed = [i for r in _race(3, work) for i in r]
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 30
    database.close()

"""Crash safety, proven with real processes: for each crash point (``HUBBOT_CRASH_AT``) three applications are
appended to Dovecot, ``hubbot run --once`` kills itself with SIGKILL at that point, and two reruns follow (later,
with ``--now``, so leases taken by the dead process have expired). Every message is then stored once and processed
once, no reply is lost, and aiosmtpd received each reply at most once: after ``after_smtp`` the one interrupted
reply is parked as UNCERTAIN (never resent automatically) and the others are sent once; after every other point
all three replies arrive exactly once. Finally two worker processes run at the same time against one PostgreSQL
database and one mailbox: each message is processed once and each reply sent once.
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import open_database
from storage.models import ApplicationVersion, Event, MessageState, OutboxState
from tests.test_imap_worker import BACKFILL, REPO, T0, hubbot_env, imap_config, received_ids, run_once
from tests.test_workflow import Bot, application

pytestmark = pytest.mark.slow

POINTS = ["after_fetch", "after_store", "after_verdict", "after_commit", "after_smtp"]
# Events written once per processed message (by Workflow._finish).
PROCESSED_EVENTS = ("application_version", "thread_reply", "processed", "ignored", "duplicate")


def processed_once(bot: Bot, expected: int) -> None:
    messages = bot.messages()
    assert len(messages) == expected
    assert len({m.sha256 for m in messages}) == expected
    assert all(m.state is MessageState.PROCESSED for m in messages)
    with bot.db.session() as session:
        per_message = Counter(session.scalars(select(Event.message_id).where(Event.kind.in_(PROCESSED_EVENTS))))
        versions = Counter(session.scalars(select(ApplicationVersion.message_id)))
    assert per_message == Counter({m.id: 1 for m in messages})
    assert versions == Counter({m.id: 1 for m in messages})


@pytest.mark.parametrize("point", POINTS)
def test_crash_then_rerun_loses_nothing_and_answers_once(tmp_path: Path, dovecot, smtp_server, point: str) -> None:
    folder = dovecot.new_folder()
    for urn in ("200001", "200002", "200003"):
        dovecot.append(application(urn=urn), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)

    crashed = run_once(config, dovecot, HUBBOT_CRASH_AT=point)
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    after_crash = len(smtp_server.received)
    assert after_crash == (1 if point == "after_smtp" else 0)

    # Later than every lease (messages 15 min, replies 10 min), as a restart after a real crash would be.
    for minutes in (30, 60):
        rerun = run_once(config, dovecot, now=T0 + timedelta(minutes=minutes))
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    bot = Bot(config)
    try:
        processed_once(bot, 3)
        items = bot.outbox()
        assert len(items) == 3 and len({i.source_message_id for i in items}) == 3
        ids = received_ids(smtp_server)
        assert set(ids.values()) == {1}, ids                      # nothing received twice
        states = Counter(i.state for i in items)
        if point == "after_smtp":
            assert states == {OutboxState.UNCERTAIN: 1, OutboxState.SENT: 2}
            (uncertain,) = [i for i in items if i.state is OutboxState.UNCERTAIN]
            assert uncertain.message_id in ids                    # it did reach the server, once
            assert len(ids) == 3
            assert len(bot.events("reply_uncertain")) == 1
        else:
            assert states == {OutboxState.SENT: 3}
            assert set(ids) == {i.message_id for i in items}
    finally:
        bot.close()


def test_after_smtp_crash_never_resends_the_interrupted_reply(tmp_path: Path, dovecot, smtp_server) -> None:
    """The part of the after_smtp guarantee that holds today: whatever else, nothing reaches the server twice
    and the reply the server accepted before the crash is UNCERTAIN, not resent."""
    folder = dovecot.new_folder()
    for urn in ("210001", "210002", "210003"):
        dovecot.append(application(urn=urn), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    assert run_once(config, dovecot, HUBBOT_CRASH_AT="after_smtp").returncode == -9
    (first,) = received_ids(smtp_server)
    for minutes in (30, 60, 24 * 60):
        assert run_once(config, dovecot, now=T0 + timedelta(minutes=minutes)).returncode == 0
    bot = Bot(config)
    try:
        processed_once(bot, 3)
        ids = received_ids(smtp_server)
        assert set(ids.values()) == {1}
        by_id = {i.message_id: i for i in bot.outbox()}
        assert by_id[first].state is OutboxState.UNCERTAIN
        assert all(i.state in (OutboxState.SENT, OutboxState.UNCERTAIN) for i in by_id.values())
        assert {m for m, i in by_id.items() if i.state is OutboxState.SENT} <= set(ids)
    finally:
        bot.close()


def test_two_workers_on_one_postgres_database_share_the_work(tmp_path: Path, dovecot, smtp_server,
                                                             pg_url: str) -> None:
    folder = dovecot.new_folder()
    count = 8
    for i in range(count):
        dovecot.append(application(urn=f"3000{i:02d}"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder, db_url=pg_url,
                         extra="max_replies_per_address_per_day = 100")
    open_database(pg_url).close()   # migrate first; the workers then race only for the work itself

    command = [sys.executable, "-m", "bot.cli", "run", "--once", "--config", str(config), "--now", T0.isoformat(),
               "--backfill", BACKFILL]
    workers = [subprocess.Popen(command, cwd=REPO, env=hubbot_env(dovecot), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=180)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    bot = Bot(config)
    try:
        processed_once(bot, count)
        items = bot.outbox()
        assert len(items) == count and all(i.state is OutboxState.SENT for i in items)
        ids = received_ids(smtp_server)
        assert len(ids) == count and set(ids.values()) == {1}
        with bot.db.session() as session:
            actors = set(session.scalars(select(Event.actor).where(Event.kind == "application_version")))
            assert session.scalar(select(func.count()).select_from(Event).where(Event.kind == "reply_sent")) == count
        assert actors   # which worker did what is recorded (both usually share the work)
    finally:
        bot.close()

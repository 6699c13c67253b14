"""Recovery with nobody watching, against Dovecot, aiosmtpd (with its fault modes) and real SIGKILLs.

aiosmtpd plays the hub's relay and, like Microsoft 365 or Gmail, saves every message it accepts in the hub's Sent
folder (Dovecot); the config names that folder (``[security] sent_folder``). Then: a fresh database starts each
mailbox at its end (``--backfill SINCE`` opts in to older mail); a worker killed anywhere is followed at once
(same ``--now``, no lease expired) by one that takes its claims over and leaves no reply missing and none twice;
a connection cut before DATA is retried, one cut after the final "." is settled by the Sent folder; a database
restored from a backup reports that it is behind and does not answer again what the Sent folder shows it
answered; and after N kills at random moments, each followed by an immediate restart, the replies needing a
person are counted (the figure the final report quotes).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage.models import MessageState, OutboxState
from tests.test_imap_worker import REPO, T0, hubbot_env, imap_config, ok, received_ids
from tests.test_workflow import Bot, application

pytestmark = pytest.mark.slow

def with_sent_folder(dovecot, smtp_server) -> str:
    """Every message the relay accepts is also put in the hub's Sent folder, as hosted mail does. Each test has
    its own (this branch's Message-IDs are derived from outbox row ids, so two tests' copies would look alike;
    in production each database's are random)."""
    sent = dovecot.new_folder()
    smtp_server.handler.on_accept = lambda got: dovecot.append(got.raw, sent)
    return f'[security]\nsent_folder = "{sent}"\nsettle_seconds = 0\n'


def hubbot_run(config: Path, dovecot, *, now: datetime = T0, backfill: str | None = "1970-01-01T00:00:00+00:00",
               timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bot.cli", "run", "--once", "--config", str(config), "--now", now.isoformat()]
    if backfill:
        command += ["--backfill", backfill]
    return subprocess.run(command, cwd=REPO, env=hubbot_env(dovecot, **env), capture_output=True, text=True,
                          timeout=timeout)


# ---- a fresh database -----------------------------------------------------------------------------------------

def test_a_fresh_database_starts_at_the_mailbox_end(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    for urn in ("600001", "600002"):
        dovecot.append(application(urn=urn), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    ok(hubbot_run(config, dovecot, backfill=None))
    assert smtp_server.received == []                      # old mail: not answered
    dovecot.append(application(urn="600003"), folder)
    ok(hubbot_run(config, dovecot, backfill=None, now=T0 + timedelta(minutes=5)))
    assert len(smtp_server.received) == 1                  # new mail: answered
    bot = Bot(config)
    try:
        (started,) = bot.events("mailbox_started")
        assert started.detail["left_unanswered"] == 2 and started.detail["backfill"] is None
        assert len(bot.messages()) == 1
    finally:
        bot.close()


def test_backfill_answers_the_mail_received_since(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    with dovecot.client() as client:
        client.append(folder, application(urn="600011"), msg_time=datetime(2024, 6, 1, 9, 0, tzinfo=timezone.utc))
        client.append(folder, application(urn="600012"), msg_time=datetime(2024, 6, 19, 9, 0, tzinfo=timezone.utc))
        client.logout()
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    ok(hubbot_run(config, dovecot, backfill="2024-06-10T00:00:00+01:00"))
    assert len(smtp_server.received) == 1
    bot = Bot(config)
    try:
        (message,) = bot.messages()                        # only the mail received since the backfill date
        assert message.verdict["school"]["urn"] == "600012"
        (started,) = bot.events("mailbox_started")
        assert started.detail["left_unanswered"] == 1
    finally:
        bot.close()


# ---- a worker killed, and one started at once -----------------------------------------------------------------

@pytest.mark.parametrize("point", ["after_store", "after_verdict", "after_commit", "after_data_marker",
                                   "after_smtp"])
def test_a_killed_worker_is_followed_at_once_with_nothing_missing_or_twice(tmp_path: Path, dovecot, smtp_server,
                                                                          point: str) -> None:
    folder = dovecot.new_folder()
    for urn in ("610001", "610002", "610003"):
        dovecot.append(application(urn=urn), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder, extra=with_sent_folder(dovecot, smtp_server))
    crashed = hubbot_run(config, dovecot, HUBBOT_CRASH_AT=point)
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    ok(hubbot_run(config, dovecot))                        # at once: the same moment, no lease has run out
    ids = received_ids(smtp_server)
    assert len(ids) == 3 and set(ids.values()) == {1}, ids
    bot = Bot(config)
    try:
        states = Counter(i.state for i in bot.outbox())
        assert states == {OutboxState.SENT: 3}, states
        assert all(m.state is MessageState.PROCESSED for m in bot.messages())
        if point in ("after_data_marker", "after_smtp"):
            (resolved,) = bot.events("reply_resolved")
            assert resolved.detail["resolution"] == ("resend" if point == "after_data_marker" else "sent")
    finally:
        bot.close()


# ---- the SMTP conversation cut short --------------------------------------------------------------------------

def test_a_connection_cut_before_data_is_retried_and_one_cut_after_the_dot_is_settled(tmp_path: Path, dovecot,
                                                                                       smtp_server) -> None:
    folder = dovecot.new_folder()
    for urn in ("620001", "620002", "620003"):
        dovecot.append(application(urn=urn, pattern="none"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder, extra=with_sent_folder(dovecot, smtp_server))
    # First every connection is cut at RCPT (before DATA): all three are simply retried. Then the first reply is
    # taken by the server but the answer to its "." is lost; the second's connection is lost after "." and the
    # server did not keep it; the third goes normally.
    smtp_server.handler.refuse_rcpt["*"] = "drop"
    bot = Bot(config)
    try:
        bot.now = T0
        os.environ["HUBBOT_TEST_IMAP_PASSWORD"] = dovecot.password
        worker = bot.worker()
        worker.poll(bot.config.hubs[0])
        worker.process_stored()
        first = worker.send_due()
        assert first.retried == 3 and first.sent == 0 and smtp_server.received == []
        smtp_server.handler.refuse_rcpt.clear()
        smtp_server.handler.drops.extend(["accepted", "lost"])
        bot.now = T0 + timedelta(hours=1)                  # past the retry's backoff
        second = worker.send_due()
        assert second.uncertain == 2 and second.sent == 1
        bot.now = T0 + timedelta(hours=2)
        worker.poll(bot.config.hubs[0])                    # the Sent folder now shows what went
        third = worker.send_due()
        assert third.sent == 1                             # the one the server did not keep, sent again
        worker.close()
        ids = received_ids(smtp_server)
        assert len(ids) == 3 and set(ids.values()) == {1}, ids
        assert Counter(i.state for i in bot.outbox()) == {OutboxState.SENT: 3}
        assert sorted(e.detail["resolution"] for e in bot.events("reply_resolved")) == ["resend", "sent"]
    finally:
        os.environ.pop("HUBBOT_TEST_IMAP_PASSWORD", None)
        bot.close()


# ---- a database restored from a backup ------------------------------------------------------------------------

def test_a_restored_database_reports_it_is_behind_and_answers_nothing_twice(tmp_path: Path, dovecot,
                                                                            smtp_server) -> None:
    folder = dovecot.new_folder()
    dovecot.append(application(urn="630001"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder, extra=with_sent_folder(dovecot, smtp_server))
    ok(hubbot_run(config, dovecot))
    database = tmp_path / "hubbot.db"
    backup = tmp_path / "backup.db"
    subprocess.run(["sqlite3", str(database), f".backup {backup}"], check=True) if shutil.which("sqlite3") else \
        _copy_sqlite(database, backup)
    for urn in ("630002", "630003"):
        dovecot.append(application(urn=urn), folder)
    ok(hubbot_run(config, dovecot, now=T0 + timedelta(minutes=5)))
    assert len(smtp_server.received) == 3
    # The server is rebuilt from last night's backup: the database forgets two replies the mailbox remembers.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, database)
    ok(hubbot_run(config, dovecot, now=T0 + timedelta(minutes=10)))
    ids = received_ids(smtp_server)
    assert len(ids) == 3 and set(ids.values()) == {1}, ids
    bot = Bot(config)
    try:
        assert bot.events("mailbox_behind")
        flags = [m.verdict["flags"] for m in bot.messages() if not m.own_copy and m.verdict]
        assert sum(1 for f in flags if any("restored" in x["detail"] for x in f)) == 2
    finally:
        bot.close()


def _copy_sqlite(source: Path, target: Path) -> None:
    import sqlite3

    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


# ---- N random kills, each followed at once by a restart -------------------------------------------------------

@pytest.mark.parametrize("mailbox_shows", [True, False], ids=["sent-folder", "no-sent-folder"])
def test_random_kills_with_immediate_restarts(tmp_path: Path, dovecot, smtp_server, mailbox_shows: bool) -> None:
    """Mail keeps arriving; a worker is killed with SIGKILL at a random moment (a random crash point, or a timer
    at a random fraction of a second), and another starts at once. Afterwards no reply went twice and none is
    missing; the replies left for a person are counted (``PEOPLE_NEEDED`` in the report): none where the hub's
    Sent folder shows what went, only sends cut after DATA began where nothing can show it."""
    rng = random.Random(int(os.environ.get("HUBBOT_KILL_SEED", "20240620")))
    kills = int(os.environ.get("HUBBOT_KILLS", "12"))
    folder = dovecot.new_folder()
    # One school office sends every application here: lift the per-address cap out of the way.
    config = imap_config(tmp_path, dovecot, smtp_server, folder, extra="max_replies_per_address_per_day = 1000\n"
                         + (with_sent_folder(dovecot, smtp_server) if mailbox_shows else ""))
    points = ["after_fetch", "after_store", "after_verdict", "after_commit", "after_data_marker", "after_smtp",
              None]
    expected = 0
    for round_ in range(kills):
        for n in range(2):
            dovecot.append(application(urn=f"7{round_:03d}{n:02d}"), folder)
            expected += 1
        point = rng.choice(points)
        command = [sys.executable, "-m", "bot.cli", "run", "--once", "--config", str(config), "--now",
                   T0.isoformat(), "--backfill", "1970-01-01T00:00:00+00:00"]
        env = hubbot_env(dovecot, **({"HUBBOT_CRASH_AT": point} if point else {}))
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if point is None:
            time.sleep(rng.uniform(0.3, 2.5))           # a timer kill, wherever the worker happens to be
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        process.communicate(timeout=120)
        ok(hubbot_run(config, dovecot))                    # restarted at once
    ok(hubbot_run(config, dovecot))
    ids = received_ids(smtp_server)
    bot = Bot(config)
    try:
        items = [i for i in bot.outbox() if i.kind == "acknowledgement"]
        people = [i for i in items if i.state is not OutboxState.SENT]
        print(f"\nPEOPLE_NEEDED={len(people)} after {kills} random kills ({expected} replies, "
              f"{'with' if mailbox_shows else 'without'} a Sent folder)")
        assert len(items) == expected
        assert set(ids.values()) == {1}, ids               # nothing twice
        assert {i.message_id for i in items if i.state is OutboxState.SENT} <= set(ids)
        if mailbox_shows:
            assert len(ids) == expected                    # nothing missing
            assert people == []
        else:
            # Only sends cut after DATA began wait for a person; every other reply went, once.
            assert all(i.state is OutboxState.UNCERTAIN and i.data_started_at is not None for i in people)
            assert len(ids) + len([i for i in people if i.message_id not in ids]) == expected
    finally:
        bot.close()


def test_a_bcc_to_the_hub_settles_an_uncertain_send(tmp_path: Path, dovecot, smtp_server) -> None:
    """Where the relay keeps no Sent copy, ``bcc_hub`` sends the hub a copy of each e-mail; the copy comes back
    through the inbox (stored, never answered) and proves the send."""
    from tests.test_workflow import HUB_ADDRESS

    folder = dovecot.new_folder()
    dovecot.append(application(urn="640001"), folder)
    smtp_server.handler.on_accept = lambda got: dovecot.append(got.raw, folder) if HUB_ADDRESS in got.rcpt_tos \
        else None
    config = imap_config(tmp_path, dovecot, smtp_server, folder,
                         extra="[security]\nbcc_hub = true\nsettle_seconds = 0\n")
    smtp_server.handler.drops.append("accepted")          # the answer to "." is lost
    ok(hubbot_run(config, dovecot))
    ok(hubbot_run(config, dovecot, now=T0 + timedelta(minutes=5)))
    ok(hubbot_run(config, dovecot, now=T0 + timedelta(minutes=10)))
    # run --once also runs the day's scheduled jobs: the staff digest is not the reply being settled.
    (got,) = [m for m in smtp_server.received if "daily digest" not in str(m.message["Subject"])]
    assert HUB_ADDRESS in got.rcpt_tos and "Bcc" not in got.message
    bot = Bot(config)
    try:
        (item,) = bot.outbox()
        assert item.state is OutboxState.SENT
        (resolved,) = bot.events("reply_resolved")
        assert resolved.detail["resolution"] == "sent"
        copies = [m for m in bot.messages() if m.own_copy]
        assert len(copies) == 1 and copies[0].verdict_status == "ignored"
    finally:
        bot.close()

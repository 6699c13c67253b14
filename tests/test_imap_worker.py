"""The worker against a real Dovecot and a real aiosmtpd: a hub configured with ``[hubs.imap]`` (plain IMAP, password
from an environment variable) and ``[smtp]`` (no TLS), driven through ``hubbot run --once`` in a subprocess. Mixed
mail gets exactly one reply per message that deserves one; ``move_to`` moves what was stored; a UIDVALIDITY change
(the folder recreated with the same mail, plus the same mail appended again) answers nothing twice; a connection
cut in the middle of a fetch loses nothing and the next run finishes the job; an SMTP 451 is retried after the
backoff (``--now`` moves time forward) and sent once, a 550 is failed and not retried.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.worker import open_source
from storage.models import MessageState, OutboxState
from tests.test_workflow import (
    HUB_ADDRESS,
    LONDON,
    Bot,
    application,
    bounce_report,
    forgot_attachment_email,
    hub_toml,
    out_of_office,
    question_email,
    write_config,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PASSWORD_ENV = "HUBBOT_TEST_IMAP_PASSWORD"
T0 = datetime(2024, 6, 20, 12, 0, tzinfo=LONDON)
# The tests fill a mailbox before its first poll; a real first poll starts at the end unless told otherwise.
BACKFILL = "1970-01-01T00:00:00+00:00"


def imap_config(tmp_path: Path, dovecot, smtp_server, folder: str, *, move_to: str | None = None,
                idle: bool = False, db_url: str | None = None, extra: str = "") -> Path:
    imap = {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": dovecot.user,
            "password_env": PASSWORD_ENV, "folder": folder, "timeout_seconds": 10}
    if move_to:
        imap["move_to"] = move_to
    if idle:
        imap["idle"] = True
    return write_config(tmp_path, db_url or f"sqlite:///{tmp_path / 'hubbot.db'}",
                        hubs=hub_toml("central", maildir=None, imap=imap),
                        smtp=(smtp_server.host, smtp_server.port), extra=extra)


def hubbot_env(dovecot, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HUBBOT_CONFIG", "HUBBOT_CRASH_AT")}
    env["PYTHONPATH"] = str(REPO)
    env[PASSWORD_ENV] = dovecot.password
    env.update(extra)
    return env


def run_once(config: Path, dovecot, *, now: datetime = T0, timeout: float = 120,
             **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", "run", "--once", "--config", str(config),
                           "--now", now.isoformat(), "--backfill", BACKFILL], cwd=REPO, env=hubbot_env(dovecot, **env),
                          capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def mixed_mail() -> list[bytes]:
    return [
        application(urn="100001"),                               # complete: acknowledgement
        application(urn="100002", drop=("teacher1.trn",)),      # incomplete: missing_information
        forgot_attachment_email(to=HUB_ADDRESS),                 # no_form: missing_attachment
        question_email(to=HUB_ADDRESS),                          # a person reads it: no reply
        out_of_office(to=HUB_ADDRESS),                           # ignored
        bounce_report(to=HUB_ADDRESS),                           # ignored
    ]


REPLIES_TO_MIXED = 3


def received_ids(smtp_server) -> Counter[str]:
    return Counter(str(r.message["Message-ID"]).strip() for r in smtp_server.received)


def test_mixed_mail_is_answered_exactly_once(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    for raw in mixed_mail():
        dovecot.append(raw, folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    ok(run_once(config, dovecot))
    assert len(smtp_server.received) == REPLIES_TO_MIXED
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=5)))

    ids = received_ids(smtp_server)
    assert len(ids) == REPLIES_TO_MIXED and set(ids.values()) == {1}
    for received in smtp_server.received:
        message = received.message
        assert message["Auto-Submitted"] == "auto-replied" and message["In-Reply-To"]
        assert received.mail_from == HUB_ADDRESS
    bot = Bot(config)
    try:
        assert len(bot.messages()) == 6 and all(m.state is MessageState.PROCESSED for m in bot.messages())
        assert sorted(i.kind for i in bot.outbox()) == ["acknowledgement", "missing_attachment",
                                                       "missing_information"]
        assert all(i.state is OutboxState.SENT for i in bot.outbox())
    finally:
        bot.close()
    # Polling never touched the school's mail: still there, still unread.
    with dovecot.client() as client:
        client.select_folder(folder, readonly=True)
        assert len(client.search(["ALL"])) == 6 and client.search(["SEEN"]) == []
        client.logout()


def test_move_to_moves_stored_messages(tmp_path: Path, dovecot, smtp_server) -> None:
    folder, processed = dovecot.new_folder(), dovecot.new_folder()
    for raw in mixed_mail()[:3]:
        dovecot.append(raw, folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder, move_to=processed)
    ok(run_once(config, dovecot))
    with dovecot.client() as client:
        client.select_folder(folder, readonly=True)
        assert client.search(["ALL"]) == []
        client.select_folder(processed, readonly=True)
        assert len(client.search(["ALL"])) == 3
        client.logout()
    assert len(smtp_server.received) == 3
    # New mail after the move is still found (the cursor is per folder, not upset by the move).
    dovecot.append(application(urn="100009"), folder)
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=5)))
    assert len(smtp_server.received) == 4 and set(received_ids(smtp_server).values()) == {1}


def test_uidvalidity_change_answers_nothing_twice(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    mail = mixed_mail()
    for raw in mail:
        dovecot.append(raw, folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    ok(run_once(config, dovecot))
    assert len(smtp_server.received) == REPLIES_TO_MIXED

    dovecot.recreate_folder(folder)          # new UIDVALIDITY, same six messages
    for raw in mail:                         # ... and the same messages delivered once more
        dovecot.append(raw, folder)
    fresh = application(urn="100010")        # plus one genuinely new message
    dovecot.append(fresh, folder)
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=5)))
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=10)))

    assert len(smtp_server.received) == REPLIES_TO_MIXED + 1
    assert set(received_ids(smtp_server).values()) == {1}
    bot = Bot(config)
    try:
        assert len(bot.messages()) == 7
        assert len(bot.events("uidvalidity_changed")) == 1
    finally:
        bot.close()


def test_connection_dropped_mid_fetch_loses_nothing(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    count = 45                               # more than two body batches of 20
    for i in range(count):
        dovecot.append(question_email(to=HUB_ADDRESS, subject=f"Question {i}") if i % 3 else
                       forgot_attachment_email(to=HUB_ADDRESS, subject=f"Application {i}"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder,
                         extra="max_replies_per_address_per_day = 1000")
    os.environ[PASSWORD_ENV] = dovecot.password
    bot = Bot(config)
    try:
        class Cutting:
            """The real IMAP source, whose connection is killed after the 25th message is handed over."""

            def __init__(self, hub) -> None:
                self.inner = open_source(hub, bot.config)

            def fetch_new(self, cursor):
                run = self.inner.fetch_new(cursor)
                bodies = run._bodies

                def cut(uids):
                    for n, fetched in enumerate(bodies(uids), start=1):
                        yield fetched
                        if n == 25:
                            dovecot.kill_sessions()
                run._bodies = cut
                return run

            def move_to(self, uids, folder):
                self.inner.move_to(uids, folder)

            def close(self):
                self.inner.close()

        report = bot.worker(sources=Cutting).run_once()
        assert "central" in report.mailbox_errors
        stored_first = len(bot.messages())
        assert 25 <= stored_first < count

        bot.now = T0 + timedelta(minutes=5)
        report = bot.run()
        assert report.mailbox_errors == {}
        assert len(bot.messages()) == count
        assert all(m.state is MessageState.PROCESSED for m in bot.messages())
        expected = sum(1 for i in range(count) if i % 3 == 0)
        assert len(smtp_server.received) == expected and set(received_ids(smtp_server).values()) == {1}
    finally:
        os.environ.pop(PASSWORD_ENV, None)
        bot.close()


def test_temporary_smtp_failure_is_retried_after_backoff_and_sent_once(tmp_path: Path, dovecot,
                                                                       smtp_server) -> None:
    folder = dovecot.new_folder()
    dovecot.append(application(urn="100020"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    smtp_server.fail_next(1, "451 4.3.0 Try again later")
    ok(run_once(config, dovecot))
    assert smtp_server.received == []
    bot = Bot(config)
    try:
        (item,) = bot.outbox()
        assert item.state is OutboxState.PENDING and item.attempts == 1 and "451" in (item.last_error or "")
        ok(run_once(config, dovecot, now=T0 + timedelta(seconds=10)))   # not due yet
        assert smtp_server.received == []
        ok(run_once(config, dovecot, now=T0 + timedelta(minutes=5)))     # past the 1-minute backoff
        ok(run_once(config, dovecot, now=T0 + timedelta(minutes=60)))
        assert len(smtp_server.received) == 1
        (item,) = bot.outbox()
        assert item.state is OutboxState.SENT and item.attempts == 2
    finally:
        bot.close()


def test_permanent_smtp_failure_is_failed_and_not_retried(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    dovecot.append(application(urn="100030"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    smtp_server.fail_next(1, "550 5.1.1 Mailbox unavailable")
    ok(run_once(config, dovecot))
    ok(run_once(config, dovecot, now=T0 + timedelta(hours=2)))
    ok(run_once(config, dovecot, now=T0 + timedelta(days=1)))
    assert smtp_server.received == []
    bot = Bot(config)
    try:
        (item,) = bot.outbox()
        assert item.state is OutboxState.FAILED and item.attempts == 1 and "550" in (item.last_error or "")
        assert len(bot.events("reply_failed")) == 1
    finally:
        bot.close()


def test_wrong_imap_password_is_a_mailbox_error_not_a_crash(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    result = subprocess.run([sys.executable, "-m", "bot.cli", "run", "--once", "--config", str(config),
                             "--backfill", BACKFILL],
                            cwd=REPO, env={**hubbot_env(dovecot), PASSWORD_ENV: "wrong"}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr

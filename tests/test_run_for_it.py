"""The small things a hub's IT meets first: ``hubbot --version``; ``hubbot demo`` replacing only a folder an earlier
demo wrote; ``run --once`` saying replies were written to the outbox folder, not sent, when there is no
``[smtp]``; a ``move_to`` folder that does not exist reported on one line at every run, with no traceback, while the
mail is still read; connection errors naming host:port; one structured log line per processed message with ids,
codes and timings and no personal data; APScheduler's chatter kept at DEBUG; database errors that do not carry the
statement's values; reply Message-IDs that differ after the database is reset.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from bot.config import ImapSettings
from bot.mail.imap import ImapSource
from bot.mail.source import Cursor, MailSourceError
from samples.applications import SCHOOLS
from storage.db import open_database
from storage.models import OutboxItem, OutboxState
from tests.test_workflow import LONDON, Bot, application, deliver, hub_toml, write_config

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 6, 20, 12, 0, tzinfo=LONDON)


def hubbot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "HUBBOT_CONFIG"}
    environment.update(PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=180)


def test_version(tmp_path: Path) -> None:
    result = hubbot("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("hubbot ")


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    workspace = tmp_path / "hub"
    workspace.mkdir()
    (workspace / "hubbot.toml").write_text("# a real hub's config\n")
    (workspace / "hubbot.db").write_bytes(b"precious")
    result = hubbot("demo", "--dir", str(workspace), cwd=tmp_path)
    assert result.returncode == 2 and "not an earlier hubbot demo" in result.stdout
    assert (workspace / "hubbot.db").read_bytes() == b"precious"
    assert sorted(p.name for p in workspace.iterdir()) == ["hubbot.db", "hubbot.toml"]


def test_demo_uses_an_empty_folder_and_marks_it(tmp_path: Path) -> None:
    workspace = tmp_path / "empty"
    workspace.mkdir()
    result = hubbot("demo", "--dir", str(workspace), cwd=tmp_path, env={"COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    assert (workspace / ".hubbot-demo").is_file() and "not sent" in result.stdout


def test_run_without_smtp_says_written_not_sent(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    deliver(tmp_path / "mail", application(urn="100001"))
    deliver(tmp_path / "mail", application(urn="100002"))
    # A mailbox's first poll starts at its end; --backfill answers what is already there.
    result = hubbot("run", "--once", "--backfill", "1970-01-01", "--config", str(config), "--now", NOW.isoformat(),
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "replies: 2 written to the outbox folder, not sent" in result.stdout
    assert "2 sent" not in result.stdout
    # One structured line per processed message: ids and codes, no names or addresses.
    lines = [line for line in result.stderr.splitlines() if "message processed:" in line]
    assert len(lines) == 2 and all("status=complete" in line and " ms=" in line for line in lines)
    people = [value for name, local, _ in SCHOOLS[0].people for value in (name, local)]
    assert not any(p.lower() in result.stderr.lower() for p in people)


@pytest.mark.slow
def test_a_missing_move_to_is_one_line_at_every_run(tmp_path: Path, dovecot) -> None:
    folder = dovecot.new_folder()
    dovecot.append(application(urn="100001"), folder)
    imap = {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": dovecot.user,
            "password_env": "HUBBOT_TEST_IMAP_PASSWORD", "folder": folder, "move_to": "Procesed",
            "timeout_seconds": 10}
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}",
                          hubs=hub_toml("central", maildir=None, imap=imap))
    env = {"HUBBOT_TEST_IMAP_PASSWORD": dovecot.password}
    expected = (f"central: WARNING: move_to folder 'Procesed' on {dovecot.host}:{dovecot.port} cannot take "
                f"messages: it does not exist; messages stay in '{folder}'")
    for run in range(2):
        result = hubbot("run", "--once", "--backfill", "1970-01-01", "--config", str(config), "--now",
                        NOW.isoformat(), cwd=tmp_path, env=env)
        assert result.returncode == 1 and expected in result.stdout.splitlines(), result.stdout
        assert "Traceback" not in result.stderr
        assert ("1 complete" in result.stdout) == (run == 0)     # the mail was read all the same


def test_connection_errors_name_the_server_and_the_folder(dovecot, monkeypatch) -> None:
    monkeypatch.setenv("HUBBOT_TEST_IMAP_PASSWORD", dovecot.password)
    nowhere = ImapSettings(host="imap.nowhere.invalid", port=993, security="none", username="x",
                           password_env="HUBBOT_TEST_IMAP_PASSWORD", timeout_seconds=5)
    with pytest.raises(MailSourceError) as failure:
        ImapSource(nowhere).fetch_new(Cursor())
    assert "IMAP connection to imap.nowhere.invalid:993 failed: gaierror" in str(failure.value)
    missing = ImapSettings(host=dovecot.host, port=dovecot.port, security="none", username=dovecot.user,
                           password_env="HUBBOT_TEST_IMAP_PASSWORD", folder="Gone", timeout_seconds=5)
    with pytest.raises(MailSourceError) as failure:
        ImapSource(missing).fetch_new(Cursor())
    assert f"IMAP folder 'Gone' cannot be opened on {dovecot.host}:{dovecot.port}" in str(failure.value)


def test_database_errors_do_not_carry_the_values(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'h.db'}")

    def row(key: str) -> OutboxItem:
        return OutboxItem(hub_id="h", kind="x", dedupe_key=key, from_addr="hub@example.org",
                          to=["k.wright@valley.example.sch.uk"], cc=[], subject="Dear Ms Kate Wright", text="t",
                          headers={}, message_id="<same@example.org>", state=OutboxState.PENDING, attempts=0,
                          next_attempt_at=NOW, created_at=NOW)
    try:
        with pytest.raises(IntegrityError) as failure:
            with db.session() as session:
                session.add(row("a"))
                session.flush()
                session.add(row("b"))     # the same Message-ID: refused by the unique constraint
                session.flush()
        text = str(failure.value)
        assert "k.wright" not in text and "Kate Wright" not in text
        assert "hide_parameters" in text
    finally:
        db.close()


def test_reply_message_ids_differ_after_a_database_reset(tmp_path: Path) -> None:
    ids = []
    for attempt in range(2):
        directory = tmp_path / f"round{attempt}"
        directory.mkdir()
        config = write_config(directory, f"sqlite:///{directory / 'hubbot.db'}")
        deliver(directory / "mail", application(urn="100001", message_id="<same-school-mail@valley.example>"))
        bot = Bot(config)
        try:
            bot.worker().run_once()
            [item] = bot.outbox()
            ids.append(item.message_id)
        finally:
            bot.close()
    assert ids[0] != ids[1]


def test_scheduler_chatter_is_debug(caplog: pytest.LogCaptureFixture) -> None:
    from bot.logs import SchedulerChatter

    record = logging.LogRecord("apscheduler.executors.default", logging.INFO, __file__, 1,
                               'Job "poll" executed successfully', None, None)
    assert SchedulerChatter().filter(record) is (logging.getLogger().isEnabledFor(logging.DEBUG))
    own = logging.LogRecord("bot.worker", logging.INFO, __file__, 1, "message processed: id=1", None, None)
    assert SchedulerChatter().filter(own) is True and own.levelno == logging.INFO

"""Caps and clear faults against real servers. Caps count every recipient of every e-mail the bot sends: per
address per day (whatever the kind: replies, reminders, notices) and per hub per hour; an e-mail over a cap waits
and goes when the window frees. The relay refusing to relay for us (550 relaying denied) is an entry for staff,
never a bounce of the school's address; a Cc the server refuses is recorded on the sent reply and listed in the
digest.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.sending.caps import Caps
from bot.sending.outbox import drain_outbox, smtp_sender
from bot.sending.smtp import SmtpSettings
from storage import repository as repo
from storage.db import open_database
from storage.models import OutboxItem, OutboxState
from templates import EmailKind
from tests.test_imap_worker import T0, imap_config, ok, received_ids, run_once
from tests.test_workflow import Bot, application

pytestmark = pytest.mark.slow


def test_the_hourly_cap_for_a_hub_spreads_its_mail_out(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    for urn in ("800001", "800002", "800003", "800004"):
        dovecot.append(application(urn=urn, pattern="one_missing"), folder)   # office + 3 signatories each
    config = imap_config(tmp_path, dovecot, smtp_server, folder,
                         extra="max_replies_per_address_per_day = 100\n[limits]\nper_hub_per_hour = 9\n")
    ok(run_once(config, dovecot))
    assert len(smtp_server.received) == 2                       # 2 x 4 recipients; a third would make 12 > 9
    bot = Bot(config)
    try:
        held = bot.events("reply_suppressed")
        assert held and all(e.detail["reason"] == "hourly limit for the hub" for e in held)
    finally:
        bot.close()
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=30)))
    assert len(smtp_server.received) == 2                       # the hour is not over
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=61)))
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=122)))
    ids = received_ids(smtp_server)
    assert len(ids) == 4 and set(ids.values()) == {1}


def test_the_daily_cap_for_an_address_counts_every_kind_of_email(tmp_path: Path, smtp_server) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'caps.db'}")
    try:
        with db.session() as session:
            for n, kind in enumerate((EmailKind.ACKNOWLEDGEMENT, EmailKind.REMINDER, EmailKind.SIGNATORY_REMINDER)):
                repo.enqueue_reply(session, hub_id="central", kind=kind, from_addr="hub@example.org",
                                   to=["office@school.example"], cc=[], subject=f"e-mail {n}", text="x",
                                   dedupe_key=f"k{n}", now=T0)
        sender = smtp_sender(SmtpSettings(host=smtp_server.host, port=smtp_server.port, security="none", timeout_seconds=10))
        caps = Caps(per_address_per_day=2)
        first = drain_outbox(db, sender, worker="w", now=T0, caps=caps)
        assert (first.sent, first.held) == (2, 1)
        assert drain_outbox(db, sender, worker="w", now=T0 + timedelta(hours=12), caps=caps).sent == 0
        later = drain_outbox(db, sender, worker="w", now=T0 + timedelta(days=1, minutes=1), caps=caps)
        assert later.sent == 1
        with db.session() as session:
            assert all(i.state is OutboxState.SENT for i in session.scalars(select(OutboxItem)))
    finally:
        db.close()
    assert len(smtp_server.received) == 3


def test_relaying_denied_is_for_staff_not_a_bounce(tmp_path: Path, dovecot, smtp_server) -> None:
    folder = dovecot.new_folder()
    dovecot.append(application(urn="810001"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    smtp_server.handler.refuse_rcpt["*"] = "550 5.7.1 <office@valley.example.sch.uk>: Relay access denied"
    ok(run_once(config, dovecot))
    bot = Bot(config)
    try:
        (item,) = bot.outbox()
        assert item.state is OutboxState.PENDING and not item.refused      # waiting, not the school's fault
        assert "refused to send it" in item.last_error and "relay" in item.last_error.lower()
        from bot.staff.views import bounced_addresses
        with bot.db.session() as session:
            assert bounced_addresses(session, "central") == frozenset()
    finally:
        bot.close()
    smtp_server.handler.refuse_rcpt.clear()                  # the relay is fixed
    ok(run_once(config, dovecot, now=T0 + timedelta(hours=1)))
    assert len(smtp_server.received) == 1


def test_a_refused_cc_is_recorded_and_reported(tmp_path: Path, dovecot, smtp_server) -> None:
    import subprocess
    import sys

    from tests.test_imap_worker import REPO, hubbot_env

    folder = dovecot.new_folder()
    dovecot.append(application(urn="820001"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    smtp_server.handler.refuse_rcpt["h.oneill@valley.example.sch.uk"] = "550 5.1.1 User unknown"
    ok(run_once(config, dovecot))
    (got,) = smtp_server.received
    assert "h.oneill@valley.example.sch.uk" not in got.rcpt_tos and got.rcpt_tos
    bot = Bot(config)
    try:
        (item,) = bot.outbox()
        assert item.state is OutboxState.SENT
        assert item.last_error.startswith("partly refused: h.oneill@valley.example.sch.uk: 550")
        (sent,) = bot.events("reply_sent")
        assert sent.detail["refused_recipients"] == 1
    finally:
        bot.close()
    digest = subprocess.run([sys.executable, "-m", "bot.cli", "digest", "--config", str(config), "--now",
                             (T0 + timedelta(hours=1)).isoformat()], cwd=REPO, env=hubbot_env(dovecot),
                            capture_output=True, text=True, timeout=120)
    assert "some recipients were refused" in digest.stdout, digest.stdout + digest.stderr


# ---- clear faults ---------------------------------------------------------------------------------------------

def hubbot(*args: str, cwd: Path):
    import subprocess
    import sys

    from tests.test_imap_worker import REPO

    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def one_line(result) -> str:
    """The one line the bot says (``run`` also logs its progress to stderr; that is not what is counted)."""
    assert result.returncode == 2, result.stdout + result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("hubbot")]
    assert "Traceback" not in result.stderr and len(said) == 1, result.stderr
    return said[0]


def maildir_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    from tests.test_workflow import write_config

    (tmp_path / "mail" / "new").mkdir(parents=True, exist_ok=True)
    return write_config(tmp_path, url, extra=extra)


def test_a_corrupt_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "hubbot.db").write_bytes(b"this is not a database at all " * 100)
    config = maildir_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    assert "damaged" in one_line(hubbot("run", "--once", "--config", str(config), cwd=tmp_path))


def test_a_read_only_database_is_one_line(tmp_path: Path, pg_url: str) -> None:
    """A PostgreSQL database that went read-only (a standby after a failover, or set so by its administrator)."""
    import psycopg

    from tests.servers import _empty_postgres
    from tests.test_workflow import application, deliver

    _empty_postgres(pg_url)
    config = maildir_config(tmp_path, pg_url)
    assert hubbot("run", "--once", "--config", str(config), cwd=tmp_path).returncode == 0     # created, migrated
    deliver(tmp_path / "mail", application(urn="830001"))
    name = pg_url.rsplit("/", 1)[1]
    admin = pg_url.replace("postgresql+psycopg://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        assert "read-only" in one_line(hubbot("run", "--once", "--config", str(config), cwd=tmp_path))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')


def test_a_full_disk_is_one_line() -> None:
    """SQLite's own "database or disk is full", produced by capping the file's size, read as the bot reads it."""
    import sqlite3

    from storage.errors import describe

    connection = sqlite3.connect(":memory:")
    connection.execute("PRAGMA max_page_count = 2")
    try:
        connection.execute("CREATE TABLE t (x TEXT)")
        connection.executemany("INSERT INTO t VALUES (?)", [("x" * 4000,)] * 10)
    except sqlite3.OperationalError as exc:
        assert "disk is full" in describe(exc)
    else:
        raise AssertionError("SQLite did not report a full database")


@pytest.mark.parametrize("extra, says", [
    ('timezone = "Mars/Olympus"\n', "'Mars/Olympus' is not a time zone"),
    ("[limits]\nmessage_bytes = -1\n", "key 'limits.message_bytes': should be a positive number"),
    ("[limits]\nper_hub_per_hour = 0\n", "key 'limits.per_hub_per_hour'"),
    ("max_replies_per_address_per_day = -5\n", "key 'max_replies_per_address_per_day'"),
    ("[schedule]\npoll_every_minutes = -1\n", "key 'schedule.poll_every_minutes'"),
])
def test_bad_config_values_are_one_line(tmp_path: Path, extra: str, says: str) -> None:
    config = maildir_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", extra=extra)
    assert says in one_line(hubbot("run", "--once", "--config", str(config), cwd=tmp_path))


def test_a_staff_entry_that_is_not_an_address_is_one_line(tmp_path: Path) -> None:
    from tests.test_workflow import hub_toml, write_config

    hubs = hub_toml().replace('programmes = [', 'staff = ["Jo Bloggs"]\nprogrammes = [')
    (tmp_path / "mail" / "new").mkdir(parents=True)
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", hubs=hubs)
    assert "'Jo Bloggs' is not an e-mail address" in one_line(hubbot("digest", "--config", str(config),
                                                                     cwd=tmp_path))


def test_every_file_the_bot_writes_is_private_and_export_spares_the_database(tmp_path: Path) -> None:
    import stat

    from tests.test_workflow import application, deliver

    config = maildir_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    deliver(tmp_path / "mail", application(urn="840001"))
    assert hubbot("run", "--once", "--backfill", "1970-01-01", "--config", str(config), cwd=tmp_path).returncode == 0
    export = tmp_path / "applications.csv"
    export.write_text("old, readable by everyone")
    export.chmod(0o644)
    assert hubbot("export", "--format", "csv", "-o", str(export), "--config", str(config),
                  cwd=tmp_path).returncode == 0
    written = [tmp_path / "hubbot.db", export, tmp_path / "mail" / ".hubbot-ledger.json",
               *(tmp_path / "outbox").glob("*.eml")]
    assert len(written) == 4
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    before = (tmp_path / "hubbot.db").read_bytes()
    refused = one_line(hubbot("export", "--format", "csv", "-o", str(tmp_path / "hubbot.db"), "--config",
                              str(config), cwd=tmp_path))
    assert "the bot's own database" in refused and (tmp_path / "hubbot.db").read_bytes() == before

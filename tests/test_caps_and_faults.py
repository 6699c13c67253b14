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
        sender = smtp_sender(SmtpSettings(host=smtp_server.host, port=smtp_server.port, security="none", timeout=10))
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

"""Alerts as IT gets them, through a real aiosmtpd: one e-mail when an incident opens and one when it recovers, never
more, with two workers taking turns on the same database. A mailbox that fails three polls in a row (a wrong
password against Dovecot) is one incident; the digest opens with it and is sent although the day is otherwise quiet;
a working poll closes it. A hub's own mail server failing three sends in a row is an incident whose alert goes
through the other hub's server, from that hub's address, and so does its recovery. With no working server at all
the alert is written to the outbox folder. A refresh token the provider refuses is an incident at the first poll.
"""
from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.staff import jobs
from storage.models import Event
from tests.oauth_server import TokenServer
from tests.servers import free_port
from tests.test_workflow import LONDON, PID, Bot, application, deliver, hub_toml

pytestmark = pytest.mark.slow

NOW = datetime(2024, 6, 20, 12, 0, tzinfo=LONDON)
IT = "it@example.org"
IMAP_ENV = "HUBBOT_TEST_IMAP_PASSWORD"
ALERTS = f'[alerts]\nto = ["{IT}"]\n'


def alerts(server) -> list[email.message.EmailMessage]:
    return [r.message for r in server.received if IT in r.rcpt_tos]


def subjects(messages) -> list[str]:
    return [" ".join(str(m["Subject"]).split()) for m in messages]


def worker_pair(bot: Bot):
    # Two workers on one database, as two machines (or a restart) would be.
    return bot.worker(worker_id="worker-a"), bot.worker(worker_id="worker-b")


def test_a_mailbox_incident_is_one_alert_and_one_recovery(tmp_path: Path, dovecot, smtp_server,
                                                         monkeypatch) -> None:
    folder = dovecot.new_folder()
    imap = {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": dovecot.user,
            "password_env": IMAP_ENV, "folder": folder, "timeout_seconds": 10}
    hub = hub_toml("central", maildir=None, imap=imap).replace(f'programmes = ["{PID}"]',
                                                                f'programmes = ["{PID}"]\nstaff = ["lead@example.org"]')
    config = tmp_path / "hubbot.toml"
    config.write_text(f'{ALERTS}[database]\nurl = "sqlite:///{tmp_path / "hubbot.db"}"\n'
                      f'[smtp]\nhost = "{smtp_server.host}"\nport = {smtp_server.port}\nsecurity = "none"\n'
                      f'timeout_seconds = 10\n{hub}')
    monkeypatch.setenv(IMAP_ENV, dovecot.password)
    bot = Bot(config)
    a, b = worker_pair(bot)
    try:
        assert a.run_once().mailbox_errors == {}
        monkeypatch.setenv(IMAP_ENV, "changed-by-someone")
        a.close()                                             # the kept connection would hide the new password
        for minute, worker in ((5, a), (10, b)):
            bot.now = NOW + timedelta(minutes=minute)
            assert "central" in worker.run_once().mailbox_errors
        assert alerts(smtp_server) == []                      # two failures are not yet an incident
        bot.now = NOW + timedelta(minutes=15)
        report = a.run_once()
        assert report.incidents_opened and len(alerts(smtp_server)) == 1
        [alert] = alerts(smtp_server)
        assert subjects([alert]) == ["hubbot PROBLEM: the mailbox of Central Maths Hub (central) could not be read "
                                     "for 3 polls in a row"]
        body = alert.get_body(("plain",)).get_content()
        assert f"IMAP login to {dovecot.host}:{dovecot.port} refused" in body and "hubbot doctor" in body
        assert dovecot.password not in body and "changed-by-someone" not in body

        for minute, worker in ((20, b), (25, a), (30, b)):
            bot.now = NOW + timedelta(minutes=minute)
            worker.run_once()
        assert len(alerts(smtp_server)) == 1                  # still the same incident: no second e-mail

        # The digest opens with it, and goes although nothing else happened (digest_when_quiet is false).
        morning = datetime(2024, 6, 21, 7, 30, tzinfo=LONDON)
        [run] = jobs.digests(bot.db, bot.config, bot.settings, morning, send=True)
        assert run.queued and not run.skipped_quiet
        bot.now = morning
        a.send_due()
        [digest] = [r.message for r in smtp_server.received if "lead@example.org" in r.rcpt_tos]
        assert str(digest["Subject"]).startswith("PROBLEM: the mailbox of Central Maths Hub")
        text = digest.get_body(("plain",)).get_content()
        assert text.index("NEEDS ATTENTION NOW") < text.index("WHERE THINGS STAND")

        monkeypatch.setenv(IMAP_ENV, dovecot.password)
        bot.now = morning + timedelta(minutes=5)
        report = b.run_once()
        assert report.mailbox_errors == {} and report.incidents_closed
        bot.now = morning + timedelta(minutes=10)
        a.run_once()
        assert subjects(alerts(smtp_server))[1] == ("hubbot RECOVERED: the mailbox of Central Maths Hub (central) "
                                                    "could not be read for 3 polls in a row")
        assert len(alerts(smtp_server)) == 2
        with bot.db.session() as session:
            kinds = [e.kind for e in session.scalars(select(Event).where(Event.kind.like("incident_%")))]
            details = " ".join(str(e.detail) for e in session.scalars(select(Event)))
        assert kinds == ["incident_opened", "incident_closed"]
        assert dovecot.password not in details
    finally:
        a.close()
        b.close()
        bot.close()


def test_a_failing_hub_server_is_reported_through_the_other_hubs_server(tmp_path: Path, smtp_server) -> None:
    down = free_port()
    central = hub_toml("central", maildir="mail/central") + (
        f'[hubs.smtp]\nhost = "127.0.0.1"\nport = {down}\nsecurity = "none"\ntimeout_seconds = 5\n')
    north = hub_toml("north", maildir="mail/north", address="info@northmathshub.org", name="North Maths Hub")
    config = tmp_path / "hubbot.toml"
    config.write_text(f'{ALERTS}[database]\nurl = "sqlite:///{tmp_path / "hubbot.db"}"\n'
                      f'[smtp]\nhost = "{smtp_server.host}"\nport = {smtp_server.port}\nsecurity = "none"\n'
                      f'timeout_seconds = 10\n{central}{north}')
    (tmp_path / "mail" / "north" / "new").mkdir(parents=True)
    for urn in ("100001", "100002", "100003"):
        deliver(tmp_path / "mail" / "central", application(urn=urn))
    bot = Bot(config)
    a, b = worker_pair(bot)
    try:
        report = a.run_once()
        assert report.outbox.retried == 3 and report.incidents_opened == [report.incidents_opened[0]]
        assert report.incidents_opened[0].startswith("smtp:hubs.central.smtp:")
        [alert] = alerts(smtp_server)                         # through north's server: [smtp]
        assert subjects([alert]) == [f"hubbot PROBLEM: SMTP server 127.0.0.1:{down} ([hubs.smtp] of hub central) "
                                     f"is failing: 3 sending attempts in a row"]
        assert "info@northmathshub.org" in str(alert["From"])   # an address that server may send as
        assert len(smtp_server.received) == 1                 # central's replies did not go the other way

        bot.now = NOW + timedelta(minutes=1)
        b.run_once()                                          # still failing (one retry is due): no new alert
        assert len(alerts(smtp_server)) == 1

        revived = start_smtp_server_on(down)
        try:
            bot.now = NOW + timedelta(hours=1)
            report = a.run_once()
            assert report.outbox.sent >= 3 and report.incidents_closed
            assert len(revived.received) == 3                 # the replies, through central's own server
            assert subjects(alerts(smtp_server))[1].startswith("hubbot RECOVERED: SMTP server 127.0.0.1:")
            bot.now = NOW + timedelta(hours=1, minutes=5)
            b.run_once()
            assert len(alerts(smtp_server)) == 2 and alerts(revived) == []
        finally:
            revived.controller.stop()
    finally:
        a.close()
        b.close()
        bot.close()


def start_smtp_server_on(port: int):
    from aiosmtpd.controller import Controller

    from tests.servers import RecordingHandler, SmtpServer

    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return SmtpServer("127.0.0.1", port, handler, {}, controller)


def test_with_no_working_server_the_alert_is_written_to_the_outbox_folder(tmp_path: Path) -> None:
    down = free_port()
    config = tmp_path / "hubbot.toml"
    config.write_text(f'{ALERTS}[database]\nurl = "sqlite:///{tmp_path / "hubbot.db"}"\n'
                      f'[smtp]\nhost = "127.0.0.1"\nport = {down}\nsecurity = "none"\ntimeout_seconds = 5\n'
                      + hub_toml("central", maildir="mail"))
    for urn in ("100001", "100002", "100003"):
        deliver(tmp_path / "mail", application(urn=urn))
    bot = Bot(config)
    worker = bot.worker()
    try:
        assert worker.run_once().incidents_opened
        files = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                 for p in (tmp_path / "outbox").glob("*.eml")]
        assert subjects(files) == [f"hubbot PROBLEM: SMTP server 127.0.0.1:{down} ([smtp]) is failing: 3 sending "
                                   f"attempts in a row"]
        assert files[0]["To"] == IT
    finally:
        worker.close()
        bot.close()


def test_a_refresh_token_refused_is_an_incident_at_once(tmp_path: Path, dovecot, smtp_server,
                                                        monkeypatch) -> None:
    tokens = TokenServer(fixed_token=dovecot.oauth_token).start()
    try:
        monkeypatch.setenv("G_SECRET", tokens.client_secret)
        monkeypatch.setenv("G_REFRESH", "withdrawn-refresh-token")
        imap = {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": "oauthuser",
                "auth": "google", "client_id": tokens.client_id, "client_secret_env": "G_SECRET",
                "refresh_token_env": "G_REFRESH", "token_url": tokens.url, "folder": "INBOX",
                "timeout_seconds": 10}
        config = tmp_path / "hubbot.toml"
        config.write_text(f'{ALERTS}[database]\nurl = "sqlite:///{tmp_path / "hubbot.db"}"\n'
                          f'[smtp]\nhost = "{smtp_server.host}"\nport = {smtp_server.port}\nsecurity = "none"\n'
                          + hub_toml("central", maildir=None, imap=imap))
        bot = Bot(config)
        worker = bot.worker()
        try:
            report = worker.run_once()
            assert "invalid_grant" in report.mailbox_errors["central"]
            assert "withdrawn-refresh-token" not in report.mailbox_errors["central"]
            assert subjects(alerts(smtp_server)) == ["hubbot PROBLEM: the OAuth2 token for the mailbox of Central "
                                                     "Maths Hub (central) cannot be refreshed"]
            monkeypatch.setenv("G_REFRESH", tokens.refresh_token)
            bot.now = NOW + timedelta(minutes=5)
            assert worker.run_once().incidents_closed
            assert subjects(alerts(smtp_server))[1].startswith("hubbot RECOVERED: the OAuth2 token")
        finally:
            worker.close()
            bot.close()
    finally:
        tokens.stop()


def test_alert_senders_list_the_broken_server_last(tmp_path: Path) -> None:
    from bot.config import load_config
    from bot.sending.senders import build_senders

    config = tmp_path / "hubbot.toml"
    config.write_text(f'{ALERTS}[smtp]\nhost = "smtp.example.org"\n'
                      + hub_toml("central", maildir="mail") + '[hubs.smtp]\nhost = "smtp.central.example"\n'
                      + hub_toml("north", maildir="m2", address="info@north.example", name="North"))
    senders = build_senders(load_config(config))
    route = [e.label for e in senders.alert_route("alert:smtp:hubs.central.smtp:7:opened")]
    assert route == ["smtp", "hubs.central.smtp", "eml"]
    route = [e.label for e in senders.alert_route("alert:smtp:smtp:9:opened")]
    assert route == ["hubs.central.smtp", "smtp", "eml"]
    route = [e.label for e in senders.alert_route("alert:mailbox:central:3:opened")]
    assert route[0] == "hubs.central.smtp" and route[-1] == "eml"

"""The security guarantees against real servers: Dovecot holds the hub's mailbox, aiosmtpd is the relay (with its
fault modes), the worker runs as ``hubbot run --once`` in a subprocess. A forged sender (a trusted server said
DMARC fail) is stored and listed for staff but gets nothing, and nobody it names gets anything; the counts of
recipients per forged e-mail, before and after, are what the final report quotes.
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from parsers.email import parse_email
from samples.applications import application_email, complete_answers, fill_form
from storage.models import MessageState
from tests.test_imap_worker import REPO, T0, hubbot_env, imap_config, ok, run_once
from tests.test_workflow import PID, Bot

pytestmark = pytest.mark.slow

MX = "mx.hub.example"
SECURITY = f'[security]\ntrusted_authserv_ids = ["{MX}"]\n'
THIRD_PARTIES = ("victim1@elsewhere.example", "victim2@elsewhere.example", "victim3@elsewhere.example",
                 "victim4@elsewhere.example")


def forged_form(*, dmarc: str | None, copy_third_parties: bool, urn: str = "400001") -> bytes:
    """A forged From (the school's office) and a form whose four signatories are third parties; with
    ``copy_third_parties`` they are also in Cc, so a careless bot would answer all of them."""
    answers = complete_answers(PID)
    answers["school.urn"] = urn
    roles = [k.removesuffix(".email") for k in answers if k.endswith(".email")]
    for role, victim in zip(roles, THIRD_PARTIES):
        answers[f"{role}.email"] = victim
    pattern = "all" if copy_third_parties else "none"
    raw = application_email(PID, fill_form(PID, answers), answers=answers, pattern=pattern,
                            message_id=f"<forged-{urn}-{pattern}@valley.example.sch.uk>")
    if dmarc is None:
        return raw
    domain = parse_email(raw).sender.email.rpartition("@")[2]
    return f"Authentication-Results: {MX}; dmarc={dmarc} header.from={domain}\r\n".encode() + raw


def recipients(smtp_server) -> Counter[str]:
    return Counter(address.lower() for r in smtp_server.received for address in r.rcpt_tos)


def remind(config: Path, dovecot, now) -> None:
    ok(subprocess.run([sys.executable, "-m", "bot.cli", "remind", "--send", "--config", str(config),
                       "--now", now.isoformat()], cwd=REPO, env=hubbot_env(dovecot), capture_output=True,
                      text=True, timeout=120))


def digest_text(config: Path, dovecot, now) -> str:
    result = subprocess.run([sys.executable, "-m", "bot.cli", "digest", "--config", str(config),
                             "--now", now.isoformat()], cwd=REPO, env=hubbot_env(dovecot), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("copy_third_parties", [False, True])
def test_forged_sender_mails_nobody(tmp_path: Path, dovecot, smtp_server, copy_third_parties: bool) -> None:
    folder = dovecot.new_folder()
    dovecot.append(forged_form(dmarc="fail", copy_third_parties=copy_third_parties), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder, extra=SECURITY)
    ok(run_once(config, dovecot))
    # The whole calendar too: reminders a week and two days before the deadline go to nobody either.
    for days in (1, 6):
        remind(config, dovecot, T0 + timedelta(days=days, hours=1))
    assert smtp_server.received == []
    bot = Bot(config)
    try:
        (message,) = bot.messages()
        assert message.state is MessageState.PROCESSED and message.verdict_status == "review"
        assert message.verdict["flags"][-1]["code"] == "unauthenticated"
        assert bot.applications() == []          # nothing recorded as the school's application
    finally:
        bot.close()
    assert "unauthenticated: dmarc=fail" in digest_text(config, dovecot, T0 + timedelta(hours=1))


def test_recipients_per_forged_email_without_authentication(tmp_path: Path, dovecot, smtp_server) -> None:
    """Where no trusted server is configured the bot cannot tell a forgery; it still never mails an address that
    is only on the form: the forged From (and whoever the forger put on the e-mail) gets the one reply, and the
    calendar adds no one."""
    folder = dovecot.new_folder()
    dovecot.append(forged_form(dmarc=None, copy_third_parties=False, urn="400002"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    ok(run_once(config, dovecot))
    for days in (1, 6):
        remind(config, dovecot, T0 + timedelta(days=days, hours=1))
    got = recipients(smtp_server)
    print(f"\nRECIPIENTS without authentication: {sum(got.values())} deliveries to {len(got)} address(es), "
          f"{len(set(got) & set(THIRD_PARTIES))} of them third parties")
    assert not set(got) & set(THIRD_PARTIES), got
    assert len(got) == 1


# ---- unforgeable threads --------------------------------------------------------------------------------------

def test_only_the_signatory_answering_our_reply_confirms(tmp_path: Path, dovecot, smtp_server) -> None:
    from samples.mail import build_email
    from tests.test_workflow import HUB_ADDRESS, application

    folder = dovecot.new_folder()
    form_id = "<thread-form@valley.example.sch.uk>"
    dovecot.append(application(urn="400010", pattern="one_missing", message_id=form_id), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    ok(run_once(config, dovecot))
    (ask,) = smtp_server.received
    ours = str(ask.message["Message-ID"]).strip()
    bot = Bot(config)
    try:
        (app,) = bot.applications()
        (waiting,) = [s for s in bot.signatories(app.id).values() if not s.copied]
        office = bot.messages()[0].verdict["sender"]
    finally:
        bot.close()

    def note(n: int, sender: str, in_reply_to: str, cc: tuple[str, ...] = ()) -> bytes:
        return build_email(sender=sender, to=HUB_ADDRESS, cc=cc, subject="Re: your application",
                           body_text="I confirm.", message_id=f"<note-{n}@valley.example.sch.uk>",
                           in_reply_to=in_reply_to, references=[in_reply_to])

    # A forger who saw the school's e-mail names its Message-ID, not ours; the office copying the signatory is
    # not the signatory writing.
    dovecot.append(note(1, waiting.email, form_id), folder)
    dovecot.append(note(2, office, ours, cc=(waiting.email,)), folder)
    ok(run_once(config, dovecot, now=T0 + timedelta(hours=1)))
    bot = Bot(config)
    try:
        assert not bot.signatories(app.id)[waiting.role].confirmed
    finally:
        bot.close()
    assert len(smtp_server.received) == 1

    dovecot.append(note(3, waiting.email, ours), folder)
    ok(run_once(config, dovecot, now=T0 + timedelta(hours=2)))
    bot = Bot(config)
    try:
        assert bot.signatories(app.id)[waiting.role].confirmed
        assert bot.applications()[0].status.value == "complete"
    finally:
        bot.close()
    assert [r.message["In-Reply-To"].strip() for r in smtp_server.received[1:]] == [form_id]   # acknowledged


def test_a_form_from_another_domain_goes_to_staff_and_the_school_is_told(tmp_path: Path, dovecot,
                                                                          smtp_server) -> None:
    import re

    from tests.test_workflow import application

    folder = dovecot.new_folder()
    dovecot.append(application(urn="400020", message_id="<original@valley.example.sch.uk>"), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    ok(run_once(config, dovecot))
    (ack,) = smtp_server.received
    takeover = re.sub(rb"(?m)^From: .*$", b"From: Someone <someone@elsewhere.example>",
                      application(urn="400020", message_id="<takeover@elsewhere.example>"), count=1)
    dovecot.append(takeover, folder)
    ok(run_once(config, dovecot, now=T0 + timedelta(hours=1)))

    # Besides the notice to the school, the other domain's sender gets the neutral "received" receipt (it names
    # nothing from the application), and run --once also sends the day's staff digest.
    (notice,) = [m for m in smtp_server.received[1:] if str(m.message["Subject"]).startswith("Another form")]
    assert notice.rcpt_tos == ack.rcpt_tos[:1]                     # the school's own sender, nobody else
    assert notice.message["In-Reply-To"].strip() == "<original@valley.example.sch.uk>"
    assert "someone@elsewhere.example" not in notice.raw.decode(errors="replace")
    bot = Bot(config)
    try:
        (app,) = bot.applications()
        assert len(bot.versions(app.id)) == 1                    # not replaced
        assert bot.messages()[-1].verdict_status == "review"
    finally:
        bot.close()
    assert "would change an application sent from another domain" in digest_text(config, dovecot,
                                                                                 T0 + timedelta(hours=2))


# ---- every message stored and answered once -------------------------------------------------------------------

def nul_email(n: int) -> bytes:
    from tests.test_workflow import HUB_ADDRESS

    long_id = "<" + "\x00a" * 600 + f"{n}@valley.example.sch.uk>"
    return (f"From: Kate Wright <k.wright@valley.example.sch.uk>\r\nTo: {HUB_ADDRESS}\r\n"
            f"Subject: Application\x00 form \udcff\r\nMessage-ID: {long_id}\r\nIn-Reply-To: <x\x00y@z>\r\n"
            f"Date: Thu, 20 Jun 2024 10:00:00 +0100\r\n\r\nPlease find attached our application form.\x00\r\n"
            ).encode("utf-8", "surrogateescape")


def test_nul_bytes_everywhere_are_stored_and_answered_once_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    from tests.servers import _empty_postgres
    from tests.test_workflow import deliver, make_bot, sent_files

    _empty_postgres(pg_url)
    bot = make_bot(tmp_path, pg_url)
    try:
        for n in range(2):
            deliver(tmp_path / "mail", nul_email(n))
        report = bot.run()
        assert report.mailbox_errors == {} and report.failed_messages == 0
        assert [o.status.value for o in report.outcomes] == ["no_form", "no_form"]
        assert all(m.state is MessageState.PROCESSED for m in bot.messages())
        assert len({m.message_id for m in bot.messages()}) == 2 and "\\x00" in bot.messages()[0].message_id
        assert len(sent_files(tmp_path / "outbox")) == 2
        bot.run()
        assert len(sent_files(tmp_path / "outbox")) == 2
    finally:
        bot.close()


def test_a_message_the_database_refuses_is_quarantined_by_uid_and_the_poll_goes_on(
        tmp_path: Path, dovecot, smtp_server, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import DataError

    from storage import repository
    from tests.servers import _empty_postgres
    from tests.test_workflow import application

    _empty_postgres(pg_url)
    folder = dovecot.new_folder()
    uids = [dovecot.append(application(urn=f"40003{i}"), folder) for i in range(3)]
    config = imap_config(tmp_path, dovecot, smtp_server, folder, db_url=pg_url)
    real = repository.store_raw_message

    def refuse_the_middle_one(session, **kwargs):
        if kwargs["uid"] == uids[1]:
            raise DataError("INSERT", {}, Exception("value refused by the database"))
        return real(session, **kwargs)

    monkeypatch.setattr(repository, "store_raw_message", refuse_the_middle_one)
    monkeypatch.setenv("HUBBOT_TEST_IMAP_PASSWORD", dovecot.password)
    bot = Bot(config)
    bot.now = T0
    try:
        for _ in range(2):
            report = bot.run()
            assert report.mailbox_errors == {}
        assert len(smtp_server.received) == 2
        states = {m.uid: m.state for m in bot.messages()}
        assert states == {uids[0]: MessageState.PROCESSED, uids[1]: MessageState.QUARANTINED,
                          uids[2]: MessageState.PROCESSED}
        (event,) = bot.events("message_quarantined")
        assert event.detail["uid"] == uids[1]
    finally:
        bot.close()


def test_an_oversize_message_is_stored_answered_once_and_shown_to_staff(tmp_path: Path, dovecot,
                                                                        smtp_server) -> None:
    from tests.test_workflow import application

    folder = dovecot.new_folder()
    big = application(urn="400040", message_id="<big@valley.example.sch.uk>")
    dovecot.append(big, folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder,
                         extra=f"[limits]\nmessage_bytes = {len(big) // 2}\n")
    ok(run_once(config, dovecot))
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=5)))
    (reply,) = smtp_server.received
    assert reply.message["In-Reply-To"].strip() == "<big@valley.example.sch.uk>"
    assert "larger than" in reply.message.get_body(("plain",)).get_content()
    bot = Bot(config)
    try:
        (message,) = bot.messages()
        assert message.size > len(message.raw) and message.verdict_status == "unreadable"
    finally:
        bot.close()
    assert "larger than" in digest_text(config, dovecot, T0 + timedelta(hours=1))

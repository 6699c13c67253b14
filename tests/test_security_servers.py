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

    (notice,) = smtp_server.received[1:]
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

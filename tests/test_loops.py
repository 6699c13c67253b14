"""No loops: quoted text never earns a reply, and more kinds of automatic mail are never answered.

A person answering our "your form did not arrive" quotes it ("> Please reply with the completed form attached");
only their own words decide, however their client quotes (">", "On ... wrote:", Outlook's From/Sent block, a
forwarded-message banner, an HTML blockquote or Gmail's quote container, or our sentences pasted without any
marker). New automatic-mail rules: bounces from ``post_master@``, Exchange non-delivery reports with an empty From
and Subject, ARF feedback reports, challenge-response filters, list loop alerts; each is tested on a built example
and none fires on the person-written mail of the wild corpus. Against real servers: the whole exchange runs through
Dovecot and aiosmtpd and the bot answers exactly once.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from parsers.email import parse_email
from rules.automatic import automatic_reasons
from rules.pipeline import CheckSettings, assess
from rules.quoting import bot_phrases, own_subject, own_words, own_words_html
from rules.verdict import Status
from samples.mail import build_email, forgot_attachment_email
from templates import EmailKind

SETTINGS = CheckSettings.builtin()
HUB = "mathshub@bishopchalloner.bham.sch.uk"
SCHOOL = "Kate Wright <k.wright@valley.example.sch.uk>"
WILD = Path(__file__).resolve().parents[1].parent / "shared" / "wild-mail"
WILD_FILES = sorted(p for p in WILD.rglob("*.eml")) if WILD.is_dir() else []

# Our own reply, as a person's mail client quotes it.
OURS = assess(forgot_attachment_email(to=HUB), SETTINGS).reply
assert OURS is not None and OURS.kind is EmailKind.MISSING_ATTACHMENT


def quoted(prefix: str = "> ") -> str:
    return "\n".join(prefix + line for line in OURS.text.splitlines())


REPLIES = {
    "gmail": f"Sorry, our bursar will send it on Monday.\n\nOn Thu, 20 Jun 2024 at 10:20, Hub <{HUB}> wrote:\n"
             + quoted(),
    "angle quotes only": "Sorry, it will follow.\n\n" + quoted(),
    "outlook": "Sorry, it will follow.\n\n________________________________\nFrom: Maths Hub <x@y>\n"
               "Sent: 20 June 2024 10:20\nTo: Kate\nSubject: Your application form did not arrive\n\n" + OURS.text,
    "outlook without the rule": "Apologies.\n\nFrom: Maths Hub <x@y>\nSent: 20 June 2024 10:20\n\n" + OURS.text,
    "original message banner": "Will do.\n\n-----Original Message-----\n" + OURS.text,
    "our sentences pasted with no marker": "Noted, thanks.\n\n" + OURS.text,
}


@pytest.mark.parametrize("style", sorted(REPLIES))
def test_a_reply_quoting_our_request_gets_no_second_request(style: str) -> None:
    raw = build_email(sender=SCHOOL, to=HUB, subject=f"Re: {OURS.subject}", body_text=REPLIES[style],
                      in_reply_to=OURS.in_reply_to)
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.NOT_APPLICATION and verdict.reply is None, style


def test_an_html_reply_quoting_our_request_gets_none() -> None:
    html = (f"<div>Sorry, it will follow.</div><div class=\"gmail_quote\"><div>On Thu wrote:</div>"
            f"<blockquote>{OURS.html}</blockquote></div>")
    raw = build_email(sender=SCHOOL, to=HUB, subject=f"RE: {OURS.subject}", body_text="", body_html=html)
    assert assess(raw, SETTINGS).reply is None
    outlook = f"<p>Apologies</p><div id=\"divRplyFwdMsg\"><b>From:</b> hub</div>{OURS.html}"
    assert own_words_html(outlook) == "Apologies"


def test_a_forwarded_school_email_is_for_a_person() -> None:
    body = ("FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Head <h@valley.example.sch.uk>\n"
            "Please find attached our application form.")
    verdict = assess(build_email(sender=SCHOOL, to=HUB, subject="Fwd: application", body_text=body), SETTINGS)
    assert verdict.status is Status.NOT_APPLICATION and verdict.reply is None


def test_the_senders_own_words_still_count() -> None:
    verdict = assess(forgot_attachment_email(to=HUB), SETTINGS)
    assert verdict.status is Status.NO_FORM and verdict.reply is not None
    reply = build_email(sender=SCHOOL, to=HUB, subject=f"Re: {OURS.subject}",
                        body_text="Oops! Please find attached our application form this time.\n\n" + quoted())
    assert assess(reply, SETTINGS).status is Status.NO_FORM    # they say it is attached, and it is not


def test_quoting_helpers() -> None:
    assert own_subject("RE: Fwd: Your application form did not arrive (Re: Application)") == ""
    assert own_subject("Re: Application for the Work Group") == "Application for the Work Group"
    assert own_words("mine\n> theirs\nOn Mon, Bob wrote:\nbelow") == "mine"
    assert any("please reply with the completed form attached" in p for p in bot_phrases())


# ---- automatic mail -------------------------------------------------------------------------------------------

def post_master_bounce() -> bytes:
    return build_email(sender="Mail Administrator <post_master@mail.school.example>", to=HUB,
                       subject="Message not delivered", body_text="Your message to x could not be delivered.")


def exchange_ndr() -> bytes:
    raw = build_email(sender="placeholder@x.example", to=HUB, subject="placeholder",
                      body_text="Delivery has failed to these recipients or groups:\n\nx@y\n",
                      attachments=[("details.txt", b"Diagnostic information for administrators", "text/plain")])
    raw = raw.replace(b"From: Placeholder <placeholder@x.example>", b"From: ")
    return raw.replace(b"Subject: placeholder", b"Subject: ")


def arf_report() -> bytes:
    boundary = "arf-1"
    return (f"From: Abuse Desk <abuse-reports@isp.example>\r\nTo: {HUB}\r\nSubject: Complaint about message\r\n"
            f"Date: Thu, 20 Jun 2024 10:00:00 +0100\r\nMessage-ID: <arf-1@isp.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=feedback-report; boundary=\"{boundary}\"\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
            f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
            f"User-Agent: Example/1.0\r\nVersion: 1\r\n\r\n"
            f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\nFrom: {HUB}\r\nSubject: Your application\r\n\r\n"
            f"Please reply with the completed form attached.\r\n--{boundary}--\r\n").encode()


def challenge() -> bytes:
    return build_email(sender="Kate Wright <k.wright@valley.example.sch.uk>", to=HUB,
                       subject="Please confirm your message", extra_headers=[("X-Boxbe-Challenge", "1")],
                       body_text="I'm protected by a spam filter. Please click to verify your e-mail address "
                                 "so your application form message is delivered.")


def loop_alert() -> bytes:
    return build_email(sender="Schools list <schools-owner@lists.example>", to=HUB, subject="Mail loop detected",
                       body_text="A message with the attached application form looped through the list.")


def x_loop() -> bytes:
    return build_email(sender="Helpdesk <help@tickets.example>", to=HUB, subject="Application form query",
                       body_text="Please find attached the application form.", extra_headers=[("X-Loop", "help")])


NEW_AUTOMATIC = {"post_master bounce": (post_master_bounce, "system-sender"),
                 "Exchange NDR, empty From and Subject": (exchange_ndr, "anonymous-notice"),
                 "ARF feedback report": (arf_report, "feedback-report"),
                 "challenge-response": (challenge, "challenge-response"),
                 "list loop alert": (loop_alert, "loop-alert"),
                 "X-Loop": (x_loop, "loop-alert")}


@pytest.mark.parametrize("name", sorted(NEW_AUTOMATIC))
def test_new_automatic_rules(name: str) -> None:
    build, rule = NEW_AUTOMATIC[name]
    raw = build()
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.IGNORED and verdict.reply is None, name
    assert rule in [r for r, _ in automatic_reasons(parse_email(raw))]


NEW_RULES = {"anonymous-notice", "challenge-response", "loop-alert", "feedback-report"}


@pytest.mark.skipif(not WILD_FILES, reason="the shared wild-mail corpus is not here")
def test_new_rules_leave_the_wild_corpus_alone() -> None:
    """The corpus's person-written mail (newsletters, replies, odd headers) sets off none of the new rules, and its
    quoted replies are read as the sender's own words."""
    fired = {p.name: [r for r, _ in automatic_reasons(parse_email(p.read_bytes())) if r in NEW_RULES]
             for p in WILD_FILES}
    assert {name: rules for name, rules in fired.items() if rules} == {}
    reply = (WILD / "plain_emails" / "raw_email_reply.eml").read_bytes()
    assert own_words(parse_email(reply).text_body) == "Message body"


# ---- through real servers -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_human_answering_our_request_is_answered_once(tmp_path: Path, dovecot, smtp_server) -> None:
    from tests.test_imap_worker import T0, imap_config, ok, run_once
    from tests.test_workflow import HUB_ADDRESS

    folder = dovecot.new_folder()
    dovecot.append(forgot_attachment_email(to=HUB_ADDRESS), folder)
    config = imap_config(tmp_path, dovecot, smtp_server, folder)
    ok(run_once(config, dovecot))
    (first,) = smtp_server.received
    ours = first.message
    text = ours.get_body(("plain",)).get_content()
    for n, body in enumerate(["Sorry, it will follow.\n\nOn Thu, Hub wrote:\n" + "\n".join("> " + line for line in
                                                                                            text.splitlines()),
                              "Noted.\n\n" + text]):
        dovecot.append(build_email(sender=SCHOOL, to=HUB_ADDRESS, subject=f"Re: {ours['Subject']}", body_text=body,
                                   message_id=f"<human-{n}@valley.example.sch.uk>",
                                   in_reply_to=str(ours["Message-ID"]).strip()), folder)
    for builder in (post_master_bounce, exchange_ndr, arf_report, challenge, loop_alert):
        dovecot.append(builder().replace(HUB.encode(), HUB_ADDRESS.encode()), folder)
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=10)))
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=20)))
    assert len(smtp_server.received) == 1

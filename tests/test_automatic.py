"""automatic_reason: each RFC 3834 rule on its own, and ordinary school mail left alone."""
from __future__ import annotations

import pytest

from parsers.email import parse_email
from parsers.types import Attachment, ParsedEmail
from rules.automatic import DEFAULT_POLICY, Rule, automatic_reason, automatic_reasons
from samples.mail import (
    DOCX_TYPE,
    bounce_report,
    build_email,
    forgot_attachment_email,
    mailing_list_post,
    out_of_office,
    question_email,
)

SCHOOL = "Kate Wright <k.wright@valley.example.sch.uk>"
HUB = "admin@hub.example.org"


def school_mail(*, sender: str = SCHOOL, subject: str = "Application",
                extra_headers: tuple[tuple[str, str], ...] = ()) -> ParsedEmail:
    return parse_email(build_email(
        sender=sender, to=HUB, cc=["Mrs Helen O'Neill <h.oneill@valley.example.sch.uk>"], subject=subject,
        body_text="Please find attached our application.", extra_headers=extra_headers,
        attachments=[("Application form.docx", b"PK\x03\x04", DOCX_TYPE)]))


@pytest.mark.parametrize("raw", [
    school_mail, question_email, forgot_attachment_email,
    lambda: parse_email(build_email(sender=SCHOOL, to=HUB, subject="Re: Automatic reply policy question",
                                    body_text="Thanks", extra_headers=[("Auto-Submitted", "no")])),
    lambda: school_mail(subject="Out-of-school club application"),
    lambda: school_mail(extra_headers=(("Precedence", "first-class"),)),
])
def test_ordinary_school_mail_is_not_automatic(raw) -> None:  # type: ignore[no-untyped-def]
    parsed = raw() if callable(raw) else raw
    parsed = parse_email(parsed) if isinstance(parsed, bytes) else parsed
    assert automatic_reason(parsed, own_addresses=frozenset({HUB})) is None


@pytest.mark.parametrize(("headers", "expected"), [
    ((("Auto-Submitted", "auto-replied"),), "Auto-Submitted: auto-replied"),
    ((("Auto-Submitted", "Auto-Generated (failure)"),), "Auto-Submitted: auto-generated"),
    ((("Precedence", "bulk"),), "Precedence: bulk"),
    ((("Precedence", "List"),), "Precedence: list"),
    ((("Precedence", "junk"),), "Precedence: junk"),
    ((("List-Id", "<news.lists.example.org>"),), "mailing-list header List-Id"),
    ((("List-Unsubscribe", "<mailto:x@lists.example.org>"),), "mailing-list header List-Unsubscribe"),
    ((("X-Auto-Response-Suppress", "All"),), "X-Auto-Response-Suppress header"),
    ((("Return-Path", "<>"),), "null return path (Return-Path: <>)"),
    ((("X-Hubbot-Loop", "central"),), "our own loop header X-Hubbot-Loop"),
    ((("X-Failed-Recipients", "someone@example.org"),), "X-Failed-Recipients header"),
    ((("X-Autoreply", "yes"),), "out-of-office header x-autoreply"),
    ((("X-Autorespond", "yes"),), "out-of-office header x-autorespond"),
])
def test_header_rules(headers: tuple[tuple[str, str], ...], expected: str) -> None:
    assert automatic_reason(school_mail(extra_headers=headers)) == expected


@pytest.mark.parametrize("local", ["MAILER-DAEMON", "postmaster", "no-reply", "NoReply", "do-not-reply",
                                   "donotreply", "gmail-noreply", "no_reply+bounces"])
def test_system_senders(local: str) -> None:
    reason = automatic_reason(school_mail(sender=f"System <{local}@example.org>"))
    assert reason is not None and reason.startswith("system sender")


@pytest.mark.parametrize("local", ["noreen", "post", "replies", "mailer"])
def test_people_are_not_system_senders(local: str) -> None:
    assert automatic_reason(school_mail(sender=f"{local}@example.org")) is None


def test_own_address_and_custom_loop_header() -> None:
    mail = school_mail(sender="Hub <Admin@Hub.Example.org>")
    assert automatic_reason(mail, own_addresses=frozenset({"admin@hub.example.org"})) == "sent from our own address"
    looped = school_mail(extra_headers=(("X-Central-Bot", "1"),))
    assert automatic_reason(looped, loop_header="X-Central-Bot") == "our own loop header X-Central-Bot"
    assert automatic_reason(looped) is None


@pytest.mark.parametrize("subject", ["Automatic reply: Application", "Out of Office: Application",
                                     "Out of the office", "Auto: Application", "AutoReply: away",
                                     "Undeliverable: Application", "Delivery Status Notification (Failure)"])
def test_subjects(subject: str) -> None:
    assert automatic_reason(school_mail(subject=subject)) is not None


@pytest.mark.parametrize("style", ["exchange", "gmail", "x-autoreply", "subject-only"])
def test_out_of_office_replies(style: str) -> None:
    assert automatic_reason(parse_email(out_of_office(style=style))) is not None  # type: ignore[arg-type]


def test_delivery_status_report_alone_is_enough() -> None:
    raw = bounce_report(sender="Mail System <mail-system@mx.hub.example>", return_path=None, auto_submitted=False)
    parsed = parse_email(raw)
    assert automatic_reasons(parsed) == [("delivery-report", "delivery or read report (multipart/report)")]


def test_delivery_status_part_counts_but_not_when_forwarded() -> None:
    status = Attachment("", "message/delivery-status", b"Action: failed")
    base = school_mail()
    mail = ParsedEmail(**{**base.__dict__, "attachments": (status,)})
    assert automatic_reason(mail) == "delivery report part (message/delivery-status)"
    forwarded = ParsedEmail(**{**base.__dict__, "attachments": (Attachment("", status.content_type, b"", True),)})
    assert automatic_reason(forwarded) is None


def test_canned_bounce_and_list_post() -> None:
    assert automatic_reason(parse_email(bounce_report())) == "Auto-Submitted: auto-replied"
    assert automatic_reason(parse_email(mailing_list_post())) == "Precedence: list"
    assert automatic_reason(parse_email(mailing_list_post(precedence=None))) == "mailing-list header List-Id"


def test_policy_is_data() -> None:
    names = [rule.name for rule in DEFAULT_POLICY]
    assert len(names) == len(set(names))
    assert all(rule.description for rule in DEFAULT_POLICY)
    only_lists = [rule for rule in DEFAULT_POLICY if rule.name == "list"]
    assert automatic_reason(parse_email(out_of_office()), policy=only_lists) is None

    def broken(email: ParsedEmail, ctx: object) -> str | None:
        raise ValueError("boom")
    assert automatic_reason(school_mail(), policy=[Rule("broken", "always fails", broken)]) is not None

"""Mail that is not an application, through ``assess``: automatic mail (out-of-office, bounces, lists, our own
loop header, our own address) is ``ignored`` and never answered, even with a form attached; a question is
``not_application`` with no reply; "please find attached" with nothing attached is ``no_form`` answered with a
missing-attachment reply; and every real-world message in the shared wild-mail corpus goes through without raising,
with no delivery report ever answered.
"""
from __future__ import annotations

import email
from pathlib import Path

import pytest

from rules.pipeline import LOOP_HEADER, CheckSettings, assess
from rules.verdict import Status
from samples.applications import application_email, complete_answers, fill_form, programme
from samples.mail import (
    DOCX_TYPE,
    bounce_report,
    build_email,
    forgot_attachment_email,
    mailing_list_post,
    out_of_office,
    question_email,
)
from templates import EmailKind

SETTINGS = CheckSettings.builtin()
PID = "primary-trg-pilot-2019"
HUB = programme(PID).hub.address
WILD = Path(__file__).resolve().parents[1].parent / "shared" / "wild-mail"
WILD_FILES = sorted(p for p in WILD.rglob("*") if p.is_file()) if WILD.is_dir() else []


def _form() -> bytes:
    return fill_form(PID, complete_answers(PID))


AUTOMATIC = {
    "out-of-office exchange": lambda: out_of_office(to=HUB, style="exchange"),
    "out-of-office gmail": lambda: out_of_office(to=HUB, style="gmail"),
    "out-of-office x-autoreply": lambda: out_of_office(to=HUB, style="x-autoreply"),
    "out-of-office subject only": lambda: out_of_office(to=HUB, style="subject-only"),
    "bounce": lambda: bounce_report(to=HUB),
    "bounce without auto-submitted": lambda: bounce_report(to=HUB, auto_submitted=False, return_path=None),
    "bounce of our reply with the form": lambda: bounce_report(to=HUB, original=application_email(PID, _form())),
    "mailing list": lambda: mailing_list_post(to=HUB),
    "mailing list without precedence": lambda: mailing_list_post(to=HUB, precedence=None),
    "our loop header": lambda: application_email(PID, _form(), extra_headers=[(LOOP_HEADER, "1")]),
    "from the hub's own address": lambda: build_email(
        sender=f"Cambridge Maths Hub <{HUB}>", to=HUB, subject="Application: Pilot TRG",
        body_text="Please find attached our application form.",
        attachments=[("form.docx", _form(), DOCX_TYPE)]),
    "from another built-in hub's address": lambda: build_email(
        sender=programme("secondary-tfm-wg-2024").hub.address, to=HUB, subject="Fwd: application",
        body_text="Please find attached the application form.", attachments=[("form.docx", _form(), DOCX_TYPE)]),
    "auto-replied with a form attached": lambda: application_email(
        PID, _form(), extra_headers=[("Auto-Submitted", "auto-replied")]),
}


@pytest.mark.parametrize("name", list(AUTOMATIC))
def test_automatic_mail_is_ignored_and_never_answered(name: str) -> None:
    verdict = assess(AUTOMATIC[name](), SETTINGS)
    assert verdict.status is Status.IGNORED
    assert verdict.reply is None
    assert verdict.ignored_because
    assert verdict.to_json()["reply"] is None


def test_loop_header_reason_names_the_header() -> None:
    verdict = assess(AUTOMATIC["our loop header"](), SETTINGS)
    assert LOOP_HEADER in verdict.ignored_because


def test_question_is_not_an_application_and_gets_no_reply() -> None:
    verdict = assess(question_email(to=HUB), SETTINGS)
    assert verdict.status is Status.NOT_APPLICATION
    assert verdict.reply is None
    assert verdict.hub == "cambridge"


def test_thank_you_with_a_logo_is_not_an_application() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    raw = build_email(sender="k.wright@valley.example.sch.uk", to=HUB, subject="Thanks",
                      body_text="Thank you for the training yesterday!", attachments=[("logo.png", png, "image/png")])
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.NOT_APPLICATION and verdict.reply is None


def test_please_find_attached_with_no_file_is_no_form() -> None:
    raw = forgot_attachment_email(to=HUB)
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.NO_FORM
    assert verdict.reply is not None
    assert verdict.reply.kind is EmailKind.MISSING_ATTACHMENT
    assert verdict.reply.to == ("k.wright@valley.example.sch.uk",)
    assert verdict.problems


def test_no_form_when_only_a_non_form_document_is_attached() -> None:
    from samples.forms import minimal_docx

    letter = minimal_docx("<w:p><w:r><w:t>Dear Hub, we are keen to join.</w:t></w:r></w:p>")
    raw = build_email(sender="k.wright@valley.example.sch.uk", to=HUB, subject="Our application",
                      body_text="Please find attached our application.",
                      attachments=[("Cover letter.docx", letter, DOCX_TYPE)])
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.NO_FORM
    assert verdict.reply.kind is EmailKind.MISSING_ATTACHMENT
    assert "Cover letter.docx" in verdict.reply.text


# ---- the wild-mail corpus ------------------------------------------------------------------------------------

def _is_report(raw: bytes) -> bool:
    message = email.message_from_bytes(raw)
    return any(part.get_content_type() == "multipart/report" for part in message.walk())


@pytest.mark.skipif(not WILD_FILES, reason="shared wild-mail corpus not present")
def test_wild_corpus_present() -> None:
    assert len(WILD_FILES) >= 100
    assert sum(_is_report(p.read_bytes()) for p in WILD_FILES) >= 5


@pytest.mark.parametrize("path", WILD_FILES, ids=lambda p: str(p.relative_to(WILD)))
def test_wild_mail_never_raises_and_reports_get_no_reply(path: Path) -> None:
    raw = path.read_bytes()
    verdict = assess(raw, SETTINGS)
    assert verdict.status in set(Status)
    verdict.to_json(file=str(path))
    if _is_report(raw):
        assert verdict.reply is None, (verdict.status, verdict.ignored_because)
    if verdict.reply is not None:
        assert verdict.reply.to and all("@" in a for a in verdict.reply.to)
        assert "\n" not in verdict.reply.subject

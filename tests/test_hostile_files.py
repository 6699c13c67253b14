"""Hostile and broken attachments through ``assess``: zip and entity bombs, truncated files, scans, encrypted and
very long PDFs, legacy .doc files, oversize attachments and messages each give ``unreadable`` with a problem in
plain English and an ``unreadable`` reply, and never raise; hypothesis checks that arbitrary bytes, as a form or as
the whole e-mail, never make ``assess`` raise.
"""
from __future__ import annotations

import dataclasses
import re
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.types import Limits
from rules.pipeline import CheckSettings, assess
from rules.verdict import Status
from samples.applications import application_email, complete_answers, fill_form
from samples.forms import entity_bomb_docx, legacy_doc, many_members_docx, ratio_bomb_docx, truncated, zip_bomb_docx
from samples.mail import DOCX_TYPE, build_email
from samples.pdf import docx_to_pdf, encrypted_pdf, many_page_pdf, scanned_pdf, truncated_pdf
from templates import EmailKind

SETTINGS = CheckSettings.builtin()
PID = "secondary-tfm-wg-2024"
PDF_TYPE = "application/pdf"
DOC_TYPE = "application/msword"
# Words a school secretary should never have to read.
JARGON = re.compile(r"zip|xml|entity|exception|error|traceback|errno|ole2|pdfminer|member|stream|\bdtd\b|bytes",
                    re.IGNORECASE)


@cache
def form() -> bytes:
    return fill_form(PID, complete_answers(PID))


@pytest.fixture(scope="module")
def form_pdf() -> bytes:
    return docx_to_pdf(form())


@pytest.fixture(scope="module")
def locked_pdf() -> bytes:
    return encrypted_pdf(form())


def sent(payload: bytes, filename: str, content_type: str, settings: CheckSettings = SETTINGS):
    return assess(application_email(PID, payload, filename=filename, content_type=content_type), settings)


def assert_unreadable(verdict, *, mentions: tuple[str, ...] = ()) -> None:
    assert verdict.status is Status.UNREADABLE, (verdict.status, verdict.problems)
    assert verdict.problems
    for problem in verdict.problems:
        sentence = re.sub(r"^[^:]*\.\w+: ", "", problem)   # several files: "name.docx: why"
        assert sentence[0].isupper() and sentence.rstrip().endswith("."), problem
        assert not JARGON.search(sentence), problem
    assert verdict.reply is not None and verdict.reply.kind is EmailKind.UNREADABLE
    for problem in verdict.problems:
        assert problem in verdict.reply.text
    text = " ".join(verdict.problems).lower()
    for word in mentions:
        assert word.lower() in text, (word, verdict.problems)
    assert verdict.reply.to == (verdict.sender,)


DOCX_CASES = {
    "zip bomb": lambda: zip_bomb_docx(form()),
    "ratio bomb": lambda: ratio_bomb_docx(form()),
    "too many members": lambda: many_members_docx(form()),
    "entity bomb": lambda: entity_bomb_docx(form()),
    "truncated docx": lambda: truncated(form()),
    "truncated docx (first bytes only)": lambda: truncated(form(), 0.05),
}


@pytest.mark.parametrize("name", list(DOCX_CASES))
def test_hostile_docx(name: str) -> None:
    verdict = sent(DOCX_CASES[name](), "Application form.docx", DOCX_TYPE)
    assert_unreadable(verdict)
    assert verdict.attachment == "Application form.docx"


def test_legacy_doc_asks_for_docx() -> None:
    verdict = sent(legacy_doc(), "Application form.doc", DOC_TYPE)
    assert_unreadable(verdict, mentions=(".docx",))


def test_legacy_doc_named_docx_is_still_found_out() -> None:
    verdict = sent(legacy_doc(), "Application form.docx", DOCX_TYPE)
    assert_unreadable(verdict)


def test_scanned_pdf_asks_for_word_file_or_pdf_saved_from_word() -> None:
    verdict = sent(scanned_pdf(2), "scan.pdf", PDF_TYPE)
    assert_unreadable(verdict, mentions=("scan", "Word file", "PDF saved from Word"))
    assert "Word" in verdict.reply.text


def test_many_page_pdf_over_the_cap() -> None:
    assert SETTINGS.limits.pdf_pages == 30
    verdict = sent(many_page_pdf(40), "Application form.pdf", PDF_TYPE)
    assert_unreadable(verdict)


def test_pdf_at_the_page_cap_is_read_not_refused() -> None:
    verdict = sent(many_page_pdf(30), "notes.pdf", PDF_TYPE)
    assert verdict.status is not Status.UNREADABLE


@pytest.mark.slow
def test_truncated_pdf(form_pdf: bytes) -> None:
    verdict = sent(truncated_pdf(form_pdf), "Application form.pdf", PDF_TYPE)
    assert_unreadable(verdict, mentions=("damaged",))


@pytest.mark.slow
def test_encrypted_pdf(locked_pdf: bytes) -> None:
    verdict = sent(locked_pdf, "Application form.pdf", PDF_TYPE)
    assert_unreadable(verdict, mentions=("password",))


def test_oversize_attachment() -> None:
    small = dataclasses.replace(SETTINGS, limits=Limits(attachment_bytes=len(form()) - 1))
    verdict = sent(form(), "Application form.docx", DOCX_TYPE, small)
    assert_unreadable(verdict, mentions=("larger",))


def test_attachment_just_under_the_limit_is_read() -> None:
    limit = dataclasses.replace(SETTINGS, limits=Limits(attachment_bytes=len(form())))
    assert sent(form(), "Application form.docx", DOCX_TYPE, limit).status is Status.COMPLETE


def test_oversize_message() -> None:
    raw = application_email(PID, form(), extra_attachments=[("photo.jpg", bytes(300_000), "image/jpeg")])
    small = dataclasses.replace(SETTINGS, limits=Limits(message_bytes=200_000))
    verdict = assess(raw, small)
    assert_unreadable(verdict, mentions=("MB",))
    assert verdict.hub == "central"


def test_oversize_automatic_message_is_still_ignored() -> None:
    raw = application_email(PID, form(), extra_headers=[("Auto-Submitted", "auto-replied")],
                            extra_attachments=[("photo.jpg", bytes(300_000), "image/jpeg")])
    small = dataclasses.replace(SETTINGS, limits=Limits(message_bytes=200_000))
    verdict = assess(raw, small)
    assert verdict.status is Status.IGNORED and verdict.reply is None


def test_good_form_beside_a_broken_one_wins() -> None:
    raw = application_email(PID, form(), extra_attachments=[("old copy.docx", truncated(form()), DOCX_TYPE)])
    assert assess(raw, SETTINGS).status is Status.COMPLETE


def test_two_unreadable_files_each_named() -> None:
    raw = application_email(PID, truncated(form()), filename="one.docx",
                            extra_attachments=[("two.doc", legacy_doc(), DOC_TYPE)])
    verdict = assess(raw, SETTINGS)
    assert_unreadable(verdict)
    assert len(verdict.problems) == 2
    assert verdict.problems[0].startswith("one.docx") and verdict.problems[1].startswith("two.doc")


# ---- never raises ------------------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_docx_like = st.one_of(st.binary(max_size=4096), st.binary(max_size=4096).map(lambda b: b"PK\x03\x04" + b),
                       st.integers(1, 8000).map(lambda n: form()[:n]),
                       st.tuples(st.integers(0, 20_000), st.binary(min_size=1, max_size=64)).map(
                           lambda t: form()[:t[0]] + t[1] + form()[t[0] + len(t[1]):]))
_pdf_like = st.one_of(st.binary(max_size=4096), st.binary(max_size=4096).map(lambda b: b"%PDF-1.4\n" + b),
                      st.integers(1, 3000).map(lambda n: many_page_pdf(2)[:n]))


@PROPERTY
@given(payload=_docx_like)
def test_arbitrary_bytes_as_docx_never_raise(payload: bytes) -> None:
    verdict = assess(application_email(PID, payload, filename="form.docx"), SETTINGS)
    assert verdict.status in set(Status)
    if verdict.status is Status.UNREADABLE:
        assert verdict.problems and verdict.reply is not None


@PROPERTY
@given(payload=_pdf_like)
def test_arbitrary_bytes_as_pdf_never_raise(payload: bytes) -> None:
    verdict = assess(application_email(PID, payload, filename="form.pdf", content_type=PDF_TYPE), SETTINGS)
    assert verdict.status in set(Status)


_HEADERS = st.sampled_from([b"From: a@b.example\r\n", b"To: mathshub@bishopchalloner.bham.sch.uk\r\n",
                            b"Content-Type: multipart/mixed; boundary=x\r\n", b"--x\r\n", b"\r\n",
                            b"Content-Transfer-Encoding: base64\r\n", b"Subject: =?utf-8?b?w6k=?=\r\n",
                            b"Content-Disposition: attachment; filename*=utf-8''f%C3%A9.docx\r\n",
                            b"Received: from x by y; Fri, 28 Jun 2024 23:00:00 +0000\r\n"])


@PROPERTY
@given(raw=st.one_of(st.binary(max_size=8192), st.lists(st.one_of(_HEADERS, st.binary(max_size=64)),
                                                          max_size=40).map(b"".join)))
def test_arbitrary_bytes_as_email_never_raise(raw: bytes) -> None:
    verdict = assess(raw, SETTINGS)
    assert verdict.status in set(Status)
    verdict.to_json()


@PROPERTY
@given(cut=st.integers(0, 200_000))
def test_truncated_application_email_never_raises(cut: int) -> None:
    raw = build_email(sender="office@valley.example.sch.uk", to="mathshub@bishopchalloner.bham.sch.uk",
                      subject="Application", body_text="Please find attached our application form.",
                      attachments=[("form.docx", form(), DOCX_TYPE)])
    assess(raw[:cut], SETTINGS)

"""Every real-world message in the shared wild-mail corpus parses without raising, and every bounce is automatic."""
from __future__ import annotations

from pathlib import Path

import pytest

from parsers.email import parse_email
from rules.automatic import automatic_reason

WILD = Path(__file__).resolve().parents[1].parent / "shared" / "wild-mail"
ALL_FILES = sorted(p for p in WILD.rglob("*") if p.is_file()) if WILD.is_dir() else []

# The delivery reports in the corpus, found by reading it: the multipart/report folder plus a report filed under
# mime_emails.
BOUNCES = [
    "multipart_report_emails/multi_address_bounce1.eml",
    "multipart_report_emails/multi_address_bounce2.eml",
    "multipart_report_emails/multipart_report_multiple_status.eml",
    "multipart_report_emails/report_422.eml",
    "multipart_report_emails/report_530.eml",
    "mime_emails/raw_email_with_mimepart_without_content_type.eml",
]
# Bulk and list mail that is also in the corpus.
BULK = ["error_emails/bad_date_header.eml", "error_emails/empty_in_reply_to.eml",
        "error_emails/encoding_madness.eml", "plain_emails/raw_email_trailing_dot.eml"]
# Ordinary person-to-person mail that must not be mistaken for automatic mail.
PEOPLE = ["plain_emails/basic_email.eml", "plain_emails/raw_email_reply.eml", "rfc2822/example01.eml",
          "attachment_emails/attachment_pdf.eml", "multi_charset/japanese_attachment.eml"]

pytestmark = pytest.mark.skipif(not ALL_FILES, reason="shared wild-mail corpus not present")


def test_corpus_is_complete() -> None:
    assert len(ALL_FILES) >= 105


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(WILD)))
def test_parses_without_raising(path: Path) -> None:
    parsed = parse_email(path.read_bytes())
    automatic_reason(parsed)
    for _name, value in parsed.headers:
        assert "\r" not in value and "\n" not in value


def test_every_delivery_report_in_the_corpus_is_listed() -> None:
    found = {str(p.relative_to(WILD)) for p in ALL_FILES
             if (parse_email(p.read_bytes()).header("Content-Type") or "").lower().startswith("multipart/report")}
    assert found == set(BOUNCES)


@pytest.mark.parametrize("name", BOUNCES)
def test_bounces_are_automatic(name: str) -> None:
    parsed = parse_email((WILD / name).read_bytes())
    assert automatic_reason(parsed) is not None
    assert any(a.content_type == "message/delivery-status" for a in parsed.attachments)


@pytest.mark.parametrize("name", BULK)
def test_bulk_and_list_mail_is_automatic(name: str) -> None:
    assert automatic_reason(parse_email((WILD / name).read_bytes())) is not None


@pytest.mark.parametrize("name", PEOPLE)
def test_person_mail_is_not_automatic(name: str) -> None:
    assert automatic_reason(parse_email((WILD / name).read_bytes())) is None


def test_some_known_hard_cases() -> None:
    parsed = parse_email((WILD / "attachment_emails/attachment_nonascii_filename.eml").read_bytes())
    assert parsed.attachments[0].filename == "ciële.txt"
    parsed = parse_email((WILD / "attachment_emails/attachment_message_rfc822.eml").read_bytes())
    assert [(a.filename, a.from_forwarded) for a in parsed.attachments] == [("broken.pdf", True)]
    parsed = parse_email((WILD / "plain_emails/raw_email_bad_time.eml").read_bytes())
    assert parsed.sender is not None and parsed.sender.display == "Атиковa"
    parsed = parse_email((WILD / "multipart_report_emails/multipart_report_multiple_status.eml").read_bytes())
    assert parsed.return_path == ""
    assert [a.email for a in parsed.delivered_to] == ["notification+promo@blah.com"]

"""parse_email on messages built the way mail clients write them: encodings, addresses, dates, attachments, limits."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from parsers.email import MESSAGE_TOO_LARGE, header_values, oversize_attachments, parse_email
from parsers.types import Address, Limits
from samples.mail import DOCX_TYPE, build_email, forgot_attachment_email

SCHOOL = "Kate Wright <k.wright@valley.example.sch.uk>"
HUB = "admin@hub.example.org"
HEAD = "Mrs Helen O’Neill <h.oneill@valley.example.sch.uk>"
DOCX = b"PK\x03\x04" + bytes(range(256)) * 40
LONG_NAME = "Formulaire d’inscription – École élémentaire Saint-Exupéry de la Vallée (version finale).docx"


def build(**kwargs: object) -> bytes:
    defaults: dict[str, object] = dict(sender=SCHOOL, to=HUB, subject="Application", body_text="Hello")
    defaults.update(kwargs)
    return build_email(**defaults)  # type: ignore[arg-type]


def test_plain_application_with_docx() -> None:
    raw = build(cc=[HEAD], body_html="<p>Hello</p>", attachments=[("Application form.docx", DOCX, DOCX_TYPE)])
    parsed = parse_email(raw)
    assert parsed.sender == Address("k.wright@valley.example.sch.uk", "Kate Wright")
    assert parsed.to == (Address(HUB, "Admin"),)
    assert parsed.cc == (Address("h.oneill@valley.example.sch.uk", "Mrs Helen O’Neill"),)
    assert parsed.text_body.strip() == "Hello"
    assert parsed.html_body.strip() == "<p>Hello</p>"
    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type, attachment.payload) == (
        "Application form.docx", DOCX_TYPE, DOCX)
    assert not attachment.from_forwarded
    assert parsed.defects == ()


def test_windows_1252_rfc2047_subject_and_body() -> None:
    raw = build(subject="Candidature – École Saint-Exupéry’s", body_text="voilà – merci", charset="windows-1252")
    assert b"=?windows-1252?" in raw
    parsed = parse_email(raw)
    assert parsed.subject == "Candidature – École Saint-Exupéry’s"
    assert parsed.text_body.strip() == "voilà – merci"


@pytest.mark.parametrize("charset", ["utf-8", "windows-1252"])
@pytest.mark.parametrize("encoding", ["rfc2231", "rfc2047", "plain"])
def test_file_name_encodings(encoding: str, charset: str) -> None:
    raw = build(attachments=[(LONG_NAME, DOCX, DOCX_TYPE)], filename_encoding=encoding, charset=charset)
    [attachment] = parse_email(raw).attachments
    assert attachment.filename == LONG_NAME
    assert attachment.payload == DOCX


def test_rfc2231_utf8_file_name_with_continuations() -> None:
    raw = build(attachments=[(LONG_NAME, DOCX, DOCX_TYPE)], filename_encoding="rfc2231")
    assert b"filename*0*=utf-8''" in raw and b"filename*1*=" in raw
    assert parse_email(raw).attachments[0].filename == LONG_NAME


def test_rfc2231_windows_1252_file_name() -> None:
    raw = (b"From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
           b" filename*0*=windows-1252''Caf%E9%92s%20;\r\n filename*1*=form.pdf\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--XX--\r\n")
    [attachment] = parse_email(raw).attachments
    assert attachment.filename == "Café’s form.pdf"
    assert attachment.payload == b"%PDF"


def test_attachment_with_name_but_no_content_disposition() -> None:
    raw = (b"From: a@b.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--XX\r\nContent-Type: application/msword; name=\"form.doc\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n0M8R4A==\r\n--XX--\r\n")
    [attachment] = parse_email(raw).attachments
    assert (attachment.filename, attachment.content_type) == ("form.doc", "application/msword")
    assert parse_email(raw).text_body.strip() == "hi"


def test_forwarded_attachment_is_found_and_marked() -> None:
    raw = build(subject="Fwd: Application", body_text="Forwarding our application",
                attachments=[(LONG_NAME, DOCX, DOCX_TYPE)], forward=True)
    parsed = parse_email(raw)
    [attachment] = parsed.attachments
    assert attachment.from_forwarded
    assert attachment.filename == LONG_NAME and attachment.payload == DOCX
    assert parsed.text_body.strip() == "Forwarding our application"


def test_received_at_is_the_topmost_received_header_across_bst() -> None:
    # Sent at 23:59 BST on the deadline day, received by the hub two minutes later: 00:01 BST next day.
    sent = datetime(2024, 6, 28, 23, 59, tzinfo=timezone(timedelta(hours=1)))
    received = datetime(2024, 6, 28, 23, 1, tzinfo=timezone.utc)
    parsed = parse_email(build(date=sent, received=received))
    assert parsed.date == sent
    assert parsed.received_at == received
    assert parsed.received_at.utcoffset() == timedelta(0)
    # Two Received headers are written; the lower one is earlier and must not win.
    assert len([name for name, _ in parsed.headers if name == "Received"]) == 2


def test_received_at_falls_back_to_date_and_assumes_utc_when_naive() -> None:
    parsed = parse_email(build(date=datetime(2024, 3, 31, 0, 30, tzinfo=timezone.utc)))
    assert parsed.received_at == datetime(2024, 3, 31, 0, 30, tzinfo=timezone.utc)
    naive = b"From: a@b.example\r\nDate: 31 Mar 2024 01:30:00\r\nSubject: x\r\n\r\nbody\r\n"
    parsed = parse_email(naive)
    assert parsed.date is not None and parsed.date.tzinfo is not None


def test_cr_lf_removed_from_every_header_value() -> None:
    # An encoded word may smuggle CR/LF in; decoded values end up in replies, so they must hold none.
    raw = build(subject="=?utf-8?q?Hello=0D=0ABcc:_victim@example.org?=", received=datetime(2024, 6, 1, tzinfo=timezone.utc),
                extra_headers=[
        ("X-Note", "=?utf-8?b?" + "bGluZTENCmxpbmUy" + "?=")])
    parsed = parse_email(raw)
    assert "\r" not in parsed.subject and "\n" not in parsed.subject
    assert parsed.subject.startswith("Hello")
    for name, value in parsed.headers:
        assert not any(c in value for c in "\r\n\x0b\x0c\x85\u2028\u2029"), name
    folded = [v for n, v in parsed.headers if n == "Received"][0]
    assert "by mx.hub.example" in folded  # folded across lines in the raw message, one line here


def test_delivered_to_and_friends() -> None:
    raw = build(extra_headers=[("Delivered-To", "Admin@Hub.Example.org"), ("X-Original-To", "applications@hub.example.org"),
                               ("Envelope-To", "admin@hub.example.org")])
    parsed = parse_email(raw)
    assert [a.email for a in parsed.delivered_to] == ["admin@hub.example.org", "applications@hub.example.org"]


def test_addresses_lower_cased_malformed_skipped_groups_fine() -> None:
    raw = build(to="undisclosed-recipients:;", upper_case_addresses=True,
                cc=["Broken <not-an-address>", HEAD], extra_headers=[("Reply-To", "Office <OFFICE@Valley.example.sch.uk>")])
    parsed = parse_email(raw)
    assert parsed.sender is not None and parsed.sender.email == "k.wright@valley.example.sch.uk"
    assert parsed.to == ()
    assert [a.email for a in parsed.cc] == ["h.oneill@valley.example.sch.uk"]
    assert parsed.reply_to == (Address("office@valley.example.sch.uk", "Office"),)
    assert parsed.all_recipients_and_sender() == {"k.wright@valley.example.sch.uk", "h.oneill@valley.example.sch.uk"}


def test_message_ids_and_references() -> None:
    raw = build(message_id="<abc@valley.example>", in_reply_to="<q1@hub.example.org>",
                references=["<q0@hub.example.org>", "<q1@hub.example.org>"])
    parsed = parse_email(raw)
    assert parsed.message_id == "<abc@valley.example>"
    assert parsed.in_reply_to == "<q1@hub.example.org>"
    assert parsed.references == ("<q0@hub.example.org>", "<q1@hub.example.org>")


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("<>", ""), ("< >", ""), ("<Bounce@Example.org>", "bounce@example.org")])
def test_return_path(header: str | None, expected: str | None) -> None:
    extra = [("Return-Path", header)] if header is not None else []
    assert parse_email(build(extra_headers=extra)).return_path == expected


def test_unknown_charset_falls_back_without_crashing() -> None:
    raw = (b"From: a@b.example\r\nSubject: =?x-nonsense?q?caf=E9?=\r\n"
           b"Content-Type: text/plain; charset=x-nonsense\r\n\r\ncaf\xe9 \x93quoted\x94\r\n")
    parsed = parse_email(raw)
    assert parsed.subject == "café"
    assert parsed.text_body.strip() == "café “quoted”"
    assert "body: charset fallback" in parsed.defects


def test_raw_8bit_headers_are_decoded() -> None:
    raw = "From: Jörn <j@example.no>\r\nSubject: Grüße\r\n\r\nhi\r\n".encode()
    parsed = parse_email(raw)
    assert parsed.subject == "Grüße"
    assert parsed.sender == Address("j@example.no", "Jörn")


def test_oversize_attachment_listed_without_payload() -> None:
    raw = build(attachments=[("small.docx", b"PK" * 10, DOCX_TYPE), ("big.pdf", b"%PDF" + b"0" * 5000, "application/pdf")])
    parsed = parse_email(raw, Limits(attachment_bytes=1000))
    small, big = parsed.attachments
    assert small.payload == b"PK" * 10
    assert (big.filename, big.payload) == ("big.pdf", b"")
    assert oversize_attachments(parsed) == {1: 5004}


def test_oversize_message_is_read_headers_only() -> None:
    raw = build(attachments=[("Application form.docx", DOCX, DOCX_TYPE)])
    parsed = parse_email(raw, Limits(message_bytes=2000))
    assert MESSAGE_TOO_LARGE in parsed.defects
    assert parsed.subject == "Application" and parsed.sender is not None
    assert parsed.attachments == () and parsed.text_body == ""


def test_forgot_attachment_has_no_attachment() -> None:
    parsed = parse_email(forgot_attachment_email())
    assert parsed.attachments == ()
    assert "please find attached" in parsed.text_body.lower()


@pytest.mark.parametrize("raw", [b"", b"\x00\xff", b"no headers at all", b"Subject: x", "é".encode() * 3])
def test_junk_never_raises(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert parsed.attachments == ()


def test_deep_nesting_is_bounded() -> None:
    head = b"From: a@b.example\r\nSubject: deep\r\n"
    body = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(3000))
    parsed = parse_email(head + body)
    assert parsed.subject == "deep"
    assert parsed.defects


def test_header_values_decode_as_the_parser_does_from_the_header_block_alone() -> None:
    raw = (b"From: =?utf-8?q?Ren=C3=A9e_O=27Neill?= <renee@school.example.sch.uk>\r\n"
           b"Subject: Application for\r\n the Work Group\r\n"
           b"Subject: a second subject is not the first\r\n"
           b"To: hub@example.org\r\n\r\n"
           b"Subject: in the body, not a header\r\n" + b"x" * 100_000)
    shown = header_values(raw, ("From", "subject", "cc"))
    parsed = parse_email(raw)
    assert shown == {"from": "Renée O'Neill <renee@school.example.sch.uk>", "subject": parsed.subject, "cc": ""}
    assert parsed.subject == "Application for the Work Group"
    # Whatever the bytes, an answer and no exception.
    assert header_values(b"\xff\xfe\x00 not mail", ("from",)) == {"from": ""}
    assert header_values(12345, ("from",)) is None   # type: ignore[arg-type] - unreadable: the caller says so
    assert header_values(b"From: a@b.example\r\n" + b"X-Long: " + b"y" * 200_000, ("from",), limit=1000) == \
        {"from": "a@b.example"}

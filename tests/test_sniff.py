"""Attachment sniffing: the bytes decide, the name and content type only break ties, and damaged forms are still
recognised as forms so the school can be told they couldn't be read."""
from __future__ import annotations

import io
import zipfile

import pytest

from parsers.errors import ScannedDocument, UnreadableFile, UnsafeFile
from parsers.sniff import FileKind, looks_like_document, read_form, sniff
from parsers.types import DocumentKind, Limits
from samples.forms import form_path, legacy_doc, truncated, zip_bomb_docx
from samples.pdf import many_page_pdf, scanned_pdf, text_pdf, truncated_pdf

DOCX = form_path("secondary-tfm-work-group-application-2024-25").read_bytes()
PDF = text_pdf([["School details"]])
LIMITS = Limits()


def _zip(name: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, b"<x/>")
    return out.getvalue()


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("filename", "content_type", "payload", "kind"),
    [
        ("form.docx", "application/octet-stream", DOCX, FileKind.DOCX),
        ("form.pdf", "application/octet-stream", DOCX, FileKind.DOCX),        # bytes beat the name
        ("", "", PDF, FileKind.PDF),
        ("scan.docx", "", b"junk from a gateway\r\n" + PDF, FileKind.PDF),    # header after a little junk
        ("form.doc", "application/msword", legacy_doc(), FileKind.DOC),
        ("form", "", legacy_doc(), FileKind.DOC),
        ("budget.xls", "application/vnd.ms-excel", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), FileKind.OTHER),
        ("photo.docx", "", _png(), FileKind.IMAGE),
        ("", "", b"\xff\xd8\xff\xe0\x00\x10JFIF", FileKind.IMAGE),
        ("", "", b"GIF89a" + bytes(10), FileKind.IMAGE),
        ("", "", b"II*\x00" + bytes(10), FileKind.IMAGE),
        ("", "", b"BM" + bytes(8) + (54).to_bytes(4, "little") + bytes(40), FileKind.IMAGE),
        ("", "", b"\x01\x00\x00\x00" + bytes(36) + b" EMF" + bytes(20), FileKind.IMAGE),
        ("IMG_0001.HEIC", "", bytes(4) + b"ftypheic" + bytes(20), FileKind.IMAGE),
        ("form.docx", "", truncated(DOCX), FileKind.DOCX),                   # damaged, still a form
        ("attachment.bin", "", truncated(DOCX), FileKind.DOCX),              # local headers name word/
        ("form.docx", "", b"not really anything", FileKind.DOCX),            # name is the fallback
        ("form.PDF", "", b"", FileKind.PDF),
        ("x", "application/pdf; name=x", b"????", FileKind.PDF),
        ("x", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", b"??", FileKind.DOCX),
        ("book.xlsx", "", _zip("xl/workbook.xml"), FileKind.OTHER),
        ("book.docx", "", _zip("xl/workbook.xml"), FileKind.DOCX),           # named a form: say it's unreadable
        ("notes.txt", "text/plain", b"Dear hub, please find attached", FileKind.OTHER),
        ("logo", "image/png", b"????", FileKind.IMAGE),
    ],
)
def test_sniff(filename: str, content_type: str, payload: bytes, kind: FileKind) -> None:
    assert sniff(filename, content_type, payload) == kind


def test_looks_like_document() -> None:
    assert [k for k in FileKind if looks_like_document(k)] == [FileKind.DOCX, FileKind.PDF, FileKind.DOC]


def test_read_form_dispatches() -> None:
    assert read_form(FileKind.DOCX, DOCX, LIMITS).kind == DocumentKind.DOCX
    assert read_form(FileKind.PDF, PDF, LIMITS).kind == DocumentKind.PDF


@pytest.mark.parametrize(
    ("kind", "payload", "error", "words"),
    [
        (FileKind.DOC, legacy_doc(), UnreadableFile, ".docx"),
        (FileKind.DOC, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le"), UnreadableFile,
         "password"),
        (FileKind.IMAGE, _png(), UnreadableFile, "picture"),
        (FileKind.OTHER, b"", UnreadableFile, "Word"),
        (FileKind.DOCX, truncated(DOCX), UnreadableFile, "damaged"),
        (FileKind.DOCX, zip_bomb_docx(DOCX), UnsafeFile, "haven't opened"),
        (FileKind.PDF, truncated_pdf(PDF), UnreadableFile, "damaged"),
        (FileKind.PDF, scanned_pdf(), ScannedDocument, "scan or photo"),
        (FileKind.PDF, many_page_pdf(31), UnsafeFile, "pages"),
    ],
)
def test_read_form_refuses_with_a_plain_reason(kind: FileKind, payload: bytes, error: type[Exception],
                                               words: str) -> None:
    with pytest.raises(error) as caught:
        read_form(kind, payload, LIMITS)
    assert words in caught.value.reason


def test_every_hostile_file_is_sniffed_as_what_it_claims() -> None:
    assert sniff("bomb.docx", "", zip_bomb_docx(DOCX)) == FileKind.DOCX
    assert sniff("long.pdf", "", many_page_pdf(40)) == FileKind.PDF
    assert sniff("scan.pdf", "", scanned_pdf()) == FileKind.PDF
    assert sniff("cut.pdf", "", truncated_pdf(PDF)) == FileKind.PDF

"""Decide what kind of file an attachment is, and hand a form to the right reader.

The bytes decide first (magic numbers), because schools' mail programs send wrong names and content types; the name
and content type are only a fallback for bytes we don't recognise, so that a damaged file called ``form.docx`` is
still treated as a Word form and the school is told it couldn't be read, rather than being silently ignored.
"""
from __future__ import annotations

from enum import StrEnum

from parsers.docx_form import read_docx
from parsers.errors import UnreadableFile
from parsers.pdf_form import read_pdf
from parsers.types import FormDocument, Limits

__all__ = ["FileKind", "sniff", "looks_like_document", "read_form"]


class FileKind(StrEnum):
    DOCX = "docx"
    PDF = "pdf"
    DOC = "doc"       # legacy OLE2 Word (also what Word writes for a password-protected .docx)
    IMAGE = "image"
    OTHER = "other"


_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_IMAGE_MAGICS = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",        # JPEG
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",             # TIFF, little-endian
    b"MM\x00*",             # TIFF, big-endian
)
_DOCX_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-word.document.macroenabled.12",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
}
_DOC_TYPES = {"application/msword", "application/vnd.ms-word"}
_PDF_TYPES = {"application/pdf", "application/x-pdf"}
_DOCX_EXTENSIONS = (".docx", ".docm", ".dotx")
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".emf", ".wmf", ".heic", ".webp")
# OLE2 directory entries name their streams in UTF-16: Word's is "WordDocument"; an encrypted .docx is an OLE2
# file holding an "EncryptedPackage" stream.
_ENCRYPTED_OOXML = "EncryptedPackage".encode("utf-16-le")
_WORD_STREAM = "WordDocument".encode("utf-16-le")


def sniff(filename: str, content_type: str, payload: bytes) -> FileKind:
    """What ``payload`` is: by its bytes first, then by its name and declared content type."""
    by_magic = _by_magic(payload)
    if by_magic == FileKind.DOC and not _ole_is_word(payload, filename.strip().lower(), content_type.lower()):
        # OLE2 is also Excel, PowerPoint and Outlook's container: those are not forms.
        return FileKind.OTHER
    if by_magic is not None:
        return by_magic
    return _by_name(filename.strip().lower(), content_type.strip().lower())


def looks_like_document(kind: FileKind) -> bool:
    """Whether a file of this kind is meant to be a form (and so deserves an answer if it can't be read)."""
    return kind in (FileKind.DOCX, FileKind.PDF, FileKind.DOC)


def read_form(kind: FileKind, payload: bytes, limits: Limits) -> FormDocument:
    """Read a form of a kind ``sniff`` returned. Raises ``UnreadableFile`` (or a subclass) with a reason to quote."""
    if kind == FileKind.DOCX:
        return read_docx(payload, limits)
    if kind == FileKind.PDF:
        return read_pdf(payload, limits)
    if kind == FileKind.DOC:
        if _ENCRYPTED_OOXML in payload:
            raise UnreadableFile(
                "This Word file is password-protected, so we can't read it. "
                "Please remove the password (File > Info > Protect Document) and send it again, or send a PDF."
            )
        raise UnreadableFile(
            "This is an old-style Word file (.doc), which we can't read. "
            "Please open it in Word, choose Save As, pick 'Word Document (.docx)' or PDF, and send that copy."
        )
    if kind == FileKind.IMAGE:
        raise UnreadableFile(
            "This is a picture of the form, so we can't read the answers from it. "
            "Please send the filled-in form itself: the Word file or a PDF saved from Word."
        )
    raise UnreadableFile(
        "We can't read this kind of file. Please send the application form as a Word (.docx) file or a PDF."
    )


def _ole_is_word(payload: bytes, filename: str, content_type: str) -> bool:
    if _WORD_STREAM in payload or _ENCRYPTED_OOXML in payload:
        return True
    return _by_name(filename, content_type) == FileKind.DOC


def _by_magic(payload: bytes) -> FileKind | None:
    head = payload[:1024]
    if head.startswith(_OLE):
        return FileKind.DOC
    if b"%PDF-" in head:
        # The PDF header may legally sit after a little junk, which some mail gateways prepend.
        return FileKind.PDF
    if head.startswith(_ZIP_MAGICS):
        return FileKind.DOCX if _zip_has_word_document(payload) else None
    if head.startswith(_IMAGE_MAGICS) or _is_bmp(head) or _is_emf(head) or _is_heic_or_webp(head):
        return FileKind.IMAGE
    return None


def _zip_has_word_document(payload: bytes) -> bool:
    # Zip headers name their parts in plain bytes, even in a truncated file with no central directory; the docx
    # reader opens the package properly afterwards, so a cheap look is enough to decide what kind this is.
    return b"word/document.xml" in payload


def _is_bmp(head: bytes) -> bool:
    # "BM" alone is too weak (plain text can start so); the header's declared pixel-data offset must be sane too.
    return head.startswith(b"BM") and len(head) >= 14 and 14 <= int.from_bytes(head[10:14], "little") < 1 << 20


def _is_emf(head: bytes) -> bool:
    return head[:4] == b"\x01\x00\x00\x00" and head[40:44] == b" EMF"


def _is_heic_or_webp(head: bytes) -> bool:
    # Phones send photos of paper forms as HEIC; some mail clients convert them to WebP.
    return (head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc")) or (
        head.startswith(b"RIFF") and head[8:12] == b"WEBP"
    )


def _by_name(filename: str, content_type: str) -> FileKind:
    content_type = content_type.split(";")[0].strip()
    if filename.endswith(_DOCX_EXTENSIONS) or content_type in _DOCX_TYPES:
        return FileKind.DOCX
    if filename.endswith(".pdf") or content_type in _PDF_TYPES:
        return FileKind.PDF
    if filename.endswith((".doc", ".dot")) or content_type in _DOC_TYPES:
        return FileKind.DOC
    if filename.endswith(_IMAGE_EXTENSIONS) or content_type.startswith("image/"):
        return FileKind.IMAGE
    return FileKind.OTHER

"""Make the PDFs the reader tests need: forms "saved as PDF" (LibreOffice headless, standing in for Word), forms
filled in a PDF reader (AcroForm fields added as an incremental update), scans, password-protected exports, PDFs
without space characters or with padding after their end, and hostile files (cut short, absurdly long).

LibreOffice takes about two seconds a conversion, so results are cached on disk (``CACHE_DIR``) keyed by the
SHA-256 of the input's contents, the export options, the font asked for and the fonts installed (the same form lays
out differently on a machine with other fonts); writes are atomic and every process uses its own LibreOffice
profile, so parallel test runs neither clash nor corrupt the cache.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CACHE_DIR", "FormField", "acroform_pdf", "docx_to_pdf", "encrypted_pdf", "libreoffice_available",
    "many_page_pdf", "padded_pdf", "pdf_font_names", "scanned_pdf", "spaceless_pdf", "stream_bomb_pdf", "text_pdf",
    "truncated_pdf",
]

# LibreOffice takes seconds per file: conversions are kept, keyed by content, in the user's cache folder.
CACHE_DIR = Path(os.environ.get("HUBBOT_PDF_CACHE") or Path.home() / ".cache" / "hubbot" / "pdf")
ENCRYPTED_PASSWORD = "secret"
_CONVERT_TIMEOUT = 180
_profiles: dict[tuple[int, int], Path] = {}
_profiles_lock = threading.Lock()


def libreoffice_available() -> bool:
    return shutil.which("soffice") is not None or shutil.which("libreoffice") is not None


def docx_to_pdf(docx_bytes: bytes, font: str | None = None) -> bytes:
    """The form as Word's "Save as PDF" would give it (LibreOffice's writer_pdf_Export); with ``font``, the form
    rewritten to use that font throughout first (``samples.forms.with_font``)."""
    if font is not None:
        from samples.forms import with_font  # python-docx and lxml only when a font is asked for

        docx_bytes = with_font(docx_bytes, font)
    return _convert(docx_bytes, "pdf:writer_pdf_Export", font or "")


def pdf_font_names(pdf_bytes: bytes) -> set[str]:
    """The fonts a PDF's text is drawn in, without subset prefixes ("BAAAAA+Carlito-Bold" is "Carlito-Bold"), as
    ``pdffonts`` lists them: for checking that LibreOffice really used the font asked for."""
    import pdfplumber

    with pdfplumber.open(io.BytesIO(pdf_bytes)) as pdf:
        return {str(char["fontname"]).split("+")[-1] for page in pdf.pages for char in page.chars}


def encrypted_pdf(docx_bytes: bytes) -> bytes:
    """The form exported as a PDF that needs a password to open."""
    options = (
        'pdf:writer_pdf_Export:{"EncryptFile":{"type":"boolean","value":"true"},'
        f'"DocumentOpenPassword":{{"type":"string","value":"{ENCRYPTED_PASSWORD}"}}}}'
    )
    return _convert(docx_bytes, options)


def _convert(docx_bytes: bytes, filter_spec: str, font: str = "") -> bytes:
    key = _content_key(f"{filter_spec}\0{font}\0{_installed_fonts()}", docx_bytes)
    cached = CACHE_DIR / f"{key}.pdf"
    if cached.exists():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="hubbot-pdf-") as work:
        source = Path(work) / "form.docx"
        source.write_bytes(docx_bytes)
        subprocess.run(
            [
                "soffice", "--headless", "--norestore", "--nolockcheck",
                f"-env:UserInstallation={_profile().as_uri()}",
                "--convert-to", filter_spec, "--outdir", str(Path(work) / "out"), str(source),
            ],
            check=True, capture_output=True, timeout=_CONVERT_TIMEOUT,
        )
        produced = Path(work) / "out" / "form.pdf"
        if not produced.exists():
            raise RuntimeError("LibreOffice did not produce a PDF")
        data = produced.read_bytes()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Write then rename: another test process may be reading or writing the same key right now.
    fd, temp_name = tempfile.mkstemp(dir=CACHE_DIR, suffix=".part")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp_name, cached)
    return data


def _content_key(filter_spec: str, docx_bytes: bytes) -> str:
    """SHA-256 of the package's member names and contents, not its bytes: zip entries carry the time they were
    written, so the same filled form saved twice differs byte for byte and would never hit the cache."""
    digest = hashlib.sha256(filter_spec.encode() + b"\0")
    try:
        with zipfile.ZipFile(io.BytesIO(docx_bytes)) as archive:
            for name in sorted(archive.namelist()):
                digest.update(name.encode() + b"\0" + hashlib.sha256(archive.read(name)).digest())
    except (zipfile.BadZipFile, OSError, ValueError):
        digest.update(docx_bytes)
    return digest.hexdigest()


@functools.cache
def _installed_fonts() -> str:
    """A digest of the fonts fontconfig offers LibreOffice: a PDF made before a font was installed was drawn in a
    fallback, and must not be taken from the cache for one that would now use the real font."""
    try:
        listed = subprocess.run(["fc-list", "--format", "%{family}|%{style}|%{file}\n"], capture_output=True,
                                check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "no-fontconfig"
    return hashlib.sha256(b"\n".join(sorted(listed.splitlines()))).hexdigest()


def _profile() -> Path:
    """One LibreOffice profile per process and thread: two soffice instances sharing one profile block each other."""
    key = (os.getpid(), threading.get_ident())
    with _profiles_lock:
        if key not in _profiles:
            path = Path(tempfile.mkdtemp(prefix="hubbot-lo-profile-"))
            _profiles[key] = path
            atexit.register(shutil.rmtree, path, True)
        return _profiles[key]


# ---- PDFs written from code --------------------------------------------------------------------------------------

def _pdf(objects: list[bytes]) -> bytes:
    """Assemble numbered objects (1..n, object 1 the catalog) into a PDF with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _stream(content: bytes, extra: bytes = b"") -> bytes:
    packed = zlib.compress(content)
    return b"<< /Length %d /Filter /FlateDecode %s >>\nstream\n" % (len(packed), extra) + packed + b"\nendstream"


def text_pdf(pages: list[list[str]], header: str = "", footer: str = "") -> bytes:
    """A plain PDF with the given lines of Helvetica text on each page (no LibreOffice needed); ``header`` and
    ``footer`` are drawn in the top and bottom margins of every page, "{page}" and "{pages}" filled in."""
    # Objects: 1 catalog, 2 page tree, 3 font, then (page, content) pairs.
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages))).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for index, lines in enumerate(pages):
        ops = [b"BT /F1 11 Tf 72 740 Td 14 TL"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("cp1252")
            ops.append(b"(" + escaped + b") Tj T*")
        ops.append(b"ET")
        for text, y in ((header, 770), (footer, 24)):
            if text:
                filled = text.format(page=index + 1, pages=len(pages)).encode("cp1252")
                ops.append(b"BT /F1 9 Tf 72 %d Td (%s) Tj ET" % (y, filled))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % (5 + 2 * index)
        )
        objects.append(_stream(b"\n".join(ops)))
    return _pdf(objects)


def many_page_pdf(pages: int = 40) -> bytes:
    return text_pdf([[f"Page {n} of a very long attachment"] for n in range(1, pages + 1)])


def scanned_pdf(pages: int = 1) -> bytes:
    """A "scan": each page only an image of a form (drawn with Pillow), with no text layer at all."""
    from PIL import Image, ImageDraw

    images = []
    for _ in range(pages):
        image = Image.new("L", (850, 1100), 255)
        draw = ImageDraw.Draw(image)
        draw.text((80, 80), "School details", fill=0)
        draw.rectangle((80, 110, 770, 170), outline=0, width=2)
        draw.text((90, 130), "Name of school      St Anne's Primary", fill=0)
        images.append(image)
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=100.0, save_all=True, append_images=images[1:])
    return out.getvalue()


def stream_bomb_pdf(inflated_bytes: int = 200 * 1024 * 1024) -> bytes:
    """One page whose content stream is tiny compressed and ``inflated_bytes`` of spaces once inflated."""
    page = text_pdf([["Looks like a form"]])
    packer = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    packed = b"".join(packer.compress(chunk) for _ in range(inflated_bytes >> 20)) + packer.flush()
    bomb = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents [6 0 R 5 0 R] >>",
        bomb,
        _stream(b"BT /F1 11 Tf 72 740 Td (Looks like a form) Tj ET"),
    ]
    del page
    return _pdf(objects)


def truncated_pdf(pdf_bytes: bytes, keep: float = 0.6) -> bytes:
    """The first part of a PDF, as left by a transfer that stopped early."""
    return pdf_bytes[: int(len(pdf_bytes) * keep)]


def spaceless_pdf(lines: list[str], size: float = 10.0) -> bytes:
    """One page of Helvetica whose words are each placed on their own with no space character between them, as
    some PDF writers do: the gap between words is a space's width (2.78 pt at 10 pt), under pdfplumber's default
    3 pt word gap."""
    from pdfminer.fontmetrics import FONT_METRICS

    widths = FONT_METRICS["Helvetica"][1]
    ops: list[bytes] = []
    y = 740.0
    for line in lines:
        x = 72.0
        for word in line.split():
            escaped = word.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("cp1252")
            ops.append(b"BT /F1 %.2f Tf %.2f %.2f Td (%s) Tj ET" % (size, x, y, escaped))
            x += sum(widths.get(char, 556) for char in word + " ") * size / 1000
        y -= size * 1.5
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        _stream(b"\n".join(ops)),
    ]
    return _pdf(objects)


def padded_pdf(pdf_bytes: bytes, padding: bytes) -> bytes:
    """A PDF with bytes after its %%EOF, as some scanners and mail gateways leave it (zeros, blank lines)."""
    return pdf_bytes + padding


# ---- forms filled in a PDF reader --------------------------------------------------------------------------------

@dataclass(frozen=True)
class FormField:
    """One filled-in form field: on page ``page`` (from 0), over ``box`` (x0, top, x1, bottom in points from the
    page's top left, as pdfplumber measures), holding ``value``. ``kind`` is the PDF field type: "Tx" text, "Ch"
    choice, "Btn" a check box whose ``value`` names its on state."""

    page: int
    box: tuple[float, float, float, float]
    value: str
    kind: str = "Tx"
    hidden: bool = False


class _Raw(bytes):
    """PDF syntax written as it is."""


def acroform_pdf(pdf_bytes: bytes, fields: Sequence[FormField]) -> bytes:
    """``pdf_bytes`` with ``fields`` filled in, saved the way a PDF reader saves a filled form: an incremental
    update appending a widget annotation per field (its value in /V, no appearance stream: /NeedAppearances asks
    the viewer to draw it), the pages' /Annots and the catalog's /AcroForm rewritten, a new xref section pointing
    back to the old one. The page content is untouched: the answers are only in the fields."""
    import pdfplumber

    with pdfplumber.open(io.BytesIO(pdf_bytes)) as pdf:
        trailers = [xref.get_trailer() for xref in pdf.doc.xrefs]
        root = next(t["Root"] for t in trailers if "Root" in t)
        size = max(int(t.get("Size", 0)) for t in trailers)
        catalog = dict(pdf.doc.catalog)
        pages = [(page.page_obj.pageid, dict(page.page_obj.attrs), float(page.height)) for page in pdf.pages]
    previous = int(re.findall(rb"startxref\s+(\d+)", pdf_bytes)[-1])
    objects: dict[int, bytes] = {}
    font = size
    objects[font] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    widgets: list[int] = []
    by_page: dict[int, list[int]] = {}
    for number, field in enumerate(fields, start=size + 1):
        page_id, _, height = pages[field.page]
        x0, top, x1, bottom = field.box
        if field.kind == "Btn":
            value = _name_syntax(field.value)
            extra = b" /AS " + value
        else:
            value = b"<FEFF" + field.value.encode("utf-16-be").hex().upper().encode() + b">"
            extra = b" /Ff 4096" if field.kind == "Tx" else b""   # multi-line text
        objects[number] = (
            b"<< /Type /Annot /Subtype /Widget /FT /%s /T (field%d) /V %s /Rect [%.2f %.2f %.2f %.2f] /P %d 0 R "
            b"/F %d /DA (/Helv 10 Tf 0 g)%s >>"
            % (field.kind.encode(), number, value, x0, height - bottom, x1, height - top, page_id,
               6 if field.hidden else 4, extra)
        )
        widgets.append(number)
        by_page.setdefault(field.page, []).append(number)
    for index, numbers in by_page.items():
        page_id, attrs, _ = pages[index]
        existing = attrs.get("Annots") or []
        if not isinstance(existing, list):
            from pdfminer.pdftypes import resolve1

            existing = list(resolve1(existing) or [])
        attrs["Annots"] = [*existing, *(_Raw(b"%d 0 R" % n) for n in numbers)]
        objects[page_id] = _syntax(attrs)
    catalog["AcroForm"] = _Raw(
        b"<< /Fields [" + b" ".join(b"%d 0 R" % n for n in widgets) + b"] /NeedAppearances true "
        b"/DA (/Helv 0 Tf 0 g) /DR << /Font << /Helv %d 0 R >> >> >>" % font
    )
    objects[root.objid] = _syntax(catalog)
    out = bytearray(pdf_bytes if pdf_bytes.endswith(b"\n") else pdf_bytes + b"\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n"
    for number in sorted(objects):
        out += b"%d 1\n%010d 00000 n \n" % (number, offsets[number])
    out += b"trailer\n<< /Size %d /Root %d 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
        size + 1 + len(fields), root.objid, previous, xref)
    return bytes(out)


def _name_syntax(name: str | bytes) -> bytes:
    raw = name.encode("latin-1") if isinstance(name, str) else name
    return b"/" + b"".join(bytes([c]) if 33 <= c <= 126 and c not in b"#/()<>[]{}%" else b"#%02X" % c for c in raw)


def _syntax(value: Any) -> bytes:
    """A pdfminer object (as parsed from the original file) written back as PDF syntax."""
    from pdfminer.pdftypes import PDFObjRef
    from pdfminer.psparser import PSLiteral

    if isinstance(value, _Raw):
        return bytes(value)
    if isinstance(value, PDFObjRef):
        return b"%d 0 R" % value.objid
    if isinstance(value, PSLiteral):
        return _name_syntax(value.name)
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return b"%.5f" % value
    if isinstance(value, bytes):
        return b"<" + value.hex().encode() + b">"
    if isinstance(value, list):
        return b"[" + b" ".join(_syntax(item) for item in value) + b"]"
    if isinstance(value, dict):
        return b"<<" + b"".join(_name_syntax(key) + b" " + _syntax(item) + b" " for key, item in value.items()) + b">>"
    if value is None:
        return b"null"
    raise TypeError(f"can't write {type(value).__name__} as PDF syntax")

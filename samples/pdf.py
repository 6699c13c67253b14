"""Make the PDFs the reader tests need: forms "saved as PDF" (LibreOffice headless, standing in for Word), scans,
password-protected exports, and hostile files (cut short, absurdly long).

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
import shutil
import subprocess
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path

__all__ = ["CACHE_DIR", "docx_to_pdf", "pdf_font_names", "libreoffice_available", "encrypted_pdf", "scanned_pdf", "text_pdf", "many_page_pdf", "stream_bomb_pdf", "truncated_pdf", "padded_pdf"]

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


def text_pdf(pages: list[list[str]]) -> bytes:
    """A plain PDF with the given lines of Helvetica text on each page (no LibreOffice needed)."""
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


def padded_pdf(pdf_bytes: bytes, padding: bytes) -> bytes:
    """A PDF with bytes after its %%EOF, as some scanners and mail gateways leave it (zeros, blank lines)."""
    return pdf_bytes + padding

"""The worst mail a stranger can send within the caps, for the bounded-work tests and ``bench/hostile_bench.py``.

``huge_docx`` is a .docx whose ``word/document.xml`` sits just under ``Limits.docx_inflated_bytes`` and inflates
less than ``docx_ratio`` times (so the zip checks let it through), made of millions of tiny elements: the most
tree lxml can be asked to build. ``cpu_heavy_pdf`` is a small PDF whose pages are dense ruled grids full of text:
pdfplumber's table finder works hard on every page up to the page cap. ``hostile_mail`` puts any number of them in
one e-mail, as a sender trying to keep the worker busy would.
"""
from __future__ import annotations

import io
import random
import zipfile

from parsers.types import Limits
from samples.mail import DOCX_TYPE, build_email
from samples.pdf import _pdf, _stream

__all__ = ["huge_docx", "cpu_heavy_pdf", "hostile_mail"]

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships '
    'xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="word/document.xml"/></Relationships>')


def huge_docx(limits: Limits = Limits(), *, margin: int = 512 * 1024, seed: int = 7) -> bytes:
    """A .docx whose main part is as big as the caps allow, in one-cell table rows of tiny runs: the most lxml
    nodes (and the most ``Cell`` and ``Table`` objects for our walk) per byte."""
    rng = random.Random(seed)
    target = limits.docx_inflated_bytes - margin
    head = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{_W}"><w:body><w:tbl>'.encode()
    tail = b"</w:tbl></w:body></w:document>"
    parts = [head]
    size = len(head) + len(tail)
    letters = "abcdefghijklmnopqrstuvwxyz"
    # Rows of random two-letter words, picked at random from a pool larger than deflate's 32 KiB window: the
    # inflate ratio stays far under docx_ratio while every element stays tiny.
    pool = [("<w:tr><w:tc><w:p>" + "".join(f"<w:r><w:t>{rng.choice(letters)}{rng.choice(letters)}</w:t></w:r>"
                                           for _ in range(6)) + "</w:p></w:tc></w:tr>").encode()
            for _ in range(8192)]
    while size < target:
        row = pool[rng.randrange(len(pool))]
        parts.append(row)
        size += len(row)
    parts.append(tail)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr("word/document.xml", b"".join(parts))
    return out.getvalue()


def cpu_heavy_pdf(pages: int = 30, grid: int = 60) -> bytes:
    """``pages`` pages, each a ``grid`` x ``grid`` ruled table with a word in every cell."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(pages)).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    step = 540 / grid
    for index in range(pages):
        ops = [b"0.2 w"]
        for i in range(grid + 1):
            x = 36 + i * step
            ops.append(b"%.2f 36 m %.2f 576 l S" % (x, x))
            ops.append(b"36 %.2f m 576 %.2f l S" % (x, x))
        ops.append(b"BT /F1 4 Tf")
        for row in range(grid):
            for col in range(grid):
                ops.append(b"1 0 0 1 %.2f %.2f Tm (r%dc%d) Tj" % (37 + col * step, 38 + row * step, row, col))
        ops.append(b"ET")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 612] /Resources << /Font << /F1 3 0 R >> "
                       b">> /Contents %d 0 R >>" % (5 + 2 * index))
        objects.append(_stream(b"\n".join(ops)))
    return _pdf(objects)


def hostile_mail(attachments: list[tuple[str, bytes, str]], *, to: str = "admin@hub.example.org") -> bytes:
    return build_email(sender="Kate Wright <k.wright@valley.example.sch.uk>", to=to, subject="Application form",
                       body_text="Please find attached our application form.", attachments=attachments)


PDF_TYPE = "application/pdf"
__all__ += ["PDF_TYPE", "DOCX_TYPE"]

"""Read a PDF application form (one saved from Word) into the same neutral blocks the .docx reader produces.

Text outside tables becomes ``Paragraph`` blocks (wrapped lines of one paragraph joined back together), ruled tables
become ``Table`` blocks with each cell's text lines kept, all in reading order across pages. PDFs are parsed by
pdfminer, which is pure Python and can be made to spin or balloon by a hostile file, so the work runs in a forked
child with an address-space cap and a wall-clock deadline (``parsers.bounded``, shared with the .docx reader: one
child per message reads all of its documents); the child hands back plain JSON, never pickles.
"""
from __future__ import annotations

import bisect
import io
import json
from collections.abc import Callable
from typing import Any

import pdfplumber
from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect
from pdfminer.pdftypes import resolve1

from parsers.bounded import Budget, run_bounded
from parsers.errors import ScannedDocument, UnreadableFile, UnsafeFile
from parsers.types import (
    Block,
    Cell,
    DocumentKind,
    FormDocument,
    Limits,
    Paragraph,
    Table,
)

__all__ = ["read_pdf", "read_pdf_here", "extract_blocks"]

_CORRUPT = (
    "We couldn't open this PDF: it seems to be damaged or only partly sent. "
    "Please save the form as a PDF again (or send the Word file) and send the new copy."
)
_ENCRYPTED = (
    "This PDF is password-protected, so we can't read it. "
    "Please send the form as a Word file, or save it as a PDF without a password."
)
_SCANNED = (
    "This PDF looks like a scan or photo of the form, so we can't read the answers from it. "
    "Please send the filled-in form itself: we need the Word file or a PDF saved from Word."
)
_TOO_SLOW = (
    "This PDF is too complicated for us to read in a reasonable time, so we stopped. "
    "Please send the Word file, or a PDF saved straight from Word."
)
_TOO_BIG = (
    "This PDF needs far more memory to read than any application form should, so we stopped. "
    "Please send the Word file, or a PDF saved straight from Word."
)

_ERRORS: dict[str, tuple[type[UnreadableFile], str]] = {
    "corrupt": (UnreadableFile, _CORRUPT),
    "encrypted": (UnreadableFile, _ENCRYPTED),
    "scanned": (ScannedDocument, _SCANNED),
    "slow": (UnsafeFile, _TOO_SLOW),
    "memory": (UnsafeFile, _TOO_BIG),
}

# Readers tolerate a little junk after %%EOF; more than this and the end of the file is most likely missing.
_EOF_WINDOW = 4096


class _Refused(Exception):
    """Raised inside the extraction to end it with one of the ``_ERRORS`` kinds."""

    def __init__(self, kind: str, reason: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.reason = reason


def _too_many_pages(limits: Limits) -> str:
    return (
        f"This PDF has more than {limits.pdf_pages} pages, far more than an application form, so we haven't "
        "read it. Please send just the filled-in form."
    )


def read_pdf(data: bytes, limits: Limits) -> FormDocument:
    """Read a PDF into blocks in reading order, within ``limits``' time, memory and page caps.

    Raises ``ScannedDocument`` (no text layer), ``UnsafeFile`` (too many pages, too slow, too big) or
    ``UnreadableFile`` (damaged, truncated, password-protected)."""
    _precheck(data)
    payload = _run_bounded(lambda: _extract_to_json(data, limits), limits)
    return _from_json(payload, limits)


def _precheck(data: bytes) -> None:
    head = data[:1024]
    if b"%PDF-" not in head:
        raise UnreadableFile(_CORRUPT)
    # pdfminer quietly rebuilds a cut-off file from whatever objects survive, which would turn a half-sent form
    # into a form with missing answers; a missing end marker means the rest never arrived.
    if b"%%EOF" not in data[-_EOF_WINDOW:]:
        raise UnreadableFile(_CORRUPT)


# ---- the bounded child (parsers.bounded) --------------------------------------------------------------------

def _run_bounded(work: Callable[[], bytes], limits: Limits) -> bytes:
    """Run ``work`` in a forked child under the PDF caps (``parsers.bounded``); the bytes it produced."""
    return run_bounded(work, Budget(memory_bytes=limits.pdf_memory_bytes, seconds=limits.pdf_seconds))


def read_pdf_here(data: bytes, limits: Limits) -> FormDocument:
    """``read_pdf`` without a child of its own, for a caller already inside a bounded child (one per message)."""
    _precheck(data)
    return _from_json(_extract_to_json(data, limits), limits)


def _error_json(kind: str, reason: str = "") -> bytes:
    return json.dumps({"error": kind, "reason": reason}).encode()


def _from_json(payload: bytes, limits: Limits) -> FormDocument:
    if not payload:
        # The child died without a word: killed by the memory cap, the CPU cap, or a crash in a C library.
        raise UnsafeFile(_TOO_BIG)
    try:
        result: dict[str, Any] = json.loads(payload)
    except ValueError as exc:
        raise UnsafeFile(_TOO_BIG) from exc
    if "error" in result:
        kind = result["error"]
        if kind == "pages":
            raise UnsafeFile(_too_many_pages(limits))
        error_type, reason = _ERRORS.get(kind, (UnreadableFile, _CORRUPT))
        raise error_type(reason)
    blocks: list[Block] = []
    for item in result["blocks"]:
        if item[0] == "p":
            blocks.append(Paragraph(item[1]))
        else:
            blocks.append(Table(tuple(tuple(Cell(tuple(lines)) for lines in row) for row in item[1])))
    return FormDocument(kind=DocumentKind.PDF, blocks=tuple(blocks), pages=int(result["pages"]))


def _extract_to_json(data: bytes, limits: Limits) -> bytes:
    try:
        pages, blocks = extract_blocks(data, limits)
    except _Refused as refused:
        return _error_json(refused.kind, refused.reason)
    encoded: list[list[Any]] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            encoded.append(["p", block.text])
        else:
            encoded.append(["t", [[list(cell.lines) for cell in row] for row in block.rows]])
    return json.dumps({"pages": pages, "blocks": encoded}).encode()


# ---- extraction (runs in the child; callable directly for profiling) ---------------------------------------------

def extract_blocks(data: bytes, limits: Limits) -> tuple[int, list[Block]]:
    """Unbounded extraction: the page count and the blocks. ``read_pdf`` is the safe entry point."""
    try:
        pdf = pdfplumber.open(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pdfminer raises anything from a bad file
        raise _Refused(_open_failure_kind(exc)) from exc
    with pdf:
        try:
            declared = resolve1(resolve1(pdf.doc.catalog.get("Pages")).get("Count"))
        except Exception:  # noqa: BLE001 - a broken page tree is caught below when pages are listed
            declared = None
        if isinstance(declared, int) and declared > limits.pdf_pages:
            raise _Refused("pages")
        try:
            pages = pdf.pages
        except Exception as exc:  # noqa: BLE001
            raise _Refused(_open_failure_kind(exc)) from exc
        if len(pages) > limits.pdf_pages:
            raise _Refused("pages")
        if not pages:
            raise _Refused("corrupt")
        blocks: list[Block] = []
        any_text = False
        for page in pages:
            try:
                page_blocks, has_text = _page_blocks(page)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise _Refused(_open_failure_kind(exc)) from exc
            any_text = any_text or has_text
            blocks.extend(page_blocks)
            page.close()
        if not any_text:
            raise _Refused("scanned")
        return len(pages), blocks


def _open_failure_kind(exc: BaseException) -> str:
    """Why pdfminer gave up: a password, our memory cap, or (anything else) a damaged file."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError) or any(isinstance(arg, MemoryError) for arg in seen.args):
            return "memory"  # the address-space cap, surfacing through pdfminer's or pdfplumber's wrappers
        if isinstance(seen, (PDFPasswordIncorrect, PDFEncryptionError)):
            return "encrypted"
        if any(isinstance(arg, (PDFPasswordIncorrect, PDFEncryptionError)) for arg in seen.args):
            return "encrypted"  # pdfplumber wraps pdfminer's exception as an argument, not a cause
        seen = seen.__cause__ or seen.__context__
    return "corrupt"


def _page_blocks(page: Any) -> tuple[list[Block], bool]:
    chars = page.chars
    has_text = any(not c["text"].isspace() for c in chars)
    if not has_text:
        return [], False
    tables = page.find_tables()
    items: list[tuple[float, int, Block | dict[str, Any]]] = []
    boxes = [t.bbox for t in tables]
    if tables:
        by_middle = sorted(chars, key=_v_mid)
        middles = [_v_mid(c) for c in by_middle]
        for order, table in enumerate(tables):
            rows = _table_rows(table, by_middle, middles)
            if rows:
                items.append((table.bbox[1], order, Table(tuple(rows))))
    outside = page.filter(lambda obj: obj.get("object_type") != "char" or not _in_any(obj, boxes)) if boxes else page
    for line in outside.extract_text_lines(return_chars=True, strip=True):
        if line["text"]:
            items.append((line["top"], len(items) + 1_000_000, line))
    items.sort(key=lambda item: (item[0], item[1]))
    return _merge_paragraph_lines([item[2] for item in items]), True


def _v_mid(char: dict[str, Any]) -> float:
    return (char["top"] + char["bottom"]) / 2


def _table_rows(table: Any, by_middle: list[dict[str, Any]], middles: list[float]) -> list[tuple[Cell, ...]]:
    """The same cell texts as pdfplumber's ``Table.extract`` (a char belongs to the cell holding its middle), but
    finding each row's chars by bisection instead of testing every char of the page against every row and cell:
    on a form page that was most of our cost over plain text extraction."""
    rows: list[tuple[Cell, ...]] = []
    for row in table.rows:
        _, top, _, bottom = row.bbox
        row_chars = by_middle[bisect.bisect_left(middles, top):bisect.bisect_left(middles, bottom)]
        cells: list[Cell] = []
        for bbox in row.cells:
            if bbox is None:  # the continuation of a merged cell
                continue
            x0, _, x1, _ = bbox
            inside = [c for c in row_chars if x0 <= (c["x0"] + c["x1"]) / 2 < x1]
            cells.append(Cell(_cell_lines(pdfplumber.utils.extract_text(inside)) if inside else ()))
        if cells:
            rows.append(tuple(cells))
    return rows


def _in_any(obj: dict[str, Any], boxes: list[tuple[float, float, float, float]]) -> bool:
    x = (obj["x0"] + obj["x1"]) / 2
    y = (obj["top"] + obj["bottom"]) / 2
    return any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)


def _cell_lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.split("\n") if line.strip())


def _merge_paragraph_lines(items: list[Block | dict[str, Any]]) -> list[Block]:
    """Join the wrapped lines of one paragraph back together, so a PDF paragraph matches the .docx paragraph.

    Lines belong together when the gap between them is well under a line's height (Word puts paragraph spacing
    between paragraphs) and the font doesn't change at the join (a bold heading is its own paragraph)."""
    out: list[Block] = []
    current: list[str] = []
    previous: dict[str, Any] | None = None

    def flush() -> None:
        if current:
            out.append(Paragraph(" ".join(current)))
            current.clear()

    for item in items:
        if not isinstance(item, dict):
            flush()
            previous = None
            out.append(item)
            continue
        if previous is not None and not _continues(previous, item):
            flush()
        current.append(item["text"])
        previous = item
    flush()
    return out


def _continues(previous: dict[str, Any], line: dict[str, Any]) -> bool:
    height = max(previous["bottom"] - previous["top"], 1.0)
    gap = line["top"] - previous["bottom"]
    if gap < -0.5 * height or gap > 0.5 * height:
        return False
    return _font(previous["chars"][-1]) == _font(line["chars"][0])


def _font(char: dict[str, Any]) -> tuple[str, int]:
    # Subset prefixes ("BAAAAA+") differ per embedded subset but not per style; compare the real font name.
    name = str(char.get("fontname", "")).split("+")[-1]
    return name, round(float(char.get("size", 0)))

"""Read a PDF application form (one saved from Word) into the same neutral blocks the .docx reader produces.

Text outside tables becomes ``Paragraph`` blocks, ruled tables (one-cell statement boxes too) become ``Table``
blocks with each cell's text lines kept, and filled-in form fields go where they sit, all in reading order across
pages. Whatever fonts the sender had, the layout is undone where it cut the text: wrapped lines of a paragraph are
joined, a word cut at a line's end (hyphenated, too wide for its column, an address) reads as one word, and a table
or paragraph running over a page break (a row cut in two included) becomes one again; running headers and footers
are dropped, as the .docx reader never sees them. PDFs are parsed by pdfminer, which is pure Python and can be made
to spin or balloon by a hostile file, so the work runs in a forked child with an address-space cap and a wall-clock
deadline (``parsers.bounded``, shared with the .docx reader: one child per message reads all of its documents);
the child hands back plain JSON, never pickles.
"""
from __future__ import annotations

import bisect
import io
import json
import re
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import pdfplumber
from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect
from pdfminer.pdftypes import resolve1
from pdfminer.utils import decode_text

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
    blocks_from_json,
    blocks_to_json,
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

# Upper bound on what the child may send back: far more than any form's text, far less than a worker's memory.
_MAX_RESULT_BYTES = 32 * 1024 * 1024
# Readers tolerate a little junk after %%EOF; more than this (unless it is only padding) and what follows the end
# marker is most likely a later revision of the file that was cut short.
_EOF_WINDOW = 4096
_EOF = b"%%EOF"
_PADDING = b"\x00\t\n\x0c\r "
# What a further revision (an incremental update: a PDF reader saving filled-in fields) starts with.
_REVISION_MARKS = (b" obj", b"xref", b"trailer", b"stream")


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
    if not _ends_whole(data):
        raise UnreadableFile(_CORRUPT)


def _ends_whole(data: bytes) -> bool:
    """Whether the file ends where a PDF ends: at its last %%EOF, give or take padding (some scanners and mail
    gateways add kilobytes of zeros or blank lines) or a little junk that doesn't start another revision."""
    end = data.rfind(_EOF)
    if end < 0:
        return False
    tail = data[end + len(_EOF):]
    if not tail.translate(None, _PADDING):
        return True
    return len(tail) <= _EOF_WINDOW and not any(mark in tail for mark in _REVISION_MARKS)


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
    return FormDocument(kind=DocumentKind.PDF, blocks=blocks_from_json(result["blocks"]), pages=int(result["pages"]))


def _extract_to_json(data: bytes, limits: Limits) -> bytes:
    try:
        pages, blocks = extract_blocks(data, limits)
    except _Refused as refused:
        return _error_json(refused.kind, refused.reason)
    return json.dumps({"pages": pages, "blocks": blocks_to_json(blocks)}).encode()


# ---- extraction (runs in the child; callable directly for profiling) ---------------------------------------------

# pdfplumber splits words where the gap between two glyphs is over 3 pt, which glues the words of a PDF that
# places each word without a space character when its font is small or narrow (a space in 10 pt Carlito is 2.3 pt);
# a share of the font size holds at every size. Gaps inside a word are kerning, a small fraction of this.
_X_TOLERANCE_RATIO = 0.15
_Y_TOLERANCE = 3
# Word and LibreOffice place the same table edge at the same place on every page, give or take rounding.
_EDGE_SLACK = 1.5
# A line "filled" its cell when the next line's first letter (or first fragment) would have overshot the text area:
# this much is allowed for rounding in the PDF's coordinates.
_FIT_SLACK = 1.0
# Lines of one paragraph are at most this many line heights apart (1.15 line spacing is about 1.35); Word's
# paragraph spacing puts the next paragraph further down.
_PARAGRAPH_PITCH = 1.6
# A closed rectangle smaller than this is a tick box or a decoration, not a one-cell table.
_MIN_BOX = (24.0, 8.0)
# Running headers and footers live in the page's top and bottom margin (Word puts them half an inch from the edge).
_MARGIN_SHARE = 0.07
_PAGE_NUMBER = re.compile(r"(?i)[-–\s]*(page\s*)?\d+(\s*(of|/)\s*\d+)?[-–\s]*")
# A line ending in one of these ends a sentence, a question or a label ("Name of school:").
_ENDS = ".!?:;)"
# What an e-mail or web address is made of, on either side of a line break inside it.
_ADDRESS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.@_-+%/~#=?&")
_WORDS = pdfplumber.utils.text.WordExtractor(x_tolerance_ratio=_X_TOLERANCE_RATIO, y_tolerance=_Y_TOLERANCE)


class _Line:
    """One text line with what the joins need: its box, the font at each end, and how wide the first letter and
    the first unbreakable fragment are (to tell whether they would have fitted at the end of the line before).
    A form field's value is a line without fonts: it is a whole answer, never half of a word."""

    __slots__ = ("text", "x0", "x1", "top", "bottom", "start_font", "end_font", "first_width", "lead_width",
                 "word_width", "limit", "follows", "ends_spaced", "spaces_kept")

    def __init__(self, text: str, x0: float, x1: float, top: float, bottom: float,
                 start_font: tuple[str, int] | None = None, end_font: tuple[str, int] | None = None,
                 first_width: float = 0.0, lead_width: float = 0.0, word_width: float = 0.0) -> None:
        self.text = text
        self.x0, self.x1, self.top, self.bottom = x0, x1, top, bottom
        self.start_font, self.end_font = start_font, end_font
        self.first_width, self.lead_width, self.word_width = first_width, lead_width, word_width
        self.limit: float | None = None   # right edge of the text area, where known
        self.follows = False              # continues the previous page's last paragraph
        self.ends_spaced = False          # the PDF has a space character after the line's last word
        self.spaces_kept = False          # the page's writer keeps the space a line was broken at (see _runs_on)


class _CellFrag:
    __slots__ = ("bbox", "lines")

    def __init__(self, bbox: tuple[float, float, float, float], lines: list[_Line]) -> None:
        self.bbox = bbox
        self.lines = lines


class _RowFrag:
    __slots__ = ("cells", "bounds")

    def __init__(self, cells: list[_CellFrag]) -> None:
        self.cells = cells
        self.bounds = [c.bbox[0] for c in cells] + [cells[-1].bbox[2]]


class _TableFrag:
    __slots__ = ("rows", "top", "x0", "x1", "page_starts")

    def __init__(self, rows: list[_RowFrag], bbox: tuple[float, float, float, float]) -> None:
        self.rows = rows
        self.x0, self.top, self.x1 = bbox[0], bbox[1], bbox[2]
        self.page_starts: list[int] = []   # rows that begin a new page, not joined to the row before


_Item = _Line | _TableFrag


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
        per_page: list[list[_Item]] = []
        heights: list[float] = []
        any_text = False
        for page in pages:
            try:
                items, has_text = _page_items(page)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise _Refused(_open_failure_kind(exc)) from exc
            any_text = any_text or has_text
            per_page.append(items)
            heights.append(float(page.height))
            page.close()
        if not any_text:
            raise _Refused("scanned")
        try:
            return len(pages), _assemble(per_page, heights)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever odd geometry a page had, the school hears the same
            raise _Refused("corrupt") from exc


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


# ---- one page: lines, tables and form fields in reading order ----------------------------------------------------

def _page_items(page: Any) -> tuple[list[_Item], bool]:
    chars = page.chars
    widgets = _widgets(page)
    has_text = any(not c["text"].isspace() for c in chars) or bool(widgets)
    if not has_text:
        return [], False
    tables = _find_tables(page)
    items: list[tuple[float, int, _Item]] = []
    boxes = [t.bbox for t in tables]
    if tables:
        by_middle = sorted(chars, key=_v_mid)
        middles = [_v_mid(c) for c in by_middle]
        for order, table in enumerate(tables):
            rows = _table_rows(table, by_middle, middles, widgets)
            if rows:
                items.append((table.bbox[1], order, _TableFrag(rows, table.bbox)))
    outside = [c for c in chars if not _in_any(c, boxes)] if boxes else chars
    lines = _place_widgets(_lines_of(outside), [w for w in widgets if not _in_any(w[0], boxes)])
    every_line = lines + [line for _, _, table in items for row in table.rows for cell in row.cells
                          for line in cell.lines]
    # Word and LibreOffice write the space at which they broke a line; a writer that does so on this page tells us
    # that a line ending without one was broken inside a word.
    if any(line.ends_spaced for line in every_line):
        for line in every_line:
            line.spaces_kept = True
    # The right edge of the page's running text, where a paragraph line that wrapped ends give or take a letter:
    # Word's margins are the same both sides unless someone changed them, and no line runs past the edge.
    text_lines = [line for line in lines if line.start_font is not None]
    limit = None
    if text_lines:
        limit = max(float(page.width) - min(line.x0 for line in text_lines), max(line.x1 for line in text_lines))
    for line in lines:
        line.limit = limit
        items.append((line.top, len(items) + 1_000_000, line))
    items.sort(key=lambda item: (item[0], item[1]))
    return [item[2] for item in items], True


def _find_tables(page: Any) -> list[Any]:
    """Ruled tables, as ``page.find_tables`` finds them, plus the one-cell tables it drops: a statement box, or the
    part of one that a page break left on its own page."""
    finder = pdfplumber.table.TableFinder(page)
    tables = list(finder.tables)
    taken = {cell for table in tables for cell in table.cells}
    boxes = [t.bbox for t in tables]
    for cell in finder.cells:
        x0, top, x1, bottom = cell
        if cell in taken or x1 - x0 < _MIN_BOX[0] or bottom - top < _MIN_BOX[1]:
            continue
        if any(x0 < bx1 and bx0 < x1 and top < bbottom and btop < bottom for bx0, btop, bx1, bbottom in boxes):
            continue  # a frame around (or inside) a table already found
        tables.append(pdfplumber.table.Table(page, [cell]))
        boxes.append(cell)
    tables.sort(key=lambda t: (t.bbox[1], t.bbox[0]))
    return tables


def _v_mid(char: dict[str, Any]) -> float:
    return (char["top"] + char["bottom"]) / 2


def _table_rows(table: Any, by_middle: list[dict[str, Any]], middles: list[float],
                widgets: list[tuple[dict[str, Any], list[str]]]) -> list[_RowFrag]:
    """The same cells as pdfplumber's ``Table.extract`` (a char belongs to the cell holding its middle), but
    finding each row's chars by bisection instead of testing every char of the page against every row and cell:
    on a form page that was most of our cost over plain text extraction. Form fields go in the cell they sit in."""
    rows: list[_RowFrag] = []
    for row in table.rows:
        _, top, _, bottom = row.bbox
        row_chars = by_middle[bisect.bisect_left(middles, top):bisect.bisect_left(middles, bottom)]
        cells: list[_CellFrag] = []
        for bbox in row.cells:
            if bbox is None:  # the continuation of a merged cell
                continue
            x0, _, x1, _ = bbox
            inside = [c for c in row_chars if x0 <= (c["x0"] + c["x1"]) / 2 < x1]
            lines = _lines_of(inside)
            if widgets:
                lines = _place_widgets(lines, [w for w in widgets if _in_any(w[0], [bbox])])
            cells.append(_CellFrag(bbox, lines))
        if cells:
            rows.append(_RowFrag(cells))
    return rows


def _in_any(obj: dict[str, Any], boxes: list[tuple[float, float, float, float]]) -> bool:
    x = (obj["x0"] + obj["x1"]) / 2
    y = (obj["top"] + obj["bottom"]) / 2
    return any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)


def _lines_of(chars: list[dict[str, Any]]) -> list[_Line]:
    """Chars to text lines (words joined by one space, as pdfplumber's ``extract_text``), keeping each line's box."""
    if not chars:
        return []
    words = _WORDS.extract_words(chars, return_chars=True)
    spaces = sorted((c for c in chars if c["text"] == " "), key=itemgetter("top"))
    space_tops = [c["top"] for c in spaces]
    lines: list[_Line] = []
    for cluster in pdfplumber.utils.cluster_objects(words, "top", _Y_TOLERANCE):
        text = " ".join(word["text"] for word in cluster).strip()
        if not text:
            continue
        head = cluster[0]["chars"]
        lead_end = head[-1]["x1"]
        for char in head:
            if char["text"] in "-\u00ad":
                lead_end = char["x1"]  # a line may break after a hyphen inside the first word
                break
        lines.append(_Line(
            text, min(w["x0"] for w in cluster), max(w["x1"] for w in cluster),
            min(w["top"] for w in cluster), max(w["bottom"] for w in cluster),
            _font(head[0]), _font(cluster[-1]["chars"][-1]),
            head[0]["x1"] - head[0]["x0"], lead_end - head[0]["x0"], head[-1]["x1"] - head[0]["x0"],
        ))
        line = lines[-1]
        nearby = spaces[bisect.bisect_left(space_tops, line.top - _Y_TOLERANCE):
                        bisect.bisect_right(space_tops, line.top + _Y_TOLERANCE)]
        line.ends_spaced = any(space["x0"] >= line.x1 - 0.5 for space in nearby)
    return lines


def _font(char: dict[str, Any]) -> tuple[str, int]:
    # Subset prefixes ("BAAAAA+") differ per embedded subset but not per style; compare the real font name.
    name = str(char.get("fontname", "")).split("+")[-1]
    return name, round(float(char.get("size", 0)))


# ---- form fields (AcroForm) --------------------------------------------------------------------------------------

def _widgets(page: Any) -> list[tuple[dict[str, Any], list[str]]]:
    """Filled-in text and choice fields on the page: (box, value lines). A PDF filled in a PDF reader keeps its
    answers in the fields, not in the page's text, so without them the form would look empty."""
    try:
        annots = page.annots
    except Exception:  # noqa: BLE001 - a broken annotation array only loses the fields
        return []
    found: list[tuple[dict[str, Any], list[str]]] = []
    for annot in annots:
        data = annot.get("data")
        if not isinstance(data, dict) or _name(resolve1(data.get("Subtype"))) != "Widget":
            continue
        flags = resolve1(data.get("F"))
        if isinstance(flags, int) and flags & 2:  # hidden
            continue
        value = _field_value(data)
        if not value:
            continue
        lines = [line.strip() for line in value.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        lines = [line for line in lines if line]
        if lines:
            found.append(({k: annot[k] for k in ("x0", "x1", "top", "bottom")}, lines))
    return found


def _field_value(widget: dict[str, Any]) -> str | None:
    """A widget's value, looking up the field tree as the PDF spec says (type and value are inheritable)."""
    kind: str | None = None
    value: Any = None
    node: Any = widget
    for _ in range(32):  # the tree is the sender's: a loop in it must not hang us
        if not isinstance(node, dict):
            break
        kind = kind or _name(resolve1(node.get("FT")))
        if value is None and "V" in node:
            value = resolve1(node.get("V"))
        node = resolve1(node.get("Parent"))
    if kind not in ("Tx", "Ch"):
        return None  # buttons: a tick box's "on" name is no answer to a question
    if isinstance(value, list):
        return ", ".join(text for text in (_pdf_text(resolve1(v)) for v in value) if text)
    return _pdf_text(value)


def _name(value: Any) -> str | None:
    name = getattr(value, "name", None)
    if isinstance(name, bytes):
        return name.decode("latin-1")
    return name if isinstance(name, str) else None


def _pdf_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        if value.startswith(b"\xef\xbb\xbf"):  # PDF 2.0 allows UTF-8 text strings
            return value[3:].decode("utf-8", "replace")
        return decode_text(value)
    return _name(value)


def _place_widgets(lines: list[_Line], widgets: list[tuple[dict[str, Any], list[str]]]) -> list[_Line]:
    """Field values among the text lines where the fields sit: on a printed line ("Name of school: [field]") the
    value is added to that line, else its lines go in at the field's height."""
    if not widgets:
        return lines
    out = list(lines)
    for box, values in widgets:
        middle = (box["top"] + box["bottom"]) / 2
        host = next((line for line in lines if line.start_font is not None and line.top <= middle <= line.bottom), None)
        if host is not None:
            value = " ".join(values)
            host.text = f"{host.text} {value}" if box["x0"] >= host.x1 - _EDGE_SLACK else f"{value} {host.text}"
            host.end_font = None  # the line now ends in an answer, which never runs on into the next line
            continue
        for index, value in enumerate(values):
            out.append(_Line(value, box["x0"], box["x1"], box["top"] + index * 0.01, box["bottom"]))
    out.sort(key=lambda line: (line.top, line.x0))
    return out


# ---- joining what the page layout cut --------------------------------------------------------------------------

def _runs_on(prev: _Line, nxt: _Line, limit: float | None, left: float | None, address: bool = False) -> bool:
    """Whether ``nxt`` continues the word ``prev`` ends with, so the two join with no space between.

    Never across a space the PDF shows at the end of ``prev`` (the line was broken there), and only between lines
    of one font (a paragraph typed in another style starts a new thought). Then: a word hyphenated at the line
    end after a letter ("small-" + "step"); a word the layout had to cut because it was wider than the whole
    column ("headteacher/sen" + "ior leader"): the cut line is that one word alone, filling the column to within a
    letter, and the next line carries on at the same left edge; an e-mail or web address (``address``) broken at
    its dots or anywhere, which is one word however many lines it takes. And where the page's writer keeps the
    spaces it breaks lines at, a break at a word's own punctuation ("headteacher" + "/senior", "Okonkwo" +
    "-Smith"). Each time the piece after the break must not have fitted on the line before, or the break was a
    paragraph's end (as it was when the gap between the lines is paragraph spacing, not line spacing). Without the space to go by, a line broken at a space usually leaves room for the next
    letter, and a line holding more than one word was never cut inside its last one."""
    if prev.ends_spaced or prev.start_font is None or nxt.start_font is None or prev.end_font != nxt.start_font:
        return False
    if nxt.top > prev.top and nxt.top - prev.top > _PARAGRAPH_PITCH * max(prev.bottom - prev.top, 1.0):
        return False  # paragraph spacing: the line before ended a paragraph (on the same page, that is)
    before, after = prev.text, nxt.text
    if len(before) < 2 or not after:
        return False
    if before[-1] in "-\u00ad" and before[-2].isalpha() and after[0].isalpha():
        return limit is None or prev.x1 + nxt.lead_width > limit - _FIT_SLACK
    if limit is None:
        return False
    wrapped = prev.x1 + nxt.word_width > limit - _FIT_SLACK
    if prev.spaces_kept and before[-1].isalnum() and after[0] in "-/.@" and len(after) > 1:
        return wrapped
    if prev.spaces_kept and before[-1] in "/@" and before[-2].isalnum() and after[0].isalnum():
        return wrapped  # (not after a full stop: a paragraph may end in one, and the next start with a capital)
    if left is None or abs(nxt.x0 - left) > _EDGE_SLACK:
        return False  # centred or indented text: its right edge says nothing about the column's width
    if address:
        return before[-1] in _ADDRESS_CHARS and after[0] in _ADDRESS_CHARS and not after[0].isupper() and wrapped
    if " " in before or abs(prev.x0 - left) > _EDGE_SLACK or not before[-1].isalnum():
        return False
    if not (after[0].islower() or (after[0].isdigit() and before[-1].isdigit())):
        # "extension" + "24" is two words, and a capital most likely starts a paragraph (which, like a cut word,
        # leaves no space at the end of the line before it).
        return False
    return prev.x1 + nxt.first_width > limit - _FIT_SLACK


def _is_address(token: str) -> bool:
    lowered = token.lower()
    return ("@" in token and "." in token.split("@")[-1]) or "://" in token or lowered.startswith("www.")


def _address_at(lines: list[_Line], index: int) -> bool:
    """Whether the break after ``lines[index]`` falls inside an e-mail or web address: the word across it (the last
    word of that line, with the single-word lines before it, and the first word of the next line, with the
    single-word lines after it) is an address, and the break is at the address's punctuation or its first piece
    already has some, so that a word before an address ("Email" above "head@school.uk") is not taken for part
    of it."""
    last_word = lines[index].text.rsplit(" ", 1)[-1]
    first_word = lines[index + 1].text.split(" ", 1)[0]
    if not (any(mark in last_word for mark in "@./") or first_word[:1] in ("@", ".")):
        return False
    left = [last_word]
    back = index
    while back > 0 and " " not in lines[back].text:
        back -= 1
        left.insert(0, lines[back].text.rsplit(" ", 1)[-1])
    right = [first_word]
    ahead = index + 1
    while ahead + 1 < len(lines) and " " not in lines[ahead].text:
        ahead += 1
        right.append(lines[ahead].text.split(" ", 1)[0])
    return _is_address("".join(left + right))


def _joined(lines: list[_Line], runs_on: set[int]) -> str:
    parts: list[str] = []
    for index, line in enumerate(lines):
        text = line.text
        if index in runs_on and text.endswith("\u00ad"):
            text = text[:-1]  # an automatic hyphen is layout, not spelling
        parts.append(text)
        if index < len(lines) - 1:
            parts.append("" if index in runs_on else " ")
    return "".join(parts)


def _cell_area(cell: _CellFrag) -> tuple[float | None, float | None]:
    """The cell's text area: its left edge (where its lines start) and right limit (the cell's edge less the same
    padding). None when the lines don't share a left edge."""
    text_lines = [line for line in cell.lines if line.start_font is not None]
    if not text_lines:
        return None, None
    left = min(line.x0 for line in text_lines)
    padding = left - cell.bbox[0]
    if padding < 0 or padding > (cell.bbox[2] - cell.bbox[0]) / 4:
        return None, None
    return cell.bbox[2] - padding, left


def _to_cell(cell: _CellFrag) -> Cell:
    limit, left = _cell_area(cell)
    lines = cell.lines
    runs_on = tuple(i for i in range(len(lines) - 1)
                    if _runs_on(lines[i], lines[i + 1], limit, left, _address_at(lines, i)))
    texts = tuple(line.text[:-1] if i in runs_on and line.text.endswith("\u00ad") else line.text
                  for i, line in enumerate(lines))
    return Cell(texts, runs_on)


# ---- the whole document: pages joined back together -------------------------------------------------------------

def _assemble(per_page: list[list[_Item]], heights: list[float]) -> list[Block]:
    """Pages' items into one reading order, undoing what page breaks did: a table that runs on over a break becomes
    one table again (and a row cut in two, one row), and a paragraph that runs on, one paragraph."""
    _drop_running_lines(per_page, heights)
    sequence: list[_Item] = []
    for items in per_page:
        if sequence and items:
            before, first = sequence[-1], items[0]
            if isinstance(before, _TableFrag) and isinstance(first, _TableFrag) and _same_table(before, first):
                _append_rows(before, first)
                items = items[1:]
            elif isinstance(before, _Line) and isinstance(first, _Line) and _paragraph_runs_over(before, first):
                first.follows = True
        sequence.extend(items)
    return _merge_paragraph_lines(sequence)


def _drop_running_lines(per_page: list[list[_Item]], heights: list[float]) -> None:
    """Remove running headers and footers: the same text (or a page number) in the same place in the top or bottom
    margin of two or more pages, set apart from the page's body by at least a line's height. The .docx reader
    never sees them, and between the two halves of a table they would keep it from being joined again. A heading
    at the top of two pages is not one: it sits with the text below it."""
    if len(per_page) < 2:
        return
    places: dict[tuple[str, int], set[int]] = {}
    marginal: list[tuple[int, _Line, tuple[str, int]]] = []
    for number, (items, height) in enumerate(zip(per_page, heights)):
        for index, item in enumerate(items):
            if not isinstance(item, _Line):
                continue
            gap = max(item.bottom - item.top, 1.0)
            if item.bottom < height * _MARGIN_SHARE:
                body = next((_top(other) for other in items[index + 1:]), height)
                apart = body - item.bottom >= gap
            elif item.top > height * (1 - _MARGIN_SHARE):
                body = max((_bottom(other) for other in items[:index]), default=0.0)
                apart = item.top - body >= gap
            else:
                continue
            if apart:
                text = "#" if _PAGE_NUMBER.fullmatch(item.text) else item.text
                key = (text, round(item.top / 2))
                places.setdefault(key, set()).add(number)
                marginal.append((number, item, key))
    running = {(number, id(item)) for number, item, key in marginal if len(places[key]) >= 2}
    if running:
        for number, items in enumerate(per_page):
            items[:] = [item for item in items if (number, id(item)) not in running]


def _top(item: _Item) -> float:
    return item.top


def _bottom(item: _Item) -> float:
    if isinstance(item, _Line):
        return item.bottom
    return max((line.bottom for row in item.rows for cell in row.cells for line in cell.lines), default=item.top)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _EDGE_SLACK


def _same_table(before: _TableFrag, after: _TableFrag) -> bool:
    """A table at the top of a page carries on the one that ended the page before when it has the same outer edges
    and its first row's column edges are among that table's: a different table that happens to follow (a signature
    grid after a statement box) has column edges of its own."""
    if not (_close(before.x0, after.x0) and _close(before.x1, after.x1)):
        return False
    known = [x for row in before.rows for x in row.bounds]
    return all(any(_close(x, k) for k in known) for x in after.rows[0].bounds)


def _append_rows(before: _TableFrag, after: _TableFrag) -> None:
    last, first = before.rows[-1], after.rows[0]
    rest = after.rows
    if len(last.bounds) == len(first.bounds) and all(map(_close, last.bounds, first.bounds)) \
            and _row_runs_over(last, first):
        for mine, theirs in zip(last.cells, first.cells):
            mine.lines = mine.lines + theirs.lines
        rest = after.rows[1:]
    else:
        before.page_starts.append(len(before.rows))
    before.rows.extend(rest)


def _row_runs_over(last: _RowFrag, first: _RowFrag) -> bool:
    """Whether the first row after a page break is the rest of the row before it rather than a row of its own.

    The rest of a cut row has nothing left in its first cell while other cells run on (the label fitted, the
    answer did not); or its first cell carries on the text before it: inside a word, in lower case, or with a
    capital after a line that was full (the capitalised word could not have fitted on it) and ended mid-sentence
    in a word, while another cell finished on the page before (an answer that fitted) and none starts anything
    new on this one; or, when its first cell holds no words (a number typed after the label), another cell
    visibly carries on its sentence. An empty half is what is left of a row whose text all went to the other
    page (or an empty row, which loses nothing joined to the next). When in doubt the rows stay apart: joining two rows would
    put one answer under another's label, while leaving a cut row in two only leaves one label unrecognised."""
    if not any(cell.lines for cell in last.cells):
        return True  # the empty top of a row whose text all went over (LibreOffice leaves one), or an empty row
    if not any(cell.lines for cell in first.cells):
        # The empty rest of a row whose text all fitted (its spacing went over); in a one-column box it may as
        # well be the empty answer row under a prompt, which must stay a row of its own.
        return len(first.cells) > 1
    head_before, head_after = last.cells[0], first.cells[0]
    if not head_after.lines:
        return len(first.cells) > 1
    if not head_before.lines:
        return False
    others = [(a, b) for a, b in zip(last.cells[1:], first.cells[1:]) if b.lines]
    if _cell_runs_over(head_before, head_after):
        return True
    if head_after.lines[0].text[:1].isalpha():
        # A capital is the weakest sign: besides a full line before it, another cell must have finished on the page
        # before (an answer that fitted) and none may start anything new on this one.
        finished = any(a.lines and not b.lines for a, b in zip(last.cells[1:], first.cells[1:]))
        return finished and _full_before_capital(head_before, head_after) and all(
            a.lines and _cell_runs_over(a, b, sentence=True) for a, b in others)
    return any(a.lines and _cell_runs_over(a, b, sentence=True) for a, b in others)


def _cell_runs_over(before: _CellFrag, after: _CellFrag, sentence: bool = False) -> bool:
    """Whether ``after``'s text carries on ``before``'s: inside a word, or in lower case in the same font (and,
    with ``sentence``, after a line that doesn't end a sentence)."""
    prev, nxt = before.lines[-1], after.lines[0]
    limit, left = _cell_area(before)
    both = before.lines + after.lines
    if _runs_on(prev, nxt, limit, left, _address_at(both, len(before.lines) - 1)):
        return True
    if prev.end_font is None or prev.end_font != nxt.start_font or not nxt.text[:1].islower():
        return False
    return not sentence or prev.text[-1:] not in _ENDS


def _full_before_capital(before: _CellFrag, after: _CellFrag) -> bool:
    prev, nxt = before.lines[-1], after.lines[0]
    limit, left = _cell_area(before)
    if limit is None or prev.end_font is None or prev.end_font != nxt.start_font:
        return False
    if not (prev.text[-1:].isalpha() or prev.text[-1:] == ","):
        return False  # a sentence cut by the page ends in a word; "2023/24" or "Name:" may well end a label
    space = 0.25 * float(nxt.start_font[1] or 10)
    return prev.x1 + space + nxt.word_width > limit - _FIT_SLACK


def _paragraph_runs_over(prev: _Line, nxt: _Line) -> bool:
    """Whether the first line of a page carries on the last paragraph of the page before: the same font at the
    join, and the last line was full (the next line's first word could not have fitted after it), or the new page
    goes on in lower case."""
    if prev.start_font is None or prev.end_font != nxt.start_font:
        return False
    if nxt.text[:1].islower():
        return True
    if _runs_on(prev, nxt, prev.limit, None):
        return True
    space = 0.25 * float(nxt.start_font[1] or 10)
    return prev.limit is not None and prev.x1 + space + nxt.lead_width > prev.limit - _FIT_SLACK


def _merge_paragraph_lines(items: list[_Item]) -> list[Block]:
    """Join the wrapped lines of one paragraph back together, so a PDF paragraph matches the .docx paragraph.

    Lines belong together when the gap between them is well under a line's height (Word puts paragraph spacing
    between paragraphs) and the font doesn't change at the join (a bold heading is its own paragraph)."""
    out: list[Block] = []
    current: list[_Line] = []

    def flush() -> None:
        if current:
            runs_on = {i for i in range(len(current) - 1)
                       if _runs_on(current[i], current[i + 1], current[i].limit, None)}
            out.append(Paragraph(_joined(current, runs_on)))
            current.clear()

    for item in items:
        if isinstance(item, _TableFrag):
            flush()
            out.append(Table(tuple(tuple(_to_cell(cell) for cell in row.cells) for row in item.rows),
                             tuple(item.page_starts)))
            continue
        if current and not (item.follows or _continues(current[-1], item)):
            flush()
        current.append(item)
    flush()
    return out


def _continues(previous: _Line, line: _Line) -> bool:
    height = max(previous.bottom - previous.top, 1.0)
    gap = line.top - previous.bottom
    if gap < -0.5 * height or gap > 0.5 * height:
        return False
    return previous.end_font is not None and previous.end_font == line.start_font

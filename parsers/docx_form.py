"""Read a Word ``.docx`` application form into neutral ``FormDocument`` blocks.

The zip package is checked against the ``Limits`` before anything is inflated, then the main document part is read
with a byte cap and parsed with a locked-down XML parser. The WordprocessingML is walked by hand rather than through
python-docx's ``.text``, because schools answer forms in ways that library drops or duplicates: content controls,
tracked changes, hyperlinks, text boxes with a fallback copy, nested tables and merged cells.
"""
from __future__ import annotations

import io
import posixpath
import zipfile
import zlib
from collections.abc import Iterator

from lxml import etree

from parsers.errors import UnreadableFile, UnsafeFile
from parsers.types import (
    Block,
    Cell,
    DocumentKind,
    FormDocument,
    Limits,
    Paragraph,
    Table,
)

__all__ = ["read_docx"]

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
# Word's "Strict Open XML Document" format: the same WordprocessingML under ISO's namespace.
STRICT_W = "http://purl.oclc.org/ooxml/wordprocessingml/main"
MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
OFFICE_DOCUMENT = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
STRICT_OFFICE_DOCUMENT = "http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument"


def _w(name: str) -> str:
    return f"{{{W}}}{name}"


T_P, T_TBL, T_TR, T_TC, T_SDT = _w("p"), _w("tbl"), _w("tr"), _w("tc"), _w("sdt")
T_SDT_CONTENT, T_SDT_PR, T_CUSTOM_XML = _w("sdtContent"), _w("sdtPr"), _w("customXml")
T_TEXT, T_TAB, T_PTAB, T_BR, T_CR = _w("t"), _w("tab"), _w("ptab"), _w("br"), _w("cr")
T_NB_HYPHEN, T_TXBX = _w("noBreakHyphen"), _w("txbxContent")
T_FALLBACK, T_CHOICE = f"{{{MC}}}Fallback", f"{{{MC}}}Choice"
T_TC_PR, T_TR_PR, T_VMERGE, T_HMERGE, T_VAL = _w("tcPr"), _w("trPr"), _w("vMerge"), _w("hMerge"), _w("val")
T_DEL, T_CELL_DEL = _w("del"), _w("cellDel")

# Elements whose whole subtree never contributes visible text: tracked deletions (and moved-away text), property
# blocks (a paragraph mark's own tracked deletion lives in pPr), and the fallback copy of a text box.
_SKIP_SUBTREES = frozenset(
    {
        _w("del"), _w("moveFrom"), _w("delText"), _w("delInstrText"), _w("instrText"),
        _w("pPr"), _w("rPr"), _w("tcPr"), _w("trPr"), _w("tblPr"), _w("tblGrid"), _w("sectPr"), T_SDT_PR,
        _w("sdtEndPr"), _w("footnoteReference"), _w("endnoteReference"), _w("commentReference"), T_FALLBACK,
    }
)

# A normal form is a few hundred KiB inflated; small members can have silly ratios (a run of spaces) and can't
# hurt, so the ratio check only bites on members big enough to matter.
_RATIO_MIN_BYTES = 64 * 1024
_MAIN_PART = "word/document.xml"
_XML_ERR_NO_MEMORY = 2   # libxml2's XML_ERR_NO_MEMORY

_CORRUPT = (
    "We couldn't open this Word file: it seems to be damaged or only partly sent. "
    "Please save the form again in Word and send the new copy."
)
_NOT_A_FORM = (
    "This file is named like a Word document but doesn't contain one. "
    "Please send the form as a Word (.docx) file or as a PDF saved from Word."
)
_TOO_BIG = (
    "This Word file would take up far more space once opened than any application form should, "
    "so we haven't opened it. Please save the form again in Word and send the new copy."
)


def _parser() -> etree.XMLParser:
    # No entity expansion, no DTD loading, no network and libxml2's default size limits: the XML came from a
    # stranger's e-mail.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, dtd_validation=False,
        remove_comments=True, remove_pis=True,
    )


def read_docx(data: bytes, limits: Limits) -> FormDocument:
    """Read a .docx package into blocks in reading order. Raises ``UnsafeFile`` or ``UnreadableFile``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise UnreadableFile(_CORRUPT) from exc
    with archive:
        infos = archive.infolist()
        _check_package(infos, limits)
        main_name = _main_part_name(archive, limits)
        xml = _read_member(archive, main_name, limits)
    root = _parse(xml)
    if root.tag == f"{{{STRICT_W}}}document":
        _strict_to_transitional(root)
    body = root.find(_w("body"))
    if root.tag != _w("document") or body is None:
        raise UnreadableFile(_NOT_A_FORM)
    try:
        blocks = tuple(_body_blocks(body))
    except RecursionError as exc:  # libxml2 caps depth, but a cap well under it is not ours to rely on
        raise UnreadableFile(_CORRUPT) from exc
    return FormDocument(kind=DocumentKind.DOCX, blocks=blocks, pages=1)


# ---- package safety ----------------------------------------------------------------------------------------------

def _check_package(infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    if len(infos) > limits.docx_members:
        raise UnsafeFile(
            "This Word file is made of far more pieces than any application form, so we haven't opened it. "
            "Please save the form again in Word and send the new copy."
        )
    total = 0
    for info in infos:
        total += info.file_size
        if total > limits.docx_inflated_bytes:
            raise UnsafeFile(_TOO_BIG)
        if info.file_size >= _RATIO_MIN_BYTES:
            # A stored size of 0 with a big declared size is itself absurd; max() keeps the division defined.
            if info.file_size / max(info.compress_size, 1) > limits.docx_ratio:
                raise UnsafeFile(_TOO_BIG)


def _main_part_name(archive: zipfile.ZipFile, limits: Limits) -> str:
    """The main document part: whatever the package relationships point at, which is word/document.xml in every
    file Word writes but not necessarily in files other programs write."""
    names = set(archive.namelist())
    if "_rels/.rels" in names:
        try:
            rels = _parse(_read_member(archive, "_rels/.rels", limits))
        except UnreadableFile:
            rels = None
        if rels is not None:
            for rel in rels.iter(f"{{{PKG_REL}}}Relationship"):
                if rel.get("Type") in (OFFICE_DOCUMENT, STRICT_OFFICE_DOCUMENT) and rel.get("TargetMode") != "External":
                    target = posixpath.normpath(posixpath.join("/", rel.get("Target", ""))).lstrip("/")
                    if target in names:
                        return target
    if _MAIN_PART in names:
        return _MAIN_PART
    raise UnreadableFile(_NOT_A_FORM)


def _read_member(archive: zipfile.ZipFile, name: str, limits: Limits) -> bytes:
    # The headers were checked already, but they are the sender's word: cap what we actually inflate too.
    cap = limits.docx_inflated_bytes
    try:
        with archive.open(name) as member:
            data = member.read(cap + 1)
    except KeyError as exc:
        raise UnreadableFile(_NOT_A_FORM) from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError) as exc:
        # RuntimeError: an encrypted zip member; NotImplementedError: a compression method we don't have.
        raise UnreadableFile(_CORRUPT) from exc
    if len(data) > cap:
        raise UnsafeFile(_TOO_BIG)
    return data


def _parse(xml: bytes) -> etree._Element:
    try:
        root = etree.fromstring(xml, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        if getattr(exc, "code", None) == _XML_ERR_NO_MEMORY:
            # libxml2 reports hitting our memory cap (parsers.bounded) as a syntax error: the file is too big.
            raise UnsafeFile(_TOO_BIG) from exc
        raise UnreadableFile(_CORRUPT) from exc
    if root is None:
        raise UnreadableFile(_CORRUPT)
    if root.getroottree().docinfo.internalDTD is not None:
        # Word never writes a DTD; one in a document part is there to play entity games with the parser.
        raise UnsafeFile(_CORRUPT)
    return root


def _strict_to_transitional(root: etree._Element) -> None:
    """Rename Strict WordprocessingML elements and attributes to the transitional names the walk looks for. The
    two differ in namespace, and (in what the walk reads) in nothing else."""
    strict, transitional = f"{{{STRICT_W}}}", f"{{{W}}}"
    cut = len(strict)
    for element in root.iter():
        tag = element.tag
        if isinstance(tag, str) and tag.startswith(strict):
            element.tag = transitional + tag[cut:]
        for name in [name for name in element.attrib if name.startswith(strict)]:
            element.attrib[transitional + name[cut:]] = element.attrib.pop(name)


# ---- WordprocessingML walk ---------------------------------------------------------------------------------------

def _showing_placeholder(sdt: etree._Element) -> bool:
    props = sdt.find(T_SDT_PR)
    return props is not None and props.find(_w("showingPlcHdr")) is not None


def _unwrap(parent: etree._Element, *wanted: str) -> Iterator[etree._Element]:
    """Children of ``parent`` with one of the ``wanted`` tags, in order, looking through content controls and
    custom XML wrappers, which Word allows around body content, rows and cells alike. A content control still
    showing its placeholder is empty by definition."""
    for child in parent:
        tag = child.tag
        if tag in wanted:
            yield child
        elif tag == T_SDT:
            if _showing_placeholder(child):
                continue
            content = child.find(T_SDT_CONTENT)
            if content is not None:
                yield from _unwrap(content, *wanted)
        elif tag == T_CUSTOM_XML:
            yield from _unwrap(child, *wanted)


def _block_children(parent: etree._Element) -> Iterator[etree._Element]:
    """Paragraphs and tables directly in a body or cell, in order, looking through block-level wrappers."""
    return _unwrap(parent, T_P, T_TBL)


def _body_blocks(body: etree._Element) -> Iterator[Block]:
    for element in _block_children(body):
        if element.tag == T_P:
            text = _paragraph_text(element).strip()
            if text:
                yield Paragraph(text)
        else:
            yield from _tables(element)


def _tables(tbl: etree._Element) -> list[Table]:
    """The table itself followed by every table nested in its cells (each followed by its own nested ones); a
    cell's lines include the text of tables nested in it."""
    rows: list[tuple[Cell, ...]] = []
    nested: list[Table] = []
    for tr in _unwrap(tbl, T_TR):
        if _tracked_deleted(tr, T_TR_PR, T_DEL):
            continue
        cells: list[Cell] = []
        for tc in _unwrap(tr, T_TC):
            if _is_merge_continuation(tc) or _tracked_deleted(tc, T_TC_PR, T_CELL_DEL):
                continue
            lines: list[str] = []
            for element in _block_children(tc):
                if element.tag == T_P:
                    lines.extend(_lines(_paragraph_text(element)))
                else:
                    # What a reader sees in the cell includes a table pasted into it (as a PDF shows it too);
                    # the nested table also follows as a block of its own, for labels inside it.
                    inner = _tables(element)
                    for row in inner[0].rows:
                        lines.extend(line for cell in row for line in cell.lines)
                    nested.extend(inner)
            cells.append(Cell(tuple(lines)))
        if cells:
            rows.append(tuple(cells))
    return [Table(tuple(rows)), *nested]


def _tracked_deleted(element: etree._Element, props: str, marker: str) -> bool:
    found = element.find(props)
    return found is not None and found.find(marker) is not None


def _is_merge_continuation(tc: etree._Element) -> bool:
    props = tc.find(T_TC_PR)
    if props is None:
        return False
    vmerge = props.find(T_VMERGE)
    if vmerge is not None and vmerge.get(T_VAL, "continue") == "continue":
        return True
    hmerge = props.find(T_HMERGE)  # pre-2007 horizontal merge, still written by some converters
    return hmerge is not None and hmerge.get(T_VAL, "continue") == "continue"


def _lines(text: str) -> list[str]:
    # Line breaks inside a paragraph become separate lines so a .docx cell looks like the same cell read from a PDF;
    # blank lines carry no answer.
    return [line.strip() for line in text.split("\n") if line.strip()]


def _paragraph_text(p: etree._Element) -> str:
    parts: list[str] = []
    _collect(p, parts)
    return "".join(parts)


def _collect(element: etree._Element, out: list[str]) -> None:
    for child in element:
        tag = child.tag
        if not isinstance(tag, str) or tag in _SKIP_SUBTREES:
            continue
        if tag == T_TEXT:
            out.append(child.text or "")
        elif tag == T_TAB or tag == T_PTAB:
            out.append(" ")
        elif tag == T_BR or tag == T_CR:
            out.append("\n")
        elif tag == T_NB_HYPHEN:
            out.append("-")
        elif tag == T_SDT:
            if not _showing_placeholder(child):
                _collect(child, out)
        elif tag == T_TXBX:
            # A text box's paragraphs are lines of their own, not a continuation of the anchoring paragraph.
            for inner in _block_children(child):
                if inner.tag == T_P:
                    out.append("\n" + _paragraph_text(inner))
        else:
            _collect(child, out)

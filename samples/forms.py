"""Fill blank Maths Hub forms in code, the many ways a busy school secretary does, and make hostile .docx files.

Nobody hand-edits binaries: fillers start from a blank form (the shipped copies of ``shared/forms``) and say, in the words printed
on the form, what goes where and how it was typed (``FillStyle``). Each style writes the OOXML Word itself writes for
that way of typing: content controls, tracked changes, hyperlinks, nested tables and so on.
"""
from __future__ import annotations

import io
import itertools
import re
import struct
import zipfile
from enum import StrEnum
from pathlib import Path
from xml.sax.saxutils import escape

import docx
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.oxml import parse_xml
from lxml import etree

__all__ = [
    "FORMS_DIR", "FillStyle", "FormFiller", "DELETED_TEXT", "PLACEHOLDER_TEXT", "form_path", "minimal_docx",
    "zip_bomb_docx", "ratio_bomb_docx", "many_members_docx", "truncated", "legacy_doc", "entity_bomb_docx",
    "with_font", "strict_docx",
]

# Unchanged copies of shared/forms (tests/test_samples.py checks they match), shipped for the demo.
FORMS_DIR = Path(__file__).resolve().parent / "blank_forms"
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NSDECLS = f'xmlns:w="{W_NS}" xmlns:r="{R_NS}"'
DELETED_TEXT = "Wrong old answer"            # what TRACKED_INSERT leaves behind as a tracked deletion
PLACEHOLDER_TEXT = "Click or tap here to enter text."
_PLACEHOLDER_STYLE = '<w:rStyle w:val="PlaceholderText"/>'
_HYPERLINK_STYLE = '<w:rStyle w:val="Hyperlink"/>'
_TRACK_ATTRS = 'w:author="School Office" w:date="2024-05-01T09:30:00Z"'


def form_path(name: str) -> Path:
    """A blank form by its file name, with or without ``.docx``."""
    return FORMS_DIR / (name if name.endswith(".docx") else f"{name}.docx")


class FillStyle(StrEnum):
    VALUE_CELL = "value_cell"                  # typed into the answer cell, replacing any printed hint
    LABEL_CELL = "label_cell"                  # typed after the label ("Name of school: St Anne's")
    HINT_LEFT = "hint_left"                    # typed after the hint, which stays ("(Yes/No) Yes")
    INLINE_CONTENT_CONTROL = "inline_sdt"      # a plain-text content control inside the paragraph
    BLOCK_CONTENT_CONTROL = "cell_sdt"         # a rich-text content control around the whole cell (w:tr/w:sdt/w:tc)
    PARAGRAPH_CONTENT_CONTROL = "block_sdt"    # a content control around the cell's paragraph (w:tc/w:sdt/w:p)
    PLACEHOLDER_CONTROL = "placeholder_sdt"    # a content control never filled in: shows its placeholder
    TRACKED_INSERT = "tracked_insert"          # typed with Track Changes on, over a deleted wrong answer
    MULTI_PARAGRAPH = "multi_paragraph"        # Enter pressed between lines (or halfway through)
    SOFT_BREAKS = "soft_breaks"                # Shift+Enter between lines: one paragraph with w:br
    NESTED_TABLE = "nested_table"              # pasted from elsewhere: a 1x1 table inside the cell
    HYPERLINK = "hyperlink"                    # Word's autolink of a typed e-mail address (mailto:)


def _w(tag: str) -> str:
    return f"{{{W_NS}}}{tag}"


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _text(element: etree._Element) -> str:
    return "".join(t.text or "" for t in element.iter(_w("t")))


def _run(text: str, props: str = "") -> str:
    rpr = f"<w:rPr>{props}</w:rPr>" if props else ""
    return f'<w:r>{rpr}<w:t xml:space="preserve">{escape(text)}</w:t></w:r>'


class FormFiller:
    """A blank form being filled in. Sections are the plain heading paragraphs printed on the form; labels are the
    printed text of a table cell; answers go where a person would type them."""

    def __init__(self, blank_path: str | Path | bytes) -> None:
        # Bytes are a form built in code (``samples.variants``): next year's edits of a blank, never saved to disk.
        source = io.BytesIO(blank_path) if isinstance(blank_path, bytes) else str(blank_path)
        self._doc = docx.Document(source)
        self._body = self._doc.element.body
        self._ids = itertools.count(1000)
        self._printed: dict[etree._Element, str] = {}

    # ---- public API ----------------------------------------------------------------------------------------------

    def fill(self, section: str, label: str, value: str, how: FillStyle = FillStyle.VALUE_CELL,
             occurrence: int = 1, label_occurrence: int = 1) -> FormFiller:
        """Answer ``label`` under the ``occurrence``-th heading ``section`` (``label_occurrence`` picks between equal
        labels in one section, e.g. the second "E-mail" under "School details")."""
        label_cell = self._find_label(section, label, occurrence, label_occurrence)
        value_cell = label_cell.getnext()
        while value_cell is not None and value_cell.tag != _w("tc"):
            value_cell = value_cell.getnext()
        if how == FillStyle.LABEL_CELL:
            paragraph = label_cell.findall(_w("p"))[-1]
            label_text = _text(label_cell).rstrip()
            self._printed[label_cell] = label_text
            joiner = " " if label_text.endswith(":") else ": "
            paragraph.append(parse_xml(f"<w:r {NSDECLS}><w:t xml:space=\"preserve\">{escape(joiner + value)}</w:t></w:r>"))
            return self
        if value_cell is None:
            raise LookupError(f"no answer cell right of {label!r} under {section!r}")
        self._write(value_cell, value, how)
        return self

    def fill_below(self, section: str, value: str, how: FillStyle = FillStyle.VALUE_CELL,
                   occurrence: int = 1, prompt: str | None = None) -> FormFiller:
        """Answer a statement box: the empty row under the prompt. Without ``prompt``, the first empty row of the
        first table after the heading; with it, the first empty row under the row that starts with that prompt, in
        whichever of the section's tables holds it."""
        tables = self._section_tables(section, occurrence)
        if not tables:
            raise LookupError(f"no table under {section!r}")
        if prompt is not None:
            wanted = _norm(prompt)
            for table in tables:
                rows = table.findall(_w("tr"))
                start = next((i for i, row in enumerate(rows) if _norm(_text(row)).startswith(wanted)), None)
                if start is None:
                    continue
                for row in rows[start + 1:]:
                    if not _text(row).strip():
                        return self._fill_box(row, value, how)
            raise LookupError(f"no empty row under the prompt {prompt!r} in {section!r}")
        rows = tables[0].findall(_w("tr"))
        for index, row in enumerate(rows):
            if index > 0 and not _text(row).strip():
                return self._fill_box(row, value, how)
        raise LookupError(f"no empty row under the prompt in {section!r}")

    def _fill_box(self, row: etree._Element, value: str, how: FillStyle) -> FormFiller:
        cell = row.find(_w("tc"))
        if how == FillStyle.LABEL_CELL:
            raise ValueError("a statement box has no label cell to type after")
        self._write(cell, value, how)
        return self

    def to_docx(self) -> bytes:
        out = io.BytesIO()
        self._doc.save(out)
        return out.getvalue()

    # ---- finding things ------------------------------------------------------------------------------------------

    def _section_tables(self, section: str, occurrence: int) -> list[etree._Element]:
        # The reader drops a heading's trailing colon when it compares headings; so does the filler.
        wanted = _norm(section).rstrip(":").rstrip()
        seen = 0
        tables: list[etree._Element] = []
        inside = False
        for element in self._body.iterchildren(_w("p"), _w("tbl")):
            if element.tag == _w("p"):
                text = _norm(_text(element))
                if inside and text and _is_heading(element):
                    break
                if text.rstrip(":").rstrip() == wanted:
                    seen += 1
                    inside = seen == occurrence
            elif inside:
                tables.append(element)
        if seen < occurrence:
            raise LookupError(f"heading {section!r} (occurrence {occurrence}) is not on this form")
        return tables

    def _find_label(self, section: str, label: str, occurrence: int, label_occurrence: int) -> etree._Element:
        wanted = _norm(label)
        found = 0
        for table in self._section_tables(section, occurrence):
            for cell in table.iter(_w("tc")):
                # A label cell already answered in LABEL_CELL style still counts under its printed text.
                if _norm(self._printed.get(cell, _text(cell))) == wanted:
                    found += 1
                    if found == label_occurrence:
                        return cell
        raise LookupError(f"label {label!r} is not under {section!r}")

    # ---- writing answers -----------------------------------------------------------------------------------------

    def _write(self, cell: etree._Element, value: str, how: FillStyle) -> None:
        if how == FillStyle.HINT_LEFT:
            paragraphs = cell.findall(_w("p"))
            paragraphs[-1].append(parse_xml(f"<w:r {NSDECLS}><w:t xml:space=\"preserve\">{escape(' ' + value)}</w:t></w:r>"))
            return
        if how == FillStyle.BLOCK_CONTENT_CONTROL:
            self._clear(cell)
            cell.append(parse_xml(f"<w:p {NSDECLS}>{_run(value)}</w:p>"))
            wrapper = parse_xml(
                f"<w:sdt {NSDECLS}><w:sdtPr><w:id w:val=\"{next(self._ids)}\"/></w:sdtPr>"
                f"<w:sdtContent/></w:sdt>"
            )
            cell.addprevious(wrapper)
            wrapper.find(_w("sdtContent")).append(cell)
            return
        self._clear(cell)
        for xml in self._cell_content(value, how):
            cell.append(parse_xml(xml))

    def _cell_content(self, value: str, how: FillStyle) -> list[str]:
        sdt_id = next(self._ids)
        if how == FillStyle.VALUE_CELL:
            return [f"<w:p {NSDECLS}>{_run(value)}</w:p>"]
        if how == FillStyle.INLINE_CONTENT_CONTROL:
            return [
                f"<w:p {NSDECLS}><w:sdt><w:sdtPr><w:id w:val=\"{sdt_id}\"/><w:text/></w:sdtPr><w:sdtEndPr/>"
                f"<w:sdtContent>{_run(value)}</w:sdtContent></w:sdt></w:p>"
            ]
        if how == FillStyle.PARAGRAPH_CONTENT_CONTROL:
            return [
                f"<w:sdt {NSDECLS}><w:sdtPr><w:id w:val=\"{sdt_id}\"/></w:sdtPr><w:sdtEndPr/>"
                f"<w:sdtContent><w:p>{_run(value)}</w:p></w:sdtContent></w:sdt>"
            ]
        if how == FillStyle.PLACEHOLDER_CONTROL:
            # The value is deliberately lost: the secretary never typed into the control.
            return [
                f"<w:p {NSDECLS}><w:sdt><w:sdtPr><w:id w:val=\"{sdt_id}\"/>"
                "<w:placeholder><w:docPart w:val=\"DefaultPlaceholder_-1854013440\"/></w:placeholder>"
                "<w:showingPlcHdr/><w:text/></w:sdtPr><w:sdtEndPr/><w:sdtContent>"
                f"{_run(PLACEHOLDER_TEXT, _PLACEHOLDER_STYLE)}</w:sdtContent></w:sdt></w:p>"
            ]
        if how == FillStyle.TRACKED_INSERT:
            return [
                f"<w:p {NSDECLS}><w:del w:id=\"{sdt_id}\" {_TRACK_ATTRS}><w:r><w:delText xml:space=\"preserve\">"
                f"{escape(DELETED_TEXT)}</w:delText></w:r></w:del>"
                f"<w:ins w:id=\"{next(self._ids)}\" {_TRACK_ATTRS}>{_run(value)}</w:ins></w:p>"
            ]
        if how == FillStyle.MULTI_PARAGRAPH:
            return [f"<w:p {NSDECLS}>{_run(part)}</w:p>" for part in _split(value)]
        if how == FillStyle.SOFT_BREAKS:
            runs = "<w:r><w:br/></w:r>".join(_run(part) for part in _split(value))
            return [f"<w:p {NSDECLS}>{runs}</w:p>"]
        if how == FillStyle.NESTED_TABLE:
            # Word insists a cell ends with a paragraph, so a nested table is always followed by an empty one.
            return [
                f"<w:tbl {NSDECLS}><w:tblPr><w:tblStyle w:val=\"TableGrid\"/><w:tblW w:w=\"0\" w:type=\"auto\"/>"
                "<w:tblLook w:val=\"04A0\" w:firstRow=\"1\" w:lastRow=\"0\" w:firstColumn=\"1\" w:lastColumn=\"0\" "
                "w:noHBand=\"0\" w:noVBand=\"1\"/></w:tblPr><w:tblGrid><w:gridCol w:w=\"1900\"/></w:tblGrid>"
                "<w:tr><w:tc><w:tcPr><w:tcW w:w=\"1900\" w:type=\"dxa\"/></w:tcPr>"
                f"<w:p>{_run(value)}</w:p></w:tc></w:tr></w:tbl>",
                f"<w:p {NSDECLS}/>",
            ]
        if how == FillStyle.HYPERLINK:
            address = value.removeprefix("mailto:")
            rel_id = self._doc.part.relate_to(f"mailto:{address}", RT.HYPERLINK, is_external=True)
            return [
                f"<w:p {NSDECLS}><w:hyperlink r:id=\"{rel_id}\" w:history=\"1\">"
                f"{_run(value, _HYPERLINK_STYLE)}</w:hyperlink></w:p>"
            ]
        raise ValueError(f"{how} is not a way of writing into a cell")

    @staticmethod
    def _clear(cell: etree._Element) -> None:
        for child in list(cell):
            if child.tag != _w("tcPr"):
                cell.remove(child)


def _is_heading(paragraph: etree._Element) -> bool:
    """The blank forms print headings as paragraphs whose every run is bold."""
    runs = [r for r in paragraph.iter(_w("r")) if (r.findtext(_w("t")) or "").strip()]
    return bool(runs) and all(r.find(f"{_w('rPr')}/{_w('b')}") is not None for r in runs)


def _split(value: str) -> list[str]:
    if "\n" in value:
        return [part for part in value.split("\n") if part.strip()]
    words = value.split()
    if len(words) < 2:
        return [value]
    half = len(words) // 2
    return [" ".join(words[:half]), " ".join(words[half:])]


# ---- small documents for reader tests ----------------------------------------------------------------------------

def minimal_docx(body_xml: str) -> bytes:
    """A real .docx (python-docx's own template) whose body is ``body_xml`` (w:, r:, mc:, wps: prefixes usable)."""
    document = docx.Document()
    body = document.element.body
    for child in list(body):
        if child.tag != _w("sectPr"):
            body.remove(child)
    wrapper = parse_xml(
        f"<w:body {NSDECLS} xmlns:mc=\"http://schemas.openxmlformats.org/markup-compatibility/2006\" "
        "xmlns:wps=\"http://schemas.microsoft.com/office/word/2010/wordprocessingShape\" "
        "xmlns:wp=\"http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing\" "
        "xmlns:a=\"http://schemas.openxmlformats.org/drawingml/2006/main\" "
        "xmlns:v=\"urn:schemas-microsoft-com:vml\">"
        f"{body_xml}</w:body>"
    )
    sect = body.find(_w("sectPr"))
    for child in list(wrapper):
        if sect is not None:
            sect.addprevious(child)
        else:
            body.append(child)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# ---- the same form in another font ------------------------------------------------------------------------------

_A_NS = "http://schemas.openxmlformats.org/drawingml/2006/main"
# Bullets and check boxes are drawn from these fonts' own code points: in another font they would be other glyphs.
_SYMBOL_FONTS = frozenset({"Symbol", "Wingdings", "Wingdings 2", "Wingdings 3", "Webdings", "OpenSymbol", "MS Gothic"})
_TEXT_PARTS = re.compile(r"word/(document|styles|stylesWithEffects|header\d*|footer\d*|footnotes|endnotes)\.xml")


def with_font(docx_bytes: bytes, font: str) -> bytes:
    """The same document with every run in ``font``: each w:rFonts of the text parts names it outright (theme
    references removed, since they win over named fonts) and the theme's major and minor Latin fonts are it too, so
    whatever a style or run asked for, Word or LibreOffice really lays the form out in ``font``."""
    replace: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(docx_bytes)) as archive:
        for name in archive.namelist():
            if _TEXT_PARTS.fullmatch(name):
                root = etree.fromstring(archive.read(name))
                for fonts in root.iter(_w("rFonts")):
                    if fonts.get(_w("ascii")) in _SYMBOL_FONTS:
                        continue
                    fonts.attrib.clear()
                    for attribute in ("ascii", "hAnsi", "cs", "eastAsia"):
                        fonts.set(_w(attribute), font)
                replace[name] = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
            elif name.startswith("word/theme/") and name.endswith(".xml"):
                root = etree.fromstring(archive.read(name))
                for latin in root.iter(f"{{{_A_NS}}}latin"):
                    latin.set("typeface", font)
                replace[name] = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
    return _rezip(docx_bytes, replace=replace)


# ---- Strict Open XML --------------------------------------------------------------------------------------------

# Transitional namespace -> ISO 29500 Strict namespace, as Word's "Strict Open XML Document" writes them. Prefix
# matches, so the relationship types (the relationships namespace followed by "/officeDocument", "/styles", ...)
# move with it; the package parts (content types, package relationships) are the same in both.
_STRICT_NAMESPACES = {
    f"{R_NS}/extended-properties": "http://purl.oclc.org/ooxml/officeDocument/relationships/extendedProperties",
    W_NS: "http://purl.oclc.org/ooxml/wordprocessingml/main",
    R_NS: "http://purl.oclc.org/ooxml/officeDocument/relationships",
    "http://schemas.openxmlformats.org/drawingml/2006/main": "http://purl.oclc.org/ooxml/drawingml/main",
    "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing":
        "http://purl.oclc.org/ooxml/drawingml/wordprocessingDrawing",
    "http://schemas.openxmlformats.org/drawingml/2006/picture": "http://purl.oclc.org/ooxml/drawingml/picture",
    "http://schemas.openxmlformats.org/officeDocument/2006/math": "http://purl.oclc.org/ooxml/officeDocument/math",
    "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties":
        "http://purl.oclc.org/ooxml/officeDocument/extendedProperties",
}


def strict_docx(docx_bytes: bytes) -> bytes:
    """The same document saved as Word's "Strict Open XML Document": every part's namespaces (and relationship
    types) moved to ISO's, and the main part marked ``w:conformance="strict"``."""
    replace: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(docx_bytes)) as archive:
        for name in archive.namelist():
            if not name.endswith((".xml", ".rels")) or name == "[Content_Types].xml":
                continue
            data = archive.read(name)
            for transitional, strict in _STRICT_NAMESPACES.items():
                data = data.replace(transitional.encode(), strict.encode())
            if name == "word/document.xml":
                data = re.sub(rb"<w:document\b", b'<w:document w:conformance="strict"', data, count=1)
            replace[name] = data
    return _rezip(docx_bytes, replace=replace)


# ---- hostile files -----------------------------------------------------------------------------------------------

def _rezip(source: bytes, extra: dict[str, bytes] | None = None, replace: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = (replace or {}).get(info.filename, src.read(info.filename))
            dst.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data, compresslevel=9)
    return out.getvalue()


def zip_bomb_docx(base: bytes, inflated_bytes: int = 80 * 1024 * 1024) -> bytes:
    """A real form carrying a member of zeros whose declared size is over the inflated-size cap."""
    return _rezip(base, extra={"word/media/image1.bin": bytes(inflated_bytes)})


def ratio_bomb_docx(base: bytes, inflated_bytes: int = 8 * 1024 * 1024) -> bytes:
    """Under the total cap, but one member inflates about a thousand times."""
    return _rezip(base, extra={"word/media/image1.bin": bytes(inflated_bytes)})


def many_members_docx(base: bytes, members: int = 2500) -> bytes:
    return _rezip(base, extra={f"customXml/extra{i}.xml": b"<a/>" for i in range(members)})


def entity_bomb_docx(base: bytes) -> bytes:
    """The form with a "billion laughs" DTD prepended to its main document part."""
    with zipfile.ZipFile(io.BytesIO(base)) as src:
        xml = src.read("word/document.xml")
    xml = re.sub(rb"^<\?xml[^>]*\?>\s*", b"", xml)
    entities = "".join(f'<!ENTITY l{i} "{"&l%d;" % (i - 1) * 10}">' for i in range(1, 10))
    dtd = f'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY l0 "lol">{entities}]>'.encode()
    xml = xml.replace(b"<w:body>", b"<w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p>", 1)
    return _rezip(base, replace={"word/document.xml": dtd + xml})


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first part of a file, as left by a mail client that gave up halfway."""
    return data[: max(1, int(len(data) * keep))]


def legacy_doc() -> bytes:
    """The start of a Word 97-2003 file: an OLE2 header and a directory naming the WordDocument stream."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16) + struct.pack("<HHH", 0x3E, 3, 0xFFFE) + bytes(486)
    entry = "WordDocument".encode("utf-16-le").ljust(64, b"\0") + struct.pack("<H", 26) + bytes(62)
    root = "Root Entry".encode("utf-16-le").ljust(64, b"\0") + struct.pack("<H", 22) + bytes(62)
    return header + root + entry + bytes(512 - 256)

"""The .docx form reader: every way a secretary fills a form (built with the form filler, never hand-edited
binaries), the WordprocessingML structures Word writes, and every hostile package we refuse."""
from __future__ import annotations

import io
import time
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.docx_form import read_docx
from parsers.errors import UnreadableFile, UnsafeFile
from parsers.sniff import FileKind, read_form, sniff
from parsers.types import Cell, DocumentKind, FormDocument, Limits, Paragraph, Table
from rules.definitions import load_registry
from rules.mapping import map_fields
from samples.applications import DOCX_TYPE, FORM_FILES, complete_answers, fill_form
from samples.forms import (
    DELETED_TEXT,
    FillStyle,
    FormFiller,
    entity_bomb_docx,
    form_path,
    many_members_docx,
    minimal_docx,
    ratio_bomb_docx,
    strict_docx,
    truncated,
    zip_bomb_docx,
)

LIMITS = Limits()

# (form, section, label, printed hint in the answer cell, label_occurrence)
FIELDS = {
    "secondary-tfm-work-group-application-2024-25": [
        ("School details", "Name of school", "", 1),
        ("School details", "HoD Teacher Ref. * Numbber:", "*", 1),
        ("Teacher 2", "Email", "", 1),
        ("Engagement with a Secondary Mastery Specialist",
         "Has your school worked with a Maths Hub Mastery Specialist?", "(Yes/No)", 1),
        ("School details", "Email", "", 2),
    ],
    "primary-mastery-pilot-trg-eoi-2019": [
        ("School details", "Name of Head Teacher", "", 1),
        ("Teacher 1", "E-mail", "", 1),
        ("Teacher 2", "Year Group", "", 1),
    ],
    "primary-tfm-work-group-application-2020-21": [
        ("Details of lead teacher 1", "NCETM Username",
         "(This is not your password, just the name that you registered with on the NCETM)", 1),
        ("Maths Hub", "Which Maths Hub are you applying to?", "", 1),
    ],
}
CASES = [(form, *field) for form, fields in FIELDS.items() for field in fields]
VALUE = "Ms Jo Example-Smith"
MULTILINE = "12 High Street\nDudley\nDY1 1AA"


def _read(filler: FormFiller) -> FormDocument:
    return read_docx(filler.to_docx(), LIMITS)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _locate(doc: FormDocument, section: str, label: str, label_occurrence: int = 1,
            occurrence: int = 1) -> tuple[int, tuple[Cell, ...], int]:
    """(block index of the table, the row, index of the label cell): the label cell whose text starts with the label
    under the heading, the way the rules layer looks it up."""
    seen = 0
    found = 0
    inside = False
    for index, block in enumerate(doc.blocks):
        if isinstance(block, Paragraph):
            if _norm(block.text) == section:
                seen += 1
                inside = seen == occurrence
            continue
        if not inside:
            continue
        for row in block.rows:
            for position, cell in enumerate(row):
                if _norm(cell.text).startswith(label):
                    found += 1
                    if found == label_occurrence:
                        return index, row, position
    raise AssertionError(f"{label!r} not found under {section!r}")


def _answer(doc: FormDocument, section: str, label: str, label_occurrence: int = 1) -> Cell:
    _, row, position = _locate(doc, section, label, label_occurrence)
    return row[position + 1]


# ---- fill styles on real forms -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("form", "section", "label", "hint", "nth"), CASES)
@pytest.mark.parametrize("how", list(FillStyle))
def test_every_fill_style_is_read(form: str, section: str, label: str, hint: str, nth: int, how: FillStyle) -> None:
    value = MULTILINE if how in (FillStyle.MULTI_PARAGRAPH, FillStyle.SOFT_BREAKS) else VALUE
    filler = FormFiller(form_path(form)).fill(section, label, value, how, label_occurrence=nth)
    doc = _read(filler)
    assert doc.kind == DocumentKind.DOCX
    cell = _answer(doc, section, label, nth)
    if how == FillStyle.LABEL_CELL:
        _, row, position = _locate(doc, section, label, nth)
        assert _norm(row[position].text) == f"{label}{' ' if label.endswith(':') else ': '}{value}"
        assert _norm(cell.text) == hint
    elif how == FillStyle.HINT_LEFT:
        assert _norm(cell.text) == _norm(f"{hint} {value}")
    elif how == FillStyle.PLACEHOLDER_CONTROL:
        assert cell.lines == ()
        assert "Click or tap" not in doc.all_text()
    elif how in (FillStyle.MULTI_PARAGRAPH, FillStyle.SOFT_BREAKS):
        assert cell.lines == ("12 High Street", "Dudley", "DY1 1AA")
    elif how == FillStyle.NESTED_TABLE:
        # The cell shows what was pasted into it, and the nested table also follows as its own block.
        index, _, _ = _locate(doc, section, label, nth)
        assert cell.lines == (value,)
        assert doc.blocks[index + 1] == Table(((Cell((value,)),),))
    else:
        assert cell.lines == (value,)
    if how == FillStyle.TRACKED_INSERT:
        assert DELETED_TEXT not in doc.all_text()


@pytest.mark.parametrize("how", [FillStyle.VALUE_CELL, FillStyle.MULTI_PARAGRAPH, FillStyle.TRACKED_INSERT,
                                 FillStyle.BLOCK_CONTENT_CONTROL, FillStyle.PARAGRAPH_CONTENT_CONTROL])
def test_statement_below_prompt_and_repeated_heading(how: FillStyle) -> None:
    form = form_path("primary-mastery-pilot-trg-eoi-2019")
    first = "I want to deepen my understanding of mastery."
    second = "Our school is keen to develop reasoning in KS1."
    doc = _read(
        FormFiller(form)
        .fill_below("Teacher statement", first, how, occurrence=1)
        .fill_below("Teacher statement", second, how, occurrence=2)
    )
    statements = [b for i, b in enumerate(doc.blocks)
                  if isinstance(b, Table) and isinstance(doc.blocks[i - 1], Paragraph)
                  and doc.blocks[i - 1].text == "Teacher statement"]
    assert [_norm(t.rows[1][0].text) for t in statements] == [first, second]


def test_every_field_of_a_form_round_trips() -> None:
    filler = FormFiller(form_path("secondary-mastery-work-group-eoi-2016-17"))
    answers = {
        ("School details", "Name of school", 1): "Carmel College",
        ("School details", "E-mail", 1): "head@carmel.example.org",
        ("School details", "E-mail", 2): "hod@carmel.example.org",
        ("Teacher 1", "Name", 1): "A Teacher",
        ("Teacher 2", "Name", 1): "B Teacher",
    }
    for (section, label, nth), value in answers.items():
        filler.fill(section, label, value, label_occurrence=nth)
    doc = _read(filler)
    for (section, label, nth), value in answers.items():
        assert _answer(doc, section, label, nth).text == value


def test_blank_forms_read_quickly_with_headings_as_paragraphs() -> None:
    for path in sorted(form_path("x").parent.glob("*.docx")):
        data = path.read_bytes()
        started = time.perf_counter()
        doc = read_docx(data, LIMITS)
        assert time.perf_counter() - started < 0.5
        assert Paragraph("School details") in doc.blocks
        assert any(isinstance(b, Table) for b in doc.blocks)


# ---- WordprocessingML structures ---------------------------------------------------------------------------------

def _p(text: str) -> str:
    return f"<w:p><w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r></w:p>"


def _tc(inner: str, props: str = "") -> str:
    return f"<w:tc><w:tcPr>{props}</w:tcPr>{inner}</w:tc>"


def _tbl(rows: str) -> str:
    return f"<w:tbl><w:tblPr/><w:tblGrid><w:gridCol/><w:gridCol/></w:tblGrid>{rows}</w:tbl>"


def _blocks(body: str) -> tuple:
    return read_docx(minimal_docx(body), LIMITS).blocks


def test_merged_cells_appear_once() -> None:
    body = _tbl(
        "<w:tr>" + _tc(_p("Address"), "<w:vMerge w:val=\"restart\"/>") + _tc(_p("1 High St")) + "</w:tr>"
        "<w:tr>" + _tc("<w:p/>", "<w:vMerge/>") + _tc(_p("Town")) + "</w:tr>"
        "<w:tr>" + _tc(_p("Wide"), "<w:gridSpan w:val=\"2\"/>") + "</w:tr>"
    )
    (table,) = _blocks(body)
    assert table.rows == (
        (Cell(("Address",)), Cell(("1 High St",))),
        (Cell(("Town",)),),
        (Cell(("Wide",)),),
    )


def test_nested_tables_follow_their_container_in_order() -> None:
    inner2 = _tbl("<w:tr>" + _tc(_p("deepest")) + "</w:tr>")
    inner1 = _tbl("<w:tr>" + _tc(_p("inner") + inner2 + "<w:p/>") + "</w:tr>")
    body = _tbl("<w:tr>" + _tc(_p("Label")) + _tc(_p("own text") + inner1 + "<w:p/>") + "</w:tr>") + _p("after")
    blocks = _blocks(body)
    assert blocks == (
        Table(((Cell(("Label",)), Cell(("own text", "inner", "deepest"))),)),
        Table(((Cell(("inner", "deepest")),),)),
        Table(((Cell(("deepest",)),),)),
        Paragraph("after"),
    )


def test_content_controls_at_every_level() -> None:
    sdt = "<w:sdt><w:sdtPr><w:id w:val=\"7\"/></w:sdtPr><w:sdtContent>{}</w:sdtContent></w:sdt>"
    placeholder = ("<w:sdt><w:sdtPr><w:showingPlcHdr/></w:sdtPr><w:sdtContent>{}</w:sdtContent></w:sdt>")
    body = (
        sdt.format(_p("Block control heading"))
        + placeholder.format(_p("Click or tap here to enter text."))
        + _tbl(
            sdt.format("<w:tr>" + _tc(_p("Row control")) + _tc(_p("row value")) + "</w:tr>")
            + "<w:tr>" + _tc(_p("Cell control")) + sdt.format(_tc(_p("cell value"))) + "</w:tr>"
            + "<w:tr>" + _tc(_p("Inline")) + _tc("<w:p><w:r><w:t>before </w:t></w:r>"
                                                 + sdt.format("<w:r><w:t>inline value</w:t></w:r>") + "</w:p>")
            + "</w:tr>"
            + "<w:tr>" + _tc(_p("Placeholder")) + _tc("<w:p>" + placeholder.format(
                "<w:r><w:t>Click or tap here to enter text.</w:t></w:r>") + "</w:p>") + "</w:tr>"
        )
    )
    blocks = _blocks(body)
    assert blocks[0] == Paragraph("Block control heading")
    assert blocks[1].rows == (
        (Cell(("Row control",)), Cell(("row value",))),
        (Cell(("Cell control",)), Cell(("cell value",))),
        (Cell(("Inline",)), Cell(("before inline value",))),
        (Cell(("Placeholder",)), Cell(())),
    )
    assert len(blocks) == 2


def test_tracked_changes_moves_tabs_breaks_and_links() -> None:
    attrs = 'w:id="1" w:author="x" w:date="2024-01-01T00:00:00Z"'
    body = (
        f"<w:p><w:r><w:t>Keep</w:t></w:r><w:del {attrs}><w:r><w:delText>gone</w:delText></w:r></w:del>"
        f"<w:ins {attrs}><w:r><w:t> added</w:t></w:r></w:ins>"
        f"<w:moveFrom {attrs}><w:r><w:t>moved away</w:t></w:r></w:moveFrom>"
        f"<w:moveTo {attrs}><w:r><w:t> moved here</w:t></w:r></w:moveTo></w:p>"
        "<w:p><w:r><w:t>Name</w:t><w:tab/><w:t>Value</w:t><w:br/><w:t>next</w:t><w:cr/><w:t>last</w:t></w:r></w:p>"
        "<w:p><w:hyperlink r:id=\"rId99\"><w:r><w:t>head@school.example.org</w:t></w:r></w:hyperlink></w:p>"
        "<w:p><w:fldSimple w:instr=\" HYPERLINK &quot;mailto:a@b.org&quot; \"><w:r><w:t>a@b.org</w:t></w:r>"
        "</w:fldSimple></w:p>"
        "<w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText>HYPERLINK \"mailto:c@d.org\""
        "</w:instrText></w:r><w:r><w:fldChar w:fldCharType=\"separate\"/></w:r><w:r><w:t>c@d.org</w:t></w:r>"
        "<w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p>"
        + _tbl(f"<w:tr><w:trPr><w:del {attrs}/></w:trPr>" + _tc(_p("deleted row")) + "</w:tr>"
               + "<w:tr>" + _tc(_p("kept row")) + "</w:tr>")
    )
    blocks = _blocks(body)
    assert blocks[:5] == (
        Paragraph("Keep added moved here"),
        Paragraph("Name Value\nnext\nlast"),
        Paragraph("head@school.example.org"),
        Paragraph("a@b.org"),
        Paragraph("c@d.org"),
    )
    assert blocks[5] == Table(((Cell(("kept row",)),),))


def test_text_box_is_read_once_from_the_choice() -> None:
    box = "<w:txbxContent>" + _p("Box text") + "</w:txbxContent>"
    body = (
        "<w:p><w:r><w:t>Anchor</w:t></w:r><w:r><mc:AlternateContent>"
        "<mc:Choice Requires=\"wps\"><w:drawing><wp:anchor><a:graphic><a:graphicData><wps:wsp><wps:txbx>"
        + box + "</wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice>"
        "<mc:Fallback><w:pict><v:shape><v:textbox>" + box + "</v:textbox></v:shape></w:pict></mc:Fallback>"
        "</mc:AlternateContent></w:r></w:p>"
    )
    (paragraph,) = _blocks(body)
    assert paragraph == Paragraph("Anchor\nBox text")


def test_several_paragraphs_in_a_cell_are_lines_and_blank_ones_dropped() -> None:
    body = _tbl("<w:tr>" + _tc(_p("one") + "<w:p/>" + _p("  two  ")) + "</w:tr>")
    (table,) = _blocks(body)
    assert table.rows[0][0].lines == ("one", "two")


# ---- Strict Open XML ---------------------------------------------------------------------------------------------

STRICT_W = b"http://purl.oclc.org/ooxml/wordprocessingml/main"


def _part(docx_bytes: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(docx_bytes)) as archive:
        return archive.read(name)


@pytest.mark.parametrize("programme_id", list(FORM_FILES))
def test_strict_open_xml_form_reads_as_the_transitional_one(programme_id: str) -> None:
    """Word's "Strict Open XML Document" is the same WordprocessingML under ISO's namespaces: sniffed as a Word
    form by its bytes alone, read to the same blocks, and so to the same answers."""
    transitional = fill_form(programme_id, complete_answers(programme_id))
    strict = strict_docx(transitional)
    assert STRICT_W in _part(strict, "word/document.xml")
    assert b"schemas.openxmlformats.org/wordprocessingml" not in _part(strict, "word/document.xml")
    assert b"purl.oclc.org/ooxml/officeDocument/relationships/officeDocument" in _part(strict, "_rels/.rels")
    assert sniff("", "", strict) is FileKind.DOCX
    assert sniff("Application form.docx", DOCX_TYPE, strict) is FileKind.DOCX
    doc = read_form(FileKind.DOCX, strict, LIMITS)
    assert doc == read_docx(transitional, LIMITS)
    definition = load_registry().get(programme_id)
    answers = map_fields(doc, definition)
    assert answers == map_fields(read_docx(transitional, LIMITS), definition)
    assert all(answers[field_id] for field_id in complete_answers(programme_id))


@pytest.mark.parametrize("how", list(FillStyle))
def test_strict_open_xml_in_every_fill_style(how: FillStyle) -> None:
    # Merged cells, tracked changes, content controls and hyperlinks carry namespaced attributes (w:val, w:id).
    form, section, label, _, nth = CASES[0]
    value = MULTILINE if how in (FillStyle.MULTI_PARAGRAPH, FillStyle.SOFT_BREAKS) else VALUE
    transitional = FormFiller(form_path(form)).fill(section, label, value, how, label_occurrence=nth).to_docx()
    assert read_docx(strict_docx(transitional), LIMITS) == read_docx(transitional, LIMITS)


def test_strict_open_xml_structures() -> None:
    body = _tbl(
        "<w:tr>" + _tc(_p("Address"), "<w:vMerge w:val=\"restart\"/>") + _tc(_p("1 High St")) + "</w:tr>"
        "<w:tr>" + _tc("<w:p/>", "<w:vMerge/>") + _tc(_p("Town")) + "</w:tr>"
        "<w:tr><w:trPr><w:del w:id=\"1\" w:author=\"x\"/></w:trPr>" + _tc(_p("Deleted row")) + "</w:tr>"
    )
    transitional = minimal_docx(body)
    (table,) = read_docx(strict_docx(transitional), LIMITS).blocks
    assert table.rows == ((Cell(("Address",)), Cell(("1 High St",))), (Cell(("Town",)),))


# ---- hostile and broken packages ---------------------------------------------------------------------------------

BLANK = form_path("primary-tfm-work-group-application-2020-21").read_bytes()


def _plain(reason: str) -> bool:
    return bool(reason) and not any(word in reason for word in ("Error", "Traceback", "zip", "XML", "None"))


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: zip_bomb_docx(BLANK), UnsafeFile),
        (lambda: ratio_bomb_docx(BLANK), UnsafeFile),
        (lambda: many_members_docx(BLANK), UnsafeFile),
        (lambda: entity_bomb_docx(BLANK), UnreadableFile),
        (lambda: truncated(BLANK), UnreadableFile),
        (lambda: truncated(BLANK, 0.95), UnreadableFile),
        (lambda: b"", UnreadableFile),
        (lambda: b"This is not a zip at all", UnreadableFile),
    ],
    ids=["zip-bomb", "ratio-bomb", "many-members", "entity-bomb", "truncated", "truncated-tail", "empty", "text"],
)
def test_hostile_and_broken_files_are_refused_plainly(make, error: type[Exception]) -> None:
    data = make()
    started = time.perf_counter()
    with pytest.raises(error) as caught:
        read_docx(data, LIMITS)
    assert time.perf_counter() - started < 2
    assert _plain(caught.value.reason)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_zip_without_a_document_part_or_with_bad_xml_is_unreadable() -> None:
    with pytest.raises(UnreadableFile):
        read_docx(_zip({"xl/workbook.xml": b"<workbook/>"}), LIMITS)
    with pytest.raises(UnreadableFile):
        read_docx(_zip({"word/document.xml": b"<w:document><w:body><w:p>"}), LIMITS)
    with pytest.raises(UnreadableFile):
        read_docx(_zip({"word/document.xml": b"<other/>"}), LIMITS)


def test_limits_are_the_callers() -> None:
    with pytest.raises(UnsafeFile):
        read_docx(BLANK, Limits(docx_inflated_bytes=100_000))
    with pytest.raises(UnsafeFile):
        read_docx(BLANK, Limits(docx_members=5))
    assert read_docx(BLANK, Limits(docx_ratio=40)).blocks  # the real form's biggest ratio is about 32


def test_lying_zip_header_is_caught_while_reading() -> None:
    # Declared sizes small, real stream big: the member read itself must stop at the cap.
    payload = b"<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>" + (
        b"<w:p/>" * 50_000) + b"</w:body></w:document>"
    data = bytearray(_zip({"word/document.xml": payload}))
    for marker, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = data.find(marker)
        data[start + offset:start + offset + 4] = (100).to_bytes(4, "little")
    with pytest.raises(UnreadableFile):
        read_docx(bytes(data), LIMITS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_bytes_never_escape_as_other_errors(data: st.DataObject) -> None:
    raw = bytearray(BLANK)
    for _ in range(data.draw(st.integers(1, 20))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        read_docx(bytes(raw), LIMITS)
    except UnreadableFile as exc:
        assert exc.reason

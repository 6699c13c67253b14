"""The PDF form reader: forms filled with the form filler and saved as PDF (LibreOffice standing in for Word's Save
as PDF) must give the same block shape as the .docx reader; scans, password-protected, cut-short, over-long and
too-slow PDFs are refused with a plain reason."""
from __future__ import annotations

import io
import statistics
import time

import pdfplumber
import pytest

from parsers.docx_form import read_docx
from parsers.errors import ScannedDocument, UnreadableFile, UnsafeFile
from parsers.pdf_form import read_pdf
from parsers.types import DocumentKind, FormDocument, Limits, Paragraph, Table
from rules.definitions import load_registry
from rules.mapping import map_fields
from rules.text import word_count
from samples.applications import FORM_FILES, SCHOOLS, complete_answers, fill_form
from samples.forms import FORMS_DIR, FillStyle, FormFiller, form_path, minimal_docx
from samples.pdf import (
    FormField,
    acroform_pdf,
    docx_to_pdf,
    encrypted_pdf,
    many_page_pdf,
    padded_pdf,
    pdf_font_names,
    scanned_pdf,
    spaceless_pdf,
    stream_bomb_pdf,
    text_pdf,
    truncated_pdf,
)

LIMITS = Limits()
BLANKS = sorted(FORMS_DIR.glob("*.docx"))


def _norm(text: str) -> str:
    return " ".join(text.split())


def _shape(doc: FormDocument) -> list[object]:
    """Blocks with whitespace normalised and a table split by a page break joined back, for comparing readers."""
    out: list[object] = []
    for block in doc.blocks:
        if isinstance(block, Paragraph):
            out.append(_norm(block.text))
            continue
        # A cell's text, not its lines joined with spaces: a PDF line may end inside a word the column was too
        # narrow for ("headteacher/sen" + "ior"), and the text is where the reader says so.
        rows = [tuple(_norm(cell.text) for cell in row) for row in block.rows]
        if out and isinstance(out[-1], list):
            out[-1].extend(rows)
        else:
            out.append(rows)
    return out


def _cell_right_of(doc: FormDocument, section: str, label: str, nth: int = 1) -> str:
    """Text of the cell right of ``label`` under ``section``, wrapped lines joined with spaces."""
    inside = False
    found = 0
    for block in doc.blocks:
        if isinstance(block, Paragraph):
            if _norm(block.text) == section:
                inside = True
            continue
        if inside:
            for row in block.rows:
                for index, cell in enumerate(row[:-1]):
                    if _norm(cell.text).startswith(label):
                        found += 1
                        if found == nth:
                            return _norm(" ".join(row[index + 1].lines))
    raise AssertionError(f"{label!r} not under {section!r}")


@pytest.mark.slow
@pytest.mark.parametrize("blank", BLANKS, ids=[p.stem for p in BLANKS])
def test_blank_form_pdf_has_the_docx_shape(blank) -> None:
    data = blank.read_bytes()
    pdf_doc = read_pdf(docx_to_pdf(data), LIMITS)
    assert pdf_doc.kind == DocumentKind.PDF
    assert pdf_doc.pages >= 2
    assert _shape(pdf_doc) == _shape(read_docx(data, LIMITS))


STYLE_CASES = [
    ("secondary-tfm-work-group-application-2024-25", "School details", "Name of school", ""),
    ("secondary-tfm-work-group-application-2024-25", "Engagement with a Secondary Mastery Specialist",
     "Has your school worked with a Maths Hub Mastery Specialist?", "(Yes/No)"),
    ("primary-mastery-readiness-declaration-2018", "Details of lead teacher 2", "Name", ""),
]


@pytest.mark.slow
@pytest.mark.parametrize(("form", "section", "label", "hint"), STYLE_CASES)
@pytest.mark.parametrize("how", list(FillStyle))
def test_every_fill_style_survives_save_as_pdf(form: str, section: str, label: str, hint: str,
                                               how: FillStyle) -> None:
    value = "Jo Example"
    docx_bytes = FormFiller(form_path(form)).fill(section, label, value, how).to_docx()
    doc = read_pdf(docx_to_pdf(docx_bytes), LIMITS)
    if how == FillStyle.LABEL_CELL:
        cells = [_norm(" ".join(c.lines)) for b in doc.blocks if isinstance(b, Table) for r in b.rows for c in r]
        assert f"{label}: {value}" in cells
        return
    answer = _cell_right_of(doc, section, label)
    if how == FillStyle.HINT_LEFT:
        assert answer == _norm(f"{hint} {value}")
    elif how == FillStyle.PLACEHOLDER_CONTROL:
        # The PDF shows the placeholder itself; the rules layer treats that printed hint as empty.
        assert answer in ("", "Click or tap here to enter text.")
    elif how == FillStyle.TRACKED_INSERT:
        # Save as PDF prints the markup, so the struck-out old answer is in the PDF too.
        assert value in answer
    elif how == FillStyle.NESTED_TABLE:
        # A nested table's ruling merges into the outer grid in a PDF: the value lands in the label's row.
        assert value in _norm(doc.all_text())
    else:
        assert answer == value


@pytest.mark.slow
def test_email_wrapped_over_three_lines_keeps_its_lines() -> None:
    address = "deputy.headteacher.mathematics.lead@stannescatholicprimary.cambs.sch.uk"
    docx_bytes = (
        FormFiller(form_path("primary-mastery-pilot-trg-eoi-2019"))
        .fill("School details", "E-mail", address)
        .to_docx()
    )
    doc = read_pdf(docx_to_pdf(docx_bytes), LIMITS)
    table = next(b for b in doc.blocks if isinstance(b, Table))
    cell = next(row[3] for row in table.rows if len(row) == 4 and row[2].text == "E-mail")
    assert len(cell.lines) >= 3
    assert "".join(cell.lines) == address


@pytest.mark.slow
def test_long_statement_runs_onto_another_page_in_reading_order() -> None:
    statement = " ".join(f"Sentence {n} about why our department wants to take part." for n in range(120))
    docx_bytes = (
        FormFiller(form_path("secondary-mastery-work-group-eoi-2016-17"))
        .fill("Teacher 1", "Name", "First Teacher")
        .fill_below("Head of department statement", statement)
        .to_docx()
    )
    doc = read_pdf(docx_to_pdf(docx_bytes), LIMITS)
    assert doc.pages >= 3
    text = _norm(doc.all_text())
    assert text.index("First Teacher") < text.index("Sentence 0 ") < text.index("Sentence 119 ")
    assert text.index("Sentence 119 ") < text.index("Confirmation of school commitment")


# ---- every programme in every font -------------------------------------------------------------------------------

# Word lays a form out in whatever fonts the school's machine has, so line and page breaks fall anywhere: inside a
# long label ("headteacher/sen|ior"), after a hyphen ("small-|step"), in the middle of a table row. Each font here
# breaks lines and pages differently (DejaVu Sans is wide, Carlito narrow, Liberation Serif another shape again).
FONTS = ["DejaVu Sans", "Liberation Sans", "Liberation Serif", "Carlito"]
REGISTRY = load_registry()


def _filled_by_label(programme_id: str, answers: dict[str, str]) -> bytes:
    """Every answer typed after its label. Filled last field first: once a label has text after it the filler no
    longer finds an equal label after it (see tests/test_check_pipeline.py)."""
    definition = REGISTRY.get(programme_id)
    filler = FormFiller(form_path(FORM_FILES[programme_id]))
    for f in reversed(definition.fields):
        value = answers.get(f.id)
        if not value:
            continue
        if f.prompt:
            filler.fill_below(f.section, value, occurrence=f.section_occurrence)
        else:
            filler.fill(f.section, f.label, value, how=FillStyle.LABEL_CELL, occurrence=f.section_occurrence,
                        label_occurrence=f.label_occurrence)
    return filler.to_docx()


def _font_case_docx(programme_id: str, fill: str) -> bytes:
    if fill == "value_cell":
        return fill_form(programme_id, complete_answers(programme_id))
    return _filled_by_label(programme_id, complete_answers(programme_id, SCHOOLS[1]))


def _mapped(doc: FormDocument, programme_id: str) -> dict[str, str | None]:
    """The programme's answers as the rules read them, white space collapsed (a PDF wraps what a .docx doesn't)."""
    return {k: (_norm(v) if v else None) for k, v in map_fields(doc, REGISTRY.get(programme_id)).answers.items()}


def wrong_values(docx_bytes: bytes, pdf_bytes: bytes, programme_id: str) -> dict[str, tuple[object, object]]:
    """Fields whose answer read from the PDF differs from the answer read from the .docx: {field: (docx, pdf)}."""
    from_docx = _mapped(read_docx(docx_bytes, LIMITS), programme_id)
    from_pdf = _mapped(read_pdf(pdf_bytes, LIMITS), programme_id)
    return {k: (v, from_pdf[k]) for k, v in from_docx.items() if from_pdf[k] != v}


@pytest.mark.slow
@pytest.mark.parametrize("fill", ["value_cell", "label_cell"])
@pytest.mark.parametrize("font", FONTS)
@pytest.mark.parametrize("programme_id", list(FORM_FILES))
def test_every_programme_in_every_font_reads_as_the_docx(programme_id: str, font: str, fill: str) -> None:
    docx_bytes = _font_case_docx(programme_id, fill)
    pdf_bytes = docx_to_pdf(docx_bytes, font=font)
    # LibreOffice silently falls back to another font when one is missing: make sure this one was really used.
    used = {name.split("-")[0] for name in pdf_font_names(pdf_bytes)} - {"OpenSymbol"}
    assert used == {font.replace(" ", "")}, used
    assert wrong_values(docx_bytes, pdf_bytes, programme_id) == {}
    definition = REGISTRY.get(programme_id)
    from_docx = map_fields(read_docx(docx_bytes, LIMITS), definition).answers
    from_pdf = map_fields(read_pdf(pdf_bytes, LIMITS), definition).answers
    for f in definition.fields:
        if f.prompt and from_docx[f.id]:
            assert word_count(from_pdf[f.id] or "") == word_count(from_docx[f.id]), f.id


# A 250-word statement with hyphenated words for line ends to fall on, long enough to run over a page break.
STATEMENT_250 = " ".join(
    ["Our department has adopted small-step lesson design and whole-class teaching, with self-explanation and "
     "well-structured practice in every lesson; teacher-led discussion follows each problem-solving task, and "
     "pupils' long-term understanding is checked through low-stakes quizzes."] * 6
    + ["Our mathematics leaders value working with other schools to deepen this work across Key Stage 3 and to "
       "share what we learn with our partner primary schools in the trust."]
    + ["We are keen to start in September, and both participating teachers have already agreed to share their "
       "lesson-study notes with the hub."]
)


@pytest.mark.slow
@pytest.mark.parametrize("font", FONTS)
def test_statement_word_count_is_the_docx_count_in_every_font(font: str) -> None:
    """The statement's word count decides the word-limit check: a line-end hyphen or a page break must not add
    words (it used to: "small- step" made a 250-word statement 256 words long)."""
    assert word_count(STATEMENT_250) == 250
    programme_id = "secondary-tfm-wg-2016"
    answers = {**complete_answers(programme_id), "hod.statement": STATEMENT_250}
    docx_bytes = fill_form(programme_id, answers)
    pdf_bytes = docx_to_pdf(docx_bytes, font=font)
    definition = REGISTRY.get(programme_id)
    from_pdf = map_fields(read_pdf(pdf_bytes, LIMITS), definition).answers["hod.statement"]
    assert word_count(from_pdf or "") == 250
    assert _norm(from_pdf or "") == STATEMENT_250
    assert wrong_values(docx_bytes, pdf_bytes, programme_id) == {}


def _narrow_table(rows: list[tuple[str, str]], cant_split: bool = False) -> bytes:
    """A ruled two-column table whose first column is under an inch wide: long words must be cut inside. With
    ``cant_split`` no row may break across pages (Word's "Allow row to break across pages" unticked)."""
    row_props = "<w:trPr><w:cantSplit/></w:trPr>" if cant_split else ""
    borders = "".join(f'<w:{side} w:val="single" w:sz="4" w:space="0" w:color="000000"/>'
                      for side in ("top", "left", "bottom", "right", "insideH", "insideV"))
    def paragraphs(text: str) -> str:  # a line break in the text is Enter pressed: a paragraph of its own
        return "".join(f"<w:p><w:r><w:t>{part}</w:t></w:r></w:p>" for part in text.split("\n"))

    width = "<w:tcPr><w:tcW w:w=\"1300\" w:type=\"dxa\"/></w:tcPr>"
    body = "".join(
        f"<w:tr>{row_props}<w:tc>{width}{paragraphs(label)}</w:tc><w:tc>{width}{paragraphs(value)}</w:tc></w:tr>"
        for label, value in rows
    )
    return minimal_docx(
        f"<w:tbl><w:tblPr><w:tblW w:w=\"2600\" w:type=\"dxa\"/><w:tblLayout w:type=\"fixed\"/>"
        f"<w:tblBorders>{borders}</w:tblBorders></w:tblPr><w:tblGrid><w:gridCol w:w=\"1300\"/>"
        f"<w:gridCol w:w=\"1300\"/></w:tblGrid>{body}</w:tbl>"
    )


NARROW_ROWS = [
    ("Name of headteacher/senior leader", "deputy.headteacher.mathematics@stannes.example.sch.uk"),
    ("Our small-step approach", "Mrs Helen Okonkwo-Smith"),
    ("Participating teachers and their year groups", "Year 5 and Year 6 and the headteacher"),
    ("Telephone", "01325 460 123 extension 24"),
    ("Subject leader", "Mathematics\ndepartment\nlead\nresponsibilities"),   # paragraphs, not one cut word
]


@pytest.mark.slow
@pytest.mark.parametrize("font", FONTS)
def test_words_cut_by_a_narrow_column_are_joined_and_other_words_are_not(font: str) -> None:
    docx_bytes = _narrow_table(NARROW_ROWS)
    (table,) = [b for b in read_pdf(docx_to_pdf(docx_bytes, font=font), LIMITS).blocks if isinstance(b, Table)]
    (expected,) = read_docx(docx_bytes, LIMITS).blocks
    assert [[_norm(c.text) for c in row] for row in table.rows] == [[_norm(c.text) for c in row]
                                                                     for row in expected.rows]
    # The column really was too narrow: every cell but the telephone number's label wrapped.
    assert all(len(cell.lines) > 1 for row in table.rows for cell in row if cell.text != "Telephone")
    assert table.rows[0][1].text == NARROW_ROWS[0][1]  # an address over several lines is one word


@pytest.mark.slow
@pytest.mark.parametrize("cant_split", [False, True], ids=["rows-may-break", "rows-kept-whole"])
def test_table_over_page_breaks_is_one_table_that_says_where_pages_turned(cant_split: bool) -> None:
    rows = [(f"Label {n}", f"Value {n}") for n in range(1, 61)]
    pdf_doc = read_pdf(docx_to_pdf(_narrow_table(rows, cant_split), font="Liberation Sans"), LIMITS)
    assert pdf_doc.pages >= 3
    (table,) = [b for b in pdf_doc.blocks if isinstance(b, Table)]
    assert [[c.text for c in row] for row in table.rows] == [list(row) for row in rows]
    if cant_split:
        # Whole rows went over: each page's first row is a row of its own, and the table says where it is.
        assert len(table.page_starts) == pdf_doc.pages - 1
    else:
        # LibreOffice cut a row at each break (its spacing went over, empty): joined, so no page start is left.
        assert table.page_starts == ()


# ---- forms filled in a PDF reader (AcroForm) ----------------------------------------------------------------------

def _rules(page: pdfplumber.page.Page) -> list[tuple[object, ...]]:
    return sorted((e["orientation"], round(e["x0"]), round(e["top"]), round(e["x1"]), round(e["bottom"]))
                  for e in page.edges)


def _pdf_filled_in_a_reader(programme_id: str, answers: dict[str, str], font: str) -> bytes:
    """The form saved as PDF with its answer cells empty, then filled in a PDF reader: each answer in a text field
    over its answer cell. The cells are found by saving the form once with a marker in each answer cell and once
    with blank space of about the same width there instead (the same layout, as the rules confirm, but no text)."""
    definition = REGISTRY.get(programme_id)
    markers = {f.id: f"ZQ{n:02d}" for n, f in enumerate(definition.fields) if answers.get(f.id)}
    marked = docx_to_pdf(fill_form(programme_id, markers), font=font)
    blank = docx_to_pdf(fill_form(programme_id, {k: "\u2003" * 3 for k in markers}), font=font)
    fields: list[FormField] = []
    with pdfplumber.open(io.BytesIO(marked)) as with_markers, pdfplumber.open(io.BytesIO(blank)) as without:
        assert [_rules(page) for page in with_markers.pages] == [_rules(page) for page in without.pages]
        for index, page in enumerate(with_markers.pages):
            cells = pdfplumber.table.TableFinder(page).cells
            for field_id, marker in markers.items():
                for hit in page.search(marker):
                    x, y = (hit["x0"] + hit["x1"]) / 2, (hit["top"] + hit["bottom"]) / 2
                    x0, top, x1, bottom = min((c for c in cells if c[0] <= x <= c[2] and c[1] <= y <= c[3]),
                                              key=lambda c: c[2] - c[0])
                    fields.append(FormField(index, (x0 + 1, top + 1, x1 - 1, bottom - 1), answers[field_id]))
    assert len(fields) == len(markers)
    return acroform_pdf(blank, fields)


@pytest.mark.slow
@pytest.mark.parametrize("programme_id", list(FORM_FILES))
def test_form_filled_in_a_pdf_reader_reads_its_fields(programme_id: str) -> None:
    answers = complete_answers(programme_id)
    pdf_bytes = _pdf_filled_in_a_reader(programme_id, answers, "Liberation Sans")
    with pdfplumber.open(io.BytesIO(pdf_bytes)) as pdf:
        assert answers["school.name"] not in "".join(page.extract_text() for page in pdf.pages)  # only in fields
    assert wrong_values(fill_form(programme_id, answers), pdf_bytes, programme_id) == {}


def test_form_field_values_go_where_the_fields_sit() -> None:
    base = text_pdf([["Name of school:"], ["Notes"]])
    filled = acroform_pdf(base, [
        FormField(0, (160, 40, 400, 58), "St Anne's"),                    # beside the printed label
        FormField(0, (72, 200, 400, 240), "First line\r\nSecond line"),  # on its own, lower down
        FormField(0, (72, 300, 400, 320), "Hidden value", hidden=True),
        FormField(0, (72, 400, 90, 418), "Yes", kind="Btn"),              # a tick box: no answer text
        FormField(0, (72, 500, 400, 520), "Option B", kind="Ch"),
    ])
    doc = read_pdf(filled, LIMITS)
    assert doc.blocks == (
        Paragraph("Name of school: St Anne's"), Paragraph("First line"), Paragraph("Second line"),
        Paragraph("Option B"), Paragraph("Notes"),
    )


# ---- what some PDF writers do ------------------------------------------------------------------------------------

def test_words_placed_without_space_characters_are_still_words() -> None:
    doc = read_pdf(spaceless_pdf(["Name of school Valley School"]), LIMITS)
    assert doc.blocks == (Paragraph("Name of school Valley School"),)
    small = read_pdf(spaceless_pdf(["Head of department statement"], size=6), LIMITS)
    assert small.blocks == (Paragraph("Head of department statement"),)


@pytest.mark.parametrize("padding", [bytes(4096), bytes(64 * 1024), b"\r\n" * 3000, b" " * 10_000 + b"\n"],
                         ids=["4k-zeros", "64k-zeros", "blank-lines", "spaces"])
def test_padding_after_the_end_marker_is_ignored(padding: bytes) -> None:
    whole = text_pdf([["School details", "Name of school St Anne's"]] * 2)
    assert read_pdf(padded_pdf(whole, padding), LIMITS) == read_pdf(whole, LIMITS)


def test_a_later_revision_cut_short_is_still_damaged() -> None:
    """An earlier %%EOF inside the file is no excuse: a filled-in form whose update was cut off is half-sent."""
    base = text_pdf([["Name of school:"]])
    filled = acroform_pdf(base, [FormField(0, (160, 40, 400, 58), "St Anne's")])
    assert read_pdf(filled, LIMITS).blocks == (Paragraph("Name of school: St Anne's"),)
    for cut in (len(base) + 40, (len(base) + len(filled)) // 2, len(filled) - 8):
        with pytest.raises(UnreadableFile) as caught:
            read_pdf(filled[:cut], LIMITS)
        assert "damaged or only partly sent" in caught.value.reason
    with pytest.raises(UnreadableFile):
        read_pdf(padded_pdf(filled[:len(filled) - 8], bytes(4096)), LIMITS)


# ---- refused PDFs ------------------------------------------------------------------------------------------------

def test_scan_is_refused_as_scanned() -> None:
    with pytest.raises(ScannedDocument) as caught:
        read_pdf(scanned_pdf(2), LIMITS)
    assert "scan or photo" in caught.value.reason
    assert "Word file or a PDF saved from Word" in caught.value.reason


@pytest.mark.slow
def test_password_protected_pdf_is_unreadable() -> None:
    data = encrypted_pdf(form_path("primary-tfm-work-group-application-2020-21").read_bytes())
    with pytest.raises(UnreadableFile) as caught:
        read_pdf(data, LIMITS)
    assert not isinstance(caught.value, (UnsafeFile, ScannedDocument))
    assert "password" in caught.value.reason


@pytest.mark.parametrize("keep", [0.2, 0.6, 0.97])
def test_truncated_pdf_is_unreadable(keep: float) -> None:
    whole = text_pdf([["School details", "Name of school St Anne's"]] * 3)
    assert read_pdf(whole, LIMITS).pages == 3
    with pytest.raises(UnreadableFile) as caught:
        read_pdf(truncated_pdf(whole, keep), LIMITS)
    assert "damaged or only partly sent" in caught.value.reason


@pytest.mark.parametrize("data", [b"", b"%PDF-1.7\n garbage %%EOF", b"hello", bytes(range(256)) * 10])
def test_corrupt_pdf_is_unreadable(data: bytes) -> None:
    with pytest.raises(UnreadableFile):
        read_pdf(data, LIMITS)


def test_too_many_pages_is_unsafe() -> None:
    with pytest.raises(UnsafeFile) as caught:
        read_pdf(many_page_pdf(LIMITS.pdf_pages + 1), LIMITS)
    assert str(LIMITS.pdf_pages) in caught.value.reason
    assert read_pdf(many_page_pdf(LIMITS.pdf_pages), LIMITS).pages == LIMITS.pdf_pages


def test_time_and_memory_caps_stop_the_child() -> None:
    data = many_page_pdf(25)
    with pytest.raises(UnsafeFile) as slow:
        read_pdf(data, Limits(pdf_seconds=0.001))
    assert "reasonable time" in slow.value.reason
    started = time.perf_counter()
    with pytest.raises(UnsafeFile):
        read_pdf(stream_bomb_pdf(), Limits(pdf_memory_bytes=64 * 1024 * 1024, pdf_seconds=10))
    assert time.perf_counter() - started < 10


def test_running_headers_and_footers_are_dropped_but_repeated_headings_are_not() -> None:
    pages = [["Teacher statement", "Why we want to take part"], ["Teacher statement", "Our reasons"]]
    doc = read_pdf(text_pdf(pages, header="Maths Hubs application 2024", footer="Page {page} of {pages}"), LIMITS)
    assert doc.blocks == (
        Paragraph("Teacher statement Why we want to take part"), Paragraph("Teacher statement Our reasons"),
    )
    single = read_pdf(text_pdf(pages[:1], header="Maths Hubs application 2024"), LIMITS)
    assert single.blocks[0] == Paragraph("Maths Hubs application 2024")  # one page: nothing repeats


def test_text_pdf_lines_are_paragraphs_in_order() -> None:
    doc = read_pdf(text_pdf([["First page heading"], ["Second page heading"]]), LIMITS)
    assert doc.blocks == (Paragraph("First page heading"), Paragraph("Second page heading"))
    assert doc.pages == 2


# ---- overhead against pdfplumber's own extraction ----------------------------------------------------------------

@pytest.mark.slow
def test_overhead_is_small_against_plain_pdfplumber() -> None:
    pdfs = [docx_to_pdf(p.read_bytes()) for p in BLANKS]

    def plain() -> None:
        for data in pdfs:
            with pdfplumber.open(io.BytesIO(data)) as pdf:
                for page in pdf.pages:
                    page.extract_text()

    def ours() -> None:
        for data in pdfs:
            read_pdf(data, LIMITS)

    ratios = []
    for _ in range(3):
        started = time.perf_counter()
        plain()
        middle = time.perf_counter()
        ours()
        ratios.append((time.perf_counter() - middle) / (middle - started))
    # The goal is 1.3x (measured about 1.1x); the bound here is loose so a busy CI box doesn't flake.
    assert statistics.median(ratios) < 1.8


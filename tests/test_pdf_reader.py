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
from samples.forms import FORMS_DIR, FillStyle, FormFiller, form_path
from samples.pdf import (
    docx_to_pdf, encrypted_pdf, many_page_pdf, padded_pdf, scanned_pdf, stream_bomb_pdf, text_pdf, truncated_pdf,
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
        rows = [tuple(_norm(" ".join(cell.lines)) for cell in row) for row in block.rows]
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


# ---- what some PDF writers do ------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", [bytes(4096), bytes(64 * 1024), b"\r\n" * 3000, b" " * 10_000 + b"\n"],
                         ids=["4k-zeros", "64k-zeros", "blank-lines", "spaces"])
def test_padding_after_the_end_marker_is_ignored(padding: bytes) -> None:
    whole = text_pdf([["School details", "Name of school St Anne's"]] * 2)
    assert read_pdf(padded_pdf(whole, padding), LIMITS) == read_pdf(whole, LIMITS)


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


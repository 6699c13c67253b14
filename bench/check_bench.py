"""Throughput of the check pipeline against the bare floor of the work it cannot avoid, measured in one run.

Builds N (default 200) realistic application e-mails with a .docx form and N/4 with a PDF form (the test builders;
PDF conversion is cached under tests/.cache), then times ``assess`` on them and the floor: for .docx, the standard
library's ``email.message_from_bytes``, walking to the attachment, opening the zip and parsing word/document.xml with
lxml, iterating every w:t; for PDF, the same e-mail parse plus ``pdfplumber.open`` and ``extract_text()`` and
``extract_tables()`` on every page. Prints msgs/s, ms/msg, the floor, the ratio (ours / floor time) against the goals
(docx within 3x, PDF within 1.3x) and the cold-start wall time of ``hubbot check one.eml`` (median of 5, goal under
1 s). Usage: ``python bench/check_bench.py [-n 200] [--repeat 3]``. Timings are for reading, never for pass/fail.
"""
from __future__ import annotations

import argparse
import email
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pdfplumber  # noqa: E402
from lxml import etree  # noqa: E402

from rules.pipeline import CheckSettings, assess  # noqa: E402
from samples.applications import (  # noqa: E402
    FORM_FILES,
    LONDON,
    application_email,
    complete_answers,
    fill_form,
)
from samples.forms import FillStyle  # noqa: E402
from samples.pdf import docx_to_pdf  # noqa: E402

W_T = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}t"
PDF_TYPE = "application/pdf"
STYLES = [FillStyle.VALUE_CELL, FillStyle.INLINE_CONTENT_CONTROL, FillStyle.TRACKED_INSERT,
          FillStyle.MULTI_PARAGRAPH, FillStyle.HYPERLINK, FillStyle.PARAGRAPH_CONTENT_CONTROL]
PATTERNS = ["all", "all", "all", "one_missing", "sender_is_signatory", "in_to", "upper"]
SCHOOLS = ["Valley School", "St Anne's CE Primary", "Hillside Academy", "Oak Park High School", "Riverside Primary",
           "Holy Trinity Catholic School", "Greenfield Community College", "Marston Green Junior"]


def _answers(programme_id: str, i: int) -> dict[str, str]:
    answers = complete_answers(programme_id)
    answers["school.name"] = f"{SCHOOLS[i % len(SCHOOLS)]} {i}"
    answers["school.urn"] = f"{100000 + i * 37 % 899999:06d}"
    if i % 5 == 0:
        answers.pop("school.telephone", None)   # some are incomplete
    return answers


def build_docx_mail(n: int) -> list[bytes]:
    programmes = list(FORM_FILES)
    start = datetime(2024, 5, 1, 9, 0, tzinfo=LONDON)
    out = []
    for i in range(n):
        pid = programmes[i % len(programmes)]
        answers = _answers(pid, i)
        docx = fill_form(pid, answers, style=STYLES[i % len(STYLES)])
        out.append(application_email(pid, docx, answers=answers, pattern=PATTERNS[i % len(PATTERNS)],
                                     received=start + timedelta(minutes=17 * i),
                                     subject=f"Application from {answers['school.name']}"))
    return out


def build_pdf_mail(n: int) -> list[bytes]:
    # Ten distinct PDFs (five forms, two answer sets), each converted once and cached on disk; the e-mails differ.
    programmes = list(FORM_FILES)
    pdfs = {}
    for pid in programmes:
        for variant in (0, 1):
            answers = _answers(pid, variant + 1)
            pdfs[(pid, variant)] = (answers, docx_to_pdf(fill_form(pid, answers)))
    start = datetime(2024, 5, 1, 9, 0, tzinfo=LONDON)
    out = []
    for i in range(n):
        pid = programmes[i % len(programmes)]
        answers, pdf = pdfs[(pid, (i // len(programmes)) % 2)]
        out.append(application_email(pid, pdf, answers=answers, filename=f"Application {i}.pdf",
                                     content_type=PDF_TYPE, pattern=PATTERNS[i % len(PATTERNS)],
                                     received=start + timedelta(minutes=23 * i)))
    return out


def _attachment(raw: bytes, suffix: str) -> bytes:
    message = email.message_from_bytes(raw)
    for part in message.walk():
        name = part.get_filename() or ""
        if name.lower().endswith(suffix):
            return part.get_payload(decode=True)
    raise LookupError(suffix)


def floor_docx(raw: bytes) -> int:
    data = _attachment(raw, ".docx")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        root = etree.fromstring(archive.read("word/document.xml"))
    return sum(len(t.text or "") for t in root.iter(W_T))


def floor_pdf(raw: bytes) -> int:
    data = _attachment(raw, ".pdf")
    size = 0
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        for page in pdf.pages:
            size += len(page.extract_text() or "")
            size += len(page.extract_tables())
    return size


def timed(fn: Callable[[bytes], object], messages: list[bytes], repeat: int) -> float:
    """Best total seconds over ``repeat`` passes (after one warm-up message)."""
    fn(messages[0])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for raw in messages:
            fn(raw)
        best = min(best, time.perf_counter() - start)
    return best


def cold_start(raw: bytes, runs: int = 5) -> list[float]:
    script = Path(sys.executable).parent / "hubbot"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    env = {k: v for k, v in os.environ.items() if k != "HUBBOT_CONFIG"}
    times = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "one.eml"
        path.write_bytes(raw)
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([*command, "check", str(path)], cwd=folder, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="number of .docx e-mails (PDF: n/4)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per measurement; the best is kept")
    args = parser.parse_args()

    t0 = time.perf_counter()
    docx_mail = build_docx_mail(args.n)
    pdf_mail = build_pdf_mail(max(1, args.n // 4))
    print(f"built {len(docx_mail)} docx and {len(pdf_mail)} PDF e-mails in {time.perf_counter() - t0:.1f} s "
          f"(avg {sum(map(len, docx_mail)) / len(docx_mail) / 1024:.0f} KiB / "
          f"{sum(map(len, pdf_mail)) / len(pdf_mail) / 1024:.0f} KiB)")

    settings = CheckSettings.builtin()
    statuses: dict[str, int] = {}
    for raw in docx_mail + pdf_mail:
        status = assess(raw, settings).status.value
        statuses[status] = statuses.get(status, 0) + 1
    print("verdicts:", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))

    rows = []
    for kind, messages, floor, goal in (("docx", docx_mail, floor_docx, 3.0), ("pdf", pdf_mail, floor_pdf, 1.3)):
        ours = timed(lambda raw: assess(raw, settings), messages, args.repeat)
        bare = timed(floor, messages, args.repeat)
        rows.append((kind, len(messages), ours, bare, goal))

    print()
    print(f"{'kind':<5} {'msgs':>5} {'ours msg/s':>11} {'ours ms/msg':>12} {'floor msg/s':>12} {'floor ms/msg':>13} "
          f"{'ratio':>6} {'goal':>6}  ok")
    for kind, count, ours, bare, goal in rows:
        ratio = ours / bare
        print(f"{kind:<5} {count:>5} {count / ours:>11.1f} {1000 * ours / count:>12.2f} {count / bare:>12.1f} "
              f"{1000 * bare / count:>13.2f} {ratio:>5.2f}x {goal:>5.1f}x  {'yes' if ratio <= goal else 'NO'}")

    times = cold_start(docx_mail[0])
    median = statistics.median(times)
    print()
    print(f"cold start `hubbot check one.eml`: median {median:.3f} s of {len(times)} "
          f"({', '.join(f'{t:.3f}' for t in times)}); goal < 1 s: {'yes' if median < 1 else 'NO'}")


if __name__ == "__main__":
    main()

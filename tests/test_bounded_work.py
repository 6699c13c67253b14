"""Bounded work per message: every document of one e-mail is read in one forked child (not one per attachment)
under one time and memory budget, at most ``documents_per_message`` are opened (the likeliest forms first), a
.docx is held to the same caps as a PDF, and when the budget runs out what was read is kept and the rest gets a
plain reason. Against real servers: a worker fed the worst mail through Dovecot answers it (unreadable) and the
ordinary application beside it, in bounded time.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

import parsers.bounded as bounded
from parsers.documents import DocumentRequest, read_documents
from parsers.errors import UnsafeFile
from parsers.sniff import FileKind
from parsers.types import FormDocument, Limits
from rules.pipeline import CheckSettings, assess
from rules.verdict import Status
from samples.applications import complete_answers, fill_form
from samples.hostile import PDF_TYPE, cpu_heavy_pdf, hostile_mail, huge_docx
from samples.mail import DOCX_TYPE
from samples.pdf import text_pdf

PID = "secondary-tfm-wg-2024"
SETTINGS = CheckSettings.builtin()
SMALL = Limits(docx_inflated_bytes=12 * 1024 * 1024, pdf_memory_bytes=160 * 1024 * 1024, message_seconds=4.0)


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = bounded.os.fork

    def counting() -> int:
        pid = real()
        if pid:
            seen.append(pid)
        return pid

    monkeypatch.setattr(bounded.os, "fork", counting)
    return seen


def test_one_child_reads_every_document_of_a_message(forks: list[int]) -> None:
    form = fill_form(PID, complete_answers(PID))
    raw = hostile_mail([("Application form.docx", form, DOCX_TYPE), ("letter.pdf", text_pdf([["Dear hub"]]), PDF_TYPE),
                        ("notes.pdf", text_pdf([["Notes"]]), PDF_TYPE), ("copy.docx", form, DOCX_TYPE)])
    verdict = assess(raw, SETTINGS)
    assert verdict.programme == PID        # read (incomplete only because no signatory was copied)
    assert len(forks) == 1
    forks.clear()
    assert assess(hostile_mail([]), SETTINGS).status is Status.NO_FORM
    assert forks == []          # no document, no child


def test_at_most_five_documents_are_opened_the_form_first(forks: list[int]) -> None:
    form = fill_form(PID, complete_answers(PID))
    junk = [(f"scan {n}.pdf", text_pdf([[f"page {n}"]]), PDF_TYPE) for n in range(6)]
    raw = hostile_mail([*junk, ("Application form.docx", form, DOCX_TYPE)])
    verdict = assess(raw, SETTINGS)
    assert verdict.programme == PID and verdict.attachment == "Application form.docx"
    results = read_documents([DocumentRequest(FileKind.PDF, text_pdf([["x"]])) for _ in range(7)], Limits())
    assert sum(isinstance(r, FormDocument) for r in results) == 5
    assert [r.reason for r in results if isinstance(r, UnsafeFile)] == [
        "We did not open this file: your e-mail has more than 5 documents attached. "
        "Please send the application form on its own."] * 2


def test_the_budget_is_for_the_whole_message() -> None:
    heavy = cpu_heavy_pdf(pages=4, grid=60)
    start = time.monotonic()
    results = read_documents([DocumentRequest(FileKind.PDF, heavy) for _ in range(4)], replace(SMALL, message_seconds=2))
    took = time.monotonic() - start
    assert took < 4.5, took                       # not four PDFs' worth of time
    assert all(isinstance(r, UnsafeFile) for r in results)
    assert "reasonable time" in results[0].reason
    assert all("used up the time" in r.reason for r in results[1:])


def test_a_huge_docx_is_held_to_the_caps() -> None:
    docx = huge_docx(SMALL)
    start = time.monotonic()
    (result,) = read_documents([DocumentRequest(FileKind.DOCX, docx)], SMALL)
    assert isinstance(result, UnsafeFile) and "Word file" in result.reason
    assert time.monotonic() - start < SMALL.message_seconds + 2


def test_what_was_read_before_the_budget_ran_out_is_kept() -> None:
    form = fill_form(PID, complete_answers(PID))
    results = read_documents([DocumentRequest(FileKind.DOCX, form, priority=0),
                              DocumentRequest(FileKind.PDF, cpu_heavy_pdf(pages=8), priority=1)],
                             replace(SMALL, message_seconds=2))
    assert isinstance(results[0], FormDocument) and isinstance(results[1], UnsafeFile)


@pytest.mark.slow
def test_the_worker_answers_the_worst_mail_and_the_next_one(tmp_path: Path, dovecot, smtp_server) -> None:
    from tests.test_imap_worker import T0, imap_config, ok, run_once
    from tests.test_workflow import HUB_ADDRESS, application

    folder = dovecot.new_folder()
    heavy = cpu_heavy_pdf(pages=6)
    dovecot.append(hostile_mail([("Application form.docx", huge_docx(SMALL), DOCX_TYPE),
                                 *[(f"form {n}.pdf", heavy, PDF_TYPE) for n in range(6)]], to=HUB_ADDRESS), folder)
    dovecot.append(application(urn="500001"), folder)
    limits = (f"[limits]\ndocx_inflated_bytes = {SMALL.docx_inflated_bytes}\n"
              f"pdf_memory_bytes = {SMALL.pdf_memory_bytes}\nmessage_seconds = {SMALL.message_seconds}\n")
    config = imap_config(tmp_path, dovecot, smtp_server, folder, extra=limits)
    start = time.monotonic()
    ok(run_once(config, dovecot))
    assert time.monotonic() - start < 60
    ok(run_once(config, dovecot, now=T0 + timedelta(minutes=5)))
    kinds = sorted(r.message["Subject"].split(":")[0] for r in smtp_server.received)
    assert len(smtp_server.received) == 2, kinds
    bodies = " ".join(r.message.get_body(("plain",)).get_content() for r in smtp_server.received)
    assert "more than 5 documents" in bodies and "Application received" in kinds


def test_a_form_sized_docx_is_read_in_the_worker_and_a_big_one_in_the_child(forks: list[int]) -> None:
    # A form is a few hundred kilobytes: reading it is bounded work, and a fork per message would cost more than
    # the reading. Over docx_in_process_bytes (as the zip says), the child reads it under the full caps.
    form = fill_form(PID, complete_answers(PID))
    (document,) = read_documents([DocumentRequest(FileKind.DOCX, form)], Limits())
    assert isinstance(document, FormDocument) and forks == []
    (again,) = read_documents([DocumentRequest(FileKind.DOCX, form)], Limits(docx_in_process_bytes=1024))
    assert isinstance(again, FormDocument) and len(forks) == 1
    assert again.blocks == document.blocks


def test_a_child_filling_its_parents_memory_is_held_to_its_budget() -> None:
    """A long-running worker's memory is mapped but partly free; a child forked from it can fill that without
    growing its address space, which is all ``RLIMIT_AS`` sees. The parent watches what the child makes its own."""
    inherited = bytearray(256 * 1024 * 1024)   # mapped in the parent; the child's writes make each page its own

    def fill() -> Iterator[bytes]:
        for start in range(0, len(inherited), 4096):
            inherited[start] = 1
        yield b'{"filled": true}'

    lines, stop = bounded.run_bounded_lines(fill, bounded.Budget(memory_bytes=64 * 1024 * 1024, seconds=20))
    assert stop is bounded.Stop.MEMORY and lines == []

"""Neutral content types shared by every reader: what an e-mail and a form *contain*, with no meaning attached.

The e-mail side (``ParsedEmail``, ``Attachment``, ``Address``) and the form side (``FormDocument`` made of
``Paragraph`` and ``Table`` blocks in reading order) are plain frozen dataclasses, so a reader for a new format
only has to produce them, and the rules never see a file format.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# ---- forms -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One logical table cell (a horizontally merged cell appears once). ``lines`` are its paragraphs (docx) or
    text lines (PDF) in order, already stripped of tracked deletions and with content-control text included.

    ``runs_on`` (PDF only) holds the index of each line whose last word carries on at the start of the next line:
    a word the layout cut because the column was too narrow for it ("headteacher/sen" + "ior leader"), one
    hyphenated at the line's end ("small-" + "step"), an address broken over lines. The lines stay as laid out;
    ``text`` joins those two with nothing between, so the cell reads as it was typed."""

    lines: tuple[str, ...]
    runs_on: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        if not self.runs_on:
            return "\n".join(self.lines).strip()
        parts: list[str] = []
        last = len(self.lines) - 1
        for index, line in enumerate(self.lines):
            parts.append(line)
            if index < last:
                parts.append("" if index in self.runs_on else "\n")
        return "".join(parts).strip()


@dataclass(frozen=True)
class Table:
    """Rows of cells. ``page_starts`` (PDF only) holds the index of each row that begins a new page without being
    joined to the row before it: if the page break cut a row in two and the reader could not tell, the two halves
    are those two rows, so a label or answer there may be incomplete."""

    rows: tuple[tuple[Cell, ...], ...]
    page_starts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Paragraph:
    text: str


Block = Paragraph | Table


class DocumentKind(StrEnum):
    DOCX = "docx"
    PDF = "pdf"


@dataclass(frozen=True)
class FormDocument:
    """A document's content in reading order. Nested tables follow the table that holds them, in place."""

    kind: DocumentKind
    blocks: tuple[Block, ...]
    pages: int = 1

    def all_text(self) -> str:
        """Every piece of text, one per line, for recognising which form this is."""
        out: list[str] = []
        for block in self.blocks:
            if isinstance(block, Paragraph):
                out.append(block.text)
            else:
                for row in block.rows:
                    out.extend(cell.text for cell in row)
        return "\n".join(out)


def blocks_to_json(blocks: "tuple[Block, ...] | list[Block]") -> list[list[Any]]:
    """Blocks as plain JSON values, for a bounded child to hand back to its parent (never pickles)."""
    out: list[list[Any]] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            out.append(["p", block.text])
        else:
            out.append(["t", [[[list(cell.lines), list(cell.runs_on)] for cell in row] for row in block.rows],
                        list(block.page_starts)])
    return out


def blocks_from_json(items: list[list[Any]]) -> tuple[Block, ...]:
    """``blocks_to_json`` read back: the same blocks, line breaks that run on and page starts included."""
    return tuple(Paragraph(item[1]) if item[0] == "p" else
                 Table(tuple(tuple(Cell(tuple(lines), tuple(runs_on)) for lines, runs_on in row) for row in item[1]),
                       tuple(item[2]))
                 for item in items)


# ---- e-mail ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Address:
    """One mailbox from a header. ``email`` is lower-cased for comparison; ``display`` keeps the name as written."""

    email: str
    display: str = ""


@dataclass(frozen=True)
class Attachment:
    filename: str          # decoded (RFC 2047/2231); "" when the part had none
    content_type: str      # lower-case, as declared by the sender
    payload: bytes
    from_forwarded: bool = False   # found inside a message/rfc822 part
    dropped_size: int = 0          # over the attachment cap: its size, and ``payload`` is empty

    @property
    def size(self) -> int:
        return len(self.payload)


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str                     # "<...>" as in the header, or "" when absent
    subject: str                        # decoded, CR/LF removed
    sender: Address | None              # From
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    delivered_to: tuple[Address, ...]  # Delivered-To / X-Original-To / Envelope-To, for finding the hub mailbox
    date: datetime | None               # Date: header, timezone-aware
    received_at: datetime | None        # topmost Received: header's date, else Date:
    text_body: str
    html_body: str
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...] = field(default=())   # every header (name, decoded value), in order
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    return_path: str | None = None      # None when no Return-Path header; "" for the null path "<>"
    defects: tuple[str, ...] = ()       # what the parser had to work around

    def header(self, name: str) -> str | None:
        """First value of a header, case-insensitive, or None."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def header_names(self) -> set[str]:
        return {key.lower() for key, _ in self.headers}

    def all_recipients_and_sender(self) -> set[str]:
        people = [*self.to, *self.cc]
        if self.sender:
            people.append(self.sender)
        return {a.email for a in people if a.email}


# ---- limits ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """Caps that keep hostile or absurd files from hurting the worker. All configurable (``[limits]`` in config)."""

    message_bytes: int = 25 * 1024 * 1024
    attachment_bytes: int = 15 * 1024 * 1024
    pdf_pages: int = 30
    pdf_seconds: float = 20.0               # wall time for reading one PDF
    pdf_memory_bytes: int = 1024 * 1024 * 1024
    docx_inflated_bytes: int = 60 * 1024 * 1024   # total uncompressed size of the zip's members
    docx_ratio: float = 200.0               # refuse a member that inflates more than this many times
    docx_members: int = 2000
    # One bounded child reads all of a message's documents (parsers.documents): its time, and how many it opens.
    message_seconds: float = 30.0
    # A .docx whose parts add up to no more than this (as its zip says, and as read: the reading is capped to it too)
    # is read in the worker itself: parsing that much XML is bounded work (tens of milliseconds, tens of MB), and
    # a fork per message would cost several times the reading. Anything bigger is read in the bounded child.
    docx_in_process_bytes: int = 4 * 1024 * 1024
    documents_per_message: int = 5

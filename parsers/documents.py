"""Read every document of one e-mail in one bounded child: bounded work per message, not per attachment.

An e-mail may carry many attachments; each .docx and PDF is a stranger's file. ``read_documents`` forks one child
(``parsers.bounded``) with a budget for the whole message (``Limits.message_seconds`` of time, ``pdf_memory_bytes``
of growth) and reads at most ``Limits.documents_per_message`` documents in it, the likeliest forms first. The child
sends one JSON line per document as it finishes, so when the budget runs out the documents already read are kept,
the one being read gets "too slow" or "too big", and any left over get a plain reason of their own. Without a
document there is no child at all. A .docx small enough that reading it is bounded work anyway (its parts add up to
``Limits.docx_in_process_bytes`` at most, as its zip says and as read) is read in the worker, with that as its cap:
a form is a few hundred kilobytes, and a fork would cost several times the reading. The readers themselves
(``read_docx``, ``read_pdf_here``) never fork.
"""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from parsers.bounded import Budget, Stop, run_bounded_lines
from parsers.docx_form import read_docx
from parsers.errors import ScannedDocument, UnreadableFile, UnsafeFile
from parsers.pdf_form import read_pdf_here
from parsers.sniff import FileKind, read_form
from parsers.types import DocumentKind, FormDocument, Limits, blocks_from_json, blocks_to_json

__all__ = ["DocumentRequest", "read_documents"]

_ERROR_TYPES: dict[str, type[UnreadableFile]] = {
    "UnreadableFile": UnreadableFile, "UnsafeFile": UnsafeFile, "ScannedDocument": ScannedDocument}
_TOO_SLOW = {
    FileKind.PDF: "This PDF is too complicated for us to read in a reasonable time, so we stopped. "
                  "Please send the Word file, or a PDF saved straight from Word.",
    FileKind.DOCX: "This Word file is too complicated for us to read in a reasonable time, so we stopped. "
                   "Please save the form again in Word and send the new copy.",
}
_TOO_BIG = {
    FileKind.PDF: "This PDF needs far more memory to read than any application form should, so we stopped. "
                  "Please send the Word file, or a PDF saved straight from Word.",
    FileKind.DOCX: "This Word file needs far more memory to read than any application form should, so we stopped. "
                   "Please save the form again in Word and send the new copy.",
}
_NOT_READ = ("We did not open this file: the other files in your e-mail used up the time we give one e-mail. "
             "Please send the application form on its own.")


def _too_many(limit: int) -> str:
    return (f"We did not open this file: your e-mail has more than {limit} documents attached. "
            "Please send the application form on its own.")


@dataclass(frozen=True)
class DocumentRequest:
    """One attachment to read: its kind (as ``sniff`` said) and bytes, and a priority (lower is read first)."""

    kind: FileKind
    payload: bytes
    priority: int = 0


def read_documents(requests: Sequence[DocumentRequest], limits: Limits) -> list[FormDocument | UnreadableFile]:
    """A result per request, in the order given: the document, or the ``UnreadableFile`` saying why not."""
    results: list[FormDocument | UnreadableFile | None] = [None] * len(requests)
    order = sorted(range(len(requests)), key=lambda i: (requests[i].priority, i))
    chosen, over = order[:limits.documents_per_message], order[limits.documents_per_message:]
    for index in over:
        results[index] = UnsafeFile(_too_many(limits.documents_per_message))
    # Kinds with no reader to run (old .doc, pictures) are answered here; only real reading goes to the child.
    to_read: list[int] = []
    small = replace(limits, docx_inflated_bytes=min(limits.docx_inflated_bytes, limits.docx_in_process_bytes))
    for index in chosen:
        if requests[index].kind is FileKind.DOCX and _declared_size(requests[index].payload) <= small.docx_inflated_bytes:
            try:
                results[index] = read_docx(requests[index].payload, small)
            except UnreadableFile as exc:
                results[index] = exc
        elif requests[index].kind in (FileKind.DOCX, FileKind.PDF):
            to_read.append(index)
        else:
            try:
                results[index] = read_form(requests[index].kind, requests[index].payload, limits)
            except UnreadableFile as exc:
                results[index] = exc
    if to_read:
        budget = Budget(memory_bytes=limits.pdf_memory_bytes, seconds=limits.message_seconds)
        lines, stop = run_bounded_lines(lambda: _read_all([requests[i] for i in to_read], limits), budget)
        for position, index in enumerate(to_read):
            if position < len(lines):
                results[index] = _decode(lines[position])
            elif position == len(lines):
                kind = requests[index].kind
                results[index] = UnsafeFile((_TOO_SLOW if stop is Stop.SLOW else _TOO_BIG)[kind])
            else:
                results[index] = UnsafeFile(_NOT_READ)
    return [r if r is not None else UnreadableFile(_NOT_READ) for r in results]


def _declared_size(payload: bytes) -> int:
    """What a zip says its members add up to; a file that is not a readable zip gets an answer that sends it to the
    child (where ``read_docx`` says what is wrong with it under the full caps)."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except Exception:  # noqa: BLE001 - anything odd about the zip is the child's to find
        return 1 << 62


# ---- in the child ------------------------------------------------------------------------------------------------

def _read_all(requests: Sequence[DocumentRequest], limits: Limits) -> Iterator[bytes]:
    for request in requests:
        try:
            if request.kind is FileKind.DOCX:
                document = read_docx(request.payload, limits)
            else:
                document = read_pdf_here(request.payload, limits)
            yield json.dumps({"doc": _encode(document)}).encode()
        except UnreadableFile as exc:
            yield json.dumps({"error": type(exc).__name__, "reason": exc.reason}).encode()
        except MemoryError:
            raise   # the child reports it and stops: later documents get their own reason
        except Exception as exc:  # noqa: BLE001 - a reader bug on one file must not cost the others
            yield json.dumps({"error": "UnreadableFile", "reason": _CORRUPT_GENERIC, "bug": type(exc).__name__}
                             ).encode()


_CORRUPT_GENERIC = ("We couldn't open this file: it seems to be damaged or only partly sent. "
                    "Please save the form again and send the new copy.")


def _encode(document: FormDocument) -> dict[str, Any]:
    return {"kind": document.kind.value, "pages": document.pages, "blocks": blocks_to_json(document.blocks)}


def _decode(line: bytes) -> FormDocument | UnreadableFile:
    try:
        data = json.loads(line)
    except ValueError:
        return UnsafeFile(_CORRUPT_GENERIC)
    if "error" in data:
        return _ERROR_TYPES.get(data["error"], UnreadableFile)(data.get("reason") or _CORRUPT_GENERIC)
    doc = data["doc"]
    return FormDocument(kind=DocumentKind(doc["kind"]), blocks=blocks_from_json(doc["blocks"]), pages=int(doc["pages"]))

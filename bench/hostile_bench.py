"""Peak memory and time of the worst mail a stranger can send within the caps, read as the worker reads it.

Two e-mails, built by ``samples.hostile`` with the default ``Limits``: one carrying a .docx whose document.xml is
as big as the zip caps allow (millions of tiny elements for lxml), and one carrying as many small CPU-heavy PDFs
(dense ruled grids, 30 pages each) as fit under ``message_bytes``. Each is assessed (``rules.pipeline.assess``, the
whole of ``hubbot check``) in a fresh Python process, so the figures are its own: wall time, the worker's peak RSS
and the peak RSS of the bounded child that read the documents (``RUSAGE_CHILDREN``; a forked child counts the
parent's pages it shares). "Before" for the .docx is ``read_docx`` run as it used to be, in the worker's own
process with no cap; for the PDFs it is the bound the old per-attachment caps allowed (one child and
``pdf_seconds`` per PDF), computed, not run: it would keep a core busy for a quarter of an hour.
Usage: ``python bench/hostile_bench.py [--pdfs N]``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The reader as it was before, for the .docx: read_docx in the worker's own process, no child, no memory cap.
_BEFORE_DOCX = r"""
import json, resource, sys, time
from email import message_from_bytes
from parsers.docx_form import read_docx
from parsers.errors import UnreadableFile
from parsers.types import Limits
raw = open(sys.argv[1], "rb").read()
payload = next(p for p in message_from_bytes(raw).walk() if p.get_filename()).get_payload(decode=True)
start = time.monotonic()
try:
    outcome = type(read_docx(payload, Limits())).__name__
except UnreadableFile as exc:
    outcome = type(exc).__name__
print(json.dumps({"seconds": round(time.monotonic() - start, 2), "outcome": outcome,
                  "worker_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""

_MEASURE = r"""
import json, resource, sys, time
from rules.pipeline import CheckSettings, assess
raw = open(sys.argv[1], "rb").read()
settings = CheckSettings.builtin()
start = time.monotonic()
verdict = assess(raw, settings)
took = time.monotonic() - start
print(json.dumps({
    "seconds": round(took, 2),
    "worker_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "child_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    "status": verdict.status.value, "reply": verdict.reply.kind.value if verdict.reply else None,
    "problems": [p[:90] for p in verdict.problems][:3]}))
"""


def build(kind: str, pdfs: int | None) -> tuple[bytes, str]:
    from parsers.types import Limits
    from samples.hostile import PDF_TYPE, cpu_heavy_pdf, hostile_mail, huge_docx
    from samples.mail import DOCX_TYPE

    limits = Limits()
    if kind == "docx":
        docx = huge_docx(limits)
        return hostile_mail([("Application form.docx", docx, DOCX_TYPE)]), f"1 .docx, {len(docx) / 1e6:.1f} MB zipped"
    pdf = cpu_heavy_pdf(pages=limits.pdf_pages)
    # As many as fit in one message once base64-encoded (4/3) with room for the headers.
    count = pdfs or int((limits.message_bytes * 0.95) / (len(pdf) * 4 / 3 + 200))
    raw = hostile_mail([(f"form {n}.pdf", pdf, PDF_TYPE) for n in range(count)])
    return raw, f"{count} PDFs of {limits.pdf_pages} pages, {len(pdf) / 1e3:.0f} kB each"


def measure(raw: bytes, script: str = _MEASURE) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".eml") as handle:
        handle.write(raw)
        handle.flush()
        result = subprocess.run([sys.executable, "-c", script, handle.name], cwd=REPO, capture_output=True,
                                text=True, timeout=600, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdfs", type=int, default=None, help="PDFs in the PDF mail (default: as many as fit)")
    args = parser.parse_args()
    from parsers.types import Limits

    limits = Limits()
    print(f"caps: message {limits.message_bytes / 1e6:.0f} MB, docx inflated {limits.docx_inflated_bytes / 1e6:.0f} MB, "
          f"memory growth {limits.pdf_memory_bytes / 2**20:.0f} MiB, {limits.message_seconds:.0f} s per message, "
          f"{limits.documents_per_message} documents per message")
    for kind in ("docx", "pdf"):
        raw, what = build(kind, args.pdfs)
        got = measure(raw)
        print(f"{kind:4}  {what}; mail {len(raw) / 1e6:.1f} MB")
        print(f"      {got['seconds']:.1f} s, worker peak RSS {got['worker_rss_mb']:.0f} MB, reading child peak RSS "
              f"{got['child_rss_mb']:.0f} MB -> {got['status']} ({got['reply']}): {'; '.join(got['problems'])}")
        if kind == "docx":
            before = measure(raw, _BEFORE_DOCX)
            print(f"      before (read in the worker itself, no cap): {before['seconds']:.1f} s, worker peak RSS "
                  f"{before['worker_rss_mb']:.0f} MB -> {before['outcome']}")
        if kind == "pdf":
            count = int(what.split()[0])
            print(f"      before (one child per PDF, {limits.pdf_seconds:.0f} s each): up to "
                  f"{count * limits.pdf_seconds:.0f} s for this one e-mail")


if __name__ == "__main__":
    main()

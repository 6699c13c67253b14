"""The shipped sample material and the demo: the blank forms in ``samples/blank_forms`` are unchanged copies of
``shared/forms``, and ``hubbot demo`` (the README's first command) runs end to end on a fresh workspace, writing one
reply per answered e-mail and answering no automatic mail."""
from __future__ import annotations

import email
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samples.forms import FORMS_DIR

SHARED_FORMS = Path(__file__).resolve().parents[1].parent / "shared" / "forms"


def test_shipped_blank_forms_match_shared_forms() -> None:
    shipped = sorted(p.name for p in FORMS_DIR.glob("*.docx"))
    assert shipped == sorted(p.name for p in SHARED_FORMS.glob("*.docx"))
    for name in shipped:
        assert (FORMS_DIR / name).read_bytes() == (SHARED_FORMS / name).read_bytes(), name


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bot.cli", "demo", "--dir", str(workspace)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 60   # the issue asks for under 30 s; this only guards against a hang
    out = done.stdout
    for status in ("complete", "incomplete", "unreadable", "no_form", "not_application", "ignored"):
        assert status in out
    replies = [email.message_from_bytes(p.read_bytes()) for p in (workspace / "outbox").glob("*.eml")]
    kinds = {r["Subject"].split(":")[0] for r in replies}
    assert {"Application received", "Action needed"} <= kinds
    assert all(r["Auto-Submitted"] == "auto-replied" for r in replies)
    # The out-of-office got nothing back.
    assert not any("out of office" in (r["To"] or "").lower() for r in replies)
    # Running it again replaces the workspace rather than refusing or mixing old and new.
    again = subprocess.run([sys.executable, "-m", "bot.cli", "demo", "--dir", str(workspace)], capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(list((workspace / "outbox").glob("*.eml"))) == len(replies)

"""Text from strangers echoed safely: a subject or file name carrying terminal escape sequences, control characters,
right-to-left overrides or thousands of characters comes back in a reply's subject, in ``hubbot check`` and in the
digest cut to 120 characters with none of them left."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from parsers.safe_text import ECHO_LIMIT, one_line, printable
from rules.pipeline import CheckSettings, assess
from samples.applications import application_email, complete_answers, fill_form
from samples.mail import DOCX_TYPE, build_email

REPO = Path(__file__).resolve().parents[1]
PID = "secondary-tfm-wg-2024"
HOSTILE = "Form \x1b[2J\x1b]0;owned\x07\x1b[31mRED\x1b[0m \u202egnp.exe\x00\x07" + "y" * 400
BAD = ("\x1b", "\x07", "\x00", "\u202e")


def hostile_email() -> bytes:
    # A form file that is not one (so the reply echoes its name), with a hostile subject and file name.
    return build_email(sender="k.wright@valley.example.sch.uk", to=("mathshub@bishopchalloner.bham.sch.uk",),
                       subject=HOSTILE, body_text="Please find attached our application form.",
                       attachments=[(HOSTILE + ".docx", b"PK\x03\x04 not really a zip word/document.xml", DOCX_TYPE)],
                       filename_encoding="rfc2047")


def test_helpers() -> None:
    assert one_line(HOSTILE).startswith("Form RED gnp.exe")
    assert len(one_line(HOSTILE)) == ECHO_LIMIT and not any(c in one_line(HOSTILE) for c in BAD)
    assert printable("a\n\x1b[1mb\x1b[0m\tc\x9b2J") == "a\nb\tc"


def test_reply_subject_and_file_name_are_cut_and_clean() -> None:
    verdict = assess(hostile_email(), CheckSettings.builtin())
    assert verdict.reply is not None
    for text in (verdict.reply.subject, verdict.reply.text, verdict.reply.html):
        assert not any(c in text for c in BAD)
    assert len(verdict.reply.subject) < ECHO_LIMIT + 60
    assert "y" * ECHO_LIMIT not in verdict.reply.text


def test_check_output_has_no_escape_sequences(tmp_path: Path) -> None:
    eml = tmp_path / "hostile.eml"
    eml.write_bytes(hostile_email())
    plain = subprocess.run([sys.executable, "-m", "bot.cli", "check", str(eml)], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode == 0 and "Status:" in plain.stdout
    assert not any(c in plain.stdout for c in BAD)
    as_json = subprocess.run([sys.executable, "-m", "bot.cli", "check", "--json", str(eml)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    # JSON keeps the data as it was (scripts read it) with every control character escaped: nothing can drive
    # the terminal.
    assert not any(c in as_json.stdout for c in ("\x1b", "\x07", "\x00"))
    assert json.loads(as_json.stdout)["reply"]["subject"]


def test_a_form_with_hostile_answers_prints_clean(tmp_path: Path) -> None:
    # XML cannot hold ESC, but a right-to-left override and friends it can.
    answers = {**complete_answers(PID), "school.name": "Valley \u202eloohcS\u2066 Academy"}
    eml = tmp_path / "form.eml"
    eml.write_bytes(application_email(PID, fill_form(PID, answers), answers=answers))
    plain = subprocess.run([sys.executable, "-m", "bot.cli", "check", str(eml)], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode == 0 and "Valley loohcS Academy" in plain.stdout
    assert "\u202e" not in plain.stdout and "\u2066" not in plain.stdout

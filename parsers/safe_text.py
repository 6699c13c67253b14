"""Text from a stranger's e-mail made safe to echo: in a reply's subject, in ``hubbot check`` on a terminal, in the
digest. Schools' subjects and file names are free text; a hostile one can carry terminal escape sequences (which
rewrite what staff see, or the terminal's title), control characters, right-to-left overrides (U+202E) that make a
file ending in ".exe" read as one ending in ".docx", or run to thousands of characters. ``one_line`` keeps the
readable part on one line and cuts it to a length; ``printable`` does the same for multi-line text, keeping line
breaks and tabs.
"""
from __future__ import annotations

import re

__all__ = ["one_line", "printable", "ECHO_LIMIT"]

#: How much of a subject or a file name is ever echoed back.
ECHO_LIMIT = 120

# ESC-introduced sequences first (CSI "ESC [ ... final", OSC "ESC ] ... BEL|ESC \\", and two-byte escapes), so
# their parameters go with them rather than being left behind as visible junk.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")
# C0 and C1 controls, DEL, and the invisible formatting characters that reorder or hide text.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
                       "\ufff9-\ufffb]")
_LINE_BREAKS = re.compile("[\r\n\t\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:max(0, limit - 1)].rstrip() + "…"


def one_line(text: str | None, limit: int | None = ECHO_LIMIT) -> str:
    """``text`` on one line, without escapes or control characters, cut to ``limit`` characters."""
    if not text:
        return ""
    text = _LINE_BREAKS.sub(" ", _ESCAPES.sub("", text))
    return _cut(" ".join(_CONTROLS.sub("", text).split()), limit)


def printable(text: str | None, limit: int | None = None) -> str:
    """Multi-line ``text`` without escapes or control characters (newlines and tabs kept)."""
    if not text:
        return ""
    text = _ESCAPES.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _cut(_CONTROLS.sub("", text), limit)

"""The one small exception hierarchy of hubbot's reading side.

Every failure to read something a school sent is a ``HubbotError`` carrying a plain-English ``reason`` that can be
put, as it stands, in a reply to a school secretary. Code that reads attachments catches these per attachment; the
mailbox worker catches them per message; nothing lets one bad file stop a batch.
"""
from __future__ import annotations


class HubbotError(Exception):
    """Base of every error hubbot raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnreadableFile(HubbotError):
    """A file looks like a form but cannot be read (corrupt, truncated, encrypted, unsupported format)."""


class UnsafeFile(UnreadableFile):
    """A file we refuse to open: over a size cap, a zip that would inflate absurdly, a PDF over the page cap."""


class ScannedDocument(UnreadableFile):
    """A PDF with no text layer: a scan or a photo of the form."""


class ConfigError(HubbotError):
    """A configuration or programme-definition file is wrong; the reason names the file and the key."""

"""Does an e-mail ask to withdraw an application? Read only what the writer wrote in this e-mail: quoted text
(lines starting with ">", and everything below an "On ... wrote:" line, an Outlook "-----Original Message-----"
or a "From: ... Sent: ..." header block) is cut first, because a school quoting our own reply, or a colleague's
earlier note, is not asking anything. A sentence that says the writer does *not* want to withdraw does not count.
The bot never withdraws anything itself: a request is flagged for the hub team, who record the decision.
"""
from __future__ import annotations

import re

_QUOTE_HEADER = re.compile(
    r"^\s*(On\b.{0,300}\bwrote:\s*$"                       # Gmail, Apple Mail, Thunderbird
    r"|-{2,}\s*Original Message\s*-{2,}"                    # Outlook (older)
    r"|From:\s.+$)",                                        # Outlook: the header block of the quoted e-mail
    re.IGNORECASE)
_WITHDRAW = re.compile(
    r"\b(please\s+withdraw"
    r"|(?:we|i)\s*(?:would|'d)\s+like\s+to\s+withdraw"
    r"|(?:we|i)\s+(?:wish|want|need|intend|have\s+decided|have\s+to|must)\s+to\s+withdraw"
    r"|(?:we|i)\s+(?:wish|want|need|have\s+decided)\s+to\s+pull\s+out"
    r"|withdraw\s+(?:our|my|the)\s+(?:school'?s?\s+)?(?:application|expression\s+of\s+interest|eoi)"
    r"|withdrawal\s+of\s+(?:our|my|the)\s+(?:school'?s?\s+)?application"
    r"|(?:we|i)\s+(?:are|am)\s+withdrawing)\b",
    re.IGNORECASE)
_NEGATED = re.compile(r"\b(not|n't|no\s+longer\s+need\s+to|don't|do\s+not)\s+(?:\w+\s+){0,3}$", re.IGNORECASE)


def own_text(body: str) -> str:
    """The part of a plain-text body the writer wrote: up to the first quoted line or quoting header."""
    kept: list[str] = []
    lines = body.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            break
        if _QUOTE_HEADER.match(line):
            break
        # "On Tue, 4 Jun 2024 at 10:00, Hub <hub@x>" and "wrote:" wrapped onto the next line.
        if re.match(r"^\s*On\b", line) and index + 1 < len(lines) and lines[index + 1].strip().endswith("wrote:"):
            break
        kept.append(line)
    return "\n".join(kept)


def asks_to_withdraw(subject: str, body: str) -> bool:
    """True when the subject or the writer's own text asks to withdraw an application."""
    text = " ".join(f"{subject}\n{own_text(body)}".split())[:20_000]
    for match in _WITHDRAW.finditer(text):
        before = text[max(0, match.start() - 40):match.start()]
        if not _NEGATED.search(before) and not re.search(r"\b(not|n't)\s*$", before, re.IGNORECASE):
            return True
    return False

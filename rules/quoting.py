"""What the sender wrote themselves: an e-mail's text with quoted and forwarded text taken out, and the bot's own
phrases taken out wherever they appear.

The bot answers "your form did not arrive" when a text *says* a form is attached and none is. A person answering
that reply quotes it ("Please reply with the completed form attached ..."), so the quote alone would earn another
"did not arrive", and the next answer quotes that one: a loop with a human in it. So only the sender's own words
count: lines quoted with "> ", everything below an attribution line ("On ... wrote:", Outlook's "From: ... Sent:"
block, "-----Original Message-----", a forwarded-message banner), the quoted parts of an HTML body (blockquote,
Gmail's and Outlook's reply containers), and any line that carries a sentence from one of our own templates (some
clients quote without any marker at all). Pure text work: no parsing of MIME, no network.
"""
from __future__ import annotations

import html
import re
from functools import cache
from importlib import resources

__all__ = ["own_words", "own_words_html", "own_subject", "bot_phrases"]

# A line that starts the quoted or forwarded part: everything from it down is someone else's text.
_CUT_LINES = re.compile(
    r"^\s*("
    r"-{2,}\s*(original message|forwarded message|mensaje original|message d'origine|urspr.ngliche nachricht)\s*-{2,}"
    r"|begin forwarded message:"
    r"|_{10,}"                                        # Outlook's rule above its From:/Sent: block
    r"|on .{4,200}\bwrote:\s*$"                        # Gmail, Apple Mail, Thunderbird: "On <date>, <name> wrote:"
    r"|le .{4,200}\ba écrit\s*:\s*$"
    r"|am .{4,200}\bschrieb .{0,100}:\s*$"
    r"|.{0,200}\bwrote:\s*$"                           # "Jane Doe <j@x> wrote:" with no date
    r")",
    re.IGNORECASE,
)
# Outlook's plain-text reply header: "From: ..." followed within two lines by "Sent: ..." (or "Date:").
_FROM_LINE = re.compile(r"^\s*\*?(from|von|de)\s*:\*?\s", re.IGNORECASE)
_SENT_LINE = re.compile(r"^\s*\*?(sent|date|gesendet|envoyé)\s*:\*?\s", re.IGNORECASE)
_QUOTED = re.compile(r"^\s*(>|\|)")

# HTML: where quoted content begins in the clients schools use.
_HTML_CUTS = re.compile(
    r"<blockquote\b|<div[^>]+class=\"?[^\">]*\b(gmail_quote|moz-cite-prefix|yahoo_quoted)\b"
    r"|<div[^>]+id=\"?(divRplyFwdMsg|appendonsend|mail-editor-reference-message-container)\b"
    r"|<hr[^>]*id=\"?stopSpelling",
    re.IGNORECASE,
)
_TAGS = re.compile(r"<[^>]*>")
_BREAKS = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h\d)\b[^>]*>", re.IGNORECASE)
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)

# Prefixes a reply or forward puts before a subject, in the languages schools' clients use.
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|tr|sv|vs|antw|rif)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_JINJA = re.compile(r"\{[{%#].*?[}%#]\}", re.DOTALL)
_MIN_PHRASE = 24


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@cache
def bot_phrases() -> tuple[str, ...]:
    """The fixed sentences of every template the bot sends (what lies between the template's placeholders), long
    enough to be ours and nobody else's."""
    found: set[str] = set()
    folder = resources.files("templates")
    for entry in folder.iterdir():
        if not entry.name.endswith((".txt.j2", ".subject.j2")):
            continue
        for piece in _JINJA.split(entry.read_text(encoding="utf-8")):
            for sentence in re.split(r"(?<=[.:!?])\s+|\n", piece):
                phrase = _norm(sentence)
                if len(phrase) >= _MIN_PHRASE:
                    found.add(phrase)
    return tuple(sorted(found, key=len, reverse=True))


_SENTENCE = re.compile(r"(?<=[.:!?])\s+")


def _is_ours(text: str) -> bool:
    """Whether ``text`` is one of our sentences, or a piece of one (a quote wrapped at 72 columns)."""
    normal = _norm(text.lstrip("> |"))
    return len(normal) >= _MIN_PHRASE and any(normal == p or normal in p for p in bot_phrases())


def _without_ours(line: str) -> str:
    """``line`` less any of its sentences that are ours; the sender's own sentences on the same line stay."""
    if len(_norm(line)) < _MIN_PHRASE:
        return line
    if _is_ours(line):
        return ""
    kept = [sentence for sentence in _SENTENCE.split(line) if not _is_ours(sentence)]
    return " ".join(kept)


def own_words(text: str) -> str:
    """``text`` with quoted, forwarded and bot-written lines removed."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _CUT_LINES.match(line):
            break
        if _FROM_LINE.match(line) and any(_SENT_LINE.match(n) for n in lines[index + 1:index + 3]):
            break
        if _QUOTED.match(line):
            continue
        kept.append(_without_ours(line))
    return "\n".join(kept).strip()


def own_words_html(markup: str) -> str:
    """The sender's own words in an HTML body: cut at the first quoted container, tags stripped."""
    cut = _HTML_CUTS.search(markup)
    if cut:
        markup = markup[:cut.start()]
    markup = _SCRIPT.sub(" ", markup)
    text = html.unescape(_TAGS.sub(" ", _BREAKS.sub("\n", markup)))
    return own_words(text)


def own_subject(subject: str) -> str:
    """A subject without reply/forward prefixes, and empty when what is left is one of our own subjects (a reply
    to our reply says nothing new in its subject)."""
    bare = _SUBJECT_PREFIX.sub("", subject or "")
    return "" if _is_ours(bare) or _is_our_subject(bare) else bare


@cache
def _subject_starts() -> tuple[str, ...]:
    starts: set[str] = set()
    for entry in resources.files("templates").iterdir():
        if entry.name.endswith(".subject.j2"):
            head = _JINJA.split(entry.read_text(encoding="utf-8"))[0]
            if len(_norm(head)) >= 12:
                starts.add(_norm(head))
    return tuple(starts)


def _is_our_subject(subject: str) -> bool:
    normal = _norm(subject)
    return any(normal.startswith(start) for start in _subject_starts())

"""Turn the raw bytes of one e-mail into a neutral ``ParsedEmail``: headers, addresses, dates, bodies, attachments.

Schools send applications from every mail client there is, so this reader must accept anything and never raise:
whatever it has to work around (a broken header, an unknown charset, an oversize attachment) is recorded in
``ParsedEmail.defects`` and parsing carries on. The message is parsed once, with the standard library's compat32
parser (the same tree mail-parser builds internally); mail-parser's hardened helpers then read the hard parts
(address lists, dates, encoded words), with the standard library as the fallback wherever they fail. The MIME walk
is our own because mail-parser flattens forwarded messages into the outer one and re-encodes every attachment to a
base64 string, which costs about half again the time of the parse itself on a typical application.
"""
from __future__ import annotations

import base64
import binascii
import email
import email.header
import email.policy
import email.utils
import re
import urllib.parse
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from email.message import Message
from email.parser import BytesParser

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from parsers.types import Address, Attachment, Limits, ParsedEmail

__all__ = ["parse_email", "oversize_attachments", "header_block", "MESSAGE_TOO_LARGE", "OVERSIZE_PREFIX"]

#: Defect recorded when the message is over ``Limits.message_bytes``: only its headers were read.
MESSAGE_TOO_LARGE = "message too large: headers only"
#: Defect prefix for an attachment kept in the list with its payload dropped: "attachment 2 too large: 123 bytes".
OVERSIZE_PREFIX = "attachment "

# Every character str.splitlines() treats as a line break: a header value that reaches a reply must hold none,
# or it could end the header and start a new one.
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_MSG_ID = re.compile(r"<[^<>\s]*>")
# The first empty line, with line ends as the e-mail parser reads them (CRLF, CR or LF): the end of the headers.
_HEADER_END = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")

_ADDRESS_HEADERS = ("from", "to", "cc", "reply-to", "delivered-to", "x-original-to", "envelope-to")
_FALLBACK_CHARSETS = ("utf-8", "cp1252", "latin-1")

# Bounds on hostile structure: real mail nests a few levels, never hundreds.
_MAX_DEPTH = 30
_MAX_PARTS = 2000
# A header block with no blank line after it is cut here in headers-only mode.
_MAX_HEADER_BLOCK = 1024 * 1024

_COMPAT32 = email.policy.compat32


def parse_email(raw: bytes, limits: Limits = Limits()) -> ParsedEmail:
    """Read one e-mail. Never raises: anything that had to be worked around is listed in ``defects``.

    A message over ``limits.message_bytes`` is read headers-only (no bodies, no attachments) with the defect
    ``MESSAGE_TOO_LARGE``; an attachment over ``limits.attachment_bytes`` stays in the list with ``payload=b""``
    and a defect ``"attachment <index> too large: <size> bytes"`` (see ``oversize_attachments``).
    """
    try:
        data = _as_bytes(raw)
    except Exception:  # noqa: BLE001 - the contract is "never raise"
        return _empty(("input is not bytes",))
    try:
        if len(data) > limits.message_bytes:
            return _parse(header_block(data), limits, headers_only=True, extra=[MESSAGE_TOO_LARGE])
        return _parse(data, limits, headers_only=False, extra=[])
    except RecursionError:
        first = "MIME structure too deep"
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop a batch
        first = f"parser failure ({type(exc).__name__})"
    # Second chance: the headers alone are nearly always readable, and they are what the caller needs to decide.
    try:
        return _parse(header_block(data), limits, headers_only=True, extra=[first, "headers only"])
    except Exception as exc:  # noqa: BLE001
        return _empty((first, f"headers unreadable ({type(exc).__name__})"))


def oversize_attachments(parsed: ParsedEmail) -> dict[int, int]:
    """Index into ``parsed.attachments`` -> size, for every attachment whose payload was dropped."""
    return {i: a.dropped_size for i, a in enumerate(parsed.attachments) if a.dropped_size}


# ---- the whole message -------------------------------------------------------------------------------------------

def _as_bytes(raw: object) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, (bytearray, memoryview)):
        return bytes(raw)
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    raise TypeError("not bytes")


def _empty(defects: tuple[str, ...]) -> ParsedEmail:
    return ParsedEmail(
        message_id="", subject="", sender=None, to=(), cc=(), reply_to=(), delivered_to=(), date=None,
        received_at=None, text_body="", html_body="", attachments=(), defects=defects,
    )


def header_block(data: bytes, limit: int = _MAX_HEADER_BLOCK) -> bytes:
    """The message's header block, up to and with the empty line that ends it, within its first ``limit`` bytes
    (all of those when there is no empty line): what a headers-only parse needs, since the parser would otherwise
    read the body line by line just to skip it."""
    match = _HEADER_END.search(data, 0, limit)
    return data[:match.end()] if match else data[:limit]


def header_values(raw: bytes, names: Iterable[str], limit: int = 65536) -> dict[str, str] | None:
    """The first value of each named header (by its lower-case name; "" when absent), unfolded and decoded as
    ``parse_email`` decodes headers, one line each: for showing a stored message's From or Subject to a person.
    Only the header block within the first ``limit`` bytes is read, and the addresses are not parsed, so it costs
    a small part of ``parse_email``. Never raises: None when the header block cannot be read at all."""
    found = dict.fromkeys((name.lower() for name in names), "")
    pending = set(found)
    try:
        message = BytesParser(policy=_COMPAT32).parsebytes(header_block(_as_bytes(raw), limit), headersonly=True)
        for name, value in message.raw_items():
            key = _text_from_surrogates(name).strip().lower()
            if key in pending:
                pending.discard(key)
                found[key] = _decode_header(value if isinstance(value, str) else str(value), _Defects([]))
    except Exception:  # noqa: BLE001 - a broken header block is the caller's to describe, never a crash
        return None
    return found


def _parse(data: bytes, limits: Limits, *, headers_only: bool, extra: list[str]) -> ParsedEmail:
    msg = BytesParser(policy=_COMPAT32).parsebytes(data, headersonly=headers_only)
    defects = _Defects(extra)
    defects.add_parser_defects(msg)

    headers: list[tuple[str, str]] = []
    raw_by_name: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        raw_value = value if isinstance(value, str) else str(value)
        clean_name = _single_line(_text_from_surrogates(name)).strip()
        headers.append((clean_name, _decode_header(raw_value, defects)))
        raw_by_name.setdefault(clean_name.lower(), []).append(raw_value)

    def first_decoded(name: str) -> str:
        for key, value in headers:
            if key.lower() == name:
                return value
        return ""

    addresses = {name: _addresses(raw_by_name.get(name, ()), defects) for name in _ADDRESS_HEADERS}
    date = _parse_date(first_decoded("date"), defects, "Date")
    received_at = _received_at(raw_by_name.get("received", ()), defects)

    text_body = html_body = ""
    attachments: tuple[Attachment, ...] = ()
    if not headers_only:
        walk = _Walk(limits, defects)
        walk.run(msg)
        text_body, html_body, attachments = "\n".join(walk.text), "\n".join(walk.html), tuple(walk.attachments)

    message_id = _first_msg_id(first_decoded("message-id"))
    return ParsedEmail(
        message_id=message_id,
        subject=first_decoded("subject").strip(),
        sender=addresses["from"][0] if addresses["from"] else None,
        to=addresses["to"],
        cc=addresses["cc"],
        reply_to=addresses["reply-to"],
        delivered_to=_dedupe(addresses["delivered-to"] + addresses["x-original-to"] + addresses["envelope-to"]),
        date=date,
        received_at=received_at if received_at is not None else date,
        text_body=text_body,
        html_body=html_body,
        attachments=attachments,
        headers=tuple(headers),
        in_reply_to=_first_msg_id(first_decoded("in-reply-to")),
        references=tuple(_all_msg_ids(first_decoded("references"))),
        return_path=_return_path(raw_by_name.get("return-path")),
        defects=defects.as_tuple(),
    )


class _Defects:
    """Short, de-duplicated notes on what was worked around. Never holds addresses, names or file names."""

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self._items: dict[str, None] = dict.fromkeys(initial)

    def add(self, note: str) -> None:
        if len(self._items) < 200:
            self._items.setdefault(note, None)

    def add_parser_defects(self, part: Message) -> None:
        for defect in getattr(part, "defects", ()):
            self.add(f"MIME: {type(defect).__name__}")

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._items)


# ---- text and headers --------------------------------------------------------------------------------------------

def _single_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text)


def _decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Decode with the declared charset, else UTF-8, cp1252, latin-1. Returns (text, used a fallback)."""
    tried: list[str] = []
    for candidate in ((charset,) if charset else ()) + _FALLBACK_CHARSETS:
        if candidate in tried:
            continue
        tried.append(candidate)
        try:
            text = data.decode(candidate)
            # Some codecs (utf-7, utf-16 variants) can yield lone surrogates, which no UTF-8 sink accepts.
            text.encode("utf-8")
        except (LookupError, UnicodeError, ValueError, TypeError):
            continue
        return text, len(tried) > 1
    return data.decode("latin-1"), True  # not reached: latin-1 decodes every byte


def _text_from_surrogates(text: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes; turn them back into real characters."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return _decode_bytes(data, None)[0]


def _unfold(value: str) -> str:
    return _FOLD.sub("", value)


def _decode_header(raw: str, defects: _Defects) -> str:
    """Unfold, decode RFC 2047 words and stray 8-bit bytes, and take out every line break."""
    value = _text_from_surrogates(_unfold(raw))
    if "=?" in value:
        value = _decode_words(value, defects)
    return _single_line(value).strip()


def _decode_words(value: str, defects: _Defects) -> str:
    try:
        parts = email.header.decode_header(value)
    except Exception:  # noqa: BLE001 - HeaderParseError and friends
        defects.add("header: bad encoded word")
        return value
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        text, fallback = _decode_bytes(chunk, _charset_name(charset))
        if fallback:
            defects.add("header: charset fallback")
        out.append(text)
    decoded = "".join(out)
    if "=?" in decoded and "?=" in decoded:
        # compat32 only decodes words that stand alone; the modern parser also takes "=?..?=text" as mail
        # clients write it.
        try:
            modern = str(email.policy.default.header_factory("x-decode", decoded))
            if "=?" not in modern:
                decoded = modern
        except Exception:  # noqa: BLE001
            pass
    return decoded


def _charset_name(charset: str | None) -> str | None:
    """A charset label to try first, or None (raw 8-bit text, "unknown-8bit") to go straight to the fallbacks."""
    charset = (charset or "").strip().strip('"').lower()
    return None if charset in ("", "unknown-8bit") else charset


# ---- addresses ---------------------------------------------------------------------------------------------------

_ADDR_OK = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")


def _addresses(raw_values: Iterable[str], defects: _Defects) -> tuple[Address, ...]:
    out: list[Address] = []
    for raw in raw_values:
        value = _text_from_surrogates(_unfold(raw))
        value = _LINE_BREAKS.sub(" ", value)
        try:
            pairs = get_addresses(value, decode_names=True)
        except Exception:  # noqa: BLE001 - mail-parser failed: the stdlib is laxer but never wrong on good input
            defects.add("address: mail-parser failed, stdlib used")
            try:
                pairs = email.utils.getaddresses([value])
            except Exception:  # noqa: BLE001
                defects.add("address: unreadable header")
                continue
        for display, addr in pairs:
            addr = (addr or "").strip()
            if not addr:
                continue
            if not _ADDR_OK.match(addr):
                defects.add("address: malformed address skipped")
                continue
            display = _single_line(display or "").strip()
            if "=?" in display:
                # A quoted encoded word is literal by RFC 2047, but mail clients write it and readers decode it.
                display = _single_line(_decode_words(display, defects)).strip()
            if display.lower() == addr.lower():
                display = ""
            out.append(Address(email=addr.lower(), display=display))
    return tuple(out)


def _dedupe(addresses: tuple[Address, ...]) -> tuple[Address, ...]:
    seen: set[str] = set()
    out: list[Address] = []
    for address in addresses:
        if address.email not in seen:
            seen.add(address.email)
            out.append(address)
    return tuple(out)


def _return_path(values: list[str] | None) -> str | None:
    if not values:
        return None
    value = _single_line(_text_from_surrogates(_unfold(values[0]))).strip()
    if value.startswith("<"):
        inner = value[1:value.index(">")] if ">" in value else value[1:]
        return inner.strip().lower()
    return value.split()[0].lower() if value else ""


def _first_msg_id(value: str) -> str:
    ids = _all_msg_ids(value)
    return ids[0] if ids else ""


def _all_msg_ids(value: str) -> list[str]:
    found = _MSG_ID.findall(value)
    if found:
        return [m for m in found if m != "<>"]
    return value.split()


# ---- dates -------------------------------------------------------------------------------------------------------

def _parse_date(value: str, defects: _Defects, what: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        result = parse_mail_date(value)
        if result.value is not None:
            offset = timedelta(hours=float(result.timezone))
            return result.value.astimezone(timezone(offset))
    except Exception:  # noqa: BLE001 - fall through to the laxer stdlib reader
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except Exception:  # noqa: BLE001
        parsed = None
    if parsed is None:
        defects.add(f"date: unreadable {what}")
        return None
    defects.add(f"date: lax {what}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _received_at(values: Iterable[str], defects: _Defects) -> datetime | None:
    """The date the topmost Received: header records: when the hub's own server took the message."""
    for raw in values:
        value = _single_line(_text_from_surrogates(_unfold(raw)))
        if ";" not in value:
            defects.add("date: topmost Received has no date")
            return None
        return _parse_date(value.rsplit(";", 1)[1], defects, "Received")
    return None


# ---- the MIME walk -----------------------------------------------------------------------------------------------

class _Walk:
    """Depth-first walk collecting top-level bodies and every attachment, forwarded ones included."""

    def __init__(self, limits: Limits, defects: _Defects) -> None:
        self.limits = limits
        self.defects = defects
        self.text: list[str] = []
        self.html: list[str] = []
        self.attachments: list[Attachment] = []
        self.parts = 0

    def run(self, msg: Message) -> None:
        # An explicit stack: the stdlib's own walk() recurses, and nesting is chosen by the sender.
        stack: list[tuple[Message, bool, int]] = [(msg, False, 0)]
        while stack:
            part, forwarded, depth = stack.pop()
            self.parts += 1
            if self.parts > _MAX_PARTS:
                self.defects.add("MIME: too many parts, rest skipped")
                return
            if depth > _MAX_DEPTH:
                self.defects.add("MIME: nesting too deep, inner parts skipped")
                continue
            if part is not msg:
                self.defects.add_parser_defects(part)
            children = self._children(part, forwarded, depth)
            if children is not None:
                stack.extend(reversed(children))
                continue
            try:
                self._leaf(part, forwarded)
            except Exception as exc:  # noqa: BLE001 - one broken part must not lose the others
                self.defects.add(f"MIME: unreadable part ({type(exc).__name__})")

    def _children(self, part: Message, forwarded: bool, depth: int) -> list[tuple[Message, bool, int]] | None:
        """Sub-parts to walk, or None when the part is a leaf."""
        ctype = _content_type(part)
        payload = part.get_payload()
        if ctype == "message/rfc822":
            inner = self._forwarded_message(part, payload)
            return [(inner, True, depth + 1)] if inner is not None else []
        if isinstance(payload, list):
            if ctype.startswith("message/"):
                return None  # delivery-status and friends: a block of header fields, kept as one attachment
            return [(child, forwarded, depth + 1) for child in payload if isinstance(child, Message)]
        return None

    def _forwarded_message(self, part: Message, payload: object) -> Message | None:
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        if cte in ("base64", "quoted-printable"):
            # Not allowed by RFC 2046, but some clients do it; compat32 then reads the encoded text as a body.
            inner_text = payload[0].get_payload() if isinstance(payload, list) and payload else payload
            if isinstance(inner_text, str):
                try:
                    data = inner_text.encode("ascii", "surrogateescape")
                    data = base64.b64decode(data) if cte == "base64" else binascii.a2b_qp(data)
                    self.defects.add("MIME: encoded message/rfc822 decoded")
                    return BytesParser(policy=_COMPAT32).parsebytes(data)
                except Exception:  # noqa: BLE001
                    self.defects.add("MIME: unreadable forwarded message")
                    return None
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        return None

    def _leaf(self, part: Message, forwarded: bool) -> None:
        view = _mime_view(part)
        ctype = _content_type(view)
        disposition = _disposition(view)
        filename = _filename(view, self.defects)
        broken_multipart = ctype.startswith("multipart/")
        if broken_multipart:
            # A multipart whose boundary never appears: its raw text is all we have, and may say "attached".
            self.defects.add("MIME: multipart without its boundary read as text")
        if (ctype in ("text/plain", "text/html") or broken_multipart) and not filename and disposition != "attachment":
            if forwarded:
                return  # the forwarded message's own text is not what the sender wrote to us
            data = _payload_bytes(part)
            text, fallback = _decode_bytes(data, _part_charset(view))
            if fallback:
                self.defects.add("body: charset fallback")
            text = text.replace("\r\n", "\n").replace("\r", "\n")
            (self.html if ctype == "text/html" else self.text).append(text)
            return
        payload = _payload_bytes(part)
        dropped = 0
        if len(payload) > self.limits.attachment_bytes:
            self.defects.add(f"attachment {len(self.attachments)} too large: {len(payload)} bytes")
            payload, dropped = b"", len(payload)
        self.attachments.append(Attachment(filename=filename, content_type=ctype, payload=payload,
                                           from_forwarded=forwarded, dropped_size=dropped))


_MIME_HEADERS = ("content-type", "content-disposition")


def _mime_view(part: Message) -> Message:
    """The part itself, or a header-only copy when its MIME headers hold raw 8-bit bytes.

    compat32 turns such values into ``Header`` objects whose text is U+FFFD, so a raw UTF-8 or cp1252 file name
    would come out as question marks; the copy holds the same values decoded by ``_text_from_surrogates``.
    """
    raw = [(name, value) for name, value in part.raw_items() if name.lower() in _MIME_HEADERS]
    if all(isinstance(value, str) and value.isascii() for _, value in raw):
        return part
    view = Message()
    view.set_default_type(part.get_default_type())
    for name, value in raw:
        view[name] = _text_from_surrogates(_unfold(str(value)))
    return view


def _content_type(part: Message) -> str:
    try:
        return _single_line(_text_from_surrogates(part.get_content_type())).lower()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"


def _disposition(part: Message) -> str:
    try:
        value = part.get_content_disposition()
    except Exception:  # noqa: BLE001
        return ""
    return (value or "").strip().lower()


def _part_charset(part: Message) -> str | None:
    try:
        charset = part.get_param("charset")
    except Exception:  # noqa: BLE001
        return None
    if isinstance(charset, tuple):  # RFC 2231 form
        charset = charset[2]
    if not isinstance(charset, str):
        return None
    charset = _text_from_surrogates(charset).strip().strip('"').lower()
    return charset or None


def _payload_bytes(part: Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, list):
        chunks: list[bytes] = []
        for block in payload:
            try:
                chunks.append(block.as_bytes(policy=_COMPAT32))
            except Exception:  # noqa: BLE001
                pass
        return b"\n".join(chunks)
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        data = None
    if isinstance(data, bytes):
        return data
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _filename(part: Message, defects: _Defects) -> str:
    """The decoded file name from Content-Disposition filename, else Content-Type name; "" when none."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        try:
            value = part.get_param(param, header=header)
        except Exception:  # noqa: BLE001
            defects.add("attachment: unreadable file name parameter")
            continue
        if value is None:
            continue
        if isinstance(value, tuple):  # RFC 2231: (charset, language, percent-decoded latin-1 text)
            charset, _language, text = value
            text = email.utils.unquote(text) if isinstance(text, str) else ""
            try:
                data = text.encode("latin-1")
            except UnicodeEncodeError:
                data = text.encode("utf-8", "surrogateescape")
            name, fallback = _decode_bytes(data, _charset_name((charset or "").lower() or None))
            if fallback:
                defects.add("attachment: file name charset fallback")
        else:
            name = _text_from_surrogates(str(value))
            if "=?" in name:
                name = _decode_words(name, defects)
            elif "%" in name and "''" in name:
                # A quoted RFC 2231 value without the star, as a few webmail clients send it.
                charset, _, rest = name.partition("''")
                if re.fullmatch(r"[A-Za-z0-9_.:-]+", charset):
                    data = urllib.parse.unquote_to_bytes(rest)
                    name = _decode_bytes(data, _charset_name(charset.lower()))[0]
        name = _single_line(name).replace("\x00", "").strip()
        if name:
            return name
    return ""

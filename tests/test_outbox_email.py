"""The outbox's e-mails are put together directly (bot.sending.outbox.build_email) rather than through
EmailMessage.set_content and a parse of every header; here they are checked against the e-mails the standard way
makes (``reference_email``, the builder as it was), over rows of every shape: the same headers as a reader sees
them, the same parts with the same types, charsets, file names and contents, as written by the .eml writer and for
SMTP with and without 8BITMIME; no line too long; 7bit output all ASCII; no header injection."""
from __future__ import annotations

import base64
import email
import email.policy
import random
import re
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from types import SimpleNamespace

import pytest

from bot.sending.outbox import _PROTECTED, _one_line, build_email
from bot.sending.smtp import _flatten
from rules.automatic import LOOP_HEADER

NOW = datetime(2024, 6, 28, 9, 0, tzinfo=timezone.utc)


def reference_email(item) -> EmailMessage:
    """The builder before: every header through email.policy.default, bodies through set_content."""
    message = EmailMessage(policy=email.policy.default)
    message["From"] = _one_line(item.from_addr)
    message["To"] = ", ".join(_one_line(a) for a in item.to)
    if item.cc:
        message["Cc"] = ", ".join(_one_line(a) for a in item.cc)
    message["Subject"] = _one_line(item.subject)
    message["Date"] = format_datetime(item.created_at.astimezone(timezone.utc))
    message["Message-ID"] = item.message_id
    if item.in_reply_to:
        message["In-Reply-To"] = _one_line(item.in_reply_to)
    references = item.references or item.in_reply_to
    if references:
        message["References"] = _one_line(references)
    message["Auto-Submitted"] = "auto-replied"
    message[LOOP_HEADER] = _one_line(item.from_addr)
    for name, value in (item.headers or {}).items():
        if name.lower() not in _PROTECTED:
            message[_one_line(name)] = _one_line(str(value))
    message.set_content(item.text)
    if item.html:
        message.add_alternative(item.html, subtype="html")
    for attachment in item.attachments or ():
        maintype, _, subtype = str(attachment.get("content_type", "application/octet-stream")).partition("/")
        message.add_attachment(base64.b64decode(attachment["data"]), maintype=maintype,
                               subtype=subtype or "octet-stream", filename=_one_line(attachment["filename"]))
    return message


NAMES = ["", "Kate Wright", "Zoë Brontë", "Wright, Kate", "O'Brien Mary-Jane", "Dr. K. Wright (Head)",
         "李小龙", "Ana \"Nana\" Ruiz", "A very long display name of a person who has many many names indeed"]
WORDS = ["Application", "received", "–", "Valley", "Primary", "School", "(2023/24)", "Zoë", "naïve", "=?utf-8?q?x?=",
         "Re:", "a" * 90, "Work", "Groups", "—", "✓", "école", "Teaching", "for", "Mastery", ":", ";", ","]


def address(rng: random.Random, n: int) -> str:
    name = rng.choice(NAMES)
    mailbox = f"person{n}.{rng.choice(['office', 'head', 'teacher.one', 'x' * rng.randint(1, 40)])}@school{n}.example.sch.uk"
    if not name:
        return mailbox
    return f'"{name}" <{mailbox}>' if ("," in name or "(" in name) and '"' not in name else f"{name} <{mailbox}>"


def text(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(0, 30)):
        kind = rng.random()
        if kind < 0.1:
            lines.append("")
        elif kind < 0.3:
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 40))))   # too long for a line
        elif kind < 0.35:
            lines.append("Ελληνικά κείμενα " * rng.randint(1, 12))
        elif kind < 0.4:
            lines.append("From the start: --=_ ." + " " * rng.randint(0, 3))
        else:
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))))
    return rng.choice(["\n", "\r\n"]).join(lines) + rng.choice(["", "\n"])


def row(rng: random.Random, n: int) -> SimpleNamespace:
    subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25)))
    attachments = None
    if rng.random() < 0.2:
        attachments = [{"filename": rng.choice(["export.xlsx", "décisions 2024.xlsx", "x" * 100 + ".csv"]),
                        "content_type": rng.choice(["application/vnd.ms-excel", "text/csv", "application"]),
                        "data": base64.b64encode(rng.randbytes(rng.randint(0, 3000))).decode()}]
    headers = {"X-Hubbot-Kind": rng.choice(["acknowledgement", "reminder – ü", "y " * 60]),
               "Subject": "not this one", "Reply-To": address(rng, n)} if rng.random() < 0.5 else {}
    return SimpleNamespace(
        from_addr=address(rng, 0), to=[address(rng, n + i) for i in range(rng.randint(1, 3))],
        cc=[address(rng, n + 10 + i) for i in range(rng.randint(0, 5))], subject=subject,
        created_at=NOW + timedelta(minutes=n), message_id=f"<hubbot.{n:032x}@example.org>",
        in_reply_to=rng.choice([None, f"<in{n}@example.sch.uk>", "<" + "r" * 120 + "@x.example>"]),
        references=rng.choice([None, " ".join(f"<ref{i}@x.example>" for i in range(rng.randint(1, 12)))]),
        headers=headers, text=text(rng), html=rng.choice([None, "<p>" + text(rng) + "</p>"]), attachments=attachments)


def seen(raw: bytes):
    """What a reader sees of an e-mail: its headers (decoded, boundaries left out) and each part's."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    # Leading and trailing white space is not part of a header's value (the standard folding sometimes breaks the
    # line straight after the colon).
    headers = [(name, str(value).strip()) for name, value in message.items()
               if name.lower() not in ("content-type", "content-transfer-encoding", "mime-version")]
    parts = []
    for part in message.walk():
        entry = [part.get_content_type(), part.get_content_charset(), part.get_filename(),
                 part.get_content_disposition()]
        if not part.is_multipart():
            content = part.get_content()
            if isinstance(content, str):
                content = content.replace("\r\n", "\n")   # set_content's choice: LF inside, the writer's linesep out
            entry.append(content)
        parts.append(entry)
        assert not part.defects, (part.defects, raw)
    assert not message.defects, message.defects
    return headers, parts


def lines_of(raw: bytes, linesep: bytes) -> list[bytes]:
    return raw.split(linesep)


@pytest.mark.parametrize("seed", range(4))
def test_the_email_is_the_one_set_content_made(seed):
    rng = random.Random(seed)
    for n in range(30):
        item = row(rng, n)
        new, old = build_email(item), reference_email(item)
        for bcc in (False, True):
            if bcc:
                new["Bcc"], old["Bcc"] = "hub@example.org", "hub@example.org"
            assert seen(new.as_bytes()) == seen(old.as_bytes())
            for cte in ("8bit", "7bit"):
                ours, theirs = _flatten(new, cte_type=cte), _flatten(old, cte_type=cte)
                assert seen(ours) == seen(theirs)
                assert b"\nBcc:" not in ours
                assert max(map(len, lines_of(ours, b"\r\n"))) <= max(78, *map(len, lines_of(theirs, b"\r\n")))
                assert b"\n" not in ours.replace(b"\r\n", b"")        # CRLF only
                if cte == "7bit":
                    assert ours.isascii()
        raw = new.as_bytes()
        head = raw.split(b"\n\n", 1)[0]
        assert max(map(len, head.split(b"\n"))) <= max(78, *map(len, old.as_bytes().split(b"\n\n", 1)[0].split(b"\n")))


def test_plain_headers_are_written_exactly_as_before():
    """Printable ASCII headers, the usual case: the same bytes as before, not only the same meaning."""
    item = SimpleNamespace(from_addr="hubbot for Maths Hub <hub@example.org>", to=["office@school.example.sch.uk"],
                           cc=["head@school.example.sch.uk", "teacher.one@school.example.sch.uk",
                               "teacher.two@school.example.sch.uk"], subject="Application received",
                           created_at=NOW, message_id="<hubbot.1@example.org>", in_reply_to="<in@x.example>",
                           references=None, headers={"X-Hubbot-Kind": "acknowledgement"}, text="Thank you.\n",
                           html=None, attachments=None)
    ours, theirs = build_email(item).as_bytes(), reference_email(item).as_bytes()
    assert ours.split(b"MIME-Version")[0] == theirs.split(b"Content-Type")[0]
    assert b"Cc: head@school.example.sch.uk, teacher.one@school.example.sch.uk,\n teacher.two@" in ours


def test_line_breaks_in_a_header_are_refused_not_written():
    item = row(random.Random(1), 1)
    item.message_id = "<a@b>\r\nBcc: evil@example.com"
    with pytest.raises(ValueError):
        build_email(item)
    item = row(random.Random(1), 1)
    item.subject = "Hi\r\nBcc: evil@example.com"
    message = build_email(item)
    assert message["Bcc"] is None and b"\nBcc:" not in message.as_bytes()


def test_boundaries_are_in_no_part():
    item = row(random.Random(2), 2)
    item.html = "<p>x</p>"
    message = build_email(item)
    boundary = message.get_boundary()
    assert boundary and re.fullmatch(r"=_[0-9a-f]{24}", boundary)
    assert all(boundary not in part.get_payload() for part in message.walk() if not part.is_multipart())

"""Build test e-mails as bytes, shaped the way real mail clients write them.

``build_email`` makes an ordinary message from a school: plain and HTML bodies, attachments whose file names are
encoded the RFC 2231 way (Thunderbird, Apple Mail), the RFC 2047 way (Outlook, Gmail) or raw, a UTF-8 or
Windows-1252 body and subject, an optional topmost ``Received:`` header, and optionally the attachments wrapped in
a forwarded ``message/rfc822``. The canned builders make the mail the bot must recognise: out-of-office replies,
delivery-status bounces, mailing-list posts, questions and "please find attached" with nothing attached. Test code:
the standard library's ``EmailMessage`` and plain strings, kept readable rather than clever.
"""
from __future__ import annotations

import base64
import email.policy
import email.utils
import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from email.header import Header
from email.message import EmailMessage, MIMEPart
from typing import Literal

__all__ = [
    "build_email", "out_of_office", "bounce_report", "mailing_list_post", "question_email",
    "forgot_attachment_email", "DOCX_TYPE", "DEFAULT_DATE",
]

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
DEFAULT_DATE = datetime(2024, 6, 20, 10, 15, tzinfo=timezone(timedelta(hours=1)))

# Headers written exactly as given (no re-folding), so tests control the bytes on the wire.
_POLICY = email.policy.SMTP.clone(refold_source="none")

FilenameEncoding = Literal["rfc2231", "rfc2047", "plain"]
Charset = Literal["utf-8", "windows-1252"]


def build_email(
    *,
    sender: str,
    to: str | Sequence[str],
    cc: Sequence[str] = (),
    subject: str,
    body_text: str,
    body_html: str | None = None,
    attachments: Iterable[tuple[str, bytes, str]] = (),
    date: datetime | None = None,
    received: datetime | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    extra_headers: Iterable[tuple[str, str]] = (),
    filename_encoding: FilenameEncoding = "rfc2231",
    charset: Charset = "utf-8",
    forward: bool = False,
    display_names: bool = True,
    upper_case_addresses: bool = False,
) -> bytes:
    """One e-mail as bytes. Addresses are "addr" or "Display Name <addr>"; ``attachments`` are
    (filename, bytes, content type). ``extra_headers`` are written verbatim, after the standard ones."""
    date = date or DEFAULT_DATE
    attachments = list(attachments)
    recipients = [to] if isinstance(to, str) else list(to)
    fmt = _AddressFormat(display_names, upper_case_addresses, charset)

    msg = EmailMessage(policy=_POLICY)
    if received is not None:
        # Topmost: the hub's server, written last; below it an earlier hop at the school's provider.
        msg.set_raw("Received", _received_line("mx.hub.example", "mail.school.example", received))
        msg.set_raw("Received", _received_line("mail.school.example", "client.school.example",
                                                received - timedelta(seconds=3)))
    msg.set_raw("From", fmt.header([sender]))
    msg.set_raw("To", fmt.header(recipients))
    if cc:
        msg.set_raw("Cc", fmt.header(list(cc)))
    msg.set_raw("Subject", _encode_text(subject, charset))
    msg.set_raw("Date", email.utils.format_datetime(date))
    content = b"".join(data for _, data, _ in attachments) + body_text.encode("utf-8", "replace")
    msg.set_raw("Message-ID", message_id or _message_id(sender, subject, date, content))
    if in_reply_to:
        msg.set_raw("In-Reply-To", in_reply_to)
    if references:
        msg.set_raw("References", " ".join(references))
    msg.set_raw("MIME-Version", "1.0")
    for name, value in extra_headers:
        msg.set_raw(name, value)

    attachments = list(attachments)
    if forward and attachments:
        inner = build_email(
            sender=sender, to=recipients, cc=cc, subject=subject, body_text=body_text, attachments=attachments,
            date=date - timedelta(hours=2), filename_encoding=filename_encoding, charset=charset,
            display_names=display_names, upper_case_addresses=upper_case_addresses,
        )
        forwarded = MIMEPart(policy=_POLICY)
        forwarded.set_raw("Content-Type", 'message/rfc822; name="Forwarded message.eml"')
        forwarded.set_raw("Content-Disposition", 'attachment; filename="Forwarded message.eml"')
        forwarded.set_payload([email.message_from_bytes(inner, policy=_POLICY)])
        parts = [forwarded]
    else:
        parts = [_attachment_part(name, data, ctype, filename_encoding, charset) for name, data, ctype in attachments]

    body = _body_part(body_text, body_html, charset)
    if parts:
        msg.set_raw("Content-Type", f'multipart/mixed; boundary="{_boundary("mixed", subject + date.isoformat())}"')
        msg.set_payload([body, *parts])
    else:
        for name, value in body.raw_items():
            msg.set_raw(name, value)
        msg.set_payload(body.get_payload())
    return msg.as_bytes(policy=_POLICY)


# ---- canned messages ---------------------------------------------------------------------------------------------

def out_of_office(
    *,
    sender: str = "Mrs Helen O'Neill <h.oneill@valley.example.sch.uk>",
    to: str = "admin@hub.example.org",
    original_subject: str = "Your application to the Maths Hub",
    style: Literal["exchange", "gmail", "x-autoreply", "subject-only"] = "exchange",
    date: datetime | None = None,
) -> bytes:
    """An out-of-office reply as Exchange, Gmail or an old vacation program writes it; "subject-only" carries no
    header at all, only the "Automatic reply:" subject."""
    headers: list[tuple[str, str]] = []
    subject = f"Automatic reply: {original_subject}"
    if style == "exchange":
        headers = [("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")]
    elif style == "gmail":
        subject = f"Out of Office: {original_subject}"
        headers = [("Auto-Submitted", "auto-replied"), ("Precedence", "bulk")]
    elif style == "x-autoreply":
        subject = f"Re: {original_subject}"
        headers = [("X-Autoreply", "yes")]
    return build_email(
        sender=sender, to=to, subject=subject, date=date, extra_headers=headers,
        body_text="I am out of the office until Monday 1st July with limited access to e-mail.",
    )


def bounce_report(
    *,
    original: bytes | None = None,
    failed_recipient: str = "nobody@valley.example.sch.uk",
    sender: str = "Mail Delivery System <MAILER-DAEMON@mx.hub.example>",
    to: str = "admin@hub.example.org",
    return_path: str | None = "<>",
    auto_submitted: bool = True,
    date: datetime | None = None,
) -> bytes:
    """A real RFC 3464 delivery status notification: multipart/report with a human part, a
    message/delivery-status part and the returned message's headers."""
    date = date or DEFAULT_DATE
    original = original or question_email(sender="admin@hub.example.org", to=failed_recipient)
    original_headers = original.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")

    msg = EmailMessage(policy=_POLICY)
    if return_path is not None:
        msg.set_raw("Return-Path", return_path)
    msg.set_raw("From", sender)
    msg.set_raw("To", to)
    msg.set_raw("Subject", "Undelivered Mail Returned to Sender")
    msg.set_raw("Date", email.utils.format_datetime(date))
    msg.set_raw("Message-ID", _message_id("mailer-daemon@mx.hub.example", failed_recipient, date))
    if auto_submitted:
        msg.set_raw("Auto-Submitted", "auto-replied")
    msg.set_raw("MIME-Version", "1.0")
    msg.set_raw("Content-Type", 'multipart/report; report-type=delivery-status; boundary="dsn-boundary-1"')

    human = MIMEPart(policy=_POLICY)
    human.set_raw("Content-Description", "Notification")
    human.set_raw("Content-Type", "text/plain; charset=us-ascii")
    human.set_payload(
        "This is the mail system at host mx.hub.example.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        f"<{failed_recipient}>: host mx.school.example said: 550 5.1.1 User unknown\r\n"
    )
    status = MIMEPart(policy=_POLICY)
    status.set_raw("Content-Description", "Delivery report")
    status.set_raw("Content-Type", "message/delivery-status")
    # A delivery-status body is blocks of header fields: one per message, then one per recipient.
    status.set_payload([
        email.message_from_string(
            f"Reporting-MTA: dns; mx.hub.example\nArrival-Date: {email.utils.format_datetime(date)}\n\n",
            policy=_POLICY,
        ),
        email.message_from_string(
            f"Final-Recipient: rfc822; {failed_recipient}\nAction: failed\nStatus: 5.1.1\n"
            "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n",
            policy=_POLICY,
        ),
    ])
    returned = MIMEPart(policy=_POLICY)
    returned.set_raw("Content-Description", "Undelivered Message Headers")
    returned.set_raw("Content-Type", "text/rfc822-headers")
    returned.set_payload(original_headers + "\r\n")
    msg.set_payload([human, status, returned])
    return msg.as_bytes(policy=_POLICY)


def mailing_list_post(
    *,
    sender: str = "Maths News <news@lists.example.org>",
    to: str = "admin@hub.example.org",
    list_id: str = "Maths News <maths-news.lists.example.org>",
    precedence: str | None = "list",
    date: datetime | None = None,
) -> bytes:
    """A post from a mailing list: List-Id, List-Unsubscribe and (optionally) Precedence."""
    headers = [
        ("List-Id", list_id),
        ("List-Unsubscribe", "<mailto:leave-maths-news@lists.example.org>"),
    ]
    if precedence:
        headers.append(("Precedence", precedence))
    return build_email(
        sender=sender, to=to, subject="This month in maths education", date=date, extra_headers=headers,
        body_text="Welcome to this month's newsletter.",
    )


def question_email(
    *,
    sender: str = "Kate Wright <k.wright@valley.example.sch.uk>",
    to: str = "admin@hub.example.org",
    subject: str = "Question about the Work Group",
    date: datetime | None = None,
    received: datetime | None = None,
) -> bytes:
    """A person asking something: no attachment, nothing said about one."""
    return build_email(
        sender=sender, to=to, subject=subject, date=date, received=received,
        body_text="Hello,\n\nCould you tell me whether two teachers from the same school can join the Work "
                  "Group, or only one?\n\nMany thanks,\nKate Wright\nValley School",
    )


def forgot_attachment_email(
    *,
    sender: str = "Kate Wright <k.wright@valley.example.sch.uk>",
    to: str = "admin@hub.example.org",
    cc: Sequence[str] = ("Mrs Helen O'Neill <h.oneill@valley.example.sch.uk>",),
    subject: str = "Application",
    date: datetime | None = None,
) -> bytes:
    """"Please find attached our application" with nothing attached."""
    return build_email(
        sender=sender, to=to, cc=cc, subject=subject, date=date,
        body_text="Dear Maths Hub,\n\nPlease find attached our application for the Work Group.\n\n"
                  "Kind regards,\nKate Wright",
    )


# ---- pieces ------------------------------------------------------------------------------------------------------

class _AddressFormat:
    def __init__(self, display_names: bool, upper_case: bool, charset: str) -> None:
        self.display_names = display_names
        self.upper_case = upper_case
        self.charset = charset

    def one(self, value: str) -> str:
        display, addr = email.utils.parseaddr(value)
        if self.upper_case:
            addr = addr.upper()
        if not self.display_names:
            return addr
        if not display:
            # Mail clients fill the name from the address book; "k.wright" becomes "K Wright".
            display = " ".join(p.capitalize() for p in addr.split("@")[0].replace("_", ".").split(".") if p)
        if display.isascii():
            needs_quotes = any(c in display for c in '()<>[]:;@\\,."\'')
            shown = '"' + display.replace('"', '\\"') + '"' if needs_quotes else display
        else:
            shown = _encode_text(display, self.charset)
        return f"{shown} <{addr}>"

    def header(self, values: Sequence[str]) -> str:
        return ",\r\n ".join(self.one(v) for v in values)


def _encode_text(text: str, charset: str) -> str:
    """ASCII as it is; anything else as RFC 2047 encoded words in the given charset, as Outlook writes them."""
    if text.isascii():
        return text
    return Header(text, charset).encode(linesep="\r\n")


def _body_part(text: str, html: str | None, charset: str) -> MIMEPart:
    plain = MIMEPart(policy=_POLICY)
    plain.set_content(text, charset=charset, cte="quoted-printable" if not text.isascii() else None)
    if html is None:
        return plain
    rich = MIMEPart(policy=_POLICY)
    rich.set_content(html, subtype="html", charset=charset, cte="quoted-printable" if not html.isascii() else None)
    alternative = MIMEPart(policy=_POLICY)
    alternative.set_raw("Content-Type", f'multipart/alternative; boundary="{_boundary("alt", text)}"')
    alternative.set_payload([plain, rich])
    return alternative


def _attachment_part(
    filename: str, data: bytes, content_type: str, encoding: FilenameEncoding, charset: str
) -> MIMEPart:
    part = MIMEPart(policy=_POLICY)
    if encoding == "rfc2231":
        # The stdlib writes RFC 2231 (with filename*0*= continuations when long) exactly as Thunderbird does.
        maintype, _, subtype = content_type.partition("/")
        part.set_content(data, maintype=maintype, subtype=subtype, disposition="attachment", filename=filename)
        return part
    if encoding == "rfc2047":
        # Outlook and Gmail: an encoded word inside the quotes, in both name= and filename=.
        quoted = Header(filename, "utf-8").encode(linesep="\r\n") if not filename.isascii() else filename
    else:
        # Raw 8-bit bytes in the header, as old or careless clients send them; surrogate escapes carry the bytes
        # through the generator untouched.
        quoted = filename.encode(charset).decode("ascii", "surrogateescape")
    part.set_raw("Content-Type", f'{content_type}; name="{quoted}"')
    part.set_raw("Content-Disposition", f'attachment; filename="{quoted}"')
    part.set_raw("Content-Transfer-Encoding", "base64")
    encoded = base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")
    part.set_payload(encoded)
    return part


def _received_line(by: str, from_host: str, when: datetime) -> str:
    return (f"from {from_host} ({from_host} [192.0.2.25])\r\n\tby {by} (Postfix) with ESMTPS id 4XyZ1a2b3c\r\n"
            f"\tfor <admin@hub.example.org>; {email.utils.format_datetime(when)}")


def _message_id(sender: str, subject: str, date: datetime, content: bytes = b"") -> str:
    # Deterministic (tests can predict it) but different for different content, as real Message-IDs are.
    seed = f"{sender}|{subject}|{date.isoformat()}".encode() + hashlib.sha1(content).digest()
    digest = hashlib.sha1(seed).hexdigest()[:20]
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "example.org"
    return f"<{digest}@{domain}>"


def _boundary(kind: str, seed: str) -> str:
    return f"----=_{kind}_{hashlib.sha1(seed.encode()).hexdigest()[:16]}"

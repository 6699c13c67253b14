"""Build the reply a verdict calls for: who it goes to, and its subject, text and HTML from ``templates/``.

Replies go to the sender, copied to the signatories whose addresses were already on the school's e-mail: an
address that appears only on the form is never mailed (the bot must not be a way to send mail to anyone a form
names), and the reply repeats names and addresses from the form, which are personal data. Nothing is sent for
``ignored`` and ``not_application``. Threading headers point at the school's message.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
import re
from itertools import groupby
from typing import Any

from parsers.safe_text import ECHO_LIMIT, one_line
from parsers.types import ParsedEmail
from rules.checks import HubView
from rules.definitions import ProgrammeDefinition
from rules.verdict import Correspondence, Reply, Status, Verdict
from templates import EmailKind, render_email

_KIND_FOR_STATUS = {
    Status.COMPLETE: EmailKind.ACKNOWLEDGEMENT,
    Status.INCOMPLETE: EmailKind.MISSING_INFORMATION,
    Status.UNREADABLE: EmailKind.UNREADABLE,
    Status.NO_FORM: EmailKind.MISSING_ATTACHMENT,
}


def correspondence(email: ParsedEmail) -> Correspondence:
    """What a reply to ``email`` needs to know of it."""
    return Correspondence(
        sender=email.sender.email if email.sender and email.sender.email else None,
        message_id=email.message_id, subject=email.subject, references=tuple(email.references),
        addressed_to=tuple(a.email for a in (*email.delivered_to, *email.to, *email.cc) if a.email),
        correspondents=tuple(sorted(email.all_recipients_and_sender())))


def _clean(value: str) -> str:
    # One line, no control characters or escape sequences (parsers.safe_text); cut where it is echoed.
    return one_line(value, None)


def _hub_identity(mail: Correspondence, hub: HubView | None,
                  programme: ProgrammeDefinition | None) -> tuple[str, str]:
    if hub is not None:
        received_by = [a for a in mail.addressed_to if a in hub.addresses]
        return hub.name, received_by[0] if received_by else sorted(hub.addresses)[0]
    if programme is not None:
        return programme.hub.name, programme.hub.address
    return "The Maths Hub team", mail.addressed_to[0] if mail.addressed_to else ""


def issues_by_section(issues: Iterable[Any], section_order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Field problems (anything with ``section``, ``label`` and ``reason``) grouped under their section heading in
    the order of the form, as every e-mail listing them (replies, reminders) presents them."""
    ordered = sorted(issues, key=lambda i: section_order.index(i.section) if i.section in section_order else 0)
    return [{"name": name, "issues": [{"label": _clean(i.label), "reason": i.reason} for i in group]}
            for name, group in groupby(ordered, key=lambda i: i.section)]


def build_reply(verdict: Verdict, mail: Correspondence, *, programme: ProgrammeDefinition | None,
                hub: HubView | None, deadline: date | None) -> Reply | None:
    """The reply ``verdict`` calls for to the e-mail ``mail`` describes, or None when it calls for none."""
    kind = _KIND_FOR_STATUS.get(verdict.status)
    if kind is None or not mail.sender:
        return None
    hub_name, hub_address = _hub_identity(mail, hub, programme)
    hub_addresses = hub.addresses if hub else frozenset({hub_address})
    sender = mail.sender
    on_the_email = set(mail.correspondents)
    cc: list[str] = []
    for s in verdict.signatories:
        if (s.email and s.email in on_the_email and s.email != sender and s.email not in hub_addresses
                and s.email not in cc):
            cc.append(s.email)
    context = {
        "hub_name": hub_name,
        "hub_address": hub_address,
        "programme_title": programme.title if programme else "",
        "school_name": _clean(verdict.school_name or ""),
        "original_subject": one_line(mail.subject, ECHO_LIMIT),
        "attachment": one_line(verdict.attachment, ECHO_LIMIT),
        "problems": list(verdict.problems),
        "sections": issues_by_section(verdict.issues, programme.sections if programme else ()),
        "not_copied": [s for s in verdict.signatories if not s.copied and s.email],
        "late": verdict.late,
        "deadline": f"{deadline:%-d %B %Y}" if deadline else "",
        "other_files": [one_line(f, ECHO_LIMIT) for f in verdict.other_files[:10]],
    }
    rendered = render_email(kind, context)
    in_reply_to, references = threading(mail)
    return Reply(kind=kind, to=(sender,), cc=tuple(cc), subject=rendered.subject, text=rendered.text,
                 html=rendered.html, in_reply_to=in_reply_to, references=references, from_address=hub_address)


# A Message-ID we may repeat in In-Reply-To/References: msg-id syntax, printable, short enough for a header line.
_MSG_ID = re.compile(r"^<[!-;=?-~]{1,250}>$")


def threading(mail: Correspondence) -> tuple[str, tuple[str, ...]]:
    """In-Reply-To and References for a reply to ``mail``: only well-formed Message-IDs (one holding control
    characters, or thousands of characters, would break the header or the outbox row; the reply then simply
    starts a new thread)."""
    ok = [m for m in (*mail.references, mail.message_id) if m and _MSG_ID.match(m)]
    in_reply_to = mail.message_id if mail.message_id and _MSG_ID.match(mail.message_id) else ""
    return in_reply_to, tuple(ok[-10:])


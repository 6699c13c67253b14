"""Build the reply a verdict calls for: who it goes to, and its subject, text and HTML from ``templates/``.

Replies go to the sender, copied to the signatories whose addresses were already on the school's e-mail: an
address that appears only on the form is never mailed (the bot must not be a way to send mail to anyone a form
names), and the reply repeats names and addresses from the form, which are personal data. Nothing is sent for
``ignored`` and ``not_application`` (except a form for another hub's programme, which gets ``wrong_hub``). Nothing
the bot is unsure of is ever named: a ``review`` gets ``received``, and a ``missing_information`` reply lists only
what is certainly missing or invalid, saying the team will look over the rest when something else was unsure.
Labels are named as printed on the school's form and the programme by the year of the deadline in force. Threading
headers point at the school's message.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date
from itertools import groupby
from typing import Any

from parsers.safe_text import ECHO_LIMIT, one_line
from parsers.types import ParsedEmail
from rules.calendar import title_in_force
from rules.checks import HubView
from rules.definitions import ProgrammeDefinition
from rules.labels import clean_label
from rules.outcomes import Announcement
from rules.verdict import Correspondence, FlagCode, IssueKind, Reply, Status, Verdict
from templates import EmailKind, render_email

_KIND_FOR_STATUS = {
    Status.COMPLETE: EmailKind.ACKNOWLEDGEMENT,
    Status.INCOMPLETE: EmailKind.MISSING_INFORMATION,
    Status.UNREADABLE: EmailKind.UNREADABLE,
    Status.NO_FORM: EmailKind.MISSING_ATTACHMENT,
    Status.REVIEW: EmailKind.RECEIVED,
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


VALUE_SHOWN_CHARS = 80


def shown_value(value: object) -> str:
    """What the bot read, as a reply quotes it back: one line, a long statement cut short."""
    text = _clean(str(value or ""))
    return text if len(text) <= VALUE_SHOWN_CHARS else text[:VALUE_SHOWN_CHARS - 1].rstrip() + "…"


def issues_by_section(issues: Iterable[Any], section_order: Sequence[str] = (),
                      values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Field problems (anything with ``section``, ``label`` and ``reason``) grouped under their section heading in
    the order of the form, as every e-mail listing them (replies, reminders) presents them. An invalid answer's
    line carries the value the bot read (from the issue's own ``value``, or ``values`` by field id), so the school
    sees what to correct ("0121 496 0000 ext")."""
    def value(issue: Any) -> str:
        if getattr(issue, "kind", None) is IssueKind.MISSING or getattr(issue, "missing", False):
            return ""
        found = getattr(issue, "value", None)
        if found is None and values is not None and hasattr(issue, "field"):
            found = values.get(issue.field)
        return shown_value(found)

    ordered = sorted(issues, key=lambda i: section_order.index(i.section) if i.section in section_order else 0)
    return [{"name": name, "issues": [{"label": clean_label(i.label), "reason": i.reason, "value": value(i)}
                                      for i in group]}
            for name, group in groupby(ordered, key=lambda i: i.section)]


def reply_kind(verdict: Verdict) -> EmailKind | None:
    """The reply a verdict calls for, or None. A form for another hub's programme is ``not_application`` (it is
    not this hub's application) flagged ``wrong_hub``: it gets the ``wrong_hub`` reply; a request to withdraw gets a
    short receipt."""
    if verdict.has_flag(FlagCode.WITHDRAWAL):
        return EmailKind.WITHDRAWAL_RECEIVED
    if verdict.status is Status.NOT_APPLICATION and verdict.programme and verdict.has_flag(FlagCode.WRONG_HUB):
        return EmailKind.WRONG_HUB
    return _KIND_FOR_STATUS.get(verdict.status)


def build_reply(verdict: Verdict, mail: Correspondence, *, programme: ProgrammeDefinition | None,
                hub: HubView | None, deadline: date | None, next_date: Announcement | None = None,
                templates_dir: str | None = None, school_name: str | None = None,
                runs_it: tuple[str, str] | None = None) -> Reply | None:
    """The reply ``verdict`` calls for to the e-mail ``mail`` describes, or None when it calls for none.
    ``deadline`` is the one in force for the hub; ``next_date`` the shortlist or outcome date an acknowledgement
    announces; ``school_name`` names the school when the verdict itself has none (a withdrawal request);
    ``runs_it`` the (name, address) of the hub that runs the programme, for a ``wrong_hub`` reply (else the
    programme's own hub)."""
    kind = reply_kind(verdict)
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
    other_hub_name, other_hub_address = runs_it or ((programme.hub.name, programme.hub.address) if programme
                                                   else ("", ""))
    context = {
        "hub_name": hub_name,
        "hub_address": hub_address,
        "programme_title": title_in_force(programme, deadline) if programme else "",
        "other_hub_name": other_hub_name,
        "other_hub_address": other_hub_address,
        "also_checking": bool(verdict.unsure),
        "school_name": _clean(verdict.school_name or school_name or ""),
        "original_subject": one_line(mail.subject, ECHO_LIMIT),
        "attachment": one_line(verdict.attachment, ECHO_LIMIT),
        "problems": list(verdict.problems),
        "sections": issues_by_section(verdict.issues, programme.sections if programme else (), verdict.fields),
        "not_copied": [s for s in verdict.signatories if s.known and not s.copied and s.email],
        "late": verdict.late,
        "deadline": f"{deadline:%-d %B %Y}" if deadline else "",
        "next_date": f"{next_date.day:%-d %B %Y}" if next_date else "",
        "next_what": next_date.what if next_date else "",
        "other_files": [one_line(f, ECHO_LIMIT) for f in verdict.other_files[:10]],
    }
    rendered = render_email(kind, context, templates_dir=templates_dir)
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



def staff_reply(kind: EmailKind, mail: Correspondence, *, hub: HubView | None, context: dict[str, Any],
                templates_dir: str | None = None) -> Reply:
    """An answer to a hub staff member's own e-mail (their decisions file): to them alone, threaded, from the hub
    address they wrote to."""
    hub_name, hub_address = _hub_identity(mail, hub, None)
    rendered = render_email(kind, {"hub_name": hub_name, "hub_address": hub_address, **context},
                            templates_dir=templates_dir)
    references = tuple(r for r in (*mail.references, mail.message_id) if r)
    return Reply(kind=kind, to=(mail.sender or "",), cc=(), subject=rendered.subject, text=rendered.text,
                 html=rendered.html, in_reply_to=mail.message_id, references=references[-10:],
                 from_address=hub_address)


_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "rev", "revd",
                     "reverend", "fr", "father", "sister"})


def greeting_name(name: str | None) -> str:
    """How to greet a person named on a form, as a letter would: a title with the surname ("Mr Sam Reid" is
    greeted "Mr Reid"; a title typed twice counts once), or the name as written when it has no title; "" when
    there is no name (the template then greets "colleague")."""
    words = _clean(name or "").split()
    titles = []
    while words and words[0].lower().rstrip(".") in _TITLES:
        titles.append(words.pop(0))
    if not words:
        return ""
    if not titles:
        return " ".join(words)
    return f"{titles[0]} {words[-1]}"

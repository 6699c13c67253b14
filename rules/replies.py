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

from collections.abc import Iterable, Sequence
from datetime import date
from itertools import groupby
from typing import Any

from parsers.types import ParsedEmail
from rules.calendar import title_in_force
from rules.checks import HubView
from rules.definitions import ProgrammeDefinition
from rules.labels import clean_label
from rules.verdict import Correspondence, FlagCode, Reply, Status, Verdict
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
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


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
    return [{"name": name, "issues": [{"label": clean_label(i.label), "reason": i.reason} for i in group]}
            for name, group in groupby(ordered, key=lambda i: i.section)]


def reply_kind(verdict: Verdict) -> EmailKind | None:
    """The reply a verdict calls for, or None. A form for another hub's programme is ``not_application`` (it is
    not this hub's application) flagged ``wrong_hub``: it gets the ``wrong_hub`` reply."""
    if verdict.status is Status.NOT_APPLICATION and verdict.programme and verdict.has_flag(FlagCode.WRONG_HUB):
        return EmailKind.WRONG_HUB
    return _KIND_FOR_STATUS.get(verdict.status)


def build_reply(verdict: Verdict, mail: Correspondence, *, programme: ProgrammeDefinition | None,
                hub: HubView | None, deadline: date | None, runs_it: tuple[str, str] | None = None) -> Reply | None:
    """The reply ``verdict`` calls for to the e-mail ``mail`` describes, or None when it calls for none.
    ``runs_it``: the (name, address) of the hub that runs the programme, for a ``wrong_hub`` reply (else the
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
        "school_name": _clean(verdict.school_name or ""),
        "original_subject": _clean(mail.subject)[:120],
        "attachment": _clean(verdict.attachment or ""),
        "problems": list(verdict.problems),
        "sections": issues_by_section(verdict.issues, programme.sections if programme else ()),
        "not_copied": [s for s in verdict.signatories if s.known and not s.copied and s.email],
        "late": verdict.late,
        "deadline": f"{deadline:%-d %B %Y}" if deadline else "",
        "other_files": [_clean(f)[:120] for f in verdict.other_files[:10]],
    }
    rendered = render_email(kind, context)
    references = tuple(r for r in (*mail.references, mail.message_id) if r)
    return Reply(kind=kind, to=(sender,), cc=tuple(cc), subject=rendered.subject, text=rendered.text,
                 html=rendered.html, in_reply_to=mail.message_id, references=references[-10:],
                 from_address=hub_address)


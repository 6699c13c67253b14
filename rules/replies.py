"""Build the reply a verdict calls for: who it goes to, and its subject, text and HTML from ``templates/``.

Replies go to the sender, copied to the signatories' addresses as written on the form (never to any other
address: the reply repeats names and addresses from the form, which are personal data); a ``received`` or
``wrong_hub`` reply, which names nothing from the form, is copied only to signatories who were on the school's
e-mail. Nothing is sent for ``ignored`` and ``not_application`` (except a form for another hub's programme, which
gets ``wrong_hub``). Nothing the bot is unsure of is ever named: a ``review`` gets ``received``, and a
``missing_information`` reply lists only what is certainly missing or invalid, saying the team will look over the
rest when something else was unsure. Labels are named as printed on the school's form and the programme by the
year of the deadline in force. Threading headers point at the school's message.
"""
from __future__ import annotations

from datetime import date
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any

from parsers.types import ParsedEmail
from rules.calendar import title_in_force
from rules.checks import HubView
from rules.definitions import ProgrammeDefinition
from rules.labels import clean_label
from rules.verdict import FlagCode, Reply, ReplyKind, Status, Verdict
from templates import render_email

_KIND_FOR_STATUS = {
    Status.COMPLETE: ReplyKind.ACKNOWLEDGEMENT,
    Status.INCOMPLETE: ReplyKind.MISSING_INFORMATION,
    Status.UNREADABLE: ReplyKind.UNREADABLE,
    Status.NO_FORM: ReplyKind.MISSING_ATTACHMENT,
    Status.REVIEW: ReplyKind.RECEIVED,
}


def _clean(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def _hub_identity(email: ParsedEmail, hub: HubView | None, programme: ProgrammeDefinition | None) -> tuple[str, str]:
    if hub is not None:
        received_by = [a.email for a in (*email.delivered_to, *email.to, *email.cc) if a.email in hub.addresses]
        return hub.name, received_by[0] if received_by else sorted(hub.addresses)[0]
    if programme is not None:
        return programme.hub.name, programme.hub.address
    first_to = email.to[0].email if email.to else ""
    return "The Maths Hub team", first_to


def issues_by_section(issues: Iterable[Any], section_order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Field problems (anything with ``section``, ``label`` and ``reason``) grouped under their section heading in
    the order of the form, as every e-mail listing them (replies, reminders) presents them."""
    ordered = sorted(issues, key=lambda i: section_order.index(i.section) if i.section in section_order else 0)
    return [{"name": name, "issues": [{"label": clean_label(i.label), "reason": i.reason} for i in group]}
            for name, group in groupby(ordered, key=lambda i: i.section)]


def reply_kind(verdict: Verdict) -> ReplyKind | None:
    """The reply a verdict calls for, or None. A form for another hub's programme is ``not_application`` (it is
    not this hub's application) flagged ``wrong_hub``: it gets the ``wrong_hub`` reply."""
    if verdict.status is Status.NOT_APPLICATION and verdict.programme and verdict.has_flag(FlagCode.WRONG_HUB):
        return ReplyKind.WRONG_HUB
    return _KIND_FOR_STATUS.get(verdict.status)


def build_reply(verdict: Verdict, email: ParsedEmail, *, programme: ProgrammeDefinition | None,
                hub: HubView | None, deadline: date | None, other_files: tuple[str, ...] = (),
                runs_it: tuple[str, str] | None = None) -> Reply | None:
    """The reply ``verdict`` calls for. ``runs_it``: the (name, address) of the hub that runs the programme, for a
    ``wrong_hub`` reply (else the programme's own hub)."""
    kind = reply_kind(verdict)
    if kind is None or email.sender is None or not email.sender.email:
        return None
    hub_name, hub_address = _hub_identity(email, hub, programme)
    hub_addresses = hub.addresses if hub else frozenset({hub_address})
    sender = email.sender.email
    cc: list[str] = []
    # A reply that names nothing from the form goes only to people who were on the school's e-mail.
    on_email_only = kind in (ReplyKind.RECEIVED, ReplyKind.WRONG_HUB)
    for s in verdict.signatories:
        if on_email_only and not (s.known and s.copied):
            continue
        if s.email and s.email != sender and s.email not in hub_addresses and s.email not in cc:
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
        "original_subject": _clean(email.subject)[:120],
        "attachment": _clean(verdict.attachment or ""),
        "problems": list(verdict.problems),
        "sections": issues_by_section(verdict.issues, programme.sections if programme else ()),
        "not_copied": [s for s in verdict.signatories if s.known and not s.copied and s.email],
        "late": verdict.late,
        "deadline": f"{deadline:%-d %B %Y}" if deadline else "",
        "other_files": [_clean(f) for f in other_files],
    }
    rendered = render_email(kind.value, context)
    references = tuple(r for r in (*email.references, email.message_id) if r)
    return Reply(kind=kind, to=(sender,), cc=tuple(cc), subject=rendered.subject, text=rendered.text,
                 html=rendered.html, in_reply_to=email.message_id, references=references[-10:],
                 from_address=hub_address)


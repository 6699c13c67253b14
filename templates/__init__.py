"""Every e-mail hubbot sends, as a template trio: ``<kind>.subject.j2``, ``<kind>.txt.j2`` and ``<kind>.html.j2``,
rendered by one function, ``render_email``, at queue time. ``EmailKind`` names every kind there is (replies to
schools, reminders, staff e-mails): a new e-mail is a member here, a template trio, and the code that queues it.
The HTML environment autoescapes; none of them may use a value that was not handed in, so a typo in a template
fails loudly in tests instead of sending a blank."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

import jinja2


class EmailKind(StrEnum):
    """Every e-mail the bot sends; the value is the template trio's name and the outbox row's ``kind``."""

    # Replies to the e-mail a school sent (the verdict's reply).
    ACKNOWLEDGEMENT = "acknowledgement"
    MISSING_INFORMATION = "missing_information"
    UNREADABLE = "unreadable"
    MISSING_ATTACHMENT = "missing_attachment"
    # Reminders, queued by the calendar.
    REMINDER = "reminder"
    SIGNATORY_REMINDER = "signatory_reminder"
    # To hub staff.
    STAFF_NOTICE = "staff_notice"
    DIGEST = "digest"

    @property
    def is_reply(self) -> bool:
        """An answer to one received e-mail (counted against the per-address daily cap)."""
        return self in _REPLIES


_REPLIES = frozenset({EmailKind.ACKNOWLEDGEMENT, EmailKind.MISSING_INFORMATION, EmailKind.UNREADABLE,
                      EmailKind.MISSING_ATTACHMENT})


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@cache
def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    loader = jinja2.PackageLoader("templates", "")
    common = dict(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                  keep_trailing_newline=False)
    return jinja2.Environment(autoescape=False, **common), jinja2.Environment(autoescape=True, **common)


def render_subject(kind: EmailKind, context: dict[str, Any]) -> str:
    """The subject alone of one e-mail of ``kind`` (a list of what would be sent needs no bodies)."""
    plain, _ = _environments()
    subject = plain.get_template(f"{EmailKind(kind).value}.subject.j2").render(context)
    # A subject is one header line: nothing a school typed may break it into two.
    return " ".join(subject.split())


def render_email(kind: EmailKind, context: dict[str, Any]) -> RenderedEmail:
    """The subject, text and HTML of one e-mail of ``kind`` from its template trio and ``context``."""
    name = EmailKind(kind).value
    plain, html = _environments()
    subject = render_subject(kind, context)
    return RenderedEmail(
        subject=subject,
        text=plain.get_template(f"{name}.txt.j2").render(context).strip() + "\n",
        html=html.get_template(f"{name}.html.j2").render({"title": subject, **context}),
    )

"""Every e-mail hubbot sends, as a template trio: ``<kind>.subject.j2``, ``<kind>.txt.j2`` and ``<kind>.html.j2``,
rendered by one function, ``render_email``, at queue time. ``EmailKind`` names every kind there is (replies to
schools, reminders, staff e-mails): a new e-mail is a member here, a template trio, and the code that queues it.
The HTML environment autoescapes; none of them may use a value that was not handed in, so a typo in a template
fails loudly in tests instead of sending a blank. A hub may replace any template with its own file of the same name
in a folder of its own (``templates_dir`` in the config): that folder is searched first, then the built-ins."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import jinja2


class EmailKind(StrEnum):
    """Every e-mail the bot sends; the value is the template trio's name and the outbox row's ``kind``."""

    # Replies to the e-mail a school sent (the verdict's reply).
    ACKNOWLEDGEMENT = "acknowledgement"
    MISSING_INFORMATION = "missing_information"
    UNREADABLE = "unreadable"
    MISSING_ATTACHMENT = "missing_attachment"
    RECEIVED = "received"            # to ``review``: a warm receipt; the hub team will check; names nothing
    WRONG_HUB = "wrong_hub"          # a form for a programme another hub runs: which hub, and its address
    WITHDRAWAL_RECEIVED = "withdrawal_received"
    # To the sender of an application when a form from another domain would change it (the hub checks first).
    RESUBMISSION_NOTICE = "resubmission_notice"
    # Reminders, queued by the calendar.
    REMINDER = "reminder"
    SIGNATORY_REMINDER = "signatory_reminder"
    # To hub staff.
    STAFF_NOTICE = "staff_notice"
    DIGEST = "digest"
    DECISIONS_RECORDED = "decisions_recorded"     # the answer to a staff member who e-mailed a decisions file
    # To the hub's IT (``[alerts] to``).
    ALERT = "alert"
    # Outcome e-mails, on the programme's shortlist and outcome dates (bot/staff/outcomes.py).
    OUTCOME_SHORTLISTED = "outcome_shortlisted"
    OUTCOME_SELECTED = "outcome_selected"
    OUTCOME_WAITLISTED = "outcome_waitlisted"
    OUTCOME_DECLINED = "outcome_declined"

    @property
    def is_reply(self) -> bool:
        """An answer to one received e-mail (counted against the per-address daily cap)."""
        return self in _REPLIES


_REPLIES = frozenset({EmailKind.ACKNOWLEDGEMENT, EmailKind.MISSING_INFORMATION, EmailKind.UNREADABLE,
                      EmailKind.MISSING_ATTACHMENT, EmailKind.RECEIVED, EmailKind.WRONG_HUB,
                      EmailKind.WITHDRAWAL_RECEIVED, EmailKind.DECISIONS_RECORDED})


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@cache
def _environments(templates_dir: str | None = None) -> tuple[jinja2.Environment, jinja2.Environment]:
    loader: jinja2.BaseLoader = jinja2.PackageLoader("templates", "")
    if templates_dir:
        # The hub's own folder first: a file there replaces the built-in of the same name (a whole trio, or only
        # its subject), and the built-in partials stay available to it.
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(templates_dir), loader])
    common = dict(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                  keep_trailing_newline=False)
    return jinja2.Environment(autoescape=False, **common), jinja2.Environment(autoescape=True, **common)


def render_subject(kind: EmailKind, context: dict[str, Any], *, templates_dir: str | Path | None = None) -> str:
    """The subject alone of one e-mail of ``kind``, as ``render_email`` gives it (a list of what would be sent
    needs no bodies)."""
    plain, _ = _environments(str(templates_dir) if templates_dir else None)
    subject = plain.get_template(f"{EmailKind(kind).value}.subject.j2").render(context)
    # A subject is one header line: nothing a school typed may break it into two.
    return " ".join(subject.split())


def render_email(kind: EmailKind, context: dict[str, Any], *, templates_dir: str | Path | None = None) -> RenderedEmail:
    """The subject, text and HTML of one e-mail of ``kind`` from its template trio and ``context``; templates in
    ``templates_dir`` (a hub's own folder) take the place of the built-ins of the same name."""
    name = EmailKind(kind).value
    plain, html = _environments(str(templates_dir) if templates_dir else None)
    subject = render_subject(kind, context, templates_dir=templates_dir)
    return RenderedEmail(
        subject=subject,
        text=plain.get_template(f"{name}.txt.j2").render(context).strip() + "\n",
        html=html.get_template(f"{name}.html.j2").render({"title": subject, **context}),
    )

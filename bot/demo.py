"""``hubbot demo``: the whole job on an embedded default, for a first look with no servers and no config.

It creates a workspace (a config, a Maildir inbox and an outbox folder), fills the inbox with realistic e-mails
for all five programmes (complete applications, missing fields, a signatory not copied, a late one, a PDF, a scan,
an out-of-office, a question, a forgotten attachment, a signatory confirming by reply), runs exactly the code path
of ``hubbot run --once`` into SQLite, and prints what the bot decided and where its replies are.
"""
from __future__ import annotations

import mailbox
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

LONDON = ZoneInfo("Europe/London")

CONFIG = """\
# The demo's config: one Maildir inbox shared by the five built-in hubs, replies written to ./outbox.
[database]
url = "sqlite:///hubbot.db"

[outbox]
path = "outbox"

{hubs}
"""

HUB = """\
[[hubs]]
id = "{id}"
name = "{name}"
address = "{address}"
{aliases}staff = ["lead@{domain}"]
programmes = [{programmes}]
maildir = "inbox"
"""


@dataclass(frozen=True)
class Sample:
    title: str
    raw: bytes
    received: datetime


def _samples(now: datetime) -> list[Sample]:
    from samples.applications import FORM_FILES, application_email, complete_answers, fill_form, programme
    from samples.forms import FillStyle
    from samples.mail import build_email, forgot_attachment_email, out_of_office, question_email
    from samples.pdf import docx_to_pdf, libreoffice_available, scanned_pdf

    out: list[Sample] = []

    def received_for(programme_id: str, days_before: int) -> datetime:
        deadline = programme(programme_id).deadline
        if deadline is None:
            return now - timedelta(days=3)
        return datetime.combine(deadline, datetime.min.time(), LONDON).replace(hour=10) - timedelta(days=days_before)

    styles = [FillStyle.VALUE_CELL, FillStyle.INLINE_CONTENT_CONTROL, FillStyle.LABEL_CELL, FillStyle.TRACKED_INSERT,
              FillStyle.BLOCK_CONTENT_CONTROL]
    for index, programme_id in enumerate(FORM_FILES):
        p = programme(programme_id)
        answers = complete_answers(programme_id)
        when = received_for(programme_id, 10)
        docx = fill_form(programme_id, answers, style=styles[index % len(styles)])
        out.append(Sample(f"{p.short_title}: complete", application_email(
            programme_id, docx, answers=answers, received=when, message_id=f"<complete.{index}@valley.example>"),
            when))

        missing = dict(answers)
        for field_id in ("school.urn", "head.statement", "hod.statement", "teacher1.email"):
            if field_id in missing:
                missing[field_id] = {"school.urn": "12345", "teacher1.email": "k.wright at valley"}.get(field_id, "")
                break
        missing.pop(next(f.id for f in p.fields if f.required and f.id.endswith(".name") and f.id != "school.name"))
        out.append(Sample(f"{p.short_title}: fields missing", application_email(
            programme_id, fill_form(programme_id, missing), answers=missing, received=when + timedelta(hours=1),
            message_id=f"<missing.{index}@valley.example>"), when + timedelta(hours=1)))

    # A signatory not copied, who then confirms by replying in the thread.
    trg = "primary-trg-pilot-2019"
    answers = complete_answers(trg)
    when = received_for(trg, 5)
    out.append(Sample("TRG: a teacher not copied", application_email(
        trg, fill_form(trg, answers), answers=answers, pattern="one_missing", received=when,
        message_id="<notcopied@valley.example>"), when))
    out.append(Sample("TRG: that teacher replies 'I confirm'", build_email(
        sender=f"Mr Tom Ellis <{answers['teacher2.email']}>", to=programme(trg).hub.address,
        subject="Re: Action needed", body_text="I confirm.\n\nTom Ellis", date=when + timedelta(hours=3),
        received=when + timedelta(hours=3), in_reply_to="<notcopied@valley.example>",
        references=["<notcopied@valley.example>"]), when + timedelta(hours=3)))

    late = "secondary-tfm-wg-2016"
    when = received_for(late, -2)
    out.append(Sample("Secondary 2016: arrives after the deadline", application_email(
        late, fill_form(late, complete_answers(late)), received=when, message_id="<late@valley.example>",
        filename="EoI form - Valley School.docx"), when))

    central = "secondary-tfm-wg-2024"
    when = received_for(central, 4)
    if libreoffice_available():
        pdf = docx_to_pdf(fill_form(central, complete_answers(central)))
        out.append(Sample("Central 2024: sent as a PDF", application_email(
            central, pdf, filename="Application.pdf", content_type="application/pdf", received=when,
            message_id="<pdf@valley.example>"), when))
    out.append(Sample("Central 2024: a scanned form", application_email(
        central, scanned_pdf(), filename="scan0001.pdf", content_type="application/pdf",
        received=when + timedelta(hours=2), message_id="<scan@valley.example>"), when + timedelta(hours=2)))

    bbo = programme("primary-tfm-wg-2020").hub.address
    out.append(Sample("Out-of-office auto-reply", out_of_office(to=bbo, date=now - timedelta(days=1)),
                      now - timedelta(days=1)))
    out.append(Sample("A question, no form", question_email(to=bbo, date=now - timedelta(hours=20)),
                      now - timedelta(hours=20)))
    out.append(Sample("'Please find attached' with no attachment", forgot_attachment_email(
        to=bbo, cc=(), date=now - timedelta(hours=18)), now - timedelta(hours=18)))
    return out


def _write_config(root: Path) -> None:
    from rules.definitions import load_registry
    from rules.hubs import HubDirectory

    registry = load_registry()
    blocks = []
    for hub in HubDirectory.builtin(registry).hubs:
        address, *aliases = sorted(hub.addresses)
        blocks.append(HUB.format(
            id=hub.id, name=hub.name, address=address, domain=address.partition("@")[2],
            aliases=f"aliases = {list(aliases)!r}\n".replace("'", '"') if aliases else "",
            programmes=", ".join(f'"{p}"' for p in sorted(hub.programmes))))
    (root / "hubbot.toml").write_text(CONFIG.format(hubs="\n".join(blocks)), encoding="utf-8")


def run_demo(root: Path, *, now: datetime | None = None) -> int:
    from bot.config import load_config
    from bot.context import check_settings
    from bot.worker import Worker
    from storage.db import open_database

    console = Console()
    started = time.monotonic()
    now = now or datetime.now(timezone.utc)
    if root.exists():
        if not (root / "hubbot.toml").exists():
            console.print(f"[red]{root} exists and is not a hubbot demo workspace; choose another --dir[/red]")
            return 2
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _write_config(root)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Writing sample e-mails", total=None)
        samples = _samples(now)
        inbox = mailbox.Maildir(root / "inbox", create=True)
        titles: dict[bytes, str] = {}
        for sample in samples:
            key = inbox.add(sample.raw)
            path = root / "inbox" / "new" / key
            stamp = sample.received.timestamp()
            os.utime(path, (stamp, stamp))  # the Maildir's delivery time is the message's received time
            titles[sample.raw] = sample.title
        progress.update(task, description="Processing the inbox as `hubbot run --once` does", total=1)
        config = load_config(root / "hubbot.toml")
        db = open_database(config.database_url)
        report = Worker(config, db, check_settings(config), clock=lambda: now).run_once()
        progress.update(task, completed=1)

    table = Table(title="What hubbot decided", show_lines=False)
    for column in ("e-mail", "status", "programme", "flags", "reply"):
        table.add_column(column)
    from sqlalchemy import select

    from storage.models import Message, OutboxItem

    with db.session() as session:
        replies = {m.source_message_id: m for m in session.scalars(select(OutboxItem))}
        for message in session.scalars(select(Message).order_by(Message.id)):
            verdict = message.verdict or {}
            reply = replies.get(message.id)
            table.add_row(titles.get(message.raw, "?"), message.verdict_status or "-", verdict.get("programme") or "",
                          ", ".join(f["code"] for f in verdict.get("flags") or []),
                          reply.kind.replace("_", " ") if reply else "none")
    console.print(table)
    outbox = root / "outbox"
    console.print(f"{sum(report.fetched.values())} e-mails read, {report.outbox.sent} replies written to "
                  f"[bold]{outbox}[/bold] as .eml files (open them in any mail program).")
    console.print(f"Database: {root / 'hubbot.db'}   Config: {root / 'hubbot.toml'}   "
                  f"({time.monotonic() - started:.1f} s)")
    if report.failed_messages or report.mailbox_errors:
        console.print("[red]Some messages could not be processed; see the log above.[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(Path("hubbot-demo")))

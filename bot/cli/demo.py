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

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from rules.calendar import LONDON

DEMO_MARKER = ".hubbot-demo"   # marks a folder `hubbot demo` wrote, and so may replace

CONFIG = """\
# The demo's config: the built-in hubs, each with a Maildir inbox under ./inbox, replies written to ./outbox.
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
maildir = "inbox/{id}"
"""


@dataclass(frozen=True)
class Sample:
    title: str
    raw: bytes
    received: datetime
    to: str      # the hub mailbox it is delivered to


def _samples(now: datetime) -> list[Sample]:
    from samples.applications import FORM_FILES, SCHOOLS, application_email, complete_answers, fill_form, programme
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
        hub = p.hub.address
        answers = complete_answers(programme_id, SCHOOLS[1])
        when = received_for(programme_id, 10)
        docx = fill_form(programme_id, answers, style=styles[index % len(styles)])
        out.append(Sample("complete", application_email(
            programme_id, docx, answers=answers, received=when, message_id=f"<complete.{index}@demo.example>"),
            when, hub))

        missing = complete_answers(programme_id, SCHOOLS[2])
        for field_id in ("school.urn", "head.statement", "hod.statement", "teacher1.email"):
            if field_id in missing:
                missing[field_id] = {"school.urn": "12345", "teacher1.email": "k.wright at valley"}.get(field_id, "")
                break
        missing.pop(next(f.id for f in p.fields if f.required and f.id.endswith(".name") and f.id != "school.name"))
        out.append(Sample("fields missing", application_email(
            programme_id, fill_form(programme_id, missing), answers=missing, received=when + timedelta(hours=1),
            message_id=f"<missing.{index}@demo.example>"), when + timedelta(hours=1), hub))

    # A signatory not copied, who then confirms by replying in the thread.
    trg = "primary-trg-pilot-2019"
    trg_hub = programme(trg).hub.address
    answers = complete_answers(trg, SCHOOLS[0])
    when = received_for(trg, 5)
    out.append(Sample("a teacher not copied", application_email(
        trg, fill_form(trg, answers), answers=answers, pattern="one_missing", received=when,
        message_id="<notcopied@demo.example>"), when, trg_hub))
    confirmed = when + timedelta(hours=3)
    out.append(Sample("that teacher replies 'I confirm'", build_email(
        sender=f"Mr Tom Ellis <{answers['teacher2.email']}>", to=trg_hub, subject="Re: Action needed",
        body_text="I confirm.\n\nTom Ellis", date=confirmed, received=confirmed,
        in_reply_to="<notcopied@demo.example>", references=["<notcopied@demo.example>"]), confirmed, trg_hub))

    late = "secondary-tfm-wg-2016"
    when = received_for(late, -2)
    out.append(Sample("after the deadline", application_email(
        late, fill_form(late, complete_answers(late, SCHOOLS[3])), answers=complete_answers(late, SCHOOLS[3]),
        received=when, message_id="<late@demo.example>", filename="EoI form - Riverside.docx"), when,
        programme(late).hub.address))

    central = "secondary-tfm-wg-2024"
    central_hub = programme(central).hub.address
    when = received_for(central, 4)
    if libreoffice_available():
        answers = complete_answers(central, SCHOOLS[0])
        pdf = docx_to_pdf(fill_form(central, answers))
        out.append(Sample("sent as a PDF", application_email(
            central, pdf, answers=answers, filename="Application.pdf", content_type="application/pdf",
            received=when, message_id="<pdf@demo.example>"), when, central_hub))
    out.append(Sample("a scanned form", application_email(
        central, scanned_pdf(), answers=complete_answers(central, SCHOOLS[3]), filename="scan0001.pdf",
        content_type="application/pdf", received=when + timedelta(hours=2), message_id="<scan@demo.example>"),
        when + timedelta(hours=2), central_hub))

    bbo = programme("primary-tfm-wg-2020").hub.address
    for title, raw, at in (
        ("out-of-office auto-reply", out_of_office(to=bbo, date=now - timedelta(days=1)), now - timedelta(days=1)),
        ("a question, no form", question_email(to=bbo, date=now - timedelta(hours=20)), now - timedelta(hours=20)),
        ("'please find attached', nothing attached",
         forgot_attachment_email(to=bbo, cc=(), date=now - timedelta(hours=18)), now - timedelta(hours=18)),
    ):
        out.append(Sample(title, raw, at, bbo))
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


_EVERYTHING = datetime(1970, 1, 1, tzinfo=timezone.utc)


def run_demo(root: Path, *, now: datetime | None = None) -> int:
    from bot.config import load_config
    from bot.context import check_settings
    from bot.worker import Worker
    from storage.db import open_database

    console = Console()
    started = time.monotonic()
    now = now or datetime.now(timezone.utc)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        # Only a folder this command wrote (it carries the marker) may be replaced: a hubbot.toml alone could be
        # a real hub's workspace.
        if not (root / DEMO_MARKER).is_file():
            console.print(f"[red]{root} is not empty and is not an earlier hubbot demo: nothing was changed; "
                          f"choose another --dir[/red]")
            return 2
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("Written by `hubbot demo`: the next `hubbot demo` run may replace this folder.\n",
                                    encoding="utf-8")
    _write_config(root)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Writing sample e-mails", total=None)
        samples = _samples(now)
        config = load_config(root / "hubbot.toml")
        titles: dict[bytes, str] = {}
        for sample in samples:
            hub = next(h for h in config.hubs if sample.to in (h.address, *h.aliases))
            assert hub.maildir is not None
            hub.maildir.parent.mkdir(parents=True, exist_ok=True)
            key = mailbox.Maildir(hub.maildir, create=True).add(sample.raw)
            path = hub.maildir / "new" / key
            stamp = sample.received.timestamp()
            os.utime(path, (stamp, stamp))  # the Maildir's delivery time is the message's received time
            titles[sample.raw] = sample.title
        progress.update(task, description="Processing the inbox as `hubbot run --once` does", total=1)
        db = open_database(config.database_url)
        # The demo's inboxes are new and hold only the sample mail: all of it is to be answered.
        worker = Worker(config, db, check_settings(config), clock=lambda: now, backfill=_EVERYTHING)
        try:
            report = worker.run_once()
        finally:
            worker.close()
        progress.update(task, completed=1)

    table = Table(title="What hubbot decided", show_lines=False)
    table.add_column("hub", no_wrap=True)
    table.add_column("sample e-mail", min_width=16)
    table.add_column("status", no_wrap=True)
    table.add_column("reply", no_wrap=True)
    from sqlalchemy import select

    from rules.verdict import Status, Verdict
    from storage.models import Message, OutboxItem

    with db.session() as session:
        replies = {m.source_message_id: m for m in session.scalars(select(OutboxItem))}
        for message in session.scalars(select(Message).order_by(Message.id)):
            verdict = Verdict.from_record(message.verdict) if message.verdict else None
            reply = replies.get(message.id)
            flags = ", ".join(f.code.value for f in verdict.flags) if verdict else ""
            status = message.verdict_status.value if message.verdict_status else "-"
            if message.application_id is not None and message.verdict_status is Status.NOT_APPLICATION:
                status = "signatory confirmed"
            table.add_row(message.hub_id,
                          titles.get(message.raw, "?"), f"{status}\n({flags})" if flags else status,
                          reply.kind.value.replace("_", " ") if reply else "none")
    console.print(table)
    outbox = root / "outbox"
    console.print(f"{sum(report.fetched.values())} e-mails read, {report.outbox.sent} replies written to "
                  f"[bold]{outbox}[/bold] as .eml files, not sent (open them in any mail program).")
    console.print(f"Database: {root / 'hubbot.db'}   Config: {root / 'hubbot.toml'}   "
                  f"({time.monotonic() - started:.1f} s)")
    if report.failed_messages or report.mailbox_errors:
        console.print("[red]Some messages could not be processed; see the log above.[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(Path("hubbot-demo")))

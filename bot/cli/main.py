"""The ``hubbot`` command line (``shared/spec/interface.md``). Each command imports only what it needs, so
``hubbot check`` starts fast; errors a user can fix print one plain line and exit 2."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Config
    from bot.staff.export import ExportSheet


def _now(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not an ISO date-time like 2024-06-28T09:00") from None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo("Europe/London"))
    return moment


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $HUBBOT_CONFIG, else ./hubbot.toml)")
    parser.add_argument("--now", type=_now, metavar="ISO-DATETIME",
                        help="act as if it were this moment (London time unless an offset is given)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hubbot")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubbot", description="Maths Hubs application intake bot.")
    parser.add_argument("--version", action="version", version=f"hubbot {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="assess e-mails (or bare forms) as the bot would, with no side effects",
                                description="Assess .eml files as the bot would: no network, no database. A bare "
                                            "form (.docx or .pdf) is read as if it came alone: signatories' "
                                            "copies unknown, no reply.")
    check.add_argument("files", nargs="+", metavar="FILE", help="an e-mail (.eml), or a form (.docx, .pdf)")
    check.add_argument("--json", action="store_true", help="one JSON object per file (an array for several)")
    _common(check)

    run = commands.add_parser("run", help="poll the mailboxes, process, reply (until stopped, or --once)",
                              description="The worker: every configured mailbox, the outbox, reminders and digests.")
    run.add_argument("--once", action="store_true",
                     help="one cycle over every mailbox, then every scheduled job that is due, then the outbox")
    run.add_argument("--backfill", type=_now, metavar="SINCE",
                     help="a mailbox polled for the first time starts at its end (old mail is not answered); with "
                          "this, it starts at the mail received since SINCE instead")
    _common(run)

    demo = commands.add_parser("demo", help="the whole job on generated sample mail: no servers, no config",
                               description="Create a workspace with a Maildir inbox of realistic sample e-mails "
                                           "for all five programmes, process it as `run --once` would, and show "
                                           "what the bot decided and replied.")
    demo.add_argument("--dir", default="hubbot-demo", metavar="PATH",
                      help="workspace folder to create (default: ./hubbot-demo)")
    _common(demo)

    digest = commands.add_parser("digest", help="today's digest for hub staff: print it, or send it",
                                 description="Build today's digest for each hub's staff (or one hub's).")
    digest.add_argument("--hub", metavar="ID", help="only this hub")
    digest.add_argument("--send", action="store_true", help="send it (once per hub per day) instead of printing")
    digest.add_argument("--html", action="store_true", help="print the HTML version instead of the text")
    _common(digest)

    remind = commands.add_parser("remind", help="list (or send) the reminders due now",
                                 description="Reminders due now: to schools with incomplete applications before "
                                             "the deadline, to signatories not yet copied, and to hub staff before "
                                             "notification dates. Use --now to see a future day's reminders.")
    remind.add_argument("--send", action="store_true", help="send them (each at most once, ever)")
    _common(remind)

    requeue = commands.add_parser("requeue", help="send again a reply the digest lists as failed or uncertain",
                                  description="Send again replies that failed or may not have been sent (the "
                                              "digest lists them with their number). Check first that the "
                                              "school did not get it.")
    requeue.add_argument("ids", nargs="+", type=_reply_number, metavar="REPLY-NUMBER")
    _common(requeue)

    export = commands.add_parser("export", help="applications as CSV, XLSX or JSON for hub staff",
                                 description="One row per application (its latest version): hub, programme, "
                                             "school, status, flags, received times, every field of the form and "
                                             "each signatory's copied and confirmation state.")
    export.add_argument("--hub", metavar="ID", help="only this hub's applications")
    export.add_argument("--programme", metavar="ID", help="only this programme's applications")
    export.add_argument("--format", required=True, choices=("csv", "xlsx", "json"), help="output format")
    export.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE (default: stdout for csv and json; xlsx needs a file)")
    _common(export)

    from bot.cli import ops, programme
    from bot.cli.decide import add_parser as add_decide

    programme.add_parser(commands, _common)
    _OPS_HANDLERS.update(ops.add_commands(commands, _common))
    add_decide(commands, _common)
    return parser


_OPS_HANDLERS: dict = {}


def _reply_number(value: str) -> int:
    # The digest writes "reply 8" or "#8"; either way of copying it works.
    cleaned = value.strip().lstrip("#")
    if not cleaned.isdigit():
        raise argparse.ArgumentTypeError(f"'{value}' is not a reply number like 8")
    return int(cleaned)


def _load_config(path_arg: str | None):
    from bot.config import find_config_path, load_config

    path = find_config_path(path_arg)
    return load_config(path) if path else None


def cmd_check(args: argparse.Namespace) -> int:
    from bot.cli.summary import format_summary
    from bot.context import check_settings
    from parsers.sniff import FileKind, sniff
    from rules.pipeline import assess, assess_document

    settings = check_settings(_load_config(args.config))
    outputs = []
    for name in args.files:
        path = Path(name)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            print(f"hubbot check: cannot read {name}: {exc.strerror}", file=sys.stderr)
            return 2
        # A form's bytes say what it is (a zip or a PDF, whatever its name); anything else is an e-mail.
        if sniff(path.name, "", raw) is not FileKind.OTHER:
            verdict = assess_document(raw, path.name, settings)
        else:
            verdict = assess(raw, settings)
        if args.json:
            outputs.append(verdict.to_json(file=name))
        else:
            print(format_summary(name, verdict))
    if args.json:
        print(json.dumps(outputs[0] if len(outputs) == 1 else outputs, indent=2, ensure_ascii=False))
    return 0


def _require_config(path_arg: str | None):
    from parsers.errors import ConfigError

    config = _load_config(path_arg)
    if config is None:
        raise ConfigError("no config: pass --config PATH, set $HUBBOT_CONFIG, or create ./hubbot.toml "
                          "(see config.example.toml); `hubbot demo` needs none")
    if not config.hubs:
        raise ConfigError(f"{config.path}: key 'hubs': no hub is configured")
    return config


def _clock(now: datetime | None):
    from bot.worker import system_clock

    return (lambda: now) if now else system_clock


def cmd_run(args: argparse.Namespace) -> int:
    from bot import logs
    from bot.context import check_settings
    from bot.worker import Worker
    from storage.db import open_database

    logs.configure()
    config = _require_config(args.config)
    db = open_database(config.database_url)
    worker = Worker(config, db, check_settings(config), clock=_clock(args.now), backfill=args.backfill)
    if args.once:
        from bot.cli.summary import format_cycle
        from bot.staff import jobs

        try:
            report = worker.run_once()
            # Then every scheduled job that is due and not yet done, so cron + run --once is the worker.
            due = jobs.run_due(db, config, worker.workflow.settings, worker.clock(), actor=worker.worker_id)
            drained = worker.send_due()
        finally:
            worker.close()
        print(format_cycle(report, smtp=config.smtp is not None or any(h.smtp for h in config.hubs)))
        if due.reminders or any(r.queued for r in due.digests) or due.retention is not None:
            print(f"scheduled: {len(due.reminders)} reminder/outcome e-mail(s), "
                  f"{sum(r.queued for r in due.digests)} digest(s) queued; sent {drained.sent}")
        return 1 if report.mailbox_errors or report.mailbox_warnings or report.outbox_error else 0
    from bot.scheduler import Service

    try:
        Service(config, worker).run()
    finally:
        worker.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.cli.demo import run_demo

    return run_demo(Path(args.dir), now=args.now)


def cmd_export(args: argparse.Namespace) -> int:
    import contextlib
    from zoneinfo import ZoneInfo

    from sqlalchemy import select
    from sqlalchemy.orm import InstrumentedAttribute, Session

    from bot.staff.export import spool_rows
    from rules.definitions import load_registry
    from storage.db import open_database
    from storage.models import Application

    def known(session: Session, column: InstrumentedAttribute[str], value: str, configured: set[str]) -> bool:
        # Configured now, or with applications stored (a hub since removed from the config): both are exportable.
        return value in configured or session.scalar(select(column).where(column == value).limit(1)) is not None

    if args.format == "xlsx" and not args.output:
        print("hubbot export: --format xlsx needs -o FILE (a workbook cannot go to the terminal)", file=sys.stderr)
        return 2
    config = _require_config(args.config)
    registry = load_registry((config.programmes_dir,) if config.programmes_dir else ())
    db = open_database(config.database_url)
    with contextlib.ExitStack() as spool:
        try:
            with db.session() as session:
                if args.hub and not known(session, Application.hub_id, args.hub, {h.id for h in config.hubs}):
                    print(f"hubbot export: unknown hub '{args.hub}' (configured: "
                          f"{', '.join(h.id for h in config.hubs)})", file=sys.stderr)
                    return 2
                if args.programme and not known(session, Application.programme, args.programme,
                                                {p.id for p in registry.programmes}):
                    print(f"hubbot export: unknown programme '{args.programme}' (known: "
                          f"{', '.join(sorted(p.id for p in registry.programmes))})", file=sys.stderr)
                    return 2
                # Read once into a temporary spool; rows are built from it as they are written, never all held.
                sheets = spool.enter_context(spool_rows(session, hub=args.hub, programme=args.programme,
                                                        registry=registry, tz=ZoneInfo(config.timezone)))
        finally:
            db.close()
        return _write_export(args, config, sheets)


def _write_export(args: argparse.Namespace, config: Config, sheets: list[ExportSheet]) -> int:
    import io
    import os

    from bot.staff.export import write_csv, write_json, write_xlsx

    if args.output:
        if _is_database_file(args.output, config.database_url):
            print(f"hubbot export: {args.output} is the bot's own database; choose another file", file=sys.stderr)
            return 2
        try:
            # Personal data: readable by its owner only, a new file or an old one written over.
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
        except OSError as exc:
            print(f"hubbot export: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
        with open(fd, "wb") as raw:
            if args.format == "xlsx":
                write_xlsx(sheets, raw)
            else:
                with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                    (write_csv if args.format == "csv" else write_json)(sheets, text)
        count = sum(len(s.rows) for s in sheets)
        print(f"hubbot export: {count} application(s) in {len(sheets)} programme(s) written to {args.output}",
              file=sys.stderr)
        return 0
    # stdout's own encoding may not be UTF-8 (Windows consoles, LANG=C): write bytes so the file is always UTF-8.
    sys.stdout.flush()
    text = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", write_through=True)
    try:
        (write_csv if args.format == "csv" else write_json)(sheets, text)
        text.flush()
    finally:
        text.detach()
    return 0


def _is_database_file(output: str, database_url: str) -> bool:
    """Whether ``output`` is the SQLite database (or its journal files): an export must never write over it."""
    import os

    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    target = os.path.realpath(output)
    return any(target == os.path.realpath(url.database + suffix) for suffix in ("", "-wal", "-shm", "-journal"))


def _staff_context(args: argparse.Namespace):
    from bot.context import check_settings
    from bot.worker import Worker, system_clock
    from storage.db import open_database

    config = _require_config(args.config)
    db = open_database(config.database_url)
    now = args.now or system_clock()
    worker = Worker(config, db, check_settings(config), clock=lambda: now)
    return config, db, worker, now


def cmd_digest(args: argparse.Namespace) -> int:
    from bot.staff import jobs
    from bot.staff.digest import render_digest
    from parsers.errors import ConfigError
    from parsers.safe_text import printable

    config, db, worker, now = _staff_context(args)
    if args.hub and args.hub not in {h.id for h in config.hubs}:
        raise ConfigError(f"no hub '{args.hub}' in {config.path}")
    runs = jobs.digests(db, config, worker.workflow.settings, now, send=args.send, hub_id=args.hub)
    for run in runs:
        hub = run.digest.hub.id
        if args.send:
            print(f"{hub}: " + ("digest queued" if run.queued else "already sent today" if run.already_sent
                                else "quiet day, no digest" if run.skipped_quiet
                                else "no staff configured"))
        else:
            rendered = render_digest(run.digest)
            # School names, subjects and file names come from strangers: no escape sequence reaches the terminal.
            print(printable(rendered.html if args.html else f"Subject: {rendered.subject}\n\n{rendered.text}"))
            if run.skipped_quiet:
                print(f"({hub}: a quiet day: --send would not send this digest)")
    if args.send:
        report = worker.send_due()
        print(f"sent {report.sent}, retrying {report.retried}, failed {report.failed}")
    return 0


def cmd_remind(args: argparse.Namespace) -> int:
    from bot.staff import jobs
    from bot.staff.reminders import describe

    config, db, worker, now = _staff_context(args)
    from parsers.safe_text import printable

    due = jobs.remind(db, config, worker.workflow.settings, now, send=args.send)
    print(printable(describe(due, now)))
    if args.send and due:
        report = worker.send_due()
        print(f"sent {report.sent}, retrying {report.retried}, failed {report.failed}")
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    from storage import repository as repo
    from storage.models import EventKind, OutboxItem

    config, db, worker, now = _staff_context(args)
    status = 0
    with db.session() as session:
        for reply_id in args.ids:
            item = session.get(OutboxItem, reply_id)
            if item is None or not repo.requeue_reply(session, item, now=now):
                print(f"reply {reply_id}: not found, or not failed/uncertain/retrying: left as it is",
                      file=sys.stderr)
                status = 2
                continue
            repo.record_event(session, EventKind.REPLY_REQUEUED, hub_id=item.hub_id, actor="staff", outbox_id=item.id,
                              now=now)
            print(f"reply {reply_id}: queued again")
    report = worker.send_due()
    print(f"sent {report.sent}, retrying {report.retried}, failed {report.failed}")
    return status


def cmd_programme(args: argparse.Namespace) -> int:
    from bot.cli import programme

    return programme.run(args, _load_config)


def main(argv: list[str] | None = None) -> int:
    from parsers.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    from bot.cli.decide import cmd_decide

    handlers = {"check": cmd_check, "run": cmd_run, "demo": cmd_demo, "export": cmd_export, "digest": cmd_digest, "remind": cmd_remind,
                "requeue": cmd_requeue, "programme": cmd_programme, "decide": cmd_decide, **_OPS_HANDLERS}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"hubbot: {exc.reason}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a database fault is one plain line, never a traceback
        from storage.errors import describe

        line = describe(exc)
        if line is None:
            raise
        print(f"hubbot: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and cut short: not an error worth a traceback.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

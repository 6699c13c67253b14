"""The ``hubbot`` command line (``shared/spec/interface.md``). Each command imports only what it needs, so
``hubbot check`` starts fast; errors a user can fix print one plain line and exit 2."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubbot", description="Maths Hubs application intake bot.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="assess e-mails as the bot would, with no side effects",
                                description="Assess .eml files as the bot would: no network, no database.")
    check.add_argument("files", nargs="+", metavar="FILE.eml")
    check.add_argument("--json", action="store_true", help="one JSON object per file (an array for several)")
    _common(check)

    run = commands.add_parser("run", help="poll the mailboxes, process, reply (until stopped, or --once)",
                              description="The worker: every configured mailbox, the outbox, reminders and digests.")
    run.add_argument("--once", action="store_true", help="one cycle over every mailbox, then the outbox; then exit")
    _common(run)

    demo = commands.add_parser("demo", help="the whole job on generated sample mail: no servers, no config",
                               description="Create a workspace with a Maildir inbox of realistic sample e-mails "
                                           "for all five programmes, process it as `run --once` would, and show "
                                           "what the bot decided and replied.")
    demo.add_argument("--dir", default="hubbot-demo", metavar="PATH",
                      help="workspace folder to create (default: ./hubbot-demo)")
    _common(demo)
    return parser


def _load_config(path_arg: str | None):
    from bot.config import find_config_path, load_config

    path = find_config_path(path_arg)
    return load_config(path) if path else None


def cmd_check(args: argparse.Namespace) -> int:
    from bot.context import check_settings
    from bot.summary import format_summary
    from rules.pipeline import assess

    settings = check_settings(_load_config(args.config))
    outputs = []
    for name in args.files:
        path = Path(name)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            print(f"hubbot check: cannot read {name}: {exc.strerror}", file=sys.stderr)
            return 2
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
    import logging

    from bot.context import check_settings
    from bot.worker import Worker
    from storage.db import open_database

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _require_config(args.config)
    db = open_database(config.database_url)
    worker = Worker(config, db, check_settings(config), clock=_clock(args.now))
    if args.once:
        from bot.summary import format_cycle

        report = worker.run_once()
        print(format_cycle(report))
        return 1 if report.mailbox_errors else 0
    from bot.scheduler import Service

    Service(config, worker).run()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo(Path(args.dir), now=args.now)


def main(argv: list[str] | None = None) -> int:
    from parsers.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"check": cmd_check, "run": cmd_run, "demo": cmd_demo}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"hubbot: {exc.reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The commands for a hub's IT: ``hubbot doctor``, ``hubbot status [--json]`` and ``hubbot privacy find|erase``.
``bot.cli.main`` registers them with ``add_commands``; the work is done in ``bot.ops``. Each handler imports what
it needs when it runs, so the other commands start as fast as before."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone

Handler = Callable[[argparse.Namespace], int]


def add_commands(commands: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]
                 ) -> dict[str, Handler]:
    doctor = commands.add_parser(
        "doctor", help="check the config against reality: mailboxes, mail servers, database, secrets, dates",
        description="One line per check: every mailbox logs in and its folder (and move_to) opens, every mail "
                    "server answers EHLO and accepts the login (nothing is sent), the database opens and is "
                    "migrated, every _env variable is set, every programme id and date override is known and each "
                    "programme in use has a deadline ahead. Exit 1 if any check fails.")
    common(doctor)

    status = commands.add_parser(
        "status", help="health of each hub (exit 0 healthy, 1 degraded, 2 config error)",
        description="Per hub: last good poll, mail waiting, replies pending/failed/uncertain, next digest and "
                    "reminders, open incidents and the last alert. Reads only. Exit 0 healthy, 1 degraded, 2 when "
                    "the config or the database cannot be read: usable as a monitoring check.")
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    common(status)

    privacy = commands.add_parser(
        "privacy", help="data-protection requests: find or erase what is stored about an e-mail address",
        description="UK GDPR requests about one person, by e-mail address.")
    actions = privacy.add_subparsers(dest="privacy_action", required=True, metavar="ACTION")
    find = actions.add_parser(
        "find", help="subject access: everything stored that holds the address",
        description="Every stored message, application, version and reply holding the address, as one JSON "
                    "report on stdout, or with -o FILE.zip a zip of the report and the raw .eml files.")
    find.add_argument("email", metavar="EMAIL")
    find.add_argument("-o", "--output", metavar="FILE.zip", help="write a zip (report.json and the raw e-mails)")
    common(find)
    erase = actions.add_parser(
        "erase", help="erase or anonymise everything stored that holds the address",
        description="Raw e-mails holding the address are replaced by a stub, the person's fields, signatory "
                    "entries and replies are anonymised; rows stay so counts stay right. The erasure is logged "
                    "without the address, and the database files are cleaned (SQLite: secure_delete, VACUUM, WAL "
                    "checkpoint; PostgreSQL: VACUUM).")
    erase.add_argument("email", metavar="EMAIL")
    erase.add_argument("--dry-run", action="store_true", help="only say what would be erased")
    common(erase)
    return {"doctor": cmd_doctor, "status": cmd_status, "privacy": cmd_privacy}


def _now(args: argparse.Namespace) -> datetime:
    return args.now or datetime.now(timezone.utc)


def _config(args: argparse.Namespace):
    from bot.cli.main import _require_config

    return _require_config(args.config)


def _known_programmes_only(config):
    from dataclasses import replace

    from rules.definitions import load_registry

    known = {p.id for p in load_registry((config.programmes_dir,) if config.programmes_dir else ()).programmes}
    return replace(config, hubs=tuple(replace(h, programmes=tuple(p for p in h.programmes if p in known))
                                      for h in config.hubs))


def cmd_doctor(args: argparse.Namespace) -> int:
    from bot.context import check_settings
    from bot.ops.doctor import run_checks
    from parsers.errors import ConfigError

    config = _config(args)
    try:
        settings = check_settings(config)
    except ConfigError:
        # A hub naming a programme nobody defines is one failed check among the others (doctor reports it), not the
        # end of the doctor's round: the rest of the config is checked on the programmes that do exist.
        settings = check_settings(_known_programmes_only(config))
    checks = run_checks(config, settings, _now(args))
    for check in checks:
        print(check.line(), flush=True)
    failed = sum(1 for c in checks if not c.ok)
    print(f"doctor: {failed} of {len(checks)} checks failed" if failed else f"doctor: all {len(checks)} checks "
                                                                              f"passed")
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from parsers.errors import ConfigError

    try:
        config = _config(args)
    except ConfigError as exc:
        # A monitoring check reading --json still gets JSON, and the exit code says "config error".
        if args.json:
            print(json.dumps({"status": "broken", "exit_code": 2, "problems": [exc.reason], "hubs": []}))
        else:
            print(f"hubbot status: {exc.reason}", file=sys.stderr)
        return 2
    from bot.context import check_settings
    from bot.ops.status import collect, format_text, to_json

    report = collect(config, check_settings(config), _now(args))
    print(json.dumps(to_json(report), indent=2) if args.json else format_text(report))
    return report.exit_code


def cmd_privacy(args: argparse.Namespace) -> int:
    from bot.ops import privacy

    config = _config(args)
    if args.privacy_action == "find":
        return privacy.cmd_find(config, args.email, args.output, _now(args))
    return privacy.cmd_erase(config, args.email, dry_run=args.dry_run, now=_now(args))

"""``hubbot decide``: record staff decisions from the command line, one way or the other:
``hubbot decide NUMBER ... --as DECISION [--note TEXT]`` (the numbers the digest and the export show), or
``hubbot decide --import FILE.xlsx|FILE.csv [--apply]`` (a filled export, "Decision" column; without ``--apply``
it prints what would change and records nothing). Unknown numbers and words that are not a decision are refused and
listed; the exit status is 2 when anything was refused or the usage is wrong, else 0. Nothing is sent here: schools
hear on their outcome date (``bot.staff.outcomes``).
"""
from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction, common) -> None:
    decide = commands.add_parser(
        "decide", help="record staff decisions (by number, or from a filled export)",
        description="Record decisions: shortlisted, selected, waitlisted, declined or withdrawn. Either give "
                    "application numbers (as the digest and the export show them) with --as, or --import a filled "
                    "export (the \"Decision\" column); an import only shows what would change unless --apply.")
    decide.add_argument("numbers", nargs="*", metavar="NUMBER", help="application numbers")
    decide.add_argument("--as", dest="decision", metavar="DECISION",
                        help="shortlisted, selected, waitlisted, declined or withdrawn")
    decide.add_argument("--note", metavar="TEXT", help="a note kept with the decision (for staff only)")
    decide.add_argument("--import", dest="import_file", metavar="FILE", help="a filled export, .xlsx or .csv")
    decide.add_argument("--apply", action="store_true", help="with --import: record the decisions")
    common(decide)


def cmd_decide(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bot.cli.main import _require_config
    from bot.staff.decisions import DecisionsFileError, decide_numbers, describe_plan, import_file
    from bot.worker import system_clock
    from rules.outcomes import decision_words, parse_decision
    from storage.db import open_database

    if args.import_file and (args.numbers or args.decision):
        print("hubbot decide: give either NUMBER ... --as DECISION or --import FILE, not both", file=sys.stderr)
        return 2
    if not args.import_file:
        if not args.numbers or not args.decision:
            print("hubbot decide: give NUMBER ... --as DECISION (or --import FILE)", file=sys.stderr)
            return 2
        if parse_decision(args.decision) is None:
            print(f"hubbot decide: '{args.decision}' is not a decision (use {decision_words()})", file=sys.stderr)
            return 2
    elif args.note:
        print("hubbot decide: --note goes with NUMBER ... --as DECISION; an import reads a \"Note\" column",
              file=sys.stderr)
        return 2
    config = _require_config(args.config)
    now = args.now or system_clock()
    db = open_database(config.database_url)
    try:
        with db.session() as session:
            if args.import_file:
                path = Path(args.import_file)
                try:
                    result = import_file(session, path, apply=args.apply, now=now, limits=config.limits)
                except OSError as exc:
                    print(f"hubbot decide: cannot read {path}: {exc.strerror}", file=sys.stderr)
                    return 2
                except DecisionsFileError as exc:
                    print(f"hubbot decide: {path}: {exc}", file=sys.stderr)
                    return 2
                applied = args.apply
            else:
                result = decide_numbers(session, args.numbers, args.decision, note=args.note, now=now)
                applied = True
    finally:
        db.close()
    print(describe_plan(result.plan, applied=applied))
    return 2 if result.plan.refused else 0

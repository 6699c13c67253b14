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


def main(argv: list[str] | None = None) -> int:
    from parsers.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"check": cmd_check}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"hubbot: {exc.reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``hubbot programme list|draft|test``: next year's form without a programmer.

``list`` shows every programme the bot knows (built in, or from the config's ``programmes_dir``) with its hubs and
the dates in force for each; ``draft`` turns a blank .docx into a definition file (``rules.drafting``) and prints
what a person must confirm; ``test`` proves a definition reads its own blank form (``samples.proving``). This
module only reads files, calls those, and prints; errors a user can fix are one line and exit 2.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

_BLANK_FORM_NOTE = re.compile(r"^#.*\bBlank form:\s*(.+?\.docx)\s*$", re.MULTILINE)
_PROGRAMME_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def add_parser(commands: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    programme = commands.add_parser(
        "programme", help="list, draft and test programme definitions (next year's form)",
        description="Programme definitions: list the known ones, draft one from a blank form, test one.")
    actions = programme.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="every programme: id, title, hubs, dates in force, file",
                                 description="Every programme the bot knows, built in or from the config's "
                                             "programmes_dir: id, title, the hubs that run it, the dates in force "
                                             "for each (after the config's per-hub overrides) and its file.")
    common(listing)

    draft = actions.add_parser("draft", help="draft a definition from a blank .docx form",
                               description="Read a blank form and write a definition file, with comments where "
                                           "it guessed. --from lines the form up with an existing programme "
                                           "(last year's) and keeps its field ids, checks and rules.")
    draft.add_argument("form", metavar="BLANK.docx")
    draft.add_argument("--from", dest="base", metavar="ID", help="the programme this form replaces (last year's)")
    draft.add_argument("--id", dest="new_id", metavar="NEW_ID", help="the new programme's id")
    draft.add_argument("-o", "--output", metavar="FILE.toml", help="write the definition here (default: stdout)")
    common(draft)

    test = actions.add_parser("test", help="prove a definition reads its own blank form",
                              description="Fill the blank form in code every way schools fill it (.docx and PDF), "
                                          "check each comes back complete with every value right, leave each "
                                          "required field empty in turn, check no other programme's form is "
                                          "taken for this one, and print the recognition margin. Exit 0 only "
                                          "when every check passes.")
    test.add_argument("definition", metavar="FILE.toml")
    test.add_argument("--form", metavar="BLANK.docx", help="the blank form (default: the one named in the file)")
    test.add_argument("--no-pdf", action="store_true", help="leave out the PDF check (it needs LibreOffice)")
    common(test)


def run(args: argparse.Namespace, load_config: Callable[[str | None], object]) -> int:
    config = load_config(args.config)
    return {"list": _list, "draft": _draft, "test": _test}[args.action](args, config)


def _fail(message: str) -> int:
    print(f"hubbot programme: {message}", file=sys.stderr)
    return 2


# ---- list ----------------------------------------------------------------------------------------------------------

def _day(value) -> str:
    return f"{value.day} {value:%B %Y}"


def _list(args: argparse.Namespace, config) -> int:
    from bot.context import check_settings

    settings = check_settings(config)      # checks the hubs' programme lists and logs same-title warnings once
    registry = settings.registry
    configured = list(getattr(config, "hubs", ()) or ())
    for p in registry.programmes:
        print(f"{p.id}  {p.title}")
        hubs = [(h.id, h.name) for h in configured if p.id in h.programmes] if configured else [(p.hub.id, p.hub.name)]
        if not hubs:
            print(f"  hubs:   none in the config (the file names {p.hub.name})")
        for hub_id, name in hubs:
            dates = settings.dates(hub_id, p)
            deadline = _day(dates.deadline) if dates.deadline else "none set"
            notes = "; ".join(f"{_day(n.date)} {n.what}" for n in dates.notifications) or "none"
            print(f"  hub:    {name} ({hub_id}): deadline {deadline}; notifications: {notes}")
        origin = "built in" if registry.is_builtin(p) else "programmes_dir"
        print(f"  file:   {p.source} ({origin})")
    for line in registry.overrides:
        print(f"note: {line}")
    for line in registry.warnings:
        print(f"warning: {line}")
    return 0


# ---- draft ---------------------------------------------------------------------------------------------------------

def _draft(args: argparse.Namespace, config) -> int:
    from bot.context import load_programmes
    from parsers.docx_form import read_docx
    from parsers.errors import UnreadableFile
    from parsers.sniff import FileKind, sniff
    from parsers.types import Limits
    from rules.drafting import CannotDraft, draft_programme

    path = Path(args.form)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {args.form}: {exc.strerror}")
    kind = sniff(path.name, "", data)
    if kind is not FileKind.DOCX:
        what = {FileKind.PDF: "a PDF", FileKind.DOC: "an old Word .doc file", FileKind.IMAGE: "an image"}.get(
            kind, "not a Word document")
        return _fail(f"cannot draft from {args.form}: it is {what}; draft from the blank .docx form the hub sends "
                     f"out")
    if args.new_id and not _PROGRAMME_ID.match(args.new_id):
        return _fail(f"--id '{args.new_id}' should be lower-case letters, digits and hyphens, like "
                     f"secondary-tfm-wg-2025")
    base = None
    if args.base:
        registry = load_programmes(config)
        base = registry.get(args.base)
        if base is None:
            return _fail(f"--from: unknown programme '{args.base}' (known: "
                         f"{', '.join(sorted(p.id for p in registry.programmes))})")
    try:
        document = read_docx(data, Limits())
        draft = draft_programme(document, form_name=path.name, base=base, new_id=args.new_id)
    except UnreadableFile as exc:
        return _fail(f"cannot draft from {args.form}: {exc.reason}")
    except CannotDraft as exc:
        return _fail(f"cannot draft from {args.form}: {exc}")
    report = sys.stdout
    if args.output:
        try:
            Path(args.output).write_text(draft.text, encoding="utf-8")
        except OSError as exc:
            return _fail(f"cannot write {args.output}: {exc.strerror}")
        print(f"Wrote {args.output}: {draft.definition.id}, {len(draft.definition.fields)} fields, {draft.lines} "
              f"lines" + (f", {len(draft.kept_ids)} field ids kept from {draft.base}" if draft.base else "") + ".")
    else:
        sys.stdout.write(draft.text)
        report = sys.stderr   # the definition alone on stdout, so `> next-year.toml` works
    print(f"\nTo confirm before use ({len(draft.confirm)}):", file=report)
    for number, item in enumerate(draft.confirm, start=1):
        print(f"{number:>3}. {item}", file=report)
    print(f"\nThen: hubbot programme test {args.output or 'FILE.toml'}", file=report)
    return 0


# ---- test ----------------------------------------------------------------------------------------------------------

def blank_form_named(definition_path: Path) -> Path | None:
    """The blank form a definition file names in its header comment ("# Blank form: x.docx"), looked for beside the
    file, then among the shipped blank forms."""
    from samples.forms import FORMS_DIR

    try:
        found = _BLANK_FORM_NOTE.search(definition_path.read_text(encoding="utf-8"))
    except OSError:
        return None
    if found is None:
        return None
    for folder in (definition_path.parent, FORMS_DIR):
        if (folder / found.group(1)).is_file():
            return folder / found.group(1)
    return None


def _test(args: argparse.Namespace, config) -> int:
    from bot.context import load_programmes
    from rules.definitions import load_definition
    from samples.applications import FORM_FILES
    from samples.forms import form_path
    from samples.proving import Outcome, prove

    started = time.perf_counter()
    path = Path(args.definition)
    if not path.is_file():
        return _fail(f"no such definition file: {args.definition}")
    definition = load_definition(path)
    if args.form:
        blank = Path(args.form)
        if not blank.is_file():
            return _fail(f"no such blank form: {args.form}")
    else:
        blank = blank_form_named(path) or (form_path(FORM_FILES[definition.id]) if definition.id in FORM_FILES
                                           else None)
        if blank is None:
            return _fail(f"{args.definition} names no blank form that can be found: pass --form BLANK.docx")
    from parsers.sniff import FileKind, sniff

    if sniff(blank.name, "", blank.read_bytes()) is not FileKind.DOCX:
        return _fail(f"{blank}: the blank form should be a Word .docx file")
    registry = load_programmes(config)
    others = {p.id: form for p in registry.programmes if p.id != definition.id and not registry.is_builtin(p)
              and (form := blank_form_named(Path(p.source))) is not None}
    print(f"Testing {definition.id} ({path}) with the blank form {blank.name}")
    proof = prove(definition, blank, registry, pdf=not args.no_pdf, blanks=others)
    for check in proof.checks:
        print(f"  {check.line()}")
    if proof.margin is not None:
        against = f"over {proof.nearest}" if proof.nearest else "(no other programme recognises it)"
        print(f"Recognition margin: {proof.margin:.2f} {against}")
    passed, failed = proof.count(Outcome.PASS), proof.count(Outcome.FAIL)
    skipped = proof.count(Outcome.SKIP)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
          + f" in {time.perf_counter() - started:.1f}s: "
          + ("the bot reads this form with this definition." if proof.passed else "fix the lines marked FAIL."))
    return 0 if proof.passed else 1

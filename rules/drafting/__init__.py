"""Draft a programme definition from a blank form: ``hubbot programme draft``'s logic, pure.

A ``FormDocument`` read from the blank form (the same reader the bot uses for filled ones) goes in; the definition's
TOML text, the ``ProgrammeDefinition`` it loads as, and a plain-English list of what a person must confirm come out.
Without a base programme everything is drafted from the form (``rules.drafting.fresh``); with one (last year's,
``--from ID``) each field whose label still matches keeps its id, validator, word limit and conditions
(``rules.drafting.align``). The command line only reads the file and prints.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import replace

from parsers.types import FormDocument
from rules.definitions import ProgrammeDefinition, parse_definition
from rules.drafting.align import align
from rules.drafting.fresh import draft_fresh
from rules.drafting.layout import CannotDraft, FormLayout, read_layout
from rules.drafting.model import ConfirmItem, ConfirmKind, Draft, DraftField, ProgrammeDraft
from rules.drafting.writer import write_toml

__all__ = ["CannotDraft", "ConfirmItem", "ConfirmKind", "Draft", "DraftField", "FormLayout", "ProgrammeDraft",
           "draft_programme", "read_layout", "slug_id"]


def slug_id(name: str) -> str:
    """A programme id from a file name or title: lower case words joined by hyphens."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    return "-".join(words) or "new-programme"


def draft_programme(document: FormDocument, *, form_name: str, base: ProgrammeDefinition | None = None,
                    new_id: str | None = None) -> Draft:
    """Draft a definition from a blank form. ``form_name`` is the blank form's file name (written in the file so
    ``programme test`` can find it); ``base`` is the programme to line the form up with. Raises ``CannotDraft``."""
    layout = read_layout(document)
    stem = form_name.rsplit("/", 1)[-1].removesuffix(".docx")
    fresh, confirm = draft_fresh(layout, new_id=new_id or slug_id(stem))
    kept: tuple[str, ...] = ()
    if base is not None:
        fresh, confirm, kept = align(fresh, layout, base, new_id=new_id)
    header = (
        f"{fresh.title}: drafted by `hubbot programme draft` from {stem}.docx"
        + (f", lined up with {base.id}." if base else "."),
        f"Blank form: {stem}.docx",
        *((f"Every field keeps its id, checks and rules from {base.id} unless marked NEW.",) if base else ()),
        "Comments beside a value say what the drafter guessed from; check them, then run",
        "`hubbot programme test` on this file to see the bot read its own form with it.",
    )
    program = replace(fresh, header=header)
    text = write_toml(program)
    definition = parse_definition(tomllib.loads(text), f"{program.id}.toml (drafted)")
    return Draft(text=text, definition=definition, confirm=tuple(confirm), base=base.id if base else None,
                 kept_ids=kept)

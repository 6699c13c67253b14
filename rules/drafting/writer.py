"""Write a ``ProgrammeDraft`` as a definition file a person can read: the same layout and key order as the
hand-written files in ``rules/programmes/``, defaults left out, and a comment beside every value the drafter
guessed. Strings are written so ``tomllib`` reads back exactly what was drafted."""
from __future__ import annotations

import json

from rules.definitions import FieldDefinition
from rules.drafting.model import DraftField, ProgrammeDraft


def _s(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, and non-ASCII is allowed as it is)."""
    return json.dumps(value, ensure_ascii=False)


def _pattern(value: str) -> str:
    # Literal strings keep regular expressions readable ('\s+' rather than "\\s+").
    if "'" in value or "\n" in value:
        return _s(value)
    return f"'{value}'"


def _line(key: str, value: str, note: str | None) -> str:
    return f"{key} = {value}" + (f"   # {note}" if note else "")


def _list(key: str, items: tuple[str, ...], fmt=_s) -> list[str]:
    if not items:
        return [f"{key} = []"]
    one = f"{key} = [{', '.join(fmt(i) for i in items)}]"
    if len(one) <= 116:
        return [one]
    return [f"{key} = ["] + [f"  {fmt(i)}," for i in items] + ["]"]


def write_toml(draft: ProgrammeDraft) -> str:
    notes = dict(draft.notes)
    out: list[str] = [f"# {line}" if line else "#" for line in draft.header]
    out += [
        _line("id", _s(draft.id), notes.get("id")),
        _line("title", _s(draft.title), notes.get("title")),
        _line("short_title", _s(draft.short_title), None),
        "",
        "# Printed text that is not an answer: hints in answer spaces and the signature boxes.",
        *_list("hints", draft.hints),
        "",
        "# Headings in the order they appear; a repeated heading is told apart by its occurrence.",
        *_list("sections", draft.sections),
        "",
        "[recognise]",
        "# Regular expressions (case-insensitive) matched against the top of the document's text.",
        *_list("title_patterns", draft.title_patterns, _pattern),
        "",
        "[hub]",
    ]
    if notes.get("hub"):
        out.append(f"# {notes['hub']}")
    out += [f"id = {_s(draft.hub.id)}", f"name = {_s(draft.hub.name)}", f"address = {_s(draft.hub.address)}", "",
            "[dates]"]
    if draft.deadline:
        out.append(_line("deadline", _s(draft.deadline.isoformat()), notes.get("deadline")))
    else:
        out.append("# No deadline is printed on the form: set one here (deadline = \"YYYY-MM-DD\") or per hub in "
                   "the config.")
    if notes.get("notifications"):
        out.append(f"# {notes['notifications']}")
    if draft.notifications:
        out.append("notifications = [")
        out += [f"  {{ date = {_s(n.date.isoformat())}, what = {_s(n.what)} }}," for n in draft.notifications]
        out.append("]")
    else:
        out.append("notifications = []")
    if draft.region:
        out += ["", "# Schools whose address names none of these places are flagged for staff, never rejected.",
                "[eligibility.region]", f"field = {_s(draft.region.field)}", f"detail = {_s(draft.region.detail)}",
                *_list("places", draft.region.places)]
    if draft.hub_eligibility:
        out += ["", "[eligibility.hubs]", f"field = {_s(draft.hub_eligibility.field)}",
                *_list("codes", draft.hub_eligibility.codes)]
    for field in draft.fields:
        out += ["", *_field(field)]
    for s in draft.signatories:
        out += ["", "[[signatories]]", f"role = {_s(s.role)}", f"label = {_s(s.label)}"]
    return "\n".join(out) + "\n"


def _field(draft_field: DraftField) -> list[str]:
    f: FieldDefinition = draft_field.definition
    notes = dict(draft_field.notes)
    lines = []
    if "field" in notes:
        lines.append(f"# {notes['field']}")
    lines += ["[[fields]]", _line("id", _s(f.id), notes.get("id")), _line("section", _s(f.section), None)]
    if f.section_occurrence != 1:
        lines.append(f"section_occurrence = {f.section_occurrence}")
    lines.append(_line("label", _s(f.label), notes.get("label")))
    if f.label_occurrence != 1:
        lines.append(f"label_occurrence = {f.label_occurrence}")
    if not f.required:
        lines.append(_line("required", "false", notes.get("required")))
    default_validator = "statement" if f.prompt else "text"
    if f.validator != default_validator:
        lines.append(_line("validator", _s(f.validator), notes.get("validator")))
    if f.prompt:
        lines.append(_line("prompt", _s(f.prompt), notes.get("prompt")))
    if f.words:
        lines.append(_line("words", f"{{ limit = {f.words.limit}, kind = {_s(f.words.kind.value)} }}",
                           notes.get("words")))
    if f.required_when:
        lines.append(_line("required_when", f"{{ field = {_s(f.required_when.field)}, equals = "
                                            f"{_s(f.required_when.equals)} }}", notes.get("required_when")))
    return lines

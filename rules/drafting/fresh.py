"""A programme drafted from a blank form alone: every label and statement box becomes a field with an id made from
its heading and label, a validator from its label or printed hint, "required" unless the label says otherwise, and
the title, hub, dates and signatories from the form's own text. Each guess is noted for the file's comments and for
the list a person confirms."""
from __future__ import annotations

import re
from dataclasses import replace

from rules.definitions import FIELD_ID, Condition, FieldDefinition, HubInfo, Notification, RegionRule, Signatory
from rules.drafting import guess
from rules.drafting.layout import FormLayout, Slot
from rules.drafting.model import ConfirmItem, ConfirmKind, DraftField, ProgrammeDraft
from rules.text import normalise

_PERSON_PARTS = ("email", "telephone", "trn")
NO_HUB_ADDRESS = "hub@example.org"   # written when the form prints no address: a person must fill it in


def unique_id(candidate: str, used: set[str]) -> str:
    candidate = re.sub(r"[^a-z0-9_.]", "_", candidate.lower()).strip("_.") or "field"
    if not candidate[0].isalpha():
        candidate = f"f_{candidate}"
    if not FIELD_ID.match(candidate):
        candidate = candidate.replace(".", "_", candidate.count(".") - 1)
    out, n = candidate, 2
    while out in used:
        out = f"{candidate}_{n}"
        n += 1
    used.add(out)
    return out


def draft_fields(layout: FormLayout) -> tuple[DraftField, ...]:
    fields: list[DraftField] = []
    used: set[str] = set()
    last_teacher: str | None = None
    for section in layout.sections:
        role_here = guess.section_role(section.heading, last_teacher)
        if role_here.startswith("teacher"):
            last_teacher = role_here
        row_person: dict[tuple[int, int], str] = {}
        label_seen: dict[str, int] = {}
        yes_no: list[tuple[str, Slot]] = []      # yes/no questions so far in this section
        slots = section.slots
        for index, slot in enumerate(slots):
            notes: list[tuple[str, str]] = []
            required, condition = True, None
            words = None
            if slot.prompt:
                role, part, validator = role_here, "statement", "statement"
                label, prompt = section.heading, guess.prompt_start(slot.label)
                words, bare = guess.word_limit(slot.label)
                if words and bare:
                    notes.append(("words", "the prompt gives a number of words without 'up to' or 'about'"))
                field_id = f"{role}.{part}"
            else:
                found = guess.label_part(slot.label)
                part, validator, prompt, label = found.part, found.validator, None, slot.label
                named = guess.label_role(slot.label)
                if named:
                    role = named
                elif part in _PERSON_PARTS and (slot.table, slot.row) in row_person:
                    role = row_person[(slot.table, slot.row)]
                    notes.append(("id", "beside that person's name on the same row"))
                else:
                    role = role_here
                if named in guess.PERSON_ROLES:
                    row_person[(slot.table, slot.row)] = named
                following = next((s.label for s in slots[index + 1:] if s.table == slot.table), None)
                if guess.is_yes_no(slot.label, slot.hints, following):
                    validator = "yes_no"
                    notes.append(("validator", "a Yes/No question"))
                elif found.why and validator != "text":
                    notes.append(("validator", found.why))
                field_id = "maths_hub" if part == "maths_hub" else f"{role}.{part}"
                if guess.is_optional(slot.label):
                    required = False
                    notes.append(("required", "the label says it is optional"))
                elif yes_no and (guess.is_if_yes(slot.label) or yes_no[-1][1].table == slot.table):
                    required = False
                    condition = Condition(yes_no[-1][0], "yes")
                    why = ("the label starts 'If yes'" if guess.is_if_yes(slot.label)
                           else "it follows the Yes/No question in the same table")
                    notes.append(("required_when", f"guessed: {why}"))
            field_id = unique_id(field_id, used)
            key = normalise(label)
            label_seen[key] = label_seen.get(key, 0) + 1
            definition = FieldDefinition(
                id=field_id, section=section.heading, label=label, required=required, validator=validator,
                section_occurrence=section.occurrence, label_occurrence=label_seen[key], prompt=prompt,
                words=words, required_when=condition)
            if validator == "yes_no":
                yes_no.append((field_id, slot))
            fields.append(DraftField(definition, slot, tuple(notes)))
    return tuple(fields)


def draft_signatories(layout: FormLayout, field_ids: set[str]) -> tuple[tuple[Signatory, ...], list[ConfirmItem]]:
    out: list[Signatory] = []
    confirm: list[ConfirmItem] = []
    roles: set[str] = set()
    for line in layout.signatures:
        role = guess.person_role(line.label)
        if role is None or role in roles:
            confirm.append(ConfirmItem(ConfirmKind.SIGNATORIES, f"'{line.printed}': could not tell whose signature "
                                                                f"this is; add it by hand if it matters"))
            continue
        if f"{role}.email" not in field_ids:
            confirm.append(ConfirmItem(ConfirmKind.SIGNATORIES, f"'{line.printed}': the form asks for no e-mail "
                                                                f"address for {line.label}, so the bot cannot "
                                                                f"check they were copied; left out"))
            continue
        roles.add(role)
        out.append(Signatory(role, line.label))
    return tuple(out), confirm


def draft_fresh(layout: FormLayout, *, new_id: str) -> tuple[ProgrammeDraft, list[ConfirmItem]]:
    """A whole programme from the layout alone, and what a person must confirm about it."""
    confirm: list[ConfirmItem] = []
    fields = draft_fields(layout)
    ids = {f.definition.id for f in fields}
    signatories, sig_confirm = draft_signatories(layout, ids)
    title = guess.guess_title(layout.preamble, new_id)
    hub = guess.guess_hub(layout.preamble + layout.paragraphs)
    top_notes: list[tuple[str, str]] = [("title", "guessed from the form's title lines")]
    if hub is None:
        hub_info = HubInfo("hub", "Maths Hub", NO_HUB_ADDRESS)
        top_notes.append(("hub", "no address is printed on the form: fill in the hub's name and mailbox"))
        confirm.append(ConfirmItem(ConfirmKind.HUB, "No e-mail address is printed on the form: fill in the hub's "
                                                    "id, name and mailbox under [hub]."))
    else:
        hub_info = HubInfo(hub.id, hub.name, hub.address)
        top_notes.append(("hub", hub.how))
        confirm.append(ConfirmItem(ConfirmKind.HUB, f"Hub: {hub.name} <{hub.address}> ({hub.how})."))
    dates = guess.find_dates(layout.preamble + tuple(p for p in layout.paragraphs if p not in layout.preamble))
    deadline = next((d for d in dates if d.kind is guess.DateKind.DEADLINE), None)
    notifications = tuple(Notification(d.day, d.what) for d in dates if d.kind is guess.DateKind.NOTIFICATION)
    confirm.extend(date_items(dates))
    region = None
    if (found := guess.guess_region(layout.preamble)) is not None and "school.address" in ids:
        sentence, places = found
        region = RegionRule("school.address", places, f"address is not in {_joined(places)}")
        confirm.append(ConfirmItem(ConfirmKind.ELIGIBILITY,
                                   f"The form says '{sentence}': addresses naming none of {_joined(places)} will be "
                                   f"flagged for staff. Add the towns in those areas to [eligibility.region] places."))
    draft = ProgrammeDraft(
        id=new_id, title=title.title, short_title=title.short_title, title_patterns=title.patterns, hub=hub_info,
        deadline=deadline.day if deadline else None, notifications=notifications,
        hints=layout.hints, sections=tuple(s.heading for s in layout.sections), fields=fields,
        signatories=signatories, region=region, notes=tuple(top_notes + date_notes(dates)),
    )
    confirm.append(ConfirmItem(ConfirmKind.TITLE, f"Title: '{draft.title}'; in subject lines: "
                                                  f"'{draft.short_title}'."))
    confirm.extend(sig_confirm)
    confirm.append(signatory_item(signatories))
    confirm.append(required_item(fields))
    if (item := validators_item(fields)) is not None:
        confirm.append(item)
    limits = [f.definition for f in fields if f.definition.words]
    if limits:
        confirm.append(ConfirmItem(ConfirmKind.WORDS, "Word limits: " + "; ".join(
            f"'{f.label}' {words_text(f.words)}" for f in limits) + " ('up to' is enforced, 'about' only flagged)."))
    confirm.append(ConfirmItem(ConfirmKind.IDS, "Field ids were made from the headings and labels (e.g. "
                                                f"{', '.join(f.definition.id for f in fields[:3])}); if this form "
                                                "replaces a programme the bot already knows, draft again with "
                                                "--from ID to keep its ids, exports and rules."))
    confirm.extend(layout_items(layout))
    return draft, confirm


def _label(fields: tuple[DraftField, ...], field_id: str) -> str:
    return next((f.definition.label for f in fields if f.definition.id == field_id), field_id)


def _joined(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def signatory_item(signatories: tuple[Signatory, ...]) -> ConfirmItem:
    listed = "; ".join(f"{s.label} ({s.role})" for s in signatories) or "none found"
    return ConfirmItem(ConfirmKind.SIGNATORIES, f"Signatories, each of whom must be copied on the school's e-mail: "
                                                f"{listed}.")


def words_text(words) -> str:
    return f"{words.kind.value.replace('_', ' ')} {words.limit} words"


def required_item(fields: tuple[DraftField, ...]) -> ConfirmItem:
    optional = [f.definition for f in fields if not f.definition.required]
    if not optional:
        return ConfirmItem(ConfirmKind.REQUIRED, "Every field is marked required: set required = false on any a "
                                                 "school may leave empty.")
    listed = ", ".join(f"'{f.label}'" + (f" (needed only when '{_label(fields, f.required_when.field)}' is Yes)"
                                         if f.required_when else "") for f in optional)
    return ConfirmItem(ConfirmKind.REQUIRED, f"Every field is marked required except {listed}: set required = false "
                                             f"on any other a school may leave empty.")


_VALIDATOR_NAMES = {"urn": "URN", "trn": "TRN", "email": "e-mail", "telephone": "telephone", "address": "address",
                    "yes_no": "Yes/No", "maths_hub": "Maths Hub"}


def validators_item(fields: tuple[DraftField, ...]) -> ConfirmItem | None:
    groups: dict[str, list[str]] = {}
    for f in fields:
        if f.definition.validator in _VALIDATOR_NAMES:
            groups.setdefault(f.definition.validator, []).append(f.definition.label)
    if not groups:
        return None
    parts = []
    for validator, labels in groups.items():
        counted = [f"'{label}'" + (f" x{labels.count(label)}" if labels.count(label) > 1 else "")
                   for label in dict.fromkeys(labels)]
        parts.append(f"{_VALIDATOR_NAMES[validator]}: {', '.join(counted)}")
    return ConfirmItem(ConfirmKind.VALIDATORS, "Answers checked for their shape: " + "; ".join(parts)
                       + ". Everything else is free text.")


def date_notes(dates: tuple[guess.FoundDate, ...]) -> list[tuple[str, str]]:
    notes = [("deadline", f"from \"{d.sentence}\"") for d in dates if d.kind is guess.DateKind.DEADLINE]
    found = [d for d in dates if d.kind is guess.DateKind.NOTIFICATION]
    if found:
        notes.append(("notifications", "from: " + " / ".join(f"\"{d.sentence}\"" for d in found)))
    return notes


def _day(d) -> str:
    return f"{d.day} {d:%B %Y}"


def date_items(dates: tuple[guess.FoundDate, ...]) -> list[ConfirmItem]:
    items = []
    if not any(d.kind is guess.DateKind.DEADLINE for d in dates):
        items.append(ConfirmItem(ConfirmKind.DATES, "No deadline is printed on the form: set deadline under "
                                                    "[dates], or per hub in the config ([hubs.dates.\"ID\"])."))
    for d in dates:
        if d.kind is guess.DateKind.DEADLINE:
            text = f"Deadline {_day(d.day)} (until 23:59 London time), from: \"{d.sentence}\""
        elif d.kind is guess.DateKind.NOTIFICATION:
            text = f"Notification {_day(d.day)}, '{d.what}', from: \"{d.sentence}\""
        else:
            text = f"Date {_day(d.day)} is printed but not used: \"{d.sentence}\""
        items.append(ConfirmItem(ConfirmKind.DATES, text))
    return items


def layout_items(layout: FormLayout) -> list[ConfirmItem]:
    return [ConfirmItem(ConfirmKind.LAYOUT, f"'{label}' has no answer space beside or below it, so it is not a "
                                            f"field; add it by hand if schools answer it.")
            for label in dict.fromkeys(layout.unanswerable)]


def with_definition(field: DraftField, **changes) -> DraftField:
    return replace(field, definition=replace(field.definition, **changes))

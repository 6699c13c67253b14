"""Line next year's form up with last year's programme (``hubbot programme draft --from ID``).

Headings are paired first (same heading, years and punctuation ignored, or the heading whose fields match best when
it was reworded; a repeated heading pairs by order). Inside a pair each label is matched to last year's by
``rules.labels`` similarity; equal labels ("Email" twice) go by the person named on the same row, then by order.
A field not matched there is tried loosely in its section (a reworded label asking for the same kind of answer), then
anywhere (a row moved to another table). A matched field keeps its id, validator, required flag, word limit and
condition; what was not matched is new or gone, and every such difference becomes a line for a person to confirm.
"""
from __future__ import annotations

import re
from dataclasses import replace

from rules.definitions import FieldDefinition, ProgrammeDefinition, Signatory
from rules.drafting import guess
from rules.drafting.fresh import NO_HUB_ADDRESS, date_items, layout_items, signatory_item, unique_id, words_text
from rules.drafting.layout import FormLayout
from rules.drafting.model import ConfirmItem, ConfirmKind, DraftField, ProgrammeDraft
from rules.labels import SAME_LABEL, label_key, shift_years, similarity, years_in
from rules.text import normalise

_SAME_PROMPT = 0.75      # statement prompts: compared over the shorter one's words
_LOOSE = 0.55            # a reworded label in the same section asking for the same kind of answer
_SMALL_EDIT = 0.9        # a label this alike (a typo fixed, "/" for "or") is noted in the file, not listed


def _numbers(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\d+", label_key(text)))


def alike(a: str, b: str) -> float:
    """Label similarity, except that labels numbering different things ("Teacher 1", "Teacher 2") never match."""
    if _numbers(a) != _numbers(b):
        return 0.0
    return similarity(a, b)


SectionKey = tuple[str, int]


def _old_sections(base: ProgrammeDefinition) -> list[SectionKey]:
    seen: dict[str, int] = {}
    out = []
    for heading in base.sections:
        seen[normalise(heading)] = seen.get(normalise(heading), 0) + 1
        out.append((heading, seen[normalise(heading)]))
    return out


def _key(section: str, occurrence: int) -> SectionKey:
    return (normalise(section), occurrence)


class _Matcher:
    def __init__(self, fresh: ProgrammeDraft, base: ProgrammeDefinition) -> None:
        self.fresh, self.base = fresh, base
        self.new_in: dict[SectionKey, list[int]] = {}
        for i, f in enumerate(fresh.fields):
            self.new_in.setdefault(_key(f.definition.section, f.definition.section_occurrence), []).append(i)
        self.old_in: dict[SectionKey, list[FieldDefinition]] = {}
        for o in base.fields:
            self.old_in.setdefault(_key(o.section, o.section_occurrence), []).append(o)
        self.sections: dict[SectionKey, SectionKey] = {}
        self.matched: dict[int, FieldDefinition] = {}
        self.how: dict[int, str] = {}

    # ---- headings ----------------------------------------------------------------------------------------------

    def _fits(self, i: int, old: FieldDefinition) -> float:
        new = self.fresh.fields[i]
        if new.definition.prompt:
            return guess.statement_similarity(new.slot.label, old.prompt) if old.prompt else 0.0
        return 0.0 if old.prompt else alike(new.definition.label, old.label)

    def _overlap(self, new_key: SectionKey, old_key: SectionKey) -> float:
        new, old = self.new_in.get(new_key, []), self.old_in.get(old_key, [])
        if not new or not old:
            return 0.0
        hits = sum(any(self._fits(i, o) >= (_SAME_PROMPT if self.fresh.fields[i].definition.prompt else SAME_LABEL)
                       for o in old) for i in new)
        return hits / len(new)

    def pair_sections(self, layout: FormLayout) -> None:
        old_keys = [_key(h, n) for h, n in _old_sections(self.base)]
        names = {_key(h, n): h for h, n in _old_sections(self.base)}
        used: set[SectionKey] = set()
        for section in layout.sections:
            new_key = _key(section.heading, section.occurrence)
            best, best_score = None, 0.0
            for old_key in old_keys:
                if old_key in used:
                    continue
                heading = alike(section.heading, names[old_key])
                overlap = self._overlap(new_key, old_key)
                # A matching heading wins (its fields break ties between repeats); a reworded one needs at least
                # half its fields to match.
                score = heading + overlap if heading >= SAME_LABEL else (overlap if overlap >= 0.5 else 0.0)
                if score > best_score:
                    best, best_score = old_key, score
            if best is not None:
                used.add(best)
                self.sections[new_key] = best

    # ---- fields ------------------------------------------------------------------------------------------------

    def _taken(self) -> set[str]:
        return {o.id for o in self.matched.values()}

    def _row_role(self, i: int) -> str | None:
        """The person whose field was matched earlier on the same row: "Email" beside "Name of head of department"."""
        f = self.fresh.fields[i]
        for j in range(i - 1, -1, -1):
            g = self.fresh.fields[j]
            same_row = (g.definition.section, g.definition.section_occurrence, g.slot.table, g.slot.row) == \
                       (f.definition.section, f.definition.section_occurrence, f.slot.table, f.slot.row)
            if not same_row:
                break
            if j in self.matched and self.matched[j].role in guess.PERSON_ROLES:
                return self.matched[j].role
        return None

    def _choose(self, i: int, candidates: list[FieldDefinition], threshold: float) -> FieldDefinition | None:
        scored = [(self._fits(i, o), o) for o in candidates if o.id not in self._taken()]
        scored = [(s, o) for s, o in scored if s >= threshold]
        if not scored:
            return None
        top = max(s for s, _ in scored)
        best = [o for s, o in scored if s == top]
        role = self._row_role(i)
        by_role = [o for o in best if o.role == role] if role else []
        return (by_role or sorted(best, key=lambda o: o.label_occurrence))[0]

    def match_fields(self) -> None:
        fields = self.fresh.fields
        # 1. Same label (or prompt) under the paired heading.
        for i, f in enumerate(fields):
            old_key = self.sections.get(_key(f.definition.section, f.definition.section_occurrence))
            if old_key is None:
                continue
            threshold = _SAME_PROMPT if f.definition.prompt else SAME_LABEL
            if (old := self._choose(i, self.old_in.get(old_key, []), threshold)) is not None:
                self.matched[i] = old
        # 2. A reworded label under the paired heading, asking for the same kind of answer; a statement box that
        #    is the only one on both sides.
        for i, f in enumerate(fields):
            if i in self.matched:
                continue
            old_key = self.sections.get(_key(f.definition.section, f.definition.section_occurrence))
            if old_key is None:
                continue
            left = [o for o in self.old_in.get(old_key, []) if o.id not in self._taken()]
            if f.definition.prompt:
                new_prompts = [j for j in self.new_in.get(_key(f.definition.section, f.definition.section_occurrence),
                                                          []) if fields[j].definition.prompt]
                old_prompts = [o for o in self.old_in.get(old_key, []) if o.prompt]
                if len(new_prompts) == 1 and len(old_prompts) == 1 and old_prompts[0] in left:
                    self.matched[i], self.how[i] = old_prompts[0], "the only statement box under this heading"
                continue
            same_kind = [o for o in left if not o.prompt and o.validator == f.definition.validator]
            if (old := self._choose(i, same_kind, _LOOSE)) is not None:
                self.matched[i], self.how[i] = old, "the nearest label asking for the same kind of answer"
        # 3. The same label anywhere else: a row moved to another table or heading.
        for i, f in enumerate(fields):
            if i in self.matched or f.definition.prompt:
                continue
            if (old := self._choose(i, list(self.base.fields), SAME_LABEL)) is not None:
                self.matched[i], self.how[i] = old, f"moved from '{old.section}'"


def _year_delta(layout: FormLayout, base: ProgrammeDefinition, fresh: ProgrammeDraft) -> int:
    new_title = years_in(" ".join(guess.title_lines(layout.preamble)))
    old_title = years_in(" ".join([base.title, *(p.pattern for p in base.title_patterns)]))
    if new_title and old_title:
        return max(new_title) - max(old_title)
    new_labels = years_in(" ".join(f.definition.label for f in fresh.fields))
    old_labels = years_in(" ".join(f.label for f in base.fields))
    if new_labels and old_labels:
        return max(new_labels) - max(old_labels)
    return 0


def align(fresh: ProgrammeDraft, layout: FormLayout, base: ProgrammeDefinition, *,
          new_id: str | None = None) -> tuple[ProgrammeDraft, list[ConfirmItem], tuple[str, ...]]:
    """The fresh draft with last year's ids, checks and rules carried over where the form still asks the same."""
    matcher = _Matcher(fresh, base)
    matcher.pair_sections(layout)
    matcher.match_fields()
    confirm: list[ConfirmItem] = []
    delta = _year_delta(layout, base, fresh)

    programme_id = new_id or shift_years(base.id, delta)
    if programme_id == base.id:
        programme_id = f"{base.id}-next"
        confirm.append(ConfirmItem(ConfirmKind.TITLE, f"No change of year found, so the id is '{programme_id}': "
                                                      f"choose one with --id (the same id would replace {base.id})."))
    title, short_title = shift_years(base.title, delta), shift_years(base.short_title, delta)
    head = normalise("\n".join(layout.preamble))
    patterns = tuple(p for p in (shift_years(p.pattern, delta) for p in base.title_patterns)
                     if re.search(p, head, re.IGNORECASE))
    if not patterns:
        patterns = fresh.title_patterns
        confirm.append(ConfirmItem(ConfirmKind.TITLE, f"{base.id}'s title patterns do not match this form's title, "
                                                      f"so new ones were made from it: check [recognise]."))
    confirm.insert(0, ConfirmItem(ConfirmKind.TITLE, f"Id '{programme_id}', title '{title}' (was '{base.title}')."))

    # Fields: kept ids first, so a new field's drafted id never takes one of them.
    final_ids: dict[int, str] = {i: old.id for i, old in matcher.matched.items()}
    used = set(final_ids.values())
    for i, f in enumerate(fresh.fields):
        if i not in final_ids:
            final_ids[i] = unique_id(f.definition.id, used)
    fresh_to_final = {f.definition.id: final_ids[i] for i, f in enumerate(fresh.fields)}
    ids = set(final_ids.values())
    fields: list[DraftField] = []
    reworded: dict[tuple[str, str, str | None], list[str]] = {}
    for i, f in enumerate(fresh.fields):
        d = f.definition
        old = matcher.matched.get(i)
        if old is None:
            condition = d.required_when
            if condition is not None:
                condition = replace(condition, field=fresh_to_final.get(condition.field, condition.field))
            new_def = replace(d, id=final_ids[i], required_when=condition)
            notes = (("field", f"NEW: not on {base.id}'s form"), *f.notes)
            needed = "required" if d.required else "not required" + (
                " unless the question above is answered Yes" if condition else "")
            confirm.append(ConfirmItem(ConfirmKind.NEW_FIELD, f"New field '{d.label}' under '{d.section}': drafted as "
                                                              f"{final_ids[i]} ({d.validator}, {needed}). Is it "
                                                              f"required?"))
            fields.append(DraftField(new_def, f.slot, notes))
            continue
        notes: list[tuple[str, str]] = []
        words = old.words
        if d.words and d.words != old.words:
            words = d.words
            was = words_text(old.words) if old.words else "no limit"
            notes.append(("words", f"the form now says {words_text(d.words)} (was {was})"))
            confirm.append(ConfirmItem(ConfirmKind.WORDS, f"'{d.label}': the form now says {words_text(d.words)} "
                                                          f"(last year {was})."))
        elif d.prompt and d.words is None and old.words:
            notes.append(("words", f"kept from {base.id}: no word guidance is printed now"))
            confirm.append(ConfirmItem(ConfirmKind.WORDS, f"'{d.label}': no word guidance is printed on the form "
                                                          f"now; kept last year's {words_text(old.words)}."))
        condition = old.required_when
        if condition is not None and condition.field not in ids:
            confirm.append(ConfirmItem(ConfirmKind.REQUIRED, f"'{d.label}' was required when {condition.field} was "
                                                             f"'{condition.equals}', which is gone: now optional."))
            condition = None
        how = matcher.how.get(i)
        if (label_key(d.label) != label_key(old.label) and not d.prompt) or how:
            notes.append(("label", f"was '{old.label}'" if label_key(d.label) != label_key(old.label) else how))
            if how or similarity(d.label, old.label) < _SMALL_EDIT:
                reworded.setdefault((old.label, d.label, how), []).append(old.id)
        new_def = replace(d, id=old.id, validator=old.validator, required=old.required, words=words,
                          required_when=condition)
        fields.append(DraftField(new_def, f.slot, tuple(notes)))
    for (was, now, how), field_ids in reworded.items():
        what = f"'{was}' now reads '{now}'" if was != now else f"'{now}'"
        confirm.append(ConfirmItem(ConfirmKind.REWORDED, f"{what} ({', '.join(field_ids)}" + (f"; {how}" if how else "")
                                   + "): same question? (id kept)"))
    names = {_key(h, n): h for h, n in _old_sections(base)}
    for section in layout.sections:
        old_key = matcher.sections.get(_key(section.heading, section.occurrence))
        if old_key is not None and label_key(names[old_key]) != label_key(section.heading):
            confirm.append(ConfirmItem(ConfirmKind.REWORDED, f"Heading '{names[old_key]}' now reads "
                                                             f"'{section.heading}' (its fields were kept)."))
    matched_old = {o.id for o in matcher.matched.values()}
    for o in base.fields:
        if o.id not in matched_old:
            confirm.append(ConfirmItem(ConfirmKind.GONE, f"'{o.label}' ({o.id}, under '{o.section}') is not on the "
                                                         f"new form: it is left out."))

    signatories, sig_items = _signatories(fresh, base, ids)
    confirm.extend(sig_items)
    confirm.append(signatory_item(signatories))

    # Dates: only what this form prints; last year's are never carried over silently.
    dates = guess.find_dates(layout.preamble + tuple(p for p in layout.paragraphs if p not in layout.preamble))
    confirm.extend(date_items(dates))
    if fresh.deadline is None and base.deadline:
        confirm.append(ConfirmItem(ConfirmKind.DATES, f"Last year's deadline was {base.deadline:%d %B %Y}."))
    if not fresh.notifications and base.notifications:
        confirm.append(ConfirmItem(ConfirmKind.DATES, "Last year's notification dates ("
                                   + "; ".join(f"{n.date:%d %B %Y} {n.what}" for n in base.notifications)
                                   + ") are not printed on the form: add this year's under [dates]."))

    hub = base.hub
    notes = [("id", f"from {base.id}, years moved on by {delta}" if delta else f"from {base.id}"),
             ("title", f"{base.id}'s title with the years moved on")]
    fresh_notes = dict(fresh.notes)
    if fresh.hub.address != base.hub.address and fresh.hub.address != NO_HUB_ADDRESS:
        hub = replace(base.hub, address=fresh.hub.address)
        notes.append(("hub", f"the form prints {fresh.hub.address}; last year's was {base.hub.address}"))
        confirm.append(ConfirmItem(ConfirmKind.HUB, f"The form is returned to {fresh.hub.address}, not last year's "
                                                    f"{base.hub.address}: is {hub.name} still right?"))
    notes += [(k, v) for k, v in fresh_notes.items() if k in ("deadline", "notifications")]

    region = base.region if base.region and base.region.field in ids else fresh.region
    eligibility = base.hub_eligibility if base.hub_eligibility and base.hub_eligibility.field in ids else None
    if base.region and region is not base.region:
        confirm.append(ConfirmItem(ConfirmKind.ELIGIBILITY, f"{base.id}'s region rule read {base.region.field}, "
                                                            f"which is gone: no address is checked for the region."))
    if base.hub_eligibility and eligibility is None:
        confirm.append(ConfirmItem(ConfirmKind.ELIGIBILITY, f"{base.id} was open only to the hubs "
                                                            f"{', '.join(base.hub_eligibility.codes)}, checked on "
                                                            f"{base.hub_eligibility.field}, which is gone: add the "
                                                            f"rule back under [eligibility.hubs] if it still holds."))
    text = normalise("\n".join(layout.paragraphs + tuple(s.label for _, s in layout.all_slots())
                               + layout.hints))
    hints = tuple(dict.fromkeys((*fresh.hints, *(h for h in base.hints if normalise(h) in text))))
    confirm.extend(layout_items(layout))
    draft = replace(fresh, id=programme_id, title=title, short_title=short_title, title_patterns=patterns, hub=hub,
                    hints=hints, fields=tuple(fields), signatories=signatories, region=region,
                    hub_eligibility=eligibility, notes=tuple(notes))
    return draft, confirm, tuple(sorted(matched_old))


def _signatories(fresh: ProgrammeDraft, base: ProgrammeDefinition,
                 ids: set[str]) -> tuple[tuple[Signatory, ...], list[ConfirmItem]]:
    out: list[Signatory] = []
    items: list[ConfirmItem] = []
    taken: set[str] = set()
    for s in fresh.signatories:
        old = max(base.signatories, key=lambda o: alike(s.label, o.label), default=None)
        if old is not None and alike(s.label, old.label) >= SAME_LABEL and old.role not in taken:
            role = old.role
            if label_key(old.label) != label_key(s.label):
                items.append(ConfirmItem(ConfirmKind.SIGNATORIES, f"Signatory '{old.label}' now reads '{s.label}'."))
        else:
            role = s.role
            items.append(ConfirmItem(ConfirmKind.SIGNATORIES, f"New signatory '{s.label}' (role {role})."))
        if f"{role}.email" not in ids or role in taken:
            items.append(ConfirmItem(ConfirmKind.SIGNATORIES, f"Signatory '{s.label}': no e-mail field for {role} on "
                                                              f"the form, so their copy cannot be checked; left out."))
            continue
        taken.add(role)
        out.append(Signatory(role, s.label))
    for o in base.signatories:
        if o.role not in taken:
            items.append(ConfirmItem(ConfirmKind.SIGNATORIES, f"Signatory '{o.label}' ({o.role}) is no longer on the "
                                                              f"form."))
    return tuple(out), items

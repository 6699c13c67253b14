"""Programme definitions: the data files under ``rules/programmes/`` turned into typed, validated objects.

Each ``*.toml`` file describes one programme's form (how to recognise it, its sections and fields, validators,
word limits, signatories, hub, dates and eligibility). Adding next year's form means adding a file. Loading checks
every key and fails with a ``ConfigError`` naming the file and the key, so a typo never becomes a silent miss.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from parsers.errors import ConfigError
from parsers.toml_table import TomlTable
from rules.labels import label_key
from rules.validators import VALIDATORS

FIELD_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$")


class WordLimitKind(StrEnum):
    UP_TO = "up_to"   # "up to N words": over N is invalid
    ABOUT = "about"   # "about N words": never invalid; over 1.5 x N is flagged for staff


@dataclass(frozen=True)
class WordLimit:
    limit: int
    kind: WordLimitKind


@dataclass(frozen=True)
class Condition:
    """``required_when``: the field is required when another field's normalised answer equals a value."""

    field: str
    equals: str


@dataclass(frozen=True)
class FieldDefinition:
    id: str
    section: str
    label: str
    required: bool = True
    validator: str = "text"
    section_occurrence: int = 1
    label_occurrence: int = 1
    prompt: str | None = None          # statement boxes: the answer is in the row below this printed prompt
    words: WordLimit | None = None
    required_when: Condition | None = None

    @property
    def role(self) -> str:
        return self.id.split(".", 1)[0]


@dataclass(frozen=True)
class Signatory:
    role: str
    label: str


@dataclass(frozen=True)
class Notification:
    date: date
    what: str


@dataclass(frozen=True)
class HubInfo:
    id: str
    name: str
    address: str


@dataclass(frozen=True)
class RegionRule:
    field: str
    places: tuple[str, ...]
    detail: str


@dataclass(frozen=True)
class HubEligibility:
    field: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class ProgrammeDefinition:
    id: str
    title: str
    short_title: str
    title_patterns: tuple[re.Pattern[str], ...]
    hub: HubInfo
    deadline: date | None
    notifications: tuple[Notification, ...]
    hints: tuple[str, ...]
    sections: tuple[str, ...]
    fields: tuple[FieldDefinition, ...]
    signatories: tuple[Signatory, ...]
    region: RegionRule | None = None
    hub_eligibility: HubEligibility | None = None
    checks: tuple[str, ...] = ()       # checks this programme adds to the default policy (rules.checks), by name
    source: str = ""
    _by_id: dict[str, FieldDefinition] = field(default_factory=dict, repr=False, compare=False)

    def field(self, field_id: str) -> FieldDefinition:
        return self._by_id[field_id]

    def display_label(self, f: FieldDefinition) -> str:
        """The label as a person should read it in a reply: a label printed twice in one section ("E-mail" for
        the head and for the head of department) gets the person's title, "E-mail (Head of department)"."""
        twins = [o for o in self.fields if o.section == f.section and o.section_occurrence == f.section_occurrence
                 and o.label == f.label]
        if len(twins) < 2:
            return f.label
        title = next((s.label for s in self.signatories if s.role == f.role), f.role)
        return f"{f.label} ({title})"

    @property
    def field_ids(self) -> tuple[str, ...]:
        return tuple(f.id for f in self.fields)


def _field(reader: TomlTable, sections: tuple[str, ...]) -> FieldDefinition:
    reader.only("id", "section", "label", "required", "validator", "section_occurrence", "label_occurrence",
                "prompt", "words", "required_when")
    field_id = reader.get("id", str)
    if not FIELD_ID.match(field_id):
        raise reader.fail("id", f"'{field_id}' is not a field id like 'school.urn'")
    section = reader.get("section", str)
    occurrence = reader.get("section_occurrence", int, 1)
    if sections.count(section) < occurrence:
        raise reader.fail("section", f"'{section}' (occurrence {occurrence}) is not listed in 'sections'")
    # Statement boxes keep their paragraphs; every other free-text answer is read as one line.
    validator = reader.get("validator", str, "statement" if "prompt" in reader.data else "text")
    if validator not in VALIDATORS:
        raise reader.fail("validator", f"'{validator}' is not one of {', '.join(sorted(VALIDATORS))}")
    words = None
    if (w := reader.table("words")) is not None:
        w.only("limit", "kind")
        try:
            kind = WordLimitKind(w.get("kind", str))
        except ValueError:
            raise w.fail("kind", "should be 'up_to' or 'about'") from None
        words = WordLimit(w.get("limit", int), kind)
    condition = None
    if (c := reader.table("required_when")) is not None:
        c.only("field", "equals")
        condition = Condition(c.get("field", str), c.get("equals", str).lower())
    return FieldDefinition(
        id=field_id, section=section, label=reader.get("label", str), required=reader.get("required", bool, True),
        validator=validator, section_occurrence=occurrence, label_occurrence=reader.get("label_occurrence", int, 1),
        prompt=reader.get("prompt", str, None), words=words, required_when=condition,
    )


def _required_table(parent: TomlTable, key: str) -> TomlTable:
    found = parent.table(key)
    if found is None:
        raise parent.fail(key, "is required but missing")
    return found


def parse_definition(data: dict[str, Any], source: str) -> ProgrammeDefinition:
    """Build and validate one programme from its parsed TOML; ``source`` names the file in errors."""
    top = TomlTable(data, source)
    top.only("id", "title", "short_title", "recognise", "hub", "dates", "hints", "sections", "fields",
             "signatories", "eligibility", "checks")
    recognise = _required_table(top, "recognise")
    recognise.only("title_patterns")
    patterns = []
    for i, pattern in enumerate(recognise.get("title_patterns", list)):
        try:
            patterns.append(re.compile(pattern, re.IGNORECASE))
        except (re.error, TypeError) as exc:
            raise recognise.fail(f"title_patterns[{i}]", f"is not a valid regular expression ({exc})") from None
    if not patterns:
        raise recognise.fail("title_patterns", "needs at least one pattern")
    hub = _required_table(top, "hub")
    hub.only("id", "name", "address")
    dates = _required_table(top, "dates")
    dates.only("deadline", "notifications")
    notifications = []
    for i, item in enumerate(dates.get("notifications", list, [])):
        n = dates.item("notifications", i, item)
        n.only("date", "what")
        notifications.append(Notification(n.date("date") or date.min, n.get("what", str)))
    sections = tuple(top.get("sections", list))
    fields: list[FieldDefinition] = []
    for i, item in enumerate(top.get("fields", list)):
        fields.append(_field(top.item("fields", i, item), sections))
    by_id: dict[str, FieldDefinition] = {}
    for i, f in enumerate(fields):
        if f.id in by_id:
            raise top.fail(f"fields[{i}].id", f"'{f.id}' is defined twice")
        by_id[f.id] = f
    for i, f in enumerate(fields):
        if f.required_when and f.required_when.field not in by_id:
            raise top.fail(f"fields[{i}].required_when.field", f"'{f.required_when.field}' is not a field here")
    signatories = []
    for i, item in enumerate(top.get("signatories", list)):
        s = top.item("signatories", i, item)
        s.only("role", "label")
        role = s.get("role", str)
        if f"{role}.email" not in by_id:
            raise s.fail("role", f"'{role}' has no '{role}.email' field to match the copy against")
        signatories.append(Signatory(role, s.get("label", str)))
    region = hub_eligibility = None
    if (eligibility := top.table("eligibility")) is not None:
        eligibility.only("region", "hubs")
        if (r := eligibility.table("region")) is not None:
            r.only("field", "places", "detail")
            region = RegionRule(r.get("field", str), tuple(r.get("places", list)), r.get("detail", str))
        if (h := eligibility.table("hubs")) is not None:
            h.only("field", "codes")
            hub_eligibility = HubEligibility(h.get("field", str), tuple(h.get("codes", list)))
    return ProgrammeDefinition(
        id=top.get("id", str), title=top.get("title", str), short_title=top.get("short_title", str),
        title_patterns=tuple(patterns),
        hub=HubInfo(hub.get("id", str), hub.get("name", str), hub.get("address", str).lower()),
        deadline=dates.date("deadline"), notifications=tuple(notifications),
        hints=tuple(top.get("hints", list, [])), sections=sections, fields=tuple(fields),
        signatories=tuple(signatories), region=region, hub_eligibility=hub_eligibility,
        checks=tuple(top.get("checks", list, [])), source=source, _by_id=by_id,
    )


def load_definition(path: Path) -> ProgrammeDefinition:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_definition(data, str(path))


@dataclass(frozen=True)
class Registry:
    """Every known programme, by id. Programmes from a hub's own folder come before the built-in ones."""

    programmes: tuple[ProgrammeDefinition, ...]
    builtin_ids: frozenset[str] = frozenset()
    # Programmes sharing a title (years, spelling and punctuation ignored) for the same hub, one line each:
    # ``overrides`` where a hub's own file stands beside a built-in (the file wins for that hub), ``warnings`` where
    # nothing but file order tells them apart.
    overrides: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def get(self, programme_id: str) -> ProgrammeDefinition | None:
        return next((p for p in self.programmes if p.id == programme_id), None)

    def is_builtin(self, programme: ProgrammeDefinition) -> bool:
        return programme.id in self.builtin_ids and Path(programme.source).parent == _builtin_dir()


def _builtin_dir() -> Path:
    return Path(str(resources.files("rules.programmes")))


def load_registry(extra_dirs: tuple[Path, ...] = ()) -> Registry:
    """The built-in programmes plus any definition files in ``extra_dirs`` (a later file with the same id wins, and
    a file with a built-in's id replaces it). Files from ``extra_dirs`` come first: when a form reads equally well
    as next year's definition there and as last year's built-in, the recogniser keeps the first, the hub's own."""
    builtin: dict[str, ProgrammeDefinition] = {}
    for entry in sorted(_builtin_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            definition = load_definition(Path(str(entry)))
            builtin[definition.id] = definition
    added: dict[str, ProgrammeDefinition] = {}
    for directory in extra_dirs:
        for path in sorted(Path(directory).glob("*.toml")):
            definition = load_definition(path)
            added[definition.id] = definition
    programmes = (*added.values(), *(p for pid, p in builtin.items() if pid not in added))
    overrides, warnings = _same_titles(programmes, frozenset(added))
    return Registry(programmes, frozenset(builtin), overrides, warnings)


def _same_titles(programmes: tuple[ProgrammeDefinition, ...],
                 added: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    groups: dict[tuple[str, str], list[ProgrammeDefinition]] = {}
    for p in programmes:
        groups.setdefault((p.hub.id, label_key(p.title)), []).append(p)
    overrides: list[str] = []
    warnings: list[str] = []
    for (hub, _), group in groups.items():
        if len(group) < 2:
            continue
        files = [p for p in group if p.id in added]
        builtins = [p for p in group if p.id not in added]
        if len(files) == 1 and builtins:
            winner = files[0]
            overrides.append(f"{winner.id} ({winner.source}) has the same title as built-in "
                             f"{', '.join(p.id for p in builtins)}: it wins for hub {hub} when a form reads as both")
        else:
            first = group[0]
            warnings.append(f"programmes {', '.join(f'{p.id} ({p.source})' for p in group)} have the same title "
                            f"'{first.title}' for hub {hub}: a hub that runs one of them gets that one; otherwise a "
                            f"form that reads equally as each goes to {first.id}, the first by file name")
    return tuple(overrides), tuple(warnings)

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

VALIDATORS = frozenset({"text", "address", "statement", "urn", "email", "trn", "telephone", "yes_no", "maths_hub"})
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
    source: str = ""
    _by_id: dict[str, FieldDefinition] = field(default_factory=dict, repr=False, compare=False)

    def field(self, field_id: str) -> FieldDefinition:
        return self._by_id[field_id]

    @property
    def field_ids(self) -> tuple[str, ...]:
        return tuple(f.id for f in self.fields)


class _Reader:
    """Typed access to one TOML table that names the file and the key path in every error."""

    def __init__(self, data: dict[str, Any], source: str, path: str = "") -> None:
        self.data, self.source, self.path = data, source, path

    def fail(self, key: str, problem: str) -> ConfigError:
        where = f"{self.path}.{key}" if self.path else key
        return ConfigError(f"{self.source}: key '{where}': {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., ) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is required but missing")
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"should be {names}, not {type(value).__name__}")
        return value

    def table(self, key: str, index: int | None = None, value: Any = None) -> "_Reader":
        path = f"{self.path}.{key}" if self.path else key
        if index is not None:
            path += f"[{index}]"
        data = value if value is not None else self.get(key, dict)
        if not isinstance(data, dict):
            raise self.fail(key, "should be a table")
        return _Reader(data, self.source, path)

    def reject_unknown(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(key, f"is not a known key (expected one of: {', '.join(sorted(allowed))})")


def _date(reader: _Reader, key: str) -> date | None:
    value = reader.get(key, (str, date), None)
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise reader.fail(key, f"'{value}' is not a date like 2019-03-06") from None


def _field(reader: _Reader, sections: tuple[str, ...]) -> FieldDefinition:
    reader.reject_unknown({"id", "section", "label", "required", "validator", "section_occurrence",
                           "label_occurrence", "prompt", "words", "required_when"})
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
    if "words" in reader.data:
        w = reader.table("words")
        w.reject_unknown({"limit", "kind"})
        try:
            kind = WordLimitKind(w.get("kind", str))
        except ValueError:
            raise w.fail("kind", "should be 'up_to' or 'about'") from None
        words = WordLimit(w.get("limit", int), kind)
    condition = None
    if "required_when" in reader.data:
        c = reader.table("required_when")
        c.reject_unknown({"field", "equals"})
        condition = Condition(c.get("field", str), c.get("equals", str).lower())
    return FieldDefinition(
        id=field_id, section=section, label=reader.get("label", str), required=reader.get("required", bool, True),
        validator=validator, section_occurrence=occurrence, label_occurrence=reader.get("label_occurrence", int, 1),
        prompt=reader.get("prompt", str, None), words=words, required_when=condition,
    )


def parse_definition(data: dict[str, Any], source: str) -> ProgrammeDefinition:
    """Build and validate one programme from its parsed TOML; ``source`` names the file in errors."""
    top = _Reader(data, source)
    top.reject_unknown({"id", "title", "short_title", "recognise", "hub", "dates", "hints", "sections", "fields",
                        "signatories", "eligibility"})
    recognise = top.table("recognise")
    recognise.reject_unknown({"title_patterns"})
    patterns = []
    for i, pattern in enumerate(recognise.get("title_patterns", list)):
        try:
            patterns.append(re.compile(pattern, re.IGNORECASE))
        except (re.error, TypeError) as exc:
            raise recognise.fail(f"title_patterns[{i}]", f"is not a valid regular expression ({exc})") from None
    if not patterns:
        raise recognise.fail("title_patterns", "needs at least one pattern")
    hub = top.table("hub")
    hub.reject_unknown({"id", "name", "address"})
    dates = top.table("dates")
    dates.reject_unknown({"deadline", "notifications"})
    notifications = []
    for i, item in enumerate(dates.get("notifications", list, [])):
        n = dates.table("notifications", i, item)
        n.reject_unknown({"date", "what"})
        notifications.append(Notification(_date(n, "date") or date.min, n.get("what", str)))
    sections = tuple(top.get("sections", list))
    fields: list[FieldDefinition] = []
    for i, item in enumerate(top.get("fields", list)):
        fields.append(_field(top.table("fields", i, item), sections))
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
        s = top.table("signatories", i, item)
        s.reject_unknown({"role", "label"})
        role = s.get("role", str)
        if f"{role}.email" not in by_id:
            raise s.fail("role", f"'{role}' has no '{role}.email' field to match the copy against")
        signatories.append(Signatory(role, s.get("label", str)))
    region = hub_eligibility = None
    if "eligibility" in data:
        eligibility = top.table("eligibility")
        eligibility.reject_unknown({"region", "hubs"})
        if "region" in eligibility.data:
            r = eligibility.table("region")
            r.reject_unknown({"field", "places", "detail"})
            region = RegionRule(r.get("field", str), tuple(r.get("places", list)), r.get("detail", str))
        if "hubs" in eligibility.data:
            h = eligibility.table("hubs")
            h.reject_unknown({"field", "codes"})
            hub_eligibility = HubEligibility(h.get("field", str), tuple(h.get("codes", list)))
    return ProgrammeDefinition(
        id=top.get("id", str), title=top.get("title", str), short_title=top.get("short_title", str),
        title_patterns=tuple(patterns),
        hub=HubInfo(hub.get("id", str), hub.get("name", str), hub.get("address", str).lower()),
        deadline=_date(dates, "deadline"), notifications=tuple(notifications),
        hints=tuple(top.get("hints", list, [])), sections=sections, fields=tuple(fields),
        signatories=tuple(signatories), region=region, hub_eligibility=hub_eligibility, source=source,
        _by_id=by_id,
    )


def load_definition(path: Path) -> ProgrammeDefinition:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_definition(data, str(path))


@dataclass(frozen=True)
class Registry:
    """Every known programme, by id."""

    programmes: tuple[ProgrammeDefinition, ...]

    def get(self, programme_id: str) -> ProgrammeDefinition | None:
        return next((p for p in self.programmes if p.id == programme_id), None)


def load_registry(extra_dirs: tuple[Path, ...] = ()) -> Registry:
    """The built-in programmes plus any definition files in ``extra_dirs`` (a later file with the same id wins)."""
    found: dict[str, ProgrammeDefinition] = {}
    builtin = resources.files("rules.programmes")
    for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            definition = load_definition(Path(str(entry)))
            found[definition.id] = definition
    for directory in extra_dirs:
        for path in sorted(Path(directory).glob("*.toml")):
            definition = load_definition(path)
            found[definition.id] = definition
    return Registry(tuple(found.values()))

"""The programme definition files: every built-in one loads and agrees with the field tables, signatories, hubs and
deadlines in ``shared/spec/programmes.md`` (parsed here, never copied); a broken file fails with a ``ConfigError``
naming the file and the key; and a new programme file in an extra directory is picked up with no code change.
"""
from __future__ import annotations

import re
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.context import check_settings
from parsers.errors import ConfigError
from rules.definitions import load_definition, load_registry

SPEC = Path("/work/shared/spec/programmes.md")
BUILTIN_DIR = Path(str(resources.files("rules.programmes")))


def _spec_programmes() -> dict[str, dict]:
    text = SPEC.read_text(encoding="utf-8")
    out: dict[str, dict] = {}
    for match in re.finditer(r"^### `([^`]+)`\n(.*?)(?=^#{2,3} |\Z)", text, re.M | re.S):
        programme_id, body = match.groups()
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
                for line in body.splitlines() if line.startswith("| `")]
        signatories = re.findall(r"`(\w+)`: ([^;\n]+)", re.search(r"Signatories[^:]*:\s*(.*)", body).group(1))
        hub = re.search(r"Hub: (.+?), mailbox `([^`]+)`", body)
        out[programme_id] = {
            "fields": [(r[0].strip("`"), r[1], r[2], r[3] == "yes") for r in rows],
            "signatories": [(role, label.strip()) for role, label in signatories],
            "hub": (hub.group(1), hub.group(2)),
        }
    deadlines = re.search(r"\| programme \| deadline \|.*?\n\|[-| ]+\|\n(.*?)\n\n", text, re.S).group(1)
    for line in deadlines.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        found = re.fullmatch(r"\d{4}-\d{2}-\d{2}", cells[1])
        out[cells[0].strip("`")]["deadline"] = date.fromisoformat(cells[1]) if found else None
    return out


SPEC_PROGRAMMES = _spec_programmes()
REGISTRY = load_registry()


def test_spec_was_parsed() -> None:
    assert len(SPEC_PROGRAMMES) == 5
    assert all(len(p["fields"]) >= 15 and p["signatories"] and "deadline" in p for p in SPEC_PROGRAMMES.values())


def test_builtin_programmes_are_exactly_the_spec_ones() -> None:
    assert sorted(p.id for p in REGISTRY.programmes) == sorted(SPEC_PROGRAMMES)
    assert sorted(p.name for p in BUILTIN_DIR.glob("*.toml")) == sorted(f"{i}.toml" for i in SPEC_PROGRAMMES)


@pytest.mark.parametrize("programme_id", sorted(SPEC_PROGRAMMES))
def test_field_ids_match_spec_exactly(programme_id: str) -> None:
    definition = REGISTRY.get(programme_id)
    assert list(definition.field_ids) == [f[0] for f in SPEC_PROGRAMMES[programme_id]["fields"]]


@pytest.mark.parametrize("programme_id", sorted(SPEC_PROGRAMMES))
def test_sections_labels_and_required_match_spec(programme_id: str) -> None:
    definition = REGISTRY.get(programme_id)
    got = [(f.id, f.section, f.label, f.required) for f in definition.fields]
    assert got == SPEC_PROGRAMMES[programme_id]["fields"]


@pytest.mark.parametrize("programme_id", sorted(SPEC_PROGRAMMES))
def test_signatories_hub_and_deadline_match_spec(programme_id: str) -> None:
    definition = REGISTRY.get(programme_id)
    spec = SPEC_PROGRAMMES[programme_id]
    assert [(s.role, s.label) for s in definition.signatories] == spec["signatories"]
    assert (definition.hub.name, definition.hub.address) == spec["hub"]
    assert definition.deadline == spec["deadline"]


@pytest.mark.parametrize("programme_id", sorted(SPEC_PROGRAMMES))
def test_validators_follow_the_spec_table(programme_id: str) -> None:
    definition = REGISTRY.get(programme_id)
    for f in definition.fields:
        part = f.id.partition(".")[2]
        if f.id == "school.urn":
            assert f.validator == "urn"
        elif part in {"email", "trn", "telephone"}:
            assert f.validator == part, f.id
        elif f.id in {"group.requested", "specialist.engaged"}:
            assert f.validator == "yes_no"
    conditions = {f.id: (f.required_when.field, f.required_when.equals) for f in definition.fields
                  if f.required_when}
    expected = {"group.schools": ("group.requested", "yes"), "specialist.details": ("specialist.engaged", "yes")}
    assert conditions == {k: v for k, v in expected.items() if k in definition.field_ids}


# ---- broken files --------------------------------------------------------------------------------------------

BASE = (BUILTIN_DIR / "primary-trg-pilot-2019.toml").read_text(encoding="utf-8")


def _once(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


BROKEN = [
    ("unknown top-level key", lambda t: 'colour = "blue"\n' + t, "colour"),
    ("unknown field key", lambda t: _once(t, 'validator = "address"', 'validator = "address"\nvalidater = "x"'),
     "fields[1].validater"),
    ("bad validator", lambda t: _once(t, 'validator = "urn"', 'validator = "urns"'), "fields[2].validator"),
    ("section not listed", lambda t: _once(t, 'section = "Teacher 1"', 'section = "Teacher One"'),
     "fields[6].section"),
    ("sections missing", lambda t: re.sub(r"(?ms)^sections = \[.*?\]\n", "", t, count=1), "sections"),
    ("bad date", lambda t: _once(t, 'deadline = "2019-03-06"', 'deadline = "6th March 2019"'), "dates.deadline"),
    ("impossible date", lambda t: _once(t, 'deadline = "2019-03-06"', 'deadline = "2019-02-30"'), "dates.deadline"),
    ("bad notification date", lambda t: _once(t, 'date = "2019-03-22"', 'date = "22/03/2019"'),
     "dates.notifications[0].date"),
    ("duplicate id", lambda t: _once(t, 'id = "school.address"', 'id = "school.name"'), "fields[1].id"),
    ("bad id", lambda t: _once(t, 'id = "school.urn"', 'id = "School URN"'), "fields[2].id"),
    ("wrong type", lambda t: _once(t, 'label = "School URN"', "label = 42"), "fields[2].label"),
    ("no hub", lambda t: re.sub(r"(?ms)^\[hub\]\n.*?\n\n", "", t, count=1), "hub"),
    ("bad regex", lambda t: _once(t, 'title_patterns = ["', 'title_patterns = ["(unclosed", "'),
     "recognise.title_patterns[0]"),
    ("signatory without e-mail field", lambda t: _once(t, 'role = "teacher2"', 'role = "teacher3"'),
     "signatories[2].role"),
]


@pytest.mark.parametrize(("mutate", "key"), [(m, k) for _, m, k in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_definition_names_file_and_key(tmp_path: Path, mutate, key: str) -> None:
    path = tmp_path / "broken-programme.toml"
    path.write_text(mutate(BASE), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_definition(path)
    assert str(path) in caught.value.reason
    assert f"'{key}'" in caught.value.reason, caught.value.reason


def test_not_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(BASE.replace('id = "primary-trg-pilot-2019"', 'id = primary-trg-pilot-2019'), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_definition(path)
    assert str(path) in caught.value.reason


def test_broken_file_in_extra_dir_fails_the_registry(tmp_path: Path) -> None:
    (tmp_path / "next-year.toml").write_text('colour = "blue"\n' + BASE, encoding="utf-8")
    with pytest.raises(ConfigError, match="next-year.toml"):
        load_registry((tmp_path,))


def test_base_file_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "copy.toml"
    path.write_text(BASE, encoding="utf-8")
    assert load_definition(path).id == "primary-trg-pilot-2019"


# ---- new programmes as data ----------------------------------------------------------------------------------

NEW = (BASE.replace('id = "primary-trg-pilot-2019"', 'id = "primary-trg-2026"', 1)
       .replace('deadline = "2019-03-06"', 'deadline = "2026-03-04"'))


def test_new_programme_file_in_extra_dir_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "primary-trg-2026.toml").write_text(NEW, encoding="utf-8")
    (tmp_path / "README.txt").write_text("not a definition", encoding="utf-8")
    registry = load_registry((tmp_path,))
    new = registry.get("primary-trg-2026")
    assert new is not None and new.deadline == date(2026, 3, 4)
    assert new.source == str(tmp_path / "primary-trg-2026.toml")
    assert {p.id for p in registry.programmes} == set(SPEC_PROGRAMMES) | {"primary-trg-2026"}


def test_extra_dir_file_with_a_builtin_id_replaces_it(tmp_path: Path) -> None:
    (tmp_path / "override.toml").write_text(BASE.replace('deadline = "2019-03-06"', 'deadline = "2019-03-08"'),
                                            encoding="utf-8")
    registry = load_registry((tmp_path,))
    assert registry.get("primary-trg-pilot-2019").deadline == date(2019, 3, 8)
    assert len(registry.programmes) == len(SPEC_PROGRAMMES)


def test_config_programmes_dir_reaches_the_check_settings(tmp_path: Path) -> None:
    (tmp_path / "programmes").mkdir()
    (tmp_path / "programmes" / "primary-trg-2026.toml").write_text(NEW, encoding="utf-8")
    config = parse_config({"programmes_dir": "programmes"}, str(tmp_path / "hubbot.toml"), tmp_path)
    settings = check_settings(config)
    assert settings.registry.get("primary-trg-2026") is not None
    assert settings.hubs.get("cambridge") is not None

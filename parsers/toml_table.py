"""Typed reading of a parsed TOML file (a programme definition or the config) that names the file and the full key
in every error, so a typo is reported as "programmes/x.toml: key 'fields[3].validator': ..." instead of being
silently ignored. Unknown keys are errors too."""
from __future__ import annotations

from datetime import date
from typing import Any

from parsers.errors import ConfigError

_MISSING: Any = object()


class TomlTable:
    def __init__(self, data: dict[str, Any], source: str, path: str = "") -> None:
        self.data, self.source, self.path = data, source, path

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{self._key(key)}': {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        """The value of ``key`` checked against ``kind`` (an int is accepted where a float is asked for)."""
        if key not in self.data:
            if default is _MISSING:
                raise self.fail(key, "is required but missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            return value
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"should be {names}, not {type(value).__name__}")
        return value

    def table(self, key: str) -> "TomlTable | None":
        """The sub-table at ``key``, or None when it is absent."""
        if key not in self.data:
            return None
        return self.item(key, None, self.data[key])

    def item(self, key: str, index: int | None, value: Any) -> "TomlTable":
        """A table inside this one: ``value`` found at ``key`` (or at ``key[index]`` in an array of tables)."""
        where = key if index is None else f"{key}[{index}]"
        if not isinstance(value, dict):
            raise self.fail(where, "should be a table")
        return TomlTable(value, self.source, self._key(where))

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(key, f"is not a known key (expected one of: {', '.join(sorted(allowed))})")

    def date(self, key: str) -> date | None:
        value = self.get(key, (str, date), None)
        if value is None or isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.fail(key, f"'{value}' is not a date like 2019-03-06") from None

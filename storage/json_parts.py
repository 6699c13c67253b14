"""A stored JSON document without some of its top-level keys, cut by the database: ``without_keys(column, keys)``.

A stored verdict (``Verdict.to_record``) carries the reply's text and HTML and how each label was matched; the staff
commands read none of that, and at thousands of applications decoding it in Python was most of their reading. The
database drops those keys before the row is sent: SQLite with ``json_remove`` (one parse of the text, in C), and
PostgreSQL by casting the ``json`` column to ``jsonb`` and subtracting the keys. A document that is not an object (a
JSON null, a list) comes back whole; other databases get the whole document too: the caller reads the same dict
either way, only with more in it.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ColumnElement
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class without_keys(FunctionElement[Any]):  # noqa: N801 - used like a SQL function
    """``without_keys(column, ("readings", "reply"))``: the JSON in ``column`` less those top-level keys."""

    type = JSON()
    inherit_cache = False   # the keys are part of the statement's text, not parameters

    def __init__(self, column: ColumnElement[Any], keys: tuple[str, ...]) -> None:
        if not keys or any(not key.replace("_", "").isalnum() for key in keys):
            raise ValueError(f"key names are plain words: {keys!r}")
        self.column = column
        self.keys = tuple(keys)
        super().__init__(column)


@compiles(without_keys)
def _whole(element: without_keys, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(without_keys, "sqlite")
def _sqlite(element: without_keys, compiler: Any, **kw: Any) -> str:
    paths = ", ".join(f"'$.\"{key}\"'" for key in element.keys)
    return f"json_remove({compiler.process(element.column, **kw)}, {paths})"


@compiles(without_keys, "postgresql")
def _postgresql(element: without_keys, compiler: Any, **kw: Any) -> str:
    keys = ", ".join(f"'{key}'" for key in element.keys)
    column = compiler.process(element.column, **kw)
    # Only an object has keys to drop (jsonb refuses to subtract from a JSON null or a list); json_typeof reads
    # the first token only.
    return (f"CASE WHEN json_typeof({column}) = 'object' THEN CAST({column} AS JSONB) - ARRAY[{keys}]::text[] "
            f"ELSE CAST({column} AS JSONB) END")

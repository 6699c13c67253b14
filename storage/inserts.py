"""Inserting a row that another worker may be inserting at the same moment, without a dead row or a savepoint.

``insert_once`` is ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` (PostgreSQL and SQLite alike): when a unique
key says the row is already there it inserts nothing and the existing row is looked up, where the ORM's plain
INSERT in a savepoint would write the row (a raw message: its bytes too) and then throw it away, leaving a dead
row for VACUUM on PostgreSQL and costing two more statements on every insert. The new row becomes a persistent
object of the session with the values given, without being read back.
"""
from __future__ import annotations

import functools
from typing import Any, TypeVar

from sqlalchemy import Column, Insert, Table, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

T = TypeVar("T")


@functools.cache
def _statement(table: Table, primary_key: Column[Any], dialect: str) -> Insert:
    # Built once per table and the values passed at execution: building ``values(...)`` anew for each row costs more
    # than running the statement.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(primary_key)


def insert_once(session: Session, row: T, lookup: Any) -> tuple[T, bool]:
    """Insert the transient ``row`` (columns only: no related objects attached) unless a unique key already holds
    it; returns (the row, True) or (the existing row found by ``lookup``, False)."""
    mapper = inspect(type(row))
    table = mapper.local_table
    values: dict[str, Any] = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        value = getattr(row, prop.key)
        if value is None and column.default is not None and column.default.is_scalar:
            # The column's own default, written here so the object and the row agree without reading it back.
            value = column.default.arg
            setattr(row, prop.key, value)
        if value is not None and column.table is table:
            values[column.key] = value
    session.flush()   # what the new row may refer to is written first, as the ORM's own INSERT would
    (primary_key,) = mapper.primary_key
    connection = session.connection()
    new_id = connection.execute(_statement(table, primary_key, connection.dialect.name), values).scalar()
    if new_id is None:
        existing = session.scalar(lookup)
        if existing is None:   # nothing to conflict with now: the conflicting row went away meanwhile
            raise LookupError(f"{table.name}: insert conflicted, yet no row matches the lookup")
        return existing, False
    key_attribute = mapper.get_property_by_column(primary_key).key
    setattr(row, key_attribute, new_id)
    for prop in mapper.column_attrs:
        if prop.key == key_attribute:
            continue
        # A column left out without a default is NULL in the row: say so here rather than leave it to a lazy load;
        # one with a default keeps whatever the database gave it, read on first use.
        column = prop.columns[0]
        if prop.key not in values and column.default is None and column.server_default is None:
            setattr(row, prop.key, None)
    make_transient_to_detached(row)
    session.add(row)
    return row, True

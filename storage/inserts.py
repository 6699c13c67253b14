"""Writing one row without the ORM's unit of work: inserting a row that another worker may be inserting at the same
moment, without a dead row or a savepoint, and updating a loaded row's columns in one statement.

``insert_once`` is ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` (PostgreSQL and SQLite alike): when a unique
key says the row is already there it inserts nothing and the existing row is looked up, where the ORM's plain
INSERT in a savepoint would write the row (a raw message: its bytes too) and then throw it away, leaving a dead
row for VACUUM on PostgreSQL and costing two more statements on every insert. The new row becomes a persistent
object of the session with the values given, without being read back. ``update_row`` is one ``UPDATE ... WHERE
id = :id`` (built once per table and set of columns) that also sets the loaded object's values as committed: a row
changed through its object would wait for a flush, and a flush of the unit of work costs several times the
statement it sends.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Insert, Table, Update, bindparam, inspect, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

T = TypeVar("T")


@functools.cache
def _statement(table: Table, primary_key: Column[Any], dialect: str) -> Insert:
    # Built once per table and the values passed at execution: building ``values(...)`` anew for each row costs more
    # than running the statement.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing().returning(primary_key)


def insert_once(session: Session, row: T, lookup: Callable[[], Any]) -> tuple[T, bool]:
    """Insert the transient ``row`` (columns only: no related objects attached) unless a unique key already holds
    it; returns (the row, True) or (the existing row, False), found by the query ``lookup()`` builds (built only
    then: building a query costs about what running the insert does, and nearly every insert is new)."""
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
    (primary_key,) = mapper.primary_key
    connection = flushed_connection(session)   # what the new row may refer to is written first, as an INSERT would be
    new_id = connection.execute(_statement(table, primary_key, connection.dialect.name), values).scalar()
    if new_id is None:
        existing = session.scalar(lookup())
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


@functools.cache
def update_by_id(table: Table, columns: frozenset[str]) -> Update:
    """``UPDATE table SET <column> = :new_<column> ... WHERE <primary key> = :row_id``, built once per table and set
    of columns (add conditions with ``.where``); ``update_params`` names its values. The parameters are named
    unlike the columns: an UPDATE would take a parameter named as a column as its new value."""
    (primary_key,) = table.primary_key.columns
    return (update(table).where(primary_key == bindparam("row_id", type_=primary_key.type))
            .values({name: bindparam(f"new_{name}", type_=table.c[name].type) for name in columns}))


def update_params(row_id: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The parameters of an ``update_by_id`` statement: the row's id and each column's new value."""
    return {"row_id": row_id, **{f"new_{name}": value for name, value in values.items()}}


def flushed_connection(session: Session) -> Connection:
    """The session's connection (its transaction), for a statement that needs none of the ORM's work (no objects
    to load or keep in step, which cost more than the statement itself), once what the session has pending is
    written, as ``Session.execute`` would have done (a no-op when nothing is pending)."""
    session.flush()
    return session.connection()


def update_row(session: Session, row: Any, **values: Any) -> None:
    """Set ``values`` (attribute names of plain columns) on the persistent ``row``: one UPDATE now, and the object
    shows the new values without reading them back."""
    mapper = inspect(type(row))
    (primary_key,) = mapper.primary_key
    columns = {mapper.get_property(key).columns[0].key: value for key, value in values.items()}
    row_id = getattr(row, mapper.get_property_by_column(primary_key).key)
    flushed_connection(session).execute(update_by_id(mapper.local_table, frozenset(columns)),
                                        update_params(row_id, columns))
    for key, value in values.items():
        set_committed_value(row, key, value)

"""Text the database will take, whatever a message holds. PostgreSQL refuses a NUL character anywhere in a text
value (Message-ID, subject, error, a file name in the event log), and no driver can send a lone surrogate; either
would make storing a message fail, and a message that cannot be stored would stop its mailbox's poll at that UID
for good. So every text parameter of every statement (inserts, updates and the lookups that compare against
them) is escaped on its way to the server: NUL becomes the four characters ``\\x00`` and a lone surrogate its
``\\udcXX`` spelling. The same input always gives the same stored text, so lookups still match. JSON columns are
serialised by ``json.dumps``, which already spells both as ASCII escapes. Bytes (the raw message) are untouched.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, event

__all__ = ["db_text", "install"]

_BAD = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return "\\x00" if char == "\x00" else f"\\u{ord(char):04x}"


def db_text(value: str) -> str:
    """``value`` as the database can hold it (unchanged when it already can, which is nearly always)."""
    return _BAD.sub(_escape, value) if _BAD.search(value) else value


def _clean(value: Any) -> Any:
    return db_text(value) if isinstance(value, str) else value


def _clean_parameters(parameters: Any) -> Any:
    if isinstance(parameters, Mapping):
        if not any(isinstance(v, str) and _BAD.search(v) for v in parameters.values()):
            return parameters
        return {k: _clean(v) for k, v in parameters.items()}
    if isinstance(parameters, (list, tuple)):
        if parameters and isinstance(parameters[0], (Mapping, list, tuple)):
            return type(parameters)(_clean_parameters(p) for p in parameters)   # executemany
        if not any(isinstance(v, str) and _BAD.search(v) for v in parameters):
            return parameters
        return type(parameters)(_clean(v) for v in parameters)
    return parameters


def _before_cursor_execute(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                           executemany: bool) -> tuple[str, Any]:
    return statement, _clean_parameters(parameters)


def install(engine: Engine) -> None:
    """Escape every text parameter this engine sends."""
    if not event.contains(engine, "before_cursor_execute", _before_cursor_execute):
        event.listen(engine, "before_cursor_execute", _before_cursor_execute, retval=True)

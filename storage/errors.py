"""One plain line for each way the database can fail under the bot, instead of a traceback: read-only, full,
corrupt, missing, unreachable. ``describe`` returns the line for an exception from SQLAlchemy or the driver (or
None when it is not a database fault), so the command line and the worker report the same thing the same way.
"""
from __future__ import annotations

import re

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

__all__ = ["describe", "is_database_fault"]

_FAULTS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.IGNORECASE), line) for p, line in (
    (r"readonly database|read-only|permission denied",
     "the database is read-only: check the file's (and its folder's) permissions, or the PostgreSQL role"),
    (r"disk is full|no space left|could not extend file|disk full",
     "the database's disk is full: free some space; nothing was lost, the bot carries on where it stopped"),
    (r"not a database|malformed|corrupt|file is encrypted",
     "the database file is damaged: restore it from a backup (the mailbox still holds every message)"),
    (r"unable to open database file|no such file",
     "the database file cannot be opened: check [database] url and that its folder exists"),
    (r"database is locked",
     "the database is locked by another program for too long: try again, or stop the other program"),
    (r"connection refused|could not connect|timeout expired|server closed the connection|name or service not known",
     "the database server cannot be reached: check that PostgreSQL is running and [database] url"),
    (r"password authentication failed|role .* does not exist|database .* does not exist",
     "the database refused the login or does not exist: check [database] url"),
))


def is_database_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is the database itself failing (read-only, full, damaged, unreachable), as opposed to it
    refusing one value: the first stops the work, the second quarantines one message."""
    text = str(getattr(exc, "orig", None) or exc)
    return isinstance(exc, (SQLAlchemyError, OSError)) and any(p.search(text) for p, _ in _FAULTS)


def describe(exc: BaseException) -> str | None:
    """The plain line for a database fault, or None when ``exc`` is not one."""
    if not isinstance(exc, (SQLAlchemyError, OSError)) and type(exc).__module__.split(".")[0] not in (
            "sqlite3", "psycopg"):
        return None
    text = str(getattr(exc, "orig", None) or exc)
    for pattern, line in _FAULTS:
        if pattern.search(text):
            return line
    if isinstance(exc, DBAPIError):
        return f"the database failed: {type(getattr(exc, 'orig', exc)).__name__}"
    return None

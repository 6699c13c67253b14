"""Locks that let several workers start and run together on one database.

Two kinds. ``migration_lock`` is taken around the schema upgrade, blocking: the first worker on a new database
migrates while the others wait and then find the schema current, instead of all of them creating the same tables
and all but one crashing. ``try_lock`` is taken around polling one mailbox, without waiting: while one worker is
storing a mailbox's new mail the others skip that mailbox (they would fetch the same bytes only to find them stored)
and go on to the stored work, so the mailbox is read once and a message is stored once. On PostgreSQL both are
advisory locks (``pg_advisory_lock``), held by a connection of their own and released by the server if the
process dies; on SQLite they are ``flock`` locks on small files beside the database (released by the kernel if the
process dies); an in-memory SQLite database is one process's own and needs none.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (advisory locks are numbered; names keep our numbers apart)."""
    return int.from_bytes(hashlib.sha256(f"hubbot:{name}".encode()).digest()[:8], "big", signed=True)


def _sqlite_file(engine: Engine) -> Path | None:
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


def _lock_file(engine: Engine, name: str) -> Path | None:
    """``<database>.<name>.lock`` beside the database (kept, not deleted: removing a lock file is itself a race)."""
    database = _sqlite_file(engine)
    if database is None:
        return None
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:60]
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]   # two names that read alike still get two files
    return database.with_name(f"{database.name}.{readable}-{digest}.lock")


@contextlib.contextmanager
def _flock(path: Path, *, wait: bool) -> Iterator[bool]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        # A read-only folder (an export from a copy): nobody else can write there either, so go without.
        log.debug("cannot create the lock file %s; going on without it", path, exc_info=True)
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _advisory(engine: Engine, name: str, *, wait: bool) -> Iterator[bool]:
    key = lock_key(name)
    with engine.connect() as connection:
        if wait:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            got = True
        else:
            got = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        connection.commit()   # the lock belongs to the session, not to this transaction
        try:
            yield got
        finally:
            if got:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
                except Exception:  # noqa: BLE001 - a broken connection: the server released the lock with it
                    log.debug("releasing advisory lock %s failed", name, exc_info=True)
                    connection.invalidate()


@contextlib.contextmanager
def _lock(engine: Engine, name: str, *, wait: bool) -> Iterator[bool]:
    if engine.dialect.name == "postgresql":
        with _advisory(engine, name, wait=wait) as got:
            yield got
        return
    path = _lock_file(engine, name) if engine.dialect.name == "sqlite" else None
    if path is None:
        yield True
        return
    with _flock(path, wait=wait) as got:
        yield got


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Held while the schema is brought up to date: one process migrates, the others wait for it."""
    with _lock(engine, "migrations", wait=True):
        yield


@contextlib.contextmanager
def try_lock(engine: Engine, name: str) -> Iterator[bool]:
    """``name`` locked for the block if nobody else holds it: yields False at once (holding nothing) if someone
    does."""
    with _lock(engine, name, wait=False) as got:
        yield got

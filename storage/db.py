"""Opening hubbot's database: ``open_database(url)`` builds the engine, brings the schema to the newest Alembic
revision (programmatically, from the migration scripts shipped inside the package, so no ``alembic`` command or
working directory is needed) and returns a ``Database`` that hands out sessions. SQLite gets WAL mode, a busy
timeout and foreign keys on every connection, because the worker, the scheduler and a person running ``hubbot
export`` may all open the same file; PostgreSQL is reached through psycopg 3 (``postgresql+psycopg://``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from storage.locks import migration_lock

SQLITE_BUSY_TIMEOUT_MS = 10_000
_HERE = Path(__file__).resolve().parent


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed when the block ends normally, rolled back on an exception."""
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def _normalise_url(url: str) -> str:
    parsed = make_url(url)
    # "postgresql://" alone would pick psycopg2, which is not a dependency.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")  # a no-op (stays "memory") for :memory: databases
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a power cut loses at most the last commits
    finally:
        cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = _normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        # Claims are conditional UPDATEs (repository.py), so pysqlite's lazy BEGIN is enough: a second writer
        # waits on busy_timeout instead of failing with "database is locked".
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config() -> Config:
    cfg = Config(str(_HERE / "alembic.ini"))
    # Absolute path so an installed package finds its migrations wherever the process runs from.
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    # Several workers may start together on a new database: one migrates, the others wait, then find nothing to do.
    with migration_lock(engine), engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def open_database(url: str, *, migrate: bool = True, **engine_kwargs: Any) -> Database:
    """Connect, migrate to the newest schema (unless ``migrate=False``) and return the database handle."""
    engine = make_engine(url, **engine_kwargs)
    if migrate:
        upgrade(engine)
    return Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

"""Opening hubbot's database: ``open_database(url)`` builds the engine, brings the schema to the newest Alembic
revision (programmatically, from the migration scripts shipped inside the package, so no ``alembic`` command or
working directory is needed) and returns a ``Database`` that hands out sessions. SQLite gets WAL mode, a busy
timeout and foreign keys on every connection, because the worker, the scheduler and a person running ``hubbot
export`` may all open the same file; PostgreSQL is reached through psycopg 3 (``postgresql+psycopg://``). Engines
hide SQL parameters in their errors (``hide_parameters``), so a failed INSERT never puts an address or a name in a
log. ``schema_revision`` tells ``hubbot doctor`` and ``hubbot status`` where a database stands without migrating it.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from storage import sanitize
from storage.locks import migration_lock

if TYPE_CHECKING:
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_MS = 10_000
_HERE = Path(__file__).resolve().parent
# The newest migration shipped (a test holds it to Alembic's head). A database already there opens without loading
# Alembic and the migration scripts, a fifth of a second of every staff command's start; any other goes through
# Alembic under the migration lock.
HEAD_REVISION = "0008_raw_mail_uncompressed"


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

    def refresh_statistics(self) -> None:
        """Bring the query planner's statistics up to date after a burst of mail (PostgreSQL: ``ANALYZE`` of the
        tables every message reads, without the raw mail). Autovacuum does it too, but a minute or more behind: a
        round's mail arriving at once outran it, and the planner, believing the tables nearly empty, chose indexes
        that read every row of a hub for each message. SQLite's planner keeps no statistics unless asked and does
        well without them here, so this does nothing there."""
        if self.dialect != "postgresql":
            return
        with self.engine.begin() as connection:
            for table, columns in _PLANNED:
                connection.exec_driver_sql(f"ANALYZE {table} ({', '.join(columns)})")

    def close(self) -> None:
        self.engine.dispose()


# The tables and columns the worker's statements filter and join on (``Database.refresh_statistics``).
_PLANNED = (
    ("messages", ("hub_id", "message_id", "in_reply_to", "own_copy", "state", "claimed_at", "sha256")),
    ("applications", ("hub_id", "programme", "school_urn", "sender_domain")),
    ("application_versions", ("application_id", "message_id")),
    ("signatories", ("application_id",)),
    ("outbox", ("hub_id", "state", "next_attempt_at", "sent_at", "message_id", "application_id")),
    ("outbox_recipients", ("address", "created_at", "outbox_id")),
)


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
    # A database error's message would otherwise carry the statement's values: addresses, names, raw mail.
    kwargs.setdefault("hide_parameters", True)
    if make_url(url).get_backend_name() == "sqlite":
        # Claims are conditional UPDATEs (repository.py), so pysqlite's lazy BEGIN is enough: a second writer
        # waits on busy_timeout instead of failing with "database is locked".
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
    # NUL and lone surrogates in any text parameter are escaped: a message must never be unstorable for them.
    sanitize.install(engine)
    return engine


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config(str(_HERE / "alembic.ini"))
    # Absolute path so an installed package finds its migrations wherever the process runs from.
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = alembic_config()
    # Several workers may start together on a new database: one migrates, the others wait, then find nothing to do.
    with migration_lock(engine), engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


@dataclass(frozen=True)
class SchemaRevision:
    current: str | None      # None: no hubbot schema at all (a new, empty database)
    head: str                # the newest revision this version of hubbot ships

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        """False when the database was migrated by a newer hubbot (a downgrade without ``alembic downgrade``)."""
        return self.current is None or _revision_exists(self.current)


def _revision_exists(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises for an unknown revision id
        return False


def schema_revision(engine: Engine) -> SchemaRevision:
    """Where the database stands against the migrations shipped here; reads only (nothing is migrated)."""
    return SchemaRevision(_current_revision(engine), HEAD_REVISION)


def _current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, read without Alembic; None for a new database (no version table)."""
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except exc.DBAPIError:
        return None


def redacted_url(url: str) -> str:
    """The database URL with any password replaced by ***, for messages."""
    return make_url(_normalise_url(url)).render_as_string(hide_password=True)


def _create_private(url: str) -> None:
    """A new SQLite database file is created readable by its owner only (it holds applications and e-mails);
    SQLite gives its -wal and -shm files the same permissions."""
    parsed = make_url(_normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    if path.exists() or not path.parent.is_dir():
        return   # an existing file keeps the permissions its owner gave it; a missing folder is reported on open
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def open_database(url: str, *, migrate: bool = True, **engine_kwargs: Any) -> Database:
    """Connect, migrate to the newest schema (unless ``migrate=False``) and return the database handle."""
    _create_private(url)
    engine = make_engine(url, **engine_kwargs)
    if migrate and _current_revision(engine) != HEAD_REVISION:
        upgrade(engine)
    return Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

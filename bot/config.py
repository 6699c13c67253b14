"""Read ``hubbot.toml`` into typed settings, checking every key (see ``config.example.toml``).

Secrets never live in the file: keys ending in ``_env`` name the environment variable that holds them. Errors name
the file and the key. Only the standard library is imported here, so commands that need no config stay fast.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from parsers.errors import ConfigError
from parsers.types import Limits


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int = 993
    security: str = "tls"                   # tls | starttls | none
    username: str = ""
    password_env: str | None = None
    folder: str = "INBOX"
    move_to: str | None = None              # folder to move processed mail into, after it is stored
    auth: str = "password"                  # password | microsoft | google
    client_id: str | None = None            # OAuth2 (XOAUTH2)
    tenant_id: str | None = None
    client_secret_env: str | None = None
    refresh_token_env: str | None = None
    idle: bool = False
    timeout_seconds: float = 60.0

    def secret(self, env_name: str | None) -> str | None:
        return os.environ.get(env_name) if env_name else None


@dataclass(frozen=True)
class HubDates:
    deadline: date | None = None
    notifications: tuple[tuple[date, str], ...] = ()


@dataclass(frozen=True)
class HubSettings:
    id: str
    name: str
    address: str
    aliases: tuple[str, ...] = ()           # other addresses delivered to the same mailbox
    staff: tuple[str, ...] = ()
    programmes: tuple[str, ...] = ()
    imap: ImapSettings | None = None
    maildir: Path | None = None
    dates: dict[str, HubDates] = field(default_factory=dict)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: str = "starttls"              # starttls | tls | none
    username: str | None = None
    password_env: str | None = None
    timeout_seconds: float = 60.0

    @property
    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class ScheduleSettings:
    poll_every_minutes: float = 5
    digest_at: time = time(7, 30)
    reminder_days_before: tuple[int, ...] = (7, 2)
    outbox_every_seconds: float = 30
    digest_when_quiet: bool = False


@dataclass(frozen=True)
class Config:
    path: Path | None
    timezone: str = "Europe/London"
    database_url: str = "sqlite:///hubbot.db"
    smtp: SmtpSettings | None = None
    outbox_path: Path = Path("outbox")
    schedule: ScheduleSettings = ScheduleSettings()
    hubs: tuple[HubSettings, ...] = ()
    limits: Limits = Limits()
    programmes_dir: Path | None = None
    max_replies_per_address_per_day: int = 5
    retention_days: int | None = None


class _Table:
    def __init__(self, data: dict[str, Any], source: str, path: str) -> None:
        self.data, self.source, self.path = data, source, path

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{self.path}{key}': {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is required but missing")
            return default
        value = self.data[key]
        if isinstance(kind, tuple) and float in kind and isinstance(value, int) and not isinstance(value, bool):
            return value
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise self.fail(key, f"has the wrong type ({type(value).__name__})")
        return value

    def sub(self, key: str) -> "_Table | None":
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.fail(key, "should be a table")
        return _Table(value, self.source, f"{self.path}{key}.")

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(key, "is not a known key")


def _date(t: _Table, key: str) -> date | None:
    value = t.get(key, (str, date), None)
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise t.fail(key, f"'{value}' is not a date like 2019-03-06") from None


def _imap(t: _Table) -> ImapSettings:
    t.only("host", "port", "security", "username", "password_env", "folder", "move_to", "auth", "client_id",
           "tenant_id", "client_secret_env", "refresh_token_env", "idle", "timeout_seconds")
    security = t.get("security", str, "tls")
    if security not in {"tls", "starttls", "none"}:
        raise t.fail("security", "should be tls, starttls or none")
    auth = t.get("auth", str, "password")
    if auth not in {"password", "microsoft", "google"}:
        raise t.fail("auth", "should be password, microsoft or google")
    return ImapSettings(
        host=t.get("host", str), port=t.get("port", int, 993 if security == "tls" else 143), security=security,
        username=t.get("username", str, ""), password_env=t.get("password_env", str, None),
        folder=t.get("folder", str, "INBOX"), move_to=t.get("move_to", str, None), auth=auth,
        client_id=t.get("client_id", str, None), tenant_id=t.get("tenant_id", str, None),
        client_secret_env=t.get("client_secret_env", str, None),
        refresh_token_env=t.get("refresh_token_env", str, None), idle=t.get("idle", bool, False),
        timeout_seconds=float(t.get("timeout_seconds", (int, float), 60.0)),
    )


def _hub(t: _Table, base: Path) -> HubSettings:
    t.only("id", "name", "address", "aliases", "staff", "programmes", "imap", "maildir", "dates")
    dates: dict[str, HubDates] = {}
    dates_table = t.sub("dates")
    if dates_table:
        for programme_id in dates_table.data:
            d = dates_table.sub(programme_id)
            assert d is not None
            d.only("deadline", "notifications")
            notes = []
            for i, n in enumerate(d.get("notifications", list, [])):
                nt = _Table(n, d.source, f"{d.path}notifications[{i}].")
                nt.only("date", "what")
                notes.append((_date(nt, "date"), nt.get("what", str)))
            dates[programme_id] = HubDates(_date(d, "deadline"), tuple(notes))
    imap = t.sub("imap")
    maildir = t.get("maildir", str, None)
    return HubSettings(
        id=t.get("id", str), name=t.get("name", str), address=t.get("address", str).lower(),
        aliases=tuple(a.lower() for a in t.get("aliases", list, [])),
        staff=tuple(t.get("staff", list, [])), programmes=tuple(t.get("programmes", list, [])),
        imap=_imap(imap) if imap else None, maildir=(base / maildir) if maildir else None, dates=dates,
    )


def parse_config(data: dict[str, Any], source: str, base: Path) -> Config:
    top = _Table(data, source, "")
    top.only("timezone", "database", "smtp", "outbox", "schedule", "hubs", "limits", "programmes_dir",
             "max_replies_per_address_per_day", "retention_days")
    database = top.sub("database")
    db_url = "sqlite:///hubbot.db"
    if database:
        database.only("url")
        db_url = database.get("url", str)
    if db_url.startswith("sqlite:///") and not db_url.startswith("sqlite:////") and db_url != "sqlite:///:memory:":
        db_url = f"sqlite:///{(base / db_url[len('sqlite:///'):]).resolve()}"
    smtp = None
    if (s := top.sub("smtp")) is not None:
        s.only("host", "port", "security", "username", "password_env", "timeout_seconds")
        security = s.get("security", str, "starttls")
        if security not in {"tls", "starttls", "none"}:
            raise s.fail("security", "should be starttls, tls or none")
        smtp = SmtpSettings(host=s.get("host", str), port=s.get("port", int, 587), security=security,
                            username=s.get("username", str, None), password_env=s.get("password_env", str, None),
                            timeout_seconds=float(s.get("timeout_seconds", (int, float), 60.0)))
    outbox_path = base / "outbox"
    if (o := top.sub("outbox")) is not None:
        o.only("path")
        outbox_path = base / o.get("path", str)
    schedule = ScheduleSettings()
    if (sc := top.sub("schedule")) is not None:
        sc.only("poll_every_minutes", "digest_at", "reminder_days_before", "outbox_every_seconds",
                "digest_when_quiet")
        try:
            digest_at = time.fromisoformat(sc.get("digest_at", str, "07:30"))
        except ValueError:
            raise sc.fail("digest_at", "should be a time like 07:30") from None
        days = sc.get("reminder_days_before", list, [7, 2])
        if not all(isinstance(d, int) and d >= 0 for d in days):
            raise sc.fail("reminder_days_before", "should be a list of whole numbers of days")
        schedule = ScheduleSettings(
            poll_every_minutes=float(sc.get("poll_every_minutes", (int, float), 5)), digest_at=digest_at,
            reminder_days_before=tuple(days),
            outbox_every_seconds=float(sc.get("outbox_every_seconds", (int, float), 30)),
            digest_when_quiet=sc.get("digest_when_quiet", bool, False))
    limits = Limits()
    if (lt := top.sub("limits")) is not None:
        known = set(Limits.__dataclass_fields__)
        lt.only(*known)
        limits = Limits(**{k: lt.get(k, (int, float)) for k in lt.data})
    hubs = []
    for i, h in enumerate(top.get("hubs", list, [])):
        if not isinstance(h, dict):
            raise top.fail(f"hubs[{i}]", "should be a table")
        hubs.append(_hub(_Table(h, source, f"hubs[{i}]."), base))
    ids = [h.id for h in hubs]
    for hub_id in ids:
        if ids.count(hub_id) > 1:
            raise top.fail("hubs", f"hub id '{hub_id}' is used twice")
    programmes_dir = top.get("programmes_dir", str, None)
    retention = top.get("retention_days", int, None)
    return Config(path=Path(source), timezone=top.get("timezone", str, "Europe/London"), database_url=db_url,
                  smtp=smtp, outbox_path=outbox_path, schedule=schedule, hubs=tuple(hubs), limits=limits,
                  programmes_dir=(base / programmes_dir) if programmes_dir else None,
                  max_replies_per_address_per_day=top.get("max_replies_per_address_per_day", int, 5),
                  retention_days=retention)


def load_config(path: Path) -> Config:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, str(path), path.resolve().parent)


def find_config_path(explicit: str | None) -> Path | None:
    """--config, else $HUBBOT_CONFIG, else ./hubbot.toml if it exists."""
    if explicit:
        return Path(explicit)
    if os.environ.get("HUBBOT_CONFIG"):
        return Path(os.environ["HUBBOT_CONFIG"])
    default = Path("hubbot.toml")
    return default if default.exists() else None

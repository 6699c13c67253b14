"""Read ``hubbot.toml`` into typed settings, checking every key (see ``config.example.toml``).

Secrets never live in the file: keys ending in ``_env`` name the environment variable that holds them. Errors name
the file and the key. Only the standard library is imported here, so commands that need no config stay fast.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from parsers.errors import ConfigError
from parsers.toml_table import TomlTable
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
class SecuritySettings:
    """``[security]``: whose authentication results to believe, and where the hub's mailbox shows what we sent."""

    trusted_authserv_ids: tuple[str, ...] = ()
    sent_folder: str | None = None          # IMAP folder holding copies of what the bot sent (resolves uncertain)
    bcc_hub: bool = False                   # Bcc each e-mail to the hub's own address: the copy proves the send
    settle_seconds: float = 120.0           # how long a sent copy may take to show before "no copy" means "not sent"


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
    security: SecuritySettings = SecuritySettings()
    max_emails_per_hub_per_hour: int | None = 200   # [limits] per_hub_per_hour: recipients of everything we send


def _imap(t: TomlTable) -> ImapSettings:
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


def _hub(t: TomlTable, base: Path) -> HubSettings:
    t.only("id", "name", "address", "aliases", "staff", "programmes", "imap", "maildir", "dates")
    dates: dict[str, HubDates] = {}
    if (dates_table := t.table("dates")) is not None:
        for programme_id, value in dates_table.data.items():
            d = dates_table.item(programme_id, None, value)
            d.only("deadline", "notifications")
            notes = []
            for i, n in enumerate(d.get("notifications", list, [])):
                nt = d.item("notifications", i, n)
                nt.only("date", "what")
                notes.append((nt.date("date"), nt.get("what", str)))
            dates[programme_id] = HubDates(d.date("deadline"), tuple(notes))
    imap = t.table("imap")
    maildir = t.get("maildir", str, None)
    return HubSettings(
        id=t.get("id", str), name=t.get("name", str), address=t.get("address", str).lower(),
        aliases=tuple(a.lower() for a in t.get("aliases", list, [])),
        staff=_addresses(t, "staff"), programmes=tuple(t.get("programmes", list, [])),
        imap=_imap(imap) if imap else None, maildir=(base / maildir) if maildir else None, dates=dates,
    )


def parse_config(data: dict[str, Any], source: str, base: Path) -> Config:
    top = TomlTable(data, source)
    top.only("timezone", "database", "smtp", "outbox", "schedule", "hubs", "limits", "programmes_dir",
             "max_replies_per_address_per_day", "retention_days", "security")
    database = top.table("database")
    db_url = "sqlite:///hubbot.db"
    if database:
        database.only("url")
        db_url = database.get("url", str)
    if db_url.startswith("sqlite:///") and not db_url.startswith("sqlite:////") and db_url != "sqlite:///:memory:":
        db_url = f"sqlite:///{(base / db_url[len('sqlite:///'):]).resolve()}"
    smtp = None
    if (s := top.table("smtp")) is not None:
        s.only("host", "port", "security", "username", "password_env", "timeout_seconds")
        security = s.get("security", str, "starttls")
        if security not in {"tls", "starttls", "none"}:
            raise s.fail("security", "should be starttls, tls or none")
        smtp = SmtpSettings(host=s.get("host", str), port=s.get("port", int, 587), security=security,
                            username=s.get("username", str, None), password_env=s.get("password_env", str, None),
                            timeout_seconds=float(s.get("timeout_seconds", (int, float), 60.0)))
    outbox_path = base / "outbox"
    if (o := top.table("outbox")) is not None:
        o.only("path")
        outbox_path = base / o.get("path", str)
    schedule = ScheduleSettings()
    if (sc := top.table("schedule")) is not None:
        sc.only("poll_every_minutes", "digest_at", "reminder_days_before", "outbox_every_seconds",
                "digest_when_quiet")
        try:
            digest_at = time.fromisoformat(sc.get("digest_at", str, "07:30"))
        except ValueError:
            raise sc.fail("digest_at", "should be a time like 07:30") from None
        days = sc.get("reminder_days_before", list, [7, 2])
        if not all(isinstance(d, int) and d >= 0 for d in days):
            raise sc.fail("reminder_days_before", "should be a list of whole numbers of days")
        for key in ("poll_every_minutes", "outbox_every_seconds"):
            if key in sc.data and sc.get(key, (int, float)) <= 0:
                raise sc.fail(key, "should be a positive number")
        schedule = ScheduleSettings(
            poll_every_minutes=float(sc.get("poll_every_minutes", (int, float), 5)), digest_at=digest_at,
            reminder_days_before=tuple(days),
            outbox_every_seconds=float(sc.get("outbox_every_seconds", (int, float), 30)),
            digest_when_quiet=sc.get("digest_when_quiet", bool, False))
    limits = Limits()
    per_address = _cap(top, "max_replies_per_address_per_day", 5)
    per_hub: int | None = 200
    if (lt := top.table("limits")) is not None:
        known = set(Limits.__dataclass_fields__)
        lt.only(*known, *_RATE_LIMITS)
        for key in known & set(lt.data):
            if lt.get(key, (int, float)) <= 0:
                raise lt.fail(key, "should be a positive number")
        limits = Limits(**{k: lt.get(k, (int, float)) for k in lt.data if k in known})
        # The per-address cap has two names: the old top-level key, and [limits] per_address_per_day.
        per_address = _cap(lt, "per_address_per_day", per_address)
        per_hub = _cap(lt, "per_hub_per_hour", per_hub)
    security = SecuritySettings()
    if (sec := top.table("security")) is not None:
        sec.only("trusted_authserv_ids", "sent_folder", "bcc_hub", "settle_seconds")
        ids = sec.get("trusted_authserv_ids", list, [])
        if not all(isinstance(i, str) and i.strip() and " " not in i.strip() for i in ids):
            raise sec.fail("trusted_authserv_ids", "should be a list of server names like \"mx.example.org\"")
        security = SecuritySettings(trusted_authserv_ids=tuple(i.strip().lower() for i in ids),
                                    sent_folder=sec.get("sent_folder", str, None),
                                    bcc_hub=sec.get("bcc_hub", bool, False),
                                    settle_seconds=float(sec.get("settle_seconds", (int, float), 120.0)))
        if security.settle_seconds < 0:
            raise sec.fail("settle_seconds", "should be 0 or more seconds")
    hubs = []
    for i, h in enumerate(top.get("hubs", list, [])):
        hubs.append(_hub(top.item("hubs", i, h), base))
    ids = [h.id for h in hubs]
    for hub_id in ids:
        if ids.count(hub_id) > 1:
            raise top.fail("hubs", f"hub id '{hub_id}' is used twice")
    programmes_dir = top.get("programmes_dir", str, None)
    retention = top.get("retention_days", int, None)
    return Config(path=Path(source), timezone=_timezone(top), database_url=db_url,
                  smtp=smtp, outbox_path=outbox_path, schedule=schedule, hubs=tuple(hubs), limits=limits,
                  programmes_dir=(base / programmes_dir) if programmes_dir else None,
                  max_replies_per_address_per_day=per_address, retention_days=retention, security=security,
                  max_emails_per_hub_per_hour=per_hub)


_RATE_LIMITS = ("per_address_per_day", "per_hub_per_hour")
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$")


def _addresses(table: TomlTable, key: str) -> tuple[str, ...]:
    """A list of plain e-mail addresses: a typo here would send staff mail nowhere, or somewhere else."""
    values = table.get(key, list, [])
    for value in values:
        if not isinstance(value, str) or not _ADDRESS.match(value.strip()):
            raise table.fail(key, f"'{value}' is not an e-mail address like lead@example.org")
    return tuple(v.strip() for v in values)


def _timezone(top: TomlTable) -> str:
    name = top.get("timezone", str, "Europe/London")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise top.fail("timezone", f"'{name}' is not a time zone name like Europe/London") from None
    return name


def _cap(table: TomlTable, key: str, default: int | None) -> int | None:
    if key not in table.data:
        return default
    value = table.get(key, int)
    if value < 1:
        raise table.fail(key, "should be a whole number of e-mails, 1 or more")
    return value


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

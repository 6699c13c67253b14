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
from parsers.toml_table import TomlTable
from parsers.types import Limits

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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
    targets: dict[str, int] = field(default_factory=dict)    # programme id -> places the hub means to fill
    templates_dir: Path | None = None        # the hub's own e-mail templates, searched before the built-ins
    attach_export: bool | None = None        # attach the XLSX export to the digest (None: as [schedule] says)


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
    working_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")   # reminders and outcome e-mails
    attach_export: bool = False             # attach the XLSX export to each hub's digest


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
    templates_dir: Path | None = None        # e-mail templates replacing the built-ins, for every hub

    def templates_dir_for(self, hub: HubSettings) -> Path | None:
        return hub.templates_dir or self.templates_dir

    def attach_export_for(self, hub: HubSettings) -> bool:
        return self.schedule.attach_export if hub.attach_export is None else hub.attach_export


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
    t.only("id", "name", "address", "aliases", "staff", "programmes", "imap", "maildir", "dates", "targets",
           "templates_dir", "attach_export")
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
    targets: dict[str, int] = {}
    if (targets_table := t.table("targets")) is not None:
        for programme_id in targets_table.data:
            places = targets_table.get(programme_id, int)
            if places < 0:
                raise targets_table.fail(programme_id, "should be a number of places (0 or more)")
            targets[programme_id] = places
    templates_dir = t.get("templates_dir", str, None)
    imap = t.table("imap")
    maildir = t.get("maildir", str, None)
    return HubSettings(
        id=t.get("id", str), name=t.get("name", str), address=t.get("address", str).lower(),
        aliases=tuple(a.lower() for a in t.get("aliases", list, [])),
        staff=tuple(t.get("staff", list, [])), programmes=tuple(t.get("programmes", list, [])),
        imap=_imap(imap) if imap else None, maildir=(base / maildir) if maildir else None, dates=dates,
        targets=targets, templates_dir=(base / templates_dir) if templates_dir else None,
        attach_export=t.get("attach_export", bool, None),
    )


def parse_config(data: dict[str, Any], source: str, base: Path) -> Config:
    top = TomlTable(data, source)
    top.only("timezone", "database", "smtp", "outbox", "schedule", "hubs", "limits", "programmes_dir",
             "max_replies_per_address_per_day", "retention_days", "templates_dir")
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
                "digest_when_quiet", "working_days", "attach_export")
        try:
            digest_at = time.fromisoformat(sc.get("digest_at", str, "07:30"))
        except ValueError:
            raise sc.fail("digest_at", "should be a time like 07:30") from None
        days = sc.get("reminder_days_before", list, [7, 2])
        if not all(isinstance(d, int) and d >= 0 for d in days):
            raise sc.fail("reminder_days_before", "should be a list of whole numbers of days")
        working = [str(d).lower()[:3] for d in sc.get("working_days", list, list(ScheduleSettings.working_days))]
        if not working or not all(d in _WEEKDAYS for d in working):
            raise sc.fail("working_days", 'should list days like ["mon", "tue", "wed", "thu", "fri"]')
        schedule = ScheduleSettings(
            poll_every_minutes=float(sc.get("poll_every_minutes", (int, float), 5)), digest_at=digest_at,
            reminder_days_before=tuple(days),
            outbox_every_seconds=float(sc.get("outbox_every_seconds", (int, float), 30)),
            digest_when_quiet=sc.get("digest_when_quiet", bool, False),
            working_days=tuple(dict.fromkeys(working)), attach_export=sc.get("attach_export", bool, False))
    limits = Limits()
    if (lt := top.table("limits")) is not None:
        known = set(Limits.__dataclass_fields__)
        lt.only(*known)
        limits = Limits(**{k: lt.get(k, (int, float)) for k in lt.data})
    hubs = []
    for i, h in enumerate(top.get("hubs", list, [])):
        hubs.append(_hub(top.item("hubs", i, h), base))
    ids = [h.id for h in hubs]
    for hub_id in ids:
        if ids.count(hub_id) > 1:
            raise top.fail("hubs", f"hub id '{hub_id}' is used twice")
    programmes_dir = top.get("programmes_dir", str, None)
    retention = top.get("retention_days", int, None)
    templates_dir = top.get("templates_dir", str, None)
    return Config(path=Path(source), timezone=top.get("timezone", str, "Europe/London"), database_url=db_url,
                  smtp=smtp, outbox_path=outbox_path, schedule=schedule, hubs=tuple(hubs), limits=limits,
                  programmes_dir=(base / programmes_dir) if programmes_dir else None,
                  max_replies_per_address_per_day=top.get("max_replies_per_address_per_day", int, 5),
                  retention_days=retention, templates_dir=(base / templates_dir) if templates_dir else None)


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

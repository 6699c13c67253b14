"""Read ``hubbot.toml`` into typed settings, checking every key (see ``config.example.toml``).

Secrets never live in the file: keys ending in ``_env`` name the environment variable that holds them. Errors name
the file and the key. Only the standard library is imported here, so commands that need no config stay fast. These
are the only settings types for the mailbox and the mail server: the IMAP source and the SMTP sender take them as
they are, and get what only exists at run time (a token provider, a TLS context) as separate arguments.
"""
from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from parsers.errors import ConfigError
from parsers.toml_table import TomlTable
from parsers.types import Limits

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Security(enum.StrEnum):
    TLS = "tls"                 # TLS from the first byte (IMAP 993, SMTP 465)
    STARTTLS = "starttls"       # plain connection upgraded with STARTTLS, refused if the server cannot
    NONE = "none"               # clear text: for loopback tests only


class AuthMethod(enum.StrEnum):
    PASSWORD = "password"       # password from the environment variable named by password_env
    MICROSOFT = "microsoft"     # Microsoft 365: XOAUTH2 with an app-only token (client credentials)
    GOOGLE = "google"           # Google Workspace: XOAUTH2 with a token from a stored refresh token


@dataclass(frozen=True)
class OAuthSettings:
    """How to get an XOAUTH2 access token: shared by ``[hubs.imap]``, ``[smtp]`` and ``[hubs.smtp]``."""

    client_id: str | None = None
    tenant_id: str | None = None            # Microsoft only
    client_secret_env: str | None = None
    refresh_token_env: str | None = None    # Google only
    token_url: str | None = None            # the token endpoint, when not the provider's usual one


def _coerce(instance: object, name: str, kind: type[enum.StrEnum]) -> None:
    # Tests and callers may pass "tls"; the settings always hold the enum member.
    object.__setattr__(instance, name, kind(getattr(instance, name)))


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int = 993
    security: Security = Security.TLS
    username: str = ""
    password_env: str | None = None
    folder: str = "INBOX"
    move_to: str | None = None              # folder to move processed mail into, after it is stored
    auth: AuthMethod = AuthMethod.PASSWORD
    oauth: OAuthSettings = OAuthSettings()
    idle: bool = False
    timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        _coerce(self, "security", Security)
        _coerce(self, "auth", AuthMethod)

    @property
    def where(self) -> str:
        """host:port, for messages that must say which server failed."""
        return f"{self.host}:{self.port}"


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
    smtp: SmtpSettings | None = None        # [hubs.smtp] over [smtp]: this hub sends through its own server
    targets: dict[str, int] = field(default_factory=dict)    # programme id -> places the hub means to fill
    templates_dir: Path | None = None        # the hub's own e-mail templates, searched before the built-ins
    attach_export: bool | None = None        # attach the XLSX export to the digest (None: as [schedule] says)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: Security = Security.STARTTLS
    username: str | None = None
    password_env: str | None = None
    timeout_seconds: float = 60.0
    auth: AuthMethod = AuthMethod.PASSWORD
    oauth: OAuthSettings = OAuthSettings()

    def __post_init__(self) -> None:
        _coerce(self, "security", Security)
        _coerce(self, "auth", AuthMethod)

    @property
    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AlertSettings:
    to: tuple[str, ...] = ()                # who gets an e-mail when something breaks and when it recovers
    mailbox_failures: int = 3               # polls in a row a mailbox may fail before it is an incident
    smtp_failures: int = 3                  # sending attempts in a row that fail on the server's side
    outbox_stuck_minutes: int = 60          # a reply waiting this long to go out means the outbox is stuck


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
    alerts: AlertSettings = AlertSettings()
    templates_dir: Path | None = None        # e-mail templates replacing the built-ins, for every hub

    security: SecuritySettings = SecuritySettings()
    max_emails_per_hub_per_hour: int | None = 200   # [limits] per_hub_per_hour: recipients of everything we send

    def templates_dir_for(self, hub: HubSettings) -> Path | None:
        return hub.templates_dir or self.templates_dir

    def attach_export_for(self, hub: HubSettings) -> bool:
        return self.schedule.attach_export if hub.attach_export is None else hub.attach_export

    def smtp_for(self, hub: HubSettings) -> SmtpSettings | None:
        """The mail server a hub's replies go through: its own ``[hubs.smtp]``, else ``[smtp]``, else none (the
        replies are written as .eml files)."""
        return hub.smtp or self.smtp

    def env_names(self) -> Iterator[tuple[str, str]]:
        """Every environment variable the config needs, once, with the key that names it: (variable, key). Only the
        variables the login method uses count (a [hubs.smtp] with auth = "google" does not need the password_env it
        inherits from [smtp])."""
        def of(prefix: str, settings: ImapSettings | SmtpSettings) -> Iterator[tuple[str, str | None]]:
            if settings.auth is AuthMethod.PASSWORD:
                yield f"{prefix}.password_env", settings.password_env
            else:
                yield f"{prefix}.client_secret_env", settings.oauth.client_secret_env
            if settings.auth is AuthMethod.GOOGLE:
                yield f"{prefix}.refresh_token_env", settings.oauth.refresh_token_env

        found: dict[str, str] = {}
        tables: list[tuple[str, ImapSettings | SmtpSettings]] = [("smtp", self.smtp)] if self.smtp else []
        for i, hub in enumerate(self.hubs):
            if hub.imap:
                tables.append((f"hubs[{i}].imap", hub.imap))
            if hub.smtp:
                tables.append((f"hubs[{i}].smtp", hub.smtp))
        for prefix, settings in tables:
            for key, variable in of(prefix, settings):
                if variable and variable not in found:
                    found[variable] = key
        yield from found.items()


_OAUTH_KEYS = ("client_id", "tenant_id", "client_secret_env", "refresh_token_env", "token_url")


def _oauth(t: TomlTable, auth: AuthMethod) -> OAuthSettings:
    oauth = OAuthSettings(**{k: t.get(k, str, None) for k in _OAUTH_KEYS})
    # Missing pieces are named now, not at the first login at three in the morning.
    needed = {AuthMethod.MICROSOFT: ("client_id", "tenant_id", "client_secret_env"),
              AuthMethod.GOOGLE: ("client_id", "client_secret_env", "refresh_token_env")}.get(auth, ())
    for key in needed:
        if not getattr(oauth, key):
            raise t.fail(key, f"is required with auth = \"{auth.value}\"")
    if oauth.token_url and auth is not AuthMethod.GOOGLE:
        raise t.fail("token_url", "is only used with auth = \"google\"")
    return oauth


def _choice(t: TomlTable, key: str, kind: type[enum.StrEnum], default: enum.StrEnum) -> Any:
    value = t.get(key, str, default.value)
    try:
        return kind(value)
    except ValueError:
        raise t.fail(key, "should be " + ", ".join(m.value for m in kind)) from None


_SMTP_KEYS = ("host", "port", "security", "username", "password_env", "timeout_seconds", "auth", *_OAUTH_KEYS)


def _smtp(t: TomlTable) -> SmtpSettings:
    t.only(*_SMTP_KEYS)
    auth = _choice(t, "auth", AuthMethod, AuthMethod.PASSWORD)
    return SmtpSettings(host=t.get("host", str), port=t.get("port", int, 587),
                        security=_choice(t, "security", Security, Security.STARTTLS),
                        username=t.get("username", str, None), password_env=t.get("password_env", str, None),
                        timeout_seconds=float(t.get("timeout_seconds", (int, float), 60.0)), auth=auth,
                        oauth=_oauth(t, auth))


def _imap(t: TomlTable) -> ImapSettings:
    t.only("host", "port", "security", "username", "password_env", "folder", "move_to", "auth", "idle",
           "timeout_seconds", *_OAUTH_KEYS)
    security = _choice(t, "security", Security, Security.TLS)
    auth = _choice(t, "auth", AuthMethod, AuthMethod.PASSWORD)
    return ImapSettings(
        host=t.get("host", str), port=t.get("port", int, 993 if security is Security.TLS else 143),
        security=security, username=t.get("username", str, ""), password_env=t.get("password_env", str, None),
        folder=t.get("folder", str, "INBOX"), move_to=t.get("move_to", str, None), auth=auth,
        oauth=_oauth(t, auth), idle=t.get("idle", bool, False),
        timeout_seconds=float(t.get("timeout_seconds", (int, float), 60.0)),
    )


def _hub(t: TomlTable, base: Path, smtp_defaults: dict[str, Any] | None) -> HubSettings:
    t.only("id", "name", "address", "aliases", "staff", "programmes", "imap", "maildir", "dates", "smtp", "targets",
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
    smtp = None
    if (own := t.table("smtp")) is not None:
        # Keys the hub leaves out come from [smtp], so a hub may change only its login.
        smtp = _smtp(TomlTable({**(smtp_defaults or {}), **own.data}, own.source, own.path))
    return HubSettings(
        id=t.get("id", str), name=t.get("name", str), address=t.get("address", str).lower(),
        aliases=tuple(a.lower() for a in t.get("aliases", list, [])),
        staff=_addresses(t, "staff"), programmes=tuple(t.get("programmes", list, [])),
        imap=_imap(imap) if imap else None, maildir=(base / maildir) if maildir else None, dates=dates,
        smtp=smtp,
        targets=targets, templates_dir=(base / templates_dir) if templates_dir else None,
        attach_export=t.get("attach_export", bool, None),
    )


def parse_config(data: dict[str, Any], source: str, base: Path) -> Config:
    top = TomlTable(data, source)
    top.only("timezone", "database", "smtp", "outbox", "schedule", "hubs", "limits", "programmes_dir",
             "max_replies_per_address_per_day", "retention_days", "alerts", "templates_dir", "security")
    database = top.table("database")
    db_url = "sqlite:///hubbot.db"
    if database:
        database.only("url")
        db_url = database.get("url", str)
    if db_url.startswith("sqlite:///") and not db_url.startswith("sqlite:////") and db_url != "sqlite:///:memory:":
        db_url = f"sqlite:///{(base / db_url[len('sqlite:///'):]).resolve()}"
    smtp_table = top.table("smtp")
    smtp = _smtp(smtp_table) if smtp_table is not None else None
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
        for key in ("poll_every_minutes", "outbox_every_seconds"):
            if key in sc.data and sc.get(key, (int, float)) <= 0:
                raise sc.fail(key, "should be a positive number")
        schedule = ScheduleSettings(
            poll_every_minutes=float(sc.get("poll_every_minutes", (int, float), 5)), digest_at=digest_at,
            reminder_days_before=tuple(days),
            outbox_every_seconds=float(sc.get("outbox_every_seconds", (int, float), 30)),
            digest_when_quiet=sc.get("digest_when_quiet", bool, False),
            working_days=tuple(dict.fromkeys(working)), attach_export=sc.get("attach_export", bool, False))
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
        hubs.append(_hub(top.item("hubs", i, h), base, smtp_table.data if smtp_table else None))
    ids = [h.id for h in hubs]
    for hub_id in ids:
        if ids.count(hub_id) > 1:
            raise top.fail("hubs", f"hub id '{hub_id}' is used twice")
    programmes_dir = top.get("programmes_dir", str, None)
    retention = top.get("retention_days", int, None)
    alerts = AlertSettings()
    if (al := top.table("alerts")) is not None:
        al.only("to", "mailbox_failures", "smtp_failures", "outbox_stuck_minutes")
        to = al.get("to", list, [])
        if not all(isinstance(a, str) and "@" in a for a in to):
            raise al.fail("to", "should be a list of e-mail addresses")
        counts = {k: al.get(k, int, getattr(AlertSettings, k)) for k in
                  ("mailbox_failures", "smtp_failures", "outbox_stuck_minutes")}
        for key, value in counts.items():
            if value < 1:
                raise al.fail(key, "should be 1 or more")
        alerts = AlertSettings(to=tuple(to), **counts)
    templates_dir = top.get("templates_dir", str, None)
    return Config(path=Path(source), timezone=_timezone(top), database_url=db_url,
                  smtp=smtp, outbox_path=outbox_path, schedule=schedule, hubs=tuple(hubs), limits=limits,
                  programmes_dir=(base / programmes_dir) if programmes_dir else None,
                  max_replies_per_address_per_day=per_address, retention_days=retention, alerts=alerts,
                  templates_dir=(base / templates_dir) if templates_dir else None, security=security,
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

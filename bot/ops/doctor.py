"""``hubbot doctor``: check the config against reality before (and whenever) it runs for a hub.

One check per thing the config names, each one line naming the host, folder or key it is about: every ``_env``
variable is set; every programme id and date override names a known programme, and each programme in use has a
deadline ahead or a line saying why not; the database opens and is at the newest migration (it is not migrated
here, and a SQLite file that does not exist is not created); every mailbox logs in and its folder (and ``move_to``)
opens; every mail server answers EHLO and accepts the login, and nothing is sent. Secrets are never printed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.config import Config, HubSettings, SmtpSettings
from bot.mail.source import MailSourceError
from bot.oauth import token_provider_for
from rules.calendar import LONDON, days_until, deadline_end
from rules.settings import CheckSettings
from storage.db import make_engine, redacted_url, schema_revision


@dataclass(frozen=True)
class Check:
    area: str           # config | env | programme | deadline | database | mailbox | smtp | alerts
    subject: str        # what it is about: a key, a hub, host:port
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<5} {self.area:<9} {self.subject}: {self.detail}"


def run_checks(config: Config, settings: CheckSettings, now: datetime) -> list[Check]:
    checks = [Check("config", str(config.path), True,
                    f"{len(config.hubs)} hub(s), read and every key known")]
    checks += env_checks(config)
    checks += programme_checks(config, settings, now)
    checks.append(database_check(config))
    for hub in config.hubs:
        checks += mailbox_checks(config, hub)
    checks += smtp_checks(config)
    checks.append(alerts_check(config))
    return checks


def env_checks(config: Config) -> list[Check]:
    return [Check("env", f"{variable} ({key})", bool(os.environ.get(variable)),
                  "set" if os.environ.get(variable) else "not set")
            for variable, key in config.env_names()]


def programme_checks(config: Config, settings: CheckSettings, now: datetime) -> list[Check]:
    checks: list[Check] = []
    known = sorted(p.id for p in settings.registry.programmes)
    for i, hub in enumerate(config.hubs):
        for programme_id in hub.programmes:
            found = settings.registry.get(programme_id) is not None
            checks.append(Check("programme", f"hubs[{i}].programmes ({hub.id})", found,
                                f"{programme_id} is known" if found else
                                f"{programme_id} is not a known programme (known: {', '.join(known)})"))
        for programme_id in hub.dates:
            found = settings.registry.get(programme_id) is not None
            checks.append(Check("programme", f'hubs[{i}].dates."{programme_id}" ({hub.id})', found,
                                "overrides a known programme" if found else
                                f"names no known programme (known: {', '.join(known)})"))
        for programme_id in hub.programmes:
            programme = settings.registry.get(programme_id)
            if programme is not None:
                checks.append(_deadline_check(settings, hub, i, programme, now))
    return checks


def _deadline_check(settings: CheckSettings, hub: HubSettings, index: int, programme, now: datetime) -> Check:
    dates = settings.dates(hub.id, programme)
    subject = f"{hub.id}: {programme.id}"
    override = f'[hubs.dates."{programme.id}"] deadline (hubs[{index}])'
    if dates.deadline is None:
        return Check("deadline", subject, False, f"no deadline: no reminders go and nothing is flagged late; "
                                                 f"set {override}")
    if now <= deadline_end(dates.deadline):
        left = days_until(dates.deadline, now)
        return Check("deadline", subject, True, f"deadline {dates.deadline:%a %-d %b %Y}, "
                                                + ("today" if left == 0 else f"in {left} day(s)"))
    ahead = sorted(n for n in dates.notifications if n.date >= now.astimezone(LONDON).date())
    if ahead:
        # Past the deadline but the round goes on: staff decide, and the outcome e-mails are still to go.
        return Check("deadline", subject, True, f"deadline {dates.deadline:%a %-d %b %Y} has passed; the round "
                                                f"goes on until {ahead[-1].date:%a %-d %b %Y} ({ahead[-1].what})")
    return Check("deadline", subject, False, f"deadline {dates.deadline:%a %-d %b %Y} has passed and no date of "
                                             f"this round is ahead: set this year's dates in {override} or take "
                                             f"the programme off the hub")


def database_check(config: Config) -> Check:
    where = redacted_url(config.database_url)
    if config.database_url.startswith("sqlite:///") and config.database_url != "sqlite:///:memory:":
        path = Path(config.database_url[len("sqlite:///"):])
        if not path.exists():
            return Check("database", where, False, "the file does not exist yet: the worker creates it when it "
                                                   "first starts (`hubbot run --once`)")
    try:
        engine = make_engine(config.database_url)
        try:
            revision = schema_revision(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the finding
        return Check("database", where, False, f"cannot be opened: {type(exc).__name__}: "
                                               f"{' '.join(str(exc).split())[:200]}")
    if revision.current is None:
        return Check("database", where, False, "opens, but holds no hubbot schema: the worker creates it when it "
                                               "first starts (`hubbot run --once`)")
    if revision.up_to_date:
        return Check("database", where, True, f"opens, at revision {revision.current} (the latest)")
    if not revision.known:
        return Check("database", where, False, f"at revision {revision.current}, unknown to this hubbot (migrated "
                                               f"by a newer version?): see docs/admin.md on rolling back")
    return Check("database", where, False, f"at revision {revision.current}, the latest is {revision.head}: the "
                                           f"worker migrates it when it starts")


def mailbox_checks(config: Config, hub: HubSettings) -> list[Check]:
    if hub.maildir is not None:
        ok = (hub.maildir / "new").is_dir() or (hub.maildir / "cur").is_dir()
        return [Check("mailbox", f"{hub.id}: Maildir {hub.maildir}", ok,
                      "found" if ok else "not found (no new/ or cur/ under it)")]
    if hub.imap is None:
        return [Check("mailbox", hub.id, False, "neither [hubs.imap] nor maildir is configured")]
    from bot.mail.imap import ImapSource

    settings = hub.imap
    subject = f"{hub.id}: {settings.username}@{settings.where}"
    source = ImapSource(settings, token_provider=token_provider_for(settings.auth, settings.oauth,
                                                                   timeout=settings.timeout_seconds))
    checks: list[Check] = []
    try:
        try:
            source.connect()
        except MailSourceError as exc:
            return [Check("mailbox", subject, False, str(exc))]
        checks.append(Check("mailbox", subject, True, f"logged in ({settings.auth.value})"))
        try:
            count = source.examine()
            checks.append(Check("mailbox", f"{hub.id}: folder '{settings.folder}'", True,
                                f"opened ({count} message(s))"))
        except MailSourceError as exc:
            checks.append(Check("mailbox", f"{hub.id}: folder '{settings.folder}'", False, str(exc)))
        if settings.move_to:
            try:
                problem = source.folder_problem(settings.move_to)
            except MailSourceError as exc:
                problem = str(exc)
            checks.append(Check("mailbox", f"{hub.id}: move_to '{settings.move_to}'", problem is None,
                                "exists" if problem is None else problem))
    finally:
        source.close()
    return checks


def smtp_checks(config: Config) -> list[Check]:
    servers: list[tuple[str, SmtpSettings]] = []
    if config.smtp is not None:
        servers.append((f"[smtp] {config.smtp.where}", config.smtp))
    for hub in config.hubs:
        if hub.smtp is not None:
            servers.append((f"[hubs.smtp] of {hub.id} {hub.smtp.where}", hub.smtp))
    if not servers:
        return [_outbox_folder_check(config)]
    from bot.sending.smtp import probe

    checks = []
    for subject, settings in servers:
        result = probe(settings, token_provider=token_provider_for(settings.auth, settings.oauth,
                                                                   timeout=settings.timeout_seconds))
        login = f"login accepted for {settings.username} ({settings.auth.value})" if settings.username else \
            "no login configured"
        checks.append(Check("smtp", subject, result.ok, f"EHLO answered, {login}; nothing sent" if result.ok
                            else result.detail))
    if any(h.smtp is None for h in config.hubs) and config.smtp is None:
        checks.append(_outbox_folder_check(config))
    return checks


def _outbox_folder_check(config: Config) -> Check:
    folder = config.outbox_path
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    writable = existing is not None and os.access(existing, os.W_OK)
    return Check("smtp", "no [smtp]", writable,
                 f"replies are written to {folder} as .eml files, not sent"
                 + ("" if writable else f"; {existing or folder} is not writable"))


def alerts_check(config: Config) -> Check:
    if not config.alerts.to:
        return Check("alerts", "[alerts] to", True, "none: incidents show in `hubbot status` and the digests only")
    return Check("alerts", "[alerts] to", True, f"{len(config.alerts.to)} address(es); an incident is e-mailed "
                                                f"after {config.alerts.mailbox_failures} failed polls")


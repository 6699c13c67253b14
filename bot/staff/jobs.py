"""The calendar jobs as the scheduler and the command line run them: reminders and outcome e-mails, digests and
retention. Each opens its own transaction, queues through the outbox (so sending is the outbox's exactly-once
business), and returns what it did for the caller to print or log. ``run_due`` is what ``hubbot run --once`` adds
after its poll: every job that is due and not yet done, so a cron line calling it every few minutes behaves like
the long-running worker (each job claims by key: reminders and outcome e-mails by their outbox keys, the digest by
``digest:<hub>:<date>``, retention by ``retention:<date>``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from bot.config import Config
from bot.staff.digest import Digest, build_digest, digest_queued, queue_digest
from bot.staff.outcomes import due_outcomes
from bot.staff.reminders import DueReminder, due_reminders, queue_reminders
from bot.staff.views import views_by_hub
from rules.calendar import LONDON, deadline_end
from rules.settings import CheckSettings
from storage import repository as repo
from storage.db import Database
from storage.models import EventKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigestRun:
    digest: Digest
    queued: bool
    skipped_quiet: bool
    already_sent: bool = False      # today's digest for this hub was queued earlier


def remind(db: Database, config: Config, settings: CheckSettings, now: datetime, *, send: bool,
           actor: str = "hubbot") -> list[DueReminder]:
    """The reminders and outcome e-mails due at ``now``; with ``send`` they are queued to the outbox in the same
    transaction that found them (one already queued is never found again)."""
    with db.session() as session:
        # The applications are read once for both: reading them is most of the work at thousands of them.
        views = views_by_hub(session)
        due = (due_reminders(session, config, settings, now, views=views)
               + due_outcomes(session, config, settings, now, views=views))
        if send and due:
            queue_reminders(session, due, now, actor=actor)
    return due


def digests(db: Database, config: Config, settings: CheckSettings, now: datetime, *, send: bool,
            hub_id: str | None = None, actor: str = "hubbot") -> list[DigestRun]:
    runs = []
    for hub in config.hubs:
        if hub_id and hub.id != hub_id:
            continue
        with db.session() as session:
            digest = build_digest(session, config, settings, hub, now)
            already = digest_queued(session, digest)
            quiet = digest.quiet and not config.schedule.digest_when_quiet
            queued = bool(send and not quiet and not already
                          and queue_digest(session, digest, now, actor=actor, config=config, settings=settings))
        runs.append(DigestRun(digest, queued, quiet and not already, already))
    return runs


def round_ends(config: Config, settings: CheckSettings) -> dict[tuple[str, str], datetime]:
    """When each programme's round ends for each hub: the end of its last notification date in force for that hub
    (the outcome), else of its deadline. Programmes with neither are left out (their data counts from arrival)."""
    ends: dict[tuple[str, str], datetime] = {}
    for hub in config.hubs:
        for programme in settings.registry.programmes:
            dates = settings.dates(hub.id, programme)
            last = max((n.date for n in dates.notifications), default=None) or dates.deadline
            if last is not None:
                ends[(hub.id, programme.id)] = deadline_end(last)
    return ends


def apply_retention(db: Database, config: Config, now: datetime,
                    settings: CheckSettings | None = None) -> repo.RetentionReport | None:
    """Delete personal data ``retention_days`` after each round's last date (nothing when the config keeps
    everything); see ``repository.delete_expired_rounds``."""
    if config.retention_days is None:
        return None
    if settings is None:
        from bot.context import check_settings

        settings = check_settings(config)
    from bot.ops.health import CLOSED, OPENED

    with db.session() as session:
        report = repo.delete_expired_rounds(session, now=now, retention=timedelta(days=config.retention_days),
                                            round_ends=round_ends(config, settings),
                                            keep_event_kinds=(OPENED, CLOSED))
        repo.record_event(session, EventKind.RETENTION, detail=vars(report), now=now)
    log.info("retention: deleted %s", vars(report))
    return report


RETENTION_AT = time(3, 15)      # as the long-running worker's retention job


@dataclass(frozen=True)
class DueRun:
    """What ``run_due`` did: reminders and outcome e-mails queued, digests queued, retention run or not."""

    reminders: list[DueReminder]
    digests: list[DigestRun]
    retention: repo.RetentionReport | None


def run_due(db: Database, config: Config, settings: CheckSettings, now: datetime, *,
            actor: str = "hubbot") -> DueRun:
    """Every scheduled job that is due at ``now`` and not yet done (the caller drains the outbox afterwards)."""
    due = remind(db, config, settings, now, send=True, actor=actor)
    local = now.astimezone(LONDON)
    runs: list[DigestRun] = []
    if local.time() >= config.schedule.digest_at:
        runs = digests(db, config, settings, now, send=True, actor=actor)
    report = None
    if config.retention_days is not None and local.time() >= RETENTION_AT:
        with db.session() as session:
            claimed = repo.claim_job(session, f"retention:{local.date().isoformat()}", now=now, worker=actor)
        if claimed:
            report = apply_retention(db, config, now)
    return DueRun(due, runs, report)

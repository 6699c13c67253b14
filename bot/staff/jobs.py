"""The calendar jobs as the scheduler and the command line run them: reminders, digests and retention. Each opens
its own transaction, queues through the outbox (so sending is the outbox's exactly-once business), and returns
what it did for the caller to print or log."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import Config
from bot.staff.digest import Digest, build_digest, digest_queued, queue_digest
from bot.staff.reminders import DueReminder, due_reminders, queue_reminders
from rules.pipeline import CheckSettings
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
    """The reminders due at ``now``; with ``send`` they are queued to the outbox in the same transaction that
    found them (a reminder already queued is never found again)."""
    with db.session() as session:
        due = due_reminders(session, config, settings, now)
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
            queued = bool(send and not quiet and not already and queue_digest(session, digest, now, actor=actor))
        runs.append(DigestRun(digest, queued, quiet and not already, already))
    return runs


def apply_retention(db: Database, config: Config, now: datetime) -> repo.RetentionReport | None:
    """Delete personal data older than ``retention_days`` (nothing when the config keeps everything)."""
    if config.retention_days is None:
        return None
    with db.session() as session:
        report = repo.delete_personal_data(session, older_than=now - timedelta(days=config.retention_days))
        repo.record_event(session, EventKind.RETENTION, detail=vars(report), now=now)
    log.info("retention: deleted %s", vars(report))
    return report

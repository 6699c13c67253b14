"""``hubbot run``: the long-running worker. APScheduler runs the jobs on the config's schedule (poll and process,
outbox, reminders, digests, retention) on a single-thread executor, so jobs never overlap one another, and each
job is coalesced so a slow run is never queued up behind itself. Hubs with IMAP IDLE get a watcher thread that
wakes the poll as soon as mail arrives; the scheduled poll stays as the safety net. SIGTERM or SIGINT asks the
worker to stop between messages, then the scheduler shuts down cleanly.

APScheduler does not coordinate schedulers across processes: two workers on one PostgreSQL database stay safe
because every piece of work is claimed in the database (messages, replies, job keys), not because of the
scheduler.
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import Config
from bot.mail.source import MailSourceError
from bot.staff import jobs
from bot.worker import Worker
from storage.errors import describe as describe_database_fault

log = logging.getLogger(__name__)


class Service:
    def __init__(self, config: Config, worker: Worker, *, extra_jobs: dict[str, tuple[Callable[[], object],
                                                                                     object]] | None = None) -> None:
        self.config = config
        self.worker = worker
        self.scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(1)},
                                           job_defaults={"coalesce": True, "max_instances": 1,
                                                         "misfire_grace_time": 300},
                                           timezone=config.timezone)
        self._stopping = threading.Event()
        self.extra_jobs = extra_jobs or {}

    def poll_and_process(self) -> None:
        report = self.worker.run_once()
        busy = bool(report.outcomes or report.failed_messages or report.outbox.claimed or report.mailbox_errors)
        # A poll with nothing new every few minutes is chatter: DEBUG.
        log.log(logging.INFO if busy else logging.DEBUG, "cycle: stored=%s processed=%d failed=%d sent=%d",
                sum(report.fetched.values()), len(report.outcomes), report.failed_messages, report.outbox.sent)

    def send_outbox(self) -> None:
        self.worker.send_due()

    def send_reminders(self) -> None:
        due = jobs.remind(self.worker.db, self.config, self.worker.workflow.settings, self.worker.clock(), send=True,
                          actor=self.worker.worker_id)
        if due:
            log.info("reminders queued: %d", len(due))
            self.worker.send_due()

    def send_digests(self) -> None:
        runs = jobs.digests(self.worker.db, self.config, self.worker.workflow.settings, self.worker.clock(),
                            send=True, actor=self.worker.worker_id)
        log.info("digests queued: %d", sum(r.queued for r in runs))
        self.worker.send_due()

    def retention(self) -> None:
        jobs.apply_retention(self.worker.db, self.config, self.worker.clock(), self.worker.workflow.settings)

    def add_job(self, function: Callable[[], object], trigger, **kwargs) -> None:
        """A job whose database fault is one plain log line (and is tried again at its next run), not a
        traceback: a full disk or a read-only file says so in words."""
        def guarded() -> None:
            try:
                function()
            except Exception as exc:  # noqa: BLE001
                line = describe_database_fault(exc)
                if line is None:
                    raise
                log.error("%s: %s", kwargs.get("id", "job"), line)
        self.scheduler.add_job(guarded, trigger, **kwargs)

    def schedule(self) -> None:
        schedule = self.config.schedule
        start = datetime.now(timezone.utc) + timedelta(seconds=1)
        self.add_job(self.poll_and_process, IntervalTrigger(minutes=schedule.poll_every_minutes),
                               id="poll", next_run_time=start)
        self.add_job(self.send_outbox, IntervalTrigger(seconds=schedule.outbox_every_seconds), id="outbox")
        # Reminders are checked hourly: each is due from 09:00 on its day and queued once, whenever it is found.
        self.add_job(self.send_reminders, IntervalTrigger(hours=1), id="reminders",
                               next_run_time=start + timedelta(seconds=30))
        self.add_job(self.send_digests, daily_at(self.config, schedule.digest_at), id="digest")
        self.add_job(self.retention, CronTrigger(hour=3, minute=15, timezone=self.config.timezone),
                               id="retention")
        for job_id, (function, trigger) in self.extra_jobs.items():
            self.add_job(function, trigger, id=job_id)

    def wake_poll(self) -> None:
        """Run the poll now (IMAP IDLE saw new mail)."""
        try:
            self.scheduler.modify_job("poll", next_run_time=datetime.now(timezone.utc))
        except Exception:  # noqa: BLE001 - the scheduler may be shutting down; the regular poll covers us
            log.debug("could not wake the poll job", exc_info=True)

    def _idle_watchers(self) -> list[threading.Thread]:
        threads = []
        for hub in self.config.hubs:
            if hub.imap is None or not hub.imap.idle:
                continue
            thread = threading.Thread(target=self._watch, args=(hub,), name=f"idle-{hub.id}", daemon=True)
            thread.start()
            threads.append(thread)
        return threads

    def _watch(self, hub) -> None:
        while not self._stopping.is_set():
            source = None
            try:
                source = self.worker.sources(hub)
                # Servers drop IDLE after 30 minutes; renew well before that.
                if source.idle_wait(timeout=240):  # type: ignore[attr-defined]
                    self.wake_poll()
            except MailSourceError as exc:
                log.info("IDLE on hub %s failed (%s); polling continues", hub.id, exc)
                self._stopping.wait(30)
            except Exception:  # noqa: BLE001
                log.exception("IDLE watcher for hub %s", hub.id)
                self._stopping.wait(30)
            finally:
                if source is not None:
                    source.close()

    def stop(self, *_: object) -> None:
        if self._stopping.is_set():
            return
        log.info("stopping: finishing the current message first")
        self._stopping.set()
        self.worker.stop_requested = True
        threading.Thread(target=lambda: self.scheduler.shutdown(wait=True), daemon=True).start()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.schedule()
        self._idle_watchers()
        self.scheduler.start()
        log.info("stopped cleanly")


def daily_at(config: Config, when) -> CronTrigger:
    return CronTrigger(hour=when.hour, minute=when.minute, timezone=config.timezone)

"""One cycle of the bot: poll every hub's mailbox, store each new message, process what is stored, send what is due.

Order matters for crash safety. A fetched message is committed (raw bytes and the mailbox cursor, together)
before anything else happens to it; it is only moved to another folder after that commit. Processing claims one
stored message at a time and commits its verdict, application changes and reply in one transaction. The outbox is
drained last. A crash anywhere leaves work that the next cycle picks up: nothing is lost, nothing is answered twice.
Failures are caught per message and per mailbox, so one bad message or one broken mailbox never stops the rest.
Each poll's outcome is recorded (a ``mailbox_error`` event, or the mailbox row touched and, after failures, a
``mailbox_ok`` event) and each cycle ends with a health review (``bot.ops.health``) that opens and closes incidents
and queues their alerts. One log line per processed message gives ids, codes and timings, never names or addresses.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.faults import crash_point
from bot.mail.source import Cursor, ErrorKind, MailSource, MailSourceError
from bot.oauth import TokenProvider, token_provider_for
from bot.sending.outbox import DrainReport, OutboxPolicy, Sender, default_worker_id, drain_outbox
from bot.sending.senders import DEFAULT_ENDPOINT, Senders, build_senders, hub_endpoint
from bot.sending.smtp import FailureCause
from bot.workflow import Outcome, Workflow
from rules.pipeline import CheckSettings
from storage import repository as repo
from storage.db import Database
from storage.models import Event, EventKind, Message

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class CycleReport:
    fetched: dict[str, int] = field(default_factory=dict)      # hub id -> messages stored
    mailbox_errors: dict[str, str] = field(default_factory=dict)
    mailbox_warnings: dict[str, str] = field(default_factory=dict)  # read, but e.g. move_to cannot be done
    outcomes: list[Outcome] = field(default_factory=list)
    failed_messages: int = 0
    outbox: DrainReport = field(default_factory=DrainReport)
    outbox_error: str | None = None
    incidents_opened: list[str] = field(default_factory=list)
    incidents_closed: list[str] = field(default_factory=list)


def open_source(hub: HubSettings, config: Config, *, token_provider: TokenProvider | None = None) -> MailSource:
    """The mailbox a hub's config describes: IMAP (password or XOAUTH2) or a local Maildir folder."""
    if hub.maildir is not None:
        from bot.mail.maildir import MaildirSource

        return MaildirSource(hub.maildir, max_message_bytes=config.limits.message_bytes)
    if hub.imap is None:
        raise MailSourceError(f"hub {hub.id} has neither [hubs.imap] nor maildir configured", ErrorKind.PERMANENT)
    from bot.mail.imap import ImapSource

    settings = hub.imap
    if token_provider is None:
        token_provider = token_provider_for(settings.auth, settings.oauth, timeout=settings.timeout_seconds)
    return ImapSource(settings, token_provider=token_provider, max_message_bytes=config.limits.message_bytes)


def mailbox_folder(hub: HubSettings) -> str:
    """The folder name the mailbox cursor is stored under."""
    return hub.imap.folder if hub.imap else "maildir"


def imap_token_key(hub_id: str) -> str:
    return f"hubs.{hub_id}.imap"


class _CrashPointSender:
    """The configured sender with the ``after_smtp`` crash point between the server's "accepted" and our commit;
    ``close`` passes through so a kept SMTP connection is ended after each drain."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def __call__(self, message):
        result = self.sender(message)
        crash_point("after_smtp")
        return result

    def close(self) -> None:
        close = getattr(self.sender, "close", None)
        if close is not None:
            close()


class Worker:
    def __init__(self, config: Config, db: Database, settings: CheckSettings, *, worker_id: str | None = None,
                 clock: Clock = system_clock, sender: Sender | None = None,
                 sources: Callable[[HubSettings], MailSource] | None = None,
                 outbox_policy: OutboxPolicy = OutboxPolicy()) -> None:
        self.config = config
        self.db = db
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.workflow = Workflow(config, settings, worker=self.worker_id)
        # Token providers live as long as the worker, so a cached access token serves every reconnection.
        self.tokens: dict[str, TokenProvider] = {}
        if sender is not None:
            self.senders = Senders.single(_CrashPointSender(sender))
        else:
            self.senders = build_senders(config, wrap=_CrashPointSender, tokens=self.tokens)
        self.sender: Sender = self.senders.default
        for hub in config.hubs:
            provider = token_provider_for(hub.imap.auth, hub.imap.oauth, timeout=hub.imap.timeout_seconds) \
                if hub.imap is not None else None
            if provider is not None:
                self.tokens[imap_token_key(hub.id)] = provider
        self.sources = sources or (lambda hub: open_source(hub, config,
                                                           token_provider=self.tokens.get(imap_token_key(hub.id))))
        # Mailbox connections are kept between polls (a poll with no new mail is then one SELECT and one SEARCH);
        # one that fails is closed and opened afresh next time.
        self._open_sources: dict[str, MailSource] = {}
        self.outbox_policy = outbox_policy
        self.stop_requested = False

    # ---- one cycle -------------------------------------------------------------------------------------------

    def run_once(self) -> CycleReport:
        report = CycleReport()
        for hub in self.config.hubs:
            if self.stop_requested:
                break
            try:
                report.fetched[hub.id] = self.poll(hub, report)
            except MailSourceError as exc:
                report.mailbox_errors[hub.id] = str(exc)
                log.warning("mailbox of hub %s could not be read: %s", hub.id, exc)
                cause = "mailbox"
                if exc.token:
                    cause = (FailureCause.TOKEN_REFUSED if exc.kind is ErrorKind.PERMANENT else FailureCause.TOKEN).value
                self._event(EventKind.MAILBOX_ERROR, hub.id, {"error": str(exc)[:300], "kind": exc.kind.value,
                                                      "cause": cause})
            except Exception as exc:  # noqa: BLE001 - one broken mailbox must not stop the others
                report.mailbox_errors[hub.id] = type(exc).__name__
                log.exception("unexpected error polling hub %s", hub.id)
                self._event(EventKind.MAILBOX_ERROR, hub.id, {"error": type(exc).__name__, "cause": "mailbox"})
        self.process_stored(report)
        try:
            report.outbox = self.send_due()
        except Exception as exc:  # noqa: BLE001 - the health review below must still run and say so
            report.outbox_error = type(exc).__name__
            log.exception("sending the outbox failed")
        self.review_health(report)
        return report

    def review_health(self, report: CycleReport | None = None) -> None:
        """Open and close incidents, and send their alerts now rather than at the next drain."""
        from bot.ops.health import review

        try:
            result = review(self.db, self.config, self.clock(), actor=self.worker_id, probe=self._probe)
        except Exception:  # noqa: BLE001 - a health check must never stop the mail
            log.exception("health review failed")
            return
        if report is not None:
            report.incidents_opened += [t.incident.key for t in result.opened]
            report.incidents_closed += [t.incident.key for t in result.closed]
        if result.changed and self.config.alerts.to:
            try:
                drained = self.send_due()
            except Exception:  # noqa: BLE001
                log.exception("sending the alerts failed")
                return
            if report is not None:
                for name in ("claimed", "sent", "retried", "failed", "uncertain", "lost_claims"):
                    setattr(report.outbox, name, getattr(report.outbox, name) + getattr(drained, name))

    def _probe(self, label: str) -> bool:
        """Log in to the mail server ``label`` without sending (an open SMTP incident with nothing to send)."""
        from bot.sending.smtp import probe

        settings = self.config.smtp if label == DEFAULT_ENDPOINT else next(
            (h.smtp for h in self.config.hubs if hub_endpoint(h.id) == label), None)
        if settings is None:
            return False
        return probe(settings, token_provider=self.tokens.get(label)).ok

    def close(self) -> None:
        """Close every mailbox connection kept open between polls."""
        for source in self._open_sources.values():
            try:
                source.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not hide anything else
                log.debug("closing a mail source failed", exc_info=True)
        self._open_sources.clear()

    def poll(self, hub: HubSettings, report: CycleReport | None = None) -> int:
        """Fetch and store every new message of one hub's mailbox; returns how many were stored."""
        source = self._open_sources.get(hub.id)
        if source is None:
            source = self._open_sources[hub.id] = self.sources(hub)
        folder = mailbox_folder(hub)
        stored_uids: list[int] = []
        try:
            with self.db.session() as session:
                state = repo.get_mailbox_state(session, hub.id, folder, now=self.clock())
                cursor = Cursor(state.uidvalidity, state.last_uid)
            run = source.fetch_new(cursor)
            if run.uidvalidity_changed:
                self._event(EventKind.UIDVALIDITY_CHANGED, hub.id, {"old": run.previous_uidvalidity, "new": run.uidvalidity})
            for skipped in run.skipped:
                self._event(EventKind.MESSAGE_SKIPPED, hub.id, {"uid": skipped.uid, "size": skipped.size,
                                                        "reason": skipped.reason.value})
            for fetched in run:
                crash_point("after_fetch")
                with self.db.session() as session:
                    state = repo.get_mailbox_state(session, hub.id, folder)
                    result = repo.store_raw_message(
                        session, hub_id=hub.id, folder=folder, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
                        raw=fetched.raw, received_at=fetched.internaldate, now=self.clock())
                    repo.advance_mailbox(session, state, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
                                         now=self.clock())
                crash_point("after_store")
                if result.created:
                    stored_uids.append(fetched.uid)
            with self.db.session() as session:
                # Skipped (oversize) messages are past the cursor too, so they are not fetched again every poll.
                state = repo.get_mailbox_state(session, hub.id, folder)
                if run.uids or run.skipped or state.uidvalidity != run.uidvalidity:
                    repo.advance_mailbox(session, state, uidvalidity=run.uidvalidity, uid=run.highest_uid,
                                         now=self.clock())
                # The row's time is the last good poll (hubbot status), and a poll after failures ends the streak.
                state.updated_at = self.clock()
                self._mark_mailbox_ok(session, hub.id)
            self._move(hub, source, stored_uids, report)
        except BaseException:
            self._open_sources.pop(hub.id, None)
            source.close()
            raise
        return len(stored_uids)

    def _move(self, hub: HubSettings, source: MailSource, uids: list[int], report: CycleReport | None) -> None:
        """Move what was stored to ``move_to``; a folder that cannot take it is one warning line at every poll
        (the mail was read and is safe: the poll did not fail)."""
        if hub.imap is None or not hub.imap.move_to:
            return
        check = getattr(source, "folder_problem", None)
        problem = check(hub.imap.move_to) if check is not None else None
        if problem is None and uids:
            try:
                source.move_to(uids, hub.imap.move_to)
            except MailSourceError as exc:
                if exc.kind is ErrorKind.TEMPORARY:
                    raise
                problem = str(exc)
        if problem is not None:
            message = f"move_to {problem}; messages stay in '{hub.imap.folder}'"
            log.warning("mailbox of hub %s: %s", hub.id, message)
            if report is not None:
                report.mailbox_warnings[hub.id] = message
            self._event(EventKind.MAILBOX_WARNING, hub.id, {"warning": "move_to", "error": problem[:300]})

    def _mark_mailbox_ok(self, session: Session, hub_id: str) -> None:
        last = session.scalar(select(Event.kind).where(Event.hub_id == hub_id,
                                                       Event.kind.in_([EventKind.MAILBOX_ERROR, EventKind.MAILBOX_OK]))
                              .order_by(Event.id.desc()).limit(1))
        if last is EventKind.MAILBOX_ERROR:
            repo.record_event(session, EventKind.MAILBOX_OK, hub_id=hub_id, actor=self.worker_id, now=self.clock())

    def process_stored(self, report: CycleReport | None = None) -> CycleReport:
        """Process every stored message, one transaction each; a failure is recorded and retried next cycle,
        and quarantined for a person after ``repo.MAX_MESSAGE_ATTEMPTS``."""
        report = report or CycleReport()
        failed_this_cycle: list[int] = []
        while not self.stop_requested:
            now = self.clock()
            with self.db.session() as session:
                message = repo.claim_next_message(session, worker=self.worker_id, now=now,
                                                  max_attempts=repo.MAX_MESSAGE_ATTEMPTS, exclude=failed_this_cycle)
                if message is None:
                    break
                message_row_id = message.id
            started = time.perf_counter()
            try:
                with self.db.session() as session:
                    message = session.get(Message, message_row_id)
                    assert message is not None
                    hub_id, size = message.hub_id, message.size
                    outcome = self.workflow.process(session, message, now)
                    crash_point("after_verdict")
                crash_point("after_commit")
                report.outcomes.append(outcome)
                _log_outcome(outcome, hub_id, size, time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - per message: record, release, carry on with the next
                report.failed_messages += 1
                failed_this_cycle.append(message_row_id)
                log.exception("processing message %s failed", message_row_id)
                with self.db.session() as session:
                    message = session.get(Message, message_row_id)
                    if message is not None:
                        repo.release_message(session, message, error=f"{type(exc).__name__}: {str(exc)[:300]}")
                        repo.record_event(session, EventKind.PROCESSING_FAILED, hub_id=message.hub_id,
                                          actor=self.worker_id, message_id=message.id,
                                          detail={"error": type(exc).__name__, "attempt": message.attempts},
                                          now=now)
                        if message.attempts >= repo.MAX_MESSAGE_ATTEMPTS:
                            repo.mark_quarantined(session, message, error=type(exc).__name__, now=now)
                            repo.record_event(session, EventKind.MESSAGE_QUARANTINED, hub_id=message.hub_id,
                                              actor=self.worker_id, message_id=message.id,
                                              detail={"reason": "processing failed"}, now=now)
        return report

    def send_due(self) -> DrainReport:
        return drain_outbox(self.db, self.senders.default, worker=self.worker_id, now=self.clock(),
                            policy=self.outbox_policy, pick=self.senders.pick)

    def _event(self, kind: EventKind, hub_id: str, detail: dict) -> None:
        with self.db.session() as session:
            repo.record_event(session, kind, hub_id=hub_id, actor=self.worker_id, detail=detail, now=self.clock())




def _log_outcome(outcome: Outcome, hub_id: str, size: int, seconds: float) -> None:
    """One structured line per processed message: ids, codes and timings; names and addresses never."""
    log.info("message processed: id=%d hub=%s status=%s reply=%s flags=%s application=%s bytes=%d ms=%d",
             outcome.message_row_id, hub_id, outcome.status.value,
             outcome.reply.value if outcome.reply else "none",
             ",".join(f.value for f in outcome.flags) or "none",
             outcome.application_id if outcome.application_id is not None else "none", size, round(seconds * 1000))

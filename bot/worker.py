"""One cycle of the bot: poll every hub's mailbox, store each new message, process what is stored, send what is due.

Order matters for crash safety. A fetched message is committed (raw bytes and the mailbox cursor, together)
before anything else happens to it; it is only moved to another folder after that commit. Processing claims one
stored message at a time and commits its verdict, application changes and reply in one transaction. The outbox is
drained last. A crash anywhere leaves work that the next cycle picks up: nothing is lost, nothing is answered twice.
Failures are caught per message and per mailbox, so one bad message or one broken mailbox never stops the rest.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.faults import crash_point
from bot.mail.source import Cursor, FetchedMessage, MailSource, MailSourceError
from bot.sending.outbox import (
    DrainReport,
    OutboxPolicy,
    Sender,
    default_worker_id,
    drain_outbox,
    eml_sender,
    smtp_sender,
)
from bot.workflow import Outcome, Workflow
from rules.pipeline import CheckSettings
from storage import repository as repo
from storage.db import Database
from storage.locks import try_lock
from storage.models import EventKind, Message, MessageState

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_MESSAGE_ATTEMPTS = 3
# Fetched messages stored per transaction (the cursor moves with each batch): few enough that a crash refetches
# little, enough that a commit is shared by many messages.
STORE_BATCH = 25
STORE_BATCH_BYTES = 16 * 1024 * 1024


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class CycleReport:
    fetched: dict[str, int] = field(default_factory=dict)      # hub id -> messages stored
    mailbox_errors: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    failed_messages: int = 0
    outbox: DrainReport = field(default_factory=DrainReport)


def open_source(hub: HubSettings, config: Config) -> MailSource:
    """The mailbox a hub's config describes: IMAP (password or XOAUTH2) or a local Maildir folder."""
    if hub.maildir is not None:
        from bot.mail.maildir import MaildirSource

        return MaildirSource(hub.maildir, max_message_bytes=config.limits.message_bytes)
    if hub.imap is None:
        raise MailSourceError(f"hub {hub.id} has neither [hubs.imap] nor maildir configured")
    from bot.mail import imap

    settings = hub.imap
    token_provider = None
    if settings.auth == "microsoft":
        token_provider = imap.microsoft_token_provider(
            tenant_id=settings.tenant_id or "", client_id=settings.client_id or "",
            client_secret_env=settings.client_secret_env or "")
    elif settings.auth == "google":
        token_provider = imap.google_token_provider(
            client_id=settings.client_id or "", client_secret_env=settings.client_secret_env or "",
            refresh_token_env=settings.refresh_token_env or "")
    return imap.ImapSource(imap.ImapSettings(
        host=settings.host, username=settings.username, port=settings.port, security=settings.security,
        password_env=settings.password_env, folder=settings.folder, timeout=settings.timeout_seconds,
        max_message_bytes=config.limits.message_bytes, token_provider=token_provider))


def make_sender(config: Config) -> Sender:
    if config.smtp is None:
        return eml_sender(config.outbox_path)
    from bot.sending.smtp import SmtpSettings

    s = config.smtp
    return smtp_sender(SmtpSettings(host=s.host, port=s.port, security=s.security, username=s.username,
                                    password_env=s.password_env, timeout=s.timeout_seconds))


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
        base_sender = sender or make_sender(config)

        self.sender: Sender = _CrashPointSender(base_sender)
        self.sources = sources or (lambda hub: open_source(hub, config))
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
                report.fetched[hub.id] = self.poll(hub)
            except MailSourceError as exc:
                report.mailbox_errors[hub.id] = str(exc)
                log.warning("mailbox of hub %s could not be read: %s", hub.id, exc)
                self._event(EventKind.MAILBOX_ERROR, hub.id, {"error": str(exc)[:300], "kind": exc.kind.value})
            except Exception as exc:  # noqa: BLE001 - one broken mailbox must not stop the others
                report.mailbox_errors[hub.id] = type(exc).__name__
                log.exception("unexpected error polling hub %s", hub.id)
                self._event(EventKind.MAILBOX_ERROR, hub.id, {"error": type(exc).__name__})
        self.process_stored(report)
        report.outbox = self.send_due()
        return report

    def close(self) -> None:
        """Close every mailbox connection kept open between polls."""
        for source in self._open_sources.values():
            try:
                source.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not hide anything else
                log.debug("closing a mail source failed", exc_info=True)
        self._open_sources.clear()

    def poll(self, hub: HubSettings) -> int:
        """Fetch and store every new message of one hub's mailbox; returns how many were stored. Another worker
        polling the same mailbox right now is left to it (see ``storage.locks``): this one stores nothing."""
        source = self._open_sources.get(hub.id)
        if source is None:
            source = self._open_sources[hub.id] = self.sources(hub)
        folder = hub.imap.folder if hub.imap else "maildir"
        stored_uids: list[int] = []
        try:
            with try_lock(self.db.engine, f"poll:{hub.id}:{folder}") as ours:
                if not ours:
                    log.debug("hub %s: another worker is polling this mailbox", hub.id)
                    return 0
                with self.db.session() as session:
                    state = repo.get_mailbox_state(session, hub.id, folder, now=self.clock())
                    cursor = Cursor(state.uidvalidity, state.last_uid)
                run = source.fetch_new(cursor)
                if run.uidvalidity_changed:
                    self._event(EventKind.UIDVALIDITY_CHANGED, hub.id,
                                {"old": run.previous_uidvalidity, "new": run.uidvalidity})
                for skipped in run.skipped:
                    self._event(EventKind.MESSAGE_SKIPPED, hub.id, {"uid": skipped.uid, "size": skipped.size,
                                                                    "reason": skipped.reason.value})
                batch: list[FetchedMessage] = []
                for fetched in run:
                    crash_point("after_fetch")
                    batch.append(fetched)
                    if len(batch) >= STORE_BATCH or sum(m.size for m in batch) >= STORE_BATCH_BYTES:
                        stored_uids += self._store(hub.id, folder, batch)
                        batch = []
                if batch:
                    stored_uids += self._store(hub.id, folder, batch)
                with self.db.session() as session:
                    # Skipped (oversize) messages are past the cursor too, so they are not fetched again every poll.
                    state = repo.get_mailbox_state(session, hub.id, folder)
                    if run.uids or run.skipped or state.uidvalidity != run.uidvalidity:
                        repo.advance_mailbox(session, state, uidvalidity=run.uidvalidity, uid=run.highest_uid,
                                             now=self.clock())
            if hub.imap and hub.imap.move_to and stored_uids:
                source.move_to(stored_uids, hub.imap.move_to)
        except BaseException:
            self._open_sources.pop(hub.id, None)
            source.close()
            raise
        return len(stored_uids)

    def _store(self, hub_id: str, folder: str, batch: list[FetchedMessage]) -> list[int]:
        """Store a batch of fetched messages and move the cursor past them in one transaction: each message is
        committed with the cursor before anything else happens to it, as before, with one commit per batch rather
        than per message. Returns the UIDs of the messages that were new."""
        created: list[int] = []
        with self.db.session() as session:
            state = repo.get_mailbox_state(session, hub_id, folder)
            for fetched in batch:
                result = repo.store_raw_message(
                    session, hub_id=hub_id, folder=folder, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
                    raw=fetched.raw, received_at=fetched.internaldate, now=self.clock())
                if result.created:
                    created.append(fetched.uid)
            for fetched in batch:   # after the stores, so the cursor is written once per batch
                repo.advance_mailbox(session, state, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
                                     now=self.clock())
        crash_point("after_store")
        return created

    def process_stored(self, report: CycleReport | None = None) -> CycleReport:
        """Process every stored message, one transaction each; a failure is recorded and retried next cycle,
        and quarantined for a person after ``MAX_MESSAGE_ATTEMPTS``.

        A message is claimed (its attempt counted and committed) before it is read, as always; the claim of the
        next message is made in the same commit as the previous message's outcome, so each message costs one
        commit, and the e-mail is parsed and read before its transaction's first statement."""
        report = report or CycleReport()
        failed_this_cycle: list[int] = []
        with self.db.session() as session:
            message = self._claim(session, self.clock(), failed_this_cycle)
        while message is not None:
            if self.stop_requested:
                self._unclaim(message)
                break
            message = self._process_one(message, report, failed_this_cycle)
        return report

    def _claim(self, session: Session, now: datetime, failed_this_cycle: list[int]) -> Message | None:
        return repo.claim_next_message(session, worker=self.worker_id, now=now, max_attempts=MAX_MESSAGE_ATTEMPTS,
                                       exclude=failed_this_cycle, hub_ids=[h.id for h in self.config.hubs])

    def _process_one(self, message: Message, report: CycleReport, failed_this_cycle: list[int]) -> Message | None:
        """Read, decide and record one claimed message; returns the next message, claimed in the same commit."""
        message_row_id = message.id
        now = self.clock()
        try:
            with self.db.session() as session:
                # Loaded when claimed: re-attached, not read again. The database transaction begins with the first
                # statement, after the e-mail has been parsed and read.
                session.add(message)
                outcome = self.workflow.process(session, message, now)
                following = self._claim(session, now, failed_this_cycle + [message_row_id])
                if self.db.dialect == "postgresql":
                    # Nothing outside the database happens on the strength of this commit alone: a reply it queues
                    # is sent only after its claim's commit, which is flushed to disk and flushes this one with it
                    # (the log is written in order). So it need not wait for its own flush; if the server lost it
                    # in a crash, the message would simply be read again.
                    session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                crash_point("after_verdict")
            crash_point("after_commit")
            report.outcomes.append(outcome)
            return following
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
                    if message.attempts >= MAX_MESSAGE_ATTEMPTS:
                        repo.mark_quarantined(session, message, error=type(exc).__name__, now=now)
                        repo.record_event(session, EventKind.MESSAGE_QUARANTINED, hub_id=message.hub_id,
                                          actor=self.worker_id, message_id=message.id,
                                          detail={"reason": "processing failed"}, now=now)
                return self._claim(session, now, failed_this_cycle)

    def _unclaim(self, message: Message) -> None:
        """Stopping with a message claimed but not read: give it back, uncounted, for the next worker now rather
        than when the lease runs out."""
        with self.db.session() as session:
            session.execute(update(Message).where(Message.id == message.id, Message.claimed_by == self.worker_id,
                                                  Message.state == MessageState.STORED)
                            .values(claimed_by=None, claimed_at=None, attempts=Message.attempts - 1)
                            .execution_options(synchronize_session=False))

    def send_due(self) -> DrainReport:
        return drain_outbox(self.db, self.sender, worker=self.worker_id, now=self.clock(),
                            policy=self.outbox_policy, hub_ids=[h.id for h in self.config.hubs])

    def _event(self, kind: EventKind, hub_id: str, detail: dict) -> None:
        with self.db.session() as session:
            repo.record_event(session, kind, hub_id=hub_id, actor=self.worker_id, detail=detail, now=self.clock())



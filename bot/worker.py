"""One cycle of the bot: poll every hub's mailbox, store each new message, process what is stored, send what is due.

Order matters for crash safety. A fetched message is committed (raw bytes and the mailbox cursor, together)
before anything else happens to it; it is only moved to another folder after that commit. Processing claims a short
run of stored messages and commits their verdicts, application changes and replies in one transaction (a message
tried before alone; a batch that fails is done again one message per transaction). The outbox is drained last. A
crash anywhere leaves work that the next cycle picks up: nothing is lost, nothing is answered twice. Failures are
caught per message and per mailbox, so one bad message or one broken mailbox never stops the rest. Each poll's
outcome is recorded (a ``mailbox_error`` event, or the mailbox row touched and, after failures, a
``mailbox_ok`` event) and each cycle ends with a health review (``bot.ops.health``) that opens and closes incidents
and queues their alerts. One log line per processed message gives ids, codes and timings, never names or addresses.
Besides:
a message the database refuses is quarantined by its UID; a database that is down stops the cycle in one line.
A mailbox the database has never polled starts at its end (``--backfill SINCE`` to answer older mail); claims of
a worker on this host that died are taken over at once; uncertain sends are settled by the hub's mailbox.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from bot.faults import crash_point
from bot.mail.source import (
    Cursor,
    ErrorKind,
    FetchedMessage,
    FetchRun,
    HeaderSource,
    MailSource,
    MailSourceError,
    SkipReason,
)
from bot.oauth import TokenProvider, token_provider_for
from bot.ops.health import ALERT_HUB
from bot.sending.caps import Caps
from bot.sending.outbox import DrainReport, OutboxPolicy, Sender, default_worker_id, drain_outbox
from bot.sending.senders import DEFAULT_ENDPOINT, Senders, build_senders, hub_endpoint
from bot.sending.smtp import FailureCause, eml_filename_for
from bot.workflow import Outcome, Workflow
from rules.settings import CheckSettings
from storage import repository as repo
from storage.db import Database
from storage.errors import describe as describe_database_fault
from storage.errors import is_database_fault
from storage.locks import try_lock
from storage.models import Event, EventKind, Message, MessageState
from storage.recovery import (
    Resolution,
    behind_evidence,
    copy_is_stored,
    quarantine_unstorable,
    settle_uncertain,
    take_over_dead_claims,
    uncertain_sends,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Fetched messages stored per transaction, the cursor moving with each batch: few enough that a crash fetches
# little again, enough that many messages share a commit.
STORE_BATCH = 25
STORE_BATCH_BYTES = 16 * 1024 * 1024
# After this many messages stored or processed by a worker, the planner's statistics are refreshed (storage.db):
# a round's mail arriving at once changes the tables faster than autovacuum looks at them.
STATISTICS_EVERY = 500
# In a flood (a deadline's last hours), what has been decided is sent every SEND_EVERY seconds of processing rather
# than after the last stored message: a school's reply waits seconds, not the whole backlog.
SEND_EVERY = 10.0
# Stored messages read per transaction: one commit and one claim for the batch instead of one each. Bounded in
# bytes too, since the batch's raw mail is held until its commit (a larger message goes in a batch of its own).
PROCESS_BATCH = 10
PROCESS_BATCH_BYTES = 4 * 1024 * 1024


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


def open_source(hub: HubSettings, config: Config, *, token_provider: TokenProvider | None = None,
                folder: str | None = None) -> MailSource:
    """The mailbox a hub's config describes: IMAP (password or XOAUTH2) or a local Maildir folder."""
    if hub.maildir is not None:
        from bot.mail.maildir import MaildirSource

        return MaildirSource(hub.maildir, max_message_bytes=config.limits.message_bytes)
    if hub.imap is None:
        raise MailSourceError(f"hub {hub.id} has neither [hubs.imap] nor maildir configured", ErrorKind.PERMANENT)
    from bot.mail.imap import ImapSource

    settings = hub.imap
    if folder:
        settings = replace(settings, folder=folder)   # the hub's Sent folder, read like its inbox
    if token_provider is None:
        token_provider = token_provider_for(settings.auth, settings.oauth, timeout=settings.timeout_seconds)
    return ImapSource(settings, token_provider=token_provider, max_message_bytes=config.limits.message_bytes)


def mailbox_folder(hub: HubSettings) -> str:
    """The folder name the mailbox cursor is stored under."""
    return hub.imap.folder if hub.imap else "maildir"


def imap_token_key(hub_id: str) -> str:
    return f"hubs.{hub_id}.imap"


@dataclass(frozen=True)
class StoreOutcome:
    created: bool
    row_id: int
    at_this_location: bool      # not new, and stored before at this very UID: the cursor was behind


def _batches(messages: Iterable[FetchedMessage]) -> Iterator[list[FetchedMessage]]:
    """``messages`` in lists of at most ``STORE_BATCH`` messages or about ``STORE_BATCH_BYTES``."""
    batch: list[FetchedMessage] = []
    size = 0
    for fetched in messages:
        crash_point("after_fetch")
        batch.append(fetched)
        size += len(fetched.raw)
        if len(batch) >= STORE_BATCH or size >= STORE_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def list_chain(first: Iterable[FetchedMessage], second: Iterable[FetchedMessage]) -> Iterator[FetchedMessage]:
    yield from first
    yield from second


class _CrashPointSender:
    """The configured sender with the ``after_smtp`` crash point between the server's "accepted" and our commit;
    ``close`` passes through so a kept SMTP connection is ended after each drain."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    @property
    def supports_before_data(self) -> bool:
        return bool(getattr(self.sender, "supports_before_data", False))

    def __call__(self, message, before_data=None):
        if before_data is not None and self.supports_before_data:
            result = self.sender(message, before_data=before_data)
        else:
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
                 sent_sources: Callable[[HubSettings], MailSource] | None = None,
                 outbox_policy: OutboxPolicy = OutboxPolicy(), backfill: datetime | None = None) -> None:
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
        self.sent_sources = sent_sources or (lambda hub: open_source(
            hub, config, token_provider=self.tokens.get(imap_token_key(hub.id)), folder=config.security.sent_folder))
        self.backfill = backfill                      # --backfill SINCE: a mailbox's first poll starts there
        self._polled: dict[str, datetime] = {}        # hub id -> when its last successful poll began
        # Hubs this worker sent mail for since it last polled them (under --now the clock cannot tell the order).
        self._sent_since_poll: set[str] = set()
        # Mailbox connections are kept between polls (a poll with no new mail is then one SELECT and one SEARCH);
        # one that fails is closed and opened afresh next time.
        self._open_sources: dict[str, MailSource] = {}
        self.outbox_policy = outbox_policy
        # A worker claims and sends only its configured hubs' mail, so workers may run one per group of hubs.
        self.hub_ids = [h.id for h in config.hubs]
        self.stop_requested = False
        self.send_every = SEND_EVERY   # seconds of processing between sends in a long backlog (tests set 0)
        self.batch_size = PROCESS_BATCH   # stored messages read per transaction
        self._changed_rows = 0      # messages stored or processed since the statistics were last refreshed

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
                    refused = exc.kind is ErrorKind.PERMANENT
                    cause = (FailureCause.TOKEN_REFUSED if refused else FailureCause.TOKEN).value
                self._event(EventKind.MAILBOX_ERROR, hub.id, {"error": str(exc)[:300], "kind": exc.kind.value,
                                                      "cause": cause})
            except Exception as exc:  # noqa: BLE001 - one broken mailbox must not stop the others
                if describe_database_fault(exc) is not None:
                    raise   # the database, not the mailbox: the caller says so in one line
                report.mailbox_errors[hub.id] = type(exc).__name__
                log.exception("unexpected error polling hub %s", hub.id)
                self._event(EventKind.MAILBOX_ERROR, hub.id, {"error": type(exc).__name__, "cause": "mailbox"})
        self.process_stored(report)
        self._send_for(report)
        self.review_health(report)
        return report

    def _send_for(self, report: CycleReport) -> None:
        """Send what is due, counted in the cycle's report; a failure is reported, and the cycle goes on."""
        try:
            report.outbox.add(self.send_due())
        except Exception as exc:  # noqa: BLE001 - the health review (and the rest of the mail) must still run
            report.outbox_error = type(exc).__name__
            log.exception("sending the outbox failed")

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
                report.outbox.add(drained)

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
        """Fetch and store every new message of one hub's mailbox (and of its Sent folder, where the config names
        one: copies of what we sent, which settle uncertain sends); returns how many inbox messages were stored."""
        started = self.clock()
        self._sent_since_poll.discard(hub.id)
        folder = mailbox_folder(hub)
        stored = self._poll_folder(hub, hub.id, folder, lambda: self.sources(hub), move=True, report=report)
        sent_folder = self.config.security.sent_folder
        if sent_folder and hub.imap:
            self._poll_folder(hub, f"{hub.id}#sent", sent_folder, lambda: self.sent_sources(hub), move=False)
        # Uncertain sends may be judged by this poll only if it began after their settle time (send_due).
        self._polled[hub.id] = started
        return stored

    def _poll_folder(self, hub: HubSettings, key: str, folder: str, opener: Callable[[], MailSource], *,
                     move: bool, report: CycleReport | None = None) -> int:
        source = self._open_sources.get(key)
        if source is None:
            source = self._open_sources[key] = opener()
        stored_uids: list[int] = []
        new_rows: list[int] = []
        already_here = 0
        try:
            with try_lock(self.db.engine, f"poll:{hub.id}:{folder}") as ours:
                if not ours:
                    # Another worker is storing this mailbox's new mail right now: fetching it too would only find
                    # it stored. This one goes on to the stored work instead.
                    log.debug("hub %s: another worker is polling %s", hub.id, folder)
                    return 0
                with self.db.session() as session:
                    state = repo.get_mailbox_state(session, hub.id, folder, now=self.clock())
                    cursor = Cursor(state.uidvalidity, state.last_uid)
                run = source.fetch_new(cursor)
                end = run.highest_uid
                if cursor.uidvalidity is None:
                    run = self._first_poll(hub, folder, run)
                if run.uidvalidity_changed:
                    self._event(EventKind.UIDVALIDITY_CHANGED, hub.id,
                                {"old": run.previous_uidvalidity, "new": run.uidvalidity})
                for skipped in run.skipped:
                    self._event(EventKind.MESSAGE_SKIPPED, hub.id, {"uid": skipped.uid, "size": skipped.size,
                                                                    "reason": skipped.reason.value})
                too_large = [s.uid for s in run.skipped if s.reason is SkipReason.TOO_LARGE]
                fetched_all = list_chain(run, source.fetch_headers(run.uidvalidity, too_large)
                                         if too_large and isinstance(source, HeaderSource) else ())
                for batch in _batches(fetched_all):
                    outcomes = self._store_batch(hub, folder, batch)
                    for fetched, outcome in zip(batch, outcomes):
                        if outcome.created:
                            stored_uids.append(fetched.uid)
                            new_rows.append(outcome.row_id)
                        elif outcome.at_this_location and not run.uidvalidity_changed:
                            already_here += 1
                    crash_point("after_store")
                    self._count_changes(sum(o.created for o in outcomes))
                with self.db.session() as session:
                    # Skipped (oversize, or older than a fresh start) messages are past the cursor too.
                    state = repo.get_mailbox_state(session, hub.id, folder)
                    if run.uids or run.skipped or end or state.uidvalidity != run.uidvalidity:
                        repo.advance_mailbox(session, state, uidvalidity=run.uidvalidity,
                                             uid=max(end, run.highest_uid), now=self.clock())
                    if move:
                        # The row's time is the last good poll (hubbot status); a poll after failures ends the
                        # streak.
                        state.updated_at = self.clock()
                        self._mark_mailbox_ok(session, hub.id)
            self._check_behind(hub, folder, already_here, new_rows)
            if move:
                self._move(hub, source, stored_uids, report)
        except BaseException:
            self._open_sources.pop(key, None)
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

    def _first_poll(self, hub: HubSettings, folder: str, run: FetchRun) -> FetchRun:
        """A mailbox this database has never polled starts at its current end: old mail is not answered (a fresh
        install, or a new hub, must not answer years of mail), unless ``--backfill SINCE`` asks for the mail
        received since then."""
        since = self.backfill

        def wanted(uid: int) -> bool:
            return since is not None and run.internaldates.get(uid, since) >= since

        kept = tuple(u for u in run.uids if wanted(u))
        skipped = [s for s in run.skipped if wanted(s.uid)]
        self._event(EventKind.MAILBOX_STARTED, hub.id, {
            "folder_kind": "sent" if folder == self.config.security.sent_folder else "inbox",
            "left_unanswered": len(run.uids) + len(run.skipped) - len(kept) - len(skipped),
            "backfill": since.isoformat() if since else None})
        return replace(run, uids=kept, skipped=skipped)

    def _check_behind(self, hub: HubSettings, folder: str, already_here: int, new_rows: list[int]) -> None:
        """Report a database older than its mailbox (a restored backup): messages past the cursor that are already
        stored, copies of e-mails we sent that the outbox does not know, replies to such e-mails."""
        unknown = 0
        if new_rows:
            with self.db.session() as session:
                unknown = behind_evidence(session, hub.id, new_rows)
        if already_here or unknown:
            log.warning("hub %s: the database looks older than the mailbox (restored from a backup?)", hub.id)
            self._event(EventKind.MAILBOX_BEHIND, hub.id, {"already_stored": already_here,
                                                          "unknown_own_mail": unknown})

    def _store_batch(self, hub: HubSettings, folder: str, batch: list[FetchedMessage]) -> list[StoreOutcome]:
        """Store a batch of fetched messages with the cursor in one transaction: each message is committed with the
        cursor before anything else happens to it, as one at a time would, with one commit for the batch. If the
        database refuses one of them (and is not itself at fault), the batch is stored again one message at a time,
        so that only the refused one is quarantined."""
        try:
            with self.db.session() as session:
                state = repo.get_mailbox_state(session, hub.id, folder)
                outcomes = [self._store_in(session, hub, folder, fetched) for fetched in batch]
                for fetched in batch:
                    repo.advance_mailbox(session, state, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
                                         now=self.clock())
            return outcomes
        except (DBAPIError, StatementError, ValueError, UnicodeError):
            # Again one at a time: a message the database refuses is then quarantined alone, and a database at
            # fault (down, full, read-only) raises there as it would have here.
            log.info("hub %s: a batch of %d messages was refused; storing them one at a time", hub.id, len(batch))
            return [self._store(hub, folder, fetched) for fetched in batch]

    def _store_in(self, session: Session, hub: HubSettings, folder: str, fetched: FetchedMessage) -> StoreOutcome:
        result = repo.store_raw_message(
            session, hub_id=hub.id, folder=folder, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
            raw=fetched.raw, received_at=fetched.internaldate, now=self.clock(),
            size=max(fetched.size, len(fetched.raw)))
        found = result.message
        here = found.folder == folder and found.uidvalidity == fetched.uidvalidity and found.uid == fetched.uid
        return StoreOutcome(result.created, found.id, not result.created and here)

    def _store(self, hub: HubSettings, folder: str, fetched: FetchedMessage) -> StoreOutcome:
        """Store one fetched message with the cursor. A message the database refuses (and the escaping in
        storage.sanitize did not cure) is quarantined by its UID instead, so the cursor still moves past it; a
        database that is down or full raises, and the poll stops without moving the cursor."""
        try:
            with self.db.session() as session:
                state = repo.get_mailbox_state(session, hub.id, folder)
                outcome = self._store_in(session, hub, folder, fetched)
                repo.advance_mailbox(session, state, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
                                     now=self.clock())
                return outcome
        except (DBAPIError, StatementError, ValueError, UnicodeError) as exc:
            if isinstance(exc, (OperationalError, InterfaceError)) or is_database_fault(exc):
                raise   # the database is down, full or read-only: stop here, with the cursor where it was
            log.warning("message uid %s of hub %s could not be stored: %s", fetched.uid, hub.id, type(exc).__name__)
            with self.db.session() as session:
                state = repo.get_mailbox_state(session, hub.id, folder)
                quarantine_unstorable(session, hub_id=hub.id, folder=folder, uidvalidity=fetched.uidvalidity,
                                      uid=fetched.uid, raw=fetched.raw, received_at=fetched.internaldate,
                                      error=type(exc).__name__, actor=self.worker_id, now=self.clock())
                repo.advance_mailbox(session, state, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
                                     now=self.clock())
            return StoreOutcome(False, 0, False)

    def process_stored(self, report: CycleReport | None = None) -> CycleReport:
        """Process every stored message, a batch of them per transaction; a failure is recorded and retried next
        cycle, and quarantined for a person after ``repo.MAX_MESSAGE_ATTEMPTS``. In a long backlog the replies
        decided so far are sent every ``send_every`` seconds, between two batches.

        Messages are claimed (their attempts counted and committed) before they are read, as always; the claim of
        the next batch is made in the commit of the previous batch's outcomes, so a batch costs one commit, and a
        crash leaves every message of the batch unanswered and claimed by a dead worker, to be read again. A
        message tried before is claimed alone (``repo.claim_messages``), so a message that kills the worker costs
        its neighbours one attempt, never three."""
        report = report or CycleReport()
        failed_this_cycle: list[int] = []
        with self.db.session() as session:
            # A worker on this host that died mid-batch (SIGKILL, OOM) gives its messages back now, not after
            # the lease.
            take_over_dead_claims(session, host=socket.gethostname(), actor=self.worker_id, now=self.clock())
            batch = self._claim(session, self.clock(), failed_this_cycle)
        last_sent = time.monotonic()
        while batch:
            if self.stop_requested:
                self._unclaim(batch)
                break
            batch = self._process_batch(batch, report, failed_this_cycle)
            if batch and time.monotonic() - last_sent >= self.send_every:
                # The next batch stays claimed meanwhile (its lease is minutes; this is what was queued since).
                self._send_for(report)
                last_sent = time.monotonic()
        return report

    def _count_changes(self, rows: int) -> None:
        self._changed_rows += rows
        if self._changed_rows >= STATISTICS_EVERY:
            self._changed_rows = 0
            try:
                self.db.refresh_statistics()
            except Exception:  # noqa: BLE001 - the statistics help the planner; the mail goes on without them
                log.warning("refreshing the database's statistics failed", exc_info=True)

    def _claim(self, session: Session, now: datetime, exclude: list[int]) -> list[Message]:
        return repo.claim_messages(session, worker=self.worker_id, now=now, limit=self.batch_size,
                                   batch_bytes=PROCESS_BATCH_BYTES, max_attempts=repo.MAX_MESSAGE_ATTEMPTS,
                                   exclude=exclude, hub_ids=self.hub_ids)

    def _process_batch(self, batch: list[Message], report: CycleReport,
                       failed_this_cycle: list[int]) -> list[Message]:
        """Read, decide and record a claimed batch in one transaction; returns the next batch, claimed in the same
        commit. If any message of it fails, nothing of the batch is kept and its messages are done again one
        transaction each, so that only the failing one is recorded as failed (as storing does with a refused
        batch), and the next batch is claimed after them."""
        ids = [m.id for m in batch]
        try:
            return self._commit_batch(batch, report, next_excluding=[*failed_this_cycle, *ids])
        except Exception as exc:  # noqa: BLE001 - per message: record, release, carry on with the next
            if len(batch) == 1:
                return self._record_failure(ids[0], exc, report, failed_this_cycle, claim_next=True)
            log.warning("a batch of %d messages failed (%s); processing them one at a time", len(batch),
                        type(exc).__name__)
        for message_id in ids:
            with self.db.session() as session:
                # The failed transaction's objects are gone with it: each message is read again, still ours.
                message = session.get(Message, message_id)
                ours = message is not None and message.state is MessageState.STORED \
                    and message.claimed_by == self.worker_id
            if not ours:
                continue
            try:
                self._commit_batch([message], report, next_excluding=None)
            except Exception as exc:  # noqa: BLE001
                self._record_failure(message_id, exc, report, failed_this_cycle, claim_next=False)
        with self.db.session() as session:
            return self._claim(session, self.clock(), failed_this_cycle)

    def _commit_batch(self, batch: list[Message], report: CycleReport, *,
                      next_excluding: list[int] | None) -> list[Message]:
        """The transaction of one batch: each message read, decided and recorded, the next batch claimed (leaving
        out ``next_excluding``; none claimed when it is None), one commit. Each message sees what the ones before
        it wrote, as it would in a transaction of its own after theirs, and none of the objects they loaded."""
        now = self.clock()
        done: list[tuple[Outcome, str, int, float]] = []
        with self.db.session() as session:
            for message in batch:
                started = time.perf_counter()
                hub_id, size = message.hub_id, message.size
                # Loaded when it was claimed: attached again, not read again.
                session.add(message)
                outcome = self.workflow.process(session, message, now)
                session.flush()
                session.expunge_all()
                done.append((outcome, hub_id, size, time.perf_counter() - started))
            following = self._claim(session, now, next_excluding) if next_excluding is not None else []
            if self.db.dialect == "postgresql":
                # Nothing outside the database happens on the strength of this commit alone: a reply it queues
                # is sent only after its claim's commit, which is flushed to disk and flushes this one with it
                # (the log is written in order). So it need not wait for its own flush; if the server lost it
                # in a crash, the messages would simply be read again.
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            crash_point("after_verdict")
        crash_point("after_commit")
        for outcome, hub_id, size, seconds in done:
            report.outcomes.append(outcome)
            _log_outcome(outcome, hub_id, size, seconds)
        self._count_changes(len(done))
        return following

    def _record_failure(self, message_row_id: int, exc: Exception, report: CycleReport,
                        failed_this_cycle: list[int], *, claim_next: bool) -> list[Message]:
        """Record that one message failed, give it back (or quarantine it after too many attempts), and claim the
        next batch in the same commit when asked."""
        now = self.clock()
        report.failed_messages += 1
        failed_this_cycle.append(message_row_id)
        log.error("processing message %s failed", message_row_id, exc_info=exc)
        with self.db.session() as session:
            failed = session.get(Message, message_row_id)
            if failed is not None:
                repo.release_message(session, failed, error=f"{type(exc).__name__}: {str(exc)[:300]}")
                repo.record_event(session, EventKind.PROCESSING_FAILED, hub_id=failed.hub_id,
                                  actor=self.worker_id, message_id=failed.id,
                                  detail={"error": type(exc).__name__, "attempt": failed.attempts}, now=now)
                if failed.attempts >= repo.MAX_MESSAGE_ATTEMPTS:
                    repo.mark_quarantined(session, failed, error=type(exc).__name__, now=now)
                    repo.record_event(session, EventKind.MESSAGE_QUARANTINED, hub_id=failed.hub_id,
                                      actor=self.worker_id, message_id=failed.id,
                                      detail={"reason": "processing failed"}, now=now)
            return self._claim(session, now, failed_this_cycle) if claim_next else []

    def _unclaim(self, batch: list[Message]) -> None:
        """Stopping with messages claimed but not yet read: give them back, uncounted, for the next worker now
        rather than when the lease runs out."""
        with self.db.session() as session:
            session.execute(update(Message).where(Message.id.in_([m.id for m in batch]),
                                                  Message.claimed_by == self.worker_id,
                                                  Message.state == MessageState.STORED)
                            .values(claimed_by=None, claimed_at=None, attempts=Message.attempts - 1)
                            .execution_options(synchronize_session=False))

    def send_due(self) -> DrainReport:
        self.resolve_uncertain()
        bcc = {h.id: h.address for h in self.config.hubs} if self.config.security.bcc_hub else None
        exempt = frozenset(a.lower() for h in self.config.hubs for a in (h.address, *h.aliases, *h.staff))
        caps = Caps(per_address_per_day=self.config.max_replies_per_address_per_day,
                    per_hub_per_hour=self.config.max_emails_per_hub_per_hour, exempt=exempt)
        report = drain_outbox(self.db, self.senders.default, worker=self.worker_id, now=self.clock(),
                              policy=self.outbox_policy, pick=self.senders.pick, bcc=bcc, caps=caps,
                              hub_ids=[*self.hub_ids, ALERT_HUB])
        if report.claimed:
            self._sent_since_poll.update(h.id for h in self.config.hubs)
        return report

    def resolve_uncertain(self) -> int:
        """Settle uncertain sends without a person wherever the hub's mailbox can show what went: a stored copy
        of the e-mail (its Sent-folder copy, or the Bcc to the hub) means it was sent; none, in a poll that began
        after the settle time, means it was not and it is sent again. A send that never reached DATA is sent
        again at once. The ``.eml`` writer's folder is its own mailbox. Returns how many were settled."""
        settle = timedelta(seconds=self.config.security.settle_seconds)
        settled = 0
        with self.db.session() as session:
            # A send a dead worker on this host left behind is judged now, in the same cycle.
            take_over_dead_claims(session, host=socket.gethostname(), actor=self.worker_id, now=self.clock())
            for item in uncertain_sends(session):
                resolution, how = self._judge(session, item, settle)
                if settle_uncertain(session, item, resolution, actor=self.worker_id, how=how, now=self.clock()):
                    settled += 1
        return settled

    def _judge(self, session, item, settle: timedelta) -> tuple[Resolution, str]:
        if copy_is_stored(session, item):
            return Resolution.SENT, "a copy is in the hub's mailbox"
        if self.config.smtp is None:
            # The .eml writer's folder is its mailbox: the file is written whole (atomic rename) or not at all.
            exists = (Path(self.config.outbox_path) / eml_filename_for(item.message_id)).exists()
            return (Resolution.SENT, "its .eml file exists") if exists else (Resolution.RESEND, "no .eml file")
        if item.data_started_at is None:
            return Resolution.RESEND, "the send never reached DATA"
        hub = next((h for h in self.config.hubs if h.id == item.hub_id), None)
        shows = hub is not None and (self.config.security.bcc_hub
                                     or (self.config.security.sent_folder is not None and hub.imap is not None))
        polled = self._polled.get(item.hub_id)
        if item.hub_id in self._sent_since_poll:
            return Resolution.UNKNOWN, ""   # sent by this worker after its last poll: that poll cannot show a copy
        if shows and polled is not None and polled >= item.data_started_at + settle:
            return Resolution.RESEND, "no copy in the hub's mailbox after the settle time"
        return Resolution.UNKNOWN, ""

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

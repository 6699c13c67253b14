"""What the workflow needs from a mailbox, whatever it is (IMAP in ``bot.mail.imap``, a local Maildir in
``bot.mail.maildir``): given the cursor it stored last time (UIDVALIDITY and highest UID handled), ``fetch_new`` returns a
``FetchRun`` that already knows what it will deliver (the UIDVALIDITY, whether it changed, which messages were too
big to fetch) and yields ``FetchedMessage`` objects lazily, in UID order, so the caller can store and commit each
one before the next is downloaded. Sources never mark anything read or delete anything while fetching; moving a
message elsewhere is a separate step the caller takes after committing.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Cursor:
    """Where the caller got to: ``uidvalidity`` None means "never polled", so everything is new."""

    uidvalidity: int | None = None
    last_uid: int = 0


@dataclass(frozen=True)
class FetchedMessage:
    uidvalidity: int
    uid: int
    internaldate: datetime      # when the server received it, timezone-aware
    raw: bytes
    size: int


class SkipReason(enum.StrEnum):
    TOO_LARGE = "too_large"
    VANISHED = "vanished"       # expunged between listing and fetching


@dataclass(frozen=True)
class SkippedMessage:
    uid: int
    size: int
    reason: SkipReason


class ErrorKind(enum.StrEnum):
    TEMPORARY = "temporary"     # network, timeout, server busy: try again next poll
    PERMANENT = "permanent"     # bad credentials, folder missing: a person must fix the config


class MailSourceError(Exception):
    """A mailbox could not be read. The message names the server (host:port) or folder and what failed, without
    any credentials or addresses. ``token`` is set when the failure was getting an OAuth2 access token, which the
    health checks report as such (a person must renew a secret or a consent, not wait for the server)."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.TEMPORARY, *, token: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.token = token


@dataclass
class FetchRun:
    """One poll's worth of new mail. Iterating downloads the bodies; a failure mid-way raises ``MailSourceError``
    after the messages already yielded, so the caller keeps what it stored and resumes from there next time."""

    uidvalidity: int
    previous_uidvalidity: int | None
    uids: tuple[int, ...]                       # the UIDs the iterator will try to deliver, ascending
    skipped: list[SkippedMessage] = field(default_factory=list)
    # UID -> when the server received it, where the listing already had it (for starting at a date, not an end).
    internaldates: dict[int, datetime] = field(default_factory=dict)
    _bodies: Callable[[Sequence[int]], Iterator[FetchedMessage]] | None = field(default=None, repr=False)

    @property
    def uidvalidity_changed(self) -> bool:
        """The mailbox was recreated or renumbered: old UIDs mean nothing, so this run starts from the first
        message and the store must recognise what it already has (by Message-ID and bytes)."""
        return self.previous_uidvalidity is not None and self.previous_uidvalidity != self.uidvalidity

    @property
    def highest_uid(self) -> int:
        """The cursor value once everything in this run (including skipped messages) is handled."""
        return max([*self.uids, *(s.uid for s in self.skipped)], default=0)

    def __iter__(self) -> Iterator[FetchedMessage]:
        if self._bodies is None or not self.uids:
            return iter(())
        return self._bodies(self.uids)


@runtime_checkable
class MailSource(Protocol):
    def fetch_new(self, cursor: Cursor) -> FetchRun: ...

    def move_to(self, uids: Sequence[int], folder: str) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class HeaderSource(Protocol):
    """A source that can fetch just the headers of a message too large to download, so it is still stored (and
    answered once, and shown to staff) rather than only skipped."""

    def fetch_headers(self, uidvalidity: int, uids: Sequence[int]) -> Iterator[FetchedMessage]: ...

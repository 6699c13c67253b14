"""Reading a hub's mailbox over IMAP with imapclient. The folder is opened read-only (EXAMINE) and bodies are fetched
with ``BODY.PEEK[]``, so polling never changes ``\\Seen`` or anything else a person relies on; the bot's memory of
what it has handled is the (UIDVALIDITY, last UID) cursor in the database, never the server's flags. Sizes and
INTERNALDATE come first so an oversized message is skipped (and reported) without downloading it; bodies follow
in small batches. Login is by password or XOAUTH2 with a token provider from ``bot.oauth``; a refused token is
thrown away and one fresh token tried, because a token the server considers expired is the usual cause. The settings
are the config's ``ImapSettings``; what exists only at run time (the token provider, a TLS context, the size cap)
is passed beside them. Every error names the server (host:port) and, where it is about one, the folder.
"""
from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import imapclient
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from bot.config import ImapSettings, Security
from bot.mail.source import Cursor, ErrorKind, FetchedMessage, FetchRun, MailSourceError, SkippedMessage, SkipReason
from bot.oauth import TokenError, TokenProvider, env_secret

log = logging.getLogger(__name__)

# Errors that mean "the network or server let us down", worth retrying on the next poll.
_TEMPORARY_ERRORS = (OSError, socket.timeout, ssl.SSLError, imapclient.exceptions.IMAPClientAbortError)


def _server_text(exc: BaseException) -> str:
    # imapclient puts the server's answer in the message ("select failed: Mailbox doesn't exist: X"): keep it short.
    text = " ".join(str(exc).split())
    return text[:200]


# ---- the mailbox ----------------------------------------------------------------------------------------------

def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc)


class ImapSource:
    """One IMAP folder. Connects lazily, reconnects on the next call after a dropped connection."""

    def __init__(self, settings: ImapSettings, *, token_provider: TokenProvider | None = None,
                 ssl_context: ssl.SSLContext | None = None, max_message_bytes: int = 25 * 1024 * 1024,
                 batch_size: int = 20, client_factory: Callable[..., IMAPClient] = IMAPClient) -> None:
        self.settings = settings
        self.token_provider = token_provider    # set for XOAUTH2; wins over password_env
        self.ssl_context = ssl_context
        self.max_message_bytes = max_message_bytes
        self.batch_size = batch_size
        self._client_factory = client_factory
        self._client: IMAPClient | None = None
        self._selected_readonly: bool | None = None
        self._folders_checked: dict[str, str | None] = {}   # per connection: folder -> problem (None: it exists)

    # -- connection --

    def connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        s = self.settings
        context = self.ssl_context or ssl.create_default_context()
        try:
            if s.security is Security.TLS:
                client = self._client_factory(s.host, port=s.port, ssl=True, ssl_context=context,
                                              timeout=s.timeout_seconds)
            else:
                client = self._client_factory(s.host, port=s.port, ssl=False, timeout=s.timeout_seconds)
                if s.security is Security.STARTTLS:
                    client.starttls(context)
            # Aware datetimes straight from the server instead of imapclient's conversion to local naive time.
            client.normalise_times = False
            self._login(client)
        except LoginError as exc:
            # Which secret to check, not which account: the message goes to the log and the event log.
            secret = "the OAuth2 token" if self.token_provider is not None else \
                f"the username and the password in {s.password_env}"
            raise MailSourceError(f"IMAP login to {s.where} refused: check {secret}", ErrorKind.PERMANENT) from exc
        except TokenError as exc:
            raise MailSourceError(f"IMAP login to {s.where}: no OAuth2 token: {exc}", exc.kind, token=True) from exc
        except _TEMPORARY_ERRORS as exc:
            raise MailSourceError(f"IMAP connection to {s.where} failed: {type(exc).__name__}"
                                  + (f" ({_server_text(exc)})" if str(exc) else "")) from exc
        except IMAPClientError as exc:
            # e.g. the server does not offer STARTTLS: insecure fallback is not an option.
            raise MailSourceError(f"IMAP setup with {s.where} failed: {_server_text(exc)}",
                                  ErrorKind.PERMANENT) from exc
        self._client = client
        self._selected_readonly = None
        self._folders_checked = {}
        return client

    def _login(self, client: IMAPClient) -> None:
        s = self.settings
        if self.token_provider is None:
            client.login(s.username, self._password())
            return
        try:
            client.oauth2_login(s.username, self.token_provider())
        except LoginError:
            # The cached token may have expired early or been revoked: one fresh token, one more try.
            invalidate = getattr(self.token_provider, "invalidate", None)
            if invalidate is None:
                raise
            invalidate()
            client.oauth2_login(s.username, self.token_provider())

    def _password(self) -> str:
        try:
            return env_secret(self.settings.password_env, "IMAP password")
        except TokenError as exc:
            raise MailSourceError(f"IMAP login to {self.settings.where}: {exc}", ErrorKind.PERMANENT) from None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the connection may already be gone; closing must not fail
            try:
                client.shutdown()
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> ImapSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        # After a network error the client object is unusable; forget it so the next call reconnects.
        client, self._client = self._client, None
        if client is not None:
            try:
                client.shutdown()
            except Exception:  # noqa: BLE001
                pass

    def _select(self, readonly: bool) -> dict[bytes, Any]:
        client = self.connect()
        try:
            info = client.select_folder(self.settings.folder, readonly=readonly)
        except _TEMPORARY_ERRORS as exc:
            self._drop()
            raise MailSourceError(f"IMAP select of folder '{self.settings.folder}' on {self.settings.where} "
                                  f"failed: {type(exc).__name__}") from exc
        except IMAPClientError as exc:
            raise MailSourceError(f"IMAP folder '{self.settings.folder}' cannot be opened on {self.settings.where}: "
                                  f"{_server_text(exc)}", ErrorKind.PERMANENT) from exc
        self._selected_readonly = readonly
        return info

    def examine(self) -> int:
        """Open the folder read-only and say how many messages it holds (``hubbot doctor``)."""
        info = self._select(readonly=True)
        return int(info.get(b"EXISTS", 0))

    # -- fetching --

    def fetch_new(self, cursor: Cursor) -> FetchRun:
        info = self._select(readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        reset = cursor.uidvalidity is not None and cursor.uidvalidity != uidvalidity
        last = 0 if reset or cursor.uidvalidity is None else cursor.last_uid
        if reset:
            log.warning("UIDVALIDITY changed for folder; refetching all (old=%s new=%s)",
                        cursor.uidvalidity, uidvalidity)
        client = self.connect()
        try:
            found = client.search(["UID", f"{last + 1}:*"])
            # "N:*" always matches the highest UID even when it is below N, so filter rather than trust it.
            uids = sorted(int(u) for u in found if int(u) > last)
            sizes: dict[int, int] = {}
            dates: dict[int, datetime] = {}
            for start in range(0, len(uids), 500):
                chunk = uids[start:start + 500]
                for uid, data in client.fetch(chunk, ["RFC822.SIZE", "INTERNALDATE"]).items():
                    sizes[int(uid)] = int(data.get(b"RFC822.SIZE", 0))
                    if b"INTERNALDATE" in data:
                        dates[int(uid)] = _aware(data[b"INTERNALDATE"])
        except _TEMPORARY_ERRORS as exc:
            self._drop()
            raise MailSourceError(f"IMAP search in folder '{self.settings.folder}' on {self.settings.where} "
                                  f"failed: {type(exc).__name__}") from exc

        wanted: list[int] = []
        skipped: list[SkippedMessage] = []
        for uid in uids:
            if uid not in sizes:
                skipped.append(SkippedMessage(uid, 0, SkipReason.VANISHED))
            elif sizes[uid] > self.max_message_bytes:
                skipped.append(SkippedMessage(uid, sizes[uid], SkipReason.TOO_LARGE))
            else:
                wanted.append(uid)
        if skipped:
            log.info("skipping %d message(s) (over size cap or vanished)", len(skipped))
        return FetchRun(uidvalidity=uidvalidity, previous_uidvalidity=cursor.uidvalidity, uids=tuple(wanted),
                        skipped=skipped, internaldates=dates, _bodies=lambda ids: self._bodies(uidvalidity, ids))

    def _bodies(self, uidvalidity: int, uids: Sequence[int]) -> Iterator[FetchedMessage]:
        batch = max(1, self.batch_size)
        for start in range(0, len(uids), batch):
            chunk = list(uids[start:start + batch])
            try:
                client = self.connect()
                if self._selected_readonly is None:
                    info = self._select(readonly=True)
                    if int(info[b"UIDVALIDITY"]) != uidvalidity:
                        raise MailSourceError(f"UIDVALIDITY of folder '{self.settings.folder}' on "
                                              f"{self.settings.where} changed during fetch")
                response = client.fetch(chunk, ["BODY.PEEK[]", "INTERNALDATE", "RFC822.SIZE"])
            except _TEMPORARY_ERRORS as exc:
                self._drop()
                raise MailSourceError(f"IMAP fetch from folder '{self.settings.folder}' on {self.settings.where} "
                                      f"failed: {type(exc).__name__}") from exc
            for uid in chunk:
                data = response.get(uid)
                if data is None or b"BODY[]" not in data:
                    continue  # expunged meanwhile: nothing to store
                raw = bytes(data[b"BODY[]"])
                yield FetchedMessage(uidvalidity=uidvalidity, uid=uid, internaldate=_aware(data.get(b"INTERNALDATE")),
                                     raw=raw, size=len(raw))

    def fetch_headers(self, uidvalidity: int, uids: Sequence[int]) -> Iterator[FetchedMessage]:
        """The header block alone of messages too large to download (``raw`` is the headers, ``size`` the whole
        message's size): enough to store them, tell the sender once, and show staff."""
        if not uids:
            return
        try:
            client = self.connect()
            if self._selected_readonly is None:
                info = self._select(readonly=True)
                if int(info[b"UIDVALIDITY"]) != uidvalidity:
                    raise MailSourceError("UIDVALIDITY changed during fetch")
            response = client.fetch(list(uids), ["BODY.PEEK[HEADER]", "INTERNALDATE", "RFC822.SIZE"])
        except _TEMPORARY_ERRORS as exc:
            self._drop()
            raise MailSourceError(f"IMAP fetch failed: {type(exc).__name__}") from exc
        for uid in uids:
            data = response.get(uid)
            if data is None or b"BODY[HEADER]" not in data:
                continue
            raw = bytes(data[b"BODY[HEADER]"])[:1024 * 1024]
            yield FetchedMessage(uidvalidity=uidvalidity, uid=uid, internaldate=_aware(data.get(b"INTERNALDATE")),
                                 raw=raw, size=int(data.get(b"RFC822.SIZE", len(raw))))

    # -- after the caller has committed --

    def folder_problem(self, folder: str) -> str | None:
        """Why ``folder`` cannot take messages (it does not exist), or None when it can. Asked once per connection,
        so a wrong ``move_to`` is reported at every poll of ``run --once`` and after every reconnect of the worker,
        without costing a command on every poll of a kept connection."""
        if folder in self._folders_checked:
            return self._folders_checked[folder]
        client = self.connect()
        try:
            exists = client.folder_exists(folder)
        except _TEMPORARY_ERRORS as exc:
            self._drop()
            raise MailSourceError(f"IMAP LIST of folder '{folder}' on {self.settings.where} failed: "
                                  f"{type(exc).__name__}") from exc
        except IMAPClientError as exc:
            exists, problem = False, _server_text(exc)
        else:
            problem = None if exists else "it does not exist"
        found = None if exists else f"folder '{folder}' on {self.settings.where} cannot take messages: {problem}"
        self._folders_checked[folder] = found
        return found

    def move_to(self, uids: Sequence[int], folder: str) -> None:
        """Move handled messages to another folder (optional housekeeping; the cursor already prevents refetch)."""
        if not uids:
            return
        client = self.connect()
        try:
            self._select(readonly=False)
            if client.has_capability("MOVE"):
                client.move(list(uids), folder)
            else:
                client.copy(list(uids), folder)
                client.delete_messages(list(uids))
                if client.has_capability("UIDPLUS"):
                    client.uid_expunge(list(uids))
                else:
                    client.expunge()
        except _TEMPORARY_ERRORS as exc:
            self._drop()
            raise MailSourceError(f"IMAP move to folder '{folder}' on {self.settings.where} failed: "
                                  f"{type(exc).__name__}") from exc
        except IMAPClientError as exc:
            raise MailSourceError(f"IMAP cannot move messages to folder '{folder}' on {self.settings.where}: "
                                  f"{_server_text(exc)}", ErrorKind.PERMANENT) from exc
        finally:
            self._selected_readonly = None

    def idle_wait(self, timeout: float) -> bool:
        """Block until the server announces new mail or ``timeout`` seconds pass; True when mail (probably)
        arrived. Polling stays the safety net: IDLE notifications can be lost with the connection."""
        client = self.connect()
        if not client.has_capability("IDLE"):
            time.sleep(timeout)
            return False
        self._select(readonly=True)
        try:
            client.idle()
            try:
                responses = client.idle_check(timeout=timeout)
            finally:
                client.idle_done()
        except _TEMPORARY_ERRORS as exc:
            self._drop()
            raise MailSourceError(f"IMAP IDLE on {self.settings.where} failed: {type(exc).__name__}") from exc
        return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)

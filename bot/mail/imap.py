"""Reading a hub's mailbox over IMAP with imapclient. The folder is opened read-only (EXAMINE) and bodies are fetched
with ``BODY.PEEK[]``, so polling never changes ``\\Seen`` or anything else a person relies on; the bot's memory of
what it has handled is the (UIDVALIDITY, last UID) cursor in the database, never the server's flags. Sizes and
INTERNALDATE come first so an oversized message is skipped (and reported) without downloading it; bodies follow
in small batches. Login is by password or XOAUTH2; the two token providers (Microsoft 365 client credentials via
MSAL, Google refresh token) read their secrets from environment variables named in the config and take injectable
callables so they can be tested without the network.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import imapclient
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from bot.mail.source import Cursor, ErrorKind, FetchedMessage, FetchRun, MailSourceError, SkippedMessage, SkipReason

log = logging.getLogger(__name__)

TokenProvider = Callable[[], str]
Security = Literal["tls", "starttls", "none"]

MICROSOFT_IMAP_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
# Errors that mean "the network or server let us down", worth retrying on the next poll.
_TEMPORARY_ERRORS = (OSError, socket.timeout, ssl.SSLError, imapclient.exceptions.IMAPClientAbortError)


@dataclass
class ImapSettings:
    host: str
    username: str
    port: int = 993
    security: Security = "tls"
    password_env: str | None = None             # name of the environment variable, never the password itself
    folder: str = "INBOX"
    timeout: float = 60.0
    max_message_bytes: int = 25 * 1024 * 1024
    batch_size: int = 20
    token_provider: TokenProvider | None = None  # set for XOAUTH2; wins over password_env
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)


def _env_secret(name: str | None, what: str) -> str:
    if not name:
        raise MailSourceError(f"no environment variable configured for the {what}", ErrorKind.PERMANENT)
    value = os.environ.get(name)
    if not value:
        raise MailSourceError(f"environment variable {name} ({what}) is not set", ErrorKind.PERMANENT)
    return value


# ---- XOAUTH2 token providers ----------------------------------------------------------------------------------

class TokenError(MailSourceError):
    pass


def microsoft_token_provider(*, tenant_id: str, client_id: str, client_secret_env: str,
                             app_factory: Callable[..., Any] | None = None) -> TokenProvider:
    """Microsoft 365: app-only (client credentials) token for IMAP. MSAL caches the token and renews it when due,
    so calling the provider before every login is cheap."""
    app: Any = None

    def provide() -> str:
        nonlocal app
        if app is None:
            factory = app_factory
            if factory is None:
                import msal
                factory = msal.ConfidentialClientApplication
            app = factory(client_id, authority=f"https://login.microsoftonline.com/{tenant_id}",
                          client_credential=_env_secret(client_secret_env, "Microsoft client secret"))
        result = app.acquire_token_for_client(scopes=[MICROSOFT_IMAP_SCOPE])
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            # error codes only: error_description can echo tenant details, and never the secret.
            raise TokenError(f"Microsoft token request failed: {result.get('error', 'unknown')}",
                             ErrorKind.PERMANENT)
        return str(token)

    return provide


def _post_form(url: str, data: dict[str, str], timeout: float) -> dict[str, Any]:
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (fixed https URL)
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        try:
            return dict(json.loads(exc.read()))
        except ValueError:
            return {"error": f"http_{exc.code}"}


def google_token_provider(*, client_id: str, client_secret_env: str, refresh_token_env: str,
                          post: Callable[[str, dict[str, str], float], dict[str, Any]] = _post_form,
                          clock: Callable[[], float] = time.monotonic, token_url: str = GOOGLE_TOKEN_URL,
                          timeout: float = 30.0) -> TokenProvider:
    """Google: exchange a stored refresh token for an access token, cached until a minute before it expires."""
    cached: dict[str, Any] = {}

    def provide() -> str:
        if cached and clock() < cached["expires"]:
            return str(cached["token"])
        answer = post(token_url, {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": _env_secret(client_secret_env, "Google client secret"),
            "refresh_token": _env_secret(refresh_token_env, "Google refresh token"),
        }, timeout)
        token = answer.get("access_token")
        if not token:
            kind = ErrorKind.PERMANENT if answer.get("error") == "invalid_grant" else ErrorKind.TEMPORARY
            raise TokenError(f"Google token request failed: {answer.get('error', 'unknown')}", kind)
        cached["token"] = token
        cached["expires"] = clock() + max(0, int(answer.get("expires_in", 3600)) - 60)
        return str(token)

    return provide


# ---- the mailbox ----------------------------------------------------------------------------------------------

def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc)


class ImapSource:
    """One IMAP folder. Connects lazily, reconnects on the next call after a dropped connection."""

    def __init__(self, settings: ImapSettings,
                 client_factory: Callable[..., IMAPClient] = IMAPClient) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._client: IMAPClient | None = None
        self._selected_readonly: bool | None = None

    # -- connection --

    def connect(self) -> IMAPClient:
        if self._client is not None:
            return self._client
        s = self.settings
        context = s.ssl_context or ssl.create_default_context()
        try:
            if s.security == "tls":
                client = self._client_factory(s.host, port=s.port, ssl=True, ssl_context=context,
                                              timeout=s.timeout)
            else:
                client = self._client_factory(s.host, port=s.port, ssl=False, timeout=s.timeout)
                if s.security == "starttls":
                    client.starttls(context)
            # Aware datetimes straight from the server instead of imapclient's conversion to local naive time.
            client.normalise_times = False
            if s.token_provider is not None:
                client.oauth2_login(s.username, s.token_provider())
            else:
                client.login(s.username, _env_secret(s.password_env, "IMAP password"))
        except LoginError as exc:
            raise MailSourceError("IMAP login refused", ErrorKind.PERMANENT) from exc
        except _TEMPORARY_ERRORS as exc:
            raise MailSourceError(f"IMAP connection failed: {type(exc).__name__}") from exc
        except IMAPClientError as exc:
            # e.g. the server does not offer STARTTLS: insecure fallback is not an option.
            raise MailSourceError(f"IMAP setup failed: {exc}", ErrorKind.PERMANENT) from exc
        self._client = client
        self._selected_readonly = None
        return client

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
            raise MailSourceError(f"IMAP select failed: {type(exc).__name__}") from exc
        except IMAPClientError as exc:
            raise MailSourceError("IMAP folder cannot be opened", ErrorKind.PERMANENT) from exc
        self._selected_readonly = readonly
        return info

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
            raise MailSourceError(f"IMAP search failed: {type(exc).__name__}") from exc

        wanted: list[int] = []
        skipped: list[SkippedMessage] = []
        for uid in uids:
            if uid not in sizes:
                skipped.append(SkippedMessage(uid, 0, SkipReason.VANISHED))
            elif sizes[uid] > self.settings.max_message_bytes:
                skipped.append(SkippedMessage(uid, sizes[uid], SkipReason.TOO_LARGE))
            else:
                wanted.append(uid)
        if skipped:
            log.info("skipping %d message(s) (over size cap or vanished)", len(skipped))
        return FetchRun(uidvalidity=uidvalidity, previous_uidvalidity=cursor.uidvalidity, uids=tuple(wanted),
                        skipped=skipped, internaldates=dates, _bodies=lambda ids: self._bodies(uidvalidity, ids))

    def _bodies(self, uidvalidity: int, uids: Sequence[int]) -> Iterator[FetchedMessage]:
        batch = max(1, self.settings.batch_size)
        for start in range(0, len(uids), batch):
            chunk = list(uids[start:start + batch])
            try:
                client = self.connect()
                if self._selected_readonly is None:
                    info = self._select(readonly=True)
                    if int(info[b"UIDVALIDITY"]) != uidvalidity:
                        raise MailSourceError("UIDVALIDITY changed during fetch")
                response = client.fetch(chunk, ["BODY.PEEK[]", "INTERNALDATE", "RFC822.SIZE"])
            except _TEMPORARY_ERRORS as exc:
                self._drop()
                raise MailSourceError(f"IMAP fetch failed: {type(exc).__name__}") from exc
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
            raise MailSourceError(f"IMAP move failed: {type(exc).__name__}") from exc
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
            raise MailSourceError(f"IMAP IDLE failed: {type(exc).__name__}") from exc
        return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)

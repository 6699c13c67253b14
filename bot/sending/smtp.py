"""Handing one finished e-mail to the hub's SMTP server with aiosmtplib, or, when the config has no ``[smtp]``
section, writing it as an ``.eml`` file. ``send_message`` never raises for a delivery problem: it returns a
``SendResult`` whose status says what the outbox should do next and whose cause says whose fault it was. A 4xx reply,
a dropped or timed-out connection before DATA, a missing STARTTLS, a refused login, a missing OAuth2 token and a 5xx
that is about us ("relaying denied") are TEMPORARY (the message is fine; the server or our config is not, so retry
later); any other 5xx reply is PERMANENT for that message. MAIL and RCPT are sent apart from DATA, so a connection
lost once the final "." may have gone is UNCERTAIN (the server may have the message; the outbox asks the hub's
mailbox), and a Cc the server refuses while taking the rest is recorded on the SENT result. Security is explicit:
``starttls`` refuses to send over a connection the server will not upgrade, ``tls`` is TLS from the first byte,
``none`` is for loopback tests. Login is by password or XOAUTH2 (``bot.oauth``); a refused token is thrown away and
one fresh token tried on the same connection. The settings are the config's ``SmtpSettings``; the token provider
and TLS context are passed beside them. ``probe`` logs in and quits without sending, for ``hubbot doctor``.
"""
from __future__ import annotations

import asyncio
import copy
import email.message
import email.policy
import enum
import os
import re
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message

from bot.config import Security, SmtpSettings
from bot.mail.source import ErrorKind
from bot.oauth import TokenError, TokenProvider


class SendStatus(enum.StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    UNCERTAIN = "uncertain"     # lost after the message's final "." was sent: the server may have taken it


class FailureCause(enum.StrEnum):
    """Whose fault a failed send was: the health checks count only the server's and our config's, never a
    school's mistyped address."""

    CONNECTION = "connection"          # no connection, TLS refused, timeout, dropped mid-way
    AUTH = "auth"                      # the server refused our login
    TOKEN = "token"                    # no OAuth2 token this time (the token endpoint failed)
    TOKEN_REFUSED = "token_refused"    # no OAuth2 token until a person acts (secret wrong, consent withdrawn)
    CONFIG = "config"                  # the password's environment variable is not set
    SERVER = "server"                  # the server answered the message itself with 4xx/5xx
    RECIPIENT = "recipient"            # the server refused the recipients


# Causes that say the mail server (or our access to it) is broken rather than one message.
SERVER_SIDE = frozenset({FailureCause.CONNECTION, FailureCause.AUTH, FailureCause.TOKEN, FailureCause.TOKEN_REFUSED,
                         FailureCause.CONFIG})


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    code: int | None = None
    detail: str = ""                 # server text or error class; no addresses (servers echo them, so trimmed)
    refused_recipients: int = 0      # SENT, but this many recipients were refused
    cause: FailureCause | None = None
    refused: tuple[str, ...] = ()    # SENT: which addresses, each with the server's code ("cc@x: 550")

    @property
    def ok(self) -> bool:
        return self.status is SendStatus.SENT


_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")


def _clean(text: str) -> str:
    # Servers put the refused address in their reply; keep the reason, drop the address.
    return _ADDRESS.sub("<address>", " ".join(str(text).split()))[:500]


# A 5xx that is about us, not the address: our relay will not relay for us, or wants a login we did not give. The
# message and the school's address are fine; a person must fix the config, so it waits (and staff see it) rather
# than being recorded as the school's address bouncing.
_OUR_SIDE = re.compile(r"relay|authenticat|auth(entication)? required|sender address rejected|not permitted to send",
                       re.IGNORECASE)


def _by_code(code: int | None, detail: str, cause: FailureCause = FailureCause.SERVER) -> SendResult:
    text = _clean(f"{code} {detail}" if code is not None else detail)
    if code is not None and 500 <= code < 600:
        if _OUR_SIDE.search(detail):
            return SendResult(SendStatus.TEMPORARY, code, "our mail server refused to send it: " + text,
                              cause=FailureCause.CONFIG)
        return SendResult(SendStatus.PERMANENT, code, text, cause=cause)
    return SendResult(SendStatus.TEMPORARY, code, text, cause=cause)


@dataclass(frozen=True)
class _Runtime:
    token_provider: TokenProvider | None = None
    tls_context: ssl.SSLContext | None = None
    local_hostname: str | None = None


async def _open(settings: SmtpSettings, runtime: _Runtime) -> aiosmtplib.SMTP | SendResult:
    """A connected, logged-in client, or the SendResult saying why there is none."""
    password = ""
    if settings.username and runtime.token_provider is None:
        password = os.environ.get(settings.password_env or "", "")
        if not password:
            return SendResult(SendStatus.TEMPORARY, None,
                              f"SMTP login to {settings.where}: environment variable "
                              f"{settings.password_env or '(none named)'} is not set", cause=FailureCause.CONFIG)
    client = aiosmtplib.SMTP(
        hostname=settings.host, port=settings.port, timeout=settings.timeout_seconds,
        use_tls=settings.security is Security.TLS,
        # True = STARTTLS or fail; False = never (plain "none"). None (opportunistic) is never used: it would
        # silently send in clear text when a server stops offering STARTTLS.
        start_tls=settings.security is Security.STARTTLS,
        tls_context=runtime.tls_context, local_hostname=runtime.local_hostname)
    try:
        await client.connect()
        if settings.username:
            if runtime.token_provider is not None:
                await _xoauth2(client, settings.username, runtime.token_provider)
            else:
                await client.login(settings.username, password)
        return client
    except BaseException as exc:
        await _quit(client)
        if isinstance(exc, TokenError):
            cause = FailureCause.TOKEN_REFUSED if exc.kind is ErrorKind.PERMANENT else FailureCause.TOKEN
            return SendResult(SendStatus.TEMPORARY, None, f"SMTP login to {settings.where}: no OAuth2 token: "
                                                          f"{exc}", cause=cause)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            # The message is not at fault; a wrong password must not fail every queued reply for good.
            return SendResult(SendStatus.TEMPORARY, exc.code, f"SMTP login to {settings.where} refused: "
                                                              + _clean(exc.message), cause=FailureCause.AUTH)
        if isinstance(exc, Exception):
            return _failure(exc, settings)
        raise


async def _xoauth2(client: aiosmtplib.SMTP, username: str, provider: TokenProvider) -> None:
    try:
        await client.auth_xoauth2(username, provider())
    except aiosmtplib.SMTPAuthenticationError:
        # 334 with an error, then 535: the token expired early or was revoked. One fresh token, one more try.
        invalidate = getattr(provider, "invalidate", None)
        if invalidate is None:
            raise
        invalidate()
        await client.auth_xoauth2(username, provider())


async def _deliver(client: aiosmtplib.SMTP, message: email.message.EmailMessage, settings: SmtpSettings,
                   before_data: Callable[[], None] | None = None) -> SendResult:
    """One mail transaction, MAIL and RCPT apart from DATA, so that we know which side of the final "." a lost
    connection fell on: before DATA nothing can have been delivered (TEMPORARY, safe to retry); once the
    message's final "." may have been sent and its answer is lost, the server may have taken it (UNCERTAIN).
    ``before_data`` runs (and records that DATA is starting) just before the DATA command."""
    try:
        sender = extract_sender(message)
        recipients = extract_recipients(message)
        del message["Bcc"]
        if not sender or not recipients:
            return SendResult(SendStatus.PERMANENT, None, "no sender or no recipient")
        if client.last_ehlo_response is None:
            await client.ehlo()
        options = ["BODY=8BITMIME"] if client.supports_extension("8BITMIME") else []
        flat = _flatten(message, cte_type="8bit" if options else "7bit")
        await client.mail(sender, options=options)
        refused: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
        for recipient in recipients:
            try:
                await client.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[recipient] = exc
        if len(refused) == len(recipients):
            await _rset(client)
            return _failure(aiosmtplib.SMTPRecipientsRefused(list(refused.values())), settings)
        if before_data is not None:
            before_data()
    except Exception as exc:  # noqa: BLE001 - nothing of the message has been sent yet: safe to retry
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            await _rset(client)
        return _failure(exc, settings)
    try:
        response = await client.data(flat)
    except aiosmtplib.SMTPResponseException as exc:
        # The server answered (DATA itself, or the final "."): it did not take the message.
        await _rset(client)
        return _by_code(exc.code, exc.message)
    except Exception as exc:  # noqa: BLE001 - the answer to the final "." may be what was lost
        return SendResult(SendStatus.UNCERTAIN, None, f"connection lost during DATA: {type(exc).__name__}",
                          cause=FailureCause.CONNECTION)
    return SendResult(SendStatus.SENT, None, _clean(response.message), refused_recipients=len(refused),
                      refused=tuple(f"{address}: {exc.code} {_clean(exc.message)}"[:300]
                                    for address, exc in refused.items()))


def _flatten(message: email.message.Message, *, cte_type: str) -> bytes:
    """The bytes for DATA, as aiosmtplib's ``flatten_message`` makes them (no Bcc, CRLF, no SMTPUTF8), but written
    with the message's own policy rather than ``email.policy.SMTP``: the generator reads and writes every header
    through the policy it writes with, and the outbox's policy (``bot.sending.outbox``) keeps its headers as
    written instead of parsing and refolding them all."""
    if not isinstance(message.policy, email.policy.EmailPolicy):
        return flatten_message(message, utf8=False, cte_type=cte_type)
    copied = copy.copy(message)
    del copied["Bcc"]
    del copied["Resent-Bcc"]
    return copied.as_bytes(policy=message.policy.clone(linesep="\r\n", utf8=False, cte_type=cte_type))


async def _rset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except Exception:  # noqa: BLE001 - a failed RSET only means the connection is dropped next
        pass


def _failure(exc: Exception, settings: SmtpSettings) -> SendResult:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        # Every recipient refused: permanent only if every refusal was permanent.
        code = max(codes) if codes and all(c >= 500 for c in codes) else min(codes, default=None)
        return _by_code(code, "; ".join(r.message for r in exc.recipients), FailureCause.RECIPIENT)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 421 is the server closing the session on us: a server problem, not this message's.
        cause = FailureCause.CONNECTION if exc.code == 421 else FailureCause.SERVER
        return _by_code(exc.code, exc.message, cause)
    return SendResult(SendStatus.TEMPORARY, None, f"SMTP connection to {settings.where} failed: "
                                                  f"{type(exc).__name__}: {_clean(str(exc))}",
                      cause=FailureCause.CONNECTION)


async def _quit(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        try:
            await client.quit()
        except Exception:  # noqa: BLE001 - the mail is sent or not already; a failed QUIT changes nothing
            client.close()


async def send_message_async(settings: SmtpSettings, message: email.message.EmailMessage, *,
                             token_provider: TokenProvider | None = None,
                             tls_context: ssl.SSLContext | None = None) -> SendResult:
    """Send one message on a connection of its own."""
    client = await _open(settings, _Runtime(token_provider, tls_context))
    if isinstance(client, SendResult):
        return client
    try:
        return await _deliver(client, message, settings)
    finally:
        await _quit(client)


def send_message(settings: SmtpSettings, message: email.message.EmailMessage, *,
                 token_provider: TokenProvider | None = None,
                 tls_context: ssl.SSLContext | None = None) -> SendResult:
    """Synchronous wrapper for the worker and the command line (no event loop running in this thread)."""
    return asyncio.run(send_message_async(settings, message, token_provider=token_provider,
                                          tls_context=tls_context))


def probe(settings: SmtpSettings, *, token_provider: TokenProvider | None = None,
          tls_context: ssl.SSLContext | None = None) -> SendResult:
    """Connect, say EHLO (and STARTTLS), log in, and quit: nothing is sent. SENT here means "would be accepted"."""
    async def run() -> SendResult:
        client = await _open(settings, _Runtime(token_provider, tls_context))
        if isinstance(client, SendResult):
            return client
        extensions = ", ".join(sorted(client.esmtp_extensions)[:6])
        await _quit(client)
        return SendResult(SendStatus.SENT, None, f"EHLO answered ({extensions})")
    return asyncio.run(run())


class SmtpConnection:
    """A sender that keeps one SMTP connection for a run of messages (an outbox drain): connecting and logging in
    costs more than sending a reply. Before reusing the connection it checks it with NOOP, so a connection the
    server dropped while idle is replaced before any message is handed over (never retried after the server may
    have taken it); after any failure the connection is dropped and the next message starts afresh. ``close()``
    ends it."""

    def __init__(self, settings: SmtpSettings, *, token_provider: TokenProvider | None = None,
                 tls_context: ssl.SSLContext | None = None, local_hostname: str | None = None) -> None:
        self.settings = settings
        self._runtime = _Runtime(token_provider, tls_context, local_hostname)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: aiosmtplib.SMTP | None = None

    supports_before_data = True

    def __call__(self, message: email.message.EmailMessage,
                 before_data: Callable[[], None] | None = None) -> SendResult:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._send(message, before_data))

    async def _send(self, message: email.message.EmailMessage,
                    before_data: Callable[[], None] | None = None) -> SendResult:
        if self._client is not None:
            try:
                await self._client.noop()
            except Exception:  # noqa: BLE001 - a stale connection: open a new one
                self._client.close()
                self._client = None
        if self._client is None:
            opened = await _open(self.settings, self._runtime)
            if isinstance(opened, SendResult):
                return opened
            self._client = opened
        result = await _deliver(self._client, message, self.settings, before_data)
        if not result.ok:
            await _quit(self._client)
            self._client = None
        return result

    def close(self) -> None:
        if self._loop is None:
            return
        if self._client is not None:
            self._loop.run_until_complete(_quit(self._client))
            self._client = None
        self._loop.close()
        self._loop = None


# ---- .eml files -----------------------------------------------------------------------------------------------

def eml_filename(message: email.message.EmailMessage) -> str:
    return eml_filename_for(str(message.get("Message-ID", "")))


def eml_filename_for(message_id: str) -> str:
    """The file an e-mail with this Message-ID is written to (so its presence proves it was written)."""
    message_id = message_id.strip().strip("<>")
    if not message_id:
        raise ValueError("an outgoing message needs a Message-ID to be written as a file")
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", message_id)[:200] + ".eml"


def write_eml(directory: str | os.PathLike[str], message: email.message.EmailMessage) -> Path:
    """Write the message to ``directory/<Message-ID>.eml`` atomically; writing the same message again replaces the
    file instead of adding a second one."""
    target_dir = Path(directory)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / eml_filename(message)
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".tmp-", suffix=".eml")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(message.as_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


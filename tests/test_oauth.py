"""XOAUTH2 against real servers that check the token: an aiosmtpd server asks a local token endpoint (tests/
oauth_server.py) about every bearer token, and Dovecot checks its own. The Google provider (``bot.oauth``) gets a
token by the refresh-token grant and SMTP accepts it; an hour later the cached token has expired and a new one is
fetched before the login; a token the server refuses although it is cached (revoked) is thrown away and exactly
one fresh token tried; a refresh token that is no longer valid fails the send as TOKEN_REFUSED without sending.
The same config keys drive IMAP: Dovecot logs in with a token from the token endpoint, and a refused token is
retried once with a fresh one. Finally ``hubbot run --once`` sends through ``[smtp] auth = "google"``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from bot.config import ImapSettings, OAuthSettings, SmtpSettings
from bot.mail.imap import ImapSource
from bot.mail.source import Cursor, ErrorKind, MailSourceError
from bot.oauth import GoogleTokenProvider, TokenError, token_provider_for
from bot.sending.smtp import FailureCause, SendStatus, SmtpConnection, send_message
from tests.oauth_server import TokenServer, start_oauth_smtp
from tests.test_workflow import application, deliver, write_config

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]
REPO = Path(__file__).resolve().parents[1]
USER = "hub@example.org"


@pytest.fixture
def tokens(monkeypatch):
    server = TokenServer().start()
    monkeypatch.setenv("G_SECRET", server.client_secret)
    monkeypatch.setenv("G_REFRESH", server.refresh_token)
    yield server
    server.stop()


@pytest.fixture
def oauth_smtp(tokens):
    server = start_oauth_smtp(tokens)
    yield server
    server.controller.stop()


def provider(tokens: TokenServer) -> GoogleTokenProvider:
    return GoogleTokenProvider(client_id=tokens.client_id, client_secret_env="G_SECRET",
                               refresh_token_env="G_REFRESH", token_url=tokens.url, clock=tokens.clock, timeout=5)


def settings(server) -> SmtpSettings:
    return SmtpSettings(host=server.host, port=server.port, security="none", username=USER, timeout_seconds=10,
                        auth="google", oauth=OAuthSettings(client_id="hubbot-test-client", client_secret_env="G_SECRET",
                                                           refresh_token_env="G_REFRESH"))


def message(n: int) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = USER, "school@example.sch.uk", f"Reply {n}"
    m["Message-ID"] = f"<oauth.{n}@example.org>"
    m.set_content("Thank you.")
    return m


def test_xoauth2_token_from_the_endpoint_is_accepted(tokens, oauth_smtp) -> None:
    result = send_message(settings(oauth_smtp), message(1), token_provider=provider(tokens))
    assert result.ok, result.detail
    assert oauth_smtp.handler.auth_log == [("XOAUTH2", USER)]
    assert tokens.checked == [(tokens.issued[0], True)]          # the server really asked about the token
    assert [str(r.message["Message-ID"]) for r in oauth_smtp.received] == ["<oauth.1@example.org>"]


def test_an_expired_cached_token_is_refreshed_before_login(tokens, oauth_smtp) -> None:
    tokens_provider = provider(tokens)
    sender = SmtpConnection(settings(oauth_smtp), token_provider=tokens_provider)
    try:
        assert sender(message(1)).ok
    finally:
        sender.close()
    first = tokens.issued[0]
    tokens.advance(3600)                                # an hour later: the server no longer takes the first token
    assert not tokens.valid(first)
    sender = SmtpConnection(settings(oauth_smtp), token_provider=tokens_provider)
    try:
        assert sender(message(2)).ok
    finally:
        sender.close()
    assert len(tokens.issued) == 2 and oauth_smtp.handler.rejected == []   # refreshed before, not after, a refusal
    assert [ok for _, ok in tokens.checked] == [True, True]
    assert len(oauth_smtp.received) == 2


def test_a_refused_cached_token_is_replaced_once(tokens, oauth_smtp) -> None:
    tokens_provider = provider(tokens)
    assert send_message(settings(oauth_smtp), message(1), token_provider=tokens_provider).ok
    tokens.revoke_all()                                 # still cached by the provider, refused by the server
    result = send_message(settings(oauth_smtp), message(2), token_provider=tokens_provider)
    assert result.ok, result.detail
    assert oauth_smtp.handler.rejected == [tokens.issued[0]]             # 334 + 535 for the old token
    assert len(tokens.issued) == 2 and oauth_smtp.handler.auth_log[-1] == ("XOAUTH2", USER)
    assert [str(r.message["Subject"]) for r in oauth_smtp.received] == ["Reply 1", "Reply 2"]


def test_a_refresh_token_no_longer_valid_is_token_refused(tokens, oauth_smtp, monkeypatch) -> None:
    monkeypatch.setenv("G_REFRESH", "revoked-refresh-token")
    result = send_message(settings(oauth_smtp), message(1), token_provider=provider(tokens))
    assert result.status is SendStatus.TEMPORARY and result.cause is FailureCause.TOKEN_REFUSED
    assert "invalid_grant" in result.detail and f"{oauth_smtp.host}:{oauth_smtp.port}" in result.detail
    assert "revoked-refresh-token" not in result.detail
    assert oauth_smtp.received == [] and oauth_smtp.handler.auth_log == []
    with pytest.raises(TokenError) as refused:
        provider(tokens)()
    assert refused.value.kind is ErrorKind.PERMANENT


def test_imap_xoauth2_from_the_config_keys_and_a_refused_token_retried(dovecot, tokens) -> None:
    # Dovecot checks the bearer token against its passwd-file: the endpoint issues that token.
    tokens.fixed_token = dovecot.oauth_token
    imap = ImapSettings(host=dovecot.host, port=dovecot.port, security="none", username="oauthuser",
                        timeout_seconds=10, auth="google",
                        oauth=OAuthSettings(client_id=tokens.client_id, client_secret_env="G_SECRET",
                                            refresh_token_env="G_REFRESH", token_url=tokens.url))
    made = token_provider_for(imap.auth, imap.oauth)
    assert isinstance(made, GoogleTokenProvider) and made.token_url == tokens.url
    with ImapSource(imap, token_provider=made) as source:
        assert list(source.fetch_new(Cursor())) == []
    assert tokens.issued == [dovecot.oauth_token]

    class Stale:
        """Hands out a token the server refuses until told to fetch afresh."""

        def __init__(self) -> None:
            self.calls = 0
            self.fresh = False

        def __call__(self) -> str:
            self.calls += 1
            return dovecot.oauth_token if self.fresh else "stale-token"

        def invalidate(self) -> None:
            self.fresh = True

    stale = Stale()
    with ImapSource(imap, token_provider=stale) as source:
        assert list(source.fetch_new(Cursor())) == []
    assert stale.calls == 2 and stale.fresh

    class Refused(Stale):
        def invalidate(self) -> None:   # a fresh token that is refused too: a login problem, not a retry loop
            pass

    refused = Refused()
    with pytest.raises(MailSourceError) as failure:
        ImapSource(imap, token_provider=refused).fetch_new(Cursor())
    assert refused.calls == 2 and failure.value.kind is ErrorKind.PERMANENT
    assert f"{dovecot.host}:{dovecot.port}" in str(failure.value)


def test_run_once_sends_through_smtp_auth_google(tmp_path: Path, tokens, oauth_smtp) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    text = config.read_text().replace("[database]", f"""[smtp]
host = "{oauth_smtp.host}"
port = {oauth_smtp.port}
security = "none"
username = "{USER}"
auth = "google"
client_id = "{tokens.client_id}"
client_secret_env = "G_SECRET"
refresh_token_env = "G_REFRESH"
token_url = "{tokens.url}"
timeout_seconds = 10

[database]""")
    config.write_text(text)
    deliver(tmp_path / "mail", application())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HUBBOT_CONFIG", None)
    # --backfill: a mailbox's first poll otherwise starts at its end, and this mail is already there.
    done = subprocess.run([sys.executable, "-m", "bot.cli", "run", "--once", "--backfill", "1970-01-01", "--config",
                           str(config), "--now", "2024-06-20T12:00"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replies: 1 sent" in done.stdout
    assert oauth_smtp.handler.auth_log == [("XOAUTH2", USER)] and len(oauth_smtp.received) == 1
    doctor = subprocess.run([sys.executable, "-m", "bot.cli", "doctor", "--config", str(config),
                             "--now", "2024-06-20T12:00"], env=env, capture_output=True, text=True, timeout=120)
    smtp_line = next(line for line in doctor.stdout.splitlines() if " smtp " in line)
    assert smtp_line.startswith("ok") and "login accepted" in smtp_line and "(google)" in smtp_line

"""The IMAP source against a real Dovecot (new UIDs only, size cap, \\Seen untouched, UIDVALIDITY change, a server
restart mid-fetch, XOAUTH2), the XOAUTH2 token providers (``bot.oauth``) as units, and the Maildir source with the
same shape. The source takes the config's ``ImapSettings``; the size cap, batch size and token provider are passed
beside them."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.config import ImapSettings
from bot.mail.imap import ImapSource
from bot.mail.maildir import MaildirSource
from bot.mail.source import Cursor, ErrorKind, MailSource, MailSourceError, SkipReason
from bot.oauth import TokenError, google_token_provider, microsoft_token_provider
from storage import repository as repo
from storage.db import open_database

pytestmark = pytest.mark.slow


def raw_message(n: int, body: str = "hello", extra: str = "") -> bytes:
    return (f"From: School <school{n}@example.sch.uk>\r\nTo: hub@example.org\r\nSubject: Application {n}\r\n"
            f"Message-ID: <msg{n}.{time.monotonic_ns()}@example.sch.uk>\r\nDate: Fri, 28 Jun 2024 10:00:00 +0100\r\n"
            f"{extra}\r\n{body}\r\n").encode()


def source_for(dovecot, folder: str, **runtime) -> ImapSource:
    return ImapSource(ImapSettings(host=dovecot.host, port=dovecot.port, security="none", username=dovecot.user,
                                   password_env="HUBBOT_TEST_IMAP_PASSWORD", folder=folder, timeout_seconds=10),
                      **runtime)


@pytest.fixture(autouse=True)
def imap_password(monkeypatch, dovecot):
    monkeypatch.setenv("HUBBOT_TEST_IMAP_PASSWORD", dovecot.password)


def test_fetches_only_new_uids(dovecot):
    folder = dovecot.new_folder()
    uids = [dovecot.append(raw_message(i), folder) for i in range(3)]
    with source_for(dovecot, folder) as source:
        assert isinstance(source, MailSource)
        run = source.fetch_new(Cursor())
        got = list(run)
        assert [m.uid for m in got] == uids
        assert all(m.internaldate.tzinfo is not None and m.size == len(m.raw) for m in got)
        assert not run.uidvalidity_changed

        # "UID 4:*" matches the last message even though its UID is 3: it must not come back.
        again = source.fetch_new(Cursor(run.uidvalidity, uids[-1]))
        assert again.uids == () and list(again) == []

        newer = dovecot.append(raw_message(9), folder)
        third = source.fetch_new(Cursor(run.uidvalidity, uids[-1]))
        assert [m.uid for m in third] == [newer]


def test_size_cap_skips_and_reports(dovecot):
    folder = dovecot.new_folder()
    small = dovecot.append(raw_message(1), folder)
    big = dovecot.append(raw_message(2, body="x" * 5000), folder)
    with source_for(dovecot, folder, max_message_bytes=2000) as source:
        run = source.fetch_new(Cursor())
        assert [m.uid for m in run] == [small]
        assert [(s.uid, s.reason) for s in run.skipped] == [(big, SkipReason.TOO_LARGE)]
        assert run.skipped[0].size > 5000
        assert run.highest_uid == big   # the caller can move its cursor past the skipped message


def test_peek_leaves_seen_flag_alone(dovecot):
    folder = dovecot.new_folder()
    unseen = dovecot.append(raw_message(1), folder)
    seen = dovecot.append(raw_message(2), folder, flags=(b"\\Seen",))
    with source_for(dovecot, folder) as source:
        got = list(source.fetch_new(Cursor()))
    # Already-read mail is still fetched (the bot never relies on \Seen) and unread mail stays unread.
    assert [m.uid for m in got] == [unseen, seen]
    assert b"\\Seen" not in dovecot.flags(folder, unseen)
    assert b"\\Seen" in dovecot.flags(folder, seen)


def test_uidvalidity_change_refetches_and_store_dedupes(dovecot, tmp_path):
    folder = dovecot.new_folder()
    for i in range(2):
        dovecot.append(raw_message(i), folder)
    db = open_database(f"sqlite:///{tmp_path / 'h.db'}")
    with source_for(dovecot, folder) as source:
        first = source.fetch_new(Cursor())
        with db.session() as session:
            created = [repo.store_raw_message(session, hub_id="h", folder=folder, uidvalidity=m.uidvalidity,
                                              uid=m.uid, raw=m.raw, received_at=m.internaldate).created
                       for m in first]
        assert created == [True, True]

        dovecot.recreate_folder(folder)
        second = source.fetch_new(Cursor(first.uidvalidity, first.highest_uid))
        assert second.uidvalidity_changed and second.uidvalidity != first.uidvalidity
        messages = list(second)
        assert len(messages) == 2
        with db.session() as session:
            results = [repo.store_raw_message(session, hub_id="h", folder=folder, uidvalidity=m.uidvalidity,
                                              uid=m.uid, raw=m.raw, received_at=m.internaldate)
                       for m in messages]
        assert [r.created for r in results] == [False, False]
    db.close()


def test_connection_dropped_mid_fetch_then_resumes(dovecot):
    folder = dovecot.new_folder()
    uids = [dovecot.append(raw_message(i), folder) for i in range(3)]
    source = source_for(dovecot, folder, batch_size=1)
    run = source.fetch_new(Cursor())
    iterator = iter(run)
    first = next(iterator)
    dovecot.restart()   # every connection dies
    with pytest.raises(MailSourceError) as failure:
        next(iterator)
    assert failure.value.kind is ErrorKind.TEMPORARY
    # The caller stored `first` and moved its cursor; the next poll reconnects and carries on from there.
    resumed = source.fetch_new(Cursor(run.uidvalidity, first.uid))
    assert [m.uid for m in resumed] == uids[1:]
    source.close()


def test_xoauth2_login_with_token_provider(dovecot):
    calls = []

    def token() -> str:
        calls.append(1)
        return dovecot.oauth_token

    source = ImapSource(ImapSettings(host=dovecot.host, port=dovecot.port, security="none", username="oauthuser",
                                     timeout_seconds=10), token_provider=token)
    run = source.fetch_new(Cursor())
    assert list(run) == [] and calls == [1]
    source.close()

    bad = ImapSource(ImapSettings(host=dovecot.host, port=dovecot.port, security="none", username="oauthuser",
                                  timeout_seconds=10), token_provider=lambda: "wrong-token")
    with pytest.raises(MailSourceError) as failure:
        bad.fetch_new(Cursor())
    assert failure.value.kind is ErrorKind.PERMANENT


def test_wrong_password_is_permanent(dovecot, monkeypatch):
    monkeypatch.setenv("HUBBOT_TEST_IMAP_PASSWORD", "nope")
    with pytest.raises(MailSourceError) as failure:
        source_for(dovecot, "INBOX").fetch_new(Cursor())
    assert failure.value.kind is ErrorKind.PERMANENT
    assert "nope" not in str(failure.value)


def test_starttls_refused_when_server_has_none(dovecot):
    # The test Dovecot has ssl = no, so it cannot upgrade: the source must not fall back to clear text.
    source = ImapSource(ImapSettings(host=dovecot.host, port=dovecot.port, security="starttls",
                                     username=dovecot.user, password_env="HUBBOT_TEST_IMAP_PASSWORD",
                                     timeout_seconds=10))
    with pytest.raises(MailSourceError):
        source.fetch_new(Cursor())


def test_move_after_commit_and_idle(dovecot):
    folder = dovecot.new_folder()
    done = dovecot.new_folder()
    uid = dovecot.append(raw_message(1), folder)
    with source_for(dovecot, folder) as source:
        source.move_to([uid], done)
        assert list(source.fetch_new(Cursor())) == []
        assert len(list(source_for(dovecot, done).fetch_new(Cursor()))) == 1

        timer = threading.Timer(0.5, lambda: dovecot.append(raw_message(2), folder))
        timer.start()
        started = time.monotonic()
        assert source.idle_wait(timeout=10) is True
        assert time.monotonic() - started < 8
        timer.join()


# ---- token providers as units ---------------------------------------------------------------------------------

def test_microsoft_token_provider_uses_client_credentials(monkeypatch):
    monkeypatch.setenv("MS_SECRET", "the-secret")
    seen = {}

    class FakeApp:
        def __init__(self, client_id, authority, client_credential):
            seen.update(client_id=client_id, authority=authority, secret=client_credential)

        def acquire_token_for_client(self, scopes):
            seen["scopes"] = scopes
            return {"access_token": "ms-token", "expires_in": 3600}

    provide = microsoft_token_provider(tenant_id="tenant", client_id="client", client_secret_env="MS_SECRET",
                                       app_factory=FakeApp)
    assert provide() == "ms-token"
    assert seen == {"client_id": "client", "authority": "https://login.microsoftonline.com/tenant",
                    "secret": "the-secret", "scopes": ["https://outlook.office365.com/.default"]}


def test_microsoft_token_failure_names_error_not_secret(monkeypatch):
    monkeypatch.setenv("MS_SECRET", "the-secret")

    class Refusing:
        def __init__(self, *a, **k):
            pass

        def acquire_token_for_client(self, scopes):
            return {"error": "invalid_client", "error_description": "bad secret the-secret"}

    provide = microsoft_token_provider(tenant_id="t", client_id="c", client_secret_env="MS_SECRET",
                                       app_factory=Refusing)
    with pytest.raises(TokenError) as failure:
        provide()
    assert "invalid_client" in str(failure.value) and "the-secret" not in str(failure.value)


def test_google_token_provider_refreshes_and_caches(monkeypatch):
    monkeypatch.setenv("G_SECRET", "gs")
    monkeypatch.setenv("G_REFRESH", "gr")
    posts = []
    now = [1000.0]

    def post(url, data, timeout):
        posts.append((url, data))
        return {"access_token": f"tok{len(posts)}", "expires_in": 3600}

    provide = google_token_provider(client_id="cid", client_secret_env="G_SECRET", refresh_token_env="G_REFRESH",
                                    post=post, clock=lambda: now[0])
    assert provide() == "tok1" and provide() == "tok1"
    assert posts[0] == ("https://oauth2.googleapis.com/token", {"grant_type": "refresh_token", "client_id": "cid",
                                                                 "client_secret": "gs", "refresh_token": "gr"})
    now[0] += 3600
    assert provide() == "tok2"


def test_google_token_provider_missing_env_is_permanent(monkeypatch):
    monkeypatch.delenv("G_REFRESH", raising=False)
    monkeypatch.setenv("G_SECRET", "gs")
    provide = google_token_provider(client_id="c", client_secret_env="G_SECRET", refresh_token_env="G_REFRESH",
                                    post=lambda *a: {"access_token": "x"})
    with pytest.raises(TokenError) as failure:
        provide()
    assert failure.value.kind is ErrorKind.PERMANENT


# ---- Maildir ----------------------------------------------------------------------------------------------------

def make_maildir(path: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def deliver(maildir: Path, name: str, raw: bytes, sub: str = "new") -> Path:
    target = maildir / sub / name
    target.write_bytes(raw)
    return target


def test_maildir_source_same_shape_as_imap(tmp_path):
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "1700000001.M1P1.host", raw_message(1))
    deliver(maildir, "1700000002.M1P1.host:2,S", raw_message(2), sub="cur")
    source = MaildirSource(maildir, max_message_bytes=3000)
    assert isinstance(source, MailSource)
    run = source.fetch_new(Cursor())
    got = list(run)
    assert [m.uid for m in got] == [1, 2]
    assert got[0].internaldate.tzinfo is timezone.utc and isinstance(got[0].internaldate, datetime)

    deliver(maildir, "1700000003.M1P1.host", raw_message(3, body="y" * 5000))
    deliver(maildir, "1700000004.M1P1.host", raw_message(4))
    later = source.fetch_new(Cursor(run.uidvalidity, run.highest_uid))
    assert [m.uid for m in later] == [4]
    assert [(s.uid, s.reason) for s in later.skipped] == [(3, SkipReason.TOO_LARGE)]

    # A MUA moving a file from new/ to cur/ (adding flags) keeps its UID.
    (maildir / "new" / "1700000001.M1P1.host").rename(maildir / "cur" / "1700000001.M1P1.host:2,S")
    assert source.fetch_new(Cursor(run.uidvalidity, 4)).uids == ()

    # Losing the ledger is a UIDVALIDITY change, like a renumbered IMAP mailbox.
    (maildir / ".hubbot-ledger.json").unlink()
    time.sleep(1.01)
    renumbered = source.fetch_new(Cursor(run.uidvalidity, 4))
    assert renumbered.uidvalidity_changed and len(list(renumbered)) == 3

    source.move_to([1], ".Processed")
    assert (maildir / ".Processed" / "cur" / "1700000001.M1P1.host:2,S").exists()

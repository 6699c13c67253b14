"""The SMTP sender and the outbox drain against a real aiosmtpd server: delivery, threading and loop headers, 421/451
retried with backoff, 550 failed, login (PLAIN and XOAUTH2), STARTTLS required but not offered, and the .eml writer."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from bot.config import SmtpSettings
from bot.sending.outbox import LOOP_HEADER, OutboxPolicy, backoff, build_email, drain_outbox, eml_sender, smtp_sender
from bot.sending.smtp import SendStatus, SmtpConnection, eml_filename, send_message, write_eml
from storage import repository as repo
from storage.db import open_database
from storage.models import Event, OutboxItem, OutboxState
from tests.servers import free_port

pytestmark = [pytest.mark.slow,
              # The test server takes AUTH over plain loopback on purpose; aiosmtpd warns about that.
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

NOW = datetime(2024, 6, 28, 9, 0, tzinfo=timezone.utc)


def plain(server, **kwargs) -> SmtpSettings:
    return SmtpSettings(host=server.host, port=server.port, security="none", timeout_seconds=10, **kwargs)


def simple_message(n: int = 1) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "hub@example.org"
    message["To"] = "school@example.sch.uk"
    message["Subject"] = "Your application"
    message["Message-ID"] = f"<hubbot.test{n}@example.org>"
    message.set_content("Thank you.")
    return message


@pytest.fixture
def db(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield database
    database.close()


def enqueue(db, n: int = 1) -> int:
    with db.session() as s:
        source = repo.store_raw_message(s, hub_id="north", folder="INBOX", uidvalidity=1, uid=n,
                                        raw=f"Message-ID: <in{n}@example.sch.uk>\r\n\r\nx".encode(),
                                        received_at=NOW, now=NOW).message
        item = repo.enqueue_reply(s, hub_id="north", kind="acknowledgement", from_addr="hub@example.org",
                                  to=["school@example.sch.uk"], cc=["head@example.sch.uk"],
                                  subject="Application received", text="Thank you.", html="<p>Thank you.</p>",
                                  source_message_id=source.id, in_reply_to=source.message_id,
                                  references=source.message_id, headers={"X-Hubbot-Kind": "acknowledgement"},
                                  now=NOW).item
        return item.id


def outbox_row(db, item_id: int) -> OutboxItem:
    with db.session() as s:
        row = s.get(OutboxItem, item_id)
        assert row is not None
        return row


def test_send_plain(smtp_server):
    result = send_message(plain(smtp_server), simple_message())
    assert result.ok and result.status is SendStatus.SENT
    [got] = smtp_server.received
    assert got.rcpt_tos == ["school@example.sch.uk"]
    assert got.message["Message-ID"] == "<hubbot.test1@example.org>"


def test_one_connection_serves_a_run_of_messages(smtp_server):
    sender = SmtpConnection(plain(smtp_server))
    try:
        assert all(sender(simple_message(n)).ok for n in (1, 2, 3))
        assert len(set(smtp_server.handler.peers)) == 1          # connected once, sent three
        smtp_server.fail_next(1, "451 4.3.0 Try again later")
        assert sender(simple_message(4)).status is SendStatus.TEMPORARY
        assert sender(simple_message(5)).ok                       # a failure starts a fresh connection
        assert len(set(smtp_server.handler.peers)) == 2
    finally:
        sender.close()
    assert [r.message["Message-ID"] for r in smtp_server.received] == [
        f"<hubbot.test{n}@example.org>" for n in (1, 2, 3, 5)]


def test_a_dropped_connection_is_replaced_before_sending(smtp_server):
    sender = SmtpConnection(plain(smtp_server))
    try:
        assert sender(simple_message(1)).ok
        sender._client.close()   # as if the server had closed the idle connection
        assert sender(simple_message(2)).ok
    finally:
        sender.close()
    assert len(smtp_server.received) == 2


def test_login_plain_from_environment(smtp_server_auth, monkeypatch):
    monkeypatch.setenv("HUBBOT_SMTP_PASSWORD", "smtp-test-password")
    settings = plain(smtp_server_auth, username="hub@example.org", password_env="HUBBOT_SMTP_PASSWORD")
    assert send_message(settings, simple_message()).ok
    assert smtp_server_auth.handler.auth_log[0][1] == "hub@example.org"

    monkeypatch.setenv("HUBBOT_SMTP_PASSWORD", "wrong")
    refused = send_message(settings, simple_message(2))
    # A bad password is our config's fault, not the message's: retry later rather than fail the reply for good.
    assert refused.status is SendStatus.TEMPORARY and "wrong" not in refused.detail
    monkeypatch.delenv("HUBBOT_SMTP_PASSWORD")
    assert send_message(settings, simple_message(3)).status is SendStatus.TEMPORARY
    assert len(smtp_server_auth.received) == 1


def test_login_xoauth2(smtp_server_auth):
    smtp_server_auth.handler.oauth_tokens.add("tok-123")
    settings = plain(smtp_server_auth, username="hub@example.org", auth="google")
    assert send_message(settings, simple_message(), token_provider=lambda: "tok-123").ok
    assert smtp_server_auth.handler.auth_log == [("XOAUTH2", "hub@example.org")]
    assert not send_message(settings, simple_message(2), token_provider=lambda: "nope").ok


def test_starttls_required_but_not_offered(smtp_server):
    settings = SmtpSettings(host=smtp_server.host, port=smtp_server.port, security="starttls", timeout_seconds=10)
    result = send_message(settings, simple_message())
    assert result.status is SendStatus.TEMPORARY
    assert smtp_server.received == []   # never fell back to clear text


def test_connection_refused_is_temporary():
    result = send_message(SmtpSettings(host="127.0.0.1", port=free_port(), security="none", timeout_seconds=3),
                          simple_message())
    assert result.status is SendStatus.TEMPORARY and result.code is None


@pytest.mark.parametrize("answer,code", [("421 4.7.0 Too busy, later", 421), ("451 4.3.0 Try again", 451)])
def test_temporary_answers_are_retried_with_backoff(smtp_server, db, answer, code):
    item_id = enqueue(db)
    smtp_server.fail_next(2, answer)
    policy = OutboxPolicy(base_delay=timedelta(minutes=1))
    sender = smtp_sender(plain(smtp_server))

    first = drain_outbox(db, sender, worker="w", now=NOW, policy=policy)
    assert (first.claimed, first.retried, first.sent) == (1, 1, 0)
    row = outbox_row(db, item_id)
    assert row.state is OutboxState.PENDING and row.next_attempt_at == NOW + timedelta(minutes=1)
    assert (row.last_error or "").startswith(str(code))

    assert drain_outbox(db, sender, worker="w", now=NOW + timedelta(seconds=30), policy=policy).claimed == 0
    second = drain_outbox(db, sender, worker="w", now=NOW + timedelta(minutes=1), policy=policy)
    assert second.retried == 1
    assert outbox_row(db, item_id).next_attempt_at == NOW + timedelta(minutes=3)   # 1 min, then 2 min

    third = drain_outbox(db, sender, worker="w", now=NOW + timedelta(minutes=3), policy=policy)
    assert third.sent == 1
    row = outbox_row(db, item_id)
    assert row.state is OutboxState.SENT and row.attempts == 3
    assert len(smtp_server.received) == 1
    with db.session() as s:
        kinds = [e.kind for e in s.scalars(select(Event).order_by(Event.id))]
    assert kinds == ["reply_retry", "reply_retry", "reply_sent"]


def test_permanent_answer_fails_without_retry(smtp_server, db):
    item_id = enqueue(db)
    smtp_server.fail_next(1, "550 5.1.1 Mailbox unavailable")
    report = drain_outbox(db, smtp_sender(plain(smtp_server)), worker="w", now=NOW)
    assert report.failed == 1
    row = outbox_row(db, item_id)
    assert row.state is OutboxState.FAILED and row.refused and (row.last_error or "").startswith("550")
    assert drain_outbox(db, smtp_sender(plain(smtp_server)), worker="w", now=NOW + timedelta(days=1)).claimed == 0
    assert smtp_server.received == []


def test_gives_up_after_max_attempts(smtp_server, db):
    enqueue(db)
    smtp_server.fail_next(5, "451 4.3.0 Try again")
    policy = OutboxPolicy(max_attempts=2, base_delay=timedelta(minutes=1))
    sender = smtp_sender(plain(smtp_server))
    assert drain_outbox(db, sender, worker="w", now=NOW, policy=policy).retried == 1
    assert drain_outbox(db, sender, worker="w", now=NOW + timedelta(hours=1), policy=policy).failed == 1


def test_sent_reply_carries_threading_and_loop_headers(smtp_server, db):
    item_id = enqueue(db)
    assert drain_outbox(db, smtp_sender(plain(smtp_server)), worker="w", now=NOW).sent == 1
    [got] = smtp_server.received
    message = got.message
    row = outbox_row(db, item_id)
    assert message["Message-ID"] == row.message_id
    assert message["In-Reply-To"] == "<in1@example.sch.uk>" == message["References"]
    assert message["Auto-Submitted"] == "auto-replied"
    assert message[LOOP_HEADER] == "hub@example.org"
    assert message["X-Hubbot-Kind"] == "acknowledgement"
    assert sorted(got.rcpt_tos) == ["head@example.sch.uk", "school@example.sch.uk"]
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content().strip() == "Thank you."
    assert "<p>Thank you.</p>" in message.get_body(("html",)).get_content()
    # Deterministic: building the same row again gives the same Message-ID and Date.
    again = build_email(row)
    assert again["Message-ID"] == message["Message-ID"] and again["Date"] == message["Date"]


def test_header_injection_is_neutralised(db):
    with db.session() as s:
        item = repo.enqueue_reply(s, hub_id="h", kind="x", dedupe_key="k", from_addr="hub@example.org",
                                  to=["a@example.org"], subject="Hi\r\nBcc: evil@example.com", text="t", now=NOW).item
        message = build_email(item)
    assert message["Bcc"] is None and "\n" not in message["Subject"]


def test_a_rows_own_headers_cannot_add_a_bcc(db):
    """Only the hub's own copy may be a Bcc (drain_outbox adds it): a row's free-form headers cannot add another
    recipient, nor make adding the hub's copy fail."""
    with db.session() as s:
        item = repo.enqueue_reply(s, hub_id="h", kind="x", dedupe_key="k", from_addr="hub@example.org",
                                  to=["a@example.org"], subject="Hi", text="t", now=NOW,
                                  headers={"Bcc": "evil@example.com", "X-Hubbot-Kind": "x"}).item
        message = build_email(item)
    assert message["Bcc"] is None and message["X-Hubbot-Kind"] == "x"
    message["Bcc"] = "hub@example.org"
    assert message.get_all("Bcc") == ["hub@example.org"]


def test_backoff_doubles_and_caps():
    policy = OutboxPolicy(base_delay=timedelta(minutes=1), max_delay=timedelta(minutes=10))
    assert [backoff(n, policy) for n in (1, 2, 3, 4, 5)] == [timedelta(minutes=m) for m in (1, 2, 4, 8, 10)]


def test_eml_writer_is_atomic_and_idempotent(tmp_path):
    message = simple_message()
    first = write_eml(tmp_path, message)
    second = write_eml(tmp_path, message)
    assert first == second == tmp_path / eml_filename(message)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]   # no temp files left, no second copy
    assert b"Thank you." in first.read_bytes()
    assert eml_filename(simple_message()) == "hubbot.test1@example.org.eml"


def test_outbox_to_eml_files_when_no_smtp(tmp_path, db):
    enqueue(db)
    report = drain_outbox(db, eml_sender(tmp_path / "out"), worker="w", now=NOW)
    assert report.sent == 1
    files = list((tmp_path / "out").glob("*.eml"))
    assert len(files) == 1 and b"Auto-Submitted: auto-replied" in files[0].read_bytes()

"""The whole workflow through ``Worker.run_once`` on a Maildir hub with no SMTP (replies land as .eml files in the
outbox folder), on SQLite and for the key cases also on PostgreSQL: a complete application is acknowledged once and
threaded to the school's e-mail with the loop-protection headers; an incomplete one gets one reply listing every
missing field and every signatory not copied; a second form from the same school is a new version flagged
``resubmission``; a signatory's "I confirm" in the thread completes the application; the same e-mail delivered
twice is processed and answered once; the same Message-ID in two hubs is two submissions; automatic mail is stored
and never answered; a loop with a careless auto-responder stops at the daily cap; a message whose processing raises
is retried and quarantined after three attempts without holding up the others; a second cycle does nothing new.
The small helpers here (config writer, Maildir delivery, queries) are shared by the other worker test modules.
"""
from __future__ import annotations

import email
import email.policy
import itertools
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.config import load_config
from bot.context import check_settings
from bot.worker import Worker
from bot.workflow import Workflow
from rules.verdict import FlagCode
from samples.applications import LONDON, application_email, complete_answers, fill_form, programme
from samples.mail import bounce_report, build_email, forgot_attachment_email, out_of_office, question_email
from storage.db import Database, open_database
from storage.models import (
    Application,
    ApplicationStatus,
    ApplicationVersion,
    Event,
    Message,
    MessageState,
    OutboxItem,
    OutboxState,
    Signatory,
)
from templates import EmailKind

PID = "secondary-tfm-wg-2024"
HUB_ADDRESS = programme(PID).hub.address
RECEIVED = datetime(2024, 6, 20, 10, 0, tzinfo=LONDON)   # before the 28 June deadline: no "late" flag
NOW = datetime(2024, 6, 20, 12, 0, tzinfo=LONDON)
OFFICE = "office@valley.example.sch.uk"
EVERYTHING = datetime(1970, 1, 1, tzinfo=LONDON)    # --backfill for mailboxes filled before the first poll


# ---- shared helpers (also imported by test_imap_worker, test_crash_safety, test_run_service) --------------------

def hub_toml(hub_id: str = "central", *, maildir: str | None = "mail", imap: dict | None = None,
             address: str = HUB_ADDRESS, name: str = "Central Maths Hub") -> str:
    lines = ["[[hubs]]", f'id = "{hub_id}"', f'name = "{name}"', f'address = "{address}"',
             f'programmes = ["{PID}"]']
    if maildir:
        lines.append(f'maildir = "{maildir}"')
    if imap:
        lines.append("[hubs.imap]")
        for key, value in imap.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return f'"{value}"'


def write_config(directory: Path, db_url: str, *, hubs: str | None = None, smtp: tuple[str, int] | None = None,
                 extra: str = "") -> Path:
    """A hubbot.toml in ``directory``: one Maildir hub by default, SMTP (security none) when ``smtp`` is given."""
    text = f'{extra}\n[database]\nurl = "{db_url}"\n'
    if smtp:
        text += f'[smtp]\nhost = "{smtp[0]}"\nport = {smtp[1]}\nsecurity = "none"\ntimeout_seconds = 10\n'
    text += hubs if hubs is not None else hub_toml()
    path = directory / "hubbot.toml"
    path.write_text(text)
    return path


_counter = itertools.count()


def deliver(maildir: Path, raw: bytes, when: datetime = RECEIVED) -> Path:
    """Drop one message into a Maildir (new/), its mtime being the delivery time the bot reads."""
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    path = maildir / "new" / f"{int(when.timestamp())}.M{next(_counter)}P{os.getpid()}.test"
    path.write_bytes(raw)
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def application(*, urn: str = "122687", drop: tuple[str, ...] = (), pattern: str = "all",
                message_id: str | None = None, received: datetime = RECEIVED, **kwargs) -> bytes:
    answers = {k: v for k, v in complete_answers(PID).items() if k not in drop}
    answers["school.urn"] = urn
    # The builder derives the Message-ID from sender, subject and date: make each application its own e-mail.
    message_id = message_id or f"<app-{next(_counter)}-{urn}@valley.example.sch.uk>"
    return application_email(PID, fill_form(PID, answers), answers=answers, pattern=pattern,
                             message_id=message_id, received=received, **kwargs)


@dataclass
class Bot:
    """A worker over one config, with a clock the test moves."""

    config_path: Path
    now: datetime = NOW
    db: Database = field(init=False)

    def __post_init__(self) -> None:
        self.config = load_config(self.config_path)
        self.db = open_database(self.config.database_url)
        self.settings = check_settings(self.config)

    def worker(self, **kwargs) -> Worker:
        # The tests' mailboxes are filled before the first poll: answer all of it (a real first poll starts at
        # the mailbox's end; tests/test_recovery covers that).
        kwargs.setdefault("backfill", EVERYTHING)
        return Worker(self.config, self.db, self.settings, clock=lambda: self.now, **kwargs)

    def run(self, **kwargs):
        return self.worker(**kwargs).run_once()

    def scalars(self, query) -> list:
        with self.db.session() as session:
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    def messages(self) -> list[Message]:
        return self.scalars(select(Message).order_by(Message.id))

    def outbox(self) -> list[OutboxItem]:
        return self.scalars(select(OutboxItem).order_by(OutboxItem.id))

    def applications(self) -> list[Application]:
        return self.scalars(select(Application).order_by(Application.id))

    def versions(self, application_id: int) -> list[ApplicationVersion]:
        return self.scalars(select(ApplicationVersion).where(ApplicationVersion.application_id == application_id)
                            .order_by(ApplicationVersion.id))

    def signatories(self, application_id: int) -> dict[str, Signatory]:
        return {s.role: s for s in self.scalars(select(Signatory).where(Signatory.application_id == application_id))}

    def events(self, kind: str) -> list[Event]:
        return self.scalars(select(Event).where(Event.kind == kind).order_by(Event.id))

    def close(self) -> None:
        self.db.close()


def sent_files(outbox: Path) -> list[EmailMessage]:
    if not outbox.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)]


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return " ".join(part.get_content().split())


# ---- fixtures -------------------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hubbot.db'}"


def make_bot(tmp_path: Path, url: str, **kwargs) -> Bot:
    return Bot(write_config(tmp_path, url, **kwargs))


@pytest.fixture
def bot(tmp_path: Path, sqlite_url: str):
    b = make_bot(tmp_path, sqlite_url)
    yield b
    b.close()


@pytest.fixture
def any_bot(tmp_path: Path, db_url: str):
    """The same worker on SQLite and on PostgreSQL."""
    b = make_bot(tmp_path, db_url)
    yield b
    b.close()


# ---- applications ---------------------------------------------------------------------------------------------

def test_complete_application_is_acknowledged_once_in_the_thread(any_bot: Bot, tmp_path: Path) -> None:
    raw = application(message_id="<form-1@valley.example.sch.uk>")
    deliver(tmp_path / "mail", raw)
    report = any_bot.run()

    assert report.fetched == {"central": 1} and report.failed_messages == 0
    assert [(o.status.value, o.reply) for o in report.outcomes] == [("complete", EmailKind.ACKNOWLEDGEMENT)]
    files = sent_files(tmp_path / "outbox")
    assert len(files) == 1
    reply = files[0]
    assert str(reply["In-Reply-To"]).strip() == "<form-1@valley.example.sch.uk>"
    assert "<form-1@valley.example.sch.uk>" in reply["References"].split()
    assert reply["Auto-Submitted"] == "auto-replied"
    assert HUB_ADDRESS in reply["X-Hubbot-Loop"]
    assert HUB_ADDRESS in reply["From"]
    assert OFFICE in reply["To"]
    assert "h.oneill@valley.example.sch.uk" in reply["Cc"]

    (message,) = any_bot.messages()
    assert message.state is MessageState.PROCESSED and message.verdict_status == "complete"
    (item,) = any_bot.outbox()
    assert item.state is OutboxState.SENT and item.kind == "acknowledgement"
    assert item.message_id == str(reply["Message-ID"]).strip()
    (app,) = any_bot.applications()
    assert app.status is ApplicationStatus.COMPLETE and app.school_urn == "122687"
    assert len(any_bot.versions(app.id)) == 1


def test_incomplete_application_gets_one_reply_listing_everything(bot: Bot, tmp_path: Path) -> None:
    raw = application(drop=("teacher1.trn", "school.telephone", "hod.email"), pattern="one_missing")
    deliver(tmp_path / "mail", raw)
    report = bot.run()

    assert [(o.status.value, o.reply) for o in report.outcomes] == [("incomplete", EmailKind.MISSING_INFORMATION)]
    (reply,) = sent_files(tmp_path / "outbox")
    text = body_text(reply)
    (message,) = bot.messages()
    verdict = message.verdict
    assert verdict is not None
    issues = verdict["issues"]
    assert {i["field"] for i in issues} >= {"teacher1.trn", "school.telephone"}
    for issue in issues:
        assert issue["label"] in text, issue
    # one_missing leaves the last signatory out of the Cc; the one whose address was dropped is a missing field.
    not_copied = [s for s in verdict["signatories"] if not s["copied"] and s["email"]]
    assert [s["role"] for s in not_copied] == ["teacher2"]
    for signatory in not_copied:
        assert signatory["name"] in text and signatory["email"] in text
    assert [i.kind for i in bot.outbox()] == ["missing_information"]
    (app,) = bot.applications()
    assert app.status is ApplicationStatus.INCOMPLETE


def test_resubmission_is_a_new_version_answered_on_its_own_state(any_bot: Bot, tmp_path: Path) -> None:
    deliver(tmp_path / "mail", application(drop=("teacher1.trn",), message_id="<v1@valley.example.sch.uk>"))
    any_bot.run()
    any_bot.now = NOW + timedelta(days=1)
    deliver(tmp_path / "mail", application(message_id="<v2@valley.example.sch.uk>",
                                           received=RECEIVED + timedelta(days=1)),
            when=RECEIVED + timedelta(days=1))
    report = any_bot.run()

    (outcome,) = report.outcomes
    assert outcome.status.value == "complete" and FlagCode.RESUBMISSION in outcome.flags
    (app,) = any_bot.applications()
    versions = any_bot.versions(app.id)
    assert len(versions) == 2
    assert "resubmission" not in versions[0].flags and "resubmission" in versions[1].flags
    assert app.status is ApplicationStatus.COMPLETE and app.latest_version_id == versions[1].id
    items = any_bot.outbox()
    assert [i.kind for i in items] == ["missing_information", "acknowledgement"]
    assert items[1].in_reply_to == "<v2@valley.example.sch.uk>"
    assert len(sent_files(tmp_path / "outbox")) == 2


def test_signatory_confirming_in_the_thread_completes_the_application(any_bot: Bot, tmp_path: Path) -> None:
    deliver(tmp_path / "mail", application(pattern="one_missing", message_id="<form@valley.example.sch.uk>"))
    any_bot.run()
    (first,) = any_bot.outbox()
    assert first.kind == "missing_information"
    (app,) = any_bot.applications()
    waiting = [s for s in any_bot.signatories(app.id).values() if not s.copied]
    assert len(waiting) == 1
    person = waiting[0]

    confirm = build_email(sender=f"{person.name} <{person.email}>", to=HUB_ADDRESS,
                          subject=f"Re: {first.subject}", body_text="I confirm.\n\nTom",
                          date=RECEIVED + timedelta(hours=3), message_id="<confirm-1@valley.example.sch.uk>",
                          in_reply_to=first.message_id, references=["<form@valley.example.sch.uk>", first.message_id])
    any_bot.now = NOW + timedelta(hours=4)
    deliver(tmp_path / "mail", confirm, when=RECEIVED + timedelta(hours=3))
    report = any_bot.run()

    (outcome,) = report.outcomes
    assert outcome.confirmed_roles == (person.role,)
    assert outcome.reply is EmailKind.ACKNOWLEDGEMENT
    (app,) = any_bot.applications()
    assert app.status is ApplicationStatus.COMPLETE
    assert any_bot.signatories(app.id)[person.role].confirmed
    items = any_bot.outbox()
    assert [i.kind for i in items] == ["missing_information", "acknowledgement"]
    assert items[1].in_reply_to == "<form@valley.example.sch.uk>"   # threaded to the school's form e-mail

    # A second "I confirm" (say from another device) changes nothing and is not acknowledged again.
    again = build_email(sender=f"{person.name} <{person.email}>", to=HUB_ADDRESS, subject=f"Re: {first.subject}",
                        body_text="I confirm (again)", date=RECEIVED + timedelta(hours=5),
                        message_id="<confirm-2@valley.example.sch.uk>", in_reply_to=first.message_id)
    deliver(tmp_path / "mail", again, when=RECEIVED + timedelta(hours=5))
    any_bot.run()
    assert [i.kind for i in any_bot.outbox()] == ["missing_information", "acknowledgement"]
    assert len(sent_files(tmp_path / "outbox")) == 2


# ---- duplicates -----------------------------------------------------------------------------------------------

def test_same_bytes_delivered_twice_is_processed_and_answered_once(any_bot: Bot, tmp_path: Path) -> None:
    raw = application(message_id="<twice@valley.example.sch.uk>")
    deliver(tmp_path / "mail", raw)
    deliver(tmp_path / "mail", raw)
    report = any_bot.run()

    assert report.fetched == {"central": 1}
    assert len(any_bot.messages()) == 1
    assert len(report.outcomes) == 1
    assert [i.kind for i in any_bot.outbox()] == ["acknowledgement"]
    assert len(sent_files(tmp_path / "outbox")) == 1


def test_same_message_id_with_different_bytes_is_flagged_duplicate(any_bot: Bot, tmp_path: Path) -> None:
    raw = application(message_id="<again@valley.example.sch.uk>")
    # The same e-mail as relayed by a second server: one more Received line, so different bytes.
    relayed = b"Received: from relay.example by mx.hub.example; Thu, 20 Jun 2024 10:00:05 +0100\r\n" + raw
    deliver(tmp_path / "mail", raw)
    deliver(tmp_path / "mail", relayed)
    report = any_bot.run()

    messages = any_bot.messages()
    assert len(messages) == 2 and all(m.state is MessageState.PROCESSED for m in messages)
    flags = [o.flags for o in report.outcomes]
    assert FlagCode.DUPLICATE not in flags[0] and FlagCode.DUPLICATE in flags[1]
    assert [o.reply for o in report.outcomes] == [EmailKind.ACKNOWLEDGEMENT, None]
    (app,) = any_bot.applications()
    assert len(any_bot.versions(app.id)) == 1
    assert len(any_bot.outbox()) == 1 and len(sent_files(tmp_path / "outbox")) == 1


def test_same_message_id_in_two_hubs_is_two_submissions(tmp_path: Path, sqlite_url: str) -> None:
    hubs = hub_toml("central", maildir="mail-a") + hub_toml("north", maildir="mail-b", name="North Maths Hub",
                                                            address="admin@north.example.org")
    b = make_bot(tmp_path, sqlite_url, hubs=hubs)
    try:
        raw = application(message_id="<both@valley.example.sch.uk>")
        deliver(tmp_path / "mail-a", raw)
        deliver(tmp_path / "mail-b", raw)
        report = b.run()
        assert report.fetched == {"central": 1, "north": 1}
        messages = b.messages()
        assert sorted(m.hub_id for m in messages) == ["central", "north"]
        assert all(FlagCode.DUPLICATE not in o.flags for o in report.outcomes)
        assert sorted(a.hub_id for a in b.applications()) == ["central", "north"]
        items = b.outbox()
        assert sorted(i.hub_id for i in items) == ["central", "north"] and len({i.message_id for i in items}) == 2
        assert len(sent_files(tmp_path / "outbox")) == 2
    finally:
        b.close()


# ---- automatic mail -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["out_of_office", "bounce", "x-autoreply"])
def test_automatic_mail_is_stored_and_never_answered(bot: Bot, tmp_path: Path, kind: str) -> None:
    raw = {"out_of_office": lambda: out_of_office(to=HUB_ADDRESS),
           "x-autoreply": lambda: out_of_office(to=HUB_ADDRESS, style="x-autoreply"),
           "bounce": lambda: bounce_report(to=HUB_ADDRESS)}[kind]()
    deliver(tmp_path / "mail", raw)
    report = bot.run()
    (message,) = bot.messages()
    assert message.raw == raw
    assert message.state is MessageState.PROCESSED and message.verdict_status == "ignored"
    assert [o.reply for o in report.outcomes] == [None]
    assert bot.outbox() == [] and sent_files(tmp_path / "outbox") == []


@pytest.mark.parametrize("cap", [None, 2])
def test_reply_loop_with_an_auto_responder_stops_at_the_daily_cap(tmp_path: Path, sqlite_url: str,
                                                                   cap: int | None) -> None:
    """A school's "helpdesk" robot sends no Auto-Submitted header and answers everything with "please find
    attached our application" and nothing attached, so each of its messages earns a missing-attachment reply."""
    extra = f"max_replies_per_address_per_day = {cap}" if cap else ""
    b = make_bot(tmp_path, sqlite_url, extra=extra)
    robot = "helpdesk@robot.example.sch.uk"
    try:
        previous: str | None = None
        for round_ in range(9):
            when = RECEIVED + timedelta(minutes=10 * round_)
            raw = build_email(sender=f"Helpdesk <{robot}>", to=HUB_ADDRESS,
                              subject="Re: Application" if previous else "Application",
                              body_text="Thank you for your e-mail. Please find attached our application form.",
                              date=when, message_id=f"<robot-{round_}@robot.example.sch.uk>",
                              in_reply_to=previous, references=[previous] if previous else ())
            deliver(tmp_path / "mail", raw, when=when)
            b.now = NOW + timedelta(minutes=10 * round_)
            b.run()
            replies = [i for i in b.outbox() if robot in i.to]
            previous = replies[-1].message_id if replies else previous
        limit = cap or 5
        replies = [i for i in b.outbox() if robot in i.to]
        assert len(replies) == limit
        assert all(i.kind == "missing_attachment" for i in replies)
        assert len(b.events("reply_suppressed")) == 9 - limit
        assert len(sent_files(tmp_path / "outbox")) == limit
        assert all(m.state is MessageState.PROCESSED for m in b.messages())
    finally:
        b.close()


# ---- failures -------------------------------------------------------------------------------------------------

@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make processing raise for the message whose Message-ID is <poison@...>; returns the attempts seen."""
    attempts: list[int] = []
    real = Workflow.process

    def process(self, session, message, now):
        if message.message_id == "<poison@valley.example.sch.uk>":
            attempts.append(message.attempts)
            raise RuntimeError("simulated bug")
        return real(self, session, message, now)

    monkeypatch.setattr(Workflow, "process", process)
    return attempts


def _batch_with_poison(mail: Path) -> None:
    deliver(mail, application(urn="100001", message_id="<ok-1@valley.example.sch.uk>"))
    deliver(mail, application(urn="100002", message_id="<poison@valley.example.sch.uk>"))
    deliver(mail, application(urn="100003", message_id="<ok-2@valley.example.sch.uk>"))


def test_failing_message_is_retried_then_quarantined_while_the_others_are_processed(
        bot: Bot, tmp_path: Path, poisoned: list[int]) -> None:
    _batch_with_poison(tmp_path / "mail")
    for _ in range(4):
        bot.run()
        bot.now += timedelta(minutes=5)

    by_id = {m.message_id: m for m in bot.messages()}
    poison = by_id["<poison@valley.example.sch.uk>"]
    assert poison.state is MessageState.QUARANTINED and poison.attempts == 3
    # First read in its batch and, when that failed, alone (the batch is then done one message at a time); a
    # message tried before is claimed alone, so each later attempt reads it once.
    assert poisoned == [1, 1, 2, 3]
    assert "RuntimeError" in (poison.error or "")
    assert len(bot.events("processing_failed")) == 3 and len(bot.events("message_quarantined")) == 1
    for ok in ("<ok-1@valley.example.sch.uk>", "<ok-2@valley.example.sch.uk>"):
        assert by_id[ok].state is MessageState.PROCESSED
    items = bot.outbox()
    assert sorted(i.in_reply_to for i in items) == ["<ok-1@valley.example.sch.uk>", "<ok-2@valley.example.sch.uk>"]
    assert len(sent_files(tmp_path / "outbox")) == 2


def test_a_failed_message_is_retried_next_cycle_not_in_the_same_one(bot: Bot, tmp_path: Path,
                                                                     poisoned: list[int]) -> None:
    _batch_with_poison(tmp_path / "mail")
    report = bot.run()
    assert report.failed_messages == 1
    assert poisoned == [1, 1]   # in its batch, then alone: one attempt
    poison = next(m for m in bot.messages() if m.message_id == "<poison@valley.example.sch.uk>")
    assert poison.state is MessageState.STORED


def test_second_cycle_does_nothing_new(any_bot: Bot, tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    deliver(mail, application(urn="100001"))
    deliver(mail, application(urn="100002", drop=("teacher1.trn",)))
    deliver(mail, question_email(to=HUB_ADDRESS))
    deliver(mail, forgot_attachment_email(to=HUB_ADDRESS))
    deliver(mail, out_of_office(to=HUB_ADDRESS))
    first = any_bot.run()
    assert sum(first.fetched.values()) == 5 and len(first.outcomes) == 5
    assert first.outbox.sent == 3
    files = sorted(p.name for p in (tmp_path / "outbox").glob("*.eml"))
    counts = _counts(any_bot)

    any_bot.now += timedelta(minutes=5)
    second = any_bot.run()
    assert second.fetched == {"central": 0}
    assert second.outcomes == [] and second.failed_messages == 0
    assert second.outbox.claimed == 0 and second.outbox.uncertain == 0
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*.eml")) == files
    assert _counts(any_bot) == counts


def _counts(b: Bot) -> tuple[int, ...]:
    with b.db.session() as session:
        return tuple(session.scalar(select(func.count()).select_from(model))
                     for model in (Message, OutboxItem, Application, ApplicationVersion))

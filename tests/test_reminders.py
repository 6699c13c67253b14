"""Reminders, end to end: a realistic mailbox (four schools writing to the Central hub: one complete, one with
fields missing, one with a signatory not copied, one completed later by that signatory's "I confirm") is processed
by the worker, then ``bot.staff.jobs.remind`` is run at chosen moments with the clock frozen by time-machine and the same
moment handed in explicitly.

What is proven: nothing is due before 09:00 London on deadline minus 7 days; at that moment the school's reminder
lists exactly what is missing and the signatory's note goes only to the signatory not copied; a rerun finds nothing
new; the 2-day reminder follows; a worker that was down across both points sends only the later one; nothing goes
after 23:59:59 London on the deadline day, in British Summer Time and in winter; nothing to a complete application
or to an address that bounced (a delivery report in the mailbox, or a reply refused with 550); a crash between
queueing and sending loses and repeats nothing; two workers on PostgreSQL queue each reminder once; a hub's own
deadline and notification dates move the points; hub staff get a note before a notification date with the counts;
and the reminders reach a real SMTP server once, through the worker's outbox drain.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select

from bot.sending.smtp import SendResult, SendStatus
from bot.staff import jobs
from bot.staff.reminders import DueReminder, describe
from bot.staff.views import application_views
from samples.applications import LONDON, SCHOOLS, School, application_email, complete_answers, fill_form, programme
from samples.mail import bounce_report, build_email
from storage.db import open_database
from storage.models import ApplicationStatus, OutboxItem, OutboxState
from templates import EmailKind
from tests.test_workflow import Bot, deliver, sent_files, write_config

REPO = Path(__file__).resolve().parents[1]
UTC = timezone.utc

PID = "secondary-tfm-wg-2024"
HUB_ADDRESS = programme(PID).hub.address
DEADLINE = date(2024, 6, 28)
RECEIVED = datetime(2024, 6, 10, 10, 0, tzinfo=LONDON)
PROCESSED = datetime(2024, 6, 10, 12, 0, tzinfo=LONDON)
STAFF = "lead@central.example.org"
SEVEN = datetime(2024, 6, 21, 9, 0, tzinfo=LONDON)          # deadline - 7 days, 09:00 BST (08:00Z)
TWO = datetime(2024, 6, 26, 9, 0, tzinfo=LONDON)            # deadline - 2 days

VALLEY, STANNES, HILLSIDE, RIVERSIDE = SCHOOLS
STANNES_MISSING = ("school.telephone", "teacher1.trn")


# ---- builders (shared with test_digest) -----------------------------------------------------------------------

def hub_block(hub_id: str = "central", *, programmes: tuple[str, ...] = (PID,), address: str = HUB_ADDRESS,
              name: str = "Central Maths Hub", maildir: str = "mail", staff: tuple[str, ...] = (STAFF,),
              dates: dict[str, str] | None = None) -> str:
    """One [[hubs]] table on a Maildir; ``dates`` maps a programme id to the TOML body of its dates override."""
    lines = ["[[hubs]]", f'id = "{hub_id}"', f'name = "{name}"', f'address = "{address}"',
             "programmes = [" + ", ".join(f'"{p}"' for p in programmes) + "]", f'maildir = "{maildir}"',
             "staff = [" + ", ".join(f'"{s}"' for s in staff) + "]"]
    for pid, body in (dates or {}).items():
        lines += [f'[hubs.dates."{pid}"]', body]
    return "\n".join(lines) + "\n"


def form_email(school: School, *, pid: str = PID, drop: tuple[str, ...] = (), pattern: str = "all",
               received: datetime = RECEIVED, message_id: str | None = None,
               changes: dict[str, str] | None = None) -> bytes:
    """The e-mail ``school`` sends with its filled form: every answer except ``drop``, with ``changes``."""
    answers = {k: v for k, v in complete_answers(pid, school).items() if k not in drop}
    answers.update(changes or {})
    return application_email(pid, fill_form(pid, answers), answers=answers, pattern=pattern, received=received,
                             message_id=message_id or f"<form-{school.urn}-{received:%m%d%H%M}@{school.domain}>")


def person(school: School, role: str) -> tuple[str, str]:
    found = school.person(role)
    assert found is not None
    return found[0], found[1]


def confirmation(school: School, role: str, *, in_reply_to: str, references: tuple[str, ...], when: datetime,
                 hub_address: str = HUB_ADDRESS) -> bytes:
    """A signatory answering "I confirm" in the application's thread."""
    name, address = person(school, role)
    return build_email(sender=f"{name} <{address}>", to=hub_address, subject="Re: your application",
                       body_text=f"I confirm.\n\n{name}", date=when, received=when,
                       message_id=f"<confirm-{role}-{when:%m%d%H%M}@{school.domain}>", in_reply_to=in_reply_to,
                       references=references)


def all_at_once(databases: list, job) -> list:
    """Run ``job(db, i)`` for every database connection in its own thread, all released at the same instant (two
    or more workers racing for the same work); returns the results, and fails on any error."""
    start = threading.Barrier(len(databases))
    results: list = []
    errors: list[BaseException] = []

    def run(db, i: int) -> None:
        try:
            start.wait()
            results.append(job(db, i))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db, i)) for i, db in enumerate(databases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


@contextmanager
def frozen(now: datetime) -> Iterator[datetime]:
    """The wall clock stopped at ``now`` (the jobs get ``now`` explicitly as well)."""
    with time_machine.travel(now, tick=False):
        yield now


def remind(bot: Bot, now: datetime, *, send: bool = True) -> list[DueReminder]:
    bot.now = now
    with frozen(now):
        return jobs.remind(bot.db, bot.config, bot.settings, now, send=send, actor="test")


def reminder_rows(bot: Bot) -> list[OutboxItem]:
    kinds = [EmailKind.REMINDER, EmailKind.SIGNATORY_REMINDER, EmailKind.STAFF_NOTICE]
    return bot.scalars(select(OutboxItem).where(OutboxItem.kind.in_(kinds)).order_by(OutboxItem.id))


def app_ids(bot: Bot) -> dict[str, int]:
    with bot.db.session() as session:
        return {a.display_name: a.id for a in application_views(session)}


def make_bot(tmp_path: Path, url: str, *, hubs: str | None = None, extra: str = "",
             smtp: tuple[str, int] | None = None) -> Bot:
    return Bot(write_config(tmp_path, url, hubs=hubs if hubs is not None else hub_block(), smtp=smtp, extra=extra))


def central_mailbox(bot: Bot, mail: Path) -> dict[str, int]:
    """The realistic round: Valley complete; St Anne's without a telephone number and teacher 1's TRN; Hillside
    and Riverside with their teacher 2 left off the Cc; Riverside's teacher 2 then confirms in the thread."""
    deliver(mail, form_email(VALLEY, received=RECEIVED), RECEIVED)
    deliver(mail, form_email(STANNES, drop=STANNES_MISSING, received=RECEIVED + timedelta(minutes=5)),
            RECEIVED + timedelta(minutes=5))
    deliver(mail, form_email(HILLSIDE, pattern="one_missing", received=RECEIVED + timedelta(minutes=10)),
            RECEIVED + timedelta(minutes=10))
    riverside_form = form_email(RIVERSIDE, pattern="one_missing", received=RECEIVED + timedelta(minutes=15),
                                message_id="<form-riverside@riverside.example.sch.uk>")
    deliver(mail, riverside_form, RECEIVED + timedelta(minutes=15))
    bot.now = PROCESSED
    report = bot.run()
    assert report.failed_messages == 0 and len(report.outcomes) == 4

    ids = app_ids(bot)
    ask = next(i for i in bot.outbox() if i.application_id == ids[RIVERSIDE.name])
    when = RECEIVED + timedelta(days=1)
    deliver(mail, confirmation(RIVERSIDE, "teacher2", in_reply_to=ask.message_id,
                               references=("<form-riverside@riverside.example.sch.uk>", ask.message_id), when=when),
            when)
    bot.now = PROCESSED + timedelta(days=1)
    (outcome,) = bot.run().outcomes
    assert outcome.confirmed_roles == ("teacher2",)

    with bot.db.session() as session:
        status = {a.display_name: a.status for a in application_views(session)}
    assert status == {"Valley School": ApplicationStatus.COMPLETE,
                      "St Anne's C of E Primary": ApplicationStatus.INCOMPLETE,
                      "Hillside Academy": ApplicationStatus.INCOMPLETE,
                      "Riverside Community School": ApplicationStatus.COMPLETE}
    return ids


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    yield b
    b.close()


@pytest.fixture
def round_(bot: Bot, tmp_path: Path) -> dict[str, int]:
    return central_mailbox(bot, tmp_path / "mail")


def expected_keys(ids: dict[str, int], days: int) -> set[str]:
    # No signatory note to Hillside's teacher 2: their address is only on the form, never on the school's e-mail,
    # so the bot does not write to it (the school's reminder names them instead).
    return {f"reminder:{ids[STANNES.name]}:{days}", f"reminder:{ids[HILLSIDE.name]}:{days}"}


# ---- the points -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("now", [
    datetime(2024, 6, 20, 12, 0, tzinfo=LONDON),
    datetime(2024, 6, 21, 8, 59, 59, tzinfo=LONDON),
    datetime(2024, 6, 21, 7, 59, 59, tzinfo=UTC),     # 08:59:59 BST
], ids=["day-before", "08:59:59-london", "07:59:59Z"])
def test_nothing_is_due_before_nine_london_on_deadline_minus_seven(bot: Bot, round_: dict[str, int],
                                                                    now: datetime) -> None:
    assert remind(bot, now) == []
    assert reminder_rows(bot) == []
    assert describe([], now).startswith("No reminders due")


def test_seven_day_reminder_lists_exactly_what_is_missing_and_the_signatory_note_goes_to_them_alone(
        bot: Bot, round_: dict[str, int], tmp_path: Path) -> None:
    ids = round_
    due = remind(bot, datetime(2024, 6, 21, 8, 0, tzinfo=UTC))    # 09:00 BST
    assert {d.key for d in due} == expected_keys(ids, 7)
    by_key = {d.key: d for d in due}

    stannes = by_key[f"reminder:{ids[STANNES.name]}:7"]
    assert stannes.kind is EmailKind.REMINDER
    assert stannes.to == ("office@stannes.example.sch.uk",)
    assert set(stannes.cc) == {person(STANNES, r)[1] for r in ("head", "hod", "teacher1", "teacher2")}
    text = stannes.email.text
    assert "St Anne's C of E Primary" in text and "28 June 2024" in text and "in 7 days" in text
    missing = [line for line in text.splitlines() if line.startswith("  - ")]
    assert missing == ["  - Contact telephone number: this is required", "  - Teacher Ref. Number: this is required"]
    assert "Still waiting for these signatories" not in text
    assert stannes.in_reply_to == f"<form-{STANNES.urn}-06101005@{STANNES.domain}>"

    hillside = by_key[f"reminder:{ids[HILLSIDE.name]}:7"]
    assert hillside.to == ("office@hillside.example.sch.uk",)
    waiting_name, waiting_address = person(HILLSIDE, "teacher2")
    assert waiting_address not in hillside.cc
    assert set(hillside.cc) == {person(HILLSIDE, r)[1] for r in ("head", "hod", "teacher1")}
    assert [line for line in hillside.email.text.splitlines() if line.startswith("  - ")] == \
        [f"  - Mastery Advocate Teacher 2: {waiting_name} ({waiting_address})"]
    assert "Still needed on the form" not in hillside.email.text

    # Nobody gets a signatory note: teacher 2's address is only on the form, and the copied signatories are only
    # ever in the school reminder's Cc.
    assert [d for d in due if d.kind is EmailKind.SIGNATORY_REMINDER] == []
    assert waiting_address not in {a for d in due for a in (*d.to, *d.cc)}

    # Sent by the outbox as ordinary threaded, auto-submitted mail.
    bot.now = datetime(2024, 6, 21, 9, 1, tzinfo=LONDON)
    assert bot.worker().send_due().sent == 2
    queued = {r.message_id: r for r in reminder_rows(bot)}
    files = [m for m in sent_files(tmp_path / "outbox") if str(m["Message-ID"]).strip() in queued]
    assert len(files) == 2 and all(r.state is OutboxState.SENT for r in queued.values())
    for message in files:
        assert message["Auto-Submitted"] == "auto-replied"
        assert str(message["In-Reply-To"]).strip().startswith("<form-")


def test_a_reminder_is_never_queued_twice(bot: Bot, round_: dict[str, int], tmp_path: Path) -> None:
    first = remind(bot, SEVEN)
    assert len(first) == 2
    bot.now = SEVEN
    bot.run()
    files = len(sent_files(tmp_path / "outbox"))
    rows = [(r.id, r.dedupe_key, r.state) for r in reminder_rows(bot)]
    assert all(state is OutboxState.SENT for _, _, state in rows)
    for later in (SEVEN, SEVEN + timedelta(minutes=1), SEVEN + timedelta(hours=6), SEVEN + timedelta(days=1),
                  TWO - timedelta(seconds=1)):
        assert remind(bot, later) == [], later
        bot.run()
    assert [(r.id, r.dedupe_key, r.state) for r in reminder_rows(bot)] == rows
    assert len(sent_files(tmp_path / "outbox")) == files
    assert len(bot.events("reminder_queued")) == 2


def test_two_day_reminder_follows_the_seven_day_one(bot: Bot, round_: dict[str, int]) -> None:
    ids = round_
    assert {d.key for d in remind(bot, SEVEN)} == expected_keys(ids, 7)
    assert remind(bot, TWO - timedelta(seconds=1)) == []
    due = remind(bot, TWO)
    assert {d.key for d in due} == expected_keys(ids, 2)
    stannes = next(d for d in due if d.key.startswith(f"reminder:{ids[STANNES.name]}:"))
    assert "in 2 days" in stannes.email.text
    assert remind(bot, TWO + timedelta(hours=3)) == []
    assert sorted(r.dedupe_key for r in reminder_rows(bot)) == sorted(expected_keys(ids, 7) | expected_keys(ids, 2))


def test_a_worker_down_across_both_points_sends_only_the_later_one(bot: Bot, round_: dict[str, int]) -> None:
    ids = round_
    # Down from before the 7-day point until after the 2-day point.
    due = remind(bot, TWO + timedelta(hours=5))
    assert {d.key for d in due} == expected_keys(ids, 2)
    assert remind(bot, TWO + timedelta(days=1)) == []
    assert {r.dedupe_key for r in reminder_rows(bot)} == expected_keys(ids, 2)


def test_nothing_for_a_complete_application_at_any_point(bot: Bot, round_: dict[str, int]) -> None:
    ids = round_
    complete = {ids[VALLEY.name], ids[RIVERSIDE.name]}
    seen: list[DueReminder] = []
    for now in (SEVEN, SEVEN + timedelta(days=2), TWO, datetime(2024, 6, 28, 23, 59, 59, tzinfo=LONDON)):
        seen += remind(bot, now)
    assert seen and not [d for d in seen if d.application_id in complete]
    addresses = {a for r in reminder_rows(bot) for a in (*r.to, *r.cc)}
    assert not [a for a in addresses if a.endswith(VALLEY.domain) or a.endswith(RIVERSIDE.domain)]


# ---- the end of the deadline day ------------------------------------------------------------------------------

WINTER_PID = "secondary-tfm-wg-2016"
WINTER_HUB = programme(WINTER_PID).hub.address


@pytest.mark.parametrize("pid, hub_address, received, seven_before, seven_at, before_end, after_end", [
    pytest.param(PID, HUB_ADDRESS, RECEIVED,
                 datetime(2024, 6, 21, 7, 59, 59, tzinfo=UTC), datetime(2024, 6, 21, 8, 0, tzinfo=UTC),
                 datetime(2024, 6, 28, 22, 59, 59, tzinfo=UTC), datetime(2024, 6, 28, 23, 0, 0, tzinfo=UTC),
                 id="summer-bst"),
    pytest.param(WINTER_PID, WINTER_HUB, datetime(2016, 12, 1, 10, 30, tzinfo=LONDON),
                 datetime(2017, 1, 3, 8, 59, 59, tzinfo=UTC), datetime(2017, 1, 3, 9, 0, tzinfo=UTC),
                 datetime(2017, 1, 10, 23, 59, 59, tzinfo=UTC), datetime(2017, 1, 11, 0, 0, 0, tzinfo=UTC),
                 id="winter-gmt"),
])
def test_points_and_deadline_end_are_london_time(tmp_path: Path, pid: str, hub_address: str, received: datetime,
                                                  seven_before: datetime, seven_at: datetime, before_end: datetime,
                                                  after_end: datetime) -> None:
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}",
                 hubs=hub_block("hub", programmes=(pid,), address=hub_address, staff=()))   # schools only
    try:
        deliver(tmp_path / "mail", form_email(STANNES, pid=pid, drop=("school.telephone",), received=received),
                received)
        b.now = received + timedelta(hours=1)
        (outcome,) = b.run().outcomes
        assert outcome.status.value == "incomplete"
        (app_id,) = app_ids(b).values()

        # Previews (send=False) change nothing, so each moment is asked independently.
        assert remind(b, seven_before, send=False) == []
        assert [d.key for d in remind(b, seven_at, send=False)] == [f"reminder:{app_id}:7"]
        last = remind(b, before_end, send=False)
        assert [d.key for d in last] == [f"reminder:{app_id}:2"]
        assert "today" in last[0].email.text
        assert remind(b, after_end, send=False) == []
        assert remind(b, after_end, send=True) == []
        assert remind(b, after_end + timedelta(days=1), send=True) == []
        assert reminder_rows(b) == []
    finally:
        b.close()


# ---- bounced addresses ----------------------------------------------------------------------------------------

def test_nothing_goes_to_an_address_that_bounced(tmp_path: Path) -> None:
    """Hillside's teacher 2 is named as failed in a delivery report that came back to the hub; St Anne's office
    refused our first reply with 550. Neither is written to again; everyone else still is."""
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    refused = "office@stannes.example.sch.uk"
    gone = person(HILLSIDE, "teacher2")[1]
    eml = tmp_path / "outbox"

    def sender(message: EmailMessage) -> SendResult:
        if refused in str(message["To"]):
            return SendResult(SendStatus.PERMANENT, 550, "5.1.1 <mailbox> User unknown")
        from bot.sending.outbox import eml_sender
        return eml_sender(eml)(message)

    try:
        mail = tmp_path / "mail"
        deliver(mail, form_email(STANNES, drop=STANNES_MISSING), RECEIVED)
        deliver(mail, form_email(HILLSIDE, pattern="one_missing", received=RECEIVED + timedelta(minutes=5)),
                RECEIVED + timedelta(minutes=5))
        b.now = PROCESSED
        b.run(sender=sender)
        later = RECEIVED + timedelta(days=2)
        deliver(mail, bounce_report(failed_recipient=gone, to=HUB_ADDRESS, date=later), later)
        b.now = PROCESSED + timedelta(days=2)
        report = b.run(sender=sender)
        assert [o.status.value for o in report.outcomes] == ["ignored"]
        failed = [i for i in b.outbox() if i.state is OutboxState.FAILED]
        assert [(i.kind, i.to) for i in failed] == [("missing_information", [refused])]

        ids = app_ids(b)
        due = remind(b, SEVEN)
        assert {d.key for d in due} == {f"reminder:{ids[HILLSIDE.name]}:7"}
        addresses = {a for d in due for a in (*d.to, *d.cc)}
        assert refused not in addresses and gone not in addresses
        assert remind(b, TWO) and all(refused not in (*d.to, *d.cc) and gone not in (*d.to, *d.cc)
                                      for d in reminder_rows(b))
    finally:
        b.close()


def test_a_bounce_for_an_upper_case_address_still_stops_the_reminder(tmp_path: Path) -> None:
    """Mail servers write the Final-Recipient as the address was given to them, often in another case."""
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    gone = person(HILLSIDE, "teacher2")[1]
    try:
        deliver(tmp_path / "mail", form_email(HILLSIDE, pattern="one_missing"), RECEIVED)
        deliver(tmp_path / "mail", bounce_report(failed_recipient=gone.upper(), to=HUB_ADDRESS),
                RECEIVED + timedelta(hours=1))
        b.now = PROCESSED
        b.run()
        assert not [d for d in remind(b, SEVEN) if gone in d.to]
    finally:
        b.close()


# ---- a signatory answering the reminder -----------------------------------------------------------------------

def test_signatory_confirming_in_reply_to_the_reminder_completes_it_and_stops_the_next(
        bot: Bot, round_: dict[str, int], tmp_path: Path) -> None:
    ids = round_
    remind(bot, SEVEN)
    bot.now = SEVEN + timedelta(minutes=1)
    bot.run()
    # The school's reminder reaches teacher 2 through the office; they answer it from their own address.
    note = next(r for r in reminder_rows(bot) if r.dedupe_key == f"reminder:{ids[HILLSIDE.name]}:7")
    when = SEVEN + timedelta(hours=2)
    deliver(tmp_path / "mail", confirmation(HILLSIDE, "teacher2", in_reply_to=note.message_id,
                                            references=(note.message_id,), when=when), when)
    bot.now = when + timedelta(minutes=5)
    (outcome,) = bot.run().outcomes
    assert outcome.confirmed_roles == ("teacher2",)
    due = remind(bot, TWO)
    assert {d.key for d in due} == {f"reminder:{ids[STANNES.name]}:2"}


# ---- crash and concurrency ------------------------------------------------------------------------------------

CRASH_AFTER_QUEUE = """
import os, signal, sys
from datetime import datetime
from bot.staff import jobs
from bot.config import load_config
from bot.context import check_settings
from storage.db import open_database
config = load_config(__import__("pathlib").Path(sys.argv[1]))
db = open_database(config.database_url)
due = jobs.remind(db, config, check_settings(config), datetime.fromisoformat(sys.argv[2]), send=True, actor="doomed")
print(len(due), flush=True)
os.kill(os.getpid(), signal.SIGKILL)   # queued and committed; the outbox drain never runs
"""


def test_a_crash_between_queueing_and_sending_neither_loses_nor_repeats(bot: Bot, round_: dict[str, int],
                                                                         tmp_path: Path) -> None:
    before = len(sent_files(tmp_path / "outbox"))
    crashed = subprocess.run([sys.executable, "-c", CRASH_AFTER_QUEUE, str(bot.config_path), SEVEN.isoformat()],
                             cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert crashed.returncode == -9, crashed.stderr
    assert crashed.stdout.strip() == "2"
    assert [r.state for r in reminder_rows(bot)] == [OutboxState.PENDING] * 2

    # The restarted worker: the reminder job finds nothing new, the drain sends the three once.
    later = SEVEN + timedelta(minutes=30)
    assert remind(bot, later) == []
    bot.now = later
    with frozen(later):
        report = bot.run()
    assert report.outbox.sent == 2 and report.outbox.uncertain == 0
    assert len(sent_files(tmp_path / "outbox")) == before + 2
    assert remind(bot, later + timedelta(hours=1)) == []
    bot.now = later + timedelta(hours=1)
    assert bot.run().outbox.claimed == 0
    assert len(sent_files(tmp_path / "outbox")) == before + 2
    assert all(r.state is OutboxState.SENT for r in reminder_rows(bot))


def test_two_workers_on_postgresql_queue_each_reminder_once(tmp_path: Path, pg_url: str) -> None:
    from tests.servers import _empty_postgres

    _empty_postgres(pg_url)
    b = make_bot(tmp_path, pg_url)
    try:
        ids = central_mailbox(b, tmp_path / "mail")
        workers = [open_database(pg_url, migrate=False) for _ in range(4)]
        for point in (SEVEN, TWO):
            with frozen(point):
                results = all_at_once(workers, lambda db, i, now=point: jobs.remind(
                    db, b.config, b.settings, now, send=True, actor=f"worker-{i}"))
            assert len(results) == len(workers)
        keys = [r.dedupe_key for r in reminder_rows(b)]
        assert Counter(keys) == Counter(expected_keys(ids, 7) | expected_keys(ids, 2))
        queued = b.events("reminder_queued")
        assert Counter(e.detail["key"] for e in queued) == Counter(keys)

        # Both drain at once: each reminder reaches the .eml outbox once.
        drained = []
        start = threading.Barrier(2)

        def drain(i: int) -> None:
            from bot.sending.outbox import drain_outbox, eml_sender
            start.wait()
            drained.append(drain_outbox(workers[i], eml_sender(tmp_path / "outbox"), worker=f"drain-{i}",
                                        now=TWO + timedelta(minutes=1)))

        threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(r.sent for r in drained) == 4
        assert all(r.state is OutboxState.SENT for r in reminder_rows(b))
        for db in workers:
            db.close()
    finally:
        b.close()


# ---- per-hub dates --------------------------------------------------------------------------------------------

def test_a_hubs_own_deadline_moves_the_reminder_points(tmp_path: Path) -> None:
    hubs = hub_block(dates={PID: 'deadline = "2024-07-12"'})
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", hubs=hubs)
    try:
        deliver(tmp_path / "mail", form_email(STANNES, drop=STANNES_MISSING), RECEIVED)
        b.now = PROCESSED
        b.run()
        (app_id,) = app_ids(b).values()
        # The programme's own points and deadline end are not the hub's.
        assert remind(b, SEVEN) == [] and remind(b, TWO) == []
        assert remind(b, datetime(2024, 6, 28, 23, 30, tzinfo=LONDON)) == []
        assert remind(b, datetime(2024, 7, 5, 8, 59, tzinfo=LONDON)) == []
        (seven,) = remind(b, datetime(2024, 7, 5, 9, 0, tzinfo=LONDON))
        assert seven.key == f"reminder:{app_id}:7" and "12 July 2024" in seven.email.text
        (two,) = remind(b, datetime(2024, 7, 10, 9, 0, tzinfo=LONDON))
        assert two.key == f"reminder:{app_id}:2"
        assert remind(b, datetime(2024, 7, 13, 0, 0, tzinfo=LONDON)) == []
    finally:
        b.close()


def test_configured_reminder_days_are_used(tmp_path: Path) -> None:
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}",
                 extra="[schedule]\nreminder_days_before = [10, 1]\n")
    try:
        deliver(tmp_path / "mail", form_email(STANNES, drop=STANNES_MISSING), RECEIVED)
        b.now = PROCESSED
        b.run()
        (app_id,) = app_ids(b).values()
        assert remind(b, datetime(2024, 6, 18, 8, 59, tzinfo=LONDON)) == []
        assert [d.key for d in remind(b, datetime(2024, 6, 18, 9, 0, tzinfo=LONDON))] == [f"reminder:{app_id}:10"]
        assert remind(b, SEVEN) == [] and remind(b, TWO) == []
        assert [d.key for d in remind(b, datetime(2024, 6, 27, 9, 0, tzinfo=LONDON))] == [f"reminder:{app_id}:1"]
    finally:
        b.close()


# ---- staff notices --------------------------------------------------------------------------------------------

TRG = "primary-trg-pilot-2019"
TRG_HUB = programme(TRG).hub.address
TRG_STAFF = "lead@cambridgemathshub.org"


def trg_bot(tmp_path: Path, dates: dict[str, str] | None = None) -> Bot:
    hubs = hub_block("cambridge", programmes=(TRG,), address=TRG_HUB, name="Cambridge Maths Hub",
                     staff=(TRG_STAFF,), dates=dates)
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", hubs=hubs)
    mail = tmp_path / "mail"
    day = datetime(2019, 3, 1, 10, 0, tzinfo=LONDON)
    deliver(mail, form_email(VALLEY, pid=TRG, received=day), day)                                  # complete
    deliver(mail, form_email(STANNES, pid=TRG, drop=("school.telephone",), received=day), day)     # incomplete
    deliver(mail, form_email(HILLSIDE, pid=TRG, drop=("teacher2.year_groups",), received=day), day)
    b.now = day + timedelta(hours=1)
    b.run()
    resubmitted = datetime(2019, 3, 4, 16, 0, tzinfo=LONDON)                                     # resubmission
    deliver(mail, form_email(HILLSIDE, pid=TRG, received=resubmitted), resubmitted)
    late = datetime(2019, 3, 7, 0, 0, 1, tzinfo=LONDON)                                          # late
    deliver(mail, form_email(RIVERSIDE, pid=TRG, received=late), late)
    b.now = late + timedelta(hours=1)
    report = b.run()
    assert report.failed_messages == 0
    return b


def test_staff_get_a_note_before_a_notification_date_with_the_counts(tmp_path: Path) -> None:
    b = trg_bot(tmp_path)
    try:
        ids = app_ids(b)
        assert remind(b, datetime(2019, 3, 19, 8, 59, 59, tzinfo=LONDON)) == []
        (note,) = remind(b, datetime(2019, 3, 19, 9, 0, tzinfo=LONDON))
        assert note.kind is EmailKind.STAFF_NOTICE
        assert note.key == f"staff:cambridge:{TRG}:2019-03-22"
        assert note.to == (TRG_STAFF,) and note.cc == ()
        text = note.email.text
        assert "Selected schools informed by 22 March 2019 (in 3 days)" in text
        counts = dict(line.strip().split(":") for line in text.splitlines()
                      if line.strip().split(":")[0] in ("Applications", "Complete", "Incomplete", "Late", "Flagged"))
        # Riverside is late and nothing else: counted once, as late; "Flagged" is Hillside's resubmission.
        assert {k: int(v) for k, v in counts.items()} == {"Applications": 4, "Complete": 3, "Incomplete": 1,
                                                          "Late": 1, "Flagged": 1}
        rows = sorted(line.strip() for line in text.splitlines() if line.startswith("  - "))
        assert rows == sorted([
            f"- No. {ids[VALLEY.name]} Valley School (URN {VALLEY.urn}): complete; no decision yet",
            f"- No. {ids[STANNES.name]} St Anne's C of E Primary (URN {STANNES.urn}): incomplete; no decision yet",
            f"- No. {ids[HILLSIDE.name]} Hillside Academy (URN {HILLSIDE.urn}): complete; no decision yet "
            "[resubmission]",
            f"- No. {ids[RIVERSIDE.name]} Riverside Community School (URN {RIVERSIDE.urn}): complete; "
            "no decision yet [late]",
        ])
        # The outcome date: every school without a decision is listed, as getting nothing until staff decide.
        assert "NO DECISION YET (4): these schools will get nothing until you record a decision" in text
        undecided = sorted(line.strip() for line in text.splitlines() if line.startswith("  * "))
        assert len(undecided) == 4 and all(line.startswith("* No. ") for line in undecided)
        assert "hubbot " not in text and "hubbot " not in note.email.html    # no shell commands for staff
        assert len(ids) == 4
        # Once: not again that day, nor on the day itself; nothing after it.
        assert remind(b, datetime(2019, 3, 20, 9, 0, tzinfo=LONDON)) == []
        assert remind(b, datetime(2019, 3, 22, 17, 0, tzinfo=LONDON)) == []
        assert [r.dedupe_key for r in reminder_rows(b)] == [note.key]
        # No school reminders: the deadline (6 March) has passed.
        assert all(r.kind == "staff_notice" for r in reminder_rows(b))
    finally:
        b.close()


def test_a_missed_staff_note_is_still_sent_on_the_day_but_not_after(tmp_path: Path) -> None:
    b = trg_bot(tmp_path)
    try:
        assert remind(b, datetime(2019, 3, 23, 0, 0, 1, tzinfo=LONDON), send=False) == []
        (note,) = remind(b, datetime(2019, 3, 22, 8, 0, tzinfo=LONDON))
        assert "(today)" in note.email.text
    finally:
        b.close()


def test_a_hubs_own_notification_dates_move_the_staff_note(tmp_path: Path) -> None:
    dates = {TRG: 'notifications = [{ date = "2019-04-05", what = "selected schools informed" }]'}
    b = trg_bot(tmp_path, dates)
    try:
        assert remind(b, datetime(2019, 3, 19, 9, 0, tzinfo=LONDON)) == []
        assert remind(b, datetime(2019, 4, 2, 8, 59, tzinfo=LONDON)) == []
        (note,) = remind(b, datetime(2019, 4, 2, 9, 0, tzinfo=LONDON))
        assert note.key == f"staff:cambridge:{TRG}:2019-04-05"
        assert "5 April 2019" in note.email.text
    finally:
        b.close()


# ---- through SMTP ---------------------------------------------------------------------------------------------

def test_reminders_reach_the_smtp_server_once_through_the_worker(tmp_path: Path, smtp_server) -> None:
    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", smtp=(smtp_server.host, smtp_server.port))
    try:
        ids = central_mailbox(b, tmp_path / "mail")
        replies = len(smtp_server.received)
        assert replies == 5        # 1 acknowledgement, 3 "missing information", 1 acknowledgement on confirmation

        due = remind(b, SEVEN)
        assert {d.key for d in due} == expected_keys(ids, 7)
        b.now = SEVEN + timedelta(minutes=1)
        with frozen(b.now):
            report = b.run()
        assert report.outbox.sent == 2
        got = smtp_server.received[replies:]
        assert len(got) == 2
        by_to = {str(r.message["To"]): r for r in got}
        stannes = next(r for to, r in by_to.items() if "office@stannes" in to)
        assert set(stannes.rcpt_tos) == {"office@stannes.example.sch.uk",
                                         *(person(STANNES, r)[1] for r in ("head", "hod", "teacher1", "teacher2"))}
        assert "Contact telephone number" in stannes.message.get_body(("plain",)).get_content()
        only_on_the_form = person(HILLSIDE, "teacher2")[1]
        assert not [r for r in got if only_on_the_form in r.rcpt_tos]
        for r in got:
            assert r.message["Auto-Submitted"] == "auto-replied"
            assert HUB_ADDRESS in str(r.message["From"])
            assert r.message.get_body(("html",)) is not None

        # Again, later the same day and the next: nothing more reaches the server.
        for later in (SEVEN + timedelta(hours=1), SEVEN + timedelta(days=1)):
            assert remind(b, later) == []
            b.now = later
            b.run()
        assert len(smtp_server.received) == replies + 2
        ids_sent = Counter(str(r.message["Message-ID"]) for r in smtp_server.received)
        assert max(ids_sent.values()) == 1
    finally:
        b.close()


def test_describe_lists_what_is_due(bot: Bot, round_: dict[str, int]) -> None:
    due = remind(bot, SEVEN, send=False)
    text = describe(due, SEVEN)
    assert text.startswith("2 reminder(s) due at Fri 21 Jun 2024 09:00 (London)")
    assert "office@stannes.example.sch.uk" in text and "to g.li@hillside.example.sch.uk" not in text
    assert reminder_rows(bot) == []


# ---- known gaps -----------------------------------------------------------------------------------------------



def test_a_reply_that_ran_out_of_retries_does_not_stop_the_reminders(tmp_path: Path) -> None:
    from bot.sending.outbox import OutboxPolicy

    b = make_bot(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    try:
        deliver(tmp_path / "mail", form_email(STANNES, drop=STANNES_MISSING), RECEIVED)
        relay_down = lambda message: SendResult(SendStatus.TEMPORARY, 451, "4.3.0 Try again later")  # noqa: E731
        policy = OutboxPolicy(max_attempts=2)
        for minutes in (0, 30):
            b.now = PROCESSED + timedelta(minutes=minutes)
            b.run(sender=relay_down, outbox_policy=policy)
        (item,) = b.outbox()
        assert item.state is OutboxState.FAILED and "4.3.0" in (item.last_error or "")
        (app_id,) = app_ids(b).values()
        assert [d.key for d in remind(b, SEVEN)] == [f"reminder:{app_id}:7"]
    finally:
        b.close()




def test_reminders_do_not_claim_to_answer_an_email_that_just_arrived(bot: Bot, round_: dict[str, int]) -> None:
    due = remind(bot, SEVEN, send=False)
    assert {d.kind for d in due} == {EmailKind.REMINDER}
    for d in due:
        assert "when your e-mail arrived" not in d.email.text, d.key
        assert "when your e-mail arrived" not in d.email.html, d.key


# ---- the command line -----------------------------------------------------------------------------------------

def test_hubbot_remind_lists_then_sends_each_reminder_once(bot: Bot, round_: dict[str, int], tmp_path: Path) -> None:
    from tests.test_cli import hubbot

    config = str(bot.config_path)
    files = len(sent_files(tmp_path / "outbox"))
    early = hubbot("remind", "--config", config, "--now", "2024-06-21T08:59", cwd=tmp_path)
    assert early.returncode == 0, early.stderr
    assert early.stdout.strip() == "No reminders due at Fri 21 Jun 2024 08:59 (London)."

    listed = hubbot("remind", "--config", config, "--now", "2024-06-21T08:00:00+00:00", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("2 reminder(s) due at Fri 21 Jun 2024 09:00 (London):")
    for address in ("office@stannes.example.sch.uk", "office@hillside.example.sch.uk"):
        assert address in listed.stdout
    assert "to g.li@hillside.example.sch.uk" not in listed.stdout   # only on the form: never mailed
    assert reminder_rows(bot) == [] and len(sent_files(tmp_path / "outbox")) == files   # listing sends nothing

    sent = hubbot("remind", "--send", "--config", config, "--now", "2024-06-21T09:30", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert "2 reminder(s) due" in sent.stdout and "sent 2" in sent.stdout
    assert len(sent_files(tmp_path / "outbox")) == files + 2
    assert all(r.state is OutboxState.SENT for r in reminder_rows(bot))

    again = hubbot("remind", "--send", "--config", config, "--now", "2024-06-21T10:30", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("No reminders due")
    assert len(sent_files(tmp_path / "outbox")) == files + 2


def test_hubbot_remind_help_and_bad_now(tmp_path: Path) -> None:
    from tests.test_cli import hubbot

    help_ = hubbot("remind", "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "--send" in help_.stdout and "--now" in help_.stdout
    bad = hubbot("remind", "--now", "next tuesday", cwd=tmp_path)
    assert bad.returncode == 2 and "ISO" in bad.stderr

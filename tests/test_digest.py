"""The daily digest for hub staff, from a realistic day of mail at the Central hub, processed by the worker.

The day before the digest the hub receives: a complete application, an incomplete one (telephone and a TRN
missing), one sent twice (the second a resubmission that completes it), one from outside the programme's region,
one with a signatory left off the Cc, a question, a scanned PDF that cannot be read, and, just after the deadline,
a late one. The reply to the scanner's address is refused with 550, and the worker dies while sending the late
school's acknowledgement, so that reply is left UNCERTAIN. ``build_digest`` is checked list by list, both
renderings are checked to contain every item, and then: the next day's digest holds only what is new since the
previous one; a hub gets one digest a day however often (or by however many PostgreSQL workers) the job runs; a
quiet day sends nothing unless ``digest_when_quiet``; and with two hubs each digest holds only its own hub's data.
"""
from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.sending.outbox import OutboxPolicy, eml_sender
from bot.sending.smtp import SendResult, SendStatus
from bot.staff import jobs
from bot.staff.digest import Digest, build_digest, render_digest
from samples.applications import LONDON, SCHOOLS, School
from samples.mail import build_email, question_email
from samples.pdf import scanned_pdf
from storage.db import open_database
from storage.models import OutboxItem, OutboxState
from tests.test_reminders import (
    HUB_ADDRESS,
    PID,
    STAFF,
    all_at_once,
    confirmation,
    form_email,
    frozen,
    hub_block,
    make_bot,
    person,
)
from tests.test_workflow import Bot, deliver, sent_files

VALLEY, STANNES, HILLSIDE, RIVERSIDE = SCHOOLS
OAKFIELD = School("Oakfield Academy", "145678", "Oak Road", "oakfield.example.sch.uk",
                  (("Mr Paul Grant", "p.grant", "3344556"), ("Ms Nadia Khan", "n.khan", "4455667"),
                   ("Mr Leo Murphy", "l.murphy", "5566778"), ("Mrs Iris Novak", "i.novak", "6677889")))
# A name with markup in it: the HTML digest must show it as text.
NORTHGATE = School("Northgate <b>High</b> School", "139001", "North Gate", "northgate.example.sch.uk",
                   (("Dr Amy Fox", "a.fox", "7788990"), ("Mr Joe Hart", "j.hart", "8899001"),
                    ("Ms Zoe King", "z.king", "9900112"), ("Mr Max Lowe", "m.lowe", "1029384")))

DAY = datetime(2024, 6, 28, 8, 0, tzinfo=LONDON)            # deadline day; the digest runs the next morning
DIGEST_AT = datetime(2024, 6, 29, 7, 30, tzinfo=LONDON)
NEXT_DIGEST = DIGEST_AT + timedelta(days=1)
SCANNER = "scanner@valley.example.sch.uk"
ASKER = "k.wright@valley.example.sch.uk"
# A date of the hub's own, 20 days after the first digest: listed as coming up, but not "due soon".
HUB_DATES = {PID: 'notifications = [{ date = "2024-07-19", what = "selected schools informed" }]'}


class Crash(BaseException):
    """The worker process dying in the middle of an SMTP conversation (not an error it could catch)."""


def central_bot(tmp_path: Path, url: str | None = None, *, extra: str = "", hubs: str | None = None) -> Bot:
    return make_bot(tmp_path, url or f"sqlite:///{tmp_path / 'hubbot.db'}", extra=extra,
                    hubs=hubs if hubs is not None else hub_block(dates=HUB_DATES))


def refusing_sender(outbox: Path):
    """Writes .eml files, but the scanner's address is refused for good."""
    write = eml_sender(outbox)

    def send(message: EmailMessage) -> SendResult:
        if SCANNER in str(message["To"]):
            return SendResult(SendStatus.PERMANENT, 550, "5.1.1 Recipient address rejected: User unknown")
        return write(message)
    return send


def realistic_day(bot: Bot, tmp_path: Path, mail: Path | None = None) -> None:
    """The day of mail described in the module docstring, processed as the worker would (several cycles)."""
    mail = mail or tmp_path / "mail"
    sender = refusing_sender(tmp_path / "outbox")

    def at(minutes: int) -> datetime:
        return DAY + timedelta(minutes=minutes)

    deliver(mail, form_email(VALLEY, received=at(0)), at(0))
    deliver(mail, form_email(STANNES, drop=("school.telephone", "teacher1.trn"), received=at(10)), at(10))
    deliver(mail, form_email(HILLSIDE, drop=("hod.trn",), received=at(20)), at(20))
    deliver(mail, form_email(RIVERSIDE, received=at(30),
                             changes={"school.address": "Mill Street, Darlington, DL1 4AB"}), at(30))
    deliver(mail, form_email(OAKFIELD, pattern="one_missing", received=at(40)), at(40))
    deliver(mail, question_email(to=HUB_ADDRESS, subject="Can two teachers from one school join?", date=at(50),
                                 received=at(50)), at(50))
    deliver(mail, build_email(sender=f"Office Scanner <{SCANNER}>", to=HUB_ADDRESS,
                              subject="Application form (scanned)",
                              body_text="Please find attached our application form, signed and scanned.",
                              attachments=[("Scan_0042.pdf", scanned_pdf(), "application/pdf")], date=at(60),
                              received=at(60), message_id="<scan-0042@valley.example.sch.uk>"), at(60))
    bot.now = at(70)
    bot.run(sender=sender)
    deliver(mail, form_email(HILLSIDE, received=at(300)), at(300))            # the corrected form
    bot.now = at(310)
    bot.run(sender=sender)

    # Just after the deadline (23:59:59 on the 28th): late. The worker dies while sending its acknowledgement.
    late = datetime(2024, 6, 29, 0, 15, tzinfo=LONDON)
    deliver(mail, form_email(NORTHGATE, received=late), late)
    bot.now = late + timedelta(minutes=1)

    def crash(message: EmailMessage) -> SendResult:
        raise Crash
    with pytest.raises(Crash):
        bot.run(sender=crash)
    bot.now = late + timedelta(minutes=45)                                    # restarted, after the send lease
    report = bot.run(sender=sender)
    assert report.outbox.uncertain == 1 and report.failed_messages == 0


def build(bot: Bot, now: datetime, hub_id: str = "central") -> Digest:
    with frozen(now), bot.db.session() as session:
        hub = next(h for h in bot.config.hubs if h.id == hub_id)
        return build_digest(session, bot.config, bot.settings, hub, now)


def run_digests(bot: Bot, now: datetime, **kwargs) -> list[jobs.DigestRun]:
    bot.now = now
    with frozen(now):
        return jobs.digests(bot.db, bot.config, bot.settings, now, send=True, actor="test", **kwargs)


def digest_rows(bot: Bot) -> list[OutboxItem]:
    return bot.scalars(select(OutboxItem).where(OutboxItem.kind == "digest").order_by(OutboxItem.id))


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    b = central_bot(tmp_path)
    yield b
    b.close()


@pytest.fixture
def day(bot: Bot, tmp_path: Path) -> Bot:
    realistic_day(bot, tmp_path)
    return bot


def names(apps) -> list[str]:
    return sorted(a.display_name for a in apps)


# ---- the first digest, item by item ---------------------------------------------------------------------------

def test_digest_lists_every_item_of_the_day(day: Bot) -> None:
    d = build(day, DIGEST_AT)
    assert d.day.isoformat() == "2024-06-29"
    assert d.since == DIGEST_AT - timedelta(days=1)          # no digest before: the last 24 hours
    assert d.titles == {PID: "Secondary Teaching for Mastery Work Group (2024/25)"}

    assert names(d.new) == sorted(["Valley School", "St Anne's C of E Primary", "Hillside Academy",
                                   "Riverside Community School", "Oakfield Academy", NORTHGATE.name])
    assert d.counts == {PID: {"complete": 4, "incomplete": 2}}

    incomplete = {a.display_name: (a, left) for a, left in d.incomplete}
    assert sorted(incomplete) == ["Oakfield Academy", "St Anne's C of E Primary"]
    assert all(left == -1 for _, left in incomplete.values())   # the deadline was yesterday
    stannes, _ = incomplete["St Anne's C of E Primary"]
    assert sorted(i.label for i in stannes.issues) == ["Contact telephone number", "Teacher Ref. Number"]
    assert all(i.missing for i in stannes.issues)
    oakfield, _ = incomplete["Oakfield Academy"]
    assert oakfield.issues == ()

    assert [(a.display_name, s.role, s.email) for a, s in d.awaiting] == \
        [("Oakfield Academy", "teacher2", person(OAKFIELD, "teacher2")[1])]

    flagged = {a.display_name: tuple(f for f in a.flags) for a in d.flagged}
    assert flagged == {"Hillside Academy": ("resubmission",), "Riverside Community School": ("region",),
                       NORTHGATE.name: ("late",)}
    hillside = next(a for a in d.new if a.display_name == "Hillside Academy")
    assert hillside.versions == 2 and hillside.status.value == "complete"

    needs = sorted((m.status, m.sender, m.subject) for m in d.needs_person)
    assert needs == [
        ("not_application", "Kate Wright <k.wright@valley.example.sch.uk>", "Can two teachers from one school join?"),
        ("unreadable", f"Office Scanner <{SCANNER}>", "Application form (scanned)"),
    ]
    scan = next(m for m in d.needs_person if m.status == "unreadable")
    assert scan.note and "scan" in scan.note.lower()
    assert all(m.received is not None for m in d.needs_person)

    problems = sorted((p.kind, p.to, p.state) for p in d.reply_problems)
    assert problems == [
        ("acknowledgement", "office@northgate.example.sch.uk", "may not have been sent (check, then requeue)"),
        ("unreadable", SCANNER, "bounced"),
    ]
    assert "550" in next(p.detail for p in d.reply_problems if p.to == SCANNER) or \
        "User unknown" in next(p.detail for p in d.reply_problems if p.to == SCANNER)

    assert [(a.day.isoformat(), a.days_left, a.programme, a.what) for a in d.ahead] == \
        [("2024-07-19", 20, PID, "selected schools informed")]
    assert not d.quiet


def test_both_renderings_contain_every_item(day: Bot) -> None:
    d = build(day, DIGEST_AT)
    rendered = render_digest(d)
    assert rendered.subject and "Central Maths Hub" in rendered.subject
    text, page = rendered.text, html.unescape(rendered.html)
    items = [
        "Saturday 29 June 2024",
        "Secondary Teaching for Mastery Work Group (2024/25)",
        # new (and each school's URN)
        *(s.name for s in (VALLEY, STANNES, HILLSIDE, RIVERSIDE, OAKFIELD, NORTHGATE)),
        *(s.urn for s in (VALLEY, STANNES, HILLSIDE, RIVERSIDE, OAKFIELD, NORTHGATE)),
        # incomplete, with what is missing
        "Contact telephone number (missing)", "Teacher Ref. Number (missing)",
        "Mastery Advocate Teacher 2 to confirm", "passed",
        # awaiting
        person(OAKFIELD, "teacher2")[0], person(OAKFIELD, "teacher2")[1],
        # flags, in words with their detail
        "Sent again: version 2 of this application",
        "Outside the area: address is not in Birmingham, Sandwell or Dudley",
        "Late: received 29 June 2024 at 00:15 (London), after the deadline of 28 June 2024",
        # numbers staff can use with decide, and what the bot last sent each school
        *(f"No. {n}" for n in range(1, 7)), "Last sent: acknowledgement, 28 Jun 2024 09:10",
        # mail for a person
        "Can two teachers from one school join?", "Application form (scanned)", SCANNER, "not application",
        "unreadable",
        # replies
        "office@northgate.example.sch.uk", "may not have been sent (check, then requeue)", "bounced",
        # coming up
        "19 Jul 2024", "selected schools informed",
    ]
    for item in items:
        assert item in text, f"text digest lacks {item!r}"
        assert item in page, f"HTML digest lacks {item!r}"
    for code in ("word_guidance", "wrong_hub", "resubmission"):
        assert code not in text and code not in page       # flags are told in words, not codes
    assert "hubbot " not in text and "hubbot " not in page  # no shell commands told to staff
    for label, n in (("NEW SINCE THE LAST DIGEST", 6), ("INCOMPLETE", 2), ("SIGNATORIES AWAITING CONFIRMATION", 1),
                     ("LATE AND FLAGGED", 3), ("MAIL THAT NEEDS A PERSON", 2), ("REPLIES THAT FAILED OR BOUNCED", 2),
                     ("NO DECISION YET", 6)):   # before the outcome date, every school still undecided
        assert f"{label} ({n})" in text
    for label, n in (("New since the last digest", 6), ("Incomplete", 2), ("Signatories awaiting confirmation", 1),
                     ("Late and flagged", 3), ("Mail that needs a person", 2), ("Replies that failed or bounced", 2),
                     ("No decision yet", 6)):
        assert f"{label} <span" in rendered.html and f"({n})</span>" in rendered.html.split(f"{label} <span")[1][:80]


def test_the_digest_is_queued_to_the_staff_and_sent(day: Bot, tmp_path: Path) -> None:
    (run,) = run_digests(day, DIGEST_AT)
    assert run.queued and not run.skipped_quiet
    (row,) = digest_rows(day)
    assert row.to == [STAFF] and row.dedupe_key == "digest:central:2024-06-29"
    assert row.html and "<table" in row.html
    day.now = DIGEST_AT + timedelta(minutes=1)
    day.run()
    sent = [m for m in sent_files(tmp_path / "outbox") if str(m["Message-ID"]).strip() == row.message_id]
    assert len(sent) == 1 and STAFF in str(sent[0]["To"])
    assert sent[0].get_body(("html",)) is not None


# ---- the next day ---------------------------------------------------------------------------------------------

def test_the_next_digest_lists_only_what_is_new_since_the_previous_one(day: Bot, tmp_path: Path) -> None:
    (first,) = run_digests(day, DIGEST_AT)
    assert first.queued
    mail = tmp_path / "mail"
    # During the 29th: St Anne's sends the corrected form, Oakfield's teacher 2 confirms, a new question arrives.
    when = DIGEST_AT + timedelta(hours=2)
    deliver(mail, form_email(STANNES, received=when), when)
    ask = next(i for i in day.outbox() if i.to == ["office@oakfield.example.sch.uk"])
    deliver(mail, confirmation(OAKFIELD, "teacher2", in_reply_to=ask.message_id, references=(ask.message_id,),
                               when=when + timedelta(minutes=5)), when + timedelta(minutes=5))
    deliver(mail, question_email(sender="Priya Shah <p.shah@stannes.example.sch.uk>", to=HUB_ADDRESS,
                                 subject="Dates of the first Work Group meeting?", date=when + timedelta(hours=1),
                                 received=when + timedelta(hours=1)), when + timedelta(hours=1))
    day.now = when + timedelta(hours=2)
    day.run(sender=refusing_sender(tmp_path / "outbox"))

    d = build(day, NEXT_DIGEST)
    assert d.since == DIGEST_AT
    assert names(d.new) == ["St Anne's C of E Primary"]
    assert [(m.status, m.subject) for m in d.needs_person] == \
        [("not_application", "Dates of the first Work Group meeting?")]
    assert d.counts == {PID: {"complete": 6, "incomplete": 0}}
    assert d.incomplete == [] and d.awaiting == []
    text = render_digest(d).text
    assert "NEW SINCE THE LAST DIGEST (1)" in text and "Valley School" not in text.split("INCOMPLETE")[0]
    (second,) = run_digests(day, NEXT_DIGEST)
    assert second.queued
    assert [r.dedupe_key for r in digest_rows(day)] == ["digest:central:2024-06-29", "digest:central:2024-06-30"]




def test_a_failure_already_reported_does_not_make_every_later_day_busy(day: Bot) -> None:
    (first,) = run_digests(day, DIGEST_AT)
    assert first.queued
    # Staff requeued nothing and nothing arrived: the next day has nothing new and nothing due soon.
    d = build(day, NEXT_DIGEST)
    assert d.new == [] and d.needs_person == []
    assert all(a.days_left > 7 for a in d.ahead)
    assert d.quiet
    (second,) = run_digests(day, NEXT_DIGEST)
    assert not second.queued and second.skipped_quiet


# ---- once a day -----------------------------------------------------------------------------------------------

def test_one_digest_per_hub_per_day_when_run_twice(day: Bot) -> None:
    (first,) = run_digests(day, DIGEST_AT)
    (again,) = run_digests(day, DIGEST_AT + timedelta(hours=4))
    (late_evening,) = run_digests(day, datetime(2024, 6, 29, 23, 59, tzinfo=LONDON))
    assert first.queued and not again.queued and not late_evening.queued
    assert [r.dedupe_key for r in digest_rows(day)] == ["digest:central:2024-06-29"]
    assert len(day.events("digest_queued")) == 1
    # Just after midnight London time (still the 29th in UTC, 23:00Z) it is a new day.
    (tomorrow,) = run_digests(day, datetime(2024, 6, 30, 0, 0, 30, tzinfo=LONDON))
    assert tomorrow.digest.day.isoformat() == "2024-06-30"


def test_one_digest_per_hub_per_day_with_two_workers_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    from tests.servers import _empty_postgres

    _empty_postgres(pg_url)
    hubs = hub_block(dates=HUB_DATES) + hub_block("north", address="admin@north.example.org",
                                                  name="North Maths Hub", maildir="mail-north",
                                                  staff=("lead@north.example.org",))
    # North's mailbox works and is empty (a mailbox that cannot be read is an incident, never a quiet day).
    (tmp_path / "mail-north" / "new").mkdir(parents=True)
    b = central_bot(tmp_path, pg_url, hubs=hubs)
    try:
        realistic_day(b, tmp_path)
        workers = [open_database(pg_url, migrate=False) for _ in range(4)]
        with frozen(DIGEST_AT):
            results = all_at_once(workers, lambda db, i: jobs.digests(
                db, b.config, b.settings, DIGEST_AT, send=True, actor=f"worker-{i}"))
        assert len(results) == len(workers)
        central = [r for runs in results for r in runs if r.digest.hub.id == "central"]
        assert sum(r.queued for r in central) == 1
        # North had no mail at all: a quiet day there.
        north = [r for runs in results for r in runs if r.digest.hub.id == "north"]
        assert all(r.skipped_quiet and not r.queued for r in north)
        assert [r.dedupe_key for r in digest_rows(b)] == ["digest:central:2024-06-29"]
        assert len(b.events("digest_queued")) == 1
        for db in workers:
            db.close()
    finally:
        b.close()


# ---- quiet days -----------------------------------------------------------------------------------------------

def plain_day(bot: Bot, tmp_path: Path) -> None:
    """Two applications and nothing going wrong."""
    mail = tmp_path / "mail"
    deliver(mail, form_email(VALLEY, received=DAY), DAY)
    deliver(mail, form_email(STANNES, drop=("school.telephone",), received=DAY + timedelta(hours=1)),
            DAY + timedelta(hours=1))
    bot.now = DAY + timedelta(hours=2)
    bot.run()


@pytest.mark.parametrize("when_quiet", [False, True])
def test_a_quiet_day_sends_no_digest_unless_configured(tmp_path: Path, when_quiet: bool) -> None:
    extra = "[schedule]\ndigest_when_quiet = true\n" if when_quiet else ""
    b = central_bot(tmp_path, extra=extra)
    try:
        plain_day(b, tmp_path)
        (first,) = run_digests(b, DIGEST_AT)
        assert first.queued and not first.digest.quiet
        (second,) = run_digests(b, NEXT_DIGEST)
        assert second.digest.quiet
        assert second.digest.new == [] and second.digest.needs_person == [] and second.digest.reply_problems == []
        # Quiet does not mean empty: the standing counts are still there for a digest sent anyway.
        assert second.digest.counts == {PID: {"complete": 1, "incomplete": 1}}
        assert second.queued is when_quiet and second.skipped_quiet is not when_quiet
        expected = ["digest:central:2024-06-29"] + (["digest:central:2024-06-30"] if when_quiet else [])
        assert [r.dedupe_key for r in digest_rows(b)] == expected
        if when_quiet:
            assert "NEW SINCE THE LAST DIGEST (0)" in digest_rows(b)[-1].text
    finally:
        b.close()


def test_a_date_coming_up_within_a_week_is_not_a_quiet_day(tmp_path: Path) -> None:
    dates = {PID: 'notifications = [{ date = "2024-07-04", what = "selected schools informed" }]'}
    b = central_bot(tmp_path, hubs=hub_block(dates=dates))
    try:
        plain_day(b, tmp_path)
        run_digests(b, DIGEST_AT)
        (second,) = run_digests(b, NEXT_DIGEST)
        assert [(a.days_left, a.what) for a in second.digest.ahead] == [(4, "selected schools informed")]
        assert not second.digest.quiet and second.queued
    finally:
        b.close()


def test_after_a_quiet_day_the_next_digest_covers_everything_since_the_last_one_sent(tmp_path: Path) -> None:
    b = central_bot(tmp_path)
    try:
        plain_day(b, tmp_path)
        run_digests(b, DIGEST_AT)
        (quiet,) = run_digests(b, NEXT_DIGEST)
        assert quiet.skipped_quiet
        # Mail arrives in the evening after the quiet morning: the following morning it is new.
        when = NEXT_DIGEST + timedelta(hours=12)
        deliver(tmp_path / "mail", form_email(HILLSIDE, received=when), when)
        b.now = when + timedelta(minutes=5)
        b.run()
        (third,) = run_digests(b, NEXT_DIGEST + timedelta(days=1))
        assert third.digest.since == DIGEST_AT
        assert names(third.digest.new) == ["Hillside Academy"] and third.queued
    finally:
        b.close()


# ---- two hubs -------------------------------------------------------------------------------------------------

NORTH_ADDRESS = "admin@north.example.org"


def test_each_hubs_digest_holds_only_its_own_data(tmp_path: Path) -> None:
    hubs = hub_block(dates=HUB_DATES) + hub_block("north", address=NORTH_ADDRESS, name="North Maths Hub",
                                                  maildir="mail-north", staff=("lead@north.example.org",))
    b = central_bot(tmp_path, hubs=hubs)
    try:
        realistic_day(b, tmp_path)
        north = tmp_path / "mail-north"
        at = DAY + timedelta(hours=3)
        deliver(north, form_email(OAKFIELD, drop=("teacher2.trn",), received=at), at)
        deliver(north, question_email(sender="Iris Novak <i.novak@oakfield.example.sch.uk>", to=NORTH_ADDRESS,
                                      subject="North question about cover costs", date=at, received=at), at)
        b.now = at + timedelta(minutes=5)
        b.run(sender=refusing_sender(tmp_path / "outbox"))

        runs = {r.digest.hub.id: r for r in run_digests(b, DIGEST_AT)}
        assert set(runs) == {"central", "north"} and all(r.queued for r in runs.values())
        c, n = runs["central"].digest, runs["north"].digest
        assert {a.hub_id for a in c.new} == {"central"} and {a.hub_id for a in n.new} == {"north"}
        assert names(n.new) == ["Oakfield Academy"]
        assert [a.display_name for a, _ in n.incomplete] == ["Oakfield Academy"]
        assert n.awaiting == [] and n.reply_problems == []
        assert [m.subject for m in n.needs_person] == ["North question about cover costs"]
        assert "North question about cover costs" not in [m.subject for m in c.needs_person]
        assert len(c.new) == 6
        assert n.counts == {PID: {"complete": 0, "incomplete": 1}}
        assert n.ahead == [] or all(a.what != "selected schools informed" for a in n.ahead)   # central's own date

        rows = {r.hub_id: r for r in digest_rows(b)}
        assert rows["north"].to == ["lead@north.example.org"] and rows["central"].to == [STAFF]
        for school in (VALLEY, STANNES, HILLSIDE, RIVERSIDE):
            assert school.name not in rows["north"].text
        assert SCANNER not in rows["north"].text and "northgate" not in rows["north"].text.lower()
        assert "North question about cover costs" in rows["north"].text
        assert "North question about cover costs" not in rows["central"].text
    finally:
        b.close()


def test_a_hub_without_staff_gets_no_digest(tmp_path: Path) -> None:
    b = central_bot(tmp_path, hubs=hub_block(staff=()))
    try:
        plain_day(b, tmp_path)
        (run,) = run_digests(b, DIGEST_AT)
        assert not run.queued and digest_rows(b) == []
    finally:
        b.close()


# ---- known gaps -----------------------------------------------------------------------------------------------



def test_a_question_asked_in_reply_to_an_acknowledgement_reaches_the_digest(tmp_path: Path) -> None:
    b = central_bot(tmp_path)
    try:
        plain_day(b, tmp_path)
        ack = next(i for i in b.outbox() if i.kind == "acknowledgement")
        when = DAY + timedelta(hours=5)
        head_name, head = person(VALLEY, "head")
        question = build_email(sender=f"{head_name} <{head}>", to=HUB_ADDRESS, subject=f"Re: {ack.subject}",
                               body_text="Thank you. Could we add a third teacher to the application, or should we "
                                         "send a new form?\n\nHelen O'Neill",
                               date=when, received=when, message_id="<question-in-thread@valley.example.sch.uk>",
                               in_reply_to=ack.message_id, references=(ack.message_id,))
        deliver(tmp_path / "mail", question, when)
        b.now = when + timedelta(minutes=5)
        (outcome,) = b.run().outcomes
        assert outcome.status.value == "not_application" and outcome.confirmed_roles == ()
        d = build(b, DIGEST_AT)
        assert [m.subject for m in d.needs_person] == [f"Re: {ack.subject}"]
    finally:
        b.close()




def test_a_reply_that_ran_out_of_retries_is_failed_not_bounced(tmp_path: Path) -> None:
    b = central_bot(tmp_path)
    try:
        deliver(tmp_path / "mail", form_email(STANNES, drop=("school.telephone",), received=DAY), DAY)
        b.now = DAY + timedelta(minutes=5)
        relay_down = lambda message: SendResult(SendStatus.TEMPORARY, 451, "4.3.0 Try again later")  # noqa: E731
        policy = OutboxPolicy(max_attempts=2)
        b.run(sender=relay_down, outbox_policy=policy)
        b.now = DAY + timedelta(minutes=15)
        b.run(sender=relay_down, outbox_policy=policy)
        (item,) = b.outbox()
        assert item.state is OutboxState.FAILED and item.attempts == 2
        (problem,) = build(b, DIGEST_AT).reply_problems
        assert problem.state == "failed"
    finally:
        b.close()


# ---- the command line -----------------------------------------------------------------------------------------

def test_hubbot_digest_prints_then_sends_once(day: Bot, tmp_path: Path) -> None:
    from tests.test_cli import hubbot

    config = str(day.config_path)
    shown = hubbot("digest", "--config", config, "--now", "2024-06-29T07:30", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Subject: Central Maths Hub daily digest, Saturday 29 June 2024")
    for item in ("NEW SINCE THE LAST DIGEST (6)", "Contact telephone number (missing)", SCANNER,
                 "may not have been sent", NORTHGATE.name):
        assert item in shown.stdout
    page = hubbot("digest", "--html", "--hub", "central", "--config", config, "--now", "2024-06-29T07:30",
                  cwd=tmp_path)
    assert page.returncode == 0 and page.stdout.lstrip().startswith("<!DOCTYPE html>")
    assert "Northgate &lt;b&gt;High&lt;/b&gt; School" in page.stdout
    assert digest_rows(day) == []                                    # printing queues nothing

    sent = hubbot("digest", "--send", "--config", config, "--now", "2024-06-29T07:30", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    # Sent: the digest, and the late school's acknowledgement whose send was interrupted (the outbox folder shows
    # it was never written, so it is written now, without a person: storage.recovery).
    assert "central: digest queued" in sent.stdout and "sent 2" in sent.stdout
    again = hubbot("digest", "--send", "--config", config, "--now", "2024-06-29T12:00", cwd=tmp_path)
    assert again.returncode == 0 and "central: already sent today" in again.stdout
    (row,) = digest_rows(day)
    assert row.state is OutboxState.SENT
    assert len([m for m in sent_files(tmp_path / "outbox") if str(m["Message-ID"]).strip() == row.message_id]) == 1

    unknown = hubbot("digest", "--hub", "nowhere", "--config", config, cwd=tmp_path)
    assert unknown.returncode == 2 and "nowhere" in unknown.stderr

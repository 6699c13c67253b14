"""Personal data: teachers' names, e-mail addresses and TRNs never reach the logs (even at DEBUG, even when a
message fails), the event log holds ids and codes only, and retention deletes every trace of an old application
from the database, counting ``retention_days`` from the end of the application round (its last notification date,
else its deadline), not from the day the form arrived."""
from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.staff.jobs import apply_retention
from rules.calendar import deadline_end
from samples.applications import SCHOOLS, programme
from storage.models import Application, Event, Message, OutboxItem, Signatory
from tests.test_workflow import NOW, PID, Bot, application, deliver, write_config

SCHOOL = SCHOOLS[0]
SECRETS = [value for name, local, trn in SCHOOL.people for value in (name, f"{local}@{SCHOOL.domain}", trn)]
# The test hub's round ends at its deadline (the programme has no notification dates).
ROUND_END = deadline_end(programme(PID).deadline)


def _secrets_in(text: str) -> list[str]:
    lowered = text.lower()
    return [s for s in SECRETS if s.lower() in lowered]


@pytest.fixture
def bot(tmp_path: Path) -> Bot:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}", extra="retention_days = 30\n")
    deliver(tmp_path / "mail", application())
    deliver(tmp_path / "mail", application(urn="100002", drop=("teacher1.trn",), pattern="one_missing"))
    return Bot(config)


def test_no_personal_data_in_logs_or_events(bot: Bot, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    worker = bot.worker()
    first: dict[str, int] = {}
    real = worker.workflow.process

    def fail_the_first(session, message, now):
        # The first message read fails every time it is read (in its batch, then alone); the other is answered.
        if first.setdefault("id", message.id) == message.id:
            raise ValueError("something went wrong while reading the form")
        return real(session, message, now)

    monkeypatch.setattr(worker.workflow, "process", fail_the_first)
    report = worker.run_once()
    assert report.failed_messages == 1 and len(report.outcomes) == 1
    assert _secrets_in(caplog.text) == []
    with bot.db.session() as session:
        events = list(session.scalars(select(Event)))
        assert events
        assert _secrets_in(" ".join(str(e.detail) for e in events)) == []


def test_retention_deletes_old_applications_and_their_mail(bot: Bot) -> None:
    bot.worker().run_once()
    with bot.db.session() as session:
        assert session.scalars(select(Application)).all()
        assert session.scalars(select(Signatory)).all()
    report = apply_retention(bot.db, bot.config, ROUND_END + timedelta(days=31))
    assert report is not None and report.applications == 2 and report.messages == 2
    with bot.db.session() as session:
        for model in (Application, Signatory, Message, OutboxItem):
            assert session.scalars(select(model)).all() == [], model.__name__
        leftovers = " ".join(str(e.detail) for e in session.scalars(select(Event)))
        assert _secrets_in(leftovers) == []


def test_retention_keeps_recent_data(bot: Bot) -> None:
    bot.worker().run_once()
    report = apply_retention(bot.db, bot.config, NOW + timedelta(days=5))
    assert report is not None and report.applications == 0


def test_retention_counts_from_the_end_of_the_round_not_arrival(bot: Bot) -> None:
    bot.worker().run_once()
    # 31 days after the forms arrived, but the round (deadline 28 June) ended only 23 days before: all is kept.
    assert NOW + timedelta(days=31) < ROUND_END + timedelta(days=30)
    report = apply_retention(bot.db, bot.config, NOW + timedelta(days=31))
    assert report is not None and (report.applications, report.messages, report.outbox) == (0, 0, 0)
    with bot.db.session() as session:
        assert len(session.scalars(select(Application)).all()) == 2
    # A day past retention_days after the round's end, it goes.
    report = apply_retention(bot.db, bot.config, ROUND_END + timedelta(days=30, seconds=1))
    assert report is not None and report.applications == 2

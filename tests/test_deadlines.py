"""Deadlines through ``assess``: a deadline day ends at 23:59:59 London time in summer (BST) and winter (GMT); the
received time comes from IMAP INTERNALDATE when given, else the topmost ``Received:`` header, else ``Date:``; a
hub's config can set or move a programme's deadline; a late application is still acknowledged, with the late
sentence, and flagged ``late`` for hub staff.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path

import pytest

from bot.config import parse_config
from bot.context import check_settings
from rules.pipeline import CheckSettings, assess
from rules.verdict import FlagCode, Status
from samples.applications import LONDON, application_email, complete_answers, correspondents, fill_form
from samples.mail import DOCX_TYPE, build_email
from templates import EmailKind

SETTINGS = CheckSettings.builtin()
UTC = timezone.utc
SUMMER = "secondary-tfm-wg-2024"    # deadline 2024-06-28, British Summer Time (UTC+1)
WINTER = "secondary-tfm-wg-2016"    # deadline 2017-01-10, GMT (UTC+0)


@cache
def form(programme_id: str) -> bytes:
    return fill_form(programme_id, complete_answers(programme_id))


def received(programme_id: str, when: datetime, **kwargs):
    return assess(application_email(programme_id, form(programme_id), received=when), SETTINGS, **kwargs)


@pytest.mark.parametrize(("programme_id", "when", "late"), [
    (SUMMER, datetime(2024, 6, 28, 22, 59, 59, tzinfo=UTC), False),
    (SUMMER, datetime(2024, 6, 28, 23, 0, 0, tzinfo=UTC), True),
    (SUMMER, datetime(2024, 6, 28, 23, 59, 59, tzinfo=LONDON), False),
    (SUMMER, datetime(2024, 6, 29, 0, 0, 0, tzinfo=LONDON), True),
    (SUMMER, datetime(2024, 6, 28, 8, 0, tzinfo=LONDON), False),
    (WINTER, datetime(2017, 1, 10, 23, 59, 59, tzinfo=UTC), False),
    (WINTER, datetime(2017, 1, 11, 0, 0, 0, tzinfo=UTC), True),
    (WINTER, datetime(2017, 1, 10, 23, 59, 59, tzinfo=LONDON), False),
    (WINTER, datetime(2017, 1, 11, 0, 0, 0, tzinfo=LONDON), True),
    # A sender's clock in another zone changes nothing: 2017-01-11 00:30 London is late whatever the offset says.
    (WINTER, datetime(2017, 1, 10, 19, 30, tzinfo=timezone(timedelta(hours=-5))), True),
])
def test_deadline_day_ends_at_midnight_london(programme_id: str, when: datetime, late: bool) -> None:
    verdict = received(programme_id, when)
    assert verdict.received_at == when
    assert verdict.received_at.utcoffset() == when.astimezone(LONDON).utcoffset()
    assert verdict.late is late
    assert verdict.has_flag(FlagCode.LATE) is late
    assert verdict.status is Status.COMPLETE


def test_received_header_beats_date_header() -> None:
    pid = SUMMER
    people = correspondents(pid, complete_answers(pid))
    # Written before the deadline, received by the hub's server after it.
    raw = build_email(sender=people.sender, to=people.to, cc=people.cc, subject="Application",
                      body_text="Please find attached our application.",
                      attachments=[("form.docx", form(pid), DOCX_TYPE)],
                      date=datetime(2024, 6, 28, 23, 50, tzinfo=LONDON),
                      received=datetime(2024, 6, 29, 0, 5, tzinfo=LONDON))
    verdict = assess(raw, SETTINGS)
    assert verdict.received_at == datetime(2024, 6, 29, 0, 5, tzinfo=LONDON)
    assert verdict.late


def test_received_header_before_midnight_beats_a_late_date_header() -> None:
    pid = WINTER
    people = correspondents(pid, complete_answers(pid))
    raw = build_email(sender=people.sender, to=people.to, cc=people.cc, subject="Application",
                      body_text="Please find attached our application.",
                      attachments=[("form.docx", form(pid), DOCX_TYPE)],
                      date=datetime(2017, 1, 11, 9, 0, tzinfo=UTC),     # a sender's clock running fast
                      received=datetime(2017, 1, 10, 23, 0, tzinfo=UTC))
    assert not assess(raw, SETTINGS).late


def test_date_header_used_without_received() -> None:
    pid = SUMMER
    people = correspondents(pid, complete_answers(pid))
    raw = build_email(sender=people.sender, to=people.to, cc=people.cc, subject="Application",
                      body_text="Please find attached our application.",
                      attachments=[("form.docx", form(pid), DOCX_TYPE)],
                      date=datetime(2024, 6, 29, 0, 0, 1, tzinfo=LONDON))
    assert b"Received:" not in raw
    verdict = assess(raw, SETTINGS)
    assert verdict.received_at == datetime(2024, 6, 29, 0, 0, 1, tzinfo=LONDON)
    assert verdict.late


@pytest.mark.parametrize(("internal", "late"), [
    (datetime(2024, 6, 28, 22, 59, 59, tzinfo=UTC), False),
    (datetime(2024, 6, 28, 23, 0, 0, tzinfo=UTC), True),
])
def test_explicit_received_at_beats_both_headers(internal: datetime, late: bool) -> None:
    pid = SUMMER
    people = correspondents(pid, complete_answers(pid))
    headers_say = datetime(2024, 6, 28, 12, 0, tzinfo=UTC) if late else datetime(2024, 7, 2, 12, 0, tzinfo=UTC)
    raw = build_email(sender=people.sender, to=people.to, cc=people.cc, subject="Application",
                      body_text="Please find attached our application.",
                      attachments=[("form.docx", form(pid), DOCX_TYPE)], date=headers_say, received=headers_say)
    verdict = assess(raw, SETTINGS, received_at=internal)
    assert verdict.received_at == internal
    assert verdict.received_at.tzinfo is not None
    assert verdict.late is late


def test_naive_received_at_is_taken_as_utc() -> None:
    verdict = received(SUMMER, datetime(2024, 6, 1, tzinfo=UTC), received_at=datetime(2024, 6, 28, 23, 0, 0))
    assert verdict.late


def _config_settings(dates: dict, programmes: list[str], hub_id: str, name: str, address: str) -> CheckSettings:
    data = {"hubs": [{"id": hub_id, "name": name, "address": address, "programmes": programmes,
                      "dates": dates}]}
    return check_settings(parse_config(data, "test-hubbot.toml", Path(".")))


@pytest.mark.parametrize(("when", "late"), [
    (datetime(2020, 5, 1, 23, 59, 59, tzinfo=LONDON), False),
    (datetime(2020, 5, 2, 0, 0, 0, tzinfo=LONDON), True),
])
def test_config_sets_a_deadline_the_seed_does_not_give(when: datetime, late: bool) -> None:
    pid = "primary-tfm-wg-2020"
    settings = _config_settings({pid: {"deadline": "2020-05-01"}}, [pid], "bbo", "BBO Maths Hub",
                                "info@bbomathshub.org.uk")
    raw = application_email(pid, form(pid), received=when)
    verdict = assess(raw, settings)
    assert verdict.hub == "bbo"
    assert verdict.late is late
    # Without the config there is no deadline at all: never late.
    assert not assess(raw, SETTINGS).late


def test_config_moves_a_builtin_deadline_for_that_hub_only() -> None:
    pid = SUMMER
    settings = _config_settings({pid: {"deadline": "2025-06-27"}}, [pid], "central", "Central Maths Hub",
                                "mathshub@bishopchalloner.bham.sch.uk")
    raw = application_email(pid, form(pid), received=datetime(2025, 6, 27, 23, 59, 59, tzinfo=LONDON))
    assert not assess(raw, settings).late
    assert assess(raw, SETTINGS).late
    after = application_email(pid, form(pid), received=datetime(2025, 6, 28, 0, 0, 0, tzinfo=LONDON))
    assert assess(after, settings).late


def test_config_deadline_for_another_programme_changes_nothing() -> None:
    pid = SUMMER
    settings = _config_settings({"secondary-tfm-wg-2016": {"deadline": "2030-01-01"}}, [pid], "central",
                                "Central Maths Hub", "mathshub@bishopchalloner.bham.sch.uk")
    raw = application_email(pid, form(pid), received=datetime(2024, 6, 29, 0, 0, tzinfo=LONDON))
    assert assess(raw, settings).late


def test_late_application_is_acknowledged_with_the_late_sentence() -> None:
    verdict = received(SUMMER, datetime(2024, 6, 29, 9, 15, tzinfo=LONDON))
    assert verdict.status is Status.COMPLETE
    assert verdict.late and verdict.has_flag(FlagCode.LATE)
    flag = next(f for f in verdict.flags if f.code is FlagCode.LATE)
    assert "29 June 2024" in flag.detail and "28 June 2024" in flag.detail
    reply = verdict.reply
    assert reply.kind is EmailKind.ACKNOWLEDGEMENT
    assert "arrived after the deadline of 28 June 2024" in reply.text
    assert "after the deadline of 28 June 2024" in reply.html
    assert verdict.to_json()["late"] is True


def test_late_and_incomplete_reply_says_both() -> None:
    pid = WINTER
    answers = dict(complete_answers(pid))
    del answers["school.urn"]
    raw = application_email(pid, fill_form(pid, answers), received=datetime(2017, 1, 11, 8, 0, tzinfo=LONDON))
    verdict = assess(raw, SETTINGS)
    assert verdict.status is Status.INCOMPLETE and verdict.late
    assert "School URN" in verdict.reply.text
    assert "arrived after the deadline of 10 January 2017" in verdict.reply.text


def test_on_time_reply_has_no_late_sentence() -> None:
    verdict = received(SUMMER, datetime(2024, 6, 28, 22, 0, tzinfo=UTC))
    assert "after the deadline" not in verdict.reply.text

"""The calendar: each programme's deadline and notification dates for one hub (the programme's own, or the hub's
override from the config), and when reminders fall due. Europe/London throughout: a deadline day ends at 23:59:59
London time, in summer too, and reminders go out from 09:00 London time on their day. Pure: the clock is handed in.
The programme's title follows the dates in force too (``title_in_force``): a form reused with next year's deadline
is about next year.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rules.definitions import Notification, ProgrammeDefinition
from rules.outcomes import reminder_send_day

LONDON = ZoneInfo("Europe/London")   # every date a hub or a school reads is a London date
REMINDER_HOUR = time(9, 0)
STAFF_NOTICE_DAYS_BEFORE = 3


def deadline_end(day: date) -> datetime:
    """A deadline day ends at 23:59:59 London time, summer or winter."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=LONDON)


@dataclass(frozen=True)
class ProgrammeDates:
    programme: str
    deadline: date | None
    notifications: tuple[Notification, ...]


@dataclass(frozen=True)
class ReminderPoint:
    days_before: int
    due_from: datetime        # London time


def programme_dates(programme: ProgrammeDefinition, *, deadline: date | None = None,
                    notifications: tuple[Notification, ...] | None = None) -> ProgrammeDates:
    """The dates in force: a hub's overrides where given, else the definition's."""
    return ProgrammeDates(programme.id, deadline or programme.deadline,
                          programme.notifications if notifications is None else notifications)


def at_nine(day: date) -> datetime:
    return datetime.combine(day, REMINDER_HOUR, tzinfo=LONDON)


def due_reminder_point(deadline: date | None, days_before: tuple[int, ...], now: datetime,
                       working_days: tuple[str, ...] | None = None) -> ReminderPoint | None:
    """The reminder point due at ``now``: the latest one whose day has come, while the deadline has not passed.
    When a worker was down across two points, only the later one is due: a school gets one reminder, not two.
    With ``working_days`` a point falling on another day moves to a working day (``rules.outcomes``)."""
    if deadline is None or now > deadline_end(deadline):
        return None

    def day(n: int) -> date:
        due_day = deadline - timedelta(days=n)
        return due_day if working_days is None else reminder_send_day(due_day, deadline, working_days)
    due = [ReminderPoint(n, at_nine(day(n))) for n in sorted(set(days_before), reverse=True)]
    reached = [p for p in due if now >= p.due_from]
    return reached[-1] if reached else None


def due_staff_notices(dates: ProgrammeDates, now: datetime) -> list[Notification]:
    """Notification dates (e.g. "selected schools informed") coming up within the notice window, not yet passed."""
    today = now.astimezone(LONDON).date()
    return [n for n in dates.notifications
            if at_nine(n.date - timedelta(days=STAFF_NOTICE_DAYS_BEFORE)) <= now and today <= n.date]


def days_until(day: date, now: datetime) -> int:
    return (day - now.astimezone(LONDON).date()).days


# A school year in a title ("2024/25", "2016-17") or a lone year ("Summer 2019").
_YEAR = re.compile(r"\b((?:19|20)\d\d)(\s*[/\-–]\s*)((?:19|20)?\d\d)\b|\b((?:19|20)\d\d)\b")


def shift_years(text: str, years: int) -> str:
    """Every year in ``text`` moved on by ``years``: "(2024/25)" -> "(2025/26)", "Summer 2019" -> "Summer 2020"."""
    def moved(match: re.Match[str]) -> str:
        if match.group(4):
            return str(int(match.group(4)) + years)
        first, sep, second = match.group(1), match.group(2), match.group(3)
        later = (int(second) + years) % 100 if len(second) == 2 else int(second) + years
        return f"{int(first) + years}{sep}{later:02d}"
    return _YEAR.sub(moved, text) if years else text


def title_in_force(programme: ProgrammeDefinition, deadline: date | None) -> str:
    """The programme's title for the year the deadline in force belongs to: a hub that reuses last year's form with
    a new deadline must not tell schools "(2024/25)". The years move by the whole years between the definition's
    deadline and the one in force (rounded, so an earlier deadline in the same round keeps them). A definition with
    no deadline of its own is taken to close in the spring of the first year its title names (a 2020/21 Work Group
    recruits in 2020)."""
    if deadline is None:
        return programme.title
    base = programme.deadline
    if base is None:
        first = _YEAR.search(programme.title)
        if first is None:
            return programme.title
        base = date(int(first.group(1) or first.group(4)), 3, 1)
    return shift_years(programme.title, round((deadline - base).days / 365.25))

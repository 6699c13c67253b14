"""Staff decisions and the dates they are announced on: pure values and functions, no database and no clock.

An application gets at most one ``StaffDecision`` at a time (shortlisted, selected, waitlisted, declined,
withdrawn), recorded by hub staff and never by the bot. ``parse_decision`` reads the word staff type in a filled
export or on the command line. A programme's notification dates say when schools hear: the **outcome date** is the
notification whose ``what`` says selected schools are informed (else the last one), a **shortlist date** is one
whose ``what`` mentions shortlisted schools. E-mails to schools (reminders, outcome e-mails) go on working days
only: ``outcome_send_day`` moves a weekend outcome date to the next working day (never earlier than announced), and
``reminder_send_day`` moves a weekend reminder to the next working day unless that is after the deadline, in which
case it goes on the working day before.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from rules.definitions import Notification


class StaffDecision(StrEnum):
    """What hub staff decided about an application; empty (None) until they decide."""

    SHORTLISTED = "shortlisted"
    SELECTED = "selected"
    WAITLISTED = "waitlisted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"

    @property
    def final(self) -> bool:
        """A decision the outcome e-mail on the outcome date announces."""
        return self in OUTCOME_DECISIONS


# The decisions announced on the outcome date; shortlisted schools hear on a shortlist date; withdrawn hear nothing
# (they asked to leave, and staff have already answered them).
OUTCOME_DECISIONS = frozenset({StaffDecision.SELECTED, StaffDecision.WAITLISTED, StaffDecision.DECLINED})

# Words staff write in the "Decision" column that plainly mean one decision. Anything else is refused and reported,
# never guessed: a typo must not tell a school it was declined.
_WORDS = {
    StaffDecision.SHORTLISTED: ("shortlisted", "shortlist", "short-listed", "short listed"),
    StaffDecision.SELECTED: ("selected", "select", "accepted", "accept"),
    StaffDecision.WAITLISTED: ("waitlisted", "waitlist", "wait-listed", "wait listed", "waiting list", "reserve"),
    StaffDecision.DECLINED: ("declined", "decline", "rejected", "reject", "not selected", "unsuccessful"),
    StaffDecision.WITHDRAWN: ("withdrawn", "withdraw", "withdrew"),
}
_BY_WORD = {word: decision for decision, words in _WORDS.items() for word in words}


def parse_decision(word: str) -> StaffDecision | None:
    """The decision a staff member's word names (any case, spaces and full stops around ignored), or None."""
    key = " ".join(word.replace("_", " ").split()).strip(" .").lower()
    return _BY_WORD.get(key)


def decision_words() -> str:
    """The accepted words, for error messages: "shortlisted, selected, waitlisted, declined or withdrawn"."""
    names = [d.value for d in StaffDecision]
    return ", ".join(names[:-1]) + " or " + names[-1]


# ---- the dates ----------------------------------------------------------------------------------------------------

_SELECTED = re.compile(r"\bselected\b", re.IGNORECASE)
_SHORTLISTED = re.compile(r"\bshort[\s-]?listed\b", re.IGNORECASE)


def outcome_notification(notifications: Sequence[Notification]) -> Notification | None:
    """The notification on which selected schools are informed; else the last one; None when there is none."""
    if not notifications:
        return None
    chosen = [n for n in notifications if _SELECTED.search(n.what) and not _SHORTLISTED.search(n.what)]
    return max(chosen or notifications, key=lambda n: n.date)


def shortlist_notifications(notifications: Sequence[Notification]) -> tuple[Notification, ...]:
    """Notifications that mention shortlisted schools (never the outcome date itself)."""
    outcome = outcome_notification(notifications)
    return tuple(n for n in notifications if _SHORTLISTED.search(n.what) and n != outcome)


@dataclass(frozen=True)
class Announcement:
    """One date on which schools with some decisions are told."""

    day: date
    what: str
    decisions: frozenset[StaffDecision]
    shortlist: bool


def announcements(notifications: Sequence[Notification]) -> tuple[Announcement, ...]:
    """The shortlist dates and the outcome date of a programme (as in force for a hub), in date order."""
    out = [Announcement(n.date, n.what, frozenset({StaffDecision.SHORTLISTED}), True)
           for n in shortlist_notifications(notifications)]
    outcome = outcome_notification(notifications)
    if outcome is not None:
        out.append(Announcement(outcome.date, outcome.what, OUTCOME_DECISIONS, False))
    return tuple(sorted(out, key=lambda a: a.day))


def next_announcement(notifications: Sequence[Notification], after: date) -> Announcement | None:
    """The first shortlist or outcome date on or after ``after`` (what an acknowledgement tells a school)."""
    return next((a for a in announcements(notifications) if a.day >= after), None)


# ---- working days -------------------------------------------------------------------------------------------------

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_WORKING_DAYS: tuple[str, ...] = WEEKDAYS[:5]


def is_working_day(day: date, working_days: Iterable[str] = DEFAULT_WORKING_DAYS) -> bool:
    return WEEKDAYS[day.weekday()] in set(working_days)


def _step(day: date, working_days: tuple[str, ...], direction: int) -> date:
    if not working_days:
        return day   # a config with no working day at all sends on the day rather than never
    while not is_working_day(day, working_days):
        day += timedelta(days=direction)
    return day


def outcome_send_day(day: date, working_days: Iterable[str] = DEFAULT_WORKING_DAYS) -> date:
    """The day an outcome (or shortlist) e-mail goes: the announced date, or the next working day after a weekend;
    never earlier, so no school hears before the date the hub announced."""
    return _step(day, tuple(working_days), +1)


def reminder_send_day(day: date, deadline: date | None, working_days: Iterable[str] = DEFAULT_WORKING_DAYS) -> date:
    """The day a reminder due on ``day`` goes: that day if it is a working day; else the next working day, unless
    that is after the deadline (a reminder after the deadline is useless), then the working day before."""
    days = tuple(working_days)
    later = _step(day, days, +1)
    if deadline is None or later <= deadline:
        return later
    return _step(day, days, -1)


# ---- a filled export, read into decisions -------------------------------------------------------------------------

@dataclass(frozen=True)
class DecisionRow:
    """One line of a filled export as staff wrote it (before anything is checked)."""

    line: int              # the row in the sheet (the header is row 1), so a refusal can point at it
    number: str            # the "Number" cell as written
    word: str              # the "Decision" cell as written
    note: str = ""         # a "Note" cell, if the sheet has one
    sheet: str = ""        # the sheet it came from (XLSX has one per programme)


@dataclass(frozen=True)
class KnownApplication:
    """An application a decision may name: its number (the application id staff see), school and decision now."""

    number: int
    school: str
    decision: StaffDecision | None


@dataclass(frozen=True)
class DecisionChange:
    number: int
    school: str
    before: StaffDecision | None
    after: StaffDecision
    note: str = ""


@dataclass(frozen=True)
class Refusal:
    where: str             # "row 7" (or "row 7 of secondary-tfm-wg-2024"), or the number given on the command line
    number: str
    word: str
    reason: str


@dataclass(frozen=True)
class DecisionPlan:
    """What a set of decision rows would do: the changes to record, how many said what is already recorded, and
    the rows refused (unknown numbers, unknown words) with the reason in words."""

    changes: tuple[DecisionChange, ...] = ()
    unchanged: int = 0
    refused: tuple[Refusal, ...] = ()


def _number(text: str) -> int | None:
    cleaned = text.strip().lstrip("#").strip()
    if cleaned.endswith(".0"):       # a number cell read back from a spreadsheet as 12.0
        cleaned = cleaned[:-2]
    return int(cleaned) if cleaned.isdigit() else None


def plan_decisions(rows: Iterable[DecisionRow], known: dict[int, KnownApplication]) -> DecisionPlan:
    """Check each row against the applications staff may decide (``known``, by number). A row with no decision
    written is skipped (nothing decided yet); a number nobody has, or a word that is not a decision, is refused and
    nothing is guessed; a number written twice with two different decisions is refused the second time."""
    changes: dict[int, DecisionChange] = {}
    seen: dict[int, StaffDecision] = {}
    unchanged = 0
    refused: list[Refusal] = []
    for row in rows:
        if not row.word.strip():
            continue
        where = f"row {row.line}" + (f" of {row.sheet}" if row.sheet else "") if row.line else row.number
        number = _number(row.number)
        if number is None or number not in known:
            reason = ("no number given" if not row.number.strip()
                      else f"no application has the number {row.number.strip()}")
            refused.append(Refusal(where, row.number.strip(), row.word.strip(), reason))
            continue
        decision = parse_decision(row.word)
        if decision is None:
            refused.append(Refusal(where, row.number.strip(), row.word.strip(),
                                   f"\"{row.word.strip()}\" is not a decision (use {decision_words()})"))
            continue
        if number in seen:
            if seen[number] is not decision:
                refused.append(Refusal(where, row.number.strip(), row.word.strip(),
                                       f"application {number} is given two different decisions"))
            continue
        seen[number] = decision
        app = known[number]
        if app.decision is decision:
            unchanged += 1
            continue
        changes[number] = DecisionChange(number, app.school, app.decision, decision, row.note.strip())
    return DecisionPlan(tuple(changes.values()), unchanged, tuple(refused))

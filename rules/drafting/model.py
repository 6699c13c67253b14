"""The typed pieces of a drafted definition: each field with the notes saying where the drafter guessed, the list of
things a person must confirm, and the whole draft before and after it is written out as TOML."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from rules.definitions import (
    FieldDefinition,
    HubEligibility,
    HubInfo,
    Notification,
    ProgrammeDefinition,
    RegionRule,
    Signatory,
)
from rules.drafting.layout import Slot


class ConfirmKind(StrEnum):
    NEW_FIELD = "new field"
    GONE = "field gone"
    REWORDED = "reworded"
    WORDS = "word limit"
    REQUIRED = "required"
    VALIDATORS = "checks"
    IDS = "field ids"
    SIGNATORIES = "signatories"
    DATES = "dates"
    HUB = "hub"
    TITLE = "title"
    ELIGIBILITY = "eligibility"
    LAYOUT = "layout"


@dataclass(frozen=True)
class ConfirmItem:
    kind: ConfirmKind
    text: str      # one plain-English sentence a hub's staff can act on

    def __str__(self) -> str:
        return f"[{self.kind}] {self.text}"


@dataclass(frozen=True)
class DraftField:
    definition: FieldDefinition
    slot: Slot
    notes: tuple[tuple[str, str], ...] = ()   # (key, why) comments written beside that key in the file


@dataclass(frozen=True)
class ProgrammeDraft:
    """Everything the TOML file will say, with the comments that go with it."""

    id: str
    title: str
    short_title: str
    title_patterns: tuple[str, ...]
    hub: HubInfo
    deadline: date | None
    notifications: tuple[Notification, ...]
    hints: tuple[str, ...]
    sections: tuple[str, ...]
    fields: tuple[DraftField, ...]
    signatories: tuple[Signatory, ...]
    region: RegionRule | None = None
    hub_eligibility: HubEligibility | None = None
    header: tuple[str, ...] = ()                 # comment lines at the top of the file
    notes: tuple[tuple[str, str], ...] = ()      # (top-level key, why) comments


@dataclass(frozen=True)
class Draft:
    """The result of ``draft_programme``: the file's text, the definition it loads as, and what to confirm."""

    text: str
    definition: ProgrammeDefinition
    confirm: tuple[ConfirmItem, ...]
    base: str | None = None                      # the programme it was lined up with (--from)
    kept_ids: tuple[str, ...] = ()               # field ids carried over from the base

    @property
    def lines(self) -> int:
        return len(self.text.splitlines())

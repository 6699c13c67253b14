"""The checks run on a recognised form, each a small named thing with a description and one ``check()``.

Every check sees the same ``FormContext`` and adds its findings (field issues, flags, signatory states). Each is
registered once by name (a name registered twice is an import-time error); the policy is data: ``DEFAULT_POLICY``
names the checks in order, and a programme definition may name more (``checks = [...]``), which run after them.
The pipeline runs all of them and decides once, so a school gets one complete reply, never a drip of partial ones.
A field the reader could not read with certainty (``FieldReading.sure`` false: its label not found, or an
answer it would have to guess about) is never missing or invalid: it is *unsure*, for hub staff, and nothing about
it is ever said to the school.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from parsers.errors import ConfigError
from rules.calendar import LONDON, deadline_end
from rules.definitions import FieldDefinition, ProgrammeDefinition, WordLimitKind
from rules.labels import clean_label, label_key
from rules.mapping import FieldReading, FormReading
from rules.maths_hubs import MathsHub, match_maths_hub
from rules.text import is_non_answer, normalise, word_count
from rules.validators import VALIDATORS, FieldContext
from rules.verdict import FieldIssue, Flag, FlagCode, IssueKind, SignatoryState, UnsureField


@dataclass(frozen=True)
class HubView:
    """What the checks need to know about the hub whose mailbox received the e-mail."""

    id: str
    name: str
    addresses: frozenset[str]
    programmes: frozenset[str]
    maths_hub: MathsHub | None


@dataclass(frozen=True)
class FormContext:
    programme: ProgrammeDefinition
    reading: FormReading                    # every field as read from the form: found, answer, how sure
    correspondents: frozenset[str] | None   # From, To and Cc addresses, lower case; None for a bare form
    hub: HubView | None
    received_at: datetime | None
    deadline: date | None
    pdf: bool = False                       # a PDF's printed labels may be broken over lines

    @property
    def answers(self) -> dict[str, str | None]:
        return self.reading.answers

    def trusted(self, field_id: str) -> str | None:
        """The answer when it was read with certainty, else None."""
        reading = self.reading.readings.get(field_id)
        return reading.answer if reading is not None and reading.sure else None


@dataclass
class Findings:
    issues: list[FieldIssue] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    signatories: list[SignatoryState] = field(default_factory=list)
    values: dict[str, str | None] = field(default_factory=dict)   # normalised answers, for fields and replies
    unsure: list[UnsureField] = field(default_factory=list)


class Check(Protocol):
    name: str
    description: str

    def check(self, ctx: FormContext, findings: Findings) -> None: ...


CHECKS: dict[str, Check] = {}


def register(cls: type) -> type:
    """Register one instance of a check class under its ``name``; twice is an error."""
    check = cls()
    if check.name in CHECKS:
        raise ValueError(f"check {check.name!r} is registered twice")
    CHECKS[check.name] = check
    return cls




def is_answered(value: str | None) -> bool:
    return bool(value and value.strip() and not is_non_answer(value))


def label_as_printed(programme: ProgrammeDefinition, f: FieldDefinition, reading: FieldReading | None,
                     pdf: bool = False) -> str:
    """The field's label as the school sees it on the form it sent: the printed label (this year's wording and
    years), tidied of "*" and a trailing colon, with the person named when the label is printed for several
    ("Email (Head of department)"). A PDF's label is used only when it reads as the same words as the definition's:
    its lines may have broken a word in two ("headteacher/sen ior")."""
    label = f.label
    printed = reading.printed if reading is not None and reading.found and not f.prompt else None
    if printed and (not pdf or label_key(printed) == label_key(f.label)):
        label = printed
    shown = clean_label(label)
    display = programme.display_label(f)
    return shown + display[len(f.label):] if display.startswith(f.label) else shown


def _issue(ctx: FormContext, f: FieldDefinition, kind: IssueKind, reason: str) -> FieldIssue:
    label = label_as_printed(ctx.programme, f, ctx.reading.readings.get(f.id), ctx.pdf)
    return FieldIssue(field=f.id, label=label, section=f.section, kind=kind, reason=reason)


@register
class FieldValues:
    name = "field-values"
    description = "Each answer is present where required (conditions included) and passes its validator."

    def check(self, ctx: FormContext, findings: Findings) -> None:
        for f in ctx.programme.fields:
            reading = ctx.reading.readings.get(f.id)
            if reading is None or not reading.sure:
                # Not found, or an answer the reader would have to guess about: neither missing nor invalid.
                findings.values[f.id] = None
                if self._required(f, ctx, findings):
                    doubt = reading.doubt if reading is not None else None
                    findings.unsure.append(UnsureField(
                        f.id, label_as_printed(ctx.programme, f, reading, ctx.pdf), f.section,
                        doubt or "its label was not found on the form"))
                continue
            raw = reading.answer
            if not is_answered(raw):
                findings.values[f.id] = None
                if self._required(f, ctx, findings):
                    why = "this is required"
                    if f.required_when:
                        why = f"this is required when the answer to the question above is " \
                              f"{f.required_when.equals.capitalize()}"
                    findings.issues.append(_issue(ctx, f, IssueKind.MISSING, why))
                continue
            checked = VALIDATORS[f.validator](raw or "", FieldContext(f.id, ctx.answers, ctx.hub.id if ctx.hub else None,
                                                                      ctx.received_at))
            findings.values[f.id] = checked.value
            if checked.reason:
                findings.issues.append(_issue(ctx, f, IssueKind.INVALID, checked.reason))

    @staticmethod
    def _required(f: FieldDefinition, ctx: FormContext, findings: Findings) -> bool:
        if f.required:
            return True
        if f.required_when is None:
            return False
        # Fields are checked in form order and conditions point upwards, so the controlling value is known.
        return (findings.values.get(f.required_when.field) or "").lower() == f.required_when.equals


@register
class WordLimits:
    name = "word-limits"
    description = "'Up to N words' answers are at most N words; 'about N' over 1.5 x N is flagged for staff."

    def check(self, ctx: FormContext, findings: Findings) -> None:
        for f in ctx.programme.fields:
            value = findings.values.get(f.id)
            if not f.words or not value:
                continue
            words = word_count(value)
            if f.words.kind is WordLimitKind.UP_TO and words > f.words.limit:
                findings.issues.append(_issue(ctx, f, IssueKind.INVALID,
                                              f"this should be up to {f.words.limit} words; it has {words}"))
            elif f.words.kind is WordLimitKind.ABOUT and words > 1.5 * f.words.limit:
                findings.flags.append(Flag(FlagCode.WORD_GUIDANCE,
                                           f"{f.label}: {words} words against about {f.words.limit} asked for"))


@register
class SignatoriesCopied:
    name = "signatories-copied"
    description = "Every signatory's address from the form is in the e-mail's From, To or Cc (the hub's never counts)."

    def check(self, ctx: FormContext, findings: Findings) -> None:
        hub_addresses = ctx.hub.addresses if ctx.hub else frozenset({ctx.programme.hub.address})
        issues_by_field = {i.field for i in findings.issues}
        unsure = {u.field for u in findings.unsure}
        for s in ctx.programme.signatories:
            name = findings.values.get(f"{s.role}.name")
            email = findings.values.get(f"{s.role}.email")
            if f"{s.role}.email" in issues_by_field or not email:
                email = None
            # Whether they were copied is unknown for a bare form (no e-mail) and for an address the reader could
            # not trust: such a signatory is never called "not copied".
            reading = ctx.reading.readings.get(f"{s.role}.email")
            known = ctx.correspondents is not None and f"{s.role}.email" not in unsure and \
                (reading is None or reading.sure)
            copied = known and bool(email) and email in (ctx.correspondents or ()) and email not in hub_addresses
            findings.signatories.append(SignatoryState(s.role, s.label, name, email, copied, known))


@register
class Deadline:
    name = "deadline"
    description = "Received by 23:59:59 London time on the deadline day; later is kept and flagged 'late'."

    def check(self, ctx: FormContext, findings: Findings) -> None:
        if ctx.deadline is None or ctx.received_at is None:
            return
        if ctx.received_at > deadline_end(ctx.deadline):
            when = ctx.received_at.astimezone(LONDON)
            findings.flags.append(Flag(FlagCode.LATE, f"received {when:%d %B %Y at %H:%M} (London), after the "
                                                      f"deadline of {ctx.deadline:%d %B %Y}"))


@register
class Region:
    name = "region"
    description = "For programmes limited to some local authorities, the address names one of them or their towns."

    def check(self, ctx: FormContext, findings: Findings) -> None:
        rule = ctx.programme.region
        if rule is None:
            return
        # Words only: an address typed over lines or with odd punctuation still names its town.
        address = " ".join(re.findall(r"\w+", normalise(findings.values.get(rule.field) or "")))
        if not address:
            return
        places = (" ".join(re.findall(r"\w+", normalise(place))) for place in rule.places)
        if not any(f" {place} " in f" {address} " for place in places):
            findings.flags.append(Flag(FlagCode.REGION, rule.detail))


@register
class HubMatch:
    name = "hub-match"
    description = "The form belongs to the hub whose mailbox received it, and any Maths Hub it names agrees."

    def check(self, ctx: FormContext, findings: Findings) -> None:
        hub = ctx.hub
        if hub is None:
            return
        programme = ctx.programme
        if hub.programmes and programme.id not in hub.programmes:
            findings.flags.append(Flag(FlagCode.WRONG_HUB,
                                       f"this is the {programme.short_title} form, which {hub.name} does not run"))
        eligibility = programme.hub_eligibility
        answer = ctx.trusted(eligibility.field if eligibility else "maths_hub")
        if not is_answered(answer):
            return
        named = match_maths_hub(answer or "")
        if named is None:
            return
        if eligibility and named.code not in eligibility.codes:
            findings.flags.append(Flag(FlagCode.WRONG_HUB,
                                       f"the form names {named.name}, which does not offer this programme"))
        elif hub.maths_hub and named.code != hub.maths_hub.code:
            findings.flags.append(Flag(FlagCode.WRONG_HUB,
                                       f"the form names {named.name}, but it was sent to {hub.name}"))


# The order matters: the values are read and normalised before word limits and the region look at them.
DEFAULT_POLICY: tuple[str, ...] = ("field-values", "word-limits", "signatories-copied", "deadline", "region",
                                   "hub-match")


def policy_for(programme: ProgrammeDefinition) -> tuple[Check, ...]:
    """The checks a programme's forms get: the default policy, then any the programme adds. A name no check is
    registered under is a ``ConfigError`` naming the definition file."""
    names = (*DEFAULT_POLICY, *(n for n in programme.checks if n not in DEFAULT_POLICY))
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"{programme.source or programme.id}: checks: {', '.join(unknown)} is not a known check "
                          f"(known: {', '.join(sorted(CHECKS))})")
    return tuple(CHECKS[name] for name in names)


def run_checks(ctx: FormContext, policy: tuple[Check, ...] | None = None) -> Findings:
    findings = Findings()
    for check in policy if policy is not None else policy_for(ctx.programme):
        check.check(ctx, findings)
    return findings


__all__ = ["CHECKS", "DEFAULT_POLICY", "Findings", "FormContext", "HubView", "policy_for", "register", "run_checks"]


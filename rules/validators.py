"""Field validators: each takes an answer (already stripped of hints) and returns the normalised value and, when
the answer is present but wrong, a reason a school secretary understands.

Each is registered once under the name a programme definition uses (``validator = "urn"``); registering a name twice
is an error at import. A validator sees its field's ``FieldContext`` (the other answers, the hub, the receipt time),
so a rule about one answer that needs to know more is still a validator; a rule about the form as a whole (word
limits, signatories, the deadline) is a check in ``rules.checks``.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from rules.text import join_lines, one_line

_EMAIL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_ANGLE = re.compile(r"<\s*([^<>]+?)\s*>")


@dataclass(frozen=True)
class Checked:
    value: str
    reason: str | None = None


@dataclass(frozen=True)
class FieldContext:
    """What a validator may know beyond the answer itself."""

    field_id: str
    answers: Mapping[str, str | None] = field(default_factory=dict)   # every answer on the form, as read
    hub_id: str | None = None
    received_at: datetime | None = None


Validator = Callable[[str, FieldContext | None], Checked]
VALIDATORS: dict[str, Validator] = {}


def validator(name: str) -> Callable[[Callable[..., Checked]], Callable[..., Checked]]:
    """Register a validator under ``name``, the value programme definitions use. A name registered twice is an
    import-time error, so two rules can never silently answer to one name."""
    def register(function: Callable[..., Checked]) -> Callable[..., Checked]:
        if name in VALIDATORS:
            raise ValueError(f"validator {name!r} is registered twice")
        VALIDATORS[name] = function
        return function
    return register


@validator("text")
def check_text(value: str, context: FieldContext | None = None) -> Checked:
    return Checked(join_lines(value))


@validator("address")
def check_address(value: str, context: FieldContext | None = None) -> Checked:
    return Checked(join_lines(value, ", "))


@validator("statement")
def check_statement(value: str, context: FieldContext | None = None) -> Checked:
    return Checked(value.strip())


@validator("urn")
def check_urn(value: str, context: FieldContext | None = None) -> Checked:
    compact = one_line(value)
    digits = re.sub(r"\s", "", compact)
    if re.fullmatch(r"\d{6}", digits):
        return Checked(digits)
    count = len(re.sub(r"\D", "", digits))
    if re.fullmatch(r"\d+", digits):
        return Checked(compact, f"a URN has 6 digits; this has {count}")
    return Checked(compact, "a URN is 6 digits, with no letters or other characters")


def extract_email(value: str) -> str:
    """The address in an e-mail answer: joins an address wrapped over lines in a table cell, reads
    'Name <addr>' and 'mailto:addr'."""
    text = value.strip()
    angle = _ANGLE.search(text)
    if angle:
        text = angle.group(1)
    # A wrapped address has line breaks but no spaces inside it; a name before it is on the same line.
    text = re.sub(r"\s*\n\s*", "", text).strip()
    text = re.sub(r"^mailto:", "", text, flags=re.IGNORECASE).strip().strip(".,;")
    return text


@validator("email")
def check_email(value: str, context: FieldContext | None = None) -> Checked:
    address = extract_email(value)
    if _EMAIL.match(address) and ".." not in address:
        return Checked(address.lower())
    if " " in address and "@" in address:
        return Checked(address, "this should be one e-mail address, with no spaces")
    if "@" not in address:
        return Checked(address, "this is not an e-mail address (there is no @)")
    return Checked(address, "this is not a valid e-mail address")


@validator("trn")
def check_trn(value: str, context: FieldContext | None = None) -> Checked:
    compact = re.sub(r"\s", "", value).upper()
    if re.fullmatch(r"\d{7}", compact) or compact == "UQT":
        return Checked(compact)
    if re.fullmatch(r"RP\d{2}/\d{5}", compact):
        return Checked(compact)
    return Checked(one_line(value), "a Teacher Reference Number has 7 digits (or the older RP12/34567 form, "
                                    "or UQT if unqualified)")


@validator("telephone")
def check_telephone(value: str, context: FieldContext | None = None) -> Checked:
    compact = re.sub(r"[\s()\-.]", "", value)
    if compact.startswith("+44"):
        compact = "0" + compact[3:].lstrip("0")
    if re.fullmatch(r"\d{10,11}", compact):
        return Checked(one_line(value))
    return Checked(one_line(value), "a telephone number has 10 or 11 digits")


@validator("yes_no")
def check_yes_no(value: str, context: FieldContext | None = None) -> Checked:
    word = one_line(value).strip(" .!").lower()
    if word in {"yes", "y"}:
        return Checked("yes")
    if word in {"no", "n"}:
        return Checked("no")
    # "Yes - we worked with ..." still says yes; anything else is not an answer we can read.
    first = re.split(r"[\s,;:\-]+", word, maxsplit=1)[0]
    if first in {"yes", "no"}:
        return Checked(first)
    return Checked(one_line(value), "please answer Yes or No")


@validator("maths_hub")
def check_maths_hub(value: str, context: FieldContext | None = None) -> Checked:
    # Kept as the school wrote it; the hub-match check decides what it names.
    return Checked(join_lines(value))


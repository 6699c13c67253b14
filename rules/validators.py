"""Field validators: each takes an answer (already stripped of hints) and returns the normalised value and, when
the answer is present but wrong, a reason a school secretary understands.

The names here are the ``validator`` values used in the programme definition files.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rules.text import join_lines, one_line

_EMAIL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_ANGLE = re.compile(r"<\s*([^<>]+?)\s*>")


@dataclass(frozen=True)
class Checked:
    value: str
    reason: str | None = None


def check_text(value: str) -> Checked:
    return Checked(join_lines(value))


def check_address(value: str) -> Checked:
    return Checked(join_lines(value, ", "))


def check_statement(value: str) -> Checked:
    return Checked(value.strip())


def check_urn(value: str) -> Checked:
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


def check_email(value: str) -> Checked:
    address = extract_email(value)
    if _EMAIL.match(address) and ".." not in address:
        return Checked(address.lower())
    if " " in address and "@" in address:
        return Checked(address, "this should be one e-mail address, with no spaces")
    if "@" not in address:
        return Checked(address, "this is not an e-mail address (there is no @)")
    return Checked(address, "this is not a valid e-mail address")


def check_trn(value: str) -> Checked:
    compact = re.sub(r"\s", "", value).upper()
    if re.fullmatch(r"\d{7}", compact) or compact == "UQT":
        return Checked(compact)
    if re.fullmatch(r"RP\d{2}/\d{5}", compact):
        return Checked(compact)
    return Checked(one_line(value), "a Teacher Reference Number has 7 digits (or the older RP12/34567 form, "
                                    "or UQT if unqualified)")


def check_telephone(value: str) -> Checked:
    compact = re.sub(r"[\s()\-.]", "", value)
    if compact.startswith("+44"):
        compact = "0" + compact[3:].lstrip("0")
    if re.fullmatch(r"\d{10,11}", compact):
        return Checked(one_line(value))
    return Checked(one_line(value), "a telephone number has 10 or 11 digits")


def check_yes_no(value: str) -> Checked:
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


def check_maths_hub(value: str) -> Checked:
    # Kept as the school wrote it; the hub-match check decides what it names.
    return Checked(join_lines(value))


VALIDATORS: dict[str, Callable[[str], Checked]] = {
    "text": check_text,
    "address": check_address,
    "statement": check_statement,
    "urn": check_urn,
    "email": check_email,
    "trn": check_trn,
    "telephone": check_telephone,
    "yes_no": check_yes_no,
    "maths_hub": check_maths_hub,
}

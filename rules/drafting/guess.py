"""What a person would guess reading a blank form: whose field a label is and what kind of answer it wants, the
form's title, the hub it goes back to, and its dates.

Field ids follow the project's contract (``shared/spec/programmes.md``): ``<role>.<part>`` where the role is a
person (``head``, ``hod``, ``teacher1``...) or ``school`` or a word from the heading, and the part comes from the
label (``name``, ``email``, ``urn``...). A label that names a person ("Name of Head Teacher") decides the role
itself; "E-mail" beside it in the same row belongs to that person; otherwise the heading decides. Validators come
from labels (URN, TRN, e-mail, telephone, address, Yes/No) and printed hints; word limits from the prompt's
"up to / about N words". Pure functions over text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from rules.definitions import WordLimit, WordLimitKind
from rules.drafting.layout import FULL_DATE, MONTHS, one_line
from rules.labels import label_key, label_words, similarity
from rules.maths_hubs import all_hubs
from rules.text import normalise

PERSON_ROLES = ("head", "hod", "teacher1", "teacher2", "teacher3", "teacher4")

_TEACHER_N = re.compile(r"\b(?:teacher|advocate|participant|member|leader)\s*(\d)\b")
_HOD = re.compile(r"\bhead\s+of\s+(?:the\s+)?(?:maths\s+|mathematics\s+)?(?:department|maths|mathematics)\b|\bhod\b")
_HEAD = re.compile(r"\bheadteacher\b|\bhead\b(?!\s+of)|\bprincipal\b|\bsenior\s+leader\b")
_TITLE_WORDS = re.compile(r"\b(?:name|of|the|trg|lead|mastery|advocate|maths|subject|senior|leader|teacher|"
                          r"headteacher|head|hod|department|principal|participating|\d|/)\b")
_STOP = frozenset("a an and are as at be by do does for from has have how i if in is it its of on or our please "
                  "the their this to was we what which who why will wish with would you your yes no details "
                  "information applications application section statement form engagement".split())
_QUESTION_START = ("has ", "have ", "is ", "are ", "do ", "does ", "did ", "will ", "would ", "can ", "was ")
_IF_YES = re.compile(r"^\s*if\s+(?:yes|so)\b", re.IGNORECASE)
_YES_NO = re.compile(r"\byes\s*/\s*no\b|\(y/n\)|\byes or no\b", re.IGNORECASE)
_OPTIONAL = re.compile(r"\(if known\)|\boptional\b|\bif applicable\b|\bif any\b", re.IGNORECASE)
_UP_TO = re.compile(r"\b(?:up\s+to|maximum(?:\s+of)?|max\.?|no\s+more\s+than|not\s+more\s+than|not\s+exceeding|"
                    r"at\s+most|limit(?:ed)?\s+(?:of|to))\s+(\d{2,4})\s+words\b|\b(\d{2,4})\s+words?\s+"
                    r"(?:max(?:imum)?|limit)\b", re.IGNORECASE)
_ABOUT = re.compile(r"\b(?:about|approx\.?|approximately|around|roughly|c\.|circa)\s+(\d{2,4})\s+words\b",
                    re.IGNORECASE)
_BARE_WORDS = re.compile(r"\b(\d{2,4})\s+words\b", re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PROMPT_WORDS = 12   # enough of a statement's printed prompt to find it; the reader compares from the start


class Role(StrEnum):
    """Where a role came from, for the comments in a drafted file."""

    LABEL = "label"      # the label names the person ("Name of Head Teacher")
    ROW = "row"          # an e-mail or telephone beside a person's name in the same row
    SECTION = "section"  # the heading above the table


def person_role(text: str) -> str | None:
    """The person a heading, label or signatory title names: head, hod, teacherN; None when it names nobody."""
    key = normalise(text)
    if m := _TEACHER_N.search(key):
        return f"teacher{m.group(1)}"
    if _HOD.search(key):
        return "hod"
    if _HEAD.search(key):
        return "head"
    return None


def _slug(words: list[str], limit: int) -> str:
    kept = [w for w in words if w not in _STOP and w.isascii() and w.isalnum() and not w.isdigit()]
    return "_".join(kept[:limit])


def section_role(heading: str, last_teacher: str | None) -> str:
    """The role of a heading's fields when their labels name nobody: a person, "school", or a word of the heading
    ("Group Applications" gives "group", "Engagement with a Secondary Mastery Specialist" gives "specialist")."""
    if role := person_role(heading):
        return role
    key = label_key(heading)
    words = key.split()
    if "teacher" in words and last_teacher:
        return last_teacher   # "Teacher statement" right after "Teacher 1"
    if "school" in words:
        return "school"
    kept = [w for w in words if w not in _STOP and w.isalnum() and not w.isdigit()]
    if not kept:
        return "form"
    word = kept[-1]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


@dataclass(frozen=True)
class Part:
    part: str
    validator: str
    why: str      # for the drafted file's comment


def label_part(label: str) -> Part:
    """What a label asks for, and the validator that checks it."""
    key = label_words(label)
    if re.search(r"\burn\b", key):
        return Part("urn", "urn", "URN in the label")
    if re.search(r"\btrn\b|\bteacher\s+ref|\bteacher\s+reference", key):
        return Part("trn", "trn", "Teacher Reference Number in the label")
    if "email" in key.split():
        return Part("email", "email", "e-mail in the label")
    if re.search(r"\btelephone\b|\bmobile\b", key):
        return Part("telephone", "telephone", "telephone in the label")
    if re.search(r"\bpostcode\b", key):
        return Part("postcode", "text", "postcode in the label")
    if re.search(r"\baddress\b", key):
        return Part("address", "address", "address in the label")
    if re.search(r"^(?:which\s+|name\s+of\s+(?:the\s+|your\s+)?)?maths\s+hub\b", key):
        return Part("maths_hub", "maths_hub", "asks which Maths Hub")
    if re.search(r"\byear\s+groups?\b", key):
        return Part("year_groups", "text", "")
    if re.search(r"\broles?\b", key):
        return Part("role", "text", "")
    if "username" in key or "user name" in key:
        return Part("ncetm_username" if "ncetm" in key else "username", "text", "")
    if "local authority" in key:
        return Part("local_authority", "text", "")
    if re.search(r"^(?:full\s+)?name\b|\bname$", key):
        return Part("name", "text", "")
    if person_role(label) and not _TITLE_WORDS.sub(" ", key).strip():
        return Part("name", "text", "a person's title alone: their name")   # "Head Teacher" ____
    return Part(_slug(key.split(), 3) or "answer", "text", "")


def label_role(label: str) -> str | None:
    """A role named by the label itself. "School URN" and "Name of school" name the school."""
    if role := person_role(label):
        return role
    words = label_key(label).split()
    if "school" in words and ("urn" in words or "name" in words):
        return "school"
    return None


def is_yes_no(label: str, hints: tuple[str, ...], next_label: str | None) -> bool:
    if _YES_NO.search(label) or any(_YES_NO.search(h) for h in hints):
        return True
    question = normalise(label).endswith("?") and normalise(label).startswith(_QUESTION_START)
    return question and next_label is not None and bool(_IF_YES.match(next_label))


def is_optional(label: str) -> bool:
    return bool(_OPTIONAL.search(label))


def is_if_yes(label: str) -> bool:
    return bool(_IF_YES.match(label))


def word_limit(text: str) -> tuple[WordLimit | None, bool]:
    """The word guidance printed in a prompt, and whether its kind was guessed (a bare "150 words")."""
    if m := _UP_TO.search(text):
        return WordLimit(int(m.group(1) or m.group(2)), WordLimitKind.UP_TO), False
    if m := _ABOUT.search(text):
        return WordLimit(int(m.group(1)), WordLimitKind.ABOUT), False
    if m := _BARE_WORDS.search(text):
        return WordLimit(int(m.group(1)), WordLimitKind.ABOUT), True
    return None, False


def prompt_start(prompt: str) -> str:
    """Enough of a printed prompt to find its box: the reader compares the start of the cell with it."""
    words = one_line(prompt).split()[:_PROMPT_WORDS]
    return " ".join(words).rstrip(".,;:")


def statement_similarity(new_prompt: str, old_prompt: str) -> float:
    """How alike two statement prompts are, over the length of the shorter (definitions keep only a prompt's
    start)."""
    a, b = label_key(new_prompt).split(), label_key(old_prompt).split()
    n = min(len(a), len(b))
    return similarity(" ".join(a[:n]), " ".join(b[:n])) if n else 0.0


# ---- the form's title ------------------------------------------------------------------------------------------

def _without_dates(line: str) -> str:
    line = FULL_DATE.sub(" ", line)
    return one_line(re.sub(r"\s+\bby\s*$", "", one_line(line), flags=re.IGNORECASE))


def title_lines(preamble: tuple[str, ...]) -> tuple[str, ...]:
    """The preamble lines that name the form (not instructions, addresses or eligibility notes)."""
    out = []
    for line in preamble:
        low = normalise(line)
        if "@" in line or low.startswith(("please", "(please", "(", "for schools", "note", "return", "*")):
            continue
        if len(line.split()) > 16 or line.endswith("."):
            continue
        out.append(line)
    return tuple(out)


_KINDS = ("application form", "application", "expression of interest form", "expression of interest",
          "declaration of commitment", "declaration")
_YEARISH = re.compile(r"\(?\b(?:19|20)\d\d(?:\s*[/\-–]\s*(?:19|20)?\d\d)?\b\)?")


@dataclass(frozen=True)
class TitleGuess:
    title: str
    short_title: str
    patterns: tuple[str, ...]    # regular expressions, matched case-insensitively against the normalised text


def guess_title(preamble: tuple[str, ...], fallback: str) -> TitleGuess:
    lines = title_lines(preamble)
    if not lines:
        name = fallback.replace("-", " ").replace("_", " ").strip() or "New programme"
        return TitleGuess(name, name, (pattern_for(name),))
    cleaned = [_without_dates(line) for line in lines]
    main_index = max(range(len(lines)), key=lambda i: (len(cleaned[i].split()), -i))
    main = cleaned[main_index]
    title = main
    year_line = next((lines[i] for i in range(len(lines)) if i != main_index and _YEARISH.search(lines[i])), None)
    if not _YEARISH.search(main) and year_line:
        year = _YEARISH.search(year_line).group(0).strip("()")
        title = f"{main} ({year})"
    kind = None
    for line in lines:
        low = normalise(_YEARISH.sub(" ", line))
        kind = next((k for k in _KINDS if low.strip(" ():") == k or low.startswith(k)), None)
        if kind:
            break
    short = one_line(_YEARISH.sub(" ", main)).strip(" :-")
    if kind and kind.split()[0] not in normalise(short):
        short = f"{short} {kind.removesuffix(' form')}"
    patterns = [pattern_for(lines[main_index])]
    if year_line and year_line != lines[main_index]:
        patterns.append(pattern_for(year_line))
    return TitleGuess(title, short, tuple(patterns))


def pattern_for(line: str) -> str:
    """A title line as a pattern the recogniser matches in normalised text, any white space between words."""
    return r"\s+".join(re.escape(word) for word in normalise(line).split())


# ---- the hub -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HubGuess:
    id: str
    name: str
    address: str
    how: str     # what the guess rests on, for the person confirming it


def _hub_id(name: str) -> str:
    words = [w for w in re.sub(r"[^a-z0-9 ]", " ", normalise(name)).split() if w not in {"maths", "hub", "the"}]
    return "-".join(words) or "hub"


def guess_hub(paragraphs: tuple[str, ...]) -> HubGuess | None:
    text = "\n".join(paragraphs)
    address = next((m.group(0).rstrip(".").lower() for m in _EMAIL.finditer(text)), None)
    norm = normalise(text)
    named = None   # (official name, the name that matched, why)
    for hub in all_hubs():
        for name in (hub.name, *hub.aliases):
            if normalise(name) in norm:
                named = (hub.name, name, f"'{name}' is printed on the form")
                break
        if named:
            break
    if named is None and address:
        domain = re.sub(r"[^a-z0-9]", "", address.partition("@")[2])
        for hub in all_hubs():
            for name in (hub.name, *hub.aliases):
                core = re.sub(r"[^a-z0-9]", "", _hub_id(name))
                if len(core) >= 3 and core in domain:
                    named = (hub.name, name, f"the address {address} looks like {hub.name}'s")
                    break
            if named:
                break
    if address is None:
        return None
    if named is None:
        domain = address.partition("@")[2].split(".")[0]
        return HubGuess(_hub_id(domain), f"{domain} Maths Hub", address,
                        f"only the address {address} is printed: name the hub")
    # The id comes from the name that matched: "BBO Maths Hub" gives "bbo", as hubs call themselves.
    return HubGuess(_hub_id(named[1]), named[0], address, named[2])


def guess_region(preamble: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """'For schools situated in Birmingham, Sandwell and Dudley': the sentence and the places it names."""
    for line in preamble:
        m = re.match(r"(?i)^\s*(?:only\s+)?for\s+schools\s+(?:situated\s+|based\s+|located\s+)?in\s+(.+?)\.?$", line)
        if m:
            places = [p.strip() for p in re.split(r",|\band\b|&", m.group(1)) if p.strip()]
            return line, tuple(places)
    return None


# ---- dates ---------------------------------------------------------------------------------------------------------

class DateKind(StrEnum):
    DEADLINE = "deadline"
    NOTIFICATION = "notification"
    OTHER = "other"


@dataclass(frozen=True)
class FoundDate:
    day: date
    kind: DateKind
    what: str           # for a notification: "selected schools informed" and the like
    sentence: str


_NOTIFY = re.compile(r"\b(inform|notif|told|tell|hear|shortlist|selected|successful|outcome|decision)", re.I)
_DEADLINE = re.compile(r"\b(by|deadline|closing\s+date|no\s+later\s+than|return|submit|before|due)\b", re.I)


def _month(name: str) -> int:
    low = name.lower()[:3]
    return next(i for i, m in enumerate(MONTHS, start=1) if m.startswith(low))


def _date_of(m: re.Match[str]) -> date | None:
    try:
        if m.group("day"):
            return date(int(m.group("year")), _month(m.group("month")), int(m.group("day")))
        if m.group("day2"):
            return date(int(m.group("year2")), _month(m.group("month2")), int(m.group("day2")))
        return date(int(m.group("year3")), int(m.group("month3")), int(m.group("day3")))
    except ValueError:
        return None   # "31st June": printed wrongly, left for a person


def find_dates(paragraphs: tuple[str, ...]) -> tuple[FoundDate, ...]:
    found: list[FoundDate] = []
    deadline_seen = False
    for paragraph in paragraphs:
        for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
            for m in FULL_DATE.finditer(sentence):
                day = _date_of(m)
                if day is None:
                    continue
                before = sentence[: m.start()]
                if _NOTIFY.search(sentence):
                    what = ("shortlisted schools informed" if re.search(r"shortlist", sentence, re.I)
                            else "selected schools informed")
                    found.append(FoundDate(day, DateKind.NOTIFICATION, what, sentence))
                elif not deadline_seen and _DEADLINE.search(before):
                    deadline_seen = True
                    found.append(FoundDate(day, DateKind.DEADLINE, "", sentence))
                else:
                    found.append(FoundDate(day, DateKind.OTHER, "", sentence))
    return tuple(found)

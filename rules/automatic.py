"""Recognise automatic mail (RFC 3834) so the bot never answers it: out-of-office replies, bounces and delivery
reports, mailing-list and bulk mail, and the bot's own messages coming back.

Answering any of these risks a mail loop or a reply to nobody, so such a message gets the status ``ignored``. Each
rule is a small named check that returns a short reason or None, and the policy is just the ordered list of rules
(data, in the style of Mailman's moderation chain): add, drop or reorder rules without touching the others. Reasons
name the rule and the header, never an address or a person's name.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from parsers.types import ParsedEmail

# Every e-mail the bot sends carries this header; mail that carries it is our own and never answered.
LOOP_HEADER = "X-Hubbot-Loop"

__all__ = ["Context", "Rule", "DEFAULT_POLICY", "automatic_reason", "automatic_reasons"]


@dataclass(frozen=True)
class Context:
    """What the rules need to know about us: our loop-marking header and our own mailbox addresses."""

    loop_header: str = LOOP_HEADER
    own_addresses: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[ParsedEmail, Context], str | None]


def _first_token(value: str | None) -> str:
    """The keyword of a structured value: "auto-replied" from "Auto-Replied (vacation); x=y"."""
    if value is None:
        return ""
    return re.split(r"[\s;(]", value.strip(), maxsplit=1)[0].lower()


def _short(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


# ---- the checks --------------------------------------------------------------------------------------------------

def _auto_submitted(email: ParsedEmail, ctx: Context) -> str | None:
    value = email.header("Auto-Submitted")
    if value is None:
        return None
    keyword = _first_token(value)
    if keyword == "no":
        return None
    return f"Auto-Submitted: {_short(keyword or 'present')}"


def _precedence(email: ParsedEmail, ctx: Context) -> str | None:
    keyword = _first_token(email.header("Precedence"))
    # auto_reply is not in RFC 3834, but vacation programs (and some Exchange servers) set it.
    if keyword in ("bulk", "list", "junk", "auto_reply"):
        return f"Precedence: {keyword}"
    return None


def _list_headers(email: ParsedEmail, ctx: Context) -> str | None:
    for name, _value in email.headers:
        if name.lower().startswith("list-"):
            return f"mailing-list header {_short(name)}"
    return None


def _auto_response_suppress(email: ParsedEmail, ctx: Context) -> str | None:
    if email.header("X-Auto-Response-Suppress") is not None:
        return "X-Auto-Response-Suppress header"
    return None


def _null_return_path(email: ParsedEmail, ctx: Context) -> str | None:
    if email.return_path == "":
        return "null return path (Return-Path: <>)"
    return None


# mailer-daemon and postmaster must be the whole local part (or carry a +tag); no-reply may also sit among other
# words, as in "gmail-noreply" or "no-reply-notifications".
_SYSTEM_LOCAL_PART = re.compile(
    r"^(?P<kind>mailer-daemon|mailer_daemon|post[-_.]?master)(?:\+.*)?$"
    r"|(?:^|[-_.+])(?P<noreply>no[-_.]?reply|do[-_.]?not[-_.]?reply)(?:$|[-_.+])"
)


def _system_sender(email: ParsedEmail, ctx: Context) -> str | None:
    candidates = [email.sender.email] if email.sender else []
    if email.return_path:
        candidates.append(email.return_path)
    for address in candidates:
        local = address.rsplit("@", 1)[0].lower()
        match = _SYSTEM_LOCAL_PART.search(local)
        if match:
            kind = re.sub(r"[-_.]", "", match.group("kind") or match.group("noreply"))
            return f"system sender ({kind})"
    return None


def _own_loop_header(email: ParsedEmail, ctx: Context) -> str | None:
    if ctx.loop_header and ctx.loop_header.lower() in email.header_names():
        return f"our own loop header {ctx.loop_header}"
    return None


def _own_address(email: ParsedEmail, ctx: Context) -> str | None:
    own = {address.lower() for address in ctx.own_addresses}
    if email.sender and email.sender.email in own:
        return "sent from our own address"
    return None


_REPORT_PARTS = ("message/delivery-status", "message/global-delivery-status", "message/disposition-notification",
                 "message/feedback-report")
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliverable|undelivered mail|delivery status notification|delivery failure|"
    r"mail delivery failed|failure notice|returned mail\b|delivery has failed|"
    r"mail system error - returned mail|non[- ]?delivery)",
    re.IGNORECASE,
)


def _delivery_report(email: ParsedEmail, ctx: Context) -> str | None:
    content_type = _first_token(email.header("Content-Type"))
    if content_type == "multipart/report":
        return "delivery or read report (multipart/report)"
    for attachment in email.attachments:
        # A report a person forwarded to us is a person writing, so only the sender's own parts count.
        if not attachment.from_forwarded and attachment.content_type in _REPORT_PARTS:
            return f"delivery report part ({attachment.content_type})"
    if email.header("X-Failed-Recipients") is not None:
        return "X-Failed-Recipients header"
    if _BOUNCE_SUBJECT.match(email.subject):
        return "bounce subject"
    return None


_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoreply-from", "x-mail-autoreply")
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?reply|auto[- ]?response|autosvar|out of (the )?office|"
    r"away from (the )?office|auto\s*:|abwesenheitsnotiz|r[ée]ponse automatique)",
    re.IGNORECASE,
)


def _out_of_office(email: ParsedEmail, ctx: Context) -> str | None:
    names = email.header_names()
    for header in _AUTOREPLY_HEADERS:
        if header in names:
            return f"out-of-office header {header}"
    if _first_token(email.header("X-Autogenerated")) == "reply":
        return "out-of-office header x-autogenerated"
    if _AUTOREPLY_SUBJECT.match(email.subject):
        return "out-of-office subject"
    return None


def _anonymous_notice(email: ParsedEmail, ctx: Context) -> str | None:
    # Exchange writes some non-delivery reports with an empty From and an empty Subject; there is nobody to
    # answer, and answering the envelope could start a loop.
    # A From header that is there but names nobody ("", "<>", a display name alone): a broken header block that
    # lost its From altogether is a person's mail gone wrong, and stays for staff to read.
    value = email.header("From")
    if value is None or (email.sender is not None and email.sender.email) or "@" in value:
        return None
    if not email.subject.strip():
        return "empty From and Subject (a server notice)"
    return None


_CHALLENGE_HEADERS = ("x-boxbe-challenge", "x-spamarrest", "x-spam-arrest", "x-challenge", "x-cr-hashedpuzzle",
                      "x-tmda", "x-mailshield-challenge")
_CHALLENGE_SUBJECT = re.compile(
    r"(please (confirm|verify) (your|that you sent|the) (message|e-?mail|address)|verify your e-?mail address to "
    r"deliver|your message (is )?(awaiting|awaits|pending) (verification|approval)|spam ?arrest|"
    r"sender verification|challenge[- ]response|approve your (message|e-?mail)|is protected by)",
    re.IGNORECASE,
)


def _challenge_response(email: ParsedEmail, ctx: Context) -> str | None:
    # Challenge-response filters ask the sender to prove they are human; answering the challenge (or the answer)
    # is exactly the robot ping-pong the bot must never play.
    names = email.header_names()
    for header in _CHALLENGE_HEADERS:
        if header in names:
            return f"challenge-response header {header}"
    if _CHALLENGE_SUBJECT.search(email.subject):
        return "challenge-response subject"
    return None


_LOOP_SUBJECT = re.compile(r"\b(mail ?loop|loop (alert|detected|warning)|looping message)\b", re.IGNORECASE)


def _loop_alert(email: ParsedEmail, ctx: Context) -> str | None:
    # Lists and ticket systems mark what they send (X-Loop) and send "loop detected" notices to both sides.
    names = email.header_names()
    for header in ("x-loop", "rt-loop-prevention", "x-mailman-loop"):
        if header in names:
            return f"loop-prevention header {header}"
    if _LOOP_SUBJECT.search(email.subject):
        return "loop alert subject"
    return None


def _feedback_report(email: ParsedEmail, ctx: Context) -> str | None:
    # ARF (RFC 5965): a mailbox provider telling us someone pressed "spam". Also matched as multipart/report; this
    # rule names it, and catches reports whose outer type a gateway rewrote.
    content_type = (email.header("Content-Type") or "").lower()
    if "feedback-report" in content_type or email.header("Feedback-Type") is not None:
        return "abuse feedback report (ARF)"
    for attachment in email.attachments:
        if not attachment.from_forwarded and attachment.content_type == "message/feedback-report":
            return "abuse feedback report (ARF)"
    return None


# ---- the policy --------------------------------------------------------------------------------------------------

#: The rules in the order they are tried; the first reason found is the one reported.
DEFAULT_POLICY: tuple[Rule, ...] = (
    Rule("own-loop", "carries our own loop header: our own reply came back", _own_loop_header),
    Rule("own-address", "sent from one of our own mailbox addresses", _own_address),
    Rule("auto-submitted", "RFC 3834 Auto-Submitted header with any value but 'no'", _auto_submitted),
    Rule("feedback-report", "ARF abuse feedback report (report-type=feedback-report)", _feedback_report),
    Rule("delivery-report", "bounce or delivery/read report: multipart/report, report parts, "
                            "X-Failed-Recipients, a bounce subject", _delivery_report),
    Rule("null-return-path", "Return-Path: <> (RFC 5321: notifications are sent with a null path)",
         _null_return_path),
    Rule("system-sender", "sender is MAILER-DAEMON, postmaster (post_master), bounce(s), no-reply or "
                          "do-not-reply", _system_sender),
    Rule("anonymous-notice", "no From address and no Subject (Exchange non-delivery reports)", _anonymous_notice),
    Rule("challenge-response", "a challenge-response filter asking the sender to prove they are human",
         _challenge_response),
    Rule("loop-alert", "X-Loop and friends, or a 'mail loop detected' notice", _loop_alert),
    Rule("out-of-office", "X-Autoreply / X-Autorespond headers or an out-of-office subject", _out_of_office),
    Rule("auto-response-suppress", "X-Auto-Response-Suppress header (Exchange sets it on automatic mail)",
         _auto_response_suppress),
    Rule("precedence", "Precedence: bulk, list, junk or auto_reply", _precedence),
    Rule("list", "any List-* header (RFC 2369/2919): mailing-list traffic", _list_headers),
)


def automatic_reasons(
    email: ParsedEmail, *, context: Context = Context(), policy: Sequence[Rule] = DEFAULT_POLICY
) -> list[tuple[str, str]]:
    """Every (rule name, reason) that fires, in policy order. A rule that fails counts as firing: when in doubt,
    do not answer."""
    out: list[tuple[str, str]] = []
    for rule in policy:
        try:
            reason = rule.check(email, context)
        except Exception:  # noqa: BLE001 - a broken rule must not crash the worker
            reason = "rule failed on this message"
        if reason:
            out.append((rule.name, reason))
    return out


def automatic_reason(
    email: ParsedEmail,
    *,
    loop_header: str = LOOP_HEADER,
    own_addresses: frozenset[str] = frozenset(),
    policy: Sequence[Rule] = DEFAULT_POLICY,
) -> str | None:
    """Why this message is automatic and must not be answered, or None for mail a person wrote."""
    context = Context(loop_header=loop_header, own_addresses=frozenset(a.lower() for a in own_addresses))
    for rule in policy:
        try:
            reason = rule.check(email, context)
        except Exception:  # noqa: BLE001
            reason = f"rule {rule.name} failed on this message"
        if reason:
            return reason
    return None

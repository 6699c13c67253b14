"""The readable summary ``hubbot check`` prints for hub staff: status, the fields with what is wrong (and what the
bot was unsure of, which it never tells the school), how the form was recognised and how loosely its labels
matched, the signatories, the flags and the reply that would be sent."""
from __future__ import annotations

import shutil
import textwrap

from parsers.safe_text import one_line, printable
from rules.authentication import NOT_CONFIGURED
from rules.verdict import IssueKind, Verdict


def _table(rows: list[tuple[str, ...]], headers: tuple[str, ...], width: int) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    # Shrink the widest columns until the table fits the terminal.
    while sum(widths) + 2 * len(widths) > width and max(widths) > 12:
        widths[widths.index(max(widths))] -= 1

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(textwrap.shorten(c, w, placeholder="…").ljust(w) if len(c) > w else c.ljust(w)
                         for c, w in zip(cells, widths)).rstrip()

    return [line(headers), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)]


def format_summary(name: str, verdict: Verdict) -> str:
    width = min(shutil.get_terminal_size((110, 24)).columns, 140)
    out = [f"== {name}", f"Status:    {verdict.status.value}"]
    if verdict.programme:
        out.append(f"Programme: {verdict.programme}" + _recognition_note(verdict))
    bare = not verdict.message_id and verdict.sender is None and verdict.attachment is not None
    out.append(f"Hub:       {verdict.hub or ('(a form on its own: no e-mail)' if bare else '(not one of our mailboxes)')}")
    out.append(f"From:      {verdict.sender or '(none)'}")
    if verdict.authentication != NOT_CONFIGURED:
        out.append(f"Sender:    {verdict.authentication.result.value} ({verdict.authentication.detail})")
    if verdict.received_at:
        out.append(f"Received:  {verdict.received_at:%d %b %Y %H:%M %Z}" + ("  (LATE)" if verdict.late else ""))
    if verdict.attachment:
        out.append(f"Form:      {one_line(verdict.attachment)}")
    if verdict.ignored_because:
        out.append(f"Ignored:   {verdict.ignored_because} (automatic mail is never answered)")
    for problem in verdict.problems:
        out.append(f"Problem:   {problem}")
    if verdict.fields:
        issues = {i.field: i for i in verdict.issues}
        unsure = {u.field: u for u in verdict.unsure}
        rows = []
        for field_id, value in verdict.fields.items():
            issue = issues.get(field_id)
            what = "" if issue is None else ("MISSING" if issue.kind is IssueKind.MISSING else "INVALID: ") + (
                "" if issue.kind is IssueKind.MISSING else issue.reason)
            if field_id in unsure:
                what = f"UNSURE (not told to the school): {unsure[field_id].reason}"
            elif not what:
                what = _loose_label(verdict.readings.get(field_id))
            rows.append((field_id, " ".join((value or "").split()) or "-", what))
        out += ["", "Fields:"] + ["  " + r for r in _table(rows, ("field", "answer", "problem"), width - 2)]
    if verdict.signatories:
        rows = [(s.title, s.name or "-", s.email or "-",
                 "unknown" if not s.known else "copied" if s.copied else "NOT COPIED") for s in verdict.signatories]
        out += ["", "Signatories:"] + ["  " + r for r in _table(rows, ("role", "name", "email", "state"), width - 2)]
    if verdict.flags:
        out += ["", "Flags:"] + [f"  {f.code.value}: {f.detail}" for f in verdict.flags]
    out.append("")
    if verdict.reply is None:
        out.append("Reply:     none")
    else:
        r = verdict.reply
        out += [f"Reply:     {r.kind.value}", f"  To:      {', '.join(r.to)}"]
        if r.cc:
            out.append(f"  Cc:      {', '.join(r.cc)}")
        out += [f"  Subject: {one_line(r.subject)}", ""] + ["    " + line for line in r.text.splitlines()]
    # Everything shown came from a stranger's e-mail or form: no escape sequence reaches the terminal.
    return printable("\n".join(out) + "\n")


def _recognition_note(verdict: Verdict) -> str:
    r = verdict.recognition or {}
    if not r:
        return ""
    note = f"  (title {'found' if r.get('title') else 'not found'}"
    if r.get("title") and not r.get("title_exact"):
        note += " with another year"
    note += f", {r.get('label_share', 0):.0%} of labels"
    if r.get("runner_up"):
        note += f"; next {r['runner_up']}, margin {r.get('margin', 0):.2f}"
        if r.get("tie_broken_by_hub"):
            note += ", a tie: chosen as this hub's programme"
    return note + ")"


def _loose_label(reading: dict | None) -> str:
    """A label matched loosely (reworded, a typo): say how it was printed and how sure the match was."""
    if not reading or not reading.get("found") or reading.get("score", 1.0) >= 1.0:
        return ""
    return f"label read as '{reading.get('printed')}' ({reading['score']:.2f}, margin {reading.get('margin', 0):.2f})"


def format_cycle(report, *, smtp: bool = True) -> str:
    """One line per hub and a count per outcome, for `hubbot run --once`. Without ``smtp`` (no ``[smtp]`` or
    ``[hubs.smtp]``) the replies were written to the outbox folder, and the summary must not say they were sent."""
    from collections import Counter

    lines = []
    for hub_id, count in report.fetched.items():
        lines.append(f"{hub_id}: {count} new message(s) stored")
    for hub_id, error in report.mailbox_errors.items():
        lines.append(f"{hub_id}: MAILBOX NOT READ: {error}")
    for hub_id, warning in getattr(report, "mailbox_warnings", {}).items():
        lines.append(f"{hub_id}: WARNING: {warning}")
    statuses = Counter(o.status.value for o in report.outcomes)
    lines.append("processed: " + (", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "nothing new"))
    if report.failed_messages:
        lines.append(f"failed (will retry): {report.failed_messages}")
    o = report.outbox
    done = f"{o.sent} sent" if smtp else f"{o.sent} written to the outbox folder, not sent"
    lines.append(f"replies: {done}, {o.retried} to retry, {o.failed} failed"
                 + (f", {o.uncertain} uncertain (check by hand)" if o.uncertain else ""))
    if getattr(report, "outbox_error", None):
        lines.append(f"OUTBOX NOT SENT: {report.outbox_error} (see the log)")
    for key in getattr(report, "incidents_opened", ()):
        lines.append(f"incident opened: {key} (see `hubbot status`)")
    for key in getattr(report, "incidents_closed", ()):
        lines.append(f"incident closed: {key} (recovered)")
    return "\n".join(lines)

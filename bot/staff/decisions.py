"""Staff decisions, by the three routes of ``shared/spec/interface.md``: ``hubbot decide NUMBER ... --as DECISION``,
``hubbot decide --import FILE`` (a filled export; a dry run unless ``--apply``), and a staff member e-mailing the
filled export to the hub mailbox with a subject starting "Decisions".

The file is read here into typed ``DecisionRow`` values (the "Number" and "Decision" columns of the XLSX export,
whatever sheet, or the ``number`` and ``decision`` columns of the CSV one), and ``rules.outcomes.plan_decisions``
checks them, so all three routes refuse the same things in the same words. ``record_decision`` is the one place a
decision is written: on the application (decision, who, when, note) and in the event log, whose ``actor`` names the
route and, for e-mail, the position of the sender on the hub's ``staff`` list, never an address.

For the e-mail route ``staff_file`` decides whether a message is a decisions file at all: subject starting
"Decisions" (after any "Re:"/"Fwd:"), sender on the hub's ``staff`` list, and, when the config names trusted
authentication servers (``[security] trusted_authserv_ids``, read with ``getattr`` so this works before and after
the security work lands), an ``Authentication-Results`` header from one of them saying the sender passed. Anyone
else's file is ordinary mail: nothing is recorded and no decisions answer goes out. ``Workflow`` accepts another
check in place of ``authenticated`` (its ``staff_authenticated`` hook) for mail systems that say it differently.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.config import Config, HubSettings
from parsers.types import Limits, ParsedEmail
from rules.decision import StaffFile
from rules.outcomes import DecisionPlan, DecisionRow, KnownApplication, StaffDecision, plan_decisions
from storage import repository as repo
from storage.models import Application, EventKind

ACTOR_COMMAND = "staff:command line"
ACTOR_IMPORT = "staff:import"
MAX_ROWS = 10_000                 # a hub has hundreds of applications; a file with more rows is not an export
MAX_COLUMNS = 300
_SUBJECT = re.compile(r"^\s*((re|fw|fwd|aw)\s*:\s*)*decisions\b", re.IGNORECASE)
_NUMBER_HEADERS = {"number", "no", "no.", "application number", "#"}
_DECISION_HEADERS = {"decision"}
_NOTE_HEADERS = {"note", "decision note", "notes"}

Authenticator = Callable[[ParsedEmail, HubSettings], bool]


# ---- recording ------------------------------------------------------------------------------------------------------

def record_decision(session: Session, application: Application, decision: StaffDecision, *, actor: str,
                    route: str, note: str | None = None, now: datetime) -> bool:
    """Write one decision; False (and nothing written) when the application already has it. The event holds the
    decision before and after, the route and the actor: no names, no addresses."""
    before = application.decision
    if before is decision:
        return False
    application.decision = decision
    application.decided_at = now
    application.decided_by = actor
    application.decision_note = note or None
    repo.record_event(session, EventKind.DECISION_RECORDED, hub_id=application.hub_id, actor=actor,
                      application_id=application.id,
                      detail={"decision": decision.value, "before": before.value if before else None,
                              "route": route}, now=now)
    return True


def known_applications(session: Session, hub_id: str | None = None) -> dict[int, KnownApplication]:
    """Every application a decision may name (one hub's, or all), by number."""
    query = select(Application.id, Application.school_name, Application.school_urn, Application.decision)
    if hub_id is not None:
        query = query.where(Application.hub_id == hub_id)
    return {number: KnownApplication(number, name or (f"URN {urn}" if not urn.startswith("?") else "school not named"),
                                     decision)
            for number, name, urn, decision in session.execute(query)}


def apply_plan(session: Session, plan: DecisionPlan, *, actor: str, route: str, now: datetime) -> int:
    """Record every change of ``plan``; returns how many were written."""
    written = 0
    for change in plan.changes:
        application = session.get(Application, change.number)
        if application is not None and record_decision(session, application, change.after, actor=actor,
                                                       route=route, note=change.note, now=now):
            written += 1
    return written


# ---- reading a filled export ----------------------------------------------------------------------------------------

class DecisionsFileError(Exception):
    """The file cannot be read as a filled export; the message says why in words staff understand."""


def read_rows(filename: str, data: bytes, limits: Limits = Limits()) -> list[DecisionRow]:
    """The decision rows of a filled export (XLSX or CSV, told apart by content, not by name)."""
    if data[:4] == b"PK\x03\x04":
        return _xlsx_rows(data, limits)
    if filename.lower().endswith((".xlsx", ".xlsm")):
        raise DecisionsFileError("the spreadsheet is damaged or is not an Excel .xlsx file")
    return _csv_rows(data)


def _header_index(cells: Sequence[Any]) -> tuple[int, int, int | None] | None:
    names = [" ".join(str(c or "").split()).lower() for c in cells]
    number = next((i for i, n in enumerate(names) if n in _NUMBER_HEADERS), None)
    decision = next((i for i, n in enumerate(names) if n in _DECISION_HEADERS), None)
    if number is None or decision is None:
        return None
    note = next((i for i, n in enumerate(names) if n in _NOTE_HEADERS), None)
    return number, decision, note


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split())


def _rows_from(table: Iterable[Sequence[Any]], sheet: str) -> tuple[list[DecisionRow], bool]:
    rows: list[DecisionRow] = []
    columns = None
    for line, cells in enumerate(table, start=1):
        if line > MAX_ROWS:
            raise DecisionsFileError(f"it has more than {MAX_ROWS} rows")
        if columns is None:
            columns = _header_index(cells)
            if columns is None:
                return [], False      # the header is the first row of an export; this sheet is something else
            continue
        number, decision, note = columns

        def at(index: int | None) -> str:
            return _cell_text(cells[index]) if index is not None and index < len(cells) else ""
        if at(number) or at(decision):
            rows.append(DecisionRow(line, at(number), at(decision), at(note), sheet))
    return rows, columns is not None


def _xlsx_rows(data: bytes, limits: Limits) -> list[DecisionRow]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        raise DecisionsFileError("the spreadsheet is damaged or is not an Excel .xlsx file") from None
    # The same caps as a Word form: a zip that would inflate absurdly is refused before openpyxl opens it.
    if len(infos) > limits.docx_members or sum(i.file_size for i in infos) > limits.docx_inflated_bytes:
        raise DecisionsFileError("the spreadsheet is far larger than an export")
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - any failure inside openpyxl means the same thing to staff
        raise DecisionsFileError("the spreadsheet is damaged or is not an Excel .xlsx file") from None
    rows: list[DecisionRow] = []
    found = False
    try:
        for ws in workbook.worksheets:
            sheet_rows, has_header = _rows_from(ws.iter_rows(values_only=True, max_col=MAX_COLUMNS), ws.title)
            rows.extend(sheet_rows)
            found = found or has_header
    finally:
        workbook.close()
    if not found:
        raise DecisionsFileError('no sheet has the "Number" and "Decision" columns of the export')
    return rows


def _csv_rows(data: bytes) -> list[DecisionRow]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")   # saved by Excel on Windows
    first = text.split("\n", 1)[0]
    # Excel in some locales saves "CSV" with semicolons.
    delimiter = max((",", ";", "\t"), key=first.count)
    rows, found = _rows_from(csv.reader(io.StringIO(text), delimiter=delimiter), "")
    if not found:
        raise DecisionsFileError('it has no "number" and "decision" columns (send the filled export)')
    return rows


# ---- the e-mail route -------------------------------------------------------------------------------------------

def is_decisions_subject(subject: str) -> bool:
    return bool(_SUBJECT.match(subject or ""))


def trusted_authserv_ids(config: Config) -> tuple[str, ...]:
    """``[security] trusted_authserv_ids`` once the config has it (the security work adds it); () until then."""
    security = getattr(config, "security", None)
    return tuple(getattr(security, "trusted_authserv_ids", ()) or ())


_RESULT = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)", re.IGNORECASE)


def authenticated(email: ParsedEmail, trusted: Sequence[str]) -> bool:
    """Whether a trusted server's ``Authentication-Results`` says the sender passed: DMARC pass, or where no DMARC
    result is given, DKIM or SPF pass. Headers from any other server are ignored (anyone can write one)."""
    wanted = {t.lower() for t in trusted}
    for name, value in email.headers:
        if name.lower() != "authentication-results":
            continue
        authserv = value.split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""
        if authserv not in wanted:
            continue
        results = {method.lower(): outcome.lower() for method, outcome in _RESULT.findall(value)}
        if "dmarc" in results:
            return results["dmarc"] == "pass"
        return results.get("dkim") == "pass" or results.get("spf") == "pass"
    return False


def default_authenticator(config: Config) -> Authenticator:
    trusted = trusted_authserv_ids(config)

    def check(email: ParsedEmail, hub: HubSettings) -> bool:
        return not trusted or authenticated(email, trusted)
    return check


def staff_actor(hub: HubSettings, address: str) -> str | None:
    """"staff:e-mail #2 (central)": which of the hub's staff, by position on its list, without the address."""
    lowered = [s.lower() for s in hub.staff]
    if address.lower() not in lowered:
        return None
    return f"staff:e-mail #{lowered.index(address.lower()) + 1} ({hub.id})"


def staff_file(session: Session, email: ParsedEmail, hub: HubSettings, limits: Limits,
               authenticator: Authenticator) -> StaffFile | None:
    """The decisions file this e-mail carries, when it is one (see the module docstring); None otherwise."""
    sender = email.sender.email if email.sender else ""
    actor = staff_actor(hub, sender) if sender else None
    if actor is None or not is_decisions_subject(email.subject) or not authenticator(email, hub):
        return None
    known = known_applications(session, hub.id)
    files = [a for a in email.attachments if a.payload and (
        a.payload[:4] == b"PK\x03\x04" or a.filename.lower().endswith((".csv", ".xlsx")))]
    if not files:
        return StaffFile("", (), known, actor, problem="no XLSX or CSV file was attached")
    rows: list[DecisionRow] = []
    for attachment in files:
        try:
            rows.extend(read_rows(attachment.filename, attachment.payload, limits))
        except DecisionsFileError as exc:
            return StaffFile(attachment.filename, (), known, actor, problem=str(exc))
    return StaffFile(", ".join(a.filename or "the attachment" for a in files), tuple(rows), known, actor)


# ---- the command line ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportResult:
    plan: DecisionPlan
    recorded: int                 # 0 on a dry run


def import_file(session: Session, path: Path, *, apply: bool, now: datetime, limits: Limits = Limits(),
                actor: str = ACTOR_IMPORT) -> ImportResult:
    """``hubbot decide --import``: read ``path``, plan, and record only with ``apply``."""
    plan = plan_decisions(read_rows(path.name, path.read_bytes(), limits), known_applications(session))
    recorded = apply_plan(session, plan, actor=actor, route="import", now=now) if apply else 0
    return ImportResult(plan, recorded)


def decide_numbers(session: Session, numbers: Sequence[str], word: str, *, note: str | None, now: datetime,
                   actor: str = ACTOR_COMMAND) -> ImportResult:
    """``hubbot decide NUMBER ... --as DECISION``: the same checks as a file, always applied."""
    rows = [DecisionRow(0, number, word, note or "") for number in numbers]
    plan = plan_decisions(rows, known_applications(session))
    return ImportResult(plan, apply_plan(session, plan, actor=actor, route="command", now=now))


def describe_plan(plan: DecisionPlan, *, applied: bool) -> str:
    """What ``hubbot decide`` prints: each change, then each refusal with its reason."""
    verb = "recorded" if applied else "would be recorded"
    lines = [f"{len(plan.changes)} decision(s) {verb}" + (f", {plan.unchanged} already so" if plan.unchanged else "")
             + (f", {len(plan.refused)} refused" if plan.refused else "") + ":"]
    for change in plan.changes:
        lines.append(f"  {change.number}  {change.school}: {change.before.value if change.before else 'no decision'}"
                     f" -> {change.after.value}")
    for refusal in plan.refused:
        lines.append(f"  refused {refusal.where}: {refusal.reason}")
    if not applied and plan.changes:
        lines.append("Nothing has been recorded: run again with --apply to record these.")
    return "\n".join(lines)

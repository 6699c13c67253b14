"""Data-protection requests about one person (UK GDPR), by e-mail address: ``hubbot privacy find`` and ``erase``.

**Find** (subject access) lists every stored message, application, application version and outbox e-mail that
holds the address, as one JSON report, or as a zip of that report with the raw ``.eml`` files. A message holds the
address when its raw bytes, its decoded headers and text, or its stored verdict contain it; a version when its form
fields or verdict do; an application when one of its signatories has it; an outbox e-mail when it is addressed to
it or mentions it. Replies written as ``.eml`` files to the outbox folder (no ``[smtp]``) are searched too.

**Erase** anonymises rather than deletes, so the counts staff and the digest rely on stay right: a raw message
becomes a stub, the person's form fields (every field of the signatory role whose e-mail it is: ``teacher1.*``)
become null, the address and the person's other values (name, TRN, telephone) are replaced by ``[erased]``
wherever else they appear, their signatory row loses name and address, they are dropped from the outbox's
recipients (a reply still waiting to go to nobody else is failed), and outbox-folder files holding the address
are deleted. The erasure is recorded in the event log with counts only. Erased must mean gone from the database
files too: on SQLite the changes are made with ``secure_delete`` on (freed space is zeroed), then ``VACUUM``
rebuilds the file and a ``wal_checkpoint(TRUNCATE)`` empties the write-ahead log; on PostgreSQL the touched tables
are vacuumed. Nothing here logs the address.
"""
from __future__ import annotations

import email
import email.policy
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from bot.config import Config
from parsers.email import header_values
from storage import repository as repo
from storage.db import Database, open_database
from storage.models import (
    Application,
    ApplicationVersion,
    EventKind,
    Message,
    OutboxItem,
    OutboxRecipient,
    OutboxState,
    Signatory,
)

ERASED = "[erased]"
NOT_HELD_HERE = ("The hub's own mailbox (the IMAP folder or Maildir hubbot reads) and any backups keep their own "
                 "copies: delete the person's e-mails there too, and let backups expire.")
REVIEW = ("These records are stored as received: they may hold other people's data (a school's form names "
          "several teachers). Remove what is not about the requester before sending them a copy.")
_MIN_VALUE = 5      # shorter values of a person's fields ("Yes", "7, 8") would erase common words everywhere


def _needle(address: str) -> str:
    return address.strip().lower()


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str).lower()


def _raw_holds(raw: bytes, needle: str) -> bool:
    if needle.encode() in raw.lower():
        return True
    # Encoded headers and base64 or quoted-printable text parts hide the address from a byte search.
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        for name, value in message.items():
            if needle in str(value).lower():
                return True
        for part in message.walk():
            if part.get_content_maintype() == "text":
                content = part.get_content()
                if isinstance(content, str) and needle in content.lower():
                    return True
    except Exception:  # noqa: BLE001 - a broken message was already searched byte for byte
        return False
    return False


@dataclass
class Found:
    messages: list[int] = field(default_factory=list)
    applications: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    signatories: list[int] = field(default_factory=list)
    outbox: list[int] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"messages": len(self.messages), "applications": len(self.applications),
                "versions": len(self.versions), "signatories": len(self.signatories), "outbox": len(self.outbox),
                "files": len(self.files)}

    @property
    def empty(self) -> bool:
        return not any(self.counts().values())


def find(session: Session, address: str, outbox_folder: Path | None = None) -> Found:
    needle = _needle(address)
    found = Found()
    for message in session.scalars(select(Message).order_by(Message.id).execution_options(yield_per=50)):
        if _raw_holds(message.raw, needle) or needle in _json_text(message.verdict or {}):
            found.messages.append(message.id)
    for version in session.scalars(select(ApplicationVersion).order_by(ApplicationVersion.id)):
        if needle in _json_text(version.fields) or needle in _json_text(version.verdict):
            found.versions.append(version.id)
            found.applications.append(version.application_id)
    for signatory in session.scalars(select(Signatory).order_by(Signatory.id)):
        if (signatory.email or "").lower() == needle:
            found.signatories.append(signatory.id)
            found.applications.append(signatory.application_id)
    for item in session.scalars(select(OutboxItem).order_by(OutboxItem.id)):
        if needle in _json_text([item.to, item.cc, item.subject, item.text, item.html or ""]):
            found.outbox.append(item.id)
    found.applications = sorted(set(found.applications))
    if outbox_folder is not None and outbox_folder.is_dir():
        found.files = sorted(p for p in outbox_folder.glob("*.eml") if _raw_holds(p.read_bytes(), needle))
    return found


# ---- subject access -------------------------------------------------------------------------------------------

def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _headers(raw: bytes) -> dict[str, str]:
    return header_values(raw, ("from", "to", "cc", "subject", "date")) or {}


def report(session: Session, address: str, found: Found, now: datetime) -> dict[str, Any]:
    messages = [session.get(Message, i) for i in found.messages]
    versions = [session.get(ApplicationVersion, i) for i in found.versions]
    applications = [session.get(Application, i) for i in found.applications]
    outbox = [session.get(OutboxItem, i) for i in found.outbox]
    return {
        "address": address,
        "generated_at": now.isoformat(),
        "counts": found.counts(),
        "note": REVIEW,
        "elsewhere": NOT_HELD_HERE,
        "messages": [{
            "id": m.id, "hub": m.hub_id, "folder": m.folder, "received_at": _iso(m.received_at),
            "stored_at": _iso(m.stored_at), "state": m.state.value, "status": m.verdict_status,
            "message_id": m.message_id, "size": m.size, "headers": _headers(m.raw), "verdict": m.verdict,
            "raw": f"messages/{m.id}.eml",
        } for m in messages if m is not None],
        "applications": [{
            "id": a.id, "hub": a.hub_id, "programme": a.programme, "school_name": a.school_name,
            "school_urn": a.school_urn, "status": a.status.value, "created_at": _iso(a.created_at),
            "updated_at": _iso(a.updated_at),
            "signatories": [{"role": s.role, "name": s.name, "email": s.email, "copied": s.copied,
                             "confirmed": s.confirmed, "confirmed_at": _iso(s.confirmed_at)}
                            for s in a.signatories],
        } for a in applications if a is not None],
        "versions": [{
            "id": v.id, "application_id": v.application_id, "message_id": v.message_id,
            "created_at": _iso(v.created_at), "status": v.status.value, "flags": v.flags, "fields": v.fields,
            "verdict": v.verdict,
        } for v in versions if v is not None],
        "outbox": [{
            "id": o.id, "hub": o.hub_id, "kind": o.kind, "state": o.state.value, "to": o.to, "cc": o.cc,
            "subject": o.subject, "text": o.text, "message_id": o.message_id, "created_at": _iso(o.created_at),
            "sent_at": _iso(o.sent_at), "raw": f"outbox/{o.id}.eml",
        } for o in outbox if o is not None],
        "files": [p.name for p in found.files],
    }


def write_zip(session: Session, data: dict[str, Any], found: Found, target: Path) -> None:
    from bot.sending.outbox import build_email

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.json", json.dumps(data, indent=2, ensure_ascii=False, default=str))
        for message_id in found.messages:
            message = session.get(Message, message_id)
            if message is not None:
                archive.writestr(f"messages/{message.id}.eml", message.raw)
        for item_id in found.outbox:
            item = session.get(OutboxItem, item_id)
            if item is not None:
                archive.writestr(f"outbox/{item.id}.eml", build_email(item).as_bytes())
        for path in found.files:
            archive.writestr(f"files/{path.name}", path.read_bytes())
    # Personal data: a new file is readable by its owner only.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as handle:
        handle.write(buffer.getvalue())


def cmd_find(config: Config, address: str, output: str | None, now: datetime) -> int:
    db = open_database(config.database_url)
    try:
        with db.session() as session:
            found = find(session, address, config.outbox_path)
            data = report(session, address, found, now)
            if output:
                write_zip(session, data, found, Path(output))
    finally:
        db.close()
    if output:
        counts = ", ".join(f"{n} {what}" for what, n in found.counts().items())
        print(f"hubbot privacy find: {counts} written to {output}", file=sys.stderr)
    else:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    return 0


# ---- erasure --------------------------------------------------------------------------------------------------

def _person(fields: dict[str, Any], verdict: dict[str, Any], needle: str) -> tuple[set[str], set[str]]:
    """The signatory roles whose e-mail is the address, and the person's other values worth erasing elsewhere."""
    roles = {str(s.get("role")) for s in verdict.get("signatories") or []
             if isinstance(s, dict) and str(s.get("email") or "").lower() == needle}
    roles |= {key.rsplit(".", 1)[0] for key, value in fields.items()
              if key.endswith(".email") and str(value or "").lower() == needle}
    roles.discard("school")     # the school's own address is not a person's: only that field goes
    values: set[str] = set()
    for key, value in fields.items():
        if any(key.startswith(f"{role}.") for role in roles) and isinstance(value, str) \
                and len(value.strip()) >= _MIN_VALUE:
            values.add(value.strip())
    for s in verdict.get("signatories") or []:
        if isinstance(s, dict) and s.get("role") in roles and isinstance(s.get("name"), str) \
                and len(s["name"]) >= _MIN_VALUE:
            values.add(s["name"])
    return roles, values


def _display_names(raw: bytes, needle: str) -> set[str]:
    """The names the person's address was written with in the e-mail's headers ("Ms Kate Wright <k.wright@...>")."""
    try:
        message = email.message_from_bytes(raw[:65536], policy=email.policy.compat32)
        pairs = getaddresses([str(v) for k in ("From", "To", "Cc", "Reply-To") for v in message.get_all(k, [])])
    except Exception:  # noqa: BLE001 - a broken header block: the stub replaces it anyway
        return set()
    return {name.strip() for name, addr in pairs if addr.lower() == needle and len(name.strip()) >= _MIN_VALUE}


def _replace(text_value: str, needles: Iterable[str]) -> str:
    for needle in sorted(needles, key=len, reverse=True):
        text_value = re.sub(re.escape(needle), ERASED, text_value, flags=re.IGNORECASE)
    return text_value


def _scrub(value: Any, needles: set[str]) -> Any:
    if isinstance(value, str):
        return _replace(value, needles)
    if isinstance(value, list):
        return [_scrub(v, needles) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, needles) for k, v in value.items()}
    return value


def _scrub_record(fields: dict[str, Any], verdict: dict[str, Any], roles: set[str],
                  needles: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    def person_field(key: str) -> bool:
        return any(key.startswith(f"{role}.") for role in roles)

    fields = {k: (None if person_field(k) else v) for k, v in fields.items()}
    verdict = dict(verdict)
    if isinstance(verdict.get("fields"), dict):
        verdict["fields"] = {k: (None if person_field(k) else v) for k, v in verdict["fields"].items()}
    if isinstance(verdict.get("signatories"), list):
        verdict["signatories"] = [{**s, "name": None, "email": None} if isinstance(s, dict) and s.get("role") in roles
                                  else s for s in verdict["signatories"]]
    return _scrub(fields, needles), _scrub(verdict, needles)


@dataclass(frozen=True)
class Erasure:
    counts: dict[str, int]
    vacuumed: bool
    wal_busy: bool            # another process held the database open: the WAL could not be emptied


def erase(db: Database, config: Config, address: str, now: datetime, *, actor: str = "staff") -> Erasure:
    needle = _needle(address)
    with db.session() as session:
        if db.dialect == "sqlite":
            # Freed and overwritten space is zeroed, so old values do not linger in free pages.
            session.execute(text("PRAGMA secure_delete = ON"))
        found = find(session, address, config.outbox_path)
        needles = {needle}
        plans: dict[int, tuple[set[str], set[str]]] = {}
        for version_id in found.versions:
            version = session.get(ApplicationVersion, version_id)
            assert version is not None
            roles, values = _person(version.fields, version.verdict, needle)
            plans[version_id] = (roles, values)
            needles |= values
        messages = [session.get(Message, i) for i in found.messages]
        for message in messages:
            assert message is not None
            needles |= _display_names(message.raw, needle)
        for signatory_id in found.signatories:
            signatory = session.get(Signatory, signatory_id)
            if signatory is not None and signatory.name and len(signatory.name) >= _MIN_VALUE:
                needles.add(signatory.name)
        for message in messages:
            assert message is not None
            roles, values = _person((message.verdict or {}).get("fields") or {}, message.verdict or {}, needle)
            needles |= values
            stub = f"X-Hubbot-Erased: {now.isoformat()}\r\n\r\nErased on request.\r\n".encode()
            message.raw = stub
            message.sha256 = hashlib.sha256(stub + str(message.id).encode()).hexdigest()   # unique per hub
            if message.message_id and needle in message.message_id.lower():
                message.message_id = None
            if message.verdict:
                _, message.verdict = _scrub_record({}, message.verdict, roles, needles)
        for version_id, (roles, _) in plans.items():
            version = session.get(ApplicationVersion, version_id)
            assert version is not None
            version.fields, version.verdict = _scrub_record(version.fields, version.verdict, roles, needles)
        for signatory_id in found.signatories:
            signatory = session.get(Signatory, signatory_id)
            assert signatory is not None
            signatory.name, signatory.email = None, None
        for item_id in found.outbox:
            item = session.get(OutboxItem, item_id)
            assert item is not None
            item.to = [a for a in item.to if needle not in a.lower()]
            item.cc = [a for a in item.cc if needle not in a.lower()]
            item.subject = _replace(item.subject, needles)
            item.text = _replace(item.text, needles)
            item.html = _replace(item.html, needles) if item.html else item.html
            if not item.to and item.state in (OutboxState.PENDING, OutboxState.UNCERTAIN):
                # Nobody left to send it to: it must not go out, and must not wait forever either.
                item.state = OutboxState.FAILED
                item.last_error = "not sent: its recipient was erased on request"
        # The reply cap's per-address counts (storage/counters.py) hold the address too.
        session.execute(delete(OutboxRecipient).where(OutboxRecipient.address.contains(needle, autoescape=True)))
        for path in found.files:
            path.unlink(missing_ok=True)
        counts = found.counts()
        repo.record_event(session, EventKind.PRIVACY_ERASED, actor=actor, detail=counts, now=now)
    vacuumed, busy = _clean_files(db)
    return Erasure(counts, vacuumed, busy)


def _clean_files(db: Database) -> tuple[bool, bool]:
    """Rebuild the database files so erased values are not left in free pages or the write-ahead log."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if db.dialect == "sqlite":
            connection.exec_driver_sql("PRAGMA secure_delete = ON")
            connection.exec_driver_sql("VACUUM")
            row = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return True, bool(row and row[0])
        if db.dialect == "postgresql":
            for table in ("messages", "application_versions", "applications", "signatories", "outbox",
                          "outbox_recipients"):
                connection.exec_driver_sql(f"VACUUM {table}")
            return True, False
    return False, False


def cmd_erase(config: Config, address: str, *, dry_run: bool, now: datetime) -> int:
    db = open_database(config.database_url)
    try:
        if dry_run:
            with db.session() as session:
                found = find(session, address, config.outbox_path)
            print("would erase: " + ", ".join(f"{n} {what}" for what, n in found.counts().items()))
            return 0
        result = erase(db, config, address, now)
    finally:
        db.close()
    print("erased: " + ", ".join(f"{n} {what}" for what, n in result.counts.items()))
    if result.wal_busy:
        print("hubbot privacy erase: another process (the worker?) holds the database open, so its write-ahead "
              "log could not be emptied yet: it is emptied at the worker's next checkpoint, or run this again "
              "with the worker stopped", file=sys.stderr)
    print(NOT_HELD_HERE)
    return 0


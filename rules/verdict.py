"""The typed verdict on one e-mail: what was read, what is wrong, who was copied, the status and the reply.

This is the single result of reading a message and deciding about it; the ``check --json`` output, the stored
record of each message and application version, and the replies are all made from it. ``to_json()`` gives exactly
the object documented in ``shared/spec/interface.md``; ``to_record()`` and ``Verdict.from_record()`` are the one
way a verdict is stored and read back, so no other module reads stored verdicts by key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from rules.authentication import NOT_CONFIGURED, Authentication, AuthResult
from templates import EmailKind


class Status(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    REVIEW = "review"            # a person on the hub team must look before the school is told anything specific
    UNREADABLE = "unreadable"
    NO_FORM = "no_form"
    NOT_APPLICATION = "not_application"
    IGNORED = "ignored"


class FlagCode(StrEnum):
    LATE = "late"
    REGION = "region"
    WORD_GUIDANCE = "word_guidance"
    WRONG_HUB = "wrong_hub"
    RESUBMISSION = "resubmission"
    DUPLICATE = "duplicate"
    UNKNOWN_FORM = "unknown_form"        # looks like an application form, but no known programme's
    UNAUTHENTICATED = "unauthenticated"  # the sender failed DMARC at the hub's own servers
    WITHDRAWAL = "withdrawal"            # the e-mail asks to withdraw an application


class IssueKind(StrEnum):
    MISSING = "missing"
    INVALID = "invalid"


@dataclass(frozen=True)
class Flag:
    code: FlagCode
    detail: str


@dataclass(frozen=True)
class FieldIssue:
    field: str
    label: str
    section: str
    kind: IssueKind
    reason: str


@dataclass(frozen=True)
class UnsureField:
    """A field the bot could not read with certainty (its place on the form not found, or an answer it would have
    to guess about). Listed to hub staff, never named to the school."""

    field: str
    label: str
    section: str
    reason: str


@dataclass(frozen=True)
class SignatoryState:
    role: str
    title: str            # as printed on the form: "Head Teacher", "TRG Teacher 1"
    name: str | None
    email: str | None     # None when the form has no valid address for them
    copied: bool
    # False when whether they were copied is not known: a bare form (no e-mail), or an address the bot could not
    # read with certainty. ``copied`` is then False too, and the signatory is never called "not copied".
    known: bool = True


@dataclass(frozen=True)
class Correspondence:
    """What a reply needs to know of the e-mail it answers: who wrote, to which of the hub's addresses, and the
    threading headers. Kept with the verdict, so a later reply (an acknowledgement once the last signatory
    confirms) is threaded to the school's form e-mail without reading that e-mail again."""

    sender: str | None
    message_id: str = ""
    subject: str = ""
    references: tuple[str, ...] = ()
    addressed_to: tuple[str, ...] = ()     # Delivered-To, To and Cc addresses, in that order
    correspondents: tuple[str, ...] = ()   # From, To and Cc: the only addresses a reply may go to


@dataclass(frozen=True)
class Reply:
    kind: EmailKind
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    text: str
    html: str
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    from_address: str = ""   # the hub mailbox the school wrote to: the reply comes from the same address


@dataclass(frozen=True)
class Verdict:
    message_id: str
    received_at: datetime | None
    sender: str | None
    status: Status
    programme: str | None = None
    hub: str | None = None
    attachment: str | None = None
    school_name: str | None = None
    school_urn: str | None = None
    fields: dict[str, str | None] = field(default_factory=dict)
    issues: tuple[FieldIssue, ...] = ()
    unsure: tuple[UnsureField, ...] = ()
    signatories: tuple[SignatoryState, ...] = ()
    late: bool = False
    flags: tuple[Flag, ...] = ()
    problems: tuple[str, ...] = ()
    ignored_because: str | None = None
    other_files: tuple[str, ...] = ()      # attachments that were not a form (named in a missing-attachment reply)
    correspondence: Correspondence | None = None
    reply: Reply | None = None
    # How the form was recognised and how each field's label was matched, for staff (``to_record``), not schools.
    recognition: dict[str, Any] | None = None
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    authentication: Authentication = NOT_CONFIGURED   # from the hub's own servers' Authentication-Results

    @property
    def missing_fields(self) -> list[str]:
        return [i.field for i in self.issues if i.kind is IssueKind.MISSING]

    @property
    def invalid_fields(self) -> list[FieldIssue]:
        return [i for i in self.issues if i.kind is IssueKind.INVALID]

    @property
    def signatories_not_copied(self) -> list[SignatoryState]:
        """Signatories certainly not copied (an unknown state is never counted)."""
        return [s for s in self.signatories if s.known and not s.copied]

    @property
    def unsure_fields(self) -> list[str]:
        return [u.field for u in self.unsure]

    def has_flag(self, code: FlagCode) -> bool:
        return any(f.code is code for f in self.flags)

    def to_json(self, file: str | None = None) -> dict[str, Any]:
        """The ``check --json`` object of interface.md (``file`` first when given)."""
        out: dict[str, Any] = {} if file is None else {"file": file}
        out.update({
            "message_id": self.message_id,
            "received_at": self.received_at.isoformat() if self.received_at else None,
            "sender": self.sender,
            "status": self.status.value,
            "programme": self.programme,
            "hub": self.hub,
            "attachment": self.attachment,
            "school": {"name": self.school_name, "urn": self.school_urn} if self.programme else None,
            "fields": dict(self.fields),
            "missing_fields": self.missing_fields,
            "invalid_fields": [{"field": i.field, "reason": i.reason} for i in self.invalid_fields],
            "unsure_fields": [{"field": u.field, "reason": u.reason} for u in self.unsure],
            "signatories": [
                {"role": s.role, "name": s.name, "email": s.email, "copied": s.copied if s.known else None}
                for s in self.signatories
            ],
            "late": self.late,
            "flags": [{"code": f.code.value, "detail": f.detail} for f in self.flags],
            "problems": list(self.problems),
            "authentication": self.authentication.to_json(),
            "reply": None if self.reply is None else {
                "kind": self.reply.kind.value, "to": list(self.reply.to), "cc": list(self.reply.cc),
                "subject": self.reply.subject, "body": self.reply.text,
            },
        })
        return out

    # ---- storing and reading back ---------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """The verdict as stored (JSON): everything ``from_record`` needs to give this verdict back."""
        record = self.to_json()
        record["record_version"] = RECORD_VERSION
        record["fields"] = dict(self.fields)
        record["issues"] = [{"field": i.field, "label": i.label, "section": i.section, "kind": i.kind.value,
                             "reason": i.reason} for i in self.issues]
        record["unsure"] = [{"field": u.field, "label": u.label, "section": u.section, "reason": u.reason}
                            for u in self.unsure]
        record["signatories"] = [{"role": s.role, "title": s.title, "name": s.name, "email": s.email,
                                  "copied": s.copied, "known": s.known} for s in self.signatories]
        record["recognition"] = self.recognition
        record["readings"] = self.readings
        record["ignored_because"] = self.ignored_because
        record["other_files"] = list(self.other_files)
        c = self.correspondence
        record["correspondence"] = None if c is None else {
            "sender": c.sender, "message_id": c.message_id, "subject": c.subject, "references": list(c.references),
            "addressed_to": list(c.addressed_to), "correspondents": list(c.correspondents)}
        if self.reply is not None:
            r = self.reply
            record["reply"] = {"kind": r.kind.value, "to": list(r.to), "cc": list(r.cc), "subject": r.subject,
                               "body": r.text, "html": r.html, "in_reply_to": r.in_reply_to,
                               "references": list(r.references), "from_address": r.from_address}
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Verdict":
        """The verdict ``to_record`` stored. Records written before ``RECORD_VERSION`` 2 kept signatory titles in
        a separate map and no correspondence; they read back with what they have."""
        titles = record.get("signatory_titles") or {}
        received = record.get("received_at")
        c = record.get("correspondence")
        r = record.get("reply")
        school = record.get("school") or {}
        auth = record.get("authentication") or {}
        return cls(
            message_id=record.get("message_id") or "",
            received_at=datetime.fromisoformat(received) if received else None,
            sender=record.get("sender"),
            status=Status(record["status"]),
            programme=record.get("programme"),
            hub=record.get("hub"),
            attachment=record.get("attachment"),
            school_name=school.get("name"),
            school_urn=school.get("urn"),
            fields=dict(record.get("fields") or {}),
            issues=tuple(FieldIssue(i["field"], i.get("label", i["field"]), i.get("section", ""),
                                    IssueKind(i["kind"]), i.get("reason", "")) for i in record.get("issues") or ()
                         if "kind" in i),
            unsure=tuple(UnsureField(u["field"], u.get("label", u["field"]), u.get("section", ""), u.get("reason", ""))
                         for u in record.get("unsure") or ()),
            signatories=tuple(SignatoryState(s["role"], s.get("title") or titles.get(s["role"], s["role"]),
                                             s.get("name"), s.get("email"), bool(s.get("copied")),
                                             s.get("known", s.get("copied") is not None))
                              for s in record.get("signatories") or ()),
            late=bool(record.get("late")),
            flags=tuple(Flag(FlagCode(f["code"]), f.get("detail", "")) for f in record.get("flags") or ()),
            problems=tuple(record.get("problems") or ()),
            ignored_because=record.get("ignored_because"),
            other_files=tuple(record.get("other_files") or ()),
            recognition=record.get("recognition"),
            readings=dict(record.get("readings") or {}),
            correspondence=None if not c else Correspondence(
                sender=c.get("sender"), message_id=c.get("message_id", ""), subject=c.get("subject", ""),
                references=tuple(c.get("references") or ()), addressed_to=tuple(c.get("addressed_to") or ()),
                correspondents=tuple(c.get("correspondents") or ())),
            reply=None if not r else Reply(
                kind=EmailKind(r["kind"]), to=tuple(r.get("to") or ()), cc=tuple(r.get("cc") or ()),
                subject=r.get("subject", ""), text=r.get("body", ""), html=r.get("html", ""),
                in_reply_to=r.get("in_reply_to", ""), references=tuple(r.get("references") or ()),
                from_address=r.get("from_address", "")),
            authentication=Authentication(AuthResult(auth["result"]), auth.get("detail", "")) if auth
            else NOT_CONFIGURED,
        )


# Version 2: signatories carry their titles, the correspondence is kept, the reply is whole, unsure fields are kept.
RECORD_VERSION = 2

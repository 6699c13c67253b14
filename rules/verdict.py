"""The typed verdict on one e-mail: what was read, what is wrong, who was copied, the status and the reply.

This is the single result of the check pipeline; the ``check --json`` output, the database's application versions
and the replies are all made from it. ``to_json()`` gives exactly the object documented in
``shared/spec/interface.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    REVIEW = "review"            # a person on the hub team must look before the school is told anything specific
    UNREADABLE = "unreadable"
    NO_FORM = "no_form"
    NOT_APPLICATION = "not_application"
    IGNORED = "ignored"


class ReplyKind(StrEnum):
    ACKNOWLEDGEMENT = "acknowledgement"
    MISSING_INFORMATION = "missing_information"
    UNREADABLE = "unreadable"
    MISSING_ATTACHMENT = "missing_attachment"
    RECEIVED = "received"        # to ``review``: a warm receipt, the team will check and be in touch; names nothing
    WRONG_HUB = "wrong_hub"      # a form for a programme another hub runs: which hub, and its address


class FlagCode(StrEnum):
    LATE = "late"
    REGION = "region"
    WORD_GUIDANCE = "word_guidance"
    WRONG_HUB = "wrong_hub"
    RESUBMISSION = "resubmission"
    DUPLICATE = "duplicate"
    UNKNOWN_FORM = "unknown_form"        # looks like an application form, but no known programme's
    UNAUTHENTICATED = "unauthenticated"  # (for the authentication work) the sender failed DMARC
    WITHDRAWAL = "withdrawal"            # (for later) the e-mail asks to withdraw an application


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
class Reply:
    kind: ReplyKind
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
    reply: Reply | None = None
    # How the form was recognised and how each field's label was matched, for staff (``to_record``), not schools.
    recognition: dict[str, Any] | None = None
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)

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

    def to_record(self) -> dict[str, Any]:
        """Everything in ``to_json`` plus what staff views need (labels, sections, why mail was ignored)."""
        record = self.to_json()
        record["issues"] = [{"field": i.field, "label": i.label, "section": i.section, "kind": i.kind.value,
                             "reason": i.reason} for i in self.issues]
        record["unsure"] = [{"field": u.field, "label": u.label, "section": u.section, "reason": u.reason}
                            for u in self.unsure]
        record["signatory_titles"] = {s.role: s.title for s in self.signatories}
        record["ignored_because"] = self.ignored_because
        record["recognition"] = self.recognition
        record["readings"] = self.readings
        if self.reply is not None:
            record["reply"]["html"] = self.reply.html
        return record

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
            "reply": None if self.reply is None else {
                "kind": self.reply.kind.value, "to": list(self.reply.to), "cc": list(self.reply.cc),
                "subject": self.reply.subject, "body": self.reply.text,
            },
        })
        return out

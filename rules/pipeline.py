"""The check pipeline: one raw e-mail in, one typed ``Verdict`` out, with no network, database or clock.

``read_email`` says what a message *is* (what was read, what is wrong, who was copied); ``rules.decision.decide``
then says what to do about it given the application's history. ``assess`` is the two with no history, which is
the whole of ``hubbot check``; the worker calls the same two with the history it loads, so ``check`` shows what the
worker does with a first e-mail.

Order of reading: too large or automatic mail is ``ignored`` (never answered); each attachment's type is sniffed
from its bytes, documents are read (all of one message's in one bounded child, ``parsers.documents``: one time and
memory budget per message, at most ``documents_per_message`` opened) and recognised by content (logos and cover letters fall away); the best
recognised form is mapped to field ids and every check runs; otherwise an unreadable document gives
``unreadable``, a text that says a form is attached gives ``no_form``, and anything else is ``not_application``
for a person to read. Every failure inside one attachment is caught there and becomes a plain-English problem.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from parsers.email import oversize_attachments, parse_email
from parsers.errors import UnreadableFile
from parsers.documents import DocumentRequest, read_documents
from parsers.sniff import FileKind, looks_like_document, sniff
from parsers.types import Attachment, FormDocument, ParsedEmail
from rules.authentication import authenticate
from rules.automatic import LOOP_HEADER, automatic_reason
from rules.calendar import LONDON
from rules.checks import FormContext, HubView, run_checks
from rules.decision import History, decide
from rules.mapping import map_fields
from rules.quoting import own_subject, own_words, own_words_html
from rules.recognise import Recognition, recognise
from rules.replies import correspondence
from rules.settings import CheckSettings
from rules.verdict import FlagCode, Status, Verdict

_SAYS_ATTACHED = re.compile(r"\b(attach(ed|ment|ing)?|enclosed|please find|herewith)\b", re.IGNORECASE)
_SAYS_FORM = re.compile(r"\b(application|form|eoi|expression of interest|declaration)\b", re.IGNORECASE)


@dataclass(frozen=True)
class _FoundForm:
    attachment: Attachment
    document: FormDocument
    recognition: Recognition


def assess(raw: bytes, settings: CheckSettings, *, received_at: datetime | None = None) -> Verdict:
    """The verdict on one e-mail, with the reply a first e-mail gets. ``received_at`` is the server's receipt time
    (IMAP INTERNALDATE) when known."""
    return assess_parsed(parse_email(raw, settings.limits), len(raw), settings, received_at=received_at)


def assess_parsed(email: ParsedEmail, size: int, settings: CheckSettings, *, received_at: datetime | None = None,
                  hub: HubView | None = None) -> Verdict:
    """``assess`` for an e-mail already parsed."""
    hub = hub or settings.hubs.for_email(email)
    verdict = read_email(email, size, settings, received_at=received_at, hub=hub)
    return decide(verdict, History(), settings, hub).verdict


def read_email(email: ParsedEmail, size: int, settings: CheckSettings, *, received_at: datetime | None = None,
               hub: HubView | None = None) -> Verdict:
    """What one e-mail is: the verdict without a reply. ``hub`` is the mailbox's hub when the caller knows it (the
    worker does); otherwise the hub is found from the addresses the e-mail was sent to."""
    when = _london(received_at or email.received_at or email.date)
    hub = hub or settings.hubs.for_email(email)
    base = dict(message_id=email.message_id, received_at=when, sender=email.sender.email if email.sender else None,
                hub=hub.id if hub else None, correspondence=correspondence(email),
                authentication=authenticate(email.headers, email.sender.email if email.sender else None,
                                            settings.trusted_authserv_ids))

    reason = automatic_reason(email, loop_header=LOOP_HEADER, own_addresses=settings.hubs.all_addresses())
    if reason:
        return Verdict(status=Status.IGNORED, ignored_because=reason, **base)
    if size > settings.limits.message_bytes:
        problem = (f"Your e-mail is {size / 1_048_576:.0f} MB, larger than the "
                   f"{settings.limits.message_bytes / 1_048_576:.0f} MB we can accept.")
        return Verdict(status=Status.UNREADABLE, problems=(problem,), **base)

    forms: list[_FoundForm] = []
    unreadable: list[tuple[Attachment, str]] = []
    other_files: list[str] = []
    oversize = oversize_attachments(email)
    to_read: list[tuple[Attachment, DocumentRequest]] = []
    for index, attachment in enumerate(email.attachments):
        kind = sniff(attachment.filename, attachment.content_type, attachment.payload)
        if not looks_like_document(kind):
            other_files.append(attachment.filename)
            continue
        if index in oversize or attachment.size > settings.limits.attachment_bytes:
            unreadable.append((attachment, f"The file is larger than the "
                                           f"{settings.limits.attachment_bytes / 1_048_576:.0f} MB we can accept."))
            continue
        to_read.append((attachment, DocumentRequest(kind, attachment.payload, _priority(attachment, kind))))
    # Every document of the message is read in one bounded child, with one budget (parsers.documents).
    documents = read_documents([request for _, request in to_read], settings.limits)
    for (attachment, _), document in zip(to_read, documents):
        if isinstance(document, UnreadableFile):
            unreadable.append((attachment, document.reason))
            continue
        recognition = recognise(document, settings.registry)
        if recognition is None:
            other_files.append(attachment.filename)
        else:
            forms.append(_FoundForm(attachment, document, recognition))

    if forms:
        best = max(forms, key=lambda f: f.recognition.score)
        return _assess_form(best, email, settings, hub, base)
    if unreadable:
        attachment, _ = unreadable[0]
        problems = tuple(f"{a.filename or 'The attachment'}: {why}" if len(unreadable) > 1 else why
                         for a, why in unreadable)
        return Verdict(status=Status.UNREADABLE, attachment=attachment.filename or None, problems=problems, **base)
    if _says_form_attached(email):
        return Verdict(status=Status.NO_FORM, problems=("No application form was attached.",),
                       other_files=tuple(f for f in other_files if f), **base)
    return Verdict(status=Status.NOT_APPLICATION, **base)


def _assess_form(found: _FoundForm, email: ParsedEmail, settings: CheckSettings, hub: HubView | None,
                 base: dict) -> Verdict:
    programme = found.recognition.programme
    answers = map_fields(found.document, programme)
    ctx = FormContext(programme=programme, answers=answers, correspondents=frozenset(email.all_recipients_and_sender()),
                      hub=hub, received_at=base["received_at"], deadline=settings.deadline(hub, programme))
    findings = run_checks(ctx)
    incomplete = bool(findings.issues) or any(not s.copied for s in findings.signatories)
    return Verdict(
        status=Status.INCOMPLETE if incomplete else Status.COMPLETE,
        programme=programme.id, attachment=found.attachment.filename or None,
        school_name=findings.values.get("school.name"), school_urn=findings.values.get("school.urn"),
        fields=findings.values, issues=tuple(findings.issues), signatories=tuple(findings.signatories),
        late=any(f.code is FlagCode.LATE for f in findings.flags), flags=tuple(findings.flags), **base,
    )


_FORM_NAME = re.compile(r"applica|form|eoi|expression|declaration|work ?group", re.IGNORECASE)


def _priority(attachment: Attachment, kind: FileKind) -> int:
    """Which documents to read first when there are more than the cap: the sender's own (not forwarded), named
    like a form, Word before PDF."""
    return ((2 if attachment.from_forwarded else 0) + (0 if _FORM_NAME.search(attachment.filename) else 1)) * 2 \
        + (0 if kind is FileKind.DOCX else 1)


def _says_form_attached(email: ParsedEmail) -> bool:
    # Only the sender's own words: a quote of our "please reply with the form attached" must not earn another
    # "did not arrive" (rules.quoting).
    body = own_words(email.text_body[:50_000]) if email.text_body else own_words_html(email.html_body[:200_000])
    text = f"{own_subject(email.subject)}\n{body}"[:20_000]
    return bool(_SAYS_ATTACHED.search(text) and _SAYS_FORM.search(text))


def _london(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(LONDON)

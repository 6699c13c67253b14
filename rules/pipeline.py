"""The check pipeline: one raw e-mail in, one typed ``Verdict`` out, with no network, database or clock.

``read_email`` says what a message *is* (what was read, what is wrong, who was copied); ``rules.decision.decide``
then says what to do about it given the application's history. ``assess`` is the two with no history, which is
the whole of ``hubbot check``; the worker calls the same two with the history it loads, so ``check`` shows what the
worker does with a first e-mail.

Order of reading: too large or automatic mail is ``ignored`` (never answered); each attachment's type is sniffed
from its bytes, documents are read (all of one message's in one bounded child, ``parsers.documents``: one time and
memory budget per message, at most ``documents_per_message`` opened) and recognised by content (logos and cover letters fall away); the best
recognised form is mapped to field ids and every check runs; otherwise a document shaped like an application form
that matches no programme is ``review`` (flag ``unknown_form``: a person reads it, the school gets a ``received``
receipt, never "no form arrived"), an unreadable document gives ``unreadable``, a text that says a form is
attached gives ``no_form``, and anything else is ``not_application`` for a person to read. Every failure inside one
attachment is caught there and becomes a plain-English problem.

A recognised form's status never rests on a guess. ``complete``: nothing missing, invalid or unsure, every
signatory copied. ``review``: only unsure fields (label not found, an answer the reader would have to guess about)
stand in the way: the school gets a warm receipt naming nothing. ``incomplete``: something is certainly missing or
invalid, or a signatory certainly not copied; the reply lists exactly those (they are certain, and the school can
act on them now) and never an unsure field, and when something was also unsure it says the team will look over
the rest of the form, so the list does not read as all that is wrong. A form for a programme the receiving hub
does not run is ``not_application`` flagged ``wrong_hub``: ``not_application`` because the worker records only
complete and incomplete forms as applications, so nothing is recorded as this hub's, and the reply
(``wrong_hub``) names the hub that runs it. ``assess_document`` reads a bare form (no e-mail) the same way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

import rules.decision
from parsers.documents import DocumentRequest, read_documents
from parsers.email import oversize_attachments, parse_email
from parsers.errors import UnreadableFile
from parsers.sniff import FileKind, looks_like_document, read_form, sniff
from parsers.types import Attachment, DocumentKind, FormDocument, ParsedEmail
from rules.authentication import authenticate
from rules.automatic import LOOP_HEADER, automatic_reason
from rules.calendar import LONDON
from rules.checks import Findings, FormContext, HubView, run_checks
from rules.decision import History, decide
from rules.definitions import ProgrammeDefinition
from rules.mapping import map_fields
from rules.quoting import own_subject, own_words, own_words_html
from rules.recognise import Recognition, looks_like_form, recognise
from rules.replies import correspondence
from rules.settings import CheckSettings
from rules.verdict import Flag, FlagCode, Status, Verdict
from rules.withdrawal import asks_to_withdraw

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
    unknown_forms: list[Attachment] = []
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
        recognition = recognise(document, settings.registry, hub.programmes if hub else ())
        if recognition is not None:
            forms.append(_FoundForm(attachment, document, recognition))
        elif looks_like_form(document):
            unknown_forms.append(attachment)
        else:
            other_files.append(attachment.filename)

    if forms:
        best = max(forms, key=lambda f: f.recognition.score)
        return _form_verdict(best.document, best.recognition, settings, hub, base,
                             correspondents=frozenset(email.all_recipients_and_sender()),
                             attachment=best.attachment.filename or None)
    if unknown_forms:
        # Shaped like an application form but no programme's: a person must look; "no form arrived" would be false.
        return _unknown_form(unknown_forms[0].filename, base, problems=tuple(why for _, why in unreadable))
    if unreadable:
        attachment, _ = unreadable[0]
        problems = tuple(f"{a.filename or 'The attachment'}: {why}" if len(unreadable) > 1 else why
                         for a, why in unreadable)
        return Verdict(status=Status.UNREADABLE, attachment=attachment.filename or None, problems=problems, **base)
    if _asks_to_withdraw(email):
        # For the hub team to act on: the decision changes only when staff record it.
        return Verdict(status=Status.REVIEW, flags=(Flag(FlagCode.WITHDRAWAL, "asks to withdraw an application"),),
                       **base)
    if _says_form_attached(email):
        return Verdict(status=Status.NO_FORM, problems=("No application form was attached.",),
                       other_files=tuple(f for f in other_files if f), **base)
    return Verdict(status=Status.NOT_APPLICATION, **base)


def _form_verdict(document: FormDocument, recognition: Recognition, settings: CheckSettings, hub: HubView | None,
                  base: dict, *, correspondents: frozenset[str] | None, attachment: str | None) -> Verdict:
    """The verdict on a recognised form, without its reply. ``correspondents`` None: a bare form, not an e-mail."""
    programme = recognition.programme
    reading = map_fields(document, programme)
    ctx = FormContext(programme=programme, reading=reading, correspondents=correspondents, hub=hub,
                      received_at=base["received_at"], deadline=settings.deadline(hub, programme),
                      pdf=document.kind is DocumentKind.PDF)
    findings = run_checks(ctx)
    readings = {fid: r.to_record() for fid, r in reading.readings.items()}
    for unsure in findings.unsure:   # what the reader saw there, for the person who checks
        readings[unsure.field]["answer"] = reading[unsure.field].answer
    return Verdict(
        status=_status(findings, programme, hub),
        programme=programme.id, attachment=attachment,
        school_name=findings.values.get("school.name"), school_urn=findings.values.get("school.urn"),
        fields=findings.values, issues=tuple(findings.issues), unsure=tuple(findings.unsure),
        signatories=tuple(findings.signatories),
        late=any(f.code is FlagCode.LATE for f in findings.flags), flags=tuple(findings.flags),
        recognition=recognition.to_record(), readings=readings, **base,
    )


def _status(findings: Findings, programme: ProgrammeDefinition, hub: HubView | None) -> Status:
    if hub is not None and hub.programmes and programme.id not in hub.programmes:
        return Status.NOT_APPLICATION   # another hub's programme: never recorded as this hub's application
    return rules.decision.form_status(findings.issues, findings.unsure, findings.signatories)


def _unknown_form(filename: str, base: dict, problems: tuple[str, ...] = ()) -> Verdict:
    return Verdict(status=Status.REVIEW, attachment=filename or None, problems=problems,
                   flags=(Flag(FlagCode.UNKNOWN_FORM, "looks like an application form, but not one of the "
                                                      "programmes hubbot knows"),), **base)


def assess_document(data: bytes, filename: str, settings: CheckSettings) -> Verdict:
    """The verdict on a bare form (``hubbot check FORM.docx``), read as if it had come alone: no sender, no hub, no
    received time, every signatory's ``copied`` unknown, and no reply."""
    base = dict(message_id="", received_at=None, sender=None, hub=None)
    kind = sniff(filename, "", data)
    if kind is FileKind.OTHER:
        return Verdict(status=Status.NOT_APPLICATION, attachment=filename or None,
                       problems=("This file is not a Word document or a PDF.",), **base)
    if len(data) > settings.limits.attachment_bytes:
        return Verdict(status=Status.UNREADABLE, attachment=filename or None, problems=(
            f"The file is larger than the {settings.limits.attachment_bytes / 1_048_576:.0f} MB we can accept.",),
            **base)
    try:
        document = read_form(kind, data, settings.limits)
    except UnreadableFile as exc:
        return Verdict(status=Status.UNREADABLE, attachment=filename or None, problems=(exc.reason,), **base)
    recognition = recognise(document, settings.registry)
    if recognition is None:
        if looks_like_form(document):
            return _unknown_form(filename, base)
        return Verdict(status=Status.NOT_APPLICATION, attachment=filename or None, **base)
    return _form_verdict(document, recognition, settings, None, base, correspondents=None,
                         attachment=filename or None)


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


def _asks_to_withdraw(email: ParsedEmail) -> bool:
    body = email.text_body
    if not body.strip() and email.html_body:
        # HTML-only mail: what is quoted sits in a blockquote; drop it, then the tags.
        html = re.sub(r"(?is)<blockquote.*?</blockquote>", " ", email.html_body[:200_000])
        body = re.sub(r"(?s)<[^>]+>", "\n", html)
    return asks_to_withdraw(email.subject, body)


def _london(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(LONDON)

"""``storage.json_parts.without_keys`` on both databases: the stored verdict comes back as the same dict less the
keys named, whatever its contents (nested parts, non-ASCII text, a key that is absent, a NULL), and the staff views
built from it are the views built from the whole record."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from bot.staff.views import NOT_VIEWED, application_views
from rules.verdict import Verdict
from storage.db import open_database
from storage.json_parts import without_keys
from storage.models import Application, ApplicationVersion, Message, MessageState
from tests.test_reminders import PID, hub_block
from tests.test_staff_scale import DATES, _deliver
from tests.test_workflow import Bot, write_config

DOCUMENT = {
    "status": "complete", "school": {"name": "St Æthelred’s", "urn": "123456"}, "readings": {"a": {"b": [1, 2]}},
    "reply": {"kind": "acknowledgement", "body": "Thank you\nline two", "html": "<p>é</p>"},
    "fields": {"school.name": "St Æthelred’s", "empty": None}, "issues": [], "late": False,
}


def test_without_keys_drops_only_the_keys_named(tmp_path: Path, db_url: str) -> None:  # noqa: F811
    db = open_database(db_url)
    try:
        with db.session() as session:
            for number, verdict in enumerate((DOCUMENT, {"status": "ignored"}, None)):
                session.add(Message(hub_id="h", folder="INBOX", uidvalidity=1, uid=number, sha256=str(number),
                                    raw=b"x", size=1, stored_at=_now(), state=MessageState.PROCESSED,
                                    verdict=verdict))
            session.flush()
            read = session.scalars(select(without_keys(Message.verdict, ("readings", "reply", "recognition")))
                                   .order_by(Message.id)).all()
        assert read[0] == {k: v for k, v in DOCUMENT.items() if k not in ("readings", "reply")}
        assert read[1] == {"status": "ignored"}
        assert read[2] is None
    finally:
        db.close()


def test_views_read_from_the_cut_verdict_what_the_whole_verdict_says(tmp_path: Path, db_url: str) -> None:
    bot = Bot(write_config(tmp_path, db_url, hubs=hub_block(dates={PID: DATES})), now=_now())
    try:
        _deliver(bot, tmp_path / "mail", range(6))
        with bot.db.session() as session:
            views = application_views(session)
            whole = {app_id: Verdict.from_record(record) for app_id, record in session.execute(
                select(Application.id, ApplicationVersion.verdict)
                .join(ApplicationVersion, ApplicationVersion.id == Application.latest_version_id))}
            cut = session.scalars(select(without_keys(ApplicationVersion.verdict, NOT_VIEWED))).all()
        assert len(views) == len(whole) == 6
        # The views' parts are really left out (so the test compares a cut record, not the whole one) ...
        assert all(not set(NOT_VIEWED) & set(record) for record in cut)
        # ... and every part a view takes from the verdict is as the whole record says.
        for view in views:
            verdict = whole[view.id]
            assert verdict.reply is not None and verdict.readings   # what the database left out was there
            assert [(i.label, i.section, i.reason) for i in view.issues] == \
                [(i.label, i.section, i.reason) for i in verdict.issues]
            assert {s.role: s.title for s in view.signatories} == {s.role: s.title for s in verdict.signatories}
            assert (view.sender, view.school_message_id, view.received_at) == \
                (verdict.sender, verdict.message_id, verdict.received_at)
            assert view.school_subject == verdict.correspondence.subject   # type: ignore[union-attr]
            assert view.flag_details == tuple((f.code.value, f.detail) for f in verdict.flags)
        assert any(view.issues for view in views) and any(not view.issues for view in views)
    finally:
        bot.close()


def _now() -> datetime:
    return datetime(2024, 6, 10, 12, 0, tzinfo=timezone.utc)

"""Data-protection requests through the real ``hubbot privacy`` command: ``find`` reports every stored message,
application, version and reply holding an address (JSON, or a zip with the raw e-mails, readable by its owner
only); ``erase`` anonymises them (raw mail included) while keeping every row so counts stay right, leaves other
people's data alone, fails a reply that would now go to nobody, logs the erasure without the address, and leaves
no trace of the address or the person's name in the SQLite database file or its write-ahead log. On PostgreSQL
the same erasure runs and vacuums the tables."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.ops.privacy import erase, find
from samples.applications import SCHOOLS
from storage import repository as repo
from storage.models import Application, ApplicationVersion, Event, Message, OutboxItem, OutboxState, Signatory
from tests.test_workflow import NOW, Bot, application, deliver, question_email, write_config

REPO = Path(__file__).resolve().parents[1]
SCHOOL = SCHOOLS[0]
NAME, ADDRESS, TRN = SCHOOL.person("teacher1")          # Ms Kate Wright, copied on the school's e-mail
OTHER_NAME, OTHER, _ = SCHOOL.person("head")
HUB = "mathshub@bishopchalloner.bham.sch.uk"


def hubbot(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HUBBOT_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args, "--config", str(config),
                           "--now", (NOW + timedelta(days=1)).isoformat()],
                          cwd=config.parent, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """Two applications from Valley School (one complete, one missing a TRN), a question from the person and one
    from somebody else, processed."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    deliver(tmp_path / "mail", application())
    deliver(tmp_path / "mail", application(urn="100002", drop=("teacher2.trn",)))
    deliver(tmp_path / "mail", question_email(sender=f"{NAME} <{ADDRESS}>", to=HUB))
    deliver(tmp_path / "mail", question_email(sender="Sam Reid <s.reid@stannes.example.sch.uk>", to=HUB,
                                              subject="Another question"))
    bot = Bot(config)
    try:
        bot.worker().run_once()
    finally:
        bot.close()
    return config


def counts(bot: Bot) -> dict[str, int]:
    with bot.db.session() as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (Message, Application, ApplicationVersion, Signatory, OutboxItem)}


def test_find_reports_everything_holding_the_address(stored: Path, tmp_path: Path) -> None:
    result = hubbot(stored, "privacy", "find", ADDRESS.upper())
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"]["messages"] == 3 and report["counts"]["applications"] == 2
    assert report["counts"]["versions"] == 2 and report["counts"]["signatories"] == 2
    assert report["counts"]["outbox"] >= 2            # the replies were copied to every signatory
    assert all(ADDRESS in json.dumps(v["fields"]).lower() for v in report["versions"])
    assert report["elsewhere"] and report["note"]
    # Her question is found; somebody else's is not.
    subjects = [m["headers"]["subject"] for m in report["messages"]]
    assert "Question about the Work Group" in subjects and "Another question" not in subjects

    nobody = json.loads(hubbot(stored, "privacy", "find", "nobody@example.org").stdout)
    assert set(nobody["counts"].values()) == {0}

    target = tmp_path / "sar.zip"
    result = hubbot(stored, "privacy", "find", ADDRESS, "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        assert "report.json" in names
        raws = [archive.read(n) for n in names if n.startswith("messages/")]
        assert len(raws) == 3 and all(ADDRESS.encode() in raw.lower() for raw in raws)
        assert any(n.startswith("outbox/") for n in names)


def test_erase_anonymises_keeps_counts_and_leaves_no_trace_in_the_files(stored: Path) -> None:
    bot = Bot(stored)
    before = counts(bot)
    bot.close()

    result = hubbot(stored, "privacy", "erase", ADDRESS)
    assert result.returncode == 0, result.stderr
    assert "erased: 3 messages" in result.stdout

    for name in ("hubbot.db", "hubbot.db-wal"):
        path = stored.parent / name
        data = path.read_bytes().lower() if path.exists() else b""
        assert ADDRESS.encode() not in data, name
        assert NAME.lower().encode() not in data, name
    assert not (stored.parent / "hubbot.db-wal").exists() or (stored.parent / "hubbot.db-wal").stat().st_size == 0

    bot = Bot(stored)
    try:
        assert counts(bot) == before                   # anonymised, not deleted: the digest's counts stay
        with bot.db.session() as session:
            for version in session.scalars(select(ApplicationVersion)):
                assert version.fields["teacher1.email"] is None and version.fields["teacher1.trn"] is None
                assert version.fields["school.name"] == SCHOOL.name        # the school is not the person
                assert version.fields["head.email"] == OTHER                # nor are the other teachers
            assert {s.email for s in session.scalars(select(Signatory).where(Signatory.role == "teacher1"))} == {None}
            [event] = session.scalars(select(Event).where(Event.kind == "privacy_erased")).all()
            assert ADDRESS not in json.dumps(event.detail).lower() and event.detail["messages"] == 3
            assert find(session, ADDRESS).empty
            assert not find(session, OTHER).empty
    finally:
        bot.close()


def test_a_waiting_reply_to_nobody_else_is_failed(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    bot = Bot(config)
    try:
        with bot.db.session() as session:
            repo.enqueue_reply(session, hub_id="central", kind="reminder", from_addr="hub@example.org",
                               to=[ADDRESS], subject="Reminder", text=f"Sent to {ADDRESS}", dedupe_key="r1", now=NOW)
            repo.enqueue_reply(session, hub_id="central", kind="reminder", from_addr="hub@example.org",
                               to=[OTHER], cc=[ADDRESS], subject="Reminder", text="Dear all", dedupe_key="r2",
                               now=NOW)
        result = erase(bot.db, bot.config, ADDRESS, NOW)
        assert result.counts["outbox"] == 2 and result.vacuumed and not result.wal_busy
        with bot.db.session() as session:
            alone, shared = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
            assert alone.state is OutboxState.FAILED and alone.to == [] and alone.text == "Sent to [erased]"
            assert shared.state is OutboxState.PENDING and shared.to == [OTHER] and shared.cc == []
    finally:
        bot.close()


def test_erase_on_postgresql_vacuums(tmp_path: Path, pg_url: str) -> None:
    from tests.servers import _empty_postgres

    _empty_postgres(pg_url)
    config = write_config(tmp_path, pg_url)
    deliver(tmp_path / "mail", application())
    bot = Bot(config)
    try:
        bot.worker().run_once()
        with bot.db.session() as session:
            assert not find(session, ADDRESS).empty
        result = erase(bot.db, bot.config, ADDRESS, NOW)
        assert result.vacuumed and result.counts["messages"] == 1
        with bot.db.session() as session:
            assert find(session, ADDRESS).empty
            assert session.scalar(select(func.count()).select_from(Application)) == 1
    finally:
        bot.close()

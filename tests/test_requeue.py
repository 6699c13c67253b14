"""``hubbot requeue``: a reply the digest lists as uncertain (a worker died mid-send) or failed is sent again only
when a person asks, and a reply in any other state is left alone."""
from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from storage import repository as repo
from storage.models import OutboxItem, OutboxState
from tests.test_workflow import NOW, Bot, application, deliver, write_config


def test_requeue_sends_an_uncertain_reply_once_and_refuses_others(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}")
    deliver(tmp_path / "mail", application())
    bot = Bot(config)
    worker = bot.worker()
    worker.poll(bot.config.hubs[0])
    worker.process_stored()
    with bot.db.session() as session:
        [item] = repo.claim_due_replies(session, worker="dead", now=NOW)   # claimed, then the worker "died"
        item_id = item.id
    with bot.db.session() as session:
        [parked] = repo.park_interrupted_sends(session, now=NOW + timedelta(hours=1))
        assert parked.state is OutboxState.UNCERTAIN
    outbox = tmp_path / "outbox"
    assert not outbox.exists() or not list(outbox.glob("*.eml"))

    def requeue(*ids: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", "requeue", *map(str, ids), "--config", str(config),
                               "--now", (NOW + timedelta(hours=2)).isoformat()],
                              capture_output=True, text=True, timeout=60)

    done = requeue(item_id)
    assert done.returncode == 0, done.stderr
    assert f"reply {item_id}: queued again" in done.stdout and "sent 1" in done.stdout
    assert len(list(outbox.glob("*.eml"))) == 1
    with bot.db.session() as session:
        assert session.get(OutboxItem, item_id).state is OutboxState.SENT
    again = requeue(item_id, 9999)
    assert again.returncode == 2
    assert "not found, or not failed/uncertain" in again.stderr
    assert len(list(outbox.glob("*.eml"))) == 1

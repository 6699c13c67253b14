"""``hubbot run``, the long-running scheduler, as a real subprocess on a Maildir hub with a very short poll interval
(``poll_every_minutes = 0.02``, 1.2 s) and no SMTP: mail dropped into the Maildir while it runs gets its reply
file in the outbox folder within a few seconds, and SIGTERM makes it stop cleanly (exit 0) within a few seconds.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_imap_worker import REPO
from tests.test_workflow import application, deliver, write_config

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s")


def test_service_answers_new_mail_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'hubbot.db'}",
                          extra="[schedule]\npoll_every_minutes = 0.02\noutbox_every_seconds = 1\n")
    (tmp_path / "mail" / "new").mkdir(parents=True)
    outbox = tmp_path / "outbox"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--config", str(config)], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Running: the first (empty) poll happens about a second after start.
        wait_for(lambda: (tmp_path / "mail" / ".hubbot-ledger.json").exists(), timeout=30)
        assert process.poll() is None

        deliver(tmp_path / "mail", application(urn="400001"))
        wait_for(lambda: len(list(outbox.glob("*.eml"))) == 1, timeout=10)
        deliver(tmp_path / "mail", application(urn="400002"))
        wait_for(lambda: len(list(outbox.glob("*.eml"))) == 2, timeout=10)

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output, _ = process.communicate(timeout=10)
        assert process.returncode == 0, output
        assert time.monotonic() - started < 5, output
        assert "Traceback" not in output
        assert "stopped cleanly" in output
        assert len(list(outbox.glob("*.eml"))) == 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

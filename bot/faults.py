"""Deterministic crash points for the fault tests: with ``HUBBOT_CRASH_AT=<point>`` in the environment the worker
kills itself with SIGKILL when it reaches that point, exactly as a power cut or the OOM killer would. Without the
variable every call is a dictionary-free no-op, so the points can stay in production code where they document
the steps whose crash safety the tests prove.

Points: ``after_fetch`` (body downloaded, not stored), ``after_store`` (raw message committed, not processed),
``after_verdict`` (verdict and reply decided, transaction not committed), ``after_commit`` (verdict committed,
reply not sent), ``after_data_marker`` (the row says SMTP DATA is starting, nothing of the message sent yet),
``after_smtp`` (SMTP server accepted the reply, "sent" not committed).
"""
from __future__ import annotations

import os
import signal

_TARGET = os.environ.get("HUBBOT_CRASH_AT") or None


def crash_point(name: str) -> None:
    if _TARGET is not None and name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)

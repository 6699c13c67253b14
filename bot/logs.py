"""Logging for ``hubbot run``: one format, the level from ``$HUBBOT_LOG_LEVEL`` (default INFO), and APScheduler's
own chatter ("Running job ...", "Job executed successfully", every poll and every outbox drain) moved down to
DEBUG, so an INFO log says what the bot did (one line per processed message, per incident, per error) rather than
that a timer fired. Nothing logged anywhere in hubbot carries names, addresses or SQL parameters."""
from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SchedulerChatter(logging.Filter):
    """On a handler: APScheduler's INFO records become DEBUG records, dropped unless DEBUG is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("apscheduler") and record.levelno == logging.INFO:
            if not logging.getLogger().isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def configure(level: str | None = None) -> None:
    name = (level or os.environ.get("HUBBOT_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=getattr(logging, name, logging.INFO), format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SchedulerChatter) for f in handler.filters):
            handler.addFilter(SchedulerChatter())

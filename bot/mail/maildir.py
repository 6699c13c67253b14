"""A local Maildir as a mail source with the same shape as IMAP, for hubs whose mail is delivered to the bot's
machine and for trying the bot without a server. Maildir has no UIDs, so the source keeps a small ledger (JSON, next
to the Maildir's ``new``/``cur``/``tmp``) that gives every message file, by its unique Maildir key, a UID the first
time it is seen, in file-name order (which starts with the delivery time). The ledger's UIDVALIDITY is chosen when
the ledger is created: delete the ledger and the caller sees a UIDVALIDITY change, refetches everything and lets the
store recognise what it already has, exactly as with an IMAP server that renumbered its mailbox.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bot.mail.source import Cursor, FetchedMessage, FetchRun, MailSourceError, SkippedMessage, SkipReason

LEDGER_NAME = ".hubbot-ledger.json"


@dataclass
class _Ledger:
    uidvalidity: int
    next_uid: int
    uids: dict[str, int]   # Maildir key (file name before ":") -> UID


def _key(filename: str) -> str:
    return filename.split(":", 1)[0]


class MaildirSource:
    def __init__(self, path: str | os.PathLike[str], *, max_message_bytes: int = 25 * 1024 * 1024,
                 ledger_path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.max_message_bytes = max_message_bytes
        self.ledger_path = Path(ledger_path) if ledger_path else self.path / LEDGER_NAME

    def _files(self) -> dict[str, Path]:
        if not (self.path / "cur").is_dir() and not (self.path / "new").is_dir():
            raise MailSourceError(f"Maildir folder {self.path} not found (no cur/ or new/ in it)")
        found: dict[str, Path] = {}
        for sub in ("new", "cur"):  # never tmp: files there are still being written
            directory = self.path / sub
            if directory.is_dir():
                for entry in os.scandir(directory):
                    if entry.is_file() and not entry.name.startswith("."):
                        found[_key(entry.name)] = Path(entry.path)
        return found

    def _load_ledger(self) -> _Ledger:
        try:
            data = json.loads(self.ledger_path.read_text())
            return _Ledger(int(data["uidvalidity"]), int(data["next_uid"]), {str(k): int(v) for k, v in
                                                                             data["uids"].items()})
        except FileNotFoundError:
            return _Ledger(uidvalidity=int(time.time()), next_uid=1, uids={})
        except (ValueError, KeyError, TypeError) as exc:
            raise MailSourceError(f"Maildir ledger {self.ledger_path} is damaged; delete it to renumber") from exc

    def _save_ledger(self, ledger: _Ledger) -> None:
        text = json.dumps({"uidvalidity": ledger.uidvalidity, "next_uid": ledger.next_uid, "uids": ledger.uids})
        fd, tmp = tempfile.mkstemp(dir=self.ledger_path.parent, prefix=".hubbot-ledger.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.ledger_path)  # atomic: a crash leaves the old ledger or the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def fetch_new(self, cursor: Cursor) -> FetchRun:
        files = self._files()
        ledger = self._load_ledger()
        changed = False
        for key in sorted(k for k in files if k not in ledger.uids):
            ledger.uids[key] = ledger.next_uid
            ledger.next_uid += 1
            changed = True
        gone = [k for k in ledger.uids if k not in files]
        for key in gone:  # UIDs are never reused: next_uid only grows
            del ledger.uids[key]
        if changed or gone or not self.ledger_path.exists():
            self._save_ledger(ledger)

        reset = cursor.uidvalidity is not None and cursor.uidvalidity != ledger.uidvalidity
        last = 0 if reset or cursor.uidvalidity is None else cursor.last_uid
        by_uid = {uid: files[key] for key, uid in ledger.uids.items() if uid > last}
        wanted: list[int] = []
        skipped: list[SkippedMessage] = []
        dates: dict[int, datetime] = {}
        for uid in sorted(by_uid):
            try:
                stat = by_uid[uid].stat()
                size = stat.st_size
                dates[uid] = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
            except FileNotFoundError:
                skipped.append(SkippedMessage(uid, 0, SkipReason.VANISHED))
                continue
            if size > self.max_message_bytes:
                skipped.append(SkippedMessage(uid, size, SkipReason.TOO_LARGE))
            else:
                wanted.append(uid)
        uidvalidity = ledger.uidvalidity
        return FetchRun(uidvalidity=uidvalidity, previous_uidvalidity=cursor.uidvalidity, uids=tuple(wanted),
                        skipped=skipped, internaldates=dates,
                        _bodies=lambda ids: self._bodies(uidvalidity, by_uid, ids))

    def _bodies(self, uidvalidity: int, by_uid: dict[int, Path], uids: Sequence[int]) -> Iterator[FetchedMessage]:
        for uid in uids:
            path = by_uid[uid]
            if not path.exists():  # a MUA moved new/ -> cur/ meanwhile: same key, new name
                matches = [p for p in self._files().items() if p[0] == _key(path.name)]
                if not matches:
                    continue
                path = matches[0][1]
            try:
                raw = path.read_bytes()
                delivered = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
            except FileNotFoundError:
                continue
            yield FetchedMessage(uidvalidity=uidvalidity, uid=uid, internaldate=delivered, raw=raw, size=len(raw))

    def fetch_headers(self, uidvalidity: int, uids: Sequence[int]) -> Iterator[FetchedMessage]:
        """The header block alone of messages too large to read whole (``size`` is the file's size)."""
        ledger = self._load_ledger()
        files = self._files()
        by_uid = {uid: files[key] for key, uid in ledger.uids.items() if key in files}
        for uid in uids:
            path = by_uid.get(uid)
            if path is None:
                continue
            try:
                with path.open("rb") as handle:
                    head = handle.read(1024 * 1024)
                size = path.stat().st_size
                delivered = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
            except FileNotFoundError:
                continue
            end = min((i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0), default=len(head))
            yield FetchedMessage(uidvalidity=uidvalidity, uid=uid, internaldate=delivered, raw=head[:end + 4],
                                 size=size)

    def move_to(self, uids: Sequence[int], folder: str) -> None:
        """Move messages into another Maildir (``folder`` is a path, or a Maildir++ subfolder name like
        ".Processed" under this one), keeping the file names so flags survive."""
        if not uids:
            return
        target = Path(folder) if os.path.isabs(folder) else self.path / folder
        for sub in ("cur", "new", "tmp"):
            (target / sub).mkdir(parents=True, exist_ok=True)
        ledger = self._load_ledger()
        files = self._files()
        by_uid = {uid: key for key, uid in ledger.uids.items()}
        for uid in uids:
            key = by_uid.get(uid)
            if key is None or key not in files:
                continue
            source = files[key]
            os.replace(source, target / source.parent.name / source.name)

    def close(self) -> None:
        return None

    def __enter__(self) -> MaildirSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The config file: the documented example loads, every key is checked, and a mistake names the file and the key."""
from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from bot.config import load_config, parse_config
from parsers.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_example_config_loads_every_documented_key() -> None:
    config = load_config(REPO / "config.example.toml")
    hub = config.hubs[0]
    assert hub.id == "cambridge" and hub.imap is not None and hub.imap.folder == "INBOX"
    assert hub.dates["primary-trg-pilot-2019"].deadline == date(2019, 3, 6)
    assert config.schedule.digest_at == time(7, 30) and config.schedule.reminder_days_before == (7, 2)
    assert config.smtp is not None and config.smtp.security == "starttls"
    assert config.limits.pdf_pages == 30


@pytest.mark.parametrize(("data", "key"), [
    ({"hubz": []}, "hubz"),
    ({"hubs": [{"id": "a", "name": "A", "address": "a@x.org", "imap": {"host": "h", "securty": "tls"}}]},
     "hubs[0].imap.securty"),
    ({"hubs": [{"id": "a", "name": "A", "address": "a@x.org", "dates": {"p": {"deadline": "6 March"}}}]},
     "hubs[0].dates.p.deadline"),
    ({"schedule": {"digest_at": "half past seven"}}, "schedule.digest_at"),
    ({"smtp": {"host": "h", "port": "587"}}, "smtp.port"),
    ({"limits": {"pdf_pages": True}}, "limits.pdf_pages"),
])
def test_a_mistake_names_the_file_and_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "hubbot.toml", Path("."))
    assert caught.value.reason.startswith(f"hubbot.toml: key '{key}'")


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = parse_config({"hubs": [{"id": "a", "name": "A", "address": "A@X.org", "maildir": "mail/a"}]},
                          "hubbot.toml", tmp_path)
    assert config.hubs[0].maildir == tmp_path / "mail/a"
    assert config.hubs[0].address == "a@x.org"
    assert config.database_url == f"sqlite:///{(tmp_path / 'hubbot.db').resolve()}"

"""The config keys for running hubbot for a hub: ``[hubs.smtp]`` overriding ``[smtp]`` key by key, ``auth`` for
sending (password, microsoft, google) with the keys each needs named when missing, ``token_url`` only for Google,
``[alerts]``, and the list of every environment variable the config names (which ``hubbot doctor`` checks)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import AuthMethod, Security, parse_config
from parsers.errors import ConfigError

HUB = {"id": "central", "name": "Central", "address": "hub@central.example"}


def test_hub_smtp_overrides_smtp_key_by_key() -> None:
    config = parse_config({
        "smtp": {"host": "smtp.example.org", "username": "shared@example.org", "password_env": "SHARED"},
        "hubs": [{**HUB, "smtp": {"username": "hub@central.example", "auth": "microsoft", "client_id": "c",
                                  "tenant_id": "t", "client_secret_env": "CENTRAL_SECRET"}},
                 {**HUB, "id": "north"}],
    }, "hubbot.toml", Path("."))
    central, north = config.hubs
    assert central.smtp is not None and central.smtp.host == "smtp.example.org"
    assert central.smtp.username == "hub@central.example" and central.smtp.auth is AuthMethod.MICROSOFT
    assert central.smtp.security is Security.STARTTLS and central.smtp.oauth.tenant_id == "t"
    assert config.smtp_for(central) is central.smtp and config.smtp_for(north) is config.smtp
    # Each variable once; central's Microsoft login does not need the password it inherits.
    assert list(config.env_names()) == [("SHARED", "smtp.password_env"),
                                        ("CENTRAL_SECRET", "hubs[0].smtp.client_secret_env")]


@pytest.mark.parametrize(("data", "key", "words"), [
    ({"smtp": {"host": "h", "auth": "google", "client_id": "c", "client_secret_env": "S"}},
     "smtp.refresh_token_env", "is required with auth = \"google\""),
    ({"hubs": [{**HUB, "imap": {"host": "h", "auth": "microsoft", "client_id": "c", "client_secret_env": "S"}}]},
     "hubs[0].imap.tenant_id", "is required with auth = \"microsoft\""),
    ({"smtp": {"host": "h", "auth": "oauth"}}, "smtp.auth", "should be password, microsoft, google"),
    ({"smtp": {"host": "h", "token_url": "https://x"}}, "smtp.token_url", "only used with auth = \"google\""),
    ({"hubs": [{**HUB, "smtp": {"prot": 25}}]}, "hubs[0].smtp.prot", "is not a known key"),
    ({"hubs": [{**HUB, "smtp": {"port": 25}}]}, "hubs[0].smtp.host", "is required"),
    ({"alerts": {"to": ["not an address"]}}, "alerts.to", "e-mail addresses"),
    ({"alerts": {"mailbox_failures": 0}}, "alerts.mailbox_failures", "1 or more"),
])
def test_a_mistake_names_the_key(data: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "hubbot.toml", Path("."))
    assert caught.value.reason.startswith(f"hubbot.toml: key '{key}'") and words in caught.value.reason


def test_alerts() -> None:
    config = parse_config({"alerts": {"to": ["it@example.org"], "smtp_failures": 5}}, "hubbot.toml", Path("."))
    assert config.alerts.to == ("it@example.org",) and config.alerts.smtp_failures == 5
    assert config.alerts.mailbox_failures == 3 and config.alerts.outbox_stuck_minutes == 60
    assert parse_config({}, "hubbot.toml", Path(".")).alerts.to == ()

"""Turn a loaded config (or none) into the settings the check pipeline needs: programmes, hubs and dates.

The programmes are the built-in ones plus the config's ``programmes_dir``; a hub naming a programme that is neither
is a config error, and programmes that share a title for one hub are reported as warning lines when they load.
"""
from __future__ import annotations

import logging

from bot.config import Config
from parsers.errors import ConfigError
from rules.checks import HubView
from rules.definitions import Notification, Registry, load_registry
from rules.hubs import HubDirectory
from rules.maths_hubs import match_maths_hub
from rules.settings import CheckSettings

_log = logging.getLogger("hubbot.programmes")


def load_programmes(config: Config | None) -> Registry:
    """Every programme the config knows of, checked against its hubs' ``programmes`` lists. Raises
    ``ConfigError`` naming the hub and the id when a hub lists a programme nobody defines."""
    if config is None:
        return load_registry()
    registry = load_registry((config.programmes_dir,) if config.programmes_dir else ())
    known = {p.id for p in registry.programmes}
    for hub in config.hubs:
        for programme_id in hub.programmes:
            if programme_id not in known:
                where = f" or in {config.programmes_dir}" if config.programmes_dir else ""
                raise ConfigError(f"{config.path}: hub '{hub.id}' lists programme '{programme_id}', which is not a "
                                  f"known programme (built in{where}: {', '.join(sorted(known))})")
    for line in registry.overrides:
        _log.info("%s", line)
    for line in registry.warnings:
        # Not a crash: the bot still works, but a person should decide which definition a hub means.
        _log.warning("%s", line)
    return registry


def check_settings(config: Config | None) -> CheckSettings:
    if config is None:
        return CheckSettings.builtin()
    registry = load_programmes(config)
    if not config.hubs:
        return CheckSettings(registry=registry, hubs=HubDirectory.builtin(registry), limits=config.limits,
                             trusted_authserv_ids=frozenset(config.security.trusted_authserv_ids))
    hubs = HubDirectory(tuple(
        HubView(id=h.id, name=h.name, addresses=frozenset({h.address, *h.aliases}), programmes=frozenset(h.programmes),
                maths_hub=match_maths_hub(h.name))
        for h in config.hubs
    ))
    deadlines = {(h.id, programme_id): d.deadline
                 for h in config.hubs for programme_id, d in h.dates.items() if d.deadline}
    notifications = {(h.id, programme_id): tuple(Notification(day, what) for day, what in d.notifications)
                     for h in config.hubs for programme_id, d in h.dates.items() if d.notifications}
    templates = {h.id: str(folder) for h in config.hubs if (folder := config.templates_dir_for(h)) is not None}
    return CheckSettings(registry=registry, hubs=hubs, limits=config.limits, deadlines=deadlines,
                         notifications=notifications, templates_dirs=templates,
                         trusted_authserv_ids=frozenset(config.security.trusted_authserv_ids))

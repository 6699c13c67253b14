"""Turn a loaded config (or none) into the settings the check pipeline needs: programmes, hubs and dates."""
from __future__ import annotations

from bot.config import Config
from rules.checks import HubView
from rules.definitions import Notification, load_registry
from rules.hubs import HubDirectory
from rules.maths_hubs import match_maths_hub
from rules.pipeline import CheckSettings


def check_settings(config: Config | None) -> CheckSettings:
    if config is None:
        return CheckSettings.builtin()
    registry = load_registry((config.programmes_dir,) if config.programmes_dir else ())
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
    return CheckSettings(registry=registry, hubs=hubs, limits=config.limits, deadlines=deadlines,
                         notifications=notifications,
                         trusted_authserv_ids=frozenset(config.security.trusted_authserv_ids))

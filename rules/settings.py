"""What reading and deciding need to know beyond the message: the programme definitions, the hubs, the file
limits, and each hub's own dates (from the config's ``[hubs.dates."<programme>"]``). One frozen value, built once
per run from the config (``bot.context``) or from the built-ins (``CheckSettings.builtin()`` for ``check``)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from parsers.types import Limits
from rules.calendar import ProgrammeDates, programme_dates
from rules.checks import HubView, policy_for
from rules.definitions import Notification, ProgrammeDefinition, Registry, load_registry
from rules.hubs import HubDirectory


@dataclass(frozen=True)
class CheckSettings:
    registry: Registry
    hubs: HubDirectory
    limits: Limits = Limits()
    # (hub id, programme id) -> deadline / notification dates, from the config's [hubs.dates."<programme>"].
    deadlines: Mapping[tuple[str, str], date] = field(default_factory=dict)
    notifications: Mapping[tuple[str, str], tuple[Notification, ...]] = field(default_factory=dict)
    # hub id -> the hub's own templates folder (config ``templates_dir``), searched before the built-ins.
    templates_dirs: Mapping[str, str] = field(default_factory=dict)
    # [security] trusted_authserv_ids: whose Authentication-Results headers to believe (rules.authentication).
    trusted_authserv_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # A programme naming a check that does not exist fails here, when the settings are made, not on a school's
        # e-mail.
        for programme in self.registry.programmes:
            policy_for(programme)

    @classmethod
    def builtin(cls) -> "CheckSettings":
        registry = load_registry()
        return cls(registry=registry, hubs=HubDirectory.builtin(registry))

    def deadline(self, hub: HubView | None, programme: ProgrammeDefinition) -> date | None:
        if hub is not None and (hub.id, programme.id) in self.deadlines:
            return self.deadlines[(hub.id, programme.id)]
        return programme.deadline

    def templates_dir(self, hub: HubView | str | None) -> str | None:
        hub_id = hub if isinstance(hub, str) or hub is None else hub.id
        return self.templates_dirs.get(hub_id) if hub_id else None

    def dates(self, hub_id: str, programme: ProgrammeDefinition) -> ProgrammeDates:
        return programme_dates(programme, deadline=self.deadlines.get((hub_id, programme.id)),
                               notifications=self.notifications.get((hub_id, programme.id)))

    def hub_running(self, programme: ProgrammeDefinition) -> tuple[str, str]:
        """The name and address of the hub that runs ``programme``: a configured hub listing it, else the hub its
        definition names. A ``wrong_hub`` reply sends the school there."""
        for hub in self.hubs.hubs:
            if programme.id in hub.programmes and hub.addresses:
                address = programme.hub.address if programme.hub.address in hub.addresses else sorted(hub.addresses)[0]
                return hub.name, address
        return programme.hub.name, programme.hub.address

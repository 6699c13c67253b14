"""The hubs hubbot knows, and finding which one an e-mail was sent to.

Built-in hubs come from the programme definitions (each names its hub and mailbox), so ``hubbot check`` works
with no config; a config's ``[[hubs]]`` replaces them. The hub of a message is decided by the mailbox that
received it: the address it was delivered to, else the first hub address among its To and Cc.
"""
from __future__ import annotations

from dataclasses import dataclass

from parsers.types import ParsedEmail
from rules.checks import HubView
from rules.definitions import Registry
from rules.maths_hubs import match_maths_hub


@dataclass(frozen=True)
class HubDirectory:
    hubs: tuple[HubView, ...]

    @classmethod
    def builtin(cls, registry: Registry) -> "HubDirectory":
        merged: dict[str, tuple[str, set[str], set[str]]] = {}
        for p in registry.programmes:
            name, addresses, programmes = merged.setdefault(p.hub.id, (p.hub.name, set(), set()))
            addresses.add(p.hub.address)
            programmes.add(p.id)
        return cls(tuple(
            HubView(hub_id, name, frozenset(addresses), frozenset(programmes), match_maths_hub(name))
            for hub_id, (name, addresses, programmes) in merged.items()
        ))

    def get(self, hub_id: str) -> HubView | None:
        return next((h for h in self.hubs if h.id == hub_id), None)

    def all_addresses(self) -> frozenset[str]:
        return frozenset(a for h in self.hubs for a in h.addresses)

    def for_email(self, email: ParsedEmail) -> HubView | None:
        for group in (email.delivered_to, email.to, email.cc):
            for address in group:
                for hub in self.hubs:
                    if address.email in hub.addresses:
                        return hub
        return None

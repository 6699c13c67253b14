"""Which sender takes which outbox row. The config names up to one mail server per hub (``[hubs.smtp]``, else
``[smtp]``); with none, replies are written as ``.eml`` files to the outbox folder. ``Senders`` holds one sender per
distinct server ("endpoint"), built once per worker so a token provider's cache and a kept SMTP connection serve
every row that goes the same way. Replies, reminders and digests go through their hub's endpoint. An alert goes
through a ``FallbackSender``: the endpoints that are not the broken one first, then the broken one (it may have
recovered), then the ``.eml`` folder, which always works, so IT hears about a broken server from one that works
and, failing every server, finds the alert on disk. The From of an alert is changed to the address of a hub that
uses the endpoint it goes through, because servers refuse to send as another organisation's address.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr

from bot.config import Config, HubSettings
from bot.oauth import TokenProvider, token_provider_for
from bot.sending.outbox import Routing, Sender, eml_sender, smtp_sender
from bot.sending.smtp import SendResult, SendStatus
from rules.automatic import LOOP_HEADER
from templates import EmailKind

DEFAULT_ENDPOINT = "smtp"          # the [smtp] table
EML_ENDPOINT = "eml"               # the outbox folder


def hub_endpoint(hub_id: str) -> str:
    return f"hubs.{hub_id}.smtp"


def endpoint_of(config: Config, hub: HubSettings) -> str:
    """The label of the server a hub's mail goes through: its own, ``[smtp]``, or the .eml folder."""
    if hub.smtp is not None:
        return hub_endpoint(hub.id)
    return DEFAULT_ENDPOINT if config.smtp is not None else EML_ENDPOINT


def describe_endpoint(config: Config, label: str) -> str:
    """Words for a person: which server, and which table of the config names it."""
    if label == EML_ENDPOINT:
        return f"the outbox folder {config.outbox_path}"
    if label == DEFAULT_ENDPOINT and config.smtp is not None:
        return f"SMTP server {config.smtp.where} ([smtp])"
    for hub in config.hubs:
        if hub.smtp is not None and label == hub_endpoint(hub.id):
            return f"SMTP server {hub.smtp.where} ([hubs.smtp] of hub {hub.id})"
    return label


@dataclass(frozen=True)
class Endpoint:
    label: str
    sender: Sender
    from_addr: str | None = None     # an address allowed to send through this endpoint (a hub that uses it)


@dataclass
class FallbackSender:
    """Tries each endpoint in turn until one takes the message; the last result is returned if none does."""

    endpoints: Sequence[Endpoint]

    def __call__(self, message: EmailMessage) -> SendResult:
        result = SendResult(SendStatus.TEMPORARY, None, "no sender configured")
        for endpoint in self.endpoints:
            if endpoint.from_addr:
                for header in ("From", LOOP_HEADER):
                    del message[header]
                    message[header] = endpoint.from_addr
            result = endpoint.sender(message)
            if result.ok:
                return SendResult(result.status, result.code, f"via {endpoint.label}: {result.detail}"[:500],
                                  result.refused_recipients)
        return result

    def close(self) -> None:
        for endpoint in self.endpoints:
            close = getattr(endpoint.sender, "close", None)
            if close is not None:
                close()


@dataclass
class Senders:
    """The worker's senders: ``default`` for hubs without their own server, ``per_hub`` for the others, and every
    endpoint for alerts."""

    default: Sender
    per_hub: dict[str, Sender] = field(default_factory=dict)
    endpoints: list[Endpoint] = field(default_factory=list)
    hub_endpoints: dict[str, str] = field(default_factory=dict)    # hub id -> endpoint label

    @classmethod
    def single(cls, sender: Sender) -> Senders:
        """One sender for everything (tests inject one)."""
        return cls(default=sender, endpoints=[Endpoint(DEFAULT_ENDPOINT, sender)])

    def pick(self, routing: Routing) -> Sender:
        if routing.kind == EmailKind.ALERT:
            return FallbackSender(self.alert_route(routing.dedupe_key))
        return self.per_hub.get(routing.hub_id, self.default)

    def alert_route(self, dedupe_key: str) -> list[Endpoint]:
        """Endpoints for an alert, the broken one last (but before the .eml folder). The key is
        ``alert:<component>:<target>:<n>:<phase>``; only an SMTP incident names an endpoint to avoid, and a
        mailbox incident prefers its hub's own endpoint."""
        parts = dedupe_key.split(":")
        component, target = (parts[1], parts[2]) if len(parts) > 3 else ("", "")
        avoid = target if component == "smtp" else None
        prefer = self.hub_endpoints.get(target) if component in ("mailbox", "outbox") else None
        ordered = sorted(self.endpoints, key=lambda e: (e.label == EML_ENDPOINT, e.label == avoid,
                                                        e.label != prefer))
        return ordered


def build_senders(config: Config, *, wrap: Callable[[Sender], Sender] = lambda s: s,
                  tokens: dict[str, TokenProvider] | None = None) -> Senders:
    """One sender per endpoint the config names, each wrapped by ``wrap`` (the worker's crash point)."""
    tokens = tokens if tokens is not None else {}
    eml = wrap(eml_sender(config.outbox_path))

    def smtp(label: str, settings) -> Sender:
        provider = token_provider_for(settings.auth, settings.oauth, timeout=settings.timeout_seconds)
        if provider is not None:
            tokens[label] = provider
        return wrap(smtp_sender(settings, token_provider=provider))

    default = smtp(DEFAULT_ENDPOINT, config.smtp) if config.smtp is not None else eml
    per_hub: dict[str, Sender] = {}
    endpoints: list[Endpoint] = []
    hub_endpoints = {hub.id: endpoint_of(config, hub) for hub in config.hubs}

    def first_address(label: str) -> str | None:
        hub = next((h for h in config.hubs if hub_endpoints[h.id] == label), None)
        return formataddr((f"hubbot for {hub.name}", hub.address)) if hub else None

    if config.smtp is not None:
        endpoints.append(Endpoint(DEFAULT_ENDPOINT, default, first_address(DEFAULT_ENDPOINT)))
    for hub in config.hubs:
        if hub.smtp is not None:
            label = hub_endpoint(hub.id)
            per_hub[hub.id] = smtp(label, hub.smtp)
            endpoints.append(Endpoint(label, per_hub[hub.id], first_address(label)))
    endpoints.append(Endpoint(EML_ENDPOINT, eml))
    return Senders(default=default, per_hub=per_hub, endpoints=endpoints, hub_endpoints=hub_endpoints)


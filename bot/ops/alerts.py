"""Alert e-mails to the addresses in ``[alerts] to``: one when an incident opens, one when it recovers. Each is
rendered from the ``alert`` template trio and queued through the outbox under the key
``alert:<incident key>:<opened|recovered>``, so it goes once even with two workers and across restarts; the outbox
routes it around a broken mail server (``bot.sending.senders``). With no ``[alerts]`` nothing is e-mailed, but the
incident is still recorded, shown by ``hubbot status`` and opens the hub's digest.
"""
from __future__ import annotations

from datetime import datetime
from email.utils import formataddr

from sqlalchemy.orm import Session

from bot.config import Config
from bot.ops.health import ALERT_HUB, Component, Problem, Transition
from rules.calendar import LONDON
from storage import repository as repo
from storage.models import EventKind
from templates import EmailKind, RenderedEmail, render_email

ADVICE = {
    (Component.MAILBOX, Problem.UNREADABLE):
        "New mail waits safely in the mailbox: nothing is lost, and the bot catches up as soon as it can read it "
        "again. Run `hubbot doctor` on the bot's machine to see whether the server, the login or the folder is "
        "at fault.",
    (Component.MAILBOX, Problem.TOKEN):
        "The bot cannot get an OAuth2 access token for the mailbox: the client secret may have expired, admin "
        "consent may have been withdrawn or the refresh token revoked. Renew it as docs/admin.md describes, then "
        "run `hubbot doctor`. Mail waits safely in the mailbox meanwhile.",
    (Component.SMTP, Problem.FAILING):
        "Replies wait in the outbox and go when the server works again (each is retried for about a day). Run "
        "`hubbot doctor` to see whether the server, the login or the network is at fault.",
    (Component.SMTP, Problem.TOKEN):
        "The bot cannot get an OAuth2 access token for sending: the client secret may have expired or consent "
        "been withdrawn. Renew it as docs/admin.md describes, then run `hubbot doctor`. Replies wait in the outbox.",
    (Component.OUTBOX, Problem.STUCK):
        "Replies are due but nothing is sending them: check that the worker is running (`systemctl status "
        "hubbot`, `hubbot status`) and look at its log.",
}


def alert_key(transition: Transition) -> str:
    return f"alert:{transition.incident.key}:{transition.phase}"


def render_alert(config: Config, transition: Transition) -> RenderedEmail:
    incident = transition.incident
    names = {h.id: h.name for h in config.hubs}
    duration = ""
    if transition.opened_at is not None:
        minutes = int((transition.at - incident.since).total_seconds() // 60)
        duration = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
    context = {
        "recovered": transition.phase == "recovered",
        "title": incident.title,
        "key": incident.key,
        "hubs": [names.get(h, h) for h in incident.hubs],
        "since": f"{incident.since.astimezone(LONDON):%a %-d %b %Y %H:%M}",
        "at": f"{transition.at.astimezone(LONDON):%a %-d %b %Y %H:%M}",
        "duration": duration,
        "detail": incident.detail,
        "advice": ADVICE.get((incident.component, incident.problem), "Run `hubbot doctor` and `hubbot status`."),
    }
    return render_email(EmailKind.ALERT, context)


def queue_alert(session: Session, config: Config, transition: Transition, now: datetime) -> bool:
    """Queue the alert for one transition; False when there is nobody to tell or it was queued already."""
    if not config.alerts.to:
        return False
    rendered = render_alert(config, transition)
    # The From is replaced by the address of a hub whose server carries it (see senders.FallbackSender).
    sender = config.hubs[0].address if config.hubs else "hubbot@localhost"
    result = repo.enqueue_reply(
        session, hub_id=ALERT_HUB, kind=EmailKind.ALERT, from_addr=formataddr(("hubbot", sender)), to=config.alerts.to,
        subject=rendered.subject, text=rendered.text, html=rendered.html, dedupe_key=alert_key(transition),
        headers={"X-Hubbot-Incident": transition.incident.key}, now=now)
    if result.created:
        repo.record_event(session, EventKind.ALERT_QUEUED, actor="hubbot", outbox_id=result.item.id,
                          detail={"incident": transition.incident.key, "phase": transition.phase}, now=now)
    return result.created

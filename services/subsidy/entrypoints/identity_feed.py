"""The identity feed from outside publishers (docs/identity-feed.md): exchange `<ns>.identity.in`,
plain JSON messages (not our envelope), one update per message.

Unreadable bodies (not JSON) are dead-lettered like any malformed message; anything readable goes to
the handler, which reports it as applied, unchanged, duplicate or rejected.

Each broker account speaks for the departments it is bound to (`IDENTITY_FEED_ACCOUNTS`,
`user=dept|dept,...`; unset: an account speaks for the department of its own name): an update whose
`source_system` is not one of its publisher's (`user_id`, checked by the broker) is dead-lettered as
forged, like HTTP's `SOURCE_NOT_ALLOWED`.
"""
from __future__ import annotations

import hashlib
import json

import pika

from shared.bus import Forged, InboundTopology, broker_user, connection_params
from shared.clock import Clock, iso
from shared.config import env
from shared.events import Envelope

IDENTITY_UPDATE = "identity.update"  # the handler key of the feed (not a catalogue event)
FEED = "identity"


def topology(namespace: str, service: str) -> InboundTopology:
    return InboundTopology(namespace, service, feed=FEED, binding="#", single_active=True)


def message_id_of(props, body: bytes) -> str:
    """The publisher's message id, or a digest of the body (the same body twice: one report)."""
    mid = getattr(props, "message_id", None)
    return str(mid)[:120] if mid else "sha256:" + hashlib.sha256(body).hexdigest()


def feed_accounts() -> dict[str, set[str]] | None:
    """Broker user → the departments it may speak for; None: each user for its namesake only."""
    value = env("IDENTITY_FEED_ACCOUNTS")
    if not value:
        return None
    out: dict[str, set[str]] = {}
    for part in value.split(","):
        user, _, depts = part.partition("=")
        out[user.strip()] = {d.strip() for d in depts.split("|") if d.strip()}
    return out


def decoder(accounts: dict[str, set[str]] | None, own_user: str, clock: Clock | None = None):
    """The feed's decode hook, refusing an update from an account not bound to its department.
    The service's own user is trusted: the HTTP batch (which checks SOURCE_NOT_ALLOWED itself)
    and the consumer's retries publish as that user."""
    def checked(props, body: bytes) -> Envelope:
        out = decode(props, body, clock)
        raw = out.payload["body"]
        user = getattr(props, "user_id", None)
        if isinstance(raw, dict) and user != own_user:  # a non-object is reported as rejected by the handler
            allowed = accounts.get(user, set()) if accounts is not None else {user}
            if user is None or raw.get("source_system") not in allowed:
                raise Forged(f"broker user {user!r} may not speak for {raw.get('source_system')!r}")
        return out
    return checked


def county_of(raw) -> str | None:
    """The county an update is for (its GB/T 2260 code), None when it names none."""
    county = raw.get("county") if isinstance(raw, dict) else None
    return county if isinstance(county, str) else None


def decode(props, body: bytes, clock: Clock | None = None) -> Envelope:
    """An outside message as our envelope; `occurred_at` is when it arrived, by the service's clock."""
    raw = json.loads(body.decode("utf-8"))  # ValueError (incl. UnicodeDecodeError) → dead letter
    mid = message_id_of(props, body)
    return Envelope(id=mid, type=IDENTITY_UPDATE, version=1, occurred_at=iso((clock or Clock()).now()),
                    producer="subsidy", correlation_id=getattr(props, "correlation_id", None) or mid,
                    causation_id=None, payload={"body": raw})


def publish(amqp_url: str, topo: InboundTopology, messages: list[tuple[str, str, dict]]) -> None:
    """Publish (message id, routing key, update) with confirms; raises on broker trouble."""
    conn = pika.BlockingConnection(connection_params(amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        topo.declare(ch)
        for mid, key, update in messages:
            ch.basic_publish(topo.exchange, key, json.dumps(update, ensure_ascii=False).encode(),
                             pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=mid,
                                                  user_id=broker_user(amqp_url)))
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass

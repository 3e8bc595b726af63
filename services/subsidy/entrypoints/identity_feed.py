"""The identity feed from outside publishers (docs/identity-feed.md): exchange `<ns>.identity.in`,
plain JSON messages (not our envelope), one update per message.

Unreadable bodies (not JSON) are dead-lettered like any malformed message; anything readable goes to
the handler, which reports it as applied, unchanged, duplicate or rejected.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pika

from shared.bus import InboundTopology, connection_params
from shared.events import Envelope

IDENTITY_UPDATE = "identity.update"  # the handler key of the feed (not a catalogue event)
FEED = "identity"


def topology(namespace: str, service: str) -> InboundTopology:
    return InboundTopology(namespace, service, feed=FEED, binding="#", single_active=True)


def message_id_of(props, body: bytes) -> str:
    """The publisher's message id, or a digest of the body (the same body twice: one report)."""
    mid = getattr(props, "message_id", None)
    return str(mid)[:120] if mid else "sha256:" + hashlib.sha256(body).hexdigest()


def decode(props, body: bytes) -> Envelope:
    raw = json.loads(body.decode("utf-8"))  # ValueError (incl. UnicodeDecodeError) → dead letter
    mid = message_id_of(props, body)
    return Envelope(id=mid, type=IDENTITY_UPDATE, version=1, occurred_at=datetime.now(timezone.utc).isoformat(),
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
                             pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=mid))
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass

"""Dead letters for the people who run the service: list them (masked) and send one back to the
queue it came from once its cause is fixed (`GET /v1/dead-letters`, `POST .../{id}/replay`).

A consumer dead-letters a message after its retries or at once when it is malformed; it keeps a
copy with the reason in the service's `dead_letters` collection (shared/bus.py). Replaying
publishes that copy again, with its attempts counted from one, to the queue it was consumed
from; the consumers' idempotency makes a replay of something already applied harmless.

The outbox relay keeps an event here too when its payload cannot be built (`source: "outbox"`,
shared/outbox.py); replaying that one puts it back into its aggregate's outbox, so the relay
builds and publishes it again once the document is fixed.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pika
from marshmallow import Schema, fields

from .bus import broker_user, connection_params
from .clock import iso
from .errors import Conflict, NotFound
from .masking import mask_text
from .store import DEAD_LETTERS, OUTBOX, insert_once

OPS_ROLES = ("county",)


class DeadLetterOut(Schema):
    id = fields.String()
    type = fields.String(allow_none=True)
    reason = fields.String()
    attempts = fields.Integer()
    queue = fields.String(allow_none=True)
    at = fields.String(allow_none=True)
    county = fields.String(allow_none=True)  # the county whose event it is (outbox events)
    source = fields.String()  # "consumer" (a message that failed) or "outbox" (an event that could not be built)
    replayed_at = fields.String(allow_none=True)
    replays = fields.Integer()
    body = fields.String()


class DeadLetterList(Schema):
    dead_letters = fields.List(fields.Nested(DeadLetterOut))


class ReplayOut(Schema):
    id = fields.String()
    queue = fields.String()
    replays = fields.Integer()


def render(doc: dict[str, Any]) -> dict[str, Any]:
    """ID and phone numbers in the message are masked: the reader needs the shape, not the person."""
    return {"id": doc["_id"], "type": doc.get("type"), "reason": mask_text(doc.get("reason") or ""),
            "attempts": doc.get("attempts", 0), "queue": doc.get("queue"), "at": iso(doc.get("at")),
            "source": doc.get("source", "consumer"), "county": doc.get("county"),
            "replayed_at": iso(doc.get("replayed_at")), "replays": doc.get("replays", 0),
            "body": mask_text(doc.get("body") or "")}


def visible_to(principal, doc: dict[str, Any]) -> bool:
    """A county's operators see their county's dead letters, and those that name no county (a
    malformed message belongs to nobody else who could mend it); another county's stay theirs."""
    return doc.get("county") in (None, principal.county)


def routes(api, c) -> None:
    """Add the two routes to a service's API (`c`: its container; one list for all its counties,
    each principal seeing its county's part)."""
    coll = c.suite_db[DEAD_LETTERS]

    @api.route("/v1/dead-letters", "GET", summary="死信列表（本县及未注明县的；已屏蔽身份证号与手机号）",
               permission="ops:dead-letters", response=DeadLetterList)
    def list_dead_letters(principal):
        found = coll.find({"county": {"$in": [None, principal.county]}}).sort("at", -1).limit(200)
        return {"dead_letters": [render(d) for d in found]}

    @api.route("/v1/dead-letters/{letter_id}/replay", "POST", summary="死信重新投递（原因排除后）", permission="ops:dead-letters",
               response=ReplayOut)
    def replay_dead_letter(principal, letter_id):
        doc = coll.find_one({"_id": letter_id})
        if doc is None or not visible_to(principal, doc):
            raise NotFound("DEAD_LETTER_NOT_FOUND", "死信不存在", {"id": letter_id})
        if doc.get("type") is None:
            raise Conflict("DEAD_LETTER_MALFORMED", "该消息格式无效，不能重新投递", {"id": letter_id})
        if (doc.get("reason") or "").startswith("forged"):
            raise Conflict("DEAD_LETTER_FORGED", "该消息的发布者无权发布此类事件，不能重新投递", {"id": letter_id})
        if doc.get("source") == "outbox":
            return _back_to_outbox(c, coll, doc, principal)
        queue = doc.get("queue") or c.topology.queue
        conn = pika.BlockingConnection(connection_params(c.settings.amqp_url))
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.basic_publish("", queue, doc["body"].encode(), pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=letter_id, type=doc["type"],
                user_id=broker_user(c.settings.amqp_url), headers={"x-attempt": 1, "x-replayed-by": principal.subject}))
        finally:
            conn.close()
        coll.update_one({"_id": letter_id}, {"$set": {"replayed_at": datetime.now(timezone.utc),
                                                      "replayed_by": principal.subject}, "$inc": {"replays": 1}})
        return {"id": letter_id, "queue": queue, "replays": doc.get("replays", 0) + 1}


def _back_to_outbox(c, coll, doc: dict[str, Any], principal) -> dict[str, Any]:
    """The event goes back into its aggregate's `_outbox` with a pointer: the relay builds it again."""
    env = json.loads(doc["body"])
    db = c.county(doc.get("county") or c.county_code).db
    insert_once(db[OUTBOX], {"_id": env["id"], "coll": doc["coll"], "agg": doc["agg"], "seq": env.get("seq", ""),
                             "snapshots": bool(env.get("snapshot")), "created_at": datetime.now(timezone.utc)})
    found = db[doc["coll"]].update_one({"_id": doc["agg"]}, {"$set": {f"_outbox.{env['id']}": env}})
    if not found.matched_count:  # the pointer first, as every outbox write (shared/store.py)
        db[OUTBOX].delete_one({"_id": env["id"]})
        raise Conflict("DEAD_LETTER_AGGREGATE_GONE", "该事件所属的记录已不存在，不能重新投递", {"id": doc["_id"]})
    coll.update_one({"_id": doc["_id"]}, {"$set": {"replayed_at": datetime.now(timezone.utc),
                                                   "replayed_by": principal.subject}, "$inc": {"replays": 1}})
    return {"id": doc["_id"], "queue": "outbox", "replays": doc.get("replays", 0) + 1}

"""The outbox relay: publishes written events in order with confirms, then marks them sent.

Sent = removed from the aggregate's `_outbox` and its pointer deleted. A broker outage leaves
both in place, so the next round publishes them; a crash after publishing and before marking
publishes them again (at-least-once; consumers drop the duplicate by event id).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Iterable

from pymongo.errors import DuplicateKeyError

from . import metrics
from .bus import Publisher
from .clock import Clock
from .events import validate_payload
from .store import OUTBOX

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, db, publisher: Publisher, service: str, clock: Clock, collections: Iterable[str],
                 batch: int = 200, sweep_every_s: float = 300.0, snapshots: dict | None = None):
        self.db = db
        self.publisher = publisher
        self.service = service
        self.clock = clock
        self.collections = tuple(collections)
        self.batch = batch
        self.sweep_every_s = sweep_every_s
        self.snapshots = snapshots or {}
        self.stopping = threading.Event()

    def run_once(self) -> int:
        """Publish up to one batch; returns how many events went out.

        A pointer names one aggregate (`agg`) or, for bulk writes such as a roster import, many
        (`aggs`, in write order), and says `snapshots: true` when their events carry no payload of
        their own. It is deleted once every aggregate it names has been published.
        """
        pointers = list(self.db[OUTBOX].find({}).sort("seq", 1).limit(self.batch))
        done: set = set()
        sent = 0
        for p in pointers:
            coll = p["coll"]
            for agg in p.get("aggs") or [p["agg"]]:
                if (coll, agg) in done:
                    continue
                done.add((coll, agg))
                # the whole document only where a pointer says snapshot events wait in it
                doc = self.db[coll].find_one({"_id": agg}, None if p.get("snapshots") else {"_outbox": 1})
                pending = sorted((doc or {}).get("_outbox", {}).values(), key=lambda e: e.get("seq", ""))
                for env in pending:
                    if env.get("snapshot"):
                        env = self._materialise(env, doc)
                    self.publisher.publish(env)  # raises on broker trouble: nothing is marked
                if pending:
                    self.db[coll].update_one({"_id": agg}, {"$unset": {f"_outbox.{e['id']}": "" for e in pending}})
                sent += len(pending)
        if pointers:  # the pointer collection holds only what is pending: a small delete
            self.db[OUTBOX].delete_many({"_id": {"$in": [p["_id"] for p in pointers]}})
        return sent

    def _materialise(self, env: dict, doc: dict) -> dict:
        """A snapshot event's payload is the document as written (the same write that recorded the
        event), built at publish time instead of being stored twice: bulk imports write half as much."""
        payload = self.snapshots[env["type"]](doc)
        validate_payload(env["type"], payload)
        return {**{k: v for k, v in env.items() if k != "snapshot"}, "payload": payload}

    def sweep(self) -> int:
        """Re-point events whose pointer was lost (crash between the aggregate write and the pointer)."""
        found = 0
        for coll in self.collections:
            for doc in self.db[coll].find({"_outbox": {"$exists": True}}, {"_outbox": 1}):
                for env in (doc.get("_outbox") or {}).values():
                    try:
                        self.db[OUTBOX].insert_one({"_id": env["id"], "coll": coll, "agg": doc["_id"],
                                                    "snapshots": bool(env.get("snapshot")),
                                                    "seq": env.get("seq", ""), "created_at": datetime.now(timezone.utc)})
                        found += 1
                    except DuplicateKeyError:
                        pass
        if found:
            log.warning("outbox sweep re-pointed %d events", found)
        return found

    def observe(self) -> None:
        """Backlog and oldest age for the gauges (the pointer collection is small by design)."""
        oldest = self.db[OUTBOX].find_one({}, {"created_at": 1}, sort=[("seq", 1)])
        metrics.OUTBOX_BACKLOG.labels(self.service).set(self.db[OUTBOX].count_documents({}))
        age = (datetime.now(timezone.utc) - oldest["created_at"]).total_seconds() if oldest else 0
        metrics.OUTBOX_AGE.labels(self.service).set(max(age, 0))

    def run(self, idle_s: float = 0.05, idle_max_s: float = 0.4, observe_every_s: float = 2.0) -> None:
        """Poll the pointers; when idle, back off from `idle_s` to `idle_max_s` (each poll is a
        query on the store every service shares, and five idle relays polling at 20 Hz cost the
        store more than a busy one). The gauges are refreshed every `observe_every_s`."""
        import time
        last_sweep = last_observe = 0.0
        delay = 0.5
        idle = idle_s
        while not self.stopping.is_set():
            try:
                if time.monotonic() - last_sweep > self.sweep_every_s:
                    self.sweep()
                    last_sweep = time.monotonic()
                n = self.run_once()
                if time.monotonic() - last_observe > observe_every_s:
                    self.observe()
                    last_observe = time.monotonic()
                delay = 0.5
                if n == 0:
                    self.publisher.pump()
                    self.stopping.wait(idle)
                    idle = min(idle * 2, idle_max_s)
                else:
                    idle = idle_s
            except Exception as e:  # noqa: BLE001 — broker or store down: keep everything, retry later
                log.warning("outbox relay paused (%s: %s); retrying in %.1fs", type(e).__name__, e, delay)
                self.publisher.close()
                self.stopping.wait(delay)
                delay = min(delay * 2, 10)
        self.publisher.close()

    def stop(self) -> None:
        self.stopping.set()

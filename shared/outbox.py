"""The outbox relay: publishes written events in order with confirms, then marks them sent.

Sent = removed from the aggregate's `_outbox` and its pointer deleted. A broker outage leaves
both in place, so the next round publishes them; a crash after publishing and before marking
publishes them again (at-least-once; consumers drop the duplicate by event id).

An event whose snapshot payload cannot be built from its document (a bug or a document no
builder foresaw) would fail the same way on every round and hold back every later event: it is
moved to the service's dead letters with the reason instead (`source: "outbox"`, listed by
`GET /v1/dead-letters`, counted by `outbox_dead_events`), and the rest flow. A replay puts it back
into its aggregate's outbox once the cause is fixed.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Iterable

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from . import metrics
from .bus import PublishFailed, Publisher
from .clock import Clock
from .events import validate_payload
from .store import DEAD_LETTERS, OUTBOX, OUTBOX_CARRIED, find_by_ids

log = logging.getLogger(__name__)

MAX_AGGREGATES = 2_000
"""Aggregates one relay round reads and publishes at most (a roster import's pointers name up to 500
each: 200 of them made rounds of minutes that starved the worker's consumer and the broker heartbeat)."""

ORPHAN_GRACE_S = 90.0
"""How long a pointer may wait for its events to appear in their documents (the write that follows
the pointer is in flight). A store command that takes longer has failed (the local store gives up
on a lock after 10 s); under the backlog-age alert's 120 s so that a dropped one never pages."""


def _age_s(pointer: dict, now: datetime) -> float:
    at = pointer.get("created_at")
    if at is None:
        return float("inf")
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return (now - at).total_seconds()


class OutboxRelay:
    def __init__(self, db, publisher: Publisher, service: str, clock: Clock, collections: Iterable[str],
                 batch: int = 200, snapshots: dict | None = None,
                 dead_db=None, county: str | None = None):
        """`db`: the county's database whose outbox this relays; `dead_db`: where set-aside events go
        (the service's dead letters, beside the consumer's; default `db`)."""
        self.db = db
        self.dead_db = dead_db if dead_db is not None else db
        self.county = county or ""

        self.publisher = publisher
        self.service = service
        self.clock = clock
        self.collections = tuple(collections)
        self.batch = batch
        self.snapshots = snapshots or {}
        self.stopping = threading.Event()

    def run_once(self) -> int:
        """Publish up to one batch; returns how many events went out.

        A pointer names one aggregate (`agg`) and is `_id`-ed by its event, or, for bulk writes such
        as a roster import, many (`aggs`, in write order) with their events (`events`); it says
        `snapshots: true` when their events carry no payload of their own, and `carried: true` when
        the events are kept beside it (`outbox_carried`) instead of in their documents. Pointers are written
        *before* their documents (shared/store.py), so a pointer whose events are not (yet) in its
        documents is normal for a moment: it is kept while younger than `ORPHAN_GRACE_S` and
        dropped after (its write failed or never happened). A pointer is deleted once its events
        went out, in this round or, for one left behind by a failed delete, after the grace period.

        A batch costs the store a handful of commands whatever its size: the pointers, the
        aggregates they name (one `_id $in` read per collection, which the local store's launcher
        answers from its index), one bulk write per collection marking them sent, and one delete of
        the pointers. It costs the broker one wait for confirms (Publisher.publish_many). Each
        aggregate's events go out in `seq` order, the aggregates in the order of their first pointer.
        """
        found = list(self.db[OUTBOX].find({}).sort("seq", 1).limit(self.batch).batch_size(self.batch))
        whole: dict[tuple[str, Any], bool] = {}  # (collection, aggregate) in first-pointer order → read it whole
        pointers = []
        for p in found:  # a round names at most MAX_AGGREGATES (bulk pointers name hundreds each)
            if pointers and len(whole) + len(p.get("aggs") or ()) > MAX_AGGREGATES:
                break
            pointers.append(p)
            for agg in p.get("aggs") or [p["agg"]]:
                key = (p["coll"], agg)
                whole[key] = whole.get(key, False) or bool(p.get("snapshots"))
        carried = self._carried(pointers)
        docs = self._read(whole)
        # what each aggregate holds unpublished, as read: an aggregate the round does not reach (the
        # broker failed first) keeps its events pending, so its pointers are kept. Events a pointer
        # carries count once their document exists (before, the write may still be on the way).
        waiting: dict[tuple[str, Any], dict[str, dict]] = {}
        for key in whole:
            doc = docs.get(key)
            if doc is not None:
                waiting[key] = {**(doc.get("_outbox") or {}), **{e["id"]: e for e in carried.get(key, ())}}
        pending_left = {key: set(waiting.get(key, ())) for key in whole}
        out: list[dict] = []  # the round's envelopes in publishing order
        owner: list[tuple[str, Any, str]] = []  # (collection, aggregate, event id) of each
        set_aside: list[tuple[str, Any, str]] = []
        for key, events in waiting.items():
            coll, agg = key
            for env in sorted(events.values(), key=lambda e: e.get("seq", "")):
                if env.get("snapshot"):
                    try:
                        env = self._materialise(env, docs[key])
                    except Exception as e:  # noqa: BLE001 — it would fail every round: set it aside
                        self._bury(coll, agg, env, e)
                        set_aside.append((coll, agg, env["id"]))
                        continue
                out.append(env)
                owner.append((coll, agg, env["id"]))
        confirmed = len(out)
        try:
            self.publisher.publish_many(out)
        except PublishFailed as e:  # what went out is marked sent all the same (less to send again)
            confirmed = e.confirmed
            raise
        finally:
            done = owner[:confirmed] + set_aside
            published = {i for _c, _a, i in done}
            unset: dict[str, dict[Any, list[str]]] = {}
            for coll, agg, i in done:
                if i in ((docs.get((coll, agg)) or {}).get("_outbox") or {}):  # carried ones are not there
                    unset.setdefault(coll, {}).setdefault(agg, []).append(i)
            for coll, by_agg in unset.items():
                self.db[coll].bulk_write([UpdateOne({"_id": agg}, {"$unset": {f"_outbox.{i}": "" for i in ids}})
                                          for agg, ids in by_agg.items()], ordered=False)
            self._settle(pointers, published, {k: v - published for k, v in pending_left.items()})
        return confirmed

    def _carried(self, pointers: list[dict]) -> dict[tuple[str, Any], list[dict]]:
        """Events bulk pointers carry (a roster import's registrations), by aggregate: kept beside the
        pointer (`outbox_carried`, same `_id`, one `_id $in` read) and never written into their
        documents, so publishing them rewrites no document (a rewrite per household cost the relay
        more than publishing did). Only those the pointer still lists count."""
        bulk = {p["_id"]: p for p in pointers if p.get("carried")}
        out: dict[tuple[str, Any], list[dict]] = {}
        if not bulk:
            return out
        for c in find_by_ids(self.db[OUTBOX_CARRIED], list(bulk)):
            p = bulk[c["_id"]]
            expected = set(p.get("events") or ())
            for env in c.get("events") or ():
                if env["id"] in expected:
                    out.setdefault((p["coll"], env["agg"]), []).append({k: v for k, v in env.items() if k != "agg"})
        return out

    def _settle(self, pointers: list[dict], published: set[str], pending: dict[tuple[str, Any], set[str]]) -> None:
        """Delete the pointers whose events all went out (and the single pointers, `_id`-ed by their
        event, of events published through another pointer of the same aggregate); trim a bulk
        pointer (`_id`-ed otherwise) to what it still waits for; drop one whose events are nowhere
        after the grace period."""
        now = datetime.now(timezone.utc)
        done, trim = set(published), []
        for p in pointers:
            aggs = p.get("aggs") or [p["agg"]]
            waiting = set().union(*(pending.get((p["coll"], a), set()) for a in aggs))
            if "events" not in p and "aggs" in p:  # written after its documents (before pointers came first)
                if not waiting:
                    done.add(p["_id"])
                continue
            expected = p.get("events") or [p["_id"]]
            left = [i for i in expected if i not in published]
            if not left:
                done.add(p["_id"])
            elif waiting.intersection(left):
                continue  # the broker failed: next round
            elif _age_s(p, now) > ORPHAN_GRACE_S:
                log.warning("outbox pointer %s dropped: its events were never written", p["_id"])
                done.add(p["_id"])
            elif len(left) < len(expected):
                trim.append(UpdateOne({"_id": p["_id"]}, {"$set": {"events": left}}))
        if trim:
            self.db[OUTBOX].bulk_write(trim, ordered=False)
        if done:  # the pointer collection holds only what is pending: a small delete
            self.db[OUTBOX].delete_many({"_id": {"$in": sorted(done)}})
            carried = sorted(p["_id"] for p in pointers if p.get("carried") and p["_id"] in done)
            if carried:  # after its pointer: a crash in between leaves a document no pointer names
                self.db[OUTBOX_CARRIED].delete_many({"_id": {"$in": carried}})

    def _read(self, whole: dict[tuple[str, Any], bool]) -> dict[tuple[str, Any], dict]:
        """The aggregates of a batch by (collection, `_id`): their whole documents where snapshot
        events wait in them, else only their `_outbox`; string `_id`s in one `$in` read per
        collection and projection, any other kind one by one (none of ours is)."""
        groups: dict[tuple[str, bool], list] = {}
        for (coll, agg), w in whole.items():
            groups.setdefault((coll, w), []).append(agg)
        docs: dict[tuple[str, Any], dict] = {}
        for (coll, w), aggs in groups.items():
            projection = None if w else {"_outbox": 1}
            for d in find_by_ids(self.db[coll], [a for a in aggs if isinstance(a, str)], projection):
                docs[(coll, d["_id"])] = d
            for a in aggs:
                if not isinstance(a, str) and (d := self.db[coll].find_one({"_id": a}, projection)) is not None:
                    docs[(coll, a)] = d
        return docs

    def _materialise(self, env: dict, doc: dict) -> dict:
        """A snapshot event's payload is the document as written (the same write that recorded the
        event), built at publish time instead of being stored twice: bulk imports write half as much."""
        payload = self.snapshots[env["type"]](doc)
        validate_payload(env["type"], payload)
        return {**{k: v for k, v in env.items() if k != "snapshot"}, "payload": payload}

    def _bury(self, coll: str, agg, env: dict, error: Exception) -> None:
        """Keep an event that cannot be built as a dead letter with its reason (before it leaves the
        outbox: a crash in between only buries it again)."""
        reason = f"outbox: payload cannot be built: {type(error).__name__}: {error}"[:500]
        record = {"_id": env["id"], "type": env.get("type"), "reason": reason, "attempts": 1, "queue": None,
                  "source": "outbox", "coll": coll, "agg": agg, "county": self.county,
                  "body": json.dumps(env, ensure_ascii=False, default=str)[:100_000], "at": self.clock.now()}
        try:
            self.dead_db[DEAD_LETTERS].insert_one(record)
        except DuplicateKeyError:  # dead again after a replay
            self.dead_db[DEAD_LETTERS].update_one({"_id": env["id"]}, {"$set": {"reason": reason, "at": record["at"]},
                                                                  "$unset": {"replayed_at": ""}})
        metrics.EVENTS_DEAD.labels(self.service, env.get("type") or "unknown").inc()
        log.error("outbox event %s %s set aside: %s", env.get("type"), env["id"], reason,
                  extra={"event_id": env["id"], "event_type": env.get("type")})

    def sweep(self) -> int:
        """Re-point every event waiting in an aggregate without a pointer: a scan of every collection,
        for ops only (e.g. after a restore that brought documents back without their
        pointers). Writes never need it: their pointer is written first."""
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
        """Backlog, oldest age and set-aside events for the gauges (the pointer and dead-letter
        collections are small by design). Read from the store alone, so they tell the truth while
        the broker is down, which is when the backlog alert is needed."""
        oldest = self.db[OUTBOX].find_one({}, {"created_at": 1}, sort=[("seq", 1)])
        metrics.OUTBOX_BACKLOG.labels(self.service, self.county).set(self.db[OUTBOX].count_documents({}))
        age = (datetime.now(timezone.utc) - oldest["created_at"]).total_seconds() if oldest else 0
        metrics.OUTBOX_AGE.labels(self.service, self.county).set(max(age, 0))
        metrics.OUTBOX_DEAD.labels(self.service, self.county).set(self.dead_db[DEAD_LETTERS].count_documents(
            {"source": "outbox", "county": self.county, "replayed_at": {"$exists": False}}))

    def run(self, idle_s: float = 0.05, idle_max_s: float = 0.4, observe_every_s: float = 2.0) -> None:
        """Poll the pointers; when idle, back off from `idle_s` to `idle_max_s` (each poll is a
        query on the store every service shares, and five idle relays polling at 20 Hz cost the
        store more than a busy one). The gauges are refreshed every `observe_every_s`."""
        import time
        last_observe = 0.0
        delay = 0.5
        idle = idle_s
        while not self.stopping.is_set():
            paused = False
            n = 0
            try:
                n = self.run_once()
            except Exception as e:  # noqa: BLE001 — broker or store down: keep everything, retry later
                log.warning("outbox relay paused (%s: %s); retrying in %.1fs", type(e).__name__, e, delay)
                self.publisher.close()
                paused = True
            retry_at = time.monotonic() + delay
            while True:  # the gauges keep reading the store, above all while the relay is paused
                if time.monotonic() - last_observe > observe_every_s:
                    try:
                        self.observe()
                    except PyMongoError as e:
                        log.warning("outbox gauges not refreshed (%s)", type(e).__name__)
                    last_observe = time.monotonic()
                left = retry_at - time.monotonic()
                if not paused or left <= 0 or self.stopping.wait(min(left, observe_every_s)):
                    break
            if paused:
                delay = min(delay * 2, 10)
                continue
            delay = 0.5
            if n == 0:
                self.publisher.pump()
                self.stopping.wait(idle)
                idle = min(idle * 2, idle_max_s)
            else:
                idle = idle_s
        self.publisher.close()

    def stop(self) -> None:
        self.stopping.set()

"""MongoDB access shared by every service: client, indexes, and the two write patterns that stay
correct without multi-document transactions.

1. Outbox writes: the events of a state change travel *inside the same document write* (field
   `_outbox`, keyed by event id). A pointer row in the small `outbox` collection, written *before*
   the document, tells the relay where to look: a crash between the two leaves a pointer to an
   event never written (the relay drops it after a grace period), never an event nobody points
   at, so no scan of the aggregates is ever needed. See shared/outbox.py for the relay.
2. Exactly-once effects: an insert of a unique natural `_id` (a payment per household-year, a
   processed event id, a fact a counter has counted).

FerretDB v1 on SQLite pushes down only `{_id: <string>}` filters, so hot paths use string `_id`s.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from pymongo import ASCENDING, MongoClient, ReplaceOne, UpdateOne, monitoring
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, WriteError

from .aggregate import StaleVersion
from .clock import Clock
from .events import Envelope, Event, validate_payload

OUTBOX = "outbox"          # pointers: {_id: event id, coll, agg, seq, created_at}
OUTBOX_CARRIED = "outbox_carried"  # events a bulk pointer carries: {_id: its pointer's _id, events: [...]}
PROCESSED = "processed_events"  # consumer idempotency: {_id: event id, type, at}
DEAD_LETTERS = "dead_letters"   # inspectable copies of dead-lettered messages


def connect(url: str, app_name: str) -> MongoClient:
    """Nothing connects at import time; callers build the client in their composition root.
    STORE_TRACE=<file> appends one line per store command (service, command, collection, filter
    keys): how the benchmarks count the store operations a request causes across the suite."""
    listeners = [_Tracer(os.environ["STORE_TRACE"], app_name)] if os.environ.get("STORE_TRACE") else []
    return MongoClient(url, appname=app_name, tz_aware=True, retryWrites=True, serverSelectionTimeoutMS=5000,
                       connectTimeoutMS=5000, event_listeners=listeners)


class _Tracer(monitoring.CommandListener):
    """Command shapes only (no values: ID numbers must not reach a trace file)."""

    def __init__(self, path: str, app: str):
        self._f = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 — lives with the client
        self._app = app + ("-web" if "gunicorn" in (sys.argv[0] if sys.argv else "") else "")
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        cmd = event.command
        name = event.command_name
        coll = cmd.get(name) if isinstance(cmd.get(name), str) else ""
        shape = ""
        if name in ("find", "delete", "update", "findAndModify", "count", "aggregate"):
            f = cmd.get("filter") or cmd.get("query")
            if f is None and name in ("update", "delete"):
                stmts = cmd.get("updates") or cmd.get("deletes") or []
                f = stmts[0].get("q") if stmts else None
                shape = f"n={len(stmts)} "
            shape += ",".join(sorted(f)) if isinstance(f, dict) else ""
        elif name == "insert":
            shape = f"n={len(cmd.get('documents', []))}"
        with self._lock:
            self._f.write(f"{self._app}\t{name}\t{coll}\t{shape}\n")

    def succeeded(self, event) -> None:  # noqa: ANN001
        pass

    def failed(self, event) -> None:  # noqa: ANN001
        pass


@dataclass(frozen=True)
class IndexSpec:
    collection: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    name: str | None = None
    expire_after_seconds: int | None = None  # a TTL index (MongoDB removes documents that old)


def ensure_indexes(db: Database, specs: Iterable[IndexSpec]) -> None:
    """Secondary indexes real MongoDB needs (FerretDB enforces unique ones, scans for the rest).

    A TTL index: FerretDB v1 answers NotImplemented (238) to expireAfterSeconds (and to collMod),
    so there it becomes a plain index and the owner's periodic cleanup does the expiring; on MongoDB
    an existing plain index of the same keys is turned into the TTL one with collMod."""
    for spec in (*specs, IndexSpec(OUTBOX, (("seq", ASCENDING),))):
        name = spec.name or "_".join(k for k, _ in spec.keys)
        ttl = {"expireAfterSeconds": spec.expire_after_seconds} if spec.expire_after_seconds is not None else {}
        try:
            db[spec.collection].create_index(list(spec.keys), unique=spec.unique, name=name, **ttl)
        except OperationFailure as e:
            if not ttl or e.code not in (85, 86, 238):
                raise
            if e.code == 238:  # FerretDB: no TTL indexes
                db[spec.collection].create_index(list(spec.keys), unique=spec.unique, name=name)
            else:  # MongoDB: the index exists without the TTL
                db.command("collMod", spec.collection, index={"name": name, **ttl})


class _SeqSource:
    """Sort keys that grow within a process and follow wall time across processes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last = 0
        self._pid = os.getpid()
        self._n = itertools.count()

    def next(self) -> str:
        with self._lock:
            if os.getpid() != self._pid:  # forked (gunicorn): keep keys distinct per process
                self._pid = os.getpid()
            now = max(time.time_ns(), self._last + 1)
            self._last = now
            return f"{now:020d}.{self._pid:08d}.{next(self._n) % 1_000_000:06d}"


_seq = _SeqSource()


class _Slot:
    __slots__ = ("doc", "event", "lead", "done", "result", "error")

    def __init__(self, doc: dict[str, Any]):
        self.doc, self.event, self.lead, self.done = doc, threading.Event(), False, False
        self.result: bool = False
        self.error: BaseException | None = None


class GroupInsert:
    """insert_once for the request threads of one process, written together (group commit).

    A thread that finds no write in progress writes its document at once, together with whatever
    other threads queued meanwhile; threads that arrive during a write wait, and the first of them
    writes the next group. No timer, so a lone request is not delayed; under load many single
    inserts become one `insert_many(ordered=False)`, which costs the store (FerretDB on SQLite
    above all) a fraction of separate commands. Each caller still learns its own outcome: True if
    its document was inserted, False if the `_id` existed, or the error of its write.
    """

    def __init__(self, coll: Collection):
        self.coll = coll
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._busy = False

    def insert_once(self, doc: dict[str, Any]) -> bool:
        slot = _Slot(doc)
        with self._lock:
            self._pending.append(slot)
            if not self._busy:
                self._busy = slot.lead = True
        if not slot.lead:
            slot.event.wait()
        if not slot.done:  # this thread writes the group
            with self._lock:
                group, self._pending = self._pending, []
            self._write(group)
            with self._lock:
                if self._pending:
                    nxt = self._pending[0]
                    nxt.lead = True
                    nxt.event.set()
                else:
                    self._busy = False
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _write(self, group: list[_Slot]) -> None:
        try:
            if len(group) == 1:
                group[0].result = insert_once(self.coll, group[0].doc)
            else:
                failed = insert_unordered(self.coll, [g.doc for g in group])
                for i, g in enumerate(group):
                    err = failed.get(i)
                    g.result = err is None
                    if err is not None and err.get("code") != 11000:
                        g.error = WriteError(err.get("errmsg", "write error"), err.get("code"), err)
        except BaseException as e:  # noqa: BLE001 — every caller of the group gets the store's error
            for g in group:
                g.error = e
        finally:
            for g in group:
                g.done = True
                g.event.set()


class OutboxWriter:
    """Writes a state change and its events in one document write, then points the relay at it."""

    def __init__(self, db: Database, producer: str, clock: Clock, snapshots: Iterable[str] = (),
                 county: str | None = None):
        """`snapshots`: event types whose payload the relay builds from the document when it
        publishes (see OutboxRelay): they are stored without payload, so the write is smaller.
        `county`: the county whose database this is; every event written here names it."""
        self.db = db
        self.county = county
        self.producer = producer
        self.clock = clock
        self.snapshots = frozenset(snapshots)
        self._pointers = GroupInsert(db[OUTBOX])  # request threads' pointers go out together
        self._inserts: dict[str, GroupInsert] = {}
        self._inserts_lock = threading.Lock()

    def envelopes(self, events: Iterable[Event], correlation_id: str | None, causation_id: str | None,
                  validate: bool = True) -> list[Envelope]:
        """`validate=False` is for events built by a domain factory whose unit test checks them."""
        out = []
        for ev in events:
            if validate and ev.type not in self.snapshots:  # (a snapshot's builder is checked by its test)
                validate_payload(ev.type, ev.payload)  # a bad payload is refused where it is made
            env = Envelope.new(ev, self.producer, self.clock.now(), correlation_id, causation_id, self.county)
            env.seq = _seq.next()
            out.append(env)
        return out

    def insert(self, coll: str, doc: dict[str, Any], events: Iterable[Event] = (), *,
               correlation_id: str | None = None, causation_id: str | None = None) -> list[Envelope]:
        """Insert a new aggregate with its events; DuplicateKeyError means it already exists."""
        envs = self.envelopes(events, correlation_id, causation_id)
        doc = dict(doc)
        doc["_outbox"] = {e.id: self.stored(e) for e in envs}
        with self._inserts_lock:
            group = self._inserts.get(coll) or self._inserts.setdefault(coll, GroupInsert(self.db[coll]))
        self._point(coll, doc["_id"], envs)
        try:
            inserted = group.insert_once(doc)
        except BaseException:
            self._unpoint(envs)
            raise
        if not inserted:
            self._unpoint(envs)
            raise DuplicateKeyError(f"{coll} {doc['_id']} exists", 11000)
        return envs

    def update(self, coll: str, _id: str, update: dict[str, Any], events: Iterable[Event] = (), *,
               upsert: bool = False, correlation_id: str | None = None,
               causation_id: str | None = None, where: dict[str, Any] | None = None) -> tuple[bool, list[Envelope]]:
        """Apply an update by `_id` and add its events to the same document, atomically.

        `where` adds conditions (a compare-and-set on a version or status): when they do not hold,
        nothing is written, no event included. As cheap as the `_id` update on any collection for a
        string `_id`: our local store's launcher narrows such a filter to its `_id` (README, "The
        local store and real MongoDB"), as MongoDB does."""
        envs = self.envelopes(events, correlation_id, causation_id)
        update = {k: dict(v) for k, v in update.items()}
        if envs:
            update.setdefault("$set", {}).update({f"_outbox.{e.id}": self.stored(e) for e in envs})
        self._point(coll, _id, envs)
        try:
            res = self.db[coll].update_one({"_id": _id, **(where or {})}, update, upsert=upsert)
        except BaseException:
            self._unpoint(envs)
            raise
        matched = bool(res.matched_count or res.upserted_id is not None)
        if not matched:
            self._unpoint(envs)
        return matched, envs

    def save_versioned(self, coll: str, _id: str, version: int, update: dict[str, Any],
                       events: Iterable[Event] = (), *, correlation_id: str | None = None,
                       causation_id: str | None = None) -> list[Envelope]:
        """Compare-and-set: apply `update` and its events only if the document still has `version`
        (what the caller read; 0 = a document written before versions, which has none), and bump it.
        Raises StaleVersion when another write came first: nothing of this one is written."""
        update, where = _versioned(update, version)
        matched, envs = self.update(coll, _id, update, events, correlation_id=correlation_id,
                                    causation_id=causation_id, where=where)
        if not matched:
            raise StaleVersion(f"{coll} {_id} is no longer at version {version}")
        return envs

    def save_versioned_many(self, coll: str, items: list[tuple[str, int, dict[str, Any], list[Envelope]]]) -> None:
        """save_versioned for a batch of aggregates in two store commands: one bulk write of the
        compare-and-set updates (each with its envelopes, already built by `envelopes` so that each
        event names the message that caused it), then one insert of their pointers. `items`:
        (`_id`, version read, update, envelopes). Raises StaleVersion when any aggregate was written
        by someone else since it was read: the others are written (with their pointers), and the
        caller applies the batch again one event at a time (its changes are idempotent)."""
        if not items:
            return
        ops = []
        for _id, version, update, envs in items:
            update, where = _versioned(update, version)
            update["$set"].update({f"_outbox.{e.id}": self.stored(e) for e in envs})
            ops.append(UpdateOne({"_id": _id, **where}, update))
        now = datetime.now(timezone.utc)
        # the pointers of a write that loses its race point at events never written: the relay drops them
        insert_many_once(self.db[OUTBOX], [self._pointer(coll, _id, e, now) for _id, _v, _u, envs in items for e in envs])
        res = self.db[coll].bulk_write(ops, ordered=False)
        if res.matched_count != len(items):
            raise StaleVersion(f"{len(items) - res.matched_count} of {len(items)} {coll} written by someone else")

    def stored(self, env: Envelope) -> dict[str, Any]:
        """An envelope as kept in `_outbox` (a snapshot type without its payload)."""
        d = env.to_dict()
        if env.type in self.snapshots:
            d["payload"], d["snapshot"] = None, True
        return d

    def _point(self, coll: str, agg_id: Any, envs: list[Envelope]) -> None:
        """Before the write: an event is never in a document without its pointer."""
        now = datetime.now(timezone.utc)  # real time: the backlog-age alert measures real delay
        for e in envs:
            self._pointers.insert_once(self._pointer(coll, agg_id, e, now))

    def _unpoint(self, envs: list[Envelope]) -> None:
        """The write was refused or failed: its pointers point at nothing (best effort; the relay
        drops any that stay after its grace period)."""
        if envs:
            try:
                self.db[OUTBOX].delete_many({"_id": {"$in": [e.id for e in envs]}})
            except Exception:  # noqa: BLE001 — the store is failing; the relay's grace period cleans up
                pass

    def _pointer(self, coll: str, agg_id: Any, e: Envelope, now: datetime) -> dict[str, Any]:
        pointer = {"_id": e.id, "coll": coll, "agg": agg_id, "seq": e.seq, "created_at": now}
        if e.type in self.snapshots:
            pointer["snapshots"] = True
        return pointer


def _versioned(update: dict[str, Any], version: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A compare-and-set of `update` on the version read: the update (a copy) bumping the version,
    and the condition (0 = a document written before versions, which has none)."""
    update = {k: dict(v) for k, v in update.items()}
    update.setdefault("$set", {})["version"] = version + 1
    return update, ({"version": version} if version else {"version": {"$exists": False}})


def find_by_ids(coll: Collection, ids: Iterable[Any], projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The documents of `ids` that exist, by `_id $in` (one query per 1,000, which the local store's
    launcher answers from its index: deploy/ferretdb/patches/0001), in no particular order. Batch
    handlers and the relay read a batch's aggregates with it."""
    ids = list(dict.fromkeys(ids))
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        out.extend(coll.find({"_id": {"$in": chunk}}, projection, limit=len(chunk), batch_size=len(chunk)))
    return out


def insert_once(coll: Collection, doc: dict[str, Any]) -> bool:
    """The exactly-once primitive: True if this call created the document, False if it existed."""
    try:
        coll.insert_one(doc)
        return True
    except DuplicateKeyError:
        return False


def insert_unordered(coll: Collection, docs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """One `insert_many(ordered=False)`: the write errors by document index (none when all went in;
    code 11000 = that `_id` existed)."""
    try:
        coll.insert_many(docs, ordered=False)
        return {}
    except BulkWriteError as e:
        return {err["index"]: err for err in e.details.get("writeErrors", [])}


def insert_many_once(coll: Collection, docs: list[dict[str, Any]]) -> set[Any]:
    """insert_once for several documents in one write; returns the `_id`s that already existed."""
    if not docs:
        return set()
    errors = insert_unordered(coll, docs)
    if any(err.get("code") != 11000 for err in errors.values()):
        raise BulkWriteError({"writeErrors": list(errors.values())})
    return {docs[i]["_id"] for i in errors}


def keep_newest(coll: Collection, _id: str, doc: dict[str, Any], order: Any) -> bool:
    """Replace a read-model document only by a newer one (docs/guarantees.md C), in one atomic write:
    `order` is the copied aggregate's version (or an event seq); the stored document keeps it in
    `_order`. True if `doc` was stored (again, for the same event twice); False if the stored one is
    newer (an older event delivered late). The filter's `_id` part is what the store looks up."""
    try:  # `$not $gt` also matches a document stored before `_order` existed; an equal order is the same event
        coll.replace_one({"_id": _id, "_order": {"$not": {"$gt": order}}}, {**doc, "_id": _id, "_order": order},
                         upsert=True)
        return True
    except DuplicateKeyError:  # the document exists with a newer order: the upsert's insert collided
        return False


def keep_newest_many(coll: Collection, items: list[tuple[str, dict[str, Any], Any]]) -> None:
    """keep_newest for a batch of (`_id`, document, order) in three store commands: the stored orders
    read in one `_id $in`; the new documents inserted in one; the older ones replaced in one bulk
    write, each on the condition that its stored order is still the one read. One that lost a race
    (written meanwhile) goes through keep_newest. Within the batch the newest of an `_id` wins."""
    newest: dict[str, tuple[dict[str, Any], Any]] = {}
    for _id, doc, order in items:
        if _id not in newest or order > newest[_id][1]:
            newest[_id] = (doc, order)
    if not newest:
        return
    stored = {d["_id"]: d.get("_order") for d in find_by_ids(coll, list(newest), {"_order": 1})}
    fresh = [{**doc, "_id": _id, "_order": order} for _id, (doc, order) in newest.items() if _id not in stored]
    retry = list(insert_many_once(coll, fresh)) if fresh else []
    older = [(_id, doc, order) for _id, (doc, order) in newest.items()
             if _id in stored and (stored[_id] is None or not stored[_id] > order)]
    if older:
        res = coll.bulk_write([ReplaceOne({"_id": _id, "_order": stored[_id]}, {**doc, "_id": _id, "_order": order})
                               for _id, doc, order in older], ordered=False)
        if res.matched_count != len(older):
            retry += [_id for _id, _d, _o in older]  # which ones lost is not said: keep_newest is idempotent
    for _id in retry:
        keep_newest(coll, _id, *newest[_id])


def count_once(db: Database, counters: str, counter_id: str, fact_key: str, inc: dict[str, int],
               fact: dict[str, Any], on_insert: dict[str, Any] | None = None) -> bool:
    """Add `inc` to a counter document once per fact, surviving a crash at any step.

    Step 1 adds the increment and marks the fact in flight on the counter document (one atomic
    write); step 2 records the fact; step 3 clears the in-flight mark. A redelivery after a crash
    sees either the fact (done) or the in-flight mark (counted, finish steps 2-3). The filter in
    step 1 names a field beside `_id`; counter collections are small (townships × years), so the
    scan FerretDB makes of them is cheap.
    """
    facts = db[f"{counters}_facts"]
    if facts.find_one({"_id": fact_key}, {"_id": 1}):
        db[counters].update_one({"_id": counter_id}, {"$pull": {"inflight": fact_key}})
        return False
    step1 = ({"_id": counter_id, "inflight": {"$ne": fact_key}}, {"$inc": inc, "$push": {"inflight": fact_key}})
    res = db[counters].update_one(*step1)
    if not res.matched_count:  # no counter yet (make it, then step 1), or this fact is in flight already
        db[counters].update_one({"_id": counter_id}, {"$setOnInsert": {"inflight": [], **(on_insert or {})}},
                                upsert=True)
        res = db[counters].update_one(*step1)
    insert_once(facts, {"_id": fact_key, "counter": counter_id, **fact})
    db[counters].update_one({"_id": counter_id}, {"$pull": {"inflight": fact_key}})
    return bool(res.modified_count)


@dataclass(frozen=True)
class Count:
    """One fact for count_many: what count_once takes."""
    counter_id: str
    fact_key: str
    inc: dict[str, int]
    fact: dict[str, Any]
    on_insert: dict[str, Any] | None = None


def count_many(db: Database, counters: str, items: list[Count]) -> set[str]:
    """count_once for a batch of facts in a few store commands whatever its size; returns the fact
    keys this call counted (the others were counted before, or are repeats of one in the batch).

    0. the facts already recorded: one `_id $in` read; they are left out;
    1. the counters made where missing (one bulk upsert), then each counter gets the sum of its
       new facts' increments with all their keys in flight, in one bulk write whose filters
       require none of those keys in flight already;
    2. the facts recorded (one insert); 3. their in-flight marks cleared (one bulk write).
    When a counter's step 1 did not apply (a fact of it in flight already: a crash between the
    steps of an earlier delivery), every fact of the batch is finished by count_once instead,
    which counts a fact in flight no second time, so nothing is counted twice or lost."""
    facts = db[f"{counters}_facts"]
    first: dict[str, Count] = {}
    for it in items:
        first.setdefault(it.fact_key, it)
    if not first:
        return set()
    keys = list(first)
    done = {d["_id"] for d in find_by_ids(facts, keys, {"_id": 1})}
    new = [it for k, it in first.items() if k not in done]
    by_counter: dict[str, list[Count]] = {}
    for it in new:
        by_counter.setdefault(it.counter_id, []).append(it)
    if by_counter:
        try:
            db[counters].bulk_write([UpdateOne({"_id": cid}, {"$setOnInsert": {**(its[0].on_insert or {}), "inflight": []}},
                                               upsert=True) for cid, its in by_counter.items()], ordered=False)
        except BulkWriteError as e:  # another worker made one at the same moment
            if any(err.get("code") != 11000 for err in e.details.get("writeErrors", [])):
                raise
        ops = []
        for cid, its in by_counter.items():
            inc: dict[str, int] = {}
            for it in its:
                for path, v in it.inc.items():
                    inc[path] = inc.get(path, 0) + v
            ks = [it.fact_key for it in its]
            ops.append(UpdateOne({"_id": cid, "inflight": {"$nin": ks}}, {"$inc": inc, "$push": {"inflight": {"$each": ks}}}))
        if db[counters].bulk_write(ops, ordered=False).matched_count != len(ops):
            return {it.fact_key for it in new if count_once(db, counters, it.counter_id, it.fact_key, it.inc, it.fact,
                                                              it.on_insert)}
        insert_many_once(facts, [{"_id": it.fact_key, "counter": it.counter_id, **it.fact} for it in new])
        db[counters].bulk_write([UpdateOne({"_id": cid}, {"$pullAll": {"inflight": [it.fact_key for it in its]}})
                                 for cid, its in by_counter.items()], ordered=False)
    return {it.fact_key for it in new}


def public(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored document without its outbox (never shown to callers)."""
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k != "_outbox"}


def shard_key(prefix: str, member: str, shards: int) -> str:
    """`<prefix>#<k>`: the one of `shards` lists (or counters) of `prefix` a member always goes to,
    so that no list grows with the county (a busy day, a large township)."""
    return f"{prefix}#{zlib.crc32(member.encode()) % shards}"


class KeyIndex:
    """Which aggregates share something (a village's households, one gateway's paid orders of a
    day), kept as one small document per key, read by `_id`: what a filter on that field would find,
    without the scan the local store makes of any filter but `_id` (MongoDB would use an index; the
    same code serves both).

    A superset, so that it needs no transaction: a writer `add`s members *before* the write that
    makes them belong (a crash in between leaves an extra member, never a missing one), and a reader
    fetches the members' documents, keeps those that belong and `drop`s the others. Keys are chosen
    so that a list stays small (a village, an hour); members are strings."""

    def __init__(self, coll: Collection):
        self.coll = coll

    def add(self, key: str, members: Iterable[str]) -> None:
        self.add_many({key: members})

    def add_many(self, by_key: dict[str, Iterable[str]]) -> None:
        """Members of several keys in one bulk write (idempotent)."""
        ops = [UpdateOne({"_id": key}, {"$addToSet": {"m": {"$each": sorted(set(members))}}}, upsert=True)
               for key, members in by_key.items() if members]
        if ops:
            self.coll.bulk_write(ops, ordered=False)

    def members(self, key: str) -> list[str]:
        doc = self.coll.find_one({"_id": key})
        return list(doc["m"]) if doc else []

    def members_of(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Several keys' members, one `_id $in` read; a key without any is absent."""
        return {d["_id"]: list(d.get("m") or []) for d in find_by_ids(self.coll, keys)}

    def documents(self, keys: Iterable[str], coll: Collection, belongs, *, to_id=None,
                  projection: dict[str, Any] | None = None, pending=None) -> list[dict[str, Any]]:
        """The documents listed under `keys` that still belong there: one `_id $in` read of the lists,
        one of the documents (`to_id` maps a member to its document's `_id`). `belongs(key, doc)`
        decides; a member whose document does not belong is dropped from its list, unless
        `pending(key, doc)` says its write may still be on the way. A member whose document is
        missing stays listed: it is added before the write that makes the document, which may not
        have landed yet (dropping it then would lose the document from the list for good)."""
        to_id = to_id or (lambda m: m)
        listed = self.members_of(keys)
        found = {d["_id"]: d for d in find_by_ids(coll, [to_id(m) for ms in listed.values() for m in ms], projection)}
        out = []
        for key, members in listed.items():
            gone = []
            for m in members:
                d = found.get(to_id(m))
                if d is None:
                    continue
                if belongs(key, d):
                    out.append(d)
                elif pending is None or not pending(key, d):
                    gone.append(m)
            self.drop(key, gone)
        return out

    def drop(self, key: str, members: Iterable[str]) -> None:
        """Members found not to belong any more (by a reader that checked their documents)."""
        gone = sorted(set(members))
        if gone:
            self.coll.update_one({"_id": key}, {"$pullAll": {"m": gone}})

"""The outbox and the consumer against the real broker and store.

docs/guarantees.md 4 and "Consumers": at-least-once delivery through an outbox, idempotent consumers, dead
letters you can inspect; a broker or store restart loses nothing.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pymongo import MongoClient, monitoring
from pymongo.errors import DuplicateKeyError
from marshmallow import ValidationError

from services.registry import bootstrap as registry_boot
from services.scoring import bootstrap as scoring_boot
from shared.bus import PublishFailed, Publisher, Topology
from shared.clock import FixedClock
from shared.events import Envelope, Event
from shared.aggregate import StaleVersion
from shared.outbox import ORPHAN_GRACE_S, OutboxRelay
from shared.store import OUTBOX, OutboxWriter, count_once
from tests.helpers import StoreCommands, Probe, declare, publish, queue_messages, running
from tools.clients import wait_for

NOW = datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc)


def enrolment_event(household_no: str, township: str = "花桥镇", n: int = 3) -> Event:
    return Event("registry.enrolment.changed", {
        "household_no": household_no, "year": 2020, "county": "431122", "township": township, "village": "花桥村",
        "status": "paid", "person_ids": [f"43112219800506{i:03d}X" for i in range(n)], "order_no": "P" + household_no})


class CommandShapes(monitoring.CommandListener):
    """(collection, filter) of every find, update and delete a client sends."""

    def __init__(self):
        self.filters: list[tuple[str, dict]] = []

    def started(self, event):
        cmd, name = event.command, event.command_name
        if name == "find":
            self.filters.append((cmd["find"], dict(cmd.get("filter") or {})))
        elif name in ("update", "delete"):
            for st in cmd.get("updates") or cmd.get("deletes") or []:
                self.filters.append((cmd[name], dict(st.get("q") or {})))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture()
def registry(namespace):
    c = registry_boot.bootstrap(FixedClock(NOW))
    yield c


def test_events_written_with_a_state_change_are_published_in_order_and_marked_sent(registry, infra, namespace):
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    w = registry.outbox
    w.insert("households", {"_id": "2020:A"}, [enrolment_event("A1")])
    w.update("households", "2020:A", {"$set": {"x": 1}}, [enrolment_event("A2"), enrolment_event("A3")])
    w.insert("households", {"_id": "2020:B"}, [enrolment_event("B1")])
    relay = registry.relay()
    assert relay.run_once() == 4
    got = [m["payload"]["household_no"] for m in probe.take(4)]
    assert got == ["A1", "A2", "A3", "B1"]
    assert registry.db[OUTBOX].count_documents({}) == 0
    assert registry.db.households.find_one({"_id": "2020:A"})["_outbox"] == {}
    assert relay.run_once() == 0  # nothing is published twice
    probe.close()


class FailingAfter(Publisher):
    """The broker goes away after `n` publishes."""

    def __init__(self, url, topology, n):
        super().__init__(url, topology)
        self.left = n

    def publish_many(self, envs):
        n = min(self.left, len(envs))
        super().publish_many(envs[:n])
        self.left -= n
        if n < len(envs):
            raise PublishFailed(n, OSError("broker gone"))


def test_a_relay_batch_costs_the_store_a_few_commands_whatever_its_size(registry, infra, namespace):
    """150 households with 2 events each: read in one query, marked sent in one write, each
    household's events in order (issue 13: store commands per confirmation across the suite)."""
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    w = registry.outbox
    for i in range(150):
        w.insert("households", {"_id": f"2020:R{i:03}"}, [enrolment_event(f"R{i:03}-1")])
        w.update("households", f"2020:R{i:03}", {"$set": {"x": 1}}, [enrolment_event(f"R{i:03}-2")])
    seen = StoreCommands()
    client = MongoClient(infra.mongo_url, event_listeners=[seen])
    relay = OutboxRelay(client[registry.db.name], Publisher(infra.amqp_url, registry.topology), "registry",
                        registry.clock, ["households"], batch=300)
    assert relay.run_once() == 300
    assert seen.names == ["find", "find", "update", "delete"], seen.names  # pointers, households, sent, pointers
    got = [m["payload"]["household_no"] for m in probe.take(300)]
    assert got == [f"R{i:03}-{k}" for i in range(150) for k in (1, 2)]
    assert registry.db[OUTBOX].count_documents({}) == 0 and relay.run_once() == 0
    assert registry.db.households.count_documents({"_outbox": {"$ne": {}}}) == 0
    client.close()
    probe.close()


def test_old_pointers_of_a_round_the_broker_cut_short_are_kept_for_the_next(registry, infra, namespace):
    """Pointers older than the grace period (a backlog: a county's roster import) whose aggregates a
    round did not reach before the broker failed are not taken for orphans: their events go out
    with the next round (a county-size import lost thousands of households' events this way)."""
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    for i in range(10):
        registry.outbox.insert("households", {"_id": f"2020:O{i}"}, [enrolment_event(f"O{i}")])
    for p in registry.db[OUTBOX].find({}):
        _age(registry.db, p["_id"], ORPHAN_GRACE_S + 60)
    flaky = OutboxRelay(registry.db, FailingAfter(infra.amqp_url, registry.topology, 3), "registry", registry.clock,
                        ["households"])
    with pytest.raises(PublishFailed):
        flaky.run_once()
    assert registry.db[OUTBOX].count_documents({}) == 7
    assert registry.relay().run_once() == 7
    assert sorted(m["payload"]["household_no"] for m in probe.take(10)) == [f"O{i}" for i in range(10)]
    probe.close()


def test_a_relay_round_reads_a_bounded_number_of_aggregates(registry, infra, namespace):
    """A roster import points at up to 500 households per pointer: a round takes pointers only up to
    MAX_AGGREGATES households (plus its first pointer), so a round stays short."""
    from shared import outbox as outbox_mod
    for b in range(3):
        envs = [registry.outbox.envelopes([enrolment_event(f"M{b}{i}")], None, None)[0] for i in range(4)]
        registry.db[OUTBOX].insert_one({"_id": f"batch:{envs[0].id}", "coll": "households",
                                        "aggs": [f"2020:M{b}{i}" for i in range(4)], "events": [e.id for e in envs],
                                        "seq": envs[0].seq, "created_at": datetime.now(timezone.utc)})
        registry.db.households.insert_many([{"_id": f"2020:M{b}{i}", "_outbox": {e.id: e.to_dict()}}
                                            for i, e in enumerate(envs)])
    relay = registry.relay()
    old = outbox_mod.MAX_AGGREGATES
    outbox_mod.MAX_AGGREGATES = 6
    try:
        assert [relay.run_once() for _ in range(4)] == [4, 4, 4, 0]  # one bulk pointer a round
    finally:
        outbox_mod.MAX_AGGREGATES = old


def test_a_broker_failing_half_way_through_a_batch_loses_nothing_and_resends_little(registry, infra, namespace):
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    for i in range(10):
        registry.outbox.insert("households", {"_id": f"2020:S{i}"}, [enrolment_event(f"S{i}")])
    flaky = OutboxRelay(registry.db, FailingAfter(infra.amqp_url, registry.topology, 4), "registry",
                        registry.clock, ["households"])
    with pytest.raises(PublishFailed):
        flaky.run_once()
    ours = {"_id": {"$in": [f"2020:S{i}" for i in range(10)]}}
    assert registry.db.households.count_documents({**ours, "_outbox": {}}) == 4  # what went out is marked sent
    assert registry.relay().run_once() == 6
    assert sorted(m["payload"]["household_no"] for m in probe.take(11, timeout=3)) == [f"S{i}" for i in range(10)]
    probe.close()


def test_a_broker_outage_delays_events_but_loses_none(registry, infra, namespace):
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    registry.outbox.insert("households", {"_id": "2020:C"}, [enrolment_event("C1")])
    dead = OutboxRelay(registry.db, Publisher("amqp://enrol:x@127.0.0.1:1/%2F", registry.topology), "registry",
                       registry.clock, ["households"])
    with pytest.raises(Exception):
        dead.run_once()
    assert registry.db[OUTBOX].count_documents({}) == 1  # still waiting
    assert registry.relay().run_once() == 1
    assert [m["payload"]["household_no"] for m in probe.take(1)] == ["C1"]
    probe.close()


def _age(db, pointer_id: str, seconds: float) -> None:
    """Make a pointer `seconds` old (its grace period is real time)."""
    db[OUTBOX].update_one({"_id": pointer_id}, {"$set": {"created_at": datetime.now(timezone.utc) - timedelta(seconds=seconds)}})


def test_a_relay_round_between_the_pointer_and_its_write_loses_nothing(registry, infra, namespace, monkeypatch):
    """Driven interleaving: the relay runs a whole round after the writer's pointer and before its
    document write (the window a crash or a slow write opens). The pointer stays, and the event goes
    out with the next round once the write lands."""
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    registry.outbox.insert("households", {"_id": "2020:D"}, [enrolment_event("D0")])
    relay = registry.relay()
    assert relay.run_once() == 1
    point = OutboxWriter._point
    rounds = []

    def point_then_relay(self, coll, agg_id, envs):
        point(self, coll, agg_id, envs)
        rounds.append(relay.run_once())  # between the pointer and the write
    monkeypatch.setattr(OutboxWriter, "_point", point_then_relay)
    registry.outbox.update("households", "2020:D", {"$set": {"x": 1}}, [enrolment_event("D1")])
    registry.outbox.insert("households", {"_id": "2020:D2"}, [enrolment_event("D2")])
    monkeypatch.setattr(OutboxWriter, "_point", point)
    assert rounds == [0, 1]  # each round saw the pointer of a write not yet made (D1, then D2)...
    assert registry.db[OUTBOX].count_documents({}) == 1  # ... and kept it: D2's is still waiting
    assert relay.run_once() == 1
    assert [m["payload"]["household_no"] for m in probe.take(3)][1:] == ["D1", "D2"]
    assert registry.db[OUTBOX].count_documents({}) == 0
    probe.close()


def test_a_bulk_pointer_whose_documents_appear_a_few_at_a_time_loses_none(registry, infra, namespace):
    """A roster import's batch: one pointer names its households and their events, written before
    the bulk insert, which another reader may see land part by part. A relay round that sees only the
    first household publishes it and keeps the pointer for the rest (before, the pointer took the
    `_id` of its first event and was deleted with it: a county-size import lost ~40 % of its
    households' events this way)."""
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    envs = [registry.outbox.envelopes([enrolment_event(f"K{i}")], None, None)[0] for i in range(3)]
    docs = [{"_id": f"2020:K{i}", "_outbox": {e.id: e.to_dict()}} for i, e in enumerate(envs)]
    pointer = {"_id": f"batch:{envs[0].id}", "coll": "households", "aggs": [d["_id"] for d in docs],
               "events": [e.id for e in envs], "seq": envs[0].seq, "created_at": datetime.now(timezone.utc)}
    registry.db[OUTBOX].insert_one(pointer)
    relay = registry.relay()
    registry.db.households.insert_one(docs[0])  # the first lands
    assert relay.run_once() == 1
    assert registry.db[OUTBOX].find_one({"_id": pointer["_id"]})["events"] == [e.id for e in envs[1:]]
    registry.db.households.insert_many(docs[1:])  # then the rest
    assert relay.run_once() == 2 and registry.db[OUTBOX].count_documents({}) == 0
    assert sorted(m["payload"]["household_no"] for m in probe.take(3)) == ["K0", "K1", "K2"]
    probe.close()


def test_a_pointer_whose_write_never_happened_is_dropped_after_its_grace_period(registry, infra, namespace):
    """A crash after the pointer and before the document write: nothing was written, so nothing is
    published; the pointer waits ORPHAN_GRACE_S (a write still in flight) and is then dropped."""
    [env] = registry.outbox.envelopes([enrolment_event("F1")], None, None)
    registry.db.households.insert_one({"_id": "2020:F"})
    registry.outbox._point("households", "2020:F", [env])  # ... and the process died here
    relay = registry.relay()
    assert relay.run_once() == 0 and registry.db[OUTBOX].count_documents({"_id": env.id}) == 1
    _age(registry.db, env.id, ORPHAN_GRACE_S + 1)
    assert relay.run_once() == 0 and registry.db[OUTBOX].count_documents({"_id": env.id}) == 0


def test_a_write_that_is_refused_takes_its_pointer_back(registry):
    """A lost compare-and-set and a duplicate insert write no event, and leave no pointer."""
    registry.outbox.insert("households", {"_id": "2020:G", "version": 1})
    with pytest.raises(StaleVersion):
        registry.outbox.save_versioned("households", "2020:G", 7, {"$set": {"x": 1}}, [enrolment_event("G1")])
    with pytest.raises(DuplicateKeyError):
        registry.outbox.insert("households", {"_id": "2020:G"}, [enrolment_event("G2")])
    assert registry.db[OUTBOX].count_documents({}) == 0
    assert registry.db.households.find_one({"_id": "2020:G"}).get("_outbox") == {}


def test_the_relay_never_scans_an_aggregate_collection(registry, infra, namespace):
    """Every relay command on an aggregate collection is keyed by `_id` (a scan costs ~9 s per
    100,000 documents on the local store): there is no periodic sweep any more."""
    import threading
    registry.outbox.insert("households", {"_id": "2020:H"}, [enrolment_event("H1")])
    listener = CommandShapes()
    client = MongoClient(registry.settings.mongo_url, event_listeners=[listener])
    relay = OutboxRelay(client[registry.db.name], registry.relay().publisher, "registry", registry.clock,
                        ["households"])
    t = threading.Thread(target=relay.run, kwargs={"idle_s": 0.01, "idle_max_s": 0.02}, daemon=True)
    t.start()  # its first rounds: the old relay swept every collection on its first pass
    wait_for(lambda: registry.db[OUTBOX].count_documents({}) == 0, timeout=10)
    registry.outbox.update("households", "2020:H", {"$set": {"x": 1}}, [enrolment_event("H2")])
    wait_for(lambda: registry.db[OUTBOX].count_documents({}) == 0, timeout=10)
    relay.stop()
    t.join(timeout=10)
    client.close()
    on_households = [f for coll, f in listener.filters if coll == "households"]
    assert on_households and all(set(f) == {"_id"} for f in on_households)


def test_a_bad_payload_is_refused_where_it_is_made_and_nothing_is_written(registry):
    with pytest.raises(ValidationError):
        registry.outbox.insert("households", {"_id": "2020:E"}, [Event("registry.enrolment.changed", {"year": 2020})])
    assert registry.db.households.find_one({"_id": "2020:E"}) is None


def test_a_duplicated_event_has_one_effect(namespace, infra):
    c = scoring_boot.bootstrap(FixedClock(NOW))
    env = Envelope.new(enrolment_event("F1", "水岭乡", n=3), "registry", NOW)
    body = json.dumps(env.to_dict()).encode()
    handlers = scoring_boot.event_handlers(c)
    declare(c, handlers)
    consumer = c.consumer(handlers)
    with running(consumer):
        for _ in range(3):
            publish(infra.amqp_url, c.topology.exchange, env.type, body, env.id)
        wait_for(lambda: c.suite_db.processed_events.find_one({"_id": env.id}), what="event processed")
        wait_for(lambda: queue_messages(infra.amqp_url, c.topology.queue) == [], what="queue drained")
    doc = c.db.progress.find_one({"_id": "2020:水岭乡"})
    assert doc["persons"] == 3 and doc["households"] == 1 and doc["inflight"] == []


def test_the_same_household_counted_by_two_events_is_counted_once(namespace):
    """Two different events for one paid household (e.g. a re-published change) count once."""
    c = scoring_boot.bootstrap(FixedClock(NOW))
    repo = scoring_boot.repository(c)
    assert repo.count_paid_household(2020, "川岩乡", "G1", "PG1", 4) is True
    assert repo.count_paid_household(2020, "川岩乡", "G1", "PG1", 4) is False
    assert c.db.progress.find_one({"_id": "2020:川岩乡"})["persons"] == 4


def test_a_counter_survives_a_crash_between_its_steps(namespace, mongo):
    db = mongo[f"{namespace}_scoring"]
    db.progress.insert_one({"_id": "2020:横塘镇", "persons": 3, "households": 1, "inflight": ["paid:2020:H1"]})
    # the crash came after the increment and before the fact: a redelivery must not add again
    count_once(db, "progress", "2020:横塘镇", "paid:2020:H1", {"persons": 3, "households": 1}, {})
    doc = db.progress.find_one({"_id": "2020:横塘镇"})
    assert (doc["persons"], doc["inflight"]) == (3, [])
    assert db.progress_facts.find_one({"_id": "paid:2020:H1"})


def test_a_batch_of_facts_counts_as_the_facts_one_by_one_in_a_few_commands(namespace, mongo, infra):
    """count_many (scoring's batch consumer) against count_once one fact at a time on another
    database: the same counters, for fresh facts, repeats inside the batch, facts counted before,
    and a fact left in flight by a crash of an earlier delivery (not counted twice)."""
    import random
    from shared.store import Count, count_many
    rnd = random.Random(13)
    batch_db, one_db = mongo[f"{namespace}_countmany_b"], mongo[f"{namespace}_countmany_o"]
    towns = ["横塘镇", "花桥镇", "水岭乡"]
    items = [Count(f"2020:{rnd.choice(towns)}", f"paid:2020:H{i}", {}, {"n": i}, {"year": 2020}) for i in range(120)]
    items = [Count(it.counter_id, it.fact_key, {"persons": 1 + i % 4, "households": 1, f"days.2019-11-{10 + i % 5}.persons": 1},
                   it.fact, it.on_insert) for i, it in enumerate(items)]
    for db in (batch_db, one_db):  # counted before: the first 10; in flight after a crash: the 11th
        for it in items[:10]:
            count_once(db, "progress", it.counter_id, it.fact_key, it.inc, it.fact, it.on_insert)
        crashed = items[10]
        db.progress.update_one({"_id": crashed.counter_id}, {"$inc": crashed.inc, "$push": {"inflight": crashed.fact_key}},
                               upsert=True)
    batch = items + items[50:60]  # a redelivered stretch inside the batch
    seen = StoreCommands()
    client = MongoClient(infra.mongo_url, event_listeners=[seen])
    counted = count_many(client[batch_db.name], "progress", batch[11:])
    assert counted == {it.fact_key for it in items[11:]}
    assert len(seen.names) <= 6, seen.names  # facts, counters made, increments, facts, in-flight cleared
    count_many(client[batch_db.name], "progress", batch)  # the batch again: the fact in flight is finished
    client.close()
    for it in batch:
        count_once(one_db, "progress", it.counter_id, it.fact_key, it.inc, it.fact, it.on_insert)
    strip = lambda d: {k: v for k, v in d.items() if k != "year"}  # noqa: E731
    assert [strip(d) for d in batch_db.progress.find().sort("_id", 1)] == [strip(d) for d in one_db.progress.find().sort("_id", 1)]
    assert all(d["inflight"] == [] for d in batch_db.progress.find())
    assert batch_db.progress_facts.count_documents({}) == 120
    assert sum(d["households"] for d in batch_db.progress.find()) == 120


def test_a_poison_message_is_dead_lettered_after_its_retries_and_can_be_inspected(namespace, infra, monkeypatch):
    monkeypatch.setenv("CONSUMER_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("CONSUMER_RETRY_BASE_MS", "50")
    c = registry_boot.bootstrap(FixedClock(NOW))
    payment = Event("payments.payment.confirmed", {
        "order_no": "PX", "receipt_no": "RX", "household_no": "NO-SUCH-HOUSEHOLD", "year": 2020, "county": "431122",
        "township": "花桥镇", "village": "花桥村", "head_name": "某", "amount_fen": 25000, "channel": "mobile_app",
        "gateway": "g", "transaction_id": "t", "paid_at": NOW.isoformat(),
        "members": [{"person_id": "43112219800506001X", "name": "某", "standard_fen": 25000, "subsidy_fen": 0,
                     "payable_fen": 25000}]})
    env = Envelope.new(payment, "payments", NOW)
    handlers = registry_boot.event_handlers(c)
    declare(c, handlers)
    consumer = c.consumer(handlers)
    with running(consumer):
        publish(infra.amqp_url, c.topology.exchange, env.type, json.dumps(env.to_dict()).encode(), env.id)
        dead = wait_for(lambda: c.suite_db.dead_letters.find_one({"_id": env.id}), timeout=30, what="dead letter")
        publish(infra.amqp_url, c.topology.exchange, env.type, b"{not json", "garbage-1")
        garbage = wait_for(lambda: c.suite_db.dead_letters.find_one({"_id": "garbage-1"}), what="malformed dead letter")
    assert dead["attempts"] == 3 and "not registered" in dead["reason"]
    assert garbage["attempts"] == 1 and garbage["reason"].startswith("malformed")
    in_queue = queue_messages(infra.amqp_url, c.topology.dead_queue)
    assert {h.get("x-attempt") for h, _ in in_queue} == {3, 1}
    assert not c.suite_db.processed_events.find_one({"_id": env.id})


def test_a_handler_slower_than_the_heartbeat_keeps_its_connection_and_runs_once(namespace, infra, monkeypatch):
    """docs/guarantees.md "Consumers": heartbeats kept alive during long handlers (else the broker drops the connection
    and redelivers: the handler would run twice)."""
    import time as _time
    monkeypatch.setenv("AMQP_HEARTBEAT_S", "1")
    c = scoring_boot.bootstrap(FixedClock(NOW))
    runs = []

    def slow(env):
        runs.append(env.id)
        _time.sleep(6)  # several heartbeat intervals

    handlers = {"registry.enrolment.changed": slow}
    declare(c, handlers)
    env = Envelope.new(enrolment_event("SLOW1"), "registry", NOW)
    from shared import metrics
    dup = metrics.EVENTS_DUPLICATE.labels("scoring", env.type)
    dups_before = dup._value.get()
    with running(c.consumer(handlers)):
        publish(infra.amqp_url, c.topology.exchange, env.type, json.dumps(env.to_dict()).encode(), env.id)
        wait_for(lambda: c.suite_db.processed_events.find_one({"_id": env.id}), timeout=30, what="slow handler done")
        _time.sleep(1.5)
    assert runs == [env.id]
    assert dup._value.get() == dups_before  # not dropped by the broker and redelivered meanwhile
    assert queue_messages(infra.amqp_url, c.topology.queue) == []


def scrape(port: int) -> dict[str, float]:
    """A worker's /metrics as {series: value} (series as printed, labels included)."""
    import requests
    out = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_the_outbox_gauges_read_the_store_while_the_broker_is_down(registry, namespace):
    """Issue 9: with the broker down and events waiting, a worker's /metrics said `outbox_backlog 0`
    and `outbox_oldest_age_seconds 0`, so the backlog alert could not fire when it was needed."""
    import os
    import subprocess
    import sys
    from shared.config import ROOT
    from tools.suite import free_port_block
    registry.relay().run_once()  # what the module's other tests left in the outbox
    for i in range(3):
        registry.outbox.insert("households", {"_id": f"2020:GAUGE-{i}"}, [enrolment_event(f"GAUGE-{i}")])
    port = free_port_block(2) + 1
    env = {**os.environ, "AMQP_URL": "amqp://enrol:x@127.0.0.1:1/%2F",  # nothing listens on port 1
           "WORKER_METRICS_PORT": str(port), "PYTHONPATH": str(ROOT), "LOG_LEVEL": "ERROR"}
    proc = subprocess.Popen([sys.executable, "-m", "services.registry.entrypoints.worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def gauges():
            try:
                m = scrape(port)
            except Exception:  # noqa: BLE001 — not serving yet
                return None
            return m if m.get('outbox_backlog{county="431122",service="registry"}') == 3 else None
        m = wait_for(gauges, timeout=20, what="the backlog gauge")
        assert m['outbox_oldest_age_seconds{county="431122",service="registry"}'] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert registry.db[OUTBOX].count_documents({}) == 3  # still waiting for the broker
    registry.relay().run_once()


def test_an_event_published_before_its_consumer_ever_started_is_delivered(infra, monkeypatch, mongo):
    """Issue 9 item 5: the publisher declared only the exchange, so an event published before the
    consumer's first start (no queue bound yet) was dropped."""
    from tools.suite import delete_bus
    ns = "t" + uuid.uuid4().hex[:10]  # a bus no consumer has ever declared anything on
    monkeypatch.setenv("BUS_NAMESPACE", ns)
    try:
        reg = registry_boot.bootstrap(FixedClock(NOW))
        [env] = reg.outbox.insert("households", {"_id": "2020:EARLY"}, [enrolment_event("EARLY", "水岭乡", n=2)])
        assert reg.relay().run_once() == 1
        sc = scoring_boot.bootstrap(FixedClock(NOW))
        with running(sc.consumer(scoring_boot.event_handlers(sc))):  # its first start, after the event
            wait_for(lambda: sc.suite_db.processed_events.find_one({"_id": env.id}), timeout=20, what="the early event")
        assert sc.db.progress.find_one({"_id": "2020:水岭乡"})["persons"] == 2
    finally:
        for name in mongo.list_database_names():
            if name.startswith(ns + "_"):
                mongo.drop_database(name)
        delete_bus(infra.amqp_url, ns)


def test_a_store_outage_while_dead_lettering_is_waited_out_and_the_consumer_goes_on(namespace, infra, tmp_path):
    """Issue 9 item 6: a store error while dead-lettering ended the consumer thread for good (the
    worker kept running and nothing noticed)."""
    from pymongo import MongoClient
    from shared.bus import Consumer
    from tests.helpers import OwnStore
    if infra.kind != "local":
        pytest.skip("the store is stopped through the local launcher")
    store = OwnStore(tmp_path / "ferretdb")
    store.start()
    client = MongoClient(store.url, tz_aware=True, serverSelectionTimeoutMS=1000)
    try:
        db = client["deadletter_outage"]
        topo = Topology(namespace, "scoring")
        seen = []
        handlers = {"registry.enrolment.changed": lambda env: seen.append(env.id)}
        declare(scoring_boot.bootstrap(FixedClock(NOW)), handlers)
        db.command("ping")
        consumer = Consumer(infra.amqp_url, topo, db, handlers, clock=FixedClock(NOW))
        t = __import__("threading").Thread(target=consumer.run, daemon=True)
        t.start()
        try:
            store.stop()
            publish(infra.amqp_url, topo.exchange, "registry.enrolment.changed", b"{not json", "garbage-outage")
            __import__("time").sleep(4)  # the dead-letter write meets the stopped store
            assert t.is_alive()
            store.start()
            wait_for(lambda: db.dead_letters.find_one({"_id": "garbage-outage"}), timeout=30,
                     what="the dead letter recorded once the store is back")
            good = Envelope.new(enrolment_event("AFTER-OUTAGE"), "registry", NOW)
            publish(infra.amqp_url, topo.exchange, good.type, json.dumps(good.to_dict()).encode(), good.id)
            wait_for(lambda: good.id in seen, timeout=20, what="the next event handled")
        finally:
            consumer.stop()
            t.join(timeout=15)
        assert [h.get("x-death-reason", b"")[:9] for h, _ in queue_messages(infra.amqp_url, topo.dead_queue)] \
            == ["malformed"]
    finally:
        client.close()
        if store.proc.poll() is None:
            store.stop()


DYING_WORKER = """
import sys, threading
from shared.bus import Publisher, Topology
from shared.outbox import OutboxRelay
from shared.worker import run_worker

class Dying:
    def run(self):
        raise RuntimeError("a bug in the consumer loop")
    def stop(self):
        pass

class Idle:
    county = "431122"
    def __init__(self):
        self.stopping = threading.Event()
    def run(self):
        self.stopping.wait()
    def stop(self):
        self.stopping.set()

run_worker("probe", Dying(), [Idle()], "amqp://x:x@127.0.0.1:1/%2F", None, int(sys.argv[1]), lambda: True,
           check_every_s=0.2)
"""


def test_a_worker_whose_consumer_thread_dies_exits_so_its_supervisor_restarts_it(tmp_path):
    """Issue 9 item 6: the worker process outlived its consumer thread, still scrapeable, still up."""
    import subprocess
    import sys
    from shared.config import ROOT
    from tools.suite import free_port_block
    proc = subprocess.Popen([sys.executable, "-c", DYING_WORKER, str(free_port_block(2) + 1)], cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the worker kept running without its consumer thread")
    assert proc.returncode == 1
    assert "ended unexpectedly" in out


def test_a_list_keeps_a_member_whose_document_has_not_landed_yet(registry):
    """shared.store.KeyIndex: a member is listed before the write that makes its document; a reader
    in between must not drop it (the document would then be missing from the list for good), while a
    document that no longer belongs is dropped."""
    from shared.store import KeyIndex
    lists, docs = KeyIndex(registry.db["ki_lists"]), registry.db["ki_docs"]
    lists.add("v", ["a", "b"])
    docs.insert_one({"_id": "b", "village": "w"})  # b belongs elsewhere now; a's write is on its way

    def read():
        return [d["_id"] for d in lists.documents(["v"], docs, lambda _k, d: d["village"] == "v")]
    assert read() == [] and lists.members("v") == ["a"]
    docs.insert_one({"_id": "a", "village": "v"})  # a's write lands
    assert read() == ["a"]


def _carried_batch(registry, tag: str, n: int, write_households: bool = True) -> list:
    """What a roster import writes for a batch (shared/outbox.py, `carried`): the events beside the
    pointer, the pointer, then the households without any `_outbox`."""
    envs = [registry.outbox.envelopes([enrolment_event(f"{tag}{i}")], None, None)[0] for i in range(n)]
    pid = f"batch:{envs[0].id}"
    registry.db["outbox_carried"].insert_one({"_id": pid, "events": [
        {**e.to_dict(), "agg": f"2020:{tag}{i}"} for i, e in enumerate(envs)]})
    registry.db[OUTBOX].insert_one({"_id": pid, "coll": "households", "aggs": [f"2020:{tag}{i}" for i in range(n)],
                                    "events": [e.id for e in envs], "seq": envs[0].seq, "carried": True,
                                    "created_at": datetime.now(timezone.utc)})
    if write_households:
        registry.db.households.insert_many([{"_id": f"2020:{tag}{i}"} for i in range(n)])
    return envs


def test_events_a_bulk_pointer_carries_go_out_in_order_without_rewriting_their_documents(registry, infra, namespace):
    """A roster import's registrations wait beside their batch's pointer, not in the 500 households:
    the relay publishes them, one wait for confirms, and writes no household (that rewrite was most of
    an import's relay time). A household's own later event goes out after the carried one."""
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    _carried_batch(registry, "Q", 5)
    registry.outbox.update("households", "2020:Q2", {"$set": {"x": 1}}, [enrolment_event("Q2-later")])
    seen = StoreCommands()
    client = MongoClient(infra.mongo_url, event_listeners=[seen])
    relay = OutboxRelay(client[registry.db.name], Publisher(infra.amqp_url, registry.topology), "registry",
                        registry.clock, ["households"], snapshots=registry.snapshots)
    assert relay.run_once() == 6
    got = [m["payload"]["household_no"] for m in probe.take(6)]
    assert got == ["Q0", "Q1", "Q2", "Q2-later", "Q3", "Q4"]
    # pointers, carried events, households; the one household with an event of its own marked sent;
    # pointers and carried events deleted
    assert seen.names == ["find", "find", "find", "update", "delete", "delete"], seen.names
    assert registry.db[OUTBOX].count_documents({}) == 0 and registry.db["outbox_carried"].count_documents({}) == 0
    assert relay.run_once() == 0
    client.close()
    probe.close()


def test_carried_events_of_households_never_written_are_dropped_after_the_grace_period(registry, infra, namespace):
    """A crash after the pointer and before the households: the events are not published (there is no
    registration), and the pointer and its carried events go once the grace period is over."""
    probe = Probe(infra.amqp_url, namespace, ["registry.enrolment.changed"])
    envs = _carried_batch(registry, "Z", 3, write_households=False)
    relay = registry.relay()
    assert relay.run_once() == 0
    assert registry.db[OUTBOX].count_documents({}) == 1  # within the grace period: the write may be on its way
    _age(registry.db, f"batch:{envs[0].id}", ORPHAN_GRACE_S + 1)
    assert relay.run_once() == 0
    assert registry.db[OUTBOX].count_documents({}) == 0 and registry.db["outbox_carried"].count_documents({}) == 0
    assert probe.take(1, timeout=1) == []
    probe.close()

"""Compare-and-set writes (shared.store.OutboxWriter.save_versioned) on the real store: of two
writers that read the same version, exactly one wins and the other is told to read again, and a
read-decide-write step retried on StaleVersion loses nobody's change (docs/guarantees.md)."""
from __future__ import annotations

import threading

import pytest

from shared.aggregate import StaleVersion, retry_stale
from shared.clock import FixedClock, parse_instant
from shared.events import Event
from shared.store import OutboxWriter


@pytest.fixture
def writer(mongo, namespace):
    db = mongo[f"{namespace}_versioned"]
    db["aggs"].drop()
    db["outbox"].drop()
    return OutboxWriter(db, "registry", FixedClock(parse_instant("2019-11-15T10:00:00+08:00")))


def test_only_one_of_two_writers_of_the_same_version_wins(writer):
    db = writer.db
    for rnd in range(10):  # repeated: the barrier releases both writers together each time
        _id = f"agg-{rnd}"
        writer.insert("aggs", {"_id": _id, "version": 1, "status": "confirmed", "log": []})
        start = threading.Barrier(2)
        outcome: dict[str, object] = {}

        def write(who: str) -> None:
            start.wait()
            try:
                writer.save_versioned("aggs", _id, 1, {"$set": {"status": who}, "$push": {"log": who}})
                outcome[who] = "won"
            except StaleVersion:
                outcome[who] = "stale"
        threads = [threading.Thread(target=write, args=(w,)) for w in ("audited", "reversed")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcome.values()) == ["stale", "won"], outcome
        doc = db["aggs"].find_one({"_id": _id})
        winner = next(w for w, o in outcome.items() if o == "won")
        assert doc["status"] == winner and doc["log"] == [winner] and doc["version"] == 2


def test_a_stale_write_writes_neither_its_change_nor_its_events(writer):
    db = writer.db
    writer.insert("aggs", {"_id": "a", "version": 1, "status": "confirmed"})
    writer.save_versioned("aggs", "a", 1, {"$set": {"status": "audited"}})
    with pytest.raises(StaleVersion):
        writer.save_versioned("aggs", "a", 1, {"$set": {"status": "reversed"}},
                              [Event("registry.enrolment.changed", {
                                  "household_no": "a", "year": 2020, "county": "431122", "township": "花桥镇",
                                  "village": "花桥村", "status": "revoked", "person_ids": [], "order_no": "Pa"})])
    doc = db["aggs"].find_one({"_id": "a"})
    assert doc["status"] == "audited" and doc["version"] == 2 and not doc.get("_outbox")
    assert db["outbox"].count_documents({}) == 0


def test_documents_written_before_versions_are_version_zero(writer):
    writer.db["aggs"].insert_one({"_id": "old", "status": "confirmed"})
    writer.save_versioned("aggs", "old", 0, {"$set": {"status": "audited"}})
    assert writer.db["aggs"].find_one({"_id": "old"})["version"] == 1
    with pytest.raises(StaleVersion):
        writer.save_versioned("aggs", "old", 0, {"$set": {"status": "reversed"}})


def test_concurrent_read_decide_write_steps_lose_no_change(writer):
    """Eight threads each add one member to the same document through retry_stale: all eight stay."""
    db = writer.db
    writer.insert("aggs", {"_id": "hh", "version": 1, "members": []})
    start = threading.Barrier(8)

    def add(n: int) -> None:
        start.wait()

        def step():
            doc = db["aggs"].find_one({"_id": "hh"})
            writer.save_versioned("aggs", "hh", doc["version"], {"$set": {"members": doc["members"] + [n]}})
        retry_stale(step, tries=50)
    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = db["aggs"].find_one({"_id": "hh"})
    assert sorted(doc["members"]) == list(range(8)) and doc["version"] == 9


def test_concurrent_increments_of_one_counter_lose_none(mongo, namespace):
    """Township counters take `$inc`s from several threads; FerretDB v1.24.2 as released lost most
    of them (8 threads × 50: 156 of 400 counted), our launcher's build makes each update atomic."""
    from pymongo import MongoClient
    coll = mongo[f"{namespace}_versioned"]["counters"]
    coll.insert_one({"_id": "白牙市镇", "paid": 0})
    start = threading.Barrier(8)

    def bump() -> None:
        own = MongoClient(f"mongodb://{mongo.address[0]}:{mongo.address[1]}/")
        c = own[coll.database.name][coll.name]
        start.wait()
        for _ in range(50):
            c.update_one({"_id": "白牙市镇"}, {"$inc": {"paid": 1}})
        own.close()
    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert coll.find_one({"_id": "白牙市镇"})["paid"] == 400


def test_a_read_model_keeps_the_newest_version_whatever_the_arrival_order(mongo, namespace):
    """docs/guarantees.md C: versions 1..6 of a duplicate case delivered shuffled, twice, from six
    threads released together: the stored copy is version 6."""
    import random
    from shared.store import keep_newest
    coll = mongo[f"{namespace}_versioned"]["cases"]
    for rnd in range(5):
        key = f"2020:43112219800506{rnd:03d}X"
        versions = list(range(1, 7)) * 2
        random.Random(rnd).shuffle(versions)
        start = threading.Barrier(len(versions))

        def deliver(v: int) -> None:
            start.wait()
            keep_newest(coll, key, {"status": "open" if v % 2 else "resolved", "version": v}, v)
        threads = [threading.Thread(target=deliver, args=(v,)) for v in versions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        doc = coll.find_one({"_id": key})
        assert (doc["version"], doc["status"], doc["_order"]) == (6, "resolved", 6)
        assert keep_newest(coll, key, {"status": "open", "version": 3}, 3) is False


def test_writes_by_id_and_writes_by_other_fields_of_one_document_lose_nothing(mongo, namespace):
    """The launcher locks a write that names one `_id` by that `_id` and any other write by its whole
    collection: increments through both kinds of filter, at once, all count (4 × 50 + 4 × 50)."""
    from pymongo import MongoClient
    coll = mongo[f"{namespace}_versioned"]["mixed"]
    coll.insert_many([{"_id": "花桥镇", "kind": "town", "paid": 0}] +
                     [{"_id": f"other-{i}", "kind": "village", "paid": 0} for i in range(20)])
    url = f"mongodb://{mongo.address[0]}:{mongo.address[1]}/"
    start = threading.Barrier(8)

    def bump(by_id: bool) -> None:
        own = MongoClient(url)
        c = own[coll.database.name][coll.name]
        start.wait()
        for _ in range(50):
            c.update_one({"_id": "花桥镇"} if by_id else {"kind": "town"}, {"$inc": {"paid": 1}})
        own.close()
    threads = [threading.Thread(target=bump, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert coll.find_one({"_id": "花桥镇"})["paid"] == 400

"""Our FerretDB launcher (deploy/ferretdb/) on a data directory of its own: the `_id` push-down
index it adds (without it every `_id` lookup scans its table) and the files of a dropped database
removed from disk (its sweeper's connection used to keep a dropped database's -wal file for good:
3 GB after a day of benchmarks)."""
from __future__ import annotations

import sqlite3
import time

import pytest
from pymongo import MongoClient

from tests.helpers import OwnStore
from tools.clients import wait_for


@pytest.fixture()
def store(infra, tmp_path):
    if infra.kind != "local":
        pytest.skip("the launcher is ours only where the local store runs")
    s = OwnStore(tmp_path, "-orphan-age", "1s")
    s.start()
    yield s
    s.stop()


def indexes(path) -> list[str]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    finally:
        con.close()


def test_id_lookups_get_their_index_and_a_dropped_database_leaves_no_file(store):
    client = MongoClient(store.url)
    db = client["launcher_check"]
    db.households.insert_many([{"_id": f"2020:H{i}", "members": ["x" * 200]} for i in range(2000)])
    path = store.data_dir / "launcher_check.sqlite"
    wait_for(lambda: any(n.endswith("__id_pushdown") for n in indexes(path)), timeout=10, what="the push-down index")
    assert db.households.find_one({"_id": "2020:H1999"})["_id"] == "2020:H1999"
    assert sorted(p.name for p in store.data_dir.glob("launcher_check.sqlite*")) == [
        "launcher_check.sqlite", "launcher_check.sqlite-shm", "launcher_check.sqlite-wal"]
    client.drop_database("launcher_check")
    wait_for(lambda: not list(store.data_dir.glob("launcher_check.sqlite*")), timeout=15,
             what="the dropped database's files removed")
    # a database made again under the same name is a new one, indexed again, and keeps its files
    db.households.insert_one({"_id": "2020:AGAIN"})
    wait_for(lambda: any(n.endswith("__id_pushdown") for n in indexes(path)), timeout=10, what="indexed again")
    time.sleep(2.5)  # longer than the orphan age: a live database's -wal stays
    assert (store.data_dir / "launcher_check.sqlite-wal").exists() and db.households.count_documents({}) == 1
    client.close()


# --- compare-and-set filters: deploy/ferretdb/patches/0001-pushdown-id-of-compound-filters.patch

N_DOCS = 20_000


@pytest.fixture(scope="module")
def filled(infra, tmp_path_factory):
    """An own store with N_DOCS households (string _ids, a version and a status each), indexed."""
    if infra.kind != "local":
        pytest.skip("the launcher is ours only where the local store runs")
    s = OwnStore(tmp_path_factory.mktemp("cas"))
    s.start()
    client = MongoClient(s.url)
    coll = client["cas_check"]["households"]
    for start in range(0, N_DOCS, 2000):
        coll.insert_many([{"_id": f"2020:H{i:05}", "version": 3, "status": "confirmed", "pad": "x" * 200}
                          for i in range(start, start + 2000)])
    path = s.data_dir / "cas_check.sqlite"
    wait_for(lambda: any(n.endswith("__id_pushdown") for n in indexes(path)), timeout=10, what="the push-down index")
    coll.find_one({"_id": "2020:H00000"})  # a real statement first: FerretDB's connection then plans with the index
    yield coll
    client.close()
    s.stop()


def explain_find(coll, flt) -> dict:
    return coll.database.command("explain", {"find": coll.name, "filter": flt})


def median_ms(fn, times=7) -> float:
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return sorted(samples)[times // 2] * 1000


def test_a_compare_and_set_filter_reads_one_row_by_its_id(filled):
    """`{_id: X, version: N}` is narrowed to `_id = X` in SQL (upstream FerretDB read all 20,000 rows)."""
    for flt in ({"_id": "2020:H12345", "version": 3}, {"_id": "2020:H12345", "status": "confirmed"},
                {"_id": "2020:H12345", "$or": [{"version": 2}, {"version": 3}]}):
        res = explain_find(filled, flt)
        assert res["filterPushdown"] is True, flt
        assert any("USING INDEX" in step and "__id_pushdown" in step for step in res["queryPlanner"]["Plan"]), res
    assert explain_find(filled, {"version": 3})["filterPushdown"] is False  # no _id: still a scan
    # an update goes through the same query: as cheap as the plain _id update, far below a scan
    # (a ratio within one run, not a wall-clock limit)
    by_id = median_ms(lambda: filled.update_one({"_id": "2020:H00001"}, {"$inc": {"n": 1}}))
    cas = median_ms(lambda: filled.update_one({"_id": "2020:H00002", "status": "confirmed"}, {"$inc": {"n": 1}}))
    scan = median_ms(lambda: filled.update_one({"status": "nobody"}, {"$inc": {"n": 1}}), times=3)
    assert cas * 10 < scan and by_id * 10 < scan, (by_id, cas, scan)


def test_a_compare_and_set_filter_matches_only_when_every_field_does(filled):
    coll = filled
    assert coll.find_one({"_id": "2020:H00010", "version": 3})["_id"] == "2020:H00010"
    assert coll.find_one({"_id": "2020:H00010", "version": 4}) is None
    assert coll.find_one({"_id": "2020:H00010", "a": 1}) is None
    assert coll.find_one({"_id": "2020:NOSUCH", "version": 3}) is None
    # compare-and-set: the first write wins, the second (same expected version) matches nothing
    assert coll.update_one({"_id": "2020:H00011", "version": 3}, {"$set": {"version": 4}}).modified_count == 1
    assert coll.update_one({"_id": "2020:H00011", "version": 3}, {"$set": {"version": 4}}).matched_count == 0
    assert coll.find_one({"_id": "2020:H00011"})["version"] == 4
    assert coll.find_one_and_update({"_id": "2020:H00012", "status": "confirmed"},
                                    {"$set": {"status": "revoked"}})["status"] == "confirmed"
    assert coll.find_one_and_update({"_id": "2020:H00012", "status": "confirmed"}, {"$set": {"status": "x"}}) is None
    assert coll.count_documents({"_id": "2020:H00012", "status": "revoked"}) == 1
    assert coll.delete_one({"_id": "2020:H00013", "version": 9}).deleted_count == 0
    assert coll.delete_one({"_id": "2020:H00013", "version": 3}).deleted_count == 1
    assert coll.find_one({"_id": "2020:H00013"}) is None
    # `_id` not an equality on a string: not narrowed, still answered right
    got = coll.find({"_id": {"$in": ["2020:H00011", "2020:H00014", "2020:NOSUCH"]}, "version": 3})
    assert [d["_id"] for d in got] == ["2020:H00014"]
    assert [d["_id"] for d in coll.find({"_id": {"$gte": "2020:H19998"}, "status": "confirmed"})] == [
        "2020:H19998", "2020:H19999"]


def test_other_id_types_and_a_repeated_id_key_are_answered_as_before(filled):
    from bson import ObjectId, encode
    from bson.raw_bson import RawBSONDocument
    coll = filled.database["mixed"]
    oid = ObjectId()
    coll.insert_many([{"_id": 7, "version": 1}, {"_id": oid, "version": 1}, {"_id": "7", "version": 1}])
    assert coll.find_one({"_id": 7, "version": 1})["_id"] == 7 and coll.find_one({"_id": 7, "version": 2}) is None
    assert coll.find_one({"_id": oid, "version": 1})["_id"] == oid
    assert coll.find_one({"_id": oid, "version": 2}) is None
    assert explain_find(coll, {"_id": oid, "version": 1})["filterPushdown"] is True
    assert coll.update_one({"_id": 7, "version": 1}, {"$set": {"version": 2}}).modified_count == 1
    assert coll.find_one({"_id": "7"})["version"] == 1  # the string "7" is another document
    # a filter naming _id twice (raw BSON; no dict can) is not narrowed and does not break the store
    one = encode({"_id": "7"})[4:-1]
    twice = RawBSONDocument((len(one) * 2 + 5).to_bytes(4, "little") + one * 2 + b"\0")
    assert [d["_id"] for d in coll.find(twice)] == ["7"]
    assert coll.find_one({"_id": oid})["_id"] == oid


def test_a_batch_read_by_id_list_reads_only_those_rows(filled):
    """`{_id: {$in: [...]}}` (a consumer's batch of households, a relay's batch of aggregates) is
    narrowed to `_id IN (...)` in SQL, with or without other keys; upstream read all 20,000 rows."""
    ids = [f"2020:H{i:05}" for i in range(100, 20_000, 200)]  # 100 of them
    for flt in ({"_id": {"$in": ids}}, {"_id": {"$in": ids}, "version": 3}):
        res = explain_find(filled, flt)
        assert res["filterPushdown"] is True, flt
        assert any("USING INDEX" in step and "__id_pushdown" in step for step in res["queryPlanner"]["Plan"]), res
    assert sorted(d["_id"] for d in filled.find({"_id": {"$in": ids}}, {"_id": 1})) == ids
    # repeats, absent ids and other conditions are answered as MongoDB answers them
    got = filled.find({"_id": {"$in": ["2020:H00100", "2020:H00100", "2020:NOSUCH", "2020:H00300"]}, "version": 3})
    assert sorted(d["_id"] for d in got) == ["2020:H00100", "2020:H00300"]
    assert list(filled.find({"_id": {"$in": ids}, "version": 4})) == []
    # a list with another type of value, an empty list, or `$in` beside another operator: not
    # narrowed (a number may match what a string would not), still answered right
    assert explain_find(filled, {"_id": {"$in": ["2020:H00100", 7]}})["filterPushdown"] is False
    assert [d["_id"] for d in filled.find({"_id": {"$in": ["2020:H00100", 7]}})] == ["2020:H00100"]
    assert list(filled.find({"_id": {"$in": []}})) == []
    assert [d["_id"] for d in filled.find({"_id": {"$in": ids, "$gte": "2020:H19900"}})] == ["2020:H19900"]
    # writes go through the same query: a batch's updates and deletes touch their rows only
    assert filled.update_many({"_id": {"$in": ids[:10]}}, {"$inc": {"batched": 1}}).modified_count == 10
    assert filled.count_documents({"_id": {"$in": ids}, "batched": 1}) == 10
    # one read of 100 households costs a fraction of one scan (a ratio within one run)
    batch = median_ms(lambda: list(filled.find({"_id": {"$in": ids}})))
    scan = median_ms(lambda: list(filled.find({"status": "nobody"})), times=3)
    assert batch * 5 < scan, (batch, scan)


def test_an_update_command_of_hundreds_of_statements_completes(filled):
    """One bulk write of a batch (a relay marking 300 aggregates sent): upstream FerretDB kept every
    statement's SQLite connection until the command ended and waited forever at the 100th
    (deploy/ferretdb/patches/0003), holding its write locks, so the collection was wedged for good."""
    from pymongo import UpdateOne
    ids = [f"2020:H{i:05}" for i in range(5000, 5300)]
    res = filled.bulk_write([UpdateOne({"_id": i, "version": 3}, {"$set": {"sent": True}}) for i in ids], ordered=False)
    assert res.modified_count == 300
    assert filled.update_one({"_id": ids[0]}, {"$set": {"after": 1}}).modified_count == 1  # not wedged
    assert filled.count_documents({"_id": {"$in": ids}, "sent": True}) == 300

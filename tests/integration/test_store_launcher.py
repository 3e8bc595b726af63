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

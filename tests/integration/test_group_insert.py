"""Group commit (shared.store.GroupInsert): concurrent request threads' single inserts are written
together, and each caller still learns its own outcome (the nonce and payment checks rely on it)."""
from __future__ import annotations

import threading

from pymongo import monitoring

from shared.store import GroupInsert


def _race(group: GroupInsert, docs: list[dict]) -> dict[int, object]:
    """Every document from a thread of its own, released together; each caller's outcome."""
    results: dict[int, object] = {}
    start = threading.Barrier(len(docs))

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = group.insert_once(docs[i])
        except Exception as e:  # noqa: BLE001 — recorded for the assertion
            results[i] = e
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(docs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class _Inserts(monitoring.CommandListener):
    def __init__(self):
        self.sizes: list[int] = []

    def started(self, event):
        if event.command_name == "insert":
            self.sizes.append(len(event.command.get("documents", [])))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_concurrent_inserts_are_grouped_and_each_caller_gets_its_own_outcome(namespace, infra):
    from pymongo import MongoClient
    listener = _Inserts()
    client = MongoClient(infra.mongo_url, event_listeners=[listener])
    coll = client[f"{namespace}_group"]["nonces"]
    coll.insert_one({"_id": "seen-before"})
    listener.sizes.clear()
    group = GroupInsert(coll)
    ids = [f"n{i}" for i in range(40)] + ["dup"] * 5 + ["seen-before"] * 3
    results = _race(group, [{"_id": x, "by": i} for i, x in enumerate(ids)])
    assert all(results[i] is True for i in range(40))
    assert sorted(results[i] for i in range(40, 45)) == [False, False, False, False, True]  # exactly one wins
    assert all(results[i] is False for i in range(45, 48))
    assert coll.count_documents({}) == 42
    winner = coll.find_one({"_id": "dup"})["by"]
    assert results[winner] is True
    # fewer insert commands than documents: concurrent callers shared writes
    assert sum(listener.sizes) == len(ids) and len(listener.sizes) < len(ids) and max(listener.sizes) > 1
    # a lone caller is written at once, alone
    listener.sizes.clear()
    assert group.insert_once({"_id": "alone"}) is True and listener.sizes == [1]
    client.drop_database(f"{namespace}_group")


def test_a_refused_document_fails_its_own_caller_only(namespace, infra):
    from pymongo import MongoClient
    from pymongo.errors import WriteError
    coll = MongoClient(infra.mongo_url)[f"{namespace}_group2"]["pointers"]
    group = GroupInsert(coll)
    results = _race(group, [{"_id": f"ok{i}"} for i in range(10)] + [{"_id": "bad", "$field": 1}])
    assert all(results[i] is True for i in range(10)) and isinstance(results[10], WriteError)
    assert coll.count_documents({}) == 10
    coll.database.client.drop_database(f"{namespace}_group2")

"""Who has not paid yet, per township and year, for reminders; and the reminder runs. `_id` reads only.

`unpaid`: UNPAID_SHARDS documents per year and township (`<year>:<township>#<k>`, a household in the
shard its number hashes to, shared.store.shard_key): `households`, the household numbers registered
and not paid, and `paid`, those paid (a registration snapshot arriving after the payment — a change,
a redelivery — does not put a paid household back: the add is conditional on `paid`, a filter with
its `_id`, which the store looks up by `_id`). A county's largest township has a few ten thousand
households: one document of it was almost 900 kB at Dong'an's size and every batch of payments
rewrote one per township it touched; a shard is about 30 kB.
`reminder_runs`: one document per reminder point (`<year>:<target>:<days>`), created once, with
the cursor of the batches sent so far (township index, last household number) (a worker stopped mid-run goes on where it was).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from shared.store import find_by_ids, insert_once, shard_key

UNPAID = "unpaid"
RUNS = "reminder_runs"
UNPAID_SHARDS = 32


def _key(year: int | str, township: str, household_no: str) -> str:
    return shard_key(f"{year}:{township}", household_no, UNPAID_SHARDS)


class UnpaidLedger:
    def __init__(self, db):
        self.db = db

    def registered(self, year: int, township: str, household_no: str) -> None:
        key = _key(year, township, household_no)
        self.db[UNPAID].update_one({"_id": key}, {"$setOnInsert": {"paid": []}}, upsert=True)
        self.db[UNPAID].update_one({"_id": key, "paid": {"$ne": household_no}},
                                   {"$addToSet": {"households": household_no}})

    def registered_many(self, rows: list[tuple[int, str, str]]) -> None:
        """`registered` for a batch of (year, township, household number): one write per shard
        document, in two bulk writes, on the condition that none of its households has paid; when one
        has (a snapshot redelivered after the payment), they are taken one by one."""
        by_doc: dict[str, list[tuple[int, str, str]]] = {}
        for year, township, no in rows:
            by_doc.setdefault(_key(year, township, no), []).append((year, township, no))
        if not by_doc:
            return
        self.db[UNPAID].bulk_write([UpdateOne({"_id": key}, {"$setOnInsert": {"paid": []}}, upsert=True)
                                    for key in by_doc], ordered=False)
        out = self.db[UNPAID].bulk_write([UpdateOne({"_id": key, "paid": {"$nin": [r[2] for r in rs]}},
                                                    {"$addToSet": {"households": {"$each": [r[2] for r in rs]}}})
                                          for key, rs in by_doc.items()], ordered=False)
        if out.matched_count < len(by_doc):  # adding again is harmless: `registered` is idempotent
            for rs in by_doc.values():
                for year, township, no in rs:
                    self.registered(year, township, no)

    def paid(self, year: int, township: str, household_no: str) -> None:
        self.db[UNPAID].update_one({"_id": _key(year, township, household_no)},
                                   {"$pull": {"households": household_no}, "$addToSet": {"paid": household_no}},
                                   upsert=True)

    def paid_many(self, paid: list[tuple[int, str, str]]) -> None:
        """`paid` for a batch of (year, township, household number): one update per shard document,
        all in one bulk write (each rewrites its document on the local store, so once per batch
        instead of once per payment)."""
        by_doc: dict[str, list[str]] = {}
        for year, township, no in paid:
            by_doc.setdefault(_key(year, township, no), []).append(no)
        if by_doc:
            self.db[UNPAID].bulk_write([UpdateOne({"_id": key}, {"$pullAll": {"households": nos},
                                                                 "$addToSet": {"paid": {"$each": nos}}}, upsert=True)
                                        for key, nos in by_doc.items()], ordered=False)

    def revoked(self, year: int, township: str, household_no: str) -> None:
        self.db[UNPAID].update_one({"_id": _key(year, township, household_no)},
                                   {"$pull": {"paid": household_no}, "$addToSet": {"households": household_no}},
                                   upsert=True)

    def households(self, year: int, township: str) -> list[str]:
        """The township's unpaid households in number order: its shards in one `_id $in` read."""
        shards = find_by_ids(self.db[UNPAID], [f"{year}:{township}#{k}" for k in range(UNPAID_SHARDS)])
        return sorted(no for d in shards for no in d.get("households") or [])


class ReminderRuns:
    def __init__(self, db):
        self.db = db

    def start(self, key: str, doc: dict[str, Any], at: datetime) -> dict[str, Any]:
        """The run of this reminder point, created once (two workers share one run)."""
        insert_once(self.db[RUNS], {"_id": key, **doc, "started_at": at, "township": 0, "after": "", "sent": 0,
                                    "done": False})
        return self.db[RUNS].find_one({"_id": key})

    def get(self, key: str) -> dict[str, Any] | None:
        return self.db[RUNS].find_one({"_id": key})

    def advance(self, key: str, township: int, after: str, sent: int, done: bool, at: datetime) -> None:
        self.db[RUNS].update_one({"_id": key}, {"$set": {"township": township, "after": after, "done": done,
                                                         "updated_at": at}, "$inc": {"sent": sent}})

"""Who has not paid yet, per township and year, for reminders; and the reminder runs. `_id` reads only.

`unpaid`: one document per year and township (`<year>:<township>`): `households`, the household
numbers registered and not paid, and `paid`, those paid (a registration snapshot arriving after the
payment — a change, a redelivery — does not put a paid household back: the add is conditional on
`paid`, a filter with its `_id`, which the store looks up by `_id`). A county's largest township has
a few ten thousand households: one document of a few hundred kB.
`reminder_runs`: one document per reminder point (`<year>:<target>:<days>`), created once, with
the cursor of the batches sent so far (township index, last household number) (a worker stopped mid-run goes on where it was).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from shared.store import insert_once

UNPAID = "unpaid"
RUNS = "reminder_runs"


class UnpaidLedger:
    def __init__(self, db):
        self.db = db

    def registered(self, year: int, township: str, household_no: str) -> None:
        key = f"{year}:{township}"
        self.db[UNPAID].update_one({"_id": key}, {"$setOnInsert": {"paid": []}}, upsert=True)
        self.db[UNPAID].update_one({"_id": key, "paid": {"$ne": household_no}},
                                   {"$addToSet": {"households": household_no}})

    def registered_many(self, rows: list[tuple[int, str, str]]) -> None:
        """`registered` for a batch of (year, township, household number): one write per township
        document, in two bulk writes, on the condition that none of its households has paid; when one
        has (a snapshot redelivered after the payment), they are taken one by one."""
        by_doc: dict[str, list[str]] = {}
        for year, township, no in rows:
            by_doc.setdefault(f"{year}:{township}", []).append(no)
        if not by_doc:
            return
        self.db[UNPAID].bulk_write([UpdateOne({"_id": key}, {"$setOnInsert": {"paid": []}}, upsert=True)
                                    for key in by_doc], ordered=False)
        out = self.db[UNPAID].bulk_write([UpdateOne({"_id": key, "paid": {"$nin": nos}},
                                                    {"$addToSet": {"households": {"$each": nos}}})
                                          for key, nos in by_doc.items()], ordered=False)
        if out.matched_count < len(by_doc):  # adding again is harmless: `registered` is idempotent
            for key, nos in by_doc.items():
                year, township = key.split(":", 1)
                for no in nos:
                    self.registered(int(year), township, no)

    def paid(self, year: int, township: str, household_no: str) -> None:
        self.db[UNPAID].update_one({"_id": f"{year}:{township}"},
                                   {"$pull": {"households": household_no}, "$addToSet": {"paid": household_no}},
                                   upsert=True)

    def paid_many(self, paid: list[tuple[int, str, str]]) -> None:
        """`paid` for a batch of (year, township, household number): one update per township
        document, all in one bulk write (each rewrites a document of a few hundred kB on the local
        store, so once per batch instead of once per payment)."""
        by_doc: dict[str, list[str]] = {}
        for year, township, no in paid:
            by_doc.setdefault(f"{year}:{township}", []).append(no)
        if by_doc:
            self.db[UNPAID].bulk_write([UpdateOne({"_id": key}, {"$pullAll": {"households": nos},
                                                                 "$addToSet": {"paid": {"$each": nos}}}, upsert=True)
                                        for key, nos in by_doc.items()], ordered=False)

    def revoked(self, year: int, township: str, household_no: str) -> None:
        self.db[UNPAID].update_one({"_id": f"{year}:{township}"},
                                   {"$pull": {"paid": household_no}, "$addToSet": {"households": household_no}},
                                   upsert=True)

    def households(self, year: int, township: str) -> list[str]:
        return sorted((self.db[UNPAID].find_one({"_id": f"{year}:{township}"}) or {}).get("households") or [])


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

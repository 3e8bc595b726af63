"""Storage of the roster rollover (service_layer/rollover.py): the run's cursor and counts in
`rollovers` (`_id` "households:<from>-<to>", compare-and-set on `version`), and the page of last
year's households it reads (a scan in `_id` order: a batch job, never a request's path)."""
from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from .repository import HOUSEHOLDS, from_doc

ROLLOVERS = "rollovers"


class RolloverStore:
    def __init__(self, db):
        self.db = db

    def households_after(self, year: int, after: str, limit: int) -> list:
        """(`_id`, Household) of `year` after the cursor, in `_id` order."""
        docs = self.db[HOUSEHOLDS].find({"year": year, "_id": {"$gt": after}}, {"_outbox": 0}).sort("_id", 1).limit(limit)
        return [(d["_id"], from_doc(d)) for d in docs]

    def run(self, key: str) -> dict[str, Any] | None:
        return self.db[ROLLOVERS].find_one({"_id": key})

    def save(self, run: dict[str, Any], read_version: int) -> bool:
        """Write the run if it is still at the version read; False when another call wrote first."""
        try:
            res = self.db[ROLLOVERS].replace_one({"_id": run["_id"], "version": read_version}, run,
                                                 upsert=read_version == 0)
        except DuplicateKeyError:  # a first run written by another call meanwhile
            return False
        return res.matched_count == 1 or (read_version == 0 and res.upserted_id is not None)

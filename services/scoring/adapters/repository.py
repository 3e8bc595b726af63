"""Progress counters per township and year (`_id` "<year>:<township>"), counted once per household."""
from __future__ import annotations

from shared.store import count_once

PROGRESS = "progress"
OUTBOX_COLLECTIONS: tuple[str, ...] = ()
INDEXES = ()


class ProgressRepository:
    def __init__(self, db):
        self.db = db

    def count_paid_household(self, year: int, township: str, household_no: str, order_no: str, persons: int,
                             households: int = 1) -> bool:
        """Once per household payment (keyed by its order): a redelivery never counts twice. A
        supplementary payment (补缴) counts its persons and no household (`households` 0)."""
        return count_once(self.db, PROGRESS, f"{year}:{township}", f"paid:{year}:{household_no}:{order_no}",
                          {"persons": persons, "households": households}, {"township": township, "persons": persons},
                          on_insert={"year": year, "township": township})

    def uncount_revoked_household(self, year: int, township: str, household_no: str, order_no: str,
                                  persons: int, households: int = 1) -> bool:
        """A reversed payment takes its persons back out, once, and only if they were counted."""
        if not self.db[f"{PROGRESS}_facts"].find_one({"_id": f"paid:{year}:{household_no}:{order_no}"}):
            return False
        return count_once(self.db, PROGRESS, f"{year}:{township}", f"revoked:{year}:{household_no}:{order_no}",
                          {"persons": -persons, "households": -households}, {"township": township, "persons": -persons})

    def store_accuracy(self, year: int, as_of: str, rows: list[dict]) -> None:
        """Keep the latest published figure per township (an older report arriving late loses)."""
        for r in rows:
            key = f"{year}:{r['township']}"
            doc = self.db["accuracy"].find_one({"_id": key})
            if doc is None or doc["as_of"] < as_of:
                self.db["accuracy"].replace_one({"_id": key}, {"_id": key, "as_of": as_of, **r}, upsert=True)

    def store_coverage(self, p: dict) -> None:
        """Hardship coverage per township and category (subsidy's figures; the latest as_of wins)."""
        key = f"{p['year']}:{p['township']}:{p['category']}"
        doc = self.db["coverage"].find_one({"_id": key})
        if doc is None or doc["as_of"] < p["as_of"]:
            self.db["coverage"].replace_one({"_id": key}, {"_id": key, **p}, upsert=True)

    def coverage(self, year: int, townships: list[str], category: str) -> dict[str, dict]:
        out = {}
        for t in townships:
            doc = self.db["coverage"].find_one({"_id": f"{year}:{t}:{category}"})
            if doc:
                out[t] = doc
        return out

    def accuracy(self, year: int, townships: list[str]) -> dict[str, dict]:
        out = {}
        for t in townships:
            doc = self.db["accuracy"].find_one({"_id": f"{year}:{t}"})
            if doc:
                out[t] = doc
        return out

    def counters(self, year: int, townships: list[str]) -> dict[str, dict]:
        out = {}
        for t in townships:  # one `_id` lookup each: a county has a few dozen townships
            doc = self.db[PROGRESS].find_one({"_id": f"{year}:{t}"})
            if doc:
                out[t] = doc
        return out

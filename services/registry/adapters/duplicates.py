"""Duplicate enrolment cases (多地重复参保) and the employee-insurance exclusion list, by `_id`.

A case (`_id` "<year>:<id_number>") lists every place the person was registered or refused in; county
staff resolve it. The exclusion list (`_id` "<year>:<id_number>") holds people already covered by
employee insurance (城镇职工医保), who are not enrolled as residents.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from shared.store import IndexSpec

DUPLICATES, EXCLUSIONS = "duplicates", "exclusions"
INDEXES = (IndexSpec(DUPLICATES, (("status", 1),)),)


class DuplicateRepository:
    def __init__(self, db):
        self.db = db

    def record(self, year: int, person_id: str, kept: dict[str, Any], refused: dict[str, Any], at: datetime) -> None:
        """Open (or add a place to) the case of a person refused because another household has them."""
        key = f"{year}:{person_id}"
        self.db[DUPLICATES].update_one({"_id": key}, {
            "$setOnInsert": {"year": year, "person_id": person_id, "opened_at": at, "kept": kept},
            "$set": {"status": "open"},
            "$addToSet": {"refused": refused}}, upsert=True)

    def get(self, year: int, person_id: str) -> dict[str, Any] | None:
        return self.db[DUPLICATES].find_one({"_id": f"{year}:{person_id}"})

    def listing(self, status: str | None) -> list[dict[str, Any]]:
        return list(self.db[DUPLICATES].find({"status": status} if status else {}).sort("opened_at", 1))

    def resolve(self, year: int, person_id: str, decision: dict[str, Any]) -> bool:
        res = self.db[DUPLICATES].update_one({"_id": f"{year}:{person_id}", "status": "open"},
                                             {"$set": {"status": "resolved", "resolution": decision}})
        return bool(res.modified_count)

    # employee-insurance exclusions
    def exclude(self, year: int, person_ids: Iterable[str], source: str, at: datetime) -> int:
        from shared.store import insert_once
        return sum(insert_once(self.db[EXCLUSIONS], {"_id": f"{year}:{p}", "source": source, "at": at})
                   for p in person_ids)

    def excluded(self, year: int, person_id: str) -> bool:
        return self.db[EXCLUSIONS].find_one({"_id": f"{year}:{person_id}"}, {"_id": 1}) is not None

    def excluded_set(self, year: int) -> set[str]:
        """Loaded once per roster import (one scan) instead of one lookup per row."""
        prefix = f"{year}:"
        return {d["_id"][len(prefix):] for d in self.db[EXCLUSIONS].find({}, {"_id": 1}) if d["_id"].startswith(prefix)}

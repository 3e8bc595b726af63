"""The State Council's yearly holiday schedules loaded by county staff (`_id` = the year).

One small document a year; every process of the registry reads them all through
shared.workdays.use_source (a scan of a collection of a few documents, every 30 s, not per request).
"""
from __future__ import annotations

from datetime import datetime

from pymongo.database import Database

from shared.clock import iso
from shared.workdays import YearSchedule, parse_schedule

HOLIDAYS = "holiday_schedules"


class HolidayStore:
    def __init__(self, db: Database):
        self.col = db[HOLIDAYS]

    def save(self, schedule: YearSchedule, by: str, at: datetime) -> None:
        """Replace the year's schedule: a corrected notice wins over the one loaded before."""
        self.col.replace_one({"_id": str(schedule.year)},
                             {"_id": str(schedule.year), "schedule": _wire(schedule), "loaded_by": by,
                              "loaded_at": iso(at)}, upsert=True)

    def get(self, year: int) -> dict | None:
        return self.col.find_one({"_id": str(year)})

    def all(self) -> list[YearSchedule]:
        return [parse_schedule(doc["schedule"], f"{HOLIDAYS}/{doc['_id']}") for doc in self.col.find({})]


def _wire(s: YearSchedule) -> dict:
    """Back to the file format (consecutive days of one holiday as one range), so it re-validates on read."""
    ranges: list[dict] = []
    for d, name in sorted(s.holidays.items()):
        if ranges and ranges[-1]["name"] == name and (d - datetime.fromisoformat(ranges[-1]["to"]).date()).days == 1:
            ranges[-1]["to"] = d.isoformat()
        else:
            ranges.append({"name": name, "from": d.isoformat(), "to": d.isoformat()})
    return {"year": s.year, "source": s.source, "holidays": ranges,
            "workdays": [{"date": d.isoformat(), "name": n} for d, n in sorted(s.workdays.items())]}

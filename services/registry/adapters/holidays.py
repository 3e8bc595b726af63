"""The State Council's yearly holiday schedules loaded by county staff (`_id` = the year).

One small document a year; every process of the registry reads them all through
shared.workdays.use_source (a scan of a collection of a few documents, every 30 s, not per request).
Each load is published as registry.holidays.published in the same write (outbox), with the
document's version, so other services (payments) count the same calendar.
"""
from __future__ import annotations

from datetime import datetime

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.aggregate import StaleVersion
from shared.clock import iso
from shared.events import Event
from shared.store import OutboxWriter
from shared.workdays import YearSchedule, parse_schedule

HOLIDAYS = "holiday_schedules"


class HolidayStore:
    def __init__(self, db: Database, outbox: OutboxWriter):
        self.col = db[HOLIDAYS]
        self.outbox = outbox

    def save(self, schedule: YearSchedule, by: str, at: datetime, correlation_id: str | None = None) -> int:
        """Replace the year's schedule and publish it, in one write (compare-and-set on the version, so
        two loads at once get distinct versions and the last one written is the newest everywhere).
        A corrected notice wins over the one loaded before. Returns the version written."""
        key, fields = str(schedule.year), {"schedule": _wire(schedule), "loaded_by": by, "loaded_at": iso(at)}
        while True:
            prior = self.col.find_one({"_id": key}, {"version": 1})
            version = (prior or {}).get("version", 0)
            event = published_event(schedule, version + 1, iso(at))
            try:
                if prior is None:
                    self.outbox.insert(HOLIDAYS, {"_id": key, **fields, "version": 1}, [event],
                                       correlation_id=correlation_id)
                else:
                    self.outbox.save_versioned(HOLIDAYS, key, version, {"$set": fields}, [event],
                                               correlation_id=correlation_id)
                return version + 1
            except (DuplicateKeyError, StaleVersion):
                continue  # another load came first: write over it with the next version

    def get(self, year: int) -> dict | None:
        return self.col.find_one({"_id": str(year)})

    def all(self) -> list[YearSchedule]:
        return [parse_schedule(doc["schedule"], f"{HOLIDAYS}/{doc['_id']}")
                for doc in self.col.find({}, {"_outbox": 0})]


def published_event(s: YearSchedule, version: int, loaded_at: str) -> Event:
    return Event("registry.holidays.published", {
        "year": s.year, "source": s.source,
        "holidays": [{"date": d.isoformat(), "name": n} for d, n in sorted(s.holidays.items())],
        "workdays": [{"date": d.isoformat(), "name": n} for d, n in sorted(s.workdays.items())],
        "version": version, "loaded_at": loaded_at})


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

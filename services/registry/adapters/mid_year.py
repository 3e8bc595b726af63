"""Approved mid-year enrolments (中途参保), `_id` "<year>:<id_number>": one per person and year, written
once with its registry.mid_year.approved (outbox). A refused decision is answered, not stored."""
from __future__ import annotations

from typing import Any, Iterable

from pymongo.errors import DuplicateKeyError

from shared.events import Event
from shared.store import OutboxWriter

MID_YEAR = "mid_year_approvals"


class MidYearRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox

    def approve(self, doc: dict[str, Any], event: Event, correlation_id: str | None = None) -> bool:
        """True if this call recorded the approval; False if the person-year had one already."""
        try:
            self.outbox.insert(MID_YEAR, doc, [event], correlation_id=correlation_id)
            return True
        except DuplicateKeyError:
            return False

    def get(self, year: int, person_id: str) -> dict[str, Any] | None:
        return self.db[MID_YEAR].find_one({"_id": f"{year}:{person_id}"}, {"_outbox": 0})

    def approved_ids(self, year: int, person_ids: Iterable[str]) -> set[str]:
        """Those of `person_ids` approved for the year (one `_id` lookup each)."""
        return {pid for pid in person_ids
                if self.db[MID_YEAR].find_one({"_id": f"{year}:{pid}"}, {"_id": 1}) is not None}

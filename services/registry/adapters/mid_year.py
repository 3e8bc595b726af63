"""Approved mid-year enrolments (中途参保), `_id` "<year>:<id_number>": one per person and year, with its
registry.mid_year.approved (outbox); staff may withdraw one recorded in error before its payment
(registry.mid_year.withdrawn) and approve the person again later. Each write bumps `version`, checked
by the write itself (a change made meanwhile is refused, not overwritten), and the events carry it.
A refused decision is answered, not stored."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from pymongo.errors import DuplicateKeyError

from shared.errors import Conflict
from shared.events import Event
from shared.store import OutboxWriter

MID_YEAR = "mid_year_approvals"


class MidYearRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox

    def approve(self, doc: dict[str, Any], event: Callable[[int], Event], correlation_id: str | None = None) -> bool:
        """True if this call recorded the approval (first, or again after a withdrawal); False if the
        person-year holds one already. `event(version)` builds its event."""
        try:
            self.outbox.insert(MID_YEAR, {**doc, "status": "approved", "version": 1}, [event(1)],
                               correlation_id=correlation_id)
            return True
        except DuplicateKeyError:
            prior = self.get(doc["year"], doc["person_id"])
            if prior is None or prior.get("status") != "withdrawn":
                return False
        fields = {k: v for k, v in doc.items() if k != "_id"}
        self._bump(prior, {"$set": {**fields, "status": "approved"}, "$unset": {"withdrawal": ""}}, event,
                   correlation_id)
        return True

    def withdraw(self, prior: dict[str, Any], withdrawal: dict[str, Any], event: Callable[[int], Event],
                 correlation_id: str | None = None) -> None:
        self._bump(prior, {"$set": {"status": "withdrawn", "withdrawal": withdrawal}}, event, correlation_id)

    def _bump(self, prior: dict[str, Any], update: dict[str, Any], event: Callable[[int], Event],
              correlation_id: str | None) -> None:
        version = (prior.get("version") or 1) + 1
        update.setdefault("$set", {})["version"] = version
        matched, _ = self.outbox.update(MID_YEAR, prior["_id"], update, [event(version)],
                                        where={"version": prior.get("version")}, correlation_id=correlation_id)
        if not matched:
            raise Conflict("CONCURRENT_CHANGE", "该记录刚被他人修改，请刷新后重试", {"version": prior.get("version")})

    def get(self, year: int, person_id: str) -> dict[str, Any] | None:
        return self.db[MID_YEAR].find_one({"_id": f"{year}:{person_id}"}, {"_outbox": 0})

    def approved_ids(self, year: int, person_ids: Iterable[str]) -> set[str]:
        """Those of `person_ids` approved for the year (one `_id` lookup each)."""
        out = set()
        for pid in person_ids:
            d = self.db[MID_YEAR].find_one({"_id": f"{year}:{pid}"}, {"status": 1})
            if d is not None and d.get("status") != "withdrawn":
                out.add(pid)
        return out

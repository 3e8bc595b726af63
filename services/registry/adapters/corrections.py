"""Correction requests in the store (`_id` = correction id); the overdue event rides in the same write."""
from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from shared.store import IndexSpec, KeyIndex, OutboxWriter

from ..domain.corrections import Correction

CORRECTIONS = "corrections"
STATUSES = ("open", "approved", "rejected")
BY_STATUS = "corrections_by_status"  # KeyIndex: correction ids by status ("open", "approved", "rejected")
INDEXES = ()


def to_doc(c: Correction) -> dict[str, Any]:
    d = asdict(c)
    d.pop("events")
    d["_id"] = d.pop("correction_id")
    return d


def from_doc(d: dict[str, Any]) -> Correction:
    names = {f.name for f in fields(Correction)} - {"events", "correction_id"}
    return Correction(correction_id=d["_id"], **{k: d.get(k) for k in names})


class CorrectionRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox
        self.by_status = KeyIndex(db[BY_STATUS])

    def add(self, c: Correction) -> None:
        self.by_status.add(c.status, [c.correction_id])
        self.db[CORRECTIONS].insert_one(to_doc(c))

    def get(self, correction_id: str) -> Correction | None:
        d = self.db[CORRECTIONS].find_one({"_id": correction_id}, {"_outbox": 0})
        return from_doc(d) if d else None

    def decide(self, c: Correction) -> bool:
        """Only an open request can be decided (the filter names its `_id`)."""
        self.by_status.add(c.status, [c.correction_id])
        res = self.db[CORRECTIONS].update_one({"_id": c.correction_id, "status": "open"}, {"$set": {
            "status": c.status, "decided_by": c.decided_by, "decided_at": c.decided_at,
            "decision_note": c.decision_note}})
        return bool(res.modified_count)

    def listing(self, status: str | None, township: str | None) -> list[Correction]:
        """Requests of a status (or all), of a township (or all), oldest first: the status lists, then
        the requests by `_id`."""
        docs = self.by_status.documents([status] if status else STATUSES, self.db[CORRECTIONS],
                                        lambda key, d: d["status"] == key and (township is None or d["township"] == township),
                                        pending=lambda key, d: township is not None and d["status"] == key,
                                        projection={"_outbox": 0})
        return [from_doc(d) for d in sorted(docs, key=lambda d: (d["filed_at"], d["_id"]))]

    def report_overdue(self, c: Correction) -> bool:
        """Flag and publish once, and only while the request is still open: a decision made since
        it was listed wins (the filter is checked by the write; a small collection)."""
        matched, _ = self.outbox.update(CORRECTIONS, c.correction_id, {"$set": {"overdue_reported": True}},
                                        [c.overdue_event()], where={"status": "open", "overdue_reported": False})
        return matched

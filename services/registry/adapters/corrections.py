"""Correction requests in the store (`_id` = correction id); the overdue event rides in the same write."""
from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from shared.store import IndexSpec, OutboxWriter

from ..domain.corrections import Correction

CORRECTIONS = "corrections"
INDEXES = (IndexSpec(CORRECTIONS, (("status", 1), ("due_at", 1))),)


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

    def add(self, c: Correction) -> None:
        self.db[CORRECTIONS].insert_one(to_doc(c))

    def get(self, correction_id: str) -> Correction | None:
        d = self.db[CORRECTIONS].find_one({"_id": correction_id}, {"_outbox": 0})
        return from_doc(d) if d else None

    def decide(self, c: Correction) -> bool:
        """Only an open request can be decided (a small collection: the status filter is cheap)."""
        res = self.db[CORRECTIONS].update_one({"_id": c.correction_id, "status": "open"}, {"$set": {
            "status": c.status, "decided_by": c.decided_by, "decided_at": c.decided_at,
            "decision_note": c.decision_note}})
        return bool(res.modified_count)

    def listing(self, status: str | None, township: str | None) -> list[Correction]:
        q: dict[str, Any] = {}
        if status:
            q["status"] = status
        if township:
            q["township"] = township
        return [from_doc(d) for d in self.db[CORRECTIONS].find(q, {"_outbox": 0}).sort("filed_at", 1)]

    def report_overdue(self, c: Correction) -> bool:
        """Flag and publish once, and only while the request is still open: a decision made since
        it was listed wins (the filter is checked by the write; a small collection)."""
        matched, _ = self.outbox.update(CORRECTIONS, c.correction_id, {"$set": {"overdue_reported": True}},
                                        [c.overdue_event()], where={"status": "open", "overdue_reported": False})
        return matched

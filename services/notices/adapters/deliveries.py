"""The store side of delivering notices (MongoDB; every write by `_id`, compare-and-set where two
writers could meet).

Collections of a county's notices database:
- `notices` (repository.py): the notice and its delivery state — `status`, `delivery` {id, round,
  attempt_no, sending, sending_since, next_at, provider_id, error}, `attempts`, `receipts`.
- `deliveries_due`: one pointer per notice still to send {_id: notice id, due_at, channel, held}.
  A WORK QUEUE: a pointer is deleted when its notice is sent, delivered or dead, so the collection
  holds pending items alone. That is why the loop may find by `due_at` here (FerretDB scans the
  collection for any filter but `_id`): never query the growing `notices` by anything but `_id`.
- `dead_notices`: one pointer per dead notice {_id: notice id, at, kind, channel, township, error},
  removed on resend: the staff's list, small by the same rule.
- `sms_counters`: per-number limits, `_id`-keyed ("<phone>:<YYYY-MM-DD>", "<phone>:text:<hash>").
- `receipts_waiting`: receipts that came before their send was recorded {_id: delivery id, receipts}.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from shared.store import IndexSpec, insert_many_once, insert_once

NOTICES = "notices"
DUE = "deliveries_due"
DEAD = "dead_notices"
COUNTERS = "sms_counters"
WAITING = "receipts_waiting"
INDEXES = (IndexSpec(DUE, (("due_at", ASCENDING),)),)


def fresh_delivery(county: str, notice_id: str, round_no: int = 1) -> dict[str, Any]:
    from ..domain.delivery import delivery_id
    return {"id": delivery_id(county, notice_id, round_no), "round": round_no, "attempt_no": 0, "sending": None,
            "sending_since": None, "next_at": None, "provider_id": None, "error": None}


class DeliveryStore:
    def __init__(self, db, county: str):
        self.db = db
        self.county = county

    # ---- the work queue ---------------------------------------------------------------------------

    def point_due(self, notice_id: str, due_at: datetime, channel: str) -> None:
        """One pointer per notice however often it is pointed at (a redelivered event, a resend)."""
        self.point_due_many([(notice_id, due_at, channel)])

    def point_due_many(self, due: list[tuple[str, datetime, str]]) -> None:
        """point_due for a batch of (notice id, due at, channel), one insert."""
        insert_many_once(self.db[DUE], [{"_id": nid, "due_at": at, "channel": ch, "held": None} for nid, at, ch in due])

    def due(self, now: datetime, limit: int) -> list[dict]:
        # A filter on `due_at`, not `_id`: acceptable ONLY because deliveries_due holds pending
        # pointers alone (each deleted when its notice is done), so the scan is of the backlog.
        return list(self.db[DUE].find({"due_at": {"$lte": now}}).sort("due_at", ASCENDING).limit(limit))

    def reschedule(self, notice_id: str, due_at: datetime, held: str | None = None) -> None:
        self.db[DUE].update_one({"_id": notice_id}, {"$set": {"due_at": due_at, "held": held}})

    def done(self, notice_id: str) -> None:
        self.db[DUE].delete_one({"_id": notice_id})

    def held_count(self, reason: str) -> int:
        return self.db[DUE].count_documents({"held": reason})  # the small work queue only (see due())

    # ---- the notice's delivery state -----------------------------------------------------------

    def notice(self, notice_id: str) -> dict | None:
        return self.db[NOTICES].find_one({"_id": notice_id})

    def begin_attempt(self, doc: dict, attempt_id: str, now: datetime) -> bool:
        """queued → sending, compare-and-set on the status and the attempt number read: of two
        loops that took the same pointer, one sends."""
        d = doc.get("delivery") or fresh_delivery(self.county, doc["_id"])
        where = {"_id": doc["_id"], "status": "queued"}
        where.update({"delivery.attempt_no": d["attempt_no"]} if doc.get("delivery") else {"delivery": {"$exists": False}})
        res = self.db[NOTICES].update_one(where, {"$set": {
            "status": "sending", "delivery": {**d, "attempt_no": d["attempt_no"] + 1, "sending": attempt_id,
                                              "sending_since": now}}})
        return bool(res.modified_count)

    def finish_attempt(self, notice_id: str, attempt_id: str, status: str, attempt: dict, **delivery) -> bool:
        """sending → `status` with the attempt on record, only if this attempt is still the one in
        flight (a recovery may have taken the notice over)."""
        update = {"status": status, "delivery.sending": None, "delivery.sending_since": None,
                  **{f"delivery.{k}": v for k, v in delivery.items()}}
        res = self.db[NOTICES].update_one({"_id": notice_id, "status": "sending", "delivery.sending": attempt_id},
                                          {"$set": update, "$push": {"attempts": attempt}})
        return bool(res.modified_count)

    def resend(self, doc: dict, county: str) -> bool:
        """dead | failed → queued, a new delivery round (new OutId), compare-and-set on status and round."""
        d = doc.get("delivery") or fresh_delivery(county, doc["_id"])
        res = self.db[NOTICES].update_one(
            {"_id": doc["_id"], "status": doc["status"], "delivery.round": d["round"]},
            {"$set": {"status": "queued", "delivery": fresh_delivery(county, doc["_id"], d["round"] + 1)}})
        return bool(res.modified_count)

    # ---- dead notices ----------------------------------------------------------------------------

    def mark_dead(self, doc: dict, at: datetime, error: str | None) -> None:
        insert_once(self.db[DEAD], {"_id": doc["_id"], "at": at, "kind": doc.get("kind"), "channel": doc.get("channel"),
                                    "township": doc.get("township"), "year": doc.get("year"), "error": error})

    def unmark_dead(self, notice_id: str) -> None:
        self.db[DEAD].delete_one({"_id": notice_id})

    def dead(self, limit: int) -> list[dict]:
        return list(self.db[DEAD].find({}).sort("at", ASCENDING).limit(limit))  # the small pointer collection

    # ---- per-number limits -----------------------------------------------------------------------

    def take_daily(self, counter_id: str, notice_id: str, limit: int) -> bool:
        """Count this notice against its number's day, once (a retry of the same notice is not a new
        SMS); False when the day's `limit` is reached by other notices."""
        c = self.db[COUNTERS]
        c.update_one({"_id": counter_id}, {"$setOnInsert": {"count": 0, "notices": []}}, upsert=True)
        res = c.update_one({"_id": counter_id, "count": {"$lt": limit}, "notices": {"$ne": notice_id}},
                           {"$inc": {"count": 1}, "$push": {"notices": notice_id}})
        if res.modified_count:
            return True
        doc = c.find_one({"_id": counter_id}) or {}
        return notice_id in (doc.get("notices") or [])

    def take_text(self, guard_id: str, notice_id: str, now: datetime, window: timedelta) -> datetime | None:
        """One identical text per number per `window`: None if this notice may send it now, else when
        it may (the other notice's send + window)."""
        c = self.db[COUNTERS]
        try:
            res = c.update_one({"_id": guard_id, "$or": [{"at": {"$lte": now - window}}, {"notice": notice_id}]},
                               {"$set": {"at": now, "notice": notice_id}}, upsert=True)
            if res.matched_count or res.upserted_id is not None:
                return None
        except DuplicateKeyError:  # the guard exists and is another notice's, within the window
            pass
        doc = c.find_one({"_id": guard_id}) or {}
        at = doc.get("at")
        return (at + window) if at else now + window

    # ---- receipts ---------------------------------------------------------------------------------

    def apply_receipt(self, notice_id: str, delivery_id: str, key: str, record: dict, status: str | None,
                      from_status: tuple[str, ...]) -> bool:
        """Record a receipt once (its key in `receipt_keys`) and, with `status`, move the notice;
        only a notice of that delivery round whose send was recorded."""
        where = {"_id": notice_id, "delivery.id": delivery_id, "receipt_keys": {"$ne": key},
                 "status": {"$in": list(from_status)}}
        update: dict[str, Any] = {"$push": {"receipts": record, "receipt_keys": key}}
        if status:
            update["$set"] = {"status": status, "delivery.error": None if status == "delivered" else record.get("err_code")}
        return bool(self.db[NOTICES].update_one(where, update).modified_count)

    def keep_waiting(self, delivery_id: str, receipt: dict) -> None:
        self.db[WAITING].update_one({"_id": delivery_id}, {"$push": {"receipts": receipt}}, upsert=True)

    def waiting(self, delivery_id: str) -> list[dict]:
        doc = self.db[WAITING].find_one({"_id": delivery_id})
        return list((doc or {}).get("receipts") or [])

    def drop_waiting(self, delivery_id: str) -> None:
        self.db[WAITING].delete_one({"_id": delivery_id})

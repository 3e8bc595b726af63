"""Payments storage. Every hot path is an `_id` lookup or a unique `_id` insert:

- `households`  read model fed by registry events, `_id` "<year>:<household_no>"
- `orders`      `_id` order number
- `idempotency` `_id` "<gateway>:<Idempotency-Key>" → order number and body hash
- `nonces`      `_id` "<gateway>:<nonce>" (replay protection)
- `payments`    `_id` "<year>:<household_no>": at most one confirmed payment per household-year,
                 written with its payments.payment.confirmed event (the exactly-once step)
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared.store import IndexSpec, OutboxWriter, insert_once

from ..domain.model import Order, QuoteLine

HOUSEHOLDS, ORDERS, IDEMPOTENCY, NONCES, PAYMENTS = "households", "orders", "idempotency", "nonces", "payments"
OUTBOX_COLLECTIONS = (PAYMENTS,)
INDEXES = (
    IndexSpec(ORDERS, (("household_key", 1),)),
    IndexSpec(PAYMENTS, (("order_no", 1),), unique=True),
    IndexSpec(NONCES, (("at", 1),)),
)


def hh_key(year: int, household_no: str) -> str:
    return f"{year}:{household_no}"


def order_to_doc(o: Order) -> dict[str, Any]:
    return {"_id": o.order_no, "household_no": o.household_no, "household_key": hh_key(o.year, o.household_no),
            "year": o.year, "gateway": o.gateway, "channel": o.channel, "amount_fen": o.amount_fen,
            "lines": [{"person_id": l.person_id, "name": l.name, "standard_fen": l.standard_fen,
                       "subsidy_fen": l.subsidy_fen} for l in o.lines],
            "created_at": o.created_at, "expires_at": o.expires_at, "status": o.status,
            "transaction_id": o.transaction_id, "paid_at": o.paid_at, "receipt_no": o.receipt_no}


def order_from_doc(d: dict[str, Any]) -> Order:
    return Order(d["_id"], d["household_no"], d["year"], d["gateway"], d["channel"], d["amount_fen"],
                 tuple(QuoteLine(l["person_id"], l["name"], l["standard_fen"], l["subsidy_fen"]) for l in d["lines"]),
                 d["created_at"], d["expires_at"], d["status"], d.get("transaction_id"), d.get("paid_at"),
                 d.get("receipt_no"))


class PaymentsRepository:
    def __init__(self, db, outbox: OutboxWriter):
        self.db = db
        self.outbox = outbox

    # read model
    def upsert_household(self, payload: dict[str, Any]) -> None:
        key = hh_key(payload["year"], payload["household_no"])
        self.db[HOUSEHOLDS].replace_one({"_id": key}, {"_id": key, **payload}, upsert=True)

    def household(self, year: int, household_no: str) -> dict[str, Any] | None:
        return self.db[HOUSEHOLDS].find_one({"_id": hh_key(year, household_no)})

    def payment(self, year: int, household_no: str) -> dict[str, Any] | None:
        return self.db[PAYMENTS].find_one({"_id": hh_key(year, household_no)}, {"_outbox": 0})

    # orders
    def order(self, order_no: str) -> Order | None:
        d = self.db[ORDERS].find_one({"_id": order_no})
        return order_from_doc(d) if d else None

    def add_order(self, o: Order) -> None:
        self.db[ORDERS].insert_one(order_to_doc(o))

    def drop_order(self, order_no: str) -> None:
        self.db[ORDERS].delete_one({"_id": order_no, "status": "created"})

    def mark_order(self, o: Order) -> None:
        self.db[ORDERS].update_one({"_id": o.order_no}, {"$set": {
            "status": o.status, "transaction_id": o.transaction_id, "paid_at": o.paid_at, "receipt_no": o.receipt_no}})

    def idempotent(self, gateway: str, key: str) -> dict[str, Any] | None:
        return self.db[IDEMPOTENCY].find_one({"_id": f"{gateway}:{key}"})

    def claim_idempotency(self, gateway: str, key: str, order_no: str, body_hash: str, at: datetime) -> bool:
        return insert_once(self.db[IDEMPOTENCY], {"_id": f"{gateway}:{key}", "order_no": order_no,
                                                  "body_hash": body_hash, "at": at})

    def use_nonce(self, gateway: str, nonce: str, at: datetime) -> bool:
        return insert_once(self.db[NONCES], {"_id": f"{gateway}:{nonce}", "at": at})

    def record_payment(self, o: Order, event, at: datetime, correlation_id: str | None) -> bool:
        """The exactly-once step: one payment per household-year, written with its event."""
        doc = {"_id": hh_key(o.year, o.household_no), "order_no": o.order_no, "receipt_no": o.receipt(),
               "transaction_id": o.transaction_id, "amount_fen": o.amount_fen, "gateway": o.gateway,
               "channel": o.channel, "paid_at": o.paid_at, "recorded_at": at}
        try:
            self.outbox.insert(PAYMENTS, doc, [event], correlation_id=correlation_id)
            return True
        except DuplicateKeyError:
            return False

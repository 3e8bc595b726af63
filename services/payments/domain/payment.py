"""A household-year payment record (缴费记录) as an aggregate — the household's payment, or a
supplementary one (补缴) for members who joined after it (`supplement`, see model.supplement_key):
its allowed states and the transitions that change them, each with the event it publishes.

    confirmed ──audit──▶ audited
        │                  │
        └──reverse──▶ reversed ◀──reverse

001_93f5b63ac6b4a653.txt 七(二): the tax bureau audits the money collected (缴款审核) and the medical
insurance bureau then confirms the enrolment. Money a gateway gave back was not collected, so a
reversed payment is never audited (nor counted in remittances, 七(四)); a reversal is the bank's
account of a fact, so it is recorded whether or not the audit came first (registry then revokes
the enrolment either way). The record is saved by compare-and-set on its `version`
(shared.aggregate), so an audit and a reversal racing end in one of the two orders above, never
in an audited record whose money went back.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.aggregate import machine
from shared.clock import iso
from shared.errors import Conflict
from shared.events import Event

PAYMENT = machine("PAYMENT", {"confirmed": ("audited", "reversed"), "audited": ("reversed",), "reversed": ()},
                  {"confirmed": "已确认", "audited": "已审核", "reversed": "已冲正"})


@dataclass(frozen=True)
class Change:
    """One transition of an aggregate, to be saved by compare-and-set on the version it was read at:
    the fields it sets, the history entry it appends, the events that ride in the same write."""
    set_: dict[str, Any]
    events: tuple[Event, ...] = ()
    history: dict[str, Any] | None = None

    def update(self) -> dict[str, Any]:
        u: dict[str, Any] = {"$set": dict(self.set_)}
        if self.history is not None:
            u["$push"] = {"history": self.history}
        return u


@dataclass
class Payment:
    """The stored record (`payments` collection) of a household-year payment; `doc` as read."""
    doc: dict[str, Any]

    @property
    def status(self) -> str:
        return self.doc["status"]

    @property
    def version(self) -> int:
        return int(self.doc.get("version", 0))  # 0: written before versions

    def _ref(self) -> dict[str, Any]:
        d = self.doc
        return {"order_no": d["order_no"], "receipt_no": d["receipt_no"], "household_no": d["household_no"],
                "year": d["year"], "county": d["county"], "township": d["township"], "village": d["village"],
                "amount_fen": d["amount_fen"], "person_ids": d["person_ids"],
                **({"supplement": True} if d.get("supplement") else {})}

    def audit(self, at: datetime, actor: str, source: str) -> Change | None:
        """confirmed → audited with payments.payment.audited; None when it is audited already."""
        if self.status == "audited":
            return None
        if self.status == "reversed":
            raise Conflict("PAYMENT_REVERSED", "该笔缴费已冲正，不能审核", {"order_no": self.doc["order_no"]})
        PAYMENT.check(self.status, "audited", {"order_no": self.doc["order_no"]})
        event = Event("payments.payment.audited", {**self._ref(), "audited_at": iso(at), "audited_by": actor,
                                                   "source": source})
        return Change({"status": "audited", "audited_at": at, "audited_by": actor, "audit_source": source}, (event,),
                      {"at": at, "status": "audited", "by": actor, "amount_fen": self.doc["amount_fen"]})

    def reverse(self, at: datetime, by: str, reversal_id: str, reason: str) -> Change | None:
        """confirmed or audited → reversed with payments.payment.reversed. The same reversal again is
        None (done); another reversal of a reversed payment is refused."""
        if self.status == "reversed":
            if (self.doc.get("reversal") or {}).get("reversal_id", reversal_id) == reversal_id:
                return None
            raise Conflict("ORDER_ALREADY_REVERSED", "该订单已冲正", {"order_no": self.doc["order_no"]})
        PAYMENT.check(self.status, "reversed", {"order_no": self.doc["order_no"]})
        amount = self.doc["amount_fen"]
        event = Event("payments.payment.reversed", {**self._ref(), "reason": reason, "reversal_id": reversal_id,
                                                    "reversed_at": iso(at)})
        return Change({"status": "reversed", "reversed_at": at,
                       "reversal": {"reversal_id": reversal_id, "reason": reason, "at": at, "by": by}}, (event,),
                      {"at": at, "status": "reversed", "by": by, "amount_fen": -amount, "reason": reason})

    def applied(self, change: Change) -> "Payment":
        """The record as it stands after `change` was saved (version bumped)."""
        doc = {**self.doc, **change.set_, "version": self.version + 1}
        if change.history is not None:
            doc["history"] = [*self.doc.get("history", []), change.history]
        return Payment(doc)

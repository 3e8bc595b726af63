"""Payments' state machines (services/payments/domain): only the listed transitions, each with its
event, whatever order the requests arrive in.

001_93f5b63ac6b4a653.txt 七(二): 税务局应于3个工作日内完成缴款审核 — the audit verifies money collected, so a
payment whose money went back is never audited; 七(四) 解款 — nor remitted. A gateway's reversal is the
bank's account of a fact and is recorded after an audit too (registry then revokes the enrolment).
002_9137bd928f251374.txt 六(二): one withholding debit per household until the bank's result is back.
"""
from datetime import datetime, timedelta

import pytest

from services.payments.domain import withholding as wh
from services.payments.domain.model import ORDER, Order, QuoteLine
from services.payments.domain.payment import PAYMENT, Payment
from services.payments.domain.reconciliation import remittance_summary, totals_by_day
from shared.clock import SHANGHAI
from shared.errors import Conflict

AT = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)


def payment(status="confirmed", **extra):
    return Payment({"_id": "2020:H1", "order_no": "P1", "receipt_no": "R1", "household_no": "H1", "year": 2020,
                    "county": "431122", "township": "花桥镇", "village": "花桥村", "amount_fen": 50000,
                    "person_ids": ["a", "b"], "status": status, "version": 1, "paid_day": "2019-11-15",
                    "channel": "mobile_app", "gateway": "bank-a", "history": [{"status": "confirmed"}], **extra})


def test_the_payment_table_allows_only_audit_and_reversal_and_nothing_after_reversal():
    assert PAYMENT.can("confirmed", "audited") and PAYMENT.can("confirmed", "reversed")
    assert PAYMENT.can("audited", "reversed")
    assert not PAYMENT.can("reversed", "audited") and not PAYMENT.can("reversed", "confirmed")
    assert not PAYMENT.can("audited", "confirmed")


def test_a_reversed_payment_is_not_audited():
    with pytest.raises(Conflict) as e:
        payment("reversed").audit(AT, "tax", "staff")
    assert e.value.code == "PAYMENT_REVERSED"


def test_an_audit_carries_its_event_and_a_repeat_is_nothing():
    p = payment()
    change = p.audit(AT, "tax", "staff")
    (ev,) = change.events
    assert ev.type == "payments.payment.audited" and ev.payload["person_ids"] == ["a", "b"]
    after = p.applied(change)
    assert (after.status, after.version, [h["status"] for h in after.doc["history"]]) == (
        "audited", 2, ["confirmed", "audited"])
    assert after.audit(AT, "tax", "staff") is None


def test_an_audited_payment_is_reversed_and_then_left_out_of_remittances():
    after = payment("audited").reverse(AT, "bank-a", "RV1", "gateway_reversal")
    assert after.set_["status"] == "reversed" and after.events[0].type == "payments.payment.reversed"
    reversed_ = payment("audited").applied(after)
    rows = remittance_summary(totals_by_day([reversed_.doc, payment().doc]), AT.date() - timedelta(days=2), AT.date())
    assert sum(r["households"] for r in rows) == 1


def test_the_same_reversal_again_is_nothing_and_another_is_refused():
    p = payment().applied(payment().reverse(AT, "bank-a", "RV1", "gateway_reversal"))
    assert p.reverse(AT, "bank-a", "RV1", "gateway_reversal") is None
    with pytest.raises(Conflict) as e:
        p.reverse(AT, "bank-a", "RV2", "gateway_reversal")
    assert e.value.code == "ORDER_ALREADY_REVERSED"


def order(status="created"):
    return Order("P1", "H1", 2020, "bank-a", "mobile_app", 50000, (QuoteLine("a", "甲", 25000, 0),), AT,
                 AT + timedelta(hours=2), status, version=1)


def test_an_order_goes_created_paid_reversed_and_never_back():
    rec = {"order_no": "P1", "transaction_id": "T1", "paid_at": AT.isoformat(), "receipt_no": "R1",
           "paid_day": "2019-11-15"}
    assert order().mark_paid(rec).set_["status"] == "paid"
    assert order("reversed").mark_paid(rec) is None  # the worker's late mark does not undo a reversal
    assert order("duplicate_payment").mark_paid(rec) is None
    # a reversal that finds the order still `created` (the worker has not marked it) goes through paid
    change = order().reverse(AT, "bank-a", "RV1", "gateway_reversal", payment=rec)
    assert change.set_["status"] == "reversed" and change.set_["transaction_id"] == "T1"
    assert not ORDER.can("reversed", "paid") and not ORDER.can("paid", "duplicate_payment")
    with pytest.raises(Conflict) as e:
        order().reverse(AT, "bank-a", "RV1", "gateway_reversal")  # never paid
    assert e.value.code == "ORDER_TRANSITION_REFUSED"


def test_an_agreement_is_held_by_one_batch_at_a_time():
    a = {"household_no": "H1", "pending_batch": None, "status": "active"}
    assert wh.hold(a, "W1").set_ == {"pending_batch": "W1"}
    assert wh.hold({**a, "pending_batch": "W1"}, "W1") is None
    with pytest.raises(Conflict) as e:
        wh.hold({**a, "pending_batch": "W1"}, "W2")
    assert e.value.code == "IN_PENDING_BATCH"
    assert wh.release({**a, "pending_batch": "W1"}, "W2") is None  # another batch's result frees nothing
    assert wh.release({**a, "pending_batch": "W1"}, "W1").set_ == {"pending_batch": None}


def test_a_batch_goes_to_the_bank_only_with_the_lines_it_holds():
    lines = [{"line_no": n, "household_no": f"H{n}", "amount_fen": 100 * n} for n in (1, 2, 3)]
    b = {"_id": "W1", "status": "holding", "lines": lines, "skipped": []}
    with pytest.raises(Conflict):
        wh.export_csv(b)
    change = wh.sent(b, {"H1", "H3"})
    assert change.set_["status"] == "sent" and [l["line_no"] for l in change.set_["lines"]] == [1, 2]
    assert change.set_["total_fen"] == 400
    assert change.set_["skipped"] == [{"household_no": "H2", "code": "IN_PENDING_BATCH"}]
    assert wh.sent(b, set()).set_["status"] == "cancelled"
    with pytest.raises(Conflict):
        wh.sent({**b, "status": "sent"}, {"H1"})
    assert not wh.BATCH.can("result_imported", "sent")

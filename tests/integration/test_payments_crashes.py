"""No half-done transition of a payment is ever acknowledged (issue 9 item 2), on the real store
and bus: the transition is one compare-and-set write carrying its event; the side records after it
(reversal record, receipt status, money log, order status) are completed by the caller's retry
or, without one, by the payments worker from the transition's own event.

A crash is simulated by making one store step raise once, as a process dying there would leave it.
"""
from __future__ import annotations

import time

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.adapters.repository import PaymentsRepository
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.payments.service_layer import handlers
from shared.clock import FixedClock
from shared.store import OutboxWriter
from tests.helpers import declare, running
from tests.integration.test_payments import (  # noqa: F401 — fixtures and helpers of the payments tests
    COUNTY, NOW, TAX, auth, order, outbox_events, pay, pc, register, secrets_files, signed)


def _crash_once(monkeypatch, cls, name, when=lambda *a, **k: True):
    """Make `cls.name` raise the first time `when(*args)` holds (the process died at that step)."""
    real = getattr(cls, name)
    fired = []

    def step(self, *args, **kwargs):
        if not fired and when(*args, **kwargs):
            fired.append(True)
            raise RuntimeError(f"process died in {name}")
        return real(self, *args, **kwargs)
    monkeypatch.setattr(cls, name, step)
    return fired


def _paid(pc, no):
    api = payments_app(FixedClock(NOW)).test_client()
    register(pc, no, n=2)
    o = order(api, no)
    return api, o, pay(api, o)


def _reversal(o, ack, rid):
    return {"reversal_id": rid, "order_no": o["order_no"], "transaction_id": ack["transaction_id"],
            "amount_fen": o["amount_fen"]}


def _reversal_is_complete(pc, api, o, ack) -> bool:
    doc = pc.db.payments.find_one({"_id": f"2020:{o['household_no']}"})
    receipt = pc.db.receipts.find_one({"_id": ack["receipt_no"]})
    log = api.get(f"/v1/counties/431122/money-log?ref={o['order_no']}", headers=auth(COUNTY)).json["entries"]
    return (doc["status"] == "reversed" and receipt is not None and receipt["status"] == "reversed"
            and pc.db.orders.find_one({"_id": o["order_no"]})["status"] == "reversed"
            and ("reversed", -o["amount_fen"]) in [(e["action"], e["amount_fen"]) for e in log]
            and pc.db.reversals.find_one({"_id": o["order_no"]}) is not None)


def _reverse_crashing(pc, o, ack, rid):
    with pytest.raises(RuntimeError):
        handlers.reverse_payment(payments_boot.repository(pc), FixedClock(NOW), "bank-a", _reversal(o, ack, rid), None)


def test_a_reversal_that_died_before_its_write_is_made_by_the_retry(secrets_files, pc, monkeypatch):
    """The reported case: the process died between the reversal's claim and its write, and the
    gateway's retry within 60 s answered SUCCESS having written nothing (the enrolment was never
    revoked). Now there is no claim: the retry makes the transition and everything after it."""
    api, o, ack = _paid(pc, "CRR-0001")
    _crash_once(monkeypatch, OutboxWriter, "update", lambda coll, *a, **k: coll == "payments")
    _reverse_crashing(pc, o, ack, "RV-CRR-1")
    assert pc.db.payments.find_one({"_id": "2020:CRR-0001"})["status"] == "confirmed"  # nothing acknowledged
    r = signed(api, "/v1/counties/431122/reversals", _reversal(o, ack, "RV-CRR-1"))
    assert r.status_code == 200 and r.json["revokes_enrolment"]
    doc = pc.db.payments.find_one({"_id": "2020:CRR-0001"})
    assert len(outbox_events(doc, "payments.payment.reversed")) == 1
    assert _reversal_is_complete(pc, api, o, ack)


def test_a_reversal_that_died_after_its_write_is_completed_by_the_retry(secrets_files, pc, monkeypatch):
    api, o, ack = _paid(pc, "CRR-0002")
    _crash_once(monkeypatch, PaymentsRepository, "set_receipt_status")
    _reverse_crashing(pc, o, ack, "RV-CRR-2")
    assert pc.db.payments.find_one({"_id": "2020:CRR-0002"})["status"] == "reversed"
    assert not _reversal_is_complete(pc, api, o, ack)
    r = signed(api, "/v1/counties/431122/reversals", _reversal(o, ack, "RV-CRR-2"))
    assert r.status_code == 200 and r.json["duplicate"]
    assert _reversal_is_complete(pc, api, o, ack)
    assert len(outbox_events(pc.db.payments.find_one({"_id": "2020:CRR-0002"}), "payments.payment.reversed")) == 1


def test_an_audit_that_died_after_its_write_is_completed_by_the_retry(secrets_files, pc, monkeypatch):
    api, o, ack = _paid(pc, "CRA-0001")
    _crash_once(monkeypatch, PaymentsRepository, "log_money", lambda ref, action, *a, **k: action == "audited")
    with pytest.raises(RuntimeError):
        handlers.audit_payment(payments_boot.repository(pc), FixedClock(NOW), 2020, "CRA-0001", "tax-bureau", "staff")
    r = api.post("/v1/counties/431122/payments/2020/CRA-0001/audit", headers=auth(TAX))
    assert r.status_code == 200 and r.json["status"] == "audited"
    log = api.get("/v1/counties/431122/money-log?ref=2020:CRA-0001", headers=auth(COUNTY)).json["entries"]
    assert [e["action"] for e in log] == ["audited"]  # (the confirmation's row comes from the worker)


def test_without_a_retry_the_payments_worker_completes_a_reversal_and_an_audit(secrets_files, pc, infra, namespace,
                                                                                monkeypatch):
    """The gateway never retries (and staff never audit again): the transitions' own events, published
    by the relay, bring the payments worker to write what the dead requests did not."""
    api, o, ack = _paid(pc, "CRW-0001")
    _, o2, _ = _paid(pc, "CRW-0002")
    _crash_once(monkeypatch, PaymentsRepository, "set_receipt_status")
    _crash_once(monkeypatch, PaymentsRepository, "log_money", lambda ref, action, *a, **k: action == "audited")
    _reverse_crashing(pc, o, ack, "RV-CRW-1")
    with pytest.raises(RuntimeError):
        handlers.audit_payment(payments_boot.repository(pc), FixedClock(NOW), 2020, "CRW-0002", "tax-bureau", "staff")
    assert not _reversal_is_complete(pc, api, o, ack)
    assert pc.db.money_log.find_one({"_id": "2020:CRW-0002:audited"}) is None
    handlers_ = payments_boot.event_handlers(pc)
    declare(pc, handlers_)
    with running(pc.consumer(handlers_)), running(pc.relay()):
        deadline = time.monotonic() + 30
        while not (_reversal_is_complete(pc, api, o, ack) and pc.db.money_log.find_one({"_id": "2020:CRW-0002:audited"})):
            assert time.monotonic() < deadline, "the worker did not complete the transitions"
            time.sleep(0.1)
    assert pc.db.money_log.find_one({"_id": "2020:CRW-0002:audited"})["order_no"] == o2["order_no"]

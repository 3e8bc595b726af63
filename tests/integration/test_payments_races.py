"""Payments' aggregates under concurrency, on the real store: each transition is one compare-and-set
write (services/payments/domain: PAYMENT, ORDER, WITHHOLDING_BATCH, AGREEMENT_HOLD), so two
writers of one payment, order or agreement never both win.

Rules quoted: 001_93f5b63ac6b4a653.txt 七(二) (税务局应于3个工作日内完成缴款审核 — the audit verifies money
collected, so money a gateway gave back is never audited) and 七(四) (每3天解款 — reversed money is
not remitted); 002_9137bd928f251374.txt 六(二) (三方协议代扣: one debit per household and batch result).

Each race is driven twice: with the interleaving forced (one writer paused right after its read
until the other has written: the case that lost a write before) and with two threads released
together by a barrier, ten times over.
"""
from __future__ import annotations

import threading
from datetime import datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.adapters.repository import PaymentsRepository
from services.payments.domain import withholding as wh
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.payments.service_layer import handlers
from shared.auth import Principal
from shared.clock import SHANGHAI, FixedClock
from tests.integration.test_payments import (  # noqa: F401 — fixtures and helpers of the payments tests
    COUNTY, NOW, TAX, auth, order, outbox_events, pay, pc, register, secrets_files, signed)

STAFF = Principal("county", "county", "431122")


def _run(*targets):
    errors: list[BaseException] = []

    def wrap(t):
        def run():
            try:
                t()
            except BaseException as e:  # noqa: BLE001 — reported to the test below
                errors.append(e)
        return run
    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


def _paid(pc, no):
    api = payments_app(FixedClock(NOW)).test_client()
    register(pc, no, n=2)
    o = order(api, no)
    return o, pay(api, o)


def _reversal(o, ack, rid):
    return {"reversal_id": rid, "order_no": o["order_no"], "transaction_id": ack["transaction_id"],
            "amount_fen": o["amount_fen"]}


def _check_audit_and_reversal(pc, no, audit_reply, reversal_reply):
    """The end state both orders of the race must reach: reversed, with exactly the events and the
    history of the transitions that happened, and not remitted."""
    assert reversal_reply.status_code == 200 and reversal_reply.json["revokes_enrolment"], reversal_reply.json
    doc = pc.db.payments.find_one({"_id": f"2020:{no}"})
    assert doc["status"] == "reversed"
    assert len(outbox_events(doc, "payments.payment.reversed")) == 1
    audited = outbox_events(doc, "payments.payment.audited")
    if audit_reply.status_code == 200:  # the audit came first; the reversal followed it
        assert len(audited) == 1
        assert [h["status"] for h in doc["history"]] == ["confirmed", "audited", "reversed"]
    else:
        assert (audit_reply.status_code, audit_reply.json["code"]) == (409, "PAYMENT_REVERSED")
        assert not audited and [h["status"] for h in doc["history"]] == ["confirmed", "reversed"]
    assert doc["version"] == len(doc["history"])
    # 七(四): what the payments worker makes of the payment's own events, in order: the confirmation
    # adds its money to the remittances, the reversal takes it back
    before = _remitted()
    seen = _worker_handles(pc, doc)
    assert seen[0] == ("payments.payment.confirmed", before + doc["amount_fen"]) and seen[-1] == (
        "payments.payment.reversed", before)
    return "audit first" if audit_reply.status_code == 200 else "reversal first"


def _remitted() -> int:
    periods = payments_app(FixedClock(NOW)).test_client().get("/v1/counties/431122/remittances?year=2020",
                                                               headers=auth(COUNTY)).json["periods"]
    return sum(p["amount_fen"] for p in periods)


def _worker_handles(pc, doc) -> list[tuple[str, int]]:
    """The payment's events (built as the relay builds them) handed to the payments worker's handlers
    one after another; after each, the remittances' total."""
    from services.payments.adapters.repository import SNAPSHOTS
    from shared.events import Envelope
    hs = payments_boot.event_handlers(pc)
    out = []
    for e in sorted(doc["_outbox"].values(), key=lambda e: e["seq"]):
        env = {k: v for k, v in e.items() if k != "snapshot"}
        if e.get("snapshot"):
            env["payload"] = SNAPSHOTS[e["type"]](doc)
        hs[e["type"]](Envelope.from_dict(env))
        out.append((e["type"], _remitted()))
    return out


def test_an_audit_paused_after_its_read_cannot_overwrite_a_reversal(secrets_files, pc, monkeypatch):
    """The audit reads the payment (confirmed), the gateway's reversal is written meanwhile, then the
    audit writes: before, its unconditional write left the refunded payment `audited` (and counted
    in remittances); now its compare-and-set loses, it reads again and refuses."""
    o, ack = _paid(pc, "ARP-0001")
    audit_read, reversed_ = threading.Event(), threading.Event()
    audit_thread: list[threading.Thread] = []
    real = PaymentsRepository.payment_by_id  # the read of a transition (by the payment's `_id`)

    def payment(self, key):
        doc = real(self, key)
        if audit_thread and threading.current_thread() is audit_thread[0] and not audit_read.is_set():
            audit_read.set()
            assert reversed_.wait(20)
        return doc
    monkeypatch.setattr(PaymentsRepository, "payment_by_id", payment)
    apis = [payments_app(FixedClock(NOW)).test_client() for _ in range(2)]
    replies = {}

    def audit():
        audit_thread.append(threading.current_thread())
        replies["audit"] = apis[0].post("/v1/counties/431122/payments/2020/ARP-0001/audit", headers=auth(TAX))

    def reverse():
        assert audit_read.wait(20)
        try:
            replies["reverse"] = signed(apis[1], "/v1/counties/431122/reversals", _reversal(o, ack, "RV-ARP"))
        finally:
            reversed_.set()
    _run(audit, reverse)
    assert _check_audit_and_reversal(pc, "ARP-0001", replies["audit"], replies["reverse"]) == "reversal first"


def test_an_audit_and_a_reversal_released_together_end_consistent(secrets_files, pc):
    """Rounds of an audit and a reversal of the same payment started by one barrier, the audit
    setting off 0, 1, 2 … 19 ms later (the reversal does more reads before its write, so the offsets
    sweep its write across the audit's read-to-write window): whichever lands first, the payment
    ends reversed with exactly the events of the transitions made."""
    import time
    seen = set()
    for rnd in range(20):
        no = f"ARB-{rnd:04d}"
        o, ack = _paid(pc, no)
        apis = [payments_app(FixedClock(NOW)).test_client() for _ in range(2)]
        start = threading.Barrier(2)
        replies = {}

        def audit():
            start.wait()
            time.sleep(rnd * 0.001)
            replies["audit"] = apis[0].post(f"/v1/counties/431122/payments/2020/{no}/audit", headers=auth(TAX))

        def reverse():
            start.wait()
            replies["reverse"] = signed(apis[1], "/v1/counties/431122/reversals", _reversal(o, ack, f"RV-ARB-{rnd}"))
        _run(audit, reverse)
        seen.add(_check_audit_and_reversal(pc, no, replies["audit"], replies["reverse"]))
    assert seen  # (which orders occurred is up to the scheduler; each one was checked whole)


# ---- withholding: the agreement's hold -----------------------------------------------------------

def _agreements(pc, bank, prefix, n):
    repo = payments_boot.repository(pc)
    nos = []
    for i in range(n):
        no = f"{prefix}-{i:02d}"
        register(pc, no, n=1)
        handlers.sign_agreement(repo, FixedClock(NOW), STAFF, {bank}, {
            "household_no": no, "year": 2020, "bank": bank, "account_no": f"6222{i:012d}", "account_name": "成员零",
            "signed_on": datetime(2019, 9, 10, tzinfo=SHANGHAI).date()})
        nos.append(no)
    return repo, nos


def _batch(repo, bank, seq, policy=None):
    from shared.config import ROOT
    from shared.policy import load_policy
    policy = policy or load_policy(ROOT / "policies" / "dongan-2020.json")
    try:
        return handlers.create_batch(repo, policy, FixedClock(NOW), STAFF, {"bank": bank, "year": 2020}, seq)
    except Exception as e:  # noqa: BLE001 — BATCH_EMPTY: the other batch holds every household
        assert getattr(e, "code", None) == "BATCH_EMPTY", e
        return e


def _check_batches(repo, nos, made):
    """Each household is in exactly one batch the bank sees, its agreement held by that batch; the
    other batch lists it as IN_PENDING_BATCH (or, holding none, was refused as BATCH_EMPTY)."""
    sent = [b for b in made if isinstance(b, dict)]
    assert sent, made
    lines = [l["household_no"] for b in sent for l in b["lines"]]
    assert sorted(lines) == sorted(nos), lines  # none twice, none left out
    for b in sent:
        stored = repo.batch(b["_id"])
        assert stored["status"] == "sent" and [l["line_no"] for l in stored["lines"]] == list(
            range(1, len(stored["lines"]) + 1))
        assert stored["total_fen"] == sum(l["amount_fen"] for l in stored["lines"])
        file_rows = wh.export_csv(stored).strip().split("\n")[1:-1]
        assert len(file_rows) == len(stored["lines"])
        for l in stored["lines"]:
            assert repo.agreement(l["household_no"])["pending_batch"] == b["_id"]
        others = {l["household_no"] for o in sent if o is not b for l in o["lines"]}
        assert others <= {s["household_no"] for s in stored["skipped"] if s["code"] == "IN_PENDING_BATCH"}


def test_two_batches_that_read_the_same_agreements_debit_each_household_once(secrets_files, pc, monkeypatch):
    """Both batch requests read the bank's agreements (all free) before either holds one: before,
    both batches carried every household (two debits each); now each hold is a compare-and-set and
    the loser skips that household with IN_PENDING_BATCH."""
    repo, nos = _agreements(pc, "bank-race-read", "HLD", 4)
    both_read = threading.Barrier(2)
    real = PaymentsRepository.active_agreements

    def active_agreements(self, bank):
        found = real(self, bank)
        both_read.wait(20)
        return found
    monkeypatch.setattr(PaymentsRepository, "active_agreements", active_agreements)
    made = []
    _run(lambda: made.append(_batch(repo, "bank-race-read", "AAAAA1")),
         lambda: made.append(_batch(repo, "bank-race-read", "BBBBB2")))
    _check_batches(repo, nos, made)


def test_two_batches_released_together_debit_each_household_once(secrets_files, pc):
    for rnd in range(10):
        bank = f"bank-race-{rnd}"
        repo, nos = _agreements(pc, bank, f"HLB{rnd}", 3)
        start = threading.Barrier(2)
        made = []

        def make(seq):
            start.wait()
            made.append(_batch(repo, bank, seq))
        _run(lambda: make(f"A{rnd:05d}"), lambda: make(f"B{rnd:05d}"))
        _check_batches(repo, nos, made)


def test_signing_again_keeps_the_hold_of_a_batch_awaiting_its_result(secrets_files, pc):
    """A household re-signs its agreement while a batch is at the bank: before, the new agreement
    replaced the hold and the next batch debited the household a second time."""
    repo, (no,) = _agreements(pc, "bank-resign", "RSG", 1)
    first = _batch(repo, "bank-resign", "RSG001")
    handlers.sign_agreement(repo, FixedClock(NOW), STAFF, {"bank-resign"}, {
        "household_no": no, "year": 2020, "bank": "bank-resign", "account_no": "6222999900001111",
        "account_name": "成员零", "signed_on": datetime(2019, 9, 20, tzinfo=SHANGHAI).date()})
    assert repo.agreement(no)["pending_batch"] == first["_id"]
    second = _batch(repo, "bank-resign", "RSG002")
    assert getattr(second, "code", None) == "BATCH_EMPTY"
    assert second.details["skipped"] == [{"household_no": no, "code": "IN_PENDING_BATCH"}]


def test_a_batch_left_holding_by_a_crash_is_finished_not_left_blocking(secrets_files, pc, monkeypatch):
    """The request died after writing the batch and holding some agreements: the next batch (or the
    worker's sweep) finishes it: the households it holds stay in it for the bank, the rest are free."""
    repo, nos = _agreements(pc, "bank-crash", "CRB", 3)
    real = PaymentsRepository.save_agreement
    calls = []

    def save_agreement(self, doc, change):
        calls.append(doc["_id"])
        if len(calls) == 2:
            raise RuntimeError("process died")
        return real(self, doc, change)
    monkeypatch.setattr(PaymentsRepository, "save_agreement", save_agreement)
    with pytest.raises(RuntimeError):
        handlers.create_batch(repo, pc.policy, FixedClock(NOW), STAFF, {"bank": "bank-crash", "year": 2020}, "CRB001")
    monkeypatch.setattr(PaymentsRepository, "save_agreement", real)
    left = next(b for b in pc.db.withholding_batches.find({"bank": "bank-crash"}))
    assert left["status"] == "holding"
    with pytest.raises(Exception) as refused:  # not for the bank while it is holding
        wh.export_csv(left)
    assert getattr(refused.value, "code", None) == "BATCH_NOT_SENDABLE"
    assert handlers.redrive_batches(repo, FixedClock(NOW)) >= 1
    finished = repo.batch(left["_id"])
    assert finished["status"] == "sent" and len(finished["lines"]) == 3  # the sweep held the rest for it
    assert all(repo.agreement(n)["pending_batch"] == left["_id"] for n in nos)
    assert getattr(_batch(repo, "bank-crash", "CRB002"), "code", None) == "BATCH_EMPTY"

"""A 先缴后补 reimbursement claim is paid once (001_93f5b63ac6b4a653.txt 六; issue 9 item 1): two
reports of its payment released together by a barrier, again and again, on the real store."""
from __future__ import annotations

import secrets
import threading
from datetime import date, datetime, timedelta

import pytest

from services.subsidy import bootstrap as subsidy_boot
from services.subsidy.entrypoints.flask_app import create_app
from services.subsidy.service_layer import handlers
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event
from tests.helpers import secret_files
from tools.ids import make_id

T_IDENT = datetime(2019, 10, 20, 9, 0, tzinfo=SHANGHAI)
T_PAID = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)
COUNTY = secrets.token_hex(8)
ROUNDS = 10


@pytest.fixture(scope="module")
def setup(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"}]):
        clock = FixedClock(T_IDENT)
        c = subsidy_boot.bootstrap(clock)
        yield c, subsidy_boot.context(c), create_app(clock).test_client(), clock


def open_claim(ctx, clock, pid, no):
    """A 低保 identity in force from after the cutoff, a payment in full: a claim of 130 yuan."""
    clock.set(T_IDENT)
    out = handlers.receive_identity_update(ctx, {
        "id_number": pid, "category": "dibao_rural", "action": "grant", "effective_date": "2019-10-02",
        "source_system": "civil_affairs", "source_ref": f"MZ-{no}"}, via="test", message_id=f"test:{no}")
    assert out["status"] == "applied", out
    clock.set(T_PAID)
    handlers.on_payment_confirmed(ctx, Envelope.new(Event("payments.payment.confirmed", {
        "order_no": f"P{no}", "receipt_no": f"R{no}", "household_no": no, "year": 2020, "county": "431122",
        "township": "花桥镇", "village": "花桥村", "head_name": "甲", "amount_fen": 25000, "channel": "mobile_app",
        "gateway": "bank-a", "transaction_id": f"T{no}", "paid_at": T_PAID.isoformat(),
        "members": [{"person_id": pid, "name": "甲", "standard_fen": 25000, "subsidy_fen": 0,
                     "payable_fen": 25000}]}), "payments", T_PAID))
    clock.set(T_PAID + timedelta(days=20))


def test_two_reports_of_the_same_claim_paid_at_once_pay_it_once(setup):
    c, ctx, api, clock = setup
    auth = {"Authorization": f"Bearer {COUNTY}"}
    paid_fen = 0
    for rnd in range(ROUNDS):
        pid = make_id(date(1975, 1 + rnd % 12, 5), 300 + rnd)
        open_claim(ctx, clock, pid, f"CLR-{rnd:03d}")
        assert c.db.claims.find_one({"_id": f"2020:{pid}"})["status"] == "pending"
        same = rnd % 2 == 1  # odd rounds: the same report twice (a double click), even: two different ones
        refs = ["PAY-A", "PAY-A"] if same else ["PAY-A", "PAY-B"]
        start = threading.Barrier(2)
        answers: list = [None, None]

        def report(i):
            start.wait()
            answers[i] = api.post("/v1/counties/431122/claims/2020/paid", json={"id_number": pid, "payment_ref": refs[i], "paid_on": "2019-12-20"},
                                  headers=auth)
        threads = [threading.Thread(target=report, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        codes = sorted((a.status_code, a.json.get("code")) for a in answers)
        if same:
            assert codes == [(200, None), (200, None)], codes
        else:
            assert codes == [(200, None), (409, "CLAIM_ALREADY_PAID")], f"round {rnd}: {codes}"
        doc = c.db.claims.find_one({"_id": f"2020:{pid}"})
        winner = next(a for a in answers if a.status_code == 200).json["payment_ref"]
        assert doc["status"] == "paid" and doc["payment_ref"] == winner
        paid_events = [e for e in doc["_outbox"].values() if e["type"] == "subsidy.claim.paid"]
        assert len(paid_events) == 1, f"round {rnd}: announced {len(paid_events)} times"
        paid_fen += doc["amount_fen"]
    ledger = api.get("/v1/counties/431122/ledger/2020", headers=auth).json
    assert sum(r["claims_paid_fen"] for r in ledger["rows"]) == paid_fen == ROUNDS * 13000
    assert sum(r["claims_pending_fen"] for r in ledger["rows"]) == 0

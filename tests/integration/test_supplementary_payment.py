"""A newborn after the household paid: mid-year enrolment and a supplementary payment (补缴), on the
real store and broker (issue 9 item 3: no money taken that registry then refuses; a later change to
the household is handled as the documents say).

Rules quoted: 001_93f5b63ac6b4a653.txt (Dong'an 2020)
- 四: 出生28天以内新生儿……应先行到乡镇办理当年度参保缴费 — a newborn within 28 days enrols for the
  current year at the township, at the individual standard (250 yuan, 三), though the household's
  payment for the year was made before the birth was known to it;
- 五: 以户为单位……参保缴费 — the household paid once for the members its order named; the newborn's
  payment is one of its own and covers the newborn alone (one receipt per payment);
- 七(二)/七(四): money that went back (冲正) revokes what it paid for, and only that.

Registry's and payments' relays publish what their writes carry; their own consumers take it.
"""
from __future__ import annotations

import secrets
import time
from datetime import date, datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.registry import bootstrap as registry_boot
from services.registry.entrypoints.flask_app import create_app as registry_app
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.masking import mask_id
from tests.helpers import household_payload, run_until, secret_files, signed_post
from tools.ids import make_id

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)  # inside the 2020 window
BORN = date(2019, 11, 10)  # 5 days before: within 28 days
COUNTY, HUAQIAO, BAIYA = secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(8)
BANK_SECRET = secrets.token_hex(16)
MONEY = ("payments", "receipts", "money_log", "orders", "idempotency", "reversals")


@pytest.fixture(scope="module")
def env(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"},
            {"sha256": token_hash(HUAQIAO), "subject": "huaqiao", "role": "township", "county": "431122",
             "township": "花桥镇"},
            {"sha256": token_hash(BAIYA), "subject": "baiya", "role": "township", "county": "431122",
             "township": "白牙市镇"}], gateways=[
            {"id": "bank-a", "secret": BANK_SECRET, "kind": "bank", "channels": ["mobile_app"]}]):
        clock = FixedClock(NOW)
        yield (registry_app(clock).test_client(), payments_app(clock).test_client(), clock,
               registry_boot.bootstrap(clock), payments_boot.bootstrap(clock))


def staff(token=COUNTY):
    return {"Authorization": f"Bearer {token}"}


def signed(client, clock, path, payload, idem=None):
    return signed_post(client, path, payload, secret=BANK_SECRET, at=clock.now(),
                       extra={"Idempotency-Key": idem} if idem else None)

def flow(rc, pc, until, what, timeout=30):
    """Both relays and both consumers run until `until()` holds."""
    run_until(until, what, relays=(rc, pc), consumers=(rc, pc), timeout=timeout)

def member_status(rc, household_no):
    doc = rc.db.households.find_one({"_id": f"2020:{household_no}"})
    return {m["name"]: m["status"] for m in doc["members"]}


def money(pc, household_no):
    """Everything payments keeps about the household's money (the household's rows only)."""
    out = {}
    for c in MONEY:
        out[c] = sorted(str(d) for d in pc.db[c].find({}, {"_outbox": 0}) if household_no in str(d))
    return out


def paid_household_with_a_newborn(env, no, seed, idem):
    """The household orders for its three members; a child is born while the order is open; the
    order is paid. Registry enrols the three and lists the newborn for mid-year enrolment."""
    registry, api, clock, rc, pc = env
    body = household_payload(no, "花桥镇", seed=seed)
    assert registry.post("/v1/counties/431122/households", json=body, headers=staff()).status_code == 201
    flow(rc, pc, lambda: pc.db.households.find_one({"_id": f"2020:{no}"}), "the household at payments")
    order = signed(api, clock, "/v1/counties/431122/orders", {"household_no": no, "year": 2020, "channel": "mobile_app"}, idem)
    assert order.status_code == 201 and order.json["amount_fen"] == 75000, order.json
    baby = {"id_number": make_id(BORN, seed % 900 + 11, "F"), "name": "新生儿", "relation": "子女"}
    r = registry.post(f"/v1/counties/431122/households/2020/{no}/changes", json={"kind": "birth", "member": baby}, headers=staff())
    assert r.status_code == 200, r.json
    ack = signed(api, clock, "/v1/counties/431122/notifications", {"order_no": order.json["order_no"], "transaction_id": f"T-{no}-1",
                                                   "amount_fen": 75000, "paid_at": NOW.isoformat()})
    assert ack.json["code"] == "SUCCESS", ack.json
    flow(rc, pc, lambda: member_status(rc, no)["成员0"] == "paid"
         and pc.db.households.find_one({"_id": f"2020:{no}"})["members"][-1]["person_id"] == baby["id_number"],
         "the household's payment at registry, the birth at payments")
    assert member_status(rc, no) == {"成员0": "paid", "成员1": "paid", "成员2": "paid", "新生儿": "registered"}
    return body, baby, order.json["order_no"]


def test_a_newborn_after_the_household_paid_is_approved_charged_alone_at_the_individual_standard_and_enrolled(env):
    """001 四: 出生28天以内新生儿……应先行到乡镇办理当年度参保缴费. The household paid for its three members
    (its order was made before the birth); the township records the newborn's mid-year approval
    (NEWBORN_28_DAYS), payments quotes the newborn alone at the individual standard (250 yuan, 三),
    the supplementary payment is recorded once (a second notification has no second effect), has
    its own receipt, and registry enrols the newborn alone. Before: the quote answered 409
    HOUSEHOLD_ALREADY_PAID, so the newborn could never be paid for."""
    registry, api, clock, rc, pc = env
    body, baby, first_order = paid_household_with_a_newborn(env, "SUP-0001", 811, "sup-0001-a")

    # the township's list: the newborn awaits mid-year enrolment, no approval yet; another township sees nothing
    listed = registry.get("/v1/counties/431122/mid-year/awaiting/2020", headers=staff(HUAQIAO))
    assert listed.status_code == 200, listed.json
    mine = [m for m in listed.json["members"] if m["household_no"] == "SUP-0001"]
    assert mine == [{"household_no": "SUP-0001", "township": "花桥镇", "village": body["village"],
                     "order_no": first_order, "name": "新生儿", "birth_date": BORN.isoformat(), "approval": None,
                     "id_number": mask_id(baby["id_number"])}]
    assert baby["id_number"] not in listed.get_data(as_text=True)
    assert all(m["township"] == "白牙市镇" for m in
               registry.get("/v1/counties/431122/mid-year/awaiting/2020", headers=staff(BAIYA)).json["members"])

    # the township records the approval (the household has paid: allowed for a member left unpaid)
    r = registry.post("/v1/counties/431122/mid-year/decisions", json={"id_number": baby["id_number"]}, headers=staff(HUAQIAO))
    assert r.status_code == 201 and (r.json["code"], r.json["pays"]) == ("NEWBORN_28_DAYS", "individual"), r.json
    [row] = [m for m in registry.get("/v1/counties/431122/mid-year/awaiting/2020", headers=staff()).json["members"]
             if m["household_no"] == "SUP-0001"]
    assert row["approval"] == {"code": "NEWBORN_28_DAYS", "pays": "individual", "decided_on": "2019-11-15"}
    flow(rc, pc, lambda: pc.db.mid_year_approvals.find_one({"_id": f"2020:{baby['id_number']}"}), "the approval")

    # payments: the newborn alone, at the individual standard
    q = signed(api, clock, "/v1/counties/431122/quotes", {"household_no": "SUP-0001", "year": 2020})
    assert q.status_code == 200, q.json
    assert (q.json["total_fen"], q.json["standard_fen"], q.json["mid_year"]) == (25000, 25000, True)
    assert [l["id_number"] for l in q.json["lines"]] == [mask_id(baby["id_number"])]
    o = signed(api, clock, "/v1/counties/431122/orders", {"household_no": "SUP-0001", "year": 2020, "channel": "mobile_app"},
               "sup-0001-b")
    assert o.status_code == 201 and o.json["amount_fen"] == 25000, o.json
    note = {"order_no": o.json["order_no"], "transaction_id": "T-SUP-0001-2", "amount_fen": 25000,
            "paid_at": NOW.isoformat()}
    ack = signed(api, clock, "/v1/counties/431122/notifications", note)
    assert (ack.json["code"], ack.json["duplicate"], ack.json["status"]) == ("SUCCESS", False, "paid"), ack.json

    # one more payment record, its own; the household's first payment stands as it was
    first = pc.db.payments.find_one({"_id": "2020:SUP-0001"})
    supplement = pc.db.payments.find_one({"_id": "2020:SUP-0001:2"}, {"_outbox": 0})
    assert first["order_no"] == first_order and len(first["person_ids"]) == 3 and first["status"] == "confirmed"
    assert (supplement["order_no"], supplement["person_ids"], supplement["amount_fen"], supplement["supplement"]) == (
        o.json["order_no"], [baby["id_number"]], 25000, True)

    # registry enrols the newborn alone; payments issues its receipt and marks its order
    receipt_no = ack.json["receipt_no"]
    flow(rc, pc, lambda: member_status(rc, "SUP-0001")["新生儿"] == "paid" and pc.db.receipts.find_one(
        {"_id": receipt_no}) and pc.db.orders.find_one({"_id": o.json["order_no"]})["status"] == "paid",
        "the supplement enrolled, its receipt and order")
    assert member_status(rc, "SUP-0001") == {"成员0": "paid", "成员1": "paid", "成员2": "paid", "新生儿": "paid"}
    doc = rc.db.households.find_one({"_id": "2020:SUP-0001"})
    assert "unpaid" not in doc["enrolment"] and doc["enrolment"]["order_no"] == first_order
    assert doc["enrolment"]["status"] == "paid"
    assert rc.suite_db.dead_letters.count_documents({}) == 0
    assert not [m for m in registry.get("/v1/counties/431122/mid-year/awaiting/2020", headers=staff()).json["members"]
                if m["household_no"] == "SUP-0001"]
    receipt = pc.db.receipts.find_one({"_id": receipt_no})
    assert [m["name"] for m in receipt["members"]] == ["新生儿"] and receipt["amount_fen"] == 25000
    assert pc.db.receipts.count_documents({"household_no": "SUP-0001"}) == 2  # one per payment

    # the same notification again: acknowledged, no second effect anywhere
    before, version = money(pc, "SUP-0001"), doc["version"]
    again = signed(api, clock, "/v1/counties/431122/notifications", note)
    assert (again.json["code"], again.json["duplicate"]) == ("SUCCESS", True)
    settle_by = time.monotonic() + 1.5  # both relays and consumers get their chance to do anything
    flow(rc, pc, lambda: time.monotonic() > settle_by, "a quiet moment")
    assert money(pc, "SUP-0001") == before
    # and the confirmation delivered to registry again (at-least-once) changes nothing either
    from services.payments.adapters.repository import confirmed_payload
    from services.registry.service_layer.handlers import on_payment_confirmed
    from shared.events import Envelope, Event
    again_event = Envelope.new(Event("payments.payment.confirmed", confirmed_payload(supplement)), "payments", NOW)
    on_payment_confirmed(registry_boot.repository(rc), again_event, registry_boot.mid_year(rc))
    assert rc.db.households.find_one({"_id": "2020:SUP-0001"})["version"] == version
    # and nothing is left to charge
    q = signed(api, clock, "/v1/counties/431122/quotes", {"household_no": "SUP-0001", "year": 2020})
    assert (q.status_code, q.json["code"]) == (409, "HOUSEHOLD_ALREADY_PAID")


def test_a_reversal_of_the_supplement_revokes_only_the_newborn(env):
    """七(二)/七(四): the money of the newborn's supplementary payment went back (冲正): the newborn
    alone is revoked and listed for mid-year enrolment again; the household and its three members
    keep their enrolment and their payment (before: registry had no supplement to revoke)."""
    registry, api, clock, rc, pc = env
    body, baby, first_order = paid_household_with_a_newborn(env, "SUP-0002", 812, "sup-0002-a")
    assert registry.post("/v1/counties/431122/mid-year/decisions", json={"id_number": baby["id_number"]},
                         headers=staff()).status_code == 201
    flow(rc, pc, lambda: pc.db.mid_year_approvals.find_one({"_id": f"2020:{baby['id_number']}"}), "the approval")
    o = signed(api, clock, "/v1/counties/431122/orders", {"household_no": "SUP-0002", "year": 2020, "channel": "mobile_app"},
               "sup-0002-b")
    assert o.status_code == 201 and o.json["amount_fen"] == 25000, o.json
    ack = signed(api, clock, "/v1/counties/431122/notifications", {"order_no": o.json["order_no"], "transaction_id": "T-SUP-0002-2",
                                                   "amount_fen": 25000, "paid_at": NOW.isoformat()})
    assert ack.json["code"] == "SUCCESS"
    flow(rc, pc, lambda: member_status(rc, "SUP-0002")["新生儿"] == "paid", "the supplement enrolled")

    r = signed(api, clock, "/v1/counties/431122/reversals", {"order_no": o.json["order_no"], "transaction_id": "T-SUP-0002-2",
                                             "amount_fen": 25000, "reversal_id": "RV-SUP-0002"})
    assert r.status_code == 200 and (r.json["code"], r.json["revokes_enrolment"]) == ("SUCCESS", True), r.json
    flow(rc, pc, lambda: member_status(rc, "SUP-0002")["新生儿"] == "registered"
         and pc.db.receipts.find_one({"_id": ack.json["receipt_no"]}, {"status": 1}) == {
             "_id": ack.json["receipt_no"], "status": "reversed"}, "the reversal at registry and its receipt")
    assert member_status(rc, "SUP-0002") == {"成员0": "paid", "成员1": "paid", "成员2": "paid", "新生儿": "registered"}
    doc = rc.db.households.find_one({"_id": "2020:SUP-0002"})
    assert (doc["enrolment"]["status"], doc["enrolment"]["order_no"]) == ("paid", first_order)
    assert pc.db.payments.find_one({"_id": "2020:SUP-0002"})["status"] == "confirmed"
    assert pc.db.payments.find_one({"_id": "2020:SUP-0002:2"})["status"] == "reversed"
    assert [m["household_no"] for m in registry.get("/v1/counties/431122/mid-year/awaiting/2020", headers=staff()).json["members"]
            if m["household_no"] == "SUP-0002"] == ["SUP-0002"]  # listed again, to pay again
    assert rc.suite_db.dead_letters.count_documents({}) == 0
    q = signed(api, clock, "/v1/counties/431122/quotes", {"household_no": "SUP-0002", "year": 2020})
    assert q.status_code == 200 and q.json["total_fen"] == 25000  # the newborn may pay again


def test_two_supplement_orders_for_the_newborn_pay_once_the_second_money_is_an_overpayment(env):
    """One payment per person: two orders for the newborn made before either was paid (two family
    members at two counters) are both paid; the first records the supplement, the second is an
    overpayment to refund (重复缴费待退款), never a second enrolment."""
    registry, api, clock, rc, pc = env
    body, baby, _ = paid_household_with_a_newborn(env, "SUP-0003", 813, "sup-0003-a")
    assert registry.post("/v1/counties/431122/mid-year/decisions", json={"id_number": baby["id_number"]},
                         headers=staff()).status_code == 201
    flow(rc, pc, lambda: pc.db.mid_year_approvals.find_one({"_id": f"2020:{baby['id_number']}"}), "the approval")
    orders = [signed(api, clock, "/v1/counties/431122/orders", {"household_no": "SUP-0003", "year": 2020, "channel": "mobile_app"},
                     f"sup-0003-{k}").json["order_no"] for k in "bc"]
    acks = [signed(api, clock, "/v1/counties/431122/notifications", {"order_no": no, "transaction_id": f"T-{no}", "amount_fen": 25000,
                                                     "paid_at": NOW.isoformat()}).json for no in orders]
    assert [(a["code"], a["status"]) for a in acks] == [("SUCCESS", "paid"), ("SUCCESS", "duplicate_payment")]
    assert pc.db.payments.find_one({"_id": "2020:SUP-0003:3"}) is None
    assert pc.db.money_log.find_one({"_id": f"{orders[1]}:overpaid"})["amount_fen"] == 25000


def test_staff_list_payments_for_persons_who_left_their_township_only(env):
    """001 五: the order fixes who is paid for; a member who died while it was open is recorded for
    county staff (a refund is a reversal), listed for the county and the household's township only."""
    registry, api, clock, rc, pc = env
    body = household_payload("SUP-0004", "花桥镇", seed=814)
    assert registry.post("/v1/counties/431122/households", json=body, headers=staff()).status_code == 201
    flow(rc, pc, lambda: pc.db.households.find_one({"_id": "2020:SUP-0004"}), "the household at payments")
    o = signed(api, clock, "/v1/counties/431122/orders", {"household_no": "SUP-0004", "year": 2020, "channel": "mobile_app"},
               "sup-0004-a")
    gone = body["members"][2]["id_number"]
    assert registry.post("/v1/counties/431122/households/2020/SUP-0004/changes", json={"kind": "death", "id_number": gone},
                         headers=staff()).status_code == 200
    assert signed(api, clock, "/v1/counties/431122/notifications", {"order_no": o.json["order_no"], "transaction_id": "T-SUP-0004",
                                                    "amount_fen": 75000, "paid_at": NOW.isoformat()}).json["code"] \
        == "SUCCESS"
    flow(rc, pc, lambda: (rc.db.households.find_one({"_id": "2020:SUP-0004"}).get("enrolment") or {}).get("review"),
         "the payment at registry")

    def listed(token):
        r = registry.get("/v1/counties/431122/enrolment/review/2020", headers=staff(token))
        assert r.status_code == 200, r.json
        return [p for p in r.json["persons"] if p["household_no"] == "SUP-0004"]
    expected = [{"household_no": "SUP-0004", "township": "花桥镇", "village": body["village"],
                 "order_no": o.json["order_no"], "reason": "left_after_order", "id_number": mask_id(gone)}]
    assert listed(COUNTY) == expected and listed(HUAQIAO) == expected
    assert listed(BAIYA) == []
    assert registry.get("/v1/counties/431122/enrolment/review/20x0", headers=staff()).json["code"] == "BAD_YEAR"

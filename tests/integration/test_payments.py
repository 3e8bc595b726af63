"""Payments on the real store and broker: subsidies from the subsidy service's events, amounts frozen
in orders, receipts, channels and their proof, bank withholding, reconciliation, audit, reversals.

Rules quoted: 001_93f5b63ac6b4a653.txt (Dong'an 2020) 三 (250 yuan), 四 (window), 五 (whole household,
proof per channel, receipt per household), 六 (hardship subsidies by current identity, no top-up or
refund after payment), 七(二) (audit within 3 working days), 七(四) (remit every 3 days);
002_9137bd928f251374.txt 六(二) (three-party withholding, failures classified, insufficient balances
back to the towns and withheld again).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import secrets
import time
from datetime import datetime, timedelta

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.payments.service_layer.handlers import on_household_snapshot, on_payment_confirmed
from shared import signing
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event, validate_payload
from tests.helpers import declare, household_payload, publish, running, secret_files, signed_post

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)  # a Friday inside the 2020 window
COUNTY, HUAQIAO, BAIYA, TAX = (secrets.token_hex(8) for _ in range(4))
BANK_SECRET, VILLAGE_SECRET = secrets.token_hex(16), secrets.token_hex(16)


@pytest.fixture(scope="module")
def secrets_files(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
        {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"},
        {"sha256": token_hash(HUAQIAO), "subject": "huaqiao", "role": "township", "county": "431122", "township": "花桥镇"},
        {"sha256": token_hash(BAIYA), "subject": "baiya", "role": "township", "county": "431122", "township": "白牙市镇"},
        {"sha256": token_hash(TAX), "subject": "tax-bureau", "role": "system", "county": "431122",
         "permissions": ["payments:audit"]}], gateways=[
        {"id": "bank-a", "secret": BANK_SECRET, "kind": "bank",
         "channels": ["mobile_app", "online_banking", "pos", "bank_counter", "self_service", "withholding"]},
        {"id": "village-a", "secret": VILLAGE_SECRET, "kind": "village_collector", "channels": ["village_cash"],
         "townships": ["花桥镇"]}]):
        yield


@pytest.fixture()
def clock():
    return FixedClock(NOW)


@pytest.fixture()
def api(secrets_files, clock):
    return payments_app(clock).test_client()


@pytest.fixture(scope="module")
def pc(secrets_files):
    """The payments container (its store, its outbox, its event handlers)."""
    return payments_boot.bootstrap(FixedClock(NOW))


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def signed(client, path, payload=None, *, raw: bytes | None = None, clock=None, nonce=None, secret=BANK_SECRET,
           gateway="bank-a", extra=None, content_type="application/json"):
    return signed_post(client, path, payload, secret=secret, at=(clock.now() if clock else NOW), gateway=gateway,
                       raw=raw, nonce=nonce, extra=extra, content_type=content_type)

def village(client, path, payload, **kw):
    return signed(client, path, payload, secret=VILLAGE_SECRET, gateway="village-a", **kw)


_SEEDS = itertools.count(200)  # distinct people per household (hash() of a string changes every run)


def register(pc, no, n=3, township="花桥镇", seed=None):
    """Feed payments' household read model as registry's event would."""
    p = household_payload(no, township, n=n, seed=seed if seed is not None else next(_SEEDS))
    payload = {"household_no": no, "year": 2020, "county": "431122", "township": township, "village": "花桥村",
               "head_name": "成员0", "head_phone": "13900001111",
               "members": [{"person_id": m["id_number"], "name": m["name"], "relation": m["relation"],
                            "category": "rural"} for m in p["members"]]}
    on_household_snapshot(payments_boot.repository(pc), Envelope.new(
        Event("registry.household.registered", payload), "registry", NOW))
    return [m["person_id"] for m in payload["members"]]


def order(api, no, channel="mobile_app", *, clock=None, client_kw=None, **body):
    call = village if channel == "village_cash" else signed
    r = call(api, "/v1/counties/431122/orders", {"household_no": no, "year": 2020, "channel": channel, **body}, clock=clock,
             extra={"Idempotency-Key": secrets.token_hex(8)})
    assert r.status_code == 201, r.json
    return r.json


def pay(api, o, *, clock=None, txn=None, proof=None, paid_at=None, gateway="bank-a"):
    body = {"order_no": o["order_no"], "transaction_id": txn or ("T" + secrets.token_hex(6)),
            "amount_fen": o["amount_fen"], "paid_at": (paid_at or (clock.now() if clock else NOW)).isoformat()}
    if proof is not None:
        body["proof"] = proof
    call = village if gateway == "village-a" else signed
    r = call(api, "/v1/counties/431122/notifications", body, clock=clock)
    assert r.status_code == 200, r.json
    return {**r.json, "transaction_id": body["transaction_id"]}


def complete_confirmations(pc, *household_nos, times=1, batch=False):
    """What the payments worker does with its own payments.payment.confirmed events (receipt,
    money-log row, order status): the real relay publishes the households' events (their payload
    built by its snapshot builder from the payment documents) and payments' handler takes each as
    delivered from the bus, `times` times (a redelivery); `batch`: all of them at once through the
    worker's batch handler, as a busy queue delivers them. Returns the envelopes."""
    from tests.helpers import Probe
    probe = Probe(pc.settings.amqp_url, pc.topology.namespace, ["payments.payment.confirmed"])
    mine: dict[str, dict] = {}
    try:
        with running(pc.relay()):
            deadline = time.monotonic() + 20
            while set(mine) != set(household_nos):
                assert time.monotonic() < deadline, f"the relay did not publish {set(household_nos) - set(mine)}"
                for env in probe.take(1, timeout=0.5):
                    if env["payload"]["household_no"] in household_nos:
                        mine[env["payload"]["household_no"]] = env
    finally:
        probe.close()
    repo = payments_boot.repository(pc)
    for _ in range(times):
        for env in mine.values():
            validate_payload(env["type"], env["payload"])
        if batch:
            payments_boot.event_batch_handlers(pc)["payments.payment.confirmed"](
                [Envelope.from_dict(env) for env in mine.values()])
            continue
        for env in mine.values():
            on_payment_confirmed(repo, Envelope.from_dict(env))
    return list(mine.values())


def outbox_events(doc, etype):
    return [e for e in (doc or {}).get("_outbox", {}).values() if e["type"] == etype]


def entitlement(pc, person_id, category, subsidy_fen, full=False, effective="2019-09-01"):
    return Envelope.new(Event("subsidy.entitlement.changed", {
        "person_id": person_id, "year": 2020, "category": category, "subsidy_fen": subsidy_fen,
        "full_coverage": full, "department": "县民政局" if full else "县扶贫办", "effective_from": effective,
        "reason": "测试"}), "subsidy", NOW)


def deliver(pc, amqp_url, namespace, envs, until):
    """Publish subsidy events on the real bus and let payments' own consumer take them."""
    handlers = payments_boot.event_handlers(pc)
    declare(pc, handlers)
    for env in envs:
        env.seq = f"{time.time_ns():020d}"
        publish(amqp_url, f"{namespace}.events", env.type, json.dumps(env.to_dict()).encode(), env.id)
        time.sleep(0.002)
    with running(pc.consumer(handlers)):
        deadline = time.monotonic() + 20
        while not until():
            assert time.monotonic() < deadline, "payments did not consume the subsidy events"
            time.sleep(0.05)


# ---- (a) subsidies in quotes, frozen in orders ----------------------------------------------------

def test_dongan_2020_household_with_a_registered_poor_and_a_tekun_member(api, pc, infra, namespace):
    """001 三/六: 250 yuan each; registered poor pays 120 (subsidy 130); 特困 fully subsidised."""
    ids = register(pc, "SUB-0001", n=4)
    poor, tekun = ids[2], ids[3]
    db = pc.db
    deliver(pc, infra.amqp_url, namespace,
            [entitlement(pc, poor, "建档立卡贫困人口", 13000), entitlement(pc, tekun, "特困供养人员", 0, full=True)],
            until=lambda: all(db.entitlements.find_one({"_id": f"2020:{p}"}) for p in (poor, tekun)))
    q = signed(api, "/v1/counties/431122/quotes", {"household_no": "SUB-0001", "year": 2020}).json
    assert [(l["standard_fen"], l["subsidy_fen"], l["payable_fen"]) for l in q["lines"]] == [
        (25000, 0, 25000), (25000, 0, 25000), (25000, 13000, 12000), (25000, 25000, 0)]
    assert (q["standard_fen"], q["subsidy_fen"], q["total_fen"]) == (100000, 38000, 62000)
    assert q["lines"][2]["category"] == "建档立卡贫困人口" and "*" in q["lines"][2]["id_number"]

    o = order(api, "SUB-0001")
    assert o["amount_fen"] == 62000
    # the poor member's identity is withdrawn after the order: the order keeps its amount (fixed at creation)
    deliver(pc, infra.amqp_url, namespace, [entitlement(pc, poor, None, 0)],
            until=lambda: len(db.entitlements.find_one({"_id": f"2020:{poor}"})["changes"]) == 2)
    assert signed(api, "/v1/counties/431122/quotes", {"household_no": "SUB-0001", "year": 2020}).json["total_fen"] == 75000
    ack = pay(api, o)
    payment = db.payments.find_one({"_id": "2020:SUB-0001"})
    assert outbox_events(payment, "payments.payment.confirmed")[0]["snapshot"]  # built when published:
    confirmed = complete_confirmations(pc, "SUB-0001")[0]["payload"]  # as the relay published it
    assert confirmed["amount_fen"] == 62000
    assert [m["payable_fen"] for m in confirmed["members"]] == [25000, 25000, 12000, 0]
    r = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}", headers=auth(COUNTY)).json
    assert (r["standard_fen"], r["subsidy_fen"], r["amount_fen"]) == (100000, 38000, 62000)


def test_an_identity_change_after_payment_is_neither_topped_up_nor_refunded(api, pc, infra, namespace):
    """001 六: 参保人员缴费后，特殊身份标识发生变化的，不再补退."""
    ids = register(pc, "SUB-0002", n=2)
    ack = pay(api, order(api, "SUB-0002"))
    deliver(pc, infra.amqp_url, namespace, [entitlement(pc, ids[1], "农村低保对象", 13000)],
            until=lambda: pc.db.entitlements.find_one({"_id": f"2020:{ids[1]}"}))
    p = pc.db.payments.find_one({"_id": "2020:SUB-0002"})
    assert p["status"] == "confirmed" and p["amount_fen"] == 50000
    assert not outbox_events(p, "payments.payment.reversed") and pc.db.reversals.find_one({"_id": ack["order_no"]}) is None
    assert signed(api, "/v1/counties/431122/quotes", {"household_no": "SUB-0002", "year": 2020}).json["code"] == "HOUSEHOLD_ALREADY_PAID"


def test_a_future_entitlement_does_not_apply_before_its_date(api, pc, infra, namespace):
    ids = register(pc, "SUB-0003", n=1)
    deliver(pc, infra.amqp_url, namespace, [entitlement(pc, ids[0], "建档立卡贫困人口", 13000, effective="2019-12-01")],
            until=lambda: pc.db.entitlements.find_one({"_id": f"2020:{ids[0]}"}))
    assert signed(api, "/v1/counties/431122/quotes", {"household_no": "SUB-0003", "year": 2020}).json["total_fen"] == 25000


# ---- whole household, window: refused and nothing written ------------------------------------------

def test_a_split_household_order_is_refused_and_nothing_is_written(api, pc):
    """001 五: 同一户籍家庭人员不得拆分参保、不得选择性参保."""
    ids = register(pc, "SPL-0001", n=3)
    key = "split-key-0001"
    r = signed(api, "/v1/counties/431122/orders", {"household_no": "SPL-0001", "year": 2020, "channel": "mobile_app",
                                   "person_ids": ids[:2]}, extra={"Idempotency-Key": key})
    assert (r.status_code, r.json["code"]) == (400, "HOUSEHOLD_SPLIT")
    assert r.json["details"]["missing"] == 1 and ids[0] not in json.dumps(r.json)
    assert pc.db.orders.find_one({"household_key": "2020:SPL-0001"}) is None
    assert pc.db.idempotency.find_one({"_id": f"bank-a:{key}"}) is None
    whole = signed(api, "/v1/counties/431122/orders", {"household_no": "SPL-0001", "year": 2020, "channel": "mobile_app",
                                       "person_ids": ids}, extra={"Idempotency-Key": key})
    assert whole.status_code == 201 and whole.json["amount_fen"] == 75000


def test_an_order_outside_the_window_is_refused_and_nothing_is_written(secrets_files, pc):
    """001 四: 集中参保缴费期为2019年9月1日至12月31日; nobody in this household is approved for mid-year
    enrolment (see test_quote_refusals.py for those who are)."""
    register(pc, "WIN-0001")
    late = FixedClock(datetime(2020, 1, 2, 9, 0, tzinfo=SHANGHAI))
    r = signed(payments_app(late).test_client(), "/v1/counties/431122/orders",
               {"household_no": "WIN-0001", "year": 2020, "channel": "mobile_app"}, clock=late,
               extra={"Idempotency-Key": "late-key-0001"})
    assert (r.status_code, r.json["code"]) == (422, "WINDOW_CLOSED")
    assert pc.db.orders.find_one({"household_key": "2020:WIN-0001"}) is None


# ---- (b) receipts and the money log -------------------------------------------------------------

def test_one_receipt_per_household_retrievable_and_verifiable_by_number(api, pc):
    """001 五: 以户为单位开具收据（注明户主、家庭成员姓名、缴费金额、缴费时间）."""
    register(pc, "RCP-0001", n=3)
    o = order(api, "RCP-0001", channel="pos")
    ack = pay(api, o, proof={"terminal_id": "POS-07", "slip_no": "000123"})
    r = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}", headers=auth(HUAQIAO))
    assert r.status_code == 200
    rc = r.json
    assert (rc["head_name"], rc["amount_fen"], rc["channel_name"]) == ("成员0", 75000, "银行POS机")
    assert [m["name"] for m in rc["members"]] == ["成员0", "成员1", "成员2"]
    assert all(m["id_number"].count("*") == 8 for m in rc["members"])
    assert rc["paid_at"] == NOW.isoformat() and rc["proof"] == {"terminal_id": "POS-07", "slip_no": "000123"}
    assert api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}", headers=auth(BAIYA)).json["code"] == "SCOPE_TOWNSHIP"
    # anyone holding the paper can verify it by number and check code; a wrong code learns nothing
    v = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}/verification?check_code={rc['check_code'].lower()}")
    assert v.status_code == 200 and v.json["valid"] and v.json["amount_fen"] == 75000
    assert v.json["head_name"] == "成**" and "members" not in v.json
    bad = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}/verification?check_code=000000000000")
    unknown = api.get(f"/v1/counties/431122/receipts/RNOPE/verification?check_code={rc['check_code']}")
    assert bad.status_code == unknown.status_code == 404 and bad.json["code"] == unknown.json["code"]
    # a second delivery of the notification makes no second receipt or log row
    pay(api, o, txn=ack["transaction_id"], proof={"terminal_id": "POS-07", "slip_no": "000123"})
    complete_confirmations(pc, "RCP-0001", times=2)  # the worker's event delivered twice
    assert pc.db.receipts.count_documents({"_id": ack["receipt_no"]}) == 1
    log = api.get("/v1/counties/431122/money-log?ref=2020:RCP-0001", headers=auth(COUNTY)).json["entries"]
    assert [(e["action"], e["amount_fen"], e["actor"]) for e in log] == [("confirmed", 75000, "bank-a")]
    assert api.get(f"/v1/counties/431122/money-log?ref={o['order_no']}", headers=auth(COUNTY)).json["entries"][0]["action"] == "order_created"
    assert api.get("/v1/counties/431122/money-log?ref=x", headers=auth(HUAQIAO)).json["code"] == "ROLE_FORBIDDEN"
    # the day's report (staff's audit of money movements) has both rows (same instant here), once
    # each, oldest first;
    # another day's has neither
    today = NOW.astimezone(SHANGHAI).date()
    day = api.get(f"/v1/counties/431122/money-log?day={today}", headers=auth(COUNTY)).json["entries"]
    mine = [(e["ref"], e["action"]) for e in day if e["ref"] in ("2020:RCP-0001", o["order_no"])]
    assert sorted(mine) == sorted([(o["order_no"], "order_created"), ("2020:RCP-0001", "confirmed")])
    assert [e["at"] for e in day] == sorted(e["at"] for e in day)
    other = api.get(f"/v1/counties/431122/money-log?day={today - timedelta(days=1)}", headers=auth(COUNTY)).json["entries"]
    assert not [e for e in other if e["ref"] in ("2020:RCP-0001", o["order_no"])]


# ---- (c) channels and their proof ---------------------------------------------------------------

def test_village_cash_collection_names_the_collector_and_the_receipt_book(api, pc):
    """001 五 / 七(四): 村（社区）收缴, 《湖南省社会保险基金收据》; the proof travels to the receipt."""
    register(pc, "VIL-0001", n=2)
    r = signed(api, "/v1/counties/431122/orders", {"household_no": "VIL-0001", "year": 2020, "channel": "village_cash"},
               extra={"Idempotency-Key": "bank-cash-0001"})
    assert (r.status_code, r.json["code"]) == (403, "CHANNEL_NOT_ALLOWED")  # a bank is not a village collector
    o = order(api, "VIL-0001", channel="village_cash")
    body = {"order_no": o["order_no"], "transaction_id": "C-0001", "amount_fen": 50000, "paid_at": NOW.isoformat(),
            "proof": {"collector_id": "HQ-C03", "collector_name": "李收款"}}
    r = village(api, "/v1/counties/431122/notifications", body)
    assert (r.status_code, r.json["code"]) == (400, "PROOF_MISSING")
    assert set(r.json["details"]["missing"]) == {"receipt_book_no", "receipt_sheet_no"}
    assert pc.db.payments.find_one({"_id": "2020:VIL-0001"}) is None
    body["proof"].update({"receipt_book_no": "湘0012345", "receipt_sheet_no": "07"})
    ack = village(api, "/v1/counties/431122/notifications", body).json
    rc = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}", headers=auth(COUNTY)).json
    assert rc["channel"] == "village_cash" and rc["proof"]["receipt_book_no"] == "湘0012345"
    assert rc["proof"]["collector_name"] == "李收款"


@pytest.mark.parametrize("channel, proof", [("bank_counter", {"branch": "东安支行", "voucher_no": "V88"}),
                                            ("self_service", {"terminal_id": "ATM-2", "slip_no": "S9"}),
                                            ("online_banking", None)])
def test_each_channel_keeps_its_proof_of_payment(api, pc, channel, proof):
    """001 五: 手机APP/网上 → 电子订单; POS/自助终端 → 机打小票; 柜面 → 银行收款凭单."""
    no = f"CH-{channel}"
    register(pc, no, n=1)
    ack = pay(api, order(api, no, channel=channel), proof=proof)
    assert pc.db.payments.find_one({"_id": f"2020:{no}"})["proof"] == (proof or {})
    assert ack["status"] == "paid"


# ---- (d) bank withholding -------------------------------------------------------------------------

def agree(api, no, account, token=HUAQIAO):
    return api.post("/v1/counties/431122/withholding/agreements", json={
        "household_no": no, "year": 2020, "bank": "bank-a", "account_no": account, "account_name": "成员零",
        "signed_on": "2019-09-10"}, headers=auth(token))


def result_file(batch_no, rows):
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["batch_no", "line_no", "order_no", "amount_fen", "result_code", "bank_txn_id", "debited_at", "message"])
    for r in rows:
        w.writerow([batch_no, *r])
    return out.getvalue().encode()


def test_withholding_batch_failure_classification_and_retry(api, pc):
    """002 六(二)1-3: 三方协议; 代扣不成功的名单分类汇总，余额不足的发回各镇，再次代扣."""
    for i in range(3):
        register(pc, f"WH-000{i}", n=2, seed=60 + i)
    for i in range(3):
        r = agree(api, f"WH-000{i}", f"62220000000000{i:04d}")
        assert r.status_code == 201 and r.json["account_no"] == f"6222******{i:04d}"[:4] + "*" * 10 + f"{i:04d}"
    assert agree(api, "WH-0000", "62220000000000999", token=BAIYA).json["code"] == "SCOPE_TOWNSHIP"
    assert agree(api, "WH-0000", "12ab").json["code"] == "ACCOUNT_NO_INVALID"
    # other agreements of this module's bank (from other tests) must not leak in: only WH-* are active here
    b = api.post("/v1/counties/431122/withholding/batches", json={"bank": "bank-a", "year": 2020}, headers=auth(COUNTY))
    assert b.status_code == 201, b.json
    batch = b.json
    assert batch["count"] == 3 and batch["total_fen"] == 150000
    assert all("*" in l["account_no"] for l in batch["lines"])
    f = api.get(f"/v1/counties/431122/withholding/batches/{batch['batch_no']}/file", headers=auth(COUNTY))
    rows = list(csv.reader(io.StringIO(f.get_data(as_text=True))))
    assert rows[0] == ["batch_no", "line_no", "order_no", "agreement_no", "account_no", "account_name", "amount_fen"]
    assert rows[1][4] == "622200000000000000" and rows[-1] == ["TOTAL", batch["batch_no"], "3", "150000"]
    by_hh = {l["household_no"]: l for l in batch["lines"]}
    # a household in a batch awaiting its result is not put in a second batch (no double withholding)
    assert api.post("/v1/counties/431122/withholding/batches", json={"bank": "bank-a", "year": 2020},
                    headers=auth(COUNTY)).json["code"] == "BATCH_EMPTY"

    path = f"/v1/counties/431122/withholding/batches/{batch['batch_no']}/results"
    l0, l1, l2 = by_hh["WH-0000"], by_hh["WH-0001"], by_hh["WH-0002"]
    # a file whose amount disagrees with the batch is refused whole: nothing is written
    wrong = result_file(batch["batch_no"], [(l0["line_no"], l0["order_no"], 1, "00", "B1", NOW.isoformat(), ""),
                                            (l1["line_no"], l1["order_no"], 50000, "51", "", "", "余额不足"),
                                            (l2["line_no"], l2["order_no"], 50000, "62", "", "", "销户")])
    r = signed(api, path, raw=wrong, content_type="text/csv")
    assert (r.status_code, r.json["code"]) == (400, "RESULT_FILE_MISMATCH")
    assert pc.db.withholding_batches.find_one({"_id": batch["batch_no"]})["status"] == "sent"
    assert pc.db.payments.find_one({"_id": "2020:WH-0000"}) is None

    good = result_file(batch["batch_no"], [(l0["line_no"], l0["order_no"], 50000, "00", "B1", NOW.isoformat(), ""),
                                           (l1["line_no"], l1["order_no"], 50000, "51", "", "", "余额不足"),
                                           (l2["line_no"], l2["order_no"], 50000, "62", "", "", "销户")])
    r = signed(api, path, raw=good, content_type="text/csv")
    assert r.status_code == 200, r.json
    assert (r.json["paid"], r.json["paid_fen"], r.json["failed_by_reason"]) == (
        1, 50000, {"INSUFFICIENT_BALANCE": 1, "ACCOUNT_CLOSED": 1})
    paid = pc.db.payments.find_one({"_id": "2020:WH-0000"})
    assert paid["channel"] == "withholding" and paid["proof"] == {"agreement_no": "WAWH-0000", "batch_no": batch["batch_no"]}
    failed = [e["payload"] for e in outbox_events(pc.db.withholding_batches.find_one({"_id": batch["batch_no"]}),
                                                  "payments.withholding.failed")]
    assert sorted((e["household_no"], e["reason"], e["retryable"], e["township"]) for e in failed) == [
        ("WH-0001", "INSUFFICIENT_BALANCE", True, "花桥镇"), ("WH-0002", "ACCOUNT_CLOSED", False, "花桥镇")]
    assert api.get("/v1/counties/431122/withholding/agreements/WH-0002", headers=auth(COUNTY)).json["status"] == "invalid"
    back = api.get(f"/v1/counties/431122/withholding/batches/{batch['batch_no']}/returns", headers=auth(HUAQIAO)).json["lines"]
    assert [(l["household_no"], l["reason_text"], l["retryable"]) for l in back] == [
        ("WH-0001", "账户余额不足", True), ("WH-0002", "账户已销户", False)]
    assert all("*" in l["account_no"] for l in back)
    assert api.get(f"/v1/counties/431122/withholding/batches/{batch['batch_no']}/returns", headers=auth(BAIYA)).json["lines"] == []
    # the same file again: acknowledged, no second effect; another file: refused
    again = signed(api, path, raw=good, content_type="text/csv")
    assert again.status_code == 200 and again.json["paid"] == 1
    assert len(outbox_events(pc.db.withholding_batches.find_one({"_id": batch["batch_no"]}),
                             "payments.withholding.failed")) == 2
    assert len(outbox_events(pc.db.payments.find_one({"_id": "2020:WH-0000"}), "payments.payment.confirmed")) == 1
    assert signed(api, path, raw=wrong, content_type="text/csv").json["code"] == "RESULT_ALREADY_IMPORTED"

    # the town urged a deposit; the retry batch takes only the insufficient balance again
    retry = api.post("/v1/counties/431122/withholding/batches", json={"bank": "bank-a", "year": 2020, "retry_of": batch["batch_no"]},
                     headers=auth(COUNTY)).json
    assert [l["household_no"] for l in retry["lines"]] == ["WH-0001"] and retry["retry_of"] == batch["batch_no"]
    l = retry["lines"][0]
    r = signed(api, f"/v1/counties/431122/withholding/batches/{retry['batch_no']}/results", content_type="text/csv",
               raw=result_file(retry["batch_no"], [(l["line_no"], l["order_no"], 50000, "00", "B2", NOW.isoformat(), "")]))
    assert r.json["paid"] == 1
    assert pc.db.payments.find_one({"_id": "2020:WH-0001"})["amount_fen"] == 50000


# ---- (e, f) reconciliation, audit, remittances -----------------------------------------------------

def test_a_day_reconciled_with_one_missing_and_one_mismatched_transaction(secrets_files, pc):
    """对账: match by order and transaction; what is missing on either side and amount differences.
    A reconciled payment is audited at once (001 七(二) 缴款审核) and registry is told."""
    day = FixedClock(datetime(2019, 11, 18, 9, 0, tzinfo=SHANGHAI))
    api = payments_app(day).test_client()
    acks = []
    for i in range(3):
        register(pc, f"REC-000{i}", n=1)
        acks.append(pay(api, order(api, f"REC-000{i}", clock=day), clock=day))
    # the worker marks REC-0000/1's orders paid (and lists them under bank-a's day); REC-0002's order
    # is marked too: a payment the statement does not name is found through the day's list only
    complete_confirmations(pc, "REC-0000", "REC-0001", "REC-0002", batch=True)
    register(pc, "REC-0003", n=1)  # paid a moment ago: the worker has not marked its order yet
    acks.append(pay(api, order(api, "REC-0003", clock=day), clock=day))
    stmt = {"date": "2019-11-18", "lines": [
        {"order_no": acks[3]["order_no"], "transaction_id": acks[3]["transaction_id"], "amount_fen": 25000},
        {"order_no": acks[0]["order_no"], "transaction_id": acks[0]["transaction_id"], "amount_fen": 25000},
        {"order_no": acks[1]["order_no"], "transaction_id": acks[1]["transaction_id"], "amount_fen": 24900},
        {"order_no": "P-UNKNOWN-1", "transaction_id": "TX-9", "amount_fen": 25000}]}
    r = signed(api, "/v1/counties/431122/reconciliation/statements", stmt, clock=day)
    assert r.status_code == 200, r.json
    rep = r.json
    assert sorted(rep["matched"]) == sorted([acks[0]["order_no"], acks[3]["order_no"]]) and not rep["balanced"]
    assert rep["amount_mismatch"] == [{"order_no": acks[1]["order_no"], "platform_fen": 25000,
                                       "statement_fen": 24900, "difference_fen": -100}]
    assert [m["order_no"] for m in rep["missing_on_platform"]] == ["P-UNKNOWN-1"]
    assert [m["order_no"] for m in rep["missing_on_statement"]] == [acks[2]["order_no"]]
    assert (rep["statement_total_fen"], rep["platform_total_fen"], rep["audited"]) == (99900, 100000, 2)
    p0 = pc.db.payments.find_one({"_id": "2020:REC-0000"})
    assert p0["status"] == "audited"
    audited = outbox_events(p0, "payments.payment.audited")[0]["payload"]
    assert audited["source"] == "reconciliation" and audited["audited_by"] == "reconciliation:bank-a:2019-11-18"
    assert pc.db.payments.find_one({"_id": "2020:REC-0001"})["status"] == "confirmed"
    stored = api.get("/v1/counties/431122/reconciliation/bank-a/2019-11-18", headers=auth(COUNTY)).json
    assert stored["difference_fen"] == -100
    # the same statement again audits nothing twice
    again = signed(api, "/v1/counties/431122/reconciliation/statements", stmt, clock=day).json
    assert again["audited"] == 0
    assert len(outbox_events(pc.db.payments.find_one({"_id": "2020:REC-0000"}), "payments.payment.audited")) == 1


def test_a_days_statement_audits_its_payments_in_a_few_store_commands_whatever_its_length(secrets_files, pc):
    """A gateway's statement lists a whole day (thousands of lines in a large county): its matched
    payments are audited (001 七(二)) in one bulk compare-and-set with their events and one bulk write
    per side record, not ~6 store commands a line (issue 13: a 10,000-line statement took ~100 s)."""
    from pymongo import monitoring
    from tests.helpers import StoreCommands
    day = FixedClock(datetime(2019, 11, 19, 9, 0, tzinfo=SHANGHAI))
    api = payments_app(day).test_client()
    nos = [f"RCB-{i:04d}" for i in range(30)]
    acks = []
    for no in nos:
        register(pc, no, n=1)
        acks.append(pay(api, order(api, no, clock=day), clock=day))
    complete_confirmations(pc, *nos, batch=True)
    stmt = {"date": "2019-11-19", "lines": [{"order_no": a["order_no"], "transaction_id": a["transaction_id"],
                                             "amount_fen": 25000} for a in acks]}
    seen = StoreCommands()
    monitoring.register(seen)
    try:
        fresh = payments_app(day).test_client()  # its client is made now: its commands are seen
        seen.names.clear()
        r = signed(fresh, "/v1/counties/431122/reconciliation/statements", stmt, clock=day)
    finally:
        seen.on = False
    assert r.status_code == 200 and r.json["balanced"] and r.json["audited"] == 30, r.json
    assert len(seen.names) < 30, seen.names  # was ~180
    for no in nos:
        doc = pc.db.payments.find_one({"_id": f"2020:{no}"})
        assert doc["status"] == "audited" and len(outbox_events(doc, "payments.payment.audited")) == 1
        log = api.get(f"/v1/counties/431122/money-log?ref=2020:{no}", headers=auth(COUNTY)).json["entries"]
        assert [e["action"] for e in log] == ["confirmed", "audited"]
    assert signed(fresh, "/v1/counties/431122/reconciliation/statements", stmt, clock=day).json["audited"] == 0


def test_a_days_money_log_is_read_a_page_at_a_time_in_time_order(secrets_files, pc):
    """Staff's audit of a day's money movements (000 四(三): 日清周结): a busy day has tens of thousands
    of rows, so the report comes 500 rows a page, in time order, each row once, with the day's total,
    reading only the hours a page falls in."""
    repo = payments_boot.repository(pc)
    start = datetime(2019, 10, 20, 8, 0, tzinfo=SHANGHAI)
    rows = [(f"2020:PG-{i:04d}", "confirmed", start + timedelta(seconds=37 * i), "bank-a", 25000, {}) for i in range(1200)]
    for i in range(0, 1200, 300):
        repo.log_money_many(rows[i:i + 300])
    api = payments_app(FixedClock(NOW)).test_client()
    pages = [api.get(f"/v1/counties/431122/money-log?day=2019-10-20&page={k}", headers=auth(COUNTY)).json for k in range(3)]
    assert [len(p["entries"]) for p in pages] == [500, 500, 200] and pages[0]["total"] == 1200
    refs = [e["ref"] for p in pages for e in p["entries"]]
    assert refs == [r[0] for r in rows]  # in time order (8:00 to 20:19), each once
    assert api.get("/v1/counties/431122/money-log?day=2019-10-20&page=x", headers=auth(COUNTY)).json["code"] == "BAD_QUERY"


def test_audits_overdue_after_three_chinese_working_days_and_audit_by_api(secrets_files, pc):
    """001 七(二): 税务局应于3个工作日内完成缴款审核. Paid Friday 2019-09-27: Sunday 09-29 is a working day
    (调休), 10-01..07 are the National Day holidays, so the third working day is Tuesday 10-08."""
    paid_clock = FixedClock(datetime(2019, 9, 27, 15, 0, tzinfo=SHANGHAI))
    api = payments_app(paid_clock).test_client()
    register(pc, "AUD-0001", n=2)
    pay(api, order(api, "AUD-0001", clock=paid_clock), clock=paid_clock)
    (confirmed,) = complete_confirmations(pc, "AUD-0001", times=2)  # the worker's side record, redelivered: one entry

    def overdue_on(d, token=COUNTY):
        c = FixedClock(datetime(2019, 10, d, 12, 0, tzinfo=SHANGHAI))
        return payments_app(c).test_client().get("/v1/counties/431122/audits/overdue?year=2020", headers=auth(token)).json["overdue"]

    assert "AUD-0001" not in [o["household_no"] for o in overdue_on(8)]
    late = [o for o in overdue_on(9) if o["household_no"] == "AUD-0001"]
    assert late and late[0]["audit_due"] == "2019-10-08"
    assert len(late) == 1
    assert "AUD-0001" not in [o["household_no"] for o in overdue_on(9, BAIYA)]  # other township's staff
    r = api.post("/v1/counties/431122/payments/2020/AUD-0001/audit", headers=auth(HUAQIAO))
    assert (r.status_code, r.json["code"]) == (403, "ROLE_FORBIDDEN")
    r = api.post("/v1/counties/431122/payments/2020/AUD-0001/audit", headers=auth(TAX))
    assert r.status_code == 200 and r.json["status"] == "audited"
    assert [h["status"] for h in r.json["history"]] == ["confirmed", "audited"]
    assert api.post("/v1/counties/431122/payments/2020/AUD-0001/audit", headers=auth(TAX)).json["status"] == "audited"
    assert len(outbox_events(pc.db.payments.find_one({"_id": "2020:AUD-0001"}), "payments.payment.audited")) == 1
    assert "AUD-0001" not in [o["household_no"] for o in overdue_on(9)]
    on_payment_confirmed(payments_boot.repository(pc), Envelope.from_dict(confirmed))  # redelivered after the audit
    assert "AUD-0001" not in [o["household_no"] for o in overdue_on(9)]


def test_the_tax_bureau_is_told_once_a_day_while_audits_are_overdue(secrets_files, pc):
    """001 七(二): 税务局应于3个工作日内完成缴款审核工作……12月25日前完成全县缴款审核工作 — a daily digest
    (payments.audits.overdue) per township; a reversed payment is not waiting for an audit any more."""
    from services.payments.entrypoints.loops import report_overdue_audits_once
    paid_clock = FixedClock(datetime(2019, 10, 15, 9, 0, tzinfo=SHANGHAI))  # a Tuesday: due Friday 10-18
    api = payments_app(paid_clock).test_client()
    nos = ("DIG-0001", "DIG-0002", "DIG-0003")
    register(pc, nos[0], n=2)
    register(pc, nos[1], n=1)
    register(pc, nos[2], n=3, township="白牙市镇")
    orders = [order(api, no, clock=paid_clock) for no in nos]
    acks = [pay(api, o, clock=paid_clock) for o in orders]
    complete_confirmations(pc, *nos)
    reverse = {"order_no": orders[1]["order_no"], "reversal_id": "R-" + secrets.token_hex(4),
               "transaction_id": acks[1]["transaction_id"], "amount_fen": orders[1]["amount_fen"]}
    assert signed(api, "/v1/counties/431122/reversals", reverse, clock=paid_clock).status_code == 200

    def digest_on(day):
        c = payments_boot.bootstrap(FixedClock(datetime(2019, 10, day, 8, 30, tzinfo=SHANGHAI)))
        n = report_overdue_audits_once(c)
        doc = pc.db.overdue_audit_reports.find_one({"_id": f"2020:2019-10-{day}"})
        return n, doc

    assert not [o for o in overdue_rows(pc, 18) if o["household_no"] in nos]  # not late on its due day
    n, doc = digest_on(21)
    assert n == 1 and digest_on(21)[0] == 0  # once a day, however often the loop passes
    (event,) = outbox_events(doc, "payments.audits.overdue")
    validate_payload("payments.audits.overdue", event["payload"])
    towns = {t["township"]: t for t in event["payload"]["townships"]}
    mine = [o for o in overdue_rows(pc, 21) if o["household_no"] in nos]
    assert sorted(o["household_no"] for o in mine) == ["DIG-0001", "DIG-0003"]  # the reversed one is not waiting
    assert towns["白牙市镇"]["payments"] >= 1 and towns["花桥镇"]["payments"] >= 1
    assert event["payload"]["county_deadline"] == "2019-12-25" and event["payload"]["amount_fen"] >= sum(
        o["amount_fen"] for o in mine)
    assert digest_on(22)[0] == 1  # the next day, still overdue: told again


def overdue_rows(pc, day):
    c = FixedClock(datetime(2019, 10, day, 12, 0, tzinfo=SHANGHAI))
    return payments_app(c).test_client().get("/v1/counties/431122/audits/overdue?year=2020",
                                            headers=auth(COUNTY)).json["overdue"]


def test_remittance_summaries_every_three_days(secrets_files, pc):
    """001 七(四): 要求3天进行一次解款 — periods of 3 days from the window's opening (2019-09-01)."""
    c = FixedClock(datetime(2019, 9, 3, 11, 0, tzinfo=SHANGHAI))  # period 09-01..09-03
    api = payments_app(c).test_client()
    register(pc, "REM-0001", n=2)
    pay(api, order(api, "REM-0001", clock=c), clock=c)
    c.set(datetime(2019, 9, 4, 8, 0, tzinfo=SHANGHAI))  # period 09-04..09-06
    register(pc, "REM-0002", n=1)
    pay(api, order(api, "REM-0002", clock=c), clock=c)
    complete_confirmations(pc, "REM-0001", "REM-0002", batch=True)  # the worker counts them into their days
    r = api.get("/v1/counties/431122/remittances?year=2020", headers=auth(COUNTY)).json
    assert r["interval_days"] == 3
    first, second = r["periods"][0], r["periods"][1]
    assert (first["period_start"], first["period_end"], first["remit_by"]) == ("2019-09-01", "2019-09-03", "2019-09-04")
    assert (first["households"], first["amount_fen"], first["by_channel"]) == (1, 50000, {"mobile_app": 50000})
    assert (second["households"], second["amount_fen"]) == (1, 25000)
    assert api.get("/v1/counties/431122/remittances?year=2020", headers=auth(BAIYA)).json["periods"][0]["households"] == 0


def test_an_acknowledged_payment_is_whole_for_readers_before_the_worker_completes_it(api, pc):
    """The gateway's acknowledgement waits only for the payment record (with its event); the receipt,
    the money-log row and the order status follow from the event in the payments worker. A reader
    in between sees the payment anyway: the order is paid, the receipt is issued when first asked."""
    register(pc, "ACK-0001", n=2)
    o = order(api, "ACK-0001")
    ack = pay(api, o)
    assert (ack["status"], ack["receipt_no"]) == ("paid", "R" + o["order_no"][1:])
    assert pc.db.receipts.find_one({"_id": ack["receipt_no"]}) is None  # the worker has not run
    assert pc.db.orders.find_one({"_id": o["order_no"]})["status"] == "created"
    assert api.get(f"/v1/counties/431122/orders/{o['order_no']}", headers=auth(COUNTY)).json["status"] == "paid"
    rc = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}", headers=auth(COUNTY))
    assert rc.status_code == 200 and rc.json["amount_fen"] == 50000 and len(rc.json["members"]) == 2
    assert pc.db.receipts.find_one({"_id": ack["receipt_no"]})["check_code"] == rc.json["check_code"]
    # a reversal before the worker: the worker's late status does not undo it
    r = signed(api, "/v1/counties/431122/reversals", {"reversal_id": "RV-ACK", "order_no": o["order_no"],
                                      "transaction_id": ack["transaction_id"], "amount_fen": 50000})
    assert r.json["revokes_enrolment"]
    complete_confirmations(pc, "ACK-0001")
    assert pc.db.orders.find_one({"_id": o["order_no"]})["status"] == "reversed"
    assert pc.db.receipts.find_one({"_id": ack["receipt_no"]})["status"] == "reversed"
    log = api.get("/v1/counties/431122/money-log?ref=2020:ACK-0001", headers=auth(COUNTY)).json["entries"]
    assert [(e["action"], e["amount_fen"]) for e in log] == [("confirmed", 50000)]


def test_a_batch_of_confirmations_completes_each_payment_as_one_by_one_would(api, pc):
    """The payments worker's batch handler (a busy queue): receipts, open audits, money-log rows and
    order statuses for 12 payments in a few store commands; a payment reversed before the worker
    keeps its reversal; the batch delivered again changes nothing."""
    nos = [f"BAT-{i:04d}" for i in range(12)]
    acks = {}
    for no in nos:
        register(pc, no, n=2)
        o = order(api, no)
        acks[no] = (o, pay(api, o))
    o11, ack11 = acks["BAT-0011"]
    r = signed(api, "/v1/counties/431122/reversals", {"reversal_id": "RV-BAT", "order_no": o11["order_no"],
                                                      "transaction_id": ack11["transaction_id"], "amount_fen": 50000})
    assert r.status_code == 200, r.json
    complete_confirmations(pc, *nos, times=2, batch=True)
    for no in nos:
        o, ack = acks[no]
        assert pc.db.orders.find_one({"_id": o["order_no"]})["status"] == ("reversed" if no == "BAT-0011" else "paid")
        receipt = pc.db.receipts.find_one({"_id": ack["receipt_no"]})
        assert receipt["amount_fen"] == 50000 and receipt["check_code"]
        rc = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}", headers=auth(COUNTY))
        assert rc.status_code == 200 and rc.json["check_code"] == receipt["check_code"]
        log = api.get(f"/v1/counties/431122/money-log?ref=2020:{no}", headers=auth(COUNTY)).json["entries"]
        assert [e["action"] for e in log].count("confirmed") == 1
        pay_doc = pc.db.payments.find_one({"_id": f"2020:{no}"})
        shard = pc.db.audit_days.find_one({"_id": f"2020:{pay_doc['paid_day']}|花桥镇"}) or {}
        assert (f"2020:{no}" in shard.get("open", {})) == (no != "BAT-0011"), no
    assert pc.db.receipts.find_one({"_id": ack11["receipt_no"]})["status"] == "reversed"


# ---- (f) reversals ----------------------------------------------------------------------------

def test_a_gateway_reversal_revokes_the_enrolment_through_an_event(api, pc):
    register(pc, "REV-0001", n=2)
    o = order(api, "REV-0001")
    ack = pay(api, o)
    body = {"reversal_id": "RV-1", "order_no": o["order_no"], "transaction_id": ack["transaction_id"],
            "amount_fen": 49999}
    r = signed(api, "/v1/counties/431122/reversals", body)
    assert (r.status_code, r.json["code"]) == (400, "AMOUNT_MISMATCH")
    assert pc.db.reversals.find_one({"_id": o["order_no"]}) is None
    body["amount_fen"] = 50000
    r = signed(api, "/v1/counties/431122/reversals", body)
    assert r.status_code == 200 and r.json["revokes_enrolment"] and not r.json["duplicate"]
    assert signed(api, "/v1/counties/431122/reversals", body).json["duplicate"]
    p = pc.db.payments.find_one({"_id": "2020:REV-0001"})
    assert p["status"] == "reversed"
    ev = outbox_events(p, "payments.payment.reversed")
    assert len(ev) == 1 and ev[0]["payload"]["reason"] == "gateway_reversal" and len(ev[0]["payload"]["person_ids"]) == 2
    rc = api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}", headers=auth(COUNTY)).json
    assert rc["status"] == "reversed"
    assert not api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}/verification?check_code={rc['check_code']}").json["valid"]
    log = api.get(f"/v1/counties/431122/money-log?ref={o['order_no']}", headers=auth(COUNTY)).json["entries"]
    assert ("reversed", -50000) in [(e["action"], e["amount_fen"]) for e in log]
    assert api.post("/v1/counties/431122/payments/2020/REV-0001/audit", headers=auth(TAX)).json["code"] == "PAYMENT_REVERSED"


def test_an_overpayment_is_refunded_without_touching_the_enrolment(api, pc):
    """A household paid twice (two orders): the second order's money goes back; the household stays paid."""
    register(pc, "REV-0002", n=1)
    first, second = order(api, "REV-0002"), order(api, "REV-0002")
    pay(api, first)
    dup = pay(api, second)
    assert dup["status"] == "duplicate_payment"
    r = signed(api, "/v1/counties/431122/reversals", {"reversal_id": "RV-2", "order_no": second["order_no"],
                                      "transaction_id": dup["transaction_id"], "amount_fen": 25000})
    assert r.json["reason"] == "overpayment" and not r.json["revokes_enrolment"]
    p = pc.db.payments.find_one({"_id": "2020:REV-0002"})
    assert p["status"] == "confirmed" and p["order_no"] == first["order_no"]
    assert not outbox_events(p, "payments.payment.reversed")


def test_the_openapi_document_describes_gateway_and_staff_endpoints(api):
    doc = api.get("/openapi.json").json
    paths = doc["paths"]
    for p in ("/v1/counties/{county}/reversals", "/v1/counties/{county}/withholding/batches/{batch_no}/results", "/v1/counties/{county}/reconciliation/statements",
              "/v1/counties/{county}/receipts/{receipt_no}/verification", "/v1/counties/{county}/audits/overdue", "/v1/counties/{county}/remittances", "/v1/counties/{county}/money-log"):
        assert p in paths, p
    assert paths["/v1/counties/{county}/notifications"]["post"]["security"] == [{"gatewaySignature": []}]
    assert paths["/v1/counties/{county}/withholding/batches"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/v1/counties/{county}/receipts/{receipt_no}/verification"]["get"]


def test_a_retry_after_a_crash_mid_confirmation_completes_it_even_past_expiry(secrets_files, pc):
    """Not losing a fen: the payment was recorded (with its event) but the process died before the
    receipt and the order status; the gateway's retry after the order's expiry completes the job."""
    from services.payments.service_layer.handlers import payment_doc
    c = FixedClock(NOW)
    api = payments_app(c).test_client()
    register(pc, "CRS-0001", n=2)
    o = order(api, "CRS-0001", clock=c)
    repo = payments_boot.repository(pc)
    live = repo.order(o["order_no"])
    live.transaction_id, live.paid_at = "T-CRASH", NOW.isoformat()
    assert repo.record_payment(payment_doc(live, repo.household(2020, "CRS-0001"), {}, NOW, "bank-a"),
                               live.confirmed_event(repo.household(2020, "CRS-0001"), "T-CRASH", NOW.isoformat()), None)
    c.advance(timedelta(hours=3))
    ack = pay(api, o, clock=c, txn="T-CRASH", paid_at=NOW)
    assert ack["status"] == "paid" and ack["receipt_no"]
    assert api.get(f"/v1/counties/431122/receipts/{ack['receipt_no']}", headers=auth(COUNTY)).status_code == 200
    assert len(outbox_events(pc.db.payments.find_one({"_id": "2020:CRS-0001"}), "payments.payment.confirmed")) == 1
    # an expired order that was never paid is still refused
    register(pc, "CRS-0002", n=1)
    o2 = order(api, "CRS-0002", clock=c)
    c.advance(timedelta(hours=3))
    r = signed(api, "/v1/counties/431122/notifications", {"order_no": o2["order_no"], "transaction_id": "T2", "amount_fen": 25000,
                                          "paid_at": c.now().isoformat()}, clock=c)
    assert r.json["code"] == "ORDER_EXPIRED" and pc.db.payments.find_one({"_id": "2020:CRS-0002"}) is None


def test_a_second_transaction_for_a_paid_order_is_acknowledged_once_and_logged_for_refund(api, pc):
    """Not doubling a fen: the same order reported paid by another transaction confirms nothing more,
    and the second transaction is in the money log for a refund check."""
    register(pc, "TWC-0001", n=1)
    o = order(api, "TWC-0001")
    first = pay(api, o, txn="T-FIRST")
    r = signed(api, "/v1/counties/431122/notifications", {"order_no": o["order_no"], "transaction_id": "T-SECOND",
                                          "amount_fen": 25000, "paid_at": NOW.isoformat()})
    assert r.status_code == 200 and r.json["duplicate"] and r.json["receipt_no"] == first["receipt_no"]
    p = pc.db.payments.find_one({"_id": "2020:TWC-0001"})
    assert p["transaction_id"] == "T-FIRST" and len(outbox_events(p, "payments.payment.confirmed")) == 1
    log = api.get(f"/v1/counties/431122/money-log?ref={o['order_no']}:T-SECOND", headers=auth(COUNTY)).json["entries"]
    assert [(e["action"], e["amount_fen"]) for e in log] == [("paid_twice", 25000)]
    assert api.get(f"/v1/counties/431122/money-log?ref={o['order_no']}:T-FIRST", headers=auth(COUNTY)).json["entries"] == []


# ---- every rejection leaves nothing written -----------------------------------------------------

MONEY_COLLECTIONS = ("payments", "receipts", "money_log", "orders", "idempotency", "transitions", "reversals")


def snapshot(pc):
    """Everything a payment could have touched (nonces excepted: a used nonce stays used, by design)."""
    db = pc.db
    return {c: sorted(str(d) for d in db[c].find({}, {"_outbox": 0})) for c in MONEY_COLLECTIONS}


@pytest.mark.parametrize("case", ["bad_signature", "stale_timestamp", "replayed_nonce", "amount_mismatch",
                                  "unknown_order", "expired_order", "split_household", "closed_window"])
def test_every_rejection_leaves_nothing_written(secrets_files, pc, case):
    c = FixedClock(NOW)
    api = payments_app(c).test_client()
    no = f"REJ-{case}"
    ids = register(pc, no, n=2)
    o = order(api, no, clock=c)
    body = {"order_no": o["order_no"], "transaction_id": "T-" + case, "amount_fen": o["amount_fen"],
            "paid_at": NOW.isoformat()}
    kw: dict = {"clock": c}
    path = "/v1/counties/431122/notifications"
    if case == "replayed_nonce":
        signed(api, "/v1/counties/431122/quotes", {"household_no": no, "year": 2020}, nonce="r" * 24, clock=c)
        kw["nonce"] = "r" * 24
    before = snapshot(pc)
    if case == "bad_signature":
        kw["secret"] = VILLAGE_SECRET
    elif case == "stale_timestamp":
        c.advance(timedelta(seconds=301))
        r = api.post(path, data=json.dumps(body).encode(), headers={
            "X-Gateway-Id": "bank-a", "X-Timestamp": str(int(NOW.timestamp())), "X-Nonce": "s" * 20,
            "Content-Type": "application/json",
            "X-Signature": signing.sign(BANK_SECRET, "POST", path, str(int(NOW.timestamp())), "s" * 20,
                                        json.dumps(body).encode())})
    elif case == "amount_mismatch":
        body["amount_fen"] += 1
    elif case == "unknown_order":
        body["order_no"] = "P-NO-SUCH-ORDER"
    elif case == "expired_order":
        c.advance(timedelta(hours=2, seconds=1))
    elif case == "split_household":
        path, body = "/v1/counties/431122/orders", {"household_no": no, "year": 2020, "channel": "mobile_app", "person_ids": ids[:1]}
        kw["extra"] = {"Idempotency-Key": "split-" + secrets.token_hex(4)}
    elif case == "closed_window":
        c.set(datetime(2020, 1, 1, 0, 0, 1, tzinfo=SHANGHAI))
        path, body = "/v1/counties/431122/orders", {"household_no": no, "year": 2020, "channel": "mobile_app"}
        kw["extra"] = {"Idempotency-Key": "late-" + secrets.token_hex(4)}
    if case != "stale_timestamp":
        r = signed(api, path, body, **kw)
    expected = {"bad_signature": "SIGNATURE_INVALID", "stale_timestamp": "TIMESTAMP_OUT_OF_WINDOW",
                "replayed_nonce": "NONCE_REPLAYED", "amount_mismatch": "AMOUNT_MISMATCH",
                "unknown_order": "ORDER_NOT_FOUND", "expired_order": "ORDER_EXPIRED",
                "split_household": "HOUSEHOLD_SPLIT", "closed_window": "WINDOW_CLOSED"}[case]
    assert 400 <= r.status_code < 500 and r.json["code"] == expected and r.json["message"]
    assert snapshot(pc) == before


def test_audited_and_reversed_events_reach_the_bus(secrets_files, pc, infra, namespace):
    """The relay publishes what the payment documents carry: audited (registry confirms), reversed
    (registry revokes), each once, valid against the catalogue."""
    from tests.helpers import Probe
    api = payments_app(FixedClock(NOW)).test_client()
    register(pc, "BUS-0001", n=2)
    o = order(api, "BUS-0001")
    ack = pay(api, o)
    api.post("/v1/counties/431122/payments/2020/BUS-0001/audit", headers=auth(TAX))
    signed(api, "/v1/counties/431122/reversals", {"reversal_id": "RV-BUS", "order_no": o["order_no"],
                                  "transaction_id": ack["transaction_id"], "amount_fen": o["amount_fen"]})
    probe = Probe(infra.amqp_url, namespace, ["payments.payment.audited", "payments.payment.reversed"])
    try:
        with running(pc.relay()):
            got = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not {"payments.payment.audited", "payments.payment.reversed"} <= {
                    e["type"] for e in got if e["payload"]["household_no"] == "BUS-0001"}:
                got += probe.take(1, timeout=1)
        mine = [e for e in got if e["payload"]["household_no"] == "BUS-0001"]
        assert sorted(e["type"] for e in mine) == ["payments.payment.audited", "payments.payment.reversed"]
        assert all(e["producer"] == "payments" and len(e["payload"]["person_ids"]) == 2 for e in mine)
    finally:
        probe.close()


def test_concurrent_notifications_with_different_transactions_confirm_once_and_keep_the_first(secrets_files, pc):
    """Two copies racing for one order with different transaction ids: one payment, the order keeps
    the recorded transaction, the other is logged for a refund check."""
    import threading
    register(pc, "RACE-0001", n=1)
    o = order(payments_app(FixedClock(NOW)).test_client(), "RACE-0001")
    results = []

    def send(txn):
        results.append(pay(payments_app(FixedClock(NOW)).test_client(), o, txn=txn))
    threads = [threading.Thread(target=send, args=(f"T-RACE-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r["code"] for r in results} == {"SUCCESS"} and len(results) == 3
    p = pc.db.payments.find_one({"_id": "2020:RACE-0001"})
    assert len(outbox_events(p, "payments.payment.confirmed")) == 1
    shown = payments_app(FixedClock(NOW)).test_client().get(f"/v1/counties/431122/orders/{o['order_no']}", headers=auth(COUNTY)).json
    assert (shown["status"], shown["transaction_id"]) == ("paid", p["transaction_id"])  # before the worker ran
    complete_confirmations(pc, "RACE-0001")
    assert pc.db.orders.find_one({"_id": o["order_no"]})["transaction_id"] == p["transaction_id"]
    twice = [pc.db.money_log.find_one({"_id": f"{o['order_no']}:T-RACE-{i}:paid_twice"}) for i in range(3)]
    assert sum(1 for t in twice if t) == 2


# ---- the order fixes who is paid for ------------------------------------------------------------

def test_a_household_change_while_an_order_is_open_alters_no_confirmation(secrets_files, pc, infra, namespace):
    """The order fixes who is paid for (001 五: 以户为单位 — the household as it was when it chose to pay):
    a birth (registry.household.changed) while a card order is open, a birth and a merge (合户,
    registry.household.dissolved) while withholding orders are at the bank (valid 10 days), and
    the confirmations are neither refused nor changed: each payment and its published
    payments.payment.confirmed carry exactly the order's members and amount (registry enrols
    those; the newborn goes through mid-year enrolment, 001 四)."""
    from tools.ids import make_id
    api = payments_app(FixedClock(NOW)).test_client()
    card = {"HCO-0001": register(pc, "HCO-0001", n=2)}
    wh_ids = {no: register(pc, no, n=2) for no in ("HCW-0001", "HCW-0002")}
    o = order(api, "HCO-0001")
    for no in wh_ids:
        assert agree(api, no, "62229999" + no[-4:] + "0000").status_code == 201
    b = api.post("/v1/counties/431122/withholding/batches", json={"bank": "bank-a", "year": 2020}, headers=auth(COUNTY)).json
    lines = {l["household_no"]: l for l in b["lines"] if l["household_no"] in wh_ids}
    assert set(lines) == set(wh_ids)

    def newborn(no, ids):
        baby = make_id(datetime(2019, 11, 1).date(), 900 + int(no[-1]), "F")
        return Envelope.new(Event("registry.household.changed", {
            "household_no": no, "year": 2020, "county": "431122", "township": "花桥镇", "village": "花桥村",
            "head_name": "成员0", "head_phone": "13900001111", "change": "birth", "reason": "出生",
            "members": [*({"person_id": p, "name": f"成员{i}"} for i, p in enumerate(ids)),
                        {"person_id": baby, "name": "新生儿"}]}), "registry", NOW)
    merged = Envelope.new(Event("registry.household.dissolved", {
        "household_no": "HCW-0002", "year": 2020, "county": "431122", "township": "花桥镇", "village": "花桥村",
        "merged_into": "HCW-0001", "reason": "合户"}), "registry", NOW)
    deliver(pc, infra.amqp_url, namespace,
            [newborn("HCO-0001", card["HCO-0001"]), newborn("HCW-0001", wh_ids["HCW-0001"]), merged],
            until=lambda: len(pc.db.households.find_one({"_id": "2020:HCO-0001"})["members"]) == 3
            and len(pc.db.households.find_one({"_id": "2020:HCW-0001"})["members"]) == 3
            and pc.db.households.find_one({"_id": "2020:HCW-0002"}).get("merged_into") == "HCW-0001")

    ack = pay(api, o)
    assert (ack["code"], ack["status"]) == ("SUCCESS", "paid")
    rows = [(l["line_no"], l["order_no"], l["amount_fen"], "00", f"B-{no}", NOW.isoformat(), "")
            for no, l in lines.items()]
    other = [(l["line_no"], l["order_no"], l["amount_fen"], "51", "", "", "") for l in b["lines"]
             if l["household_no"] not in wh_ids]
    r = signed(api, f"/v1/counties/431122/withholding/batches/{b['batch_no']}/results", raw=result_file(b["batch_no"], rows + other),
               content_type="text/csv")
    assert r.status_code == 200 and r.json["paid"] == 2, r.json
    published = {e["payload"]["household_no"]: e["payload"]
                 for e in complete_confirmations(pc, "HCO-0001", "HCW-0001", "HCW-0002")}
    for no, ids in {**card, **wh_ids}.items():
        p = pc.db.payments.find_one({"_id": f"2020:{no}"})
        assert p["status"] == "confirmed" and p["person_ids"] == ids and p["amount_fen"] == 50000
        assert [m["person_id"] for m in published[no]["members"]] == ids and published[no]["amount_fen"] == 50000

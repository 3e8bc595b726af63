"""Two policy years of one county in one suite, and the year rollover, on the real store and broker.

Rules quoted: 001_93f5b63ac6b4a653.txt 四 (2020年度集中参保缴费期为2019年9月1日至12月31日) and 六 (低保 资助130元，
个人缴纳120元; 依据缴费人当前身份进行征收); /work/shared/reference/policies.md (one file per county and
year). A county moving to year Y keeps every standing hardship identity: the quote for Y carries
the subsidy of an identity granted while only Y-1 was loaded.

The second Dong'an year is a TEST-ONLY file written into a temporary POLICY_DIR: the 2020 file with
its year, window, benefit period and 先缴后补 cutoff shifted one year. Its figures are 2020's; no
document for Dong'an 2021 is claimed.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
from datetime import datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.registry import bootstrap as registry_boot
from services.registry.entrypoints.flask_app import create_app as registry_app
from services.subsidy import bootstrap as subsidy_boot
from services.subsidy.service_layer import handlers as subsidy_handlers
from shared import signing
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.config import ROOT
from tests.helpers import household_payload, run_until, secret_files, shifted_year
from tools.clients import wait_for

T_OLD = datetime(2019, 10, 20, 9, 0, tzinfo=SHANGHAI)   # 2020's window; only 2020 loaded
T_NEW = datetime(2020, 10, 15, 10, 0, tzinfo=SHANGHAI)  # the test 2021's window; 2020 is the benefit year
COUNTY, WUMING = secrets.token_hex(8), secrets.token_hex(8)
BANK_SECRET = secrets.token_hex(16)


def write_catalogue(d, *, with_next: bool):
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    raw["places_file"] = str(ROOT / "policies" / raw["places_file"])
    d.mkdir(parents=True, exist_ok=True)
    (d / "dongan-2020.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    if with_next:  # and a second county: the done-when suite has two counties and two years
        (d / "dongan-2021-test.json").write_text(json.dumps(shifted_year(raw), ensure_ascii=False), encoding="utf-8")
        (d / "wuming-2018.json").write_text((ROOT / "policies" / "wuming-2018.json").read_text(encoding="utf-8"),
                                            encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def dirs(namespace, tmp_path_factory):
    base = tmp_path_factory.mktemp("years")
    one, two = write_catalogue(base / "one", with_next=False), write_catalogue(base / "two", with_next=True)
    with secret_files(base, tokens=[{"sha256": token_hash(COUNTY), "subject": "county", "role": "county",
                                     "county": "431122"},
                                    {"sha256": token_hash(WUMING), "subject": "wuming", "role": "county",
                                     "county": "450110"}],
                      gateways=[{"id": "bank-a", "secret": BANK_SECRET, "kind": "bank", "channels": ["mobile_app"]}]):
        old = {k: os.environ.get(k) for k in ("POLICY_FILE", "POLICY_DIR")}
        os.environ["POLICY_FILE"] = str(one / "dongan-2020.json")
        try:
            yield one, two
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def county():
    return {"Authorization": f"Bearer {COUNTY}"}


def quote(api, household_no, year, at):
    body = json.dumps({"household_no": household_no, "year": year}, ensure_ascii=False).encode()
    ts, nonce = str(int(at.timestamp())), secrets.token_hex(16)
    return api.post("/v1/counties/431122/quotes", data=body, headers={
        "X-Gateway-Id": "bank-a", "X-Timestamp": ts, "X-Nonce": nonce, "Content-Type": "application/json",
        "X-Signature": signing.sign(BANK_SECRET, "POST", "/v1/counties/431122/quotes", ts, nonce, body)})


def deliver(relays, pc, until, what):
    """The producers' relays publish what their writes carry; payments' own consumer takes it."""
    run_until(until, f"payments received {what}", relays=relays, consumers=(pc,), timeout=20)

def grant(ctx, pid, ref):
    out = subsidy_handlers.receive_identity_update(ctx, {
        "id_number": pid, "category": "dibao_rural", "action": "grant", "effective_date": "2019-09-01",
        "source_system": "civil_affairs", "source_ref": ref}, via="test", message_id=f"test:{ref}")
    assert out["status"] == "applied", out


def test_the_suite_loads_every_year_of_its_county_and_names_them_for_an_unknown_one(dirs):
    one, two = dirs
    os.environ["POLICY_DIR"] = str(two)
    pc = payments_boot.bootstrap(FixedClock(T_NEW))
    assert list(pc.policies) == [2020, 2021]
    assert pc.policy_for(2021).window_opens.isoformat() == "2020-09-01"
    api = payments_app(FixedClock(T_NEW)).test_client()
    r = quote(api, "YR-NONE", 2022, T_NEW)
    assert (r.status_code, r.json["code"], r.json["details"]["years"]) == (404, "YEAR_UNKNOWN", [2020, 2021]), r.json
    reg = registry_app(FixedClock(T_NEW)).test_client()
    body = {**household_payload("YR-2022", "花桥镇", seed=901), "year": 2022}
    r = reg.post("/v1/counties/431122/households", json=body, headers=county())
    assert (r.status_code, r.json["code"]) == (404, "YEAR_UNKNOWN"), r.json
    body["year"] = 2021  # the next year's roster is open for registration
    assert reg.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201


def test_identities_granted_before_the_next_year_was_loaded_count_in_its_quotes(dirs):
    """001 六 for the new year: a 低保 person granted while only 2020 was loaded pays 120 of 250 in
    the next year's quote once that year is loaded (the subsidy worker's rollover batch)."""
    one, two = dirs
    os.environ["POLICY_DIR"] = str(one)
    body = {**household_payload("YR-0001", "花桥镇", seed=903), "year": 2021}
    dibao = body["members"][1]["id_number"]
    sub_old = subsidy_boot.bootstrap(FixedClock(T_OLD))
    assert list(sub_old.policies) == [2020]
    grant(subsidy_boot.context(sub_old), dibao, "MZ-YR-1")
    sub_old.relay().run_once()

    os.environ["POLICY_DIR"] = str(two)  # the county loads the next year
    clock = FixedClock(T_NEW)
    sub, rc, pc = subsidy_boot.bootstrap(clock), registry_boot.bootstrap(clock), payments_boot.bootstrap(clock)
    reg, api = registry_app(clock).test_client(), payments_app(clock).test_client()
    assert reg.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    deliver([rc], pc, lambda: pc.db.households.find_one({"_id": "2021:YR-0001"}), "the 2021 household")

    stop = threading.Event()  # the subsidy worker's rollover loop, in batches of one person
    loop = threading.Thread(target=subsidy_boot.rollover_loop, args=(sub,), daemon=True,
                            kwargs={"every_s": 0.05, "limit": 1, "stop": stop})
    loop.start()
    try:
        deliver([sub], pc, lambda: pc.db.entitlements.find_one({"_id": f"2021:{dibao}"}), "the 2021 entitlement")
        wait_for(lambda: (sub.db.rollovers.find_one({"_id": "entitlements:2021"}) or {}).get("done"), timeout=15,
                 what="the 2021 rollover run")
    finally:
        stop.set()
        loop.join(timeout=15)
    from services.subsidy.entrypoints.flask_app import create_app as subsidy_app
    seen = subsidy_app(clock).test_client().get("/v1/counties/431122/rollover/2021", headers=county())
    assert seen.status_code == 200, seen.json
    assert seen.json["done"] and seen.json["published"] >= 1 and seen.json["persons_seen"] >= 1, seen.json

    q = quote(api, "YR-0001", 2021, T_NEW)
    assert q.status_code == 200, q.json
    assert (q.json["standard_fen"], q.json["subsidy_fen"], q.json["total_fen"]) == (75000, 13000, 62000), q.json

    sub.db.rollovers.delete_one({"_id": "entitlements:2021"})  # a run whose cursor was lost starts over:
    again = subsidy_handlers.publish_year(subsidy_boot.context(sub), 2021)  # idempotent, nothing to publish
    assert again["batch"]["published"] == 0 and again["batch"]["persons"] >= 1 and again["done"]



def test_next_years_roster_starts_from_last_years_as_it_stands_and_leaves_payments_behind(dirs):
    """A new year's roster starts from last year's (issue 10, 2): households and their members carry,
    a member who died does not, and neither does last year's payment, enrolment or lock (001 七(二):
    缴费登记后不允许办理异动 holds for the year paid, not the next); batches of `limit`, idempotent."""
    from services.registry.service_layer import handlers as registry_handlers
    from shared.events import Envelope, Event
    one, two = dirs
    os.environ["POLICY_DIR"] = str(two)
    clock = FixedClock(T_NEW)
    rc, pc = registry_boot.bootstrap(clock), payments_boot.bootstrap(clock)
    reg, api = registry_app(clock).test_client(), payments_app(clock).test_client()
    a, b = household_payload("YR-A", "花桥镇", seed=905), household_payload("YR-B", "花桥镇", seed=907)
    for body in (a, b):
        assert reg.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    dead = a["members"][2]["id_number"]
    r = reg.post("/v1/counties/431122/households/2020/YR-A/changes", json={"kind": "death", "id_number": dead, "reason": "死亡"},
                 headers=county())
    assert r.status_code == 200, r.json
    paid = Envelope.new(Event("payments.payment.confirmed", {
        "order_no": "PYR-B", "receipt_no": "RYR-B", "household_no": "YR-B", "year": 2020, "county": "431122",
        "township": "花桥镇", "village": b["village"], "head_name": b["members"][0]["name"], "amount_fen": 75000,
        "channel": "mobile_app", "gateway": "bank-a", "transaction_id": "TYR-B", "paid_at": T_OLD.isoformat(),
        "members": [{"person_id": m["id_number"], "name": m["name"], "standard_fen": 25000, "subsidy_fen": 0,
                     "payable_fen": 25000} for m in b["members"]]}), "payments", T_OLD)
    registry_handlers.on_payment_confirmed(registry_boot.repository(rc), paid)
    assert reg.get("/v1/counties/431122/households/2020/YR-B", headers=county()).json["status"] == "paid"

    deliver([rc], pc, lambda: pc.db.households.find_one({"_id": "2020:YR-A"}), "the 2020 household")
    r = api.post("/v1/counties/431122/withholding/agreements", json={  # 三方代扣协议, signed in 2020 (keyed by household number)
        "household_no": "YR-A", "year": 2020, "bank": "bank-a", "account_no": "6222000000000000123",
        "account_name": a["members"][0]["name"], "signed_on": "2020-09-10"}, headers=county())
    assert r.status_code == 201, r.json

    reports = []
    while not (reports and reports[-1]["done"]):
        r = reg.post("/v1/counties/431122/years/2021/rollover?limit=1", headers=county())
        assert r.status_code == 200, r.json
        reports.append(r.json)
    carried = [x["batch"]["created"] for x in reports]
    assert sum(carried) >= 2 and max(carried) <= 1  # bounded batches, one household each
    assert reports[-1]["total"]["rejected"] == 0, reports[-1]

    got_a = reg.get("/v1/counties/431122/households/2021/YR-A", headers=county()).json
    assert len(got_a["members"]) == 2 and got_a["status"] == "registered"  # the dead member is not carried
    got_b = reg.get("/v1/counties/431122/households/2021/YR-B", headers=county()).json
    assert (got_b["status"], {m["status"] for m in got_b["members"]}) == ("registered", {"registered"})
    r = reg.post("/v1/counties/431122/households/2021/YR-B/changes", json={"kind": "move_out", "id_number": b["members"][2]["id_number"],
                                                            "reason": "迁出"}, headers=county())
    assert r.status_code == 200, r.json  # 2020's lock did not carry

    again = reg.post("/v1/counties/431122/years/2021/rollover", headers=county()).json
    assert again["done"] and again["batch"]["created"] == 0 and again["total"] == reports[-1]["total"]
    deliver([rc], pc, lambda: pc.db.households.find_one({"_id": "2021:YR-A"}), "the carried households")
    q = quote(api, "YR-A", 2021, T_NEW)  # 2020's payment status does not carry: the household pays for 2021
    assert (q.status_code, q.json["total_fen"]) == (200, 50000), q.json
    batch = api.post("/v1/counties/431122/withholding/batches", json={"bank": "bank-a", "year": 2021}, headers=county())
    assert batch.status_code == 201, batch.json  # last year's agreement debits the new year's amount
    assert [(l["household_no"], l["amount_fen"]) for l in batch.json["lines"]] == [("YR-A", 50000)], batch.json

    r = reg.post("/v1/counties/431122/years/2022/rollover", headers=county())
    assert (r.status_code, r.json["code"]) == (404, "YEAR_UNKNOWN")


def test_a_household_pays_for_the_new_year_while_a_newborn_of_the_old_year_enrols_at_the_township(dirs):
    """Issue 10's done-when, through the APIs, with two counties (Dong'an, Wuming) and two Dong'an
    years loaded. In the 2021 window (2020-09-01..12-31, the test file) 2020 is still the benefit year:
    - 001 五: 出生28天以内新生儿……应先行到乡镇办理当年度参保缴费 — the newborn of a household that paid
      for 2020 in 2020's window is approved at the township and pays 2020 alone at the individual
      standard (三: 250元), mid-year;
    - 001 四/六 — another household pays 2021 as a whole in its window, its 低保 member charged 120
      of 250 (资助130元) by an identity granted while only 2020 was loaded;
    - each year stands where its dates put it (draft → window_open → benefit_year → closed): Wuming's
      2018 is closed, so it takes no new household; both counties answer for their own years."""
    from datetime import date

    from tests.helpers import signed_post
    from tools.ids import make_id
    one, two = dirs
    old = household_payload("YR-OLD", "花桥镇", seed=911)  # 2020, paid in its window
    new = {**household_payload("YR-NEW", "花桥镇", seed=913), "year": 2021}
    dibao = new["members"][1]["id_number"]
    os.environ["POLICY_DIR"] = str(one)  # 2020's window, only 2020 loaded: the identity is granted
    grant(subsidy_boot.context(subsidy_boot.bootstrap(FixedClock(T_OLD))), dibao, "MZ-YR-DONE")

    os.environ["POLICY_DIR"] = str(two)
    clock = FixedClock(T_OLD)
    rc, pc, sub = registry_boot.bootstrap(clock), payments_boot.bootstrap(clock), subsidy_boot.bootstrap(clock)
    assert set(rc.counties()) == {"431122", "450110"} and list(rc.policies) == [2020, 2021]
    reg, api = registry_app(clock).test_client(), payments_app(clock).test_client()
    def flow(until, what):
        run_until(until, what, relays=(rc, pc, sub), consumers=(rc, pc))

    def signed(path, payload, idem=None):
        return signed_post(api, path, payload, secret=BANK_SECRET, at=clock.now(),
                           extra={"Idempotency-Key": idem} if idem else None)

    def pay(no, year, amount):
        q = signed("/v1/counties/431122/quotes", {"household_no": no, "year": year})
        assert (q.status_code, q.json["total_fen"]) == (200, amount), q.json
        o = signed("/v1/counties/431122/orders", {"household_no": no, "year": year, "channel": "mobile_app"},
                   f"idem-{no}-{year}-{amount}")
        assert o.status_code == 201 and o.json["amount_fen"] == amount, o.json
        ack = signed("/v1/counties/431122/notifications", {"order_no": o.json["order_no"], "transaction_id": f"T-{no}-{amount}",
                                                           "amount_fen": amount, "paid_at": clock.now().isoformat()})
        assert ack.json["code"] == "SUCCESS", ack.json
        return q.json

    def status(year, no):
        doc = rc.db.households.find_one({"_id": f"{year}:{no}"})
        return {m["name"]: m["status"] for m in doc["members"]}

    # 2020's window: the household pays for its three members
    assert reg.post("/v1/counties/431122/households", json=old, headers=county()).status_code == 201
    flow(lambda: pc.db.households.find_one({"_id": "2020:YR-OLD"}), "the 2020 household at payments")
    pay("YR-OLD", 2020, 75000)
    flow(lambda: set(status(2020, "YR-OLD").values()) == {"paid"}, "the 2020 payment at registry")

    # a year later: 2021's window is open and 2020 is the benefit year; Wuming's 2018 is over
    clock.set(T_NEW)
    years = {y["year"]: y["phase"] for y in reg.get("/v1/counties/431122/years", headers=county()).json["years"]}
    assert years == {2020: "benefit_year", 2021: "window_open"}
    wuming = reg.get("/v1/counties/450110/years", headers={"Authorization": f"Bearer {WUMING}"}).json
    assert [(y["year"], y["phase"], y["phase_name"]) for y in wuming["years"]] == [(2018, "closed", "已结束")], wuming
    town = rc.county("450110").policy.townships[0]
    late = {**household_payload("YR-WM", seed=915), "year": 2018, "township": town.name,
            "village": (town.villages or ("某村",))[0]}
    r = reg.post("/v1/counties/450110/households", json=late, headers={"Authorization": f"Bearer {WUMING}"})
    assert (r.status_code, r.json["code"]) == (409, "YEAR_CLOSED"), r.json

    # the standing identity is carried into 2021 (the subsidy worker's rollover batches)
    while not subsidy_handlers.publish_year(subsidy_boot.context(sub), 2021, limit=50)["done"]:
        pass
    assert reg.post("/v1/counties/431122/households", json=new, headers=county()).status_code == 201
    baby = {"id_number": make_id(date(2020, 10, 10), 17, "F"), "name": "新生儿", "relation": "子女"}
    r = reg.post("/v1/counties/431122/households/2020/YR-OLD/changes", json={"kind": "birth", "member": baby}, headers=county())
    assert r.status_code == 200, r.json  # a birth into a household that paid (it was 409 LOCKED_AFTER_PAYMENT)
    r = reg.post("/v1/counties/431122/mid-year/decisions", json={"id_number": baby["id_number"], "year": 2020}, headers=county())
    assert r.status_code == 201 and r.json["code"] == "NEWBORN_28_DAYS" and r.json["recorded"], r.json
    flow(lambda: pc.db.mid_year_approvals.find_one({"_id": f"2020:{baby['id_number']}"})
         and pc.db.households.find_one({"_id": "2021:YR-NEW"}) and pc.db.entitlements.find_one({"_id": f"2021:{dibao}"}),
         "the approval, the 2021 household and its 2021 entitlement")

    newborn = pay("YR-OLD", 2020, 25000)  # the newborn alone, mid-year, by 2020's policy
    assert newborn["mid_year"] and len(newborn["lines"]) == 1, newborn
    whole = pay("YR-NEW", 2021, 62000)  # 3 × 250 − 130: 2021's policy, the identity carried
    assert (whole["standard_fen"], whole["subsidy_fen"], whole["mid_year"]) == (75000, 13000, False), whole
    flow(lambda: status(2020, "YR-OLD")["新生儿"] == "paid" and status(2021, "YR-NEW")["成员0"] == "paid",
         "both payments at registry")
    assert set(status(2020, "YR-OLD").values()) == {"paid"}  # the three of the window and the newborn
    assert set(status(2021, "YR-NEW").values()) == {"paid"}
    assert rc.suite_db.dead_letters.count_documents({"county": "431122"}) == 0


def test_two_rollover_calls_at_once_carry_each_household_once_and_count_it_once(dirs, tmp_path):
    """Driven race: both calls read the run at the same version (a barrier after the read). The
    households are written once (unique `_id` inserts), one call records the batch, the other is
    told ROLLOVER_BUSY, and the run's counts match what the store holds."""
    from services.registry.adapters.rollover_store import RolloverStore
    from services.registry.service_layer.rollover import roll_over
    from shared.errors import Conflict
    one, two = dirs
    three = write_catalogue(tmp_path / "three", with_next=True)
    raw = json.loads((three / "dongan-2020.json").read_text(encoding="utf-8"))
    (three / "dongan-2022-test.json").write_text(json.dumps(shifted_year(raw, 2), ensure_ascii=False), encoding="utf-8")
    os.environ["POLICY_DIR"] = str(three)
    clock = FixedClock(T_NEW)
    rc, reg = registry_boot.bootstrap(clock), registry_app(clock).test_client()
    for i in range(3):
        body = {**household_payload(f"YR-R{i}", "花桥镇", seed=921 + 2 * i), "year": 2021}
        assert reg.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    barrier = threading.Barrier(2, timeout=10)

    class Racing(RolloverStore):
        def run(self, key):
            doc = super().run(key)
            barrier.wait()
            return doc

    outcomes = []

    def call():
        try:
            outcomes.append(roll_over(registry_boot.repository(rc), Racing(rc.db), registry_boot.duplicates(rc),
                                      rc.policy_for(2022), 2021, clock.now(), limit=1000))
        except Conflict as e:
            outcomes.append(e.code)
    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(map(str, [o if isinstance(o, str) else "ok" for o in outcomes])) == ["ROLLOVER_BUSY", "ok"]
    run = rc.db.rollovers.find_one({"_id": "households:2021-2022"})
    stored = rc.db.households.count_documents({"year": 2022})
    assert run["done"] and run["created"] == stored >= 3 and run["read"] == rc.db.households.count_documents({"year": 2021})


def test_progress_answers_each_loaded_year_by_its_own_task_table(dirs):
    """附件1 (the task table) per year: scoring answers 2021 from the 2021 file and names the loaded
    years for one it does not have (it answered only POLICY_FILE's year before)."""
    from services.scoring.entrypoints.flask_app import create_app as scoring_app
    one, two = dirs
    os.environ["POLICY_DIR"] = str(two)
    api = scoring_app(FixedClock(T_NEW)).test_client()
    r = api.get("/v1/counties/431122/progress/2021", headers=county())
    assert (r.status_code, r.json["year"], r.json["task_total"]) == (200, 2021, 578501), r.json
    r = api.get("/v1/counties/431122/progress/2022", headers=county())
    assert (r.status_code, r.json["code"], r.json["details"]["years"]) == (404, "YEAR_UNKNOWN", [2020, 2021]), r.json


def test_a_year_already_paid_keeps_what_was_charged_and_a_new_grant_counts_in_every_live_year(dirs):
    """依据缴费人当前身份进行征收; 缴费后特殊身份标识发生变化的不再补退 (001 六): the rollover leaves a person
    paid for 2021 as charged (frozen); an identity granted with both years loaded is published for both."""
    from datetime import date

    from shared.events import Envelope, Event
    from tools.ids import make_id
    one, two = dirs
    os.environ["POLICY_DIR"] = str(one)
    paid, fresh = make_id(date(1970, 3, 3), 31, "M"), make_id(date(1971, 4, 4), 33, "F")
    grant(subsidy_boot.context(subsidy_boot.bootstrap(FixedClock(T_OLD))), paid, "MZ-YR-PAID")
    os.environ["POLICY_DIR"] = str(two)
    sub = subsidy_boot.bootstrap(FixedClock(T_NEW))
    ctx = subsidy_boot.context(sub)
    subsidy_handlers.on_payment_confirmed(ctx, Envelope.new(Event("payments.payment.confirmed", {
        "order_no": "PYR-F", "receipt_no": "RYR-F", "household_no": "YR-F", "year": 2021, "county": "431122",
        "township": "花桥镇", "village": "花桥村", "head_name": "甲", "amount_fen": 25000, "channel": "mobile_app",
        "gateway": "bank-a", "transaction_id": "TYR-F", "paid_at": T_NEW.isoformat(),
        "members": [{"person_id": paid, "name": "甲", "standard_fen": 25000, "subsidy_fen": 0, "payable_fen": 25000}]}),
        "payments", T_NEW))
    sub.db.rollovers.delete_one({"_id": "entitlements:2021"})  # a fresh run over every standing identity
    while not (report := subsidy_handlers.publish_year(ctx, 2021, limit=2))["done"]:
        pass
    assert report["total"]["frozen"] >= 1
    assert "2021" not in sub.db.identities.find_one({"_id": paid})["published"]  # charged 250, stays so

    grant(ctx, fresh, "MZ-YR-FRESH")
    assert set(sub.db.identities.find_one({"_id": fresh})["published"]) == {"2020", "2021"}

"""Changes (异动) and corrections on the real store.

- 001_93f5b63ac6b4a653.txt 七(二): 在办理了缴费登记后，不允许办理异动 — after payment registration for the
  year, changes are refused.
- 001 七(一): 县医保局要在3个工作日内完成医保系统信息修改 — corrections are tracked against 3 working days,
  overdue ones are published once.
"""
from __future__ import annotations

import json
import secrets
from datetime import date, datetime, timedelta

import pytest

from services.registry import bootstrap as boot
from services.registry.entrypoints.flask_app import create_app
from services.registry.service_layer.handlers import on_payment_confirmed, report_overdue_corrections
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event
from tests.helpers import household_payload
from tools.ids import make_id

NOW = datetime(2019, 9, 30, 16, 0, tzinfo=SHANGHAI)  # the Monday before the National Day holiday
COUNTY, BAIYA = secrets.token_hex(8), secrets.token_hex(8)


@pytest.fixture(scope="module")
def clock():
    return FixedClock(NOW)


@pytest.fixture(scope="module")
def client(namespace, tmp_path_factory, clock):
    import os
    d = tmp_path_factory.mktemp("tok")
    (d / "t.json").write_text(json.dumps({"tokens": [
        {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"},
        {"sha256": token_hash(BAIYA), "subject": "baiya", "role": "township", "county": "431122", "township": "白牙市镇"}]}))
    os.environ["AUTH_TOKENS_FILE"] = str(d / "t.json")
    yield create_app(clock).test_client()
    os.environ.pop("AUTH_TOKENS_FILE")


def county():
    return {"Authorization": f"Bearer {COUNTY}"}


def baiya():
    return {"Authorization": f"Bearer {BAIYA}"}


def register(client, no, township="白牙市镇", seed=0):
    body = household_payload(no, township, seed=seed)
    r = client.post("/v1/counties/431122/households", json=body, headers=county())
    assert r.status_code == 201, r.json
    return body


def pay(c, body, order_no):
    env = Envelope.new(Event("payments.payment.confirmed", {
        "order_no": order_no, "receipt_no": "R" + order_no, "household_no": body["household_no"], "year": 2020,
        "county": "431122", "township": body["township"], "village": body["village"], "head_name": "成员0",
        "amount_fen": 75000, "channel": "mobile_app", "gateway": "g", "transaction_id": "t", "paid_at": NOW.isoformat(),
        "members": [{"person_id": m["id_number"], "name": m["name"], "standard_fen": 25000, "subsidy_fen": 0,
                     "payable_fen": 25000} for m in body["members"]]}), "payments", NOW)
    on_payment_confirmed(boot.repository(c), env)


def test_a_birth_is_recorded_before_payment_and_refused_after(client, clock):
    body = register(client, "CHG-0001", seed=41)
    baby = {"id_number": make_id(date(2019, 9, 20), 5, "F"), "name": "新生儿", "relation": "子女"}
    r = client.post("/v1/counties/431122/households/2020/CHG-0001/changes", json={"kind": "birth", "member": baby}, headers=baiya())
    assert r.status_code == 200 and len(r.json["members"]) == 4
    c = boot.bootstrap(clock)
    hh = c.db.households.find_one({"_id": "2020:CHG-0001"})
    assert [e["payload"]["change"] for e in hh["_outbox"].values() if e["type"] == "registry.household.changed"] == ["birth"]
    body["members"].append(baby)
    pay(c, body, "P-CHG-0001")
    r = client.post("/v1/counties/431122/households/2020/CHG-0001/changes",
                    json={"kind": "death", "id_number": body["members"][1]["id_number"]}, headers=baiya())
    assert (r.status_code, r.json["code"]) == (409, "LOCKED_AFTER_PAYMENT")
    assert len(c.db.households.find_one({"_id": "2020:CHG-0001"})["members"]) == 4


def test_a_person_moving_out_frees_their_claim_for_another_household(client):
    first = register(client, "CHG-0002", seed=42)
    leaving = first["members"][2]
    r = client.post("/v1/counties/431122/households/2020/CHG-0002/changes",
                    json={"kind": "move_out", "id_number": leaving["id_number"], "reason": "迁往花桥镇"}, headers=county())
    assert r.status_code == 200 and len(r.json["members"]) == 2
    second = household_payload("CHG-0003", "花桥镇", seed=43)
    second["members"][1] = {**leaving, "relation": "配偶"}
    assert client.post("/v1/counties/431122/households", json=second, headers=county()).status_code == 201


def test_the_head_cannot_simply_leave(client):
    body = register(client, "CHG-0004", seed=44)
    r = client.post("/v1/counties/431122/households/2020/CHG-0004/changes",
                    json={"kind": "death", "id_number": body["members"][0]["id_number"]}, headers=county())
    assert (r.status_code, r.json["code"]) == (400, "HEAD_REQUIRED")


def test_a_correction_is_tracked_against_three_working_days_and_overdue_ones_are_published_once(client, clock):
    body = register(client, "CHG-0005", seed=45)
    r = client.post("/v1/counties/431122/corrections", json={"household_no": "CHG-0005", "year": 2020,
                                             "id_number": body["members"][1]["id_number"],
                                             "changes": {"name": "成员一"}, "reason": "姓名错字"}, headers=baiya())
    assert r.status_code == 201
    assert r.json["due_at"].startswith("2019-10-10T23:59:59")  # Oct 1-7 are holidays
    cid = r.json["correction_id"]
    c = boot.bootstrap(clock)
    corrections = boot.corrections(c)
    clock.set(datetime(2019, 10, 10, 18, 0, tzinfo=SHANGHAI))
    assert report_overdue_corrections(corrections, clock) == 0
    clock.set(datetime(2019, 10, 11, 9, 0, tzinfo=SHANGHAI))
    listed = client.get("/v1/counties/431122/corrections?overdue=1", headers=baiya()).json["corrections"]
    assert [x["correction_id"] for x in listed] == [cid] and listed[0]["id_number"].count("*") == 8
    assert report_overdue_corrections(corrections, clock) == 1
    assert report_overdue_corrections(corrections, clock) == 0  # once
    doc = c.db.corrections.find_one({"_id": cid})
    assert [e["type"] for e in doc["_outbox"].values()] == ["registry.correction.overdue"]
    # county staff approve: the household changes and publishes its new snapshot
    assert client.post(f"/v1/counties/431122/corrections/{cid}/decision", json={"approve": True}, headers=baiya()).status_code == 403
    r = client.post(f"/v1/counties/431122/corrections/{cid}/decision", json={"approve": True}, headers=county())
    assert r.status_code == 200 and r.json["status"] == "approved" and r.json["overdue"] is False
    hh = client.get("/v1/counties/431122/households/2020/CHG-0005", headers=county()).json
    assert hh["members"][1]["name"] == "成员一"
    r = client.post(f"/v1/counties/431122/corrections/{cid}/decision", json={"approve": False}, headers=county())
    assert (r.status_code, r.json["code"]) == (409, "CORRECTION_DECIDED")
    clock.set(NOW)


def test_a_corrected_id_number_moves_the_persons_claim(client, clock):
    body = register(client, "CHG-0006", seed=46)
    wrong = body["members"][2]["id_number"]
    right = make_id(date(2001, 7, 7), 9, "M")
    r = client.post("/v1/counties/431122/corrections", json={"household_no": "CHG-0006", "year": 2020, "id_number": wrong,
                                             "changes": {"id_number": right}, "reason": "身份证号录入错误"}, headers=county())
    cid = r.json["correction_id"]
    assert client.post(f"/v1/counties/431122/corrections/{cid}/decision", json={"approve": True}, headers=county()).status_code == 200
    c = boot.bootstrap(clock)
    assert c.db.persons.find_one({"_id": f"2020:{wrong}"}) is None
    assert c.db.persons.find_one({"_id": f"2020:{right}"})["household"] == "2020:CHG-0006"


def test_a_duplicate_is_registered_listed_with_both_places_and_resolved_by_county_staff(client, clock):
    """多地重复参保 (003 三.3) is resolved by the county (001 七(一)), the person kept in one household
    (001 五: 以户籍家庭为单位…到户籍所在地所属村(社区)参保缴费)."""
    first = register(client, "DUP-0001", "白牙市镇", seed=51)
    second = household_payload("DUP-0002", "花桥镇", seed=52)
    shared_person = first["members"][2]
    second["members"][2] = dict(shared_person)
    r = client.post("/v1/counties/431122/households", json=second, headers=county())
    assert r.status_code == 201 and len(r.json["members"]) == 3  # failed before: 409 DUPLICATE_PERSON
    assert [m["duplicate"]["status"] for m in r.json["members"] if "duplicate" in m] == ["open"]
    assert client.get("/v1/counties/431122/duplicates?status=open", headers=baiya()).status_code == 403  # county staff only
    cases = client.get("/v1/counties/431122/duplicates?status=open", headers=county()).json["duplicates"]
    case = next(x for x in cases if x["kept"]["household_no"] == "DUP-0001")
    assert case["kept"]["township"] == "白牙市镇" and case["others"][0]["township"] == "花桥镇"
    assert case["id_number"].count("*") == 8
    # while the case is open the first household holds the person's claim
    c = boot.bootstrap(clock)
    assert c.db.persons.find_one({"_id": f"2020:{shared_person['id_number']}"})["household"] == "2020:DUP-0001"
    # county staff decide the person belongs to the second household: they leave the first
    r = client.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": shared_person["id_number"], "keep": "other"},
                    headers=county())
    assert r.status_code == 200 and r.json["status"] == "resolved"
    assert len(client.get("/v1/counties/431122/households/2020/DUP-0001", headers=county()).json["members"]) == 2
    assert len(client.get("/v1/counties/431122/households/2020/DUP-0002", headers=county()).json["members"]) == 3
    assert c.db.persons.find_one({"_id": f"2020:{shared_person['id_number']}"})["household"] == "2020:DUP-0002"
    hh = c.db.households.find_one({"_id": "2020:DUP-0001"})
    assert [e["payload"]["change"] for e in hh["_outbox"].values() if e["type"] == "registry.household.changed"] \
        == ["move_out"]
    r = client.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": shared_person["id_number"], "keep": "other"},
                    headers=county())
    assert r.json["code"] == "DUPLICATE_RESOLVED"


def test_a_resolution_that_cannot_hold_writes_nothing_and_two_others_need_a_household_no(client, clock):
    first = register(client, "DUP-0011", "白牙市镇", seed=55)
    pid = first["members"][2]["id_number"]
    for no, town, seed in (("DUP-0012", "花桥镇", 56), ("DUP-0013", "川岩乡", 57)):
        body = household_payload(no, town, seed=seed)
        body["members"][2] = dict(first["members"][2])
        assert client.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    r = client.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": pid, "keep": "other"}, headers=county())
    assert (r.status_code, r.json["code"]) == (400, "DUPLICATE_HOUSEHOLD_REQUIRED")
    # the first household paid meanwhile: it cannot give the person up (001 七(二)), nothing moves
    c = boot.bootstrap(clock)
    pay(c, first, "P-DUP-0011")
    r = client.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": pid, "keep": "other", "household_no": "DUP-0013"},
                    headers=county())
    assert (r.status_code, r.json["code"]) == (409, "LOCKED_AFTER_PAYMENT")
    assert c.db.persons.find_one({"_id": f"2020:{pid}"})["household"] == "2020:DUP-0011"
    assert c.db.duplicates.find_one({"_id": f"2020:{pid}"}).get("pending") is None
    # keeping the paid household: the person leaves both others
    r = client.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": pid, "keep": "current"}, headers=county())
    assert r.status_code == 200 and {p["household_no"] for p in r.json["resolution"]["left"]} == {"DUP-0012", "DUP-0013"}
    for no in ("DUP-0012", "DUP-0013"):
        assert len(client.get(f"/v1/counties/431122/households/2020/{no}", headers=county()).json["members"]) == 2


def test_people_with_employee_insurance_are_left_out_and_reported(client):
    # 001 二: residents other than those already in employee insurance (城镇职工医保) enrol
    body = household_payload("EXC-0001", "白牙市镇", seed=53)
    employee = body["members"][1]["id_number"]
    assert client.post("/v1/counties/431122/exclusions", json={"year": 2020, "id_numbers": [employee]}, headers=baiya()).status_code == 403
    r = client.post("/v1/counties/431122/exclusions", json={"year": 2020, "id_numbers": [employee]}, headers=county())
    assert r.json == {"received": 1, "added": 1}
    r = client.post("/v1/counties/431122/households", json=body, headers=county())
    assert r.status_code == 201 and len(r.json["members"]) == 2
    assert [x["code"] for x in r.json["excluded"]] == ["EMPLOYEE_INSURED"]
    r = client.post("/v1/counties/431122/exclusions", json={"year": 2020, "id_numbers": ["123"]}, headers=county())
    assert (r.status_code, r.json["code"]) == (400, "ID_FORMAT")


def test_accuracy_counts_people_with_open_corrections_or_duplicates_and_is_published(client, clock):
    # 001 附件2 2.2: 参保信息录入准确率 — definition in docs/accuracy.md
    # registered persons are counted by registry's worker from its own household events: the
    # relay and the consumer run for real (tests.helpers.run_until)
    from tests.helpers import run_until
    c = boot.bootstrap(clock)

    def table():
        return {r["township"]: r for r in client.get("/v1/counties/431122/accuracy/2020", headers=county()).json["rows"]}
    run_until(lambda: not c.db.outbox.count_documents({}), "registry's events so far", relays=[c], consumers=[c])
    before = table()
    body = register(client, "ACC-0001", "水岭乡", seed=61)
    client.post("/v1/counties/431122/corrections", json={"household_no": "ACC-0001", "year": 2020,
                                         "id_number": body["members"][0]["id_number"],
                                         "changes": {"name": "改名"}, "reason": "错字"}, headers=county())
    run_until(lambda: table()["水岭乡"]["registered_persons"] == before["水岭乡"]["registered_persons"] + 3,
              "the new household's three members counted", relays=[c], consumers=[c])
    rows = table()
    sl = rows["水岭乡"]
    assert sl["persons_with_open_problems"] == before["水岭乡"]["persons_with_open_problems"] + 1
    assert sl["rate_bp"] < 10000 and rows["舜管局"]["rate_bp"] == 10000  # nobody registered: nothing wrong
    r = client.post("/v1/counties/431122/accuracy/2020/publish", headers=county())
    assert r.status_code == 201
    reports = list(c.db.accuracy_reports.find({}))
    assert [e["type"] for e in reports[-1]["_outbox"].values()] == ["registry.accuracy.published"]


def test_a_person_is_found_by_id_number_within_the_callers_scope(client):
    body = register(client, "FIND-0001", "花桥镇", seed=62)
    pid = body["members"][1]["id_number"]
    r = client.post("/v1/counties/431122/persons/lookup", json={"id_number": pid}, headers=county())
    assert r.status_code == 200 and r.json["household_no"] == "FIND-0001"
    assert client.post("/v1/counties/431122/persons/lookup", json={"id_number": pid}, headers=baiya()).json["code"] == "SCOPE_TOWNSHIP"
    other = make_id(date(1955, 5, 5), 77, "F")
    assert client.post("/v1/counties/431122/persons/lookup", json={"id_number": other}, headers=county()).json["code"] == "PERSON_NOT_FOUND"


def test_a_split_forms_a_new_household_and_a_merge_ends_one(client, clock):
    # 分户/合户 are changes (异动): allowed before payment registration only (001 七(二))
    body = register(client, "SPL-0001", "白牙市镇", seed=71)
    child = body["members"][2]["id_number"]
    r = client.post("/v1/counties/431122/households/2020/SPL-0001/split", headers=county(), json={
        "id_numbers": [child], "new_household_no": "SPL-0002", "new_head": child, "reason": "子女成年分户"})
    assert r.status_code == 201, r.json
    assert len(r.json["source"]["members"]) == 2 and r.json["new"]["head_name"] == body["members"][2]["name"]
    c = boot.bootstrap(clock)
    assert c.db.persons.find_one({"_id": f"2020:{child}"})["household"] == "2020:SPL-0002"
    new_doc = c.db.households.find_one({"_id": "2020:SPL-0002"})
    assert [e["type"] for e in new_doc["_outbox"].values()] == ["registry.household.registered"]
    # and back together
    r = client.post("/v1/counties/431122/households/2020/SPL-0001/merge", headers=county(),
                    json={"other_household_no": "SPL-0002", "reason": "合户"})
    assert r.status_code == 200 and len(r.json["members"]) == 3
    assert c.db.persons.find_one({"_id": f"2020:{child}"})["household"] == "2020:SPL-0001"
    gone = client.get("/v1/counties/431122/households/2020/SPL-0002", headers=county())
    assert (gone.status_code, gone.json["code"]) == (404, "HOUSEHOLD_MERGED")
    ended = c.db.households.find_one({"_id": "2020:SPL-0002"})
    assert "registry.household.dissolved" in [e["type"] for e in ended["_outbox"].values()]


def test_a_split_needs_a_new_head_among_those_leaving_and_a_paid_household_cannot_split(client, clock):
    body = register(client, "SPL-0003", "白牙市镇", seed=72)
    r = client.post("/v1/counties/431122/households/2020/SPL-0003/split", headers=county(), json={
        "id_numbers": [body["members"][2]["id_number"]], "new_household_no": "SPL-0004",
        "new_head": body["members"][1]["id_number"]})
    assert (r.status_code, r.json["code"]) == (400, "HEAD_REQUIRED")
    pay(boot.bootstrap(clock), body, "P-SPL-0003")
    r = client.post("/v1/counties/431122/households/2020/SPL-0003/split", headers=county(), json={
        "id_numbers": [body["members"][2]["id_number"]], "new_household_no": "SPL-0004",
        "new_head": body["members"][2]["id_number"]})
    assert (r.status_code, r.json["code"]) == (409, "LOCKED_AFTER_PAYMENT")


BAD_CHANGES = [{"head_phone": 13812345678}, {"head_phone": "138-1234"}, {"birth_date": "昨天"}, {"sex": "X"},
               {"relation": "邻居"}, {"category": "vip"}, {"name": ""}, {"name": ["甲"]}, {"village": 5},
               {"id_number": "123"}]


@pytest.mark.parametrize("n", range(len(BAD_CHANGES)))
def test_a_correction_with_an_unusable_value_is_refused_when_filed(client, n):
    """Change values were not checked at all: a phone given as a number was a 500 at filing, and the
    county's approval of others crashed (date.fromisoformat) or wrote a relation, sex or category
    the roster does not know."""
    no = f"CHG-01{n:02d}"
    body = register(client, no, seed=100 + n)
    r = client.post("/v1/counties/431122/corrections", json={"household_no": no, "year": 2020,
                                             "id_number": body["members"][1]["id_number"],
                                             "changes": BAD_CHANGES[n], "reason": "更正"}, headers=county())
    assert (r.status_code, r.json["code"]) == (400, "CORRECTION_VALUE"), r.json
    assert "13812345678" not in r.get_data(as_text=True)


def test_a_village_roster_follows_registrations_splits_and_village_corrections_without_a_scan(client, clock):
    """001 七: the village checks its printed roster household by household (逐户逐人核对), so a
    household must be on the roster of the village it is in, after a split (分户) and after a
    correction of its village (信息更正). Read as the village's list by `_id`, never by scanning the
    county's households (issue 13: ~9 s per 100,000 documents on the local store)."""
    from services.registry.adapters.repository import VILLAGES, village_key
    from shared.policy import load_policy
    from shared.config import ROOT
    from pymongo import monitoring
    villages = load_policy(ROOT / "policies" / "dongan-2020.json").township("白牙市镇").villages
    first, other = villages[0], villages[1]
    body = register(client, "VR-0001", seed=61)
    register(client, "VR-0002", seed=62)

    def roster(village):
        r = client.get(f"/v1/counties/431122/exports/2020/白牙市镇/{village}?format=csv", headers=county())
        assert r.status_code == 200
        return sorted({line.split(",")[0] for line in r.data.decode("utf-8-sig").splitlines()[1:]} & {
            "VR-0001", "VR-0002", "VR-0003"})

    assert roster(first) == ["VR-0001", "VR-0002"]
    r = client.post("/v1/counties/431122/households/2020/VR-0001/split", json={
        "id_numbers": [body["members"][2]["id_number"]], "new_household_no": "VR-0003",
        "new_head": body["members"][2]["id_number"], "reason": "分户"}, headers=county())
    assert r.status_code == 201, r.json
    assert roster(first) == ["VR-0001", "VR-0002", "VR-0003"]
    r = client.post("/v1/counties/431122/corrections", json={"household_no": "VR-0002", "year": 2020,
                    "changes": {"village": other}, "reason": "村名登记错误"}, headers=county())
    assert r.status_code == 201, r.json
    r = client.post(f"/v1/counties/431122/corrections/{r.json['correction_id']}/decision", json={"approve": True},
                    headers=county())
    assert r.status_code == 200, r.json
    assert roster(first) == ["VR-0001", "VR-0003"] and roster(other) == ["VR-0002"]
    c = boot.bootstrap(clock)
    assert "VR-0002" not in c.db[VILLAGES].find_one({"_id": village_key(2020, "白牙市镇", first)})["m"]  # pruned
    shapes = []

    class Filters(monitoring.CommandListener):
        on = True

        def started(self, e):
            if self.on and e.command_name == "find":
                shapes.append((e.command["find"], sorted(e.command.get("filter") or {})))

        def succeeded(self, e):
            pass

        def failed(self, e):
            pass
    listener = Filters()
    monitoring.register(listener)
    try:
        fresh = create_app(clock).test_client()  # a client made after the listener is registered
        assert fresh.get(f"/v1/counties/431122/exports/2020/白牙市镇/{first}", headers=county()).status_code == 200
    finally:
        listener.on = False
    assert ("households", ["_id"]) in shapes and all(f == ["_id"] for coll, f in shapes if coll == "households")


def test_registered_persons_follow_the_newest_snapshot_whatever_the_order_of_the_events(clock):
    """The accuracy table's registered persons (001 附件2 2.2, docs/accuracy.md) come from registry's own
    household events, delivered at least once and in any order: an older snapshot arriving late, or
    one delivered twice, changes nothing; a dissolved household (合户) counts nobody."""
    from services.registry.service_layer.handlers import on_household_snapshots
    c = boot.bootstrap(clock)
    repo = boot.repository(c)

    def event(kind, seq, n, no="CNT-0001"):
        payload = {"household_no": no, "year": 2020, "county": "431122", "township": "舜管局", "village": "x",
                   "members": [{"person_id": str(i)} for i in range(n)]}
        return Envelope(id=f"e{seq}{no}", type=f"registry.household.{kind}", version=1, occurred_at=NOW.isoformat(),
                        producer="registry", correlation_id="c", causation_id=None, payload=payload, seq=f"{seq:03d}")
    base = repo.registered_persons(2020, ["舜管局"]).get("舜管局", 0)
    on_household_snapshots(repo, [event("changed", 2, 4), event("registered", 1, 3), event("registered", 1, 3, "CNT-0002")])
    assert repo.registered_persons(2020, ["舜管局"])["舜管局"] == base + 4 + 3
    on_household_snapshots(repo, [event("registered", 1, 3)])  # delivered again, late
    on_household_snapshots(repo, [event("changed", 2, 4)])
    assert repo.registered_persons(2020, ["舜管局"])["舜管局"] == base + 7
    on_household_snapshots(repo, [event("dissolved", 3, 0)])
    assert repo.registered_persons(2020, ["舜管局"])["舜管局"] == base + 3

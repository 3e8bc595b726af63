"""Quotes that registry's decisions hold or open, on the real store and broker: registry writes its
events through the outbox, its relay publishes them, payments' own consumer keeps the read models.

Rules quoted: 001_93f5b63ac6b4a653.txt (Dong'an 2020) 五 (参保人员应以户籍家庭为单位整体……参保缴费，
同一户籍家庭人员不得拆分参保、不得选择性参保: a household with a member still enrolled in two places
(多地重复参保) is held until county staff resolve the case); 四 (未在规定缴费期内集中参保缴费的，原则上不得
中途参保……特殊情形……可以按当年度城乡居民医保筹资标准(含个人缴费部分和财政补助部分)一次性足额缴纳基本医疗
保险费，从缴费的下个月起享受医保待遇).
"""
from __future__ import annotations

import json
import os
import secrets
from datetime import date, datetime

import pytest

from services.payments import bootstrap as payments_boot
from services.payments.entrypoints.flask_app import create_app as payments_app
from services.registry import bootstrap as registry_boot
from services.registry.adapters.duplicates import changed_payload
from services.registry.entrypoints.flask_app import create_app as registry_app
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.masking import mask_id
from tests.helpers import household_payload, run_until, secret_files, signed_post
from tools.ids import make_id

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)  # inside the 2020 window
COUNTY = secrets.token_hex(8)
BANK_SECRET = secrets.token_hex(16)
MONEY_COLLECTIONS = ("payments", "receipts", "money_log", "orders", "idempotency", "transitions", "reversals")


@pytest.fixture(scope="module")
def secrets_files(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
        {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"}], gateways=[
        {"id": "bank-a", "secret": BANK_SECRET, "kind": "bank", "channels": ["mobile_app"]}]):
        yield


@pytest.fixture(scope="module")
def rc(secrets_files):
    return registry_boot.bootstrap(FixedClock(NOW))


@pytest.fixture(scope="module")
def pc(secrets_files):
    return payments_boot.bootstrap(FixedClock(NOW))


@pytest.fixture(scope="module")
def registry(secrets_files):
    return registry_app(FixedClock(NOW)).test_client()


def county():
    return {"Authorization": f"Bearer {COUNTY}"}


def signed(client, path, payload, clock, idem=None):
    return signed_post(client, path, payload, secret=BANK_SECRET, at=clock.now(),
                       extra={"Idempotency-Key": idem} if idem else None)

def money(pc):
    return {c: sorted(str(d) for d in pc.db[c].find({}, {"_outbox": 0})) for c in MONEY_COLLECTIONS}


def deliver(rc, pc, until, what):
    """Registry's relay publishes what its writes carry; payments' own consumer takes it."""
    run_until(until, f"payments received {what}", relays=(rc,), consumers=(pc,), timeout=20)

def registry_takes_the_payment(rc, pc, household_no):
    """Payments' relay publishes the confirmation; registry's consumer records the household paid."""
    run_until(lambda: (rc.db.households.find_one({"_id": f"2020:{household_no}"}).get("enrolment") or {}).get(
        "status") == "paid", "registry recording the mid-year payment", relays=(pc,), consumers=(rc,), timeout=20)

def case_status(pc, person_id):
    d = pc.db.duplicate_cases.find_one({"_id": f"2020:{person_id}"})
    return d and d["status"]


# ---- 多地重复参保 holds the household that has the person ------------------------------------------

def quote_of(api, clock, household_no):
    return signed(api, "/v1/counties/431122/quotes", {"household_no": household_no, "year": 2020}, clock)


def members_in_payments(pc, household_no):
    d = pc.db.households.find_one({"_id": f"2020:{household_no}"})
    return d and sorted(m["person_id"] for m in d["members"])


def two_households_sharing_a_person(registry, first_no, second_no, seed):
    """The second household registers a person the first has: 201, the person flagged in both."""
    first = household_payload(first_no, "白牙市镇", seed=seed)
    assert registry.post("/v1/counties/431122/households", json=first, headers=county()).status_code == 201
    second = household_payload(second_no, "花桥镇", seed=seed + 1)
    held = first["members"][2]["id_number"]
    second["members"][2] = dict(first["members"][2])
    r = registry.post("/v1/counties/431122/households", json=second, headers=county())
    assert r.status_code == 201, r.json  # failed before: 409 DUPLICATE_PERSON, the whole household refused
    for no in (first_no, second_no):
        got = registry.get(f"/v1/counties/431122/households/2020/{no}", headers=county()).json
        flagged = [m for m in got["members"] if "duplicate" in m]
        assert [m["id_number"] for m in flagged] == [mask_id(held)] and len(got["members"]) == 3
        assert [p["household_no"] for p in flagged[0]["duplicate"]["households"]] == [first_no, second_no]
    return first, second, held


def test_a_second_household_with_a_person_registered_elsewhere_is_registered_held_and_quoted_after_keep_other(
        registry, rc, pc):
    """001 五: 参保人员应以户籍家庭为单位整体到户籍所在地所属村(社区)参保缴费 — a person is enrolled in one
    household; 003 三.3 lists 多地重复参保 among the problems found in the field, which go to the bureau
    (县医保局, 001 七(一): errors reported are corrected by the county). Both households are registered,
    both held while the case is open (the household pays as a whole), and the county's decision puts
    the person in one of them: both are quoted without anything submitted again."""
    first, second, held = two_households_sharing_a_person(registry, "DQ-0001", "DQ-0002", 301)
    case = rc.db.duplicates.find_one({"_id": f"2020:{held}"})
    [opened] = [e for e in case["_outbox"].values() if e["type"] == "registry.duplicate.changed"]
    assert opened["snapshot"]  # published as the case then stands, with its version
    assert (changed_payload(case)["status"], changed_payload(case)["household_no"], case["version"]) == ("open", "DQ-0001", 1)
    assert [o["household_no"] for o in case["others"]] == ["DQ-0002"]
    # the event names every household with the person (docs/events.md), the holder first
    assert [h["household_no"] for h in changed_payload(case)["households"]] == ["DQ-0001", "DQ-0002"]
    deliver(rc, pc, lambda: members_in_payments(pc, "DQ-0002") and case_status(pc, held) == "open",
            "both households and the open case")

    clock = FixedClock(NOW)
    api = payments_app(clock).test_client()
    before = money(pc)
    for no in ("DQ-0001", "DQ-0002"):  # the person holds both quotes
        q = quote_of(api, clock, no)
        assert (q.status_code, q.json["code"]) == (409, "MEMBER_DUPLICATE_UNRESOLVED"), no
        assert mask_id(held) in q.json["message"] and held not in q.get_data(as_text=True)
    o = signed(api, "/v1/counties/431122/orders", {"household_no": "DQ-0002", "year": 2020, "channel": "mobile_app"}, clock,
               idem="dup-held-0002")
    assert (o.status_code, o.json["code"]) == (409, "MEMBER_DUPLICATE_UNRESOLVED")
    assert money(pc) == before  # nothing written: no order, no idempotency key, no money log

    # the county decides the person belongs to the second household: they leave the first
    r = registry.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": held, "keep": "other", "note": "户籍在花桥镇"},
                      headers=county())
    assert r.status_code == 200 and r.json["status"] == "resolved", r.json
    assert r.json["kept"]["household_no"] == "DQ-0002"
    one = registry.get("/v1/counties/431122/households/2020/DQ-0001", headers=county()).json
    two = registry.get("/v1/counties/431122/households/2020/DQ-0002", headers=county()).json
    assert mask_id(held) not in [m["id_number"] for m in one["members"]] and len(one["members"]) == 2
    assert mask_id(held) in [m["id_number"] for m in two["members"]] and len(two["members"]) == 3
    assert not any("duplicate" in m for m in one["members"] + two["members"])
    assert rc.db.persons.find_one({"_id": f"2020:{held}"})["household"] == "2020:DQ-0002"  # failed before: nowhere
    deliver(rc, pc, lambda: case_status(pc, held) == "resolved" and len(members_in_payments(pc, "DQ-0001")) == 2,
            "the resolution and the first household without the person")
    q1, q2 = quote_of(api, clock, "DQ-0001"), quote_of(api, clock, "DQ-0002")
    assert (q1.status_code, q1.json["total_fen"]) == (200, 50000)  # two members at 250 yuan
    assert (q2.status_code, q2.json["total_fen"]) == (200, 75000)
    assert mask_id(held) in [x["id_number"] for x in q2.json["lines"]]  # the person is charged once, here
    assert mask_id(held) not in [x["id_number"] for x in q1.json["lines"]]
    o = signed(api, "/v1/counties/431122/orders", {"household_no": "DQ-0002", "year": 2020, "channel": "mobile_app"}, clock,
               idem="dup-held-0002")
    assert o.status_code == 201 and o.json["amount_fen"] == 75000

    # the same registration sent again is the household that exists: the decided case stays decided
    assert registry.post("/v1/counties/431122/households", json=second, headers=county()).json["code"] == "HOUSEHOLD_EXISTS"
    assert rc.db.duplicates.find_one({"_id": f"2020:{held}"})["status"] == "resolved"
    r = registry.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": held, "keep": "current"}, headers=county())
    assert r.json["code"] == "DUPLICATE_RESOLVED"


def test_keep_current_leaves_the_person_in_the_first_household_and_both_are_quoted(registry, rc, pc):
    first, second, held = two_households_sharing_a_person(registry, "DQ-0011", "DQ-0012", 391)
    deliver(rc, pc, lambda: members_in_payments(pc, "DQ-0012") and case_status(pc, held) == "open", "the open case")
    r = registry.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": held, "keep": "current", "note": "核实为本户成员"},
                      headers=county())
    assert r.status_code == 200 and r.json["kept"]["household_no"] == "DQ-0011"
    two = registry.get("/v1/counties/431122/households/2020/DQ-0012", headers=county()).json
    assert mask_id(held) not in [m["id_number"] for m in two["members"]] and len(two["members"]) == 2
    assert rc.db.persons.find_one({"_id": f"2020:{held}"})["household"] == "2020:DQ-0011"  # its claim untouched
    deliver(rc, pc, lambda: case_status(pc, held) == "resolved" and len(members_in_payments(pc, "DQ-0012")) == 2,
            "the resolution and the second household without the person")
    clock = FixedClock(NOW)
    api = payments_app(clock).test_client()
    q1, q2 = quote_of(api, clock, "DQ-0011"), quote_of(api, clock, "DQ-0012")
    assert (q1.status_code, q1.json["total_fen"]) == (200, 75000)
    assert (q2.status_code, q2.json["total_fen"]) == (200, 50000)
    # a third household registering the person re-opens the case and holds the first again
    third = household_payload("DQ-0013", "川岩乡", seed=393)
    third["members"][2] = dict(first["members"][2])
    assert registry.post("/v1/counties/431122/households", json=third, headers=county()).status_code == 201
    deliver(rc, pc, lambda: case_status(pc, held) == "open", "the re-opened case")
    assert quote_of(api, clock, "DQ-0011").json["code"] == "MEMBER_DUPLICATE_UNRESOLVED"
    assert quote_of(api, clock, "DQ-0012").status_code == 200  # no longer has the person


def places_of(rc, person_id):
    return [p["household_no"] for p in changed_payload(rc.db.duplicates.find_one({"_id": f"2020:{person_id}"}))["households"]]


def flagged_in(registry, household_no):
    got = registry.get(f"/v1/counties/431122/households/2020/{household_no}", headers=county()).json
    return [m["id_number"] for m in got["members"] if "duplicate" in m], len(got["members"])


def test_a_move_in_or_birth_of_a_person_registered_elsewhere_is_added_flagged_held_and_resolved(registry, rc, pc):
    """001 七(二): 参保人员在基层服务系统进行缴费登记前均可办理各项异动 — a move-in or a birth before payment
    registration is recorded; when the person is registered in another household already (多地重复参保,
    003 三.3), it goes to the bureau as a registration does (001 七(一): errors are reported to 县医保局,
    which corrects them): the member is added, flagged in both households, both quotes held until the
    county decides, then both quoted without anything submitted again."""
    first = household_payload("DQ-0021", "白牙市镇", seed=321)
    second = household_payload("DQ-0022", "花桥镇", seed=322)
    for body in (first, second):
        assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    mover = first["members"][2]
    r = registry.post("/v1/counties/431122/households/2020/DQ-0022/changes", headers=county(),
                      json={"kind": "move_in", "member": dict(mover), "reason": "迁入"})
    assert r.status_code == 200, r.json  # failed before: 409 DUPLICATE_PERSON
    assert [m["id_number"] for m in r.json["members"] if "duplicate" in m] == [mask_id(mover["id_number"])]
    for no, n in (("DQ-0021", 3), ("DQ-0022", 4)):
        assert flagged_in(registry, no) == ([mask_id(mover["id_number"])], n)
    assert places_of(rc, mover["id_number"]) == ["DQ-0021", "DQ-0022"]
    assert rc.db.persons.find_one({"_id": f"2020:{mover['id_number']}"})["household"] == "2020:DQ-0021"
    # a baby already registered in the mother's household is born into the father's too
    baby = {"id_number": make_id(date(2019, 10, 20), 323, "F"), "name": "新生儿", "relation": "子女"}
    r = registry.post("/v1/counties/431122/households/2020/DQ-0021/changes", headers=county(), json={"kind": "birth", "member": baby})
    assert r.status_code == 200 and len(r.json["members"]) == 4, r.json
    third = household_payload("DQ-0023", "花桥镇", seed=323)
    assert registry.post("/v1/counties/431122/households", json=third, headers=county()).status_code == 201
    r = registry.post("/v1/counties/431122/households/2020/DQ-0023/changes", headers=county(), json={"kind": "birth", "member": baby})
    assert r.status_code == 200 and len(r.json["members"]) == 4, r.json
    assert places_of(rc, baby["id_number"]) == ["DQ-0021", "DQ-0023"]
    deliver(rc, pc, lambda: len(members_in_payments(pc, "DQ-0022") or []) == 4
            and len(members_in_payments(pc, "DQ-0023") or []) == 4
            and case_status(pc, mover["id_number"]) == "open" and case_status(pc, baby["id_number"]) == "open",
            "the changes and the open cases")
    clock = FixedClock(NOW)
    api = payments_app(clock).test_client()
    for no in ("DQ-0021", "DQ-0022", "DQ-0023"):  # the people hold every household that has them
        q = quote_of(api, clock, no)
        assert (q.status_code, q.json["code"]) == (409, "MEMBER_DUPLICATE_UNRESOLVED"), no

    r = registry.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": mover["id_number"], "keep": "other",
                                                              "note": "已迁入花桥镇"}, headers=county())
    assert r.status_code == 200 and r.json["kept"]["household_no"] == "DQ-0022", r.json
    r = registry.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": baby["id_number"], "keep": "current"},
                      headers=county())
    assert r.status_code == 200 and r.json["kept"]["household_no"] == "DQ-0021", r.json
    assert rc.db.persons.find_one({"_id": f"2020:{mover['id_number']}"})["household"] == "2020:DQ-0022"
    assert rc.db.persons.find_one({"_id": f"2020:{baby['id_number']}"})["household"] == "2020:DQ-0021"
    assert [flagged_in(registry, no) for no in ("DQ-0021", "DQ-0022", "DQ-0023")] == [([], 3), ([], 4), ([], 3)]
    deliver(rc, pc, lambda: case_status(pc, mover["id_number"]) == case_status(pc, baby["id_number"]) == "resolved"
            and len(members_in_payments(pc, "DQ-0021")) == 3 and len(members_in_payments(pc, "DQ-0023")) == 3,
            "the resolutions and the households as decided")
    assert [quote_of(api, clock, no).json["total_fen"] for no in ("DQ-0021", "DQ-0022", "DQ-0023")] == [75000, 100000, 75000]


def test_a_split_and_a_merge_of_a_member_in_an_open_case_leave_the_claim_with_its_holder(registry, rc, pc):
    """003 三.3 (多地重复参保 goes to the bureau) with 001 七(二) (分户/合户 are changes allowed before payment
    registration): moving the person within the second household's family leaves the first household
    holding the claim, the case names the household the person is in now, and the county's decision
    still puts the person in exactly one household."""
    first, second, held = two_households_sharing_a_person(registry, "DQ-0031", "DQ-0032", 331)
    spouse = second["members"][1]["id_number"]
    r = registry.post("/v1/counties/431122/households/2020/DQ-0032/split", headers=county(), json={
        "id_numbers": [spouse, held], "new_household_no": "DQ-0033", "new_head": spouse, "reason": "分户"})
    assert r.status_code == 201, r.json
    assert rc.db.persons.find_one({"_id": f"2020:{held}"})["household"] == "2020:DQ-0031"  # failed before: DQ-0033
    assert places_of(rc, held) == ["DQ-0031", "DQ-0033"]
    assert flagged_in(registry, "DQ-0033") == ([mask_id(held)], 2) and flagged_in(registry, "DQ-0032") == ([], 1)
    r = registry.post("/v1/counties/431122/households/2020/DQ-0032/merge", headers=county(),
                      json={"other_household_no": "DQ-0033", "reason": "合户"})
    assert r.status_code == 200 and len(r.json["members"]) == 3, r.json
    assert rc.db.persons.find_one({"_id": f"2020:{held}"})["household"] == "2020:DQ-0031"  # failed before: DQ-0032
    assert places_of(rc, held) == ["DQ-0031", "DQ-0032"]
    # the holder splits the person off: the claim goes with them and the case names the new holder
    r = registry.post("/v1/counties/431122/households/2020/DQ-0031/split", headers=county(), json={
        "id_numbers": [held], "new_household_no": "DQ-0034", "new_head": held})
    assert r.status_code == 201, r.json
    assert rc.db.persons.find_one({"_id": f"2020:{held}"})["household"] == "2020:DQ-0034"
    assert places_of(rc, held) == ["DQ-0034", "DQ-0032"]
    deliver(rc, pc, lambda: members_in_payments(pc, "DQ-0034") and len(members_in_payments(pc, "DQ-0031")) == 2
            and len(members_in_payments(pc, "DQ-0032")) == 3 and case_status(pc, held) == "open", "the changes")
    clock = FixedClock(NOW)
    api = payments_app(clock).test_client()
    assert [quote_of(api, clock, no).status_code for no in ("DQ-0031", "DQ-0032", "DQ-0034")] == [200, 409, 409]

    r = registry.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": held, "keep": "current"}, headers=county())
    assert r.status_code == 200 and r.json["kept"]["household_no"] == "DQ-0034", r.json
    assert rc.db.persons.find_one({"_id": f"2020:{held}"})["household"] == "2020:DQ-0034"
    assert [flagged_in(registry, no) for no in ("DQ-0031", "DQ-0032", "DQ-0034")] == [([], 2), ([], 2), ([], 1)]
    deliver(rc, pc, lambda: case_status(pc, held) == "resolved" and len(members_in_payments(pc, "DQ-0032")) == 2,
            "the resolution")
    assert [quote_of(api, clock, no).json["total_fen"] for no in ("DQ-0031", "DQ-0032", "DQ-0034")] == [50000, 50000, 25000]


def test_a_split_of_a_member_in_an_open_case_that_crashed_half_way_is_completed_by_repeating_it(registry, rc):
    """A crash after the new household and the case were written, before the source household lost the
    person: the case names every household that has the person meanwhile, and the split repeated
    completes it (the claim still with its holder, the case naming the new household only)."""
    from services.registry.service_layer import handlers
    first, second, held = two_households_sharing_a_person(registry, "DQ-0041", "DQ-0042", 341)
    spouse = second["members"][1]["id_number"]
    repo, cases = registry_boot.repository(rc), registry_boot.duplicates(rc)
    data = {"id_numbers": [spouse, held], "new_household_no": "DQ-0043", "new_head": spouse}

    class Crash(Exception):
        pass

    def crash(*a, **k):
        raise Crash()
    repo.save_change = crash  # the process dies before the source household is written
    with pytest.raises(Crash):
        handlers.split_household(repo, 2020, "DQ-0042", data, None, duplicates=cases)
    assert places_of(rc, held) == ["DQ-0041", "DQ-0042", "DQ-0043"]  # DQ-0042 still has the person
    del repo.save_change
    source, new = handlers.split_household(repo, 2020, "DQ-0042", data, None, duplicates=cases)
    assert (len(source.members), len(new.members)) == (1, 2)
    assert places_of(rc, held) == ["DQ-0041", "DQ-0043"]
    assert rc.db.persons.find_one({"_id": f"2020:{held}"})["household"] == "2020:DQ-0041"


def test_merging_the_holder_into_the_other_household_of_a_case_leaves_the_person_there_once(registry, rc):
    """合户 (001 七(二)) of the two households of a case: the person is a member once, the claim goes
    with the household that held it, and the case names the one household left for the county."""
    first = household_payload("DQ-0051", "白牙市镇", seed=351)
    second = household_payload("DQ-0052", "白牙市镇", seed=352)
    held = first["members"][2]["id_number"]
    second["members"][2] = dict(first["members"][2])
    for body in (first, second):
        assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    r = registry.post("/v1/counties/431122/households/2020/DQ-0052/merge", headers=county(), json={"other_household_no": "DQ-0051"})
    assert r.status_code == 200 and len(r.json["members"]) == 5, r.json
    assert [m["id_number"] for m in r.json["members"]].count(mask_id(held)) == 1
    assert rc.db.persons.find_one({"_id": f"2020:{held}"})["household"] == "2020:DQ-0052"
    assert places_of(rc, held) == ["DQ-0052"]  # failed before: the ended DQ-0051 still named, as holder
    r = registry.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": held, "keep": "current"}, headers=county())
    assert r.status_code == 200 and r.json["kept"]["household_no"] == "DQ-0052", r.json
    assert len(registry.get("/v1/counties/431122/households/2020/DQ-0052", headers=county()).json["members"]) == 5


def test_a_split_of_a_person_whose_case_is_being_decided_is_refused_and_writes_nothing(registry, rc):
    """A decision taken (its first write done) names the households as they were: moving the person now
    could leave them in none, so the split waits until the decision is repeated to its end."""
    first, second, held = two_households_sharing_a_person(registry, "DQ-0061", "DQ-0062", 361)
    cases = registry_boot.duplicates(rc)
    assert cases.begin(cases.get(2020, held), {"household_no": "DQ-0062"})
    spouse = second["members"][1]["id_number"]
    r = registry.post("/v1/counties/431122/households/2020/DQ-0062/split", headers=county(), json={
        "id_numbers": [spouse, held], "new_household_no": "DQ-0063", "new_head": spouse})
    assert (r.status_code, r.json["code"]) == (409, "DUPLICATE_RESOLVING"), r.json
    assert held not in r.get_data(as_text=True)
    assert rc.db.households.find_one({"_id": "2020:DQ-0063"}) is None and places_of(rc, held) == ["DQ-0061", "DQ-0062"]
    r = registry.post("/v1/counties/431122/duplicates/2020/resolution", json={"id_number": held, "keep": "other"}, headers=county())
    assert r.status_code == 200 and r.json["kept"]["household_no"] == "DQ-0062", r.json


def test_a_household_registry_never_had_is_not_told_to_wait_for_sync(pc):
    """Payments knows only what registry published: a household it never received was not registered
    there (or was refused), and waiting does not help; the answer says so."""
    clock = FixedClock(NOW)
    q = quote_of(payments_app(clock).test_client(), clock, "DQ-NEVER-9")
    assert (q.status_code, q.json["code"]) == (404, "HOUSEHOLD_UNKNOWN")
    assert "延迟" not in q.json["message"] and "未在医保系统登记" in q.json["message"]  # failed before: 数据同步可能有延迟


def test_an_older_duplicate_event_redelivered_late_does_not_reopen_a_resolved_case(pc):
    """The read model keeps registry's newest word by the envelope `seq` (as the household snapshots)."""
    from services.payments.service_layer.handlers import on_duplicate_changed
    from shared.events import Envelope, Event
    pid = household_payload("DQ-0003", seed=303)["members"][0]["id_number"]
    repo = payments_boot.repository(pc)

    def env(status, seq):
        e = Envelope.new(Event("registry.duplicate.changed", {
            "year": 2020, "person_id": pid, "status": status, "household_no": "DQ-0003", "township": "花桥镇",
            "village": "花桥村", "keep": "current" if status == "resolved" else None}), "registry", NOW)
        e.seq = seq
        return e
    on_duplicate_changed(repo, env("resolved", "00000000000000000002"))
    on_duplicate_changed(repo, env("open", "00000000000000000001"))
    assert case_status(pc, pid) == "resolved"
    on_duplicate_changed(repo, env("open", "00000000000000000003"))
    assert case_status(pc, pid) == "open"


def test_two_changes_of_a_case_written_close_together_are_applied_in_write_order(rc, pc):
    """An envelope's `seq` is taken before its write: a re-opening that took its seq first but was
    written last must win. The case's version, bumped in each write and published with the case as
    it stands, decides."""
    from services.payments.service_layer.handlers import on_duplicate_changed
    from shared.events import Envelope, Event
    pid = household_payload("DQ-0004", seed=304)["members"][0]["id_number"]
    repo = payments_boot.repository(pc)
    dups = registry_boot.duplicates(rc)
    dups.record(2020, pid, {"household_no": "DQ-0004", "township": "花桥镇", "village": "花桥村"},
                {"household_no": "DQ-0005", "township": "花桥镇", "village": "花桥村"}, NOW)
    opened = changed_payload(rc.db.duplicates.find_one({"_id": f"2020:{pid}"}))
    assert dups.resolve(rc.db.duplicates.find_one({"_id": f"2020:{pid}"}), {"keep": "current", "note": None,
                                                                            "by": "county", "at": NOW},
                        {"household_no": "DQ-0004", "township": "花桥镇", "village": "花桥村"})
    resolved = changed_payload(rc.db.duplicates.find_one({"_id": f"2020:{pid}"}))
    assert (opened["version"], resolved["version"]) == (1, 2)
    # the resolution arrives first although its envelope is older; the opening comes late with a newer seq
    on_duplicate_changed(repo, Envelope(id="e2", type="registry.duplicate.changed", version=1, occurred_at="",
                                        producer="registry", correlation_id="c", causation_id=None,
                                        payload=resolved, seq="00000000000000000001"))
    on_duplicate_changed(repo, Envelope(id="e1", type="registry.duplicate.changed", version=1, occurred_at="",
                                        producer="registry", correlation_id="c", causation_id=None,
                                        payload=opened, seq="00000000000000000009"))
    assert case_status(pc, pid) == "resolved"


# ---- 中途参保 after the window ------------------------------------------------------------------------

LATE = datetime(2020, 3, 2, 10, 0, tzinfo=SHANGHAI)  # after the 2020 window, inside the policy year
FIGURE_FEN = 80000  # a test figure: the notice prints none, so the shipped policy file leaves it null


@pytest.fixture(scope="module")
def policy_with_figure(tmp_path_factory):
    """A copy of the Dong'an 2020 policy file with the financing standard set."""
    from shared.config import ROOT
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    assert raw["mid_year"]["financing_standard_fen"] is None
    raw["mid_year"]["financing_standard_fen"] = FIGURE_FEN
    raw["places_file"] = str(ROOT / "policies" / raw["places_file"])
    path = tmp_path_factory.mktemp("policy") / "dongan-2020-with-figure.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return path


def payments_api(clock, policy_file=None):
    """Payments' API on `clock`, reading `policy_file` if given (the setting is read at start)."""
    old = os.environ.get("POLICY_FILE")
    if policy_file is not None:
        os.environ["POLICY_FILE"] = str(policy_file)
    try:
        return payments_app(clock).test_client()
    finally:
        os.environ.pop("POLICY_FILE", None) if old is None else os.environ.__setitem__("POLICY_FILE", old)


def approve(client, id_number, **body):
    return client.post("/v1/counties/431122/mid-year/decisions", json={"id_number": id_number, **body}, headers=county())


def test_mid_year_enrolment_after_the_window_charges_only_the_approved_member_at_the_financing_standard(
        registry, rc, pc, policy_with_figure):
    """001 四: 未在规定缴费期内集中参保缴费的，原则上不得中途参保……特殊情形（当年新迁入户口……）……可以按当年度
    城乡居民医保筹资标准(含个人缴费部分和财政补助部分)一次性足额缴纳基本医疗保险费. Registry records the
    approval with its event; payments refuses while the figure is unset, then charges that member alone
    at the figure; registry enrols that member alone when the payment is confirmed."""
    body = household_payload("MY-0001", "花桥镇", seed=311)
    assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    newcomer, other = body["members"][2]["id_number"], body["members"][0]["id_number"]
    late_registry = registry_app(FixedClock(LATE)).test_client()

    # registry: the decision with its reason; an approval of a registered person is recorded once
    refused = approve(late_registry, other)
    assert refused.status_code == 200 and (refused.json["allowed"], refused.json["recorded"]) == (False, False)
    assert refused.json["code"] == "MID_YEAR_NOT_ALLOWED"
    r = approve(late_registry, newcomer, special_case="moved_in")
    assert r.status_code == 201, r.json
    assert (r.json["allowed"], r.json["recorded"], r.json["pays"], r.json["benefits_from"]) == (
        True, True, "full_financing", "2020-04-01")
    assert r.json["id_number"] == mask_id(newcomer) and r.json["household_no"] == "MY-0001"
    assert approve(late_registry, newcomer, special_case="moved_in").status_code == 200  # the same decision again
    assert approve(late_registry, newcomer, special_case="graduate").json["code"] == "MID_YEAR_DECIDED"
    assert approve(registry, newcomer, special_case="moved_in").json["code"] == "MID_YEAR_NOT_NEEDED"  # in window
    stranger = household_payload("MY-NONE", seed=319)["members"][0]["id_number"]
    assert approve(late_registry, stranger, special_case="moved_in").json["code"] == "PERSON_NOT_FOUND"
    doc = rc.db.mid_year_approvals.find_one({"_id": f"2020:{newcomer}"})
    [event] = [e for e in doc["_outbox"].values() if e["type"] == "registry.mid_year.approved"]
    assert event["payload"]["pays"] == "full_financing" and event["payload"]["household_no"] == "MY-0001"
    assert rc.db.mid_year_approvals.find_one({"_id": f"2020:{other}"}) is None
    deliver(rc, pc, lambda: pc.db.households.find_one({"_id": "2020:MY-0001"})
            and pc.db.mid_year_approvals.find_one({"_id": f"2020:{newcomer}"}), "the household and the approval")

    # payments, figure unset (the shipped policy file): refused with its code, nothing written
    clock = FixedClock(LATE)
    unset = payments_api(clock)
    before = money(pc)
    q = signed(unset, "/v1/counties/431122/quotes", {"household_no": "MY-0001", "year": 2020}, clock)
    assert (q.status_code, q.json["code"]) == (422, "FINANCING_STANDARD_UNSET") and "筹资标准" in q.json["message"]
    o = signed(unset, "/v1/counties/431122/orders", {"household_no": "MY-0001", "year": 2020, "channel": "mobile_app"}, clock,
               idem="mid-year-unset")
    assert o.json["code"] == "FINANCING_STANDARD_UNSET" and money(pc) == before

    # figure set: the approved member alone, at the figure, no subsidy deducted
    api = payments_api(clock, policy_with_figure)
    q = signed(api, "/v1/counties/431122/quotes", {"household_no": "MY-0001", "year": 2020}, clock)
    assert q.status_code == 200, q.json
    assert (q.json["mid_year"], q.json["total_fen"], q.json["subsidy_fen"]) == (True, FIGURE_FEN, 0)
    assert [l["id_number"] for l in q.json["lines"]] == [mask_id(newcomer)]
    o = signed(api, "/v1/counties/431122/orders", {"household_no": "MY-0001", "year": 2020, "channel": "mobile_app"}, clock,
               idem="mid-year-set")
    assert o.status_code == 201 and o.json["amount_fen"] == FIGURE_FEN
    ack = signed(api, "/v1/counties/431122/notifications", {"order_no": o.json["order_no"], "transaction_id": "T-MID-1",
                                            "amount_fen": FIGURE_FEN, "paid_at": LATE.isoformat()}, clock)
    assert ack.status_code == 200 and ack.json["code"] == "SUCCESS", ack.json

    # registry takes the confirmed payment: the approved member is enrolled, the others are not
    registry_takes_the_payment(rc, pc, "MY-0001")
    hh = registry.get("/v1/counties/431122/households/2020/MY-0001", headers=county()).json
    assert [m["status"] for m in hh["members"]] == ["registered", "registered", "paid"]
    # one payment per household and year: another member cannot be approved to pay separately now
    assert approve(late_registry, other, special_case="graduate").json["code"] == "HOUSEHOLD_ALREADY_PAID"


def test_after_the_window_a_household_with_nobody_approved_is_refused_with_the_reason(registry, rc, pc,
                                                                                       policy_with_figure):
    """001 四: 未在规定缴费期内集中参保缴费的，原则上不得中途参保 — even with the figure set."""
    body = household_payload("MY-0002", "花桥镇", seed=312)
    assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    deliver(rc, pc, lambda: pc.db.households.find_one({"_id": "2020:MY-0002"}), "the household")
    clock = FixedClock(LATE)
    api = payments_api(clock, policy_with_figure)
    before = money(pc)
    q = signed(api, "/v1/counties/431122/quotes", {"household_no": "MY-0002", "year": 2020}, clock)
    assert (q.status_code, q.json["code"]) == (422, "WINDOW_CLOSED")
    assert "不得中途参保" in q.json["message"] and q.json["details"]["reason"] == "NO_MID_YEAR_APPROVAL"
    o = signed(api, "/v1/counties/431122/orders", {"household_no": "MY-0002", "year": 2020, "channel": "mobile_app"}, clock,
               idem="mid-year-nobody")
    assert o.json["code"] == "WINDOW_CLOSED" and money(pc) == before


def test_a_mid_year_approval_withdrawn_before_payment_is_not_charged_and_can_be_given_again(
        registry, rc, pc, policy_with_figure):
    """Staff correct an approval recorded in error (001 四 decides who may enrol mid-year): withdrawn
    before the payment, payments stops charging the person; approved again, charged again; once paid,
    it can no longer be withdrawn (a payment is undone by its reversal)."""
    body = household_payload("MY-0003", "花桥镇", seed=313)
    assert registry.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    person = body["members"][1]["id_number"]
    late = registry_app(FixedClock(LATE)).test_client()
    assert approve(late, person, special_case="graduate").status_code == 201
    path = "/v1/counties/431122/mid-year/approvals/2020/withdrawal"
    r = late.post(path, json={"id_number": person, "reason": "批准有误：该人员未毕业"}, headers=county())
    assert r.status_code == 200 and (r.json["status"], r.json["id_number"]) == ("withdrawn", mask_id(person))
    assert late.post(path, json={"id_number": person, "reason": "重复提交"},
                     headers=county()).json["reason"] == "批准有误：该人员未毕业"
    assert late.post(path, json={"id_number": person}, headers=county()).json["code"] == "VALIDATION_FAILED"
    stranger = household_payload("MY-NONE", seed=320)["members"][0]["id_number"]
    assert late.post(path, json={"id_number": stranger, "reason": "核对有误"},
                     headers=county()).json["code"] == "MID_YEAR_NOT_FOUND"
    deliver(rc, pc, lambda: pc.db.households.find_one({"_id": "2020:MY-0003"}) and (
        pc.db.mid_year_approvals.find_one({"_id": f"2020:{person}"}) or {}).get("status") == "withdrawn",
        "the approval and its withdrawal")
    clock = FixedClock(LATE)
    api = payments_api(clock, policy_with_figure)
    q = signed(api, "/v1/counties/431122/quotes", {"household_no": "MY-0003", "year": 2020}, clock)
    assert (q.status_code, q.json["code"]) == (422, "WINDOW_CLOSED")

    # approved again: charged again (the events carry the approval's version: 1, 2, 3)
    assert approve(late, person, special_case="graduate").status_code == 201
    assert rc.db.mid_year_approvals.find_one({"_id": f"2020:{person}"})["version"] == 3
    deliver(rc, pc, lambda: (pc.db.mid_year_approvals.find_one({"_id": f"2020:{person}"}) or {}).get("version") == 3,
            "the approval given again")
    q = signed(api, "/v1/counties/431122/quotes", {"household_no": "MY-0003", "year": 2020}, clock)
    assert q.status_code == 200 and q.json["total_fen"] == FIGURE_FEN
    o = signed(api, "/v1/counties/431122/orders", {"household_no": "MY-0003", "year": 2020, "channel": "mobile_app"}, clock,
               idem="mid-year-again")
    ack = signed(api, "/v1/counties/431122/notifications", {"order_no": o.json["order_no"], "transaction_id": "T-MID-3",
                                            "amount_fen": FIGURE_FEN, "paid_at": LATE.isoformat()}, clock)
    assert ack.json["code"] == "SUCCESS"
    registry_takes_the_payment(rc, pc, "MY-0003")
    r = late.post(path, json={"id_number": person, "reason": "缴费后发现有误"}, headers=county())
    assert (r.status_code, r.json["code"]) == (409, "MID_YEAR_PAID")

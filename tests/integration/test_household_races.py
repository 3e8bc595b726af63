"""A household's writers on the real store and bus (issue 9, items 1, 3 and 4).

- A payment event handled by the worker and a staff change from a web thread, released together
  by a barrier, again and again: neither write is lost (every household write is version-checked,
  docs/guarantees.md).
- The order fixes who is paid for: a birth while the order was open leaves the newborn unpaid and
  listed for mid-year enrolment (001_93f5b63ac6b4a653.txt 四: 出生28天以内新生儿……先行到乡镇办理当年度
  参保缴费); the payment is enrolled for the persons it paid for and never dead-lettered.
- A household merged into another before its registration went out is still published.
"""
from __future__ import annotations

import json
import secrets
import threading
from datetime import date, datetime

import pytest
from pymongo import monitoring

from services.registry import bootstrap as boot
from services.registry.adapters.repository import registered_payload
from services.registry.entrypoints.flask_app import create_app
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event, validate_payload
from tests.helpers import StoreCommands, sizes_seen, declare, household_payload, publish, running, secret_files
from tools.clients import wait_for
from tools.ids import make_id

NOW = datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)
COUNTY = secrets.token_hex(8)
ROUNDS = 10


@pytest.fixture(scope="module")
def env(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(COUNTY), "subject": "county", "role": "county", "county": "431122"}]):
        clock = FixedClock(NOW)
        yield create_app(clock).test_client(), boot.bootstrap(clock)


def county():
    return {"Authorization": f"Bearer {COUNTY}"}


def register(api, no, seed, township="白牙市镇"):
    body = household_payload(no, township, seed=seed)
    r = api.post("/v1/counties/431122/households", json=body, headers=county())
    assert r.status_code == 201, r.json
    return body


def payment(body, order_no, members=None):
    """payments.payment.confirmed as payments sends it: for the members its order was made for."""
    return Envelope.new(Event("payments.payment.confirmed", {
        "order_no": order_no, "receipt_no": "R" + order_no, "household_no": body["household_no"], "year": 2020,
        "county": "431122", "township": body["township"], "village": body["village"], "head_name": "成员0",
        "amount_fen": 25000 * len(members or body["members"]), "channel": "bank_withholding", "gateway": "g",
        "transaction_id": "T" + order_no, "paid_at": NOW.isoformat(),
        "members": [{"person_id": m["id_number"], "name": m["name"], "standard_fen": 25000, "subsidy_fen": 0,
                     "payable_fen": 25000} for m in (members or body["members"])]}), "payments", NOW)


def at_once(*calls):
    """Run each call on its own thread, released together; re-raise what a thread raised."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, f):
        start.wait()
        try:
            results[i] = f()
        except BaseException as e:  # noqa: BLE001 — handed back to the test
            results[i] = e
    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def test_a_payment_and_a_staff_correction_at_once_both_stay(env):
    api, c = env
    confirmed = boot.event_handlers(c)["payments.payment.confirmed"]  # the worker's handler
    for rnd in range(ROUNDS):
        no = f"RACE-C{rnd:03d}"
        body = register(api, no, seed=600 + rnd)
        r = api.post("/v1/counties/431122/corrections", json={"household_no": no, "year": 2020,
                                              "id_number": body["members"][1]["id_number"],
                                              "changes": {"name": "更正后姓名"}, "reason": "姓名错字"}, headers=county())
        assert r.status_code == 201, r.json
        cid = r.json["correction_id"]
        approved, _ = at_once(
            lambda: api.post(f"/v1/counties/431122/corrections/{cid}/decision", json={"approve": True}, headers=county()),
            lambda: confirmed(payment(body, f"P-RC-{rnd}")))
        assert approved.status_code == 200, approved.json
        doc = c.db.households.find_one({"_id": f"2020:{no}"})
        assert doc["members"][1]["name"] == "更正后姓名", f"round {rnd}: the correction was lost"
        assert [m["status"] for m in doc["members"]] == ["paid"] * 3, f"round {rnd}: the payment was lost"
        assert doc["enrolment"]["status"] == "paid" and doc["version"] == 3
        types = sorted(e["type"] for e in doc["_outbox"].values())
        assert types == ["registry.enrolment.changed", "registry.household.changed",
                         "registry.household.registered"]


def test_a_payment_and_a_death_at_once_lose_neither(env):
    """Whichever lands first decides: a death first is recorded and the payment, which paid for the
    person, is recorded for staff; a payment first locks the household and the death is refused
    (001 七(二): 在办理了缴费登记后，不允许办理异动). Never a death undone or a payment unrecorded."""
    api, c = env
    confirmed = boot.event_handlers(c)["payments.payment.confirmed"]
    outcomes = set()
    for rnd in range(ROUNDS):
        no = f"RACE-D{rnd:03d}"
        body = register(api, no, seed=640 + rnd)
        dead = body["members"][2]["id_number"]
        death, _ = at_once(
            lambda: api.post(f"/v1/counties/431122/households/2020/{no}/changes", json={"kind": "death", "id_number": dead},
                             headers=county()),
            lambda: confirmed(payment(body, f"P-RD-{rnd}")))
        doc = c.db.households.find_one({"_id": f"2020:{no}"})
        ids = [m["person_id"] for m in doc["members"]]
        assert doc["enrolment"]["status"] == "paid" and doc["enrolment"]["order_no"] == f"P-RD-{rnd}"
        if death.status_code == 200:
            outcomes.add("death first")
            assert dead not in ids and doc["enrolment"]["paid_not_members"] == [
                {"person_id": dead, "reason": "left_after_order"}] and doc["enrolment"]["review"] is True
            assert c.db.persons.find_one({"_id": f"2020:{dead}"}) is None
        else:
            outcomes.add("payment first")
            assert (death.status_code, death.json["code"]) == (409, "LOCKED_AFTER_PAYMENT")
            assert dead in ids and "review" not in doc["enrolment"]
        assert all(m["status"] == "paid" for m in doc["members"])
    assert outcomes  # (which order wins each round is the scheduler's; both are consistent)


def test_a_birth_while_the_order_is_open_leaves_the_newborn_for_mid_year_and_nothing_is_dead_lettered(
        env, infra, monkeypatch):
    monkeypatch.setenv("CONSUMER_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CONSUMER_RETRY_BASE_MS", "50")
    api, _ = env
    c = boot.bootstrap(FixedClock(NOW))
    body = register(api, "OPEN-0001", seed=680)
    ordered = list(body["members"])  # the withholding order is made now (it may stay open 10 days)
    baby = {"id_number": make_id(date(2019, 11, 10), 7, "F"), "name": "新生儿", "relation": "子女"}
    r = api.post("/v1/counties/431122/households/2020/OPEN-0001/changes", json={"kind": "birth", "member": baby}, headers=county())
    assert r.status_code == 200 and len(r.json["members"]) == 4
    paid = payment(body, "P-OPEN-1", ordered)
    handlers = boot.event_handlers(c)
    declare(c, handlers)
    with running(c.consumer(handlers)):
        publish(infra.amqp_url, c.topology.exchange, paid.type, json.dumps(paid.to_dict()).encode(), paid.id)
        wait_for(lambda: (c.db.households.find_one({"_id": "2020:OPEN-0001"}).get("enrolment") or {}).get("status")
                 or c.suite_db.dead_letters.find_one({"_id": paid.id}), timeout=30, what="the payment handled")
    assert c.suite_db.dead_letters.find_one({"_id": paid.id}) is None
    hh = api.get("/v1/counties/431122/households/2020/OPEN-0001", headers=county()).json
    status = {m["name"]: m["status"] for m in hh["members"]}
    assert status == {"成员0": "paid", "成员1": "paid", "成员2": "paid", "新生儿": "registered"}
    doc = c.db.households.find_one({"_id": "2020:OPEN-0001"})
    [ev] = [e for e in doc["_outbox"].values() if e["type"] == "registry.enrolment.changed"]
    assert ev["payload"]["person_ids"] == sorted(m["id_number"] for m in ordered)
    from services.registry.service_layer.handlers import awaiting_mid_year
    listed = awaiting_mid_year(boot.repository(c), 2020, [t.name for t in c.policy_for(2020).townships])
    assert [(x["household_no"], x["name"], x["order_no"]) for x in listed] == [("OPEN-0001", "新生儿", "P-OPEN-1")]
    # the township records the newborn's mid-year enrolment (001 四), though the household has paid
    r = api.post("/v1/counties/431122/mid-year/decisions", json={"id_number": baby["id_number"], "on": "2019-11-20"},
                 headers=county())
    assert r.status_code in (200, 201), r.json
    assert r.json["allowed"] is True and r.json["code"] == "NEWBORN_28_DAYS", r.json


def test_a_household_merged_before_its_registration_went_out_is_still_published(env):
    """The registration is built from the document when the relay publishes it; a merge may come
    first (its members emptied): the registration goes out with the members it had (head included),
    then its registry.household.dissolved, instead of stopping the relay."""
    api, c = env
    register(api, "MRG-0001", seed=700)
    register(api, "MRG-0002", seed=701)
    r = api.post("/v1/counties/431122/households/2020/MRG-0001/merge", json={"other_household_no": "MRG-0002"}, headers=county())
    assert r.status_code == 200 and len(r.json["members"]) == 6, r.json
    ended = c.db.households.find_one({"_id": "2020:MRG-0002"})
    assert ended["members"] == [] and ended["merged_into"] == "MRG-0001"
    payload = registered_payload(ended)
    validate_payload("registry.household.registered", payload)
    assert payload["head_name"] == "成员0" and len(payload["members"]) == 3
    assert [m["relation"] for m in payload["members"]] == ["户主", "配偶", "子女"]
    # and the relay publishes it, then the dissolution, in order
    from tests.helpers import Probe
    probe = Probe(c.settings.amqp_url, c.settings.namespace, ["registry.household.*"])
    try:
        relay = c.relay()
        while relay.run_once():
            pass
        mine = []
        while len(mine) < 2 and (got := probe.take(1, timeout=5)):
            mine += [(m["type"], m["payload"]["household_no"]) for m in got
                     if m["payload"]["household_no"] == "MRG-0002"]
    finally:
        probe.close()
    assert mine == [("registry.household.registered", "MRG-0002"), ("registry.household.dissolved", "MRG-0002")]


def test_a_merge_and_a_birth_in_the_ending_household_at_once_lose_nobody(env):
    """合户 ends one household and moves its members in two version-checked writes: a birth recorded
    in it at the same moment either lands before the merge (and moves with it) or is refused as
    merged; the newborn is never written into a household that has ended."""
    api, c = env
    for rnd in range(ROUNDS):
        target, other = f"MRB-T{rnd:03d}", f"MRB-O{rnd:03d}"
        register(api, target, seed=720 + 2 * rnd)
        register(api, other, seed=721 + 2 * rnd)
        baby = {"id_number": make_id(date(2019, 11, 1), 100 + rnd, "M"), "name": "新生儿", "relation": "子女"}
        merged, birth = at_once(
            lambda: api.post(f"/v1/counties/431122/households/2020/{target}/merge", json={"other_household_no": other},
                             headers=county()),
            lambda: api.post(f"/v1/counties/431122/households/2020/{other}/changes", json={"kind": "birth", "member": baby},
                             headers=county()))
        assert merged.status_code == 200, merged.json
        doc = c.db.households.find_one({"_id": f"2020:{target}"})
        ended = c.db.households.find_one({"_id": f"2020:{other}"})
        names = [m["name"] for m in doc["members"]]
        assert ended["members"] == [] and ended["merged_into"] == target
        if birth.status_code == 200:
            assert names.count("新生儿") == 1 and len(names) == 7
            assert c.db.persons.find_one({"_id": f"2020:{baby['id_number']}"})["household"] == f"2020:{target}"
        else:
            assert (birth.status_code, birth.json["code"]) == (404, "HOUSEHOLD_MERGED") and len(names) == 6
            assert c.db.persons.find_one({"_id": f"2020:{baby['id_number']}"}) is None


# --- batches (issue 13: consumers that keep up): registry applies a busy queue's payments together


def in_county(env: Envelope) -> Envelope:
    env.county = "431122"
    return env


def test_a_batch_of_payments_costs_three_store_commands_and_each_event_names_its_cause(env):
    """40 households paid in one batch: read in one query, their events pointed at in one insert,
    written in one bulk compare-and-set (the per-event path: 3 commands per payment, 120). A payment
    delivered twice in the batch (a gateway's retry through payments) enrols once."""
    api, _ = env
    bodies = [register(api, f"BATCH-{i:03d}", seed=700 + i) for i in range(40)]
    envs = [payment(b, f"P-B-{i}") for i, b in enumerate(bodies)]
    envs.append(payment(bodies[3], "P-B-3"))  # the same order again, another event
    seen = StoreCommands()
    monitoring.register(seen)
    try:
        c = boot.bootstrap(FixedClock(NOW))  # a client made now: its commands are seen
        many = boot.event_batch_handlers(c)["payments.payment.confirmed"]
        c.db  # noqa: B018 — indexes ensured before counting
        seen.names.clear()
        many(envs)
        assert seen.names == ["find", "insert", "update"], seen.names  # the pointers before the write
    finally:
        seen.on = False
    for i, e in enumerate(envs[:40]):
        doc = c.db.households.find_one({"_id": f"2020:BATCH-{i:03d}"})
        assert doc["enrolment"]["status"] == "paid" and doc["enrolment"]["order_no"] == f"P-B-{i}"
        assert [m["status"] for m in doc["members"]] == ["paid"] * 3
        enrolled = [x for x in doc["_outbox"].values() if x["type"] == "registry.enrolment.changed"]
        assert [x["causation_id"] for x in enrolled] == [e.id], f"household {i}: one enrolment, caused by its payment"
    assert c.db.outbox.count_documents({"_id": {"$in": [x for d in c.db.households.find(
        {"_id": {"$in": [f"2020:BATCH-{i:03d}" for i in range(40)]}}) for x in d["_outbox"]]}}) >= 40


def test_a_refused_or_early_payment_in_a_batch_costs_only_itself(env, infra, monkeypatch):
    """Through the worker's consumer: 19 payments queued while it was down, one for a household
    not registered (retried, then dead-lettered), one a second order for a paid household (refused
    at once: 该户本年度已缴费). The batch handler fails, its events are applied one by one, and every
    other payment is enrolled once."""
    from shared.container import county_batch_handlers, county_handlers
    monkeypatch.setenv("CONSUMER_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CONSUMER_RETRY_BASE_MS", "50")
    api, c = env
    bodies = [register(api, f"MIX-{i:03d}", seed=760 + i) for i in range(18)]
    boot.event_handlers(c)["payments.payment.confirmed"](in_county(payment(bodies[0], "P-MIX-FIRST")))
    ghost = {**bodies[1], "household_no": "MIX-NOT-THERE"}
    envs = [in_county(payment(b, f"P-MIX-{i}")) for i, b in enumerate(bodies)]  # envs[0]: a second order
    envs.insert(9, in_county(payment(ghost, "P-MIX-GHOST")))
    handlers = county_handlers(c, boot.event_handlers)
    batch = county_batch_handlers(c, boot.event_batch_handlers)
    counted, calls = sizes_seen(batch["payments.payment.confirmed"])
    declare(c, handlers)
    for e in envs:
        publish(infra.amqp_url, c.topology.exchange, e.type, json.dumps(e.to_dict()).encode(), e.id)
    consumer = c.consumer(handlers, batch_handlers={"payments.payment.confirmed": counted})
    with running(consumer):
        wait_for(lambda: c.suite_db.dead_letters.count_documents({"_id": {"$in": [envs[0].id, envs[9].id]}}) == 2,
                 timeout=30, what="the refused and the unknown payment dead-lettered")
        wait_for(lambda: all(c.db.households.find_one({"_id": f"2020:MIX-{i:03d}"})["enrolment"].get("order_no")
                             == f"P-MIX-{i}" for i in range(1, 18)), timeout=30, what="the others enrolled")
    assert calls and calls[0] > 1, "the queued payments reached the batch handler together"
    assert c.db.households.find_one({"_id": "2020:MIX-000"})["enrolment"]["order_no"] == "P-MIX-FIRST"
    assert "ALREADY_PAID" in c.suite_db.dead_letters.find_one({"_id": envs[0].id})["reason"]
    assert c.suite_db.dead_letters.find_one({"_id": envs[9].id})["attempts"] == 2
    for i in range(1, 18):
        doc = c.db.households.find_one({"_id": f"2020:MIX-{i:03d}"})
        assert len([x for x in doc["_outbox"].values() if x["type"] == "registry.enrolment.changed"]) == 1, i


def test_a_staff_change_between_a_batch_read_and_its_write_loses_nothing(env, monkeypatch):
    """A correction written after the batch read its households: that household's compare-and-set
    fails (StaleVersion), the others are written; the consumer then applies the batch one event at
    a time (here as it does: the per-event handler for each), and both the correction and every
    payment stand, each enrolment once."""
    from services.registry.adapters.repository import HouseholdRepository
    from shared.aggregate import StaleVersion
    api, c = env
    bodies = [register(api, f"CAS-{i:03d}", seed=800 + i) for i in range(10)]
    envs = [in_county(payment(b, f"P-CAS-{i}")) for i, b in enumerate(bodies)]
    read = HouseholdRepository.get_many

    def read_then_staff_writes(self, keys):
        found = read(self, keys)
        r = api.post("/v1/counties/431122/corrections", json={
            "household_no": "CAS-004", "year": 2020, "id_number": bodies[4]["members"][1]["id_number"],
            "changes": {"name": "更正后姓名"}, "reason": "姓名错字"}, headers=county())
        assert r.status_code == 201, r.json
        d = api.post(f"/v1/counties/431122/corrections/{r.json['correction_id']}/decision", json={"approve": True},
                     headers=county())
        assert d.status_code == 200, d.json
        return found
    monkeypatch.setattr(HouseholdRepository, "get_many", read_then_staff_writes)
    with pytest.raises(StaleVersion):
        boot.event_batch_handlers(c)["payments.payment.confirmed"](envs)
    assert c.db.households.find_one({"_id": "2020:CAS-004"})["enrolment"].get("status") != "paid"
    assert c.db.households.find_one({"_id": "2020:CAS-003"})["enrolment"]["order_no"] == "P-CAS-3"
    one = boot.event_handlers(c)["payments.payment.confirmed"]
    for e in envs:
        one(e)
    for i in range(10):
        doc = c.db.households.find_one({"_id": f"2020:CAS-{i:03d}"})
        assert doc["enrolment"]["order_no"] == f"P-CAS-{i}"
        assert len([x for x in doc["_outbox"].values() if x["type"] == "registry.enrolment.changed"]) == 1, i
    assert c.db.households.find_one({"_id": "2020:CAS-004"})["members"][1]["name"] == "更正后姓名"

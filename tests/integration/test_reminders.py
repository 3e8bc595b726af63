"""Reminders to pay (催缴) before the window closes, from registry's events over the real bus.

Rule quoted: 001_93f5b63ac6b4a653.txt 四 — 2020年度集中参保缴费期为2019年9月1日至12月31日; 未在规定缴费期内集中
参保缴费的,原则上不得中途参保、享受医保待遇: a household that has not paid is told before the window closes.
"""
from __future__ import annotations

import json
from datetime import datetime

from services.notices import bootstrap as notices_boot
from services.notices.service_layer.reminders import due_points, run_reminders
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event
from tests.helpers import declare, publish, running, village_of
from tools.clients import wait_for

T7 = datetime(2019, 12, 27, 10, 0, tzinfo=SHANGHAI)  # the 7-day point passed (Dec 24), the 3-day one not yet
T3 = datetime(2019, 12, 29, 10, 0, tzinfo=SHANGHAI)  # the 3-day point passed (Dec 28)
TOWN = "花桥镇"


def registered(no, phone):
    return Envelope.new(Event("registry.household.registered", {
        "household_no": no, "year": 2020, "county": "431122", "township": TOWN, "village": village_of(TOWN),
        "head_name": f"户主{no[-1]}", "head_phone": phone,
        "members": [{"person_id": "43112219800506001X", "name": f"户主{no[-1]}", "relation": "户主"}]}), "registry", T7,
        county="431122")


def changed(env):
    return Envelope.new(Event("registry.household.changed", {**env.payload, "change": "correction"}), "registry", T7,
                        county="431122")


def paid(no):
    return Envelope.new(Event("registry.enrolment.changed", {
        "household_no": no, "year": 2020, "county": "431122", "township": TOWN, "village": village_of(TOWN),
        "status": "paid", "person_ids": ["43112219800506001X"], "order_no": f"P{no}",
        "paid_at": "2019-12-20T10:00:00+08:00"}), "registry", T7, county="431122")


def test_unpaid_households_are_reminded_once_per_point_in_batches_and_a_paid_one_never(namespace, infra):
    clock = FixedClock(T7)
    c = notices_boot.bootstrap(clock)
    handlers = notices_boot.event_handlers(c)
    declare(c, handlers)
    a, b, d = registered("RM-A", "13900000001"), registered("RM-B", "13900000002"), registered("RM-C", "13900000003")
    events = [a, b, d, paid("RM-B"), changed(b)]  # B's snapshot after its payment does not make it unpaid again
    with running(c.consumer(handlers)):
        for env in events:
            publish(infra.amqp_url, c.topology.exchange, env.type, json.dumps(env.to_dict()).encode(), env.id)
        wait_for(lambda: c.suite_db.processed_events.find_one({"_id": events[-1].id}), what="the events applied")
    assert notices_boot.unpaid(c).households(2020, TOWN) == ["RM-A", "RM-C"]  # in order, one queue
    repo, ledger, runs, book = (notices_boot.repository(c), notices_boot.unpaid(c), notices_boot.reminder_runs(c),
                                notices_boot.templates(c))
    policies = c.policies
    assert [p[3] for p in due_points(c.policy, T7)] == [7]
    assert run_reminders(repo, ledger, runs, book, policies, T7, limit=1) == 1  # a batch of one
    assert run_reminders(repo, ledger, runs, book, policies, T7, limit=1) == 1
    assert run_reminders(repo, ledger, runs, book, policies, T7, limit=5) == 0  # the point is done
    sent = {x["household_no"]: x for x in c.db.notices.find({"kind": "reminder"}) if x["_id"].startswith("reminder:2020:window:7:")}
    assert set(sent) >= {"RM-A", "RM-C"} and "RM-B" not in sent
    text = sent["RM-A"]["text"]
    assert text.startswith("【东安县医保】户主A户主：2020年度城乡居民医保集中缴费期2019年12月31日23时59分截止")
    assert sent["RM-A"]["template"]["code"] == "SMS_ENROL_REMIND_1" and sent["RM-A"]["status"] == "queued"

    handlers["registry.enrolment.changed"](paid("RM-C"))  # C pays before the 3-day point
    clock.set(T3)
    while run_reminders(repo, ledger, runs, book, policies, T3, limit=100):
        pass
    three = {x["household_no"] for x in c.db.notices.find({"kind": "reminder"}) if x["_id"].startswith("reminder:2020:window:3:")}
    assert "RM-A" in three and not three & {"RM-B", "RM-C"}


def test_a_worker_back_after_days_sends_only_the_latest_point_of_each_target(namespace):
    c = notices_boot.bootstrap(FixedClock(T3))
    late = datetime(2019, 12, 31, 9, 0, tzinfo=SHANGHAI)  # the 7-, 3- and 1-day points have all passed
    assert [(k, d) for k, _, _, d in due_points(c.policy, late)] == [("window", 1)]
    assert due_points(c.policy, datetime(2020, 1, 1, 0, 0, tzinfo=SHANGHAI)) == []  # closed: nothing to remind


def test_a_household_that_declined_reminders_gets_none_but_still_its_receipt(namespace, tmp_path):
    import secrets as _secrets

    from services.notices.entrypoints.flask_app import create_app
    from shared.auth import token_hash
    from tests.helpers import secret_files
    token = _secrets.token_hex(8)
    clock = FixedClock(T7)
    c = notices_boot.bootstrap(clock)
    handlers = notices_boot.event_handlers(c)
    for no in ("OPT-A", "OPT-B"):
        handlers["registry.household.registered"](registered(no, "13900000009"))
    with secret_files(tmp_path, tokens=[{"sha256": token_hash(token), "subject": "huaqiao", "role": "township",
                                         "county": "431122", "township": TOWN}]):
        api = create_app(clock).test_client()
        h = {"Authorization": f"Bearer {token}"}
        r = api.put("/v1/counties/431122/households/2020/OPT-A/notice-preferences", headers=h,
                    json={"opt_out": ["reminder"], "reason": "户主本人到村委会申请不再接收催缴短信"})
        assert r.status_code == 200 and r.json["opt_out"] == ["reminder"], r.json
        bad = api.put("/v1/counties/431122/households/2020/OPT-A/notice-preferences", headers=h,
                      json={"opt_out": ["receipt"], "reason": "x"})
        assert (bad.status_code, bad.json["code"]) == (400, "VALIDATION_FAILED")  # receipts always go
        handlers["registry.household.changed"](changed(registered("OPT-A", "13900000009")))  # a later snapshot
    repo, ledger, runs, book = (notices_boot.repository(c), notices_boot.unpaid(c), notices_boot.reminder_runs(c),
                                notices_boot.templates(c))
    t1 = datetime(2019, 12, 31, 9, 0, tzinfo=SHANGHAI)  # the 1-day point (the other test ran the 7- and 3-day ones)
    while run_reminders(repo, ledger, runs, book, c.policies, t1, limit=100):
        pass
    reminded = {x["household_no"] for x in c.db.notices.find({"kind": "reminder"}) if ":window:1:" in x["_id"]}
    assert "OPT-B" in reminded and "OPT-A" not in reminded  # the opt-out survived the later snapshot


def test_a_roster_imports_snapshots_in_one_batch_list_the_unpaid_and_never_a_paid_one(namespace):
    """The worker's batch handler for household snapshots (a roster import): every household on its
    township's unpaid list with its head's contact, once however often delivered, and a snapshot
    redelivered after the household paid does not put it back (it would be reminded wrongly)."""
    from services.notices.service_layer.handlers import on_enrolments_changed, on_household_snapshots
    c = notices_boot.bootstrap(FixedClock(T7))
    repo, ledger = notices_boot.repository(c), notices_boot.unpaid(c)
    a, b, d = registered("RB-A", "13900000011"), registered("RB-B", "13900000012"), registered("RB-C", "13900000013")
    def mine():  # the module's other tests share the township
        return [no for no in ledger.households(2020, TOWN) if no.startswith("RB-")]
    on_household_snapshots(repo, ledger, [a, b, d])
    assert mine() == ["RB-A", "RB-B", "RB-C"]
    on_enrolments_changed(ledger, [paid("RB-B")])
    on_household_snapshots(repo, ledger, [a, changed(b), d])  # delivered again, B after its payment
    assert mine() == ["RB-A", "RB-C"]
    assert repo.contact(2020, "RB-B")["head_phone"] == "13900000012"

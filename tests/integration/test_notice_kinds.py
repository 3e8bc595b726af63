"""Every kind of notice from its event over the real bus, each event delivered three times (issue 12's tests:
"each kind of notice from its event over the real bus; the same event … → one notice").

Rules quoted: 001_93f5b63ac6b4a653.txt 五 (收据注明户主、家庭成员姓名、缴费金额、缴费时间), 六 (困难群众
100%参保; 先缴后补), 七(一) (3个工作日内办结), 七(二) (3个工作日内完成缴款审核); 002_9137bd928f251374.txt 六(二) (余额不足的代扣帐户发回各镇),
七(四) (每周四通报); 000_6db0cfefa235a8dc.txt 二 (流动红旗、黄牌); 003_0724b4a19d5e14e1.txt (排名以短信发给
各乡镇主要领导).
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone

from services.notices import bootstrap as notices_boot
from shared.clock import FixedClock
from shared.container import county_handlers
from shared.events import Envelope, Event
from tests.helpers import declare, publish, running, sizes_seen
from tools.clients import wait_for

NOW = datetime(2019, 11, 15, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai: no quiet hours
DONGAN, TOWN, VILLAGE = "431122", "花桥镇", "花桥村"
PID = "43112219800506001X"


def ev(etype: str, producer: str, payload: dict) -> Envelope:
    return Envelope.new(Event(etype, payload), producer, NOW, county=DONGAN)


def events(tag: str) -> dict[str, tuple[Envelope, list[str]]]:
    """event → the notice ids it must make."""
    hh = f"NK-{tag}"
    place = {"household_no": hh, "year": 2020, "county": DONGAN, "township": TOWN, "village": VILLAGE}
    evaluated = {"year": 2020, "county": DONGAN, "county_name": "东安县", "kind": "stage", "no": 1, "name": "第一阶段",
                 "version": 1, "as_of": "2019-11-15T17:00:00+08:00", "evaluated_at": "2019-11-15T17:10:00+08:00",
                 "evaluated_by": "system:deadline", "reason": None, "complete": True,
                 "rows": [{"township": TOWN, "rank": 1, "rate_bp": 4500, "score": None, "fund_fen": None,
                           "awards": [{"award": "red_flag", "name": "流动红旗", "to": ["township"],
                                       "to_names": ["乡（镇、街道）"], "status": "given"}]}]}
    return {
        "registered": (ev("registry.household.registered", "registry", {
            **place, "head_name": "刘某", "head_phone": "13900007777",
            "members": [{"person_id": PID, "name": "刘某", "relation": "户主"}]}), []),
        "receipt": (ev("payments.payment.confirmed", "payments", {
            **place, "order_no": f"P{tag}", "receipt_no": f"R{tag}", "head_name": "刘某", "head_phone": "13900007777",
            "amount_fen": 25000, "channel": "mobile_app", "gateway": "g", "transaction_id": f"T{tag}",
            "paid_at": "2019-11-15T10:00:00+08:00",
            "members": [{"person_id": PID, "name": "刘某", "standard_fen": 25000, "subsidy_fen": 0, "payable_fen": 25000}]}),
            [f"receipt:P{tag}"]),
        "withholding": (ev("payments.withholding.failed", "payments", {
            **place, "batch_no": f"B{tag}", "order_no": f"W{tag}", "head_name": "刘某", "head_phone": "13900007777",
            "amount_fen": 25000, "bank": "农商银行", "reason": "INSUFFICIENT_BALANCE", "reason_text": "账户余额不足",
            "retryable": True}), [f"wfail:B{tag}:W{tag}", f"wfail-town:B{tag}:W{tag}"]),
        "overdue": (ev("registry.correction.overdue", "registry", {
            "correction_id": f"C{tag}", "household_no": hh, "year": 2020, "township": TOWN, "village": VILLAGE,
            "filed_at": "2019-11-08T10:00:00+08:00", "due_at": "2019-11-13T17:00:00+08:00"}), [f"overdue:C{tag}"]),
        "audits": (ev("payments.audits.overdue", "payments", {
            "year": 2020, "county": DONGAN, "as_of": "2019-11-15", "payments": 3, "amount_fen": 75000,
            "oldest_paid_day": "2019-11-08", "county_deadline": "2019-12-25",
            "townships": [{"township": TOWN, "payments": 2, "amount_fen": 50000, "oldest_paid_day": "2019-11-08"},
                          {"township": "白牙市镇", "payments": 1, "amount_fen": 25000, "oldest_paid_day": "2019-11-11"}]}),
            ["audits-overdue:2020:2019-11-15"]),
        "claim": (ev("subsidy.claim.created", "subsidy", {
            **place, "claim_id": f"2020:{tag}", "person_id": PID, "name": "刘某", "category": "dibao_rural",
            "amount_fen": 13000, "department": "medical_assistance", "effective_date": "2019-11-01",
            "order_no": f"P{tag}"}), [f"claim:2020:{tag}"]),
        "claim_paid": (ev("subsidy.claim.paid", "subsidy", {
            **place, "claim_id": f"2020:{tag}", "person_id": PID, "name": "刘某", "amount_fen": 13000,
            "department": "medical_assistance", "payment_ref": f"MZ{tag}", "paid_on": "2019-12-02"}),
            [f"claim-paid:2020:{tag}"]),
        "coverage": (ev("subsidy.coverage.changed", "subsidy", {
            "year": 2020, "county": DONGAN, "township": TOWN, "category": "registered_poor", "hardship_persons": 40,
            "enrolled_persons": 38, "not_enrolled_persons": 2, "rate_bp": 9500, "as_of": "2019-11-15T10:00:00+08:00"}),
            [f"coverage:2020:{TOWN}:registered_poor:2019-11-15T10:00:00+08:00",
             f"coverage:2020:{TOWN}:registered_poor:2019-11-15T10:00:00+08:00:civil-affairs"]),
        "stage": (ev("scoring.stage.evaluated", "scoring", evaluated), ["stage:2020:stage:1:v1:花桥镇"]),
        "forecast": (ev("scoring.forecast.published", "scoring", {
            "year": 2020, "county": DONGAN, "county_name": "东安县", "stage": 2, "name": "第二阶段",
            "deadline": "2019-11-30T17:00:00+08:00", "share_percent": 70, "as_of": "2019-11-27T10:00:00+08:00",
            "method": "近7天", "rows": [{"township": TOWN, "rate_bp": 5000, "status": "behind",
                                        "projected_rate_bp": 6000, "needed_per_day": 30}]}), ["forecast:2020:2:花桥镇"]),
        "ranking": (ev("scoring.ranking.published", "scoring", {
            "year": 2020, "county": DONGAN, "county_name": "东安县", "as_of": "2019-11-01T09:00:00+08:00",
            "rule": "七、(五)一月一通报", "target_share_percent": 95, "total_rate_bp": 3000, "townships": 16,
            "rows": [{"township": TOWN, "rank": 2, "rate_bp": 3100, "band": "behind", "rank_change": None}]}), None),
    }


def test_each_event_kind_makes_its_notices_once_over_the_real_bus(namespace, infra):
    tag = secrets.token_hex(3)  # each run has databases of its own; the tag only names its records
    c = notices_boot.bootstrap(FixedClock(NOW))
    handlers = county_handlers(c, notices_boot.event_handlers)
    declare(c, handlers)
    cases = events(tag)
    with running(c.consumer(handlers)):
        for env, _ in cases.values():
            for _ in range(3):  # every event delivered three times
                publish(infra.amqp_url, c.topology.exchange, env.type, json.dumps(env.to_dict()).encode(), env.id)
        last = cases["ranking"][0]
        wait_for(lambda: all(c.suite_db.processed_events.find_one({"_id": e.id}) for e, _ in cases.values()),
                 timeout=60, what="every event handled")
    repo = notices_boot.repository(c)
    for name, (env, want) in cases.items():
        made = sorted(d["_id"] for d in repo.for_event(env.id))
        if want is not None:
            assert made == sorted(want), (name, made)
        for nid in made:
            doc = repo.get(nid)
            assert doc["event_id"] == env.id and doc["text"] and doc["template"]["version"] >= 1, (name, doc)
    assert repo.for_event(cases["stage"][0].id)[0]["kind"] == "stage_result"
    assert "流动红旗" in repo.for_event(cases["stage"][0].id)[0]["text"]
    assert repo.for_event(cases["forecast"][0].id)[0]["kind"] == "forecast"
    assert "ranking:2020:201911010900:花桥镇" in {d["_id"] for d in repo.for_event(last.id)}  # the work-list line
    assert repo.contact(2020, f"NK-{tag}")["head_phone"] == "13900007777"
    audits = repo.get("audits-overdue:2020:2019-11-15")  # 001 七(二): the tax bureau owns the audit
    assert audits["recipient_name"] == "县税务局" and "3笔" in audits["text"] and "花桥镇2笔，白牙市镇1笔" in audits["text"]
    assert [d["_id"] for d in repo.for_office(2020, "县税务局")[0]] == ["audits-overdue:2020:2019-11-15"]
    receipt = repo.get(f"receipt:P{tag}")
    assert receipt["text"].startswith("【东安县医保】刘某户主您好：您户1人（刘某）2020年度城乡居民医保费共250.00元")
    assert c.suite_db.dead_letters.count_documents({"county": DONGAN, "queue": c.topology.queue}) == 0


def test_a_busy_queue_of_receipts_makes_each_notice_once_in_a_few_writes(namespace, infra):
    """30 confirmations and their enrolment changes, interleaved, queued while the worker was down,
    each delivered twice: grouped by type, the batch handlers store, point and list the receipts
    together (001 五: 收据注明户主、家庭成员姓名、缴费金额) and take the paid households off the
    township's unpaid list together; each household gets one receipt notice, listed once in its
    household's and its township's list, with one delivery pointer."""
    from shared.container import county_batch_handlers
    tag = secrets.token_hex(3)
    c = notices_boot.bootstrap(FixedClock(NOW))
    handlers = county_handlers(c, notices_boot.event_handlers)
    batch = county_batch_handlers(c, notices_boot.event_batch_handlers)
    counted, sizes = sizes_seen(batch["payments.payment.confirmed"])
    envs = [ev("payments.payment.confirmed", "payments", {
        "household_no": f"NB-{tag}-{i}", "year": 2020, "county": DONGAN, "township": TOWN, "village": VILLAGE,
        "order_no": f"P{tag}{i:02d}", "receipt_no": f"R{tag}{i:02d}", "head_name": "刘某", "head_phone": f"139000{i:05d}",
        "amount_fen": 25000, "channel": "mobile_app", "gateway": "g", "transaction_id": f"T{tag}{i}",
        "paid_at": "2019-11-15T10:00:00+08:00",
        "members": [{"person_id": PID, "name": "刘某", "standard_fen": 25000, "subsidy_fen": 0, "payable_fen": 25000}]})
        for i in range(30)]
    enrolled = [ev("registry.enrolment.changed", "registry", {
        "household_no": f"NB-{tag}-{i}", "year": 2020, "county": DONGAN, "township": TOWN, "village": VILLAGE,
        "status": "paid", "person_ids": [PID], "order_no": f"P{tag}{i:02d}"}) for i in range(30)]
    ledger = notices_boot.unpaid(c)
    for i in range(32):  # registered: on the township's unpaid list (two of them never pay)
        ledger.registered(2020, TOWN, f"NB-{tag}-{i}")
    left_unpaid, left = sizes_seen(batch["registry.enrolment.changed"])
    declare(c, handlers)
    for _ in range(2):
        for pay, enrol in zip(envs, enrolled):  # the two streams interleaved, as the bus delivers them
            for e in (pay, enrol):
                publish(infra.amqp_url, c.topology.exchange, e.type, json.dumps(e.to_dict()).encode(), e.id)
    consumer = c.consumer(handlers, commuting=notices_boot.COMMUTING_EVENTS,
                          batch_handlers={"payments.payment.confirmed": counted, "registry.enrolment.changed": left_unpaid})
    with running(consumer):
        wait_for(lambda: all(c.suite_db.processed_events.find_one({"_id": e.id}) for e in envs + enrolled), timeout=60,
                 what="every confirmation and enrolment change handled")
    assert sizes and max(sizes) > 1 and left and max(left) > 1, (sizes, left)
    assert [no for no in ledger.households(2020, TOWN) if no.startswith(f"NB-{tag}-")] == [
        f"NB-{tag}-30", f"NB-{tag}-31"]  # reminders go only to who has not paid
    repo = notices_boot.repository(c)
    ids = [f"receipt:P{tag}{i:02d}" for i in range(30)]
    for i, nid in enumerate(ids):
        assert [d["_id"] for d in repo.for_household(f"NB-{tag}-{i}", 2020)] == [nid]
        assert repo.get(nid)["text"].startswith("【东安县医保】刘某户主您好")
    listed = [d["_id"] for d in repo.listing(2020, TOWN, "receipt", limit=10_000)[0]]
    assert sorted(x for x in listed if x in ids) == sorted(ids)
    assert c.db.deliveries_due.count_documents({"_id": {"$in": ids}}) == 30  # no delivery loop runs here

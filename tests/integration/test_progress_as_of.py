"""Scoring's progress as of an instant, per township and per village, on the real broker and store.

000_6db0cfefa235a8dc.txt 二: 每阶段考核结果按各乡(镇、街道)在截止时间内……计算人数的参合率排名;
(一) 第一阶段(截止2016年11月15日下午5时): a deadline is an Asia/Shanghai instant, inclusive — a payment
recorded at 17:00:00 counts for that stage, one at 17:00:01 for the next. 二(二): 本乡(镇、街道)排名后两位
村(社区)的挂村干部: villages are ranked within their township. (Dong'an 2020's season stands in for the
dates: the same deadline on 2019-11-15.)
"""
import json
from datetime import datetime
from urllib.parse import quote

import pytest

from services.scoring import bootstrap as scoring_boot
from services.scoring.entrypoints.flask_app import create_app
from shared.clock import SHANGHAI, FixedClock
from shared.container import county_handlers
from shared.events import Envelope, Event
from tests.helpers import declare, publish, run_until

TOWN = "白牙市镇"
NOW = datetime(2019, 11, 20, 10, 0, tzinfo=SHANGHAI)
DEADLINE = "2019-11-15T17:00:00+08:00"
UNLISTED = "新村.东组"  # not in the places list, and a '.' a field key may not hold


def enrolment(status, hh, n, village, occurred_at=NOW, **extra):
    return Envelope.new(Event("registry.enrolment.changed", {
        "household_no": hh, "year": 2020, "county": "431122", "township": TOWN, "village": village,
        "status": status, "person_ids": [f"43112219800506{i:03d}X" for i in range(n)], "order_no": "P" + hh,
        **extra}), "registry", occurred_at, county="431122")


@pytest.fixture(scope="module")
def scoring(namespace, infra):
    c = scoring_boot.bootstrap(FixedClock(NOW))
    declare(c, county_handlers(c, scoring_boot.event_handlers))
    return c


def deliver(c, infra, *envs):
    """Publish as registry's relay would and let scoring's consumer take them all."""
    for env in envs:
        publish(infra.amqp_url, c.topology.exchange, env.type, json.dumps(env.to_dict()).encode(), env.id)
    ids = {e.id for e in envs}
    run_until(lambda: c.suite_db.processed_events.count_documents({"_id": {"$in": list(ids)}}) == len(ids),
              "scoring took the events", consumers=(c,))


@pytest.fixture(scope="module")
def counted(scoring, infra):
    a = enrolment("paid", "A1", 3, "五一村", paid_at="2019-11-15T17:00:00+08:00")
    b = enrolment("paid", "B1", 2, "芦江村", paid_at="2019-11-15T17:00:01+08:00")
    c = enrolment("paid", "C1", 2, "白牙市一村", paid_at="2019-11-14T10:00:00+08:00")
    e = enrolment("paid", "E1", 2, "白牙市二村", occurred_at=datetime(2019, 11, 15, 16, 30, tzinfo=SHANGHAI))  # older: no paid_at
    u = enrolment("paid", "U1", 1, UNLISTED, paid_at="2019-11-15T08:00:00+00:00")  # 16:00 in Shanghai
    again = Envelope.new(Event(a.type, a.payload), "registry", NOW, county="431122")  # republished: a new id
    deliver(scoring, infra, a, b, c, e, u, a, again)
    # the revocation after its payment: its money went back at 12:00 on the 15th
    deliver(scoring, infra, enrolment("revoked", "C1", 2, "白牙市一村", reversed_at="2019-11-15T12:00:00+08:00"))
    return a


def api():
    return create_app(FixedClock(NOW)).test_client()


def township(as_of=None):
    q = f"?as_of={quote(as_of)}" if as_of else ""
    r = api().get(f"/v1/counties/431122/progress/2020{q}")
    assert r.status_code == 200, r.json
    row = next(x for x in r.json["rows"] if x["township"] == TOWN)
    return r.json["as_of"], row["enrolled_persons"], row["enrolled_households"]


def test_a_payment_at_the_deadline_second_counts_and_one_a_second_later_does_not(counted):
    assert township(DEADLINE) == (DEADLINE, 3 + 2 + 1, 3)  # A at 17:00:00, E (published 16:30), U at 16:00
    assert township("2019-11-15T17:00:01+08:00") == ("2019-11-15T17:00:01+08:00", 8, 4)  # B at 17:00:01
    assert township("2019-11-15T09:00:00Z")[1:] == (6, 3)  # the same deadline written in UTC
    assert township() == ("2019-11-20T10:00:00+08:00", 8, 4)  # no as_of: now, from the clock


def test_a_revocation_takes_the_payment_out_from_its_time_on(counted):
    assert township("2019-11-14T23:59:59+08:00")[1:] == (2, 1)  # C paid on the 14th
    assert township("2019-11-15T11:59:59+08:00")[1:] == (2, 1)
    assert township("2019-11-15T12:00:00+08:00")[1:] == (0, 0)  # reversed at 12:00


def test_redelivery_doubles_no_figure_cumulative_daily_or_village(scoring, infra, counted):
    doc = scoring.db.progress.find_one({"_id": f"2020:{TOWN}"})
    assert (doc["persons"], doc["households"]) == (8, 4)
    assert doc["days"]["2019-11-15"]["persons"] == 3 + 2 + 2 + 1 - 2
    assert doc["days"]["2019-11-14"]["persons"] == 2
    assert doc["villages"]["五一村"] == {"persons": 3, "households": 1}
    assert "villages" not in doc["days"]["2019-11-15"]  # villages of a day come from the day's entries
    assert doc["villages"]["白牙市一村"] == {"persons": 0, "households": 0}
    assert "新村%2E东组" in doc["villages"] and doc["inflight"] == []
    day = scoring.db.progress_days.find_one({"_id": f"2020:{TOWN}:2019-11-15"})
    assert sorted(e["fact"] for e in day["entries"]) == sorted(
        f"paid:2020:{h}:P{h}" for h in ("A1", "B1", "E1", "U1")) + ["revoked:2020:C1:PC1"]


def test_a_crash_between_the_counter_and_the_days_entry_heals_on_redelivery(scoring, infra, counted):
    """count_once counted and the process died before the day's entry was written: an instant
    before the payment would count it; the redelivery writes the entry (once) and counts nothing
    again."""
    fact = "paid:2020:A1:PA1"
    day_id = f"2020:{TOWN}:2019-11-15"
    entries = scoring.db.progress_days.find_one({"_id": day_id})["entries"]
    scoring.db.progress_days.update_one({"_id": day_id}, {"$set": {"entries": [e for e in entries if e["fact"] != fact]}})
    before_a = "2019-11-15T16:59:59+08:00"  # A paid at 17:00:00: a second before, it is not counted...
    assert township(before_a)[1] == 6  # ... but with its entry missing nothing takes it back out
    deliver(scoring, infra, Envelope.new(Event(counted.type, counted.payload), "registry", NOW, county="431122"))
    assert township(before_a)[1] == 3 and township(DEADLINE)[1:] == (6, 3)
    day = scoring.db.progress_days.find_one({"_id": f"2020:{TOWN}:2019-11-15"})
    assert [e["fact"] for e in day["entries"]].count(fact) == 1
    assert scoring.db.progress.find_one({"_id": f"2020:{TOWN}"})["persons"] == 8


def test_the_villages_of_a_township_are_ranked_as_of_an_instant_ties_sharing_a_rank(counted):
    r = api().get(f"/v1/counties/431122/progress/2020/townships/{TOWN}/villages?as_of={quote('2019-11-15T17:00:01+08:00')}")
    assert r.status_code == 200, r.json
    body = r.json
    assert (body["township"], body["as_of"], body["enrolled_persons"], body["places_loaded"]) == (
        TOWN, "2019-11-15T17:00:01+08:00", 8, True)
    rows = [(x["rank"], x["village"], x["listed"], x["enrolled_persons"]) for x in body["villages"]]
    assert rows[:4] == [(1, "五一村", True, 3), (2, "白牙市二村", True, 2), (2, "芦江村", True, 2),
                        (4, UNLISTED, False, 1)]
    zero = rows[4:]
    assert zero and all(x[0] == 5 and x[3] == 0 and x[2] for x in zero)  # every other listed village, tied last
    assert "白牙市一村" in {x[1] for x in zero}  # its payment was revoked
    at_deadline = api().get(f"/v1/counties/431122/progress/2020/townships/{TOWN}/villages?as_of={quote(DEADLINE)}")
    assert {x["village"]: x["enrolled_persons"] for x in at_deadline.json["villages"]}["芦江村"] == 0


def test_a_bad_as_of_or_township_is_refused_with_its_code(counted):
    for bad in ("2019-11-15T17:00:00", "yesterday", "2019-11-15", "0001-01-01T00:00:00+01:00"):
        r = api().get(f"/v1/counties/431122/progress/2020?as_of={quote(bad)}")
        assert (r.status_code, r.json["code"]) == (400, "BAD_QUERY"), bad
        assert "时区" in r.json["message"]
    # a '+' sent unencoded arrives as a space: still read as the offset
    assert api().get("/v1/counties/431122/progress/2020?as_of=2019-11-15T17:00:00+08:00").json["as_of"] == DEADLINE
    r = api().get("/v1/counties/431122/progress/2020/townships/无此镇/villages")
    assert (r.status_code, r.json["code"]) == (404, "TOWNSHIP_UNKNOWN")
    r = api().get(f"/v1/counties/431122/progress/2020/townships/{TOWN}/villages?as_of=soon")
    assert (r.status_code, r.json["code"]) == (400, "BAD_QUERY")

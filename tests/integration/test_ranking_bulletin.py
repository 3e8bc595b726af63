"""The ranking on the county's rhythm reaches the township leaders by SMS, over the real bus.

Rules quoted: 002_9137bd928f251374.txt 七(四) — 城区人社局……每周四通报各镇工作进展情况; 003_0724b4a19d5e14e1.txt —
每周把全县各乡镇筹资进度进行排名,并把排名情况……以短信的方式发给各乡镇主要领导.
"""
from __future__ import annotations

import secrets
from datetime import datetime

import pytest

from services.notices import bootstrap as notices_boot
from services.notices.entrypoints.flask_app import create_app as notices_app
from services.scoring import bootstrap as scoring_boot
from services.scoring.service_layer.handlers import on_enrolment_changed
from services.scoring.service_layer.rankings import publish_rankings
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.events import Envelope, Event
from tests.helpers import run_until, secret_files

WUMING = "450110"
COUNTY = secrets.token_hex(8)
THU = datetime(2017, 11, 30, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def tokens(namespace, tmp_path_factory):
    with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
            {"sha256": token_hash(COUNTY), "subject": "wuming-ops", "role": "county", "county": WUMING}]):
        yield


def paid(township, persons, at, no):
    return Envelope.new(Event("registry.enrolment.changed", {
        "household_no": no, "year": 2018, "county": WUMING, "township": township, "village": "某村",
        "status": "paid", "person_ids": [f"45011019800506{i:03d}X" for i in range(persons)], "order_no": f"P{no}",
        "paid_at": at.isoformat()}), "registry", at, county=WUMING)


def test_the_thursday_ranking_goes_to_each_townships_leaders_once_with_its_change(tokens):
    clock = FixedClock(datetime(2017, 11, 24, 10, 0, tzinfo=SHANGHAI))
    sc = scoring_boot.bootstrap(clock).county(WUMING)
    nc = notices_boot.bootstrap(clock).county(WUMING)
    towns = [t.name for t in sc.policy.townships]
    repo, store = scoring_boot.repository(sc), scoring_boot.assessments(sc)
    on_enrolment_changed(repo, paid(towns[0], 5, datetime(2017, 11, 20, 10, tzinfo=SHANGHAI), "W1"))
    on_enrolment_changed(repo, paid(towns[1], 9, datetime(2017, 11, 21, 10, tzinfo=SHANGHAI), "W2"))

    api = notices_app(clock).test_client()
    auth = {"Authorization": f"Bearer {COUNTY}"}
    r = api.put(f"/v1/counties/{WUMING}/township-leaders/{towns[0]}", headers=auth, json={"leaders": [
        {"name": "韦镇长", "phone": "13977001001", "role": "head"}, {"name": "黄副镇长", "phone": "13977001002", "role": "deputy"}]})
    assert r.status_code == 200, r.json
    seen = api.get(f"/v1/counties/{WUMING}/township-leaders/{towns[0]}", headers=auth)
    assert "13977001001" not in seen.get_data(as_text=True) and seen.json["leaders"][0]["name"] == "韦镇长"
    bad = api.put(f"/v1/counties/{WUMING}/township-leaders/{towns[0]}", headers=auth,
                  json={"leaders": [{"name": "某", "phone": "12345"}]})
    assert (bad.status_code, bad.json["code"]) == (400, "VALIDATION_FAILED")

    [first] = publish_rankings(repo, store, sc.policies, datetime(2017, 11, 24, 10, 0, tzinfo=SHANGHAI))
    assert first["as_of"] == "2017-11-23T09:00:00+08:00"  # the Thursday before
    assert publish_rankings(repo, store, sc.policies, datetime(2017, 11, 25, 10, 0, tzinfo=SHANGHAI)) == []  # once
    on_enrolment_changed(repo, paid(towns[0], 40000, datetime(2017, 11, 27, 10, tzinfo=SHANGHAI), "W3"))
    [second] = publish_rankings(repo, store, sc.policies, THU)  # at 09:00 on Thursday itself
    assert second["as_of"] == "2017-11-30T09:00:00+08:00"

    run_until(lambda: nc.db.notices.count_documents({"kind": "ranking", "channel": "sms"}) >= 4,
              "the ranking SMS", relays=(scoring_boot.bootstrap(clock),), consumers=(notices_boot.bootstrap(clock),))
    sms = sorted((d["recipient_name"], d["text"]) for d in nc.db.notices.find({"kind": "ranking", "channel": "sms"})
                 if "20171130" in d["_id"])
    assert [name for name, _ in sms] == ["韦镇长", "黄副镇长"]  # the township's leaders; the others have none
    assert sms[0][1] == f"【武鸣区医保】截至2017年11月30日9时00分，{towns[0]}参保率55.91%，全区13个乡镇中第1名（较上期升1位）。"
    lists = [d for d in nc.db.notices.find({"kind": "ranking", "channel": "internal"}) if "20171130" in d["_id"]]
    assert len(lists) == len(towns)  # every township's work list has its line

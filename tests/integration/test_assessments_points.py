"""Dong'an's 100-point assessment through the API, from enrolment events on the real store and broker.

Rules quoted: 001_93f5b63ac6b4a653.txt 附件2 三(一) 对2.1、2.2项指标统计日期以截至2020年12月31日的数据为准;
三(三) 2.1 参保率达到95%(含)计满分,超过1个百分点加1分; 2.4 网络舆情每例扣2分; 四、2. 考核得分为100分者,
按1元/参保人拨付工作经费,每增加1分,按0.1元/人进行奖励.

The real task table asks tens of thousands per township; this suite loads a TEST-ONLY copy of
Dong'an's file whose townships ask 10 persons each (names, villages and scheme as shipped).
"""
from __future__ import annotations

import json
import os
import secrets
from datetime import datetime

import pytest

from services.scoring import bootstrap as scoring_boot
from services.scoring.entrypoints.flask_app import create_app as scoring_app
from services.scoring.service_layer.handlers import on_enrolment_changed
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.config import ROOT
from shared.events import Envelope, Event
from tests.helpers import secret_files

DONGAN = "431122"
COUNTY = secrets.token_hex(8)
AFTER = datetime(2021, 1, 4, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def suite(namespace, tmp_path_factory):
    d = tmp_path_factory.mktemp("dongan-points")
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    raw["source"] = "TEST ONLY: " + raw["source"] + " — every township's task set to 10"
    raw["places_file"] = str(ROOT / "policies" / raw["places_file"])
    for t in raw["townships"]:
        t["task"] = 10
    raw["declared_task_total"] = 10 * len(raw["townships"])
    (d / "dongan-2020-test.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    old = {k: os.environ.get(k) for k in ("POLICY_DIR", "POLICY_FILE")}
    os.environ.update({"POLICY_DIR": str(d), "POLICY_FILE": str(d / "dongan-2020-test.json")})
    try:
        with secret_files(tmp_path_factory.mktemp("secrets"), tokens=[
                {"sha256": token_hash(COUNTY), "subject": "dongan-ops", "role": "county", "county": DONGAN}]):
            clock = FixedClock(AFTER)
            yield {"api": scoring_app(clock).test_client(), "c": scoring_boot.bootstrap(clock), "towns": raw["townships"]}
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def paid(township, village, persons, at, no):
    return Envelope.new(Event("registry.enrolment.changed", {
        "household_no": no, "year": 2020, "county": DONGAN, "township": township, "village": village,
        "status": "paid", "person_ids": [f"43112219800506{i:03d}X" for i in range(persons)], "order_no": f"P{no}",
        "paid_at": at.isoformat()}), "registry", at)


def test_points_and_work_funds_from_enrolment_as_of_year_end_with_the_staff_entry_and_its_author(suite):
    s = suite
    c = s["c"]
    repo = scoring_boot.repository(c)
    zx, by = s["towns"][0], s["towns"][1]

    def v(t):
        return c.policy.township(t["name"]).villages[0]
    on_enrolment_changed(repo, paid(zx["name"], v(zx), 6, datetime(2020, 3, 1, 10, tzinfo=SHANGHAI), "A1"))
    on_enrolment_changed(repo, paid(zx["name"], v(zx), 4, datetime(2020, 12, 31, 23, 59, 59, tzinfo=SHANGHAI), "A2"))
    on_enrolment_changed(repo, paid(zx["name"], v(zx), 3, datetime(2021, 1, 1, 0, 0, tzinfo=SHANGHAI), "A3"))  # 2021
    on_enrolment_changed(repo, paid(by["name"], v(by), 9, datetime(2020, 6, 1, 10, tzinfo=SHANGHAI), "B1"))
    for t in (zx["name"], by["name"]):
        repo.store_accuracy(2020, "2020-12-31T12:00:00+08:00", [{"township": t, "registered_persons": 10,
                                                                 "persons_with_open_problems": 0, "rate_bp": 10000}])
        repo.store_coverage({"year": 2020, "county": DONGAN, "township": t, "category": "registered_poor",
                             "hardship_persons": 4, "enrolled_persons": 4, "not_enrolled_persons": 0, "rate_bp": 10000,
                             "as_of": "2019-12-31T12:00:00+08:00"})
    r = s["api"].put(f"/v1/counties/{DONGAN}/assessment-entries/2020/{zx['name']}", headers={"Authorization": f"Bearer {COUNTY}"},
                     json={"incidents": 1, "reason": "2020年6月政策宣传推诿引发网络舆情1例"})
    assert r.status_code == 200 and r.json["by"] == "dongan-ops", r.json

    r = s["api"].post(f"/v1/counties/{DONGAN}/evaluations/2020/points/1", headers={"Authorization": f"Bearer {COUNTY}"},
                      json={})
    assert r.status_code == 201, r.json
    doc = r.json
    assert (doc["as_of"], doc["reading"]) == ("2020-12-31T23:59:59+08:00", "whole")
    rows = {x["township"]: x for x in doc["rows"]}
    z = rows[zx["name"]]
    assert z["counted"] == 10  # the payment at 00:00:00 on Jan 1 is not 2020's figure
    items = {i["code"]: i for i in z["items"]}
    assert (items["2.1"]["value_bp"], items["2.1"]["score"]) == (10000, "45.00")  # 100 %: 5 points above 95 %
    assert (items["2.4"]["score"], items["2.4"]["incidents"], items["2.4"]["entered_by"]) == ("8.00", 1, "dongan-ops")
    assert z["score"] == "103.00" and z["rank"] == 1
    assert z["fund_fen"] == 10 * (100 + 3 * 10)  # 1.3 元 a person
    b = rows[by["name"]]
    assert b["score"] is None and b["rank"] is None and any("2.4" in m for m in b["missing"])
    assert not doc["complete"]

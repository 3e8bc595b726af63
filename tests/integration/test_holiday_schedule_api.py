"""The State Council's yearly holiday schedule, loaded by county staff through registry, on the real store.

- 《全国年节及纪念日放假办法》(国务院令第795号): 元旦 1月1日 is a holiday every year; the rest of each year's schedule
  and its 调休 come from 国务院办公厅关于Y年部分节假日安排的通知, which the pinned chinese-calendar has not for 2027.
- 001_93f5b63ac6b4a653.txt 七(一): 县医保局要在3个工作日内完成医保系统信息修改 — a correction's due date counts
  working days; until the year's schedule is loaded it is an estimate and says so (before: 2027-01-01 was counted
  as a working day and nothing said the date was a guess).
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime

import pytest

from services.registry import bootstrap as boot
from services.registry.entrypoints.flask_app import create_app
from shared import workdays
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from tests.helpers import household_payload, secret_files, shifted_policy

NOW = datetime(2026, 12, 30, 10, 0, tzinfo=SHANGHAI)  # a Wednesday, in the 2027 window of this test's policy
COUNTY, BAIYA = secrets.token_hex(8), secrets.token_hex(8)
# A schedule made up for this test only (not the State Council's): 元旦 Jan 1-4 off, Saturday Jan 9 worked.
TEST_2027 = {"year": 2027, "source": "测试用 2027 年安排（非官方）",
             "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-04"},
                          {"name": "劳动节", "from": "2027-05-01", "to": "2027-05-02"},
                          {"name": "国庆节", "from": "2027-10-01", "to": "2027-10-03"}],
             "workdays": [{"name": "元旦", "date": "2027-01-09"}]}


@pytest.fixture(scope="module")
def api(namespace, tmp_path_factory):
    import os
    d = tmp_path_factory.mktemp("hol")
    old = os.environ.get("POLICY_FILE")
    os.environ["POLICY_FILE"] = str(shifted_policy(d, 7))  # 2027, its window 2026-09-01..12-31
    with secret_files(d, tokens=[
            {"sha256": token_hash(COUNTY), "subject": "county-ops", "role": "county", "county": "431122"},
            {"sha256": token_hash(BAIYA), "subject": "baiya", "role": "township", "county": "431122",
             "township": "白牙市镇"}]):
        yield create_app(FixedClock(NOW)).test_client()
    os.environ.pop("POLICY_FILE") if old is None else os.environ.__setitem__("POLICY_FILE", old)
    workdays.uninstall(2027)
    workdays.use_source(None)


def county():
    return {"Authorization": f"Bearer {COUNTY}"}


def baiya():
    return {"Authorization": f"Bearer {BAIYA}"}


def correction(api, no):
    body = dict(household_payload(no, "白牙市镇", seed=700 + int(no[-4:])), year=2027)
    assert api.post("/v1/counties/431122/households", json=body, headers=county()).status_code == 201
    r = api.post("/v1/counties/431122/corrections", json={"household_no": no, "year": 2027, "changes": {"head_phone": "13800000000"},
                                         "reason": "电话有误"}, headers=baiya())
    assert r.status_code == 201, r.json
    return r.json


def test_before_the_schedule_is_loaded_the_due_date_skips_new_years_day_and_says_it_is_an_estimate(api):
    assert api.get("/v1/counties/431122/holidays/2027", headers=baiya()).json["source"] == "estimate"
    c = correction(api, "HOL-0001")
    # Dec 31 (Thu), Jan 1 off by rule, Jan 4 (Mon), Jan 5 (Tue): before, Jan 1 counted and the due was Jan 4
    assert c["due_at"].startswith("2027-01-05T23:59:59") and c["due_estimated"] is True


def test_only_county_staff_load_a_schedule_and_a_bad_one_is_refused_naming_the_field(api):
    assert api.put("/v1/counties/431122/holidays/2027", json=TEST_2027, headers=baiya()).status_code == 403
    bad = dict(TEST_2027, workdays=[{"name": "元旦", "date": "2027-01-06"}])  # a Wednesday
    r = api.put("/v1/counties/431122/holidays/2027", json=bad, headers=county())
    assert r.status_code == 400 and "workdays" in json.dumps(r.json, ensure_ascii=False), r.json
    r = api.put("/v1/counties/431122/holidays/2028", json=TEST_2027, headers=county())
    assert (r.status_code, r.json["code"]) == (400, "YEAR_MISMATCH")
    assert api.get("/v1/counties/431122/holidays/2027", headers=county()).json["estimated"] is True


def test_a_loaded_schedule_is_stored_used_by_deadlines_and_read_back_by_a_new_process(api):
    r = api.put("/v1/counties/431122/holidays/2027", json=TEST_2027, headers=county())
    assert r.status_code == 200, r.json
    assert (r.json["source"], r.json["estimated"], r.json["loaded_by"]) == ("official", False, "county-ops")
    assert {"date": "2027-01-09", "name": "元旦"} in r.json["workdays"]
    c = correction(api, "HOL-0002")
    # Dec 31, then Jan 1-4 off, Jan 5, Jan 6: the loaded schedule decides, no longer an estimate
    assert c["due_at"].startswith("2027-01-06T23:59:59") and c["due_estimated"] is False
    (first,) = [x for x in api.get("/v1/counties/431122/corrections", headers=county()).json["corrections"]
                if x["household_no"] == "HOL-0001"]
    assert first["due_estimated"] is True  # counted from the estimate (Jan 5); the schedule now gives Jan 6
    stored = boot.bootstrap(FixedClock(NOW)).db.holiday_schedules.find_one({"_id": "2027"})
    assert stored["schedule"]["holidays"][0] == {"name": "元旦", "from": "2027-01-01", "to": "2027-01-04"}
    workdays.uninstall(2027)  # a restarted registry knows only what its store holds
    fresh = create_app(FixedClock(NOW)).test_client()
    assert fresh.get("/v1/counties/431122/holidays/2027", headers=county()).json["source"] == "official"

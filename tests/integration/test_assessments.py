"""Assessments through the API on the real store and broker: stage evaluations at their deadline,
immutable versions, cards that accumulate, and the figures county staff load.

Rules quoted: 000_6db0cfefa235a8dc.txt 二 (Nayong 2017) — 每阶段考核结果按各乡(镇、街道)在截止时间内
城乡居民医保筹资款汇划县新农合基金专户累计金额计算人数的参合率排名; (一) 第一阶段(截止2016年11月15日下午5时)
完成参合任务数的40%, 达40%以上且排名前6位挂流动红旗, 未完成且排名后3位挂黄牌; (二) 连续两次排名挂黄牌 → 约谈.

Nayong's notice prints neither a task table nor a contribution standard, so this suite loads a
TEST-ONLY copy of its file with eight made-up townships (task 1,000 each) and a made-up standard of
100 yuan; the scheme (stages, shares, rules) is the shipped one.
"""
from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timedelta

import pytest

from services.scoring import bootstrap as scoring_boot
from services.scoring.entrypoints.flask_app import create_app as scoring_app
from services.scoring.service_layer.assessments import publish_due
from shared.auth import token_hash
from shared.clock import SHANGHAI, FixedClock
from shared.config import ROOT
from tests.helpers import run_until, secret_files

NAYONG = "520525"
TOWNS = ["一镇", "二镇", "三镇", "四镇", "五镇", "六镇", "七镇", "八镇"]
STANDARD = 10000  # test-only: 100 yuan
STAGE1 = datetime(2016, 11, 15, 17, 0, tzinfo=SHANGHAI)
STAGE2 = datetime(2016, 11, 30, 17, 0, tzinfo=SHANGHAI)
COUNTY, PORTAL, FINANCE = secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(8)


@pytest.fixture(scope="module")
def suite(namespace, tmp_path_factory):
    d = tmp_path_factory.mktemp("nayong")
    raw = json.loads((ROOT / "policies" / "nayong-2017.json").read_text(encoding="utf-8"))
    raw["source"] = "TEST ONLY: " + raw["source"] + " — made-up task table and standard"
    raw["townships"] = [{"name": t, "task": 1000} for t in TOWNS]
    raw["standard_fen"] = STANDARD
    (d / "nayong-2017-test.json").write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    old = {k: os.environ.get(k) for k in ("POLICY_DIR", "POLICY_FILE", "EVALUATION_GRACE_S")}
    os.environ.update({"POLICY_DIR": str(d), "POLICY_FILE": str(d / "nayong-2017-test.json"),
                       "EVALUATION_GRACE_S": "600"})
    tokens = [{"sha256": token_hash(COUNTY), "subject": "nayong-county", "role": "county", "county": NAYONG},
              {"sha256": token_hash(PORTAL), "subject": "nayong-portal", "role": "system", "county": NAYONG,
               "permissions": ["scores:read"], "services": ["scoring"]},
              {"sha256": token_hash(FINANCE), "subject": "nayong-finance", "role": "system", "county": NAYONG,
               "permissions": ["funds:credit"], "services": ["scoring"]}]
    try:
        with secret_files(tmp_path_factory.mktemp("secrets"), tokens=tokens):
            clock = FixedClock(STAGE1 - timedelta(days=5))
            yield {"api": scoring_app(clock).test_client(), "clock": clock, "c": scoring_boot.bootstrap(clock)}
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def credit(s, township, persons, at, ref=None):
    r = s["api"].post(f"/v1/counties/{NAYONG}/fund-credits", headers=auth(FINANCE), json={
        "year": 2017, "township": township, "ref": ref or f"B{secrets.token_hex(6)}", "amount_fen": persons * STANDARD,
        "credited_at": at.isoformat()})
    assert r.status_code in (200, 201), r.json
    return r


def evaluation(s, no, version=None, token=COUNTY):
    q = f"?version={version}" if version else ""
    return s["api"].get(f"/v1/counties/{NAYONG}/evaluations/2017/stage/{no}{q}", headers=auth(token))


def awards(doc, award, status="given"):
    return [r["township"] for r in doc["rows"] for a in r["awards"] if a["award"] == award and a["status"] == status]


def test_stage_one_is_published_once_after_its_deadline_from_the_money_remitted_by_17_00(suite):
    s = suite
    before = STAGE1 - timedelta(hours=3)
    for town, persons in zip(TOWNS[:6], (900, 800, 700, 600, 500, 450)):
        credit(s, town, persons, before)
    credit(s, "七镇", 120, before)
    credit(s, "七镇", 300, STAGE1)  # at 17:00:00: inside the stage (截止…下午5时)
    credit(s, "八镇", 100, before)
    credit(s, "八镇", 350 - 200, STAGE1 + timedelta(seconds=1))  # 17:00:01 belongs to the next stage
    again = credit(s, "一镇", 900, before, ref="B-SAME")
    assert again.status_code == 201
    twice = credit(s, "一镇", 900, before, ref="B-SAME")  # the bank sends the same credit again
    assert (twice.status_code, twice.json["duplicate"]) == (200, True)

    r = s["api"].post(f"/v1/counties/{NAYONG}/evaluations/2017/stage/1", headers=auth(COUNTY), json={})
    assert (r.status_code, r.json["code"]) == (409, "EVALUATION_NOT_DUE")
    c = s["c"]
    repo, store = scoring_boot.repository(c), scoring_boot.assessments(c)
    assert publish_due(repo, store, c.policies, STAGE1 + timedelta(minutes=5)) == []  # within the grace period
    [doc] = publish_due(repo, store, c.policies, STAGE1 + timedelta(minutes=11))
    assert (doc["version"], doc["trigger"], doc["as_of"]) == (1, "deadline", "2016-11-15T17:00:00+08:00")
    assert publish_due(repo, store, c.policies, STAGE1 + timedelta(minutes=12)) == []  # once

    got = evaluation(s, 1, token=PORTAL)  # a county portal reads with its read-only token
    assert got.status_code == 200, got.json
    rows = {r["township"]: r for r in got.json["rows"]}
    assert rows["一镇"]["counted"] == 1800  # 900 + the credit kept once (B-SAME)
    assert (rows["七镇"]["counted"], rows["七镇"]["reached"]) == (420, True)
    assert (rows["八镇"]["counted"], rows["八镇"]["reached"]) == (100, False)
    assert awards(got.json, "red_flag") == ["一镇", "二镇", "三镇", "四镇", "五镇", "六镇"]  # 七镇 reached, 7th
    assert awards(got.json, "yellow_card") == ["八镇"]  # the only one below 40 %
    [flag] = [a for a in rows["一镇"]["awards"] if a["award"] == "red_flag"]
    assert flag["name"] == "流动红旗" and "排名前6位" in flag["rule"]
    assert "2016年参合（参保）绝对数未导入" in got.json["missing"] and not got.json["complete"]
    stored = c.db.evaluations.find_one({"_id": "2017:stage:1:v1"})
    assert [e["type"] for e in stored["_outbox"].values()] == ["scoring.stage.evaluated"]
    r = s["api"].post(f"/v1/counties/{NAYONG}/evaluations/2017/stage/1", headers=auth(PORTAL), json={})
    assert (r.status_code, r.json["code"]) == (403, "ROLE_FORBIDDEN")

    # the event reaches notices over the bus: each township named hears what it got
    from services.notices import bootstrap as notices_boot
    nc = notices_boot.bootstrap(s["clock"])
    run_until(lambda: nc.db.notices.find_one({"_id": "stage:2017:stage:1:v1:八镇"}), "the stage-1 notices",
              relays=(c,), consumers=(nc,))
    text = nc.db.notices.find_one({"_id": "stage:2017:stage:1:v1:八镇"})["text"]
    assert text.startswith("纳雍县2017年度第一阶段考核结果（截至2016年11月15日17时00分）：八镇参合（参保）率10.00%")
    assert "黄牌" in text
    assert "流动红旗" in nc.db.notices.find_one({"_id": "stage:2017:stage:1:v1:一镇"})["text"]
    seven = nc.db.notices.find_one({"_id": "stage:2017:stage:1:v1:七镇"})["text"]  # eight townships: all in the
    assert "专项督办" in seven and "黄牌" not in seven and "流动红旗" not in seven  # bottom ten (三)


def test_a_correction_is_a_new_version_with_its_reason_and_the_first_stays_readable(suite):
    s = suite
    s["clock"].set(STAGE1 + timedelta(hours=1))
    r = s["api"].post(f"/v1/counties/{NAYONG}/evaluations/2017/stage/1", headers=auth(COUNTY), json={})
    assert (r.status_code, r.json["code"]) == (400, "REASON_REQUIRED")
    credit(s, "八镇", 320, STAGE1 - timedelta(hours=1))  # remitted before 17:00, reported late by the bank
    r = s["api"].post(f"/v1/counties/{NAYONG}/evaluations/2017/stage/1", headers=auth(COUNTY),
                      json={"reason": "银行补报八镇11月15日16时到账款项"})
    assert r.status_code == 201, r.json
    assert (r.json["version"], r.json["corrects"], r.json["evaluated_by"]) == (2, 1, "nayong-county")
    assert awards(r.json, "yellow_card") == []  # 八镇 reached 42 %: nobody is below the share
    first = evaluation(s, 1, version=1).json
    assert (first["version"], awards(first, "yellow_card")) == (1, ["八镇"])  # unchanged
    assert evaluation(s, 1).json["version"] == 2
    versions = s["api"].get(f"/v1/counties/{NAYONG}/evaluations/2017/stage/1/versions", headers=auth(COUNTY)).json
    assert [(v["version"], v["trigger"], v["reason"]) for v in versions["versions"]] == [
        (1, "deadline", None), (2, "staff", "银行补报八镇11月15日16时到账款项")]


def test_stage_two_reads_the_cards_of_stage_one_and_the_prior_year_loaded_with_who_loaded_it(suite):
    s = suite
    s["clock"].set(STAGE2 + timedelta(hours=1))
    r = s["api"].put(f"/v1/counties/{NAYONG}/prior-year/2017", headers=auth(COUNTY), json={
        "counted_year": 2016, "source": "2016年参合人数统计表（测试数据）",
        "rows": [{"township": t, "persons": 900} for t in TOWNS]})
    assert r.status_code == 200 and r.json["loaded_by"] == "nayong-county", r.json
    bad = s["api"].put(f"/v1/counties/{NAYONG}/prior-year/2017", headers=auth(COUNTY), json={
        "counted_year": 2016, "source": "x", "rows": [{"township": "不存在镇", "persons": 1}]})
    assert (bad.status_code, bad.json["code"]) == (400, "TOWNSHIP_UNKNOWN")
    # stage 2 (70 %): 七镇 (420) and 八镇 (100 + 150 + 320 = 570) miss the share; stage 1's newest
    # version gave 八镇 no card (its first did), so nobody has two in a row: no talk (约谈)
    for town, persons in zip(TOWNS[:6], (0, 0, 0, 200, 300, 300)):
        if persons:
            credit(s, town, persons, STAGE2 - timedelta(hours=2))
    r = s["api"].post(f"/v1/counties/{NAYONG}/evaluations/2017/stage/2", headers=auth(COUNTY), json={})
    assert r.status_code == 201, r.json
    doc = r.json
    assert awards(doc, "yellow_card") == ["八镇", "七镇"]  # lowest first
    assert awards(doc, "talk") == []  # 八镇's stage-1 card was corrected away (v2 is what counts)
    assert set(awards(doc, "red_flag")) == {"一镇", "二镇", "四镇", "五镇", "六镇", "三镇"}  # 800 ×3 tie at 2nd
    assert set(awards(doc, "accountability", "pending")) == set(TOWNS)  # the registered-poor rate is not known
    assert "2016年参合（参保）绝对数未导入" not in doc["missing"]


def test_rankings_share_ranks_on_ties_show_the_change_since_the_last_stage_and_answer_304_when_unchanged(suite):
    s = suite
    at = STAGE2 + timedelta(hours=2)
    s["clock"].set(at)
    r = s["api"].get(f"/v1/counties/{NAYONG}/rankings/2017?top=2&bottom=1", headers=auth(PORTAL))
    assert r.status_code == 200, r.json
    t = r.json
    assert (t["counts"], t["last_stage"], t["target"]["no"], t["target"]["share_percent"]) == ("remitted_persons", 2, 3, 80)
    rows = {x["township"]: x for x in t["rows"]}
    assert [rows[x]["rank"] for x in ("一镇", "二镇", "四镇", "五镇", "六镇")] == [1, 2, 2, 2, 5]  # 800 × 3 share 2nd
    assert rows["八镇"]["rank_last_stage"] == 7 and rows["八镇"]["rank_change_stage"] == 0
    assert (rows["一镇"]["band"], rows["七镇"]["band"]) == ("reached", "no_data")  # 七镇: too few days to forecast
    assert rows["七镇"]["forecast"]["needed_per_day"] > 0
    assert set(t["top"]) == {"一镇", "二镇", "四镇", "五镇"} and t["bottom"] == ["七镇"]  # ties stay together
    assert t["average"] == {"counted": 1800 + 800 * 3 + 750 + 700 + 420 + 570, "task": 8000,
                            "rate_bp": 8300, "mean_rate_bp": 8300}  # 6,640 of 8,000
    again = s["api"].get(f"/v1/counties/{NAYONG}/rankings/2017?top=2&bottom=1", headers={
        **auth(PORTAL), "If-None-Match": r.headers["ETag"]})
    assert (again.status_code, again.get_data()) == (304, b"")
    credit(s, "七镇", 10, at - timedelta(minutes=1))
    changed = s["api"].get(f"/v1/counties/{NAYONG}/rankings/2017?top=2&bottom=1", headers={
        **auth(PORTAL), "If-None-Match": r.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != r.headers["ETag"]
    bad = s["api"].get(f"/v1/counties/{NAYONG}/rankings/2017?as_of=yesterday", headers=auth(PORTAL))
    assert (bad.status_code, bad.json["code"]) == (400, "BAD_QUERY")


def test_a_scorecard_lists_each_published_stage_and_the_cards_so_far(suite):
    s = suite
    r = s["api"].get(f"/v1/counties/{NAYONG}/scorecards/2017/八镇", headers=auth(COUNTY))
    assert r.status_code == 200, r.json
    card = r.json
    assert [(h["no"], h["version"]) for h in card["history"]] == [(1, 2), (2, 1)]  # stage 1's newest version
    assert card["awards_total"] == {"yellow_card": 1, "inspection": 2}  # 三: stages 1-2's bottom ten
    assert card["current"]["township"] == "八镇"
    r = s["api"].get(f"/v1/counties/{NAYONG}/scorecards/2017/不存在镇", headers=auth(COUNTY))
    assert (r.status_code, r.json["code"]) == (404, "TOWNSHIP_UNKNOWN")


def test_a_forecast_is_published_once_days_before_the_next_deadline_and_tells_the_townships_behind(suite):
    from services.notices import bootstrap as notices_boot
    from services.scoring.service_layer.rankings import publish_forecasts
    s = suite
    c = s["c"]
    repo, store = scoring_boot.repository(c), scoring_boot.assessments(c)
    stage3 = datetime(2016, 12, 15, 17, 0, tzinfo=SHANGHAI)
    for day in range(1, 9):  # 六镇 remits 5 persons a day: far too slow for 80 %
        credit(s, "六镇", 5, stage3 - timedelta(days=3 + day))
    assert publish_forecasts(repo, store, c.policies, stage3 - timedelta(days=4)) == []  # not yet
    [doc] = publish_forecasts(repo, store, c.policies, stage3 - timedelta(days=2))
    assert publish_forecasts(repo, store, c.policies, stage3 - timedelta(days=1)) == []  # once
    six = next(r for r in doc["rows"] if r["township"] == "六镇")
    # 790 of the 800 that 80 % asks, gaining 30 in the last 7 days: about 798 by the deadline
    assert (six["counted"], six["forecast"]["status"], six["forecast"]["projected_persons"]) == (790, "behind", 798)
    assert six["forecast"]["needed_per_day"] == 5  # 10 more in the 2 days left
    nc = notices_boot.bootstrap(s["clock"])
    run_until(lambda: nc.db.notices.find_one({"_id": "forecast:2017:3:六镇"}), "the forecast notice",
              relays=(c,), consumers=(nc,))
    text = nc.db.notices.find_one({"_id": "forecast:2017:3:六镇"})["text"]
    assert "第三阶段将于2016年12月15日17时00分截止" in text and "每天须新增参保" in text


def test_the_ranking_and_an_evaluation_export_as_csv_and_xlsx_for_staff_spreadsheets(suite):
    import io

    from openpyxl import load_workbook
    s = suite
    r = s["api"].get(f"/v1/counties/{NAYONG}/rankings/2017/export?format=csv", headers=auth(PORTAL))
    assert r.status_code == 200 and r.mimetype == "text/csv"
    lines = r.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0].startswith("名次,乡（镇、街道）,任务数") and lines[1].startswith("1,一镇,1000,1800")
    assert lines[-1].startswith(",全县合计,8000")
    assert "filename*=UTF-8''" in r.headers["Content-Disposition"]
    x = s["api"].get(f"/v1/counties/{NAYONG}/evaluations/2017/stage/1/export?format=xlsx&version=1", headers=auth(PORTAL))
    assert x.status_code == 200, x.get_data(as_text=True)[:200]
    sheet = load_workbook(io.BytesIO(x.get_data())).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0][:2] == ["名次", "乡（镇、街道）"]
    eight = next(r for r in rows if r[1] == "八镇")
    assert "黄牌" in eight[7]

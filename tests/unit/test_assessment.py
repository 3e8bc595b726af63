"""The assessment engine on the documents' rules (services/scoring/domain/assessment.py).

Schemes are the shipped policy files' `assessment` parts. Nayong's notice prints no task table, so
the township figures here are worked examples (test-only names and numbers), not Nayong's.

Rules quoted:
- 000_6db0cfefa235a8dc.txt 二 (Nayong 2017): 对参合人数达任务数40%以上且排名前6位的乡(镇、街道),挂流动红旗一次。
  对未完成本阶段任务且排名后3位的乡(镇、街道),挂黄牌一次。(二) 连续两次排名挂黄牌 → 约谈, 黄色预警;
  精准识别建档立卡对象参合率未达到100% → 启动问责程序. (三) 第二、第三阶段受到两次约谈 → 黄色/红色预警.
  (四) 累计三次挂黄牌 → 红牌; 未完成90%且排名后3位, 参合人数已超过2016年参合绝对数, 可免除本次处罚.
  (五) 完成100%且较2016年上升的前6位 → 流动红旗并全县通报表扬; 未完成98%排名后3位且低于2016年 → 县监察局
  问责; 未完成98%但高于2016年200人以上 → 可申请解除一次黄牌.
- 001_93f5b63ac6b4a653.txt 附件2 (Dong'an 2020): 2.1 以辖区内整体参保率95%为基数,参保率达到95%(含)计满分,
  超过1个百分点加1分,下降1个百分点扣1分; 四、2. 考核得分为100分者,按1元/参保人拨付工作经费,每增加1分,
  按0.1元/人进行奖励,每下降1分,按0.01元/人进行扣除.
- 002_9137bd928f251374.txt 七(五) (Wuming 2018): 按实际参保人数1.5元/人的标准足额给予补助经费.
"""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import datetime
from fractions import Fraction

import pytest

from services.scoring.domain.assessment import (Figures, evaluate_funds, evaluate_points, evaluate_stage,
                                                stage_due)
from services.scoring.domain.scheme import scheme_of
from shared.clock import SHANGHAI
from shared.config import ROOT
from shared.policy import PolicyError, load_policy

NAYONG = scheme_of(load_policy(ROOT / "policies" / "nayong-2017.json"))
DONGAN = scheme_of(load_policy(ROOT / "policies" / "dongan-2020.json"))
WUMING = scheme_of(load_policy(ROOT / "policies" / "wuming-2018.json"))


def towns(*rates_permille, task=1000, **kw) -> list[Figures]:
    """Townships T01… with task 1000 and `counted` = the given ‰ of it."""
    return [Figures(f"T{i:02d}", task, r, **kw) for i, r in enumerate(rates_permille, start=1)]


def awards(result, award, status="given") -> list[str]:
    return [r.township for r in result.rows for a in r.awards if a.award == award and a.status == status]


def test_ties_share_a_rank_and_the_next_rank_is_skipped():
    res = evaluate_stage(NAYONG, NAYONG.stage(1), towns(500, 450, 450, 300))
    assert [(r.township, r.rank) for r in sorted(res.rows, key=lambda r: r.rank)] == [
        ("T01", 1), ("T02", 2), ("T03", 2), ("T04", 4)]


def test_red_flags_go_to_at_most_six_and_only_to_those_that_reached_the_share():
    # stage 1: 40 %; eight reached (400‰ counts: 以上 includes the figure), two did not
    res = evaluate_stage(NAYONG, NAYONG.stage(1), towns(900, 800, 700, 600, 550, 500, 450, 400, 399, 100))
    assert awards(res, "red_flag") == ["T01", "T02", "T03", "T04", "T05", "T06"]
    res = evaluate_stage(NAYONG, NAYONG.stage(1), towns(900, 800, 399, 300, 200, 100, 50, 40, 30, 20))
    assert awards(res, "red_flag") == ["T01", "T02"]  # only two reached: two flags, not six


def test_a_tie_across_the_sixth_place_is_left_to_the_county_never_a_seventh_flag():
    res = evaluate_stage(NAYONG, NAYONG.stage(1), towns(900, 800, 700, 600, 550, 500, 500, 100, 50, 20))
    assert awards(res, "red_flag") == ["T01", "T02", "T03", "T04", "T05"]
    assert awards(res, "red_flag", "pending") == ["T06", "T07"]
    [why] = [a.missing for r in res.rows for a in r.awards if r.township == "T06" and a.award == "red_flag"]
    assert "并列第6位" in why[0] and "由县里决定" in why[0]
    assert not res.complete


def test_yellow_cards_go_to_the_bottom_three_that_did_not_reach_the_share():
    res = evaluate_stage(NAYONG, NAYONG.stage(1), towns(900, 800, 700, 600, 500, 390, 300, 200, 100))
    assert awards(res, "yellow_card") == ["T07", "T08", "T09"]
    res = evaluate_stage(NAYONG, NAYONG.stage(1), towns(900, 800, 700, 600, 500, 450, 420, 410, 100, 90))
    assert awards(res, "yellow_card") == ["T09", "T10"]  # only two missed the share


def test_stage_two_consecutive_cards_bring_a_talk_and_warnings_and_the_poor_below_100_accountability():
    figures = towns(900, 800, 750, 720, 600, 500, 400)
    figures = [replace(f, registered_poor_rate=Fraction(1) if f.township != "T05" else Fraction(99, 100),
                       villages=(("甲村", Fraction(1, 2)), ("乙村", Fraction(1, 3)), ("丙村", Fraction(2, 3))))
               for f in figures]
    history = {"T07": {1: ["yellow_card"]}, "T06": {1: ["red_flag"]}}
    res = evaluate_stage(NAYONG, NAYONG.stage(2), figures, history)
    assert awards(res, "yellow_card") == ["T05", "T06", "T07"]
    assert awards(res, "talk") == ["T07"]  # T06's second card is not its second in a row
    [warn] = [a for r in res.rows for a in r.awards if r.township == "T07" and a.award == "yellow_warning"]
    assert warn.to == ("deputy", "village_cadres") and warn.villages == ["乙村", "甲村"]
    assert awards(res, "accountability") == ["T05"]
    unknown = evaluate_stage(NAYONG, NAYONG.stage(2), towns(900, 800, 750, 720))
    assert awards(unknown, "accountability", "pending") == ["T01", "T02", "T03", "T04"]  # never assumed met


def test_stage_three_a_head_talked_to_in_stages_two_and_three_gets_a_yellow_warning():
    history = {"T05": {1: ["yellow_card"], 2: ["yellow_card", "talk"]}}
    res = evaluate_stage(NAYONG, NAYONG.stage(3), towns(950, 900, 850, 810, 500), history)
    assert awards(res, "yellow_card") == ["T05"] and awards(res, "talk") == ["T05"]
    heads = [a.to for r in res.rows for a in r.awards if a.award == "yellow_warning"]
    assert ("head",) in heads and ("deputy", "village_cadres") in heads
    assert awards(res, "red_warning") == ["T05"]


def test_stage_four_exempts_a_bottom_three_township_above_its_2016_count_and_nobody_takes_its_place():
    figures = [replace(f, prior_year=p) for f, p in zip(towns(950, 920, 910, 850, 800, 700),
                                                        [900, 900, 900, 800, 820, 600])]
    res = evaluate_stage(NAYONG, NAYONG.stage(4), figures)
    assert awards(res, "yellow_card") == ["T05"]  # 800 < 2016's 820: no exemption
    assert awards(res, "yellow_card", "exempted") == ["T04", "T06"]  # 850 > 800, 700 > 600
    assert awards(res, "yellow_warning") == ["T05"]  # the exempted take no warning either
    no_prior = evaluate_stage(NAYONG, NAYONG.stage(4), towns(950, 920, 910, 850))
    assert awards(no_prior, "yellow_card", "pending") == ["T04"]
    assert any("2016" in m or "上年" in m for r in no_prior.rows for a in r.awards for m in a.missing)


def test_a_third_yellow_card_gives_a_red_card_with_its_consequences():
    history = {"T04": {1: ["yellow_card"], 2: ["yellow_card"]}, "T03": {1: ["yellow_card"]}}
    figures = [replace(f, prior_year=2000) for f in towns(950, 920, 850, 800)]
    res = evaluate_stage(NAYONG, NAYONG.stage(4), figures, history)
    assert awards(res, "yellow_card") == ["T03", "T04"]
    assert awards(res, "red_card") == ["T04"]
    got = {(a.award, a.to) for r in res.rows for a in r.awards if r.township == "T04"}
    assert {("red_warning", ("head",)), ("admonition_recall", ("deputy", "village_cadres"))} <= got
    [recall] = [a for r in res.rows for a in r.awards if r.township == "T04" and a.award == "admonition_recall"]
    assert recall.villages == [] and "村（社区）任务数未配置" in recall.missing[0]


def test_stage_five_red_flags_need_100_and_a_rise_and_the_98_and_plus_200_rules():
    prior = [900, 1100, 900, 900, 990, 700]
    figures = [replace(f, prior_year=p) for f, p in zip(towns(1000, 1000, 990, 975, 970, 960), prior)]
    history = {"T06": {2: ["yellow_card", "talk"], 3: ["yellow_warning"]}}
    res = evaluate_stage(NAYONG, NAYONG.stage(5), figures, history)
    assert awards(res, "red_flag") == ["T01"]  # T02 reached 100 % but fell below 2016
    assert awards(res, "praise") == ["T01"]
    assert awards(res, "supervision_accountability") == ["T05"]  # below 98 %, bottom 3 and below 2016
    assert awards(res, "may_lift_yellow_card") == ["T06"]  # 960 − 700 ≥ 200 and a card to lift
    assert awards(res, "may_lift_yellow_warning") == ["T06"]
    edge = [replace(f, prior_year=760) for f in towns(960)]  # exactly 200 above: 以上 includes it
    edge_history = {"T01": {1: ["yellow_card"]}}
    assert awards(evaluate_stage(NAYONG, NAYONG.stage(5), edge, edge_history), "may_lift_yellow_card") == ["T01"]


def test_a_township_without_a_task_or_a_count_is_listed_unranked_with_what_it_lacks():
    figures = towns(900, 500) + [Figures("无任务镇", None, 300), Figures("无数据镇", 1000, None)]
    res = evaluate_stage(NAYONG, NAYONG.stage(1), figures)
    rows = {r.township: r for r in res.rows}
    assert rows["无任务镇"].rank is None and rows["无任务镇"].missing == ["未配置参保任务数"]
    assert rows["无数据镇"].rank is None and rows["无数据镇"].awards == []
    assert not res.complete and "未配置参保任务数" in res.missing


def test_a_stage_is_due_at_its_17_00_deadline_shanghai_time_not_a_second_before():
    assert NAYONG.stage(1).deadline == datetime(2016, 11, 15, 17, 0, tzinfo=SHANGHAI)
    assert [s.no for s in stage_due(NAYONG, datetime(2016, 11, 15, 16, 59, 59, tzinfo=SHANGHAI))] == []
    assert [s.no for s in stage_due(NAYONG, datetime(2016, 11, 15, 17, 0, tzinfo=SHANGHAI))] == [1]


def dongan_figures(rates_bp, accuracy_bp=10000, poor_bp=10000, incidents=0, task=10000):
    return [Figures(f"D{i}", task, task * r // 10000, accuracy_rate=Fraction(accuracy_bp, 10000),
                    registered_poor_rate=Fraction(poor_bp, 10000),
                    entered={"incidents": incidents, "by": "county-ops", "reason": "无"})
            for i, r in enumerate(rates_bp, start=1)]


@pytest.mark.parametrize("rate_bp,whole,proportional", [
    (9500, 40, 40),                                 # 95 % (含): full
    (9599, 40, Fraction(4099, 100)),                # less than a whole point above
    (9600, 41, 41),                                 # one point above: +1
    (10100, 46, 46),                                # six above (no cap on the item)
    (9401, 40, Fraction(3901, 100)),                # less than a whole point below
    (9400, 39, 39),                                 # one point below: −1
    (9350, 39, Fraction(3850, 100)),
])
def test_dongan_2_1_above_at_and_below_95_in_both_readings(rate_bp, whole, proportional):
    [w] = evaluate_points(DONGAN, dongan_figures([rate_bp])).rows
    item = next(i for i in w.items if i["code"] == "2.1")
    assert item["score"] == whole and item["reading"] == "whole"
    prop = replace(DONGAN, points=replace(DONGAN.points, reading="proportional"))
    [p] = evaluate_points(prop, dongan_figures([rate_bp])).rows
    assert next(i for i in p.items if i["code"] == "2.1")["score"] == proportional


def test_dongan_totals_items_and_deducts_2_3_two_points_and_2_4_two_per_incident():
    [r] = evaluate_points(DONGAN, dongan_figures([9700], accuracy_bp=9800, poor_bp=9900, incidents=1)).rows
    scores = {i["code"]: i["score"] for i in r.items}
    assert scores == {"2.1": 42, "2.2": 8, "2.3": 38, "2.4": 8} and r.score == 96
    assert next(i for i in r.items if i["code"] == "2.4")["entered_by"] == "county-ops"


def test_dongan_work_funds_above_at_and_below_100_points_only_for_a_completed_task():
    """100 points → 1 元/人 (100 fen); each point above +0.1 元/人 (10 fen); each below −0.01 元/人 (1 fen)."""
    def one(counted, accuracy_bp, task=10000):
        figs = [Figures("D1", task, counted, accuracy_rate=Fraction(accuracy_bp, 10000), registered_poor_rate=Fraction(1),
                        entered={"incidents": 0})]
        [r] = evaluate_points(DONGAN, figs).rows
        return r
    r = one(10000, 9500)  # 2.1: 100 % → 40 + 5; 2.2: 95 % → 10 − 5; 40; 10 → 100 points
    assert (r.score, r.fund_fen) == (100, 10000 * 100)
    r = one(10000, 10000)  # 105 points: 1 + 5 × 0.1 = 1.5 元/人
    assert (r.score, r.fund_fen) == (105, 10000 * 150)
    r = one(10000, 9000)  # 2.2 → 0: 95 points, 1 − 5 × 0.01 = 0.95 元/人
    assert (r.score, r.fund_fen) == (95, 10000 * 95)
    assert r.funds[0]["rounding"] == "四舍五入到分"
    r = one(9400, 10000)  # the task not met: no work funds at all, whatever the score
    assert r.score == 99 and r.fund_fen is None and r.funds == []


def test_dongan_rewards_the_top_three_that_met_the_task_and_names_the_last_only_if_it_missed():
    figs = [Figures(f"D{i}", 10000, c, accuracy_rate=Fraction(1), registered_poor_rate=Fraction(1),
                    entered={"incidents": 0}) for i, c in enumerate([9400, 10200, 10100, 10050, 9000], start=1)]
    res = evaluate_points(DONGAN, figs)
    assert awards(res, "praise") == ["D2", "D3", "D4"]
    assert awards(res, "named_last") == ["D5"]
    figs[4] = replace(figs[4], task=8000, registered_poor_rate=Fraction(1, 2))  # last (2.3 → 0) but met its task
    assert evaluate_points(DONGAN, figs).rows[4].rank == 5
    assert awards(evaluate_points(DONGAN, figs), "named_last") == []


def test_dongan_without_the_2_4_entry_has_no_total_and_says_so():
    figs = [Figures("D1", 10000, 9600, accuracy_rate=Fraction(1), registered_poor_rate=Fraction(1))]
    res = evaluate_points(DONGAN, figs)
    assert res.rows[0].score is None and res.rows[0].rank is None
    assert any("2.4" in m for m in res.missing)


def test_wuming_pays_1_5_yuan_per_enrolled_person_to_towns_that_completed_their_task():
    rows = {r.township: r for r in evaluate_funds(WUMING, [Figures("城厢镇", 71556, 71600), Figures("太平镇", 38873, 38000)])}
    town_fund = [f for f in rows["城厢镇"].funds if "1.5元" in f["rule"]]
    assert town_fund[0]["fen"] == 71600 * 150
    assert not [f for f in rows["太平镇"].funds if "1.5元" in f["rule"]]  # not completed
    assert [f["fen"] for f in rows["太平镇"].funds] == [38000 * 50]  # the data-entry budget counts everyone


def bad(change):
    raw = json.loads((ROOT / "policies" / "nayong-2017.json").read_text(encoding="utf-8"))
    raw = copy.deepcopy(raw)
    change(raw["assessment"])
    from shared.policy import parse_policy
    return scheme_of(parse_policy(raw, file="nayong-bad.json"))


def test_a_scheme_with_an_unknown_condition_or_a_deadline_with_an_offset_is_refused_naming_the_field():
    with pytest.raises(PolicyError) as e:
        bad(lambda a: a["stages"][0]["rules"][0]["requires"].append("reached_somehow"))
    assert "assessment.stages[0].rules[0].requires" in str(e.value) and "nayong-bad.json" in str(e.value)
    with pytest.raises(PolicyError) as e:
        bad(lambda a: a["stages"][0].update(deadline="2016-11-15T17:00:00+00:00"))
    assert "Asia/Shanghai wall time" in str(e.value)
    with pytest.raises(PolicyError) as e:
        bad(lambda a: a["stages"].reverse())
    assert "stages" in str(e.value)


def test_a_fractional_score_gives_a_fund_rounded_half_up_once_per_township():
    prop = replace(DONGAN, points=replace(DONGAN.points, reading="proportional"))
    figs = [Figures("D1", 3, 3, accuracy_rate=Fraction(9955, 10000), registered_poor_rate=Fraction(1),
                    entered={"incidents": 0})]
    [r] = evaluate_points(prop, figs).rows  # 45 + 9.55 + 40 + 10 = 104.55 points
    assert r.score == Fraction(10455, 100)
    assert r.funds[0]["exact_fen"] == "873/2" and r.fund_fen == 437  # 3 × 145.5 = 436.5 → 437


def test_the_bottom_ten_of_stages_one_and_two_are_put_under_inspection_and_later_stages_not():
    # 000 三: 对筹资工作一、二阶段参合率排名后十位的乡(镇、街道)进行专项督办
    figures = towns(*range(950, 350, -50))  # twelve townships
    for no in (1, 2):
        res = evaluate_stage(NAYONG, NAYONG.stage(no), figures)
        assert awards(res, "inspection") == [f"T{i:02d}" for i in range(3, 13)]
    assert awards(evaluate_stage(NAYONG, NAYONG.stage(3), figures), "inspection") == []


def test_wumings_bulletin_is_each_thursday_at_9_within_the_window_and_only_the_newest_is_due():
    # 002 七(四): 每周四通报各镇工作进展情况
    from services.scoring.domain.scheme import latest_bulletin
    [b] = WUMING.bulletins
    start, end = datetime(2017, 9, 1, tzinfo=SHANGHAI), datetime(2018, 1, 1, 23, 59, tzinfo=SHANGHAI)
    sat = datetime(2017, 12, 9, 10, 0, tzinfo=SHANGHAI)
    assert latest_bulletin(b, sat, start, end) == datetime(2017, 12, 7, 9, 0, tzinfo=SHANGHAI)
    assert latest_bulletin(b, datetime(2017, 12, 7, 8, 59, tzinfo=SHANGHAI), start, end) == \
        datetime(2017, 11, 30, 9, 0, tzinfo=SHANGHAI)
    assert latest_bulletin(b, datetime(2017, 9, 6, 12, 0, tzinfo=SHANGHAI), start, end) is None  # none yet
    assert latest_bulletin(b, datetime(2018, 3, 1, tzinfo=SHANGHAI), start, end) == \
        datetime(2017, 12, 28, 9, 0, tzinfo=SHANGHAI)  # the season's last
    [monthly] = DONGAN.bulletins  # 001 七(五): 一月一通报
    assert latest_bulletin(monthly, datetime(2019, 11, 20, tzinfo=SHANGHAI), start.replace(year=2019),
                           end.replace(year=2020)) == datetime(2019, 11, 1, 9, 0, tzinfo=SHANGHAI)

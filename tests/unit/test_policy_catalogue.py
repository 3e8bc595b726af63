"""The policy catalogue: one validated file per county and year, from each county's own notice.

- 001_93f5b63ac6b4a653.txt (东安县 2020): 三 250元/人; 四 集中参保缴费期 2019-09-01 至 12-31; 附件1 合计 578500
  (rows add to 578501).
- 002_9137bd928f251374.txt (武鸣区 2018): 四 180元/人·年; 五(一) 集中缴费期 2017-09-01 至 12-31, 待遇享受期 2018
  全年; 五(二) 7月1日至12月31日不再办理当年参保 (出生未超过3个月的新生儿及困难、特殊人群除外); 五(三) 1月1日至
  6月30日 中断缴费及逾期缴费人员可办理当年参保; 附件 任务数 = 2016年底人口数 × 97%.
- 000_6db0cfefa235a8dc.txt (纳雍县 2017): prints no standard, window or task table: null with a note.
"""
import json
import shutil
from datetime import date, datetime, timedelta

import pytest

from shared.clock import SHANGHAI
from shared.config import ROOT
from shared.policy import PolicyError, load_catalogue, load_policy, parse_policy, phase_at

POLICIES = ROOT / "policies"
DONGAN = json.loads((POLICIES / "dongan-2020.json").read_text(encoding="utf-8"))


def sh(*a) -> datetime:
    return datetime(*a, tzinfo=SHANGHAI)


def test_the_catalogue_holds_the_three_counties_each_from_its_notice():
    cat = load_catalogue(POLICIES)
    assert cat.counties() == ["431122", "450110", "520525"]  # keyed by GB/T 2260 code
    assert [(c, cat.years(c), cat.get(c, cat.years(c)[0]).county) for c in cat.counties()] == [
        ("431122", [2020], "东安县"), ("450110", [2018], "武鸣区"), ("520525", [2017], "纳雍县")]
    wuming = cat.get("450110", 2018)
    assert wuming.standard_fen == 18000 and wuming.target_rate_percent == 97
    assert (wuming.window_opens, wuming.window_closes) == (date(2017, 9, 1), date(2017, 12, 31))
    assert len(wuming.townships) == 13 and wuming.task_total == 608897 and wuming.warnings == ()
    assert cat.get("431122", 2020).task_total == 578501


def test_a_county_code_must_be_the_county_the_file_names(tmp_path):
    """The code is the county's key everywhere (URLs, events, tokens, databases): a code of another
    county, or one that is not a county's, is refused at load."""
    raw = json.loads((POLICIES / "dongan-2020.json").read_text(encoding="utf-8"))
    raw["places_file"] = str(POLICIES / raw["places_file"])
    for code, says in (("450110", "武鸣区"), ("431100", "not a county-level")):
        path = tmp_path / f"bad-{code}.json"
        path.write_text(json.dumps({**raw, "county_code": code}, ensure_ascii=False), encoding="utf-8")
        with pytest.raises(PolicyError) as e:
            load_policy(path)
        assert "county_code" in e.value.errors and says in str(e.value)


def test_wuming_tasks_are_the_printed_2016_population_times_97_percent():
    for t in load_policy(POLICIES / "wuming-2018.json").townships:
        assert t.task == round(t.population * 0.97), t.name


def test_wuming_mid_year_rules_as_printed():
    mid = load_policy(POLICIES / "wuming-2018.json").mid_year
    assert mid.newborn_within_months == 3 and mid.newborn_within_days is None
    closed, late = mid.periods
    assert (closed.starts, closed.ends, closed.kind) == ("07-01", "12-31", "closed")
    assert set(closed.except_) == {"newborn_under_3_months", "hardship_special"}
    assert (late.starts, late.ends, late.kind, late.who) == ("01-01", "06-30", "open", ("lapsed", "late"))
    assert mid.financing_standard_fen is None and mid.benefits_from is None  # not printed: unset, not invented


def test_dongan_mid_year_rules_as_printed():
    mid = load_policy(POLICIES / "dongan-2020.json").mid_year
    assert (mid.newborn_within_days, mid.benefits_from) == (28, "next_month")
    assert "newborn_late" in mid.special_cases and len(mid.special_cases) == 8


def test_nayong_gives_no_figures_and_every_missing_one_says_so():
    p = load_policy(POLICIES / "nayong-2017.json")
    assert (p.standard_fen, p.window_opens, p.townships, p.declared_task_total) == (None, None, (), None)
    notes = p.raw["notes"]
    assert {"standard_fen", "window", "townships", "declared_task_total"} <= set(notes)


def test_a_null_without_a_note_is_refused_naming_the_file_and_field():
    with pytest.raises(PolicyError) as e:
        parse_policy(dict(DONGAN, standard_fen=None), file="dongan-2020.json")
    assert "standard_fen" in e.value.errors and str(e.value).startswith("dongan-2020.json: ")


@pytest.mark.parametrize("change, field", [
    ({"standard_fen": "25000"}, "standard_fen"),
    ({"standard_fen": True}, "standard_fen"),
    ({"window": {"opens": "2019-09-01"}}, "window.closes"),
    ({"window": {"opens": "2019-09-01", "closes": "2019-13-01"}}, "window.closes"),
    ({"townships": [{"name": "甲镇", "task": 10.5}]}, "townships[0].task"),
    ({"townships": [{"name": "甲镇", "task": 1}, {"name": "甲镇", "task": 2}]}, "townships"),
    ({"standard_feen": 25000}, "standard_feen"),
    ({"task_total_rule": "average"}, "task_total_rule"),
])
def test_bad_fields_are_refused_with_their_path(change, field):
    with pytest.raises(PolicyError) as e:
        parse_policy(dict(DONGAN, **change), file="x.json")
    assert field in e.value.errors, e.value.errors
    assert "x.json: " in str(e.value) and field in str(e.value)


def test_a_printed_total_that_disagrees_needs_the_countys_rule():
    raw = {k: v for k, v in DONGAN.items() if k != "task_total_rule"}
    with pytest.raises(PolicyError) as e:
        parse_policy(raw, file="dongan-2020.json")
    assert "task_total_rule" in e.value.errors and "578500" in str(e.value) and "578501" in str(e.value)
    printed = parse_policy(dict(raw, task_total_rule="printed"))
    assert printed.task_total == 578500 and printed.task_rows_total == 578501
    assert printed.warnings[0].data == {"task_total_printed": 578500, "task_total_rows": 578501,
                                        "task_rule": "printed", "task_total": 578500}


def test_the_mismatch_is_logged_at_load_with_its_figures(caplog):
    with caplog.at_level("WARNING", logger="shared.policy"):
        load_policy(POLICIES / "dongan-2020.json")
    (rec,) = [r for r in caplog.records if hasattr(r, "policy_warning")]
    assert json.loads(rec.policy_warning) == {"code": "TASK_TOTAL_MISMATCH", "file": "dongan-2020.json",
                                              "field": "declared_task_total", "task_total_printed": 578500,
                                              "task_total_rows": 578501, "task_rule": "rows", "task_total": 578501}


def test_two_files_for_one_county_year_are_refused(tmp_path):
    for name in ("dongan-2020.json", "dongan-2020-villages.csv", "wuming-2018.json"):
        shutil.copy(POLICIES / name, tmp_path / name)
    shutil.copy(POLICIES / "dongan-2020.json", tmp_path / "dongan-2020-copy.json")
    with pytest.raises(PolicyError) as e:
        load_catalogue(tmp_path)
    assert "dongan-2020-copy.json" in str(e.value) and "dongan-2020.json" in str(e.value)


def test_a_bad_file_in_the_catalogue_names_itself(tmp_path):
    (tmp_path / "bad-2021.json").write_text(json.dumps(dict(DONGAN, year="2021")), encoding="utf-8")
    shutil.copy(POLICIES / "dongan-2020-villages.csv", tmp_path)
    with pytest.raises(PolicyError) as e:
        load_catalogue(tmp_path)
    assert e.value.file == "bad-2021.json" and "year" in e.value.errors


# ---- lifecycle: 001 四 (window 2019-09-01..12-31, both days included), benefit year 2020 (Jan 1 - Dec 31)
DONGAN_P = load_policy(POLICIES / "dongan-2020.json")
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize("at, phase", [
    (sh(2019, 9, 1) - TICK, "draft"),                   # 2019-08-31 23:59:59.999999 Shanghai
    (sh(2019, 9, 1), "window_open"),                    # 00:00 Sep 1 Shanghai
    (sh(2019, 12, 31, 23, 59, 59), "window_open"),
    (sh(2020, 1, 1), "benefit_year"),
    (sh(2020, 12, 31, 23, 59, 59), "benefit_year"),
    (sh(2021, 1, 1), "closed"),
])
def test_lifecycle_boundaries_in_shanghai_wall_time(at, phase):
    assert phase_at(DONGAN_P, at) == phase


def test_lifecycle_boundaries_seen_from_utc():
    from datetime import timezone
    # 2019-08-31 16:00 UTC is Sep 1 00:00 in Shanghai: the window is open; a UTC date would say "August".
    assert phase_at(DONGAN_P, datetime(2019, 8, 31, 16, 0, tzinfo=timezone.utc)) == "window_open"
    assert phase_at(DONGAN_P, datetime(2019, 8, 31, 15, 59, 59, tzinfo=timezone.utc)) == "draft"
    assert phase_at(DONGAN_P, datetime(2020, 12, 31, 16, 0, tzinfo=timezone.utc)) == "closed"


def test_a_year_without_a_printed_window_is_draft_until_its_benefit_year():
    nayong = load_policy(POLICIES / "nayong-2017.json")
    assert phase_at(nayong, sh(2016, 12, 31, 23, 59)) == "draft"  # never window_open: no window printed
    assert phase_at(nayong, sh(2017, 1, 1)) == "benefit_year"
    assert phase_at(nayong, sh(2018, 1, 1)) == "closed"


def test_lifecycle_needs_an_aware_instant():
    with pytest.raises(ValueError):
        phase_at(DONGAN_P, datetime(2019, 9, 1))

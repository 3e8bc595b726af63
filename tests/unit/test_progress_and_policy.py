"""Township tasks and progress — 001_93f5b63ac6b4a653.txt 附件1 (任务分解表) and 附件2 2.1 (参保率)."""
import json

import pytest

from services.scoring.domain.progress import progress_table
from shared.config import ROOT
from shared.policy import PolicyError, load_policy, parse_policy

RAW = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
POLICY = load_policy(ROOT / "policies" / "dongan-2020.json")


def test_dongan_2020_has_sixteen_units_and_the_printed_standard():
    assert len(POLICY.townships) == 16
    assert POLICY.township("舜管局").task == 3935
    assert POLICY.standard_fen == 25000


def test_a_printed_total_the_rows_do_not_add_up_to_is_reported():
    # 附件1 prints 合计 578500; its sixteen rows add up to 578501.
    assert POLICY.declared_task_total == 578500 and POLICY.task_total == 578501
    (w,) = POLICY.warnings
    assert (w.code, w.file, w.data["task_total_printed"], w.data["task_total_rows"]) == (
        "TASK_TOTAL_MISMATCH", "dongan-2020.json", 578500, 578501)
    assert "578500" in w.message and "578501" in w.message


def test_a_consistent_table_loads_without_warnings():
    raw = dict(RAW, declared_task_total=578501)
    assert parse_policy(raw).warnings == ()


@pytest.mark.parametrize("change", [
    {"standard_fen": 250.0},
    {"townships": [{"name": "甲镇", "task": 0}]},
    {"window": {"opens": "2019-12-31", "closes": "2019-09-01"}},
])
def test_bad_policy_figures_are_refused(change):
    with pytest.raises(PolicyError):
        parse_policy(dict(RAW, **change))


def test_the_financing_standard_is_an_explicit_setting_left_unset_where_the_notice_prints_no_figure():
    """001 四: 按当年度城乡居民医保筹资标准(含个人缴费部分和财政补助部分)一次性足额缴纳 — the notice names the
    financing standard but prints no figure: the policy file says so with null, and nothing invents one."""
    assert "financing_standard_fen" in RAW["mid_year"] and RAW["mid_year"]["financing_standard_fen"] is None
    assert POLICY.financing_standard_fen is None
    assert parse_policy(dict(RAW, mid_year={"financing_standard_fen": 80000})).financing_standard_fen == 80000


@pytest.mark.parametrize("figure", [800.0, "80000", True, 24999])
def test_a_financing_standard_that_is_not_integer_fen_at_least_the_individual_standard_is_refused(figure):
    with pytest.raises(PolicyError):
        parse_policy(dict(RAW, mid_year={"financing_standard_fen": figure}))


def test_progress_ranks_by_rate_and_shows_every_township():
    table = progress_table(POLICY, {"舜管局": {"persons": 3935, "households": 1000},
                                    "白牙市镇": {"persons": 100000, "households": 30000}})
    assert len(table) == 16
    (r1, first), (r2, second) = table[0], table[1]
    assert (r1, first.township, first.rate_bp) == (1, "舜管局", 10000)
    assert (r2, second.township, second.rate_bp) == (2, "白牙市镇", 8916)  # 100000/112156 = 89.16 %
    zero_ranks = {rank for rank, row in table if row.enrolled_persons == 0}
    assert zero_ranks == {3}  # ties share a rank

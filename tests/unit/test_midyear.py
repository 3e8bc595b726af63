"""Mid-year enrolment decided from each county's policy file, never hard-coded per county.

Dong'an 2020 (001_93f5b63ac6b4a653.txt): 四 因……特殊情形(……新生儿未在28天内参保缴费……)……可以按当年度城乡居民
医保筹资标准(含个人缴费部分和财政补助部分)一次性足额缴纳基本医疗保险费,从缴费的下个月起享受医保待遇;
五 对于符合中途参保条件的人员(包括出生28天以内新生儿……),……应先行到乡镇(或社区)办理……参保缴费.
Wuming 2018 (002_9137bd928f251374.txt): 五(二) 每年7月1日至12月31日不再办理当年的城乡居民医保参保缴费业务
(出生未超过3个月的新生儿及困难、特殊人群除外); 五(三) 中断缴费及逾期缴费人员可于每年1月1日至6月30日办理当年的
城乡居民医保参保缴费业务.
"""
import dataclasses
from datetime import date

import pytest

from services.registry.domain import midyear
from shared.config import ROOT
from shared.errors import DomainError
from shared.policy import load_policy

DONGAN = load_policy(ROOT / "policies" / "dongan-2020.json")
WUMING = load_policy(ROOT / "policies" / "wuming-2018.json")
NAYONG = load_policy(ROOT / "policies" / "nayong-2017.json")


def test_dongan_newborn_within_28_days_enrols_at_the_township():
    d = midyear.decide(DONGAN, date(2019, 11, 28), birth=date(2019, 10, 31))  # 28 days old
    assert (d.allowed, d.code, d.pays) == (True, "NEWBORN_28_DAYS", "individual")
    assert "出生28天以内新生儿" in d.rule  # the document's wording, from the file


def test_dongan_newborn_after_28_days_is_a_special_case_paying_the_full_standard():
    assert not midyear.decide(DONGAN, date(2019, 11, 29), birth=date(2019, 10, 31)).allowed  # 29 days
    d = midyear.decide(DONGAN, date(2019, 11, 29), birth=date(2019, 10, 31), special_case="newborn_late")
    assert (d.allowed, d.pays, d.benefits_from, d.benefits_rule) == (True, "full_financing", date(2019, 12, 1),
                                                                      "next_month")
    assert "新生儿未在28天内参保缴费" in d.reason and "从缴费的下个月起享受医保待遇" in d.reason


@pytest.mark.parametrize("case", DONGAN.mid_year.special_cases)
def test_each_dongan_special_case_starts_benefits_the_month_after_payment(case):
    birth = date(2019, 1, 1) if case == "newborn_late" else None
    d = midyear.decide(DONGAN, date(2019, 12, 31), birth=birth, special_case=case)
    assert d.allowed and d.benefits_from == date(2020, 1, 1) and d.reason


def test_dongan_refuses_other_mid_year_enrolment_with_a_reason():
    d = midyear.decide(DONGAN, date(2020, 3, 1))
    assert (d.allowed, d.code) == (False, "MID_YEAR_NOT_ALLOWED") and "不得中途参保" in d.reason
    assert midyear.decide(DONGAN, date(2020, 3, 1), special_case="tourist").code == "UNKNOWN_SPECIAL_CASE"
    # Dong'an has no Jan-Jun late window: that is Wuming's rule
    assert midyear.decide(DONGAN, date(2020, 3, 1), hardship=True).code == "MID_YEAR_NOT_ALLOWED"


@pytest.mark.parametrize("on, birth, ok, code", [
    (date(2018, 6, 30), None, True, "LATE_WINDOW"),
    (date(2018, 7, 1), None, False, "MID_YEAR_CLOSED"),
    (date(2018, 9, 14), date(2018, 6, 15), True, "NEWBORN_3_MONTHS"),   # 2 months 30 days
    (date(2018, 9, 15), date(2018, 6, 15), True, "NEWBORN_3_MONTHS"),   # exactly 3 months: 未超过
    (date(2018, 9, 16), date(2018, 6, 15), False, "MID_YEAR_CLOSED"),   # past 3 months
    (date(2018, 11, 1), date(2018, 7, 1), False, "MID_YEAR_CLOSED"),    # 4 months
])
def test_wuming_windows_and_the_3_month_newborn_rule(on, birth, ok, code):
    d = midyear.decide(WUMING, on, birth=birth)
    assert (d.allowed, d.code) == (ok, code)


def test_wuming_refusal_gives_the_documents_reason_and_wording():
    d = midyear.decide(WUMING, date(2018, 11, 1), birth=date(2018, 7, 1))
    assert "每年7月1日至12月31日不再办理当年度参保缴费" in d.reason and "出生未超过3个月的新生儿" in d.reason
    assert "7月1日至12月31日不再办理当年的城乡居民医保参保缴费业务" in d.rule


def test_wuming_newborn_is_not_held_to_dongans_28_days():
    d = midyear.decide(WUMING, date(2018, 9, 1), birth=date(2018, 7, 1))  # 62 days: refused in Dong'an
    assert (d.allowed, d.code) == (True, "NEWBORN_3_MONTHS")
    assert d.benefits_from is None and d.benefits_rule is None  # the plan sets no start: not guessed


def test_wuming_hardship_groups_may_enrol_in_the_second_half_year_and_names_no_special_cases():
    assert midyear.decide(WUMING, date(2018, 10, 1), hardship=True).code == "HARDSHIP"
    assert midyear.decide(WUMING, date(2018, 10, 1), special_case="moved_in").code == "UNKNOWN_SPECIAL_CASE"


def test_a_policy_without_mid_year_rules_is_refused_naming_the_field():
    with pytest.raises(DomainError) as e:
        midyear.decide(NAYONG, date(2017, 3, 1))
    assert (e.value.code, e.value.details["field"]) == ("MID_YEAR_RULE_UNSET", "mid_year")


def test_a_newborn_where_the_policy_sets_no_age_limit_is_refused_naming_the_field():
    rules = dataclasses.replace(DONGAN.mid_year, newborn_within_days=None)
    policy = dataclasses.replace(DONGAN, mid_year=rules)
    with pytest.raises(DomainError) as e:
        midyear.decide(policy, date(2019, 11, 1), birth=date(2019, 10, 20))
    assert (e.value.code, e.value.details["field"]) == ("MID_YEAR_RULE_UNSET", "mid_year.newborn_within_days")
    assert "未配置" in e.value.message


def test_benefit_start_follows_the_payment_date():
    assert midyear.benefit_start("next_month", date(2020, 3, 31)) == date(2020, 4, 1)
    assert midyear.benefit_start("next_month", date(2020, 12, 5)) == date(2021, 1, 1)
    assert midyear.benefit_start(None, date(2020, 3, 31)) is None

"""Mid-year enrolment — 001_93f5b63ac6b4a653.txt 四/五 (Dong'an: 28 days, special cases pay the full
financing standard, benefits from the month after payment) and 002_9137bd928f251374.txt 三 (Wuming:
newborns under 3 months; Jan 1 - Jun 30 late window)."""
from datetime import date

import pytest

from services.registry.domain import midyear


def test_dongan_newborn_within_28_days_enrols_at_the_township():
    d = midyear.dongan(date(2019, 11, 28), birth=date(2019, 10, 31))  # 28 days old
    assert (d.allowed, d.code, d.pays) == (True, "NEWBORN_28_DAYS", "individual")


def test_dongan_newborn_after_28_days_is_a_special_case_paying_the_full_standard():
    assert not midyear.dongan(date(2019, 11, 29), birth=date(2019, 10, 31)).allowed  # 29 days, no case named
    d = midyear.dongan(date(2019, 11, 29), birth=date(2019, 10, 31), special_case="newborn_late")
    assert (d.allowed, d.pays, d.benefits_from) == (True, "full_financing", date(2019, 12, 1))
    assert "新生儿未在28天内参保缴费" in d.reason


@pytest.mark.parametrize("case", sorted(midyear.DONGAN_SPECIAL_CASES))
def test_each_dongan_special_case_starts_benefits_the_month_after_payment(case):
    birth = date(2019, 1, 1) if case == "newborn_late" else None
    d = midyear.dongan(date(2019, 12, 31), birth=birth, special_case=case)
    assert d.allowed and d.benefits_from == date(2020, 1, 1) and d.reason


def test_dongan_refuses_other_mid_year_enrolment_with_a_reason():
    d = midyear.dongan(date(2020, 3, 1))
    assert (d.allowed, d.code) == (False, "MID_YEAR_NOT_ALLOWED") and "不得中途参保" in d.reason
    assert midyear.dongan(date(2020, 3, 1), special_case="tourist").code == "UNKNOWN_SPECIAL_CASE"


@pytest.mark.parametrize("on, birth, ok, code", [
    (date(2018, 6, 30), None, True, "LATE_WINDOW"),
    (date(2018, 7, 1), None, False, "MID_YEAR_CLOSED"),
    (date(2018, 9, 14), date(2018, 6, 15), True, "NEWBORN_3_MONTHS"),   # 2 months 30 days
    (date(2018, 9, 15), date(2018, 6, 15), False, "MID_YEAR_CLOSED"),   # exactly 3 months
])
def test_wuming_windows_and_the_3_month_newborn_rule(on, birth, ok, code):
    d = midyear.wuming(on, birth=birth)
    assert (d.allowed, d.code) == (ok, code)


def test_wuming_hardship_groups_may_enrol_in_the_second_half_year():
    assert midyear.wuming(date(2018, 10, 1), hardship_or_special=True).code == "HARDSHIP"


def test_the_county_picks_its_rules_and_a_county_without_rules_is_told_so():
    assert midyear.decide("东安县", date(2020, 3, 1)).code == "MID_YEAR_NOT_ALLOWED"
    assert midyear.decide("武鸣区", date(2018, 3, 1)).code == "LATE_WINDOW"
    assert midyear.decide("某县", date(2018, 3, 1)).code == "NO_MID_YEAR_RULES"

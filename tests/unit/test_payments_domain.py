"""Quotes and orders — 001_93f5b63ac6b4a653.txt 三 (250元/人, 按年度一次性足额缴纳), 四 (集中参保缴费期
为2019年9月1日至12月31日; after it, mid-year enrolment at the financing standard) and 五 (the household
pays as a whole), in integer fen."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from services.payments.domain.model import Entitlement, MidYearApproval, Order, quote
from shared.clock import SHANGHAI
from shared.config import ROOT
from shared.errors import Conflict, DomainError, ValidationFailed
from shared.policy import load_policy

POLICY = load_policy(ROOT / "policies" / "dongan-2020.json")
HH = {"household_no": "H1", "year": 2020, "county": "431122", "township": "白牙市镇", "village": "五一村",
      "head_name": "甲", "members": [{"person_id": f"43112219700101{i:03d}X", "name": n} for i, n in enumerate("甲乙丙")]}


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def test_a_household_of_three_pays_three_times_the_standard():
    q = quote(HH, POLICY, at(2019, 10, 1, 9), already_paid=False)
    assert q.total_fen == 3 * 25000 == 75000
    assert all(isinstance(l.payable_fen, int) for l in q.lines)


@pytest.mark.parametrize("when, open_", [
    (at(2019, 9, 1, 0, 0), True),           # opens on Sep 1, Shanghai time
    (at(2019, 12, 31, 23, 59, 59), True),   # closes at the end of Dec 31
    (at(2020, 1, 1, 0, 0), False),
    (at(2019, 8, 31, 23, 59), False),
])
def test_the_window_is_shanghai_calendar_days_inclusive(when, open_):
    if open_:
        assert quote(HH, POLICY, when, False).total_fen == 75000
    else:
        with pytest.raises(DomainError) as e:
            quote(HH, POLICY, when, False)
        assert e.value.code == "WINDOW_CLOSED"


def test_the_window_is_judged_in_shanghai_not_utc():
    # 2019-12-31 16:30 UTC is already 2020-01-01 00:30 in Dong'an: closed; 15:59 UTC is 23:59: open.
    with pytest.raises(DomainError):
        quote(HH, POLICY, datetime(2019, 12, 31, 16, 30, tzinfo=timezone.utc), False)
    assert quote(HH, POLICY, datetime(2019, 12, 31, 15, 59, tzinfo=timezone.utc), False).total_fen == 75000


def test_a_paid_household_cannot_be_quoted_again():
    with pytest.raises(Conflict) as e:
        quote(HH, POLICY, at(2019, 10, 1), already_paid=True)
    assert e.value.code == "HOUSEHOLD_ALREADY_PAID"


def test_unknown_household_is_a_404_with_a_reason():
    with pytest.raises(DomainError) as e:
        quote(None, POLICY, at(2019, 10, 1), False)
    assert e.value.status == 404 and e.value.code == "HOUSEHOLD_UNKNOWN"


def test_notification_amount_must_equal_the_order_and_the_order_must_be_live():
    q = quote(HH, POLICY, at(2019, 10, 1, 9), False)
    o = Order.create(q, "bank-a", "mobile_app", at(2019, 10, 1, 9))
    o.check_notification("bank-a", 75000, at(2019, 10, 1, 9, 5))
    with pytest.raises(ValidationFailed) as e:
        o.check_notification("bank-a", 74999, at(2019, 10, 1, 9, 5))
    assert e.value.code == "AMOUNT_MISMATCH"
    with pytest.raises(DomainError) as e:
        o.check_notification("bank-b", 75000, at(2019, 10, 1, 9, 5))
    assert e.value.code == "ORDER_GATEWAY_MISMATCH"
    with pytest.raises(DomainError) as e:
        o.check_notification("bank-a", 75000, o.expires_at + timedelta(seconds=1))
    assert e.value.code == "ORDER_EXPIRED"


def test_unknown_channel_is_refused():
    q = quote(HH, POLICY, at(2019, 10, 1, 9), False)
    with pytest.raises(ValidationFailed):
        Order.create(q, "bank-a", "carrier_pigeon", at(2019, 10, 1, 9))


def test_an_open_duplicate_case_of_a_member_holds_the_whole_household():
    """001 五: the household pays as a whole (不得拆分参保); a member still enrolled in two places
    (多地重复参保) must be resolved by county staff before the household can be quoted."""
    held = HH["members"][1]["person_id"]
    with pytest.raises(Conflict) as e:
        quote(HH, POLICY, at(2019, 10, 1, 9), False, open_duplicates={held})
    assert e.value.code == "MEMBER_DUPLICATE_UNRESOLVED" and e.value.status == 409
    masked = held[:6] + "*" * 8 + held[-4:]
    assert masked in e.value.message and held not in e.value.message
    assert e.value.details["id_numbers"] == [masked] and held not in str(e.value.details)
    # someone else's case (not a member) does not hold this household
    assert quote(HH, POLICY, at(2019, 10, 1, 9), False, open_duplicates={"431122197001019999"}).total_fen == 75000


# ---- mid-year enrolment (中途参保) after the window ---------------------------------------------------

LATE = at(2020, 3, 2, 10)
SPECIAL = MidYearApproval("full_financing", "SPECIAL_CASE", "当年新迁入户口：按当年度筹资标准……")
FIGURE = replace(POLICY, financing_standard_fen=80000)  # a test figure: the notice prints none


def test_after_the_window_nobody_approved_is_window_closed_with_the_reason():
    """001 四: 未在规定缴费期内集中参保缴费的，原则上不得中途参保."""
    with pytest.raises(DomainError) as e:
        quote(HH, FIGURE, LATE, False, mid_year={})
    assert e.value.code == "WINDOW_CLOSED" and "不得中途参保" in e.value.message
    assert e.value.details["reason"] == "NO_MID_YEAR_APPROVAL"


def test_a_mid_year_quote_is_refused_while_the_financing_standard_is_unset():
    """001 四 names 当年度城乡居民医保筹资标准 but prints no figure: no guessed amount is charged."""
    assert POLICY.financing_standard_fen is None
    with pytest.raises(DomainError) as e:
        quote(HH, POLICY, LATE, False, mid_year={HH["members"][2]["person_id"]: SPECIAL})
    assert e.value.code == "FINANCING_STANDARD_UNSET" and "筹资标准" in e.value.message


def test_after_the_window_only_approved_members_pay_the_full_financing_standard_without_subsidy():
    """001 四: 可以按当年度城乡居民医保筹资标准(含个人缴费部分和财政补助部分)一次性足额缴纳 — the subsidy
    part is inside what they pay, so a hardship identity (001 六) deducts nothing."""
    newcomer = HH["members"][2]["person_id"]
    poor = Entitlement("建档立卡贫困人口", 13000, False, at(2019, 9, 1).date())
    q = quote(HH, FIGURE, LATE, False, {newcomer: poor}, mid_year={newcomer: SPECIAL})
    assert q.mid_year and [(l.person_id, l.standard_fen, l.subsidy_fen) for l in q.lines] == [(newcomer, 80000, 0)]
    assert q.total_fen == 80000


def test_an_individual_rate_approval_pays_the_individual_standard_less_its_subsidy():
    """midyear.py: a newborn within 28 days enrols for the current year at the individual standard."""
    baby = HH["members"][1]["person_id"]
    poor = Entitlement("农村低保对象", 13000, False, at(2019, 9, 1).date())
    newborn = MidYearApproval("individual", "NEWBORN_28_DAYS", "出生28天以内新生儿")
    q = quote(HH, POLICY, LATE, False, {baby: poor}, mid_year={baby: newborn})  # no financing figure needed
    assert [(l.standard_fen, l.subsidy_fen, l.payable_fen) for l in q.lines] == [(25000, 13000, 12000)]


@pytest.mark.parametrize("when", [at(2019, 8, 31, 12), at(2021, 1, 1, 0, 0)])
def test_mid_year_quotes_exist_only_between_the_window_and_the_end_of_the_policy_year(when):
    with pytest.raises(DomainError) as e:
        quote(HH, FIGURE, when, False, mid_year={HH["members"][0]["person_id"]: SPECIAL})
    assert e.value.code == "WINDOW_CLOSED"


def test_inside_the_window_an_approval_changes_nothing():
    q = quote(HH, FIGURE, at(2019, 12, 31, 23, 59), False, mid_year={HH["members"][0]["person_id"]: SPECIAL})
    assert not q.mid_year and q.total_fen == 75000

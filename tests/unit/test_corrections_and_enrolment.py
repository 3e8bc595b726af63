"""Corrections and enrolment status.

- 001_93f5b63ac6b4a653.txt 七(一): 县医保局要在3个工作日内完成医保系统信息修改 (3 working days, counting the
  National Day holiday and the make-up workdays 调休).
- 001 七(二): 税务局3个工作日内完成缴款审核……由县医保局确认完成参保登记和缴费登记 (paid → confirmed);
  在办理了缴费登记后，不允许办理异动 (locked after payment registration).
"""
from datetime import date, datetime

import pytest

from services.registry.domain.corrections import Correction, due
from services.registry.domain.model import Household
from shared.clock import SHANGHAI
from shared.config import ROOT
from shared.errors import Conflict, DomainError, ValidationFailed
from shared.policy import load_policy
from shared.workdays import add_working_days
from tests.unit.test_household import household
from tools.ids import make_id

POLICY = load_policy(ROOT / "policies" / "dongan-2020.json")


def at(*a):
    return datetime(*a, tzinfo=SHANGHAI)


def test_three_working_days_skip_the_national_day_holiday():
    # filed Monday 2019-09-30; Oct 1-7 is the holiday; Oct 8, 9, 10 are the three working days
    assert due(at(2019, 9, 30, 16, 0)) == at(2019, 10, 10, 23, 59, 59, 999999)


def test_make_up_workdays_count_as_working_days():
    # Saturday 2019-10-12 was a make-up workday (调休): filed Thursday Oct 10 → Oct 11, 12, 14
    assert add_working_days(date(2019, 10, 10), 3) == date(2019, 10, 14)
    # an ordinary weekend does not count: filed Thursday Nov 14 → Nov 15, 18, 19
    assert add_working_days(date(2019, 11, 14), 3) == date(2019, 11, 19)


def test_a_correction_is_overdue_only_after_its_third_working_day():
    hh = Household.register(POLICY, household())
    c = Correction.file("C1", hh, hh.members[1].person_id, {"name": "乙改"}, "姓名错字", "baiya", at(2019, 9, 30, 16))
    assert not c.is_overdue(at(2019, 10, 10, 23, 0))
    assert c.is_overdue(at(2019, 10, 11, 0, 1))
    c.decide(True, "county", at(2019, 10, 11, 9), None)
    assert not c.is_overdue(at(2019, 10, 20))
    with pytest.raises(Conflict):
        c.decide(False, "county", at(2019, 10, 12), None)


def test_corrections_name_allowed_fields_of_a_member_of_the_household():
    hh = Household.register(POLICY, household())
    with pytest.raises(ValidationFailed) as e:
        Correction.file("C2", hh, None, {"salary": 1}, "x", "baiya", at(2019, 10, 8))
    assert e.value.code == "CORRECTION_FIELDS"
    with pytest.raises(ValidationFailed) as e:
        Correction.file("C3", hh, "43112219990101001X", {"name": "x"}, "x", "baiya", at(2019, 10, 8))
    assert e.value.code == "PERSON_NOT_IN_HOUSEHOLD"


def paid_household():
    hh = Household.register(POLICY, household())
    hh.events.clear()
    hh.record_payment("P1", [m.person_id for m in hh.members], "2019-11-01T10:00:00+08:00")
    return hh


def test_audit_confirms_a_paid_household_once():
    hh = paid_household()
    assert hh.record_audit("P1", "2019-11-04T10:00:00+08:00") is True
    assert {m.status for m in hh.members} == {"confirmed"} and hh.enrolment["status"] == "confirmed"
    assert hh.record_audit("P1", "2019-11-04T10:00:00+08:00") is False
    assert [e.payload["status"] for e in hh.events] == ["paid", "confirmed"]
    with pytest.raises(Conflict):
        hh.record_audit("P-OTHER", "2019-11-04T10:00:00+08:00")


def test_a_reversal_revokes_the_enrolment_and_the_household_may_pay_again():
    hh = paid_household()
    assert hh.locked
    assert hh.record_reversal("P1", "gateway_reversal", "2019-11-02T10:00:00+08:00") is True
    assert not hh.locked and {m.status for m in hh.members} == {"registered"}
    assert hh.record_reversal("P1", "gateway_reversal", "2019-11-02T10:00:00+08:00") is False
    assert hh.record_payment("P1", [m.person_id for m in hh.members], "2019-11-03T10:00:00+08:00") is False
    assert hh.record_payment("P2", [m.person_id for m in hh.members], "2019-11-03T10:00:00+08:00") is True
    assert [e.payload["status"] for e in hh.events] == ["paid", "revoked", "paid"]


def test_the_lock_is_per_policy_year_so_the_next_year_still_changes():
    # 001 七(二): after payment registration for 2020 no 异动 touches 2020; the 2021 record is its own
    import json
    from shared.policy import parse_policy
    raw = json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8"))
    villages = {t.name: list(t.villages) for t in POLICY.townships}
    next_year = parse_policy(dict(raw, year=2021, window={"opens": "2020-09-01", "closes": "2020-12-31"}), villages)
    this = paid_household()
    following = Household.register(next_year, household(year=2021))
    baby = {"id_number": make_id(date(2020, 10, 1), 5, "F"), "name": "新生儿", "relation": "子女"}
    newcomer = {"id_number": make_id(date(1990, 5, 5), 7, "M"), "name": "迁入", "relation": "其他"}
    with pytest.raises(Conflict) as e:
        this.add_member(newcomer, "move_in")
    assert e.value.code == "LOCKED_AFTER_PAYMENT"
    following.add_member(newcomer, "move_in")
    assert len(following.members) == 4


def test_a_newborn_joins_a_household_that_paid_unpaid_and_the_paid_members_stay_paid():
    # 001 四: 出生28天以内新生儿……应先行到乡镇办理当年度参保缴费 — the birth is recorded after the
    # household's payment registration; the newborn awaits mid-year enrolment, nobody else changes
    this = paid_household()
    baby = {"id_number": make_id(date(2020, 10, 1), 5, "F"), "name": "新生儿", "relation": "子女"}
    this.add_member(baby, "birth")
    assert [m.status for m in this.members] == ["paid", "paid", "paid", "registered"]
    assert this.enrolment_status == "paid" and this.locked
    assert [m.name for m in this.unpaid_members] == ["新生儿"]  # the township's mid-year list


def test_a_mid_year_payment_enrols_only_its_approved_members():
    """001 四: after the window only the approved special cases pay (一次性足额缴纳); the others
    are not expected to pay, so they are not listed as left unpaid by the order."""
    hh = Household.register(POLICY, household())
    hh.events.clear()
    newcomer = hh.members[2].person_id
    assert hh.record_payment("P-MID", [newcomer], "2020-03-02T10:00:00+08:00", {newcomer}) is True
    assert [m.status for m in hh.members] == ["registered", "registered", "paid"] and hh.locked
    assert hh.enrolment["mid_year"] is True and hh.unpaid_members == [] and not hh.enrolment.get("unpaid")
    assert hh.events[-1].payload["person_ids"] == [newcomer]
    assert hh.record_audit("P-MID", "2020-03-04T10:00:00+08:00")
    assert [m.status for m in hh.members] == ["registered", "registered", "confirmed"]
    assert hh.events[-1].payload["person_ids"] == [newcomer]


def test_a_mid_year_decision_is_recorded_only_after_the_window_and_within_the_year():
    from services.registry.domain.midyear import check_recordable
    check_recordable(2020, date(2019, 12, 31), date(2020, 1, 1), "registered")
    for on, status, code in [(date(2019, 12, 31), "registered", "MID_YEAR_NOT_NEEDED"),
                             (date(2021, 1, 1), "registered", "YEAR_ENDED"),
                             (date(2020, 3, 1), "paid", "ALREADY_ENROLLED")]:
        with pytest.raises(DomainError) as e:
            check_recordable(2020, date(2019, 12, 31), on, status)
        assert e.value.code == code
    with pytest.raises(Conflict) as e:  # one payment per household and year
        check_recordable(2020, date(2019, 12, 31), date(2020, 3, 1), "registered", household_paid=True)
    assert e.value.code == "HOUSEHOLD_ALREADY_PAID"
    # a member who joined after the household's order (a newborn) enrols mid-year, in the window too
    check_recordable(2020, date(2019, 12, 31), date(2019, 11, 5), "registered", household_paid=True, left_unpaid=True)


def test_an_approved_correction_is_applied_once_and_keeps_one_head():
    hh = Household.register(POLICY, household())
    hh.events.clear()
    pid = hh.members[1].person_id
    assert hh.apply_correction(pid, {"name": "更正"}, "错字", "C1") is True
    assert hh.apply_correction(pid, {"name": "更正"}, "错字", "C1") is False  # a retry or a second approval
    assert [e.type for e in hh.events] == ["registry.household.changed"] and hh.corrections_applied == ["C1"]
    with pytest.raises(ValidationFailed) as e:  # a head corrected away would leave the household without one
        hh.apply_correction(hh.members[0].person_id, {"relation": "配偶"}, "关系错误", "C2")
    assert e.value.code == "HEAD_REQUIRED"

"""Households for a policy year — 001_93f5b63ac6b4a653.txt 五: 以户为单位…同一户籍家庭人员不得拆分参保、
不得选择性参保; the receipt names the head (户主)."""
from datetime import date

import pytest

from services.registry.domain.model import Household
from shared.errors import Conflict, ValidationFailed
from shared.policy import load_policy
from shared.config import ROOT
from shared.events import validate_payload
from tools.ids import make_id

POLICY = load_policy(ROOT / "policies" / "dongan-2020.json")


def household(**over):
    data = {"household_no": "H0001", "year": 2020, "township": "白牙市镇", "village": "五一村", "head_phone": None,
            "members": [
                {"id_number": make_id(date(1970, 1, 1), 1, "M"), "name": "甲", "relation": "户主"},
                {"id_number": make_id(date(1972, 2, 2), 2, "F"), "name": "乙", "relation": "配偶"},
                {"id_number": make_id(date(2000, 3, 3), 3, "M"), "name": "丙", "relation": "子女"}]}
    data.update(over)
    return data


def test_registering_records_one_event_with_every_member():
    hh = Household.register(POLICY, household())
    assert hh.head.name == "甲"
    [ev] = hh.events
    assert ev.type == "registry.household.registered"
    assert len(ev.payload["members"]) == 3 and ev.payload["county"] == "东安县"
    validate_payload(ev.type, ev.payload)  # the bulk import relies on this (it skips re-validation)


@pytest.mark.parametrize("over, code", [
    ({"township": "不存在镇"}, "UNKNOWN_TOWNSHIP"),
    ({"village": " "}, "UNKNOWN_VILLAGE"),
    ({"village": "花桥村"}, "UNKNOWN_VILLAGE"),  # a village of another township
    ({"year": 2021}, "YEAR_NOT_OPEN"),
])
def test_bad_places_and_years_are_refused(over, code):
    with pytest.raises(ValidationFailed) as e:
        Household.register(POLICY, household(**over))
    assert e.value.code == code


def test_a_household_needs_exactly_one_head():
    data = household()
    data["members"][0]["relation"] = "其他"
    with pytest.raises(ValidationFailed) as e:
        Household.register(POLICY, data)
    assert e.value.code == "HEAD_REQUIRED"


def test_the_same_person_twice_in_one_household_is_refused():
    data = household()
    data["members"][2]["id_number"] = data["members"][1]["id_number"]
    with pytest.raises(ValidationFailed) as e:
        Household.register(POLICY, data)
    assert e.value.code == "DUPLICATE_IN_HOUSEHOLD"


def test_payment_marks_the_whole_household_and_is_idempotent():
    hh = Household.register(POLICY, household())
    hh.events.clear()
    ids = [m.person_id for m in hh.members]
    assert hh.record_payment("P1", ids, "2019-11-01T10:00:00+08:00") is True
    assert {m.status for m in hh.members} == {"paid"}
    assert hh.events[0].payload["person_ids"] == ids
    assert hh.record_payment("P1", ids, "2019-11-01T10:00:00+08:00") is False  # redelivery: no second event
    assert len(hh.events) == 1


def test_the_order_fixes_who_is_paid_for_a_member_born_since_stays_unpaid_and_is_listed():
    """The money is taken: a birth while the order was open never makes the payment refused
    (it was SPLIT_HOUSEHOLD, dead-lettered); the newborn is left for mid-year enrolment (001 四)."""
    hh = Household.register(POLICY, household())
    hh.events.clear()
    ordered = [m.person_id for m in hh.members]
    baby = hh.add_member({"id_number": make_id(date(2019, 10, 20), 5, "F"), "name": "新生儿", "relation": "子女"},
                         "birth")
    hh.events.clear()
    assert hh.record_payment("P1", ordered, "2019-11-01T10:00:00+08:00") is True
    assert [m.status for m in hh.members] == ["paid", "paid", "paid", "registered"] and hh.locked
    assert hh.unpaid_members == [baby]
    assert hh.enrolment["unpaid"] == [{"person_id": baby.person_id, "reason": "joined_after_order"}]
    [ev] = hh.events
    assert ev.payload["person_ids"] == ordered and not hh.enrolment.get("review")
    validate_payload(ev.type, ev.payload)
    assert hh.record_audit("P1", "2019-11-04T10:00:00+08:00")
    assert [m.status for m in hh.members] == ["confirmed", "confirmed", "confirmed", "registered"]


def test_a_person_paid_for_who_left_since_the_order_is_recorded_for_staff():
    hh = Household.register(POLICY, household())
    ordered = [m.person_id for m in hh.members]
    hh.remove_member(ordered[2], "death")
    hh.events.clear()
    assert hh.record_payment("P1", ordered, "2019-11-01T10:00:00+08:00") is True
    assert [m.status for m in hh.members] == ["paid", "paid"] and hh.enrolment["review"] is True
    assert hh.enrolment["paid_not_members"] == [{"person_id": ordered[2], "reason": "left_after_order"}]
    assert hh.events[-1].payload["person_ids"] == ordered[:2]


def test_a_household_merged_away_since_its_order_records_the_payment_for_staff():
    hh = Household.register(POLICY, household())
    target = Household.register(POLICY, household(household_no="H0002", members=[
        {"id_number": make_id(date(1950, 1, 1), 9, "M"), "name": "丁", "relation": "户主"}]))
    ordered = [m.person_id for m in hh.members]
    target.merge(hh)
    assert hh.merged_into == "H0002" and [m.relation for m in hh.merged_members] == ["户主", "配偶", "子女"]
    assert hh.record_payment("P1", ordered, "2019-11-01T10:00:00+08:00") is True
    assert hh.enrolment["review"] is True and len(hh.enrolment["paid_not_members"]) == 3
    assert {p["reason"] for p in hh.enrolment["paid_not_members"]} == {"merged_away"}


def test_enrolment_moves_only_along_its_transitions():
    from services.registry.domain.model import ENROLMENT
    assert ENROLMENT.can("registered", "paid") and ENROLMENT.can("paid", "confirmed")
    assert ENROLMENT.can("confirmed", "revoked") and ENROLMENT.can("revoked", "paid")
    assert not ENROLMENT.can("revoked", "confirmed") and not ENROLMENT.can("registered", "confirmed")
    hh = Household.register(POLICY, household())
    ids = [m.person_id for m in hh.members]
    hh.record_payment("P1", ids, "2019-11-01T10:00:00+08:00")
    hh.record_reversal("P1", "gateway_reversal", "2019-11-02T10:00:00+08:00")
    assert hh.record_audit("P1", "2019-11-04T10:00:00+08:00") is False  # an audit never undoes a reversal
    assert hh.enrolment["status"] == "revoked" and {m.status for m in hh.members} == {"registered"}


def test_a_second_order_for_a_paid_household_is_a_conflict():
    hh = Household.register(POLICY, household())
    ids = [m.person_id for m in hh.members]
    hh.record_payment("P1", ids, "2019-11-01T10:00:00+08:00")
    with pytest.raises(Conflict):
        hh.record_payment("P2", ids, "2019-11-02T10:00:00+08:00")

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


def test_payment_for_part_of_the_household_is_refused():
    hh = Household.register(POLICY, household())
    with pytest.raises(ValidationFailed) as e:
        hh.record_payment("P1", [hh.members[0].person_id], "2019-11-01T10:00:00+08:00")
    assert e.value.code == "SPLIT_HOUSEHOLD"


def test_a_second_order_for_a_paid_household_is_a_conflict():
    hh = Household.register(POLICY, household())
    ids = [m.person_id for m in hh.members]
    hh.record_payment("P1", ids, "2019-11-01T10:00:00+08:00")
    with pytest.raises(Conflict):
        hh.record_payment("P2", ids, "2019-11-02T10:00:00+08:00")

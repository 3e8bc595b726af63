"""Supplementary payments (补缴) for members who joined a household after its payment, as pure
domain rules. 001_93f5b63ac6b4a653.txt 四: 出生28天以内新生儿……应先行到乡镇办理当年度参保缴费 (the
individual standard, 三: 250元); 五: the household's payment covers the members its order named."""
from datetime import date, datetime

import pytest

from services.payments.domain.model import (Entitlement, MidYearApproval, covered_persons, quote, supplement_key,
                                            supplement_slot)
from services.registry.domain.model import Household
from shared.clock import SHANGHAI
from shared.config import ROOT
from shared.errors import Conflict, DomainError
from shared.events import validate_payload
from shared.policy import load_policy
from tools.ids import make_id

POLICY = load_policy(ROOT / "policies" / "dongan-2020.json")
IDS = [f"43112219700101{i:03d}X" for i in range(4)]
HH = {"household_no": "H1", "year": 2020, "county": "431122", "township": "白牙市镇", "village": "五一村",
      "head_name": "甲", "members": [{"person_id": p, "name": n} for p, n in zip(IDS, "甲乙丙丁")]}
NEWBORN = MidYearApproval("individual", "NEWBORN_28_DAYS", "出生28天以内新生儿")
IN_WINDOW, LATE, NEXT_YEAR = (datetime(2019, 11, 15, tzinfo=SHANGHAI), datetime(2020, 3, 2, tzinfo=SHANGHAI),
                              datetime(2021, 1, 2, tzinfo=SHANGHAI))


def test_a_paid_household_is_quoted_for_its_approved_unpaid_member_alone_at_the_individual_standard():
    q = quote(HH, POLICY, IN_WINDOW, True, {IDS[3]: Entitlement("registered_poor", 13000, False, date(2019, 1, 1))},
              mid_year={IDS[3]: NEWBORN}, paid_ids=IDS[:3])
    assert (q.supplement, q.mid_year, [l.person_id for l in q.lines]) == (True, True, [IDS[3]])
    assert (q.standard_total_fen, q.total_fen) == (25000, 12000)  # 六: the newborn's identity subsidy applies
    assert quote(HH, POLICY, LATE, True, mid_year={IDS[3]: NEWBORN}, paid_ids=IDS[:3]).total_fen == 25000


@pytest.mark.parametrize("paid_ids, approvals, details", [
    (None, {IDS[3]: NEWBORN}, {"household_no": "H1"}),  # everyone paid (the old call)
    (IDS[:3], {}, {"household_no": "H1", "unpaid_members": 1, "reason": "NO_MID_YEAR_APPROVAL"}),
    (IDS, {IDS[3]: NEWBORN}, {"household_no": "H1"}),  # the approved member paid already
])
def test_nobody_approved_and_unpaid_is_still_household_already_paid(paid_ids, approvals, details):
    with pytest.raises(Conflict) as e:
        quote(HH, POLICY, IN_WINDOW, True, mid_year=approvals, paid_ids=paid_ids)
    assert (e.value.code, e.value.details) == ("HOUSEHOLD_ALREADY_PAID", details)


def test_a_supplement_after_the_policy_year_or_at_an_unset_financing_standard_is_refused():
    with pytest.raises(DomainError) as e:
        quote(HH, POLICY, NEXT_YEAR, True, mid_year={IDS[3]: NEWBORN}, paid_ids=IDS[:3])
    assert e.value.code == "WINDOW_CLOSED"
    moved_in = MidYearApproval("full_financing", "SPECIAL_CASE", "当年新迁入户口")
    with pytest.raises(DomainError) as e:
        quote(HH, POLICY, LATE, True, mid_year={IDS[3]: moved_in}, paid_ids=IDS[:3])
    assert e.value.code == "FINANCING_STANDARD_UNSET"


def test_only_the_charged_members_open_duplicate_case_holds_a_supplement():
    assert quote(HH, POLICY, IN_WINDOW, True, mid_year={IDS[3]: NEWBORN}, paid_ids=IDS[:3],
                 open_duplicates={IDS[0]}).total_fen == 25000
    with pytest.raises(Conflict) as e:
        quote(HH, POLICY, IN_WINDOW, True, mid_year={IDS[3]: NEWBORN}, paid_ids=IDS[:3], open_duplicates={IDS[3]})
    assert e.value.code == "MEMBER_DUPLICATE_UNRESOLVED"


def test_payment_ids_and_slots():
    assert supplement_key(2020, "H1", 1) == "2020:H1" and supplement_key(2020, "H1", 2) == "2020:H1:2"
    standing = {"order_no": "P1", "person_ids": [IDS[3]], "status": "confirmed", "supplement": True}
    assert supplement_slot(standing, "P1", [IDS[3]]) == "ours"
    assert supplement_slot(standing, "P2", [IDS[3]]) == "taken"  # the newborn is paid for: an overpayment
    assert supplement_slot({**standing, "status": "reversed"}, "P2", [IDS[3]]) == "other"  # went back: pay again
    assert supplement_slot(standing, "P2", [IDS[2]]) == "other"
    first = {"order_no": "P0", "person_ids": IDS[:3], "status": "confirmed"}
    assert covered_persons([first, {**standing, "status": "reversed"}]) == set(IDS[:3])
    assert covered_persons([first, standing]) == set(IDS)


# ---- registry: the supplement enrols, confirms and revokes its members alone -------------------

def paid_household_with_newborn():
    members = [{"id_number": make_id(date(1970, 1, 1), 1, "M"), "name": "甲", "relation": "户主"},
               {"id_number": make_id(date(1972, 2, 2), 2, "F"), "name": "乙", "relation": "配偶"}]
    hh = Household.register(POLICY, {"household_no": "H0001", "year": 2020, "township": "白牙市镇",
                                     "village": "五一村", "head_phone": None, "members": members})
    ordered = [m.person_id for m in hh.members]
    baby = hh.add_member({"id_number": make_id(date(2019, 11, 10), 5, "F"), "name": "丙", "relation": "子女"}, "birth")
    assert hh.record_payment("P-1", ordered, "2019-11-15T10:00:00+08:00")
    hh.events.clear()
    return hh, baby.person_id


def test_a_supplement_enrols_its_member_alone_once_and_takes_them_off_the_unpaid_list():
    hh, baby = paid_household_with_newborn()
    assert [m.person_id for m in hh.unpaid_members] == [baby]
    assert hh.record_supplement("P-2", [baby], "2019-11-20T10:00:00+08:00")
    assert [m.status for m in hh.members] == ["paid", "paid", "paid"] and "unpaid" not in hh.enrolment
    assert (hh.enrolment["status"], hh.enrolment["order_no"]) == ("paid", "P-1")
    [ev] = hh.events
    assert (ev.payload["person_ids"], ev.payload["order_no"], ev.payload["supplement"]) == ([baby], "P-2", True)
    validate_payload(ev.type, ev.payload)
    assert not hh.record_supplement("P-2", [baby], "2019-11-20T10:00:00+08:00")  # a redelivery
    assert hh.record_supplement_audit("P-2", "2019-11-21") is True
    assert [m.status for m in hh.members] == ["paid", "paid", "confirmed"]
    assert hh.record_supplement_audit("P-9", "2019-11-21") is None  # not here yet: the consumer retries


def test_a_supplement_reversal_revokes_its_member_alone_and_lists_them_again():
    hh, baby = paid_household_with_newborn()
    hh.record_supplement("P-2", [baby], "2019-11-20T10:00:00+08:00")
    hh.events.clear()
    assert hh.record_supplement_reversal("P-2", "gateway_reversal", "2019-11-22") is True
    assert [m.status for m in hh.members] == ["paid", "paid", "registered"]
    assert hh.enrolment["status"] == "paid" and [m.person_id for m in hh.unpaid_members] == [baby]
    [ev] = hh.events
    assert (ev.payload["status"], ev.payload["person_ids"]) == ("revoked", [baby])
    assert hh.record_supplement_reversal("P-2", "gateway_reversal", "2019-11-22") is False
    assert hh.record_supplement("P-3", [baby], "2019-11-25T10:00:00+08:00")  # paid again
    assert hh.members[2].status == "paid" and "unpaid" not in hh.enrolment


def test_a_supplement_arriving_before_the_household_payment_is_kept_by_it():
    hh, baby = paid_household_with_newborn()
    fresh = Household(hh.household_no, hh.year, hh.county, hh.township, hh.village, None,
                      [type(m)(**{**vars(m), "status": "registered"}) for m in hh.members])
    assert fresh.record_supplement("P-2", [baby], "2019-11-20T10:00:00+08:00")
    assert fresh.record_payment("P-1", [m.person_id for m in fresh.members[:2]], "2019-11-15T10:00:00+08:00")
    assert [m.status for m in fresh.members] == ["paid", "paid", "paid"] and "unpaid" not in fresh.enrolment

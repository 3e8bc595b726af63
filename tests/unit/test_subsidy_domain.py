"""Subsidy rules, identities and entitlements (no infrastructure).

Rules: 001_93f5b63ac6b4a653.txt 六 (Dong'an 2020: standard 250 yuan; 建档立卡 and 低保 pay 120, subsidy
130; 特困 fully covered; 持证残疾人 "按相关文件规定标准资助" without a figure; new cases after
2019-10-01 全额缴费、先缴后补; 依据缴费人当前身份进行征收; 缴费后……不再补退); 002_9137bd928f251374.txt
六(二)4 (Wuming also names 五保户、独生子女户、双女结扎户).
"""
import json
from datetime import date, datetime, timedelta

import pytest

from services.subsidy.domain.entitlement import entitlement_from, frozen_entitlement, reimbursement_due
from services.subsidy.domain.identity import PersonIdentities, Rejected, parse_update
from services.subsidy.domain.rules import RulesError, parse_subsidy_rules
from shared.clock import SHANGHAI
from shared.config import ROOT
from tools.ids import make_id

RULES = parse_subsidy_rules(json.loads((ROOT / "policies" / "dongan-2020.json").read_text(encoding="utf-8")))
PID = make_id(date(1970, 3, 4), 11, "F")
T0 = datetime(2019, 9, 20, 10, 0, tzinfo=SHANGHAI)

# A Wuming-like rule set (amounts invented for the test; 002 names the groups, not the figures).
WUMING = parse_subsidy_rules({"year": 2018, "standard_fen": 18000, "subsidy": {
    "new_hardship_after": "2017-10-01",
    "departments": {"civil": "民政局", "health": "卫计局"},
    "categories": [
        {"code": "wubao", "full_coverage": True, "department": "civil", "sources": ["civil_affairs"]},
        {"code": "only_child", "subsidy_fen": 5000, "department": "health", "sources": ["health_commission"]},
        {"code": "two_daughters", "subsidy_fen": 9000, "department": "health", "sources": ["health_commission"]},
        {"code": "certified_disabled", "subsidy_fen": None, "sources": ["disabled_federation"]}]}})


def update(**kw):
    u = {"id_number": PID, "category": "dibao_rural", "action": "grant", "effective_date": "2019-01-01",
         "source_system": "civil_affairs", "source_ref": "MZ-0001"}
    u.update(kw)
    return u


def ent(granted, rules=RULES):
    return entitlement_from(rules, PID, granted)


def test_dongan_2020_amounts():
    """001 六: 个人缴纳120元，财政兜底130元 (建档立卡); 低保 资助130元，个人缴纳120元; 特困 全额资助."""
    old = date(2019, 1, 1)
    none = ent({})
    assert (none.category, none.subsidy_fen, none.payable_fen) == (None, 0, 25000)
    for cat in ("registered_poor", "dibao_urban", "dibao_rural"):
        e = ent({cat: old})
        assert (e.subsidy_fen, e.payable_fen, e.full_coverage) == (13000, 12000, False)
    tk = ent({"extreme_poverty": old})
    assert (tk.subsidy_fen, tk.payable_fen, tk.full_coverage, tk.department) == (25000, 0, True, "medical_assistance")
    assert ent({"registered_poor": old}).department == "poverty_office"


def test_certified_disabled_has_no_invented_amount():
    """001 六: 持证残疾人按相关文件规定标准资助 — no figure in the notice: reported, charged the standard."""
    e = ent({"certified_disabled": date(2019, 1, 1)})
    assert (e.category, e.configured, e.subsidy_fen, e.payable_fen) == ("certified_disabled", False, 0, 25000)
    assert "未配置" in e.reason


def test_most_favourable_identity_counts():
    old = date(2019, 1, 1)
    assert ent({"dibao_rural": old, "extreme_poverty": old}).category == "extreme_poverty"
    assert ent({"certified_disabled": old, "registered_poor": old}).category == "registered_poor"
    assert WUMING.best(["only_child", "two_daughters"]).code == "two_daughters"
    assert WUMING.best(["two_daughters", "wubao", "certified_disabled"]).code == "wubao"
    w = entitlement_from(WUMING, PID, {"only_child": date(2017, 1, 1), "two_daughters": date(2017, 5, 1)})
    assert (w.subsidy_fen, w.payable_fen, w.department) == (9000, 9000, "health")


def test_new_hardship_after_the_cutoff_pays_in_full_and_is_reimbursed():
    """001 六: 对于2019年10月1日之后新增的困难群众……全额缴费、先缴后补 (the cutoff day itself is not "after")."""
    on_cutoff = ent({"dibao_rural": date(2019, 10, 1)})
    assert (on_cutoff.subsidy_fen, on_cutoff.reimbursable_fen) == (13000, 0)
    after = ent({"dibao_rural": date(2019, 10, 2)})
    assert (after.category, after.subsidy_fen, after.payable_fen, after.reimbursable_fen) == ("dibao_rural", 0, 25000, 13000)
    assert "先缴后补" in after.reason
    due = reimbursement_due(RULES, {"dibao_rural": date(2019, 10, 2)}, charged_subsidy_fen=0)
    assert (due.amount_fen, due.category.department) == (13000, "medical_assistance")
    assert reimbursement_due(RULES, {"dibao_rural": date(2019, 10, 1)}, charged_subsidy_fen=0) is None
    # 特困 after the cutoff for someone already charged as 低保: the rest of the contribution
    assert reimbursement_due(RULES, {"dibao_rural": date(2019, 1, 1), "extreme_poverty": date(2019, 11, 1)},
                             charged_subsidy_fen=13000).amount_fen == 12000
    # an identity of the following year belongs to the following year's rules
    assert reimbursement_due(RULES, {"dibao_rural": date(2021, 1, 1)}, charged_subsidy_fen=0) is None


def test_identity_at_payment_time_counts_and_the_paid_year_is_frozen():
    """001 六: 依据缴费人当前身份进行征收……缴费后，特殊身份标识发生变化的，不再补退."""
    p = PersonIdentities(PID)
    p.apply(parse_update(update(effective_date="2019-09-01"), RULES), T0)
    paid_at = T0 + timedelta(days=1)
    at_payment = ent(p.granted_at(paid_at))
    assert at_payment.subsidy_fen == 13000
    freeze = {"id_number": PID, "year": 2020, "paid_at": paid_at, "category": "dibao_rural",
              "department": "medical_assistance", "standard_fen": 25000, "subsidy_fen": 13000, "payable_fen": 12000}
    p.apply(parse_update(update(action="revoke", effective_date="2019-11-01", source_ref="MZ-0002"), RULES),
            paid_at + timedelta(days=40))
    assert ent(p.granted_at(paid_at + timedelta(days=41))).category is None  # the identity is gone today …
    frozen = frozen_entitlement(RULES, freeze, None)
    assert (frozen.frozen, frozen.subsidy_fen, frozen.payable_fen) == (True, 13000, 12000)  # … the paid year is not
    assert "不再补退" in frozen.reason


def test_an_identity_is_in_force_from_its_effective_day_and_once_recorded():
    p = PersonIdentities(PID)
    p.apply(parse_update(update(effective_date="2019-11-01"), RULES), T0)
    assert p.granted_at(datetime(2019, 10, 31, 23, 59, tzinfo=SHANGHAI)) == {}
    assert p.granted_at(datetime(2019, 11, 1, 0, 0, tzinfo=SHANGHAI)) == {"dibao_rural": date(2019, 11, 1)}
    assert p.granted_at(T0 - timedelta(seconds=1)) == {}  # not known yet then


@pytest.mark.parametrize("change, code", [
    ({"category": "wubao"}, "UNKNOWN_CATEGORY"),          # a Wuming category is unknown in Dong'an 2020
    ({"category": "vip"}, "UNKNOWN_CATEGORY"),
    ({"id_number": PID[:-1] + ("0" if PID[-1] != "0" else "1")}, "ID_CHECKSUM"),
    ({"id_number": "12345"}, "ID_FORMAT"),
    ({"action": "upgrade"}, "BAD_ACTION"),
    ({"effective_date": "2019-13-01"}, "BAD_EFFECTIVE_DATE"),
    ({"source_system": "tax_bureau"}, "UNKNOWN_SOURCE"),
    ({"source_system": "disabled_federation"}, "SOURCE_NOT_ISSUER"),  # 残联 cannot grant 低保
    ({"source_ref": ""}, "MISSING_FIELD"),
    ({"source_ref": "a b"}, "BAD_SOURCE_REF"),
])
def test_bad_updates_are_rejected_with_their_own_code(change, code):
    with pytest.raises(Rejected) as e:
        parse_update(update(**change), RULES)
    assert e.value.code == code and e.value.message


def test_revoke_of_nothing_and_out_of_order_are_rejected_and_change_nothing():
    p = PersonIdentities(PID)
    with pytest.raises(Rejected) as e:
        p.apply(parse_update(update(action="revoke"), RULES), T0)
    assert e.value.code == "REVOKE_NOT_GRANTED" and p.history == []
    assert p.apply(parse_update(update(effective_date="2019-09-01"), RULES), T0) == "applied"
    assert p.apply(parse_update(update(action="revoke", effective_date="2019-11-01", source_ref="R2"), RULES), T0) == "applied"
    before = list(p.history)
    with pytest.raises(Rejected) as e:  # an older grant arriving after a newer revoke
        p.apply(parse_update(update(effective_date="2019-10-15", source_ref="R1"), RULES), T0)
    assert e.value.code == "OUT_OF_ORDER" and p.history == before


def test_the_same_update_twice_has_one_effect():
    p = PersonIdentities(PID)
    u = parse_update(update(), RULES)
    assert p.apply(u, T0) == "applied"
    assert p.apply(u, T0) == "duplicate"
    assert p.apply(parse_update(update(source_ref="MZ-OTHER"), RULES), T0) == "unchanged"
    assert len(p.history) == 1


@pytest.mark.parametrize("row, fragment", [
    ({"code": "dibao_rural", "subsidy_fen": 130.5, "department": "d"}, "integer"),
    ({"code": "dibao_rural", "subsidy_fen": 30000, "department": "d"}, "exceeds"),
    ({"code": "dibao_rural", "subsidy_fen": 13000}, "department"),
    ({"code": "nobody", "subsidy_fen": 1, "department": "d"}, "unknown hardship category"),
])
def test_a_wrong_rules_section_is_refused(row, fragment):
    with pytest.raises(RulesError) as e:
        parse_subsidy_rules({"year": 2020, "standard_fen": 25000, "subsidy": {
            "new_hardship_after": "2019-10-01", "departments": {"d": "部门"}, "categories": [row]}})
    assert fragment in str(e.value)


def test_a_claim_is_paid_once_and_only_after_it_was_opened():
    from services.subsidy.domain.claim import CLAIM, pay
    from shared.errors import Conflict, ValidationFailed
    claim = {"status": "pending", "created_at": datetime(2019, 11, 15, 10, 0, tzinfo=SHANGHAI)}
    at = datetime(2019, 12, 20, 9, 0, tzinfo=SHANGHAI)
    fields = pay(claim, "PAY-1", date(2019, 12, 20), at)
    assert fields["status"] == "paid" and fields["payment_ref"] == "PAY-1"
    paid = {**claim, **fields}
    assert pay(paid, "PAY-1", date(2019, 12, 20), at) is None  # the same report again: nothing to write
    with pytest.raises(Conflict) as e:
        pay(paid, "PAY-2", date(2019, 12, 21), at)
    assert e.value.code == "CLAIM_ALREADY_PAID"
    with pytest.raises(ValidationFailed) as e:
        pay(claim, "PAY-1", date(2019, 11, 14), at)
    assert e.value.code == "PAID_BEFORE_CLAIM"
    assert not CLAIM.can("paid", "pending")

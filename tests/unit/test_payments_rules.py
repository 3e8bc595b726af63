"""Pure rules of payments: subsidies by current identity (001 六), the whole household (001 五), the
3-working-day audit (001 七(二)), withholding result files (002 六(二)), reconciliation and the
3-day remittance periods (001 七(四))."""
from datetime import date, datetime

import pytest

from services.payments.domain import audit, withholding as wh
from services.payments.domain.model import (Entitlement, check_proof, check_whole_household, current_entitlement,
                                            quote, subsidy_for)
from services.payments.domain.receipts import check_code, mask_name
from services.payments.domain.reconciliation import reconcile, remittance_periods, remittance_summary, totals_by_day
from shared.clock import SHANGHAI
from shared.config import ROOT
from shared.errors import ValidationFailed
from shared.policy import load_policy

POLICY = load_policy(ROOT / "policies" / "dongan-2020.json")
IDS = [f"43112219700101{i:03d}X" for i in range(4)]
HH = {"household_no": "H1", "year": 2020, "county": "431122", "township": "白牙市镇", "village": "五一村",
      "head_name": "甲", "members": [{"person_id": p, "name": n} for p, n in zip(IDS, "甲乙丙丁")]}
AT = datetime(2019, 10, 1, 9, tzinfo=SHANGHAI)


def ent(category, fen, full=False, eff="2019-09-01", occurred="2019-09-01T00:00:00+08:00"):
    return Entitlement(category, fen, full, date.fromisoformat(eff), occurred)


def test_dongan_2020_subsidies_registered_poor_pays_120_and_tekun_pays_nothing():
    """001 六: 建档立卡贫困人口 参保个人缴纳120元，财政兜底130元; 特困人员 全额资助; 低保 资助130元."""
    q = quote(HH, POLICY, AT, False, {IDS[1]: ent("建档立卡贫困人口", 13000), IDS[2]: ent("特困供养人员", 0, full=True),
                                      IDS[3]: ent("农村低保对象", 13000)})
    assert [l.payable_fen for l in q.lines] == [25000, 12000, 0, 12000]
    assert (q.standard_total_fen, q.subsidy_total_fen, q.total_fen) == (100000, 51000, 49000)


def test_a_subsidy_never_exceeds_the_standard_and_no_identity_means_none():
    assert subsidy_for(25000, ent("x", 99999)) == 25000
    assert subsidy_for(25000, ent(None, 13000)) == 0 and subsidy_for(25000, None) == 0


def test_the_current_identity_is_the_latest_word_already_in_effect():
    """001 六: 依据缴费人当前身份进行征收 — a withdrawal published later wins; a future change waits."""
    granted = ent("建档立卡贫困人口", 13000, occurred="2019-09-01T00:00:00+08:00")
    withdrawn = ent(None, 0, occurred="2019-10-05T00:00:00+08:00")
    future = ent("特困供养人员", 0, full=True, eff="2019-12-01", occurred="2019-10-06T00:00:00+08:00")
    assert current_entitlement([withdrawn, granted], date(2019, 10, 10)) is withdrawn
    assert current_entitlement([granted, future], date(2019, 11, 30)) is granted
    assert current_entitlement([granted, future], date(2019, 12, 1)) is future
    assert current_entitlement([future], date(2019, 11, 1)) is None


def test_an_order_naming_members_must_name_the_whole_household():
    q = quote(HH, POLICY, AT, False)
    check_whole_household(q, None)
    check_whole_household(q, list(reversed(IDS)))
    for bad in (IDS[:3], IDS + ["43112219700101999X"], IDS[:3] + [IDS[0]]):
        with pytest.raises(ValidationFailed) as e:
            check_whole_household(q, bad)
        assert e.value.code == "HOUSEHOLD_SPLIT"


def test_proof_per_channel():
    """001 五: 电子订单 / 机打小票 / 银行收款凭单; village cash names collector and receipt book."""
    assert check_proof("mobile_app", None) == {}
    assert check_proof("pos", {"terminal_id": "T1", "slip_no": "9", "extra": "x"}) == {"terminal_id": "T1", "slip_no": "9"}
    with pytest.raises(ValidationFailed) as e:
        check_proof("village_cash", {"collector_id": "C1", "collector_name": " "})
    assert e.value.details["missing"] == ["collector_name", "receipt_book_no", "receipt_sheet_no"]


@pytest.mark.parametrize("paid, due", [
    (date(2019, 9, 27), date(2019, 10, 8)),    # Sun 09-29 worked (调休), National Day 10-01..07 off
    (date(2019, 11, 15), date(2019, 11, 20)),  # Friday → Wednesday
    (date(2019, 12, 23), date(2019, 12, 25)),  # capped by the county deadline of Dec 25
    (date(2019, 12, 27), date(2020, 1, 2)),    # after Dec 25: three working days (New Year's Day off)
])
def test_audit_due_in_chinese_working_days(paid, due):
    """001 七(二): 3个工作日内完成缴款审核 ……应在12月25日前完成全县缴款审核工作."""
    assert audit.audit_due(paid, 2020) == due
    assert not audit.overdue(paid, 2020, due) and audit.overdue(paid, 2020, date.fromordinal(due.toordinal() + 1))


def test_reconcile_reports_both_sides_and_differences():
    platform = [{"order_no": "A", "transaction_id": "t1", "amount_fen": 100},
                {"order_no": "B", "transaction_id": "t2", "amount_fen": 200},
                {"order_no": "C", "transaction_id": "t3", "amount_fen": 300},
                {"order_no": "D", "transaction_id": "t4", "amount_fen": 400}]
    stmt = [{"order_no": "A", "transaction_id": "t1", "amount_fen": 100},
            {"order_no": "B", "transaction_id": "t2", "amount_fen": 250},
            {"order_no": "D", "transaction_id": "tX", "amount_fen": 400},
            {"order_no": "E", "transaction_id": "t5", "amount_fen": 500},
            {"order_no": "A", "transaction_id": "t1", "amount_fen": 100}]
    r = reconcile(stmt, platform)
    assert r["matched"] == ["A"] and r["duplicates_on_statement"] == ["A"]
    assert r["amount_mismatch"] == [{"order_no": "B", "platform_fen": 200, "statement_fen": 250, "difference_fen": 50}]
    assert [m["order_no"] for m in r["transaction_mismatch"]] == ["D"]
    assert [m["order_no"] for m in r["missing_on_platform"]] == ["E"]
    assert [m["order_no"] for m in r["missing_on_statement"]] == ["C"]
    assert (r["statement_total_fen"], r["platform_total_fen"], r["balanced"]) == (1250, 1000, False)
    assert reconcile(platform, platform)["balanced"]


def test_remittance_periods_are_three_days_from_the_window_opening():
    """001 七(四): 要求3天进行一次解款."""
    p = remittance_periods(date(2019, 9, 1), date(2019, 9, 7))
    assert p == [(date(2019, 9, 1), date(2019, 9, 3)), (date(2019, 9, 4), date(2019, 9, 6)),
                 (date(2019, 9, 7), date(2019, 9, 9))]


def test_mid_year_payments_after_the_window_are_in_the_remittances_too():
    """001 七(四) (remit every 3 days) with 001 四 (中途参保 after the window): a payment made at the
    township in March is in a period of its own; the empty periods between are not listed."""
    pay = lambda day, fen: {"paid_day": day, "amount_fen": fen, "subsidy_fen": 0, "channel": "bank_counter",
                            "gateway": "g", "status": "confirmed"}
    rows = remittance_summary(totals_by_day([pay("2019-09-02", 25000), pay("2020-03-10", 50000)]), date(2019, 9, 1),
                              date(2020, 3, 10), closes=date(2019, 12, 31))
    within = [r for r in rows if r["period_start"] <= "2019-12-31"]
    after = [r for r in rows if r["period_start"] > "2019-12-31"]
    assert len(within) == 41 and within[0]["amount_fen"] == 25000  # every period of the window, listed
    assert [(r["period_start"], r["period_end"], r["amount_fen"]) for r in after] == [("2020-03-08", "2020-03-10", 50000)]
    assert sum(r["amount_fen"] for r in rows) == 75000


BATCH = {"_id": "W1", "lines": [{"line_no": 1, "order_no": "P1", "amount_fen": 50000},
                                {"line_no": 2, "order_no": "P2", "amount_fen": 37000}]}
HEAD = ",".join(wh.RESULT_HEADER)


def test_withholding_results_are_classified():
    """002 六(二)3: 代扣不成功的名单进行分类汇总，对余额不足的代扣帐户发回各镇."""
    text = f"{HEAD}\nW1,1,P1,50000,00,B77,2019-11-15T10:00:00+08:00,\nW1,2,P2,37000,51,,,余额不足\n"
    ok, short = wh.parse_results(text, BATCH)
    assert ok.ok and ok.bank_txn_id == "B77"
    assert (short.reason, short.retryable, short.agreement_valid) == ("INSUFFICIENT_BALANCE", True, True)
    assert wh.classify("62")[0] == "ACCOUNT_CLOSED" and not wh.classify("62")[3]
    assert wh.classify("65")[0] == "AGREEMENT_INVALID" and wh.classify("XX")[0] == "OTHER"


@pytest.mark.parametrize("body, code", [
    ("W1,1,P1,50000,00,B77,2019-11-15T10:00:00+08:00,\n", "RESULT_FILE_INCOMPLETE"),
    ("W2,1,P1,50000,00,B77,2019-11-15T10:00:00+08:00,\nW1,2,P2,37000,51,,,\n", "RESULT_FILE_BATCH"),
    ("W1,1,P1,50000,00,,2019-11-15T10:00:00+08:00,\nW1,2,P2,37000,51,,,\n", "RESULT_FILE_TXN"),
    ("W1,1,P1,50000,00,B1,2019-11-15 10:00,\nW1,2,P2,37000,51,,,\n", "RESULT_FILE_TIME"),
    ("W1,1,P1,50000,00,B1,2019-11-15T10:00:00+08:00,\nW1,1,P1,50000,51,,,\n", "RESULT_FILE_DUPLICATE"),
    ("W1,3,P3,1,00,B1,2019-11-15T10:00:00+08:00,\n", "RESULT_FILE_LINE"),
    ("W1,²,P1,50000,00,B1,2019-11-15T10:00:00+08:00,\nW1,2,P2,37000,51,,,\n", "RESULT_FILE_LINE"),  # '²'.isdigit()
    ("W1,1,P1,5000²,00,B1,2019-11-15T10:00:00+08:00,\nW1,2,P2,37000,51,,,\n", "RESULT_FILE_MISMATCH"),
    ("W1,2,P2,36999,51,,,\n", "RESULT_FILE_MISMATCH"),
])
def test_a_bad_result_row_refuses_the_whole_file(body, code):
    with pytest.raises(ValidationFailed) as e:
        wh.parse_results(f"{HEAD}\n{body}", BATCH)
    assert e.value.code == code
    with pytest.raises(ValidationFailed) as e:
        wh.parse_results("line,result\n", BATCH)
    assert e.value.code == "RESULT_FILE_HEADER"


def test_account_numbers_and_receipt_names_are_masked_and_check_codes_are_keyed():
    assert wh.mask_account("6222000000001234") == "6222********1234"
    assert mask_name("张三丰") == "张**"
    assert check_code(b"k1", "R1", 100, "t") != check_code(b"k2", "R1", 100, "t")
    assert len(check_code(b"k1", "R1", 100, "t")) == 12

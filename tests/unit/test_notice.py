"""Receipt notice to the household head — 001_93f5b63ac6b4a653.txt 五: 注明户主、家庭成员姓名、缴费金额、缴费时间."""
from services.notices.domain.notice import (claim_created_notice, coverage_alert, receipt_notice,
                                            withholding_failure_notices)

PAYLOAD = {"order_no": "P1", "receipt_no": "R1", "household_no": "H1", "year": 2020, "county": "431122",
           "township": "花桥镇", "village": "花桥村", "head_name": "刘春生", "head_phone": "13900001111",
           "amount_fen": 75000, "channel": "mobile_app", "gateway": "g", "transaction_id": "t",
           "paid_at": "2019-11-15T02:00:00+00:00",
           "members": [{"person_id": "x", "name": n, "standard_fen": 25000, "subsidy_fen": 0, "payable_fen": 25000}
                       for n in ("刘春生", "王小红", "刘洋")]}


def test_receipt_names_head_members_amount_and_shanghai_time():
    n = receipt_notice(PAYLOAD)
    assert n.notice_id == "receipt:P1" and n.channel == "sms" and n.status == "queued"
    for part in ("刘春生户主", "王小红", "刘洋", "3人", "750.00元", "2019年11月15日 10:00", "R1"):
        assert part in n.text


def test_without_a_phone_the_notice_is_kept_as_no_contact():
    assert receipt_notice(dict(PAYLOAD, head_phone=None)).status == "no_contact"


FAIL = {"batch_no": "B1", "order_no": "P9", "household_no": "H9", "year": 2018, "county": "武鸣区", "township": "城厢镇",
        "village": "东风村", "head_name": "韦某", "head_phone": "13800002222", "amount_fen": 54000, "bank": "农村信用社",
        "reason": "INSUFFICIENT_BALANCE", "reason_text": "账户余额不足", "retryable": True}


def test_an_insufficient_balance_goes_to_the_head_and_back_to_the_town():
    # 002_9137bd928f251374.txt 六(二): 对余额不足的代扣帐户发回各镇，由各镇督促缴费人存款，银行再次代扣
    sms, town = withholding_failure_notices(FAIL)
    assert sms.channel == "sms" and "540.00元" in sms.text and "再次代扣" in sms.text
    assert town.channel == "internal" and town.township == "城厢镇" and "请督促缴费" in town.text
    closed = withholding_failure_notices(dict(FAIL, reason="ACCOUNT_CLOSED", reason_text="账户已销户", retryable=False))
    assert "重新签订代扣协议" in closed[0].text and "需改用其他方式缴费" in closed[1].text


def test_coverage_alerts_only_while_hardship_persons_are_missing():
    # 001 六: 以上所有困难群众必须确保100%参保
    cov = {"year": 2020, "county": "431122", "township": "花桥镇", "category": "registered_poor", "hardship_persons": 50,
           "enrolled_persons": 48, "not_enrolled_persons": 2, "rate_bp": 9600, "as_of": "2019-12-01T00:00:00+08:00"}
    alert = coverage_alert(cov)
    assert "建档立卡贫困人口共50人" in alert.text and "尚有2人未参保" in alert.text and "96.00%" in alert.text
    assert coverage_alert(dict(cov, enrolled_persons=50, not_enrolled_persons=0, rate_bp=10000)) is None


def test_a_reimbursement_claim_is_announced_to_the_household_head():
    # 001 六: 2019年10月1日之后新增的困难群众……全额缴费、先缴后补
    claim = {"claim_id": "2020:x", "person_id": "43112219800506001X", "name": "王某", "year": 2020,
             "category": "dibao_rural", "amount_fen": 13000, "department": "medical_assistance",
             "effective_date": "2019-11-01", "household_no": "H1", "county": "431122", "township": "花桥镇"}
    n = claim_created_notice(claim, {"head_name": "王大", "head_phone": "13900003333"})
    assert n.recipient_phone == "13900003333" and "农村低保对象" in n.text and "130.00元" in n.text
    assert claim_created_notice(claim, None).status == "no_contact"

"""Notices from their templates (services/notices/templates/): who is told what, in what words.

Receipt notice to the household head — 001_93f5b63ac6b4a653.txt 五: 注明户主、家庭成员姓名、缴费金额、缴费时间.
"""
import pytest

from services.notices.adapters.templates import TemplateBook, TemplateError, sms_segments, zh_date, zh_deadline
from services.notices.domain import notice as domain

BOOK = TemplateBook(sign_name="东安县医保")


def receipt_notice(p):
    return BOOK.fill(domain.receipt_notice(p))


def withholding_failure_notices(p):
    return [BOOK.fill(x) for x in domain.withholding_failure_notices(p)]


def coverage_alert(p):
    found = [BOOK.fill(x) for x in domain.coverage_alerts(p)]
    if found:  # the township's list first, the same text to civil affairs by webhook
        assert [(x.channel, x.recipient_name) for x in found] == [("internal", "花桥镇人民政府"), ("webhook", "民政部门")]
        assert found[0].text == found[1].text
    return found[0] if found else None


def claim_created_notice(p, contact):
    return BOOK.fill(domain.claim_created_notice(p, contact))

PAYLOAD = {"order_no": "P1", "receipt_no": "R1", "household_no": "H1", "year": 2020, "county": "431122",
           "township": "花桥镇", "village": "花桥村", "head_name": "刘春生", "head_phone": "13900001111",
           "amount_fen": 75000, "channel": "mobile_app", "gateway": "g", "transaction_id": "t",
           "paid_at": "2019-11-15T02:00:00+00:00",
           "members": [{"person_id": "x", "name": n, "standard_fen": 25000, "subsidy_fen": 0, "payable_fen": 25000}
                       for n in ("刘春生", "王小红", "刘洋")]}


def test_receipt_names_head_members_amount_and_shanghai_time():
    n = receipt_notice(PAYLOAD)
    assert n.notice_id == "receipt:P1" and n.channel == "sms" and n.status == "queued"
    assert n.text == ("【东安县医保】刘春生户主您好：您户3人（刘春生、王小红、刘洋）2020年度城乡居民医保费共750.00元"
                      "已于2019年11月15日 10:00缴纳成功，电子收据号R1。")
    assert n.template == {"name": "receipt.sms", "version": 1, "code": "SMS_ENROL_RECEIPT_1", "sign_name": "东安县医保",
                          "params": domain.receipt_notice(PAYLOAD).template["params"]}
    assert n.sms_segments == 2 and not n.urgent  # 84 characters: billed as two


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


def test_every_template_renders_from_its_declared_parameters_and_the_others_are_refused():
    samples = {
        "correction_overdue.internal": {"township": "花桥镇", "village": "花桥村", "household_no": "H1",
                                        "correction_id": "C1", "due_at": "2019-11-05T17:00:00+08:00"},
        "claim_paid.sms": {"name": "王某", "year": 2020, "amount_fen": 13000, "paid_on": "2020-03-02",
                           "payment_ref": "MZ-1"},
        "stage_result.internal": {"county_name": "纳雍县", "year": 2017, "name": "第一阶段", "version": 2,
                                  "reason": "银行补报", "as_of": "2016-11-15T17:00:00+08:00", "township": "一镇",
                                  "rate_bp": 3900, "rank": 8, "awards": [
                                      {"name": "黄牌", "to": ["township"], "to_names": ["乡（镇、街道）"], "status": "given"},
                                      {"name": "黄色预警", "to": ["deputy"], "to_names": ["分管负责人"], "status": "pending"}]},
        "forecast.internal": {"county_name": "纳雍县", "year": 2017, "name": "第三阶段",
                              "deadline": "2016-12-15T17:00:00+08:00", "township": "六镇", "rate_bp": 7900,
                              "status": "behind", "projected_rate_bp": 7980, "share_percent": 80, "needed_per_day": 5},
    }
    assert BOOK.render("correction_overdue.internal", samples["correction_overdue.internal"]).endswith(
        "（应于2019年11月5日前办结），请县医保局尽快处理。")  # dates as Chinese readers write them
    assert BOOK.render("claim_paid.sms", samples["claim_paid.sms"]) == \
        "【东安县医保】王某您好：2020年度医保费资助款130.00元已于2020年3月2日退还（凭证号MZ-1）。"
    assert BOOK.render("stage_result.internal", samples["stage_result.internal"]) == (
        "纳雍县2017年度第一阶段考核结果（更正第1版：银行补报）（截至2016年11月15日17时00分）：一镇参合（参保）率39.00%，"
        "排名第8，黄牌；黄色预警（分管负责人）（待定：数据不全或并列，由县里决定）。")
    assert "每天须新增参保5人" in BOOK.render("forecast.internal", samples["forecast.internal"])
    samples["reminder.sms"] = {"head_name": "刘春生", "year": 2020, "closes": "集中缴费期",
                               "deadline": "2019-12-31T23:59:59+08:00"}
    reminder = BOOK.render("reminder.sms", samples["reminder.sms"])
    assert reminder.startswith("【东安县医保】刘春生户主：2020年度城乡居民医保集中缴费期2019年12月31日23时59分截止，您户尚未缴费")
    assert sms_segments(reminder) == 1  # 70 characters at most: one message
    samples["audit_overdue.internal"] = {"year": 2020, "as_of": "2019-10-21", "payments": 3, "amount_fen": 75000,
                                         "oldest_paid_day": "2019-10-15", "county_deadline": "2019-12-25",
                                         "townships": [{"township": "花桥镇", "payments": 2}, {"township": "白牙市镇", "payments": 1}]}
    assert BOOK.render("audit_overdue.internal", samples["audit_overdue.internal"]) == (
        "截至2019年10月21日，2020年度有3笔居民医保缴费超过3个工作日未完成缴款审核，合计750.00元，最早一笔缴于2019年10月15日"
        "（花桥镇2笔，白牙市镇1笔）。请县税务局尽快审核，全县缴款审核须于2019年12月25日前完成。")
    with pytest.raises(TemplateError):
        BOOK.render("claim_paid.sms", {"name": "王某"})  # parameters missing
    with pytest.raises(TemplateError):
        BOOK.render("no_such.sms", {})
    ranking = {"county_name": "武鸣区", "as_of": "2017-12-07T09:00:00+08:00", "township": "城厢镇", "rate_bp": 8520,
               "rank": 3, "townships": 13, "rank_change": 1, "target_share_percent": 97}
    samples["ranking.sms"] = samples["ranking.internal"] = ranking
    assert BOOK.render("ranking.sms", ranking) == "【东安县医保】截至2017年12月7日9时00分，城厢镇参保率85.20%，全区13个乡镇中第3名（较上期升1位）。"
    assert BOOK.render("ranking.internal", dict(ranking, rank_change=-2)).endswith("较上期下降2位；目标97%。")
    samples["bulletin.sms"] = {"summary": "武鸣区参保进度通报（截至11月30日9时）：全区55.91%。",
                               "link": "http://127.0.0.1:8105/v1/counties/450110/bulletins/2018/201711300900"}
    assert BOOK.render("bulletin.sms", samples["bulletin.sms"]).endswith("详见：http://127.0.0.1:8105/v1/counties/450110/bulletins/2018/201711300900")
    rendered = {"receipt.sms", "withholding_failure.sms", "withholding_failure.internal", "coverage_alert.internal",
                "claim_created.sms"} | set(samples)
    assert rendered == set(BOOK.manifest)  # every template has a rendering test here


def test_sms_parts_are_counted_as_providers_bill_them_signature_included():
    assert sms_segments("字" * 70) == 1 and sms_segments("字" * 71) == 2 and sms_segments("a" * 134) == 2
    assert sms_segments("字" * 135) == 3
    many = dict(PAYLOAD, members=[dict(PAYLOAD["members"][0], name=f"成员{i}") for i in range(8)])
    assert receipt_notice(many).sms_segments == 2


def test_a_template_using_an_undeclared_parameter_stops_the_book_from_loading(tmp_path):
    (tmp_path / "manifest.json").write_text('{"x.internal": {"version": 1, "code": null, "params": ["a"]}}')
    (tmp_path / "x.internal.j2").write_text("{{ a }}{{ b }}")
    with pytest.raises(TemplateError, match="does not declare"):
        TemplateBook(tmp_path)


def test_chinese_dates_and_deadlines_in_shanghai_time():
    assert zh_date("2019-11-05") == "2019年11月5日"
    assert zh_date("2019-11-04T16:30:00+00:00") == "2019年11月5日"  # 00:30 in Shanghai
    assert zh_deadline("2016-11-15T09:00:00+00:00") == "2016年11月15日17时00分"

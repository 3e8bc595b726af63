"""Notices (通知) to people and offices, one per fact, texts in Chinese.

- receipt to the household head — 001_93f5b63ac6b4a653.txt 五: 注明户主、家庭成员姓名、缴费金额、缴费时间;
- withholding failures — 002_9137bd928f251374.txt 六(二): 对余额不足的代扣帐户发回各镇, the town urges the
  payer to deposit, the bank withholds again: an SMS to the head and the town's failure list;
- overdue corrections — 001 七(一) 3 working days: an alert to the county bureau;
- 先缴后补 claims created and paid — 001 六: the household is told what it will get back and when it did;
- hardship coverage below 100 % — 001 六 (必须确保100%参保): an alert to the township.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from shared.clock import SHANGHAI
from shared.money import yuan

CATEGORY_NAMES = {"registered_poor": "建档立卡贫困人口", "extreme_poverty": "特困供养人员", "dibao_urban": "城镇低保对象",
                  "dibao_rural": "农村低保对象", "poverty_exit_floor": "社会保障兜底脱贫对象", "poor_disabled": "贫困残疾人",
                  "certified_disabled": "持证残疾人", "wubao": "五保户", "only_child": "独生子女户",
                  "two_daughters": "双女结扎户"}


@dataclass(frozen=True)
class Notice:
    notice_id: str
    kind: str  # receipt | withholding_failure | correction_overdue | claim_created | claim_paid | coverage_alert | stage_result | forecast
    household_no: str | None
    year: int
    township: str
    recipient_name: str
    recipient_phone: str | None
    channel: str  # sms | internal (an office's work list) | webhook
    text: str
    status: str = "queued"  # queued → sent | failed | no_contact


def _sms(contact: str | None) -> str:
    return "queued" if contact else "no_contact"


def receipt_notice(p: dict[str, Any]) -> Notice:
    paid_at = datetime.fromisoformat(p["paid_at"]).astimezone(SHANGHAI)
    names = "、".join(m["name"] for m in p["members"])
    text = (f"【{p['county']}医保】{p['head_name']}户主您好：您户{len(p['members'])}人（{names}）"
            f"{p['year']}年度城乡居民医保费共{yuan(p['amount_fen'])}元已于"
            f"{paid_at:%Y年%m月%d日 %H:%M}缴纳成功，电子收据号{p['receipt_no']}。")
    return Notice(f"receipt:{p['order_no']}", "receipt", p["household_no"], p["year"], p["township"], p["head_name"],
                  p.get("head_phone"), "sms", text, _sms(p.get("head_phone")))


def withholding_failure_notices(p: dict[str, Any]) -> list[Notice]:
    """One SMS to the head, one line on the town's failure list (发回各镇)."""
    key = f"{p['batch_no']}:{p['order_no']}"
    if p["retryable"]:
        ask = "请于近日将应缴金额存入代扣账户，银行将再次代扣。"
    else:
        ask = "请到村（社区）或银行网点办理缴费或重新签订代扣协议。"
    sms = (f"【{p['county']}医保】{p['head_name']}户主您好：{p['bank']}代扣您户{p['year']}年度城乡居民医保费"
           f"{yuan(p['amount_fen'])}元未成功（{p['reason_text']}）。{ask}")
    town = (f"{p['village']} {p['household_no']} 户主{p['head_name']}：代扣{yuan(p['amount_fen'])}元失败，"
            f"原因：{p['reason_text']}（{'可再次代扣' if p['retryable'] else '需改用其他方式缴费'}），请督促缴费。")
    return [Notice(f"wfail:{key}", "withholding_failure", p["household_no"], p["year"], p["township"],
                   p["head_name"], p.get("head_phone"), "sms", sms, _sms(p.get("head_phone"))),
            Notice(f"wfail-town:{key}", "withholding_failure", p["household_no"], p["year"], p["township"],
                   f"{p['township']}人民政府", None, "internal", town)]


def correction_overdue_notice(p: dict[str, Any]) -> Notice:
    due = datetime.fromisoformat(p["due_at"]).astimezone(SHANGHAI)
    text = (f"{p['township']}{p['village']} {p['household_no']} 的信息更正申请（{p['correction_id']}）"
            f"已超过3个工作日办结时限（应于{due:%Y年%m月%d日}前办结），请县医保局尽快处理。")
    return Notice(f"overdue:{p['correction_id']}", "correction_overdue", p["household_no"], p["year"], p["township"],
                  "县医保局", None, "internal", text)


def claim_created_notice(p: dict[str, Any], contact: dict[str, Any] | None) -> Notice:
    cat = CATEGORY_NAMES.get(p["category"], p["category"])
    text = (f"【{p.get('county') or ''}医保】{p.get('name') or ''}您好：您自{date.fromisoformat(p['effective_date']):%Y年%m月%d日}"
            f"起认定为{cat}，{p['year']}年度已全额缴纳的医保费中应由财政资助的{yuan(p['amount_fen'])}元"
            f"将按“先缴后补”退还给您。")
    return _to_household(f"claim:{p['claim_id']}", "claim_created", p, contact, text)


def claim_paid_notice(p: dict[str, Any], contact: dict[str, Any] | None) -> Notice:
    text = (f"【{p.get('county') or ''}医保】{p.get('name') or ''}您好：{p['year']}年度医保费资助款"
            f"{yuan(p['amount_fen'])}元已于{date.fromisoformat(p['paid_on']):%Y年%m月%d日}退还（凭证号{p['payment_ref']}）。")
    return _to_household(f"claim-paid:{p['claim_id']}", "claim_paid", p, contact, text)


def _to_household(nid: str, kind: str, p: dict[str, Any], contact: dict[str, Any] | None, text: str) -> Notice:
    phone = (contact or {}).get("head_phone")
    return Notice(nid, kind, p.get("household_no"), p["year"], p.get("township") or "",
                  (contact or {}).get("head_name") or p.get("name") or "", phone, "sms", text, _sms(phone))


def coverage_alert(p: dict[str, Any]) -> Notice | None:
    """Only when hardship persons of a township are not all enrolled (the target is 100 %)."""
    if p["not_enrolled_persons"] <= 0 or not p["township"]:
        return None
    cat = CATEGORY_NAMES.get(p["category"], p["category"])
    text = (f"{p['township']}{cat}共{p['hardship_persons']}人，已参保{p['enrolled_persons']}人，"
            f"尚有{p['not_enrolled_persons']}人未参保（参保率{p['rate_bp'] // 100}.{p['rate_bp'] % 100:02d}%），"
            f"困难群众须100%参保，请尽快动员缴费。")
    return Notice(f"coverage:{p['year']}:{p['township']}:{p['category']}:{p['as_of']}", "coverage_alert", None,
                  p["year"], p["township"], f"{p['township']}人民政府", None, "internal", text)


STATUS_WORDS = {"given": "", "exempted": "（符合免除条件，免除本次处罚）", "pending": "（待定：数据不全或并列，由县里决定）"}


def stage_result_notices(p: dict[str, Any]) -> list[Notice]:
    """A published evaluation (scoring.stage.evaluated) to each township it names an award for: what
    it got and who it falls on (000 二: 挂流动红旗、黄牌，约谈，预警). A correction is a new version and
    a new notice, saying it corrects."""
    out = []
    for row in p["rows"]:
        if not row["awards"]:
            continue
        said = "；".join(f"{a['name']}{'（' + '、'.join(a['to_names']) + '）' if a['to'] != ['township'] else ''}"
                        f"{STATUS_WORDS[a['status']]}" for a in row["awards"])
        at = datetime.fromisoformat(p["as_of"]).astimezone(SHANGHAI)
        place = f"排名第{row['rank']}" if row["rank"] is not None else "未排名"
        rate = f"参合（参保）率{row['rate_bp'] // 100}.{row['rate_bp'] % 100:02d}%，" if row["rate_bp"] is not None else ""
        again = f"（更正第{p['version'] - 1}版：{p['reason']}）" if p["version"] > 1 else ""
        text = (f"{p['county_name']}{p['year']}年度{p['name']}考核结果{again}（截至{at:%Y年%m月%d日%H时%M分}）："
                f"{row['township']}{rate}{place}，{said}。")
        out.append(Notice(f"stage:{p['year']}:{p['kind']}:{p['no']}:v{p['version']}:{row['township']}", "stage_result",
                          None, p["year"], row["township"], f"{row['township']}人民政府", None, "internal", text))
    return out


def forecast_notices(p: dict[str, Any]) -> list[Notice]:
    """A published forecast (scoring.forecast.published) to each township that will miss the stage:
    how far it is and the persons a day it needs (or that its pace cannot be forecast yet)."""
    out = []
    deadline = datetime.fromisoformat(p["deadline"]).astimezone(SHANGHAI)
    for row in p["rows"]:
        rate = f"{row['rate_bp'] // 100}.{row['rate_bp'] % 100:02d}%" if row["rate_bp"] is not None else "无数据"
        if row["status"] == "behind":
            ahead = f"{row['projected_rate_bp'] // 100}.{row['projected_rate_bp'] % 100:02d}%"
            how = f"按近期进度预计截止时达到{ahead}，未达{p['share_percent']}%的阶段目标"
        else:
            how = "近期参保数据不足，无法预测"
        need = f"，自即日起每天须新增参保{row['needed_per_day']}人" if row["needed_per_day"] else ""
        text = (f"{p['county_name']}{p['year']}年度{p['name']}将于{deadline:%Y年%m月%d日%H时%M分}截止："
                f"{row['township']}当前参合（参保）率{rate}，{how}{need}，请加快进度。")
        out.append(Notice(f"forecast:{p['year']}:{p['stage']}:{row['township']}", "forecast", None, p["year"],
                          row["township"], f"{row['township']}人民政府", None, "internal", text))
    return out

"""Notices (通知) to people and offices, one per fact, texts in Chinese.

- receipt to the household head — 001_93f5b63ac6b4a653.txt 五: 注明户主、家庭成员姓名、缴费金额、缴费时间;
- withholding failures — 002_9137bd928f251374.txt 六(二): 对余额不足的代扣帐户发回各镇, the town urges the
  payer to deposit, the bank withholds again: an SMS to the head and the town's failure list;
- overdue corrections — 001 七(一) 3 working days: an alert to the county bureau;
- overdue audits — 001 七(二) 税务局应于3个工作日内完成缴款审核: the day's digest to the tax bureau;
- 先缴后补 claims created and paid — 001 六: the household is told what it will get back and when it did;
- hardship coverage below 100 % — 001 六 (必须确保100%参保): an alert to the township;
- stage results and forecasts — 000 二: to the townships an evaluation names, and those behind.

Each builder says who is told what: a template (services/notices/templates/) and its parameters;
adapters/templates.py renders the text, so wording lives in files, versioned.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CATEGORY_NAMES = {"registered_poor": "建档立卡贫困人口", "extreme_poverty": "特困供养人员", "dibao_urban": "城镇低保对象",
                  "dibao_rural": "农村低保对象", "poverty_exit_floor": "社会保障兜底脱贫对象", "poor_disabled": "贫困残疾人",
                  "certified_disabled": "持证残疾人", "wubao": "五保户", "only_child": "独生子女户",
                  "two_daughters": "双女结扎户"}


@dataclass(frozen=True)
class Notice:
    notice_id: str
    kind: str  # receipt | withholding_failure | correction_overdue | audit_overdue | claim_created | claim_paid | coverage_alert | stage_result | forecast | reminder | ranking
    household_no: str | None
    year: int
    township: str
    recipient_name: str
    recipient_phone: str | None
    channel: str  # sms | email | internal (an office's work list) | webhook
    text: str  # rendered from `template` (adapters/templates.py TemplateBook.fill)
    status: str = "queued"  # queued → sent | failed | no_contact
    template: dict = field(default_factory=dict)  # {"name", "params"}; once filled also "version", "code"
    urgent: bool = False  # may be sent within quiet hours
    sms_segments: int | None = None  # parts the provider bills (SMS)
    recipient_email: str | None = None  # the email channel's address


def _sms(contact: str | None) -> str:
    return "queued" if contact else "no_contact"


def _t(template: str, /, **params: Any) -> dict:
    return {"name": template, "params": params}


def receipt_notice(p: dict[str, Any]) -> Notice:
    """001 五: 注明户主、家庭成员姓名、缴费金额、缴费时间 — to the head, who knows the family's names."""
    t = _t("receipt.sms", head_name=p["head_name"], persons=len(p["members"]), names=[m["name"] for m in p["members"]],
           year=p["year"], amount_fen=p["amount_fen"], paid_at=p["paid_at"], receipt_no=p["receipt_no"])
    return Notice(f"receipt:{p['order_no']}", "receipt", p["household_no"], p["year"], p["township"], p["head_name"],
                  p.get("head_phone"), "sms", "", _sms(p.get("head_phone")), t)


def withholding_failure_notices(p: dict[str, Any]) -> list[Notice]:
    """One SMS to the head, one line on the town's failure list (发回各镇)."""
    key = f"{p['batch_no']}:{p['order_no']}"
    common = {"head_name": p["head_name"], "amount_fen": p["amount_fen"], "reason_text": p["reason_text"],
              "retryable": p["retryable"]}
    return [Notice(f"wfail:{key}", "withholding_failure", p["household_no"], p["year"], p["township"],
                   p["head_name"], p.get("head_phone"), "sms", "", _sms(p.get("head_phone")),
                   _t("withholding_failure.sms", bank=p["bank"], year=p["year"], **common)),
            Notice(f"wfail-town:{key}", "withholding_failure", p["household_no"], p["year"], p["township"],
                   f"{p['township']}人民政府", None, "internal", "", template=_t(
                       "withholding_failure.internal", village=p["village"], household_no=p["household_no"], **common))]


def correction_overdue_notice(p: dict[str, Any]) -> Notice:
    t = _t("correction_overdue.internal", township=p["township"], village=p["village"], household_no=p["household_no"],
           correction_id=p["correction_id"], due_at=p["due_at"])
    return Notice(f"overdue:{p['correction_id']}", "correction_overdue", p["household_no"], p["year"], p["township"],
                  "县医保局", None, "internal", "", template=t)


def audits_overdue_notice(p: dict[str, Any]) -> Notice:
    """The tax bureau, which owns the audit (001 七(二)), is told each day while payments wait past it:
    how many, how much, where; township staff are not (they cannot audit)."""
    t = _t("audit_overdue.internal", year=p["year"], as_of=p["as_of"], payments=p["payments"],
           amount_fen=p["amount_fen"], oldest_paid_day=p["oldest_paid_day"], county_deadline=p["county_deadline"],
           townships=[{"township": x["township"], "payments": x["payments"]} for x in p["townships"]])
    return Notice(f"audits-overdue:{p['year']}:{p['as_of']}", "audit_overdue", None, p["year"], "",
                  "县税务局", None, "internal", "", template=t)


def claim_created_notice(p: dict[str, Any], contact: dict[str, Any] | None) -> Notice:
    t = _t("claim_created.sms", name=p.get("name") or "", effective_date=p["effective_date"],
           category_name=CATEGORY_NAMES.get(p["category"], p["category"]), year=p["year"], amount_fen=p["amount_fen"])
    return _to_household(f"claim:{p['claim_id']}", "claim_created", p, contact, t)


def claim_paid_notice(p: dict[str, Any], contact: dict[str, Any] | None) -> Notice:
    t = _t("claim_paid.sms", name=p.get("name") or "", year=p["year"], amount_fen=p["amount_fen"], paid_on=p["paid_on"],
           payment_ref=p["payment_ref"])
    return _to_household(f"claim-paid:{p['claim_id']}", "claim_paid", p, contact, t)


def _to_household(nid: str, kind: str, p: dict[str, Any], contact: dict[str, Any] | None, template: dict) -> Notice:
    phone = (contact or {}).get("head_phone")
    return Notice(nid, kind, p.get("household_no"), p["year"], p.get("township") or "",
                  (contact or {}).get("head_name") or p.get("name") or "", phone, "sms", "", _sms(phone), template)


def coverage_alerts(p: dict[str, Any]) -> list[Notice]:
    """Only while hardship persons of a township are not all enrolled (001 六: 以上所有困难群众必须确保
    100%参保): the township's work list, and the civil-affairs system by signed webhook (the
    department that certified them helps enrol them)."""
    if p["not_enrolled_persons"] <= 0 or not p["township"]:
        return []
    t = _t("coverage_alert.internal", township=p["township"], category_name=CATEGORY_NAMES.get(p["category"], p["category"]),
           hardship_persons=p["hardship_persons"], enrolled_persons=p["enrolled_persons"],
           not_enrolled_persons=p["not_enrolled_persons"], rate_bp=p["rate_bp"])
    key = f"coverage:{p['year']}:{p['township']}:{p['category']}:{p['as_of']}"
    return [Notice(key, "coverage_alert", None, p["year"], p["township"], f"{p['township']}人民政府", None,
                   "internal", "", template=t),
            Notice(f"{key}:civil-affairs", "coverage_alert", None, p["year"], p["township"], "民政部门", None,
                   "webhook", "", template=t)]


def stage_result_notices(p: dict[str, Any]) -> list[Notice]:
    """A published evaluation (scoring.stage.evaluated) to each township it names an award for: what
    it got and who it falls on (000 二: 挂流动红旗、黄牌，约谈，预警). A correction is a new version and
    a new notice, saying it corrects."""
    out = []
    for row in p["rows"]:
        if not row["awards"]:
            continue
        t = _t("stage_result.internal", county_name=p["county_name"], year=p["year"], name=p["name"],
               version=p["version"], reason=p.get("reason"), as_of=p["as_of"], township=row["township"],
               rate_bp=row["rate_bp"], rank=row["rank"], awards=row["awards"])
        out.append(Notice(f"stage:{p['year']}:{p['kind']}:{p['no']}:v{p['version']}:{row['township']}", "stage_result",
                          None, p["year"], row["township"], f"{row['township']}人民政府", None, "internal", "",
                          template=t))
    return out


def forecast_notices(p: dict[str, Any]) -> list[Notice]:
    """A published forecast (scoring.forecast.published) to each township that will miss the stage:
    how far it is and the persons a day it needs (or that its pace cannot be forecast yet)."""
    return [Notice(f"forecast:{p['year']}:{p['stage']}:{row['township']}", "forecast", None, p["year"], row["township"],
                   f"{row['township']}人民政府", None, "internal", "", template=_t(
                       "forecast.internal", county_name=p["county_name"], year=p["year"], name=p["name"],
                       deadline=p["deadline"], township=row["township"], rate_bp=row["rate_bp"], status=row["status"],
                       projected_rate_bp=row["projected_rate_bp"], share_percent=p["share_percent"],
                       needed_per_day=row["needed_per_day"]))
            for row in p["rows"]]


def reminder_notice(run_id: str, year: int, township: str, household_no: str, contact: dict[str, Any],
                    closes: str, deadline: Any) -> Notice:
    """催缴: to a household not paid yet, before its window or a stage closes (one per household and
    reminder point)."""
    phone = contact.get("head_phone")
    t = _t("reminder.sms", head_name=contact.get("head_name") or "", year=year, closes=closes,
           deadline=deadline.isoformat() if hasattr(deadline, "isoformat") else deadline)
    return Notice(f"reminder:{run_id}:{household_no}", "reminder", household_no, year, township,
                  contact.get("head_name") or "", phone, "sms", "", _sms(phone), t)


def ranking_notices(p: dict[str, Any], leaders: dict[str, list[dict]]) -> list[Notice]:
    """The ranking on the county's rhythm (scoring.ranking.published) to each township: its line on
    the work list, and an SMS to each of its leaders (003: 每周把全县各乡镇筹资进度进行排名……以短信的方式
    发给各乡镇主要领导). A leader is named in the notice id by a hash of the number, never the number."""
    import hashlib
    out = []
    stamp = p["as_of"][:16].replace("-", "").replace(":", "").replace("T", "")
    for row in p["rows"]:
        params = {"county_name": p["county_name"], "as_of": p["as_of"], "township": row["township"],
                  "rate_bp": row["rate_bp"], "rank": row["rank"], "townships": p["townships"],
                  "rank_change": row["rank_change"], "target_share_percent": p["target_share_percent"]}
        base = f"ranking:{p['year']}:{stamp}:{row['township']}"
        out.append(Notice(base, "ranking", None, p["year"], row["township"], f"{row['township']}人民政府", None,
                          "internal", "", template=_t("ranking.internal", **params)))
        for leader in leaders.get(row["township"], []):
            who = hashlib.sha256(leader["phone"].encode()).hexdigest()[:10]
            if leader.get("prefers") == "email" and leader.get("email"):  # the leader's own choice
                out.append(Notice(f"{base}:{who}", "ranking", None, p["year"], row["township"], leader["name"],
                                  None, "email", "", "queued", _t("ranking.internal", **params),
                                  recipient_email=leader["email"]))
            else:
                out.append(Notice(f"{base}:{who}", "ranking", None, p["year"], row["township"], leader["name"],
                                  leader["phone"], "sms", "", "queued", _t("ranking.sms", **params)))
    return out

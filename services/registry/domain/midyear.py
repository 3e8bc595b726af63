"""Mid-year enrolment (中途参保): who may still enrol for the current year after the window, what
they pay and when benefits start. Every rule is read from the county's policy year
(`PolicyYear.mid_year`, policies/*.json), never hard-coded per county; a rule a decision needs
that the policy leaves null is refused (MID_YEAR_RULE_UNSET naming the field), never guessed.
Each decision carries its reason (zh-CN) and the document's wording of the rule it applied.

How the policy's fields are read (the files quote the documents):
- `newborn_within_days` N: a child at most N days old (Dong'an 001 五: 出生28天以内新生儿……应先行到乡镇办理
  当年度参保缴费) enrols at the individual standard; `newborn_within_months` N: a child whose age has
  not passed N months (Wuming 002 五(二): 出生未超过3个月的新生儿).
- `special_cases`: the notice's named grounds (Dong'an 001 四); they pay the financing standard
  (个人缴费部分和财政补助部分) in one sum, with benefits from `benefits_from` (next_month:
  从缴费的下个月起享受医保待遇).
- `periods`: yearly stretches open to everyone (Wuming 五(三): 每年1月1日至6月30日) or closed except
  the groups listed (五(二): 7月1日至12月31日不再办理……新生儿及困难、特殊人群除外).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.errors import Conflict, DomainError
from shared.events import Event
from shared.policy import MidYearPeriod, PolicyYear, mid_year_benefit_start

# The notice's wording of each special-case code a policy file may list (Dong'an 001 四).
SPECIAL_CASE_NAMES = {
    "moved_in": "当年新迁入户口",
    "demobilised": "复转军人",
    "graduate": "未及时就业的大中专毕业生",
    "newborn_late": "新生儿未在28天内参保缴费",
    "welfare_infant": "社会福利机构新接收的弃婴儿",
    "released_prisoner": "刑满释放人员",
    "employee_ended": "因劳动关系终止导致职工医保断保的人员",
    "new_registered_poor": "扶贫部门认定新增建档立卡贫困人口",
}
HARDSHIP_EXCEPTION = "hardship_special"  # a closed period's `except` entry: 困难、特殊人群
BENEFIT_RULES = {"next_month": "从缴费的下个月起享受医保待遇"}


@dataclass(frozen=True)
class MidYearDecision:
    allowed: bool
    code: str
    reason: str
    pays: str | None = None  # "individual" | "full_financing"
    benefits_from: date | None = None  # 待遇享受起始日 if paid on the decision's day; None: the policy sets none
    benefits_rule: str | None = None  # how the start follows from the payment date ("next_month")
    rule: str = ""  # the document's wording, as quoted in the policy file


def first_of_next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def add_months(d: date, months: int) -> date:
    """Same day `months` later (the month's last day where it has fewer days)."""
    y, m = divmod(d.month - 1 + months, 12)
    y, m = d.year + y, m + 1
    last = (first_of_next_month(date(y, m, 1)) - date(y, m, 1)).days
    return date(y, m, min(d.day, last))


def months_between(birth: date, on: date) -> int:
    return (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)


benefit_start = mid_year_benefit_start


def unset(policy: PolicyYear, field: str, why: str) -> DomainError:
    return DomainError("MID_YEAR_RULE_UNSET", f"{policy.county}{policy.year}年度政策文件未规定{why}（{field} 未配置），"
                       "不能判定中途参保", {"field": field, "county": policy.county, "year": policy.year})


def _rule_text(policy: PolicyYear, name: str) -> str:
    mid = (policy.raw or {}).get("mid_year") or {}
    return (mid.get("rules") or {}).get(name) or mid.get("rule") or ""


def _period_at(periods: tuple[MidYearPeriod, ...], on: date, kind: str) -> MidYearPeriod | None:
    md = on.strftime("%m-%d")
    return next((p for p in periods if p.kind == kind and p.starts <= md <= p.ends), None)


def _newborn(policy: PolicyYear, on: date, birth: date) -> MidYearDecision | None:
    rules = policy.mid_year
    if rules.newborn_within_days is not None:
        n = rules.newborn_within_days
        if 0 <= (on - birth).days <= n:
            return MidYearDecision(True, f"NEWBORN_{n}_DAYS", f"出生{n}天以内新生儿，可先在乡镇办理当年度参保缴费",
                                   "individual", rule=_rule_text(policy, "newborn_within_days"))
    elif rules.newborn_within_months is not None:
        n = rules.newborn_within_months
        if birth <= on <= add_months(birth, n):
            return MidYearDecision(True, f"NEWBORN_{n}_MONTHS", f"出生未超过{n}个月的新生儿可办理当年度参保缴费",
                                   "individual", rule=_rule_text(policy, "newborn_within_months"))
    elif 0 <= (on - birth).days < 366:
        raise unset(policy, "mid_year.newborn_within_days", "新生儿中途参保的年龄界限")
    return None


def decide(policy: PolicyYear, on: date, birth: date | None = None, special_case: str | None = None,
           hardship: bool = False) -> MidYearDecision:
    """The county's mid-year decision on `on` (pure: the policy year is a parameter)."""
    rules = policy.mid_year
    if rules is None:
        raise unset(policy, "mid_year", "中途参保规则")
    open_period = _period_at(rules.periods, on, "open")
    if open_period is not None:
        return MidYearDecision(True, "LATE_WINDOW", "每年{}至{}可办理当年度参保缴费（中断缴费及逾期缴费人员）".format(
            _md_zh(open_period.starts), _md_zh(open_period.ends)), "individual", rule=open_period.rule)
    if birth is not None:
        d = _newborn(policy, on, birth)
        if d is not None:
            return d
    if special_case is not None:
        if special_case not in rules.special_cases:
            return MidYearDecision(False, "UNKNOWN_SPECIAL_CASE", "不属于文件列明的中途参保特殊情形",
                                   rule=_rule_text(policy, "special_cases"))
        if special_case == "newborn_late" and birth is None:
            return MidYearDecision(False, "BIRTH_DATE_REQUIRED", "新生儿须提供出生日期")
        start = benefit_start(rules.benefits_from, on)
        return MidYearDecision(
            True, "SPECIAL_CASE", "{}：按当年度筹资标准（含个人缴费和财政补助部分）一次性足额缴纳，{}".format(
                SPECIAL_CASE_NAMES.get(special_case, special_case),
                BENEFIT_RULES.get(rules.benefits_from, "待遇起始时间政策文件未规定")),
            "full_financing", start, rules.benefits_from, _rule_text(policy, "special_cases"))
    closed = _period_at(rules.periods, on, "closed")
    if hardship and closed is not None and HARDSHIP_EXCEPTION in closed.except_:
        return MidYearDecision(True, "HARDSHIP", "困难、特殊人群可办理当年度参保缴费", "individual", rule=closed.rule)
    if closed is not None:
        return MidYearDecision(False, "MID_YEAR_CLOSED", "每年{}至{}不再办理当年度参保缴费{}".format(
            _md_zh(closed.starts), _md_zh(closed.ends), _except_zh(policy, closed)), rule=closed.rule)
    return MidYearDecision(False, "MID_YEAR_NOT_ALLOWED", "集中缴费期外原则上不得中途参保", rule=_rule_text(policy, "rule"))


def _md_zh(md: str) -> str:
    m, d = md.split("-")
    return f"{int(m)}月{int(d)}日"


def _except_zh(policy: PolicyYear, p: MidYearPeriod) -> str:
    names = []
    for e in p.except_:
        if e.startswith("newborn") and policy.mid_year.newborn_within_months is not None:
            names.append(f"出生未超过{policy.mid_year.newborn_within_months}个月的新生儿")
        elif e.startswith("newborn") and policy.mid_year.newborn_within_days is not None:
            names.append(f"出生{policy.mid_year.newborn_within_days}天以内新生儿")
        elif e == HARDSHIP_EXCEPTION:
            names.append("困难、特殊人群")
    return "（{}除外）".format("及".join(names)) if names else ""


# ---- recording an approval for a registered person --------------------------------------------

def check_recordable(year: int, window_closes: date, on: date, member_status: str,
                     household_paid: bool = False, left_unpaid: bool = False) -> None:
    """An approval is recorded for the policy year's mid-year period only: after its window closed
    (inside it the household pays as a whole, 001 五) and before the year's benefits end (Dec 31),
    for a person not enrolled for the year yet, in a household whose year is not paid yet (one
    payment per household and year: a member left out of it cannot be paid for separately here).

    `left_unpaid`: the person joined the household after the order its payment was made on (a
    newborn, Household.unpaid_members): they could not pay with it, so they enrol mid-year (001 四:
    新生儿……应先行到乡镇办理当年度参保缴费), inside the window too."""
    if member_status in ("paid", "confirmed"):
        raise Conflict("ALREADY_ENROLLED", "该人员本年度已随户缴费参保，无需办理中途参保", {"status": member_status})
    if household_paid and not left_unpaid:
        raise Conflict("HOUSEHOLD_ALREADY_PAID", "该户本年度已办理缴费登记，不能再为户内其他成员单独办理中途参保缴费")
    if on <= window_closes and not left_unpaid:
        raise DomainError("MID_YEAR_NOT_NEEDED", "集中参保缴费期内（至{}）以户为单位整体缴费，无需办理中途参保".format(
            window_closes.isoformat()), {"on": on.isoformat()})
    if on > date(year, 12, 31):
        raise DomainError("YEAR_ENDED", f"{year}年度已结束，不能再办理该年度的中途参保", {"on": on.isoformat()})


def approved_event(year: int, person_id: str, place: dict, d: MidYearDecision, on: date,
                   special_case: str | None, version: int | None = None) -> Event:
    """registry.mid_year.approved: payments charges this person alone after the window (001 四).
    `version` is the approval's write count (1 when first recorded): consumers keep the highest."""
    return Event("registry.mid_year.approved", {
        "household_no": place["household_no"], "year": year, "county": place["county"],
        "township": place["township"], "village": place["village"], "person_id": person_id, "code": d.code,
        "reason": d.reason, "pays": d.pays, "special_case": special_case, "decided_on": on.isoformat(),
        "benefits_from": d.benefits_from.isoformat() if d.benefits_from else None,
        **({"benefits_rule": d.benefits_rule} if d.benefits_rule else {}), "version": version})


def withdrawn_event(approval: dict, reason: str, on: date, version: int) -> Event:
    """registry.mid_year.withdrawn: an approval recorded in error is withdrawn before its payment."""
    return Event("registry.mid_year.withdrawn", {
        "household_no": approval["household_no"], "year": approval["year"], "county": approval["county"],
        "township": approval["township"], "village": approval["village"], "person_id": approval["person_id"],
        "reason": reason, "withdrawn_on": on.isoformat(), "version": version})

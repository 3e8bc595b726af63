"""Mid-year enrolment (中途参保): who may still enrol for the current year after the window, what
they pay and when benefits start. Each decision carries its reason (zh-CN) and the rule it applied.

- Dong'an (001_93f5b63ac6b4a653.txt 四, 五): after the window, as a rule no mid-year enrolment
  (原则上不得中途参保). Special cases (当年新迁入户口、复转军人、未及时就业的大中专毕业生、新生儿未在28天内参保缴费、
  社会福利机构新接收的弃婴儿、刑满释放人员、职工医保断保人员、新认定建档立卡贫困人口) pay the full financing
  standard (个人缴费部分和财政补助部分) in one sum and enjoy benefits from the month after payment
  (从缴费的下个月起享受医保待遇). Newborns within 28 days of birth enrol for the current year at the
  township (出生28天以内新生儿……应先行到乡镇办理当年度参保缴费).
- Wuming (002_9137bd928f251374.txt 三(二)(三)): from Jul 1 to Dec 31 no enrolment for the current
  year, except newborns under 3 months and hardship or special groups; lapsed or late payers may
  enrol for the current year from Jan 1 to Jun 30.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.errors import Conflict, DomainError
from shared.events import Event

DONGAN_SPECIAL_CASES = {
    "moved_in": "当年新迁入户口",
    "demobilised": "复转军人",
    "graduate": "未及时就业的大中专毕业生",
    "newborn_late": "新生儿未在28天内参保缴费",
    "welfare_infant": "社会福利机构新接收的弃婴儿",
    "released_prisoner": "刑满释放人员",
    "employee_ended": "因劳动关系终止导致职工医保断保的人员",
    "new_registered_poor": "扶贫部门认定新增建档立卡贫困人口",
}


@dataclass(frozen=True)
class MidYearDecision:
    allowed: bool
    code: str
    reason: str
    pays: str | None = None  # "individual" | "full_financing"
    benefits_from: date | None = None


def first_of_next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def months_between(birth: date, on: date) -> int:
    return (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)


def dongan(on: date, birth: date | None = None, special_case: str | None = None) -> MidYearDecision:
    if birth is not None and 0 <= (on - birth).days <= 28:
        return MidYearDecision(True, "NEWBORN_28_DAYS", "出生28天以内新生儿，可先在乡镇办理当年度参保缴费", "individual")
    if special_case is not None:
        if special_case not in DONGAN_SPECIAL_CASES:
            return MidYearDecision(False, "UNKNOWN_SPECIAL_CASE", "不属于文件列明的中途参保特殊情形")
        if special_case == "newborn_late" and birth is None:
            return MidYearDecision(False, "BIRTH_DATE_REQUIRED", "新生儿须提供出生日期")
        return MidYearDecision(True, "SPECIAL_CASE", f"{DONGAN_SPECIAL_CASES[special_case]}：按当年度筹资标准（含个人缴费和"
                               "财政补助部分）一次性足额缴纳，从缴费的下个月起享受待遇", "full_financing",
                               first_of_next_month(on))
    return MidYearDecision(False, "MID_YEAR_NOT_ALLOWED", "集中缴费期外原则上不得中途参保")


def wuming(on: date, birth: date | None = None, hardship_or_special: bool = False) -> MidYearDecision:
    if on.month <= 6:
        return MidYearDecision(True, "LATE_WINDOW", "每年1月1日至6月30日可办理当年度参保缴费（中断缴费及逾期缴费人员）",
                               "individual")
    if birth is not None and 0 <= months_between(birth, on) < 3:
        return MidYearDecision(True, "NEWBORN_3_MONTHS", "出生未超过3个月的新生儿可办理当年度参保缴费", "individual")
    if hardship_or_special:
        return MidYearDecision(True, "HARDSHIP", "困难、特殊人群可办理当年度参保缴费", "individual")
    return MidYearDecision(False, "MID_YEAR_CLOSED", "每年7月1日至12月31日不再办理当年度参保缴费")


RULES_BY_COUNTY = {"东安县": "dongan", "武鸣区": "wuming"}


def decide(county: str, on: date, birth: date | None = None, special_case: str | None = None,
           hardship_or_special: bool = False) -> MidYearDecision:
    rules = RULES_BY_COUNTY.get(county)
    if rules == "dongan":
        return dongan(on, birth, special_case)
    if rules == "wuming":
        return wuming(on, birth, hardship_or_special or special_case is not None)
    return MidYearDecision(False, "NO_MID_YEAR_RULES", "本县政策文件未规定中途参保规则")


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
        "benefits_from": d.benefits_from.isoformat() if d.benefits_from else None, "version": version})


def withdrawn_event(approval: dict, reason: str, on: date, version: int) -> Event:
    """registry.mid_year.withdrawn: an approval recorded in error is withdrawn before its payment."""
    return Event("registry.mid_year.withdrawn", {
        "household_no": approval["household_no"], "year": approval["year"], "county": approval["county"],
        "township": approval["township"], "village": approval["village"], "person_id": approval["person_id"],
        "reason": reason, "withdrawn_on": on.isoformat(), "version": version})

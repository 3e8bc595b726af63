"""What a person's identities entitle them to for a policy year (资助待遇), and why.

Rules (001_93f5b63ac6b4a653.txt 六):
- the collector charges by the payer's identity at the time of payment (依据缴费人当前身份进行征收);
- after payment the year is frozen: an identity change is neither topped up nor refunded (不再补退);
- people who became hardship cases after 2019-10-01 pay in full first and are reimbursed (全额缴费、
  先缴后补): their subsidy is not deducted at the counter but becomes a reimbursement claim;
- several identities: the most favourable one counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from shared.clock import SHANGHAI
from shared.money import yuan

from .rules import CategoryRule, SubsidyRules


@dataclass(frozen=True)
class Entitlement:
    id_number: str
    year: int
    category: str | None
    subsidy_fen: int          # deducted at the counter (直接代缴 by the department)
    full_coverage: bool
    department: str | None
    standard_fen: int
    effective_from: date | None
    reimbursable_fen: int     # 先缴后补: reimbursed after paying in full
    configured: bool          # False: the category has no amount in the policy (reported, not invented)
    frozen: bool
    reason: str
    categories: tuple[str, ...] = ()

    @property
    def payable_fen(self) -> int:
        return self.standard_fen - self.subsidy_fen

    def event_key(self) -> tuple:
        return (self.category, self.subsidy_fen, self.full_coverage, self.department)

    def event_payload(self) -> dict[str, Any]:
        return {"person_id": self.id_number, "year": self.year, "category": self.category,
                "subsidy_fen": self.subsidy_fen, "full_coverage": self.full_coverage, "department": self.department,
                "effective_from": (self.effective_from or date(self.year - 1, 1, 1)).isoformat(),
                "reason": self.reason}


def _fen(rule: CategoryRule | None, rules: SubsidyRules) -> int:
    return rule.subsidy_of(rules.standard_fen) if rule is not None and rule.configured else 0


def entitlement_from(rules: SubsidyRules, id_number: str, granted: dict[str, date]) -> Entitlement:
    """From the categories in force (category → effective date) to the year's entitlement."""
    granted = {c: d for c, d in granted.items() if rules.category(c) is not None}
    established = {c: d for c, d in granted.items() if d <= rules.new_after}
    new = {c: d for c, d in granted.items() if d > rules.new_after}
    counter, later = rules.best(established), rules.best(new)
    counter_fen, later_fen = _fen(counter, rules), _fen(later, rules)
    reimbursable = max(0, later_fen - counter_fen)
    std = rules.standard_fen
    if counter is None and later is None:
        return Entitlement(id_number, rules.year, None, 0, False, None, std, None, 0, True, False,
                           f"无困难群众身份，按个人缴费标准{yuan(std)}元缴纳")
    shown = counter if counter is not None and (counter.configured or later is None or not later.configured) else later
    since = granted[shown.code]
    if shown is counter:
        if not counter.configured:
            reason = f"{counter.name}：本年度资助标准未配置（文件：“{counter.rule}”），暂按个人缴费标准{yuan(std)}元缴纳"
        elif counter.full_coverage:
            reason = f"{counter.name}：个人缴费部分全额资助，由{rules.department_name(counter.department)}直接代缴"
        else:
            reason = (f"{counter.name}：资助{yuan(counter_fen)}元，由{rules.department_name(counter.department)}"
                      f"直接代缴，个人缴纳{yuan(std - counter_fen)}元")
    else:
        reason = f"{later.name}（{since.isoformat()}起）"
    if reimbursable:
        reason += (f"；{rules.new_after:%Y年%-m月%-d日}之后新增的困难群众（{later.name}，{granted[later.code].isoformat()}起）"
                   f"全额缴费、先缴后补，可报销{yuan(reimbursable)}元")
    elif later is not None and not later.configured and shown is later:
        reason += f"：本年度资助标准未配置（文件：“{later.rule}”），按个人缴费标准{yuan(std)}元缴纳"
    full = shown is counter and counter.full_coverage
    department = shown.department if shown is counter else later.department
    return Entitlement(id_number, rules.year, shown.code, counter_fen if shown is counter else 0, full, department,
                       std, since, reimbursable, shown.configured, False, reason,
                       tuple(sorted(granted, key=rules.rank)))


def frozen_entitlement(rules: SubsidyRules, freeze: dict[str, Any], claim: dict[str, Any] | None) -> Entitlement:
    """The year as paid: what was charged at payment time stays (缴费后……不再补退)."""
    paid_at = freeze["paid_at"].astimezone(SHANGHAI) if isinstance(freeze["paid_at"], datetime) else freeze["paid_at"]
    cat = rules.category(freeze["category"]) if freeze.get("category") else None
    what = f"按缴费时身份（{cat.name}）" if cat else "缴费时无困难群众身份"
    reason = (f"已于{paid_at:%Y年%m月%d日}缴费，资助{yuan(freeze['subsidy_fen'])}元、个人缴纳{yuan(freeze['payable_fen'])}元，"
              f"{what}；缴费后身份变化不再补退")
    reimb = 0
    if claim is not None:
        reimb = claim["amount_fen"]
        reason += f"；先缴后补报销{yuan(reimb)}元（{'已支付' if claim['status'] == 'paid' else '待支付'}）"
    return Entitlement(freeze["id_number"], freeze["year"], freeze.get("category"), freeze["subsidy_fen"],
                       freeze["subsidy_fen"] == freeze["standard_fen"] and freeze["subsidy_fen"] > 0,
                       freeze.get("department"), freeze["standard_fen"], paid_at.date(), reimb, True, True, reason)


@dataclass(frozen=True)
class ClaimDue:
    category: CategoryRule
    amount_fen: int
    effective_date: date


def reimbursement_due(rules: SubsidyRules, granted_now: dict[str, date], charged_subsidy_fen: int) -> ClaimDue | None:
    """先缴后补: an identity that took effect after the cutoff (and within the policy year) entitles a
    person who paid more than it allows to the difference. Identities in force before the cutoff
    are charged at the counter and never reimbursed (不再补退)."""
    year_end = date(rules.year, 12, 31)
    new = {c: d for c, d in granted_now.items() if rules.new_after < d <= year_end and rules.category(c)}
    best = rules.best(new)
    if best is None or not best.configured:
        return None
    amount = best.subsidy_of(rules.standard_fen) - charged_subsidy_fen
    return ClaimDue(best, amount, new[best.code]) if amount > 0 else None

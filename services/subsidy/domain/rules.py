"""Subsidy rules of a policy year (困难群众参保资助标准): per hardship category, a subsidy in fen or
full coverage, the department that pays it, and the cutoff after which new cases pay first.

Read from the "subsidy" section of the policy file, which quotes its document (Dong'an:
001_93f5b63ac6b4a653.txt 六). A category the document names without a figure (持证残疾人 "按相关文件
规定标准资助") has no configured amount: it is reported as such, never given an invented one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

# Every hardship category (困难群众身份类别) the suite knows; a policy year says which ones it funds.
CATEGORY_NAMES: dict[str, str] = {
    "registered_poor": "建档立卡贫困人口",
    "dibao_urban": "城镇低保对象",
    "dibao_rural": "农村低保对象",
    "extreme_poverty": "特困供养人员",
    "poverty_exit_floor": "社会保障兜底脱贫对象",
    "poor_disabled": "贫困残疾人",
    "certified_disabled": "持证残疾人",
    "wubao": "五保户",
    "only_child": "独生子女户",
    "two_daughters": "双女结扎户",
    "dibao": "低保户",  # Wuming 2018 names 低保户 without urban / rural
    "disabled": "残疾人",  # Wuming 2018: 残疾人, no certificate or poverty condition printed
}

# Systems that publish identity updates (身份标识来源).
SOURCE_NAMES: dict[str, str] = {
    "civil_affairs": "民政局",
    "poverty_office": "扶贫办",
    "disabled_federation": "残联",
    "health_commission": "卫计局",
}


class RulesError(ValueError):
    """The policy file's subsidy section is wrong; the service refuses to start on it."""


@dataclass(frozen=True)
class CategoryRule:
    code: str
    subsidy_fen: int | None  # None: the document names the group but gives no figure
    full_coverage: bool      # 全额资助: the whole individual contribution
    department: str | None   # 资助部门, pays directly into the county fiscal account (直接代缴)
    sources: tuple[str, ...]  # systems allowed to grant or revoke it
    rule: str                # the sentence of the document

    @property
    def name(self) -> str:
        return CATEGORY_NAMES[self.code]

    @property
    def configured(self) -> bool:
        return self.full_coverage or self.subsidy_fen is not None

    def subsidy_of(self, standard_fen: int) -> int:
        if self.full_coverage:
            return standard_fen
        return min(self.subsidy_fen or 0, standard_fen)


@dataclass(frozen=True)
class SubsidyRules:
    year: int
    standard_fen: int
    new_after: date            # 先缴后补 for cases whose identity takes effect after this day
    categories: dict[str, CategoryRule]
    departments: dict[str, str] = field(default_factory=dict)  # code → zh name
    new_rule: str = ""
    freeze_rule: str = ""

    def category(self, code: str) -> CategoryRule | None:
        return self.categories.get(code)

    def rank(self, code: str) -> tuple:
        """Sort key, most favourable first: full coverage, then the larger subsidy, then configured."""
        r = self.categories[code]
        order = list(self.categories).index(code)
        return (not r.full_coverage, -(r.subsidy_of(self.standard_fen) if r.configured else -1), order)

    def best(self, codes) -> CategoryRule | None:
        """A person with several identities gets the most favourable one."""
        known = [c for c in set(codes) if c in self.categories]
        return self.categories[min(known, key=self.rank)] if known else None

    def department_name(self, code: str | None) -> str | None:
        return self.departments.get(code, code) if code else None


def parse_subsidy_rules(raw_policy: dict) -> SubsidyRules:
    """The policy file's "subsidy" section, checked: amounts are integer fen, names are known."""
    try:
        sec = raw_policy["subsidy"]
        standard = raw_policy["standard_fen"]
        # no cutoff printed (Nayong 2017): every identity counts as established, none is 先缴后补
        new_after = date.fromisoformat(sec["new_hardship_after"]) if sec.get("new_hardship_after") else date.max
        departments = dict(sec.get("departments", {}))
        cats: dict[str, CategoryRule] = {}
        for row in sec["categories"]:
            code = row["code"]
            if code not in CATEGORY_NAMES:
                raise RulesError(f"unknown hardship category {code}")
            if code in cats:
                raise RulesError(f"category {code} listed twice")
            fen = row.get("subsidy_fen")
            full = bool(row.get("full_coverage", False))
            if fen is not None and (not isinstance(fen, int) or isinstance(fen, bool) or fen < 0):
                raise RulesError(f"{code}: subsidy_fen must be a non-negative integer (fen) or null")
            if fen is not None and fen > standard:
                raise RulesError(f"{code}: subsidy {fen} exceeds the individual standard {standard}")
            if full and fen is not None:
                raise RulesError(f"{code}: full_coverage and subsidy_fen exclude each other")
            dept = row.get("department")
            if dept is not None and dept not in departments:
                raise RulesError(f"{code}: unknown department {dept}")
            if (full or fen is not None) and dept is None:
                raise RulesError(f"{code}: a funded category needs the department that pays it")
            sources = tuple(row.get("sources") or SOURCE_NAMES)
            bad = [s for s in sources if s not in SOURCE_NAMES]
            if bad:
                raise RulesError(f"{code}: unknown source systems {bad}")
            cats[code] = CategoryRule(code, fen, full, dept, sources, row.get("rule", ""))
        if not cats:
            raise RulesError("no hardship categories configured")
    except KeyError as e:
        raise RulesError(f"policy file subsidy section is missing {e}") from e
    return SubsidyRules(raw_policy["year"], standard, new_after, cats, departments,
                        sec.get("new_hardship_rule", ""), sec.get("freeze_rule", ""))

"""Hardship identities (困难群众身份标识) of one person, as civil affairs (民政), the poverty office
(扶贫办) and the disabled persons' federation (残联) grant and revoke them.

Rule: 001_93f5b63ac6b4a653.txt 六/七(五): the departments mark identities (做好特殊人员标识) and the
systems are compared and updated in time (及时比对更新). Every update is judged on its own:
applied, unchanged, duplicate (the same source reference again: one effect), or rejected with a
code — and a rejected update changes nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared.resident_id import parse_resident_id
from shared.clock import SHANGHAI
from shared.errors import ValidationFailed

from .rules import CATEGORY_NAMES, SOURCE_NAMES, SubsidyRules

ACTIONS = ("grant", "revoke")
_REF = re.compile(r"^[0-9A-Za-z._:/-]{1,80}$")


class Rejected(Exception):
    """An update refused with a stable code and a zh-CN reason; nothing was changed."""

    def __init__(self, code: str, message: str, details: Any = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.details = code, message, details


@dataclass(frozen=True)
class IdentityUpdate:
    id_number: str
    category: str
    action: str          # grant | revoke
    effective_date: date
    source_system: str
    source_ref: str      # the publisher's own reference; (source_system, source_ref) identifies the update

    @property
    def key(self) -> str:
        return f"{self.source_system}:{self.source_ref}"

    def same_as(self, other: dict) -> bool:
        return (other.get("id_number"), other.get("category"), other.get("action"), other.get("effective_date")) == (
            self.id_number, self.category, self.action, self.effective_date.isoformat())

    def to_doc(self) -> dict[str, Any]:
        return {"id_number": self.id_number, "category": self.category, "action": self.action,
                "effective_date": self.effective_date.isoformat(), "source_system": self.source_system,
                "source_ref": self.source_ref}


def parse_update(raw: Any, rules: SubsidyRules) -> IdentityUpdate:
    """Checks that need no stored state: fields, ID number, category, action, date, source."""
    if not isinstance(raw, dict):
        raise Rejected("NOT_AN_OBJECT", "身份变更消息必须是 JSON 对象")
    missing = [f for f in ("id_number", "category", "action", "effective_date", "source_system", "source_ref")
               if not isinstance(raw.get(f), str) or not raw.get(f).strip()]
    if missing:
        raise Rejected("MISSING_FIELD", "缺少必填字段：" + "、".join(missing), {"fields": missing})
    source = raw["source_system"].strip()
    if source not in SOURCE_NAMES:
        raise Rejected("UNKNOWN_SOURCE", "未知的来源系统", {"source_system": source, "known": list(SOURCE_NAMES)})
    ref = raw["source_ref"].strip()
    if not _REF.match(ref):
        raise Rejected("BAD_SOURCE_REF", "来源业务编号应为1至80位字母、数字或 ._:/-", {"source_ref": ref[:80]})
    try:
        rid = parse_resident_id(raw["id_number"])
    except ValidationFailed as e:
        raise Rejected(e.code, e.message) from None
    category = raw["category"].strip()
    rule = rules.category(category)
    if rule is None:
        known = {c: CATEGORY_NAMES[c] for c in rules.categories}
        raise Rejected("UNKNOWN_CATEGORY", f"{rules.year}年度资助政策中没有该身份类别", {"category": category[:40],
                                                                                "known": known})
    if source not in rule.sources:
        raise Rejected("SOURCE_NOT_ISSUER", f"{SOURCE_NAMES[source]}不是“{rule.name}”身份的认定部门",
                       {"category": category, "issuers": list(rule.sources)})
    action = raw["action"].strip()
    if action not in ACTIONS:
        raise Rejected("BAD_ACTION", "变更类型只能是 grant（认定）或 revoke（取消）", {"action": action[:20]})
    try:
        eff = date.fromisoformat(raw["effective_date"].strip())
    except ValueError:
        raise Rejected("BAD_EFFECTIVE_DATE", "生效日期应为 YYYY-MM-DD", {"effective_date": raw["effective_date"][:20]})
    return IdentityUpdate(rid.number, category, action, eff, source, ref)


@dataclass
class PersonIdentities:
    """One person's applied updates, in the order they were applied (the aggregate)."""

    id_number: str
    history: list[dict[str, Any]] = field(default_factory=list)
    # {key, category, action, effective_date (date), source_system, source_ref, recorded_at (datetime)}

    def latest(self, category: str) -> dict[str, Any] | None:
        rows = [h for h in self.history if h["category"] == category]
        return rows[-1] if rows else None

    def apply(self, u: IdentityUpdate, recorded_at: datetime) -> str:
        """Returns "applied" or "unchanged"; raises Rejected for a stale update or a revoke of nothing."""
        if any(h["key"] == u.key for h in self.history):
            return "duplicate"
        last = self.latest(u.category)
        if last is not None and u.effective_date < last["effective_date"]:
            raise Rejected("OUT_OF_ORDER", "该变更的生效日期早于已处理的同类身份变更，视为过期消息，未处理",
                           {"effective_date": u.effective_date.isoformat(),
                            "latest_effective_date": last["effective_date"].isoformat(),
                            "latest_source_ref": last["source_ref"]})
        granted = last is not None and last["action"] == "grant"
        if u.action == "revoke" and not granted:
            raise Rejected("REVOKE_NOT_GRANTED", "该人员当前没有此身份，无法取消", {"category": u.category})
        if u.action == "grant" and granted:
            return "unchanged"
        self.history.append({"key": u.key, "category": u.category, "action": u.action,
                             "effective_date": u.effective_date, "source_system": u.source_system,
                             "source_ref": u.source_ref, "recorded_at": recorded_at})
        return "applied"

    def granted_on(self, day: date, known_at: datetime | None = None) -> dict[str, date]:
        """Categories in force on `day` as known at `known_at`: category → the date it took effect."""
        out: dict[str, date] = {}
        for cat in {h["category"] for h in self.history}:
            rows = [h for h in self.history if h["category"] == cat and h["effective_date"] <= day
                    and (known_at is None or h["recorded_at"] <= known_at)]
            if rows and rows[-1]["action"] == "grant":
                out[cat] = rows[-1]["effective_date"]
        return out

    def granted_at(self, at: datetime) -> dict[str, date]:
        """In force at an instant: effective by its Shanghai calendar day and already recorded."""
        return self.granted_on(at.astimezone(SHANGHAI).date(), known_at=at)

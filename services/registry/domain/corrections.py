"""Correction requests (信息更正): township staff report a roster error, county staff fix it.

Rule: 001_93f5b63ac6b4a653.txt 七(一) — errors found in the roster go from the township to the
county bureau, which must finish the change within 3 working days (县医保局要在3个工作日内完成医保系统
信息修改). Working days follow the holiday schedule (shared.workdays).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared.clock import SHANGHAI, iso, shanghai_end_of_day
from shared.errors import Conflict, ValidationFailed
from shared.events import Event
from shared.resident_id import parse_resident_id
from shared.workdays import add_working_days

from .model import CATEGORIES, RELATIONS

LIMIT_WORKING_DAYS = 3
FIELDS = ("name", "id_number", "relation", "category", "birth_date", "sex", "village", "head_phone")


@dataclass
class Correction:
    correction_id: str
    household_no: str
    year: int
    township: str
    village: str
    person_id: str | None
    changes: dict[str, Any]
    reason: str
    filed_by: str
    filed_at: datetime
    due_at: datetime
    status: str = "open"  # open → approved | rejected
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_note: str | None = None
    overdue_reported: bool = False
    events: list[Event] = field(default_factory=list)

    @classmethod
    def file(cls, correction_id: str, household, person_id: str | None, changes: dict[str, Any], reason: str,
             filed_by: str, at: datetime) -> "Correction":
        unknown = set(changes) - set(FIELDS)
        if not changes or unknown:
            raise ValidationFailed("CORRECTION_FIELDS", "更正内容为空或含有不允许更正的字段", {"fields": sorted(unknown)})
        for k, v in changes.items():
            check_value(k, v)
        if person_id is not None and person_id not in {m.person_id for m in household.members}:
            raise ValidationFailed("PERSON_NOT_IN_HOUSEHOLD", "该人员不在此户", {"household_no": household.household_no})
        return cls(correction_id, household.household_no, household.year, household.township, household.village,
                   person_id, changes, reason, filed_by, at, due(at))

    def decide(self, approve: bool, by: str, at: datetime, note: str | None) -> None:
        if self.status != "open":
            raise Conflict("CORRECTION_DECIDED", "该更正申请已处理", {"status": self.status})
        self.status = "approved" if approve else "rejected"
        self.decided_by, self.decided_at, self.decision_note = by, at, note

    def is_overdue(self, at: datetime) -> bool:
        return self.status == "open" and at > self.due_at

    def overdue_event(self) -> Event:
        return Event("registry.correction.overdue", {
            "correction_id": self.correction_id, "household_no": self.household_no, "year": self.year,
            "township": self.township, "village": self.village, "filed_at": iso(self.filed_at),
            "due_at": iso(self.due_at)})


_PHONE = re.compile(r"1[3-9][0-9]{9}")
_RULES = {"name": "1至50个字的姓名", "relation": "、".join(RELATIONS) + " 之一",
          "category": "、".join(CATEGORIES) + " 之一", "birth_date": "日期 YYYY-MM-DD", "sex": "M 或 F",
          "village": "村（社区）名称", "head_phone": "11位手机号码", "id_number": "有效的18位居民身份证号码"}


def check_value(k: str, v: Any) -> None:
    """Each change checked when filed, as registration checks it: an approval must never write what
    the roster cannot hold (nor crash on it). The value itself is not echoed (it may be a number)."""
    ok = isinstance(v, str)
    if ok and k == "name":
        ok = 1 <= len(v.strip()) <= 50
    elif ok and k == "relation":
        ok = v in RELATIONS
    elif ok and k == "category":
        ok = v in CATEGORIES
    elif ok and k == "sex":
        ok = v in ("M", "F")
    elif ok and k == "village":
        ok = 1 <= len(v.strip()) <= 50
    elif ok and k == "head_phone":
        ok = bool(_PHONE.fullmatch(v))
    elif ok and k == "birth_date":
        try:
            date.fromisoformat(v)
        except ValueError:
            ok = False
    elif ok and k == "id_number":
        try:
            parse_resident_id(v, field="changes.id_number")
        except ValidationFailed:
            ok = False
    if not ok:
        raise ValidationFailed("CORRECTION_VALUE", f"更正字段 {k} 的值无效（应为{_RULES[k]}）", {"field": k})


def due(filed_at: datetime) -> datetime:
    """End of the 3rd working day after the day of filing (Shanghai calendar)."""
    filed_day: date = filed_at.astimezone(SHANGHAI).date()
    return shanghai_end_of_day(add_working_days(filed_day, LIMIT_WORKING_DAYS))

"""The tax bureau's payment audit (缴款审核): within 3 working days of payment, all before Dec 25
(001 七(二): 税务局应于3个工作日内完成缴款审核工作……应在12月25日前完成全县缴款审核工作).

Working days follow the State Council's holiday schedule, including the weekend days worked in
exchange (调休), through shared.workdays: payments' own calendar (the schedules registry published)
when the caller gives it; a due date counted through an estimated year says so.
"""
from __future__ import annotations

from datetime import date

from shared.workdays import Deadline, WorkCalendar, working_days_after

AUDIT_WORKING_DAYS = 3


def audit_deadline(paid_day: date, year: int, calendar: WorkCalendar | None = None) -> Deadline:
    """The last day the audit may be done: 3 working days after payment, but not after Dec 25 of
    the collection year unless the payment itself came later; `estimated` if the count relied on a
    year whose holiday schedule is not loaded (kept even when capped: the real count might be earlier)."""
    due = working_days_after(paid_day, AUDIT_WORKING_DAYS, calendar)
    county_deadline = date(year - 1, 12, 25)
    if paid_day <= county_deadline and county_deadline < due.day:
        return Deadline(county_deadline, due.estimated, due.estimated_years)
    return due


def audit_due(paid_day: date, year: int, calendar: WorkCalendar | None = None) -> date:
    return audit_deadline(paid_day, year, calendar).day


def overdue(paid_day: date, year: int, today: date, calendar: WorkCalendar | None = None) -> bool:
    return today > audit_due(paid_day, year, calendar)

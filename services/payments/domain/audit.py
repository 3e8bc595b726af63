"""The tax bureau's payment audit (缴款审核): within 3 working days of payment, all before Dec 25
(001 七(二): 税务局应于3个工作日内完成缴款审核工作……应在12月25日前完成全县缴款审核工作).

Working days follow the State Council's holiday schedule, including the weekend days worked in
exchange (调休), through shared.workdays.
"""
from __future__ import annotations

from datetime import date

from shared.workdays import add_working_days

AUDIT_WORKING_DAYS = 3


def audit_due(paid_day: date, year: int) -> date:
    """The last day the audit may be done: 3 working days after payment, but not after Dec 25 of
    the collection year unless the payment itself came later."""
    due = add_working_days(paid_day, AUDIT_WORKING_DAYS)
    county_deadline = date(year - 1, 12, 25)
    return min(due, county_deadline) if paid_day <= county_deadline else due


def overdue(paid_day: date, year: int, today: date) -> bool:
    return today > audit_due(paid_day, year)

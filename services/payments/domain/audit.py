"""The tax bureau's payment audit (缴款审核): within 3 working days of payment, all before Dec 25
(001 七(二): 税务局应于3个工作日内完成缴款审核工作……应在12月25日前完成全县缴款审核工作).

Working days follow the State Council's holiday schedule, including the weekend days worked in
exchange (调休), through shared.workdays: payments' own calendar (the schedules registry published)
when the caller gives it; a due date counted through an estimated year says so.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from shared.events import Event
from shared.workdays import Deadline, WorkCalendar, working_days_after

AUDIT_WORKING_DAYS = 3


def audit_deadline(paid_day: date, year: int, calendar: WorkCalendar | None = None) -> Deadline:
    """The last day the audit may be done: 3 working days after payment, but not after Dec 25 of
    the collection year unless the payment itself came later; `estimated` if the count relied on a
    year whose holiday schedule is not loaded (kept even when capped: the real count might be earlier)."""
    due = working_days_after(paid_day, AUDIT_WORKING_DAYS, calendar)
    last = county_deadline(year)
    if paid_day <= last < due.day:
        return Deadline(last, due.estimated, due.estimated_years)
    return due


def county_deadline(year: int) -> date:
    """12月25日前完成全县缴款审核工作 (001 七(二)), in the collection year (the one before the policy year)."""
    return date(year - 1, 12, 25)


def audit_due(paid_day: date, year: int, calendar: WorkCalendar | None = None) -> date:
    return audit_deadline(paid_day, year, calendar).day


def overdue(paid_day: date, year: int, today: date, calendar: WorkCalendar | None = None) -> bool:
    return today > audit_due(paid_day, year, calendar)


def overdue_digest(rows: list[dict[str, Any]], year: int, county: str, as_of: str) -> Event:
    """payments.audits.overdue: the day's overdue audits (rows of handlers.overdue_audits) summed per
    township, most first, with the oldest payment's day and the county's Dec 25 deadline."""
    by_town: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = by_town.setdefault(r["township"], {"township": r["township"], "payments": 0, "amount_fen": 0,
                                               "oldest_paid_day": r["paid_day"]})
        t["payments"] += 1
        t["amount_fen"] += r["amount_fen"]
        t["oldest_paid_day"] = min(t["oldest_paid_day"], r["paid_day"])
    return Event("payments.audits.overdue", {
        "year": year, "county": county, "as_of": as_of, "payments": len(rows),
        "amount_fen": sum(r["amount_fen"] for r in rows), "oldest_paid_day": min(r["paid_day"] for r in rows),
        "county_deadline": county_deadline(year).isoformat(),
        "townships": sorted(by_town.values(), key=lambda t: (-t["payments"], t["township"]))})

"""Chinese working days (工作日): the State Council's holidays and the weekend days worked in exchange
(调休), from `chinese_calendar`. Deadlines such as "within 3 working days" count these.
"""
from __future__ import annotations

import logging
from datetime import date, timedelta

import chinese_calendar

log = logging.getLogger(__name__)
_warned: set[int] = set()


def is_working_day(d: date) -> bool:
    try:
        return chinese_calendar.is_workday(d)
    except NotImplementedError:  # the library has no schedule for that year yet: Monday to Friday
        if d.year not in _warned:
            _warned.add(d.year)
            log.warning("no holiday schedule for %s in chinese_calendar; counting Monday-Friday", d.year)
        return d.weekday() < 5


def add_working_days(start: date, n: int) -> date:
    """The n-th working day after `start` (the starting day itself does not count)."""
    d, left = start, n
    while left:
        d += timedelta(days=1)
        if is_working_day(d):
            left -= 1
    return d

"""Working days beyond the library's last published year.

- 《全国年节及纪念日放假办法》第二条 as revised by 国务院令第795号 (in force 2025-01-01): 元旦，放假1天（1月1日）；
  劳动节，放假2天（5月1日、2日）；国庆节，放假3天（10月1日至3日）. 春节、清明、端午、中秋 follow the lunar calendar or a
  solar term: no fixed-date rule, only the yearly notice (国务院办公厅关于Y年部分节假日安排的通知) with its 调休.
- 001_93f5b63ac6b4a653.txt 七(二): 税务局应于3个工作日内完成缴款审核 — the deadlines these days count.
"""
from datetime import date

import chinese_calendar
import pytest

from shared import workdays
from shared.config import ROOT
from shared.workdays import (ScheduleError, YearSchedule, add_working_days, fixed_date_holidays, is_working_day,
                             load_schedule_file, parse_schedule, working_days_after)

SCHEDULE_2027 = {
    "year": 2027, "source": "测试用 2027 年节假日安排（非官方，仅用于测试）",
    "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-03"},
                 {"name": "春节", "from": "2027-02-05", "to": "2027-02-12"},
                 {"name": "劳动节", "from": "2027-05-01", "to": "2027-05-05"},
                 {"name": "国庆节", "from": "2027-10-01", "to": "2027-10-07"}],
    "workdays": [{"name": "春节", "date": "2027-02-13"}, {"name": "国庆节", "date": "2027-10-09"}],
}


@pytest.fixture
def clean():
    yield
    workdays.uninstall(2027)


def test_the_pinned_library_has_no_2027_data():
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2027, 1, 4))


def test_new_years_day_2027_is_a_holiday_by_rule_and_the_deadline_says_it_is_an_estimate(clean):
    # before: 2027-01-01 (a Friday) was counted as a working day
    assert not is_working_day(date(2027, 1, 1))
    assert not is_working_day(date(2027, 5, 1)) and not is_working_day(date(2027, 10, 1))
    d = working_days_after(date(2026, 12, 31), 3)
    assert d.day == date(2027, 1, 6) and d.estimated and d.estimated_years == (2027,)


def test_the_fixed_date_holidays_follow_the_2025_revision():
    assert date(2027, 5, 2) in fixed_date_holidays(2027)
    assert date(2024, 5, 2) not in fixed_date_holidays(2024)  # 国务院令第644号: 劳动节 1 day
    assert set(fixed_date_holidays(2027).values()) == {"元旦", "劳动节", "国庆节"}  # no lunar holiday by a date rule


def test_a_loaded_schedule_counts_its_days_off_and_its_make_up_working_days(clean):
    workdays.install(parse_schedule(SCHEDULE_2027))
    assert not is_working_day(date(2027, 2, 8))  # Monday in 春节
    assert is_working_day(date(2027, 2, 13))      # Saturday worked (调休)
    d = working_days_after(date(2027, 2, 4), 2)   # Thursday before the break
    assert (d.day, d.estimated) == (date(2027, 2, 15), False)  # 2-13 (Sat, worked) then 2-15 (Mon)


def test_a_year_the_library_publishes_is_not_an_estimate():
    d = working_days_after(date(2019, 9, 30), 3)  # 国庆 2019: Oct 1-7 off, Oct 12 (Sat) worked
    assert (d.day, d.estimated) == (date(2019, 10, 10), False)
    assert add_working_days(date(2019, 10, 10), 3) == date(2019, 10, 14)  # existing callers unchanged


def test_the_shipped_2026_file_matches_the_published_schedule():
    s = load_schedule_file(ROOT / "policies" / "holidays" / "2026.json")
    day = date(2026, 1, 1)
    while day.year == 2026:
        assert chinese_calendar.is_workday(day) == (day in s.workdays or (day.weekday() < 5 and day not in s.holidays)), day
        day = day.fromordinal(day.toordinal() + 1)


@pytest.mark.parametrize("change, field", [
    ({"year": "2027"}, "year"),
    ({"workdays": [{"name": "春节", "date": "2027-02-10"}]}, "workdays[0].date"),  # a Wednesday: not a make-up day
    ({"holidays": [{"name": "元旦", "from": "2027-01-03", "to": "2027-01-01"}]}, "holidays[0].to"),
    ({"holidays": [{"name": "春节", "from": "2027-02-05", "to": "2027-02-12"}]}, "holidays"),  # 元旦 etc. missing
    ({"extra": 1}, "extra"),
])
def test_a_bad_schedule_is_refused_naming_the_field(change, field):
    with pytest.raises(ScheduleError) as e:
        parse_schedule(dict(SCHEDULE_2027, **change), "2027.json")
    assert field in e.value.errors, e.value.errors
    assert str(e.value).startswith("2027.json: ")


def test_a_file_named_for_another_year_is_refused(tmp_path):
    import json
    (tmp_path / "2028.json").write_text(json.dumps(SCHEDULE_2027, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ScheduleError):
        load_schedule_file(tmp_path / "2028.json")


def test_schedules_from_a_source_are_used_and_reread(clean):
    calls = []

    def source():
        calls.append(1)
        return [parse_schedule(SCHEDULE_2027)]
    workdays.use_source(source, ttl_s=0)
    try:
        assert workdays.schedule_source(2027) == "official" and is_working_day(date(2027, 2, 13))
        assert len(calls) >= 2
    finally:
        workdays.use_source(None)
    assert isinstance(workdays._installed[2027], YearSchedule)


def test_a_service_calendar_counts_its_own_source_and_not_the_default_calendars_schedules(clean):
    """Payments counts the schedules registry published (its read model), not what registry's code
    installed into the same process's default calendar."""
    mine = workdays.WorkCalendar(source=lambda: [parse_schedule(SCHEDULE_2027)], ttl_s=0)
    assert workdays.is_estimated(2027) and not mine.is_estimated(2027)
    assert mine.working_days_after(date(2027, 2, 4), 2) == workdays.Deadline(date(2027, 2, 15), False, ())
    other = workdays.WorkCalendar(source=lambda: [])
    workdays.install(parse_schedule(SCHEDULE_2027))
    assert other.is_estimated(2027) and other.working_days_after(date(2027, 2, 4), 2).estimated

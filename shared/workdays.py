"""Chinese working days (工作日): the State Council's holidays and the weekend days worked in exchange
(调休). Deadlines such as "within 3 working days" count these.

Where a year's schedule comes from, first that applies:
1. an official schedule loaded by county staff: a file under policies/holidays/ (read at first use) or
   registry's holiday API (stored in its database, installed here through `use_source`; other services
   get them through registry.holidays.published and build their own `WorkCalendar` on their read model);
2. the schedules published in `chinese_calendar` (the pinned version knows years up to its last release);
3. an **estimate**: Monday-Friday minus the holidays fixed by date in 《全国年节及纪念日放假办法》
   (as revised by 国务院令第795号, in force 2025-01-01: 元旦 1月1日, 劳动节 5月1日、2日, 国庆节 10月1日至3日;
   before 2025, 国务院令第644号: 劳动节 5月1日 only). 春节 (除夕至正月初三), 端午 and 中秋 follow the lunar calendar
   and 清明 a solar term: no fixed-date rule gives them, and the yearly 调休 and the weekday given in lieu
   of a holiday on a weekend (补假) are set only by each year's notice. So every deadline computed
   through an estimated year says so (`Deadline.estimated`) until that year's schedule is loaded.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, Iterable

import chinese_calendar
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

log = logging.getLogger(__name__)

HOLIDAYS_DIR = Path(__file__).resolve().parent.parent / "policies" / "holidays"


def fixed_date_holidays(year: int) -> dict[date, str]:
    """The statutory holidays known by date alone for `year` (全国年节及纪念日放假办法 第二条)."""
    days = {date(year, 1, 1): "元旦", date(year, 5, 1): "劳动节",
            date(year, 10, 1): "国庆节", date(year, 10, 2): "国庆节", date(year, 10, 3): "国庆节"}
    if year >= 2025:  # 国务院令第795号: 劳动节，放假2天（5月1日、2日）
        days[date(year, 5, 2)] = "劳动节"
    return days


@dataclass(frozen=True)
class YearSchedule:
    """One year's official schedule: its days off (放假) and the weekend days worked (调休上班)."""
    year: int
    source: str
    holidays: dict[date, str] = field(default_factory=dict)
    workdays: dict[date, str] = field(default_factory=dict)

    def to_doc(self) -> dict:
        return {"year": self.year, "source": self.source,
                "holidays": [{"date": d.isoformat(), "name": n} for d, n in sorted(self.holidays.items())],
                "workdays": [{"date": d.isoformat(), "name": n} for d, n in sorted(self.workdays.items())]}


class ScheduleError(ValueError):
    def __init__(self, message: str, file: str = "", errors: dict | None = None):
        self.file, self.errors = file, errors or {}
        super().__init__(f"{file}: {message}" if file else message)


# ---- the file / API format -------------------------------------------------------------------------

class _Strict(Schema):
    class Meta:
        unknown = RAISE


class HolidayRange(_Strict):
    name = fields.String(required=True, validate=validate.Length(min=1), metadata={"description": "节日，如 春节"})
    starts = fields.Date(required=True, data_key="from", metadata={"description": "放假首日"})
    ends = fields.Date(required=True, data_key="to", metadata={"description": "放假末日（含）"})

    @validates_schema
    def _order(self, data, **_):
        if data["ends"] < data["starts"]:
            raise ValidationError("放假末日早于首日", "to")
        if (data["ends"] - data["starts"]).days > 15:
            raise ValidationError("一段假期不超过 15 天", "to")


class MakeUpDay(_Strict):
    date = fields.Date(required=True, metadata={"description": "调休上班的周六或周日"})
    name = fields.String(required=True, validate=validate.Length(min=1), metadata={"description": "为哪个节日调休"})


class HolidayScheduleSchema(_Strict):
    """A State Council yearly schedule (国务院办公厅关于Y年部分节假日安排的通知) as county staff load it."""
    year = fields.Integer(required=True, strict=True, validate=validate.Range(min=2000, max=2100))
    source = fields.String(required=True, validate=validate.Length(min=4),
                           metadata={"description": "通知名称与文号"})
    holidays = fields.List(fields.Nested(HolidayRange), required=True, validate=validate.Length(min=1))
    workdays = fields.List(fields.Nested(MakeUpDay), required=True)

    @validates_schema
    def _dates(self, data, **_):
        y = data["year"]
        lo, hi = date(y - 1, 12, 1), date(y + 1, 1, 31)  # 元旦 may start on Dec 30 of the year before
        errors: dict[str, list[str]] = {}
        off = {d for r in data["holidays"] for d in _days(r["starts"], r["ends"])}
        if any(not lo <= d <= hi for d in off):
            errors.setdefault("holidays", []).append(f"放假日期须在 {y} 年度内")
        for i, w in enumerate(data["workdays"]):
            if w["date"].weekday() < 5:
                errors.setdefault(f"workdays[{i}].date", []).append("调休上班日须为周六或周日")
            if w["date"] in off:
                errors.setdefault(f"workdays[{i}].date", []).append("同一天不能既放假又上班")
            if not lo <= w["date"] <= hi:
                errors.setdefault(f"workdays[{i}].date", []).append(f"调休日期须在 {y} 年度内")
        missing = [d for d in fixed_date_holidays(y) if d not in off]
        if missing:
            errors.setdefault("holidays", []).append(
                "缺少法定节日：" + "、".join(f"{d.isoformat()}（{fixed_date_holidays(y)[d]}）" for d in missing))
        if errors:
            raise ValidationError(errors)


def _days(a: date, b: date) -> Iterable[date]:
    while a <= b:
        yield a
        a += timedelta(days=1)


def _flat(messages, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for k, v in messages.items():
            key = prefix if k == "_schema" else f"{prefix}[{k}]" if isinstance(k, int) else (
                f"{prefix}.{k}" if prefix else str(k))
            for kk, vv in _flat(v, key).items():
                out.setdefault(kk, []).extend(vv)
    else:
        out[prefix or "(file)"] = [str(m) for m in (messages if isinstance(messages, list) else [messages])]
    return out


def parse_schedule(raw: dict, file: str = "<schedule>") -> YearSchedule:
    try:
        data = HolidayScheduleSchema().load(raw)
    except ValidationError as e:
        errors = _flat(e.messages)
        raise ScheduleError("invalid holiday schedule: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in
                                                                     sorted(errors.items())), file, errors) from e
    return schedule_from(data)


def schedule_from(data: dict) -> YearSchedule:
    """From the schema's loaded form (dates already parsed and checked)."""
    return YearSchedule(data["year"], data["source"],
                        {d: r["name"] for r in data["holidays"] for d in _days(r["starts"], r["ends"])},
                        {w["date"]: w["name"] for w in data["workdays"]})


def load_schedule_file(path: Path | str) -> YearSchedule:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ScheduleError(f"not valid JSON: {e}", path.name) from e
    s = parse_schedule(raw, path.name)
    if path.stem != str(s.year):
        raise ScheduleError(f"file name must be {s.year}.json", path.name, {"year": ["does not match the file name"]})
    return s


# ---- the calendar in use -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Deadline:
    day: date
    estimated: bool  # some day counted lies in a year whose schedule is an estimate
    estimated_years: tuple[int, ...] = ()


class WorkCalendar:
    """One process's (or one service's) calendar: the files, the schedules installed or read from its
    `source`, then the library, then the estimate. The module functions below use `DEFAULT`; a
    service whose schedules come from elsewhere (payments: its read model of registry's published
    schedules) builds its own, so it never sees another service's in-process state."""

    def __init__(self, source: Callable[[], list[YearSchedule]] | None = None, ttl_s: float = 30.0,
                 holidays_dir: Path | None = HOLIDAYS_DIR):
        self._lock = threading.Lock()
        self.installed: dict[int, YearSchedule] = {}
        self._dir = holidays_dir
        self._files_loaded = holidays_dir is None
        self._source, self._source_ttl, self._source_read_at = source, ttl_s, 0.0

    def install(self, schedule: YearSchedule) -> None:
        """Use `schedule` as the official one for its year (replacing any earlier one)."""
        with self._lock:
            self.installed[schedule.year] = schedule

    def uninstall(self, year: int) -> None:
        with self._lock:
            self.installed.pop(year, None)

    def use_source(self, loader: Callable[[], list[YearSchedule]] | None, ttl_s: float = 30.0) -> None:
        """Read the loaded schedules from `loader` (e.g. registry's store), again at most every `ttl_s`
        seconds, so a schedule loaded through another process is used here too."""
        with self._lock:
            self._source, self._source_ttl, self._source_read_at = loader, ttl_s, 0.0

    def _refresh(self) -> None:
        if not self._files_loaded:
            self._files_loaded = True
            for path in sorted(self._dir.glob("[0-9][0-9][0-9][0-9].json")) if self._dir.is_dir() else ():
                self.install(load_schedule_file(path))  # a bad file stops the service: a wrong calendar must not be used
        if self._source is not None and time.monotonic() - self._source_read_at >= self._source_ttl:
            self._source_read_at = time.monotonic()
            try:
                for s in self._source():
                    self.install(s)
            except Exception:  # noqa: BLE001 — keep the last known schedules; the store may be briefly away
                log.warning("holiday schedules could not be read; using the ones known", exc_info=True)

    def schedule_source(self, year: int) -> str:
        """"official" (loaded by the county), "chinese_calendar" (published with the library) or "estimate"."""
        self._refresh()
        if year in self.installed:
            return "official"
        return "chinese_calendar" if _library_knows(year) else "estimate"

    def is_estimated(self, year: int) -> bool:
        return self.schedule_source(year) == "estimate"

    def is_working_day(self, d: date) -> bool:
        self._refresh()
        inst = self.installed
        for s in (inst.get(d.year), inst.get(d.year + 1), inst.get(d.year - 1)):
            if s is not None and d in s.workdays:
                return True
            if s is not None and d in s.holidays:
                return False
        if d.year in inst:
            return d.weekday() < 5
        try:
            return chinese_calendar.is_workday(d)
        except NotImplementedError:  # no published schedule: an estimate from the fixed-date holidays
            if d.year not in _warned:
                _warned.add(d.year)
                log.warning("no holiday schedule for %s loaded; estimating (weekends and fixed-date holidays only)",
                            d.year)
            return d.weekday() < 5 and d not in fixed_date_holidays(d.year)

    def working_days_after(self, start: date, n: int) -> Deadline:
        """The n-th working day after `start` (the starting day itself does not count), and whether that
        count relied on an estimated year."""
        d, left = start, n
        while left:
            d += timedelta(days=1)
            if self.is_working_day(d):
                left -= 1
        years = tuple(y for y in range(start.year, d.year + 1) if self.is_estimated(y))
        return Deadline(d, bool(years), years)

    def estimated_between(self, start: date, end: date) -> bool:
        return any(self.is_estimated(y) for y in range(start.year, end.year + 1))


_warned: set[int] = set()
DEFAULT = WorkCalendar()
_installed = DEFAULT.installed  # (the default calendar's schedules, for tests that look)


def install(schedule: YearSchedule) -> None:
    DEFAULT.install(schedule)


def uninstall(year: int) -> None:
    DEFAULT.uninstall(year)


def use_source(loader: Callable[[], list[YearSchedule]] | None, ttl_s: float = 30.0) -> None:
    DEFAULT.use_source(loader, ttl_s)


def _library_knows(year: int) -> bool:
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
        return True
    except NotImplementedError:
        return False


def schedule_source(year: int) -> str:
    return DEFAULT.schedule_source(year)


def is_estimated(year: int) -> bool:
    return DEFAULT.is_estimated(year)


def is_working_day(d: date) -> bool:
    return DEFAULT.is_working_day(d)


def working_days_after(start: date, n: int, calendar: WorkCalendar | None = None) -> Deadline:
    """The n-th working day after `start` by `calendar` (the default one unless given)."""
    return (calendar or DEFAULT).working_days_after(start, n)


def add_working_days(start: date, n: int, calendar: WorkCalendar | None = None) -> date:
    """The n-th working day after `start` (the starting day itself does not count)."""
    return working_days_after(start, n, calendar).day


def estimated_between(start: date, end: date) -> bool:
    """Whether a deadline counted from `start` to `end` relied on an estimated year."""
    return DEFAULT.estimated_between(start, end)


def calendar_of(year: int) -> dict:
    """The calendar used for `year`, as the holiday API shows it: where it comes from, whether it is an
    estimate, its days off on weekdays and weekends named as holidays, and its make-up working days."""
    src = schedule_source(year)
    if src == "official":
        s = DEFAULT.installed[year]
        hol, work, doc = s.holidays, s.workdays, s.source
    elif src == "chinese_calendar":
        hol, work, doc = {}, {}, None
        day = date(year, 1, 1)
        while day.year == year:
            off, name = chinese_calendar.get_holiday_detail(day)
            if off and name:
                hol[day] = _LIB_NAMES.get(name, name)
            elif not off and day.weekday() >= 5:
                work[day] = _LIB_NAMES.get(name, name) if name else ""
            day += timedelta(days=1)
    else:
        hol, work, doc = fixed_date_holidays(year), {}, None
    return {"year": year, "source": src, "estimated": src == "estimate", "document": doc,
            "holidays": [{"date": d.isoformat(), "name": n} for d, n in sorted(hol.items())],
            "workdays": [{"date": d.isoformat(), "name": n} for d, n in sorted(work.items())]}


_LIB_NAMES = {"New Year's Day": "元旦", "Spring Festival": "春节", "Tomb-sweeping Day": "清明节", "Labour Day": "劳动节",
              "Dragon Boat Festival": "端午节", "Mid-autumn Festival": "中秋节", "National Day": "国庆节"}

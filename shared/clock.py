"""An injectable clock: code asks a Clock for "now", tests and simulations set it.

Deadlines in the documents are Asia/Shanghai wall time (e.g. "17:00 on 2016-11-15").
"""
from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def today_shanghai(self) -> date:
        return self.now().astimezone(SHANGHAI).date()


class FixedClock(Clock):
    """A clock that stands still until moved; safe to share between threads."""

    def __init__(self, at: datetime):
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._at = at
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        with self._lock:
            self._at = at

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._at += delta


def shanghai_end_of_day(d: date) -> datetime:
    """The last instant of a Shanghai calendar day (a window that 'closes Dec 31' includes Dec 31)."""
    return datetime.combine(d + timedelta(days=1), time(0), SHANGHAI) - timedelta(microseconds=1)


def shanghai_start_of_day(d: date) -> datetime:
    return datetime.combine(d, time(0), SHANGHAI)


def parse_instant(text: str) -> datetime:
    """ISO 8601; a naive time is read as Shanghai wall time, as the county documents write it."""
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=SHANGHAI)


class FileClock(Clock):
    """The instant written in a file, shared by every process of a suite: a season simulator moves
    one suite's clock by rewriting it (`FileClock.write`), and each process reads it again when the
    file changed (its modification time and size; at most once per `check_s`). An unreadable file
    keeps the last instant read, so a write half done is never seen."""

    def __init__(self, path: str, check_s: float = 0.05):
        import os
        self.path, self.check_s, self._os = path, check_s, os
        self._lock = threading.Lock()
        self._at = parse_instant(open(path, encoding="utf-8").read().strip())
        self._seen: tuple = (None, None)
        self._checked = 0.0

    def now(self) -> datetime:
        import time as _time
        with self._lock:
            t = _time.monotonic()
            if t - self._checked >= self.check_s:
                self._checked = t
                try:
                    st = self._os.stat(self.path)
                    if (st.st_mtime_ns, st.st_size) != self._seen:
                        text = open(self.path, encoding="utf-8").read().strip()
                        self._at, self._seen = parse_instant(text), (st.st_mtime_ns, st.st_size)
                except (OSError, ValueError):
                    pass
            return self._at

    @staticmethod
    def write(path: str, at: datetime) -> None:
        """Move the suite's clock: a new file renamed over the old one (atomic)."""
        import os
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(at.isoformat())
        os.replace(tmp, path)


def clock_from_env(value: str | None, path: str | None = None) -> Clock:
    """CLOCK_NOW=2019-10-15T10:00:00+08:00 pins the clock (demo and tests); CLOCK_FILE=<path> is a
    clock that a simulator moves for the whole suite (FileClock); otherwise real time."""
    if path:
        return FileClock(path)
    return FixedClock(parse_instant(value)) if value else Clock()


def iso(value: datetime | date | str | None) -> str | None:
    """THE rendering of an instant, everywhere one leaves the suite (API responses, events, exports,
    stored strings): ISO 8601 in Asia/Shanghai with its offset, e.g. 2019-11-15T10:00:00+08:00
    (a fraction of a second only when there is one). Naive datetimes are UTC (the store's); a date
    stays a date (2019-11-15); a string (a gateway's paid_at as stored) is read and rendered the same
    way. See docs/time.md."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return aware.astimezone(SHANGHAI).isoformat()
    return value.isoformat()


def stamp(at: datetime) -> str:
    """The wall-clock part of order, receipt and batch numbers: YYYYMMDDHHMMSS in Asia/Shanghai, so
    a number made at 2019-12-31T23:30+08:00 carries 20191231 whatever the server's zone."""
    aware = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return aware.astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S")

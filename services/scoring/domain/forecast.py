"""Forecast (预测): where a township will stand at the next deadline at its recent pace.

Method (stated in every answer): the pace is the persons counted over the last `window_days` full
Shanghai days before the instant (7 by default), per day; the projection adds that pace for the
time left to the deadline (fractional days). A township counted for fewer than `min_days` days,
or with no progress in the window, has no forecast (`insufficient_data`): a projection from one
busy morning would mislead more than it helps. The persons a day it needs to reach the target
from now are given whenever a target and a deadline are known, forecast or not.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from math import ceil

from shared.clock import SHANGHAI

METHOD = ("近{window}天（北京时间整日）日均新增参保人数 × 距截止时间的天数 + 当前人数；"
          "有数据不足{min_days}天或近{window}天无新增的乡镇不作预测")

BANDS = {"reached": "已达标", "on_track": "按期可达", "behind": "进度落后", "no_data": "无数据",
         "no_target": "未配置目标"}


@dataclass(frozen=True)
class Forecast:
    status: str  # reached | on_track | behind | insufficient_data | no_target
    band: str  # reached | on_track | behind | no_data | no_target
    pace_per_day: Fraction | None
    projected_persons: int | None
    projected_rate: Fraction | None
    projected_completion: date | None  # the day the task is reached at this pace
    needed_per_day: int | None  # to reach the target by the deadline from now
    target_persons: int | None


def forecast(task: int | None, counted: int | None, days: dict[date, int], at: datetime,
             deadline: datetime | None, share: Fraction | None, window_days: int = 7,
             min_days: int = 3) -> Forecast:
    """`days`: persons counted per Shanghai day (net of reversals), any days; `share`: the target
    share of the task at `deadline` (the next stage's, or the year's target)."""
    if not task or share is None or deadline is None:
        return Forecast("no_target", "no_target", None, None, None, None, None, None)
    if counted is None:
        return Forecast("insufficient_data", "no_data", None, None, None, None, None, None)
    target = ceil(share * task)  # persons; 以上 includes the figure (see domain/assessment.py)
    today = at.astimezone(SHANGHAI).date()
    left_days = Fraction(max(0, int((deadline - at).total_seconds())), 86400)  # whole seconds
    needed = max(0, target - counted)
    needed_per_day = 0 if needed == 0 else (ceil(needed / left_days) if left_days > 0 else None)
    seen = sorted(d for d, n in days.items() if d < today and n)
    window = [today - timedelta(days=i) for i in range(1, window_days + 1)]
    gained = sum(days.get(d, 0) for d in window)
    if counted >= target:
        pace = Fraction(gained, window_days) if gained > 0 else None
        return Forecast("reached", "reached", pace, None, None, _completion(task, counted, pace, today),
                        0, target)
    if len(seen) < min_days or (seen and (today - seen[0]).days < min_days) or gained <= 0:
        return Forecast("insufficient_data", "behind" if left_days == 0 else "no_data", None, None, None, None,
                        needed_per_day, target)
    pace = Fraction(gained, window_days)
    projected = counted + int(pace * left_days)
    status = "on_track" if projected >= target else "behind"
    return Forecast(status, status, pace, projected, Fraction(projected, task), _completion(task, counted, pace, today),
                    needed_per_day, target)


def _completion(task: int, counted: int, pace: Fraction | None, today: date) -> date | None:
    if counted >= task:
        return None if pace is None else today
    if not pace:
        return None
    return today + timedelta(days=ceil((task - counted) / pace))


def method(window_days: int = 7, min_days: int = 3) -> str:
    return METHOD.format(window=window_days, min_days=min_days)

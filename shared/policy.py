"""A county's policy year (政策年度): standard, payment window, townships and their tasks.

Loaded from a JSON file built from the county notice; the figures are checked on load and any
disagreement (e.g. a printed total the rows do not add up to) is reported, not silently accepted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from .clock import shanghai_end_of_day, shanghai_start_of_day


@dataclass(frozen=True)
class Township:
    name: str
    task: int  # 参保任务（人）
    villages: tuple[str, ...] = ()  # 村（社区）; empty when the county has not loaded its places

    def has_village(self, village: str) -> bool:
        return village in self.villages


@dataclass(frozen=True)
class PolicyYear:
    county: str
    year: int
    standard_fen: int  # 个人缴费标准, integer fen
    window_opens: date
    window_closes: date
    townships: tuple[Township, ...]
    declared_task_total: int | None
    target_rate_percent: int
    warnings: tuple[str, ...] = field(default=())
    # 筹资标准 (individual part + government subsidy part), integer fen: what a mid-year enrolment after
    # the window pays (001 四). None = the county has not set it (the notice prints no figure).
    financing_standard_fen: int | None = None

    def township(self, name: str) -> Township | None:
        return next((t for t in self.townships if t.name == name), None)

    @property
    def task_total(self) -> int:
        return sum(t.task for t in self.townships)

    def window_open_at(self, at: datetime) -> bool:
        """集中参保缴费期: both ends inclusive, Asia/Shanghai calendar days."""
        return shanghai_start_of_day(self.window_opens) <= at <= shanghai_end_of_day(self.window_closes)

    def after_window_in_year_at(self, at: datetime) -> bool:
        """After the window closed and before the policy year (待遇享受期, Jan 1 - Dec 31) ends: when a
        mid-year enrolment (中途参保) for this year can still be paid."""
        return shanghai_end_of_day(self.window_closes) < at <= shanghai_end_of_day(date(self.year, 12, 31))


class PolicyError(ValueError):
    pass


def load_policy(path: Path | str) -> PolicyYear:
    path = Path(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    villages = load_places(path.parent / raw["places_file"]) if raw.get("places_file") else {}
    return parse_policy(raw, villages)


def load_places(path: Path) -> dict[str, list[str]]:
    """Villages per township from a CSV with the headers 乡镇,村（社区）."""
    import csv
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["乡镇"].strip(), []).append(row["村（社区）"].strip())
    return out


def parse_policy(raw: dict, villages: dict[str, list[str]] | None = None) -> PolicyYear:
    try:
        standard = raw["standard_fen"]
        if not isinstance(standard, int) or standard < 0:
            raise PolicyError("standard_fen must be a non-negative integer (fen)")
        towns = []
        for row in raw["townships"]:
            if not isinstance(row["task"], int) or row["task"] <= 0:
                raise PolicyError(f"township {row['name']}: task must be a positive integer")
            towns.append(Township(row["name"], row["task"], tuple((villages or {}).get(row["name"], ()))))
        names = [t.name for t in towns]
        if len(set(names)) != len(names):
            raise PolicyError("township names must be unique")
        opens = date.fromisoformat(raw["window"]["opens"])
        closes = date.fromisoformat(raw["window"]["closes"])
        if closes < opens:
            raise PolicyError("payment window closes before it opens")
        financing = (raw.get("mid_year") or {}).get("financing_standard_fen")
        if financing is not None and (not isinstance(financing, int) or isinstance(financing, bool)
                                      or financing < standard):
            raise PolicyError("mid_year.financing_standard_fen must be null (unset) or an integer (fen) "
                              "not below standard_fen: it includes the individual part")
    except KeyError as e:
        raise PolicyError(f"policy file is missing {e}") from e
    warnings = []
    unknown = set(villages or {}) - {t.name for t in towns}
    if unknown:
        raise PolicyError(f"places file names townships not in the task table: {sorted(unknown)}")
    declared = raw.get("declared_task_total")
    total = sum(t.task for t in towns)
    if declared is not None and declared != total:
        warnings.append(f"任务合计与各乡镇任务之和不一致：印刷合计 {declared}，各行相加 {total}，差 {total - declared}")
    return PolicyYear(county=raw["county"], year=raw["year"], standard_fen=standard, window_opens=opens,
                      window_closes=closes, townships=tuple(towns), declared_task_total=declared,
                      target_rate_percent=raw.get("target_rate_percent", 95), warnings=tuple(warnings),
                      financing_standard_fen=financing)

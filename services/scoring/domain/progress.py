"""Township progress (参保进度): enrolled persons against the task (参保任务) of the policy year.

Rates are kept as exact fractions and shown in basis points, so ranking never depends on float
rounding. Rule: 001_93f5b63ac6b4a653.txt 附件1 (tasks) and 附件2 2.1 (rate against 95 %); figures as
of a deadline and per village: 000_6db0cfefa235a8dc.txt 二 (below).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from shared.clock import SHANGHAI, parse_instant
from shared.policy import PolicyYear

from .ranking import ranked


@dataclass(frozen=True)
class TownshipProgress:
    township: str
    task: int
    enrolled_persons: int
    enrolled_households: int

    @property
    def rate(self) -> Fraction:
        return Fraction(self.enrolled_persons, self.task)

    @property
    def rate_bp(self) -> int:
        """Rate in basis points (1/100 of a percent), rounded half up."""
        return int(self.rate * 10000 + Fraction(1, 2))


def progress_table(policy: PolicyYear, counters: dict[str, dict]) -> list[tuple[int, TownshipProgress]]:
    """Every township of the policy, ranked by rate (ties share a rank), zero where nothing is counted."""
    rows = [TownshipProgress(t.name, t.task, counters.get(t.name, {}).get("persons", 0),
                             counters.get(t.name, {}).get("households", 0)) for t in policy.townships]
    return ranked(rows, key=lambda r: (-r.rate, r.township))


# ---- progress as of an instant (截止时间内), per township and per village ----------------------
# Staged assessments rank townships by the persons counted by a deadline (000_6db0cfefa235a8dc.txt
# 二: 每阶段考核结果按各乡(镇、街道)在截止时间内……计算人数的参合率排名; 第一阶段截止2016年11月15日
# 下午5时), and name the two lowest villages of a township (二(二): 本乡(镇、街道)排名后两位村(社区)).
# The township's counter keeps cumulative figures, figures per Shanghai calendar day and per
# village; the entries of one day (their instants) answer for a deadline inside that day.


@dataclass(frozen=True)
class Figures:
    persons: int = 0
    households: int = 0


@dataclass(frozen=True)
class Standing:
    """A township's enrolled persons and households as of an instant, and each village's."""
    persons: int
    households: int
    villages: dict[str, Figures]


def village_key(name: str) -> str:
    """A village name as a field key: the store takes no '.' and no leading '$' in keys, so '%' is
    written '%25', '.' '%2E' and a leading '$' '%24' (percent-encoding); the empty name is '%'."""
    if name == "":
        return "%"
    key = name.replace("%", "%25").replace(".", "%2E")
    return "%24" + key[1:] if key.startswith("$") else key


def village_name(key: str) -> str:
    """The village name a field key stands for (village_key's inverse)."""
    if key == "%":
        return ""
    return key.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def shanghai_day(at: datetime) -> str:
    """The Asia/Shanghai calendar day (YYYY-MM-DD) of an instant: deadlines are Shanghai wall time."""
    return at.astimezone(SHANGHAI).date().isoformat()


def effective_at(payload: dict, occurred_at: str) -> datetime:
    """When an enrolment change counts: a payment at its `paid_at`, a revocation at its `reversed_at`;
    the envelope's `occurred_at` for an event sent before they were (or a status with neither)."""
    key = "reversed_at" if payload.get("status") == "revoked" else "paid_at"
    return parse_instant(payload.get(key) or occurred_at)


def counted_increments(day: str | None, village: str | None, persons: int, households: int) -> dict[str, int]:
    """The `$inc` of one counted fact on its township's counter: cumulative, its day's (`days.<day>`)
    and its village's (`villages.<key>`). A village's figures of a past instant come from the day
    documents' entries (standing_as_of), so the counter stays small: a township's days, not its
    days × villages (read by every ranking; bench/RESULTS.md). `day` None: a fact without a time
    (counted before facts were dated), cumulative only; `village` None: in no village."""
    paths = [""]
    if village is not None:
        paths.append(f"villages.{village_key(village)}.")
    if day is not None:
        paths.append(f"days.{day}.")
    return {f"{p}{k}": v for p in paths for k, v in (("persons", persons), ("households", households))}


def days_from(counter: dict | None, at: datetime) -> list[str]:
    """The days with counted facts from at's Shanghai day on: whose entries an as-of `at` reads."""
    today = shanghai_day(at)
    return sorted(d for d in ((counter or {}).get("days") or {}) if d >= today)


def standing_as_of(counter: dict | None, entries: list[dict], at: datetime | None,
                   villages: bool = True) -> Standing:
    """Figures as of `at` inclusive (a payment at 17:00:00 counts for a 17:00 deadline, one at
    17:00:01 does not): the cumulative figures minus everything counted after `at` — the days after
    at's Shanghai day by their totals, at's own day by its entries after `at`. `entries`: at's day's
    (and, for the villages, every later day's: the counter keeps villages cumulative only). `at`
    None: everything counted so far. What was counted without a day counts at any instant."""
    counter = counter or {}
    persons, households = counter.get("persons", 0), counter.get("households", 0)
    vil: dict[str, list[int]] = ({k: [v.get("persons", 0), v.get("households", 0)]
                                  for k, v in (counter.get("villages") or {}).items()} if villages else {})
    if at is not None:
        today = shanghai_day(at)
        for day, totals in (counter.get("days") or {}).items():
            if day > today:
                persons -= totals.get("persons", 0)
                households -= totals.get("households", 0)
        for e in entries:
            when = parse_instant(e["at"])
            if when <= at:
                continue
            if shanghai_day(when) == today:
                persons -= e["persons"]
                households -= e["households"]
            if villages and e.get("village") is not None:
                fig = vil.setdefault(village_key(e["village"]), [0, 0])
                fig[0] -= e["persons"]
                fig[1] -= e["households"]
    return Standing(persons, households, {village_name(k): Figures(p, h) for k, (p, h) in vil.items()})


def end_of_day(counter: dict | None, day: str) -> int:
    """Persons counted by the end of a Shanghai day (YYYY-MM-DD), from the day totals alone."""
    counter = counter or {}
    return counter.get("persons", 0) - sum(t.get("persons", 0) for d, t in (counter.get("days") or {}).items()
                                           if d > day)


@dataclass(frozen=True)
class VillageProgress:
    village: str
    listed: bool  # in the county's places list (村（社区）名册); False: seen only in events
    enrolled_persons: int
    enrolled_households: int


def village_table(listed: tuple[str, ...], standing: Standing) -> list[tuple[int, VillageProgress]]:
    """Every village of a township, ranked by enrolled persons (ties share a rank): the places list's
    villages, zero where nothing is counted, and the villages seen only in events after them in rank
    order (a name the places list does not know stays visible for staff to correct)."""
    known = set(listed)
    rows = [VillageProgress(v, True, standing.villages.get(v, Figures()).persons,
                            standing.villages.get(v, Figures()).households) for v in listed]
    rows += [VillageProgress(v, False, f.persons, f.households) for v, f in standing.villages.items() if v not in known]
    return ranked(rows, key=lambda r: (-r.enrolled_persons, r.village))


def coverage_order(figures: dict) -> str:
    """The order of subsidy's coverage figures (subsidy.coverage.changed) for newest-wins: the change
    number of subsidy's counter they were read at; figures published before versions existed order
    by their `as_of` and below every versioned one ("a…" < "v…")."""
    if figures.get("version") is not None:
        return f"v{figures['version']:015d}"
    return f"a{figures['as_of']}"

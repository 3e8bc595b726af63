"""Township progress (参保进度): enrolled persons against the task (参保任务) of the policy year.

Rates are kept as exact fractions and shown in basis points, so ranking never depends on float
rounding. Rule: 001_93f5b63ac6b4a653.txt 附件1 (tasks) and 附件2 2.1 (rate against 95 %).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from shared.policy import PolicyYear


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
    rows.sort(key=lambda r: (-r.rate, r.township))
    ranked, prev, rank = [], None, 0
    for i, r in enumerate(rows, start=1):
        if r.rate != prev:
            rank, prev = i, r.rate
        ranked.append((rank, r))
    return ranked

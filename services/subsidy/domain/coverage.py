"""Coverage of hardship persons (困难群众参保率): every one of them must be enrolled (001 六:
以上所有困难群众必须确保100%参保; 附件2 2.3: registered poor 100 %). Counted per township and
category, each person once under their most favourable category.
"""
from __future__ import annotations

from dataclasses import dataclass

UNREGISTERED = ""  # a hardship person not (yet) in any registered household: where they live is unknown
UNREGISTERED_NAME = "未登记户籍"


@dataclass(frozen=True)
class Contribution:
    """What one person adds to the counters: nothing, or one hardship person (maybe enrolled)."""
    township: str
    category: str
    enrolled: bool

    def increments(self, sign: int) -> dict[str, int]:
        inc = {f"h_{self.category}": sign}
        if self.enrolled:
            inc[f"e_{self.category}"] = sign
        return inc


@dataclass(frozen=True)
class CoverageRow:
    township: str
    category: str
    hardship_persons: int
    enrolled_persons: int

    @property
    def not_enrolled(self) -> int:
        return self.hardship_persons - self.enrolled_persons

    @property
    def rate_bp(self) -> int:
        """Basis points, rounded down, so 100.00 % means every one of them (the target)."""
        return 10000 if self.hardship_persons == 0 else self.enrolled_persons * 10000 // self.hardship_persons


def rows_of(township: str, counter: dict) -> list[CoverageRow]:
    cats = sorted({k[2:] for k in counter if k.startswith("h_")})
    return [CoverageRow(township, c, counter.get(f"h_{c}", 0), counter.get(f"e_{c}", 0)) for c in cats
            if counter.get(f"h_{c}", 0)]

"""Information accuracy per township (信息录入准确率).

Rules: 001_93f5b63ac6b4a653.txt 附件2 2.2 (参保信息录入准确率达到100%计满分，每下降1个百分点扣1分) and
七(一) (实现参保缴费人员信息准确率达到100%); 000_6db0cfefa235a8dc.txt (all enrolled persons' data entered
accurately). The documents do not define the measure; ours, documented in docs/accuracy.md:

    accuracy = (registered persons − persons with an open problem) / registered persons

where a person has an open problem when a correction naming them (or their whole household) is
not yet decided, or when they are in an unresolved duplicate case (多地重复参保). It is exact
(a fraction) and shown in basis points, so 100 % means no open problem at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Accuracy:
    township: str
    registered_persons: int
    persons_with_open_problems: int

    @property
    def rate(self) -> Fraction:
        if self.registered_persons == 0:
            return Fraction(1)
        return Fraction(self.registered_persons - self.persons_with_open_problems, self.registered_persons)

    @property
    def rate_bp(self) -> int:
        return int(self.rate * 10000)  # rounded down: 99.995 % is not 100 %


def accuracy_table(registered: dict[str, int], open_problems: dict[str, set[str]], townships: list[str]) -> list[Accuracy]:
    return [Accuracy(t, registered.get(t, 0), min(len(open_problems.get(t, set())), registered.get(t, 0)))
            for t in townships]

"""State machines and optimistic versions for aggregates (pure Python: no Flask, no pymongo).

An aggregate document carries `version` (1 when inserted, +1 with each write). A write names the
version it read (compare-and-set, `OutboxWriter.save_versioned`); when someone else wrote first it
raises `StaleVersion` and the use case reads again and re-decides (`retry_stale`), so two writers
of the same household or payment never lose each other's change. Allowed transitions are data
(`StateMachine`): a transition not in the table is refused whatever the order of the requests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from .errors import Conflict

T = TypeVar("T")


class StaleVersion(Exception):
    """The aggregate changed since it was read: read it again and decide again."""


class BusyAggregate(Conflict):
    """Too many writers at once on one aggregate; the caller retries (409, safe to repeat)."""


@dataclass(frozen=True)
class StateMachine:
    """`transitions`: state → the states it may move to. `name` prefixes the refusal's code."""

    name: str
    transitions: Mapping[str, frozenset[str]]
    labels: Mapping[str, str] | None = None  # zh-CN names of the states, for messages

    def can(self, current: str, target: str) -> bool:
        return target in self.transitions.get(current, frozenset())

    def check(self, current: str, target: str, details: dict | None = None) -> None:
        if not self.can(current, target):
            lbl = self.labels or {}
            raise Conflict(f"{self.name}_TRANSITION_REFUSED",
                           f"当前状态为「{lbl.get(current, current)}」，不能变为「{lbl.get(target, target)}」",
                           {"from": current, "to": target, **(details or {})})


def machine(name: str, table: Mapping[str, tuple[str, ...]], labels: Mapping[str, str] | None = None) -> StateMachine:
    return StateMachine(name, {k: frozenset(v) for k, v in table.items()}, labels)


def retry_stale(attempt: Callable[[], T], tries: int = 8) -> T:
    """Run a read-decide-write step again while its compare-and-set loses to another writer."""
    for _ in range(tries):
        try:
            return attempt()
        except StaleVersion:
            continue
    raise BusyAggregate("AGGREGATE_BUSY", "该记录正被同时修改，请稍后重试")

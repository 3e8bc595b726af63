"""Competition ranking (1, 2, 2, 4): the one way every table of scoring ranks."""
from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")


def competition_ranks(keys: list[Any]) -> list[int]:
    """1-based ranks of values already sorted best first; equal values share a rank (1, 2, 2, 4)."""
    ranks, prev, rank = [], object(), 0
    for i, k in enumerate(keys, start=1):
        if k != prev:
            rank, prev = i, k
        ranks.append(rank)
    return ranks


def ranked(rows: Iterable[T], key: Callable[[T], Any]) -> list[tuple[int, T]]:
    """Rows sorted by `key` (sorted best first already: e.g. `(-rate, name)`), each with its rank;
    ties are on `key`'s first element."""
    ordered = sorted(rows, key=key)
    return list(zip(competition_ranks([key(r)[0] for r in ordered]), ordered))

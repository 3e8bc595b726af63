"""Reads that many callers repeat, answered from memory for a few seconds (stale-while-revalidate).

County portals poll the same ranking; on the local store each computation reads the year's
township counters (bench/RESULTS.md: a few hundred ms under load on two cores). A cached answer is
at most `max_age_s` old when served, except while its refresh runs: the first caller after the age
passes gets the previous answer at once and starts one refresh in the background, so no caller
waits for the store once an answer exists. Per process; `max_age_s` 0 turns it off (tests).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Hashable


class ReadCache:
    def __init__(self, max_age_s: float, max_entries: int = 256):
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._refreshing: set[Hashable] = set()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if self.max_age_s <= 0:
            return compute()
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            stale = found is not None and now - found[0] > self.max_age_s
            refresh = stale and key not in self._refreshing
            if refresh:
                self._refreshing.add(key)
        if found is None:
            value = compute()  # the first caller computes; errors propagate as for any read
            self._store(key, value)
            return value
        if refresh:
            threading.Thread(target=self._refresh, args=(key, compute), daemon=True).start()
        return found[1]

    def _refresh(self, key: Hashable, compute: Callable[[], Any]) -> None:
        try:
            self._store(key, compute())
        except Exception:  # noqa: BLE001 — the previous answer stays; the next caller tries again
            pass
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _store(self, key: Hashable, value: Any) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries and key not in self._entries:
                self._entries.pop(next(iter(self._entries)))  # the oldest inserted
            self._entries[key] = (time.monotonic(), value)

"""The portal read cache (shared/read_cache.py): answers at most max_age old, a stale one served while
one refresh runs, no caller waiting for the store once an answer exists."""
import threading
import time

from shared.read_cache import ReadCache


def test_a_fresh_answer_is_reused_and_a_stale_one_is_refreshed_once_in_the_background():
    calls, gate = [], threading.Event()

    def compute():
        calls.append(time.monotonic())
        if len(calls) > 1:
            gate.wait(5)  # the refresh is slow: callers meanwhile get the previous answer
        return len(calls)
    cache = ReadCache(max_age_s=0.05)
    assert cache.get("k", compute) == 1 and cache.get("k", compute) == 1 and len(calls) == 1
    time.sleep(0.08)
    assert [cache.get("k", compute) for _ in range(5)] == [1] * 5  # stale, served at once
    time.sleep(0.02)
    assert len(calls) == 2  # one refresh however many callers
    gate.set()
    deadline = time.monotonic() + 2
    while cache.get("k", compute) != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get("k", compute) == 2


def test_off_at_zero_and_other_keys_apart_and_a_failed_refresh_keeps_the_answer():
    n = []
    off = ReadCache(0)
    assert [off.get("k", lambda: n.append(1) or len(n)) for _ in range(3)] == [1, 2, 3]
    cache = ReadCache(max_age_s=0.01)
    assert cache.get("a", lambda: "A") == "A" and cache.get("b", lambda: "B") == "B"
    time.sleep(0.02)

    def broken():
        raise RuntimeError("store down")
    assert cache.get("a", broken) == "A"  # stale answer; its refresh fails in the background
    time.sleep(0.05)
    assert cache.get("a", lambda: "A2") in ("A", "A2")

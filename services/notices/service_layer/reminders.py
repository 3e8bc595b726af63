"""Reminders to pay (催缴) before the window closes and before each stage deadline.

`NOTICE_REMINDER_DAYS` (default "7,3,1"): a reminder point that many days before each target (the
window's last day, 23:59:59 Shanghai time; each stage's deadline from the policy file's assessment
part). When several points of one target have passed (a worker down for days), only the latest is
sent: a household gets one reminder at a time, never three at once. Each point runs once, in
batches of `limit` households (resumable), one notice per household and point (`_id`); quiet hours,
per-number limits and the provider's rate are the delivery's (service_layer/delivery.py).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from shared.clock import SHANGHAI, iso, shanghai_end_of_day
from shared.policy import PolicyYear

from ..adapters.repository import NoticeRepository
from ..adapters.templates import TemplateBook
from ..adapters.unpaid import ReminderRuns, UnpaidLedger
from ..domain.notice import reminder_notice


def reminder_days() -> list[int]:
    return sorted({int(x) for x in (os.environ.get("NOTICE_REMINDER_DAYS") or "7,3,1").split(",") if x.strip()},
                  reverse=True)


def targets(policy: PolicyYear) -> list[tuple[str, str, datetime]]:
    """(key, what closes — in Chinese, when) for a policy year."""
    out = []
    if policy.window_closes is not None:
        out.append(("window", "集中缴费期", shanghai_end_of_day(policy.window_closes)))
    for s in ((policy.raw.get("assessment") or {}).get("stages") or []):
        out.append((f"stage{s['no']}", s["name"], datetime.fromisoformat(s["deadline"]).replace(tzinfo=SHANGHAI)))
    return out


def due_points(policy: PolicyYear, now: datetime) -> list[tuple[str, str, datetime, int]]:
    """For each target not yet passed, its latest reminder point that has passed (or none)."""
    out = []
    for key, name, at in targets(policy):
        if now >= at:
            continue
        passed = [d for d in reminder_days() if at - timedelta(days=d) <= now]
        if passed:
            out.append((key, name, at, min(passed)))
    return out


def run_reminders(repo: NoticeRepository, ledger: UnpaidLedger, runs: ReminderRuns, book: TemplateBook,
                  policies: dict[int, PolicyYear], now: datetime, limit: int = 500) -> int:
    """One round: at most `limit` reminders written, over the due points in turn; returns how many.
    The cursor is the last household number reminded in its township (numbers in sorted order), so
    a household paying meanwhile shifts nobody past it."""
    written = 0
    for policy in policies.values():
        towns = [t.name for t in policy.townships]
        for key, name, at, days in due_points(policy, now):
            run_id = f"{policy.year}:{key}:{days}"
            run = runs.start(run_id, {"year": policy.year, "target": key, "days": days, "deadline": iso(at)}, now)
            t, after = run["township"], run["after"]
            while t < len(towns) and written < limit:
                asked = limit - written
                batch = [h for h in ledger.households(policy.year, towns[t]) if h > after][:asked]
                for no in batch:
                    contact = repo.contact(policy.year, no) or {}
                    if "reminder" in (contact.get("opt_out") or []):
                        continue  # the household declined reminders (it can still pay; receipts still go)
                    repo.add(book.fill(reminder_notice(run_id, policy.year, towns[t], no, contact, name, at)), now)
                written += len(batch)
                t, after = (t + 1, "") if len(batch) < asked else (t, batch[-1])  # fewer than asked: township done
                runs.advance(run_id, t, after, len(batch), t >= len(towns), now)
    return written


def reminder_loop(c, every_s: float = 60.0, limit: int = 500) -> None:
    """The notices worker's loop: a round of reminders every `every_s` (sooner while a run has more)."""
    import logging
    import time

    from .. import bootstrap as boot
    log = logging.getLogger(__name__)
    repo, ledger, runs, book = boot.repository(c), boot.unpaid(c), boot.reminder_runs(c), boot.templates(c)
    while True:
        try:
            busy = run_reminders(repo, ledger, runs, book, c.policies, c.clock.now(), limit) >= limit
        except Exception:  # noqa: BLE001 — the next round tries again
            log.exception("reminder round failed")
            busy = False
        time.sleep(1.0 if busy else every_s)

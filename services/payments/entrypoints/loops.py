"""Background loops of the payments worker: expiring used gateway nonces, the daily overdue-audit digest."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from .. import bootstrap as boot
from ..adapters.repository import NONCE_TTL_SECONDS

log = logging.getLogger(__name__)


def forget_nonces_once(c, limit: int = 1000, passes: int = 10) -> int:
    """Up to passes × limit nonces older than their TTL removed: MongoDB's TTL index does this by
    itself; FerretDB v1 has no TTL indexes (NotImplemented), so without this the collection, which
    every signed call writes to, would grow forever. Bounded so one pass never holds the store long."""
    repo = boot.repository(c)
    before = c.clock.now() - timedelta(seconds=NONCE_TTL_SECONDS)
    total = 0
    for _ in range(passes):
        n = repo.forget_nonces(before, limit)
        total += n
        if n < limit:
            break
    return total


def nonce_cleanup_loop(c, every_s: float = 300.0) -> None:
    while True:
        try:
            n = forget_nonces_once(c)
            if n:
                log.info("forgot %d expired gateway nonces", n)
        except Exception:  # noqa: BLE001 — the next pass tries again
            log.exception("nonce cleanup failed")
        time.sleep(every_s)


def report_overdue_audits_once(c) -> int:
    """Each loaded year's digest of audits past their 3 working days, at most once a day each."""
    from ..service_layer.handlers import report_overdue_audits
    repo = boot.repository(c)
    calendar = boot.calendar(repo)
    return sum(report_overdue_audits(repo, c.clock, year, c.county_code, calendar) for year in sorted(c.policies))


def overdue_audit_loop(c, every_s: float = 300.0) -> None:
    """The digest goes out on the first pass of a day on which audits are overdue (001 七(二))."""
    while True:
        try:
            report_overdue_audits_once(c)
        except Exception:  # noqa: BLE001 — the next pass tries again
            log.exception("overdue audit digest failed")
        time.sleep(every_s)
